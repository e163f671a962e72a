//! The VK side of outbox work: `messages.send` with a `random_id` derived from the outbox row and
//! part (so a send repeated after a failover is dropped by VK, not delivered twice), files
//! uploaded through VK's upload servers first (streamed from the file server), `messages.edit`
//! and `messages.delete` of the community's own messages.
//!
//! A customer who turned the community's messages off (`message_deny`) is not written to: the
//! message fails at once, with the reason, without asking VK.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use sqlx::PgPool;
use tracing::warn;
use uuid::Uuid;

use super::api::{Api, CallError};
use super::mapping::{Refusal, UploadKind, attachment_strings, classify, send_params, upload_kind};
use crate::platform::{FileBody, FileDelivery, OutFile, Outbound, Part, SendError};

/// The longest wait after flood control (error 9) repeating to one chat.
const FLOOD_AT_MOST: Duration = Duration::from_secs(300);

/// Sends outbox work through one community.
pub struct VkOutbound {
    api: Api,
    pool: PgPool,
    account_id: Uuid,
    /// `settings.one_time_keyboards`: reply keyboards hide after a press.
    one_time: bool,
    /// Error 9 answers in a row per chat (std mutex: a lookup, never held across an await).
    flood: Mutex<HashMap<String, u32>>,
}

impl VkOutbound {
    pub fn new(api: Api, pool: PgPool, account_id: Uuid, one_time: bool) -> Self {
        VkOutbound { api, pool, account_id, one_time, flood: Mutex::new(HashMap::new()) }
    }

