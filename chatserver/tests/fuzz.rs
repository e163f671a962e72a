//! Generated agent frames on a real socket, real database: text that is not JSON, JSON that is
//! not a request, and requests for every command with `args` built from the commands' field
//! names (hostile strings, wrong types, deep nesting, the ids of a real interaction and
//! message now and then so commands get past their lookups). Every frame gets exactly one
//! reply, none is `internal`, and the socket stays open. A short run is part of the suite; the
//! long run is `#[ignore]`d (see `testenv::fuzz`).

mod harness;

use chatserver::commands::COMMANDS;
use harness::spawn_app;
use serde_json::{Value, json};
use testenv::fuzz::{self, Gen};

const ARG_KEYS: &[&str] = &[
    "interaction_id",
    "message_id",
    "customer_id",
    "account_id",
    "client_msg_id",
    "text",
    "file_ids",
    "keyboard",
    "reply_to",
    "status",
    "reason",
    "to_agent",
    "to_queue",
    "note",
    "queue",
    "limit",
    "mode",
    "customer",
    "external_id",
    "phone",
    "message",
    "resume_from",
    "before",
    "up_to",
    "typing",
    "quality",
    "type",
    "rows",
    "data",
    "request_phone",
    "contact",
    "location",
    "lat",
    "lon",
    "address",
    "sticker",
    "sticker_id",
    "file_id",
    "forward",
    "name",
];

fn frame(g: &mut Gen, ids: &[String]) -> String {
    match g.below(10) {
        0 => g.string(40),
        1 => g.json(ARG_KEYS, 3).to_string(),
        2 => {
            g.mutate(r#"{"id":"x","cmd":"message.send","args":{"interaction_id":"0","client_msg_id":"c","text":"hi"}}"#)
        }
        _ => {
            let cmd = if g.chance(90) { g.pick(COMMANDS).to_owned() } else { g.string(12) };
            let mut args = g.json(ARG_KEYS, 3);
            if let Value::Object(map) = &mut args {
                for key in ["interaction_id", "message_id", "up_to", "reply_to", "customer_id", "account_id"] {
                    if g.chance(20) {
                        map.insert(key.to_owned(), Value::String(ids[g.below(ids.len())].clone()));
                    }
                }
                if g.chance(30) {
                    map.insert("client_msg_id".into(), Value::String(format!("f-{}", g.below(1_000_000))));
                }
            } else if g.chance(70) {
                args = json!({});
            }
            let id = if g.chance(95) { Value::String(format!("q{}", g.below(1 << 30))) } else { g.json(&[], 1) };
            json!({"id": id, "cmd": cmd, "args": args}).to_string()
        }
    }
}

async fn walk(name: &str, count: u64) {
    let app = spawn_app(30_000).await;
    app.agent("alice", &["support"], 3, &["agent", "supervisor"]).await;
    let mut alice = app.connect("alice", &["agent", "supervisor"]).await;
    alice.call("agent.set_status", json!({"status": "ready"})).await;
    app.inbound("fuzzed", "fuzzed:0", "hi").await;
    let offered = alice.event("interaction.offered").await;
    let interaction = offered["data"]["interaction"]["id"].as_str().unwrap().to_owned();
    alice.call("interaction.accept", json!({"interaction_id": interaction})).await;
    let sent = alice
        .call("message.send", json!({"interaction_id": interaction, "client_msg_id": "seed", "text": "hello"}))
        .await;
    let message = sent["data"]["id"].as_str().unwrap().to_owned();
    let account = offered["data"]["interaction"]["account_id"].as_str().unwrap().to_owned();
    let customer = offered["data"]["interaction"]["customer"]["id"].as_str().unwrap().to_owned();
    let ids = [interaction, message, account, customer, uuid::Uuid::now_v7().to_string(), "not-a-uuid".to_owned()];

    let mut codes = std::collections::BTreeMap::new();
    let mut generator = Gen::new(11);
    let started = std::time::Instant::now();
    for _ in 0..count {
        let text = frame(&mut generator, &ids);
        alice.send_raw(&text).await;
        let reply = alice.reply().await;
        let code = reply["error"]["code"].as_str().unwrap_or("ok").to_owned();
        assert_ne!(code, "internal", "{text}: {reply}");
        assert!(reply.get("re").is_some() && reply["ok"].is_boolean(), "{text}: {reply}");
        *codes.entry(code).or_insert(0u64) += 1;
    }
    let report = fuzz::Report { inputs: count, elapsed: started.elapsed() };
    eprintln!("fuzz {name}: {report}; replies by code {codes:?}");
    let still = alice.call("supervisor.overview", json!({})).await;
    assert_eq!(still["ok"], true, "the socket still serves: {still}");
}

#[tokio::test]
async fn generated_frames_get_one_reply_each_and_no_internal_error() {
    walk("agent frames", 1_500).await;
}

#[tokio::test]
#[ignore = "long run: FUZZ_INPUTS=<n> cargo test -p chatserver --test fuzz -- --ignored --nocapture"]
async fn long_run_generated_frames() {
    walk("agent frames (long)", fuzz::inputs(100_000)).await;
}
