//! Admin-defined interaction fields: what a definition may say and the checks of a value an
//! agent sets, without I/O. Definitions are stored by `store::fields`; values live in the
//! interaction's `fields` (beside the bot's and the campaign's).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The longest label, choice and text value, in characters.
pub const MAX_TEXT_CHARS: usize = 1000;
/// The most choices a `choice` field has.
pub const MAX_CHOICES: usize = 50;
/// The longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 64;
/// Keys the hub writes itself (an answered campaign).
pub const RESERVED_KEYS: [&str; 2] = ["campaign", "campaign_id"];

/// The type of a field's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    Text,
    Number,
    Choice,
    Bool,
}

impl FieldType {
    pub fn as_str(self) -> &'static str {
        match self {
            FieldType::Text => "text",
            FieldType::Number => "number",
            FieldType::Choice => "choice",
            FieldType::Bool => "bool",
        }
    }
}

/// A field the admin defined.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldDef {
    /// `a-z` first, then `a-z`, `0-9`, `_`; at most 64 bytes.
    pub key: String,
    pub label: String,
    #[serde(rename = "type")]
    pub kind: FieldType,
    /// The values a `choice` field takes (none for the other types).
    pub choices: Vec<String>,
    /// A required field cannot be cleared.
    pub required: bool,
}

/// Whether `key` names a field: `a-z` first, then `a-z`, `0-9`, `_`, at most 64 bytes.
pub fn good_key(key: &str) -> bool {
    let b = key.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_KEY_BYTES
        && b[0].is_ascii_lowercase()
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
}

fn good_text(s: &str) -> bool {
    !s.trim().is_empty()
        && s.chars().count() <= MAX_TEXT_CHARS
        && !s.chars().any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r')
}

/// What is wrong with a definition, if anything (the admin API's 400).
pub fn check_def(def: &FieldDef) -> Result<(), String> {
    if !good_key(&def.key) {
        return Err(format!(
            "key {:?}: a-z first, then a-z, 0-9 or _, at most {MAX_KEY_BYTES} bytes",
            def.key.chars().take(MAX_KEY_BYTES).collect::<String>()
        ));
    }
    if RESERVED_KEYS.contains(&def.key.as_str()) {
        return Err(format!("key {:?} is written by the hub itself", def.key));
    }
    if !good_text(&def.label) {
        return Err(format!("label: 1 to {MAX_TEXT_CHARS} characters, no control characters"));
    }
    match def.kind {
        FieldType::Choice => {
            if def.choices.is_empty() || def.choices.len() > MAX_CHOICES {
                return Err(format!("choices: a choice field has 1 to {MAX_CHOICES} choices"));
            }
            if let Some(bad) = def.choices.iter().find(|c| !good_text(c) || c.trim() != c.as_str()) {
                return Err(format!(
                    "choices: {bad:?} is not a choice (1 to {MAX_TEXT_CHARS} characters, no spaces around, no control characters)"
                ));
            }
            for (n, c) in def.choices.iter().enumerate() {
                if def.choices[..n].contains(c) {
                    return Err(format!("choices: {c:?} is given twice"));
                }
            }
        }
        _ if !def.choices.is_empty() => {
            return Err(format!("choices: only a choice field has choices, not a {} field", def.kind.as_str()));
        }
        _ => {}
    }
    Ok(())
}

/// Why a value is refused (`invalid_field_value` on the agent API).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldValueError {
    #[error("field {key:?} takes a {expected} value")]
    WrongType { key: String, expected: &'static str },
    #[error("field {key:?} takes one of its choices, not {value:?}")]
    NotAChoice { key: String, value: String },
    #[error("field {0:?} is required: it cannot be cleared")]
    Required(String),
    #[error("field {0:?}: a text of 1 to 1000 characters without control characters")]
    BadText(String),
}