    /// The wait after a rate-limit answer: VK's per-second limit (6) passes in a second; flood
    /// control (9) doubles per chat while it repeats.
    fn rate_limited(&self, chat: &str, code: i64, first: Duration) -> Duration {
        if code != 9 {
            return first;
        }
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

    /// A VK error or no answer, as the runtime acts on it.
    fn refused(&self, chat: &str, method: &str, error: CallError) -> SendError {
        let (code, message) = match error {
            CallError::Transport(why) => return SendError::Transient(why),
            CallError::Vk { code, message } => (code, message),
        };
        match classify(code, &message) {
            Refusal::RateLimited(first) => {
                let wait = self.rate_limited(chat, code, first);
                warn!(account = %self.account_id, chat, method, code, ?wait, "VK rate limit: this chat waits");
                SendError::RetryAfter(wait)
            }
            // the account is reported by the API client; the rows wait, slower and slower
            Refusal::Transient(reason) | Refusal::Unhealthy(reason) => SendError::Transient(reason),
            Refusal::Permanent(reason) => SendError::Permanent(reason),
        }
    }

    /// Refuses at once a message to a customer who turned the community's messages off.
    async fn check_permission(&self, chat: &str) -> Result<(), SendError> {
        let permission = async {
            let mut conn = self.pool.acquire().await?;
            schema::store::vk_permission(&mut conn, self.account_id, chat).await
        }
        .await
        .map_err(|e| SendError::Transient(format!("cannot read the customer's permission: {e}")))?;
        match permission {
            Some(p) if !p.allowed => Err(SendError::Permanent(format!(
                "the customer turned off messages from this community on VK ({} UTC); they can be written to \
                 again once they allow them or write to the community",
                p.changed_at.format("%Y-%m-%d %H:%M")
            ))),
            _ => Ok(()),
        }
    }

    /// Uploads a file through VK's upload server and returns its `attachment` string.
    async fn upload(&self, chat: &str, peer: &str, file: OutFile, as_sticker: bool) -> Result<String, SendError> {
        let FileBody::Stream(stream) = file.body else {
            return Err(SendError::Permanent("VK takes files as uploads, not links".into()));
        };
        let meta = file.meta;
        let size = u64::try_from(meta.size).unwrap_or(0);
        let kind = upload_kind(&meta.mime, as_sticker);
        let refused_upload = |answer: &Value| {
            let why = answer
                .get("error_descr")
                .or_else(|| answer.get("error"))
                .map(|e| e.as_str().map(str::to_owned).unwrap_or_else(|| e.to_string()))
                .unwrap_or_else(|| answer.to_string());
            SendError::Permanent(format!("VK did not take the file {:?}: {why}", meta.name))
        };
        if kind == UploadKind::Photo {
            let server = self
                .api
                .call("photos.getMessagesUploadServer", &[("peer_id", peer.to_owned())])
                .await
                .map_err(|e| self.refused(chat, "photos.getMessagesUploadServer", e))?;
            let url = server.get("upload_url").and_then(Value::as_str).ok_or_else(|| {
                SendError::Transient("photos.getMessagesUploadServer answered without an upload_url".into())
            })?;
            let uploaded = self
                .api
                .upload(url, "photo", &meta.name, &meta.mime, size, stream)
                .await
                .map_err(|e| self.refused(chat, "upload", e))?;
            let photo = uploaded.get("photo").and_then(Value::as_str).unwrap_or_default();
            if photo.is_empty() || photo == "[]" || uploaded.get("error").is_some() {
                return Err(refused_upload(&uploaded));
            }
            let field = |name: &str| match uploaded.get(name) {
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => String::new(),
            };
            let saved = self
                .api
                .call(
                    "photos.saveMessagesPhoto",
                    &[("server", field("server")), ("photo", photo.to_owned()), ("hash", field("hash"))],
                )
                .await
                .map_err(|e| self.refused(chat, "photos.saveMessagesPhoto", e))?;
            let photo =
                saved.get(0).ok_or_else(|| SendError::Transient("photos.saveMessagesPhoto saved nothing".into()))?;
            return Ok(attachment("photo", photo));
        }
        let server = self
            .api
            .call("docs.getMessagesUploadServer", &[("peer_id", peer.to_owned()), ("type", kind.doc_type().to_owned())])
            .await
            .map_err(|e| self.refused(chat, "docs.getMessagesUploadServer", e))?;
        let url = server.get("upload_url").and_then(Value::as_str).ok_or_else(|| {
            SendError::Transient("docs.getMessagesUploadServer answered without an upload_url".into())
        })?;
        let uploaded = self
            .api
            .upload(url, "file", &meta.name, &meta.mime, size, stream)
            .await
            .map_err(|e| self.refused(chat, "upload", e))?;
        let Some(token) = uploaded.get("file").and_then(Value::as_str).filter(|f| !f.is_empty()) else {
            return Err(refused_upload(&uploaded));
        };
        let saved = self
            .api
            .call("docs.save", &[("file", token.to_owned()), ("title", meta.name.clone())])
            .await
            .map_err(|e| self.refused(chat, "docs.save", e))?;
        let kind = saved.get("type").and_then(Value::as_str).unwrap_or("doc");
        let doc = saved.get(kind).ok_or_else(|| SendError::Transient(format!("docs.save answered no {kind}")))?;
        Ok(attachment("doc", doc))
    }
}

/// `<kind><owner_id>_<id>[_<access_key>]`.
fn attachment(kind: &str, object: &Value) -> String {
    let int = |name: &str| object.get(name).and_then(Value::as_i64).unwrap_or(0);
    let key = object.get("access_key").and_then(Value::as_str).filter(|k| !k.is_empty());
    match key {
        Some(key) => format!("{kind}{}_{}_{key}", int("owner_id"), int("id")),
        None => format!("{kind}{}_{}", int("owner_id"), int("id")),
    }
}

/// The message id `messages.send` answered (a number; with `peer_ids`, an array of results).
fn sent_id(response: &Value) -> Option<i64> {
    response.as_i64().or_else(|| response.get(0).and_then(|r| r.get("message_id")).and_then(Value::as_i64))
}

#[async_trait]
impl Outbound for VkOutbound {
    fn file_delivery(&self) -> FileDelivery {
        FileDelivery::Upload
    }

    async fn send(&self, chat: &str, mut part: Part) -> Result<String, SendError> {
        let peer: i64 = chat.parse().map_err(|_| SendError::Permanent(format!("{chat:?} is not a VK peer id")))?;
        self.check_permission(chat).await?;
        let attachment = match part.file.take() {
            Some(file) => Some(self.upload(chat, &peer.to_string(), file, part.as_sticker).await?),
            None => None,
        };
        let params = send_params(chat, &part, attachment, self.one_time)?;
        let response =
            self.api.call("messages.send", &params).await.map_err(|e| self.refused(chat, "messages.send", e))?;
        self.succeeded(chat);
        match sent_id(&response) {
            Some(id) => Ok(id.to_string()),
            None => Err(SendError::Transient(format!("messages.send answered {response} instead of a message id"))),
        }
    }

