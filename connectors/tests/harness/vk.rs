//! A hub with a VK account pointed at the fake VK API: the Telegram harness's hub (the real
//! chatserver and file server, a fresh database, the real ZooKeeper; its Telegram account stays
//! idle) plus a VK community account, and connectors for it with the webhook route on a port of
//! their own. Included with `#[path]` next to `mod harness;`.

#![allow(dead_code)] // each test file uses a different part

use std::time::Duration;

use connectors::fake::vk::FakeVk;
use schema::domain::Channel;
use schema::store::{self, NewAccount};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::harness::{Connector, Hub, WAIT, eventually, spawn_hub};

pub const TOKEN: &str = "vk1.a.FakeCommunityTokenForTests-7f6a5b4c3d2e1f0a";
pub const GROUP: i64 = 231_000_555;
pub const CALLBACK_SECRET: &str = "cb-Secret-17";

pub struct VkHub {
    pub hub: Hub,
    pub fake: FakeVk,
    /// The VK account.
    pub account_id: Uuid,
}

/// A hub with a VK account (long poll unless `settings` say otherwise) whose settings are
/// `settings` plus the fake's `api_url` and the group.
pub async fn spawn_vk_hub(settings: Value) -> VkHub {
    let hub = spawn_hub(json!({})).await;
    let fake = FakeVk::start(TOKEN, GROUP).await;
    let mut all_settings = json!({ "api_url": fake.api_url(), "group_id": GROUP, "wait_s": 2 });
    all_settings.as_object_mut().unwrap().extend(settings.as_object().unwrap().clone());
    let mut conn = hub.pool.acquire().await.unwrap();
    let account = store::create_account(
        &mut conn,
        &NewAccount {
            channel: Channel::Vk,
            name: "Acme Shop".into(),
            default_queue: "support".into(),
            credentials: json!({ "access_token": TOKEN, "callback_secret": CALLBACK_SECRET }),
            settings: all_settings,
        },
    )
    .await
    .unwrap();
    drop(conn);
    VkHub { hub, fake, account_id: account.id }
}

impl VkHub {
    /// A connector serving the VK account, with the webhook route on its own port.
    pub async fn start_connector(&self) -> Connector {
        let runtime = self.hub.runtime(connectors::Config::default());
        let stop = tokio_util::sync::CancellationToken::new();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = runtime.router();
        let serve_stop = stop.clone();
        tokio::spawn(async move {
            let _ =
                axum::serve(listener, router).with_graceful_shutdown(async move { serve_stop.cancelled().await }).await;
        });
        let task = runtime.spawn_account(self.account_id, stop.clone());
        Connector { stop, task, runtime, addr }
    }

    /// The webhook route of a connector listening at `addr`.
    pub fn webhook_url(&self, addr: std::net::SocketAddr) -> String {
        format!("http://{addr}/api/v1/connectors/{}/vk", self.account_id)
    }

    /// Waits until a connector polls the fake's long poll (it asked for the server).
    pub async fn polling(&self) {
        eventually("groups.getLongPollServer", WAIT, || async {
            self.fake.calls_of("groups.getLongPollServer").iter().any(|c| c.ok())
        })
        .await;
        // the check itself follows the answer at once
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    /// The long-poll position the hub stored.
    pub async fn stored_ts(&self) -> Option<String> {
        let mut conn = self.hub.pool.acquire().await.unwrap();
        store::vk_long_poll_ts(&mut conn, self.account_id).await.unwrap()
    }

    pub async fn count(&self, sql: &'static str) -> i64 {
        self.hub.count(sql).await
    }
}
