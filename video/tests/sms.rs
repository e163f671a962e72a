//! Call links by SMS and to copy, against the fake SMSC.ru (its HTTP wire format) on the real
//! PostgreSQL: the agent sends the link, the SMS carries a customer link of its own that opens
//! the call, the delivery the provider reports reaches the agent (`video.sms`), refusals and
//! outages are told apart, and only the room's agent or a supervisor may send.

mod support;

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{Hub, customer_join, frame_of, send, token};
use video::fake_smsc::FakeSmsc;

const PASSWORD: &str = "smsc-secret-pw";

async fn hub_with(fake: &FakeSmsc) -> Hub {
    let mut config = video::Config::default();
    config.sms.provider = "smsc".into();
    config.sms.url = fake.url();
    config.sms.login = "hub".into();
    config.sms.password = Some(ops::config::Secret::new(PASSWORD));
    config.sms.allow_internal = vec!["127.0.0.1/32".into()];
    config.sms.status_interval_ms = 50;
    Hub::start_with(config).await
}

async fn post(hub: &Hub, path: &str, who: Option<&str>, body: Value) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new().post(hub.url(path)).json(&body);
    if let Some(who) = who {
        let roles: &[&str] = if who == "sue" { &["supervisor"] } else { &["agent"] };
        request = request.bearer_auth(token(who, roles));
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Waits (up to 10 s) until the SMS's state is `want`; returns it.
async fn sms_state(hub: &Hub, room: uuid::Uuid, sms: &str, want: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let got: Value = reqwest::Client::new()
            .get(hub.url(&format!("/api/v1/video/rooms/{room}/sms/{sms}")))
            .bearer_auth(token("alice", &["agent"]))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if got["state"] == want {
            return got;
        }
        assert!(tokio::time::Instant::now() < deadline, "the SMS did not become {want}: {got}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_agent_sends_the_link_by_sms_and_sees_it_delivered() {
    let fake = FakeSmsc::start("hub", PASSWORD).await;
    let hub = hub_with(&fake).await;
    let (room, _) = hub.room().await;
    let path = format!("/api/v1/video/rooms/{room}/sms");

    let (status, sent) = post(&hub, &path, Some("alice"), json!({"phone": "+7 (912) 345-67-89"})).await;
    assert_eq!(status, StatusCode::CREATED, "{sent}");
    assert_eq!((sent["state"].as_str(), sent["phone"].as_str()), (Some("sent"), Some("+7******6789")));
    let messages = fake.sent();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].phone, "79123456789");
    assert_eq!(sent["provider_id"], messages[0].id.to_string());
    assert!(fake.requests().iter().all(|(_, authorised)| *authorised));

    // the SMS's link opens the call as the customer
    let text = &messages[0].text;
    assert!(text.contains("invites you to a video call"), "{text}");
    let link = text.rsplit("/call/").next().unwrap().trim().to_owned();
    let (status, info) = post(&hub, "/api/v1/video/link", None, json!({"link": link})).await;
    assert_eq!((status, info["state"].as_str()), (StatusCode::OK, Some("open")), "{info}");
    let mut ws = hub.socket().await;
    send(&mut ws, customer_join(&link)).await;
    let joined = frame_of(&mut ws, "joined", &mut Vec::new()).await;
    assert_eq!(joined["room"]["id"], room.to_string());
    assert_eq!(joined["participant"]["role"], "customer");
    send(&mut ws, json!({"type": "leave"})).await;

    // the delivery the provider reports reaches the agent
    fake.set_status(messages[0].id, 1);
    let delivered = sms_state(&hub, room, sent["sms_id"].as_str().unwrap(), "delivered").await;
    assert!(delivered["error"].is_null(), "{delivered}");
    let events: Vec<Value> = sqlx::query_scalar(
        "SELECT data FROM agent_events WHERE agent_login = 'alice' AND event = 'video.sms' ORDER BY seq",
    )
    .fetch_all(&hub.pool)
    .await
    .unwrap();
    let states: Vec<&str> = events.iter().map(|e| e["state"].as_str().unwrap()).collect();
    assert_eq!(states, vec!["sent", "delivered"]);
    assert!(events.iter().all(|e| e["phone"] == "+7******6789" && e["room_id"] == room.to_string()));

    // an undeliverable one is reported failed, with the reason
    let (_, second) = post(&hub, &path, Some("sue"), json!({"phone": "8 912 000 11 22"})).await;
    assert_eq!(fake.sent()[1].phone, "79120001122");
    fake.set_status(fake.sent()[1].id, 20);
    let failed = sms_state(&hub, room, second["sms_id"].as_str().unwrap(), "failed").await;
    assert_eq!(failed["error"], "undeliverable");

    // bad numbers, other agents, a provider that is down, an ended room
    for phone in ["12345", "+7 912 345 67 89; rm", "", "٠١٢٣٤٥٦٧٨٩٠"] {
        let (status, body) = post(&hub, &path, Some("alice"), json!({"phone": phone})).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("bad_request")),
            "{phone}: {body}"
        );
    }
    let (status, body) = post(&hub, &path, Some("alice"), json!({"phone": 79123456789u64})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _) = post(&hub, &path, Some("bob"), json!({"phone": "+79123456789"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "bob has nothing to do with the interaction");
    let (status, _) = post(&hub, &path, None, json!({"phone": "+79123456789"})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    fake.fail_next(503);
    let (status, body) = post(&hub, &path, Some("alice"), json!({"phone": "+79123456789"})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::BAD_GATEWAY, Some("sms_unavailable")), "{body}");
    assert!(!body.to_string().contains(PASSWORD));
    assert_eq!(fake.sent().len(), 2, "nothing was sent");
    let failed_rows: i64 =
        sqlx::query_scalar("SELECT count(*) FROM video_sms WHERE state = 'failed'").fetch_one(&hub.pool).await.unwrap();
    assert_eq!(failed_rows, 2, "the undeliverable one and the one the provider never took");

    // five per call: the fourth and fifth go, the sixth is refused before the provider
    for _ in 0..2 {
        let (status, body) = post(&hub, &path, Some("alice"), json!({"phone": "+79123456789"})).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (status, body) = post(&hub, &path, Some("alice"), json!({"phone": "+79123456789"})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("conflict")), "{body}");
    assert_eq!(fake.sent().len(), 4);

    let (status, copied) = post(&hub, &format!("/api/v1/video/rooms/{room}/link"), Some("alice"), json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{copied}");
    let copied = copied["customer_link"].as_str().unwrap();
    let copied_token = copied.rsplit('/').next().unwrap();
    assert_ne!(copied_token, link);
    let (status, _) = post(&hub, "/api/v1/video/link", None, json!({"link": copied_token})).await;
    assert_eq!(status, StatusCode::OK);

    let (status, _) = post(&hub, &format!("/api/v1/video/rooms/{room}/end"), Some("alice"), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = post(&hub, &path, Some("alice"), json!({"phone": "+79123456789"})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::GONE, Some("room_ended")), "{body}");
}

#[tokio::test]
async fn a_provider_that_refuses_and_a_hub_without_sms() {
    let fake = FakeSmsc::start("hub", "another-password").await;
    let hub = hub_with(&fake).await;
    let (room, _) = hub.room().await;
    let (status, body) =
        post(&hub, &format!("/api/v1/video/rooms/{room}/sms"), Some("alice"), json!({"phone": "+79123456789"})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("sms_refused")),
        "{body}"
    );
    assert!(body["error"]["message"].as_str().unwrap().contains("authorise error"), "{body}");
    assert_eq!(fake.requests(), vec![("send.php".to_owned(), false)]);

    let off = Hub::start().await;
    let (room, _) = off.room().await;
    let (status, body) =
        post(&off, &format!("/api/v1/video/rooms/{room}/sms"), Some("alice"), json!({"phone": "+79123456789"})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("sms_off")), "{body}");
}
