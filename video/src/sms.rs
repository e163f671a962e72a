//! Call links by SMS: the provider trait, SMSC.ru's HTTP API behind it, and the pure parts
//! (phone numbers, the provider's answers, delivery states) tested without sockets.
//!
//! SMSC.ru (<https://smsc.ru/api/http/>): `POST <url>/sys/send.php` with `login`, `psw`,
//! `phones`, `mes`, `charset=utf-8`, `fmt=3` (JSON), optionally `sender`, answers
//! `{"id": 1234, "cnt": 1}` or `{"error": "...", "error_code": 2}`; `POST
//! <url>/sys/status.php` with `login`, `psw`, `phone`, `id`, `fmt=3` answers `{"status": 1,
//! ...}` (-3 not found yet, -1 waiting, 0 handed to the operator, 1 delivered, 2 read, 3
//! expired, 4 link opened, 20 undeliverable, 22 wrong number, 23 prohibited, 24 no funds, 25
//! unavailable number) or an error. The login and password travel in the form body, never in a
//! URL, and are never logged.

use std::time::Duration;

use ops::config::{Problem, Secret};
use ops::target::{TargetError, Targets};
use serde::{Deserialize, Serialize};

/// `[video.sms]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `smsc` (SMSC.ru), or empty: no SMS.
    pub provider: String,
    /// The provider's base URL.
    pub url: String,
    pub login: String,
    /// A string or `{ file = "/path" }`.
    pub password: Option<Secret>,
    /// The sender name agreed with the provider; empty: the account's default.
    pub sender: String,
    /// Each request to the provider, in seconds.
    pub timeout_s: u64,
    /// How often the delivery is asked for, in milliseconds, ...
    pub status_interval_ms: u64,
    /// ... and for how long after sending, in seconds.
    pub status_for_s: u64,
    /// Networks (CIDR) the provider may be reached at although internal (a local fake in tests).
    pub allow_internal: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            provider: String::new(),
            url: "https://smsc.ru".into(),
            login: String::new(),
            password: None,
            sender: String::new(),
            timeout_s: 10,
            status_interval_ms: 15_000,
            status_for_s: 3600,
            allow_internal: Vec::new(),
        }
    }
}

impl Config {
    pub fn problems(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        match self.provider.as_str() {
            "" => return problems,
            "smsc" => {}
            other => problems.push(Problem::new("video.sms.provider", format!("{other:?} is not `smsc` or empty"))),
        }
        if self.login.is_empty() {
            problems.push(Problem::new("video.sms.login", "is missing: the provider's login"));
        }
        if self.password.as_ref().is_none_or(|p| p.expose().is_empty()) {
            problems.push(Problem::new("video.sms.password", "is missing: the provider's password"));
        }
        if self.timeout_s == 0 || self.status_interval_ms == 0 {
            problems.push(Problem::new("video.sms", "timeout_s and status_interval_ms must be above 0"));
        }
        match self.targets() {
            Ok(targets) => {
                if let Err(e) = targets.parse(&self.url) {
                    problems.push(Problem::new("video.sms.url", format!("{:?} {e}", self.url)));
                }
            }
            Err(e) => problems.push(Problem::new("video.sms.allow_internal", e)),
        }
        problems
    }

    fn targets(&self) -> Result<Targets, String> {
        let nets = self
            .allow_internal
            .iter()
            .map(|n| n.parse().map_err(|_| format!("{n:?} is not a network (CIDR)")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Targets::new(nets).for_setting("video.sms.allow_internal"))
    }

    /// The provider these settings name; `None` when SMS is off.
    pub fn provider(&self) -> Result<Option<Box<dyn SmsProvider>>, Vec<Problem>> {
        let problems = self.problems();
        if !problems.is_empty() {
            return Err(problems);
        }
        if self.provider.is_empty() {
            return Ok(None);
        }
        let targets = self.targets().map_err(|e| vec![Problem::new("video.sms.allow_internal", e)])?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(self.timeout_s))
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(targets.resolver())
            .build()
            .map_err(|e| vec![Problem::new("video.sms", format!("cannot build the HTTP client: {e}"))])?;
        Ok(Some(Box::new(Smsc {
            http,
            targets,
            url: self.url.trim_end_matches('/').to_owned(),
            login: self.login.clone(),
            password: self.password.clone().unwrap_or_default(),
            sender: self.sender.clone(),
        })))
    }
}

