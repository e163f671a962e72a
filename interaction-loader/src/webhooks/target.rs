//! Where webhooks may be sent: the hub's outbound-URL guard, [`ops::outbound`] (shared with the
//! HTTP node of bot flows), with `loader.webhooks.allow_internal` as its allow-list.

pub use ops::outbound::*;
