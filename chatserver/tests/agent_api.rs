//! The agent WebSocket API end to end: the real router on port 0, real PostgreSQL, real
//! ZooKeeper, real WebSocket clients.

mod harness;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use harness::{Client, spawn_app, token};
use schema::store::{self, Ingested};
use serde_json::{Value, json};

fn interaction_id(event: &Value) -> String {
    event["data"]["interaction"]["id"].as_str().expect("event names its interaction").to_owned()
}

#[tokio::test]
async fn a_bad_or_missing_token_gets_401_before_any_upgrade() {
    let app = spawn_app(30_000).await;
    let expired = Client::connect(&app.ws_url(), &token("alice", &[], -300)).await;
    match expired {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 401);
            let body: Value = serde_json::from_slice(response.body().as_deref().unwrap()).unwrap();
            assert_eq!(body["error"]["code"], "token_expired");
        }
        other => panic!("expired token must get 401, got {:?}", other.map(|_| "an open socket")),
    }
    let forged = Client::connect(&app.ws_url(), "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.bad").await;
    assert!(matches!(forged, Err(tokio_tungstenite::tungstenite::Error::Http(r)) if r.status() == 401));
    let anonymous = reqwest::get(format!("http://{}/api/v1/agent/ws", app.addr)).await.unwrap();
    assert_eq!(anonymous.status(), 401);
    // a browser passes the token as a query parameter
    let url = format!("{}?access_token={}", app.ws_url(), token("alice", &[], 60));
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("query token accepted");
    use futures::SinkExt;
    ws.send(tokio_tungstenite::tungstenite::Message::Close(None)).await.unwrap();
}

#[tokio::test]
async fn ten_interactions_two_agents_capacity_three_offered_once_each_and_an_expired_offer_moves_on() {
    let app = spawn_app(1_500).await;
    app.agent("alice", &["support"], 3, &["agent"]).await;
    app.agent("bob", &["support"], 3, &["agent"]).await;
    let mut alice = app.connect("alice", &["agent"]).await;
    let mut bob = app.connect("bob", &["agent"]).await;
    for c in [&mut alice, &mut bob] {
        let r = c.call("agent.set_status", json!({"status": "ready"})).await;
        assert_eq!(r["data"]["status"], "ready", "{r}");
    }
    for i in 0..10 {
        app.inbound(&format!("cust-{i}"), &format!("cust-{i}:1"), "hello").await;
    }
    // phase 1: three offers each, accepted
    let mut offered: HashMap<String, String> = HashMap::new();
    for (name, client) in [("alice", &mut alice), ("bob", &mut bob)] {
        for _ in 0..3 {
            let offer = client.event("interaction.offered").await;
            let id = interaction_id(&offer);
            assert!(offered.insert(id.clone(), name.into()).is_none(), "{id} offered twice");
            let r = client.call("interaction.accept", json!({"interaction_id": id})).await;
            assert_eq!(r["data"]["state"], "assigned", "{r}");
        }
        assert!(client.no_event("interaction.offered", Duration::from_millis(500)).await, "over capacity");
    }
    // phase 2: closing frees slots; the remaining four are offered, none of them again
    for (name, client) in [("alice", &mut alice), ("bob", &mut bob)] {
        let mine: Vec<String> = offered.iter().filter(|(_, a)| *a == name).map(|(i, _)| i.clone()).collect();
        for id in mine {
            let r = client.call("interaction.close", json!({"interaction_id": id, "reason": "resolved"})).await;
            assert_eq!(r["data"]["state"], "closed", "{r}");
        }
    }
    let mut second_round = 0;
    while second_round < 4 {
        for (name, client) in [("alice", &mut alice), ("bob", &mut bob)] {
            if second_round < 4 && !client.no_event("interaction.offered", Duration::from_millis(300)).await {
                let offer = client.event("interaction.offered").await;
                let id = interaction_id(&offer);
                assert!(offered.insert(id.clone(), name.into()).is_none(), "{id} offered twice");
                client.call("interaction.accept", json!({"interaction_id": id})).await;
                second_round += 1;
            }
        }
    }
    assert_eq!(offered.len(), 10, "every interaction offered exactly once");

    // phase 3: bob lets an offer expire: it moves to alice and bob goes not_ready
    for (name, client) in [("alice", &mut alice), ("bob", &mut bob)] {
        let mine: Vec<String> = offered.iter().filter(|(_, a)| *a == name).map(|(i, _)| i.clone()).collect();
        for id in mine {
            client.call("interaction.close", json!({"interaction_id": id})).await;
        }
    }
    let r = alice.call("agent.set_status", json!({"status": "away"})).await;
    assert_eq!(r["ok"], true);
    app.inbound("late", "late:1", "anyone?").await;
    let offer = bob.event("interaction.offered").await;
    let late = interaction_id(&offer);
    let status = bob.event("agent.status").await; // bob's own ready, from before
    let status = if status["data"]["status"] == "ready" { bob.event("agent.status").await } else { status };
    assert_eq!(status["data"]["status"], "not_ready", "{status}");
    assert_eq!(status["data"]["reason"], "offer_expired");
    let expired = bob.event("interaction.offer_expired").await;
    assert_eq!(interaction_id(&expired), late);
    alice.call("agent.set_status", json!({"status": "ready"})).await;
    let moved = alice.event("interaction.offered").await;
    assert_eq!(interaction_id(&moved), late, "the expired offer goes to the next agent");
    let late_accept = bob.call("interaction.accept", json!({"interaction_id": late})).await;
    assert_eq!(late_accept["error"]["code"], "conflict", "{late_accept}");
}

