//! The post-call survey: what the customer is asked after a call (`[video.survey]`, the default
//! and per queue); the survey itself and the checks of an answer are `schema::survey`, shared with
//! the survey after a closed chat. The endpoint is in `api`; the
//! answers are stored by `schema::store::insert_call_survey`.

use std::collections::BTreeMap;

use ops::config::Problem;
pub use schema::survey::{MAX_QUESTIONS, MAX_TEXT_CHARS, Question, Survey, SurveyError, check_answer};
use serde::{Deserialize, Serialize};

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
    schema::survey::survey_problems(key, rating_text, questions)
        .into_iter()
        .map(|(key, why)| Problem::new(key, why))
        .collect()
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
