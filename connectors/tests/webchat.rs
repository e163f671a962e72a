//! The web chat channel end to end: real customer sockets against the connector runtime, the
//! real chatserver and file server, and real agent sockets.

mod harness;

use std::net::SocketAddr;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use harness::{Hub, WAIT, spawn_hub};
use schema::domain::Channel;
use schema::store::{self, NewAccount};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const SHOP: &str = "http://shop.example";

struct Webchat {
    hub: Hub,
    account_id: Uuid,
    addr: SocketAddr,
    stop: CancellationToken,
}

impl Drop for Webchat {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A hub with a web chat account (`settings` added to its own) served by a connector runtime
/// on its own port.
async fn webchat(settings: Value) -> Webchat {
    webchat_on(settings, false).await
}

/// Like [`webchat`]; with `own_session`, the connector runtime has its own ZooKeeper session,
/// as a separate process would: what the chatserver rings reaches it only through ZooKeeper.
async fn webchat_on(settings: Value, own_session: bool) -> Webchat {
    let hub = spawn_hub(json!({})).await;
    let mut all = json!({ "allowed_origins": [SHOP], "title": "Shop" });
    all.as_object_mut().unwrap().extend(settings.as_object().unwrap().clone());
    let mut conn = hub.pool.acquire().await.unwrap();
    let account = store::create_account(
        &mut conn,
        &NewAccount {
            channel: Channel::Webchat,
            name: "shop chat".into(),
            default_queue: "support".into(),
            credentials: json!({}),
            settings: all,
        },
    )
    .await
    .unwrap();
    drop(conn);
    let runtime = if own_session {
        let config = connectors::Config { fileserver_url: format!("http://{}", hub.addr), ..Default::default() };
        let coord = harness::zk(&hub.zk_root).await;
        connectors::Runtime::new(hub.pool.clone(), coord, config, Some(ops::config::Secret::new(harness::SECRET)))
    } else {
        hub.runtime(connectors::Config::default())
    };
    let stop = CancellationToken::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = runtime.router();
    let serving = stop.clone();
    tokio::spawn(async move {
        axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(async move { serving.cancelled().await })
            .await
            .unwrap();
    });
    runtime.spawn_account(account.id, stop.clone());
    Webchat { hub, account_id: account.id, addr, stop }
}

struct Customer {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    hello: Value,
}

impl Webchat {
    fn url(&self, token: Option<&str>) -> String {
        let mut url = format!("ws://{}/api/v1/webchat/ws?key={}", self.addr, self.account_id);
        if let Some(token) = token {
            url.push_str(&format!("&token={token}"));
        }
        url
    }

    async fn try_connect(&self, origin: &str, token: Option<&str>) -> Result<Customer, tungstenite::Error> {
        let mut request = self.url(token).into_client_request().unwrap();
        request.headers_mut().insert("Origin", origin.parse().unwrap());
        let (ws, _) = tokio_tungstenite::connect_async(request).await?;
        let mut customer = Customer { ws, hello: Value::Null };
        customer.hello = customer.frame("hello").await;
        Ok(customer)
    }

    async fn customer(&self, token: Option<&str>) -> Customer {
        self.try_connect(SHOP, token).await.expect("the customer connects")
    }

    async fn inbound(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM messages WHERE direction = 'in' AND account_id = $1")
            .bind(self.account_id)
            .fetch_one(&self.hub.pool)
            .await
            .unwrap()
    }
}

impl Customer {
    fn token(&self) -> String {
        self.hello["token"].as_str().unwrap().to_owned()
    }

    async fn send(&mut self, frame: Value) {
        self.ws.send(Message::Text(frame.to_string().into())).await.unwrap();
    }

    /// The next frame of type `kind` (others are skipped).
    async fn frame(&mut self, kind: &str) -> Value {
        self.frame_where(kind, |_| true).await
    }