/// What went wrong sending an SMS or asking about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SmsError {
    /// The provider refused the message (a wrong number, no funds, bad credentials, ...).
    #[error("the SMS provider refused: {message} (code {code})")]
    Refused { code: i64, message: String },
    /// The provider could not be reached or answered with an HTTP error.
    #[error("the SMS provider is unavailable: {0}")]
    Unavailable(String),
    /// The provider's URL is not one the hub sends to.
    #[error("the SMS provider's URL {0}")]
    Target(#[from] TargetError),
    /// An answer that is not the provider's format.
    #[error("the SMS provider's answer is not understood: {0}")]
    BadAnswer(String),
}

/// Where an SMS is, as the provider says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Queued or handed to the operator.
    Sent,
    Delivered,
    Failed(String),
}

impl Delivery {
    pub fn state(&self) -> &'static str {
        match self {
            Delivery::Sent => "sent",
            Delivery::Delivered => "delivered",
            Delivery::Failed(_) => "failed",
        }
    }
}

/// An SMS provider.
#[async_trait::async_trait]
pub trait SmsProvider: Send + Sync {
    /// `smsc`.
    fn name(&self) -> &'static str;
    /// Sends `text` to `phone` (digits with the country code); the provider's message id.
    async fn send(&self, phone: &str, text: &str) -> Result<String, SmsError>;
    /// The delivery of message `id` to `phone`.
    async fn status(&self, phone: &str, id: &str) -> Result<Delivery, SmsError>;
}

/// SMSC.ru's HTTP API.
struct Smsc {
    http: reqwest::Client,
    targets: Targets,
    url: String,
    login: String,
    password: Secret,
    sender: String,
}

impl Smsc {
    async fn call(&self, script: &str, form: &[(&str, &str)]) -> Result<serde_json::Value, SmsError> {
        let url = self.targets.check_delivery(&format!("{}/sys/{script}", self.url))?;
        let mut body: Vec<(&str, &str)> =
            vec![("login", &self.login), ("psw", self.password.expose()), ("fmt", "3"), ("charset", "utf-8")];
        body.extend_from_slice(form);
        let response = self.http.post(url).form(&body).send().await.map_err(|e| SmsError::Unavailable(plain(e)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(SmsError::Unavailable(format!("HTTP {status}")));
        }
        let bytes = response.bytes().await.map_err(|e| SmsError::Unavailable(plain(e)))?;
        serde_json::from_slice(&bytes).map_err(|e| SmsError::BadAnswer(e.to_string()))
    }
}

/// A client error without the URL (the form is not in it, but keep the logs plain).
fn plain(e: reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "cannot connect".into()
    } else {
        e.without_url().to_string()
    }
}

#[async_trait::async_trait]
impl SmsProvider for Smsc {
    fn name(&self) -> &'static str {
        "smsc"
    }

    async fn send(&self, phone: &str, text: &str) -> Result<String, SmsError> {
        let mut form = vec![("phones", phone), ("mes", text)];
        if !self.sender.is_empty() {
            form.push(("sender", &self.sender));
        }
        parse_send(&self.call("send.php", &form).await?)
    }

    async fn status(&self, phone: &str, id: &str) -> Result<Delivery, SmsError> {
        parse_status(&self.call("status.php", &[("phone", phone), ("id", id)]).await?)
    }
}

