//! The channel's outbound side, the same for every provider: a [`Part`] becomes one
//! [`Outgoing`] message (pure, [`outgoing`]), the provider sends it, and its [`Refusal`] becomes
//! what the outbox does next: rate limits waited for (never failures), 131047 as the window's
//! failure, a refused account reported unhealthy while its messages wait.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use schema::domain::Keyboard;
use tracing::{error, warn};
use uuid::Uuid;

use super::provider::{Choice, Content, MediaKind, Outgoing, Provider, Refusal};
use crate::channel::AccountHealth;
use crate::platform::{FileDelivery, Outbound, Part, SendError};

/// Reply buttons per message, and their title's length.
pub const BUTTONS_MAX: usize = 3;
pub const BUTTON_TITLE_MAX: usize = 20;
pub const BUTTON_ID_MAX: usize = 256;
/// Rows of a list message, their title's length and id's.
pub const ROWS_MAX: usize = 10;
pub const ROW_TITLE_MAX: usize = 24;
pub const ROW_ID_MAX: usize = 200;
/// The text of an interactive message.
pub const INTERACTIVE_BODY_MAX: usize = 1024;
/// The label of the button that opens a list.
pub const LIST_BUTTON: &str = "Choose";

/// The first wait after the number's throughput limit (130429 and the like); it doubles while
/// they repeat, up to [`ACCOUNT_WAIT_MAX`].
const ACCOUNT_WAIT_FIRST: Duration = Duration::from_secs(1);
const ACCOUNT_WAIT_MAX: Duration = Duration::from_secs(60);
/// The first wait after the per-customer limit (131056: about one message every 6 s), doubling
/// per customer up to [`CHAT_WAIT_MAX`].
const CHAT_WAIT_FIRST: Duration = Duration::from_secs(6);
const CHAT_WAIT_MAX: Duration = Duration::from_secs(300);

/// The WhatsApp kind of a file of this MIME type (WhatsApp takes JPEG and PNG images, MP4 and
/// 3GP video, AAC, AMR, MP3, M4A and OGG audio; anything else goes as a document).
pub fn media_kind(mime: &str, as_sticker: bool) -> MediaKind {
    let mime = mime.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    match mime.as_str() {
        "image/webp" if as_sticker => MediaKind::Sticker,
        "image/jpeg" | "image/png" => MediaKind::Image,
        "video/mp4" | "video/3gpp" => MediaKind::Video,
        "audio/aac" | "audio/amr" | "audio/mpeg" | "audio/mp4" | "audio/ogg" | "audio/opus" => MediaKind::Audio,
        _ => MediaKind::Document,
    }
}

fn chars(s: &str) -> usize {
    s.chars().count()
}

fn cut(s: &str, max: usize) -> String {
    if chars(s) <= max { s.to_owned() } else { s.chars().take(max - 1).chain(['…']).collect() }
}

/// One part as the provider's message, or why WhatsApp cannot take it.
pub fn outgoing(part: Part) -> Result<Outgoing, SendError> {
    let key = part.idempotency_key.clone();
    let reply_to = part.reply_to.clone();
    let text = part.text.filter(|t| !t.trim().is_empty());
    let content = if let Some(template) = part.template {
        Content::Template(template)
    } else if let Some(location) = part.location {
        Content::Location(location)
    } else if let Some(contact) = part.contact {
        Content::Contact(contact)
    } else if let Some(sticker) = part.sticker_id {
        Content::StickerId(sticker)
    } else if part.forward_of.is_some() {
        return Err(SendError::Permanent("WhatsApp has no forwarding of messages for businesses".into()));
    } else {
        let choices = match &part.keyboard {
            Some(Keyboard::Inline { rows }) => {
                rows.iter().flatten().map(|b| Choice { id: b.data.clone(), title: b.text.clone() }).collect()
            }
            Some(Keyboard::Reply { rows }) => {
                rows.iter().flatten().map(|b| Choice { id: b.text.clone(), title: b.text.clone() }).collect()
            }
            Some(Keyboard::Remove) | None => Vec::new(),
        };
        match (part.file, choices.is_empty()) {
            (Some(file), true) => {
                let kind = media_kind(&file.meta.mime, part.as_sticker);
                Content::Media { kind, caption: text.filter(|_| kind.takes_caption()), file }
            }
            (Some(_), false) => {
                return Err(SendError::Permanent(
                    "WhatsApp's buttons ride on a text message: send them with a text and no file".into(),
                ));
            }
            (None, true) => Content::Text {
                preview_url: text.as_deref().is_some_and(|t| t.contains("https://")),
                body: text.unwrap_or_default(),
            },
            (None, false) => interactive(text.unwrap_or_else(|| "Please choose:".into()), choices)?,
        }
    };
    Ok(Outgoing { key, reply_to, content })
}

