//! The rules every input from outside is held to, one per kind of field, checked once at the
//! edge (the REST extractors of the interaction loader, the agent API's `args` decoding, the
//! JWT verifier) so that nothing past it ever meets a NUL, a control character or an unbounded
//! string. A broken rule is an [`InputError`] that names the field; each surface maps it to its
//! `bad_request` (400).
//!
//! Two layers:
//!
//! - [`check_json`] / [`check_pairs`]: every string anywhere in a request (object keys
//!   included) is held to the loosest rule, [`Kind::Text`]: at most [`TEXT_MAX_CHARS`]
//!   characters, no NUL and no control character but tab, line feed and carriage return. No
//!   field can be forgotten by this layer.
//! - [`Validate`]: each request type names the kind of each of its string fields, which adds
//!   the tighter rules of that kind (a login is one line of at most 200 characters, a list of
//!   filters is not empty, ...).

use std::borrow::Cow;
use std::fmt;

/// The longest free text a request may carry (a message an agent writes; the connectors split
/// it into several platform messages, 4,096 characters each on most platforms). Also the bound
/// of every string of a request that no tighter rule covers.
pub const TEXT_MAX_CHARS: usize = 32_768;
/// The longest value inside free-form configuration (an account's credentials and settings).
pub const VALUE_MAX_CHARS: usize = 8192;
/// The longest identifier: logins, queue names, platform ids, `client_msg_id`.
pub const KEY_MAX_CHARS: usize = 200;
/// The longest display name or one-line description.
pub const NAME_MAX_CHARS: usize = 200;
/// The longest reason or note (one or several lines).
pub const NOTE_MAX_CHARS: usize = 1000;
/// The longest URL.
pub const URL_MAX_CHARS: usize = 2048;
/// The longest phone number as typed (`+7 (999) 123-45-67`).
pub const PHONE_MAX_CHARS: usize = 32;

/// The kinds of string field, each with its rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An identifier (agent login, queue name, platform user id, `client_msg_id`, role): 1 to
    /// [`KEY_MAX_CHARS`] characters, one line, no control characters, no blank at either end.
    Key,
    /// A display name or one-line label (agent or account name, API key name, webhook
    /// description, button text): 1 to [`NAME_MAX_CHARS`] characters, one line, not blank.
    Name,
    /// A reason or note (status reason, close reason, transfer note): up to
    /// [`NOTE_MAX_CHARS`] characters; line breaks and tabs allowed, no other control character.
    Note,
    /// Free text people write (a message): up to [`TEXT_MAX_CHARS`] characters; line breaks
    /// and tabs allowed, no other control character.
    Text,
    /// A search term: 1 to [`NAME_MAX_CHARS`] characters, one line, not blank.
    Search,
    /// A phone number: 1 to [`PHONE_MAX_CHARS`] characters of digits, spaces, `+ - ( ) .`,
    /// with at least one digit.
    Phone,
    /// A URL: 1 to [`URL_MAX_CHARS`] characters, no whitespace and no control characters.
    Url,
    /// A value inside free-form configuration (credentials, settings): up to
    /// [`VALUE_MAX_CHARS`] characters; line breaks and tabs allowed (PEM keys), no other
    /// control character.
    Value,
}

/// A field that breaks its rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{field}` {problem}")]
pub struct InputError {
    /// The field as the client spelled it (`args.keyboard.rows[0][1].text`, `channel`),
    /// control characters escaped.
    pub field: String,
    /// What is wrong, for people.
    pub problem: String,
}

impl InputError {
    /// The field's name is escaped ([`escape`]): a client may have put anything in it.
    pub fn new(field: impl AsRef<str>, problem: impl Into<String>) -> Self {
        InputError { field: escape(field.as_ref()).into_owned(), problem: problem.into() }
    }
}

fn describe(c: char) -> String {
    match c {
        '\0' => "a NUL character (U+0000)".to_owned(),
        c => format!("the control character U+{:04X}", c as u32),
    }
}