#[tokio::test]
async fn transfer_to_a_queue_and_to_an_agent_with_a_supervisor_monitoring() {
    let app = spawn_app(30_000).await;
    app.agent("alice", &["support"], 3, &["agent"]).await;
    app.agent("bob", &["support"], 3, &["agent"]).await;
    app.agent("sue", &[], 0, &["supervisor"]).await;
    let mut alice = app.connect("alice", &["agent"]).await;
    let mut bob = app.connect("bob", &["agent"]).await;
    let mut sue = app.connect("sue", &["supervisor"]).await;
    alice.call("agent.set_status", json!({"status": "ready"})).await;
    app.inbound("c1", "c1:1", "my parcel is late").await;
    let offer = alice.event("interaction.offered").await;
    let id = interaction_id(&offer);
    alice.call("interaction.accept", json!({"interaction_id": id})).await;

    let overview = sue.call("supervisor.overview", json!({})).await;
    let support = overview["data"]["queues"].as_array().unwrap().iter().find(|q| q["name"] == "support").unwrap();
    assert_eq!(support["assigned"], 1, "{overview}");
    let denied = alice.call("supervisor.overview", json!({})).await;
    assert_eq!(denied["error"]["code"], "forbidden");

    let joined = sue.call("interaction.join", json!({"interaction_id": id, "mode": "monitor"})).await;
    assert_eq!(joined["ok"], true, "{joined}");
    app.inbound("c1", "c1:2", "it was due Monday").await;
    let seen = sue.event("message.new").await;
    assert_eq!(seen["data"]["message"]["text"], "it was due Monday");
    alice.call("message.send", json!({"interaction_id": id, "client_msg_id": "a1", "text": "Checking now"})).await;
    let seen = sue.event("message.new").await;
    assert_eq!(seen["data"]["message"]["text"], "Checking now");
    let muted = sue.call("message.send", json!({"interaction_id": id, "client_msg_id": "s1", "text": "hi"})).await;
    assert_eq!(muted["error"]["code"], "forbidden", "a monitor sends nothing: {muted}");

    // to an agent, with a note
    let moved =
        alice.call("interaction.transfer", json!({"interaction_id": id, "to_agent": "bob", "note": "VIP"})).await;
    assert_eq!(moved["data"]["agent"], "bob", "{moved}");
    let got = bob.event("interaction.transferred").await;
    assert_eq!(got["data"]["note"], "VIP");
    let sue_saw = sue.event("interaction.transferred").await;
    assert_eq!(sue_saw["data"]["to_agent"], "bob");
    let gone = alice.call("message.send", json!({"interaction_id": id, "client_msg_id": "a2", "text": "x"})).await;
    assert_eq!(gone["error"]["code"], "interaction_not_found");

    // to a (manual) queue: an agent of it lists and takes it
    let queued = bob.call("interaction.transfer", json!({"interaction_id": id, "to_queue": "vip"})).await;
    assert_eq!(queued["data"]["state"], "queued", "{queued}");
    assert_eq!(queued["data"]["queue"], "vip");
    app.agent("vera", &["vip"], 2, &["agent"]).await;
    let mut vera = app.connect("vera", &["agent"]).await;
    let list = vera.call("interaction.list_queued", json!({})).await;
    assert_eq!(list["data"]["interactions"][0]["id"], id.as_str(), "{list}");
    let taken = vera.call("interaction.take", json!({"interaction_id": id})).await;
    assert_eq!(taken["data"]["agent"], "vera", "{taken}");
    let again = bob.call("interaction.take", json!({"interaction_id": id})).await;
    assert_eq!(again["error"]["code"], "conflict");
    let both = bob.call("interaction.transfer", json!({"interaction_id": id, "to_agent": "x", "to_queue": "y"})).await;
    assert_eq!(both["error"]["code"], "bad_request");
}

