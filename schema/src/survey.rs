//! The customer survey, shared by the post-call survey (`video`) and the survey after a closed
//! chat: what a survey is, the checks of an answer, and the sans-IO decisions of the chat
//! survey ("is this message an answer, what is asked next"), without I/O. The answers of both
//! are stored by `store::survey` (`call_surveys`, the `interaction.rated` event).

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::store::SurveyAnswer;

/// The longest question text and the longest answer, in characters.
pub const MAX_TEXT_CHARS: usize = 1000;
/// The most questions a survey has besides its rating.
pub const MAX_QUESTIONS: usize = 10;
/// The longest question id, in bytes.
pub const MAX_ID_BYTES: usize = 64;

/// One survey: the rating and the questions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Survey {
    #[serde(default = "enabled")]
    pub enabled: bool,
    pub rating_text: String,
    #[serde(default)]
    pub questions: Vec<Question>,
}

fn enabled() -> bool {
    true
}

/// A free-text question; its answer is optional.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Question {
    /// Stable id of the question (letters, digits, `_`, `-`): the key of its answer.
    pub id: String,
    pub text: String,
}

/// What is wrong with a survey's texts and questions, each as (the key under `key`, why).
pub fn survey_problems(key: &str, rating_text: &str, questions: &[Question]) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    if rating_text.trim().is_empty() || rating_text.chars().count() > MAX_TEXT_CHARS {
        problems.push((format!("{key}.rating_text"), format!("must be 1 to {MAX_TEXT_CHARS} characters")));
    }
    if questions.len() > MAX_QUESTIONS {
        problems.push((format!("{key}.questions"), format!("at most {MAX_QUESTIONS} questions")));
    }
    let mut seen = HashSet::new();
    for q in questions {
        let good_id = !q.id.is_empty()
            && q.id.len() <= MAX_ID_BYTES
            && q.id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !good_id {
            problems.push((
                format!("{key}.questions"),
                format!("{:?} is not a question id (1 to {MAX_ID_BYTES} letters, digits, _ or -)", q.id),
            ));
        } else if !seen.insert(q.id.as_str()) {
            problems.push((format!("{key}.questions"), format!("question id {:?} is used twice", q.id)));
        }
        if q.text.trim().is_empty() || q.text.chars().count() > MAX_TEXT_CHARS {
            problems.push((
                format!("{key}.questions"),
                format!("question {:?}: its text must be 1 to {MAX_TEXT_CHARS} characters", q.id),
            ));
        }
    }
    problems
}

/// Why an answer to a survey is refused (a 400 `bad_request` at the edge).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SurveyError {
    #[error("the rating must be a whole number from 1 to 5, not {0}")]
    Rating(i64),
    #[error("the survey has no question {0:?}")]
    UnknownQuestion(String),
    #[error("the answer to {0:?} is longer than {MAX_TEXT_CHARS} characters")]
    TooLong(String),
    #[error("the answer to {0:?} contains control characters")]
    ControlCharacters(String),
}

/// Checks one answer's text: at most [`MAX_TEXT_CHARS`] characters, line breaks and tabs
/// allowed, no other control character (NUL included). Returns it trimmed.
pub fn check_text<'a>(id: &str, answer: &'a str) -> Result<&'a str, SurveyError> {
    if answer.chars().count() > MAX_TEXT_CHARS {
        return Err(SurveyError::TooLong(id.to_owned()));
    }
    if answer.chars().any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r') {
        return Err(SurveyError::ControlCharacters(id.to_owned()));
    }
    Ok(answer.trim())
}

/// Checks an answer to `survey`: the rating 1 to 5; answers only to its questions, each passing
/// [`check_text`]. Blank answers are left out (the questions are optional). Returns the answers
/// in the survey's order, each with its question's text.
pub fn check_answer(
    survey: &Survey,
    rating: i64,
    answers: &BTreeMap<String, String>,
) -> Result<(i16, Vec<SurveyAnswer>), SurveyError> {
    if !(1..=5).contains(&rating) {
        return Err(SurveyError::Rating(rating));
    }
    let shown = |id: &str| id.chars().take(MAX_ID_BYTES).collect::<String>();
    if let Some(unknown) = answers.keys().find(|id| !survey.questions.iter().any(|q| &q.id == *id)) {
        return Err(SurveyError::UnknownQuestion(shown(unknown)));
    }
    let mut out = Vec::new();
    for q in &survey.questions {
        let Some(answer) = answers.get(&q.id) else { continue };
        let answer = check_text(&q.id, answer)?;
        if !answer.is_empty() {
            out.push(SurveyAnswer { id: q.id.clone(), question: q.text.clone(), answer: answer.to_owned() });
        }
    }
    Ok((rating as i16, out))
}

