//! Webhook delivery to a local receiver that fails its first attempts: every event arrives,
//! exactly once after the receiver recovers, signed (checked here with this file's own
//! HMAC-SHA256), with the attempts visible through the API; and two loader nodes delivering from
//! one outbox never send an event twice.

mod harness;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use harness::{TestApp, spawn_app, start_node, test_config};
use hmac::{Hmac, Mac};
use interaction_loader::webhooks::target::{Lookup, Targets};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::Sha256;

/// What the receiver saw: every request, and which were answered 2xx.
#[derive(Default)]
struct Received {
    /// (event id, answered status, signature valid) per request, in arrival order.
    requests: Vec<(String, u16, bool)>,
    bodies: HashMap<String, Value>,
}

#[derive(Clone)]
struct Receiver {
    received: Arc<Mutex<Received>>,
    /// Requests answered 500 before the receiver "recovers".
    failures: usize,
    secret: Arc<Mutex<String>>,
}

/// Checks `t=<ts>,v1=<hex>` against HMAC-SHA256(secret, "<ts>.<body>"), computed here.
fn signature_valid(secret: &str, header: &str, body: &[u8]) -> bool {
    let mut ts = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", value)) => ts = Some(value.to_owned()),
            Some(("v1", value)) => v1 = Some(value.to_owned()),
            _ => {}
        }
    }
    let (Some(ts), Some(v1)) = (ts, v1) else { return false };
    let Ok(ts_num) = ts.parse::<i64>() else { return false };
    if (chrono::Utc::now().timestamp() - ts_num).abs() > 300 {
        return false;
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(ts.as_bytes());
    mac.update(b".");
    mac.update(body);
    let Ok(given) = hex::decode(v1) else { return false };
    mac.verify_slice(&given).is_ok()
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let id = headers.get("switchboard-event-id").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let signature = headers.get("switchboard-signature").and_then(|v| v.to_str().ok()).unwrap_or("");
    let valid = signature_valid(&r.secret.lock().unwrap(), signature, &body);
    let mut received = r.received.lock().unwrap();
    let status = if received.requests.len() < r.failures { 500 } else { 200 };
    received.requests.push((id.clone(), status, valid));
    if status == 200 {
        received.bodies.insert(id, serde_json::from_slice(&body).unwrap_or(Value::Null));
    }
    StatusCode::from_u16(status).unwrap()
}

