//! Files: the metadata rows of what the file server stores. The bytes live in the file
//! server's storage under `storage_key`; a row exists only for bytes that were stored whole.

use chrono::{DateTime, Utc};
use const_format::concatcp;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::{Result, StoreError};
use crate::domain::{FileKind, FileRef};

/// A file to record, after its bytes were stored.
#[derive(Debug, Clone)]
pub struct NewFile {
    pub id: Uuid,
    pub name: String,
    pub mime: String,
    pub size: i64,
    /// Lower-case hex SHA-256 of the bytes.
    pub sha256: String,
    /// Where the storage backend keeps the bytes.
    pub storage_key: String,
    /// The channel account the file came from or goes to, if known.
    pub account_id: Option<Uuid>,
    /// Who uploaded it (the token's `sub`).
    pub uploaded_by: Option<String>,
    /// What it is: quotas and retention are per kind.
    pub kind: FileKind,
}

/// A file's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFile {
    pub id: Uuid,
    pub name: String,
    pub mime: String,
    pub size: i64,
    pub sha256: String,
    pub storage_key: String,
    pub account_id: Option<Uuid>,
    pub uploaded_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub kind: FileKind,
}

impl StoredFile {
    /// The file as messages reference it.
    pub fn to_ref(&self) -> FileRef {
        FileRef {
            id: self.id,
            name: self.name.clone(),
            mime: self.mime.clone(),
            size: self.size,
            url: FileRef::url_for(self.id),
        }
    }
}

/// A file the retention job removed: its bytes are to be deleted after the commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiredFile {
    pub id: Uuid,
    pub storage_key: String,
    pub size: i64,
}

const FILE_COLUMNS: &str = "id, name, mime, size, sha256, storage_key, account_id, uploaded_by, created_at, kind";

/// Records a stored file. An unknown `account_id` is [`StoreError::Invalid`]; a taken id is
/// [`StoreError::Conflict`].
pub async fn insert_file(conn: &mut PgConnection, file: &NewFile) -> Result<StoredFile> {
    match insert_file_within(conn, file, None).await? {
        Ok(stored) => Ok(stored),
        Err(refused) => Err(StoreError::Conflict(refused.to_string())),
    }
}

/// An upload refused because its kind's quota would be passed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the {kind} files would take {wanted} bytes, over their quota of {quota} bytes ({used} bytes used)")]
pub struct QuotaRefused {
    pub kind: FileKind,
    pub quota: i64,
    pub used: i64,
    pub wanted: i64,
}

/// [`insert_file`] within the kind's quota of `quota` bytes (`None`: no quota). The usage row
/// of the kind is locked in the same statement, so concurrent uploads of a kind cannot pass the
/// quota together. A refusal is counted (`file_usage.refused`) and returned as the inner `Err`.
pub async fn insert_file_within(
    conn: &mut PgConnection,
    file: &NewFile,
    quota: Option<i64>,
) -> Result<std::result::Result<StoredFile, QuotaRefused>> {
    let row = sqlx::query(concatcp!(
        "INSERT INTO files (id, name, mime, size, sha256, storage_key, account_id, uploaded_by, kind)
         SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9
         WHERE $10::bigint IS NULL
            OR (SELECT u.bytes FROM file_usage u WHERE u.kind = $9 FOR UPDATE) + $4 <= $10
         RETURNING ",
        FILE_COLUMNS
    ))
    .bind(file.id)
    .bind(&file.name)
    .bind(&file.mime)
    .bind(file.size)
    .bind(&file.sha256)
    .bind(&file.storage_key)
    .bind(file.account_id)
    .bind(&file.uploaded_by)
    .bind(file.kind.as_str())
    .bind(quota)
    .fetch_optional(&mut *conn)
    .await
    .map_err(|e| match e {
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => {
            StoreError::Invalid(format!("account {:?} does not exist", file.account_id))
        }
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            StoreError::Conflict(format!("file {} already exists", file.id))
        }
        other => other.into(),
    })?;
    match row {
        Some(row) => Ok(Ok(file_from_row(&row)?)),
        None => {
            let used: i64 = sqlx::query_scalar(
                "UPDATE file_usage SET refused = refused + 1, last_refused_at = now() WHERE kind = $1 RETURNING bytes",
            )
            .bind(file.kind.as_str())
            .fetch_one(&mut *conn)
            .await?;
            Ok(Err(QuotaRefused { kind: file.kind, quota: quota.unwrap_or_default(), used, wanted: used + file.size }))
        }
    }
}

