//! The Telegram side of outbox work: `sendMessage`, `sendPhoto`/`sendVideo`/`sendAudio`/
//! `sendVoice`/`sendDocument`/`sendSticker` (multipart uploads streamed from the file server),
//! `sendLocation`, `sendContact`, `sendSticker` by file id, `forwardMessage`,
//! `editMessageText`/`editMessageCaption` and `deleteMessage`.

use async_trait::async_trait;
use teloxide::payloads::{
    EditMessageCaptionSetters, ForwardMessageSetters, SendAudioSetters, SendContactSetters, SendDocumentSetters,
    SendLocationSetters, SendMessageSetters, SendPhotoSetters, SendStickerSetters, SendVideoSetters, SendVoiceSetters,
};
use teloxide::prelude::Requester;
use teloxide::types::{ChatId, FileId, InputFile, Message, MessageId, ReplyParameters};
use teloxide::{ApiError, Bot, RequestError};
use tokio_util::io::StreamReader;

use super::mapping::{classify, external_id, parse_external_id, reply_markup};
use crate::platform::{FileBody, Outbound, Part, SendError};

/// How a file goes out, by its type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileMethod {
    Photo,
    Video,
    Audio,
    Voice,
    Document,
    /// A sticker sent as a file (`sendSticker` takes WEBP, TGS and WEBM).
    Sticker,
}

/// `sendPhoto` for JPEG/PNG/WebP images, `sendVideo` for MP4, `sendVoice` for OGG (Opus voice
/// notes), `sendAudio` for MP3/M4A, `sendDocument` for everything else (so a GIF or an SVG
/// keeps its bytes).
pub fn file_method(mime: &str) -> FileMethod {
    match mime {
        "image/jpeg" | "image/png" | "image/webp" => FileMethod::Photo,
        "video/mp4" => FileMethod::Video,
        "audio/ogg" | "audio/opus" => FileMethod::Voice,
        "audio/mpeg" | "audio/mp3" | "audio/mp4" | "audio/x-m4a" | "audio/m4a" => FileMethod::Audio,
        _ => FileMethod::Document,
    }
}

/// Sends outbox work through one bot.
pub struct TelegramOutbound {
    bot: Bot,
}

impl TelegramOutbound {
    pub fn new(bot: Bot) -> Self {
        TelegramOutbound { bot }
    }
}

fn chat_id(chat: &str) -> Result<ChatId, SendError> {
    chat.parse::<i64>().map(ChatId).map_err(|_| SendError::Permanent(format!("{chat:?} is not a Telegram chat id")))
}

fn message_id(external: &str) -> Result<MessageId, SendError> {
    parse_external_id(external)
        .map(|(_, id)| MessageId(id))
        .ok_or_else(|| SendError::Permanent(format!("{external:?} is not a Telegram message id")))
}

/// Sets the optional fields every send shares.
macro_rules! with_common {
    ($request:expr, $markup:expr, $reply:expr) => {{
        let mut request = $request;
        if let Some(markup) = $markup {
            request = request.reply_markup(markup);
        }
        if let Some(reply) = $reply {
            request = request.reply_parameters(reply);
        }
        request
    }};
}

macro_rules! with_caption {
    ($request:expr, $caption:expr) => {{
        let mut request = $request;
        if let Some(caption) = $caption {
            request = request.caption(caption);
        }
        request
    }};
}

fn is(error: &RequestError, known: ApiError, prefix: &str) -> bool {
    match error {
        RequestError::Api(ApiError::Unknown(text)) => text.starts_with(prefix),
        RequestError::Api(api) => *api == known,
        _ => false,
    }
}

