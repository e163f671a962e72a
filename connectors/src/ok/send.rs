//! The OK side of outbox work: `POST graph/me/messages/<chat_id>` with the text, a file and the
//! keyboard as attachments. Images go up through `fileUploadUrl` (the default) or, when the
//! account says so, as the signed link OK fetches; videos always go up. OK has no edit, no
//! delete and no idempotency key: the chatserver refuses edits and deletes on OK, and a send
//! repeated after a failover can reach the customer twice (counted by the failover test).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{Value, json};
use tracing::warn;
use uuid::Uuid;

use super::api::{Api, CallError};
use super::mapping::{Refusal, classify, keyboard, message_body, sent_id, upload_token};
use crate::files::FileServer;
use crate::platform::{FileBody, FileDelivery, OutFile, Outbound, Part, SendError};

/// The longest wait after flood answers repeating to one chat.
const FLOOD_AT_MOST: Duration = Duration::from_secs(300);
/// How long an uploaded file's attachment is reused for a part tried again.
const UPLOAD_KEPT: Duration = Duration::from_secs(600);
/// A send with a file just uploaded is tried again this many times while OK still processes it
/// ("wait a few seconds" before sending, OK's documents say).
const NOT_READY_TRIES: u32 = 4;

/// Sends outbox work through one group.
pub struct OkOutbound {
    api: Api,
    files: FileServer,
    account_id: Uuid,
    /// `settings.images_by_link`: images go as a signed link OK fetches.
    images_by_link: bool,
    /// How long to wait before a send whose file OK is still processing is tried again.
    processing_wait: Duration,
    /// Flood answers in a row per chat (std mutex: a lookup, never held across an await).
    flood: Mutex<HashMap<String, u32>>,
    /// Attachments uploaded per part (`idempotency_key`), so a retry does not upload again.
    uploaded: Mutex<HashMap<String, (Value, Instant)>>,
}

impl OkOutbound {
    pub fn new(api: Api, files: FileServer, account_id: Uuid, images_by_link: bool, processing_wait: Duration) -> Self {
        OkOutbound {
            api,
            files,
            account_id,
            images_by_link,
            processing_wait,
            flood: Mutex::new(HashMap::new()),
            uploaded: Mutex::new(HashMap::new()),
        }
    }

    /// The wait after a rate-limit answer: the first, doubling per chat while it repeats.
    fn rate_limited(&self, chat: &str, first: Duration) -> Duration {
        let mut counts = self.flood.lock().unwrap_or_else(|e| e.into_inner());
        if counts.len() > 10_000 {
            counts.clear();
        }
        let n = counts.entry(chat.to_owned()).or_default();
        *n += 1;
        first.saturating_mul(1 << (*n - 1).min(10)).min(FLOOD_AT_MOST)
    }

    fn succeeded(&self, chat: &str) {
        let mut counts = self.flood.lock().unwrap_or_else(|e| e.into_inner());
        if !counts.is_empty() {
            counts.remove(chat);
        }
    }

    /// An OK error or no answer, as the runtime acts on it.
    fn refused(&self, chat: &str, call: &str, error: CallError) -> SendError {
        let (code, message) = match error {
            CallError::Transport(why) => return SendError::Transient(why),
            CallError::TooMany(hint) => {
                let wait = hint.unwrap_or_else(|| self.rate_limited(chat, Duration::from_secs(5)));
                warn!(account = %self.account_id, chat, call, ?wait, "OK answered 429: this chat waits");
                return SendError::RetryAfter(wait);
            }
            CallError::Ok { code, message } => (code, message),
        };
        match classify(code, &message, self.api.codes()) {
            Refusal::RateLimited(first) => {
                let wait = self.rate_limited(chat, first);
                warn!(account = %self.account_id, chat, call, code, ?wait, "OK rate limit: this chat waits");
                SendError::RetryAfter(wait)
            }
            // the account is reported by the API client; the rows wait, slower and slower
            Refusal::Transient(reason) | Refusal::Unhealthy(reason) => SendError::Transient(reason),
            Refusal::Permanent(reason) => SendError::Permanent(reason),
        }
    }

    fn kept_upload(&self, key: &str) -> Option<Value> {
        let mut kept = self.uploaded.lock().unwrap_or_else(|e| e.into_inner());
        kept.retain(|_, (_, at)| at.elapsed() < UPLOAD_KEPT);
        kept.get(key).map(|(v, _)| v.clone())
    }

