//! The retention job: exactly the old files go, rows and bytes, and the space freed is reported;
//! the background job (leader of `fileserver/retention`) runs it by itself.

mod harness;

use std::time::Duration;

use chrono::Utc;
use fileserver::retention;
use fileserver::storage::DirStorage;
use harness::*;
use schema::domain::{FileKind, MessageKind};
use schema::store::{self, InboundMessage, Ingested, Sender};
use uuid::Uuid;

/// Stores an inbound message from `user` carrying `files`; returns the message id.
async fn message_with(app: &TestApp, user: &str, external_id: &str, files: &[Uuid]) -> Uuid {
    let msg = InboundMessage {
        account_id: app.account_id,
        external_message_id: external_id.into(),
        chat_id: user.into(),
        sender: Sender { external_id: user.into(), name: format!("User {user}"), ..Sender::default() },
        kind: MessageKind::Document,
        text: Some("see attached".into()),
        file_ids: files.to_vec(),
        location: None,
        contact: None,
        reply_to_external_id: None,
        forwarded: None,
        sent_at: None,
        sticker_id: None,
    };
    let mut tx = app.pool.begin().await.unwrap();
    let stored = store::ingest_inbound(&mut tx, &msg, Duration::from_secs(3600)).await.unwrap();
    tx.commit().await.unwrap();
    match stored {
        Ingested::Stored { message, .. } => message.id,
        Ingested::Duplicate { .. } => panic!("duplicate"),
    }
}

/// Backdates rows of `files` or `messages` by `days`.
async fn age(app: &TestApp, table: &str, ids: &[Uuid], days: i32) {
    let sql = format!("UPDATE {table} SET created_at = now() - make_interval(days => $2) WHERE id = ANY($1)");
    sqlx::query(sqlx::AssertSqlSafe(sql)).bind(ids).bind(days).execute(&app.pool).await.unwrap();
}

fn on_disk(app: &TestApp, id: Uuid) -> bool {
    let id = id.to_string();
    app.root.join(&id[..2]).join(&id).exists()
}

#[tokio::test]
async fn retention_deletes_exactly_the_old_files_and_reports_the_bytes() {
    let app = spawn_app().await;
    // old and referenced by nothing
    let orphan = app.upload_ok("orphan.bin", "application/octet-stream", bytes(1000, 1)).await;
    // old, referenced only by an old message
    let old_attachment = app.upload_ok("old.pdf", "application/pdf", bytes(2000, 2)).await;
    // old, but an agent sent it again yesterday
    let resent = app.upload_ok("price-list.pdf", "application/pdf", bytes(4000, 3)).await;
    // new
    let fresh = app.upload_ok("new.jpg", "image/jpeg", bytes(8000, 4)).await;

    let old_message = message_with(&app, "u1", "m1", &[old_attachment]).await;
    let new_message = message_with(&app, "u2", "m2", &[resent]).await;
    age(&app, "files", &[orphan, old_attachment, resent], 100).await;
    age(&app, "messages", &[old_message], 100).await;
    age(&app, "messages", &[new_message], 1).await;

    let storage = DirStorage::open(&app.root).await.unwrap();
    let cutoff = retention::cutoff_before(Utc::now(), Duration::from_secs(90 * 86_400));
    let report = retention::run_once(&app.pool, &storage, FileKind::Chat, cutoff).await.unwrap();
    assert_eq!(report, retention::Report { files: 2, bytes: 3000 });

    let left: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM files ORDER BY size").fetch_all(&app.pool).await.unwrap();
    assert_eq!(left, vec![resent, fresh]);
    assert!(!on_disk(&app, orphan) && !on_disk(&app, old_attachment));
    assert!(on_disk(&app, resent) && on_disk(&app, fresh));
    assert_eq!(app.files_on_disk().len(), 2);

    // the old message stays, without its attachment; the new one keeps its file
    let mut conn = app.pool.acquire().await.unwrap();
    let old = store::load_message(&mut conn, old_message).await.unwrap();
    assert_eq!(old.text.as_deref(), Some("see attached"));
    assert!(old.files.is_empty());
    let new = store::load_message(&mut conn, new_message).await.unwrap();
    assert_eq!(new.files.iter().map(|f| f.id).collect::<Vec<_>>(), vec![resent]);
    drop(conn);

    let gone = app.get(&format!("/api/v1/files/{orphan}"), Some(&agent()), &[]).await;
    assert_eq!(gone.status, 404);
    let kept = app.get(&format!("/api/v1/files/{resent}"), Some(&agent()), &[]).await;
    assert_eq!(kept.body, bytes(4000, 3));

    // a second pass finds nothing
    let again = retention::run_once(&app.pool, &storage, FileKind::Chat, cutoff).await.unwrap();
    assert_eq!(again, retention::Report::default());
}

#[tokio::test]
async fn retention_works_through_batches() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for i in 0..12 {
        ids.push(app.upload_ok(&format!("f{i}.txt"), "text/plain", bytes(10, i)).await);
    }
    age(&app, "files", &ids, 10).await;
    let storage = DirStorage::open(&app.root).await.unwrap();
    let cutoff = Utc::now() - chrono::TimeDelta::days(5);
    let report = retention::run_in_batches(&app.pool, &storage, FileKind::Chat, cutoff, 5).await.unwrap();
    assert_eq!(report, retention::Report { files: 12, bytes: 120 });
    assert_eq!(app.file_rows().await, 0);
}

/// The background job, with one-day retention checked every second, removes an aged file by
/// itself.
#[tokio::test]
async fn the_elected_node_runs_retention_in_the_background() {
    let app = spawn_with(|c| {
        c.retention_days = 1;
        c.retention_interval_s = 1;
    })
    .await;
    let old = app.upload_ok("old.txt", "text/plain", b"old".to_vec()).await;
    let new = app.upload_ok("new.txt", "text/plain", b"new".to_vec()).await;
    age(&app, "files", &[old], 2).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while on_disk(&app, old) {
        assert!(tokio::time::Instant::now() < deadline, "the retention job did not run");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let left: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM files").fetch_all(&app.pool).await.unwrap();
    assert_eq!(left, vec![new]);
    assert!(on_disk(&app, new));
}