    async fn edit(&self, chat: &str, external_id: &str, text: &str, caption: bool) -> Result<(), SendError> {
        let mut params = vec![
            ("peer_id", chat.to_owned()),
            ("message_id", external_id.to_owned()),
            ("message", text.to_owned()),
            ("keep_forward_messages", "1".to_owned()),
            ("keep_snippets", "1".to_owned()),
        ];
        if caption {
            // the files stay: give them again with the new text
            let found = self
                .api
                .call("messages.getById", &[("message_ids", external_id.to_owned())])
                .await
                .map_err(|e| self.refused(chat, "messages.getById", e))?;
            let message = found.get("items").and_then(|i| i.get(0)).cloned().unwrap_or(Value::Null);
            let attachments = attachment_strings(&message);
            if !attachments.is_empty() {
                params.push(("attachment", attachments.join(",")));
            }
        }
        self.api.call("messages.edit", &params).await.map_err(|e| self.refused(chat, "messages.edit", e))?;
        Ok(())
    }

    async fn delete(&self, chat: &str, external_id: &str) -> Result<(), SendError> {
        let params =
            [("message_ids", external_id.to_owned()), ("delete_for_all", "1".to_owned()), ("peer_id", chat.to_owned())];
        let response =
            self.api.call("messages.delete", &params).await.map_err(|e| self.refused(chat, "messages.delete", e))?;
        // `{"<id>": 1}` per message (older versions: a plain 1)
        let done = match &response {
            Value::Object(map) => map.get(external_id).is_none_or(|v| v.as_i64() == Some(1)),
            other => other.as_i64() == Some(1),
        };
        if done {
            Ok(())
        } else {
            Err(SendError::Permanent(format!("VK did not delete message {external_id}: {response}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn attachments_and_answers() {
        assert_eq!(
            attachment("photo", &json!({"id": 457239017, "owner_id": -231000555, "access_key": "ab12"})),
            "photo-231000555_457239017_ab12"
        );
        assert_eq!(attachment("doc", &json!({"id": 6, "owner_id": -231000555})), "doc-231000555_6");
        assert_eq!(sent_id(&json!(813)), Some(813));
        assert_eq!(sent_id(&json!([{"peer_id": 1, "message_id": 814, "conversation_message_id": 78}])), Some(814));
        assert_eq!(sent_id(&json!({"x": 1})), None);
    }

    fn outbound() -> VkOutbound {
        let health = crate::channel::AccountHealth::detached(Uuid::nil(), schema::domain::Channel::Vk);
        let api =
            Api::new(url::Url::parse("http://127.0.0.1:9/").unwrap(), "t".into(), "5.199".into(), health, Uuid::nil());
        let pool = PgPool::connect_lazy("postgres://unused@127.0.0.1:1/none").expect("a lazy pool");
        VkOutbound::new(api, pool, Uuid::nil(), true)
    }

    #[tokio::test]
    async fn rate_limits_wait_and_flood_control_doubles_per_chat() {
        let out = outbound();
        let vk = |code: i64| CallError::Vk { code, message: "x".into() };
        assert_eq!(out.refused("a", "messages.send", vk(6)), SendError::RetryAfter(Duration::from_secs(1)));
        assert_eq!(
            out.refused("a", "messages.send", vk(6)),
            SendError::RetryAfter(Duration::from_secs(1)),
            "6 does not grow"
        );
        assert_eq!(out.refused("a", "messages.send", vk(9)), SendError::RetryAfter(Duration::from_secs(3)));
        assert_eq!(out.refused("a", "messages.send", vk(9)), SendError::RetryAfter(Duration::from_secs(6)));
        assert_eq!(out.refused("b", "messages.send", vk(9)), SendError::RetryAfter(Duration::from_secs(3)), "per chat");
        for _ in 0..20 {
            out.refused("a", "messages.send", vk(9));
        }
        assert_eq!(out.refused("a", "messages.send", vk(9)), SendError::RetryAfter(FLOOD_AT_MOST));
        out.succeeded("a");
        assert_eq!(
            out.refused("a", "messages.send", vk(9)),
            SendError::RetryAfter(Duration::from_secs(3)),
            "a success starts over"
        );
        // the account refused: the row waits (the API client reports the account)
        assert!(
            matches!(out.refused("a", "messages.send", vk(5)), SendError::Transient(r) if r.contains("access_token"))
        );
        assert!(matches!(out.refused("a", "messages.send", vk(901)), SendError::Permanent(_)));
        assert!(matches!(
            out.refused("a", "messages.send", CallError::Transport("network error".into())),
            SendError::Transient(_)
        ));
    }
}