#[tokio::test]
async fn message_send_is_idempotent_on_client_msg_id_and_history_pages_back() {
    let app = spawn_app(30_000).await;
    app.agent("alice", &["support"], 3, &["agent"]).await;
    let mut alice = app.connect("alice", &["agent"]).await;
    alice.call("agent.set_status", json!({"status": "ready"})).await;
    app.inbound("c9", "c9:1", "first").await;
    let id = interaction_id(&alice.event("interaction.offered").await);
    alice.call("interaction.accept", json!({"interaction_id": id})).await;

    let args = json!({"interaction_id": id, "client_msg_id": "m-1", "text": "Hello!"});
    let first = alice.call("message.send", args.clone()).await;
    let second = alice.call("message.send", args).await;
    assert_eq!(first["data"]["status"], "queued", "{first}");
    assert_eq!(first["data"]["id"], second["data"]["id"]);
    assert_eq!(app.count("SELECT count(*) FROM messages WHERE direction = 'out'").await, 1);
    assert_eq!(app.count("SELECT count(*) FROM outbox").await, 1);

    let edited = alice.call("message.edit", json!({"message_id": first["data"]["id"], "text": "Hello again!"})).await;
    assert_eq!(edited["data"]["text"], "Hello again!", "{edited}");
    assert_eq!(alice.event("message.edited").await["data"]["previous_text"], "Hello!");

    let history = alice.call("history.get", json!({"interaction_id": id, "limit": 1})).await;
    assert_eq!(history["ok"], true, "{history}");
    let mut cursor = history["data"]["next_before"].clone();
    let mut texts: Vec<String> = history["data"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_owned())
        .collect();
    while !cursor.is_null() {
        let page = alice.call("history.get", json!({"interaction_id": id, "limit": 1, "before": cursor})).await;
        texts.extend(
            page["data"]["messages"].as_array().unwrap().iter().map(|m| m["text"].as_str().unwrap().to_owned()),
        );
        cursor = page["data"]["next_before"].clone();
    }
    assert_eq!(texts, ["Hello again!", "first"], "newest first, across pages");
}