/// Checks one string against the rule of its kind.
pub fn check(field: &str, kind: Kind, value: &str) -> Result<(), InputError> {
    let fail = |problem: String| Err(InputError::new(field, problem));
    let (max, multiline) = match kind {
        Kind::Key => (KEY_MAX_CHARS, false),
        Kind::Name | Kind::Search => (NAME_MAX_CHARS, false),
        Kind::Note => (NOTE_MAX_CHARS, true),
        Kind::Text => (TEXT_MAX_CHARS, true),
        Kind::Phone => (PHONE_MAX_CHARS, false),
        Kind::Url => (URL_MAX_CHARS, false),
        Kind::Value => (VALUE_MAX_CHARS, true),
    };
    if let Some(c) = value.chars().find(|&c| c.is_control() && !(multiline && matches!(c, '\n' | '\r' | '\t'))) {
        return fail(format!("contains {}", describe(c)));
    }
    // counting stops one past the maximum, so a huge value costs no more than a short one
    if value.chars().take(max + 1).count() > max {
        return fail(format!("is longer than {max} characters"));
    }
    let blank = value.trim().is_empty();
    match kind {
        Kind::Key if blank => fail("is empty".into()),
        Kind::Key if value.trim() != value => fail("begins or ends with whitespace".into()),
        Kind::Name | Kind::Search if blank => fail("is empty".into()),
        Kind::Phone => {
            if let Some(c) = value.chars().find(|c| !(c.is_ascii_digit() || " +-().".contains(*c))) {
                fail(format!("contains {c:?}; a phone number has digits, spaces and + - ( ) . only"))
            } else if !value.chars().any(|c| c.is_ascii_digit()) {
                fail("has no digit".into())
            } else {
                Ok(())
            }
        }
        Kind::Url if value.is_empty() => fail("is empty".into()),
        Kind::Url if value.chars().any(char::is_whitespace) => fail("contains whitespace".into()),
        _ => Ok(()),
    }
}

/// [`check`] for an optional field.
pub fn check_opt(field: &str, kind: Kind, value: Option<&str>) -> Result<(), InputError> {
    value.map_or(Ok(()), |v| check(field, kind, v))
}

/// [`check`] for every item of a list (named `field[i]`).
pub fn check_each<S: AsRef<str>>(field: &str, kind: Kind, values: &[S]) -> Result<(), InputError> {
    for (i, v) in values.iter().enumerate() {
        check(&format!("{field}[{i}]"), kind, v.as_ref())?;
    }
    Ok(())
}

/// A comma-separated list given as a query parameter (`state=queued,closed`): each item is
/// trimmed; an empty list or an empty item (`channel=`, `state=,,,`, `state=queued,`) is refused
/// rather than ignored. Items are held to [`Kind::Key`].
pub fn comma_list<'a>(field: &str, value: &'a str) -> Result<Vec<&'a str>, InputError> {
    if value.trim().is_empty() {
        return Err(InputError::new(field, "is empty; leave the parameter out to not filter by it"));
    }
    let items: Vec<&str> = value.split(',').map(str::trim).collect();
    if items.iter().any(|i| i.is_empty()) {
        return Err(InputError::new(field, format!("has an empty item in {:?}", escape(value))));
    }
    for item in &items {
        check(field, Kind::Key, item)?;
    }
    Ok(items)
}

/// A list that must not be empty.
pub fn non_empty<T>(field: &str, values: &[T]) -> Result<(), InputError> {
    if values.is_empty() { Err(InputError::new(field, "is an empty list")) } else { Ok(()) }
}

/// Holds every string of a JSON document, object keys included, to the loosest rule
/// ([`Kind::Text`]); the error names the path (`prefix.a.b[2]`).
pub fn check_json(prefix: &str, value: &serde_json::Value) -> Result<(), InputError> {
    check_json_as(prefix, Kind::Text, value)
}

