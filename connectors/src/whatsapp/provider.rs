//! What a WhatsApp provider implements: the seam between the channel's behaviour (written once,
//! in [`super::receive`] and [`super::send`]) and one provider's wire format (Meta's Cloud API
//! in [`super::cloud`], Infobip in [`super::infobip`]).
//!
//! A provider knows its HTTP API and its webhooks and nothing of the hub's runtime: it checks a
//! webhook's authenticity, turns a webhook body into [`Event`]s (pure), opens an inbound file
//! for download, and performs one send of an [`Outgoing`] message, answering its platform id
//! or a [`Refusal`] classified by what the channel must do with it. The channel does the rest:
//! media into the file server, the ingest, the service window, receipts, dead letters,
//! pacing, the account's health.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use schema::domain::{Contact, Location, Template};
use schema::store::InboundMessage;

use crate::channel::{WebhookError, WebhookReply, WebhookRequest};
use crate::platform::{FileDelivery, OutFile};

/// One WhatsApp provider (one file of this folder). See the module's documentation and
/// `docs/connectors.md#whatsapp` for what each method must do.
#[async_trait]
pub trait Provider: Send + Sync + 'static {
    /// `cloud`, `infobip`: the value of the account's `settings.provider`.
    fn name(&self) -> &'static str;

    /// How this provider takes outbound files: uploaded (`Upload`: [`Outgoing`] media carry a
    /// stream) or fetched by the provider from a signed link (`Link`).
    fn file_delivery(&self) -> FileDelivery;

    /// Whether a webhook request comes from the provider, from its method, headers, query,
    /// source address and raw body only (a signature over the exact bytes, a verify token, a
    /// secret in the URL...); nothing may be parsed before. Runs on every process.
    fn verify(&self, request: &WebhookRequest) -> Result<(), WebhookError>;

    /// The answer to a verified `GET` (a subscription handshake such as the Cloud API's
    /// `hub.challenge`); providers without one refuse it.
    fn handshake(&self, request: &WebhookRequest) -> Result<WebhookReply, WebhookError> {
        let _ = request;
        Err(WebhookError::BadRequest("this provider posts its webhooks; there is nothing to GET".into()))
    }

    /// The items of one verified webhook body, in order (pure: no I/O). `Err` when the body as a
    /// whole cannot be read (it is then parked whole).
    fn parse(&self, body: &[u8]) -> Result<Vec<Item>, String>;

    /// Opens an inbound file for download (a media id looked up first, or the provider's URL
    /// with its credentials).
    async fn download(&self, media: &MediaRef) -> Result<reqwest::Response, FetchError>;

    /// Sends one message to the customer `to` (their WhatsApp id); its platform id, which the
    /// provider's status reports name.
    async fn send(&self, to: &str, message: Outgoing) -> Result<String, Refusal>;
}

/// One item of a webhook body: a message, a status, or something to log.
#[derive(Debug, Clone)]
pub struct Item {
    /// The platform's id for it (a message id, `status:<id>:<status>`), for logs, retries and
    /// dead letters.
    pub key: String,
    /// A complete webhook body with this item alone: what is parked if it can never be stored,
    /// and what a replay parses again.
    pub raw: Vec<u8>,
    pub event: Result<Event, String>,
}

/// What one webhook item means for the hub.
#[derive(Debug, Clone)]
pub enum Event {
    /// A customer message.
    Message(Box<Incoming>),
    /// The platform's report on an outbound message.
    Status { id: String, status: Status },
    /// An error the platform reports about the account (logged).
    AccountError(String),
    /// Nothing for the hub (another webhook field, a pending status).
    Ignored(String),
}

/// A customer message as mapped, before its file is fetched.
#[derive(Debug, Clone)]
pub struct Incoming {
    /// `file_ids` empty: filled once the file is in the file server.
    pub message: InboundMessage,
    pub media: Option<MediaRef>,
    /// When the customer wrote, by the platform's clock: the 24-hour window counts from it.
    pub at: DateTime<Utc>,
}

/// An inbound file at the provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaRef {
    /// The provider's handle: a media id (Cloud API) or a URL (Infobip).
    pub id: String,
    pub name: String,
    pub mime: String,
    /// Bytes, when the provider says.
    pub size: Option<u64>,
}

/// What a status report says of an outbound message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Accepted by WhatsApp (the hub already stored `sent` when the provider answered).
    Sent,
    Delivered,
    Read,
    /// Not delivered, with a reason an agent understands (the platform's title and code).
    Failed(String),
}

/// Why an inbound file could not be opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// Worth trying again (network, 5xx, 429).
    Transient(String),
    /// Will never work (gone, refused): the message is stored with a note instead.
    Permanent(String),
}

/// One outbound message in the provider's terms.
#[derive(Debug)]
pub struct Outgoing {
    /// Stable across attempts and leaders (`<outbox row>:<part>`): Infobip's `messageId`.
    pub key: String,
    /// The platform id of the customer's message this one answers.
    pub reply_to: Option<String>,
    pub content: Content,
}

/// The kinds of file WhatsApp sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    Image,
    Video,
    Audio,
    Document,
    Sticker,
}

impl MediaKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MediaKind::Image => "image",
            MediaKind::Video => "video",
            MediaKind::Audio => "audio",
            MediaKind::Document => "document",
            MediaKind::Sticker => "sticker",
        }
    }

    /// Whether WhatsApp shows a caption with it.
    pub fn takes_caption(self) -> bool {
        matches!(self, MediaKind::Image | MediaKind::Video | MediaKind::Document)
    }
}

/// A button or list row: `id` comes back when the customer picks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub id: String,
    pub title: String,
}

/// What an [`Outgoing`] message carries.
#[derive(Debug)]
pub enum Content {
    Text {
        body: String,
        preview_url: bool,
    },
    Media {
        kind: MediaKind,
        file: OutFile,
        caption: Option<String>,
    },
    /// A sticker by the platform's media id.
    StickerId(String),
    Location(Location),
    Contact(Contact),
    /// Up to 3 reply buttons on a text (titles ≤ 20).
    Buttons {
        body: String,
        buttons: Vec<Choice>,
    },
    /// A list of up to 10 rows behind a button (titles ≤ 24).
    List {
        body: String,
        button: String,
        rows: Vec<Choice>,
    },
    Template(Template),
}

/// Why a send did not go out, by what the channel does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The platform asks to slow down (HTTP 429, Meta's 130429, 131056, 4, 80007, 131048):
    /// waited for and sent again, never a failure. `per_chat`: the limit is this customer's
    /// (131056). `wait`: the platform's hint, if it gives one.
    RateLimited { per_chat: bool, wait: Option<Duration> },
    /// More than 24 hours since the customer's last message (131047).
    OutsideWindow(String),
    /// The account itself is refused (a wrong or expired token, no permission, blocked): the
    /// account is reported unhealthy and the message waits.
    Unhealthy(String),
    /// This message can never go out as it is.
    Permanent(String),
    /// Worth trying again (network, 5xx, an unreadable answer).
    Transient(String),
}
