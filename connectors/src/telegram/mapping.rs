//! Telegram's wire format to the domain and back, with no I/O: updates become inbound
//! messages (and the media to fetch for them), domain keyboards become reply markup, teloxide's
//! errors become what the runtime does next.

use std::time::Duration;

use schema::domain::{Contact, Forwarded, Keyboard, Location, MessageKind};
use schema::store::{InboundMessage, Sender};
use teloxide::types::{
    ButtonRequest, Chat, InlineKeyboardButton, InlineKeyboardMarkup, KeyboardButton, KeyboardMarkup, KeyboardRemove,
    MediaKind, Message, MessageKind as TgKind, MessageOrigin, ReplyMarkup, Update, UpdateKind, User,
};
use teloxide::{ApiError, RequestError};
use uuid::Uuid;

use crate::platform::SendError;

/// A file Telegram holds for an inbound message, to fetch with `getFile`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    pub file_id: String,
    /// Bytes, when Telegram says.
    pub size: Option<u64>,
    /// Telegram's name for it, or one made from its kind (`getFile` keeps neither name nor
    /// type, so both come from the message).
    pub name: String,
    pub mime: String,
}

/// An inbound message as mapped, before its media is fetched.
#[derive(Debug, Clone)]
pub struct Draft {
    /// `file_ids` empty: the runtime fills it once the media is in the file server.
    pub message: InboundMessage,
    pub media: Option<Media>,
    /// The customer's Telegram user id (for the avatar).
    pub user_id: u64,
}