fn refusal(answer: &serde_json::Value) -> Option<SmsError> {
    let message = answer.get("error")?;
    Some(SmsError::Refused {
        code: answer.get("error_code").and_then(serde_json::Value::as_i64).unwrap_or(0),
        message: message.as_str().unwrap_or("error").chars().take(200).collect(),
    })
}

/// `send.php`'s answer: the message id, or the refusal.
pub fn parse_send(answer: &serde_json::Value) -> Result<String, SmsError> {
    if let Some(refused) = refusal(answer) {
        return Err(refused);
    }
    match answer.get("id") {
        Some(serde_json::Value::Number(n)) => Ok(n.to_string()),
        Some(serde_json::Value::String(s)) if !s.is_empty() && s.len() <= 64 => Ok(s.clone()),
        _ => Err(SmsError::BadAnswer(format!("no message id in {}", short(answer)))),
    }
}

/// `status.php`'s answer: the delivery, or the refusal.
pub fn parse_status(answer: &serde_json::Value) -> Result<Delivery, SmsError> {
    if let Some(refused) = refusal(answer) {
        return Err(refused);
    }
    let code = answer
        .get("status")
        .and_then(|s| s.as_i64().or_else(|| s.as_str().and_then(|s| s.parse().ok())))
        .ok_or_else(|| SmsError::BadAnswer(format!("no status in {}", short(answer))))?;
    Ok(delivery(code))
}

/// SMSC's status codes.
pub fn delivery(code: i64) -> Delivery {
    match code {
        -3 | -1 | 0 => Delivery::Sent,
        1 | 2 | 4 => Delivery::Delivered,
        3 => Delivery::Failed("expired".into()),
        20 => Delivery::Failed("undeliverable".into()),
        22 => Delivery::Failed("wrong number".into()),
        23 => Delivery::Failed("prohibited".into()),
        24 => Delivery::Failed("insufficient funds".into()),
        25 => Delivery::Failed("unavailable number".into()),
        other => Delivery::Failed(format!("status {other}")),
    }
}

fn short(v: &serde_json::Value) -> String {
    v.to_string().chars().take(120).collect()
}

/// Why a phone number is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    #[error("a phone number has 10 to 15 digits with its country code (+7 912 345-67-89)")]
    Digits,
    #[error("a phone number holds digits, spaces, `+`, `-`, `(`, `)` and `.` only")]
    Characters,
}

/// A phone number as the provider takes it: digits with the country code. Spaces, dashes,
/// dots, brackets and a leading `+` are dropped; a Russian number written with the trunk
/// prefix (`8 912 ...`, 11 digits) gets its country code 7.
pub fn normalize_phone(raw: &str) -> Result<String, PhoneError> {
    let raw = raw.trim();
    if raw.chars().count() > 32 {
        return Err(PhoneError::Digits);
    }
    let body = raw.strip_prefix('+').unwrap_or(raw);
    if !body.chars().all(|c| c.is_ascii_digit() || matches!(c, ' ' | '-' | '(' | ')' | '.')) {
        return Err(PhoneError::Characters);
    }
    let mut digits: String = body.chars().filter(char::is_ascii_digit).collect();
    if !raw.starts_with('+') && digits.len() == 11 && digits.starts_with('8') {
        digits.replace_range(0..1, "7");
    }
    if !(10..=15).contains(&digits.len()) || digits.starts_with('0') {
        return Err(PhoneError::Digits);
    }
    Ok(digits)
}