/// Holds every string of a JSON document, object keys included, to the rule of `kind` (free-form
/// configuration: [`Kind::Value`]).
pub fn check_json_as(prefix: &str, kind: Kind, value: &serde_json::Value) -> Result<(), InputError> {
    use serde_json::Value;
    match value {
        Value::String(s) => check(prefix, kind, s),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                check_json_as(&format!("{prefix}[{i}]"), kind, item)?;
            }
            Ok(())
        }
        Value::Object(map) => {
            for (key, item) in map {
                let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                check(&path, kind, key)?;
                check_json_as(&path, kind, item)?;
            }
            Ok(())
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => Ok(()),
    }
}

/// Holds every decoded parameter of a query string (or any name/value pairs) to the loosest
/// rule ([`Kind::Text`]), names included.
pub fn check_pairs<'a>(pairs: impl IntoIterator<Item = (Cow<'a, str>, Cow<'a, str>)>) -> Result<(), InputError> {
    for (name, value) in pairs {
        check(&name, Kind::Text, &name)?;
        check(&name, Kind::Text, &value)?;
    }
    Ok(())
}

/// A request whose string fields each follow the rule of their kind. Implemented by every
/// request body, query and agent command's `args`; the surfaces call it right after decoding.
pub trait Validate {
    fn validate(&self) -> Result<(), InputError>;
}

impl<T: Validate> Validate for Option<T> {
    fn validate(&self) -> Result<(), InputError> {
        self.as_ref().map_or(Ok(()), Validate::validate)
    }
}

/// Implements [`Validate`] for request types that carry no string (ids, numbers, booleans,
/// enums): the generic layer ([`check_json`]) is all they need.
#[macro_export]
macro_rules! no_strings {
    ($($t:ty),+ $(,)?) => {
        $(impl $crate::input::Validate for $t {
            fn validate(&self) -> Result<(), $crate::input::InputError> {
                Ok(())
            }
        })+
    };
}

/// A string as it may be written to a log: control characters escaped (`\u{0}`, `\n`, `\u{1b}`),
/// everything else as is, and cut after 200 characters.
pub fn escape(value: &str) -> Cow<'_, str> {
    const SHOWN: usize = 200;
    let long = value.chars().nth(SHOWN).is_some();
    if !long && !value.chars().any(char::is_control) {
        return Cow::Borrowed(value);
    }
    let mut out = String::new();
    for c in value.chars().take(SHOWN) {
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    if long {
        out.push('…');
    }
    Cow::Owned(out)
}