    fn keep_upload(&self, key: &str, attachment: &Value) {
        let mut kept = self.uploaded.lock().unwrap_or_else(|e| e.into_inner());
        if kept.len() > 1000 {
            kept.clear();
        }
        kept.insert(key.to_owned(), (attachment.clone(), Instant::now()));
    }

    /// The file as an attachment: an image by link or uploaded, a video uploaded; and whether
    /// it was uploaded just now.
    async fn attachment(&self, chat: &str, key: &str, file: OutFile) -> Result<(Value, bool), SendError> {
        let meta = file.meta;
        let kind = match meta.mime.split('/').next().unwrap_or_default() {
            "image" => "IMAGE",
            "video" => "VIDEO",
            _ => {
                return Err(SendError::Permanent(format!(
                    "OK takes only images and videos from the hub; {:?} is {}",
                    meta.name, meta.mime
                )));
            }
        };
        if let Some(kept) = self.kept_upload(key) {
            return Ok((kept, false));
        }
        let stream = match file.body {
            FileBody::Link(url) if kind == "IMAGE" => {
                return Ok((json!({"type": "IMAGE", "payload": {"url": url.as_str()}}), false));
            }
            FileBody::Stream(stream) => stream,
            // a video when the account sends images by link: OK fetches no video, so it goes up
            FileBody::Link(_) => self.files.stream(meta.id).await.map_err(|e| {
                if e.is_transient() {
                    SendError::Transient(e.to_string())
                } else {
                    SendError::Permanent(format!("file {:?}: {e}", meta.name))
                }
            })?,
        };
        let target = self
            .api
            .get("fileUploadUrl", &["me", "fileUploadUrl"], &[("type", kind.to_owned())], None)
            .await
            .map_err(|e| self.refused(chat, "fileUploadUrl", e))?;
        let url = target
            .get("url")
            .and_then(Value::as_str)
            .filter(|u| !u.is_empty())
            .ok_or_else(|| SendError::Transient(format!("fileUploadUrl answered without a url: {target}")))?;
        let size = u64::try_from(meta.size).unwrap_or(0);
        let answer = self.api.upload(url, &meta.name, &meta.mime, size, stream).await.map_err(|e| match e {
            CallError::Ok { code, message } => {
                SendError::Permanent(format!("OK did not take the file {:?} (OK error {code}: {message})", meta.name))
            }
            other => self.refused(chat, "upload", other),
        })?;
        // an image's token comes with the upload's answer, a video's with the upload URL
        let token = upload_token(&answer)
            .or_else(|| target.get("token").and_then(Value::as_str).map(str::to_owned))
            .ok_or_else(|| SendError::Transient(format!("OK's upload gave no token for {:?}: {answer}", meta.name)))?;
        let attachment = json!({"type": kind, "payload": {"token": token}});
        self.keep_upload(key, &attachment);
        Ok((attachment, true))
    }
}

#[async_trait]
impl Outbound for OkOutbound {
    fn file_delivery(&self) -> FileDelivery {
        if self.images_by_link { FileDelivery::Link } else { FileDelivery::Upload }
    }

    async fn send(&self, chat: &str, mut part: Part) -> Result<String, SendError> {
        if part.contact.is_some() || part.location.is_some() || part.sticker_id.is_some() || part.forward_of.is_some() {
            return Err(SendError::Permanent(
                "OK cannot send contacts, locations, stickers or forwards (the channel table refuses them)".into(),
            ));
        }
        let mut attachments = Vec::new();
        let mut fresh = false;
        if let Some(file) = part.file.take() {
            let (attachment, uploaded) = self.attachment(chat, &part.idempotency_key, file).await?;
            attachments.push(attachment);
            fresh = uploaded;
        }
        if let Some(k) = &part.keyboard
            && let Some(k) = keyboard(k).map_err(SendError::Permanent)?
        {
            attachments.push(k);
        }
        let body = message_body(chat, part.text.as_deref(), attachments, part.reply_to.as_deref());
        let segments: Vec<&str> =
            if chat.starts_with("user:") { vec!["me", "messages"] } else { vec!["me", "messages", chat] };
        let mut tries = 0;
        let answer = loop {
            tries += 1;
            match self.api.post("messages", &segments, &[], &body).await {
                Ok(answer) => break answer,
                // OK may still be processing a file uploaded just now
                Err(CallError::Ok { code, message })
                    if fresh
                        && tries < NOT_READY_TRIES
                        && matches!(classify(code, &message, self.api.codes()), Refusal::Transient(_)) =>
                {
                    tokio::time::sleep(self.processing_wait * tries).await;
                }
                Err(e) => return Err(self.refused(chat, "messages", e)),
            }
        };
        self.succeeded(chat);
        if chat.starts_with("user:") {
            // `{"success": [true], "chat_ids": ["chat:..."]}`: one result per user
            return match answer.get("success").and_then(|s| s.get(0)).and_then(Value::as_bool) {
                Some(true) => Ok(sent_id(&answer).unwrap_or_else(|| format!("sent:{}", part.idempotency_key))),
                Some(false) => Err(SendError::Permanent(
                    "OK did not deliver it: the customer has not allowed messages from the group".into(),
                )),
                None => Err(SendError::Transient(format!("OK answered a message to a user with {answer}"))),
            };
        }
        match answer.get("success").and_then(Value::as_bool) {
            Some(true) => Ok(sent_id(&answer).unwrap_or_else(|| format!("sent:{}", part.idempotency_key))),
            _ => Err(SendError::Transient(format!("OK answered a message with {answer}"))),
        }
    }

