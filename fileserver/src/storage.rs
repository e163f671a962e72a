//! Where the bytes live, behind one trait: [`Storage`]. The file server never holds a whole
//! file in memory: `put` takes a stream, `get` returns one.
//!
//! [`DirStorage`] keeps each object in a directory tree, `<root>/<first two characters of the
//! key>/<key>`. An object appears whole or not at all: it is written to `<root>/tmp/`, synced,
//! renamed into place and its directory synced; a failed or abandoned write leaves nothing.

use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use axum::body::Bytes;
use futures::{Stream, StreamExt};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

/// A stream of a file's bytes.
pub type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// What `put` reads: any stream of chunks; an `Err` item aborts the write.
pub type Body<'a> = dyn Stream<Item = io::Result<Bytes>> + Send + Unpin + 'a;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("no object {0}")]
    NotFound(String),
    #[error("invalid storage key {0:?}")]
    InvalidKey(String),
    /// The body stream failed (the client went away, or the caller cut it off).
    #[error("the body stream failed: {0}")]
    Body(io::Error),
    #[error("{what} {path}: {source}")]
    Io { what: &'static str, path: PathBuf, source: io::Error },
}

#[async_trait]
pub trait Storage: Send + Sync + 'static {
    /// Stores `body` under `key`, replacing nothing: the object is visible only once it is
    /// complete and durable. Returns the number of bytes written. On any error nothing is left.
    async fn put(&self, key: &str, body: &mut Body<'_>) -> Result<u64, StorageError>;

    /// The bytes of `key`, or of `range` of them (which the caller has checked against the
    /// size).
    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<ByteStream, StorageError>;

    /// Deletes `key`. Returns whether it existed.
    async fn delete(&self, key: &str) -> Result<bool, StorageError>;

    /// The size of `key` in bytes.
    async fn size(&self, key: &str) -> Result<u64, StorageError>;
}

/// Objects as files in a directory tree.
#[derive(Debug, Clone)]
pub struct DirStorage {
    root: PathBuf,
}

/// Temporary files older than this are left over from a crash and removed at start.
const STALE_TEMP: Duration = Duration::from_secs(24 * 3600);

/// Chunk size of downloads.
const READ_CHUNK: usize = 64 * 1024;

impl DirStorage {
    /// Opens (creating) the tree at `root` and clears temporary files left by a crash.
    pub async fn open(root: impl Into<PathBuf>) -> Result<Self, StorageError> {
        let root = root.into();
        let tmp = root.join("tmp");
        tokio::fs::create_dir_all(&tmp).await.map_err(io_err("cannot create", &tmp))?;
        let storage = DirStorage { root };
        storage.clear_stale_temp(STALE_TEMP).await;
        Ok(storage)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where `key` lives. Keys are `[0-9A-Za-z._-]`, at least 3 characters, not starting with
    /// a dot, so no key can leave the tree or name the temporary directory.
    pub fn path_of(&self, key: &str) -> Result<PathBuf, StorageError> {
        let valid = key.len() >= 3
            && !key.starts_with('.')
            && key.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !valid {
            return Err(StorageError::InvalidKey(key.to_owned()));
        }
        Ok(self.root.join(&key[..2]).join(key))
    }

    async fn clear_stale_temp(&self, older_than: Duration) {
        let tmp = self.root.join("tmp");
        let Ok(mut entries) = tokio::fs::read_dir(&tmp).await else { return };
        while let Ok(Some(entry)) = entries.next_entry().await {
            let stale = entry
                .metadata()
                .await
                .and_then(|m| m.modified())
                .map(|t| SystemTime::now().duration_since(t).unwrap_or_default() > older_than)
                .unwrap_or(false);
            if stale {
                tracing::info!(path = %entry.path().display(), "removing a temporary file left by a crash");
                let _ = tokio::fs::remove_file(entry.path()).await;
            }
        }
    }
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StorageError {
    let path = path.to_owned();
    move |source| StorageError::Io { what, path, source }
}

/// A temporary file that is removed when dropped, unless kept: whatever ends a write early
/// (an error, or the request being dropped mid-stream) leaves nothing behind.
struct TempFile {
    path: PathBuf,
    keep: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.keep {
            // short and rare (an aborted upload): fine on the runtime thread
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

async fn sync_dir(dir: &Path) -> io::Result<()> {
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || std::fs::File::open(dir)?.sync_all()).await.map_err(io::Error::other)?
}

#[async_trait]
impl Storage for DirStorage {
    async fn put(&self, key: &str, body: &mut Body<'_>) -> Result<u64, StorageError> {
        let target = self.path_of(key)?;
        let temp =
            TempFile { path: self.root.join("tmp").join(format!("{key}.{}.part", uuid::Uuid::new_v4())), keep: false };
        let mut file = tokio::fs::File::create(&temp.path).await.map_err(io_err("cannot create", &temp.path))?;
        let mut written = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(StorageError::Body)?;
            file.write_all(&chunk).await.map_err(io_err("cannot write", &temp.path))?;
            written += chunk.len() as u64;
        }
        file.flush().await.map_err(io_err("cannot write", &temp.path))?;
        file.sync_all().await.map_err(io_err("cannot sync", &temp.path))?;
        drop(file);
        let dir = target.parent().expect("a key's path has a directory");
        tokio::fs::create_dir_all(dir).await.map_err(io_err("cannot create", dir))?;
        tokio::fs::rename(&temp.path, &target).await.map_err(io_err("cannot move into place", &target))?;
        let mut temp = temp;
        temp.keep = true;
        sync_dir(dir).await.map_err(io_err("cannot sync", dir))?;
        Ok(written)
    }

    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<ByteStream, StorageError> {
        let path = self.path_of(key)?;
        let mut file = tokio::fs::File::open(&path).await.map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => StorageError::NotFound(key.to_owned()),
            _ => io_err("cannot open", &path)(e),
        })?;
        let stream: ByteStream = match range {
            None => Box::pin(tokio_util::io::ReaderStream::with_capacity(file, READ_CHUNK)),
            Some(range) => {
                file.seek(io::SeekFrom::Start(range.start)).await.map_err(io_err("cannot seek", &path))?;
                let part = tokio::io::AsyncReadExt::take(file, range.end.saturating_sub(range.start));
                Box::pin(tokio_util::io::ReaderStream::with_capacity(part, READ_CHUNK))
            }
        };
        Ok(stream)
    }

