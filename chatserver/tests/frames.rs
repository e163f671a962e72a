//! The published API description cannot drift from the server:
//!
//! - a realistic session (two agents and a supervisor, over real WebSockets) records EVERY frame
//!   the server sends and validates each against `docs/agent-api.schema.json` (replies also
//!   against the `data` schema of the command they answer), and every request the test sends;
//! - every JSON example in `docs/agent-api.md` validates against the same schema;
//! - every command of [`chatserver::commands::COMMANDS`], every event name the store writes,
//!   every error code and close code is documented in `docs/agent-api.md` and described in the
//!   schema.
//!
//! A failure lists each offending frame with the schema's complaints.

mod harness;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::stream::SplitSink;
use futures::{SinkExt, StreamExt};
use harness::{TestApp, WAIT, spawn_app, token};
use jsonschema::Validator;
use schema::domain::{Channel, Contact, Forwarded, Location, MessageKind, OutboxAction, Queue, RoutingMode};
use schema::store::{self, InboundMessage, Ingested, NewAccount, OutboxItem, OutboxOutcome, Sender};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use uuid::Uuid;

const SCHEMA_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/agent-api.schema.json");
const DOC_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/agent-api.md");

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

// ---------------------------------------------------------------------------------------------
// The schema

struct Schema {
    doc: Value,
    any_frame: Validator,
    request: Validator,
    server_frame: Validator,
    http_error: Validator,
    /// Reply validators per command: the generic reply plus that command's `data`.
    reply_to: HashMap<String, Validator>,
}

impl Schema {
    fn load() -> Schema {
        let doc: Value = serde_json::from_str(&read(SCHEMA_PATH)).expect("the schema is JSON");
        let build = |root: Option<Value>| {
            let mut schema = doc.clone();
            if let Some(root) = root {
                let obj = schema.as_object_mut().unwrap();
                for key in ["if", "then", "else"] {
                    obj.remove(key);
                }
                obj.extend(root.as_object().unwrap().clone());
            }
            jsonschema::draft202012::options()
                .should_validate_formats(true)
                .build(&schema)
                .unwrap_or_else(|e| panic!("docs/agent-api.schema.json does not compile: {e}"))
        };
        let def = |name: &str| build(Some(json!({ "$ref": format!("#/$defs/{name}") })));
        let mut reply_to = HashMap::new();
        for (cmd, entry) in doc["x-commands"].as_object().expect("x-commands") {
            let data = entry["data"].as_str().expect("x-commands.*.data names a $def");
            let root =
                json!({ "$ref": "#/$defs/Reply", "properties": { "data": { "$ref": format!("#/$defs/{data}") } } });
            reply_to.insert(cmd.clone(), build(Some(root)));
        }
        Schema {
            any_frame: build(None),
            request: def("Request"),
            server_frame: def("ServerFrame"),
            http_error: def("HttpError"),
            reply_to,
            doc,
        }
    }

    fn keys(&self, section: &str) -> BTreeSet<String> {
        self.doc[section].as_object().unwrap_or_else(|| panic!("schema has no {section}")).keys().cloned().collect()
    }

    fn enum_of(&self, def: &str) -> BTreeSet<String> {
        self.doc["$defs"][def]["enum"]
            .as_array()
            .unwrap_or_else(|| panic!("$defs/{def} is no enum"))
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    }

    /// The `const` values the `if` branches of `$defs/{def}`'s `allOf` dispatch on.
    fn branches(&self, def: &str, field: &str) -> BTreeSet<String> {
        self.doc["$defs"][def]["allOf"]
            .as_array()
            .unwrap_or_else(|| panic!("$defs/{def} has no allOf"))
            .iter()
            .map(|b| b["if"]["properties"][field]["const"].as_str().expect("a branch per value").to_owned())
            .collect()
    }
}

fn complaints(validator: &Validator, instance: &Value) -> Vec<String> {
    validator.iter_errors(instance).map(|e| format!("at {:?}: {e}", e.instance_path().to_string())).collect()
}

// ---------------------------------------------------------------------------------------------
// What the session saw

#[derive(Default)]
struct Seen {
    failures: Vec<String>,
    frames: usize,
    events: BTreeSet<String>,
    updates: BTreeSet<String>,
    ok_replies: BTreeSet<String>,
    error_codes: BTreeSet<String>,
}

struct Checker {
    schema: Schema,
    seen: Mutex<Seen>,
}

impl Checker {
    fn fail(&self, what: String) {
        self.seen.lock().unwrap().failures.push(what);
    }

    /// A request the server must accept as well-formed.
    fn request(&self, who: &str, frame: &Value) {
        let errors = complaints(&self.schema.request, frame);
        if !errors.is_empty() {
            self.fail(format!("{who} sent {frame}\n    {}", errors.join("\n    ")));
        }
    }

    /// A request the server refuses as malformed: the schema must refuse it too.
    fn malformed_request(&self, who: &str, frame: &Value) {
        if self.schema.request.is_valid(frame) {
            self.fail(format!("{who} sent {frame}: the server refuses it, but the schema accepts it"));
        }
    }

    /// A frame from the server, answering `cmd` when it is a reply to a known request.
    fn server(&self, who: &str, frame: &Value, cmd: Option<&str>) {
        let mut errors = complaints(&self.schema.server_frame, frame);
        errors.extend(complaints(&self.schema.any_frame, frame).into_iter().map(|e| format!("(root) {e}")));
        if let Some(cmd) = cmd {
            match self.schema.reply_to.get(cmd) {
                Some(v) => errors.extend(complaints(v, frame).into_iter().map(|e| format!("(reply to {cmd}) {e}"))),
                None if frame["ok"] == true => errors.push(format!("an ok reply to {cmd}, which x-commands lacks")),
                None => {} // an unknown command: the generic reply schema applies
            }
        }
        let mut seen = self.seen.lock().unwrap();
        seen.frames += 1;
        if let Some(event) = frame["event"].as_str() {
            seen.events.insert(event.to_owned());
        } else if let Some(update) = frame["update"].as_str() {
            seen.updates.insert(update.to_owned());
        } else if frame["ok"] == true {
            if let Some(cmd) = cmd {
                seen.ok_replies.insert(cmd.to_owned());
            }
        } else if let Some(code) = frame["error"]["code"].as_str() {
            seen.error_codes.insert(code.to_owned());
        }
        if !errors.is_empty() {
            let pretty = serde_json::to_string_pretty(frame).unwrap();
            seen.failures.push(format!(
                "{who} received{}:\n{pretty}\n    {}",
                cmd.map(|c| format!(" (reply to {c})")).unwrap_or_default(),
                errors.join("\n    ")
            ));
        }
    }

