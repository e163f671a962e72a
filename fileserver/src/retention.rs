//! The retention job: deletes files (rows and bytes) older than their kind's retention
//! (`fileserver.kinds.<kind>.retention_days`, else `fileserver.retention_days`), except those a
//! message newer than that still references (an agent re-sending an old file keeps it alive; an
//! old conversation loses its attachments with the messages' text kept). A call recording is
//! deleted by age alone (no message references it) and its row becomes `deleted`.
//!
//! One node at a time runs it: the leader of the `fileserver/retention` election. Two leaders
//! overlapping for a moment (a session expiring while another node rises) would do no harm:
//! rows are claimed with `FOR UPDATE SKIP LOCKED` and deleting is idempotent, so no fencing.
//!
//! Order: the rows are deleted and committed first, then the bytes. A crash in between leaves
//! bytes no row points at (wasted space, never a row without its bytes).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use coord::Coordinator;
use schema::domain::FileKind;
use schema::store::{self, StoreError};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::AppState;
use crate::storage::Storage;

/// The election that picks the node running the job.
pub const ELECTION: &str = "fileserver/retention";
/// The membership group of file server processes.
pub const MEMBERS: &str = "fileserver/members";
/// Files deleted per transaction.
const BATCH: i64 = 500;

/// What one pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Report {
    /// Files whose rows were deleted.
    pub files: u64,
    /// Bytes removed from the store (the sizes of the deleted files whose bytes were there).
    pub bytes: u64,
}

/// One pass over the files of `kind`: deletes every one created before `cutoff` that no message
/// created at or after `cutoff` references, in batches, and reports what was freed (also
/// logged and counted in `fileserver_retention_deleted_files_total{kind}` and
/// `fileserver_retention_freed_bytes_total{kind}`).
pub async fn run_once(
    pool: &PgPool,
    storage: &dyn Storage,
    kind: FileKind,
    cutoff: DateTime<Utc>,
) -> Result<Report, StoreError> {
    run_in_batches(pool, storage, kind, cutoff, BATCH).await
}

/// [`run_once`], deleting at most `batch` files per transaction.
pub async fn run_in_batches(
    pool: &PgPool,
    storage: &dyn Storage,
    kind: FileKind,
    cutoff: DateTime<Utc>,
    batch: i64,
) -> Result<Report, StoreError> {
    let mut report = Report::default();
    loop {
        let mut tx = pool.begin().await?;
        let batch = store::delete_expired_files(&mut tx, kind, cutoff, batch).await?;
        tx.commit().await?;
        if batch.is_empty() {
            break;
        }
        for file in &batch {
            report.files += 1;
            match storage.delete(&file.storage_key).await {
                Ok(true) => report.bytes += u64::try_from(file.size).unwrap_or(0),
                Ok(false) => tracing::warn!(file = %file.id, "retention: the file's bytes were already gone"),
                Err(e) => tracing::warn!(file = %file.id, error = %e, "retention: cannot delete the bytes; they stay"),
            }
        }
    }
    metrics::counter!("fileserver_retention_deleted_files_total", "kind" => kind.as_str()).increment(report.files);
    metrics::counter!("fileserver_retention_freed_bytes_total", "kind" => kind.as_str()).increment(report.bytes);
    metrics::gauge!("fileserver_retention_last_run_timestamp_seconds").set(Utc::now().timestamp() as f64);
    tracing::info!(kind = kind.as_str(), files = report.files, bytes = report.bytes, %cutoff, "retention pass done");
    Ok(report)
}

/// `now` less `retention`, or the beginning of time if that is before it.
pub fn cutoff_before(now: DateTime<Utc>, retention: Duration) -> DateTime<Utc> {
    chrono::TimeDelta::from_std(retention)
        .ok()
        .and_then(|age| now.checked_sub_signed(age))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// The background job: joins the file servers' group, campaigns for [`ELECTION`], and while
/// leading runs [`run_once`] at once and then every `retention_interval_s`.
pub(crate) async fn run(state: AppState, coord: Arc<dyn Coordinator>, node: String, shutdown: CancellationToken) {
    let _membership = match coord.join(MEMBERS, &node, Vec::new()).await {
        Ok(m) => Some(m),
        Err(e) => {
            tracing::warn!(error = %e, "cannot register this file server in the cluster");
            None
        }
    };
    let kinds: Vec<(FileKind, Duration)> =
        FileKind::ALL.iter().filter_map(|k| state.config.retention_of(*k).map(|r| (*k, r))).collect();
    if kinds.is_empty() {
        tracing::info!("file retention is off (fileserver.retention_days = 0 and no kind sets its own)");
        shutdown.cancelled().await;
        return;
    }
    let interval = Duration::from_secs(state.config.retention_interval_s.max(1));
    coord::lead(coord.as_ref(), ELECTION, &node, &shutdown, move |token, term| {
        let state = state.clone();
        let kinds = kinds.clone();
        async move {
            tracing::info!(token, "this node runs the file retention job");
            loop {
                for (kind, retention) in &kinds {
                    let cutoff = cutoff_before(Utc::now(), *retention);
                    if let Err(e) = run_once(&state.pool, state.storage.as_ref(), *kind, cutoff).await {
                        tracing::warn!(kind = kind.as_str(), error = %e, "retention pass failed; next try in {interval:?}");
                    }
                }
                tokio::select! {
                    _ = term.cancelled() => {
                        tracing::info!(token, "this node no longer runs the file retention job");
                        return coord::TermEnd::Cancelled;
                    }
                    _ = tokio::time::sleep(interval) => {}
                }
            }
        }
    })
    .await;
}
