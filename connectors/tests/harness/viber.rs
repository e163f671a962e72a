//! A hub with a Viber account pointed at the fake Viber API: the Telegram harness's hub (the
//! real chatserver and file server, a fresh database, the real ZooKeeper; its Telegram account
//! stays idle) plus a Viber account, and connectors for it whose webhook route listens on a port
//! of their own. Included with `#[path]` next to `mod harness;`.

#![allow(dead_code)] // each test file uses a different part

use connectors::fake::viber::FakeViber;
use schema::domain::Channel;
use schema::store::{self, NewAccount};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::harness::{Connector, Hub, spawn_hub};

pub const AUTH_TOKEN: &str = "4f3ac5d1e9b8a7c6-5d4e3f2a1b0c9d8e-7f6a5b4c3d2e1f0a";

pub struct ViberHub {
    pub hub: Hub,
    pub fake: FakeViber,
    /// The Viber account.
    pub account_id: Uuid,
}

/// A hub with a Viber account whose settings are `settings` plus the fake's `api_url`.
pub async fn spawn_viber_hub(settings: Value) -> ViberHub {
    let hub = spawn_hub(json!({})).await;
    let fake = FakeViber::start(AUTH_TOKEN).await;
    let mut all_settings = json!({ "api_url": fake.api_url() });
    all_settings.as_object_mut().unwrap().extend(settings.as_object().unwrap().clone());
    let mut conn = hub.pool.acquire().await.unwrap();
    let account = store::create_account(
        &mut conn,
        &NewAccount {
            channel: Channel::Viber,
            name: "Acme Shop".into(),
            default_queue: "support".into(),
            credentials: json!({ "auth_token": AUTH_TOKEN }),
            settings: all_settings,
        },
    )
    .await
    .unwrap();
    drop(conn);
    ViberHub { hub, fake, account_id: account.id }
}

impl ViberHub {
    /// A connector serving the Viber account: its webhook URL (on its own port) goes into the
    /// account's settings first, so the connector registers it when it leads.
    pub async fn start_connector(&self) -> Connector {
        let runtime = self.hub.runtime(connectors::Config::default());
        let stop = tokio_util::sync::CancellationToken::new();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        sqlx::query(
            "UPDATE accounts SET settings = settings || jsonb_build_object('webhook_url', $1::text) WHERE id = $2",
        )
        .bind(self.webhook_url(addr))
        .bind(self.account_id)
        .execute(&self.hub.pool)
        .await
        .unwrap();
        let router = runtime.router();
        let serve_stop = stop.clone();
        tokio::spawn(async move {
            let _ =
                axum::serve(listener, router).with_graceful_shutdown(async move { serve_stop.cancelled().await }).await;
        });
        let task = runtime.spawn_account(self.account_id, stop.clone());
        Connector { stop, task, runtime, addr }
    }

    pub fn webhook_url(&self, addr: std::net::SocketAddr) -> String {
        format!("http://{addr}/api/v1/connectors/{}/viber", self.account_id)
    }

    /// Waits until a connector has registered its webhook with the fake.
    pub async fn registered(&self) {
        crate::harness::eventually("set_webhook", crate::harness::WAIT, || async { self.fake.webhook().is_some() })
            .await;
    }

    pub async fn count(&self, sql: &'static str) -> i64 {
        self.hub.count(sql).await
    }
}