    fn http_refusal(&self, what: &str, status: u16, want_status: u16, body: &Value, want_code: &str) {
        let errors = complaints(&self.schema.http_error, body);
        if status != want_status || body["error"]["code"] != want_code || !errors.is_empty() {
            self.fail(format!(
                "{what}: HTTP {status} {body}; want {want_status} with code {want_code}\n    {}",
                errors.join("\n    ")
            ));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A recording client: every frame it receives is checked

type Sink = SplitSink<WebSocketStream<MaybeTlsStream<TcpStream>>, WsMessage>;

struct Session {
    who: String,
    sink: Sink,
    /// Filled by a reader task, so pings are answered even while the test talks to others.
    inbox: mpsc::UnboundedReceiver<WsMessage>,
    check: Arc<Checker>,
    next_id: u64,
    /// Request id -> cmd, until the reply comes.
    pending: HashMap<String, String>,
    /// `resume_from` of the hello in flight.
    resume: Option<i64>,
    events: Vec<Value>,
    /// Live updates received (checked, kept apart from replies and events).
    updates: Vec<Value>,
    /// The seq the next event must carry (known after hello).
    next_seq: Option<i64>,
    last_seq: i64,
    closed: Option<u16>,
}

impl Session {
    async fn open(app: &TestApp, login: &str, roles: &[&str], exp_in: i64, check: &Arc<Checker>) -> Session {
        let mut request = app.ws_url().into_client_request().unwrap();
        let bearer = format!("Bearer {}", token(login, roles, exp_in));
        request.headers_mut().insert("Authorization", bearer.parse().unwrap());
        let (ws, _) = tokio_tungstenite::connect_async(request).await.expect("upgrade");
        let (sink, mut stream) = ws.split();
        let (tx, inbox) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(Ok(msg)) = stream.next().await {
                if tx.send(msg).is_err() {
                    break;
                }
            }
        });
        Session {
            who: login.to_owned(),
            sink,
            inbox,
            check: check.clone(),
            next_id: 0,
            pending: HashMap::new(),
            resume: None,
            events: Vec::new(),
            updates: Vec::new(),
            next_seq: None,
            last_seq: 0,
            closed: None,
        }
    }

    /// Opens a socket and says hello.
    async fn connect(app: &TestApp, login: &str, roles: &[&str], check: &Arc<Checker>) -> Session {
        let mut s = Session::open(app, login, roles, 3600, check).await;
        let hello = s.call("hello", json!({})).await;
        assert_eq!(hello["ok"], true, "{hello}");
        s
    }

    /// Reads the next JSON frame, reply or event, within `deadline`; checks it against the schema
    /// and keeps events in `self.events`. `None` once the socket is closed.
    async fn next(&mut self, deadline: Instant) -> Option<Value> {
        loop {
            let msg = match tokio::time::timeout_at(deadline, self.inbox.recv()).await {
                Ok(Some(msg)) => msg,
                Ok(None) => return None,
                Err(_) => panic!("{}: nothing expected arrived within {WAIT:?}; events: {:#?}", self.who, self.events),
            };
            let text = match msg {
                WsMessage::Text(t) => t,
                WsMessage::Close(frame) => {
                    self.closed = Some(frame.map_or(1005, |f| u16::from(f.code)));
                    return None;
                }
                WsMessage::Binary(_) => {
                    self.check.fail(format!("{} received a binary frame", self.who));
                    continue;
                }
                _ => continue, // pings (answered by the library) and pongs
            };
            let Ok(value) = serde_json::from_str::<Value>(&text) else {
                self.check.fail(format!("{} received a frame that is not JSON: {text}", self.who));
                continue;
            };
            let cmd = value["re"].as_str().and_then(|re| self.pending.remove(re));
            self.check.server(&self.who, &value, cmd.as_deref());
            if value.get("update").is_some() {
                if value.get("seq").is_some() || value.get("re").is_some() {
                    self.check.fail(format!("{} got an update with a seq or re: {value}", self.who));
                }
                self.updates.push(value.clone());
                return Some(value);
            }
            if let Some(seq) = value["seq"].as_i64() {
                match self.next_seq {
                    Some(want) if seq != want => {
                        self.check.fail(format!("{} got seq {seq}, expected {want} (gap-free per agent)", self.who))
                    }
                    None => self.check.fail(format!("{} got event {seq} before hello", self.who)),
                    _ => {}
                }
                self.next_seq = Some(seq + 1);
                self.last_seq = seq;
                self.events.push(value.clone());
            } else if cmd.as_deref() == Some("hello") && value["ok"] == true {
                let from = self.resume.take().or(value["data"]["last_seq"].as_i64()).unwrap();
                self.next_seq = Some(from + 1);
                self.last_seq = from;
            }
            return Some(value);
        }
    }

    /// The next reply (events meanwhile are kept).
    async fn reply(&mut self) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let frame =
                self.next(deadline).await.unwrap_or_else(|| panic!("{}: socket closed before a reply", self.who));
            if frame.get("seq").is_none() && frame.get("update").is_none() {
                return frame;
            }
        }
    }

    async fn send_frame(&mut self, frame: &Value) {
        self.sink.send(WsMessage::Text(frame.to_string().into())).await.expect("send");
    }

    /// Sends a whole request frame (checked by the schema) and returns its reply.
    async fn call_frame(&mut self, frame: Value) -> Value {
        self.check.request(&self.who, &frame);
        self.exchange(frame).await
    }

    async fn exchange(&mut self, frame: Value) -> Value {
        let id = frame["id"].as_str().expect("an id").to_owned();
        if let Some(cmd) = frame["cmd"].as_str() {
            self.pending.insert(id.clone(), cmd.to_owned());
            if cmd == "hello" {
                self.resume = frame["args"]["resume_from"].as_i64();
            }
        }
        self.send_frame(&frame).await;
        loop {
            let reply = self.reply().await;
            if reply["re"] == id.as_str() {
                return reply;
            }
            self.check.fail(format!("{}: reply {reply} while waiting for the reply to {id}", self.who));
        }
    }

    fn next_id(&mut self) -> String {
        self.next_id += 1;
        format!("{}-{}", self.who, self.next_id)
    }

    /// A well-formed request; returns the reply.
    async fn call(&mut self, cmd: &str, args: Value) -> Value {
        let frame = json!({ "id": self.next_id(), "cmd": cmd, "args": args });
        self.call_frame(frame).await
    }

    /// `call`, asserting success; returns `data`.
    async fn ok(&mut self, cmd: &str, args: Value) -> Value {
        let reply = self.call(cmd, args).await;
        assert_eq!(reply["ok"], true, "{} {cmd}: {reply}", self.who);
        reply["data"].clone()
    }

    /// `call`, asserting the error code.
    async fn refused(&mut self, cmd: &str, args: Value, code: &str) -> Value {
        let reply = self.call(cmd, args).await;
        assert_eq!(reply["error"]["code"], code, "{} {cmd}: {reply}", self.who);
        reply
    }

    /// A request the server refuses as malformed (the schema must refuse it too).
    async fn malformed(&mut self, frame: Value, code: &str) -> Value {
        self.check.malformed_request(&self.who, &frame);
        let reply = self.exchange(frame).await;
        assert_eq!(reply["error"]["code"], code, "{}: {reply}", self.who);
        reply
    }

    /// Sends something that is no request frame at all; returns the reply.
    async fn raw(&mut self, msg: WsMessage) -> Value {
        self.sink.send(msg).await.expect("send");
        self.reply().await
    }

    /// Waits for the next event named `name` (earlier ones of other names stay queued).
    async fn event(&mut self, name: &str) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(i) = self.events.iter().position(|e| e["event"] == name) {
                return self.events.remove(i);
            }
            match self.next(deadline).await {
                Some(frame) if frame.get("seq").is_none() && frame.get("update").is_none() => {
                    self.check.fail(format!("{}: unexpected reply {frame} while waiting for {name}", self.who))
                }
                Some(_) => {}
                None => panic!("{}: socket closed while waiting for {name}", self.who),
            }
        }
    }

    /// Waits for a live update whose `data` satisfies `want` (earlier ones are dropped).
    async fn update(&mut self, want: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(i) = self.updates.iter().position(|u| want(&u["data"])) {
                let found = self.updates.remove(i);
                self.updates.drain(..i);
                return found;
            }
            self.updates.clear();
            match self.next(deadline).await {
                Some(frame) if frame.get("seq").is_none() && frame.get("update").is_none() => {
                    self.check.fail(format!("{}: unexpected reply {frame} while waiting for an update", self.who))
                }
                Some(_) => {}
                None => panic!("{}: socket closed while waiting for an update", self.who),
            }
        }
    }

    /// Waits for the server to close the socket; returns the close code.
    async fn closed_with(&mut self) -> u16 {
        let deadline = Instant::now() + WAIT;
        while self.next(deadline).await.is_some() {}
        self.closed.unwrap_or_else(|| panic!("{}: connection dropped without a close frame", self.who))
    }

    async fn close(mut self) {
        let _ = self.sink.send(WsMessage::Close(None)).await;
        let deadline = Instant::now() + WAIT;
        while self.next(deadline).await.is_some() {}
    }
}