    async fn frame_where(&mut self, kind: &str, check: impl Fn(&Value) -> bool) -> Value {
        let until = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(until, self.ws.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    if v["type"] == kind && check(&v) {
                        return v;
                    }
                }
                Ok(Some(Ok(_))) => {}
                other => panic!("no {kind} frame: {other:?}"),
            }
        }
    }

    async fn say(&mut self, id: &str, text: &str) -> Value {
        self.send(json!({ "type": "message", "client_msg_id": id, "text": text })).await;
        self.frame_where("ack", |v| v["client_msg_id"] == id).await
    }

    /// The message frame whose text is `text`.
    async fn shown(&mut self, text: &str) -> Value {
        self.frame_where("message", |v| v["message"]["text"] == text).await["message"].clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_and_an_agent_talk_and_a_reply_to_an_offline_customer_waits_for_the_reconnect() {
    let chat = webchat(json!({"branding": {"primary": "#8a1c1c", "company_name": "Shop"}})).await;
    let mut alice = chat.hub.ready_agent("alice").await;
    let mut customer = chat.customer(None).await;
    assert_eq!(customer.hello["title"], "Shop");
    assert_eq!(customer.hello["primary"], "#8a1c1c", "the branding's colour reaches the widget");
    assert_eq!(customer.hello["max_file_bytes"], 10 * 1024 * 1024);
    let customer_id = customer.hello["customer"]["id"].as_str().unwrap().to_owned();

    let ack = customer.say("m1", "is my parcel on its way?").await;
    let first_id = ack["message_id"].clone();
    let shown = customer.shown("is my parcel on its way?").await;
    assert_eq!(shown["id"], first_id);
    assert_eq!(shown["direction"], "in");

    let interaction = chat.hub.accept_next(&mut alice).await;
    let reply = alice
        .call("message.send", json!({"interaction_id": interaction, "client_msg_id": "a1", "text": "Yes, tomorrow."}))
        .await;
    assert_eq!(reply["ok"], true, "{reply}");
    let seen = customer.shown("Yes, tomorrow.").await;
    assert_eq!(seen["direction"], "out");
    assert_eq!(seen["author"]["name"], "Agent alice");
    alice.event_where("message.status", |d| d["message"]["status"] == "sent").await;
    customer.send(json!({"type": "read"})).await;
    let read = alice.event_where("message.status", |d| d["message"]["status"] == "read").await;
    assert_eq!(read["data"]["message"]["text"], "Yes, tomorrow.");

    // a file from the customer: announced, then the bytes
    let bytes = b"%PDF-1.4 receipt".to_vec();
    customer
        .send(json!({"type": "file", "client_msg_id": "f1", "name": "receipt.pdf", "mime": "application/pdf", "size": bytes.len()}))
        .await;
    customer.ws.send(Message::Binary(bytes.clone().into())).await.unwrap();
    customer.frame_where("ack", |v| v["client_msg_id"] == "f1").await;
    let new = alice.event_where("message.new", |d| d["message"]["kind"] == "document").await;
    let file = &new["data"]["message"]["files"][0];
    assert_eq!(file["name"], "receipt.pdf");
    let (status, got, _) = chat.hub.download(file["url"].as_str().unwrap()).await;
    assert_eq!((status, got), (200, bytes));

    // the customer leaves; a reply waits, queued
    let token = customer.token();
    drop(customer);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let queued = alice
        .call("message.send", json!({"interaction_id": interaction, "client_msg_id": "a2", "text": "Are you there?"}))
        .await;
    let queued_id = queued["data"]["id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let status: String = sqlx::query_scalar("SELECT status FROM messages WHERE id = $1")
        .bind(Uuid::parse_str(&queued_id).unwrap())
        .fetch_one(&chat.hub.pool)
        .await
        .unwrap();
    assert_eq!(status, "queued", "nobody to deliver to");

    // back with the token: the same customer, the whole conversation, the waiting reply delivered
    let mut back = chat.customer(Some(&token)).await;
    assert_eq!(back.hello["customer"]["id"], customer_id.as_str());
    back.shown("is my parcel on its way?").await;
    back.shown("Yes, tomorrow.").await;
    back.shown("Are you there?").await;
    alice
        .event_where("message.status", |d| d["message"]["id"] == queued_id.as_str() && d["message"]["status"] == "sent")
        .await;

    // a resend after a lost ack is the same message, not a new one
    let before = chat.inbound().await;
    let again = back.say("m1", "is my parcel on its way?").await;
    assert_eq!(again["message_id"], first_id);
    assert_eq!(chat.inbound().await, before);
}

/// The customer's signal version (`webchat_signals`), 0 before any.
async fn signal_version(chat: &Webchat, customer: &str) -> i64 {
    sqlx::query_scalar("SELECT version FROM webchat_signals WHERE account_id = $1 AND external_id = $2")
        .bind(chat.account_id)
        .bind(customer)
        .fetch_optional(&chat.hub.pool)
        .await
        .unwrap()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_side_sees_the_other_typing_and_the_customer_sees_their_messages_read() {
    // the connector in its own ZooKeeper session: the agent's typing and read marks cross
    // processes through the `webchat/<account>` doorbell and PostgreSQL
    let chat = webchat_on(json!({}), true).await;
    let mut alice = chat.hub.ready_agent("alice").await;
    let mut customer = chat.customer(None).await;
    let customer_id = customer.hello["customer"]["id"].as_str().unwrap().to_owned();
    let first = customer.say("m1", "hello?").await["message_id"].as_str().unwrap().to_owned();
    let interaction = chat.hub.accept_next(&mut alice).await;

    // the customer types: the agent gets interaction.typing (not in the history)
    customer.send(json!({"type": "typing"})).await;
    let typing = alice.event("interaction.typing").await;
    assert_eq!(typing["data"]["interaction_id"], interaction.as_str(), "{typing}");
    assert_eq!(typing["data"]["author"]["kind"], "customer", "{typing}");
    assert!(typing["data"]["expires_at"].as_str() > typing["data"]["at"].as_str(), "{typing}");
    let logged: i64 = sqlx::query_scalar("SELECT count(*) FROM interaction_events WHERE kind = 'interaction.typing'")
        .fetch_one(&chat.hub.pool)
        .await
        .unwrap();
    assert_eq!(logged, 0, "typing is not history");

    // the agent types: the widget shows who
    let ok = alice.call("interaction.typing", json!({"interaction_id": interaction})).await;
    assert_eq!(ok, json!({"re": ok["re"], "ok": true, "data": {}}));
    let shown = customer.frame_where("typing", |f| f["typing"] == true).await;
    assert_eq!(shown["name"], "Agent alice");
    assert!(shown["expires_in_ms"].as_i64().unwrap() > 0, "{shown}");

    // repeated hints within the coalescing window change nothing (the last one is made recent
    // by moving it into the future, so the check does not depend on the test's speed)
    sqlx::query("UPDATE webchat_signals SET typing_at = now() + interval '1 hour' WHERE external_id = $1")
        .bind(&customer_id)
        .execute(&chat.hub.pool)
        .await
        .unwrap();
    let before = signal_version(&chat, &customer_id).await;
    for _ in 0..5 {
        let again = alice.call("interaction.typing", json!({"interaction_id": interaction})).await;
        assert_eq!(again["ok"], true, "{again}");
    }
    assert_eq!(signal_version(&chat, &customer_id).await, before, "coalesced: nothing stored, nobody rung");
    sqlx::query("UPDATE webchat_signals SET typing_at = now() - interval '1 hour' WHERE external_id = $1")
        .bind(&customer_id)
        .execute(&chat.hub.pool)
        .await
        .unwrap();
    alice.call("interaction.typing", json!({"interaction_id": interaction})).await;
    assert_eq!(signal_version(&chat, &customer_id).await, before + 1, "a stale hint is refreshed");

    // a message from the agent ends the hint; the next hint shows again at once, however recent
    // the last one was
    sqlx::query("UPDATE webchat_signals SET typing_at = now() - interval '1 second' WHERE external_id = $1")
        .bind(&customer_id)
        .execute(&chat.hub.pool)
        .await
        .unwrap();
    let sent = alice
        .call("message.send", json!({"interaction_id": interaction, "client_msg_id": "a1", "text": "One moment"}))
        .await;
    assert_eq!(sent["ok"], true, "{sent}");
    customer.shown("One moment").await;
    let mut conn = chat.hub.pool.acquire().await.unwrap();
    let signal = store::customer_signal(&mut conn, chat.account_id, &customer_id).await.unwrap().unwrap();
    assert_eq!(signal.typing, None, "answered: no longer typing");
    drop(conn);
    alice.call("interaction.typing", json!({"interaction_id": interaction})).await;
    customer.frame_where("typing", |f| f["typing"] == true).await;

    // stopping clears it at once
    let stop = alice.call("interaction.typing", json!({"interaction_id": interaction, "typing": false})).await;
    assert_eq!(stop["ok"], true, "{stop}");
    customer.frame_where("typing", |f| f["typing"] == false).await;

    // the agent reads up to the second message: both become read in the widget
    let second = customer.say("m2", "anyone there?").await["message_id"].as_str().unwrap().to_owned();
    alice.event_where("message.new", |d| d["message"]["id"] == second.as_str()).await;
    let read = alice.call("message.read", json!({"interaction_id": interaction, "up_to": second})).await;
    assert_eq!(read["ok"], true, "{read}");
    let mut marked: Vec<String> =
        read["data"]["read"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect();
    marked.sort();
    let mut want = vec![first.clone(), second.clone()];
    want.sort();
    assert_eq!(marked, want, "{read}");
    let event = alice.event("message.read").await;
    assert_eq!(event["data"]["agent"], "alice");
    assert_eq!(event["data"]["up_to"], second.as_str());
    for id in [&first, &second] {
        let m = customer.frame_where("message", |f| f["message"]["id"] == id.as_str()).await;
        assert_eq!(m["message"]["status"], "read", "{m}");
    }
    let statuses: Vec<String> = sqlx::query_scalar(
        "SELECT status FROM messages WHERE account_id = $1 AND direction = 'in' ORDER BY created_at",
    )
    .bind(chat.account_id)
    .fetch_all(&chat.hub.pool)
    .await
    .unwrap();
    assert_eq!(statuses, ["read", "read"]);

    // idempotent: again marks nothing and tells nobody
    let again = alice.call("message.read", json!({"interaction_id": interaction, "up_to": second})).await;
    assert_eq!(again["data"]["read"], json!([]), "{again}");
    let logged: i64 = sqlx::query_scalar("SELECT count(*) FROM interaction_events WHERE kind = 'message.read'")
        .fetch_one(&chat.hub.pool)
        .await
        .unwrap();
    assert_eq!(logged, 1, "one read mark in the interaction's log");

    // a reload shows the read marks and no stale typing
    let token = customer.token();
    drop(customer);
    let mut back = chat.customer(Some(&token)).await;
    let m = back.frame_where("message", |f| f["message"]["id"] == first.as_str()).await;
    assert_eq!(m["message"]["status"], "read");
}

fn refusal(error: tungstenite::Error) -> (u16, Value) {
    match error {
        tungstenite::Error::Http(response) => {
            let body = response.body().clone().unwrap_or_default();
            (response.status().as_u16(), serde_json::from_slice(&body).unwrap_or(Value::Null))
        }
        other => panic!("expected an HTTP refusal, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_origins_unknown_keys_floods_and_big_files_are_refused() {
    let chat = webchat(json!({ "messages_burst": 3, "messages_per_minute": 6, "max_file_bytes": 1000 })).await;

    let (status, body) = refusal(chat.try_connect("https://evil.example", None).await.err().unwrap());
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("origin_not_allowed")));

    let mut request =
        format!("ws://{}/api/v1/webchat/ws?key={}", chat.addr, Uuid::now_v7()).into_client_request().unwrap();
    request.headers_mut().insert("Origin", SHOP.parse().unwrap());
    let (status, body) = refusal(tokio_tungstenite::connect_async(request).await.err().unwrap());
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("unknown_key")));

    // a forged token is not an identity: the customer gets a new one
    let customer = chat.customer(Some("forged.token.value")).await;
    assert!(customer.hello["customer"]["id"].as_str().unwrap().starts_with("wc-"));
    drop(customer);

    let mut customer = chat.customer(None).await;
    customer
        .send(json!({"type": "file", "client_msg_id": "big", "name": "huge.zip", "mime": "application/zip", "size": 5000}))
        .await;
    let too_big = customer.frame("error").await;
    assert_eq!(too_big["code"], "file_too_large");
    assert_eq!(too_big["limit"], 1000);
    assert!(too_big["message"].as_str().unwrap().contains("up to 1000 bytes"), "{too_big}");

    for i in 0..8 {
        customer.send(json!({"type": "message", "client_msg_id": format!("s{i}"), "text": format!("spam {i}")})).await;
    }
    let mut acks = 0;
    let mut limited = 0;
    while acks + limited < 8 {
        let until = tokio::time::Instant::now() + WAIT;
        let frame = match tokio::time::timeout_at(until, customer.ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => serde_json::from_str::<Value>(&t).unwrap(),
            other => panic!("{other:?}"),
        };
        match frame["type"].as_str() {
            Some("ack") => acks += 1,
            Some("error") => {
                assert_eq!(frame["code"], "rate_limited", "{frame}");
                assert!(frame["retry_after_s"].as_u64().unwrap() >= 1);
                assert!(frame["message"].as_str().unwrap().contains("too fast"));
                limited += 1;
            }
            _ => {}
        }
    }
    assert_eq!((acks, limited), (3, 5), "the burst passes, the rest is refused");
    assert_eq!(chat.inbound().await, 3, "refused messages are not stored");

    // connections from one address: a burst of 30, then 429 before any other check
    let mut refused = None;
    for _ in 0..40 {
        match chat.try_connect(SHOP, None).await {
            Ok(_) => {}
            Err(e) => {
                refused = Some(refusal(e));
                break;
            }
        }
    }
    let (status, body) = refused.expect("a flood of connections is refused");
    assert_eq!((status, body["error"]["code"].as_str()), (429, Some("rate_limited")));
    assert!(body["error"]["retry_after_s"].as_u64().unwrap() >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_connector_closes_its_customer_sockets_with_1001() {
    let chat = webchat(json!({})).await;
    let mut customer = chat.customer(None).await;
    chat.stop.cancel();
    let until = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(until, customer.ws.next()).await {
            Ok(Some(Ok(Message::Close(Some(frame))))) => {
                assert_eq!(u16::from(frame.code), 1001);
                break;
            }
            Ok(Some(Ok(_))) => {}
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

/// A greeting flow on the web chat: two questions with buttons, a hand-off whose offer carries
/// the answers; the agent's words reach the customer and the bot says nothing more.
#[tokio::test]
async fn a_greeting_flow_asks_with_buttons_and_hands_off_to_the_agent() {
    let chat = webchat(json!({})).await;
    let flow: schema::flow::Flow = serde_json::from_value(json!({
        "start": "hello",
        "fallback_queue": "support",
        "nodes": {
            "hello": {"kind": "send", "text": "Hi! Is it about an order?", "buttons": ["Yes", "No"], "next": "topic"},
            "topic": {"kind": "wait", "var": "topic", "timeout_s": 600, "next": "ask", "on_timeout": "human"},
            "ask": {"kind": "send", "text": "How urgent is it?", "buttons": ["Today", "This week"], "next": "urgency"},
            "urgency": {"kind": "wait", "var": "urgency", "timeout_s": 600, "next": "human", "on_timeout": "human"},
            "human": {"kind": "handoff", "queue": "support"}
        }
    }))
    .unwrap();
    let mut conn = chat.hub.pool.acquire().await.unwrap();
    store::save_flow(&mut conn, "greet", &flow, "admin").await.unwrap();
    store::set_queue_greeting_flow(&mut conn, "support", Some("greet")).await.unwrap();
    drop(conn);
    let mut alice = chat.hub.ready_agent("alice").await;
    let mut customer = chat.customer(None).await;

    customer.say("c1", "hello").await;
    let first = customer.shown("Hi! Is it about an order?").await;
    assert_eq!(first["author"]["kind"], "bot");
    assert_eq!(first["keyboard"]["rows"][1][0]["text"], "No", "{first}");
    customer.say("c2", "No").await;
    let second = customer.shown("How urgent is it?").await;
    assert_eq!(second["keyboard"]["rows"][0][0]["text"], "Today", "{second}");
    customer.say("c3", "This week").await;

    let offer = alice.event("interaction.offered").await;
    let fields = &offer["data"]["interaction"]["fields"];
    assert_eq!((fields["topic"].as_str(), fields["urgency"].as_str()), (Some("No"), Some("This week")), "{offer}");
    let id = offer["data"]["interaction"]["id"].as_str().unwrap().to_owned();
    let accepted = alice.call("interaction.accept", json!({"interaction_id": id})).await;
    assert_eq!(accepted["data"]["state"], "assigned", "{accepted}");
    let reply = alice
        .call("message.send", json!({"interaction_id": id, "client_msg_id": "a1", "text": "Hello, I am Alice"}))
        .await;
    assert_eq!(reply["ok"], true, "{reply}");
    let seen = customer.shown("Hello, I am Alice").await;
    assert_eq!(seen["author"]["kind"], "agent");
    let bot_messages: Vec<String> = sqlx::query_scalar(
        "SELECT text FROM messages WHERE interaction_id = $1::uuid AND author_kind = 'bot' ORDER BY created_at",
    )
    .bind(&id)
    .fetch_all(&chat.hub.pool)
    .await
    .unwrap();
    assert_eq!(bot_messages, vec!["Hi! Is it about an order?", "How urgent is it?"]);
}

/// The survey after a closed chat in the web chat: the rating comes with its 1-5 buttons, the
/// press is stored as the chat's rating (`interaction.rated`), and the chat stays closed.
#[tokio::test]
async fn the_survey_after_a_closed_chat_is_asked_and_answered_in_the_widget() {
    let chat = webchat(json!({"chat_survey": {"enabled": true, "rating_text": "Как мы справились?"}})).await;
    let mut alice = chat.hub.ready_agent("alice").await;
    let mut customer = chat.customer(None).await;
    customer.say("c1", "здравствуйте").await;
    let id = chat.hub.accept_next(&mut alice).await;
    let closed = alice.call("interaction.close", json!({"interaction_id": id})).await;
    assert_eq!(closed["ok"], true, "{closed}");

    let asked = customer.shown("Как мы справились?").await;
    assert_eq!(asked["author"]["kind"], "bot");
    let rows = asked["keyboard"]["rows"].as_array().expect("the rating has buttons").clone();
    let buttons: Vec<&str> = rows.iter().map(|r| r[0]["text"].as_str().unwrap()).collect();
    assert_eq!(buttons, ["1", "2", "3", "4", "5"], "{asked}");
    customer.say("c2", "2").await;
    let rated = alice.event("interaction.rated").await;
    assert_eq!((rated["data"]["source"].as_str(), rated["data"]["rating"].as_i64()), (Some("chat"), Some(2)));
    let (state, rating): (String, i16) = sqlx::query_as(
        "SELECT i.state, s.rating FROM interactions i JOIN call_surveys s ON s.interaction_id = i.id
         WHERE i.id = $1::uuid AND s.source = 'chat'",
    )
    .bind(&id)
    .fetch_one(&chat.hub.pool)
    .await
    .unwrap();
    assert_eq!((state.as_str(), rating), ("closed", 2));
}
