//! A hub with a WhatsApp account pointed at a fake provider (the Cloud API or Infobip): the
//! Telegram harness's hub (the real chatserver and file server, a fresh database, the real
//! ZooKeeper; its Telegram account stays idle) plus the WhatsApp account, and connectors whose
//! webhook route listens on a port of their own. Included with `#[path]` next to `mod harness;`.

#![allow(dead_code)] // each test file uses a different part

use connectors::fake::infobip::FakeInfobip;
use connectors::fake::whatsapp_cloud::FakeCloud;
use schema::domain::Channel;
use schema::store::{self, NewAccount};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::harness::{Client, Connector, Hub, WAIT, spawn_hub};

pub const ACCESS_TOKEN: &str = "EAAGm0PX4ZCpsBAFakeSystemUserToken";
pub const APP_SECRET: &str = "3f1c0d9e8b7a6c5d4e3f2a1b0c9d8e7f";
pub const VERIFY_TOKEN: &str = "switchboard-verify-7731";
pub const PHONE_NUMBER_ID: &str = "119900223344556";
pub const API_KEY: &str = "0a1b2c3d4e5f60718293a4b5c6d7e8f9-aa11bb22-cc33-dd44-ee55-ff6677889900";
pub const WEBHOOK_TOKEN: &str = "q8Zr3kP1vN7xW2mT5yB9cL4hJ6dF0sGa";
pub const SENDER: &str = "4930123456";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    Cloud,
    Infobip,
}

pub struct WaHub {
    pub hub: Hub,
    pub provider: Provider,
    pub cloud: Option<FakeCloud>,
    pub infobip: Option<FakeInfobip>,
    pub account_id: Uuid,
}

/// A hub with a WhatsApp account on `provider`; `settings` and `credentials` are added to the
/// defaults (the fake's URL and keys).
pub async fn spawn_wa_hub(provider: Provider, settings: Value, credentials: Value) -> WaHub {
    let hub = spawn_hub(json!({})).await;
    let (cloud, infobip, mut all_settings, mut all_credentials) = match provider {
        Provider::Cloud => {
            let fake = FakeCloud::start(ACCESS_TOKEN, APP_SECRET, VERIFY_TOKEN, PHONE_NUMBER_ID).await;
            let settings = json!({"provider": "cloud", "api_url": fake.api_url(), "phone_number_id": PHONE_NUMBER_ID});
            let credentials =
                json!({"access_token": ACCESS_TOKEN, "app_secret": APP_SECRET, "verify_token": VERIFY_TOKEN});
            (Some(fake), None, settings, credentials)
        }
        Provider::Infobip => {
            let fake = FakeInfobip::start(API_KEY, SENDER).await;
            let settings = json!({"provider": "infobip", "api_url": fake.api_url(), "sender": SENDER});
            let credentials = json!({"api_key": API_KEY, "webhook_token": WEBHOOK_TOKEN});
            (None, Some(fake), settings, credentials)
        }
    };
    // WhatsApp's default pace to one customer is a message every 6 s: tests send faster (the
    // fake's own per-user limit still answers 131056 past its burst)
    all_settings["limits"] = json!({"rate_per_chat": {"count": 20, "per_ms": 1000}});
    all_settings.as_object_mut().unwrap().extend(settings.as_object().unwrap().clone());
    all_credentials.as_object_mut().unwrap().extend(credentials.as_object().unwrap().clone());
    let mut conn = hub.pool.acquire().await.unwrap();
    let account = store::create_account(
        &mut conn,
        &NewAccount {
            channel: Channel::Whatsapp,
            name: "Acme Shop".into(),
            default_queue: "support".into(),
            credentials: all_credentials,
            settings: all_settings,
        },
    )
    .await
    .unwrap();
    drop(conn);
    WaHub { hub, provider, cloud, infobip, account_id: account.id }
}

impl WaHub {
    pub fn cloud(&self) -> &FakeCloud {
        self.cloud.as_ref().expect("a Cloud API hub")
    }

    pub fn infobip(&self) -> &FakeInfobip {
        self.infobip.as_ref().expect("an Infobip hub")
    }

    pub fn webhook_url(&self, addr: std::net::SocketAddr) -> String {
        format!("http://{addr}/api/v1/connectors/{}/whatsapp", self.account_id)
    }

    /// A connector serving the account on a port of its own; the fake is told the webhook URL
    /// (as an administrator configures it at Meta or Infobip).
    pub async fn start_connector(&self) -> Connector {
        self.start_connector_with_authorization_opt(None).await
    }

    /// Like [`WaHub::start_connector`], with an `Authorization` header configured at Infobip.
    pub async fn start_connector_with_authorization(&self, authorization: &str) -> Connector {
        self.start_connector_with_authorization_opt(Some(authorization)).await
    }

