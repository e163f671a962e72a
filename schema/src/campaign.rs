//! The decisions of outbound campaigns, without I/O: filling a message's `{{variables}}`, stop
//! words, and whether a recipient's row may be sent now (schedule, quiet hours in the
//! recipient's time zone, pause, cancel, opt-out). The store ([`crate::store::claim_bulk_outbox`])
//! and the connector's outbox worker act on what these answer.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Timelike, Utc};

/// The stop words of an account that names none.
pub const DEFAULT_STOP_WORDS: &[&str] = &["STOP", "СТОП", "ОТПИСАТЬСЯ"];

/// How long after a campaign message a customer's message counts as its reply.
pub const REPLY_WINDOW: Duration = Duration::days(7);

/// Fills the `{{name}}` placeholders of `text` from `vars` (spaces inside the braces allowed).
/// A placeholder with no value is an error naming it; `{{` that opens no placeholder is kept.
pub fn render(text: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let name = after[..end].trim();
        if name.is_empty() || !name.chars().all(|c| c.is_alphanumeric() || c == '_') {
            out.push_str("{{");
            rest = after;
            continue;
        }
        match vars.get(name) {
            Some(value) => out.push_str(value),
            None => return Err(format!("no value for {{{{{name}}}}}")),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A stop word as it is compared: trimmed, upper-case, without the punctuation around it.
pub fn normalize_word(text: &str) -> String {
    text.trim().trim_matches(|c: char| c.is_ascii_punctuation() || c.is_whitespace()).to_uppercase()
}

/// The stop word `text` is (the whole message, whatever its case and punctuation), if any.
pub fn stop_word<'a>(text: &str, words: &'a [String]) -> Option<&'a str> {
    if text.chars().count() > 64 {
        return None;
    }
    let said = normalize_word(text);
    words.iter().find(|w| normalize_word(w) == said).map(String::as_str)
}

/// A campaign's schedule as the send decision needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    pub starts_at: Option<DateTime<Utc>>,
    pub ends_at: Option<DateTime<Utc>>,
    /// Quiet hours `[from, to)` in minutes after the recipient's local midnight; wraps midnight
    /// when `from > to`.
    pub quiet: Option<(u16, u16)>,
}

/// Where a campaign is in its life, as the send decision needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Running {
    Running,
    /// Paused or not started: its rows wait, untouched.
    Held,
    Cancelled,
}

/// What to do with one recipient's row now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Send it.
    Go,
    /// Not before this time (the start, or the end of the recipient's quiet hours).
    Later(DateTime<Utc>),
    /// Never: the reason goes to the recipient's report.
    Skip(String),
    /// Leave it pending (the campaign is paused).
    Hold,
}

/// Whether the row of a recipient at UTC offset `offset_min` may go at `now`.
pub fn decide(
    now: DateTime<Utc>,
    running: Running,
    schedule: &Schedule,
    offset_min: i32,
    opted_out: Option<&str>,
) -> Verdict {
    match running {
        Running::Cancelled => return Verdict::Skip("campaign cancelled".into()),
        Running::Held => return Verdict::Hold,
        Running::Running => {}
    }
    if let Some(reason) = opted_out {
        return Verdict::Skip(format!("opted out ({reason})"));
    }
    if let Some(end) = schedule.ends_at
        && now >= end
    {
        return Verdict::Skip("the campaign's end time passed before it was sent".into());
    }
    if let Some(start) = schedule.starts_at
        && now < start
    {
        return Verdict::Later(start);
    }
    if let Some((from, to)) = schedule.quiet
        && let Some(until) = quiet_until(now, from, to, offset_min)
    {
        if schedule.ends_at.is_some_and(|end| until >= end) {
            return Verdict::Skip("quiet hours last until the campaign's end time".into());
        }
        return Verdict::Later(until);
    }
    Verdict::Go
}