    async fn edit(&self, _chat: &str, _external_id: &str, _text: &str, _caption: bool) -> Result<(), SendError> {
        Err(SendError::Permanent("OK has no way to edit a message the group sent".into()))
    }

    async fn delete(&self, _chat: &str, _external_id: &str) -> Result<(), SendError> {
        Err(SendError::Permanent("OK has no way to delete a message the group sent".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ok::mapping::ErrorCodes;

    fn outbound() -> OkOutbound {
        let health = crate::channel::AccountHealth::detached(Uuid::nil(), schema::domain::Channel::Ok);
        let api = Api::new(
            url::Url::parse("http://127.0.0.1:9/").unwrap(),
            "t".into(),
            ErrorCodes::default(),
            health,
            Uuid::nil(),
        );
        let files = FileServer::new(
            url::Url::parse("http://127.0.0.1:9/").unwrap(),
            None,
            None,
            schema::domain::Channel::Ok,
            Uuid::nil(),
        );
        OkOutbound::new(api, files, Uuid::nil(), false, Duration::from_millis(10))
    }

    #[tokio::test]
    async fn errors_map_to_waits_retries_and_failures() {
        let out = outbound();
        let ok = |code: i64, message: &str| CallError::Ok { code, message: message.into() };
        assert_eq!(out.refused("a", "messages", ok(8, "FLOOD_BLOCKED")), SendError::RetryAfter(Duration::from_secs(5)));
        assert_eq!(
            out.refused("a", "messages", ok(8, "FLOOD_BLOCKED")),
            SendError::RetryAfter(Duration::from_secs(10)),
            "doubling per chat"
        );
        assert_eq!(out.refused("b", "messages", ok(8, "FLOOD_BLOCKED")), SendError::RetryAfter(Duration::from_secs(5)));
        for _ in 0..20 {
            out.refused("a", "messages", ok(8, "x"));
        }
        assert_eq!(out.refused("a", "messages", ok(8, "x")), SendError::RetryAfter(FLOOD_AT_MOST));
        out.succeeded("a");
        assert_eq!(
            out.refused("a", "messages", ok(8, "x")),
            SendError::RetryAfter(Duration::from_secs(5)),
            "a success starts over"
        );
        assert_eq!(
            out.refused("c", "messages", CallError::TooMany(Some(Duration::from_secs(7)))),
            SendError::RetryAfter(Duration::from_secs(7))
        );
        assert!(
            matches!(out.refused("a", "messages", ok(102, "PARAM_SESSION_EXPIRED")), SendError::Transient(r) if r.contains("access_token"))
        );
        assert!(
            matches!(out.refused("a", "messages", ok(10, "PERMISSION_DENIED")), SendError::Permanent(r) if r.contains("not allowed"))
        );
        assert!(matches!(out.refused("a", "messages", ok(2, "SERVICE")), SendError::Transient(_)));
        assert!(matches!(
            out.refused("a", "messages", CallError::Transport("network error".into())),
            SendError::Transient(_)
        ));
    }

    #[tokio::test]
    async fn what_ok_cannot_carry_fails_without_a_call() {
        let out = outbound();
        let part =
            Part { contact: Some(schema::domain::Contact { phone: "+7".into(), name: "x".into() }), ..Part::default() };
        assert!(matches!(out.send("chat:1", part).await, Err(SendError::Permanent(_))));
        assert!(matches!(out.edit("chat:1", "mid:1", "x", false).await, Err(SendError::Permanent(_))));
        assert!(matches!(out.delete("chat:1", "mid:1").await, Err(SendError::Permanent(_))));
    }
}