/// What one update means for the hub.
#[derive(Debug, Clone)]
pub enum Mapped {
    /// A customer message.
    Message(Box<Draft>),
    /// The customer edited a message stored before.
    Edit { external_message_id: String, text: String },
    /// An inline button press: stored as a text message with the button's data; the query
    /// must be answered (`answerCallbackQuery`) after the commit.
    Callback { draft: Box<Draft>, query_id: String },
    /// Nothing to store (service messages, channel posts, other update kinds).
    Ignore(&'static str),
}

/// `<chat_id>:<message_id>`: Telegram message ids are unique per chat only.
pub fn external_id(chat: i64, message_id: i32) -> String {
    format!("{chat}:{message_id}")
}

/// Splits an external id back into chat and message id.
pub fn parse_external_id(external: &str) -> Option<(i64, i32)> {
    let (chat, id) = external.rsplit_once(':')?;
    Some((chat.parse().ok()?, id.parse().ok()?))
}

fn sender(user: &User) -> Sender {
    Sender {
        external_id: user.id.0.to_string(),
        name: user.full_name(),
        username: user.username.clone(),
        phone: None,
        avatar_url: None,
    }
}

fn chat_name(chat: &Chat) -> Option<String> {
    chat.title().map(str::to_owned).or_else(|| {
        let first = chat.first_name()?;
        Some(match chat.last_name() {
            Some(last) => format!("{first} {last}"),
            None => first.to_owned(),
        })
    })
}

fn forwarded(origin: &MessageOrigin) -> Forwarded {
    let from_name = match origin {
        MessageOrigin::User { sender_user, .. } => Some(sender_user.full_name()),
        MessageOrigin::HiddenUser { sender_user_name, .. } => Some(sender_user_name.clone()),
        MessageOrigin::Chat { sender_chat, .. } => chat_name(sender_chat),
        MessageOrigin::Channel { chat, .. } => chat_name(chat),
    };
    Forwarded { from_name, date: Some(origin.date()) }
}

fn size(meta_size: u32) -> Option<u64> {
    // teloxide fills an absent file_size with u32::MAX
    (meta_size != u32::MAX).then_some(u64::from(meta_size))
}

fn mime_or(mime: Option<&str>, default: &str) -> String {
    mime.unwrap_or(default).to_owned()
}

/// Kind, text, media, location and contact of a message's content.
type Content = (MessageKind, Option<String>, Option<Media>, Option<Location>, Option<Contact>);

fn content(media: &MediaKind) -> Option<Content> {
    use MediaKind as M;
    Some(match media {
        M::Text(t) => (MessageKind::Text, Some(t.text.clone()), None, None, None),
        M::Photo(p) => {
            let largest = p.photo.iter().max_by_key(|s| (u64::from(s.width) * u64::from(s.height), s.file.size))?;
            let media = Media {
                file_id: largest.file.id.0.clone(),
                size: size(largest.file.size),
                name: format!("photo_{}.jpg", largest.file.unique_id.0),
                mime: "image/jpeg".into(),
            };
            (MessageKind::Image, p.caption.clone(), Some(media), None, None)
        }
        M::Video(v) => {
            let media = Media {
                file_id: v.video.file.id.0.clone(),
                size: size(v.video.file.size),
                name: v.video.file_name.clone().unwrap_or_else(|| format!("video_{}.mp4", v.video.file.unique_id.0)),
                mime: mime_or(v.video.mime_type.as_ref().map(|m| m.essence_str()), "video/mp4"),
            };
            (MessageKind::Video, v.caption.clone(), Some(media), None, None)
        }
        M::Animation(a) => {
            let media = Media {
                file_id: a.animation.file.id.0.clone(),
                size: size(a.animation.file.size),
                name: a
                    .animation
                    .file_name
                    .clone()
                    .unwrap_or_else(|| format!("animation_{}.mp4", a.animation.file.unique_id.0)),
                mime: mime_or(a.animation.mime_type.as_ref().map(|m| m.essence_str()), "video/mp4"),
            };
            (MessageKind::Video, a.caption.clone(), Some(media), None, None)
        }
        M::VideoNote(v) => {
            let media = Media {
                file_id: v.video_note.file.id.0.clone(),
                size: size(v.video_note.file.size),
                name: format!("video_note_{}.mp4", v.video_note.file.unique_id.0),
                mime: "video/mp4".into(),
            };
            (MessageKind::Video, None, Some(media), None, None)
        }
        M::Audio(a) => {
            let media = Media {
                file_id: a.audio.file.id.0.clone(),
                size: size(a.audio.file.size),
                name: a.audio.file_name.clone().unwrap_or_else(|| format!("audio_{}.mp3", a.audio.file.unique_id.0)),
                mime: mime_or(a.audio.mime_type.as_ref().map(|m| m.essence_str()), "audio/mpeg"),
            };
            (MessageKind::Audio, a.caption.clone(), Some(media), None, None)
        }
        M::Voice(v) => {
            let media = Media {
                file_id: v.voice.file.id.0.clone(),
                size: size(v.voice.file.size),
                name: format!("voice_{}.ogg", v.voice.file.unique_id.0),
                mime: mime_or(v.voice.mime_type.as_ref().map(|m| m.essence_str()), "audio/ogg"),
            };
            (MessageKind::Voice, v.caption.clone(), Some(media), None, None)
        }
        M::Sticker(s) => {
            let sticker = &s.sticker;
            let (ext, mime) = if sticker.is_animated() {
                ("tgs", "application/x-tgsticker")
            } else if sticker.is_video() {
                ("webm", "video/webm")
            } else {
                ("webp", "image/webp")
            };
            let media = Media {
                file_id: sticker.file.id.0.clone(),
                size: size(sticker.file.size),
                name: format!("sticker_{}.{ext}", sticker.file.unique_id.0),
                mime: mime.into(),
            };
            (MessageKind::Sticker, sticker.emoji.clone(), Some(media), None, None)
        }
        M::Document(d) => {
            let media = Media {
                file_id: d.document.file.id.0.clone(),
                size: size(d.document.file.size),
                name: d
                    .document
                    .file_name
                    .clone()
                    .unwrap_or_else(|| format!("document_{}", d.document.file.unique_id.0)),
                mime: mime_or(d.document.mime_type.as_ref().map(|m| m.essence_str()), "application/octet-stream"),
            };
            (MessageKind::Document, d.caption.clone(), Some(media), None, None)
        }
        M::Location(l) => (
            MessageKind::Location,
            None,
            None,
            Some(Location { lat: l.location.latitude, lon: l.location.longitude, address: None }),
            None,
        ),
        M::Venue(v) => (
            MessageKind::Location,
            Some(v.venue.title.clone()),
            None,
            Some(Location {
                lat: v.venue.location.latitude,
                lon: v.venue.location.longitude,
                address: Some(v.venue.address.clone()),
            }),
            None,
        ),
        M::Contact(c) => {
            let name = match &c.contact.last_name {
                Some(last) => format!("{} {last}", c.contact.first_name),
                None => c.contact.first_name.clone(),
            };
            (MessageKind::Contact, None, None, None, Some(Contact { phone: c.contact.phone_number.clone(), name }))
        }
        M::Poll(p) => (MessageKind::Text, Some(format!("📊 {}", p.poll.question)), None, None, None),
        _ => return None,
    })
}

/// A customer message, if `message` is one.
pub fn map_message(account_id: Uuid, message: &Message) -> Option<Draft> {
    let from = message.from.as_ref().filter(|u| !u.is_bot)?;
    let chat = message.chat.id.0;
    let (kind, text, media, location, contact, forward, reply) = match &message.kind {
        TgKind::Common(common) => {
            let (kind, text, media, location, contact) = content(&common.media_kind)?;
            let reply = common.reply_to_message.as_ref().map(|r| external_id(r.chat.id.0, r.id.0));
            (kind, text, media, location, contact, common.forward_origin.as_ref().map(forwarded), reply)
        }
        TgKind::Dice(d) => {
            let emoji = serde_json::to_value(d.dice.emoji).ok().and_then(|v| v.as_str().map(str::to_owned));
            (MessageKind::Text, emoji, None, None, None, None, None)
        }
        _ => return None,
    };
    let mut sender = sender(from);
    if let Some(c) = &contact {
        // the request-phone keyboard sends the customer's own contact: their phone
        if let TgKind::Common(common) = &message.kind
            && let MediaKind::Contact(mc) = &common.media_kind
            && mc.contact.user_id == Some(from.id)
        {
            sender.phone = Some(c.phone.clone());
        }
    }
    // an inbound sticker keeps its Telegram file id, so an agent can send the same sticker back
    let sticker_id = media.as_ref().filter(|_| kind == MessageKind::Sticker).map(|m| m.file_id.clone());
    Some(Draft {
        message: InboundMessage {
            account_id,
            external_message_id: external_id(chat, message.id.0),
            chat_id: chat.to_string(),
            sender,
            kind,
            text,
            file_ids: Vec::new(),
            location,
            contact,
            reply_to_external_id: reply,
            forwarded: forward,
            sent_at: Some(message.date),
            sticker_id,
        },
        media,
        user_id: from.id.0,
    })
}

/// What an update means (see [`Mapped`]).
pub fn map_update(account_id: Uuid, update: &Update) -> Mapped {
    match &update.kind {
        UpdateKind::Message(m) => match map_message(account_id, m) {
            Some(draft) => Mapped::Message(Box::new(draft)),
            None => Mapped::Ignore("not a customer message"),
        },
        UpdateKind::EditedMessage(m) => {
            let text = match &m.kind {
                TgKind::Common(common) => match &common.media_kind {
                    MediaKind::Text(t) => Some(t.text.clone()),
                    MediaKind::Photo(p) => p.caption.clone(),
                    MediaKind::Video(v) => v.caption.clone(),
                    MediaKind::Document(d) => d.caption.clone(),
                    MediaKind::Audio(a) => a.caption.clone(),
                    MediaKind::Animation(a) => a.caption.clone(),
                    _ => None,
                },
                _ => None,
            };
            match text {
                Some(text) => Mapped::Edit { external_message_id: external_id(m.chat.id.0, m.id.0), text },
                None => Mapped::Ignore("an edit without text"),
            }
        }
        UpdateKind::CallbackQuery(q) => {
            let chat = q.message.as_ref().map(|m| m.chat().id.0).unwrap_or(q.from.id.0 as i64);
            let pressed_on = q.message.as_ref().map(|m| external_id(m.chat().id.0, m.id().0));
            let data = q.data.clone().unwrap_or_default();
            let draft = Draft {
                message: InboundMessage {
                    account_id,
                    external_message_id: format!("cb:{}", q.id.0),
                    chat_id: chat.to_string(),
                    sender: sender(&q.from),
                    kind: MessageKind::Text,
                    text: Some(data),
                    file_ids: Vec::new(),
                    location: None,
                    contact: None,
                    reply_to_external_id: pressed_on,
                    forwarded: None,
                    sent_at: None,
                    sticker_id: None,
                },
                media: None,
                user_id: q.from.id.0,
            };
            Mapped::Callback { draft: Box::new(draft), query_id: q.id.0.clone() }
        }
        UpdateKind::MyChatMember(_) => Mapped::Ignore("membership change"),
        _ => Mapped::Ignore("update kind not handled"),
    }
}

/// The domain keyboard as Telegram reply markup.
pub fn reply_markup(keyboard: &Keyboard) -> ReplyMarkup {
    match keyboard {
        Keyboard::Reply { rows } => {
            let rows: Vec<Vec<KeyboardButton>> = rows
                .iter()
                .map(|row| {
                    row.iter()
                        .map(|b| {
                            let button = KeyboardButton::new(b.text.clone());
                            if b.request_phone { button.request(ButtonRequest::Contact) } else { button }
                        })
                        .collect()
                })
                .collect();
            ReplyMarkup::Keyboard(KeyboardMarkup::new(rows).resize_keyboard().one_time_keyboard())
        }
        Keyboard::Inline { rows } => ReplyMarkup::InlineKeyboard(InlineKeyboardMarkup::new(
            rows.iter()
                .map(|row| row.iter().map(|b| InlineKeyboardButton::callback(b.text.clone(), b.data.clone())).collect())
                .collect::<Vec<Vec<_>>>(),
        )),
        Keyboard::Remove => ReplyMarkup::KeyboardRemove(KeyboardRemove::new()),
    }
}

/// Descriptions that mean a request will never succeed as it is (Telegram's 4xx families).
const PERMANENT_PREFIXES: &[&str] =
    &["Bad Request", "Forbidden", "Unauthorized", "Not Found", "Conflict", "Request Entity Too Large"];

/// What the runtime does after teloxide reports `error`.
pub fn classify(error: &RequestError) -> SendError {
    match error {
        RequestError::RetryAfter(secs) => SendError::RetryAfter(secs.duration().max(Duration::from_secs(1))),
        RequestError::Api(ApiError::Unknown(text)) => {
            if PERMANENT_PREFIXES.iter().any(|p| text.starts_with(p)) {
                SendError::Permanent(text.clone())
            } else {
                // "Internal Server Error", "Bad Gateway"...: Telegram's 5xx
                SendError::Transient(text.clone())
            }
        }
        RequestError::Api(api) => SendError::Permanent(api.to_string()),
        RequestError::MigrateToChatId(to) => SendError::Permanent(format!("the group moved to chat {to}")),
        RequestError::Network(e) => SendError::Transient(format!("network error: {e}")),
        RequestError::InvalidJson { raw, .. } => SendError::Transient(format!(
            "unreadable answer from Telegram: {}",
            raw.chars().take(200).collect::<String>()
        )),
        RequestError::Io(e) => SendError::Transient(format!("I/O error: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn update(value: serde_json::Value) -> Update {
        // from text, as teloxide reads it (its Update does not deserialize from a `Value`)
        serde_json::from_str(&value.to_string()).expect("a valid update")
    }

    fn olga() -> serde_json::Value {
        json!({"id": 421000777, "is_bot": false, "first_name": "Olga", "last_name": "K", "username": "olga_k"})
    }

    fn msg(extra: serde_json::Value) -> serde_json::Value {
        let mut m = json!({"message_id": 311, "date": 1767225600, "from": olga(),
            "chat": {"id": 421000777, "type": "private", "first_name": "Olga"}});
        m.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        json!({"update_id": 880001201, "message": m})
    }

    fn draft(value: serde_json::Value) -> Draft {
        match map_update(Uuid::nil(), &update(value)) {
            Mapped::Message(d) => *d,
            other => panic!("not a message: {other:?}"),
        }
    }

    #[test]
    fn text_with_emoji() {
        let d = draft(msg(json!({"text": "Добрый день! 👋 Где мой заказ 5521?"})));
        assert_eq!(d.message.external_message_id, "421000777:311");
        assert_eq!(d.message.chat_id, "421000777");
        assert_eq!(d.message.kind, MessageKind::Text);
        assert_eq!(d.message.text.as_deref(), Some("Добрый день! 👋 Где мой заказ 5521?"));
        assert_eq!(d.message.sender.external_id, "421000777");
        assert_eq!(d.message.sender.name, "Olga K");
        assert_eq!(d.message.sender.username.as_deref(), Some("olga_k"));
        assert_eq!(d.user_id, 421000777);
        assert!(d.media.is_none());
    }

    #[test]
    fn photo_takes_the_largest_size_and_the_caption() {
        let d = draft(msg(json!({"photo": [
            {"file_id": "small", "file_unique_id": "s1", "width": 90, "height": 68, "file_size": 1420},
            {"file_id": "large", "file_unique_id": "s2", "width": 1280, "height": 960, "file_size": 188311},
            {"file_id": "mid", "file_unique_id": "s3", "width": 320, "height": 240, "file_size": 20000}],
            "caption": "Вот чек"})));
        assert_eq!(d.message.kind, MessageKind::Image);
        assert_eq!(d.message.text.as_deref(), Some("Вот чек"));
        let media = d.media.unwrap();
        assert_eq!(media.file_id, "large");
        assert_eq!(media.size, Some(188311));
        assert_eq!(media.name, "photo_s2.jpg");
        assert_eq!(media.mime, "image/jpeg");
    }

    #[test]
    fn every_file_kind_keeps_its_name_and_type() {
        let cases = [
            (
                json!({"document": {"file_id": "d", "file_unique_id": "u", "file_name": "act.pdf", "mime_type": "application/pdf", "file_size": 48213}}),
                MessageKind::Document,
                "act.pdf",
                "application/pdf",
            ),
            (
                json!({"video": {"file_id": "v", "file_unique_id": "u", "width": 640, "height": 480, "duration": 3, "mime_type": "video/mp4", "file_size": 1000}}),
                MessageKind::Video,
                "video_u.mp4",
                "video/mp4",
            ),
            (
                json!({"audio": {"file_id": "a", "file_unique_id": "u", "duration": 60, "file_name": "song.mp3", "mime_type": "audio/mpeg", "file_size": 1000}}),
                MessageKind::Audio,
                "song.mp3",
                "audio/mpeg",
            ),
            (
                json!({"voice": {"file_id": "o", "file_unique_id": "u", "duration": 2, "mime_type": "audio/ogg", "file_size": 1000}}),
                MessageKind::Voice,
                "voice_u.ogg",
                "audio/ogg",
            ),
            (
                json!({"sticker": {"file_id": "s", "file_unique_id": "u", "width": 512, "height": 512, "type": "regular", "is_animated": false, "is_video": false, "emoji": "😀", "file_size": 1000}}),
                MessageKind::Sticker,
                "sticker_u.webp",
                "image/webp",
            ),
        ];
        for (content, kind, name, mime) in cases {
            let d = draft(msg(content.clone()));
            assert_eq!(d.message.kind, kind, "{content}");
            let media = d.media.expect("media");
            assert_eq!((media.name.as_str(), media.mime.as_str()), (name, mime), "{content}");
        }
        let sticker = draft(msg(cases_sticker()));
        assert_eq!(sticker.message.text.as_deref(), Some("😀"), "a sticker's emoji is its text");
    }

    fn cases_sticker() -> serde_json::Value {
        json!({"sticker": {"file_id": "s", "file_unique_id": "u", "width": 512, "height": 512, "type": "regular", "is_animated": false, "is_video": false, "emoji": "😀"}})
    }

    #[test]
    fn location_venue_and_contact() {
        let d = draft(msg(json!({"location": {"latitude": 55.7539, "longitude": 37.6208}})));
        assert_eq!(d.message.kind, MessageKind::Location);
        assert_eq!(d.message.location, Some(Location { lat: 55.7539, lon: 37.6208, address: None }));

        let d =
            draft(msg(json!({"contact": {"phone_number": "79161234567", "first_name": "Olga", "user_id": 421000777}})));
        assert_eq!(d.message.kind, MessageKind::Contact);
        assert_eq!(d.message.contact, Some(Contact { phone: "79161234567".into(), name: "Olga".into() }));
        assert_eq!(d.message.sender.phone.as_deref(), Some("79161234567"), "their own number: the customer's phone");

        let d = draft(msg(json!({"contact": {"phone_number": "70000000000", "first_name": "Ivan", "last_name": "P"}})));
        assert_eq!(d.message.contact.as_ref().unwrap().name, "Ivan P");
        assert_eq!(d.message.sender.phone, None, "someone else's contact is not the customer's phone");
    }

    #[test]
    fn forwarded_and_replies() {
        let d = draft(msg(json!({"text": "look",
            "forward_origin": {"type": "user", "date": 1767225000, "sender_user": {"id": 5, "is_bot": false, "first_name": "Ivan"}},
            "reply_to_message": {"message_id": 300, "date": 1767225500, "chat": {"id": 421000777, "type": "private"}, "text": "earlier"}})));
        let f = d.message.forwarded.unwrap();
        assert_eq!(f.from_name.as_deref(), Some("Ivan"));
        assert_eq!(f.date.unwrap().timestamp(), 1767225000);
        assert_eq!(d.message.reply_to_external_id.as_deref(), Some("421000777:300"));
    }

    #[test]
    fn callback_query_becomes_a_text_with_the_buttons_data() {
        let u = update(json!({"update_id": 880001203,
            "callback_query": {"id": "9215307781101010", "from": olga(),
              "message": {"message_id": 315, "date": 1767225700, "chat": {"id": 421000777, "type": "private"}, "text": "Оцените ответ"},
              "chat_instance": "-5591277001", "data": "csat:5"}}));
        let Mapped::Callback { draft, query_id } = map_update(Uuid::nil(), &u) else { panic!() };
        assert_eq!(query_id, "9215307781101010");
        assert_eq!(draft.message.text.as_deref(), Some("csat:5"));
        assert_eq!(draft.message.external_message_id, "cb:9215307781101010");
        assert_eq!(draft.message.reply_to_external_id.as_deref(), Some("421000777:315"));
        assert_eq!(draft.message.chat_id, "421000777");
    }

    #[test]
    fn edited_message_and_ignored_updates() {
        let u = update(
            json!({"update_id": 2, "edited_message": {"message_id": 311, "date": 1767225600, "edit_date": 1767225700,
            "from": olga(), "chat": {"id": 421000777, "type": "private"}, "text": "fixed"}}),
        );
        match map_update(Uuid::nil(), &u) {
            Mapped::Edit { external_message_id, text } => {
                assert_eq!(external_message_id, "421000777:311");
                assert_eq!(text, "fixed");
            }
            other => panic!("{other:?}"),
        }
        let u = update(
            json!({"update_id": 3, "my_chat_member": {"chat": {"id": 1, "type": "private"}, "from": olga(), "date": 1,
            "old_chat_member": {"user": olga(), "status": "member"}, "new_chat_member": {"user": olga(), "status": "kicked", "until_date": 0}}}),
        );
        assert!(matches!(map_update(Uuid::nil(), &u), Mapped::Ignore(_)));
        let u = update(
            json!({"update_id": 4, "message": {"message_id": 1, "date": 1, "chat": {"id": 1, "type": "private"},
            "from": {"id": 9, "is_bot": true, "first_name": "bot"}, "text": "from a bot"}}),
        );
        assert!(matches!(map_update(Uuid::nil(), &u), Mapped::Ignore(_)));
    }

    #[test]
    fn keyboards_map_to_markup() {
        let k: Keyboard = serde_json::from_value(
            json!({"type": "reply", "rows": [[{"text": "📱 Send my number", "request_phone": true}, {"text": "No"}]]}),
        )
        .unwrap();
        let v = serde_json::to_value(reply_markup(&k)).unwrap();
        assert_eq!(v["keyboard"][0][0], json!({"text": "📱 Send my number", "request_contact": true}));
        assert_eq!(v["keyboard"][0][1], json!({"text": "No"}));
        assert_eq!(v["one_time_keyboard"], true);
        let k: Keyboard =
            serde_json::from_value(json!({"type": "inline", "rows": [[{"text": "👍", "data": "csat:5"}]]})).unwrap();
        let v = serde_json::to_value(reply_markup(&k)).unwrap();
        assert_eq!(v["inline_keyboard"][0][0], json!({"text": "👍", "callback_data": "csat:5"}));
        let v = serde_json::to_value(reply_markup(&Keyboard::Remove)).unwrap();
        assert_eq!(v["remove_keyboard"], true);
    }

    #[test]
    fn external_ids_round_trip() {
        assert_eq!(parse_external_id(&external_id(-1001234, 77)), Some((-1001234, 77)));
        assert_eq!(parse_external_id("cb:1"), None);
    }

    #[test]
    fn errors_are_classified_by_telegrams_description() {
        let parse = |body: &str| -> RequestError {
            // the way teloxide reads an error answer
            #[derive(serde::Deserialize)]
            struct E {
                description: ApiError,
                parameters: Option<teloxide::types::ResponseParameters>,
            }
            let e: E = serde_json::from_str(body).unwrap();
            match e.parameters {
                Some(teloxide::types::ResponseParameters::RetryAfter(s)) => RequestError::RetryAfter(s),
                _ => RequestError::Api(e.description),
            }
        };
        assert_eq!(
            classify(&parse(
                r#"{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 7","parameters":{"retry_after":7}}"#
            )),
            SendError::RetryAfter(Duration::from_secs(7))
        );
        assert_eq!(
            classify(&parse(r#"{"ok":false,"error_code":403,"description":"Forbidden: bot was blocked by the user"}"#)),
            SendError::Permanent("Forbidden: bot was blocked by the user".into())
        );
        assert_eq!(
            classify(&parse(r#"{"ok":false,"error_code":400,"description":"Bad Request: chat not found"}"#)),
            SendError::Permanent("Bad Request: chat not found".into())
        );
        assert_eq!(
            classify(&parse(r#"{"ok":false,"error_code":400,"description":"Bad Request: something new"}"#)),
            SendError::Permanent("Bad Request: something new".into())
        );
        assert_eq!(
            classify(&parse(r#"{"ok":false,"error_code":502,"description":"Bad Gateway"}"#)),
            SendError::Transient("Bad Gateway".into())
        );
    }
}