pub async fn get_file(conn: &mut PgConnection, id: Uuid) -> Result<StoredFile> {
    let row = sqlx::query(concatcp!("SELECT ", FILE_COLUMNS, " FROM files WHERE id = $1"))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::not_found("file", id))?;
    file_from_row(&row)
}

/// Whether `agent` may read file `id`: they uploaded it, or it belongs to an interaction they
/// may see: a message of the interaction carries it, it is the avatar of the interaction's
/// customer, or it is the recording of one of its video calls. They may see an interaction assigned to them now or before (`last_agent`, or an
/// `interaction.assigned` event naming them), one they joined (monitor or participate), and, as
/// `history.get` allows, any interaction of a customer whose open interaction they serve.
/// Roles with wider sight (supervisors, admins, services) are the caller's to decide.
pub async fn agent_may_read_file(conn: &mut PgConnection, id: Uuid, agent: &str) -> Result<bool> {
    let allowed: bool = sqlx::query_scalar(
        "WITH holders AS (
             SELECT m.interaction_id AS id FROM message_files mf JOIN messages m ON m.id = mf.message_id
             WHERE mf.file_id = $1
             UNION
             SELECT i.id FROM customers c JOIN interactions i ON i.customer_id = c.id
             WHERE c.avatar_url = '/api/v1/files/' || $1::text
             UNION
             SELECT r.interaction_id FROM video_recordings r WHERE r.file_id = $1
         )
         SELECT EXISTS (SELECT 1 FROM files WHERE id = $1 AND uploaded_by = $2)
             OR EXISTS (
                 SELECT 1 FROM holders h JOIN interactions i ON i.id = h.id
                 WHERE i.agent = $2 OR i.last_agent = $2
                    OR EXISTS (SELECT 1 FROM interaction_participants p
                               WHERE p.interaction_id = i.id AND p.agent_login = $2)
                    OR EXISTS (SELECT 1 FROM interaction_events e
                               WHERE e.interaction_id = i.id AND e.kind = 'interaction.assigned' AND e.actor = $2)
                    OR EXISTS (SELECT 1 FROM interactions o
                               WHERE o.customer_id = i.customer_id AND o.state <> 'closed'
                                 AND (o.agent = $2 OR EXISTS (
                                      SELECT 1 FROM interaction_participants op
                                      WHERE op.interaction_id = o.id AND op.agent_login = $2))))",
    )
    .bind(id)
    .bind(agent)
    .fetch_one(&mut *conn)
    .await?;
    Ok(allowed)
}

