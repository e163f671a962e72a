//! Recording end to end: webrtc-rs participants join a recorded room through the signalling
//! socket and send known signals (the customer a 440 Hz tone and the VP8 test pattern, the
//! agent a 1000 Hz tone); the customer consents, mutes for ten seconds in the middle; the agent
//! ends the call. The recording becomes a `recording` file of the file server, `video.room`
//! `recording_ready` goes to the interaction's log (and its webhook), and the file, read back
//! with `ffprobe` and decoded with `ffmpeg` (test-only), has one video track and one 2-channel
//! audio track, each tone at least 20 dB louder on its own side, the call's duration within
//! 100 ms, and ten seconds of silence on the left where the customer was muted. Also: a customer
//! who does not consent is not recorded; a recording over the quota fails with the reason.

mod support;

use std::time::{Duration, Instant};

use schema::domain::RecordingState;
use schema::store;
use serde_json::json;
use support::media::{self, decode_stereo, ffprobe, silences, span, tone_db};
use support::{Hub, Media, Publish, TestPeer, agent_join, customer_join_consenting, send, token};

const LIMIT: Duration = Duration::from_secs(20);

async fn recording_of(hub: &Hub, room: uuid::Uuid, within: Duration) -> store::Recording {
    let deadline = Instant::now() + within;
    loop {
        let mut conn = hub.pool.acquire().await.unwrap();
        if let Some(r) = store::recording_of_room(&mut conn, room).await.unwrap()
            && matches!(r.state, RecordingState::Ready | RecordingState::Failed)
        {
            return r;
        }
        assert!(Instant::now() < deadline, "no finished recording of room {room} within {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn recorded_room(hub: &Hub) -> (uuid::Uuid, String) {
    let (status, body) = hub.start_room(json!({"interaction_id": hub.interaction, "record": true})).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["record"], true);
    let link = body["customer_link"].as_str().unwrap().rsplit('/').next().unwrap().to_owned();
    (body["room_id"].as_str().unwrap().parse().unwrap(), link)
}

async fn download(hub: &Hub, file: uuid::Uuid, path: &std::path::Path) {
    let bytes = reqwest::Client::new()
        .get(hub.url(&format!("/api/v1/files/{file}")))
        .bearer_auth(token("alice", &["agent"]))
        .send()
        .await
        .unwrap();
    assert_eq!(bytes.status(), 200, "the interaction's agent downloads the recording");
    std::fs::write(path, bytes.bytes().await.unwrap()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_call_gives_one_file_customer_left_agent_right() {
    media::require_ffmpeg();
    media::vp8_pattern();
    let hub = Hub::start().await;
    // integrators subscribed to video.room get recording_ready
    sqlx::query(
        "INSERT INTO webhook_subscriptions (id, url, events, secret, created_by) VALUES ($1, 'https://crm.example/hook', '{video.room}', 'whsec', 'admin')",
    )
    .bind(uuid::Uuid::new_v4())
    .execute(&hub.pool)
    .await
    .unwrap();
    let (room, link) = recorded_room(&hub).await;

    // the page learns that the call is recorded, and what to tell the customer
    let info: serde_json::Value = reqwest::Client::new()
        .post(hub.url("/api/v1/video/link"))
        .json(&json!({"link": link}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["record"], true);
    assert!(info["consent_text"].as_str().unwrap().contains("recorded"), "{info}");

    let mut agent =
        TestPeer::join(hub.socket().await, agent_join(room, "alice", &["agent"]), Publish::media(1000, true)).await;
    assert_eq!(agent.joined["room"]["record"], true);
    assert_eq!(agent.joined["room"]["recording"], false, "nothing is recorded before the customer consents");
    let mut customer_publish = Publish::media(440, true);
    customer_publish.media = Some(Media { tone_hz: 440, mute: Some((5_000, 15_000)), loss_percent: 0 });
    let customer = TestPeer::join(hub.socket().await, customer_join_consenting(&link, true), customer_publish).await;
    assert_eq!(customer.joined["room"]["recording"], true);
    agent.next_slots().await;
    let video = agent.mid_of(&customer.id(), "camera").unwrap();
    agent.wait_until("the agent sees the customer", LIMIT, |r| r.on(&video) > 30).await;
    customer.send_data(r#"{"type":"chat","text":"can you hear me?"}"#);
    // 20 s of media from the customer's start (its mute ends at 15 s)
    tokio::time::sleep(Duration::from_secs(19)).await;
    let muted = *customer.received.muted.lock().unwrap();
    send(&mut agent.ws, json!({"type": "end"})).await;

    let recording = recording_of(&hub, room, Duration::from_secs(60)).await;
    assert_eq!(recording.state, RecordingState::Ready, "{recording:?}");
    let file = recording.file.clone().expect("the recording's file");
    assert_eq!(file.mime, "video/webm");
    println!("{recording:?}");

    // the event reached the interaction's log, so the agents' streams and the webhook
    let (seq, data): (i64, serde_json::Value) = sqlx::query_as(
        "SELECT seq, data FROM interaction_events WHERE interaction_id = $1 AND kind = 'video.room' AND data->>'state' = 'recording_ready'",
    )
    .bind(hub.interaction)
    .fetch_one(&hub.pool)
    .await
    .unwrap();
    assert_eq!(data["recording"]["file"]["id"], file.id.to_string());
    let to_alice: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM agent_events WHERE agent_login = 'alice' AND event = 'video.room' AND data->>'state' = 'recording_ready'",
    )
    .fetch_one(&hub.pool)
    .await
    .unwrap();
    assert_eq!(to_alice, 1, "in the agent's stream");
    let deliveries: i64 =
        sqlx::query_scalar("SELECT count(*) FROM webhook_deliveries WHERE interaction_id = $1 AND seq = $2")
            .bind(hub.interaction)
            .bind(seq)
            .fetch_one(&hub.pool)
            .await
            .unwrap();
    assert_eq!(deliveries, 1, "a webhook delivery");

    // the file
    let path = hub.dir.path().join("call.webm");
    download(&hub, file.id, &path).await;
    let probe = ffprobe(&path);
    let streams = probe["streams"].as_array().unwrap();
    let video: Vec<_> = streams.iter().filter(|s| s["codec_type"] == "video").collect();
    let audio: Vec<_> = streams.iter().filter(|s| s["codec_type"] == "audio").collect();
    assert_eq!(video.len(), 1, "the customer's video only: {probe}");
    assert_eq!((video[0]["codec_name"].as_str(), video[0]["width"].as_u64()), (Some("vp8"), Some(320)));
    assert_eq!(audio.len(), 1, "{probe}");
    assert_eq!((audio[0]["codec_name"].as_str(), audio[0]["channels"].as_u64()), (Some("opus"), Some(2)));

    // the call: the customer's join (when recording started) to the end
    let call = {
        let mut conn = hub.pool.acquire().await.unwrap();
        store::call_record(&mut conn, room).await.unwrap()
    };
    let customer_row = call.participants.iter().find(|p| p.role == "customer").unwrap();
    let call_s = (call.room.ended_at.unwrap() - customer_row.joined_at).num_milliseconds() as f64 / 1000.0;
    let duration: f64 = probe["format"]["duration"].as_str().unwrap().parse().unwrap();
    println!("call {call_s:.3} s, recording {duration:.3} s");
    assert!((duration - call_s).abs() <= 0.1, "the recording lasts {duration} s, the call {call_s} s");

    let (left, right) = decode_stereo(&path);
    let (mute_start, mute_end) = muted.expect("the customer muted");
    let mute_end = mute_end.expect("and unmuted");
    let at = |t: chrono::DateTime<chrono::Utc>| (t - recording.started_at).num_milliseconds() as f64 / 1000.0;
    let (m0, m1) = (at(mute_start), at(mute_end));
    // both voices before the mute and after it
    for (from, to) in [(m0 - 3.5, m0 - 0.5), (m1 + 0.5, m1 + 3.0)] {
        let (l, r) = (span(&left, from, to), span(&right, from, to));
        let customer = (tone_db(l, 440.0), tone_db(r, 440.0));
        let agent = (tone_db(l, 1000.0), tone_db(r, 1000.0));
        println!("{from:.1}-{to:.1} s: customer {customer:.1?} dB (left, right), agent {agent:.1?} dB");
        assert!(customer.0 > -25.0 && customer.0 - customer.1 >= 20.0, "customer {customer:?}");
        assert!(agent.1 > -25.0 && agent.1 - agent.0 >= 20.0, "agent {agent:?}");
    }
    let quiet = silences(&left, -60.0, 1.0);
    println!("customer muted {m0:.3}-{m1:.3} s of the recording; silences on the left: {quiet:?}");
    let (s0, s1) = *quiet.iter().find(|(a, b)| b - a > 5.0).expect("the mute is silent on the left");
    assert!((s0 - m0).abs() <= 0.1 && (s1 - m1).abs() <= 0.1, "silence {s0}-{s1} s, mute {m0}-{m1} s");
    assert!((s1 - s0 - 10.0).abs() <= 0.1, "ten seconds of silence: {}", s1 - s0);
    assert!(tone_db(span(&right, m0 + 1.0, m1 - 1.0), 1000.0) > -25.0, "the agent goes on on the right");

    // the call records
    assert_eq!(customer_row.recording_consent, Some(true));
    assert!(
        customer_row.connected_at.is_some() && customer_row.ice_path.as_deref() == Some("direct"),
        "{customer_row:?}"
    );
    assert!(customer_row.quality.samples >= 2, "{:?}", customer_row.quality);
    assert_eq!(call.chat_messages, 1);
    assert_eq!(call.recording.as_ref().map(|r| r.id), Some(recording.id));
    let snapshot = hub.video.sfu().snapshot().await.unwrap();
    assert_eq!(snapshot.recordings, 0, "the SFU no longer feeds the recording");
    assert_eq!(hub.video.recorder().active_count(), 0);
    assert!(!hub.dir.path().join("spool").join(recording.id.to_string()).exists(), "the spool is cleared");
    customer.leave().await;
}

#[tokio::test]
async fn a_customer_who_does_not_consent_is_not_recorded() {
    let hub = Hub::start().await;
    let (room, link) = recorded_room(&hub).await;
    let _agent = TestPeer::join(hub.socket().await, agent_join(room, "alice", &["agent"]), Publish::NONE).await;
    let customer = TestPeer::join(hub.socket().await, customer_join_consenting(&link, false), Publish::NONE).await;
    assert_eq!(customer.joined["room"]["recording"], false);
    assert!(!hub.video.recorder().is_recording(room));
    let mut conn = hub.pool.acquire().await.unwrap();
    assert!(store::recording_of_room(&mut conn, room).await.unwrap().is_none());
    let record = store::call_record(&mut conn, room).await.unwrap();
    let c = record.participants.iter().find(|p| p.role == "customer").unwrap();
    assert_eq!(c.recording_consent, Some(false), "the refusal is kept");
    let (joined,): (serde_json::Value,) = sqlx::query_as(
        "SELECT data FROM interaction_events WHERE interaction_id = $1 AND kind = 'video.room' AND data->>'role' = 'customer'",
    )
    .bind(hub.interaction)
    .fetch_one(&hub.pool)
    .await
    .unwrap();
    assert_eq!(joined["recording_consent"], false, "the agent is told");
}

#[tokio::test]
async fn a_recording_over_the_quota_fails_with_the_reason() {
    let files = fileserver::Config {
        kinds: fileserver::Kinds {
            recording: fileserver::KindConfig { quota_bytes: 1_000, retention_days: None },
            ..Default::default()
        },
        ..Default::default()
    };
    let hub = Hub::start_full(video::Config::default(), files).await;
    let (room, link) = recorded_room(&hub).await;
    let mut agent =
        TestPeer::join(hub.socket().await, agent_join(room, "alice", &["agent"]), Publish::media(1000, false)).await;
    let customer =
        TestPeer::join(hub.socket().await, customer_join_consenting(&link, true), Publish::media(440, true)).await;
    agent.next_slots().await;
    let video = agent.mid_of(&customer.id(), "camera").unwrap();
    agent.wait_until("media flows", LIMIT, |r| r.on(&video) > 20).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    send(&mut agent.ws, json!({"type": "end"})).await;
    let recording = recording_of(&hub, room, Duration::from_secs(60)).await;
    assert_eq!(recording.state, RecordingState::Failed);
    let error = recording.error.unwrap();
    assert!(error.starts_with("quota_exceeded: the quota of recording files is full"), "{error}");
    let (refused,): (i64,) =
        sqlx::query_as("SELECT refused FROM file_usage WHERE kind = 'recording'").fetch_one(&hub.pool).await.unwrap();
    assert_eq!(refused, 1, "counted");
    let event: serde_json::Value = sqlx::query_scalar(
        "SELECT data FROM interaction_events WHERE interaction_id = $1 AND data->>'state' = 'recording_failed'",
    )
    .bind(hub.interaction)
    .fetch_one(&hub.pool)
    .await
    .unwrap();
    assert!(event["reason"].as_str().unwrap().starts_with("quota_exceeded"), "{event}");
    assert!(!hub.dir.path().join("spool").join(recording.id.to_string()).exists(), "the spool is freed");
}
