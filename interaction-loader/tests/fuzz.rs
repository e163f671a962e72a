//! Generated REST requests against the real loader on a real database: random routes with
//! random path parameters, query strings (known and unknown parameters, hostile values) and
//! bodies (JSON built from each route's field names, and things that are not JSON). Whatever
//! comes, the answer is a 2xx, 3xx or 4xx with the error body, never a 5xx. A short run is part
//! of the suite; the long run is `#[ignore]`d (see `testenv::fuzz`).

mod harness;

use std::net::IpAddr;
use std::sync::Arc;

use harness::{TestApp, test_config};
use interaction_loader::webhooks::target::{Lookup, Targets};
use reqwest::Method;
use testenv::fuzz::{self, Gen};

/// No name resolves: subscriptions to names are accepted without a lookup leaving the machine.
struct NoDns;

impl Lookup for NoDns {
    fn lookup(&self, _host: &str) -> futures::future::BoxFuture<'static, std::io::Result<Vec<IpAddr>>> {
        Box::pin(async { Err(std::io::Error::other("no names in this test")) })
    }
}

struct Route {
    method: Method,
    path: &'static str,
    query: &'static [&'static str],
    body: &'static [&'static str],
}

const PERIOD: &[&str] =
    &["from", "to", "channel", "account_id", "queue", "agent", "state", "customer_id", "q", "limit", "cursor"];

const ROUTES: &[Route] = &[
    Route { method: Method::GET, path: "/api/v1/interactions", query: PERIOD, body: &[] },
    Route { method: Method::GET, path: "/api/v1/interactions/{id}", query: &[], body: &[] },
    Route { method: Method::GET, path: "/api/v1/interactions/{id}/messages", query: &["limit", "cursor"], body: &[] },
    Route { method: Method::GET, path: "/api/v1/interactions/{id}/events", query: &["after", "limit"], body: &[] },
    Route { method: Method::GET, path: "/api/v1/customers", query: &["phone", "external_id", "account_id"], body: &[] },
    Route { method: Method::GET, path: "/api/v1/customers/{id}", query: &[], body: &[] },
    Route { method: Method::GET, path: "/api/v1/exports/interactions.csv", query: PERIOD, body: &[] },
    Route { method: Method::GET, path: "/api/v1/exports/interactions.xlsx", query: PERIOD, body: &[] },
    Route {
        method: Method::POST,
        path: "/api/v1/accounts",
        query: &[],
        body: &["channel", "name", "default_queue", "credentials", "settings"],
    },
    Route {
        method: Method::PATCH,
        path: "/api/v1/accounts/{id}",
        query: &[],
        body: &["name", "enabled", "default_queue", "credentials", "settings"],
    },
    Route {
        method: Method::PUT,
        path: "/api/v1/agents/{id}",
        query: &[],
        body: &["name", "roles", "queues", "max_interactions", "channel_capacity"],
    },
    Route { method: Method::PUT, path: "/api/v1/queues/{id}", query: &[], body: &["routing_mode", "offer_timeout_ms"] },
    Route { method: Method::POST, path: "/api/v1/api-keys", query: &[], body: &["name", "scopes"] },
    Route { method: Method::DELETE, path: "/api/v1/api-keys/{id}", query: &[], body: &[] },
    Route {
        method: Method::GET,
        path: "/api/v1/audit",
        query: &["actor", "action", "target_kind", "target_id", "from", "to", "limit", "cursor"],
        body: &[],
    },
    Route { method: Method::POST, path: "/api/v1/webhooks", query: &[], body: &["url", "events", "description"] },
    Route {
        method: Method::PATCH,
        path: "/api/v1/webhooks/{id}",
        query: &[],
        body: &["url", "events", "description", "enabled"],
    },
    Route {
        method: Method::GET,
        path: "/api/v1/webhooks/{id}/deliveries",
        query: &["state", "limit", "cursor"],
        body: &[],
    },
    Route { method: Method::GET, path: "/api/v1/webhooks/{id}/deliveries/{id}", query: &[], body: &[] },
    Route { method: Method::GET, path: "/api/v1/accounts/{id}/dead-letters", query: &["limit", "cursor"], body: &[] },
    Route { method: Method::POST, path: "/api/v1/dead-letters/{id}/replay", query: &[], body: &[] },
    Route { method: Method::POST, path: "/api/v1/webhooks/{id}/deliveries/{id}/redeliver", query: &[], body: &[] },
    Route { method: Method::GET, path: "/api/v1/campaigns", query: &["account_id", "limit"], body: &[] },
    Route {
        method: Method::POST,
        path: "/api/v1/campaigns",
        query: &[],
        body: &[
            "account_id",
            "name",
            "text",
            "template",
            "rate_per_s",
            "starts_at",
            "ends_at",
            "quiet_hours",
            "utc_offset_min",
            "recipients",
        ],
    },
    Route { method: Method::GET, path: "/api/v1/campaigns/{id}", query: &[], body: &[] },
    Route { method: Method::POST, path: "/api/v1/campaigns/{id}/recipients", query: &[], body: &["recipients"] },
    Route { method: Method::GET, path: "/api/v1/campaigns/{id}/recipients", query: &["after", "limit"], body: &[] },
    Route { method: Method::POST, path: "/api/v1/campaigns/{id}/{id}", query: &[], body: &[] },
    Route { method: Method::GET, path: "/api/v1/exports/campaigns/{id}/recipients.csv", query: &[], body: &[] },
    Route { method: Method::GET, path: "/api/v1/exports/campaigns/{id}/recipients.xlsx", query: &[], body: &[] },
    Route { method: Method::PUT, path: "/api/v1/accounts/{id}/opt-out-words", query: &[], body: &["words"] },
];