/// Buttons (at most 3, titles ≤ 20) or else a list (at most 10 rows, titles cut to 24).
fn interactive(body: String, choices: Vec<Choice>) -> Result<Content, SendError> {
    if chars(&body) > INTERACTIVE_BODY_MAX {
        return Err(SendError::Permanent(format!(
            "the text of a WhatsApp message with buttons is at most {INTERACTIVE_BODY_MAX} characters"
        )));
    }
    if choices.iter().any(|c| c.id.is_empty() || c.title.trim().is_empty()) {
        return Err(SendError::Permanent("a WhatsApp button needs a title and data".into()));
    }
    if choices.len() <= BUTTONS_MAX
        && choices.iter().all(|c| chars(&c.title) <= BUTTON_TITLE_MAX && chars(&c.id) <= BUTTON_ID_MAX)
    {
        return Ok(Content::Buttons { body, buttons: choices });
    }
    if choices.len() > ROWS_MAX {
        return Err(SendError::Permanent(format!(
            "WhatsApp shows at most {ROWS_MAX} choices on a message; this one has {}",
            choices.len()
        )));
    }
    if let Some(long) = choices.iter().find(|c| chars(&c.id) > ROW_ID_MAX) {
        return Err(SendError::Permanent(format!(
            "a WhatsApp list row's data is at most {ROW_ID_MAX} characters ({:?} has {})",
            long.title,
            chars(&long.id)
        )));
    }
    let rows = choices.into_iter().map(|c| Choice { title: cut(&c.title, ROW_TITLE_MAX), id: c.id }).collect();
    Ok(Content::List { body, button: LIST_BUTTON.into(), rows })
}

/// The WhatsApp side of outbox work, through the account's provider.
pub struct WhatsAppOutbound {
    provider: Arc<dyn Provider>,
    health: AccountHealth,
    account_id: Uuid,
    /// Rate limits in a row, per chat (and `""` for the number's): a lookup or an increment,
    /// never held across an await.
    limited: Mutex<HashMap<String, u32>>,
}

impl WhatsAppOutbound {
    pub fn new(provider: Arc<dyn Provider>, health: AccountHealth, account_id: Uuid) -> Self {
        WhatsAppOutbound { provider, health, account_id, limited: Mutex::new(HashMap::new()) }
    }

    /// How long to wait after a rate limit: the platform's hint, else a wait that doubles while
    /// they repeat.
    fn wait(&self, chat: &str, per_chat: bool, hint: Option<Duration>) -> Duration {
        let (key, first, max) =
            if per_chat { (chat, CHAT_WAIT_FIRST, CHAT_WAIT_MAX) } else { ("", ACCOUNT_WAIT_FIRST, ACCOUNT_WAIT_MAX) };
        let mut limited = self.limited.lock().unwrap_or_else(|e| e.into_inner());
        if limited.len() > 10_000 {
            limited.clear();
        }
        let n = limited.entry(key.to_owned()).or_default();
        *n += 1;
        hint.unwrap_or_else(|| first.saturating_mul(1 << (*n - 1).min(10)).min(max))
    }

