//! Opaque page cursors. A cursor is the key of the last row of a page, base64url-encoded with a
//! tag saying which listing it belongs to; clients pass it back unchanged. Times keep
//! PostgreSQL's microsecond precision, so a key round-trips exactly.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use schema::store::{MessageKey, PeriodKey};
use uuid::Uuid;

use crate::error::ApiError;

fn encode(text: String) -> String {
    URL_SAFE_NO_PAD.encode(text)
}

fn decode<'a>(cursor: &str, tag: &str, buf: &'a mut String) -> Result<std::str::SplitN<'a, char>, ApiError> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor.trim()).map_err(|_| bad_cursor())?;
    *buf = String::from_utf8(bytes).map_err(|_| bad_cursor())?;
    let rest = buf.strip_prefix(tag).and_then(|r| r.strip_prefix(':')).ok_or_else(bad_cursor)?;
    Ok(rest.splitn(2, ':'))
}

fn bad_cursor() -> ApiError {
    ApiError::bad_request("bad cursor: pass back the next_cursor of the previous page unchanged")
}

fn time_and_id(cursor: &str, tag: &str) -> Result<(DateTime<Utc>, Uuid), ApiError> {
    let mut buf = String::new();
    let mut parts = decode(cursor, tag, &mut buf)?;
    let micros: i64 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad_cursor)?;
    let id: Uuid = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad_cursor)?;
    let at = DateTime::from_timestamp_micros(micros).ok_or_else(bad_cursor)?;
    Ok((at, id))
}

pub fn period(key: PeriodKey) -> String {
    encode(format!("p:{}:{}", key.first_customer_message_at.timestamp_micros(), key.interaction_id))
}

pub fn parse_period(cursor: &str) -> Result<PeriodKey, ApiError> {
    let (at, id) = time_and_id(cursor, "p")?;
    Ok(PeriodKey { first_customer_message_at: at, interaction_id: id })
}

pub fn message(key: MessageKey) -> String {
    encode(format!("m:{}:{}", key.created_at.timestamp_micros(), key.id))
}

pub fn parse_message(cursor: &str) -> Result<MessageKey, ApiError> {
    let (at, id) = time_and_id(cursor, "m")?;
    Ok(MessageKey { created_at: at, id })
}

/// A cursor over a listing keyed by a growing integer id (`tag` names the listing).
pub fn id(tag: &str, id: i64) -> String {
    encode(format!("{tag}:{id}"))
}

pub fn parse_id(tag: &str, cursor: &str) -> Result<i64, ApiError> {
    let mut buf = String::new();
    let mut parts = decode(cursor, tag, &mut buf)?;
    parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad_cursor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_exactly_and_refuse_foreign_ones() {
        let key = PeriodKey {
            first_customer_message_at: DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
            interaction_id: Uuid::now_v7(),
        };
        assert_eq!(parse_period(&period(key)).unwrap(), key);
        let m = MessageKey { created_at: key.first_customer_message_at, id: key.interaction_id };
        assert_eq!(parse_message(&message(m)).unwrap(), m);
        assert!(parse_message(&period(key)).is_err());
        assert!(parse_period("not base64!").is_err());
        assert!(parse_period(&encode("p:x:y".into())).is_err());
        assert_eq!(parse_id("a", &id("a", 42)).unwrap(), 42);
        assert!(parse_id("d", &id("a", 42)).is_err());
    }
}
