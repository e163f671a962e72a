//! The fake Telegram Bot API (`connectors::fake::telegram`) as a process, for the browser tests
//! (`tests/browser/admin.test.mjs`): an account created through the admin panel with this
//! fake's URL as its `api_url` is polled by the hub like the real Telegram.
//!
//! `cargo run --example fake_telegram -- [BOT_TOKEN]` prints two lines and serves until stdin
//! closes (or Ctrl-C):
//!
//! ```text
//! telegram: http://127.0.0.1:PORT/      the Bot API base URL (the account's settings.api_url)
//! control:  http://127.0.0.1:PORT       what the test drives
//! ```
//!
//! Control routes: `GET /calls` (every request the hub made: `[{"method", "status"}]`),
//! `POST /text {"user_id", "first_name", "text"}` (a customer writes to the bot; answers the
//! message id), `GET /sent` (what the bot sent: `[{"chat", "text"}]`).

use std::sync::Arc;

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use connectors::fake::telegram::{FakeTelegram, TgUser};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;

#[derive(Deserialize)]
struct Text {
    user_id: u64,
    first_name: String,
    text: String,
}

#[tokio::main]
async fn main() {
    let token = std::env::args().nth(1).unwrap_or_else(|| "123456:TEST-TOKEN".to_owned());
    let fake = Arc::new(FakeTelegram::start(&token).await);
    let control = Router::new()
        .route(
            "/calls",
            get(|State(fake): State<Arc<FakeTelegram>>| async move {
                let calls: Vec<Value> =
                    fake.calls().iter().map(|c| json!({ "method": c.method, "status": c.status })).collect();
                Json(Value::Array(calls))
            }),
        )
        .route(
            "/sent",
            get(|State(fake): State<Arc<FakeTelegram>>| async move {
                let sent: Vec<Value> = fake.sent().iter().map(|s| json!({ "chat": s.chat, "text": s.text })).collect();
                Json(Value::Array(sent))
            }),
        )
        .route(
            "/text",
            post(|State(fake): State<Arc<FakeTelegram>>, Json(t): Json<Text>| async move {
                let id = fake.text(&TgUser::new(t.user_id, &t.first_name), &t.text);
                Json(json!({ "message_id": id }))
            }),
        )
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the control listener");
    let addr = listener.local_addr().expect("bound address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, control).await;
    });
    println!("telegram: {}", fake.api_url());
    println!("control:  http://{addr}");
    // serve until the parent closes our stdin (or a signal ends us)
    let mut sink = Vec::new();
    let _ = tokio::io::stdin().read_to_end(&mut sink).await;
}
