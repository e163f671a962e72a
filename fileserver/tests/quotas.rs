//! File kinds: a disk quota per kind (an upload that would pass it is refused with the reason,
//! before its body is read when its length is known, after it otherwise, and counted) and
//! deletion by age per kind (exactly the old files of the kind go; a call recording's row says
//! it was deleted).

mod harness;

use std::time::Duration;

use chrono::Utc;
use fileserver::retention;
use fileserver::storage::DirStorage;
use harness::*;
use schema::domain::FileKind;
use schema::store;
use uuid::Uuid;

fn service() -> String {
    token("video-node", &["service"], 600)
}

async fn upload_as(app: &TestApp, token: &str, query: &str, bytes: Vec<u8>, chunked: bool) -> Answer {
    let url = format!("{}?name=call.webm&{query}", app.url("/api/v1/files"));
    let request = app.http.post(url).bearer_auth(token).header("content-type", "video/webm");
    let request = if chunked {
        let stream =
            futures::stream::iter(bytes.chunks(1000).map(|c| Ok::<_, std::io::Error>(c.to_vec())).collect::<Vec<_>>());
        request.body(reqwest::Body::wrap_stream(stream))
    } else {
        request.body(bytes)
    };
    Answer::from(request.send().await.unwrap()).await
}

async fn usage(app: &TestApp, kind: FileKind) -> store::FileUsage {
    let mut conn = app.pool.acquire().await.unwrap();
    store::file_usage(&mut conn).await.unwrap().into_iter().find(|u| u.kind == kind).unwrap()
}

#[tokio::test]
async fn a_recording_over_the_quota_is_refused_with_the_reason_and_counted() {
    let app = spawn_with(|c| {
        c.kinds.recording.quota_bytes = 10_000;
        c.kinds.recording.retention_days = Some(30);
    })
    .await;
    // the settings are where the admin API reads them
    let u = usage(&app, FileKind::Recording).await;
    assert_eq!((u.quota_bytes, u.retention_days, u.files, u.bytes), (Some(10_000), Some(30), 0, 0));
    assert_eq!(usage(&app, FileKind::Chat).await.quota_bytes, None);

    // only the hub's services store recordings
    let refused = upload_as(&app, &agent(), "kind=recording", bytes(100, 1), false).await;
    assert_eq!((refused.status, refused.code()), (403, "forbidden".into()));
    let bad = upload_as(&app, &service(), "kind=movie", bytes(100, 1), false).await;
    assert_eq!((bad.status, bad.code()), (400, "invalid_kind".into()));

    let first = upload_as(&app, &service(), "kind=recording", bytes(6_000, 1), false).await;
    assert_eq!(first.status, 201, "{}", String::from_utf8_lossy(&first.body));
    let u = usage(&app, FileKind::Recording).await;
    assert_eq!((u.files, u.bytes), (1, 6_000));

    // with a Content-Length: refused before the body is read
    let over = upload_as(&app, &service(), "kind=recording", bytes(5_000, 2), false).await;
    assert_eq!((over.status, over.code()), (507, "quota_exceeded".into()), "{}", String::from_utf8_lossy(&over.body));
    let error = &over.json()["error"];
    assert_eq!(
        (error["kind"].as_str(), error["quota"].as_u64(), error["used"].as_u64()),
        (Some("recording"), Some(10_000), Some(6_000))
    );
    assert!(error["message"].as_str().unwrap().contains("quota of recording files is full"), "{error}");
    // streamed without a length: refused once stored, and nothing is left of it
    let streamed = upload_as(&app, &service(), "kind=recording", bytes(5_000, 3), true).await;
    assert_eq!((streamed.status, streamed.code()), (507, "quota_exceeded".into()));
    let u = usage(&app, FileKind::Recording).await;
    assert_eq!((u.files, u.bytes, u.refused), (1, 6_000, 2), "both refusals counted, nothing stored");
    assert!(u.last_refused_at.is_some());
    assert_eq!(app.file_rows().await, 1);
    assert_eq!(app.files_on_disk().iter().filter(|p| !p.starts_with(app.root.join("tmp"))).count(), 1);

    // what fits still fits, and chat files have no quota here
    let fits = upload_as(&app, &service(), "kind=recording", bytes(4_000, 4), true).await;
    assert_eq!(fits.status, 201);
    app.upload_ok("big.bin", "application/octet-stream", bytes(50_000, 5)).await;
    let (rec, chat) = (usage(&app, FileKind::Recording).await, usage(&app, FileKind::Chat).await);
    assert_eq!((rec.files, rec.bytes, chat.files, chat.bytes), (2, 10_000, 1, 50_000));
}

