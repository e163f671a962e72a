//! The fake SMSC.ru (`video::fake_smsc`) as a process, for the browser tests
//! (`tests/browser/video.test.mjs`): the hub's `[video.sms]` points at it and the agent panel's
//! "Link by SMS" goes through it. Every message is reported delivered when the hub next asks.
//!
//! `cargo run --example fake_smsc -- LOGIN PASSWORD` prints two lines and serves until stdin
//! closes (or Ctrl-C):
//!
//! ```text
//! smsc:    http://127.0.0.1:PORT      the API base URL (video.sms.url)
//! control: http://127.0.0.1:PORT      what the test reads
//! ```
//!
//! Control route: `GET /sent` (what was accepted: `[{"id", "phone", "text", "status"}]`).

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use video::fake_smsc::FakeSmsc;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let login = args.next().unwrap_or_else(|| "hub".to_owned());
    let password = args.next().unwrap_or_else(|| "fake-smsc-password".to_owned());
    let fake = FakeSmsc::start(&login, &password).await;
    fake.set_auto_status(Some(1));
    let control = Router::new()
        .route(
            "/sent",
            get(|State(fake): State<FakeSmsc>| async move {
                let sent: Vec<Value> = fake
                    .sent()
                    .iter()
                    .map(|m| json!({ "id": m.id, "phone": m.phone, "text": m.text, "status": m.status }))
                    .collect();
                Json(Value::Array(sent))
            }),
        )
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the control listener");
    let addr = listener.local_addr().expect("bound address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, control).await;
    });
    println!("smsc:    {}", fake.url());
    println!("control: http://{addr}");
    // serve until the parent closes our stdin (or a signal ends us)
    let mut sink = Vec::new();
    let _ = tokio::io::stdin().read_to_end(&mut sink).await;
}