/// [`escape`] as a `Display` value for `tracing` fields (`name = %Escaped(&name)`).
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&escape(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_kind_refuses_nul_control_characters_and_length_and_names_the_field() {
        for kind in [Kind::Key, Kind::Name, Kind::Note, Kind::Text, Kind::Search, Kind::Phone, Kind::Url, Kind::Value] {
            let e = check("f", kind, "a\0b").unwrap_err();
            assert_eq!(e.field, "f");
            assert!(e.problem.contains("NUL"), "{kind:?}: {e}");
            assert!(check("f", kind, "a\u{1b}[31mb").unwrap_err().problem.contains("U+001B"), "{kind:?}");
            // every kind but a message's text stops short of 10,000 characters
            let long = if kind == Kind::Text { TEXT_MAX_CHARS + 1 } else { 10_000 };
            assert!(check("f", kind, &"1".repeat(long)).unwrap_err().problem.contains("longer than"), "{kind:?}");
        }
        assert!(check("text", Kind::Text, &"слово ".repeat(2500)).is_ok(), "a long message, split when sent");
        assert!(check("pem", Kind::Value, "-----BEGIN KEY-----\nMII\n-----END KEY-----\n").is_ok());
        assert!(check("login", Kind::Key, "alice").is_ok());
        assert!(check("login", Kind::Key, "").is_err());
        assert!(check("login", Kind::Key, " alice").is_err());
        assert!(check("login", Kind::Key, "a\nb").is_err());
        assert!(check("login", Kind::Key, &"a".repeat(KEY_MAX_CHARS)).is_ok());
        assert!(check("login", Kind::Key, &"a".repeat(KEY_MAX_CHARS + 1)).is_err());
        assert!(check("name", Kind::Name, "   ").is_err());
        assert!(check("name", Kind::Name, "Алиса Смирнова").is_ok());
        assert!(check("note", Kind::Note, "").is_ok());
        assert!(check("note", Kind::Note, "line\nline\ttab\r\n").is_ok());
        assert!(check("text", Kind::Text, &"я".repeat(TEXT_MAX_CHARS)).is_ok());
        assert!(check("text", Kind::Text, &"я".repeat(TEXT_MAX_CHARS + 1)).is_err());
        assert!(check("phone", Kind::Phone, "+7 (999) 123-45-67").is_ok());
        assert!(check("phone", Kind::Phone, "+7 999 abc").is_err());
        assert!(check("phone", Kind::Phone, "+").is_err());
        assert!(check("url", Kind::Url, "https://example.com/a b").is_err());
        assert!(check("url", Kind::Url, "").is_err());
        assert_eq!(check("x", Kind::Key, "a\0").unwrap_err().to_string(), "`x` contains a NUL character (U+0000)");
    }

    #[test]
    fn comma_lists_refuse_empty_lists_and_empty_items() {
        assert_eq!(comma_list("state", "queued, closed").unwrap(), vec!["queued", "closed"]);
        for bad in ["", " ", ",,,", "queued,", ",queued", "a,,b"] {
            let e = comma_list("state", bad).unwrap_err();
            assert_eq!(e.field, "state", "{bad:?}");
        }
        assert!(comma_list("state", "a\0").is_err());
        assert!(non_empty::<u8>("rows", &[]).is_err());
        assert!(non_empty("rows", &[1]).is_ok());
        assert!(check_each("queues", Kind::Key, &["a", "b\0"]).unwrap_err().field == "queues[1]");
    }

    #[test]
    fn json_is_walked_to_every_string_and_key() {
        let ok = json!({"text": "hi\nthere", "rows": [[{"text": "Yes"}]], "n": 1, "b": true, "z": null});
        assert!(check_json("args", &ok).is_ok());
        let e = check_json("args", &json!({"rows": [[{"text": "ok"}, {"text": "x\0"}]]})).unwrap_err();
        assert_eq!(e.field, "args.rows[0][1].text");
        let e = check_json("", &json!({"fields": {"k\u{7}": 1}})).unwrap_err();
        assert_eq!(e.field, "fields.k\\u{7}");
        assert!(check_json("", &json!(["x".repeat(TEXT_MAX_CHARS + 1)])).is_err());
        let e = check_json_as("settings", Kind::Value, &json!({"title": "x".repeat(10_000)})).unwrap_err();
        assert_eq!(e.field, "settings.title");
        let pairs = [(Cow::from("q"), Cow::from("a\u{0}b"))];
        assert_eq!(check_pairs(pairs).unwrap_err().field, "q");
        let pairs = [(Cow::from("q\u{0}"), Cow::from("ab"))];
        assert_eq!(check_pairs(pairs).unwrap_err().field, "q\\0");
    }

    #[test]
    fn logs_see_control_characters_escaped_and_long_values_cut() {
        assert!(matches!(escape("plain"), Cow::Borrowed("plain")));
        assert_eq!(escape("a\0b\n\u{1b}[2J"), "a\\0b\\n\\u{1b}[2J");
        let huge = "x".repeat(10_000);
        let long = escape(&huge);
        assert_eq!(long.chars().count(), 201);
        assert_eq!(Escaped("a\rb").to_string(), "a\\rb");
    }
}
