//! Video calls in the integrator API: an interaction's calls with their recording, the period
//! listing paged by cursor, one call with its quality samples and chat, the CSV and Excel
//! exports; the storage per file kind; a queue's recording setting (audited); webhooks accept
//! `video.room`.

mod harness;

use chrono::{Duration, Utc};
use reqwest::{Method, StatusCode};
use schema::domain::{FileKind, VideoMode, VideoQuality};
use schema::store::{self, ChatLine, NewFile, NewParticipant, NewRoom, QualitySample, RecordingDone};
use serde_json::json;
use uuid::Uuid;

use harness::{TestApp, spawn_app};

/// A call of `interaction` by alice: the customer (consented, relayed) and alice joined, chatted,
/// were sampled; the recording is ready. Returns the room's id.
async fn call(app: &TestApp, interaction: Uuid) -> Uuid {
    let mut tx = app.pool.begin().await.unwrap();
    let (mut new, _) = NewRoom::with_new_link(
        interaction,
        "alice",
        "Alice",
        VideoMode::TwoWay,
        VideoQuality::P720,
        "http://hub.test",
        std::time::Duration::from_secs(3600),
    );
    new.record = Some(true);
    let room = store::start_room(&mut tx, &new).await.unwrap().room;
    let customer = NewParticipant {
        id: Uuid::new_v4(),
        room_id: room.id,
        role: "customer".into(),
        name: "Maria".into(),
        browser: Some("Safari 17".into()),
        os: Some("iOS".into()),
        device: Some("mobile".into()),
        camera: Some(true),
        microphone: Some(true),
        recording_consent: Some(true),
        consent_text: Some("This call is recorded.".into()),
        ..Default::default()
    };
    let agent = NewParticipant {
        id: Uuid::new_v4(),
        room_id: room.id,
        role: "agent".into(),
        login: Some("alice".into()),
        name: "Alice".into(),
        browser: Some("Chrome 131".into()),
        ..Default::default()
    };
    store::insert_participant(&mut tx, &agent).await.unwrap();
    store::insert_participant(&mut tx, &customer).await.unwrap();
    store::participant_connected(&mut tx, customer.id, Some("relay")).await.unwrap();
    store::participant_connected(&mut tx, agent.id, Some("direct")).await.unwrap();
    let sample = |level: &str, loss: f32| QualitySample {
        participant_id: customer.id,
        at: Utc::now() - Duration::seconds(if level == "good" { 20 } else { 10 }),
        level: level.into(),
        loss_pct: loss,
        jitter_ms: 12.0,
        rtt_ms: Some(80.0),
        bitrate_in_kbps: 700.0,
        bitrate_out_kbps: 900.0,
    };
    store::insert_quality_samples(&mut tx, &[sample("good", 0.0), sample("poor", 12.0)]).await.unwrap();
    let line = ChatLine {
        participant_id: customer.id,
        role: "customer".into(),
        name: "Maria".into(),
        text: "=cmd|' /C calc'!A0".into(),
        at: Utc::now(),
    };
    store::insert_video_chat(&mut tx, room.id, &[line]).await.unwrap();
    let recording = store::start_recording_part(&mut tx, &room, "video-1", Utc::now()).await.unwrap().unwrap();
    let id = Uuid::new_v4();
    let file = NewFile {
        id,
        name: "call.webm".into(),
        mime: "video/webm".into(),
        size: 2048,
        sha256: "ef".repeat(32),
        storage_key: id.to_string(),
        account_id: None,
        uploaded_by: Some("video:node".into()),
        kind: FileKind::Recording,
    };
    store::insert_file(&mut tx, &file).await.unwrap();
    let done = RecordingDone {
        file_id: id,
        size: 2048,
        duration_ms: 61_500,
        video_codec: Some("vp8".into()),
        processing_ms: 300,
    };
    store::recording_ready(&mut tx, recording.id, &done).await.unwrap();
    store::end_room(&mut tx, room.id, "ended_by_agent", Some("alice")).await.unwrap();
    store::participants_left_at_end(&mut tx, room.id).await.unwrap();
    tx.commit().await.unwrap();
    room.id
}