#[tokio::test]
async fn bad_input_gets_the_documented_error_and_the_socket_stays_usable() {
    let app = spawn_app(30_000).await;
    app.agent("alice", &["support"], 3, &["agent"]).await;
    app.agent("mallory", &["support"], 3, &["agent"]).await;
    let mut alice = app.connect("alice", &["agent"]).await;
    let mut mallory = app.connect("mallory", &["agent"]).await;

    mallory.send_raw("this is not json").await;
    let r = mallory.reply().await;
    assert_eq!(r["ok"], false);
    assert_eq!(r["re"], Value::Null);
    assert_eq!(r["error"]["code"], "bad_request");

    mallory.send_raw(r#"{"id": "x1", "args": {}}"#).await;
    let r = mallory.reply().await;
    assert_eq!((r["re"].as_str(), r["error"]["code"].as_str()), (Some("x1"), Some("bad_request")), "{r}");

    let r = mallory.call("interaction.teleport", json!({})).await;
    assert_eq!(r["error"]["code"], "unknown_command");
    let r = mallory.call("message.send", json!({"text": "no interaction"})).await;
    assert_eq!(r["error"]["code"], "bad_request");
    assert!(r["error"]["message"].as_str().unwrap().contains("interaction_id"), "{r}");
    let r = mallory.call("agent.set_status", json!({"status": "asleep"})).await;
    assert_eq!(r["error"]["code"], "bad_request");
    let r =
        mallory.call("message.send", json!({"interaction_id": "not-a-uuid", "client_msg_id": "1", "text": "x"})).await;
    assert_eq!(r["error"]["code"], "bad_request");

    alice.call("agent.set_status", json!({"status": "ready"})).await;
    app.inbound("c5", "c5:1", "private").await;
    let id = interaction_id(&alice.event("interaction.offered").await);
    alice.call("interaction.accept", json!({"interaction_id": id})).await;
    let r = mallory.call("message.send", json!({"interaction_id": id, "client_msg_id": "m", "text": "hijack"})).await;
    assert_eq!(r["error"]["code"], "interaction_not_found", "{r}");
    let r = mallory.call("history.get", json!({"interaction_id": id})).await;
    assert_eq!(r["error"]["code"], "interaction_not_found");
    let r = mallory.call("interaction.close", json!({"interaction_id": id})).await;
    assert_eq!(r["error"]["code"], "conflict");
    let r = mallory.call("interaction.join", json!({"interaction_id": id, "mode": "monitor"})).await;
    assert_eq!(r["error"]["code"], "forbidden");
    let r = mallory.call("video.start", json!({"interaction_id": id})).await;
    assert_eq!(r["error"]["code"], "video_unavailable");

    // still usable after all of that
    let r = mallory.call("agent.set_status", json!({"status": "away"})).await;
    assert_eq!(r["data"]["status"], "away");
    assert_eq!(app.count("SELECT count(*) FROM messages WHERE direction = 'out'").await, 0);

    // commands before hello
    let mut fresh = Client::connect(&app.ws_url(), &token("alice", &["agent"], 60)).await.unwrap();
    let r = fresh.call("agent.set_status", json!({"status": "ready"})).await;
    assert_eq!(r["error"]["code"], "hello_required");
    let r = fresh.call("hello", json!({"resume_from": 1_000_000})).await;
    assert_eq!(r["error"]["code"], "bad_request");
}

#[tokio::test]
async fn resume_from_replays_every_missed_event_once_in_order() {
    let app = spawn_app(30_000).await;
    app.agent("alice", &["support"], 3, &["agent"]).await;
    let mut alice = app.connect("alice", &["agent"]).await;
    alice.call("agent.set_status", json!({"status": "ready"})).await;
    app.inbound("c7", "c7:0", "hi").await;
    let offer = alice.event("interaction.offered").await;
    let id = interaction_id(&offer);
    alice.call("interaction.accept", json!({"interaction_id": id})).await;
    alice.event("interaction.assigned").await;
    // the conversation so far ("hi"), replayed after the assignment
    let hi = alice.event("message.new").await;
    assert_eq!(hi["data"]["catch_up"], true, "{hi}");
    let last_seen = *alice.seqs.last().unwrap();
    alice.close().await;

    for i in 1..=20 {
        let r = app.inbound("c7", &format!("c7:{i}"), &format!("msg {i}")).await;
        assert!(matches!(r, Ingested::Stored { .. }));
    }
    let mut again = Client::connect(&app.ws_url(), &token("alice", &["agent"], 60)).await.unwrap();
    let hello = again.call("hello", json!({"resume_from": last_seen})).await;
    let last_seq = hello["data"]["last_seq"].as_i64().unwrap();
    assert_eq!(last_seq, last_seen + 20);
    for i in 1..=20 {
        let e = again.event("message.new").await;
        assert_eq!(e["data"]["message"]["text"], format!("msg {i}"));
    }
    let expected: Vec<i64> = (last_seen + 1..=last_seq).collect();
    assert_eq!(again.seqs, expected, "every missed event once, no gap");
    let distinct: HashSet<i64> = again.seqs.iter().copied().collect();
    assert_eq!(distinct.len(), again.seqs.len());
}

#[tokio::test]
async fn who_may_take_close_list_and_retry() {
    let app = spawn_app(30_000).await;
    app.agent("alice", &["support"], 1, &["agent"]).await;
    app.agent("bob", &["support"], 3, &["agent"]).await;
    app.agent("nobody", &[], 3, &["agent"]).await;
    let mut alice = app.connect("alice", &["agent"]).await;
    let mut bob = app.connect("bob", &["agent"]).await;
    let mut nobody = app.connect("nobody", &["agent"]).await;

    let again = alice.call("hello", json!({})).await;
    assert_eq!(again["error"]["code"], "bad_request", "a second hello would skip or repeat events: {again}");

    alice.call("agent.set_status", json!({"status": "ready"})).await;
    app.inbound("k1", "k1:1", "one").await;
    let offered = interaction_id(&alice.event("interaction.offered").await);
    let r = alice.call("interaction.close", json!({"interaction_id": offered})).await;
    assert_eq!(r["error"]["code"], "conflict", "an offer is declined, not closed: {r}");
    alice.call("interaction.accept", json!({"interaction_id": offered})).await;

    app.inbound("k2", "k2:1", "two").await;
    let list = nobody.call("interaction.list_queued", json!({})).await;
    assert_eq!(list["data"]["interactions"], json!([]), "an agent of no queue sees none: {list}");
    let list = bob.call("interaction.list_queued", json!({})).await;
    let waiting = list["data"]["interactions"][0]["id"].as_str().expect("bob serves support").to_owned();
    let r = nobody.call("interaction.take", json!({"interaction_id": waiting})).await;
    assert_eq!(r["error"]["code"], "forbidden", "{r}");
    let r = alice.call("interaction.take", json!({"interaction_id": waiting})).await;
    assert_eq!(r["error"]["code"], "conflict", "alice is at capacity: {r}");
    let r = nobody.call("interaction.list_queued", json!({"queue": "support"})).await;
    assert_eq!(r["error"]["code"], "forbidden");

    // a retry of message.send after a transfer still returns the first message
    let send = json!({"interaction_id": offered, "client_msg_id": "retry-1", "text": "on it"});
    let first = alice.call("message.send", send.clone()).await;
    alice.call("interaction.transfer", json!({"interaction_id": offered, "to_agent": "bob"})).await;
    let retry = alice.call("message.send", send).await;
    assert_eq!(retry["data"]["id"], first["data"]["id"], "{retry}");
    let reuse =
        alice.call("message.send", json!({"interaction_id": waiting, "client_msg_id": "retry-1", "text": "x"})).await;
    assert_eq!(reuse["error"]["code"], "conflict", "{reuse}");
    let r = alice.call("interaction.transfer", json!({"interaction_id": offered, "to_agent": "nobody"})).await;
    assert_eq!(r["error"]["code"], "conflict", "alice no longer holds it: {r}");
}

#[tokio::test]
async fn a_client_that_stops_reading_is_disconnected_not_buffered() {
    let app = spawn_app(30_000).await;
    app.agent("alice", &["support"], 3, &["agent"]).await;
    let mut alice = app.connect("alice", &["agent"]).await;
    alice.call("agent.set_status", json!({"status": "ready"})).await;
    app.inbound("slow", "slow:0", "hi").await;
    let id = interaction_id(&alice.event("interaction.offered").await);
    alice.call("interaction.accept", json!({"interaction_id": id})).await;

    // alice stops reading while the customer sends far more than the socket buffers hold
    let big = "x".repeat(16 * 1024);
    for i in 1..=1500 {
        app.inbound("slow", &format!("slow:{i}"), &big).await;
    }
    let (received, close) = alice.read_until_closed().await;
    assert_eq!(close, Some(chatserver::session::CLOSE_SLOW_CLIENT), "closed as a slow client after {received} frames");
    assert!(received < 1500, "the server stopped instead of buffering ({received} frames)");
    // nothing is lost: a new socket resumes from the last event it got
    assert_eq!(app.count("SELECT count(*) FROM messages").await, 1501);
}

#[tokio::test]
async fn typing_and_read_marks_check_who_may_and_a_read_is_stored_once() {
    let app = spawn_app(30_000).await;
    app.agent("alice", &["support"], 3, &["agent"]).await;
    app.agent("bob", &["support"], 3, &["agent"]).await;
    app.agent("sue", &[], 0, &["supervisor"]).await;
    let mut alice = app.connect("alice", &["agent"]).await;
    let mut bob = app.connect("bob", &["agent"]).await;
    let mut sue = app.connect("sue", &["supervisor"]).await;
    alice.call("agent.set_status", json!({"status": "ready"})).await;
    let message_id = |ingested: Ingested| match ingested {
        Ingested::Stored { message, .. } => message.id.to_string(),
        other => panic!("not stored: {other:?}"),
    };
    let first = message_id(app.inbound("c1", "c1:1", "hello").await);
    let id = interaction_id(&alice.event("interaction.offered").await);
    alice.call("interaction.accept", json!({"interaction_id": id})).await;
    let second = message_id(app.inbound("c1", "c1:2", "still there?").await);
    sue.call("interaction.join", json!({"interaction_id": id, "mode": "monitor"})).await;

    // the assigned agent may; on a channel that cannot show typing it is accepted and ignored
    let typing = alice.call("interaction.typing", json!({"interaction_id": id})).await;
    assert_eq!(typing["data"], json!({}), "{typing}");
    let stop = alice.call("interaction.typing", json!({"interaction_id": id, "typing": false})).await;
    assert_eq!(stop["ok"], true, "{stop}");

    // who may not, and bad arguments
    let code = |reply: Value| reply["error"]["code"].as_str().unwrap_or("ok").to_owned();
    let unknown = "0196a1b2-7c3d-7e4f-8a5b-6c7d8e9f0a1b";
    let cases = [
        ("bob", "interaction.typing", json!({"interaction_id": id}), "interaction_not_found"),
        ("bob", "message.read", json!({"interaction_id": id, "up_to": second}), "interaction_not_found"),
        ("sue", "interaction.typing", json!({"interaction_id": id}), "forbidden"),
        ("sue", "message.read", json!({"interaction_id": id, "up_to": second}), "forbidden"),
        ("alice", "interaction.typing", json!({"interaction_id": unknown}), "interaction_not_found"),
        ("alice", "message.read", json!({"interaction_id": unknown, "up_to": second}), "interaction_not_found"),
        ("alice", "message.read", json!({"interaction_id": id, "up_to": unknown}), "message_not_found"),
        ("alice", "message.read", json!({"interaction_id": id}), "bad_request"),
        ("alice", "interaction.typing", json!({"interaction_id": id, "typing": "yes"}), "bad_request"),
        ("alice", "interaction.typing", json!({"interaction_id": id, "until": 5}), "bad_request"),
    ];
    for (who, cmd, args, want) in cases {
        let client = match who {
            "bob" => &mut bob,
            "sue" => &mut sue,
            _ => &mut alice,
        };
        let reply = client.call(cmd, args.clone()).await;
        assert_eq!(code(reply.clone()), want, "{cmd} {args}: {reply}");
    }

    // up to the first message: only it becomes read; the audience hears it once
    let read = alice.call("message.read", json!({"interaction_id": id, "up_to": first})).await;
    assert_eq!(read["data"]["read"], json!([first]), "{read}");
    let event = alice.event("message.read").await;
    assert_eq!(event["data"]["message_ids"], json!([first]));
    assert_eq!(sue.event("message.read").await["data"], event["data"], "a monitoring supervisor sees it");
    let status = |id: String| {
        let pool = app.pool.clone();
        async move {
            sqlx::query_scalar::<_, String>("SELECT status FROM messages WHERE id = $1::uuid")
                .bind(id)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    assert_eq!(status(first.clone()).await, "read");
    assert_eq!(status(second.clone()).await, "received");
    let read = alice.call("message.read", json!({"interaction_id": id, "up_to": second})).await;
    assert_eq!(read["data"]["read"], json!([second]), "{read}");
    let again = alice.call("message.read", json!({"interaction_id": id, "up_to": second})).await;
    assert_eq!(again["data"]["read"], json!([]), "idempotent: {again}");
    assert_eq!(app.count("SELECT count(*) FROM interaction_events WHERE kind = 'message.read'").await, 2);
    assert_eq!(app.count("SELECT count(*) FROM interaction_events WHERE kind = 'interaction.typing'").await, 0);
    let history = alice.call("history.get", json!({"interaction_id": id})).await;
    let kinds: Vec<&str> =
        history["data"]["events"].as_array().unwrap().iter().filter_map(|e| e["event"]["kind"].as_str()).collect();
    assert!(kinds.contains(&"message.read"), "{history}");

    // closed: nobody writes into it any more
    alice.call("interaction.close", json!({"interaction_id": id})).await;
    let closed = alice.call("message.read", json!({"interaction_id": id, "up_to": second})).await;
    assert_eq!(code(closed), "interaction_not_found");
}

#[tokio::test]
async fn the_accepting_agent_gets_what_the_customer_wrote_while_it_waited() {
    let app = spawn_app(30_000).await;
    app.agent("alice", &["support"], 3, &["agent"]).await;
    let mut alice = app.connect("alice", &["agent"]).await;
    // alice is not ready: the customer's messages wait in the queue, in nobody's stream
    let written = ["hello", "is anyone there?", "order 42 never came"];
    for (i, text) in written.iter().enumerate() {
        app.inbound("waiting", &format!("waiting:{i}"), text).await;
    }
    alice.call("agent.set_status", json!({"status": "ready"})).await;
    let id = interaction_id(&alice.event("interaction.offered").await);
    let accepted = alice.call("interaction.accept", json!({"interaction_id": id})).await;
    assert_eq!(accepted["ok"], true, "{accepted}");
    let assigned = alice.event("interaction.assigned").await;
    let mut last_seq = assigned["seq"].as_i64().unwrap();
    let mut replayed = Vec::new();
    for _ in written {
        let event = alice.event("message.new").await;
        assert_eq!(event["data"]["catch_up"], true, "{event}");
        assert_eq!(event["data"]["message"]["interaction_id"], json!(id), "{event}");
        let seq = event["seq"].as_i64().unwrap();
        assert!(seq > last_seq, "after the assignment, oldest first: {event}");
        last_seq = seq;
        replayed.push(event["data"]["message"]["text"].as_str().unwrap().to_owned());
    }
    assert_eq!(replayed, written, "the whole conversation, in order");
    // from now on messages come live, without the flag
    app.inbound("waiting", "waiting:9", "thanks").await;
    let live = alice.event("message.new").await;
    assert_eq!(live["data"]["message"]["text"], "thanks");
    assert!(live["data"].get("catch_up").is_none(), "{live}");
}

/// A token whose claims break the input rules, or used before its `nbf`, is refused at the
/// handshake with 401 `invalid_token` (not 503, which would tell the client to retry), and no
/// agent is created for it.
#[tokio::test]
async fn tokens_with_bad_claims_or_before_nbf_get_401_invalid_token() {
    let app = spawn_app(30_000).await;
    let now = chrono::Utc::now().timestamp();
    let sign = |claims: Value| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(harness::SECRET.as_bytes()),
        )
        .unwrap()
    };
    let long = "x".repeat(10_000);
    let cases = [
        ("NUL in sub", json!({"sub": "ali\u{0}ce", "exp": now + 60})),
        ("control character in sub", json!({"sub": "ali\u{1b}[2Jce", "exp": now + 60})),
        ("10,000-character sub", json!({"sub": long, "exp": now + 60})),
        ("NUL in name", json!({"sub": "alice", "name": "Al\u{0}ice", "exp": now + 60})),
        ("line break in name", json!({"sub": "alice", "name": "Al\nice", "exp": now + 60})),
        ("before nbf", json!({"sub": "alice", "exp": now + 600, "nbf": now + 300})),
    ];
    for (what, claims) in cases {
        match Client::connect(&app.ws_url(), &sign(claims)).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 401, "{what}");
                let body: Value = serde_json::from_slice(response.body().as_deref().unwrap()).unwrap();
                assert_eq!(body["error"]["code"], "invalid_token", "{what}: {body}");
                assert!(!body.to_string().contains('\u{0}'), "{what}: the claim is not echoed raw: {body}");
            }
            other => panic!("{what}: must get 401, got {:?}", other.map(|_| "an open socket")),
        }
    }
    assert_eq!(app.count("SELECT count(*) FROM agents").await, 0, "no agent was created");
    let ok = Client::connect(&app.ws_url(), &sign(json!({"sub": "alice", "exp": now + 60, "nbf": now - 5}))).await;
    assert!(ok.is_ok(), "a token past its nbf is accepted");
}

