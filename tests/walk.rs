//! The walk: every REST route of the interaction loader and every agent command, on a real
//! `switchboard all`, with a NUL, control characters and a 10,000-character string in every
//! string field (a message's own text, which may be long and is split for the platform, with
//! one over its bound of 32,768 characters) (path parameters, query parameters, body fields at any depth; a command's
//! `args` and the frame's own `id` and `cmd`), and empty lists where a list must not be empty.
//! Each template request is first checked to be accepted as input (whatever the outcome:
//! `not_found` and the like are fine); every mutation of it must be refused with 400 /
//! `bad_request`, never 500 / `internal`.

use futures::{SinkExt, StreamExt};
use reqwest::Method;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use uuid::Uuid;

const SECRET: &str = "walk-test-secret-walk-test-secret-walk";
const KEY: &str = "sk_walktestbootstrapkey0123456789abcdefghij";

/// What every string field is tried with.
fn bad_strings() -> Vec<(&'static str, String)> {
    vec![
        ("a NUL", "\u{0}".to_owned()),
        ("a NUL inside", "ab\u{0}cd".to_owned()),
        ("a control character", "x\u{1}y".to_owned()),
        ("an escape sequence", "\u{1b}[31mred".to_owned()),
        ("DEL", "del\u{7f}".to_owned()),
        ("10,000 characters", "x".repeat(10_000)),
    ]
}

/// A JSON path: object keys and array indices.
#[derive(Clone, Debug)]
enum Step {
    Key(String),
    Index(usize),
}

fn string_paths(value: &Value, at: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
    match value {
        Value::String(_) => out.push(at.clone()),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                at.push(Step::Index(i));
                string_paths(item, at, out);
                at.pop();
            }
        }
        Value::Object(map) => {
            for (k, item) in map {
                at.push(Step::Key(k.clone()));
                string_paths(item, at, out);
                at.pop();
            }
        }
        _ => {}
    }
}

fn set(value: &mut Value, path: &[Step], new: Value) {
    let mut here = value;
    for step in path {
        here = match step {
            Step::Key(k) => &mut here[k.as_str()],
            Step::Index(i) => &mut here[*i],
        };
    }
    *here = new;
}

fn show(path: &[Step]) -> String {
    path.iter()
        .map(|s| match s {
            Step::Key(k) => format!(".{k}"),
            Step::Index(i) => format!("[{i}]"),
        })
        .collect()
}

/// Every mutation of a JSON template: each string leaf replaced by each bad string, and each
/// listed array emptied.
fn mutations(template: &Value, empty_lists: &[&[Step]]) -> Vec<(String, Value)> {
    let mut paths = Vec::new();
    string_paths(template, &mut Vec::new(), &mut paths);
    let mut out = Vec::new();
    for path in &paths {
        // a message's own text may be long (it is split for the platform): over its bound
        let message_text = matches!(path.as_slice(), [Step::Key(k)] if k == "text" || k == "message");
        for (what, bad) in bad_strings() {
            let (what, bad) = if message_text && bad.len() == 10_000 {
                ("over 32,768 characters", "x".repeat(ops::input::TEXT_MAX_CHARS + 1))
            } else {
                (what, bad)
            };
            let mut v = template.clone();
            set(&mut v, path, Value::String(bad));
            out.push((format!("{} = {what}", show(path)), v));
        }
    }
    for path in empty_lists {
        let mut v = template.clone();
        set(&mut v, path, json!([]));
        out.push((format!("{} = []", show(path)), v));
    }
    out
}

fn key(k: &str) -> Step {
    Step::Key(k.to_owned())
}