#[async_trait]
impl Outbound for TelegramOutbound {
    async fn send(&self, chat: &str, part: Part) -> Result<String, SendError> {
        let chat = chat_id(chat)?;
        let markup = part.keyboard.as_ref().map(reply_markup);
        let reply = match part.reply_to.as_deref() {
            Some(external) => Some(ReplyParameters::new(message_id(external)?).allow_sending_without_reply()),
            None => None,
        };
        let sent: Result<Message, RequestError> = if let Some(location) = part.location {
            with_common!(self.bot.send_location(chat, location.lat, location.lon), markup, reply).await
        } else if let Some(contact) = part.contact {
            with_common!(self.bot.send_contact(chat, contact.phone, contact.name), markup, reply).await
        } else if let Some(sticker) = part.sticker_id {
            with_common!(self.bot.send_sticker(chat, InputFile::file_id(FileId(sticker))), markup, reply).await
        } else if let Some(original) = part.forward_of {
            let (from_chat, id) = parse_external_id(&original)
                .ok_or_else(|| SendError::Permanent(format!("{original:?} is not a Telegram message id")))?;
            self.bot.forward_message(chat, ChatId(from_chat), MessageId(id)).protect_content(false).await
        } else if let Some(file) = part.file {
            let input = match file.body {
                FileBody::Stream(stream) => InputFile::read(StreamReader::new(stream)),
                FileBody::Link(url) => InputFile::url(url),
            }
            .file_name(file.meta.name.clone());
            let caption = part.text.filter(|t| !t.is_empty());
            match if part.as_sticker { FileMethod::Sticker } else { file_method(&file.meta.mime) } {
                FileMethod::Photo => {
                    with_caption!(with_common!(self.bot.send_photo(chat, input), markup, reply), caption).await
                }
                FileMethod::Video => {
                    with_caption!(with_common!(self.bot.send_video(chat, input), markup, reply), caption).await
                }
                FileMethod::Audio => {
                    with_caption!(with_common!(self.bot.send_audio(chat, input), markup, reply), caption).await
                }
                FileMethod::Voice => {
                    with_caption!(with_common!(self.bot.send_voice(chat, input), markup, reply), caption).await
                }
                FileMethod::Document => {
                    with_caption!(with_common!(self.bot.send_document(chat, input), markup, reply), caption).await
                }
                FileMethod::Sticker => with_common!(self.bot.send_sticker(chat, input), markup, reply).await,
            }
        } else {
            with_common!(self.bot.send_message(chat, part.text.unwrap_or_default()), markup, reply).await
        };
        let sent = sent.map_err(|e| classify(&e))?;
        Ok(external_id(sent.chat.id.0, sent.id.0))
    }

    async fn edit(&self, chat: &str, external: &str, text: &str, caption: bool) -> Result<(), SendError> {
        let chat = chat_id(chat)?;
        let id = message_id(external)?;
        let result = if caption {
            self.bot.edit_message_caption(chat, id).caption(text).await.map(drop)
        } else {
            self.bot.edit_message_text(chat, id, text).await.map(drop)
        };
        match result {
            Ok(()) => Ok(()),
            // the text is already what was asked for (an edit queued before the send went out)
            Err(e) if is(&e, ApiError::MessageNotModified, "Bad Request: message is not modified") => Ok(()),
            Err(e) => Err(classify(&e)),
        }
    }

    async fn delete(&self, chat: &str, external: &str) -> Result<(), SendError> {
        let chat = chat_id(chat)?;
        let id = message_id(external)?;
        match self.bot.delete_message(chat, id).await {
            Ok(_) => Ok(()),
            // already gone
            Err(e) if is(&e, ApiError::MessageToDeleteNotFound, "Bad Request: message to delete not found") => Ok(()),
            Err(e) => Err(classify(&e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_go_out_by_type() {
        assert_eq!(file_method("image/jpeg"), FileMethod::Photo);
        assert_eq!(file_method("image/gif"), FileMethod::Document);
        assert_eq!(file_method("video/mp4"), FileMethod::Video);
        assert_eq!(file_method("audio/ogg"), FileMethod::Voice);
        assert_eq!(file_method("audio/mpeg"), FileMethod::Audio);
        assert_eq!(file_method("application/pdf"), FileMethod::Document);
    }
}