async fn start_receiver(failures: usize) -> (SocketAddr, Receiver) {
    let receiver = Receiver { received: Default::default(), failures, secret: Default::default() };
    let router = axum::Router::new().route("/hook", axum::routing::post(receive)).with_state(receiver.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (addr, receiver)
}

async fn subscribe(app: &TestApp, receiver: &Receiver, addr: SocketAddr, events: Value) -> String {
    let (status, created) = app
        .send(Method::POST, "/api/v1/webhooks", Some(json!({ "url": format!("http://{addr}/hook"), "events": events })))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    *receiver.secret.lock().unwrap() = created["secret"].as_str().unwrap().to_owned();
    created["webhook"]["id"].as_str().unwrap().to_owned()
}

/// Waits until every delivery of the subscription has left `pending`.
async fn settled(app: &TestApp, webhook: &str, expected: usize) -> Value {
    let started = Instant::now();
    loop {
        let (status, page) = app.get(&format!("/api/v1/webhooks/{webhook}/deliveries")).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let items = page["items"].as_array().unwrap();
        if items.len() == expected && items.iter().all(|d| d["state"] != "pending") {
            return page;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "deliveries did not settle: {page}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_receiver_that_fails_first_gets_each_event_exactly_once_signed() {
    let app = spawn_app().await;
    let (addr, receiver) = start_receiver(3).await;
    let webhook = subscribe(&app, &receiver, addr, json!(["interaction.created", "interaction.assigned"])).await;

    let (interaction, _) = app.inbound(app.telegram, "hooked", "hello").await;
    app.assign(interaction, "alice").await;

    let page = settled(&app, &webhook, 2).await;
    // the state has settled; give a stray duplicate every chance to show up
    tokio::time::sleep(Duration::from_millis(600)).await;

    let created_id = format!("{interaction}:1");
    {
        let received = receiver.received.lock().unwrap();
        let succeeded: Vec<&String> =
            received.requests.iter().filter(|(_, s, _)| *s == 200).map(|(id, _, _)| id).collect();
        assert_eq!(succeeded.len(), 2, "{:?}", received.requests);
        assert!(succeeded.contains(&&created_id), "{:?}", received.requests);
        assert_eq!(
            received.requests.len(),
            3 + 2,
            "three failures, then one success per event: {:?}",
            received.requests
        );
        assert!(received.requests.iter().all(|(_, _, valid)| *valid), "a bad signature: {:?}", received.requests);
        let body = &received.bodies[&created_id];
        assert_eq!(body["id"], created_id);
        assert_eq!(body["type"], "interaction.created");
        assert_eq!(body["interaction_id"], interaction.to_string());
        assert_eq!(body["seq"], 1);
        assert_eq!(body["data"]["queue"], "support");
        let assigned = received.bodies.values().find(|b| b["type"] == "interaction.assigned").unwrap();
        assert_eq!(assigned["actor"], "alice");
        assert_eq!(assigned["data"]["interaction"]["agent"], "alice");
    }

    // the attempts are visible
    let items = page["items"].as_array().unwrap();
    assert!(items.iter().all(|d| d["state"] == "delivered"), "{page}");
    let total: i64 = items.iter().map(|d| d["attempts"].as_i64().unwrap()).sum();
    assert_eq!(total, 5);
    let first = items.iter().find(|d| d["event_id"] == created_id.as_str()).unwrap();
    let (status, detail) =
        app.get(&format!("/api/v1/webhooks/{webhook}/deliveries/{}", first["id"].as_i64().unwrap())).await;
    assert_eq!(status, StatusCode::OK, "{detail}");
    let attempts = detail["attempts"].as_array().unwrap();
    assert_eq!(attempts.last().unwrap()["status_code"], 200);
    assert!(attempts.last().unwrap().get("error").is_none());
    for failed in &attempts[..attempts.len() - 1] {
        assert_eq!(failed["status_code"], 500);
        assert!(failed["error"].as_str().unwrap().contains("500"));
    }
    assert_eq!(detail["delivery"]["attempts"], attempts.len() as i64);

    // a delivered event can be sent again on request, once
    let before = receiver.received.lock().unwrap().requests.iter().filter(|(id, _, _)| id == &created_id).count();
    let (status, again) =
        app.send(Method::POST, &format!("/api/v1/webhooks/{webhook}/deliveries/{}/redeliver", first["id"]), None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{again}");
    settled(&app, &webhook, 2).await;
    let received = receiver.received.lock().unwrap();
    assert_eq!(received.requests.iter().filter(|(id, _, _)| id == &created_id).count(), before + 1);
}

/// A customer's answers to the post-call survey reach the subscriber as `interaction.rated`.
#[tokio::test]
async fn a_post_call_survey_is_delivered_as_interaction_rated() {
    let app = spawn_app().await;
    let (addr, receiver) = start_receiver(0).await;
    let webhook = subscribe(&app, &receiver, addr, json!(["interaction.rated"])).await;
    let (interaction, _) = app.inbound(app.telegram, "rater", "call me").await;
    app.assign(interaction, "alice").await;
    let mut tx = app.pool.begin().await.unwrap();
    let (new, _) = schema::store::NewRoom::with_new_link(
        interaction,
        "alice",
        "Alice",
        schema::domain::VideoMode::TwoWay,
        schema::domain::VideoQuality::P720,
        "http://hub.test",
        Duration::from_secs(3600),
    );
    let room = schema::store::start_room(&mut tx, &new).await.unwrap().room;
    let answers =
        vec![schema::store::SurveyAnswer { id: "solved".into(), question: "Solved?".into(), answer: "yes".into() }];
    schema::store::insert_call_survey(&mut tx, &room, 5, &answers).await.unwrap();
    tx.commit().await.unwrap();

    let page = settled(&app, &webhook, 1).await;
    assert_eq!(page["items"][0]["state"], "delivered", "{page}");
    let received = receiver.received.lock().unwrap();
    assert!(received.requests.iter().all(|(_, _, valid)| *valid));
    let body = received.bodies.values().next().unwrap();
    assert_eq!(body["type"], "interaction.rated");
    assert_eq!(body["interaction_id"], interaction.to_string());
    assert_eq!(body["data"]["rating"], 5);
    assert_eq!(body["data"]["source"], "video_call");
    assert_eq!(body["data"]["room_id"], room.id.to_string());
    assert_eq!(body["data"]["answers"], json!([{"id": "solved", "question": "Solved?", "answer": "yes"}]));
    assert!(body["data"]["submitted_at"].is_string());
}

#[tokio::test]
async fn two_nodes_deliver_from_one_outbox_without_sending_twice() {
    let app = spawn_app().await;
    // a second loader on the same database, its worker racing the first one's
    let _other = start_node(&app.db_url, app.pool.clone(), test_config()).await;
    let (addr, receiver) = start_receiver(0).await;
    let webhook = subscribe(&app, &receiver, addr, json!(["*"])).await;
    let mut expected = 0;
    for n in 0..15 {
        app.inbound(app.telegram, &format!("race{n}"), "one").await; // interaction.created + message.new
        expected += 2;
    }
    settled(&app, &webhook, expected).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let received = receiver.received.lock().unwrap();
    let mut ids: Vec<&String> = received.requests.iter().map(|(id, _, _)| id).collect();
    assert_eq!(ids.len(), expected, "every event once");
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), expected, "no event twice");
}

#[tokio::test]
async fn a_disabled_subscription_waits_and_a_deleted_one_stops() {
    let mut config = test_config();
    config.webhooks.deliver = true;
    let app = harness::spawn_app_with(config).await;
    let (addr, receiver) = start_receiver(0).await;
    let webhook = subscribe(&app, &receiver, addr, json!(["message.new"])).await;
    let (status, _) =
        app.send(Method::PATCH, &format!("/api/v1/webhooks/{webhook}"), Some(json!({ "enabled": false }))).await;
    assert_eq!(status, StatusCode::OK);
    app.inbound(app.telegram, "paused", "x").await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(receiver.received.lock().unwrap().requests.is_empty(), "a disabled subscription gets no events");
    let (status, page) = app.get(&format!("/api/v1/webhooks/{webhook}/deliveries?state=pending")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page["items"].as_array().unwrap().is_empty(), "no deliveries are created while disabled: {page}");

    app.send(Method::PATCH, &format!("/api/v1/webhooks/{webhook}"), Some(json!({ "enabled": true }))).await;
    app.inbound(app.telegram, "paused", "y").await;
    settled(&app, &webhook, 1).await;
    assert_eq!(receiver.received.lock().unwrap().requests.len(), 1);

    let (status, rotated) = app.send(Method::PUT, &format!("/api/v1/webhooks/{webhook}/secret"), None).await;
    assert_eq!(status, StatusCode::OK);
    *receiver.secret.lock().unwrap() = rotated["secret"].as_str().unwrap().to_owned();
    app.inbound(app.telegram, "paused", "z").await;
    settled(&app, &webhook, 2).await;
    assert!(
        receiver.received.lock().unwrap().requests.iter().all(|(_, _, valid)| *valid),
        "signed with the new secret"
    );

    let (status, _) = app.send(Method::DELETE, &format!("/api/v1/webhooks/{webhook}"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(app.get(&format!("/api/v1/webhooks/{webhook}")).await.0, StatusCode::NOT_FOUND);
    let (_, audit) = app.get("/api/v1/audit?target_kind=webhook").await;
    let actions: Vec<&str> = audit["items"].as_array().unwrap().iter().map(|r| r["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        ["webhook.delete", "webhook.rotate_secret", "webhook.update", "webhook.update", "webhook.create"]
    );
}

#[tokio::test]
async fn a_receiver_that_never_answers_is_given_up_after_the_window() {
    let mut config = test_config();
    config.webhooks.retry_for_s = 60;
    let app = harness::spawn_app_with(config).await;
    // a port nothing listens on
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let (status, created) = app
        .send(
            Method::POST,
            "/api/v1/webhooks",
            Some(json!({ "url": format!("http://{dead}/"), "events": ["interaction.created"] })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let webhook = created["webhook"]["id"].as_str().unwrap().to_owned();
    app.inbound(app.telegram, "nobody-home", "x").await;
    // let a few attempts fail, then pretend the window began 61 s ago
    tokio::time::sleep(Duration::from_millis(500)).await;
    sqlx::query("UPDATE webhook_deliveries SET retry_from = now() - interval '61 seconds'")
        .execute(&app.pool)
        .await
        .unwrap();
    let page = settled(&app, &webhook, 1).await;
    let delivery = &page["items"][0];
    assert_eq!(delivery["state"], "failed", "{page}");
    assert!(delivery["attempts"].as_i64().unwrap() >= 2);
    assert_eq!(delivery["last_error"], "cannot connect to the receiver");
}

// ------------------------------------------------------------------------------ SSRF --

/// Name resolution the test steers: a name can point outward at subscription and inward later.
#[derive(Clone, Default)]
struct SteeredDns(Arc<Mutex<HashMap<String, Vec<IpAddr>>>>);

impl SteeredDns {
    fn set(&self, name: &str, ip: &str) {
        self.0.lock().unwrap().insert(name.to_owned(), vec![ip.parse().unwrap()]);
    }
}

impl Lookup for SteeredDns {
    fn lookup(&self, host: &str) -> futures::future::BoxFuture<'static, std::io::Result<Vec<IpAddr>>> {
        let found = self.0.lock().unwrap().get(host).cloned();
        Box::pin(async move { found.ok_or_else(|| std::io::Error::other("no such name")) })
    }
}

async fn app_with_dns(allow: &[&str], dns: &SteeredDns) -> TestApp {
    let mut config = test_config();
    config.webhooks.allow_internal = allow.iter().map(|s| (*s).to_owned()).collect();
    let networks = allow.iter().map(|s| s.parse().unwrap()).collect();
    harness::spawn_app_with_targets(
        config,
        Targets::with_lookup(networks, Arc::new(dns.clone())).for_setting("loader.webhooks.allow_internal"),
    )
    .await
}

async fn try_subscribe(app: &TestApp, url: &str) -> (StatusCode, Value) {
    app.send(Method::POST, "/api/v1/webhooks", Some(json!({ "url": url, "events": ["interaction.created"] }))).await
}

#[tokio::test]
async fn internal_targets_are_refused_at_subscription_and_again_at_delivery() {
    let dns = SteeredDns::default();
    dns.set("hooks.example", "93.184.216.34");
    dns.set("inward.example", "169.254.169.254");
    let app = app_with_dns(&[], &dns).await;
    for url in [
        "http://127.0.0.1/",
        "http://[::1]/",
        "http://localhost:8080/",
        "http://0.0.0.0/",
        "http://10.0.0.7/",
        "http://172.16.5.4/",
        "http://192.168.0.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://100.64.1.1/",
        "http://[fe80::1]/",
        "http://[fc00::5]/",
        "http://[fd12:3456::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:10.0.0.1]/",
        "http://2130706433/",
        "http://0x7f000001/",
        "http://017700000001/",
        "http://inward.example/",
    ] {
        let (status, body) = try_subscribe(&app, url).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{url}: {body}");
        assert_eq!(body["error"]["code"], "bad_request", "{url}: {body}");
        assert!(body["error"]["message"].as_str().unwrap().starts_with("`url`"), "{url}: {body}");
    }
    let (status, body) = try_subscribe(&app, "http://user:hunter2@hooks.example/hook").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("credentials"), "{body}");
    assert!(!body.to_string().contains("hunter2"), "{body}");
    let (_, list) = app.get("/api/v1/webhooks").await;
    assert_eq!(list["items"], json!([]), "nothing refused was stored");

    // a name that pointed outward when subscribed points inward when delivered to
    let (addr, receiver) = start_receiver(0).await;
    let (status, created) = try_subscribe(&app, &format!("http://hooks.example:{}/hook", addr.port())).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let webhook = created["webhook"]["id"].as_str().unwrap().to_owned();
    dns.set("hooks.example", "127.0.0.1");
    app.inbound(app.telegram, "rebound", "hello").await;
    let started = Instant::now();
    let delivery = loop {
        let (_, page) = app.get(&format!("/api/v1/webhooks/{webhook}/deliveries")).await;
        let first = &page["items"][0];
        if first["attempts"].as_i64().unwrap_or(0) >= 2 {
            break first.clone();
        }
        assert!(started.elapsed() < Duration::from_secs(20), "no attempt recorded: {page}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let error = delivery["last_error"].as_str().unwrap();
    assert!(error.contains("resolves to 127.0.0.1"), "{delivery}");
    assert_eq!(delivery["state"], "pending", "retried: the name may point outward again");
    assert!(receiver.received.lock().unwrap().requests.is_empty(), "nothing reached the loopback receiver");
}

#[tokio::test]
async fn the_allow_list_lets_a_configured_internal_receiver_through() {
    let dns = SteeredDns::default();
    dns.set("receiver.internal", "127.0.0.1");
    let app = app_with_dns(&["127.0.0.1/32"], &dns).await;
    assert_eq!(try_subscribe(&app, "http://10.0.0.7/").await.0, StatusCode::BAD_REQUEST, "only what is listed");
    assert_eq!(try_subscribe(&app, "http://127.0.0.2/").await.0, StatusCode::BAD_REQUEST, "only what is listed");
    let (addr, receiver) = start_receiver(0).await;
    // by name: the client connects to the address the resolver checked
    let (status, created) = try_subscribe(&app, &format!("http://receiver.internal:{}/hook", addr.port())).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    *receiver.secret.lock().unwrap() = created["secret"].as_str().unwrap().to_owned();
    let webhook = created["webhook"]["id"].as_str().unwrap().to_owned();
    app.inbound(app.telegram, "allowed", "hello").await;
    let page = settled(&app, &webhook, 1).await;
    assert_eq!(page["items"][0]["state"], "delivered", "{page}");
    let received = receiver.received.lock().unwrap();
    assert_eq!(received.requests.len(), 1);
    assert!(received.requests[0].2, "signed");
}

#[tokio::test]
async fn a_campaign_reports_started_and_finished_with_its_counts_signed() {
    let app = spawn_app().await;
    let (addr, receiver) = start_receiver(0).await;
    let webhook = subscribe(&app, &receiver, addr, json!(["campaign.started", "campaign.finished"])).await;
    // a subscription to other events gets none of the campaign's
    let (other_addr, other) = start_receiver(0).await;
    let other_hook = subscribe(&app, &other, other_addr, json!(["message.new"])).await;
    app.inbound(app.telegram, "camp-ann", "hi").await;
    app.inbound(app.telegram, "camp-bob", "hi").await;
    let customer = |user: &'static str| {
        let pool = app.pool.clone();
        async move {
            sqlx::query_scalar::<_, uuid::Uuid>("SELECT customer_id FROM customer_identities WHERE external_id = $1")
                .bind(user)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    let body = json!({
        "account_id": app.telegram,
        "name": "Autumn",
        "text": "Autumn sale, {{name}}",
        "recipients": [
            {"customer_id": customer("camp-ann").await, "variables": {"name": "Ann"}},
            {"customer_id": customer("camp-bob").await, "variables": {"name": "Bob"}},
        ],
    });
    let (status, created) = app.send(Method::POST, "/api/v1/campaigns", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["campaign"]["id"].as_str().unwrap().to_owned();
    let campaign: uuid::Uuid = id.parse().unwrap();
    let (status, started) = app.send(Method::POST, &format!("/api/v1/campaigns/{id}/start"), None).await;
    assert_eq!(status, StatusCode::OK, "{started}");
    // both opt out once it runs: the bulk lane will skip them, and the campaign ends
    for chat in ["camp-ann", "camp-bob"] {
        schema::store::opt_out(&mut app.pool.acquire().await.unwrap(), app.telegram, chat, "stop word STOP")
            .await
            .unwrap();
    }

    let page = settled(&app, &webhook, 1).await;
    assert_eq!(page["items"][0]["event_type"], "campaign.started", "{page}");
    assert_eq!(page["items"][0]["campaign_id"], id.as_str(), "{page}");
    assert!(page["items"][0].get("interaction_id").is_none(), "{page}");
    {
        let received = receiver.received.lock().unwrap();
        let body = &received.bodies[&format!("{id}:1")];
        assert_eq!(body["type"], "campaign.started");
        assert_eq!(body["campaign_id"], id.as_str());
        assert_eq!(body["seq"], 1);
        assert_eq!(body["data"]["campaign"]["name"], "Autumn");
        assert_eq!(body["data"]["campaign"]["state"], "running");
        assert_eq!((body["data"]["counts"]["queued"].as_i64(), body["data"]["total"].as_i64()), (Some(2), Some(2)));
    }

    // what the connector's bulk lane does: both rows are claimed, both skipped (opted out); the
    // last one settled finishes the campaign
    let mut tx = app.pool.begin().await.unwrap();
    let items = schema::store::pending_bulk_outbox(&mut tx, app.telegram, &[], 10).await.unwrap();
    let ids: Vec<i64> = items.iter().map(|i| i.id).collect();
    assert_eq!(ids.len(), 2);
    let claims = schema::store::claim_bulk_outbox(&mut tx, app.telegram, 1, &ids, chrono::Utc::now()).await.unwrap();
    assert!(claims.iter().all(|(_, c)| matches!(c, schema::store::BulkClaim::Skipped(_))), "{claims:?}");
    tx.commit().await.unwrap();

    let page = settled(&app, &webhook, 2).await;
    assert!(page["items"].as_array().unwrap().iter().all(|d| d["state"] == "delivered"), "{page}");
    {
        let received = receiver.received.lock().unwrap();
        assert_eq!(received.requests.len(), 2, "each event once");
        assert!(received.requests.iter().all(|(_, _, valid)| *valid), "signed like every delivery");
        let body = &received.bodies[&format!("{id}:2")];
        assert_eq!(body["type"], "campaign.finished");
        assert_eq!(body["data"]["campaign"]["state"], "finished");
        assert!(body["data"]["campaign"]["finished_at"].is_string(), "{body}");
        assert_eq!(body["data"]["counts"]["skipped"], 2, "{body}");
        assert_eq!(body["data"]["counts"]["queued"], 0, "{body}");
        assert_eq!(body["data"]["total"], 2);
    }
    let finished: String = sqlx::query_scalar("SELECT state FROM campaigns WHERE id = $1")
        .bind(campaign)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(finished, "finished");
    let (_, others) = app.get(&format!("/api/v1/webhooks/{other_hook}/deliveries")).await;
    assert!(
        others["items"].as_array().unwrap().iter().all(|d| d["event_type"] == "message.new"),
        "a campaign event reached a subscription without it: {others}"
    );
}