/// The default window of a chat survey, in minutes: a reply later than this after the last
/// question is a new conversation.
pub const DEFAULT_WINDOW_MINUTES: u32 = 30;
/// The longest window a chat survey may be given, in minutes (a day).
pub const MAX_WINDOW_MINUTES: u32 = 24 * 60;

/// `chat_survey` in an account's settings (`accounts.settings`): the survey the customer is
/// asked in their channel after an agent closes the chat. Off unless turned on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChatSurveySettings {
    pub enabled: bool,
    /// How long after the last question the customer's reply counts as an answer.
    pub window_minutes: u32,
    pub rating_text: String,
    pub questions: Vec<Question>,
    /// Per queue: the chats of that queue get this survey instead (`enabled = false`: none).
    pub queues: BTreeMap<String, Survey>,
}

impl Default for ChatSurveySettings {
    fn default() -> Self {
        ChatSurveySettings {
            enabled: false,
            window_minutes: DEFAULT_WINDOW_MINUTES,
            rating_text: "Оцените, пожалуйста, наш разговор от 1 до 5".into(),
            questions: Vec::new(),
            queues: BTreeMap::new(),
        }
    }
}

impl ChatSurveySettings {
    /// The settings in an account's settings object (`None` there: the defaults, i.e. off).
    pub fn from_account(settings: &serde_json::Value) -> Result<Self, String> {
        let parsed: ChatSurveySettings = match settings.get("chat_survey") {
            None | Some(serde_json::Value::Null) => return Ok(Self::default()),
            Some(v) => serde_json::from_value(v.clone()).map_err(|e| format!("chat_survey: {e}"))?,
        };
        let mut problems = survey_problems("chat_survey", &parsed.rating_text, &parsed.questions);
        for (queue, s) in &parsed.queues {
            problems.extend(survey_problems(&format!("chat_survey.queues.{queue}"), &s.rating_text, &s.questions));
        }
        if !(1..=MAX_WINDOW_MINUTES).contains(&parsed.window_minutes) {
            problems.push(("chat_survey.window_minutes".into(), format!("must be 1 to {MAX_WINDOW_MINUTES}")));
        }
        match problems.first() {
            Some((key, why)) => Err(format!("{key}: {why}")),
            None => Ok(parsed),
        }
    }

    /// The survey a chat of `queue` gets; `None` when it is off for that queue.
    pub fn for_queue(&self, queue: Option<&str>) -> Option<Survey> {
        let survey = match queue.and_then(|q| self.queues.get(q)) {
            Some(survey) => survey.clone(),
            None => Survey {
                enabled: self.enabled,
                rating_text: self.rating_text.clone(),
                questions: self.questions.clone(),
            },
        };
        survey.enabled.then_some(survey)
    }
}

/// Where a chat survey stands: what was answered so far and when the last question went out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatSurveyState {
    pub survey: Survey,
    /// The rating, once given; then `answers` holds the questions answered so far, in order.
    pub rating: Option<i16>,
    pub answers: Vec<SurveyAnswer>,
    pub asked_at: DateTime<Utc>,
    pub window_minutes: u32,
}

/// The buttons of the rating question.
pub const RATING_BUTTONS: [&str; 5] = ["1", "2", "3", "4", "5"];

/// A question to send: its text and its buttons (the rating's 1 to 5, none for free text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ask {
    pub text: String,
    pub buttons: Vec<String>,
}

/// What to do with the customer's message while a chat survey waits for an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatSurveyStep {
    /// An answer, and there is another question: ask it; the survey waits on (`state`).
    Next { state: ChatSurveyState, ask: Ask },
    /// The last answer: store the survey.
    Done { rating: i16, answers: Vec<SurveyAnswer> },
    /// Not an answer, or too late: the survey ends (stored with what was answered when the
    /// rating was given) and the message is handled as any other.
    Ended { rating: Option<i16>, answers: Vec<SurveyAnswer>, expired: bool },
}

impl ChatSurveyState {
    /// A new survey, its rating question asked at `now`.
    pub fn start(survey: Survey, window_minutes: u32, now: DateTime<Utc>) -> (Self, Ask) {
        let ask = Ask { text: survey.rating_text.clone(), buttons: RATING_BUTTONS.map(String::from).to_vec() };
        (ChatSurveyState { survey, rating: None, answers: Vec::new(), asked_at: now, window_minutes }, ask)
    }

    /// Whether a reply at `now` is still inside the window of the last question.
    pub fn open_at(&self, now: DateTime<Utc>) -> bool {
        now <= self.asked_at + Duration::minutes(i64::from(self.window_minutes))
    }