#[tokio::test]
async fn a_live_video_call_counts_in_capacity_and_follows_interaction_transfer() {
    let app = spawn_app(30_000).await;
    app.agent("alice", &["support"], 2, &["agent"]).await;
    app.agent("bob", &["support"], 2, &["agent"]).await;
    let mut alice = app.connect("alice", &["agent"]).await;
    let mut bob = app.connect("bob", &["agent"]).await;
    alice.call("agent.set_status", json!({"status": "ready"})).await;
    app.inbound("c1", "c1:1", "can we talk on video?").await;
    let id = interaction_id(&alice.event("interaction.offered").await);
    alice.call("interaction.accept", json!({"interaction_id": id})).await;
    // alice starts a call (as the video node does for POST /api/v1/video/rooms)
    let (new, _) = store::NewRoom::with_new_link(
        id.parse().unwrap(),
        "alice",
        "Alice",
        schema::domain::VideoMode::TwoWay,
        schema::domain::VideoQuality::P720,
        "https://hub.example.com",
        Duration::from_secs(3600),
    );
    let mut tx = app.pool.begin().await.unwrap();
    let room = store::start_room(&mut tx, &new).await.unwrap().room;
    tx.commit().await.unwrap();
    app.coord.notify(schema::topics::ROUTING);

    // one chat and the call (weight 1) fill alice's capacity of 2: the next chat waits
    app.inbound("c2", "c2:1", "hello?").await;
    assert!(alice.no_event("interaction.offered", Duration::from_millis(1500)).await, "offered beyond capacity");

    // the chat goes to bob, and its call with it
    let moved = alice.call("interaction.transfer", json!({"interaction_id": id, "to_agent": "bob"})).await;
    assert_eq!(moved["data"]["agent"], "bob", "{moved}");
    let handed = bob.event("video.room").await;
    assert_eq!(
        (handed["data"]["state"].as_str(), handed["data"]["from_agent"].as_str(), handed["data"]["to_agent"].as_str()),
        (Some("transferred"), Some("alice"), Some("bob")),
        "{handed}"
    );
    assert_eq!(handed["data"]["room_id"], room.id.to_string());
    let now = store::load_room(&mut app.pool.acquire().await.unwrap(), room.id).await.unwrap();
    assert_eq!(now.agent, "bob", "bob joins the call as its agent now; alice's join is refused");
    // alice's capacity is free again: the waiting chat is offered to her
    let offered = alice.event("interaction.offered").await;
    assert_ne!(interaction_id(&offered), id);
    // through a queue: the call goes to whoever takes the chat
    let queued = bob.call("interaction.transfer", json!({"interaction_id": id, "to_queue": "vip"})).await;
    assert_eq!(queued["data"]["state"], "queued", "{queued}");
    let still = store::load_room(&mut app.pool.acquire().await.unwrap(), room.id).await.unwrap();
    assert_eq!(still.agent, "bob", "a queued chat's call waits with it");
    app.agent("vera", &["vip"], 2, &["agent"]).await;
    let mut vera = app.connect("vera", &["agent"]).await;
    let taken = vera.call("interaction.take", json!({"interaction_id": id})).await;
    assert_eq!(taken["data"]["agent"], "vera", "{taken}");
    let handed = vera.event("video.room").await;
    assert_eq!(
        (handed["data"]["from_agent"].as_str(), handed["data"]["to_agent"].as_str()),
        (Some("bob"), Some("vera"))
    );
    let now = store::load_room(&mut app.pool.acquire().await.unwrap(), room.id).await.unwrap();
    assert_eq!(now.agent, "vera");
}