/// One REST route: method, path segments (`:name` marks a parameter, with its value), query
/// parameters and body, as a request that passes the input rules.
struct Route {
    method: Method,
    segments: Vec<(&'static str, Option<String>)>,
    query: Vec<(&'static str, String)>,
    /// Parameters tried only mutated (no valid value at hand, e.g. a cursor).
    mutated_only: Vec<&'static str>,
    /// Parameters whose empty forms (`x=`, `x=,,,`) must be refused too.
    lists: Vec<&'static str>,
    body: Option<Value>,
    empty_lists: Vec<Vec<Step>>,
    /// Send the template itself first (not for deletions).
    baseline: bool,
}

impl Route {
    fn new(method: Method, path: &str) -> Route {
        Route {
            method,
            segments: path.split('/').filter(|s| !s.is_empty()).map(|s| (leak(s), None)).collect(),
            query: Vec::new(),
            mutated_only: Vec::new(),
            lists: Vec::new(),
            body: None,
            empty_lists: Vec::new(),
            baseline: true,
        }
    }

    /// Fills the path parameter `{name}`.
    fn param(mut self, name: &str, value: impl ToString) -> Route {
        let marker = format!("{{{name}}}");
        for segment in &mut self.segments {
            if segment.0 == marker {
                segment.1 = Some(value.to_string());
            }
        }
        self
    }

    fn query(mut self, pairs: &[(&'static str, &str)]) -> Route {
        self.query = pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        self
    }

    fn body(mut self, body: Value, empty_lists: &[&[&str]]) -> Route {
        self.body = Some(body);
        self.empty_lists = empty_lists.iter().map(|p| p.iter().map(|k| key(k)).collect()).collect();
        self
    }

    fn path_with(&self, replaced: Option<(usize, &str)>) -> String {
        let mut path = String::new();
        for (i, (segment, value)) in self.segments.iter().enumerate() {
            let text = match (replaced, value) {
                (Some((at, bad)), _) if at == i => bad.to_owned(),
                (_, Some(v)) => v.clone(),
                (_, None) => (*segment).to_owned(),
            };
            path.push('/');
            path.push_str(&url::form_urlencoded::byte_serialize(text.as_bytes()).collect::<String>());
        }
        path
    }
}

fn leak(s: &str) -> &'static str {
    Box::leak(s.to_owned().into_boxed_str())
}

fn query_string(pairs: &[(&str, String)]) -> String {
    let mut serializer = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        serializer.append_pair(k, v);
    }
    serializer.finish()
}

struct Rest {
    http: reqwest::Client,
    base: String,
}

impl Rest {
    async fn send(&self, method: &Method, path: &str, query: &str, body: Option<&Value>) -> (u16, Value) {
        let url =
            if query.is_empty() { format!("{}{path}", self.base) } else { format!("{}{path}?{query}", self.base) };
        let mut request = self.http.request(method.clone(), url).bearer_auth(KEY);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.expect("a response");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }
}

/// One agent socket.
struct Agent {
    ws: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    n: u64,
}

impl Agent {
    async fn send_frame(&mut self, frame: Value, re: Option<&str>) -> Value {
        self.ws.send(Message::Text(frame.to_string().into())).await.unwrap();
        loop {
            let msg = tokio::time::timeout(std::time::Duration::from_secs(20), self.ws.next())
                .await
                .expect("a reply in time")
                .expect("socket open")
                .expect("a frame");
            if let Message::Text(t) = msg {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v.get("seq").is_none() && v["re"].as_str() == re {
                    return v;
                }
            }
        }
    }

    async fn call(&mut self, cmd: &str, args: &Value) -> Value {
        self.n += 1;
        let id = format!("w{}", self.n);
        self.send_frame(json!({"id": id, "cmd": cmd, "args": args}), Some(&id)).await
    }
}

#[tokio::test]
async fn every_route_and_command_refuses_bad_strings_with_bad_request() {
    let (db_url, _pool) = testenv::database().await;
    let root = format!("/test-{}", Uuid::new_v4().simple());
    let node = testenv::Switchboard::start(
        env!("CARGO_BIN_EXE_switchboard"),
        &["all"],
        &[
            ("SWITCHBOARD_DATABASE__URL", &db_url),
            ("SWITCHBOARD_COORD__ROOT", &root),
            ("SWITCHBOARD_JWT__HS256_SECRET", SECRET),
            ("SWITCHBOARD_LOADER__BOOTSTRAP_KEY", KEY),
            // subscriptions made here are never delivered to
            ("SWITCHBOARD_LOADER__WEBHOOKS__DELIVER", "false"),
        ],
    );
    let rest = Rest { http: reqwest::Client::new(), base: format!("http://{}", node.addr) };

    // things the templates name: an account, a subscription
    let (status, accounts) = rest.send(&Method::GET, "/api/v1/accounts", "", None).await;
    assert_eq!(status, 200, "{accounts}");
    let account = accounts["items"][0]["id"].as_str().expect("the demo's web chat account").to_owned();
    let hook = json!({"url": "http://198.51.100.7/hook", "events": ["message.new"], "description": "walk"});
    let (status, created) = rest.send(&Method::POST, "/api/v1/webhooks", "", Some(&hook)).await;
    assert_eq!(status, 201, "{created}");
    let webhook = created["webhook"]["id"].as_str().unwrap().to_owned();
    // a WhatsApp account, for its message templates
    let wa = json!({"channel": "whatsapp", "name": "walk-wa", "default_queue": "support",
        "credentials": {"access_token": "t", "app_secret": "s", "verify_token": "v"},
        "settings": {"provider": "cloud", "phone_number_id": "119900223344556"}});
    let (status, created) = rest.send(&Method::POST, "/api/v1/accounts", "", Some(&wa)).await;
    assert_eq!(status, 201, "{created}");
    let whatsapp = created["id"].as_str().unwrap().to_owned();
    let some = Uuid::now_v7().to_string();
    let period: &[(&str, &str)] = &[
        ("from", "2024-01-01T00:00:00Z"),
        ("to", "2024-01-02T00:00:00Z"),
        ("channel", "telegram,webchat"),
        ("account_id", &account),
        ("queue", "support"),
        ("agent", "alice"),
        ("state", "queued,closed"),
        ("customer_id", &some),
        ("q", "order"),
    ];
    let with_page = |extra: &[(&'static str, &str)]| -> Vec<(&'static str, String)> {
        period.iter().chain(extra).map(|(k, v)| (*k, (*v).to_owned())).collect()
    };

    let mut routes = vec![
        Route { query: with_page(&[("limit", "10")]), ..Route::new(Method::GET, "/api/v1/interactions") },
        Route::new(Method::GET, "/api/v1/interactions/{id}").param("id", &some),
        Route::new(Method::GET, "/api/v1/interactions/{id}/messages").param("id", &some).query(&[("limit", "10")]),
        Route::new(Method::GET, "/api/v1/interactions/{id}/events")
            .param("id", &some)
            .query(&[("after", "0"), ("limit", "10")]),
        Route::new(Method::GET, "/api/v1/customers").query(&[("external_id", "42"), ("account_id", &account)]),
        Route::new(Method::GET, "/api/v1/customers").query(&[("phone", "+7 999 123-45-67")]),
        Route::new(Method::GET, "/api/v1/customers/{id}").param("id", &some),
        Route { query: with_page(&[]), ..Route::new(Method::GET, "/api/v1/exports/interactions.csv") },
        Route { query: with_page(&[]), ..Route::new(Method::GET, "/api/v1/exports/interactions.xlsx") },
        Route::new(Method::GET, "/api/v1/stats/{report}").param("report", "volume").query(&[
            ("from", "2024-01-01T00:00:00Z"),
            ("to", "2024-01-02T00:00:00Z"),
            ("bucket", "hour"),
            ("tz", "Europe/Moscow"),
            ("channel", "telegram,webchat"),
            ("queue", "support"),
            ("abandon_after_s", "600"),
            ("format", "json"),
        ]),
        Route::new(Method::GET, "/api/v1/accounts"),
        Route::new(Method::POST, "/api/v1/accounts").body(
            json!({"channel": "webchat", "name": "walk", "default_queue": "support",
                   "credentials": {"secret": "s3cret"}, "settings": {"title": "Walk"}}),
            &[],
        ),
        Route::new(Method::GET, "/api/v1/accounts/{id}").param("id", &account),
        Route::new(Method::GET, "/api/v1/accounts/{id}/dead-letters").param("id", &account).query(&[("limit", "10")]),
        Route::new(Method::POST, "/api/v1/dead-letters/{id}/replay").param("id", 1),
        Route::new(Method::GET, "/api/v1/accounts/{id}/templates").param("id", &whatsapp),
        Route::new(Method::PUT, "/api/v1/accounts/{id}/templates/{name}/{language}")
            .param("id", &whatsapp)
            .param("name", "order_update")
            .param("language", "en")
            .body(json!({"body": "Order {{1}} shipped.", "category": "utility"}), &[]),
        Route::new(Method::DELETE, "/api/v1/accounts/{id}/templates/{name}/{language}")
            .param("id", &whatsapp)
            .param("name", "order_update")
            .param("language", "en"),
        Route::new(Method::GET, "/api/v1/interaction-fields"),
        Route::new(Method::PUT, "/api/v1/interaction-fields/{key}")
            .param("key", "topic")
            .body(json!({"label": "Тема", "type": "choice", "choices": ["Заказ", "Возврат"], "required": true}), &[&["choices"]]),
        Route::new(Method::DELETE, "/api/v1/interaction-fields/{key}").param("key", "topic"),
        Route::new(Method::PATCH, "/api/v1/accounts/{id}")
            .param("id", &account)
            .body(json!({"name": "Acme", "default_queue": "support", "settings": {"title": "Acme"}}), &[]),
        Route::new(Method::GET, "/api/v1/agents"),
        Route::new(Method::GET, "/api/v1/agents/{login}").param("login", "alice"),
        Route::new(Method::PUT, "/api/v1/agents/{login}").param("login", "walker").body(
            json!({"name": "Walker", "roles": ["agent"], "queues": ["support"], "max_interactions": 3,
                   "channel_capacity": {"telegram": 1}}),
            &[],
        ),
        Route::new(Method::GET, "/api/v1/queues"),
        Route::new(Method::GET, "/api/v1/queues/{name}").param("name", "support"),
        Route::new(Method::PUT, "/api/v1/queues/{name}")
            .param("name", "walk")
            .body(json!({"routing_mode": "auto", "offer_timeout_ms": 30000}), &[]),
        Route::new(Method::GET, "/api/v1/api-keys"),
        Route::new(Method::POST, "/api/v1/api-keys")
            .body(json!({"name": "walk", "scopes": ["interactions:read"]}), &[&["scopes"]]),
        Route { baseline: false, ..Route::new(Method::DELETE, "/api/v1/api-keys/{id}").param("id", &some) },
        Route::new(Method::GET, "/api/v1/audit").query(&[
            ("actor", "bootstrap"),
            ("action", "account."),
            ("target_kind", "account"),
            ("target_id", &account),
            ("from", "2024-01-01T00:00:00Z"),
            ("to", "2030-01-01T00:00:00Z"),
            ("limit", "10"),
        ]),
        Route::new(Method::GET, "/api/v1/webhooks"),
        Route::new(Method::POST, "/api/v1/webhooks").body(hook.clone(), &[&["events"]]),
        Route::new(Method::GET, "/api/v1/webhooks/{id}").param("id", &webhook),
        Route::new(Method::PATCH, "/api/v1/webhooks/{id}").param("id", &webhook).body(
            json!({"url": "http://198.51.100.8/hook", "events": ["*"], "description": "walked", "enabled": true}),
            &[&["events"]],
        ),
        Route { baseline: false, ..Route::new(Method::DELETE, "/api/v1/webhooks/{id}").param("id", &some) },
        Route::new(Method::PUT, "/api/v1/webhooks/{id}/secret").param("id", &webhook),
        Route::new(Method::GET, "/api/v1/webhooks/{id}/deliveries")
            .param("id", &webhook)
            .query(&[("state", "pending"), ("limit", "10")]),
        Route::new(Method::GET, "/api/v1/webhooks/{id}/deliveries/{delivery_id}")
            .param("id", &webhook)
            .param("delivery_id", 1),
        Route::new(Method::POST, "/api/v1/webhooks/{id}/deliveries/{delivery_id}/redeliver")
            .param("id", &webhook)
            .param("delivery_id", 1),
        // video calls and storage
        Route::new(Method::GET, "/api/v1/interactions/{id}/calls").param("id", &some),
        Route::new(Method::GET, "/api/v1/calls").query(&[
            ("from", "2024-01-01T00:00:00Z"),
            ("to", "2024-01-02T00:00:00Z"),
            ("agent", "alice"),
            ("limit", "10"),
        ]),
        Route::new(Method::GET, "/api/v1/calls/{id}").param("id", &some),
        Route::new(Method::GET, "/api/v1/exports/calls.csv").query(&[
            ("from", "2024-01-01T00:00:00Z"),
            ("to", "2024-01-02T00:00:00Z"),
            ("agent", "alice"),
        ]),
        Route::new(Method::GET, "/api/v1/exports/calls.xlsx").query(&[
            ("from", "2024-01-01T00:00:00Z"),
            ("to", "2024-01-02T00:00:00Z"),
            ("agent", "alice"),
        ]),
        Route::new(Method::GET, "/api/v1/storage"),
        Route::new(Method::GET, "/api/v1/flows"),
        Route::new(Method::PUT, "/api/v1/flows/{name}").param("name", "walk").body(
            json!({"start": "hello", "fallback_queue": "support", "nodes": {
                "hello": {"kind": "send", "text": "Hi!", "buttons": ["Yes", "No"], "next": "topic"},
                "topic": {"kind": "wait", "var": "topic", "timeout_s": 60, "next": "route", "on_timeout": "human"},
                "route": {"kind": "branch", "var": "topic", "cases": [{"equals": "yes", "next": "human"}], "default": "human"},
                "human": {"kind": "handoff", "queue": "support"}}}),
            &[],
        ),
        Route::new(Method::GET, "/api/v1/flows/{name}").param("name", "walk"),
        Route::new(Method::GET, "/api/v1/flows/{name}/versions/{version}").param("name", "walk").param("version", "1"),
        Route::new(Method::GET, "/api/v1/queues/{name}/greeting-flow").param("name", "support"),
        Route::new(Method::PUT, "/api/v1/queues/{name}/greeting-flow")
            .param("name", "support")
            .body(json!({"flow": "walk"}), &[]),
        Route::new(Method::GET, "/api/v1/queues/{name}/video").param("name", "support"),
        Route::new(Method::PUT, "/api/v1/queues/{name}/video")
            .param("name", "support")
            .body(json!({"record": false}), &[]),
    ];
    for route in &mut routes {
        let path: String = route.segments.iter().map(|(s, _)| format!("/{s}")).collect();
        if path == "/api/v1/interactions" || path.starts_with("/api/v1/exports/interactions") {
            route.lists = vec!["channel", "state"];
        }
        if path.starts_with("/api/v1/stats") {
            route.lists = vec!["channel", "queue"];
        }
        if path == "/api/v1/interactions"
            || path.ends_with("/dead-letters")
            || path.ends_with("/messages")
            || path.ends_with("/deliveries")
            || path == "/api/v1/audit"
        {
            route.mutated_only = vec!["cursor"];
        }
    }

    let mut refused = 0;
    for route in &routes {
        let name = format!("{} {}", route.method, route.path_with(None));
        let query = query_string(&route.query);
        if route.baseline {
            let (status, body) = rest.send(&route.method, &route.path_with(None), &query, route.body.as_ref()).await;
            assert!(status < 400 || status == 404, "the template of {name}?{query} is refused: {status} {body}");
        }
        let mut cases: Vec<(String, String, String, Option<Value>)> = Vec::new();
        for (i, (segment, value)) in route.segments.iter().enumerate() {
            if value.is_some() {
                for (what, bad) in bad_strings() {
                    cases.push((
                        format!("path {segment} = {what}"),
                        route.path_with(Some((i, &bad))),
                        query.clone(),
                        route.body.clone(),
                    ));
                }
            }
        }
        let names: Vec<&str> = route.query.iter().map(|(k, _)| *k).chain(route.mutated_only.iter().copied()).collect();
        for name in names {
            let mut variants: Vec<(String, String)> =
                bad_strings().into_iter().map(|(w, b)| (w.to_owned(), b)).collect();
            if route.lists.contains(&name) {
                variants.push(("an empty list".into(), String::new()));
                variants.push(("a list of empty items".into(), ",,,".into()));
                variants.push(("a list with an empty item".into(), "webchat,".into()));
            }
            for (what, bad) in variants {
                let mut pairs: Vec<(&str, String)> = route.query.iter().filter(|(k, _)| *k != name).cloned().collect();
                pairs.push((name, bad));
                cases.push((
                    format!("query {name} = {what}"),
                    route.path_with(None),
                    query_string(&pairs),
                    route.body.clone(),
                ));
            }
        }
        if let Some(body) = &route.body {
            let empties: Vec<&[Step]> = route.empty_lists.iter().map(Vec::as_slice).collect();
            for (what, mutated) in mutations(body, &empties) {
                cases.push((format!("body{what}"), route.path_with(None), query.clone(), Some(mutated)));
            }
        }
        for (what, path, query, body) in cases {
            let (status, answer) = rest.send(&route.method, &path, &query, body.as_ref()).await;
            assert_eq!(status, 400, "{name} with {what}: {answer}");
            assert_eq!(answer["error"]["code"], "bad_request", "{name} with {what}: {answer}");
            refused += 1;
        }
    }

    // the agent API
    let mut request = format!("ws://{}/api/v1/agent/ws", node.addr).into_client_request().unwrap();
    let token = testenv::token(SECRET, "walker", &["agent"]);
    request.headers_mut().insert("Authorization", format!("Bearer {token}").parse().unwrap());
    let (ws, _) = tokio_tungstenite::connect_async(request).await.expect("connect");
    let mut agent = Agent { ws, n: 0 };
    let hello = agent.call("hello", &json!({})).await;
    assert_eq!(hello["ok"], true, "{hello}");
    let id = Uuid::now_v7().to_string();
    let keyboard = json!({"type": "inline", "rows": [[{"text": "Yes", "data": "y"}, {"text": "No", "data": "n"}]]});
    let reply_keyboard = json!({"type": "reply", "rows": [[{"text": "Share my phone", "request_phone": true}]]});
    let rows: &[&[Step]] = &[&[key("keyboard"), key("rows")], &[key("keyboard"), key("rows"), Step::Index(0)]];
    let commands: Vec<(&str, Value, &[&[Step]])> = vec![
        ("agent.set_status", json!({"status": "away", "reason": "lunch"}), &[]),
        ("interaction.accept", json!({"interaction_id": id}), &[]),
        ("interaction.decline", json!({"interaction_id": id}), &[]),
        ("interaction.take", json!({"interaction_id": id}), &[]),
        ("interaction.list_queued", json!({"queue": "support", "limit": 10}), &[]),
        ("interaction.transfer", json!({"interaction_id": id, "to_agent": "alice", "note": "over to you"}), &[]),
        ("interaction.transfer", json!({"interaction_id": id, "to_queue": "support"}), &[]),
        ("interaction.close", json!({"interaction_id": id, "reason": "resolved"}), &[]),
        (
            "interaction.start",
            json!({"account_id": account, "customer": {"external_id": "42"}, "message": "hi", "client_msg_id": "s1"}),
            &[],
        ),
        ("interaction.start", json!({"account_id": account, "customer": {"phone": "+7 999 1234567"}}), &[]),
        ("interaction.join", json!({"interaction_id": id, "mode": "monitor"}), &[]),
        (
            "message.send",
            json!({"interaction_id": id, "client_msg_id": "m1", "text": "hello", "keyboard": keyboard, "reply_to": id}),
            rows,
        ),
        (
            "message.send",
            json!({"interaction_id": id, "client_msg_id": "m2", "text": "a", "keyboard": reply_keyboard}),
            rows,
        ),
        (
            "message.send",
            json!({"interaction_id": id, "client_msg_id": "m3", "contact": {"phone": "+7 999 1234567", "name": "Olga"}}),
            &[],
        ),
        (
            "message.send",
            json!({"interaction_id": id, "client_msg_id": "m4",
                   "location": {"lat": 55.7, "lon": 37.6, "address": "Tverskaya 1"}}),
            &[],
        ),
        (
            "message.send",
            json!({"interaction_id": id, "client_msg_id": "m5", "sticker": {"sticker_id": "CAADAgAD"}}),
            &[],
        ),
        ("message.send", json!({"interaction_id": id, "client_msg_id": "m6", "forward": {"message_id": id}}), &[]),
        (
            "message.send",
            json!({"interaction_id": id, "client_msg_id": "m7",
                   "template": {"name": "order_update", "language": "en", "params": ["7731"]}}),
            &[],
        ),
        ("message.edit", json!({"message_id": id, "text": "fixed"}), &[]),
        ("message.delete", json!({"message_id": id}), &[]),
        ("message.read", json!({"interaction_id": id, "up_to": id}), &[]),
        ("interaction.typing", json!({"interaction_id": id, "typing": true}), &[]),
        ("history.get", json!({"interaction_id": id, "limit": 10}), &[]),
        ("history.get", json!({"customer_id": id, "before": 5}), &[]),
        ("video.start", json!({"interaction_id": id, "mode": "two_way", "quality": "720p"}), &[]),
        ("bot.handoff", json!({"interaction_id": id, "queue": "support", "fields": {"order": "7731"}}), &[]),
    ];
    for (cmd, args, empty_lists) in &commands {
        let baseline = agent.call(cmd, args).await;
        assert_ne!(baseline["error"]["code"], "bad_request", "the template of {cmd} {args} is refused: {baseline}");
        for (what, mutated) in mutations(args, empty_lists) {
            let reply = agent.call(cmd, &mutated).await;
            assert_eq!(reply["ok"], false, "{cmd} with args{what}: {reply}");
            assert_eq!(reply["error"]["code"], "bad_request", "{cmd} with args{what}: {reply}");
            refused += 1;
        }
    }
    // the frame's own strings
    for (what, bad) in bad_strings() {
        let reply = agent.send_frame(json!({"id": bad, "cmd": "history.get", "args": {}}), None).await;
        assert_eq!(reply["error"]["code"], "bad_request", "id = {what}: {reply}");
        let reply = agent.send_frame(json!({"id": "c", "cmd": bad, "args": {}}), Some("c")).await;
        assert_eq!(reply["error"]["code"], "bad_request", "cmd = {what}: {reply}");
        refused += 2;
    }
    let still = agent.call("agent.set_status", &json!({"status": "ready"})).await;
    assert_eq!(still["ok"], true, "the socket still serves: {still}");
    let (status, _) = rest.send(&Method::GET, "/api/v1/agents", "", None).await;
    assert_eq!(status, 200, "the API still serves");
    eprintln!(
        "walk: {} routes, {} command templates, {refused} bad inputs refused with bad_request",
        routes.len(),
        commands.len()
    );
}