/// A phone number as agents' streams and logs show it: the country code's first digit and the
/// last four, `+7******4567`.
pub fn masked(phone: &str) -> String {
    let n = phone.len();
    if n < 6 {
        return "*".repeat(n);
    }
    format!("+{}{}{}", &phone[..1], "*".repeat(n - 5), &phone[n - 4..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn phones_are_digits_with_the_country_code() {
        assert_eq!(normalize_phone("+7 (912) 345-67-89").unwrap(), "79123456789");
        assert_eq!(normalize_phone("8 912 345 67 89").unwrap(), "79123456789");
        assert_eq!(normalize_phone("+44 20 7946 0958").unwrap(), "442079460958");
        assert_eq!(normalize_phone("79123456789").unwrap(), "79123456789");
        assert_eq!(normalize_phone("+8 912 345 67 89").unwrap(), "89123456789", "an explicit +8 stays");
        assert_eq!(normalize_phone("12345"), Err(PhoneError::Digits));
        assert_eq!(normalize_phone("+1234567890123456"), Err(PhoneError::Digits));
        assert_eq!(normalize_phone("0912345678"), Err(PhoneError::Digits));
        assert_eq!(normalize_phone("+7 912 345 67 89;ls"), Err(PhoneError::Characters));
        assert_eq!(normalize_phone("+7912345\u{0}6789"), Err(PhoneError::Characters));
        assert_eq!(normalize_phone("７９１２３４５６７８９"), Err(PhoneError::Characters), "ASCII digits only");
        assert_eq!(normalize_phone(&"1".repeat(40)), Err(PhoneError::Digits));
        assert_eq!(normalize_phone(""), Err(PhoneError::Digits));
    }

    #[test]
    fn masked_phones_keep_the_country_and_last_four() {
        assert_eq!(masked("79123456789"), "+7******6789");
        assert_eq!(masked("123"), "***");
    }

    #[test]
    fn smsc_answers_are_read() {
        assert_eq!(parse_send(&json!({"id": 1234, "cnt": 1})), Ok("1234".into()));
        assert_eq!(
            parse_send(&json!({"error": "invalid number", "error_code": 7})),
            Err(SmsError::Refused { code: 7, message: "invalid number".into() })
        );
        assert_eq!(
            parse_send(&json!({"id": 5, "error": "no money", "error_code": 3})),
            Err(SmsError::Refused { code: 3, message: "no money".into() }),
            "an error wins over an id"
        );
        assert!(matches!(parse_send(&json!({"cnt": 1})), Err(SmsError::BadAnswer(_))));
        assert_eq!(parse_status(&json!({"status": 1, "last_timestamp": 1700000000})), Ok(Delivery::Delivered));
        assert_eq!(parse_status(&json!({"status": "0"})), Ok(Delivery::Sent));
        assert_eq!(parse_status(&json!({"status": -1})), Ok(Delivery::Sent));
        assert_eq!(parse_status(&json!({"status": 20})), Ok(Delivery::Failed("undeliverable".into())));
        assert_eq!(parse_status(&json!({"status": 22})), Ok(Delivery::Failed("wrong number".into())));
        assert!(matches!(
            parse_status(&json!({"error": "message not found", "error_code": 9})),
            Err(SmsError::Refused { code: 9, .. })
        ));
        assert!(matches!(parse_status(&json!({})), Err(SmsError::BadAnswer(_))));
    }

    #[test]
    fn settings_need_credentials_and_an_outside_url() {
        assert!(Config::default().problems().is_empty(), "off by default");
        let mut c = Config { provider: "smsc".into(), ..Config::default() };
        let keys: Vec<String> = c.problems().into_iter().map(|p| p.key).collect();
        assert_eq!(keys, vec!["video.sms.login", "video.sms.password"]);
        c.login = "hub".into();
        c.password = Some(Secret::new("pw"));
        assert!(c.problems().is_empty());
        c.url = "http://169.254.169.254".into();
        assert_eq!(c.problems()[0].key, "video.sms.url");
        c.url = "http://127.0.0.1:9999".into();
        assert_eq!(c.problems()[0].key, "video.sms.url");
        c.allow_internal = vec!["127.0.0.1/32".into()];
        assert!(c.problems().is_empty(), "a configured fake on loopback");
        c.provider = "twilio".into();
        assert_eq!(c.problems()[0].key, "video.sms.provider");
        let shown = format!("{c:?}");
        assert!(shown.contains("***") && !shown.contains("\"pw\""), "{shown}");
    }
}