#[tokio::test]
async fn calls_are_listed_with_their_recording_and_exported() {
    let app = spawn_app().await;
    let (interaction, _) = app.inbound(app.telegram, "u-call", "can we do a video call?").await;
    app.assign(interaction, "alice").await;
    let room = call(&app, interaction).await;

    let (status, list) = app.get(&format!("/api/v1/interactions/{interaction}/calls")).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let c = &list["items"][0];
    assert_eq!(c["room_id"], room.to_string());
    assert_eq!((c["record"].as_bool(), c["end_reason"].as_str()), (Some(true), Some("ended_by_agent")));
    assert_eq!(c["recording"]["state"], "ready");
    assert_eq!(c["recording"]["duration_ms"], 61_500);
    assert_eq!(
        c["recording"]["file"]["url"],
        format!("/api/v1/files/{}", c["recording"]["file"]["id"].as_str().unwrap())
    );
    let customer = c["participants"].as_array().unwrap().iter().find(|p| p["role"] == "customer").unwrap().clone();
    assert_eq!((customer["ice_path"].as_str(), customer["device"].as_str()), (Some("relay"), Some("mobile")));
    assert_eq!(customer["recording_consent"], true);
    assert_eq!((customer["quality"]["samples"].as_i64(), customer["quality"]["poor"].as_i64()), (Some(2), Some(1)));
    assert_eq!(c["chat_messages"], 1);
    assert_eq!(c["recordings"].as_array().unwrap().len(), 1, "one part");
    assert_eq!(
        (c["recording"]["part"].as_i64(), c["recordings"][0]["id"].clone()),
        (Some(1), c["recording"]["id"].clone())
    );

    // the call moved to another node while recorded: that node recorded the rest as part 2
    let part2_file = {
        let mut tx = app.pool.begin().await.unwrap();
        let loaded = store::load_room(&mut tx, room).await.unwrap();
        let part = store::start_recording_part(&mut tx, &loaded, "video-2", Utc::now()).await.unwrap().unwrap();
        let id = Uuid::new_v4();
        let file = NewFile {
            id,
            name: "call-part2.webm".into(),
            mime: "video/webm".into(),
            size: 1024,
            sha256: "ab".repeat(32),
            storage_key: id.to_string(),
            account_id: None,
            uploaded_by: Some("video:node".into()),
            kind: FileKind::Recording,
        };
        store::insert_file(&mut tx, &file).await.unwrap();
        store::recording_processing(&mut tx, part.id, Utc::now()).await.unwrap();
        let done = RecordingDone {
            file_id: id,
            size: 1024,
            duration_ms: 20_000,
            video_codec: Some("vp8".into()),
            processing_ms: 90,
        };
        store::recording_ready(&mut tx, part.id, &done).await.unwrap();
        tx.commit().await.unwrap();
        id
    };
    let (_, list) = app.get(&format!("/api/v1/interactions/{interaction}/calls")).await;
    let c = &list["items"][0];
    let parts: Vec<(i64, &str, i64)> = c["recordings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["part"].as_i64().unwrap(), r["state"].as_str().unwrap(), r["duration_ms"].as_i64().unwrap()))
        .collect();
    assert_eq!(parts, vec![(1, "ready", 61_500), (2, "ready", 20_000)], "{c}");
    assert_eq!(c["recordings"][1]["file"]["id"], part2_file.to_string());
    assert!(c["recordings"][1]["started_at"].is_string() && c["recordings"][1]["ended_at"].is_string());
    assert_eq!(c["recording"]["part"], 1, "`recording` stays the first part");
    let (_, none) = app.get(&format!("/api/v1/interactions/{}/calls", Uuid::new_v4())).await;
    assert_eq!(none, json!({"items": []}));

    let (status, detail) = app.get(&format!("/api/v1/calls/{room}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(detail["samples"].as_array().unwrap().len(), 2);
    assert_eq!(detail["chat"][0]["name"], "Maria");
    assert_eq!(detail["room_id"], room.to_string(), "the call's fields are inline");
    let (status, _) = app.get(&format!("/api/v1/calls/{}", Uuid::new_v4())).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // the period listing, paged
    let second = call(&app, interaction).await;
    let (from, to) = (Utc::now() - Duration::hours(1), Utc::now() + Duration::hours(1));
    let period = harness::period(from, to);
    let (status, page) = app.get(&format!("/api/v1/calls?{period}&limit=1")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["items"][0]["room_id"], room.to_string());
    let cursor = page["next_cursor"].as_str().unwrap();
    let (_, next) = app.get(&format!("/api/v1/calls?{period}&limit=1&cursor={cursor}")).await;
    assert_eq!(next["items"][0]["room_id"], second.to_string());
    assert!(next.get("next_cursor").is_none());
    let (_, bob) = app.get(&format!("/api/v1/calls?{period}&agent=bob")).await;
    assert_eq!(bob["items"], json!([]));
    let (status, bad) = app.get("/api/v1/calls?from=2024-01-02T00:00:00Z&to=2024-01-01T00:00:00Z").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");

    // CSV: a row per call, formulas defused
    let csv = app
        .http
        .get(app.url(&format!("/api/v1/exports/calls.csv?{period}")))
        .bearer_auth(&app.key)
        .send()
        .await
        .unwrap();
    assert_eq!(csv.status(), StatusCode::OK);
    let text = csv.text().await.unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let headers = reader.headers().unwrap().clone();
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 2, "{text}");
    let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
    assert_eq!(&rows[0][col("room_id")], room.to_string());
    assert_eq!(&rows[0][col("customer_ice_path")], "relay");
    assert_eq!(&rows[0][col("recording_state")], "ready");
    assert_eq!(&rows[0][col("recording_duration_s")], "61.5");
    assert_eq!(&rows[0][col("recording_consent")], "true");
    assert_eq!(&rows[0][col("recording_parts")], "2");
    let ids = rows[0][col("recording_file_ids")].to_owned();
    assert!(ids.split(' ').count() == 2 && ids.ends_with(&part2_file.to_string()), "{ids}");
    assert_eq!(&rows[1][col("recording_parts")], "1");

    // Excel: the same rows
    let xlsx = app
        .http
        .get(app.url(&format!("/api/v1/exports/calls.xlsx?{period}")))
        .bearer_auth(&app.key)
        .send()
        .await
        .unwrap();
    assert_eq!(xlsx.status(), StatusCode::OK);
    let bytes = xlsx.bytes().await.unwrap();
    use calamine::Reader;
    let mut book = calamine::Xlsx::new(std::io::Cursor::new(bytes.to_vec())).unwrap();
    let sheet = book.worksheet_range("calls").unwrap();
    assert_eq!(sheet.height(), 3, "a header and two calls");
    assert_eq!(sheet.get_value((1, 0)).unwrap().to_string(), room.to_string());
}

#[tokio::test]
async fn storage_queue_recording_and_webhooks_for_video_rooms() {
    let app = spawn_app().await;
    let (status, storage) = app.get("/api/v1/storage").await;
    assert_eq!(status, StatusCode::OK, "{storage}");
    let kinds: Vec<&str> = storage["kinds"].as_array().unwrap().iter().map(|k| k["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, vec!["chat", "recording"]);
    let mut conn = app.pool.acquire().await.unwrap();
    store::set_file_kind_settings(&mut conn, FileKind::Recording, Some(4096), Some(365)).await.unwrap();
    let id = Uuid::new_v4();
    let file = NewFile {
        id,
        name: "call.webm".into(),
        mime: "video/webm".into(),
        size: 1024,
        sha256: "ab".repeat(32),
        storage_key: id.to_string(),
        account_id: None,
        uploaded_by: None,
        kind: FileKind::Recording,
    };
    store::insert_file(&mut conn, &file).await.unwrap();
    drop(conn);
    let (_, storage) = app.get("/api/v1/storage").await;
    let rec = &storage["kinds"][1];
    assert_eq!(
        (rec["files"].as_i64(), rec["bytes"].as_i64(), rec["quota_bytes"].as_i64()),
        (Some(1), Some(1024), Some(4096))
    );
    assert_eq!((rec["used_pct"].as_f64(), rec["retention_days"].as_i64()), (Some(25.0), Some(365)));

    let (status, video) = app.get("/api/v1/queues/support/video").await;
    assert_eq!((status, video), (StatusCode::OK, json!({"record": false})));
    let (status, set) = app.send(Method::PUT, "/api/v1/queues/support/video", Some(json!({"record": true}))).await;
    assert_eq!((status, set), (StatusCode::OK, json!({"record": true})));
    let (_, video) = app.get("/api/v1/queues/support/video").await;
    assert_eq!(video["record"], true);
    let (status, _) = app.send(Method::PUT, "/api/v1/queues/nope/video", Some(json!({"record": true}))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app.send(Method::PUT, "/api/v1/queues/support/video", Some(json!({"record": 1}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (_, audit) = app.get("/api/v1/audit").await;
    assert!(audit["items"].as_array().unwrap().iter().any(|e| e["action"] == "queue.video"), "{audit}");

    let (status, hook) = app
        .send(
            Method::POST,
            "/api/v1/webhooks",
            Some(json!({"url": "https://crm.example/hooks", "events": ["video.room"]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{hook}");
}

#[tokio::test]
async fn a_calls_survey_is_in_its_views_and_in_both_exports() {
    let app = spawn_app().await;
    let (interaction, _) = app.inbound(app.telegram, "u-rated", "a call please").await;
    app.assign(interaction, "alice").await;
    let room = call(&app, interaction).await;
    let unrated = call(&app, interaction).await;
    let mut tx = app.pool.begin().await.unwrap();
    let loaded = store::load_room(&mut tx, room).await.unwrap();
    let answers = vec![store::SurveyAnswer {
        id: "comment".into(),
        question: "Anything else?".into(),
        answer: "=1+1 quick\nthanks".into(),
    }];
    store::insert_call_survey(&mut tx, &loaded, 4, &answers).await.unwrap();
    let customer: Uuid =
        sqlx::query_scalar("SELECT id FROM video_participants WHERE room_id = $1 AND role = 'customer'")
            .bind(room)
            .fetch_one(&mut *tx)
            .await
            .unwrap();
    store::insert_location(&mut tx, room, customer, 10.0, 20.0, None, None).await.unwrap();
    store::insert_location(&mut tx, room, customer, 55.7539123, 37.6208456, Some(20.0), Some("Red Square, Moscow"))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let mut conn = app.pool.acquire().await.unwrap();
    let again = store::insert_call_survey(&mut conn, &loaded, 2, &[]).await;
    assert!(matches!(again, Err(store::StoreError::Conflict(_))), "{again:?}");
    drop(conn);

    let (_, list) = app.get(&format!("/api/v1/interactions/{interaction}/calls")).await;
    let items = list["items"].as_array().unwrap();
    let rated = items.iter().find(|c| c["room_id"] == room.to_string()).unwrap();
    assert_eq!(rated["survey"]["rating"], 4);
    assert_eq!(
        rated["survey"]["answers"],
        json!([{"id": "comment", "question": "Anything else?", "answer": "=1+1 quick\nthanks"}])
    );
    let other = items.iter().find(|c| c["room_id"] == unrated.to_string()).unwrap();
    assert!(other["survey"].is_null(), "{other}");
    assert_eq!(rated["location"]["address"], "Red Square, Moscow", "the latest location: {rated}");
    assert_eq!(rated["location"]["accuracy_m"], 20.0);
    assert!(other["location"].is_null());
    let (_, detail) = app.get(&format!("/api/v1/calls/{room}")).await;
    assert_eq!(detail["survey"]["rating"], 4);
    let (_, one) = app.get(&format!("/api/v1/interactions/{interaction}")).await;
    assert_eq!(one["rating"], 4, "{one}");

    let (from, to) = (Utc::now() - Duration::hours(1), Utc::now() + Duration::hours(1));
    let period = harness::period(from, to);
    let csv_of = |path: String| {
        let app = &app;
        async move {
            let response = app.http.get(app.url(&path)).bearer_auth(&app.key).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            let text = response.text().await.unwrap();
            let mut reader = csv::Reader::from_reader(text.as_bytes());
            let headers: Vec<String> = reader.headers().unwrap().iter().map(str::to_owned).collect();
            let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
            (headers, rows)
        }
    };
    let (headers, rows) = csv_of(format!("/api/v1/exports/calls.csv?{period}")).await;
    let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let row = rows.iter().find(|r| r[col("room_id")] == room.to_string()).unwrap();
    assert_eq!(&row[col("survey_rating")], "4");
    assert_eq!(&row[col("survey_answers")], "Anything else?: =1+1 quick\nthanks");
    assert!(!row[col("survey_submitted_at")].is_empty());
    assert_eq!((&row[col("customer_lat")], &row[col("customer_lon")]), ("55.753912", "37.620846"));
    assert_eq!(&row[col("customer_address")], "Red Square, Moscow");
    let row = rows.iter().find(|r| r[col("room_id")] == unrated.to_string()).unwrap();
    assert_eq!((&row[col("survey_rating")], &row[col("survey_answers")]), ("", ""));

    let (headers, rows) = csv_of(format!("/api/v1/exports/interactions.csv?{period}")).await;
    let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let row = rows.iter().find(|r| r[col("interaction_id")] == interaction.to_string()).unwrap();
    assert_eq!(&row[col("rating")], "4");
    let (_, page) = app.get(&format!("/api/v1/interactions?{period}")).await;
    let summary = page["items"].as_array().unwrap().iter().find(|i| i["id"] == interaction.to_string()).unwrap();
    assert_eq!(summary["rating"], 4);

    let response = app
        .http
        .get(app.url(&format!("/api/v1/exports/calls.xlsx?{period}")))
        .bearer_auth(&app.key)
        .send()
        .await
        .unwrap();
    let bytes = response.bytes().await.unwrap();
    use calamine::Reader;
    let mut book = calamine::Xlsx::new(std::io::Cursor::new(bytes.to_vec())).unwrap();
    let sheet = book.worksheet_range("calls").unwrap();
    let header: Vec<String> = (0..sheet.width()).map(|c| sheet.get_value((0, c as u32)).unwrap().to_string()).collect();
    let rating = header.iter().position(|h| h == "survey_rating").unwrap() as u32;
    let rated_row =
        (1..sheet.height() as u32).find(|r| sheet.get_value((*r, 0)).unwrap().to_string() == room.to_string()).unwrap();
    assert_eq!(sheet.get_value((rated_row, rating)).unwrap().to_string(), "4");
}