fn interaction_id(event: &Value) -> String {
    event["data"]["interaction"]["id"].as_str().expect("the event names its interaction").to_owned()
}

// ---------------------------------------------------------------------------------------------
// The test connector, for any account and any kind of message

fn text_message(account_id: Uuid, user: &str, external_message_id: &str, text: &str) -> InboundMessage {
    InboundMessage {
        account_id,
        external_message_id: external_message_id.into(),
        chat_id: user.into(),
        sender: Sender {
            external_id: user.into(),
            name: format!("Customer {user}"),
            phone: Some(format!("+4930{}", user.len())),
            ..Default::default()
        },
        kind: MessageKind::Text,
        text: Some(text.into()),
        file_ids: vec![],
        location: None,
        contact: None,
        reply_to_external_id: None,
        forwarded: None,
        sent_at: None,
        sticker_id: None,
    }
}

async fn ingest(app: &TestApp, msg: InboundMessage) -> schema::domain::Message {
    let mut tx = app.pool.begin().await.unwrap();
    let out = store::ingest_inbound(&mut tx, &msg, Duration::from_secs(3600)).await.unwrap();
    tx.commit().await.unwrap();
    match out {
        Ingested::Stored { message, opened, audience, .. } => {
            for agent in &audience {
                app.coord.notify(&schema::topics::agent(agent));
            }
            if opened {
                app.coord.notify(schema::topics::ROUTING);
            }
            *message
        }
        Ingested::Duplicate { .. } => panic!("{} was ingested before", msg.external_message_id),
    }
}

/// What a connector does with the account's outbox: every pending row done, except those
/// `fail` names an error for. Returns how many rows there were.
async fn connector_round(app: &TestApp, account: Uuid, fail: impl Fn(&OutboxItem) -> Option<String>) -> usize {
    const TOKEN: i64 = 1;
    let items = store::pending_outbox(&mut app.pool.acquire().await.unwrap(), account, 0, 100).await.unwrap();
    let ids: Vec<i64> = items.iter().map(|i| i.id).collect();
    let mut tx = app.pool.begin().await.unwrap();
    store::claim_outbox(&mut tx, account, TOKEN, &ids).await.unwrap();
    tx.commit().await.unwrap();
    for item in &items {
        let outcome = match fail(item) {
            Some(error) => OutboxOutcome::Failed { error },
            None => OutboxOutcome::Done { external_ids: vec![format!("out:{}", item.id)] },
        };
        let mut tx = app.pool.begin().await.unwrap();
        let announced = store::finish_outbox(&mut tx, account, TOKEN, item.id, &outcome).await.unwrap();
        tx.commit().await.unwrap();
        for agent in &announced.audience {
            app.coord.notify(&schema::topics::agent(agent));
        }
    }
    items.len()
}

async fn file(app: &TestApp, name: &str, mime: &str) -> Uuid {
    let id = Uuid::now_v7();
    sqlx::query("INSERT INTO files (id, name, mime, size, sha256, storage_key) VALUES ($1, $2, $3, 2048, 'x', $4)")
        .bind(id)
        .bind(name)
        .bind(mime)
        .bind(format!("test/{id}"))
        .execute(&app.pool)
        .await
        .unwrap();
    id
}

// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn every_frame_of_a_realistic_session_matches_the_published_schema() {
    let check = Arc::new(Checker { schema: Schema::load(), seen: Mutex::default() });
    let app = spawn_app(30_000).await;
    let telegram = app.account_id;
    // a WhatsApp account (no edit, no delete) whose queue only alice serves, with 1 s offers
    let whatsapp = {
        let mut conn = app.pool.acquire().await.unwrap();
        let fast = Queue { name: "fast".into(), routing_mode: RoutingMode::Auto, offer_timeout_ms: 1_000 };
        store::upsert_queue(&mut conn, &fast).await.unwrap();
        let account = NewAccount {
            channel: Channel::Whatsapp,
            name: "shop-wa".into(),
            default_queue: "fast".into(),
            credentials: json!({}),
            settings: json!({}),
        };
        store::create_account(&mut conn, &account).await.unwrap().id
    };
    app.agent("alice", &["support", "fast", "vip"], 3, &["agent"]).await;
    app.agent("bob", &["support"], 3, &["agent"]).await;
    app.agent("sue", &[], 0, &["supervisor"]).await;

    // refusals before the upgrade, with their JSON bodies
    let http = reqwest::Client::new();
    let url = format!("http://{}/api/v1/agent/ws", app.addr);
    let r = http.get(&url).send().await.unwrap();
    let status = r.status().as_u16();
    check.http_refusal("no token", status, 401, &r.json().await.unwrap(), "unauthorized");
    let r = http.get(&url).query(&[("access_token", token("alice", &["agent"], -300))]).send().await.unwrap();
    let status = r.status().as_u16();
    check.http_refusal("expired token", status, 401, &r.json().await.unwrap(), "token_expired");
    let r = http.get(&url).header("Authorization", "Basic YWxpY2U6eA==").send().await.unwrap();
    let status = r.status().as_u16();
    check.http_refusal("not a bearer token", status, 401, &r.json().await.unwrap(), "invalid_token");
    let r = http.get(&url).bearer_auth(token("alice", &["agent"], 60)).send().await.unwrap();
    let status = r.status().as_u16();
    check.http_refusal("no upgrade", status, 400, &r.json().await.unwrap(), "bad_request");

    // alice: nothing before hello
    let mut alice = Session::open(&app, "alice", &["agent"], 3600, &check).await;
    alice.refused("agent.set_status", json!({"status": "ready"}), "hello_required").await;
    let hello = alice.ok("hello", json!({})).await;
    assert_eq!(hello["agent"]["login"], "alice");
    alice.ok("agent.set_status", json!({"status": "ready"})).await;
    alice.event("agent.status").await;
    let mut bob = Session::connect(&app, "bob", &["agent"], &check).await;
    bob.ok("agent.set_status", json!({"status": "away", "reason": "lunch"})).await;
    let mut sue = Session::connect(&app, "sue", &["supervisor"], &check).await;

    // a customer writes; alice (the only one ready) declines, bob takes over
    let first = ingest(&app, text_message(telegram, "c1", "c1:1", "my parcel is late")).await;
    let offer = alice.event("interaction.offered").await;
    let c1 = interaction_id(&offer);
    assert_eq!(alice.ok("interaction.decline", json!({"interaction_id": c1})).await, json!({}));
    alice.event("interaction.declined").await;
    bob.ok("agent.set_status", json!({"status": "ready", "reason": null})).await;
    bob.event("interaction.offered").await;
    let accepted = bob.ok("interaction.accept", json!({"interaction_id": c1})).await;
    assert_eq!(accepted["state"], "assigned");
    bob.event("interaction.assigned").await;
    bob.refused("interaction.accept", json!({"interaction_id": c1}), "conflict").await;
    bob.refused("interaction.accept", json!({"interaction_id": Uuid::now_v7()}), "interaction_not_found").await;

    // messages: keyboards, files, idempotent send, edit, delete
    let greeting = json!({
        "interaction_id": c1, "client_msg_id": "b-1", "text": "How can I help?", "reply_to": first.id,
        "keyboard": {"type": "inline", "rows": [
            [{"text": "Track", "data": "track"}, {"text": "Refund", "data": "refund"}]
        ]}
    });
    let sent = bob.ok("message.send", greeting.clone()).await;
    assert_eq!(sent["status"], "queued");
    let again = bob.ok("message.send", greeting).await;
    assert_eq!(again["id"], sent["id"], "the same client_msg_id returns the first message");
    bob.event("message.new").await;
    let label = file(&app, "label.png", "image/png").await;
    let with_file = bob
        .ok(
            "message.send",
            json!({
                "interaction_id": c1, "client_msg_id": "b-2", "text": "Your label", "file_ids": [label],
                "keyboard": {"type": "reply", "rows": [
                    [{"text": "Share my phone", "request_phone": true}, {"text": "No"}]
                ]}
            }),
        )
        .await;
    assert_eq!(with_file["kind"], "image");
    bob.ok(
        "message.send",
        json!({"interaction_id": c1, "client_msg_id": "b-3", "file_ids": [label], "keyboard": {"type": "remove"}}),
    )
    .await;
    let scan = file(&app, "scan.jpg", "image/jpeg").await;
    sqlx::query("UPDATE files SET size = 11 * 1024 * 1024 WHERE id = $1").bind(scan).execute(&app.pool).await.unwrap();
    let too_big = bob
        .refused(
            "message.send",
            json!({"interaction_id": c1, "client_msg_id": "b-big", "file_ids": [scan]}),
            "file_too_large",
        )
        .await;
    assert!(too_big["error"]["message"].as_str().unwrap().contains("10 MB"), "{too_big}");
    bob.ok(
        "message.send",
        json!({"interaction_id": c1, "client_msg_id": "b-loc", "location": {"lat": 59.93, "lon": 30.33}}),
    )
    .await;
    bob.event("message.new").await;
    let edited = bob.ok("message.edit", json!({"message_id": sent["id"], "text": "How may I help?"})).await;
    assert_eq!(edited["text"], "How may I help?");
    bob.event("message.edited").await;
    let oops = bob.ok("message.send", json!({"interaction_id": c1, "client_msg_id": "b-4", "text": "oops"})).await;
    assert_eq!(bob.ok("message.delete", json!({"message_id": oops["id"]})).await, json!({}));
    bob.event("message.deleted").await;
    bob.refused("message.edit", json!({"message_id": oops["id"], "text": "x"}), "conflict").await;

    // the connector sends them: b-2 fails, and so does the edit of b-1; the customer edits theirs
    let rows = connector_round(&app, telegram, |item| match item.action {
        OutboxAction::Send if item.message.client_msg_id.as_deref() == Some("b-2") => Some("file too big".into()),
        OutboxAction::Edit => Some("message is not modified".into()),
        _ => None,
    })
    .await;
    assert_eq!(rows, 7, "five sends, an edit, a delete");
    for _ in 0..6 {
        bob.event("message.status").await; // b-1..b-4 and the location sent or failed, the failed edit
    }
    let mut tx = app.pool.begin().await.unwrap();
    let edit = store::record_inbound_edit(&mut tx, telegram, "c1:1", "my parcel is VERY late").await.unwrap();
    tx.commit().await.unwrap();
    for agent in edit.expect("the original is known").audience {
        app.coord.notify(&schema::topics::agent(&agent));
    }
    let edited = bob.event("message.edited").await;
    assert_eq!(edited["data"]["message"]["direction"], "in", "{edited}");
    bob.refused("message.delete", json!({"message_id": Uuid::now_v7()}), "message_not_found").await;
    bob.refused(
        "message.send",
        json!({"interaction_id": c1, "client_msg_id": "b-5", "text": "x", "reply_to": Uuid::now_v7()}),
        "bad_request",
    )
    .await;

    // the customer sends a location and a forwarded contact
    let mut at = text_message(telegram, "c1", "c1:2", "");
    (at.kind, at.text) = (MessageKind::Location, None);
    at.location = Some(Location { lat: 52.52, lon: 13.405, address: Some("Alexanderplatz".into()) });
    ingest(&app, at).await;
    let mut card = text_message(telegram, "c1", "c1:3", "");
    (card.kind, card.text) = (MessageKind::Contact, None);
    card.contact = Some(Contact { phone: "+4930123".into(), name: "Neighbour".into() });
    card.forwarded = Some(Forwarded { from_name: Some("Neighbour".into()), date: Some(chrono::Utc::now()) });
    card.reply_to_external_id = Some("c1:1".into());
    ingest(&app, card).await;
    bob.event("message.new").await;
    bob.event("message.new").await;

    // history, both ways, and paging
    let page = bob.ok("history.get", json!({"interaction_id": c1, "limit": 200})).await;
    assert!(page["messages"].as_array().unwrap().len() >= 6, "{page}");
    let customer = accepted["customer"]["id"].clone();
    let mut cursor = bob.ok("history.get", json!({"customer_id": customer, "limit": 2})).await["next_before"].take();
    while !cursor.is_null() {
        cursor =
            bob.ok("history.get", json!({"customer_id": customer, "limit": 2, "before": cursor})).await["next_before"]
                .take();
    }
    bob.malformed(
        json!({"id": "both", "cmd": "history.get", "args": {"interaction_id": c1, "customer_id": customer}}),
        "bad_request",
    )
    .await;
    bob.refused("history.get", json!({"customer_id": Uuid::now_v7()}), "not_found").await;

    // the supervisor: overview, monitor, participate
    let overview = sue.ok("supervisor.overview", json!({})).await;
    assert!(!overview["agents"].as_array().unwrap().is_empty());
    alice.refused("supervisor.overview", json!({}), "forbidden").await;
    alice.refused("interaction.join", json!({"interaction_id": c1, "mode": "monitor"}), "forbidden").await;
    let joined = sue.ok("interaction.join", json!({"interaction_id": c1, "mode": "monitor"})).await;
    assert_eq!(joined["id"], c1.as_str());
    sue.event("interaction.joined").await;
    bob.event("interaction.joined").await;
    sue.refused("message.send", json!({"interaction_id": c1, "client_msg_id": "s-1", "text": "hi"}), "forbidden").await;
    sue.ok("interaction.join", json!({"interaction_id": c1, "mode": "participate"})).await;
    sue.ok("message.send", json!({"interaction_id": c1, "client_msg_id": "s-2", "text": "A supervisor here"})).await;
    let thanks = ingest(&app, text_message(telegram, "c1", "c1:4", "thanks")).await;
    sue.event("message.new").await;

    // typing and read marks: bob types, then reads; the customer types (what the web chat does)
    assert_eq!(bob.ok("interaction.typing", json!({"interaction_id": c1})).await, json!({}));
    bob.ok("interaction.typing", json!({"interaction_id": c1, "typing": false})).await;
    let read = bob.ok("message.read", json!({"interaction_id": c1, "up_to": thanks.id})).await;
    assert!(!read["read"].as_array().unwrap().is_empty(), "{read}");
    bob.event("message.read").await;
    sue.event("message.read").await;
    let again = bob.ok("message.read", json!({"interaction_id": c1, "up_to": thanks.id})).await;
    assert_eq!(again["read"], json!([]), "{again}");
    bob.refused("message.read", json!({"interaction_id": c1, "up_to": Uuid::now_v7()}), "message_not_found").await;
    let mut tx = app.pool.begin().await.unwrap();
    let audience = store::customer_typing(&mut tx, telegram, "c1").await.unwrap();
    tx.commit().await.unwrap();
    for agent in &audience {
        app.coord.notify(&schema::topics::agent(agent));
    }
    bob.event("interaction.typing").await;
    sue.event("interaction.typing").await;

    // transfers: to an agent with a note, then to a manual queue, where alice takes it
    let both = json!({"interaction_id": c1, "to_agent": "alice", "to_queue": "vip"});
    bob.malformed(json!({"id": "both-targets", "cmd": "interaction.transfer", "args": both}), "bad_request").await;
    bob.refused("interaction.transfer", json!({"interaction_id": c1, "to_agent": "nobody"}), "not_found").await;
    let moved = bob
        .ok("interaction.transfer", json!({"interaction_id": c1, "to_agent": "alice", "note": "VIP customer"}))
        .await;
    assert_eq!(moved["agent"], "alice");
    alice.event("interaction.transferred").await;
    bob.event("interaction.transferred").await;
    sue.event("interaction.transferred").await;
    bob.refused("interaction.transfer", json!({"interaction_id": c1, "to_queue": "vip"}), "conflict").await;
    bob.refused(
        "message.send",
        json!({"interaction_id": c1, "client_msg_id": "b-6", "text": "still here?"}),
        "interaction_not_found",
    )
    .await;
    alice.ok("interaction.transfer", json!({"interaction_id": c1, "to_queue": "vip"})).await;
    alice.event("interaction.transferred").await;
    let queued = alice.ok("interaction.list_queued", json!({"queue": "vip", "limit": 10})).await;
    assert_eq!(queued["interactions"][0]["id"], c1.as_str(), "{queued}");
    let frame = json!({"id": "list-no-args", "cmd": "interaction.list_queued"});
    let all = sue.call_frame(frame).await;
    assert_eq!(all["ok"], true, "{all}");
    alice.ok("interaction.take", json!({"interaction_id": c1})).await;
    alice.event("interaction.assigned").await;
    // an admin-defined field, set on the interaction alice owns
    let topic = schema::fields::FieldDef {
        key: "topic".into(),
        label: "Тема".into(),
        kind: schema::fields::FieldType::Choice,
        choices: vec!["Заказ".into(), "Возврат".into()],
        required: false,
    };
    store::put_field_def(&mut app.pool.acquire().await.unwrap(), &topic).await.unwrap();
    let fielded =
        alice.ok("interaction.set_field", json!({"interaction_id": c1, "key": "topic", "value": "Возврат"})).await;
    assert_eq!(fielded["fields"]["topic"], "Возврат", "{fielded}");
    let bad = json!({"interaction_id": c1, "key": "topic", "value": "Жалоба"});
    alice.refused("interaction.set_field", bad, "invalid_field_value").await;
    let unknown = json!({"interaction_id": c1, "key": "colour", "value": "red"});
    alice.refused("interaction.set_field", unknown, "unknown_field").await;
    let closed = alice.ok("interaction.close", json!({"interaction_id": c1, "reason": "resolved"})).await;
    assert_eq!(closed["state"], "closed");
    alice.event("interaction.closed").await;
    sue.event("interaction.closed").await;
    alice.refused("interaction.close", json!({"interaction_id": c1}), "conflict").await;

    // an agent starts a conversation with a known customer
    let started = alice
        .ok(
            "interaction.start",
            json!({
                "account_id": telegram, "customer": {"external_id": "c1"},
                "message": "Following up on your parcel", "client_msg_id": "a-start"
            }),
        )
        .await;
    assert_eq!(started["state"], "assigned");
    alice.event("interaction.assigned").await;
    alice.event("message.new").await;
    alice
        .refused("interaction.start", json!({"account_id": telegram, "customer": {"external_id": "c1"}}), "conflict")
        .await;
    alice
        .refused("interaction.start", json!({"account_id": telegram, "customer": {"phone": "+000"}}), "not_found")
        .await;
    alice.ok("interaction.close", json!({"interaction_id": started["id"]})).await;
    alice.event("interaction.closed").await;

    // WhatsApp: alice lets the offer expire, the supervisor sees it waiting (live), alice takes it
    let watching = sue.ok("supervisor.overview", json!({"live": true})).await;
    assert!(watching["interactions"].is_array(), "{watching}");
    ingest(&app, text_message(whatsapp, "w1", "w1:1", "hola")).await;
    let pushed = sue
        .update(|d| {
            d["interactions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|i| i["queue"] == "fast" && i["customer"]["name"] == "Customer w1")
        })
        .await;
    assert_eq!(pushed["update"], "supervisor.overview");
    alice.event("interaction.offered").await;
    let expired = alice.event("interaction.offer_expired").await;
    let w1 = interaction_id(&expired);
    let status = alice.event("agent.status").await;
    assert_eq!(status["data"]["reason"], "offer_expired", "{status}");
    let overview = sue.ok("supervisor.overview", json!(null)).await;
    let fast = overview["queues"].as_array().unwrap().iter().find(|q| q["name"] == "fast").unwrap().clone();
    assert_eq!(fast["queued"], 1, "{overview}");
    alice.ok("interaction.take", json!({"interaction_id": w1})).await;
    let taken = sue
        .update(|d| {
            d["interactions"].as_array().unwrap().iter().any(|i| i["id"] == w1.as_str() && i["state"] == "assigned")
        })
        .await;
    let alice_now = taken["data"]["agents"].as_array().unwrap().iter().find(|a| a["login"] == "alice").unwrap().clone();
    assert_eq!(alice_now["online"], true, "{taken}");
    sue.ok("supervisor.overview", json!({"live": false})).await;
    // WhatsApp's 24-hour window: the store was given the message without its channel module,
    // so nothing says the customer wrote: a free-form reply is refused, a template goes out
    let hola = json!({"interaction_id": w1, "client_msg_id": "a-w1", "text": "¡Hola!"});
    alice.refused("message.send", hola.clone(), "outside_service_window").await;
    {
        let mut conn = app.pool.acquire().await.unwrap();
        let body = "Hola, {{1}}: ¿en qué podemos ayudar?".to_owned();
        let template =
            store::whatsapp::TemplateInput { name: "greeting".into(), language: "es".into(), category: None, body };
        store::whatsapp::put_template(&mut conn, whatsapp, &template).await.unwrap();
    }
    let greeting = json!({"interaction_id": w1, "client_msg_id": "a-w1-t",
        "template": {"name": "greeting", "language": "es", "params": ["Ana"]}});
    let greeting = alice.ok("message.send", greeting).await;
    assert_eq!(greeting["text"], "Hola, Ana: ¿en qué podemos ayudar?", "{greeting}");
    let tg = json!({"interaction_id": w1, "client_msg_id": "a-w1-x",
        "template": {"name": "greeting", "language": "es", "params": []}});
    alice.refused("message.send", tg, "bad_request").await;
    {
        let mut conn = app.pool.acquire().await.unwrap();
        store::whatsapp::record_inbound_time(&mut conn, whatsapp, "w1", chrono::Utc::now()).await.unwrap();
    }
    let hola = alice.ok("message.send", hola).await;
    alice.refused("message.edit", json!({"message_id": hola["id"], "text": "Hola"}), "unsupported_by_channel").await;
    alice.refused("message.delete", json!({"message_id": hola["id"]}), "unsupported_by_channel").await;
    alice.refused("video.start", json!({"interaction_id": w1, "mode": "two_way"}), "video_unavailable").await;
    // a node with the video channel: the room, its links, the video.room event, one at a time
    let video_node = harness::start_node_with(
        &app.db_url,
        app.pool.clone(),
        &app.zk_root,
        chatserver::Config { video_url: "https://hub.example.com/".into(), ..Default::default() },
    )
    .await;
    let mut caller = Session::open(&video_node, "alice", &["agent"], 3600, &check).await;
    caller.ok("hello", json!({"resume_from": alice.last_seq})).await;
    let room = caller.ok("video.start", json!({"interaction_id": w1, "mode": "one_way", "quality": "480p"})).await;
    let link = room["customer_link"].as_str().unwrap();
    assert!(link.starts_with("https://hub.example.com/call/") && link.len() > 60, "{room}");
    assert_eq!(
        room["agent_join"],
        format!("https://hub.example.com/video/agent?room={}", room["room_id"].as_str().unwrap())
    );
    let created = caller.event("video.room").await;
    assert_eq!(
        (created["data"]["state"].as_str(), created["data"]["room_id"].clone()),
        (Some("created"), room["room_id"].clone())
    );
    let invitation = caller.event("message.new").await;
    assert!(invitation["data"]["message"]["text"].as_str().unwrap().contains(link), "{invitation}");
    caller.refused("video.start", json!({"interaction_id": w1}), "conflict").await;
    // what the video node writes for the call (video/src/api.rs, survey.rs): an SMS with the
    // link delivered, then the customer's answer to the post-call survey
    let room_id: Uuid = room["room_id"].as_str().unwrap().parse().unwrap();
    let mut tx = app.pool.begin().await.unwrap();
    let video_room = store::load_room(&mut tx, room_id).await.unwrap();
    let sms_link = store::add_room_link(&mut tx, room_id, store::LinkVia::Sms, "alice").await.unwrap();
    let sms_id = Uuid::new_v4();
    let sms = store::NewSms {
        id: sms_id,
        room: room_id,
        link: &sms_link,
        agent: "alice",
        phone: "+79161234567",
        provider: "smsc",
    };
    store::insert_sms(&mut tx, &sms).await.unwrap();
    let sms_data = json!({"sms_id": sms_id, "room_id": room_id, "interaction_id": w1, "phone": "+7******4567", "state": "delivered"});
    let mut audience = store::record_sms_state(&mut tx, &video_room, sms_id, "delivered", Some("7"), None, &sms_data)
        .await
        .unwrap()
        .unwrap();
    let answers =
        [store::SurveyAnswer { id: "comment".into(), question: "Anything else?".into(), answer: "All good".into() }];
    audience.extend(store::insert_call_survey(&mut tx, &video_room, 5, &answers).await.unwrap().1);
    tx.commit().await.unwrap();
    for agent in &audience {
        app.coord.notify(&schema::topics::agent(agent));
    }
    let delivered = caller.event("video.sms").await;
    assert_eq!(delivered["data"]["state"], "delivered", "{delivered}");
    let rated = caller.event("interaction.rated").await;
    assert_eq!(rated["data"]["rating"], 5, "{rated}");
    // a call booked for later (video/src/schedule_api.rs) and its reminder (schedule.rs)
    let mut tx = app.pool.begin().await.unwrap();
    let mut audience = store::end_room(&mut tx, room_id, "ended_by_agent", Some("alice")).await.unwrap().unwrap().1;
    let at = chrono::Utc::now() + chrono::TimeDelta::hours(2);
    let (mut booked_room, _) = store::NewRoom::with_new_link(
        w1.parse().unwrap(),
        "alice",
        "Alice",
        schema::domain::VideoMode::TwoWay,
        schema::domain::VideoQuality::P720,
        "https://hub.example.com",
        std::time::Duration::from_secs(3600),
    );
    booked_room.link_expires_at = at + chrono::TimeDelta::hours(1);
    let new =
        store::NewScheduledCall { room: booked_room, at, remind_before_s: 900, via: "channel".into(), phone: None };
    let (booked, _, booked_audience) = store::schedule_call(&mut tx, &new).await.unwrap();
    audience.extend(booked_audience);
    let join = store::agent_join_link("https://hub.example.com", booked.room_id);
    audience.extend(store::scheduled_event(&mut tx, &booked, "reminder", json!({"agent_join": join})).await.unwrap());
    tx.commit().await.unwrap();
    for agent in &audience {
        app.coord.notify(&schema::topics::agent(agent));
    }
    let scheduled = caller.event("video.scheduled").await;
    assert_eq!(scheduled["data"]["state"], "scheduled", "{scheduled}");
    let reminder = caller.event("video.scheduled").await;
    assert_eq!(
        (reminder["data"]["state"].as_str(), reminder["data"]["agent_join"].as_str()),
        (Some("reminder"), Some(join.as_str()))
    );
    caller.close().await;
    drop(video_node);

    // an external bot (role `bot`, docs/bots.md): the account's new conversations open in state
    // `bot` for the bots of their queue; it writes, hands off, and is fenced out afterwards
    sqlx::query("UPDATE accounts SET settings = settings || '{\"external_bot\": true}' WHERE id = $1")
        .bind(telegram)
        .execute(&app.pool)
        .await
        .unwrap();
    app.agent("robo", &["support"], 0, &["bot"]).await;
    let mut robo = Session::connect(&app, "robo", &["bot"], &check).await;
    ingest(&app, text_message(telegram, "c9", "c9:1", "is anyone there?")).await;
    let heard = robo.event("message.new").await;
    let b1 = heard["data"]["message"]["interaction_id"].as_str().unwrap().to_owned();
    let said = robo
        .ok("message.send", json!({"interaction_id": b1, "client_msg_id": "robo-1", "text": "Hi! Your order number?"}))
        .await;
    assert_eq!(said["author"]["kind"], "bot", "{said}");
    robo.event("message.new").await;
    alice.refused("bot.handoff", json!({"interaction_id": b1, "queue": "vip"}), "forbidden").await;
    let handed =
        robo.ok("bot.handoff", json!({"interaction_id": b1, "queue": "vip", "fields": {"order": "7731"}})).await;
    assert_eq!((handed["state"].as_str(), handed["fields"]["order"].as_str()), (Some("queued"), Some("7731")));
    robo.refused(
        "message.send",
        json!({"interaction_id": b1, "client_msg_id": "robo-2", "text": "still me"}),
        "bot_fenced",
    )
    .await;
    robo.close().await;

    // bad input: the error reply, and the socket stays usable
    let r = alice.raw(WsMessage::Text("this is not json".into())).await;
    assert_eq!((r["re"].clone(), r["error"]["code"].clone()), (Value::Null, json!("bad_request")), "{r}");
    let r = alice.raw(WsMessage::Binary(vec![1, 2, 3].into())).await;
    assert_eq!((r["re"].clone(), r["error"]["code"].clone()), (Value::Null, json!("bad_request")), "{r}");
    alice.malformed(json!({"id": "no-cmd", "args": {}}), "bad_request").await;
    alice.malformed(json!({"id": "teleport", "cmd": "interaction.teleport", "args": {}}), "unknown_command").await;
    let colour = json!({"interaction_id": w1, "client_msg_id": "c", "text": "x", "colour": "red"});
    alice.malformed(json!({"id": "colour", "cmd": "message.send", "args": colour}), "bad_request").await;
    alice
        .malformed(json!({"id": "asleep", "cmd": "agent.set_status", "args": {"status": "asleep"}}), "bad_request")
        .await;
    alice.malformed(json!({"id": "list-args", "cmd": "interaction.list_queued", "args": [1]}), "bad_request").await;
    alice
        .malformed(
            json!({"id": "mode", "cmd": "interaction.join", "args": {"interaction_id": w1, "mode": "spy"}}),
            "forbidden",
        )
        .await;
    alice.refused("hello", json!({"resume_from": 1_000_000}), "bad_request").await;
    alice.ok("agent.set_status", json!({"status": "ready"})).await;
    alice.event("agent.status").await;

    // a reconnect replays what was missed, from resume_from
    let seen = alice.last_seq;
    alice.close().await;
    ingest(&app, text_message(whatsapp, "w1", "w1:2", "¿sigues ahí?")).await;
    let mut alice = Session::open(&app, "alice", &["agent"], 3600, &check).await;
    let hello = alice.ok("hello", json!({"resume_from": seen - 3})).await;
    assert_eq!(hello["last_seq"], seen + 1, "{hello}");
    assert_eq!(hello["interactions"][0]["id"], w1.as_str());
    let replayed = loop {
        let e = alice.event("message.new").await;
        if e["data"]["message"]["text"] == "¿sigues ahí?" {
            break e;
        }
    };
    assert_eq!(replayed["seq"], seen + 1, "the missed events are replayed in order, then the new one");

    // the token expires: close code 4001
    let mut brief = Session::open(&app, "tess", &["agent"], 3, &check).await;
    brief.ok("hello", json!({})).await;
    assert_eq!(brief.closed_with().await, chatserver::session::CLOSE_TOKEN_EXPIRED);

    // coverage: every command answered ok, every emitted event, every code
    let schema = &check.schema;
    let seen = check.seen.lock().unwrap();
    let mut missing = Vec::new();
    for cmd in chatserver::commands::COMMANDS {
        if !seen.ok_replies.contains(*cmd) {
            missing.push(format!("no ok reply to {cmd}"));
        }
    }
    for (event, entry) in schema.doc["x-events"].as_object().unwrap() {
        if entry["emitted"] != false && !seen.events.contains(event) {
            missing.push(format!("no {event} event"));
        }
    }
    if !seen.updates.contains("supervisor.overview") {
        missing.push("no supervisor.overview update".into());
    }
    for code in schema.enum_of("ErrorCode") {
        if code != "internal" && !seen.error_codes.contains(&code) {
            missing.push(format!("no {code} error"));
        }
    }
    assert!(missing.is_empty(), "the session does not exercise the whole schema: {missing:#?}");
    assert!(
        seen.failures.is_empty(),
        "{} of {} frames break docs/agent-api.schema.json:\n\n{}",
        seen.failures.len(),
        seen.frames,
        seen.failures.join("\n\n")
    );
}

