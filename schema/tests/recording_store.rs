//! Call records, recordings and file kinds in the store: every query of `store::recording` and
//! the kind-aware ones of `store::files`, against a real database.

use chrono::{Duration, Utc};
use schema::domain::{FileKind, RecordingState, VideoMode, VideoQuality};
use schema::store::{self, ChatLine, NewFile, NewParticipant, NewRoom, QualitySample, RecordingDone};
use sqlx::PgPool;
use uuid::Uuid;

async fn setup(pool: &PgPool) -> (Uuid, Uuid) {
    let account = testenv::fixtures::webchat_account(pool, &[("alice", "agent"), ("bob", "agent")]).await;
    let interaction =
        testenv::fixtures::assigned_interaction(pool, account, "wc-r", "Rita", "can we talk on video?", "alice").await;
    (account, interaction)
}

fn room(interaction: Uuid, record: Option<bool>) -> NewRoom {
    let (mut new, _) = NewRoom::with_new_link(
        interaction,
        "alice",
        "Alice",
        VideoMode::TwoWay,
        VideoQuality::P720,
        "http://hub.test",
        std::time::Duration::from_secs(3600),
    );
    new.record = record;
    new
}

fn file(size: i64, kind: FileKind) -> NewFile {
    let id = Uuid::new_v4();
    NewFile {
        id,
        name: "call.webm".into(),
        mime: "video/webm".into(),
        size,
        sha256: "cd".repeat(32),
        storage_key: id.to_string(),
        account_id: None,
        uploaded_by: Some("video-node".into()),
        kind,
    }
}

#[tokio::test]
async fn a_queue_setting_decides_unless_the_call_says() {
    let (_url, pool) = testenv::database().await;
    let (_, interaction) = setup(&pool).await;
    let mut conn = pool.acquire().await.unwrap();
    assert!(store::video_queue_settings(&mut conn).await.unwrap().is_empty());
    let started = store::start_room(&mut conn, &room(interaction, None)).await.unwrap();
    assert!(!started.room.record, "not recorded by default");
    store::end_room(&mut conn, started.room.id, "ended_by_agent", None).await.unwrap();

    store::put_video_queue_setting(&mut conn, "support", true).await.unwrap();
    assert_eq!(store::video_queue_settings(&mut conn).await.unwrap(), vec![("support".to_owned(), true)]);
    assert!(matches!(
        store::put_video_queue_setting(&mut conn, "nope", true).await,
        Err(store::StoreError::NotFound { .. })
    ));
    let started = store::start_room(&mut conn, &room(interaction, None)).await.unwrap();
    assert!(started.room.record, "the queue records its calls");
    assert!(store::load_room(&mut conn, started.room.id).await.unwrap().record);
    store::end_room(&mut conn, started.room.id, "ended_by_agent", None).await.unwrap();
    let started = store::start_room(&mut conn, &room(interaction, Some(false))).await.unwrap();
    assert!(!started.room.record, "the call's own choice wins");
}

#[tokio::test]
async fn a_recording_goes_from_spooling_to_ready_with_its_event_and_access() {
    let (_url, pool) = testenv::database().await;
    let (_, interaction) = setup(&pool).await;
    let mut conn = pool.acquire().await.unwrap();
    let started = store::start_room(&mut conn, &room(interaction, Some(true))).await.unwrap();
    let at = Utc::now();
    let rec = store::start_recording_part(&mut conn, &started.room, "video-1", at).await.unwrap().unwrap();
    assert_eq!((rec.part, rec.state), (1, RecordingState::Recording));
    assert_eq!(store::unfinished_recordings(&mut conn, "video-1").await.unwrap().len(), 1);
    assert!(store::unfinished_recordings(&mut conn, "video-2").await.unwrap().is_empty());
    store::recording_processing(&mut conn, rec.id, at + Duration::seconds(30)).await.unwrap();
    assert_eq!(
        store::recording_of_room(&mut conn, started.room.id).await.unwrap().unwrap().state,
        RecordingState::Processing
    );

    let stored = store::insert_file(&mut conn, &file(4096, FileKind::Recording)).await.unwrap();
    assert_eq!(stored.kind, FileKind::Recording);
    // bob sees nothing of this interaction, so not the file
    assert!(!store::agent_may_read_file(&mut conn, stored.id, "bob").await.unwrap());
    let done = RecordingDone {
        file_id: stored.id,
        size: 4096,
        duration_ms: 30_000,
        video_codec: Some("vp8".into()),
        processing_ms: 120,
    };
    let mut tx = pool.begin().await.unwrap();
    let (ready, audience) = store::recording_ready(&mut tx, rec.id, &done).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(ready.state, RecordingState::Ready);
    assert_eq!(ready.file.as_ref().map(|f| f.id), Some(stored.id));
    assert_eq!(ready.duration_ms, Some(30_000));
    assert_eq!(audience, vec!["alice".to_owned()]);
    assert!(
        store::agent_may_read_file(&mut conn, stored.id, "alice").await.unwrap(),
        "the interaction's agent reads it"
    );
    let (kind, data): (String, serde_json::Value) =
        sqlx::query_as("SELECT kind, data FROM interaction_events WHERE interaction_id = $1 ORDER BY seq DESC LIMIT 1")
            .bind(interaction)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(kind, "video.room");
    assert_eq!(data["state"], "recording_ready");
    assert_eq!(data["recording"]["file"]["id"], stored.id.to_string());
    assert_eq!(data["recording"]["duration_ms"], 30_000);
    assert!(store::unfinished_recordings(&mut conn, "video-1").await.unwrap().is_empty());

    // another room's recording fails: its reason goes out too
    store::end_room(&mut conn, started.room.id, "ended_by_agent", None).await.unwrap();
    let other = store::start_room(&mut conn, &room(interaction, Some(true))).await.unwrap();
    let rec = store::start_recording_part(&mut conn, &other.room, "video-1", at).await.unwrap().unwrap();
    let (failed, _) =
        store::recording_failed(&mut conn, rec.id, "quota_exceeded: the recording quota is full").await.unwrap();
    assert_eq!(failed.state, RecordingState::Failed);
    assert!(failed.error.unwrap().starts_with("quota_exceeded"));
}