/// Deletes the rows of up to `limit` files of `kind` created before `cutoff` that no message
/// created at or after `cutoff` references, with their `message_files` links (older messages
/// keep their text and lose the attachment); a call recording among them becomes `deleted`. Returns what was deleted, so the caller removes the bytes
/// **after** committing.
///
/// Call it in a transaction, and again until it returns nothing. It locks the candidates first
/// (skipping rows another transaction holds), then checks the references again in a second
/// statement, which sees every reference committed before the lock: a message attaching one of
/// these files concurrently either committed before (the file is kept) or waits on the lock and
/// then fails on the foreign key.
pub async fn delete_expired_files(
    conn: &mut PgConnection,
    kind: FileKind,
    cutoff: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<ExpiredFile>> {
    let candidates: Vec<Uuid> = sqlx::query_scalar(
        "SELECT f.id FROM files f
         WHERE f.kind = $3 AND f.created_at < $1
           AND NOT EXISTS (SELECT 1 FROM message_files mf JOIN messages m ON m.id = mf.message_id
                           WHERE mf.file_id = f.id AND m.created_at >= $1)
         ORDER BY f.created_at LIMIT $2
         FOR UPDATE OF f SKIP LOCKED",
    )
    .bind(cutoff)
    .bind(limit)
    .bind(kind.as_str())
    .fetch_all(&mut *conn)
    .await?;
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(
        "WITH doomed AS (
             SELECT f.id FROM files f
             WHERE f.id = ANY($1)
               AND NOT EXISTS (SELECT 1 FROM message_files mf JOIN messages m ON m.id = mf.message_id
                               WHERE mf.file_id = f.id AND m.created_at >= $2)
         ), unlinked AS (
             DELETE FROM message_files WHERE file_id IN (SELECT id FROM doomed)
         ), recordings AS (
             UPDATE video_recordings SET state = 'deleted', deleted_at = now(), file_id = NULL
             WHERE file_id IN (SELECT id FROM doomed)
         )
         DELETE FROM files WHERE id IN (SELECT id FROM doomed)
         RETURNING id, storage_key, size",
    )
    .bind(&candidates)
    .bind(cutoff)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(ExpiredFile {
                id: row.try_get("id")?,
                storage_key: row.try_get("storage_key")?,
                size: row.try_get("size")?,
            })
        })
        .collect()
}

fn file_from_row(row: &PgRow) -> Result<StoredFile> {
    Ok(StoredFile {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        mime: row.try_get("mime")?,
        size: row.try_get("size")?,
        sha256: row.try_get("sha256")?,
        storage_key: row.try_get("storage_key")?,
        account_id: row.try_get("account_id")?,
        uploaded_by: row.try_get("uploaded_by")?,
        created_at: row.try_get("created_at")?,
        kind: row.try_get::<&str, _>("kind")?.parse()?,
    })
}

/// What one kind of file holds and the file server's settings for it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FileUsage {
    pub kind: FileKind,
    pub files: i64,
    pub bytes: i64,
    pub quota_bytes: Option<i64>,
    pub retention_days: Option<i32>,
    /// When a file server last wrote its settings.
    pub settings_at: Option<DateTime<Utc>>,
    /// Uploads refused over the quota, ever, and the last one.
    pub refused: i64,
    pub last_refused_at: Option<DateTime<Utc>>,
}

/// The usage of every kind of file.
pub async fn file_usage(conn: &mut PgConnection) -> Result<Vec<FileUsage>> {
    let rows = sqlx::query(
        "SELECT kind, files, bytes, quota_bytes, retention_days, settings_at, refused, last_refused_at
         FROM file_usage ORDER BY kind",
    )
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(FileUsage {
                kind: r.try_get::<&str, _>("kind")?.parse()?,
                files: r.try_get("files")?,
                bytes: r.try_get("bytes")?,
                quota_bytes: r.try_get("quota_bytes")?,
                retention_days: r.try_get("retention_days")?,
                settings_at: r.try_get("settings_at")?,
                refused: r.try_get("refused")?,
                last_refused_at: r.try_get("last_refused_at")?,
            })
        })
        .collect()
}

/// Counts an upload refused over its kind's quota before it was stored; returns the kind's
/// bytes in use.
pub async fn count_file_refusal(conn: &mut PgConnection, kind: FileKind) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "UPDATE file_usage SET refused = refused + 1, last_refused_at = now() WHERE kind = $1 RETURNING bytes",
    )
    .bind(kind.as_str())
    .fetch_one(&mut *conn)
    .await?)
}

/// Records a file server's quota and retention for `kind` (shown by the admin API).
pub async fn set_file_kind_settings(
    conn: &mut PgConnection,
    kind: FileKind,
    quota_bytes: Option<i64>,
    retention_days: Option<i32>,
) -> Result<()> {
    sqlx::query("UPDATE file_usage SET quota_bytes = $2, retention_days = $3, settings_at = now() WHERE kind = $1")
        .bind(kind.as_str())
        .bind(quota_bytes)
        .bind(retention_days)
        .execute(&mut *conn)
        .await?;
    Ok(())
}
