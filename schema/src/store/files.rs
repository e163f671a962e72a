//! Files: the metadata rows of what the file server stores. The bytes live in the file
//! server's storage under `storage_key`; a row exists only for bytes that were stored whole.

use chrono::{DateTime, Utc};
use const_format::concatcp;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::{Result, StoreError};
use crate::domain::FileRef;

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

const FILE_COLUMNS: &str = "id, name, mime, size, sha256, storage_key, account_id, uploaded_by, created_at";

/// Records a stored file. An unknown `account_id` is [`StoreError::Invalid`]; a taken id is
/// [`StoreError::Conflict`].
pub async fn insert_file(conn: &mut PgConnection, file: &NewFile) -> Result<StoredFile> {
    let row = sqlx::query(concatcp!(
        "INSERT INTO files (id, name, mime, size, sha256, storage_key, account_id, uploaded_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
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
    .fetch_one(&mut *conn)
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
    file_from_row(&row)
}

pub async fn get_file(conn: &mut PgConnection, id: Uuid) -> Result<StoredFile> {
    let row = sqlx::query(concatcp!("SELECT ", FILE_COLUMNS, " FROM files WHERE id = $1"))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::not_found("file", id))?;
    file_from_row(&row)
}

/// Deletes the rows of up to `limit` files created before `cutoff` that no message created at
/// or after `cutoff` references, with their `message_files` links (older messages keep their
/// text and lose the attachment). Returns what was deleted, so the caller removes the bytes
/// **after** committing.
///
/// Call it in a transaction, and again until it returns nothing. It locks the candidates first
/// (skipping rows another transaction holds), then checks the references again in a second
/// statement, which sees every reference committed before the lock: a message attaching one of
/// these files concurrently either committed before (the file is kept) or waits on the lock and
/// then fails on the foreign key.
pub async fn delete_expired_files(
    conn: &mut PgConnection,
    cutoff: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<ExpiredFile>> {
    let candidates: Vec<Uuid> = sqlx::query_scalar(
        "SELECT f.id FROM files f
         WHERE f.created_at < $1
           AND NOT EXISTS (SELECT 1 FROM message_files mf JOIN messages m ON m.id = mf.message_id
                           WHERE mf.file_id = f.id AND m.created_at >= $1)
         ORDER BY f.created_at LIMIT $2
         FOR UPDATE OF f SKIP LOCKED",
    )
    .bind(cutoff)
    .bind(limit)
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
    })
}
