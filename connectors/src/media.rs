//! Inbound media: a file a platform holds for a customer's message, fetched into the file
//! server before the message is stored, streamed (never whole in memory) and cut off at the
//! account's limit. Shared by the channel modules that fetch by URL (Viber, VK, OK) and by
//! WhatsApp, whose providers open the download themselves ([`Download::store`]).
//!
//! What cannot work becomes a note for the agent ([`Fetch::Unavailable`]) instead of the file:
//! a file over the limit (announced, by `Content-Length`, or found while streaming), a link the
//! platform answers with a permanent error, a refusal of the file server. What may pass (a
//! network error, a 5xx, 429 or 408, the file server unreachable) is the update's transient
//! error, so it is tried again, and becomes a note on the last try: a customer's message is
//! never held back for its file.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use schema::domain::FileRef;

use crate::files::{ByteStream, FileError, FileServer};
use crate::ingest::UpdateError;
use crate::outbox::human_size;

/// What became of one file.
#[derive(Debug)]
pub enum Fetch {
    Stored(FileRef),
    /// Will not work: a note for the agent instead of the file.
    Unavailable(String),
}

/// One file to fetch.
#[derive(Debug, Clone, Copy)]
pub struct Download<'a> {
    /// The platform, as the agent's notes name it ("Viber").
    pub platform: &'a str,
    pub name: &'a str,
    /// The type the platform announced; a more precise one the download serves wins.
    pub mime: &'a str,
    /// The size the platform announced, when it did.
    pub size: Option<u64>,
    /// The account's `max_download` in bytes.
    pub limit: u64,
    /// This is the last try: a failure that might pass becomes a note.
    pub last_try: bool,
}

impl Download<'_> {
    /// The note for a file over the limit (`size` when known).
    pub fn too_big(&self, size: Option<u64>) -> Fetch {
        let (platform, limit) = (self.platform, human_size(self.limit));
        Fetch::Unavailable(match size {
            Some(size) => format!("{} is over the {limit} this account takes from {platform}", human_size(size)),
            None => format!("it is over the {limit} this account takes from {platform}"),
        })
    }

    /// The note when the platform announced a size over the limit: nothing to fetch then.
    pub fn announced_too_big(&self) -> Option<Fetch> {
        self.size.filter(|size| *size > self.limit).map(|size| self.too_big(Some(size)))
    }

    /// A failure that may pass: the update's transient error, or on the last try a note.
    pub fn again(&self, why: String) -> Result<Fetch, UpdateError> {
        if self.last_try {
            Ok(Fetch::Unavailable(format!("could not be fetched from {} ({why})", self.platform)))
        } else {
            Err(UpdateError::Transient(format!("fetching {}: {why}", self.name)))
        }
    }

    /// Fetches `url` (a GET with `http`) into the file server.
    pub async fn from_url(&self, http: &reqwest::Client, url: &str, files: &FileServer) -> Result<Fetch, UpdateError> {
        if let Some(note) = self.announced_too_big() {
            return Ok(note);
        }
        let response = match http.get(url).send().await {
            Ok(response) => response,
            Err(e) => return self.again(format!("network error: {}", e.without_url())),
        };
        let status = response.status();
        if !status.is_success() {
            let retryable = status.is_server_error()
                || status == reqwest::StatusCode::TOO_MANY_REQUESTS
                || status == reqwest::StatusCode::REQUEST_TIMEOUT;
            if !retryable {
                return Ok(Fetch::Unavailable(format!("{}'s link to it does not work (HTTP {status})", self.platform)));
            }
            return self.again(format!("HTTP {status}"));
        }
        self.store(response, files).await
    }

    /// Streams an opened download into the file server, at most `limit` bytes.
    pub async fn store(&self, response: reqwest::Response, files: &FileServer) -> Result<Fetch, UpdateError> {
        if let Some(length) = response.content_length()
            && length > self.limit
        {
            return Ok(self.too_big(Some(length)));
        }
        let mime = self.mime_of(response.headers().get(reqwest::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()));
        let over = Arc::new(AtomicBool::new(false));
        let stream = limited(response, self.limit, over.clone());
        match files.upload_stream(self.name, &mime, stream).await {
            Ok(uploaded) => Ok(Fetch::Stored(uploaded.to_ref())),
            Err(_) if over.load(Ordering::SeqCst) => Ok(self.too_big(None)),
            Err(FileError::Refused(reason)) => Ok(Fetch::Unavailable(format!("the file server refused it: {reason}"))),
            Err(e @ FileError::NoSecret) => Ok(Fetch::Unavailable(e.to_string())),
            Err(e) => self.again(e.to_string()),
        }
    }

    /// The type to store: the served `Content-Type` when the platform announced none of its
    /// own (`application/octet-stream`) or the same kind (`image/…`) more precisely; else the
    /// announced one (a server answering `text/plain` for a photo is not believed).
    fn mime_of(&self, served: Option<&str>) -> String {
        let served = served
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().to_ascii_lowercase())
            .filter(|v| v.contains('/') && v != "application/octet-stream");
        match served {
            Some(served)
                if self.mime == "application/octet-stream"
                    || served.split('/').next() == self.mime.split('/').next() =>
            {
                served
            }
            _ => self.mime.to_owned(),
        }
    }
}

/// The response's body as it arrives, failing (and setting `over`) past `limit` bytes.
fn limited(response: reqwest::Response, limit: u64, over: Arc<AtomicBool>) -> ByteStream {
    let mut seen: u64 = 0;
    Box::pin(response.bytes_stream().map(move |chunk| {
        let chunk = chunk.map_err(std::io::Error::other)?;
        seen += chunk.len() as u64;
        if seen > limit {
            over.store(true, Ordering::SeqCst);
            return Err(std::io::Error::other(format!("over the limit of {limit} bytes")));
        }
        Ok(chunk)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn download(mime: &str, size: Option<u64>, last_try: bool) -> Download<'_> {
        Download { platform: "Viber", name: "a.jpg", mime, size, limit: 1_000, last_try }
    }

    #[test]
    fn the_served_type_wins_only_when_it_says_more_of_the_same_kind() {
        let photo = download("image/jpeg", None, false);
        assert_eq!(photo.mime_of(Some("image/png; charset=binary")), "image/png");
        assert_eq!(photo.mime_of(Some("text/plain")), "image/jpeg");
        assert_eq!(photo.mime_of(Some("application/octet-stream")), "image/jpeg");
        assert_eq!(photo.mime_of(Some("nonsense")), "image/jpeg");
        assert_eq!(photo.mime_of(None), "image/jpeg");
        let unknown = download("application/octet-stream", None, false);
        assert_eq!(unknown.mime_of(Some("Video/MP4")), "video/mp4");
    }

    #[test]
    fn an_announced_size_over_the_limit_is_a_note_naming_both() {
        assert!(download("image/jpeg", Some(1_000), false).announced_too_big().is_none());
        assert!(download("image/jpeg", None, false).announced_too_big().is_none());
        match download("image/jpeg", Some(5_000_000), false).announced_too_big() {
            Some(Fetch::Unavailable(note)) => {
                assert!(note.contains("from Viber") && note.contains(&human_size(5_000_000)), "{note}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_failure_that_may_pass_is_retried_until_the_last_try() {
        assert!(matches!(download("image/jpeg", None, false).again("HTTP 502".into()), Err(UpdateError::Transient(_))));
        match download("image/jpeg", None, true).again("HTTP 502".into()) {
            Ok(Fetch::Unavailable(note)) => assert_eq!(note, "could not be fetched from Viber (HTTP 502)"),
            other => panic!("{other:?}"),
        }
    }
}