#[tokio::test]
async fn a_call_that_moves_is_recorded_in_parts_each_finished_by_one_claim() {
    let (_url, pool) = testenv::database().await;
    let (_, interaction) = setup(&pool).await;
    let mut conn = pool.acquire().await.unwrap();
    let started = store::start_room(&mut conn, &room(interaction, Some(true))).await.unwrap();
    let room_id = started.room.id;
    // the consent is the call's: the customer's latest answer
    assert_eq!(store::latest_consent(&mut conn, room_id).await.unwrap(), None);
    let customer = |consent: bool| NewParticipant {
        id: Uuid::new_v4(),
        room_id,
        role: "customer".into(),
        login: None,
        name: "Rita".into(),
        user_agent: None,
        browser: None,
        os: None,
        device: None,
        camera: None,
        microphone: None,
        recording_consent: Some(consent),
        consent_text: Some("recorded".into()),
    };
    store::insert_participant(&mut conn, &customer(true)).await.unwrap();
    assert_eq!(store::latest_consent(&mut conn, room_id).await.unwrap(), Some(true));

    // part 1 on node a; a dies, the call moves to b: part 2
    let at = Utc::now();
    let first = store::start_recording_part(&mut conn, &started.room, "a", at).await.unwrap().unwrap();
    let second =
        store::start_recording_part(&mut conn, &started.room, "b", at + Duration::seconds(20)).await.unwrap().unwrap();
    assert_eq!((first.part, second.part), (1, 2));
    assert_eq!((first.claims, first.processor.as_deref()), (0, None));
    let parts = store::recordings_of_room(&mut conn, room_id).await.unwrap();
    assert_eq!(parts.iter().map(|r| r.id).collect::<Vec<_>>(), vec![first.id, second.id]);
    assert_eq!(store::recording_of_room(&mut conn, room_id).await.unwrap().unwrap().id, first.id, "the first part");
    assert_eq!(store::all_unfinished_recordings(&mut conn).await.unwrap().len(), 2);

    // b (taking over) and a (started again) race for a's spool: one claim wins
    let end = at + Duration::seconds(15);
    assert!(store::claim_recording(&mut conn, first.id, 0, "b", end).await.unwrap());
    assert!(!store::claim_recording(&mut conn, first.id, 0, "a", Utc::now()).await.unwrap(), "a lost the race");
    let claimed = store::recordings_of_room(&mut conn, room_id).await.unwrap().remove(0);
    assert_eq!(
        (claimed.state, claimed.processor.as_deref(), claimed.claims, claimed.ended_at.map(|t| t.timestamp_millis())),
        (RecordingState::Processing, Some("b"), 1, Some(end.timestamp_millis()))
    );
    assert!(store::holds_claim(&mut conn, first.id, 1).await.unwrap());
    assert!(!store::holds_claim(&mut conn, first.id, 0).await.unwrap(), "an older claim holds nothing");
    assert!(store::unfinished_recordings(&mut conn, "a").await.unwrap().is_empty(), "a has nothing left to finish");
    let of_b: Vec<(i32, RecordingState)> =
        store::unfinished_recordings(&mut conn, "b").await.unwrap().iter().map(|r| (r.part, r.state)).collect();
    assert_eq!(of_b, vec![(1, RecordingState::Processing), (2, RecordingState::Recording)]);

    // both ready: each its own event with its part, both listed with the call
    for (part, size) in [(&first, 1000), (&second, 2000)] {
        let stored = store::insert_file(&mut conn, &file(size, FileKind::Recording)).await.unwrap();
        if part.id == second.id {
            store::recording_processing(&mut conn, part.id, at + Duration::seconds(40)).await.unwrap();
        }
        let done = RecordingDone {
            file_id: stored.id,
            size,
            duration_ms: 15_000,
            video_codec: Some("vp8".into()),
            processing_ms: 10,
        };
        let mut tx = pool.begin().await.unwrap();
        store::recording_ready(&mut tx, part.id, &done).await.unwrap();
        tx.commit().await.unwrap();
    }
    let parts: Vec<i64> = sqlx::query_scalar(
        "SELECT (data->'recording'->>'part')::bigint FROM interaction_events
         WHERE interaction_id = $1 AND data->>'state' = 'recording_ready' ORDER BY seq",
    )
    .bind(interaction)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(parts, vec![1, 2]);
    let record = store::call_record(&mut conn, room_id).await.unwrap();
    assert_eq!(
        record.recordings.iter().map(|r| (r.part, r.state)).collect::<Vec<_>>(),
        vec![(1, RecordingState::Ready), (2, RecordingState::Ready)]
    );
    assert_eq!(record.recording.map(|r| r.id), Some(first.id));
    assert!(store::all_unfinished_recordings(&mut conn).await.unwrap().is_empty());
    let second = store::recordings_of_room(&mut conn, room_id).await.unwrap().remove(1);
    assert_eq!((second.processor.as_deref(), second.claims), (Some("b"), 1), "its own node finished it");

    // a customer who answers no on a rejoin: the call is not recorded further
    store::insert_participant(&mut conn, &customer(false)).await.unwrap();
    assert_eq!(store::latest_consent(&mut conn, room_id).await.unwrap(), Some(false));
}