    async fn start_connector_with_authorization_opt(&self, authorization: Option<&str>) -> Connector {
        let runtime = self.hub.runtime(connectors::Config::default());
        let stop = tokio_util::sync::CancellationToken::new();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let url = self.webhook_url(addr);
        sqlx::query(
            "UPDATE accounts SET settings = settings || jsonb_build_object('webhook_url', $1::text) WHERE id = $2",
        )
        .bind(&url)
        .bind(self.account_id)
        .execute(&self.hub.pool)
        .await
        .unwrap();
        match self.provider {
            Provider::Cloud => self.cloud().set_webhook(&url),
            Provider::Infobip => self.infobip().set_webhook(&format!("{url}?token={WEBHOOK_TOKEN}"), authorization),
        }
        let router = runtime.router();
        let serve_stop = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router.into_make_service_with_connect_info::<std::net::SocketAddr>())
                .with_graceful_shutdown(async move { serve_stop.cancelled().await })
                .await;
        });
        let task = runtime.spawn_account(self.account_id, stop.clone());
        // leading: the route answers 200 instead of 503 (or 404 before the account is open)
        let connector = Connector { stop, task, runtime, addr };
        let provider = self.provider;
        crate::harness::eventually("the connector leads", WAIT, || async {
            let http = reqwest::Client::builder().timeout(std::time::Duration::from_secs(5)).build().unwrap();
            let response = match provider {
                Provider::Cloud => {
                    http.get(&url)
                        .query(&[("hub.mode", "subscribe"), ("hub.verify_token", VERIFY_TOKEN), ("hub.challenge", "1")])
                        .send()
                        .await
                }
                Provider::Infobip => {
                    let mut request = http.post(format!("{url}?token={WEBHOOK_TOKEN}")).body(r#"{"results": []}"#);
                    if let Some(authorization) = authorization {
                        request = request.header("authorization", authorization);
                    }
                    request.send().await
                }
            };
            response.is_ok_and(|r| r.status() == 200)
        })
        .await;
        connector
    }

    /// A second connector for the account that does not lead while the first one does (its
    /// webhook route answers 503); returns once it has opened the account.
    pub async fn start_backup(&self) -> Connector {
        let runtime = self.hub.runtime(connectors::Config::default());
        let stop = tokio_util::sync::CancellationToken::new();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = runtime.router();
        let serve_stop = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router.into_make_service_with_connect_info::<std::net::SocketAddr>())
                .with_graceful_shutdown(async move { serve_stop.cancelled().await })
                .await;
        });
        let task = runtime.spawn_account(self.account_id, stop.clone());
        let url = self.webhook_url(addr);
        crate::harness::eventually("the backup opened the account", WAIT, || async {
            // no credentials: 401 once the account is open here (404 before)
            reqwest::Client::new().post(&url).body("{}").send().await.is_ok_and(|r| r.status() == 401)
        })
        .await;
        Connector { stop, task, runtime, addr }
    }

    /// An approved template, at the provider and in the hub (as the admin API stores it).
    pub async fn add_template(&self, name: &str, language: &str, body: &str) {
        let params = store::whatsapp::template_params(body).unwrap();
        match self.provider {
            Provider::Cloud => self.cloud().add_template(name, language, params),
            Provider::Infobip => self.infobip().add_template(name, language, params),
        }
        let mut conn = self.hub.pool.acquire().await.unwrap();
        let input = store::whatsapp::TemplateInput {
            name: name.into(),
            language: language.into(),
            category: None,
            body: body.into(),
        };
        store::whatsapp::put_template(&mut conn, self.account_id, &input).await.unwrap();
    }

    pub async fn count(&self, sql: &'static str) -> i64 {
        self.hub.count(sql).await
    }
}

/// Waits for the agent's `message.new` of a customer message of `kind`.
pub async fn customer_message(agent: &mut Client, kind: &str) -> Value {
    let event =
        agent.event_where("message.new", |d| d["message"]["kind"] == kind && d["message"]["direction"] == "in").await;
    event["data"]["message"].clone()
}

/// The bytes, name and type of a message's first file, from the hub's file server.
pub async fn file_of(hub: &Hub, message: &Value) -> (Vec<u8>, String, String) {
    let file = &message["files"][0];
    let (status, bytes, _) = hub.download(file["url"].as_str().expect("the file has a URL")).await;
    assert_eq!(status, 200, "the file is downloadable from the file server: {message}");
    (bytes, file["name"].as_str().unwrap().to_owned(), file["mime"].as_str().unwrap().to_owned())
}

/// `message.send` with `args` (plus the interaction and id); waits for `sent` or `failed`.
pub async fn send(agent: &mut Client, interaction: &str, client_msg_id: &str, args: Value) -> Value {
    let mut args = args;
    args["interaction_id"] = json!(interaction);
    args["client_msg_id"] = json!(client_msg_id);
    let sent = agent.call("message.send", args).await;
    assert_eq!(sent["ok"], true, "{sent}");
    let id = sent["data"]["id"].as_str().unwrap().to_owned();
    let status = agent
        .event_where("message.status", |d| {
            d["message"]["id"] == id.as_str() && matches!(d["message"]["status"].as_str(), Some("sent" | "failed"))
        })
        .await;
    status["data"]["message"].clone()
}