/// Checks a value for `def`: `null` clears the field (`Ok(None)`) unless it is required; text
/// is trimmed (blank is `null`), at most [`MAX_TEXT_CHARS`] characters; a number is any finite
/// JSON number; a choice is one of the choices exactly; a bool is `true` or `false`.
pub fn check_value(def: &FieldDef, value: &Value) -> Result<Option<Value>, FieldValueError> {
    let wrong = || FieldValueError::WrongType { key: def.key.clone(), expected: def.kind.as_str() };
    let value = match (def.kind, value) {
        (_, Value::Null) => None,
        (FieldType::Text, Value::String(s)) if s.trim().is_empty() => None,
        (FieldType::Text, Value::String(s)) => {
            if !good_text(s) {
                return Err(FieldValueError::BadText(def.key.clone()));
            }
            Some(Value::String(s.trim().to_owned()))
        }
        (FieldType::Number, Value::Number(n)) => Some(Value::Number(n.clone())),
        (FieldType::Choice, Value::String(s)) => {
            if !def.choices.contains(s) {
                return Err(FieldValueError::NotAChoice { key: def.key.clone(), value: s.chars().take(100).collect() });
            }
            Some(Value::String(s.clone()))
        }
        (FieldType::Bool, Value::Bool(b)) => Some(Value::Bool(*b)),
        _ => return Err(wrong()),
    };
    if value.is_none() && def.required {
        return Err(FieldValueError::Required(def.key.clone()));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn def(kind: FieldType, choices: &[&str], required: bool) -> FieldDef {
        FieldDef {
            key: "topic".into(),
            label: "Тема".into(),
            kind,
            choices: choices.iter().map(|c| c.to_string()).collect(),
            required,
        }
    }

    #[test]
    fn definitions_are_checked() {
        assert_eq!(check_def(&def(FieldType::Text, &[], false)), Ok(()));
        assert_eq!(check_def(&def(FieldType::Choice, &["Заказ", "Возврат"], true)), Ok(()));
        for key in ["", "Topic", "1st", "a-b", "a b", &"a".repeat(65), "campaign"] {
            assert!(check_def(&FieldDef { key: key.into(), ..def(FieldType::Text, &[], false) }).is_err(), "{key:?}");
        }
        assert!(check_def(&FieldDef { key: "a".repeat(64), ..def(FieldType::Bool, &[], false) }).is_ok());
        assert!(
            check_def(&FieldDef { label: " ".into(), ..def(FieldType::Text, &[], false) })
                .unwrap_err()
                .starts_with("label")
        );
        assert!(check_def(&FieldDef { label: "a\u{0}".into(), ..def(FieldType::Text, &[], false) }).is_err());
        for (kind, choices) in [
            (FieldType::Choice, vec![]),
            (FieldType::Choice, vec!["a", "a"]),
            (FieldType::Choice, vec![" a"]),
            (FieldType::Choice, vec![""]),
            (FieldType::Text, vec!["a"]),
            (FieldType::Number, vec!["1"]),
        ] {
            assert!(check_def(&def(kind, &choices, false)).unwrap_err().starts_with("choices"), "{kind:?} {choices:?}");
        }
        let many: Vec<String> = (0..51).map(|n| n.to_string()).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert!(check_def(&def(FieldType::Choice, &many, false)).is_err());
        assert!(check_def(&def(FieldType::Choice, &many[..50], false)).is_ok());
    }

    #[test]
    fn values_follow_their_type() {
        let text = def(FieldType::Text, &[], false);
        assert_eq!(check_value(&text, &json!("  hi \n")), Ok(Some(json!("hi"))));
        assert_eq!(check_value(&text, &json!("  ")), Ok(None));
        assert_eq!(check_value(&text, &Value::Null), Ok(None));
        assert_eq!(
            check_value(&text, &json!(1)),
            Err(FieldValueError::WrongType { key: "topic".into(), expected: "text" })
        );
        assert_eq!(check_value(&text, &json!("a\u{1b}b")), Err(FieldValueError::BadText("topic".into())));
        assert_eq!(check_value(&text, &json!("é".repeat(1001))), Err(FieldValueError::BadText("topic".into())));
        let number = def(FieldType::Number, &[], false);
        assert_eq!(check_value(&number, &json!(2.5)), Ok(Some(json!(2.5))));
        assert_eq!(check_value(&number, &json!(-3)), Ok(Some(json!(-3))));
        assert!(check_value(&number, &json!("3")).is_err());
        let choice = def(FieldType::Choice, &["Заказ", "Возврат"], true);
        assert_eq!(check_value(&choice, &json!("Возврат")), Ok(Some(json!("Возврат"))));
        assert_eq!(
            check_value(&choice, &json!("возврат")),
            Err(FieldValueError::NotAChoice { key: "topic".into(), value: "возврат".into() })
        );
        assert_eq!(check_value(&choice, &Value::Null), Err(FieldValueError::Required("topic".into())));
        assert!(check_value(&choice, &json!(["Заказ"])).is_err());
        let flag = def(FieldType::Bool, &[], true);
        assert_eq!(check_value(&flag, &json!(false)), Ok(Some(json!(false))));
        assert!(check_value(&flag, &json!("true")).is_err());
        assert!(check_value(&flag, &json!(0)).is_err());
        assert_eq!(
            check_value(&def(FieldType::Text, &[], true), &json!(" ")),
            Err(FieldValueError::Required("topic".into()))
        );
    }
}
