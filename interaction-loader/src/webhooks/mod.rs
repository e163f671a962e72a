//! Webhook deliveries: the pure parts (event ids, signatures, the retry schedule) here, the
//! worker that sends in [`worker`].

/// Where webhooks may be sent (shared with the other outbound callers).
pub use ops::target;
pub mod worker;

use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use schema::store::NextStep;
use sha2::Sha256;
use uuid::Uuid;

/// Event types a subscription may name (besides `*`). `interaction.rated` is written when a
/// customer answers the survey after a video call (docs/video.md, "Post-call survey");
/// `video.sms` when a call link sent by SMS changes state.
pub const EVENT_TYPES: &[&str] = &[
    "interaction.created",
    "interaction.reopened",
    "interaction.offered",
    "interaction.declined",
    "interaction.offer_expired",
    "interaction.assigned",
    "interaction.transferred",
    "interaction.joined",
    "interaction.closed",
    "interaction.rated",
    "message.new",
    "message.edited",
    "message.deleted",
    "video.room",
    "video.sms",
    "campaign.started",
    "campaign.finished",
];

/// Header with the event id (the same on every retry).
pub const EVENT_ID_HEADER: &str = "switchboard-event-id";
pub const EVENT_TYPE_HEADER: &str = "switchboard-event-type";
/// `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`.
pub const SIGNATURE_HEADER: &str = "switchboard-signature";

/// The id of an event: unique, and stable across retries.
pub fn event_id(interaction_id: Uuid, seq: i64) -> String {
    format!("{interaction_id}:{seq}")
}

/// The signature header's value for `body` sent at `timestamp`.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={timestamp},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// A new signing secret: `whsec_` and 32 random bytes in hex.
pub fn generate_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("whsec_{}", hex::encode(bytes))
}

/// When to try again after failed attempt `attempt` (1 for the first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay after the first failure; doubles after each further one...
    pub initial: Duration,
    /// ...up to this.
    pub max: Duration,
    /// Retries stop once this much time has passed since the delivery's window started.
    pub retry_for: Duration,
}

impl Backoff {
    /// The delay after failed attempt `attempt`: `initial * 2^(attempt-1)`, at most `max`.
    pub fn delay(&self, attempt: i32) -> Duration {
        let doublings = attempt.saturating_sub(1).clamp(0, 30) as u32;
        self.initial.saturating_mul(1 << doublings).min(self.max)
    }

    /// What follows attempt `attempt` of a delivery whose window started at `retry_from`.
    /// A failed attempt is retried while the window lasts; the last retry falls at or after its
    /// end, so a delivery is tried for at least `retry_for`.
    pub fn next(&self, attempt: i32, succeeded: bool, retry_from: DateTime<Utc>, now: DateTime<Utc>) -> NextStep {
        if succeeded {
            return NextStep::Delivered;
        }
        let elapsed = (now - retry_from).to_std().unwrap_or_default();
        if elapsed >= self.retry_for {
            return NextStep::GiveUp;
        }
        let delay = chrono::Duration::from_std(self.delay(attempt)).unwrap_or(chrono::Duration::MAX);
        NextStep::RetryAt(now + delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_of_timestamp_dot_body() {
        // an independent computation: HMAC-SHA256("secret", "1700000000.{}")
        let expected = {
            let mut mac = Hmac::<Sha256>::new_from_slice(b"secret").unwrap();
            mac.update(b"1700000000.{}");
            hex::encode(mac.finalize().into_bytes())
        };
        assert_eq!(sign("secret", 1_700_000_000, b"{}"), format!("t=1700000000,v1={expected}"));
        assert_ne!(sign("secret", 1_700_000_001, b"{}"), sign("secret", 1_700_000_000, b"{}"));
        assert!(generate_secret().starts_with("whsec_"));
    }

    #[test]
    fn backoff_doubles_to_its_cap_and_retries_for_the_whole_window() {
        let b = Backoff {
            initial: Duration::from_secs(10),
            max: Duration::from_secs(3600),
            retry_for: Duration::from_secs(24 * 3600),
        };
        assert_eq!(b.delay(1), Duration::from_secs(10));
        assert_eq!(b.delay(2), Duration::from_secs(20));
        assert_eq!(b.delay(9), Duration::from_secs(2560));
        assert_eq!(b.delay(10), Duration::from_secs(3600));
        assert_eq!(b.delay(1000), Duration::from_secs(3600));

        // simulate a receiver that never answers 2xx: attempts go on for at least 24 h
        let start = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let mut now = start;
        let mut attempt = 1;
        loop {
            match b.next(attempt, false, start, now) {
                NextStep::RetryAt(at) => {
                    assert!(at > now);
                    now = at;
                    attempt += 1;
                }
                NextStep::GiveUp => break,
                NextStep::Delivered => unreachable!(),
            }
        }
        assert!(now - start >= chrono::Duration::hours(24), "gave up after {}", now - start);
        assert!(now - start < chrono::Duration::hours(25));
        assert!((25..40).contains(&attempt), "{attempt} attempts");
        assert_eq!(b.next(3, true, start, now), NextStep::Delivered);
    }
}