#[tokio::test]
async fn call_records_hold_participants_quality_chat_and_durations() {
    let (_url, pool) = testenv::database().await;
    let (_, interaction) = setup(&pool).await;
    let mut conn = pool.acquire().await.unwrap();
    let started = store::start_room(&mut conn, &room(interaction, Some(true))).await.unwrap();
    let room_id = started.room.id;
    let agent = NewParticipant {
        id: Uuid::new_v4(),
        room_id,
        role: "agent".into(),
        login: Some("alice".into()),
        name: "Alice".into(),
        user_agent: Some("Mozilla/5.0 (X11; Linux x86_64) Chrome/130.0".into()),
        browser: Some("Chrome 130".into()),
        os: Some("Linux".into()),
        device: Some("desktop".into()),
        camera: Some(true),
        microphone: Some(true),
        ..Default::default()
    };
    let customer = NewParticipant {
        id: Uuid::new_v4(),
        room_id,
        role: "customer".into(),
        name: "Rita".into(),
        device: Some("mobile".into()),
        recording_consent: Some(true),
        consent_text: Some("This call is recorded.".into()),
        ..Default::default()
    };
    store::insert_participant(&mut conn, &agent).await.unwrap();
    store::insert_participant(&mut conn, &customer).await.unwrap();
    store::participant_connected(&mut conn, agent.id, Some("direct")).await.unwrap();
    store::participant_connected(&mut conn, customer.id, Some("relay")).await.unwrap();
    store::participant_devices(&mut conn, customer.id, false, true).await.unwrap();
    // the agent joined 60 s before the customer, who talked for 40 s
    sqlx::query("UPDATE video_participants SET joined_at = now() - interval '100 seconds' WHERE id = $1")
        .bind(agent.id)
        .execute(&mut *conn)
        .await
        .unwrap();
    sqlx::query("UPDATE video_participants SET joined_at = now() - interval '40 seconds' WHERE id = $1")
        .bind(customer.id)
        .execute(&mut *conn)
        .await
        .unwrap();
    let now = Utc::now();
    let samples: Vec<QualitySample> = (0..4)
        .map(|i| QualitySample {
            participant_id: customer.id,
            at: now - Duration::seconds(40 - i * 10),
            level: if i == 3 { "poor".into() } else { "good".into() },
            loss_pct: if i == 3 { 12.0 } else { 0.0 },
            jitter_ms: 8.0,
            rtt_ms: Some(40.0 + i as f32),
            bitrate_in_kbps: 900.0,
            bitrate_out_kbps: 1000.0,
        })
        .collect();
    store::insert_quality_samples(&mut conn, &samples).await.unwrap();
    store::insert_quality_samples(&mut conn, &samples[..1]).await.unwrap(); // a repeat is ignored
    let line = |text: &str, who: &NewParticipant| ChatLine {
        participant_id: who.id,
        role: who.role.clone(),
        name: who.name.clone(),
        text: text.into(),
        at: Utc::now(),
    };
    store::insert_video_chat(&mut conn, room_id, &[line("can you see the label?", &customer), line("yes", &agent)])
        .await
        .unwrap();
    store::participant_left(&mut conn, customer.id, "left").await.unwrap();
    store::participant_left(&mut conn, customer.id, "ended").await.unwrap(); // the first reason stays
    store::end_room(&mut conn, room_id, "ended_by_agent", Some("alice")).await.unwrap();
    assert_eq!(store::participants_left_at_end(&mut conn, room_id).await.unwrap(), 1, "the agent's row is closed");

    let record = store::call_record(&mut conn, room_id).await.unwrap();
    assert_eq!(record.participants.len(), 2);
    let c = record.participants.iter().find(|p| p.role == "customer").unwrap();
    assert_eq!(c.left_reason.as_deref(), Some("left"));
    assert_eq!((c.ice_path.as_deref(), c.camera, c.microphone), (Some("relay"), Some(false), Some(true)));
    assert_eq!(c.recording_consent, Some(true));
    assert!(c.consented_at.is_some());
    assert_eq!((c.quality.samples, c.quality.good, c.quality.poor), (4, 3, 1));
    assert_eq!(c.quality.loss_max_pct, Some(12.0));
    assert_eq!(c.quality.rtt_max_ms, Some(43.0));
    let a = record.participants.iter().find(|p| p.role == "agent").unwrap();
    assert_eq!((a.left_reason.as_deref(), a.quality.samples), (Some("ended"), 0));
    assert_eq!(record.chat_messages, 2);
    assert!((39_000..=41_500).contains(&record.talking_ms), "{}", record.talking_ms);
    assert!(record.call_ms.unwrap() >= 99_000);
    assert!(record.recording.is_none());
    assert_eq!(store::call_chat(&mut conn, room_id).await.unwrap()[0].text, "can you see the label?");
    assert_eq!(store::call_quality_samples(&mut conn, room_id).await.unwrap().len(), 4);
    assert_eq!(store::calls_of_interaction(&mut conn, interaction).await.unwrap().len(), 1);

    // the period query pages by (created_at, id)
    let second = store::start_room(&mut conn, &room(interaction, None)).await.unwrap();
    let (from, to) = (Utc::now() - Duration::hours(1), Utc::now() + Duration::hours(1));
    let page = store::calls_in_period(&mut conn, from, to, None, None, 1).await.unwrap();
    assert_eq!(page[0].room.id, room_id);
    let key = (page[0].room.created_at, page[0].room.id);
    let next = store::calls_in_period(&mut conn, from, to, Some(key), None, 10).await.unwrap();
    assert_eq!(next.iter().map(|c| c.room.id).collect::<Vec<_>>(), vec![second.room.id]);
    assert!(store::calls_in_period(&mut conn, from, to, None, Some("bob"), 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn file_usage_follows_inserts_and_deletes_and_quotas_refuse() {
    let (_url, pool) = testenv::database().await;
    let mut conn = pool.acquire().await.unwrap();
    store::set_file_kind_settings(&mut conn, FileKind::Recording, Some(1000), Some(30)).await.unwrap();
    let ok = store::insert_file_within(&mut conn, &file(600, FileKind::Recording), Some(1000)).await.unwrap();
    assert!(ok.is_ok());
    let over = store::insert_file_within(&mut conn, &file(600, FileKind::Recording), Some(1000)).await.unwrap();
    let refused = over.unwrap_err();
    assert_eq!((refused.used, refused.quota, refused.wanted), (600, 1000, 1200));
    store::insert_file(&mut conn, &file(50, FileKind::Chat)).await.unwrap();
    let used = store::count_file_refusal(&mut conn, FileKind::Recording).await.unwrap();
    assert_eq!(used, 600);
    let usage = store::file_usage(&mut conn).await.unwrap();
    let rec = usage.iter().find(|u| u.kind == FileKind::Recording).unwrap();
    assert_eq!(
        (rec.files, rec.bytes, rec.quota_bytes, rec.retention_days, rec.refused),
        (1, 600, Some(1000), Some(30), 2)
    );
    let chat = usage.iter().find(|u| u.kind == FileKind::Chat).unwrap();
    assert_eq!((chat.files, chat.bytes), (1, 50));
    let mut tx = pool.begin().await.unwrap();
    let gone =
        store::delete_expired_files(&mut tx, FileKind::Recording, Utc::now() + Duration::seconds(1), 10).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(gone.len(), 1);
    let usage = store::file_usage(&mut conn).await.unwrap();
    assert_eq!(
        usage.iter().map(|u| (u.kind, u.files, u.bytes)).collect::<Vec<_>>(),
        vec![(FileKind::Chat, 1, 50), (FileKind::Recording, 0, 0)]
    );
}