    fn succeeded(&self, chat: &str) {
        let mut limited = self.limited.lock().unwrap_or_else(|e| e.into_inner());
        if !limited.is_empty() {
            limited.remove(chat);
            limited.remove("");
        }
    }
}

#[async_trait]
impl Outbound for WhatsAppOutbound {
    fn file_delivery(&self) -> FileDelivery {
        self.provider.file_delivery()
    }

    fn takes_caption(&self, mime: &str) -> bool {
        media_kind(mime, false).takes_caption()
    }

    async fn send(&self, chat: &str, part: Part) -> Result<String, SendError> {
        let message = outgoing(part)?;
        match self.provider.send(chat, message).await {
            Ok(id) => {
                self.succeeded(chat);
                self.health.healthy();
                Ok(id)
            }
            Err(Refusal::RateLimited { per_chat, wait }) => {
                let wait = self.wait(chat, per_chat, wait);
                warn!(account = %self.account_id, chat, per_chat, ?wait, "WhatsApp rate limit: the message waits");
                Err(SendError::RetryAfter(wait))
            }
            Err(Refusal::OutsideWindow(reason)) => Err(SendError::Permanent(reason)),
            Err(Refusal::Unhealthy(reason)) => {
                error!(
                    account = %self.account_id,
                    provider = self.provider.name(),
                    "the WhatsApp account is refused: {reason}; its messages wait until it is fixed"
                );
                self.health.unhealthy(reason.clone());
                Err(SendError::Transient(reason))
            }
            Err(Refusal::Permanent(reason)) => Err(SendError::Permanent(reason)),
            Err(Refusal::Transient(reason)) => Err(SendError::Transient(reason)),
        }
    }

    async fn edit(&self, _chat: &str, _external_id: &str, _text: &str, _caption: bool) -> Result<(), SendError> {
        Err(SendError::Permanent("WhatsApp cannot edit or delete sent messages".into()))
    }

