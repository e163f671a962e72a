//! Messenger connectors: one process (or task, in `switchboard all`) serves one channel
//! account.
//!
//! - [`channel`]: the seam a channel module implements; [`registry`]: the modules of this build.
//! - [`runtime`]: opens each account through its module, one leader loop per account
//!   (`connector/<account>`, with fencing tokens), the generic webhook route, the supervisor of
//!   every enabled account. It names no platform.
//! - [`ingest`]: inbound, stored in one transaction, acknowledged after the commit, then the
//!   doorbells.
//! - [`outbox`]: outbound, from the outbox table in order per chat, paced, split, retried,
//!   with every status change reported to the agents.
//! - [`pacing`] and [`backlog`]: the sans-IO cores of the outbox worker (token buckets, per-chat
//!   order), fed the time and tested with a fake clock.
//! - [`split`]: long texts cut at word boundaries.
//! - [`files`]: the file server, as connectors use it.
//! - [`telegram`]: the Telegram connector (teloxide).
//! - [`viber`]: the Viber connector (REST Bot API, webhooks).
//! - [`vk`]: the VK connector (community bots: Bots Long Poll or Callback API).
//! - [`ok`]: the OK connector (group bots: webhooks or the long poll).
//! - [`webchat`]: the web chat channel (the hub's own widget and customer sockets).
//! - [`whatsapp`]: the WhatsApp connector, a provider per account (Meta's Cloud API, Infobip).
//!
//! **Only this crate knows a platform's JSON**; the rest of the hub sees domain types.
#![forbid(unsafe_code)]

pub mod backlog;
pub mod bots;
pub mod channel;
pub mod files;
pub mod ingest;
pub mod media;
pub mod ok;
pub mod outbox;
pub mod pacing;
pub mod platform;
pub mod registry;
pub mod runtime;
pub mod split;
pub mod telegram;
pub mod viber;
pub mod vk;
pub mod webchat;
pub mod whatsapp;

#[cfg(feature = "fake")]
pub mod fake;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use runtime::Runtime;

/// The `[connectors]` configuration section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Root URL of the file server; empty: this process's own listener (`http.bind`).
    pub fileserver_url: String,
    /// This process's name in leader elections; a random one when empty.
    pub node_id: String,
    /// A customer writing again within this many seconds of a close reopens the interaction.
    pub reopen_window_s: u64,
    /// Outbox rows one account's leader performs at once (each is one chat's next message).
    pub max_in_flight: usize,
    /// The hub's URL as the platforms reach it (e.g. `https://hub.example.com`): webhooks are
    /// registered at `<public_url>/api/v1/connectors/<account>/<channel>`, and files sent by link
    /// (Viber, OK) are signed links under it. Empty: accounts that need it must set their own
    /// `settings.webhook_url`, and files by link use the file server's URL.
    pub public_url: String,
    /// Networks (CIDR) the HTTP nodes of bot flows may call although they are internal
    /// (`ops::target`), e.g. `["10.20.0.0/16"]`; empty: public addresses only.
    pub bots_allow_internal: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            fileserver_url: String::new(),
            node_id: String::new(),
            reopen_window_s: 3600,
            max_in_flight: 64,
            public_url: String::new(),
            bots_allow_internal: Vec::new(),
        }
    }
}

impl Config {
    pub fn reopen_window(&self) -> Duration {
        Duration::from_secs(self.reopen_window_s)
    }

    /// The networks of `bots_allow_internal`, or the first that is not a CIDR network.
    pub fn bots_allowed_networks(&self) -> Result<Vec<ipnet::IpNet>, String> {
        self.bots_allow_internal
            .iter()
            .map(|n| {
                n.parse::<ipnet::IpNet>()
                    .or_else(|_| n.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| format!("connectors.bots_allow_internal: {n:?} is not a network such as 10.0.0.0/8"))
            })
            .collect()
    }
}
