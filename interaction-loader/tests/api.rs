//! The loader's REST API against real PostgreSQL: the period query's semantics, pagination under
//! concurrent inserts, filters, bad parameters, credentials and scopes, messages with files,
//! customers, administration with its audit log, exports read back, and the OpenAPI document.

mod harness;

use std::collections::HashSet;

use chrono::{Duration, SubsecRound, Utc};
use harness::{TestApp, jwt, make_key, period, spawn_app};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

fn ids(body: &Value) -> Vec<String> {
    body["items"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap().to_owned()).collect()
}

// -------------------------------------------------------------------- period semantics --

#[tokio::test]
async fn the_period_holds_the_chats_where_the_customer_wrote_in_it() {
    let app = spawn_app().await;
    // PostgreSQL keeps microseconds: a whole second compares exactly
    let from = Utc::now().trunc_subsecs(0) - Duration::days(2);
    let to = from + Duration::days(1);

    // opened long before the period, the customer writes inside it: returned
    let (early, m1) = app.inbound(app.telegram, "early", "hello").await;
    app.backdate(m1, from - Duration::days(5)).await;
    let (_, m2) = app.inbound(app.telegram, "early", "still there?").await;
    app.backdate(m2, from + Duration::hours(3)).await;

    // the customer wrote before the period, only the agent wrote in it: not returned
    let (agent_only, m3) = app.inbound(app.telegram, "agent-only", "question").await;
    app.backdate(m3, from - Duration::hours(1)).await;
    app.assign(agent_only, "alice").await;
    let reply = app.outbound(agent_only, "alice", "answer").await;
    app.backdate(reply, from + Duration::hours(2)).await;

    // the customer wrote after the period only: not returned
    let (_, m4) = app.inbound(app.telegram, "later", "hi").await;
    app.backdate(m4, to + Duration::minutes(1)).await;

    // the customer wrote several times in the period: returned once
    let mut chatty_id = Uuid::nil();
    for (n, minutes) in [30, 90, 600].into_iter().enumerate() {
        let (id, m) = app.inbound(app.whatsapp, "chatty", &format!("message {n}")).await;
        app.backdate(m, from + Duration::minutes(minutes)).await;
        chatty_id = id;
    }

    // boundaries: a message exactly at `from` is in, exactly at `to` is out
    let (at_from, m5) = app.inbound(app.telegram, "at-from", "x").await;
    app.backdate(m5, from).await;
    let (_, m6) = app.inbound(app.telegram, "at-to", "x").await;
    app.backdate(m6, to).await;

    let (status, body) = app.get(&format!("/api/v1/interactions?{}", period(from, to))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // ordered by the customer's first message in the period
    assert_eq!(ids(&body), vec![at_from.to_string(), chatty_id.to_string(), early.to_string()]);
    assert!(body.get("next_cursor").is_none(), "{body}");
    let early_item = &body["items"][2];
    assert_eq!(early_item["customer"]["external_id"], "early");
    assert_eq!(early_item["channel"], "telegram");
    let first =
        chrono::DateTime::parse_from_rfc3339(early_item["first_customer_message_at"].as_str().unwrap()).unwrap();
    assert_eq!(first, from + Duration::hours(3));
    let chatty_first =
        chrono::DateTime::parse_from_rfc3339(body["items"][1]["first_customer_message_at"].as_str().unwrap()).unwrap();
    assert_eq!(chatty_first, from + Duration::minutes(30));
}

#[tokio::test]
async fn pages_have_no_duplicates_or_gaps_while_messages_arrive() {
    let app = spawn_app().await;
    let from = Utc::now() - Duration::hours(2);
    let to = Utc::now() + Duration::hours(1);
    let mut existing = Vec::new();
    for n in 0..60 {
        let account = if n % 2 == 0 { app.telegram } else { app.whatsapp };
        let (id, m) = app.inbound(account, &format!("c{n}"), "hi").await;
        // distinct times in the past part of the period; some share a timestamp
        app.backdate(m, from + Duration::seconds(10 * (n / 2))).await;
        existing.push(id.to_string());
    }
    // while a client pages slowly, customers keep writing: new chats and repeats in old ones
    let writer = {
        let pool = app.pool.clone();
        let telegram = app.telegram;
        let addr_app = TestAppHandle { pool, telegram };
        tokio::spawn(async move {
            for n in 0..40 {
                addr_app.write(&format!("new{n}"), n).await;
                // a repeat in an old chat (the even ones are on Telegram)
                addr_app.write(&format!("c{}", 2 * (n % 30)), n).await;
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        })
    };
    let seen = app.all_pages(&period(from, to), 7).await;
    writer.await.unwrap();
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "an interaction came twice");
    for id in &existing {
        assert!(unique.contains(id), "interaction {id} was skipped");
    }
    // once the writer is done, a fresh listing has everything: 60 old chats and 40 new ones
    let all = app.all_pages(&period(from, to), 500).await;
    assert_eq!(all.len(), 100);
}

/// What the concurrent writer needs (the `TestApp` itself stays with the test).
struct TestAppHandle {
    pool: sqlx::PgPool,
    telegram: Uuid,
}

impl TestAppHandle {
    async fn write(&self, user: &str, n: usize) {
        let mut tx = self.pool.begin().await.unwrap();
        let msg = schema::store::InboundMessage {
            account_id: self.telegram,
            external_message_id: format!("{user}-{n}-{}", Uuid::new_v4()),
            chat_id: user.into(),
            sender: schema::store::Sender { external_id: user.into(), name: user.into(), ..Default::default() },
            kind: schema::domain::MessageKind::Text,
            text: Some("more".into()),
            file_ids: vec![],
            location: None,
            contact: None,
            reply_to_external_id: None,
            forwarded: None,
            sent_at: None,
            sticker_id: None,
        };
        schema::store::ingest_inbound(&mut tx, &msg, std::time::Duration::from_secs(3600)).await.unwrap();
        tx.commit().await.unwrap();
    }
}

#[tokio::test]
async fn filters_narrow_the_period() {
    let app = spawn_app().await;
    let from = Utc::now() - Duration::minutes(5);
    let to = Utc::now() + Duration::minutes(5);
    let (tg_alice, _) = app.inbound(app.telegram, "t1", "my order 4711 is late").await;
    app.assign(tg_alice, "alice").await;
    let (tg_bob, _) = app.inbound(app.telegram, "t2", "refund please").await;
    app.assign(tg_bob, "bob").await;
    app.close(tg_bob, "bob").await;
    let (wa_queued, _) = app.inbound_with(app.whatsapp, "w1", "hello", Some("+7 999 000-11-22"), vec![]).await;
    let p = period(from, to);
    let query = |q: &str| format!("/api/v1/interactions?{p}&{q}");
    let check = |body: &Value, want: &[Uuid]| {
        let mut got = ids(body);
        got.sort();
        let mut want: Vec<String> = want.iter().map(Uuid::to_string).collect();
        want.sort();
        assert_eq!(got, want, "{body}");
    };
    let (_, body) = app.get(&query("channel=telegram")).await;
    check(&body, &[tg_alice, tg_bob]);
    let (_, body) = app.get(&query("channel=telegram,whatsapp")).await;
    check(&body, &[tg_alice, tg_bob, wa_queued]);
    let (_, body) = app.get(&query(&format!("account_id={}", app.whatsapp))).await;
    check(&body, &[wa_queued]);
    let (_, body) = app.get(&query("state=closed")).await;
    check(&body, &[tg_bob]);
    assert_eq!(body["items"][0]["close_reason"], "resolved");
    assert_eq!(body["items"][0]["last_agent"], "bob");
    let (_, body) = app.get(&query("state=queued,assigned")).await;
    check(&body, &[tg_alice, wa_queued]);
    let (_, body) = app.get(&query("agent=bob")).await;
    check(&body, &[tg_bob]);
    let (_, body) = app.get(&query("queue=support&agent=alice")).await;
    check(&body, &[tg_alice]);
    let (_, body) = app.get(&query("q=ORDER%204711")).await;
    check(&body, &[tg_alice]);
    let (_, body) = app.get(&query("q=100%25")).await; // "100%": wildcards are literal
    check(&body, &[]);
    let customer = body_customer(&app, wa_queued).await;
    let (_, body) = app.get(&query(&format!("customer_id={customer}"))).await;
    check(&body, &[wa_queued]);
}

async fn body_customer(app: &TestApp, interaction: Uuid) -> String {
    let (status, body) = app.get(&format!("/api/v1/interactions/{interaction}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["customer"]["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn bad_parameters_get_400_with_the_reason() {
    let app = spawn_app().await;
    let p = period(Utc::now() - Duration::hours(1), Utc::now());
    let cases = [
        ("/api/v1/interactions".to_owned(), "from is required"),
        ("/api/v1/interactions?from=2024-05-01T00:00:00Z".to_owned(), "to is required"),
        ("/api/v1/interactions?from=yesterday&to=2024-05-01T00:00:00Z".to_owned(), "is not an RFC 3339 time"),
        ("/api/v1/interactions?from=2024-05-02T00:00:00Z&to=2024-05-01T00:00:00Z".to_owned(), "empty or reversed"),
        ("/api/v1/interactions?from=2024-05-01T00:00:00Z&to=2024-05-01T00:00:00Z".to_owned(), "empty or reversed"),
        (format!("/api/v1/interactions?{p}&limit=0"), "limit=\"0\" must be"),
        (format!("/api/v1/interactions?{p}&limit=100000"), "from 1 to 500"),
        (format!("/api/v1/interactions?{p}&cursor=garbage"), "bad cursor"),
        (format!("/api/v1/interactions?{p}&state=open"), "state=\"open\" is not one of"),
        (format!("/api/v1/interactions?{p}&channel=icq"), "channel=\"icq\""),
        (format!("/api/v1/interactions?{p}&account_id=42"), "account_id=\"42\" is not a UUID"),
        (format!("/api/v1/interactions?{p}&form=x"), "unknown field `form`"),
        ("/api/v1/interactions/not-a-uuid".to_owned(), "is not a UUID"),
        ("/api/v1/interactions/0190b8c1-7c4e-7a1e-9d7a-3f2b1c0d9e8f/events?after=-1".to_owned(), "after="),
        ("/api/v1/customers".to_owned(), "exactly one of phone and external_id"),
        ("/api/v1/exports/interactions.csv?from=2024-05-02T00:00:00Z&to=2024-05-01T00:00:00Z".to_owned(), "reversed"),
        ("/api/v1/audit?from=never".to_owned(), "from=\"never\""),
    ];
    for (path, reason) in cases {
        let (status, body) = app.get(&path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert_eq!(body["error"]["code"], "bad_request", "{path}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(reason), "{path}: {message:?} does not say {reason:?}");
    }
    let (status, body) =
        app.send(Method::POST, "/api/v1/api-keys", Some(json!({ "name": "x", "scopes": ["root"] }))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("unknown scope \"root\""));
    let response = app
        .http
        .post(app.url("/api/v1/webhooks"))
        .bearer_auth(&app.key)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "bad_request");
    let (status, body) = app.get("/api/v1/interactions/0190b8c1-7c4e-7a1e-9d7a-3f2b1c0d9e8f").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "not_found");
}

// ------------------------------------------------------------------------ credentials --

#[tokio::test]
async fn every_call_needs_credentials_with_the_right_scope() {
    let app = spawn_app().await;
    let p = period(Utc::now() - Duration::hours(1), Utc::now());
    let list = format!("/api/v1/interactions?{p}");

    let (status, body) = app.get_as(&list, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "unauthorized");
    let response = app.http.get(app.url(&list)).send().await.unwrap();
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    let response = app.http.get(app.url(&list)).header("authorization", "Basic YTpi").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    for bad in ["sk_not-a-real-key", "not.a.jwt"] {
        let (status, body) = app.get_as(&list, Some(bad)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{bad}");
        assert_eq!(body["error"]["code"], "invalid_credentials", "{bad}");
    }
    let (status, body) = app.get_as(&list, Some(&jwt("root", &["admin"], -120))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "token_expired");
    let forged = {
        let claims =
            ops::auth::Claims { sub: "eve".into(), exp: u64::MAX / 2, name: None, roles: vec!["admin".into()] };
        jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(b"not-the-secret-not-the-secret-xx"),
        )
        .unwrap()
    };
    assert_eq!(app.get_as(&list, Some(&forged)).await.0, StatusCode::UNAUTHORIZED);

    // scopes
    let mut conn = app.pool.acquire().await.unwrap();
    let webhooks_only = make_key(&mut conn, &["webhooks:read".into()]).await;
    let reader = make_key(&mut conn, &["interactions:read".into()]).await;
    drop(conn);
    let (status, body) = app.get_as(&list, Some(&webhooks_only)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"]["code"], "forbidden");
    assert!(body["error"]["message"].as_str().unwrap().contains("interactions:read"));
    assert_eq!(app.get_as("/api/v1/webhooks", Some(&webhooks_only)).await.0, StatusCode::OK);
    assert_eq!(app.get_as(&list, Some(&reader)).await.0, StatusCode::OK);
    assert_eq!(app.get_as("/api/v1/accounts", Some(&reader)).await.0, StatusCode::FORBIDDEN);
    let write = app
        .http
        .post(app.url("/api/v1/api-keys"))
        .bearer_auth(&reader)
        .json(&json!({ "name": "escalate", "scopes": ["admin:write"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(write.status(), StatusCode::FORBIDDEN);

    // sign-on JWTs: admin has every scope, supervisor reads interactions, agent nothing
    assert_eq!(app.get_as("/api/v1/accounts", Some(&jwt("root", &["admin"], 60))).await.0, StatusCode::OK);
    assert_eq!(app.get_as(&list, Some(&jwt("sue", &["supervisor"], 60))).await.0, StatusCode::OK);
    assert_eq!(app.get_as("/api/v1/accounts", Some(&jwt("sue", &["supervisor"], 60))).await.0, StatusCode::FORBIDDEN);
    assert_eq!(app.get_as(&list, Some(&jwt("alice", &["agent"], 60))).await.0, StatusCode::FORBIDDEN);

    // the document is public
    assert_eq!(app.get_as("/api/v1/openapi.json", None).await.0, StatusCode::OK);
}

// ------------------------------------------------------------ messages and customers --

#[tokio::test]
async fn an_interaction_its_messages_with_file_urls_and_its_events() {
    let app = spawn_app().await;
    let file = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO files (id, name, mime, size, sha256, storage_key) VALUES ($1, 'invoice.pdf', 'application/pdf', 1234, 'x', 'k')",
    )
    .bind(file)
    .execute(&app.pool)
    .await
    .unwrap();
    let (id, _) = app.inbound_with(app.telegram, "u1", "see attached", Some("+79990001122"), vec![file]).await;
    app.assign(id, "alice").await;
    for n in 0..4 {
        app.outbound(id, "alice", &format!("reply {n}")).await;
    }
    let (status, body) = app.get(&format!("/api/v1/interactions/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["state"], "assigned");
    assert_eq!(body["agent"], "alice");
    assert_eq!(body["message_count"], 5);

    let (status, page1) = app.get(&format!("/api/v1/interactions/{id}/messages?limit=3")).await;
    assert_eq!(status, StatusCode::OK, "{page1}");
    let first = &page1["items"][0];
    assert_eq!(first["direction"], "in");
    assert_eq!(first["files"][0]["url"], format!("/api/v1/files/{file}"));
    assert_eq!(first["files"][0]["name"], "invoice.pdf");
    let cursor = page1["next_cursor"].as_str().unwrap();
    let (_, page2) = app.get(&format!("/api/v1/interactions/{id}/messages?limit=3&cursor={cursor}")).await;
    let texts: Vec<&str> = page1["items"]
        .as_array()
        .unwrap()
        .iter()
        .chain(page2["items"].as_array().unwrap())
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["see attached", "reply 0", "reply 1", "reply 2", "reply 3"]);
    assert!(page2.get("next_cursor").is_none());

    let (status, events) = app.get(&format!("/api/v1/interactions/{id}/events?limit=2")).await;
    assert_eq!(status, StatusCode::OK);
    let kinds: Vec<&str> = events["items"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["interaction.created", "message.new"]);
    assert_eq!(events["next_after"], 2);
    let (_, rest) = app.get(&format!("/api/v1/interactions/{id}/events?after=2")).await;
    assert_eq!(rest["items"][0]["kind"], "interaction.assigned");

    let missing = Uuid::now_v7();
    assert_eq!(app.get(&format!("/api/v1/interactions/{missing}/messages")).await.0, StatusCode::NOT_FOUND);
    assert_eq!(app.get(&format!("/api/v1/interactions/{missing}/events")).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn customers_by_phone_or_platform_id() {
    let app = spawn_app().await;
    let (a, _) = app.inbound_with(app.telegram, "tg-42", "hi", Some("+7 (999) 000-11-22"), vec![]).await;
    app.inbound(app.whatsapp, "79990001122", "hi").await;
    let customer = body_customer(&app, a).await;

    let (status, body) = app.get("/api/v1/customers?phone=%2B7%20(999)%20000-11-22").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(ids(&body), vec![customer.clone()]);
    assert_eq!(body["items"][0]["identities"][0]["external_id"], "tg-42");
    assert_eq!(body["items"][0]["identities"][0]["channel"], "telegram");

    let (_, body) = app.get("/api/v1/customers?external_id=tg-42").await;
    assert_eq!(ids(&body), vec![customer.clone()]);
    let (_, body) = app.get(&format!("/api/v1/customers?external_id=tg-42&account_id={}", app.whatsapp)).await;
    assert!(ids(&body).is_empty());
    let (status, body) = app.get(&format!("/api/v1/customers/{customer}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["name"], "Customer tg-42");
    assert_eq!(app.get(&format!("/api/v1/customers/{}", Uuid::now_v7())).await.0, StatusCode::NOT_FOUND);
}

// ------------------------------------------------------------------------------ admin --

#[tokio::test]
async fn admin_changes_are_applied_masked_and_audited() {
    let app = spawn_app().await;
    let admin = jwt("root", &["admin"], 300);
    let as_admin = |method: Method, path: &str, body: Option<Value>| {
        let mut request = app.http.request(method, app.url(path)).bearer_auth(&admin);
        if let Some(body) = body {
            request = request.json(&body);
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status();
            (status, response.json::<Value>().await.unwrap_or(Value::Null))
        }
    };

    // accounts: created with credentials, which never come back in clear
    let (status, account) = as_admin(
        Method::POST,
        "/api/v1/accounts",
        Some(json!({ "channel": "viber", "name": "promo", "default_queue": "vip",
                     "credentials": { "auth_token": "4a5b6c7d8e9f0a1b-2c3d4e5f", "pin": "1234" } })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{account}");
    assert_eq!(account["credentials"], json!({ "auth_token": "****4e5f", "pin": "****" }));
    let id = account["id"].as_str().unwrap().to_owned();
    let (_, list) = as_admin(Method::GET, "/api/v1/accounts", None).await;
    assert!(!list.to_string().contains("4a5b6c7d8e9f0a1b"), "{list}");
    assert!(!list.to_string().contains("secret-token-value"), "{list}");
    let (status, disabled) =
        as_admin(Method::PATCH, &format!("/api/v1/accounts/{id}"), Some(json!({ "enabled": false }))).await;
    assert_eq!(status, StatusCode::OK, "{disabled}");
    assert_eq!(disabled["enabled"], false);
    let (status, _) = as_admin(
        Method::PATCH,
        &format!("/api/v1/accounts/{id}"),
        Some(json!({ "credentials": { "auth_token": "rotated-0000000000000000" } })),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) =
        as_admin(Method::PATCH, &format!("/api/v1/accounts/{id}"), Some(json!({ "default_queue": "nope" }))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // agents and queues
    let (status, agent) = as_admin(
        Method::PUT,
        "/api/v1/agents/carol",
        Some(json!({ "name": "Carol", "roles": ["agent", "supervisor"], "queues": ["support", "vip"],
                     "max_interactions": 4, "channel_capacity": { "telegram": 2 } })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{agent}");
    assert_eq!(agent["channel_capacity"], json!({ "telegram": 2 }));
    assert_eq!(agent["status"], "not_ready");
    let (status, body) = as_admin(
        Method::PUT,
        "/api/v1/agents/carol",
        Some(json!({ "name": "Carol", "roles": ["wizard"], "max_interactions": 4 })),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = as_admin(
        Method::PUT,
        "/api/v1/agents/carol",
        Some(json!({ "name": "Carol", "queues": ["ghost"], "max_interactions": 4 })),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, queue) = as_admin(
        Method::PUT,
        "/api/v1/queues/sales",
        Some(json!({ "routing_mode": "manual", "offer_timeout_ms": 15000 })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{queue}");
    let (_, queues) = as_admin(Method::GET, "/api/v1/queues", None).await;
    assert_eq!(queues["items"].as_array().unwrap().len(), 3);
    let (status, _) = as_admin(
        Method::PUT,
        "/api/v1/queues/Bad%20Name",
        Some(json!({ "routing_mode": "auto", "offer_timeout_ms": 15000 })),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // API keys: shown once, usable, listed without the key, revocable
    let (status, created) = as_admin(
        Method::POST,
        "/api/v1/api-keys",
        Some(json!({ "name": "crm sync", "scopes": ["interactions:read"] })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let key = created["key"].as_str().unwrap().to_owned();
    let key_id = created["api_key"]["id"].as_str().unwrap().to_owned();
    let p = period(Utc::now() - Duration::hours(1), Utc::now());
    assert_eq!(app.get_as(&format!("/api/v1/interactions?{p}"), Some(&key)).await.0, StatusCode::OK);
    let (_, keys) = as_admin(Method::GET, "/api/v1/api-keys", None).await;
    assert!(!keys.to_string().contains(&key));
    assert!(keys.to_string().contains(&key[..9]));
    let (status, _) = as_admin(Method::DELETE, &format!("/api/v1/api-keys/{key_id}"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(app.get_as(&format!("/api/v1/interactions?{p}"), Some(&key)).await.0, StatusCode::UNAUTHORIZED);

    // the audit log has every change, who made it, and no secret
    let (status, audit) = as_admin(Method::GET, "/api/v1/audit?limit=500", None).await;
    assert_eq!(status, StatusCode::OK, "{audit}");
    let actions: Vec<&str> = audit["items"].as_array().unwrap().iter().map(|r| r["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        [
            "api_key.revoke",
            "api_key.create",
            "queue.create",
            "agent.create",
            "account.update",
            "account.disable",
            "account.create"
        ]
    );
    assert!(audit["items"].as_array().unwrap().iter().all(|r| r["actor"] == "jwt:root"));
    assert!(!audit.to_string().contains("rotated-0000"), "{audit}");
    assert!(!audit.to_string().contains("4a5b6c7d"), "{audit}");
    let (_, for_account) =
        as_admin(Method::GET, &format!("/api/v1/audit?target_kind=account&target_id={id}"), None).await;
    assert_eq!(for_account["items"].as_array().unwrap().len(), 3);
    assert_eq!(for_account["items"][0]["details"]["credentials_replaced"], json!(["auth_token"]));
    assert_eq!(for_account["items"][1]["details"]["enabled"], json!({ "from": true, "to": false }));
    let (_, page) = as_admin(Method::GET, "/api/v1/audit?action=api_key.&limit=1", None).await;
    assert_eq!(page["items"][0]["action"], "api_key.revoke");
    let cursor = page["next_cursor"].as_str().unwrap();
    let (_, next) =
        as_admin(Method::GET, &format!("/api/v1/audit?action=api_key.&limit=1&cursor={cursor}"), None).await;
    assert_eq!(next["items"][0]["action"], "api_key.create");
    assert!(next.get("next_cursor").is_none());
}

// ---------------------------------------------------------------------------- exports --

#[tokio::test]
async fn exports_have_the_rows_of_the_period_as_csv_and_as_a_real_workbook() {
    let app = spawn_app().await;
    let from = Utc::now() - Duration::minutes(5);
    let to = Utc::now() + Duration::minutes(5);
    let mut want = Vec::new();
    for n in 0..17 {
        // 17 rows in batches of 7 (the test config's export_batch): three queries
        let (id, _) = app.inbound(app.telegram, &format!("u{n}"), "hi").await;
        want.push(id.to_string());
    }
    // a customer whose name a spreadsheet would run as a formula
    sqlx::query("UPDATE customers SET name = $2 WHERE id = (SELECT customer_id FROM interactions WHERE id = $1)")
        .bind(want[3].parse::<Uuid>().unwrap())
        .bind("=cmd|' /C calc'!A0")
        .execute(&app.pool)
        .await
        .unwrap();
    let p = period(from, to);
    let api = app.all_pages(&p, 500).await;
    assert_eq!(api, want);

    let response = app
        .http
        .get(app.url(&format!("/api/v1/exports/interactions.csv?{p}")))
        .bearer_auth(&app.key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
    assert!(response.headers()["content-disposition"].to_str().unwrap().contains(".csv"));
    let text = response.text().await.unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = reader.headers().unwrap().iter().map(str::to_owned).collect();
    assert_eq!(header, interaction_loader::api::exports::COLUMNS);
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let csv_ids: Vec<&str> = rows.iter().map(|r| &r[0]).collect();
    assert_eq!(csv_ids, want);
    assert_eq!(&rows[0][1], "telegram");
    assert_eq!(&rows[3][8], "'=cmd|' /C calc'!A0", "a formula-looking cell is defused");

    let response = app
        .http
        .get(app.url(&format!("/api/v1/exports/interactions.xlsx?{p}&channel=telegram")))
        .bearer_auth(&app.key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = response.bytes().await.unwrap();
    use calamine::Reader;
    let mut workbook: calamine::Xlsx<_> =
        calamine::open_workbook_from_rs(std::io::Cursor::new(bytes.to_vec())).unwrap();
    let sheet = workbook.worksheet_range("interactions").unwrap();
    let rows: Vec<Vec<calamine::Data>> = sheet.rows().map(<[calamine::Data]>::to_vec).collect();
    assert_eq!(rows.len(), 18, "header and 17 rows");
    assert_eq!(rows[0][0].to_string(), "interaction_id");
    let xlsx_ids: Vec<String> = rows[1..].iter().map(|r| r[0].to_string()).collect();
    assert_eq!(xlsx_ids, want);
    assert_eq!(rows[4][8].to_string(), "=cmd|' /C calc'!A0", "text cells are text, not formulas");
    assert!(matches!(rows[1][11], calamine::Data::DateTime(_)), "created_at is a date: {:?}", rows[1][11]);

    // an empty period is a header only
    let empty = period(from - Duration::days(3), from - Duration::days(2));
    let response = app
        .http
        .get(app.url(&format!("/api/v1/exports/interactions.csv?{empty}")))
        .bearer_auth(&app.key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.text().await.unwrap().lines().count(), 1);
    assert_eq!(app.get_as(&format!("/api/v1/exports/interactions.xlsx?{p}"), None).await.0, StatusCode::UNAUTHORIZED);
}

// ------------------------------------------------------------------------------ stats --

/// The reports count what happened, and their CSV and Excel forms hold the same rows.
#[tokio::test]
async fn stats_reports_count_the_contacts_and_export_the_same_rows() {
    let app = spawn_app().await;
    let from = Utc::now().trunc_subsecs(0) - Duration::hours(1);
    let to = Utc::now() + Duration::hours(1);
    let (a, _) = app.inbound(app.telegram, "stats-a", "hello").await;
    app.assign(a, "alice").await;
    app.outbound(a, "alice", "hi").await;
    app.close(a, "alice").await;
    app.inbound(app.telegram, "stats-b", "anyone?").await;
    app.inbound(app.whatsapp, "stats-c", "hola").await;
    let p = format!("{}&bucket=day&tz=Europe/Moscow", period(from, to));

    let (status, volume) = app.get(&format!("/api/v1/stats/volume?{p}")).await;
    assert_eq!(status, StatusCode::OK, "{volume}");
    assert_eq!(volume["report"], "volume");
    assert_eq!(volume["tz"], "Europe/Moscow");
    let names: Vec<&str> = volume["columns"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["bucket", "channel", "queue", "contacts", "answered", "abandoned"]);
    let rows = volume["rows"].as_array().unwrap();
    let count = |channel: &str, col: usize| -> i64 {
        rows.iter().filter(|r| r[1] == channel).map(|r| r[col].as_i64().unwrap()).sum()
    };
    assert_eq!((count("telegram", 3), count("telegram", 4), count("whatsapp", 3)), (2, 1, 1), "{volume}");
    assert!(!volume["buckets"].as_array().unwrap().is_empty());

    // the CSV is the same table
    let response = app
        .http
        .get(app.url(&format!("/api/v1/stats/volume?{p}&format=csv")))
        .bearer_auth(&app.key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-disposition"].to_str().unwrap().contains("stats-volume-"));
    let text = response.text().await.unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("bucket,channel,queue,contacts,answered,abandoned"));
    let csv_rows: Vec<Vec<String>> = lines.map(|l| l.split(',').map(str::to_owned).collect()).collect();
    let json_rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            r.as_array().unwrap().iter().map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned)).collect()
        })
        .collect();
    assert_eq!(csv_rows, json_rows);

    // and so is the workbook
    let response = app
        .http
        .get(app.url(&format!("/api/v1/stats/times?{p}&format=xlsx")))
        .bearer_auth(&app.key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    use calamine::Reader;
    let mut workbook: calamine::Xlsx<_> =
        calamine::open_workbook_from_rs(std::io::Cursor::new(response.bytes().await.unwrap().to_vec())).unwrap();
    let sheet = workbook.worksheet_range("times").unwrap();
    let (_, times) = app.get(&format!("/api/v1/stats/times?{p}")).await;
    assert_eq!(sheet.rows().count(), 1 + times["rows"].as_array().unwrap().len());
    assert_eq!(sheet.rows().next().unwrap()[3].to_string(), "wait_p50_s");

    let (status, agents) = app.get(&format!("/api/v1/stats/agents?{p}")).await;
    assert_eq!(status, StatusCode::OK, "{agents}");
    let alice = agents["rows"].as_array().unwrap().iter().find(|r| r[0] == "alice").unwrap();
    assert_eq!(alice[2], 1, "alice handled one: {agents}");
    let (status, calls) = app.get(&format!("/api/v1/stats/calls?{p}")).await;
    assert_eq!(status, StatusCode::OK, "{calls}");

    // filters, refusals, credentials
    let (_, whatsapp) = app.get(&format!("/api/v1/stats/volume?{p}&channel=whatsapp")).await;
    assert_eq!(whatsapp["rows"].as_array().unwrap().len(), 1);
    let (status, body) = app.get(&format!("/api/v1/stats/volume?{}&tz=Mars/Olympus", period(from, to))).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("bad_request")));
    assert!(body["error"]["message"].as_str().unwrap().contains("tz=\"Mars/Olympus\""), "{body}");
    assert_eq!(app.get(&format!("/api/v1/stats/sales?{p}")).await.0, StatusCode::NOT_FOUND);
    assert_eq!(app.get_as(&format!("/api/v1/stats/volume?{p}"), None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.get_as(&format!("/api/v1/stats/volume?{p}"), Some(&jwt("sue", &["supervisor"], 60))).await.0,
        StatusCode::OK
    );
    assert_eq!(
        app.get_as(&format!("/api/v1/stats/volume?{p}"), Some(&jwt("bob", &["agent"], 60))).await.0,
        StatusCode::FORBIDDEN
    );
}

// ---------------------------------------------------------------------------- OpenAPI --

fn checked_in_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json")
}

/// The served document equals `docs/openapi.json` (regenerate with `UPDATE_OPENAPI=1`).
#[tokio::test]
async fn openapi_served_matches_the_checked_in_copy() {
    let app = spawn_app().await;
    let response = app.http.get(app.url("/api/v1/openapi.json")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let served = response.text().await.unwrap();
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(checked_in_path(), &served).unwrap();
    }
    let checked_in = std::fs::read_to_string(checked_in_path()).expect("docs/openapi.json exists");
    assert!(
        served == checked_in,
        "the served OpenAPI document differs from docs/openapi.json: run \
         `UPDATE_OPENAPI=1 cargo test -p interaction-loader --test api openapi` and commit the result"
    );
}

/// The document is valid OpenAPI 3.1 (the OpenAPI Initiative's JSON Schema for 3.1, vendored
/// from the openapi-spec-validator package), every schema in it is a valid JSON Schema 2020-12,
/// and every `$ref` resolves.
#[test]
fn openapi_document_validates() {
    let doc: Value = serde_json::from_str(&interaction_loader::openapi::document()).unwrap();
    assert_eq!(doc["openapi"].as_str().unwrap().get(..4), Some("3.1."));
    let meta: Value = serde_json::from_str(include_str!("oas-3.1-schema.json")).unwrap();
    let validator = jsonschema::validator_for(&meta).unwrap();
    let errors: Vec<String> = validator.iter_errors(&doc).map(|e| format!("{} at {}", e, e.instance_path())).collect();
    assert!(errors.is_empty(), "not valid OpenAPI 3.1:\n{}", errors.join("\n"));

    for (name, schema) in doc["components"]["schemas"].as_object().unwrap() {
        assert!(jsonschema::meta::is_valid(schema), "schema {name} is not a valid JSON Schema");
    }
    let text = doc.to_string();
    for reference in text.split("\"$ref\":\"").skip(1).map(|r| &r[..r.find('"').unwrap()]) {
        let pointer = reference.strip_prefix('#').expect("local refs only");
        assert!(doc.pointer(pointer).is_some(), "{reference} does not resolve");
    }
    // every route of the router is documented
    let paths = doc["paths"].as_object().unwrap();
    assert_eq!(paths.len(), 48, "{:?}", paths.keys().collect::<Vec<_>>());
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            assert!(op["responses"].get("401").is_some(), "{method} {path} documents no 401");
        }
    }
}

/// What the server answers matches the document: real responses of each kind validate against
/// the schema the document gives for that operation and status.
#[tokio::test]
async fn responses_match_the_documented_schemas() {
    let app = spawn_app().await;
    let doc: Value = serde_json::from_str(&interaction_loader::openapi::document()).unwrap();
    let (id, _) = app.inbound_with(app.telegram, "schema-user", "hello", Some("+1555"), vec![]).await;
    app.assign(id, "alice").await;
    app.outbound(id, "alice", "hi there").await;
    let (_, webhook) = app
        .send(Method::POST, "/api/v1/webhooks", Some(json!({ "url": "http://127.0.0.1:9/", "events": ["*"] })))
        .await;
    let webhook_id = webhook["webhook"]["id"].as_str().unwrap().to_owned();
    let p = period(Utc::now() - Duration::hours(1), Utc::now() + Duration::hours(1));
    let checks: Vec<(String, &str, u16)> = vec![
        (format!("/api/v1/interactions?{p}&limit=1"), "/api/v1/interactions", 200),
        (format!("/api/v1/interactions/{id}"), "/api/v1/interactions/{id}", 200),
        (format!("/api/v1/interactions/{id}/messages"), "/api/v1/interactions/{id}/messages", 200),
        (format!("/api/v1/interactions/{id}/events"), "/api/v1/interactions/{id}/events", 200),
        ("/api/v1/customers?phone=%2B1555".into(), "/api/v1/customers", 200),
        ("/api/v1/accounts".into(), "/api/v1/accounts", 200),
        ("/api/v1/agents".into(), "/api/v1/agents", 200),
        ("/api/v1/agents/alice".into(), "/api/v1/agents/{login}", 200),
        ("/api/v1/queues".into(), "/api/v1/queues", 200),
        ("/api/v1/api-keys".into(), "/api/v1/api-keys", 200),
        ("/api/v1/audit".into(), "/api/v1/audit", 200),
        ("/api/v1/webhooks".into(), "/api/v1/webhooks", 200),
        (format!("/api/v1/webhooks/{webhook_id}/deliveries"), "/api/v1/webhooks/{id}/deliveries", 200),
        ("/api/v1/interactions?from=x".into(), "/api/v1/interactions", 400),
        (format!("/api/v1/interactions/{}", Uuid::now_v7()), "/api/v1/interactions/{id}", 404),
    ];
    for (url, template, status) in checks {
        let (got, body) = app.get(&url).await;
        assert_eq!(got.as_u16(), status, "{url}: {body}");
        let schema =
            doc["paths"][template]["get"]["responses"][status.to_string()]["content"]["application/json"]["schema"]
                .clone();
        assert!(!schema.is_null(), "{template} documents no JSON body for {status}");
        let mut with_components = schema;
        with_components["components"] = doc["components"].clone();
        let validator = jsonschema::validator_for(&with_components).unwrap();
        let errors: Vec<String> =
            validator.iter_errors(&body).map(|e| format!("{} at {}", e, e.instance_path())).collect();
        assert!(errors.is_empty(), "{url} answered what {template} does not document:\n{}\n{body}", errors.join("\n"));
    }
}

#[tokio::test]
async fn dead_letters_are_listed_and_a_replay_is_asked_for_once() {
    let app = spawn_app().await;
    let parked = {
        let mut conn = app.pool.acquire().await.unwrap();
        let mut ids = Vec::new();
        for n in 0..3 {
            let payload = format!("{{\"update_id\": {n}, \"message\": \"bad\\u0000\"}}");
            ids.push(
                schema::store::park_update(&mut conn, app.telegram, &n.to_string(), payload.as_bytes(), "refused", 5)
                    .await
                    .unwrap(),
            );
        }
        ids
    };
    let path = format!("/api/v1/accounts/{}/dead-letters?limit=2", app.telegram);
    let (status, page) = app.get(&path).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    assert_eq!(page["items"][0]["id"], parked[2], "newest first");
    assert_eq!(page["items"][0]["state"], "parked");
    assert_eq!(page["items"][0]["error"], "refused");
    assert!(page["items"][0]["payload"].as_str().unwrap().contains("update_id"));
    let cursor = page["next_cursor"].as_str().unwrap();
    let (_, rest) = app.get(&format!("{path}&cursor={cursor}")).await;
    assert_eq!(rest["items"][0]["id"], parked[0]);
    assert!(rest.get("next_cursor").is_none());

    let (status, letter) = app.send(Method::POST, &format!("/api/v1/dead-letters/{}/replay", parked[0]), None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{letter}");
    assert_eq!(letter["state"], "replay");
    let (_, audit) = app.get("/api/v1/audit?action=dead_letter.").await;
    assert_eq!(audit["items"][0]["target_id"], parked[0].to_string());
    sqlx::query("UPDATE dead_letters SET state = 'replayed' WHERE id = $1")
        .bind(parked[0])
        .execute(&app.pool)
        .await
        .unwrap();
    let (status, body) = app.send(Method::POST, &format!("/api/v1/dead-letters/{}/replay", parked[0]), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    for (path, expected) in [
        ("/api/v1/dead-letters/0/replay".to_owned(), StatusCode::BAD_REQUEST),
        ("/api/v1/dead-letters/x/replay".to_owned(), StatusCode::BAD_REQUEST),
        ("/api/v1/dead-letters/999999/replay".to_owned(), StatusCode::NOT_FOUND),
    ] {
        let (status, body) = app.send(Method::POST, &path, None).await;
        assert_eq!(status, expected, "{path}: {body}");
    }
    let (status, _) = app.get(&format!("/api/v1/accounts/{}/dead-letters", Uuid::now_v7())).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn flows_are_saved_as_versions_refused_naming_the_node_and_greet_a_queue() {
    let app = spawn_app().await;
    let admin = jwt("root", &["admin"], 300);
    let reader = jwt("ro", &["supervisor"], 300);
    let call = |method: Method, path: &str, body: Option<Value>, token: &str| {
        let mut request = app.http.request(method, app.url(path)).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status();
            (status, response.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let flow = json!({
        "start": "hello",
        "fallback_queue": "support",
        "nodes": {
            "hello": {"kind": "send", "text": "Hi! Is it about an order?", "buttons": ["Yes", "No"], "next": "topic"},
            "topic": {"kind": "wait", "var": "topic", "timeout_s": 600, "next": "human", "on_timeout": "human"},
            "human": {"kind": "handoff", "queue": "support"}
        }
    });
    let (status, first) = call(Method::PUT, "/api/v1/flows/greet", Some(flow.clone()), &admin).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert_eq!((first["name"].as_str(), first["version"].as_i64()), (Some("greet"), Some(1)));
    assert_eq!(first["flow"], flow);
    let mut changed = flow.clone();
    changed["nodes"]["hello"]["text"] = json!("Hello! Is it about an order?");
    let (status, second) = call(Method::PUT, "/api/v1/flows/greet", Some(changed.clone()), &admin).await;
    assert_eq!((status, second["version"].as_i64()), (StatusCode::CREATED, Some(2)));
    let (_, newest) = call(Method::GET, "/api/v1/flows/greet", None, &admin).await;
    assert_eq!(newest["flow"], changed);
    let (_, v1) = call(Method::GET, "/api/v1/flows/greet/versions/1", None, &admin).await;
    assert_eq!(v1["flow"], flow);
    let (status, _) = call(Method::GET, "/api/v1/flows/greet/versions/9", None, &admin).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = call(Method::GET, "/api/v1/flows/greet/versions/zero", None, &admin).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (_, list) = call(Method::GET, "/api/v1/flows", None, &admin).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(list["items"][0]["version"], 2);

    // refusals name the node; nothing is saved
    let mut bad = flow.clone();
    bad["nodes"]["hello"]["next"] = json!("nowhere");
    bad["nodes"]["human"]["queue"] = json!("ghost");
    let (status, body) = call(Method::PUT, "/api/v1/flows/greet", Some(bad), &admin).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "invalid_flow");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("node \"hello\": next names no node (\"nowhere\")"), "{message}");
    assert!(message.contains("node \"human\": queue names no queue (\"ghost\")"), "{message}");
    let mut unknown = flow.clone();
    unknown["nodes"]["topic"] = json!({"kind": "teleport"});
    let (status, body) = call(Method::PUT, "/api/v1/flows/greet", Some(unknown), &admin).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("node \"topic\": unknown variant `teleport`"),
        "{body}"
    );
    let mut control = flow.clone();
    control["nodes"]["topic"]["var"] = json!("to\u{7}pic");
    let (status, body) = call(Method::PUT, "/api/v1/flows/greet", Some(control), &admin).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("nodes.topic.var"), "{body}");
    let (status, body) = call(Method::PUT, "/api/v1/flows/Bad%20Name", Some(flow.clone()), &admin).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = call(Method::PUT, "/api/v1/flows/greet", Some(json!({"start": "a"})), &admin).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (_, newest) = call(Method::GET, "/api/v1/flows/greet", None, &admin).await;
    assert_eq!(newest["version"], 2);
    let (status, _) = call(Method::PUT, "/api/v1/flows/greet", Some(flow.clone()), &reader).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // a queue's greeting flow
    let (_, none) = call(Method::GET, "/api/v1/queues/support/greeting-flow", None, &admin).await;
    assert_eq!(none, json!({"flow": null}));
    let (status, body) =
        call(Method::PUT, "/api/v1/queues/support/greeting-flow", Some(json!({"flow": "missing"})), &admin).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) =
        call(Method::PUT, "/api/v1/queues/support/greeting-flow", Some(json!({"flow": "greet"})), &admin).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"flow": "greet"})));
    let (_, now) = call(Method::GET, "/api/v1/queues/support/greeting-flow", None, &admin).await;
    assert_eq!(now, json!({"flow": "greet"}));
    let (_, audit) = call(Method::GET, "/api/v1/audit", None, &admin).await;
    let actions: Vec<&str> = audit["items"].as_array().unwrap().iter().filter_map(|e| e["action"].as_str()).collect();
    assert_eq!(actions.iter().filter(|a| **a == "flow.save").count(), 2, "{actions:?}");
    assert!(actions.contains(&"queue.greeting_flow"), "{actions:?}");

    // an account's bot settings (docs/bots.md): re-entry names a flow and one of its nodes,
    // external_bot is a boolean; a refusal says what is wrong and changes nothing
    let account = format!("/api/v1/accounts/{}", app.telegram);
    for (settings, expected) in [
        (json!({"reentry": {"flow": "missing", "node": "hello"}}), "settings.reentry.flow names no flow (\"missing\")"),
        (json!({"reentry": {"flow": "greet", "node": "nowhere"}}), "has no node \"nowhere\""),
        (json!({"reentry": {"flow": "greet"}}), "settings.reentry must be"),
        (json!({"reentry": "greet/hello"}), "settings.reentry must be"),
        (json!({"reentry": {"flow": "greet", "node": "hello", "x": 1}}), "settings.reentry must be"),
        (json!({"external_bot": "yes"}), "settings.external_bot must be true, false or null"),
    ] {
        let (status, body) = call(Method::PATCH, &account, Some(json!({ "settings": settings })), &admin).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{settings}: {body}");
        assert!(body["error"]["message"].as_str().unwrap().contains(expected), "{settings}: {body}");
    }
    let (_, before) = call(Method::GET, &account, None, &admin).await;
    assert!(before["settings"].get("reentry").is_none(), "{before}");
    let good = json!({"settings": {"reentry": {"flow": "greet", "node": "topic"}, "external_bot": true}});
    let (status, body) = call(Method::PATCH, &account, Some(good), &admin).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["settings"]["reentry"], json!({"flow": "greet", "node": "topic"}), "{body}");
    assert_eq!(body["settings"]["external_bot"], true, "{body}");
}

/// `settings.chat_survey` (the survey after a closed chat) is checked before an account is
/// created or changed: a 400 naming the key, and a good one saved as given.
#[tokio::test]
async fn an_accounts_chat_survey_is_checked_before_it_is_saved() {
    let app = spawn_app().await;
    let admin = jwt("root", &["admin"], 300);
    let as_admin = |method: Method, path: &str, body: Value| {
        let request = app.http.request(method, app.url(path)).bearer_auth(&admin).json(&body);
        async move {
            let response = request.send().await.unwrap();
            let status = response.status();
            (status, response.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (status, account) = as_admin(
        Method::POST,
        "/api/v1/accounts",
        json!({ "channel": "webchat", "name": "site", "default_queue": "vip",
                "settings": { "chat_survey": { "queues": { "vip": { "rating_text": "Оцените" } } } } }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{account}");
    let path = format!("/api/v1/accounts/{}", account["id"].as_str().unwrap());
    for (bad, key) in [
        (json!({ "enabled": "yes" }), "chat_survey: "),
        (json!({ "enabled": true, "colour": "red" }), "chat_survey: "),
        (json!({ "enabled": true, "rating_text": "" }), "chat_survey.rating_text"),
        (json!({ "enabled": true, "window_minutes": 0 }), "chat_survey.window_minutes"),
        (json!({ "enabled": true, "window_minutes": 1441 }), "chat_survey.window_minutes"),
        (json!({ "enabled": true, "questions": [{ "id": "a b", "text": "?" }] }), "chat_survey.questions"),
        (json!({ "queues": { "vip": { "rating_text": " " } } }), "chat_survey.queues.vip.rating_text"),
    ] {
        let (status, body) = as_admin(Method::PATCH, &path, json!({ "settings": { "chat_survey": bad } })).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error"]["code"], "bad_request");
        assert!(body["error"]["message"].as_str().unwrap().starts_with(key), "{key}: {body}");
        let (status, body) = as_admin(
            Method::POST,
            "/api/v1/accounts",
            json!({ "channel": "webchat", "name": "other", "default_queue": "vip", "settings": { "chat_survey": bad } }),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    }
    let survey = json!({ "enabled": true, "window_minutes": 60, "rating_text": "Оцените", "questions": [{ "id": "c", "text": "?" }] });
    let (status, body) = as_admin(Method::PATCH, &path, json!({ "settings": { "chat_survey": survey } })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["settings"]["chat_survey"], survey);
}

/// The admin defines interaction fields (checked, audited); a value an agent set is in the
/// interaction's REST view and the exports' `fields` column.
#[tokio::test]
async fn interaction_fields_are_defined_checked_and_exported() {
    let app = spawn_app().await;
    let admin = jwt("root", &["admin"], 300);
    let as_admin = |method: Method, path: &str, body: Option<Value>| {
        let mut request = app.http.request(method, app.url(path)).bearer_auth(&admin);
        if let Some(body) = body {
            request = request.json(&body);
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status();
            (status, response.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let topic = json!({ "label": "Тема", "type": "choice", "choices": ["Заказ", "Возврат"], "required": true });
    let (status, body) = as_admin(Method::PUT, "/api/v1/interaction-fields/topic", Some(topic.clone())).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["type"], "choice");
    let (status, _) = as_admin(Method::PUT, "/api/v1/interaction-fields/topic", Some(topic)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) =
        as_admin(Method::PUT, "/api/v1/interaction-fields/vip", Some(json!({ "label": "VIP", "type": "bool" }))).await;
    assert_eq!(status, StatusCode::CREATED);
    for (key, body, why) in [
        ("Topic", json!({ "label": "x", "type": "text" }), "key"),
        ("campaign", json!({ "label": "x", "type": "text" }), "key"),
        ("note", json!({ "label": "x", "type": "date" }), "type must be"),
        ("note", json!({ "label": " ", "type": "text" }), "label"),
        ("note", json!({ "label": "x", "type": "choice" }), "choices"),
        ("note", json!({ "label": "x", "type": "text", "choices": ["a"] }), "choices"),
        ("note", json!({ "label": "x", "type": "choice", "choices": ["a", "a"] }), "choices"),
    ] {
        let (status, got) = as_admin(Method::PUT, &format!("/api/v1/interaction-fields/{key}"), Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{got}");
        assert!(got["error"]["message"].as_str().unwrap().starts_with(why), "{why}: {got}");
    }
    let (status, got) = as_admin(
        Method::PUT,
        "/api/v1/interaction-fields/note",
        Some(json!({ "label": "x", "type": "text", "colour": 1 })),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{got}");
    let (_, list) = as_admin(Method::GET, "/api/v1/interaction-fields", None).await;
    let keys: Vec<&str> = list["items"].as_array().unwrap().iter().map(|f| f["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["topic", "vip"]);
    assert_eq!(list["items"][0]["choices"], json!(["Заказ", "Возврат"]));
    let reader = jwt("sue", &["supervisor"], 60);
    let response = app
        .http
        .put(app.url("/api/v1/interaction-fields/x"))
        .bearer_auth(&reader)
        .json(&json!({ "label": "X", "type": "text" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);

    // an agent's value, in the REST view and the export
    let (interaction, _) = app.inbound(app.telegram, "fields-1", "hello").await;
    app.assign(interaction, "alice").await;
    let mut tx = app.pool.begin().await.unwrap();
    let set =
        schema::store::set_interaction_field(&mut tx, interaction, "alice", "topic", &json!("Возврат")).await.unwrap();
    assert!(matches!(set, schema::store::FieldSet::Done(_)), "{set:?}");
    tx.commit().await.unwrap();
    let (status, view) = app.get(&format!("/api/v1/interactions/{interaction}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(view["fields"], json!({ "topic": "Возврат" }), "{view}");
    let now = chrono::Utc::now();
    let p = period(now - chrono::Duration::hours(1), now + chrono::Duration::hours(1));
    let text = app
        .http
        .get(app.url(&format!("/api/v1/exports/interactions.csv?{p}")))
        .bearer_auth(&app.key)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    assert_eq!(reader.headers().unwrap().iter().next_back(), Some("fields"));
    let row = reader.records().map(Result::unwrap).find(|r| r[0] == interaction.to_string()).expect("exported");
    assert_eq!(serde_json::from_str::<Value>(&row[17]).unwrap(), json!({ "topic": "Возврат" }));

    let (status, _) = as_admin(Method::DELETE, "/api/v1/interaction-fields/vip", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, got) = as_admin(Method::DELETE, "/api/v1/interaction-fields/vip", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{got}");
    let (_, audit) = as_admin(Method::GET, "/api/v1/audit?target_kind=interaction_field", None).await;
    let actions: Vec<&str> = audit["items"].as_array().unwrap().iter().map(|r| r["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        [
            "interaction_field.delete",
            "interaction_field.create",
            "interaction_field.update",
            "interaction_field.create"
        ]
    );
}