#[tokio::test]
async fn concurrent_uploads_cannot_pass_the_quota_together() {
    let app = spawn_with(|c| c.kinds.recording.quota_bytes = 10_000).await;
    let uploads = (0..8).map(|i| {
        let app = &app;
        async move { upload_as(app, &service(), "kind=recording", bytes(3_000, i), true).await.status }
    });
    let statuses = futures::future::join_all(uploads).await;
    assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 3, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 507).count(), 5, "{statuses:?}");
    assert_eq!(usage(&app, FileKind::Recording).await.bytes, 9_000);
}

/// Backdates files by `days`.
async fn age(app: &TestApp, ids: &[Uuid], days: i32) {
    sqlx::query("UPDATE files SET created_at = now() - make_interval(days => $2) WHERE id = ANY($1)")
        .bind(ids)
        .bind(days)
        .execute(&app.pool)
        .await
        .unwrap();
}

#[tokio::test]
async fn deletion_by_age_is_per_kind_and_removes_nothing_else() {
    let app = spawn_app().await;
    let storage = DirStorage::open(&app.root).await.unwrap();
    let recording = |n: u64| {
        let app = &app;
        async move {
            let a = upload_as(app, &service(), "kind=recording", bytes(1_000, n), false).await;
            assert_eq!(a.status, 201);
            a.json()["id"].as_str().unwrap().parse::<Uuid>().unwrap()
        }
    };
    let old_recording = recording(1).await;
    let young_recording = recording(2).await;
    let old_chat = app.upload_ok("old.pdf", "application/pdf", bytes(700, 3)).await;
    let young_chat = app.upload_ok("new.pdf", "application/pdf", bytes(700, 4)).await;
    age(&app, &[old_recording, old_chat], 40).await;
    age(&app, &[young_recording, young_chat], 20).await;
    // a video call whose recording is the old file
    let room = testenv::fixtures::video_room_with_recording(&app.pool, app.account_id, old_recording).await;

    // recordings kept 30 days: the 40-day-old one goes, and only it
    let cutoff = retention::cutoff_before(Utc::now(), Duration::from_secs(30 * 86_400));
    let report = retention::run_once(&app.pool, &storage, FileKind::Recording, cutoff).await.unwrap();
    assert_eq!((report.files, report.bytes), (1, 1_000));
    let left: Vec<Uuid> =
        sqlx::query_scalar("SELECT id FROM files ORDER BY created_at").fetch_all(&app.pool).await.unwrap();
    assert!(!left.contains(&old_recording) && left.contains(&young_recording));
    assert!(left.contains(&old_chat), "a chat file is not a recording, whatever its age");
    let (state, file): (String, Option<Uuid>) =
        sqlx::query_as("SELECT state, file_id FROM video_recordings WHERE room_id = $1")
            .bind(room)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!((state.as_str(), file), ("deleted", None), "the recording says it was deleted");
    let get = app.get(&format!("/api/v1/files/{old_recording}"), Some(&service()), &[]).await;
    assert_eq!(get.status, 404);

    // chat files kept 90 days: none of these; 10 days: both
    let none = retention::run_once(
        &app.pool,
        &storage,
        FileKind::Chat,
        retention::cutoff_before(Utc::now(), Duration::from_secs(90 * 86_400)),
    )
    .await
    .unwrap();
    assert_eq!(none.files, 0);
    let both = retention::run_once(
        &app.pool,
        &storage,
        FileKind::Chat,
        retention::cutoff_before(Utc::now(), Duration::from_secs(10 * 86_400)),
    )
    .await
    .unwrap();
    assert_eq!(both.files, 2);
    assert_eq!(usage(&app, FileKind::Recording).await.files, 1, "the young recording stays");
    assert_eq!(usage(&app, FileKind::Chat).await.files, 0);
}

#[tokio::test]
async fn the_job_runs_each_kind_with_its_own_retention() {
    let app = spawn_with(|c| {
        c.retention_days = 90;
        c.kinds.recording.retention_days = Some(7);
        c.retention_interval_s = 1;
    })
    .await;
    let rec = upload_as(&app, &service(), "kind=recording", bytes(500, 1), false).await.json()["id"]
        .as_str()
        .unwrap()
        .parse::<Uuid>()
        .unwrap();
    let chat = app.upload_ok("a.pdf", "application/pdf", bytes(500, 2)).await;
    age(&app, &[rec, chat], 8).await;
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let left: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM files").fetch_all(&app.pool).await.unwrap();
        if !left.contains(&rec) {
            assert!(left.contains(&chat), "an 8-day-old chat file stays (90 days)");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the 8-day-old recording was not deleted (7 days)");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