/// When the quiet hours `[from, to)` around `now` end, if `now` is in them, for a recipient
/// at `offset_min` from UTC.
pub fn quiet_until(now: DateTime<Utc>, from: u16, to: u16, offset_min: i32) -> Option<DateTime<Utc>> {
    if from == to {
        return None;
    }
    let local = now + Duration::minutes(i64::from(offset_min));
    let minute = (local.hour() * 60 + local.minute()) as u16;
    let inside = if from < to { minute >= from && minute < to } else { minute >= from || minute < to };
    if !inside {
        return None;
    }
    // minutes from now to the next local `to`
    let ahead = (i64::from(to) - i64::from(minute)).rem_euclid(24 * 60);
    let floor = local.with_second(0).and_then(|t| t.with_nanosecond(0)).unwrap_or(local);
    Some(floor + Duration::minutes(ahead) - Duration::minutes(i64::from(offset_min)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn placeholders_are_filled_and_a_missing_one_is_named() {
        let v = vars(&[("name", "Anna"), ("order", "7731")]);
        assert_eq!(render("Hi {{name}}, order {{ order }} shipped", &v).unwrap(), "Hi Anna, order 7731 shipped");
        assert_eq!(render("no placeholders", &v).unwrap(), "no placeholders");
        assert_eq!(render("{{ not a name }} and {{", &v).unwrap(), "{{ not a name }} and {{");
        assert_eq!(render("Dear {{title}}", &v).unwrap_err(), "no value for {{title}}");
    }

    #[test]
    fn stop_words_match_the_whole_message_in_any_case() {
        let words: Vec<String> = DEFAULT_STOP_WORDS.iter().map(|w| w.to_string()).collect();
        assert_eq!(stop_word("stop", &words), Some("STOP"));
        assert_eq!(stop_word("  Стоп! ", &words), Some("СТОП"));
        assert_eq!(stop_word("отписаться", &words), Some("ОТПИСАТЬСЯ"));
        assert_eq!(stop_word("please stop sending", &words), None, "only the word alone opts out");
        assert_eq!(stop_word("stopper", &words), None);
        let own = vec!["хватит".to_string()];
        assert_eq!(stop_word("ХВАТИТ", &own), Some("хватит"));
        assert_eq!(stop_word("stop", &own), None, "an account's own list replaces the default");
    }

    #[test]
    fn quiet_hours_in_the_recipients_time_zone() {
        // 21:00-09:00 local; Moscow is UTC+3
        let now = at("2026-12-07T19:30:00Z"); // 22:30 in Moscow, 19:30 in London
        assert_eq!(quiet_until(now, 21 * 60, 9 * 60, 180), Some(at("2026-12-08T06:00:00Z")));
        assert_eq!(quiet_until(now, 21 * 60, 9 * 60, 0), None);
        // daytime quiet hours that do not wrap: 13:00-14:00 UTC
        assert_eq!(quiet_until(at("2026-12-07T13:15:30Z"), 780, 840, 0), Some(at("2026-12-07T14:00:00Z")));
        assert_eq!(quiet_until(at("2026-12-07T14:00:00Z"), 780, 840, 0), None, "the end is not quiet");
        assert_eq!(quiet_until(now, 600, 600, 0), None, "an empty range is never quiet");
    }

    #[test]
    fn the_decision_follows_state_opt_out_schedule_and_quiet_hours() {
        let now = at("2026-12-07T10:00:00Z");
        let open = Schedule { starts_at: None, ends_at: None, quiet: None };
        assert_eq!(decide(now, Running::Running, &open, 0, None), Verdict::Go);
        assert_eq!(decide(now, Running::Held, &open, 0, None), Verdict::Hold);
        assert_eq!(decide(now, Running::Cancelled, &open, 0, None), Verdict::Skip("campaign cancelled".into()));
        assert_eq!(
            decide(now, Running::Running, &open, 0, Some("stop word STOP")),
            Verdict::Skip("opted out (stop word STOP)".into())
        );
        let later = Schedule { starts_at: Some(at("2026-12-07T12:00:00Z")), ..open.clone() };
        assert_eq!(decide(now, Running::Running, &later, 0, None), Verdict::Later(at("2026-12-07T12:00:00Z")));
        let over = Schedule { ends_at: Some(at("2026-12-07T09:00:00Z")), ..open.clone() };
        assert!(matches!(decide(now, Running::Running, &over, 0, None), Verdict::Skip(r) if r.contains("end time")));
        let night = Schedule { quiet: Some((9 * 60, 18 * 60)), ..open.clone() };
        assert_eq!(decide(now, Running::Running, &night, 0, None), Verdict::Later(at("2026-12-07T18:00:00Z")));
        assert_eq!(decide(now, Running::Running, &night, -600, None), Verdict::Go, "00:00 in Honolulu");
        let short = Schedule { ends_at: Some(at("2026-12-07T17:00:00Z")), ..night };
        assert!(matches!(decide(now, Running::Running, &short, 0, None), Verdict::Skip(r) if r.contains("quiet")));
    }
}
