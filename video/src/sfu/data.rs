//! The data channel's messages between participants: what is relayed, stamped with who sent
//! it and when, and what is dropped (pure: the SFU loop calls it for every message).

use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{Value, json};

/// The longest chat message, in characters.
pub const MAX_CHAT_CHARS: usize = 2000;
/// Pointer events per second per sender; extra ones are dropped.
pub const POINTER_PER_SECOND: u32 = 30;

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum Incoming {
    Chat {
        text: String,
    },
    /// `click`: the press that starts a gesture (drawn as a ripple), not a move of it.
    Pointer {
        target: String,
        source: Option<PointerSource>,
        x: f64,
        y: f64,
        click: Option<bool>,
    },
}

/// Which of the target's videos a pointer event is on.
#[derive(Deserialize, serde::Serialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum PointerSource {
    Camera,
    Screen,
}

/// Why a message was not relayed (logged at debug; the sender's page validates first).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Dropped {
    #[error("not a chat or pointer message")]
    Malformed,
    #[error("a chat message must have 1 to {MAX_CHAT_CHARS} characters")]
    ChatLength,
    #[error("pointer coordinates must be between 0 and 1")]
    PointerRange,
    #[error("more than {POINTER_PER_SECOND} pointer events in a second")]
    PointerRate,
}

/// Per-sender state of the relay.
#[derive(Debug, Default)]
pub struct Relay {
    window: Option<Instant>,
    pointers: u32,
    /// The text of the last chat message relayed, for the call's records.
    chat: Option<String>,
}

impl Relay {
    /// The text to send to the others, or why not. `from` is the sender (`id`, `role`,
    /// `name`), `at` the RFC 3339 time to stamp.
    pub fn relay(&mut self, text: &str, from: &Value, at: &str, now: Instant) -> Result<String, Dropped> {
        let message: Incoming = serde_json::from_str(text).map_err(|_| Dropped::Malformed)?;
        let out = match message {
            Incoming::Chat { text } => {
                let chars = text.trim().chars().count();
                if chars == 0 || chars > MAX_CHAT_CHARS {
                    return Err(Dropped::ChatLength);
                }
                let out = json!({"type": "chat", "text": text, "from": from, "at": at});
                self.chat = Some(text);
                out
            }
            Incoming::Pointer { target, source, x, y, click } => {
                if !(0.0..=1.0).contains(&x) || !(0.0..=1.0).contains(&y) {
                    return Err(Dropped::PointerRange);
                }
                if self.window.is_none_or(|w| now.duration_since(w) >= Duration::from_secs(1)) {
                    self.window = Some(now);
                    self.pointers = 0;
                }
                if self.pointers >= POINTER_PER_SECOND {
                    return Err(Dropped::PointerRate);
                }
                self.pointers += 1;
                let source = source.unwrap_or(PointerSource::Camera);
                let mut out = json!({"type": "pointer", "target": target, "source": source, "x": x, "y": y, "from": from, "at": at});
                if click == Some(true) {
                    out["click"] = Value::Bool(true);
                }
                out
            }
        };
        Ok(out.to_string())
    }

    /// The text of the chat message just relayed, once.
    pub fn take_chat(&mut self) -> Option<String> {
        self.chat.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_and_pointer_are_stamped_and_bad_ones_dropped() {
        let mut r = Relay::default();
        let from = json!({"id": "p1", "role": "agent", "name": "Alice"});
        let now = Instant::now();
        let out: Value =
            serde_json::from_str(&r.relay(r#"{"type":"chat","text":"hi"}"#, &from, "T", now).unwrap()).unwrap();
        assert_eq!(out, json!({"type": "chat", "text": "hi", "from": from, "at": "T"}));
        assert_eq!(r.relay("not json", &from, "T", now), Err(Dropped::Malformed));
        assert_eq!(r.relay(r#"{"type":"chat","text":"hi","from":"forged"}"#, &from, "T", now), Err(Dropped::Malformed));
        assert_eq!(r.relay(r#"{"type":"chat","text":"  "}"#, &from, "T", now), Err(Dropped::ChatLength));
        let long = format!(r#"{{"type":"chat","text":"{}"}}"#, "x".repeat(MAX_CHAT_CHARS + 1));
        assert_eq!(r.relay(&long, &from, "T", now), Err(Dropped::ChatLength));
        assert_eq!(
            r.relay(r#"{"type":"pointer","target":"p2","x":1.5,"y":0}"#, &from, "T", now),
            Err(Dropped::PointerRange)
        );
    }

    #[test]
    fn a_pointers_click_is_relayed_and_a_move_carries_none() {
        let mut r = Relay::default();
        let from = json!({"id": "p1", "role": "agent", "name": "Alice"});
        let now = Instant::now();
        let relay = |r: &mut Relay, text: &str| -> Value {
            serde_json::from_str(&r.relay(text, &from, "T", now).unwrap()).unwrap()
        };
        let click = relay(&mut r, r#"{"type":"pointer","target":"p2","x":0.5,"y":0.5,"click":true}"#);
        assert_eq!(click["click"], json!(true));
        let moved = relay(&mut r, r#"{"type":"pointer","target":"p2","x":0.5,"y":0.5,"click":false}"#);
        assert!(moved.get("click").is_none(), "{moved}");
        assert_eq!(
            r.relay(r#"{"type":"pointer","target":"p2","x":0.5,"y":0.5,"click":"yes"}"#, &from, "T", now),
            Err(Dropped::Malformed)
        );
    }

    #[test]
    fn pointer_events_are_capped_per_second() {
        let mut r = Relay::default();
        let from = json!({"id": "p1"});
        let t0 = Instant::now();
        let pointer = r#"{"type":"pointer","target":"p2","x":0.5,"y":0.25}"#;
        for _ in 0..POINTER_PER_SECOND {
            r.relay(pointer, &from, "T", t0).unwrap();
        }
        assert_eq!(r.relay(pointer, &from, "T", t0 + Duration::from_millis(500)), Err(Dropped::PointerRate));
        assert!(r.relay(pointer, &from, "T", t0 + Duration::from_secs(1)).is_ok(), "a new second, a new budget");
    }
}