    async fn delete(&self, key: &str) -> Result<bool, StorageError> {
        let path = self.path_of(key)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err("cannot delete", &path)(e)),
        }
    }

    async fn size(&self, key: &str) -> Result<u64, StorageError> {
        let path = self.path_of(key)?;
        match tokio::fs::metadata(&path).await {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(StorageError::NotFound(key.to_owned())),
            Err(e) => Err(io_err("cannot stat", &path)(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_root() -> PathBuf {
        std::env::temp_dir().join(format!("fileserver-storage-{}", uuid::Uuid::new_v4().simple()))
    }

    async fn collect(mut s: ByteStream) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(chunk) = s.next().await {
            out.extend_from_slice(&chunk.unwrap());
        }
        out
    }

    #[tokio::test]
    async fn put_get_range_size_delete() {
        let root = temp_root();
        let storage = DirStorage::open(&root).await.unwrap();
        let chunks = vec![Ok(Bytes::from_static(b"hello ")), Ok(Bytes::from_static(b"world"))];
        let mut body = futures::stream::iter(chunks);
        assert_eq!(storage.put("ab123", &mut body).await.unwrap(), 11);
        assert!(root.join("ab").join("ab123").exists());
        assert_eq!(storage.size("ab123").await.unwrap(), 11);
        assert_eq!(collect(storage.get("ab123", None).await.unwrap()).await, b"hello world");
        assert_eq!(collect(storage.get("ab123", Some(6..11)).await.unwrap()).await, b"world");
        assert!(storage.delete("ab123").await.unwrap());
        assert!(!storage.delete("ab123").await.unwrap());
        assert!(matches!(storage.size("ab123").await, Err(StorageError::NotFound(_))));
        assert!(matches!(storage.get("ab123", None).await, Err(StorageError::NotFound(_))));
        std::fs::remove_dir_all(root).unwrap();
    }

    #[tokio::test]
    async fn a_failed_body_leaves_nothing() {
        let root = temp_root();
        let storage = DirStorage::open(&root).await.unwrap();
        let chunks = vec![Ok(Bytes::from_static(b"partial")), Err(io::Error::other("client went away"))];
        let mut body = futures::stream::iter(chunks);
        assert!(matches!(storage.put("cd456", &mut body).await, Err(StorageError::Body(_))));
        assert!(!root.join("cd").join("cd456").exists());
        assert_eq!(std::fs::read_dir(root.join("tmp")).unwrap().count(), 0);
        std::fs::remove_dir_all(root).unwrap();
    }

    #[tokio::test]
    async fn keys_cannot_leave_the_tree() {
        let storage = DirStorage { root: PathBuf::from("/nonexistent") };
        for key in ["../etc/passwd", "..x", "a", "tmp/../x", "a b c", ".hidden"] {
            assert!(matches!(storage.path_of(key), Err(StorageError::InvalidKey(_))), "{key}");
        }
        assert!(storage.path_of("0123-abc").is_ok());
    }
}