    async fn delete(&self, _chat: &str, _external_id: &str) -> Result<(), SendError> {
        Err(SendError::Permanent("WhatsApp cannot edit or delete sent messages".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::{FileBody, OutFile};
    use schema::domain::{Contact, FileRef, InlineButton, Location, Template};

    fn file(name: &str, mime: &str) -> OutFile {
        OutFile {
            meta: FileRef { id: Uuid::nil(), name: name.into(), mime: mime.into(), size: 10, url: String::new() },
            body: FileBody::Link(url::Url::parse("https://hub.example/api/v1/files/x?sig=1").unwrap()),
        }
    }

    fn buttons(n: usize, title: &str) -> Keyboard {
        Keyboard::Inline {
            rows: vec![(0..n).map(|i| InlineButton { text: format!("{title}{i}"), data: format!("d{i}") }).collect()],
        }
    }

    #[test]
    fn files_map_to_whatsapp_kinds_with_captions_where_shown() {
        assert_eq!(media_kind("image/jpeg", false), MediaKind::Image);
        assert_eq!(media_kind("image/webp", true), MediaKind::Sticker);
        assert_eq!(media_kind("image/webp", false), MediaKind::Document, "WhatsApp images are JPEG and PNG");
        assert_eq!(media_kind("video/mp4", false), MediaKind::Video);
        assert_eq!(media_kind("video/quicktime", false), MediaKind::Document);
        assert_eq!(media_kind("audio/ogg; codecs=opus", false), MediaKind::Audio);
        assert_eq!(media_kind("application/pdf", false), MediaKind::Document);
        let part =
            Part { text: Some("the receipt".into()), file: Some(file("r.jpg", "image/jpeg")), ..Part::default() };
        match outgoing(part).unwrap().content {
            Content::Media { kind: MediaKind::Image, caption, .. } => {
                assert_eq!(caption.as_deref(), Some("the receipt"))
            }
            other => panic!("{other:?}"),
        }
        let part = Part { text: Some("x".into()), file: Some(file("a.mp3", "audio/mpeg")), ..Part::default() };
        assert!(matches!(
            outgoing(part).unwrap().content,
            Content::Media { kind: MediaKind::Audio, caption: None, .. }
        ));
    }

    #[test]
    fn buttons_become_reply_buttons_or_a_list() {
        let part = Part {
            text: Some("Refund or resend?".into()),
            keyboard: Some(buttons(2, "Option ")),
            idempotency_key: "7:0".into(),
            reply_to: Some("wamid.IN1".into()),
            ..Part::default()
        };
        let out = outgoing(part).unwrap();
        assert_eq!((out.key.as_str(), out.reply_to.as_deref()), ("7:0", Some("wamid.IN1")));
        match out.content {
            Content::Buttons { body, buttons } => {
                assert_eq!(body, "Refund or resend?");
                assert_eq!(buttons[1], Choice { id: "d1".into(), title: "Option 1".into() });
            }
            other => panic!("{other:?}"),
        }
        let part = Part { text: Some("Pick".into()), keyboard: Some(buttons(5, "Option ")), ..Part::default() };
        assert!(matches!(outgoing(part).unwrap().content, Content::List { rows, .. } if rows.len() == 5));
        let long = "A rather long button title";
        let part = Part { text: Some("Pick".into()), keyboard: Some(buttons(2, long)), ..Part::default() };
        match outgoing(part).unwrap().content {
            Content::List { rows, button, .. } => {
                assert_eq!(button, LIST_BUTTON);
                assert_eq!(rows[0].title.chars().count(), ROW_TITLE_MAX);
                assert!(rows[0].title.ends_with('…'));
            }
            other => panic!("{other:?}"),
        }
        let part = Part { text: Some("Pick".into()), keyboard: Some(buttons(11, "o")), ..Part::default() };
        assert!(matches!(outgoing(part), Err(SendError::Permanent(m)) if m.contains("at most 10")));
        let part =
            Part { file: Some(file("a.pdf", "application/pdf")), keyboard: Some(buttons(1, "o")), ..Part::default() };
        assert!(matches!(outgoing(part), Err(SendError::Permanent(_))));
        let part = Part { text: Some("x".repeat(1025)), keyboard: Some(buttons(1, "o")), ..Part::default() };
        assert!(matches!(outgoing(part), Err(SendError::Permanent(m)) if m.contains("1024")));
        let part = Part { text: Some("plain".into()), keyboard: Some(Keyboard::Remove), ..Part::default() };
        assert!(
            matches!(outgoing(part).unwrap().content, Content::Text { body, preview_url: false } if body == "plain")
        );
    }

    #[test]
    fn the_other_contents() {
        let t = Template { name: "order_update".into(), language: "en".into(), params: vec!["7731".into()] };
        let part = Part { text: Some("Order 7731 shipped".into()), template: Some(t.clone()), ..Part::default() };
        assert!(matches!(outgoing(part).unwrap().content, Content::Template(got) if got == t));
        let l = Location { lat: 52.5, lon: 13.4, address: Some("Pariser Platz 1".into()) };
        let part = Part { location: Some(l.clone()), ..Part::default() };
        assert!(matches!(outgoing(part).unwrap().content, Content::Location(got) if got == l));
        let c = Contact { phone: "+49 30 1234".into(), name: "Desk".into() };
        let part = Part { contact: Some(c.clone()), ..Part::default() };
        assert!(matches!(outgoing(part).unwrap().content, Content::Contact(got) if got == c));
        let part = Part { sticker_id: Some("2210987654329".into()), ..Part::default() };
        assert!(matches!(outgoing(part).unwrap().content, Content::StickerId(id) if id == "2210987654329"));
        let part = Part { forward_of: Some("wamid.X".into()), ..Part::default() };
        assert!(matches!(outgoing(part), Err(SendError::Permanent(_))));
        let part = Part { text: Some("see https://track.example/1".into()), ..Part::default() };
        assert!(matches!(outgoing(part).unwrap().content, Content::Text { preview_url: true, .. }));
    }
}