    /// The customer wrote `text` (`None`: a message without text, a file or a sticker) at `now`.
    /// The rating is one digit 1 to 5 (a button press comes back as its text); an answer to a
    /// free-text question is any text that passes [`check_text`].
    pub fn on_message(&self, now: DateTime<Utc>, text: Option<&str>) -> ChatSurveyStep {
        let ended = |expired| ChatSurveyStep::Ended { rating: self.rating, answers: self.answers.clone(), expired };
        if !self.open_at(now) {
            return ended(true);
        }
        let Some(text) = text else { return ended(false) };
        let mut next = self.clone();
        match self.rating {
            None => {
                let t = text.trim();
                let digit = match t.as_bytes() {
                    [d @ b'1'..=b'5'] => i16::from(d - b'0'),
                    _ => return ended(false),
                };
                next.rating = Some(digit);
            }
            Some(_) => {
                let Some(q) = self.survey.questions.get(self.answers.len()) else { return ended(false) };
                match check_text(&q.id, text) {
                    Ok(answer) if !answer.is_empty() => next.answers.push(SurveyAnswer {
                        id: q.id.clone(),
                        question: q.text.clone(),
                        answer: answer.to_owned(),
                    }),
                    _ => return ended(false),
                }
            }
        }
        match next.survey.questions.get(next.answers.len()) {
            Some(q) => {
                next.asked_at = now;
                ChatSurveyStep::Next { ask: Ask { text: q.text.clone(), buttons: Vec::new() }, state: next }
            }
            None => ChatSurveyStep::Done {
                rating: next.rating.expect("the rating was given before the questions"),
                answers: next.answers,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn survey() -> Survey {
        Survey {
            enabled: true,
            rating_text: "How was it?".into(),
            questions: vec![
                Question { id: "solved".into(), text: "Was your question solved?".into() },
                Question { id: "comment".into(), text: "Anything else?".into() },
            ],
        }
    }

    fn answers(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn t(min: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 7, 12, 0, 0).unwrap() + Duration::minutes(min)
    }

    #[test]
    fn a_good_answer_keeps_the_surveys_order_and_drops_blanks() {
        let (rating, out) =
            check_answer(&survey(), 4, &answers(&[("comment", " thanks\nbye "), ("solved", "  ")])).unwrap();
        assert_eq!(rating, 4);
        assert_eq!(
            out,
            vec![SurveyAnswer {
                id: "comment".into(),
                question: "Anything else?".into(),
                answer: "thanks\nbye".into()
            }]
        );
        assert_eq!(check_answer(&survey(), 1, &answers(&[])).unwrap(), (1, vec![]));
        assert_eq!(check_answer(&survey(), 5, &answers(&[])).unwrap().0, 5);
    }

    #[test]
    fn bad_answers_are_refused_with_their_reason() {
        let s = survey();
        assert_eq!(check_answer(&s, 0, &answers(&[])), Err(SurveyError::Rating(0)));
        assert_eq!(check_answer(&s, 6, &answers(&[])), Err(SurveyError::Rating(6)));
        assert_eq!(check_answer(&s, -1, &answers(&[])), Err(SurveyError::Rating(-1)));
        assert_eq!(check_answer(&s, 3, &answers(&[("nope", "x")])), Err(SurveyError::UnknownQuestion("nope".into())));
        let long = "é".repeat(MAX_TEXT_CHARS + 1);
        assert_eq!(check_answer(&s, 3, &answers(&[("comment", &long)])), Err(SurveyError::TooLong("comment".into())));
        assert!(check_answer(&s, 3, &answers(&[("comment", &"é".repeat(MAX_TEXT_CHARS))])).is_ok());
        assert_eq!(
            check_answer(&s, 3, &answers(&[("comment", "a\0b")])),
            Err(SurveyError::ControlCharacters("comment".into()))
        );
        assert_eq!(
            check_answer(&s, 3, &answers(&[("solved", "\u{1b}[31m")])),
            Err(SurveyError::ControlCharacters("solved".into()))
        );
        // an unknown id is shown cut short
        let id = "x".repeat(10_000);
        match check_answer(&s, 3, &answers(&[(&id, "a")])) {
            Err(SurveyError::UnknownQuestion(shown)) => assert_eq!(shown.len(), MAX_ID_BYTES),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_chat_survey_asks_the_rating_then_each_question() {
        let (state, ask) = ChatSurveyState::start(survey(), 30, t(0));
        assert_eq!(
            ask,
            Ask {
                text: "How was it?".into(),
                buttons: vec!["1", "2", "3", "4", "5"].into_iter().map(String::from).collect()
            }
        );
        // a typed digit with spaces is the rating; the first question follows
        let ChatSurveyStep::Next { state, ask } = state.on_message(t(29), Some(" 4 ")) else { panic!() };
        assert_eq!((state.rating, state.asked_at), (Some(4), t(29)));
        assert_eq!(ask, Ask { text: "Was your question solved?".into(), buttons: vec![] });
        // the window counts from the last question
        let ChatSurveyStep::Next { state, ask } = state.on_message(t(58), Some("да\n")) else { panic!() };
        assert_eq!(ask.text, "Anything else?");
        assert_eq!(
            state.on_message(t(60), Some(" спасибо ")),
            ChatSurveyStep::Done {
                rating: 4,
                answers: vec![
                    SurveyAnswer {
                        id: "solved".into(),
                        question: "Was your question solved?".into(),
                        answer: "да".into()
                    },
                    SurveyAnswer {
                        id: "comment".into(), question: "Anything else?".into(), answer: "спасибо".into()
                    },
                ]
            }
        );
        // no questions: the rating ends it
        let only = Survey { questions: vec![], ..survey() };
        let (state, _) = ChatSurveyState::start(only, 30, t(0));
        assert_eq!(state.on_message(t(1), Some("5")), ChatSurveyStep::Done { rating: 5, answers: vec![] });
    }

    #[test]
    fn a_non_answer_or_a_late_reply_ends_the_chat_survey() {
        let (state, _) = ChatSurveyState::start(survey(), 30, t(0));
        for text in ["0", "6", "45", "4.5", "хорошо", "", "5 звёзд"] {
            assert_eq!(
                state.on_message(t(1), Some(text)),
                ChatSurveyStep::Ended { rating: None, answers: vec![], expired: false },
                "{text:?}"
            );
        }
        assert_eq!(
            state.on_message(t(1), None),
            ChatSurveyStep::Ended { rating: None, answers: vec![], expired: false }
        );
        // the last minute of the window still counts, the next does not
        assert!(matches!(state.on_message(t(30), Some("3")), ChatSurveyStep::Next { .. }));
        assert_eq!(
            state.on_message(t(30) + Duration::seconds(1), Some("3")),
            ChatSurveyStep::Ended { rating: None, answers: vec![], expired: true }
        );
        // after the rating, a file or a blank or a control character ends it with the rating kept
        let ChatSurveyStep::Next { state, .. } = state.on_message(t(1), Some("2")) else { panic!() };
        for text in [None, Some("  "), Some("a\0b")] {
            assert_eq!(
                state.on_message(t(2), text),
                ChatSurveyStep::Ended { rating: Some(2), answers: vec![], expired: false }
            );
        }
        assert_eq!(
            state.on_message(t(32), Some("ok")),
            ChatSurveyStep::Ended { rating: Some(2), answers: vec![], expired: true }
        );
    }

    #[test]
    fn chat_survey_settings_are_off_by_default_and_checked() {
        let off = ChatSurveySettings::from_account(&serde_json::json!({})).unwrap();
        assert_eq!(off.for_queue(Some("support")), None);
        let on = ChatSurveySettings::from_account(&serde_json::json!({"chat_survey": {
            "enabled": true, "rating_text": "Оцените", "queues": {"vip": {"rating_text": "VIP?", "questions": [{"id": "c", "text": "?"}]}, "sales": {"enabled": false, "rating_text": "x"}}
        }}))
        .unwrap();
        assert_eq!(on.window_minutes, 30);
        assert_eq!(on.for_queue(None).unwrap().rating_text, "Оцените");
        assert_eq!(on.for_queue(Some("vip")).unwrap().questions.len(), 1);
        assert_eq!(on.for_queue(Some("sales")), None);
        // only a queue's own survey when the account's is off
        let queue_only = ChatSurveySettings::from_account(&serde_json::json!({"chat_survey": {
            "queues": {"vip": {"rating_text": "VIP?"}}
        }}))
        .unwrap();
        assert_eq!(queue_only.for_queue(Some("support")), None);
        assert!(queue_only.for_queue(Some("vip")).is_some());
        for (bad, key) in [
            (serde_json::json!({"enabled": "yes"}), "chat_survey"),
            (serde_json::json!({"enabled": true, "colour": 1}), "chat_survey"),
            (serde_json::json!({"enabled": true, "rating_text": " "}), "chat_survey.rating_text"),
            (serde_json::json!({"enabled": true, "window_minutes": 0}), "chat_survey.window_minutes"),
            (
                serde_json::json!({"queues": {"q": {"rating_text": "x", "questions": [{"id": "a b", "text": "?"}]}}}),
                "chat_survey.queues.q.questions",
            ),
        ] {
            let err = ChatSurveySettings::from_account(&serde_json::json!({ "chat_survey": bad })).unwrap_err();
            assert!(err.starts_with(key), "{err}");
        }
    }
}