/// Values that mean something to these routes, so that requests get past the first checks.
const MEANINGFUL: &[&str] = &[
    "2024-01-01T00:00:00Z",
    "2030-01-01T00:00:00+03:00",
    "telegram",
    "webchat,telegram",
    "queued,closed",
    "support",
    "alice",
    "10",
    "0",
    "500",
    "501",
    "-1",
    "pending",
    "delivered",
    "account.",
    "webhook",
    "*",
    "message.new",
    "interactions:read",
    "admin:write",
    "auto",
    "manual",
    "http://198.51.100.7/hook",
    "http://127.0.0.1/",
    "+79991234567",
    "21:00-09:00",
    "start",
    "pause",
    "cancel",
];

fn request(app: &TestApp, g: &mut Gen) -> (Method, String, Option<String>) {
    let route = &ROUTES[g.below(ROUTES.len())];
    let mut path = String::new();
    for segment in route.path.split('/').filter(|s| !s.is_empty()) {
        let value = if segment == "{id}" {
            match g.below(4) {
                0 => uuid::Uuid::now_v7().to_string(),
                1 => g.number_text(),
                2 => g.pick(&["alice", "support", "1", "%00", "..", "%2F"]).to_owned(),
                _ => url::form_urlencoded::byte_serialize(g.string(12).as_bytes()).collect(),
            }
        } else {
            segment.to_owned()
        };
        path.push('/');
        path.push_str(&value);
    }
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for _ in 0..g.below(6) {
        let name = if !route.query.is_empty() && g.chance(85) { g.pick(route.query).to_owned() } else { g.string(6) };
        let value = if g.chance(50) { g.pick(MEANINGFUL).to_owned() } else { g.string(16) };
        query.append_pair(&name, &value);
    }
    let query = query.finish();
    let url = if query.is_empty() { app.url(&path) } else { format!("{}?{query}", app.url(&path)) };
    let body = match route.method {
        Method::GET | Method::DELETE => None,
        _ => Some(match g.below(5) {
            0 => g.string(40),
            1 => g.mutate(r#"{"url":"http://198.51.100.7/hook","events":["message.new"],"description":"d"}"#),
            _ => {
                let mut body = g.json(route.body, 3);
                if let serde_json::Value::Object(map) = &mut body {
                    for field in route.body {
                        if g.chance(40) {
                            map.insert((*field).to_owned(), serde_json::Value::String(g.pick(MEANINGFUL).to_owned()));
                        }
                    }
                }
                body.to_string()
            }
        }),
    };
    (route.method.clone(), url, body)
}

async fn walk(name: &str, count: u64) {
    let mut config = test_config();
    config.webhooks.deliver = false; // nothing subscribed here is ever posted to
    let app = harness::spawn_app_with_targets(config, Targets::with_lookup(vec![], Arc::new(NoDns))).await;
    let statuses = std::rc::Rc::new(std::cell::RefCell::new(std::collections::BTreeMap::new()));
    fuzz::run_async(name, count, |g, _| {
        let made = request(&app, g);
        let http = app.http.clone();
        let key = app.key.clone();
        let statuses = statuses.clone();
        async move {
            let (method, url, body) = made;
            let mut builder = http.request(method.clone(), &url).bearer_auth(&key);
            if let Some(body) = &body {
                builder = builder.header("content-type", "application/json").body(body.clone());
            }
            let response = builder.send().await.expect("an answer");
            let status = response.status().as_u16();
            let text = response.text().await.unwrap_or_default();
            assert!(status < 500, "{method} {url} {body:?}: {status} {text}");
            // a path that matches no route (`..` segments are resolved by the client) gets the
            // router's bare 404 or 405; every handler's refusal has the error body
            let unrouted = matches!(status, 404 | 405) && text.is_empty();
            if status >= 400 && !unrouted {
                let error: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                assert!(error["error"]["code"].is_string(), "{method} {url}: {status} {text}");
            }
            *statuses.borrow_mut().entry(status).or_insert(0u64) += 1;
        }
    })
    .await;
    eprintln!("fuzz {name}: answers by status {:?}", statuses.borrow());
}

#[tokio::test]
async fn generated_requests_get_no_server_error() {
    walk("rest requests", 1_500).await;
}

#[tokio::test]
#[ignore = "long run: FUZZ_INPUTS=<n> cargo test -p interaction-loader --test fuzz -- --ignored --nocapture"]
async fn long_run_generated_requests() {
    walk("rest requests (long)", fuzz::inputs(100_000)).await;
}