// ---------------------------------------------------------------------------------------------
// The docs and the schema name everything the code has

/// String literals in `dir`'s `.rs` files that look like event names (`word.word`).
fn event_literals(dir: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rs") {
            let source = read(path.to_str().unwrap());
            for literal in source.split('"').skip(1).step_by(2) {
                let parts: Vec<&str> = literal.split('.').collect();
                let word = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_lowercase() || c == '_');
                if parts.len() == 2 && parts.iter().all(|p| word(p)) {
                    found.insert(literal.to_owned());
                }
            }
        }
    }
    found
}

/// The values of `pub const NAME: &str = "value";` in a source file.
fn const_strings(path: &str) -> Vec<String> {
    read(path)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub const ")?.split_once(": &str = \"")?.1.strip_suffix("\";"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_docs_and_the_schema_name_every_command_event_error_and_close_code() {
    let schema = Schema::load();
    let doc = read(DOC_PATH);
    let mut problems = Vec::new();
    let mut need = |ok: bool, what: String| {
        if !ok {
            problems.push(what);
        }
    };

    let commands: BTreeSet<String> = chatserver::commands::COMMANDS.iter().map(|c| c.to_string()).collect();
    for cmd in &commands {
        need(doc.contains(&format!("### `{cmd}`")), format!("docs/agent-api.md has no `### `{cmd}`` section"));
    }
    need(schema.keys("x-commands") == commands, format!("x-commands != COMMANDS: {:?}", schema.keys("x-commands")));
    need(schema.enum_of("Command") == commands, "$defs/Command != COMMANDS".into());
    need(schema.branches("Request", "cmd") == commands, "$defs/Request has not one branch per command".into());

    let events = schema.keys("x-events");
    need(schema.enum_of("EventName") == events, "$defs/EventName != x-events".into());
    need(schema.branches("Event", "event") == events, "$defs/Event has not one branch per event".into());
    for event in &events {
        need(doc.contains(&format!("### `{event}`")), format!("docs/agent-api.md has no `### `{event}`` section"));
    }
    // every event the store writes is described: to agents (x-events) or in history only; a
    // campaign's own events (`campaign_events`, webhooks only, never in an agent's stream or a
    // customer's history) with the webhooks, in docs/interaction-loader.md
    let history_only = schema.keys("x-history-kinds");
    let loader_doc = read(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/interaction-loader.md"));
    let store_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../schema/src/store");
    for name in event_literals(store_dir) {
        if name.starts_with("campaign.") {
            need(
                !events.contains(&name) && !history_only.contains(&name),
                format!("{name:?} is a campaign's event, not an agent's or the history's"),
            );
            need(
                loader_doc.contains(&format!("`{name}`")),
                format!("docs/interaction-loader.md never mentions the campaign event `{name}`"),
            );
            continue;
        }
        need(
            events.contains(&name) || history_only.contains(&name),
            format!("the store writes {name:?}, which x-events / x-history-kinds do not describe"),
        );
        need(doc.contains(&format!("`{name}`")), format!("docs/agent-api.md never mentions `{name}`"));
    }
    for (def, entry) in
        schema.doc["x-events"].as_object().unwrap().iter().chain(schema.doc["x-commands"].as_object().unwrap())
    {
        for key in ["args", "data"] {
            if let Some(name) = entry[key].as_str() {
                need(schema.doc["$defs"][name].is_object(), format!("{def}.{key} names a missing $defs/{name}"));
            }
        }
    }

    let codes = const_strings(concat!(env!("CARGO_MANIFEST_DIR"), "/src/error.rs"));
    assert!(codes.len() >= 10, "error codes not found in src/error.rs: {codes:?}");
    need(
        schema.enum_of("ErrorCode") == codes.iter().cloned().collect(),
        format!("$defs/ErrorCode != src/error.rs {codes:?}"),
    );
    for code in
        codes.iter().chain(["unauthorized", "token_expired", "invalid_token", "unavailable"].map(String::from).iter())
    {
        need(doc.contains(&format!("| `{code}` |")), format!("docs/agent-api.md has no error table row for `{code}`"));
    }
    use chatserver::session::{CLOSE_NO_PONG, CLOSE_SLOW_CLIENT, CLOSE_TOKEN_EXPIRED};
    for close in [CLOSE_TOKEN_EXPIRED, CLOSE_SLOW_CLIENT, CLOSE_NO_PONG, 1001, 1011] {
        need(doc.contains(&format!("| `{close}` |")), format!("docs/agent-api.md has no close-code row for `{close}`"));
    }
    assert!(problems.is_empty(), "docs or schema behind the code:\n  {}", problems.join("\n  "));
}

/// Every ```json block of the docs is a sequence of frames (or HTTP refusal bodies), and each
/// validates; a reply is checked against the command of the request with its `id`.
#[test]
fn every_json_example_in_the_docs_validates() {
    let schema = Schema::load();
    let doc = read(DOC_PATH);
    let mut cmds: HashMap<String, String> = HashMap::new();
    let mut failures = Vec::new();
    let mut examples = 0;
    for (n, block) in doc.split("```").enumerate().filter(|(n, _)| n % 2 == 1) {
        let Some(body) = block.strip_prefix("json\n") else { continue };
        for value in serde_json::Deserializer::from_str(body).into_iter::<Value>() {
            let value = match value {
                Ok(v) => v,
                Err(e) => {
                    failures.push(format!("block {n} is not a sequence of JSON values ({e}):\n{body}"));
                    break;
                }
            };
            examples += 1;
            let mut errors = if value.get("error").is_some() && value.get("re").is_none() {
                complaints(&schema.http_error, &value)
            } else {
                complaints(&schema.any_frame, &value)
            };
            if let (Some(id), Some(cmd)) = (value["id"].as_str(), value["cmd"].as_str()) {
                cmds.insert(id.to_owned(), cmd.to_owned());
            }
            if let Some(cmd) = value["re"].as_str().and_then(|re| cmds.get(re)) {
                errors.extend(
                    complaints(&schema.reply_to[cmd], &value).into_iter().map(|e| format!("(reply to {cmd}) {e}")),
                );
            } else if value["re"].is_string() && value["ok"] == true {
                errors.push("an ok reply whose request is not shown before it".into());
            }
            if !errors.is_empty() {
                failures.push(format!("{value}\n    {}", errors.join("\n    ")));
            }
        }
    }
    assert!(examples >= 40, "only {examples} JSON examples found in docs/agent-api.md");
    assert!(
        failures.is_empty(),
        "{} examples in docs/agent-api.md break the schema:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// The schema is strict where it claims to be: typical drift is caught.
#[test]
fn the_schema_refuses_typical_drift() {
    let schema = Schema::load();
    let interaction = json!({
        "id": "0196a1b2-7c3d-7e4f-8a5b-6c7d8e9f0a1b", "channel": "telegram",
        "account_id": "0196a0f0-1111-7000-8000-000000000001",
        "customer": {"id": "0196a1b2-7c3d-7e4f-8a5b-000000000c01", "name": "Maria", "external_id": "5938221"},
        "state": "offered", "queue": "support", "agent": "alice",
        "created_at": "2026-05-04T09:15:27.123456Z", "fields": {}
    });
    let good =
        json!({"seq": 7, "event": "interaction.offered", "data": {"timeout_ms": 30000, "interaction": interaction}});
    assert!(complaints(&schema.server_frame, &good).is_empty(), "{:?}", complaints(&schema.server_frame, &good));
    type Drift = (&'static str, fn(&mut Value));
    let drifts: [Drift; 12] = [
        ("an unknown field in an object", |f| f["data"]["interaction"]["priority"] = json!(1)),
        ("an unknown field in a payload", |f| f["data"]["offered_by"] = json!("router")),
        ("a missing payload field", |f| drop(f["data"].as_object_mut().unwrap().remove("timeout_ms"))),
        ("an unknown state", |f| f["data"]["interaction"]["state"] = json!("waiting")),
        ("the wrong state for the event", |f| f["data"]["interaction"]["state"] = json!("assigned")),
        ("an unknown channel", |f| f["data"]["interaction"]["channel"] = json!("icq")),
        ("a null where the field is omitted", |f| f["data"]["interaction"]["closed_at"] = Value::Null),
        ("a malformed UUID", |f| f["data"]["interaction"]["id"] = json!("42")),
        ("a local time", |f| f["data"]["interaction"]["created_at"] = json!("2026-05-04T11:15:27+02:00")),
        ("an unknown event", |f| f["event"] = json!("interaction.vanished")),
        ("seq 0", |f| f["seq"] = json!(0)),
        ("an unknown envelope field", |f| f["at"] = json!("2026-05-04T09:15:27Z")),
    ];
    for (what, drift) in drifts {
        let mut frame = good.clone();
        drift(&mut frame);
        assert!(!schema.server_frame.is_valid(&frame), "the schema accepts {what}: {frame}");
    }
    let id = "0196a1b2-7c3d-7e4f-8a5b-6c7d8e9f0a1b";
    let requests = [
        json!({"id": "1", "cmd": "message.send", "args": {"interaction_id": id, "client_msg_id": "x"}}),
        json!({"id": "2", "cmd": "message.send", "args": {"interaction_id": id, "client_msg_id": "", "text": "x"}}),
        json!({"id": "3", "cmd": "interaction.transfer", "args": {"interaction_id": id}}),
        json!({"id": "4", "cmd": "message.send", "args": {
            "interaction_id": id, "client_msg_id": "k", "text": "x",
            "keyboard": {"type": "inline", "rows": [[{"text": "no data"}]]}
        }}),
        json!({"id": "5", "cmd": "interaction.accept"}),
        json!({"id": 6, "cmd": "hello"}),
        json!({"id": "7", "cmd": "history.get", "args": {"interaction_id": id, "limit": 201}}),
    ];
    for r in requests {
        assert!(!schema.request.is_valid(&r), "the schema accepts {r}");
    }
    let replies = [
        json!({"re": "1", "ok": true}),
        json!({"re": "1", "ok": false, "error": {"code": "teapot", "message": "x"}}),
        json!({"re": "1", "ok": true, "data": {}, "error": {"code": "internal", "message": "x"}}),
        json!({"re": null, "ok": true, "data": {}}),
    ];
    for r in replies {
        assert!(!schema.server_frame.is_valid(&r), "the schema accepts {r}");
    }
    let empty_with_data = json!({"re": "d", "ok": true, "data": {"deleted": true}});
    assert!(!schema.reply_to["message.delete"].is_valid(&empty_with_data));
}
