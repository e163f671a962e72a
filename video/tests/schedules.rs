//! Scheduled calls on the real PostgreSQL: booking sends the link at once, refusals have clear
//! codes (401, 403, 404, 409, 422), supervisors list, move and cancel; the reminder goes exactly
//! once with two nodes' workers racing, a node restarted after the reminder fell due sends it,
//! and a reminder by SMS goes through the SMS provider. Then a call that follows its
//! interaction's transfer, and what a live call counts in routing's capacity.

mod support;

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::{Hub, agent_join, frame_of, send, token};
use uuid::Uuid;
use video::fake_smsc::FakeSmsc;

async fn call(
    hub: &Hub,
    method: Method,
    path: &str,
    who: Option<(&str, &str)>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new().request(method, hub.url(path));
    if let Some((login, role)) = who {
        request = request.bearer_auth(token(login, &[role]));
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

const ALICE: Option<(&str, &str)> = Some(("alice", "agent"));
const BOB: Option<(&str, &str)> = Some(("bob", "agent"));
const SUE: Option<(&str, &str)> = Some(("sue", "supervisor"));

fn in_hours(h: i64) -> DateTime<Utc> {
    // whole seconds: what PostgreSQL gives back compares equal
    DateTime::from_timestamp((Utc::now() + TimeDelta::hours(h)).timestamp(), 0).unwrap()
}

async fn schedule(hub: &Hub, interaction: Uuid, at: DateTime<Utc>, remind_before_s: i64) -> Value {
    let body = json!({"interaction_id": interaction, "at": at, "remind_before_s": remind_before_s});
    let (status, body) = call(hub, Method::POST, "/api/v1/video/schedules", ALICE, Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body
}

/// The texts of the messages queued for the customer of `interaction`, oldest first.
async fn outgoing(hub: &Hub, interaction: Uuid) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT text FROM messages WHERE interaction_id = $1 AND direction = 'out' ORDER BY created_at, id",
    )
    .bind(interaction)
    .fetch_all(&hub.pool)
    .await
    .unwrap()
}

/// alice's `video.scheduled` events of one schedule with `state`.
async fn agent_events(hub: &Hub, schedule: &str, state: &str) -> Vec<Value> {
    sqlx::query_scalar(
        "SELECT data FROM agent_events WHERE agent_login = 'alice' AND event = 'video.scheduled'
         AND data->>'schedule_id' = $1 AND data->>'state' = $2 ORDER BY seq",
    )
    .bind(schedule)
    .bind(state)
    .fetch_all(&hub.pool)
    .await
    .unwrap()
}

async fn reminder_state(hub: &Hub, schedule: &str) -> String {
    sqlx::query_scalar("SELECT reminder FROM scheduled_calls WHERE id = $1::uuid")
        .bind(schedule)
        .fetch_one(&hub.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn booking_moving_and_cancelling_with_clear_refusals() {
    let hub = Hub::start().await;
    let i = hub.interaction;
    let at = in_hours(2);
    let path = "/api/v1/video/schedules";
    let good = json!({"interaction_id": i, "at": at});

    // refusals before anything is stored
    let (status, body) = call(&hub, Method::POST, path, None, Some(good.clone())).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("unauthorized")));
    let (status, body) = call(&hub, Method::POST, path, BOB, Some(good.clone())).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")), "{body}");
    for (bad, field) in [
        (json!({"interaction_id": i, "at": Utc::now() - TimeDelta::minutes(5)}), "at"),
        (json!({"interaction_id": i, "at": Utc::now() + TimeDelta::seconds(30)}), "at"),
        (json!({"interaction_id": i, "at": Utc::now() + TimeDelta::days(400)}), "at"),
        (json!({"interaction_id": i, "at": at, "remind_before_s": 5}), "remind_before_s"),
        (json!({"interaction_id": i, "at": at, "via": "fax"}), "via"),
        (json!({"interaction_id": i, "at": at, "via": "sms"}), "phone"),
        (json!({"interaction_id": i, "at": at, "phone": "+79161234567"}), "phone"),
    ] {
        let (status, body) = call(&hub, Method::POST, path, ALICE, Some(bad.clone())).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "bad_schedule");
        assert!(body["error"]["message"].as_str().unwrap().starts_with(field), "{body}");
    }
    let (status, body) = call(
        &hub,
        Method::POST,
        path,
        ALICE,
        Some(json!({"interaction_id": i, "at": at, "via": "sms", "phone": "+79161234567"})),
    )
    .await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("sms_off")));
    let (status, body) =
        call(&hub, Method::POST, path, ALICE, Some(json!({"interaction_id": i, "at": at, "colour": "red"}))).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("bad_request")));
    assert!(outgoing(&hub, i).await.is_empty(), "nothing was sent for a refusal");

    // booked: the room is open, the customer has the link with the time, the agents know
    let booked = schedule(&hub, i, at, 1800).await;
    let id = booked["id"].as_str().unwrap().to_owned();
    assert_eq!(booked["state"], "scheduled");
    assert_eq!(booked["reminder"], "pending");
    assert_eq!(booked["remind_before_s"], 1800);
    assert_eq!(booked["via"], "channel");
    let link = booked["customer_link"].as_str().unwrap();
    let sent = outgoing(&hub, i).await;
    assert_eq!(sent.len(), 1);
    assert!(sent[0].contains(link) && sent[0].contains(&at.format("%Y-%m-%d %H:%M UTC").to_string()), "{sent:?}");
    assert_eq!(agent_events(&hub, &id, "scheduled").await.len(), 1);
    let room: Uuid = booked["room_id"].as_str().unwrap().parse().unwrap();
    let expires: DateTime<Utc> = sqlx::query_scalar("SELECT link_expires_at FROM video_rooms WHERE id = $1")
        .bind(room)
        .fetch_one(&hub.pool)
        .await
        .unwrap();
    assert_eq!(expires, at + TimeDelta::hours(1), "the link is good until link_ttl_s after the call");
    // one open room per interaction
    let (status, body) = call(&hub, Method::POST, path, ALICE, Some(good.clone())).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("conflict")));

    // listing: supervisors see all, an agent their own
    let (status, body) = call(&hub, Method::GET, path, SUE, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["schedules"].as_array().unwrap().len(), 1);
    assert_eq!(body["schedules"][0]["id"], id.as_str());
    let (_, body) = call(&hub, Method::GET, path, BOB, None).await;
    assert_eq!(body["schedules"], json!([]));
    let (status, body) = call(&hub, Method::GET, &format!("{path}?agent=alice"), BOB, None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("forbidden")));
    let (status, _) = call(&hub, Method::GET, &format!("{path}?state=nope"), SUE, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, body) = call(&hub, Method::GET, &format!("{path}?agent=al%00ice"), SUE, None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("bad_request")), "{body}");
    let (status, _) = call(&hub, Method::GET, &format!("{path}?limit=0"), SUE, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, body) =
        call(&hub, Method::GET, &format!("{path}?interaction_id={i}&state=scheduled"), ALICE, None).await;
    assert_eq!((status, body["schedules"].as_array().unwrap().len()), (StatusCode::OK, 1));

    // moving: bob may not, an unknown id is 404, a bad time 422; sue moves it
    let one = format!("{path}/{id}");
    let later = in_hours(3);
    let (status, body) = call(&hub, Method::PATCH, &one, BOB, Some(json!({"at": later}))).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("forbidden")));
    let (status, body) =
        call(&hub, Method::PATCH, &format!("{path}/{}", Uuid::now_v7()), SUE, Some(json!({"at": later}))).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
    let (status, _) = call(&hub, Method::PATCH, &format!("{path}/nope"), SUE, Some(json!({"at": later}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, body) =
        call(&hub, Method::PATCH, &one, SUE, Some(json!({"at": Utc::now() - TimeDelta::hours(1)}))).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("bad_schedule")));
    let (status, body) = call(&hub, Method::PATCH, &one, SUE, Some(json!({"at": later, "remind_before_s": 600}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["at"].as_str().unwrap().parse::<DateTime<Utc>>().unwrap(), later);
    assert_eq!(body["remind_before_s"], 600);
    let moved = agent_events(&hub, &id, "moved").await;
    assert_eq!(moved.len(), 1);
    assert_eq!(moved[0]["by"], "sue");
    let sent = outgoing(&hub, i).await;
    assert!(sent[1].contains("has moved to") && sent[1].contains(&later.format("%H:%M UTC").to_string()), "{sent:?}");

    // cancelling: the room ends, the customer is told, twice is a conflict
    let (status, body) = call(&hub, Method::DELETE, &one, BOB, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = call(&hub, Method::DELETE, &one, SUE, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!((body["state"].as_str(), body["cancelled_by"].as_str()), (Some("cancelled"), Some("sue")));
    let (state, reason): (String, Option<String>) =
        sqlx::query_as("SELECT state, end_reason FROM video_rooms WHERE id = $1")
            .bind(room)
            .fetch_one(&hub.pool)
            .await
            .unwrap();
    assert_eq!((state.as_str(), reason.as_deref()), ("ended", Some("cancelled")));
    assert!(outgoing(&hub, i).await[2].contains("is cancelled"));
    assert_eq!(agent_events(&hub, &id, "cancelled").await.len(), 1);
    let (status, body) = call(&hub, Method::DELETE, &one, SUE, None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("conflict")));
    let (status, _) = call(&hub, Method::PATCH, &one, ALICE, Some(json!({"at": later}))).await;
    assert_eq!(status, StatusCode::CONFLICT);
    // a cancelled call is never reminded
    hub.video.run_reminders(later - TimeDelta::minutes(5)).await.unwrap();
    assert!(agent_events(&hub, &id, "reminder").await.is_empty());
    assert_eq!(reminder_state(&hub, &id).await, "pending");
}

#[tokio::test]
async fn each_reminder_goes_exactly_once_with_two_nodes_racing() {
    let a = Hub::start().await;
    let b = a.another_node(video::Config::default()).await;
    let at = in_hours(2);
    let mut ids = vec![];
    for n in 0..8 {
        let interaction = if n == 0 { a.interaction } else { a.another_interaction(&format!("wc-race-{n}")).await };
        ids.push((interaction, schedule(&a, interaction, at, 900).await["id"].as_str().unwrap().to_owned()));
    }
    // not due yet: nothing happens, and the next due time is known
    let early = at - TimeDelta::minutes(20);
    assert_eq!(a.video.run_reminders(early).await.unwrap(), Some(at - TimeDelta::minutes(15)));
    assert!(agent_events(&a, &ids[0].1, "reminder").await.is_empty());
    // due: both nodes' workers run at once, several times
    let due = at - TimeDelta::minutes(10);
    for _ in 0..4 {
        let (x, y) = tokio::join!(a.video.run_reminders(due), b.video.run_reminders(due));
        x.unwrap();
        y.unwrap();
    }
    for (interaction, id) in &ids {
        assert_eq!(reminder_state(&a, id).await, "sent");
        let reminders = outgoing(&a, *interaction).await.into_iter().filter(|t| t.starts_with("Reminder:")).count();
        assert_eq!(reminders, 1, "schedule {id}: one reminder to the customer");
        let events = agent_events(&a, id, "reminder").await;
        assert_eq!(events.len(), 1, "schedule {id}: one reminder to the agent");
        assert!(events[0]["agent_join"].as_str().unwrap().contains("/video/agent?room="));
    }
}

#[tokio::test]
async fn a_node_restarted_after_a_reminder_fell_due_sends_it() {
    let mut config = video::Config::default();
    config.schedules.poll_interval_ms = 50;
    let first = Hub::start_with(config.clone()).await;
    // due 2 s from now
    let at = DateTime::from_timestamp((Utc::now() + TimeDelta::seconds(63)).timestamp(), 0).unwrap();
    let id = schedule(&first, first.interaction, at, 60).await["id"].as_str().unwrap().to_owned();
    first.shutdown.cancel();
    first.video.stopped().await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(reminder_state(&first, &id).await, "pending", "nobody ran while the node was down");
    let restarted = first.another_node(config).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while reminder_state(&restarted, &id).await != "sent" {
        assert!(tokio::time::Instant::now() < deadline, "the restarted node did not send the reminder");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(agent_events(&restarted, &id, "reminder").await.len(), 1);
    let texts = outgoing(&restarted, restarted.interaction).await;
    assert_eq!(texts.iter().filter(|t| t.starts_with("Reminder:")).count(), 1, "{texts:?}");
    // a reminder whose call time has passed is missed, not sent late
    let late = restarted.another_interaction("wc-late").await;
    let id = schedule(&restarted, late, in_hours(1), 900).await["id"].as_str().unwrap().to_owned();
    sqlx::query("UPDATE scheduled_calls SET reminder = 'pending' WHERE id = $1::uuid")
        .bind(&id)
        .execute(&restarted.pool)
        .await
        .unwrap();
    restarted.video.run_reminders(Utc::now() + TimeDelta::hours(2)).await.unwrap();
    assert_eq!(reminder_state(&restarted, &id).await, "missed");
    assert!(agent_events(&restarted, &id, "reminder").await.is_empty());
}

#[tokio::test]
async fn a_call_booked_by_sms_sends_the_link_and_the_reminder_by_sms() {
    let fake = FakeSmsc::start("hub", "smsc-secret-pw").await;
    let mut config = video::Config::default();
    config.sms.provider = "smsc".into();
    config.sms.url = fake.url();
    config.sms.login = "hub".into();
    config.sms.password = Some(ops::config::Secret::new("smsc-secret-pw"));
    config.sms.allow_internal = vec!["127.0.0.1/32".into()];
    let hub = Hub::start_with(config).await;
    let at = in_hours(2);
    let body = json!({"interaction_id": hub.interaction, "at": at, "via": "sms", "phone": "+7 916 123-45-67"});
    let (status, booked) = call(&hub, Method::POST, "/api/v1/video/schedules", ALICE, Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{booked}");
    assert_eq!(booked["sms"]["state"], "sent");
    assert_eq!(booked["phone"], "+7******4567");
    let id = booked["id"].as_str().unwrap();
    hub.video.run_reminders(at - TimeDelta::minutes(10)).await.unwrap();
    hub.video.run_reminders(at - TimeDelta::minutes(9)).await.unwrap();
    let sms = fake.sent();
    assert_eq!(sms.len(), 2, "{sms:?}");
    assert!(sms.iter().all(|s| s.phone == "79161234567"));
    assert!(sms[0].text.contains("invites you to a video call on"));
    assert!(sms[1].text.starts_with("Reminder:"));
    // each SMS carries a link of its own that opens the call
    let link = sms[1].text.rsplit(' ').next().unwrap().rsplit('/').next().unwrap();
    let (status, info) = call(&hub, Method::POST, "/api/v1/video/link", None, Some(json!({"link": link}))).await;
    assert_eq!((status, info["state"].as_str()), (StatusCode::OK, Some("open")));
    assert_eq!(reminder_state(&hub, id).await, "sent");
    assert_eq!(agent_events(&hub, id, "reminder").await.len(), 1);
}

#[tokio::test]
async fn a_call_follows_its_interaction_to_the_new_agent() {
    let hub = Hub::start().await;
    let (room, _) = hub.room().await;
    let mut alice = hub.socket().await;
    send(&mut alice, agent_join(room, "alice", &["agent"])).await;
    frame_of(&mut alice, "offer", &mut Vec::new()).await;

    // the capacity the live call takes in routing
    sqlx::query("UPDATE agents SET status = 'ready' WHERE login IN ('alice', 'bob')").execute(&hub.pool).await.unwrap();
    let snapshot = schema::store::routing_snapshot(&mut hub.pool.acquire().await.unwrap()).await.unwrap();
    let calls = |login: &str| snapshot.agents.iter().find(|a| a.login == login).map(|a| a.video_calls);
    assert_eq!((calls("alice"), calls("bob")), (Some(1), Some(0)));

    // the interaction goes to bob (as the agent API's interaction.transfer does it, doorbell included)
    let mut tx = hub.pool.begin().await.unwrap();
    let target = schema::store::TransferTarget::Agent("bob".into());
    schema::store::transfer(&mut tx, hub.interaction, "alice", &target, None).await.unwrap();
    tx.commit().await.unwrap();
    hub.coord.notify(schema::topics::VIDEO_ROOMS);
    let closed = frame_of(&mut alice, "error", &mut Vec::new()).await;
    assert_eq!(closed["code"], "transferred", "{closed}");

    // bob joins as the call's agent, alice may no longer
    let mut again = hub.socket().await;
    send(&mut again, agent_join(room, "alice", &["agent"])).await;
    assert_eq!(frame_of(&mut again, "error", &mut Vec::new()).await["code"], "forbidden");
    let mut bob = hub.socket().await;
    send(&mut bob, agent_join(room, "bob", &["agent"])).await;
    let joined = frame_of(&mut bob, "joined", &mut Vec::new()).await;
    assert_eq!(joined["participant"]["role"], "agent", "{joined}");
    let event: Value = sqlx::query_scalar(
        "SELECT data FROM agent_events WHERE agent_login = 'bob' AND event = 'video.room' AND data->>'state' = 'transferred'",
    )
    .fetch_one(&hub.pool)
    .await
    .unwrap();
    assert_eq!((event["from_agent"].as_str(), event["to_agent"].as_str()), (Some("alice"), Some("bob")));
    // the call now counts in bob's capacity, no longer in alice's
    let snapshot = schema::store::routing_snapshot(&mut hub.pool.acquire().await.unwrap()).await.unwrap();
    let calls = |login: &str| snapshot.agents.iter().find(|a| a.login == login).map(|a| a.video_calls);
    assert_eq!((calls("alice"), calls("bob")), (Some(0), Some(1)));
    // a call booked for later does not count until its time
    let later = hub.another_interaction("wc-later").await;
    schedule(&hub, later, in_hours(2), 900).await;
    let snapshot = schema::store::routing_snapshot(&mut hub.pool.acquire().await.unwrap()).await.unwrap();
    assert_eq!(snapshot.agents.iter().find(|a| a.login == "alice").unwrap().video_calls, 0);
}
