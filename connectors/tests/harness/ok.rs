//! A hub with an OK account pointed at the fake OK API: the Telegram harness's hub (the real
//! chatserver and file server, a fresh database, the real ZooKeeper; its Telegram account stays
//! idle) plus an OK group account, and connectors for it whose webhook route is on a port of
//! their own, served with the peer's address (as `switchboard` serves it). Included with `#[path]`
//! next to `mod harness;`.

#![allow(dead_code)] // each test file uses a different part

use std::net::SocketAddr;
use std::time::Duration;

use connectors::fake::ok::FakeOk;
use schema::domain::Channel;
use schema::store::{self, NewAccount};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::harness::{Connector, Hub, WAIT, eventually, spawn_hub};

pub const TOKEN: &str = "tkn1.FakeGroupTokenForTests-0f1e2d3c4b5a6978";
pub const WEBHOOK_TOKEN: &str = "4f9c2a7e1b6d3085f7a1c9e2d4b6083a5c7e9f1b2d4f6a8c";

pub struct OkHub {
    pub hub: Hub,
    pub fake: FakeOk,
    /// The OK account.
    pub account_id: Uuid,
}

/// A hub with an OK account (webhook mode unless `settings` say otherwise) whose settings are
/// `settings` plus the fake's `api_url`.
pub async fn spawn_ok_hub(settings: Value) -> OkHub {
    let hub = spawn_hub(json!({})).await;
    let fake = FakeOk::start(TOKEN).await;
    let mut all_settings = json!({ "api_url": fake.api_url(), "poll_timeout_s": 2 });
    all_settings.as_object_mut().unwrap().extend(settings.as_object().unwrap().clone());
    let mut conn = hub.pool.acquire().await.unwrap();
    let account = store::create_account(
        &mut conn,
        &NewAccount {
            channel: Channel::Ok,
            name: "Acme Shop".into(),
            default_queue: "support".into(),
            credentials: json!({ "access_token": TOKEN, "webhook_token": WEBHOOK_TOKEN }),
            settings: all_settings,
        },
    )
    .await
    .unwrap();
    drop(conn);
    OkHub { hub, fake, account_id: account.id }
}

impl OkHub {
    /// A connector serving the OK account, with the webhook route on its own port (given to the
    /// account as its `webhook_url`, unless `config.public_url` is set).
    pub async fn start_connector(&self) -> Connector {
        self.start_connector_with(connectors::Config::default()).await
    }

    pub async fn start_connector_with(&self, config: connectors::Config) -> Connector {
        let runtime = self.hub.runtime(config);
        let stop = tokio_util::sync::CancellationToken::new();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        sqlx::query(
            "UPDATE accounts SET settings = settings || jsonb_build_object('webhook_url', $1::text) WHERE id = $2",
        )
        .bind(self.route(addr))
        .bind(self.account_id)
        .execute(&self.hub.pool)
        .await
        .unwrap();
        let router = runtime.router();
        let serve_stop = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
                .with_graceful_shutdown(async move { serve_stop.cancelled().await })
                .await;
        });
        let task = runtime.spawn_account(self.account_id, stop.clone());
        Connector { stop, task, runtime, addr }
    }

    /// The webhook route of a connector listening at `addr`, without the token.
    pub fn route(&self, addr: SocketAddr) -> String {
        format!("http://{addr}/api/v1/connectors/{}/ok", self.account_id)
    }

    /// The URL OK posts to (with the token).
    pub fn webhook_url(&self, addr: SocketAddr) -> String {
        format!("{}?token={WEBHOOK_TOKEN}", self.route(addr))
    }

    /// Waits until a connector subscribed its webhook at `addr`.
    pub async fn subscribed(&self, addr: SocketAddr) {
        let url = self.webhook_url(addr);
        eventually("the webhook subscribed", WAIT, || async { self.fake.webhooks().contains(&url) }).await;
    }

    /// Waits until a connector polls the fake's updates.
    pub async fn polling(&self) {
        eventually("the long poll", WAIT, || async { self.fake.calls_of("updates").iter().any(|c| c.ok()) }).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    /// The long-poll marker the hub stored.
    pub async fn stored_marker(&self) -> Option<String> {
        let mut conn = self.hub.pool.acquire().await.unwrap();
        store::ok_long_poll_marker(&mut conn, self.account_id).await.unwrap()
    }

    pub async fn count(&self, sql: &'static str) -> i64 {
        self.hub.count(sql).await
    }
}
