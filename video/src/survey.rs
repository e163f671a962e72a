//! The post-call survey: what the customer is asked after a call (`[video.survey]`, the default
//! and per queue) and the checks of an answer, without I/O. The endpoint is in `api`; the
//! answers are stored by `schema::store::insert_call_survey`.

use std::collections::{BTreeMap, HashSet};

use ops::config::Problem;
use schema::store::SurveyAnswer;
use serde::{Deserialize, Serialize};

/// The longest question text and the longest answer, in characters.
pub const MAX_TEXT_CHARS: usize = 1000;
/// The most questions a survey has besides its rating.
pub const MAX_QUESTIONS: usize = 10;
/// The longest question id, in bytes.
const MAX_ID_BYTES: usize = 64;

/// `[video.survey]`: the survey of calls whose queue has none of its own.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Whether the customer is asked at all.
    pub enabled: bool,
    /// The rating's question (answered 1 to 5).
    pub rating_text: String,
    /// Optional free-text questions.
    pub questions: Vec<Question>,
    /// Per queue (`[video.survey.queues.<queue>]`): that queue's calls get this survey instead.
    pub queues: BTreeMap<String, Survey>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            enabled: true,
            rating_text: "How would you rate this call?".into(),
            questions: Vec::new(),
            queues: BTreeMap::new(),
        }
    }
}

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

impl Config {
    /// The survey a call of `queue` gets; `None` when that survey is turned off.
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

    /// What is wrong with these settings, each naming its `video.survey.*` key.
    pub fn problems(&self) -> Vec<Problem> {
        let mut problems = survey_problems("video.survey", &self.rating_text, &self.questions);
        for (queue, survey) in &self.queues {
            problems.extend(survey_problems(
                &format!("video.survey.queues.{queue}"),
                &survey.rating_text,
                &survey.questions,
            ));
        }
        problems
    }
}

fn survey_problems(key: &str, rating_text: &str, questions: &[Question]) -> Vec<Problem> {
    let mut problems = Vec::new();
    if rating_text.trim().is_empty() || rating_text.chars().count() > MAX_TEXT_CHARS {
        problems.push(Problem::new(format!("{key}.rating_text"), format!("must be 1 to {MAX_TEXT_CHARS} characters")));
    }
    if questions.len() > MAX_QUESTIONS {
        problems.push(Problem::new(format!("{key}.questions"), format!("at most {MAX_QUESTIONS} questions")));
    }
    let mut seen = HashSet::new();
    for q in questions {
        let good_id = !q.id.is_empty()
            && q.id.len() <= MAX_ID_BYTES
            && q.id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !good_id {
            problems.push(Problem::new(
                format!("{key}.questions"),
                format!("{:?} is not a question id (1 to {MAX_ID_BYTES} letters, digits, _ or -)", q.id),
            ));
        } else if !seen.insert(q.id.as_str()) {
            problems.push(Problem::new(format!("{key}.questions"), format!("question id {:?} is used twice", q.id)));
        }
        if q.text.trim().is_empty() || q.text.chars().count() > MAX_TEXT_CHARS {
            problems.push(Problem::new(
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

/// Checks an answer to `survey`: the rating 1 to 5; answers only to its questions, each at most
/// [`MAX_TEXT_CHARS`] characters of text (line breaks and tabs allowed, no other control
/// character, NUL included). Blank answers are left out (the questions are optional). Returns
/// the answers in the survey's order, each with its question's text.
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
        if answer.chars().count() > MAX_TEXT_CHARS {
            return Err(SurveyError::TooLong(q.id.clone()));
        }
        if answer.chars().any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r') {
            return Err(SurveyError::ControlCharacters(q.id.clone()));
        }
        let answer = answer.trim();
        if !answer.is_empty() {
            out.push(SurveyAnswer { id: q.id.clone(), question: q.text.clone(), answer: answer.to_owned() });
        }
    }
    Ok((rating as i16, out))
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn a_queue_survey_replaces_the_default_and_off_is_none() {
        let mut config = Config::default();
        assert_eq!(config.for_queue(Some("sales")).unwrap().rating_text, "How would you rate this call?");
        config.queues.insert("sales".into(), survey());
        config.queues.insert("vip".into(), Survey { enabled: false, ..survey() });
        assert_eq!(config.for_queue(Some("sales")), Some(survey()));
        assert_eq!(config.for_queue(Some("vip")), None);
        assert!(config.for_queue(None).is_some());
        config.enabled = false;
        assert_eq!(config.for_queue(None), None);
        assert_eq!(config.for_queue(Some("support")), None);
        assert_eq!(config.for_queue(Some("sales")), Some(survey()));
    }

    #[test]
    fn settings_problems_name_their_key() {
        assert!(Config::default().problems().is_empty());
        let mut config = Config {
            questions: vec![
                Question { id: "a b".into(), text: "x".into() },
                Question { id: "c".into(), text: "x".into() },
                Question { id: "c".into(), text: " ".into() },
            ],
            ..Config::default()
        };
        config.queues.insert("sales".into(), Survey { enabled: true, rating_text: String::new(), questions: vec![] });
        let keys: Vec<String> = config.problems().into_iter().map(|p| p.key).collect();
        assert_eq!(
            keys,
            vec![
                "video.survey.questions",
                "video.survey.questions",
                "video.survey.questions",
                "video.survey.queues.sales.rating_text"
            ]
        );
    }
}
