//! TURN credentials for browsers, in the TURN REST format that coturn checks with
//! `use-auth-secret` (draft-uberti-behave-turn-rest-00):
//!
//! - username: `"<expiry, unix seconds>:<user>"`;
//! - password: `base64(HMAC-SHA1(shared secret, username))`.
//!
//! The hub and coturn share only the secret (coturn's `static-auth-secret`): nothing is stored,
//! and coturn refuses a username whose timestamp is in the past or whose password does not
//! match. coturn accepts *any* future timestamp, so the lifetime is capped here
//! ([`TurnIssuer`] never issues past `max_ttl`).
//!
//! coturn checks the timestamp when an allocation is made; an allocation made in time keeps being
//! refreshed after its credentials expire (`video/tests/turn.rs` shows both). So the lifetime
//! must cover the time from issue to the browser's last allocation: joining, and every ICE
//! restart during the call (a network change), unless the page is handed fresh credentials
//! then. The user part is only a label for coturn's logs and per-user quotas.
//!
//! Setup of coturn itself: `deploy/coturn.conf.example` and `docs/video.md` ("TURN").

use std::fmt;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use ops::config::{Problem, Secret};
use serde::{Deserialize, Serialize};
use sha1::Sha1;

/// The longest lifetime [`TurnIssuer`] ever gives, whatever it is configured with: 7 days.
pub const MAX_TTL_LIMIT: Duration = Duration::from_secs(7 * 24 * 3600);

/// The shortest `ttl_s` the configuration accepts, in seconds.
pub const MIN_TTL_S: u64 = 60;

/// The shortest shared secret the configuration accepts, in bytes.
pub const MIN_SECRET_BYTES: usize = 16;

/// The longest user part of a username, in bytes (after [`sanitize_user`]).
pub const MAX_USER_BYTES: usize = 64;

/// The TURN settings (e.g. a `[video.turn]` section). TURN is off when `urls` is empty; the
/// browsers then only have the SFU's host candidates.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The TURN server URLs handed to browsers, as `RTCIceServer.urls` takes them, e.g.
    /// `turn:turn.example.com:3478?transport=udp`, `turn:turn.example.com:3478?transport=tcp`,
    /// `turns:turn.example.com:5349?transport=tcp`.
    pub urls: Vec<String>,
    /// The shared secret: coturn's `static-auth-secret` (at least 16 bytes, e.g.
    /// `openssl rand -hex 32`). Required when `urls` is set.
    pub secret: Option<Secret>,
    /// Lifetime of issued credentials, in seconds. coturn refuses new allocations after it, so
    /// it must cover joining and every ICE restart of a call (a running allocation outlives it).
    pub ttl_s: u64,
    /// The longest lifetime ever issued, in seconds (at most 7 days); `ttl_s` and any lifetime
    /// a caller asks for are capped to it.
    pub max_ttl_s: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config { urls: Vec::new(), secret: None, ttl_s: 4 * 3600, max_ttl_s: 24 * 3600 }
    }
}

impl Config {
    /// What is wrong with these settings; `section` is where they live (e.g. `video.turn`) and
    /// prefixes each problem's key.
    pub fn problems(&self, section: &str) -> Vec<Problem> {
        let key = |name: &str| if section.is_empty() { name.to_owned() } else { format!("{section}.{name}") };
        let mut problems = Vec::new();
        for url in &self.urls {
            let scheme_ok = ["turn:", "turns:", "stun:", "stuns:"].iter().any(|s| url.starts_with(s));
            if !scheme_ok || url.split_once(':').is_none_or(|(_, rest)| rest.trim().is_empty()) {
                problems.push(Problem::new(
                    key("urls"),
                    format!("{url:?} is not a TURN URL: expected e.g. \"turn:turn.example.com:3478?transport=udp\""),
                ));
            }
        }
        match &self.secret {
            None if !self.urls.is_empty() => problems.push(Problem::new(
                key("secret"),
                "is missing: TURN urls are set, so give coturn's static-auth-secret",
            )),
            Some(secret) if secret.expose().len() < MIN_SECRET_BYTES => problems.push(Problem::new(
                key("secret"),
                format!("is shorter than {MIN_SECRET_BYTES} bytes: use e.g. `openssl rand -hex 32`"),
            )),
            _ => {}
        }
        if self.max_ttl_s < MIN_TTL_S || self.max_ttl_s > MAX_TTL_LIMIT.as_secs() {
            problems.push(Problem::new(
                key("max_ttl_s"),
                format!("{} must be between {MIN_TTL_S} and {} (7 days)", self.max_ttl_s, MAX_TTL_LIMIT.as_secs()),
            ));
        }
        if self.ttl_s < MIN_TTL_S || self.ttl_s > self.max_ttl_s {
            problems.push(Problem::new(
                key("ttl_s"),
                format!("{} must be between {MIN_TTL_S} and max_ttl_s ({})", self.ttl_s, self.max_ttl_s),
            ));
        }
        problems
    }

    /// The issuer for these settings: `Ok(None)` when TURN is off (no `urls`), the problems
    /// when the settings are invalid.
    pub fn issuer(&self, section: &str) -> Result<Option<TurnIssuer>, Vec<Problem>> {
        let problems = self.problems(section);
        if !problems.is_empty() {
            return Err(problems);
        }
        match &self.secret {
            Some(secret) if !self.urls.is_empty() => Ok(Some(TurnIssuer::new(
                secret.clone(),
                self.urls.clone(),
                Duration::from_secs(self.ttl_s),
                Duration::from_secs(self.max_ttl_s),
            ))),
            _ => Ok(None),
        }
    }
}

/// One entry of `RTCConfiguration.iceServers`, serialized as the browser takes it
/// (`{"urls": [...], "username": "...", "credential": "..."}`), plus `expires_at` (RFC 3339),
/// which browsers ignore and pages may use to fetch fresh credentials. Debug hides the
/// credential.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceServer {
    pub urls: Vec<String>,
    pub username: String,
    pub credential: String,
    pub expires_at: DateTime<Utc>,
}

impl fmt::Debug for IceServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IceServer")
            .field("urls", &self.urls)
            .field("username", &self.username)
            .field("credential", &"***")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Issues TURN REST credentials. Pure: the time is an argument. Debug shows no secret.
#[derive(Debug, Clone)]
pub struct TurnIssuer {
    secret: Secret,
    urls: Vec<String>,
    ttl: Duration,
    max_ttl: Duration,
}

impl TurnIssuer {
    /// `max_ttl` is capped to [`MAX_TTL_LIMIT`], `ttl` to `max_ttl`; lifetimes count in whole
    /// seconds.
    pub fn new(secret: Secret, urls: Vec<String>, ttl: Duration, max_ttl: Duration) -> Self {
        let max_ttl = max_ttl.min(MAX_TTL_LIMIT);
        TurnIssuer { secret, urls, ttl: ttl.min(max_ttl), max_ttl }
    }

    /// The lifetime [`issue`](Self::issue) gives.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The longest lifetime ever issued.
    pub fn max_ttl(&self) -> Duration {
        self.max_ttl
    }

    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    /// Credentials for `user` (sanitized with [`sanitize_user`]) valid from `now` for the
    /// configured lifetime.
    pub fn issue(&self, user: &str, now: DateTime<Utc>) -> IceServer {
        self.issue_for(user, now, self.ttl)
    }

    /// Credentials for `user` valid from `now` for `ttl`, capped to `max_ttl` (e.g. the
    /// remaining life of a call link).
    pub fn issue_for(&self, user: &str, now: DateTime<Utc>, ttl: Duration) -> IceServer {
        let ttl = ttl.min(self.max_ttl).as_secs();
        // ttl <= 7 days, so this cannot overflow for any date chrono represents.
        let expiry = now.timestamp().saturating_add(ttl as i64);
        let expires_at = DateTime::from_timestamp(expiry, 0).unwrap_or(DateTime::<Utc>::MAX_UTC);
        let username = format!("{expiry}:{}", sanitize_user(user));
        let credential = credential(&self.secret, &username);
        IceServer { urls: self.urls.clone(), username, credential, expires_at }
    }
}

/// The password coturn expects for `username`: `base64(HMAC-SHA1(secret, username))`.
pub fn credential(secret: &Secret, username: &str) -> String {
    // HMAC takes a key of any length; new_from_slice cannot fail for it.
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(secret.expose().as_bytes()).expect("HMAC accepts any key length");
    mac.update(username.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

/// The user part of a username: ASCII letters, digits and `-_.@+` kept, anything else
/// (notably `:`, the separator coturn splits on) becomes `_`; at most [`MAX_USER_BYTES`];
/// `anonymous` when empty.
pub fn sanitize_user(user: &str) -> String {
    let clean: String = user
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || "-_.@+".contains(c) { c } else { '_' })
        .take(MAX_USER_BYTES)
        .collect();
    if clean.is_empty() { "anonymous".to_owned() } else { clean }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(unix: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(unix, 0).unwrap()
    }

    fn issuer(ttl_s: u64, max_ttl_s: u64) -> TurnIssuer {
        TurnIssuer::new(
            Secret::new("north-wind-blows"),
            vec!["turn:turn.example.com:3478?transport=udp".to_owned()],
            Duration::from_secs(ttl_s),
            Duration::from_secs(max_ttl_s),
        )
    }

    // Vectors computed independently:
    //   printf %s '1700003600:agent-42' | openssl dgst -binary -sha1 -hmac north-wind-blows | base64
    #[test]
    fn credential_matches_openssl() {
        let secret = Secret::new("north-wind-blows");
        assert_eq!(credential(&secret, "1700003600:agent-42"), "F119sh3rIcTkSMhtncewxU0S0iQ=");
        assert_eq!(credential(&secret, "1700000060:room_7_customer"), "gk02sQnyuO7ZGRwTfyYIbox1Zlg=");
    }

    #[test]
    fn issue_builds_rest_username_and_password() {
        let ice = issuer(3600, 86400).issue("agent-42", at(1_700_000_000));
        assert_eq!(ice.username, "1700003600:agent-42");
        assert_eq!(ice.credential, "F119sh3rIcTkSMhtncewxU0S0iQ=");
        assert_eq!(ice.expires_at, at(1_700_003_600));
        assert_eq!(ice.urls, ["turn:turn.example.com:3478?transport=udp"]);
    }

    #[test]
    fn sub_second_now_counts_whole_seconds() {
        let now = at(1_700_000_000) + chrono::Duration::milliseconds(999);
        assert_eq!(issuer(3600, 86400).issue("agent-42", now).username, "1700003600:agent-42");
    }

    #[test]
    fn ttl_is_capped_at_max_ttl() {
        let i = issuer(7200, 600);
        assert_eq!(i.ttl(), Duration::from_secs(600));
        assert_eq!(i.issue("u", at(1_000_000)).username, "1000600:u");
        assert_eq!(i.issue_for("u", at(1_000_000), Duration::from_secs(30)).username, "1000030:u");
        assert_eq!(i.issue_for("u", at(1_000_000), Duration::from_secs(999_999)).username, "1000600:u");
        let huge = issuer(u64::MAX, u64::MAX);
        assert_eq!(huge.max_ttl(), MAX_TTL_LIMIT);
        let ice = huge.issue("u", at(1_000_000));
        assert_eq!(ice.expires_at, at(1_000_000 + 7 * 24 * 3600));
    }

    #[test]
    fn user_part_is_sanitized() {
        assert_eq!(sanitize_user("agent-42"), "agent-42");
        assert_eq!(sanitize_user("a:b:c"), "a_b_c");
        assert_eq!(sanitize_user("Zoë Smith\n"), "Zo__Smith_");
        assert_eq!(sanitize_user(""), "anonymous");
        assert_eq!(sanitize_user("alice@example.com+x"), "alice@example.com+x");
        assert_eq!(sanitize_user(&"x".repeat(500)).len(), MAX_USER_BYTES);
        let ice = issuer(60, 60).issue("1999999999:evil", at(1_000_000));
        assert_eq!(ice.username, "1000060:1999999999_evil");
        assert_eq!(ice.username.matches(':').count(), 1);
        assert_eq!(ice.credential, credential(&Secret::new("north-wind-blows"), &ice.username));
    }

    #[test]
    fn serializes_as_an_rtc_ice_server() {
        let ice = issuer(3600, 86400).issue("agent-42", at(1_700_000_000));
        let json = serde_json::to_value(&ice).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "urls": ["turn:turn.example.com:3478?transport=udp"],
                "username": "1700003600:agent-42",
                "credential": "F119sh3rIcTkSMhtncewxU0S0iQ=",
                "expires_at": "2023-11-14T23:13:20Z",
            })
        );
        assert_eq!(serde_json::from_value::<IceServer>(json).unwrap(), ice);
    }

    #[test]
    fn debug_shows_no_secret_nor_credential() {
        let i = issuer(3600, 86400);
        let ice = i.issue("agent-42", at(1_700_000_000));
        let shown = format!("{i:?} {ice:?}");
        assert!(!shown.contains("north-wind-blows"), "{shown}");
        assert!(!shown.contains(&ice.credential), "{shown}");
        assert!(shown.contains("1700003600:agent-42"), "{shown}");
        let config = Config { secret: Some(Secret::new("north-wind-blows")), ..Config::default() };
        assert!(!format!("{config:?}").contains("north-wind-blows"));
    }

    #[test]
    fn config_defaults_parse_and_validate() {
        let config: Config = serde_json::from_str("{}").unwrap();
        assert!(config.urls.is_empty());
        assert_eq!((config.ttl_s, config.max_ttl_s), (14400, 86400));
        assert!(config.problems("video.turn").is_empty());
        assert!(config.issuer("video.turn").unwrap().is_none(), "no urls: TURN is off");
        assert!(serde_json::from_str::<Config>(r#"{"url": "turn:x"}"#).is_err(), "unknown field refused");

        let config: Config = serde_json::from_value(serde_json::json!({
            "urls": ["turn:127.0.0.1:3478"],
            "secret": "0123456789abcdef0123",
            "ttl_s": 600,
        }))
        .unwrap();
        let issuer = config.issuer("video.turn").unwrap().expect("TURN on");
        assert_eq!(issuer.ttl(), Duration::from_secs(600));
        assert_eq!(issuer.urls(), ["turn:127.0.0.1:3478"]);
    }

    #[test]
    fn config_problems_name_their_keys() {
        let keys = |c: &Config| c.problems("video.turn").into_iter().map(|p| p.key).collect::<Vec<_>>();
        let on = Config { urls: vec!["turn:t.example:3478".into()], ..Config::default() };
        assert_eq!(keys(&on), ["video.turn.secret"]);
        let short = Config { secret: Some(Secret::new("short")), ..on.clone() };
        assert_eq!(keys(&short), ["video.turn.secret"]);
        let bad_url = Config {
            urls: vec!["https://t.example".into(), "turn:".into()],
            secret: Some(Secret::new("0123456789abcdef")),
            ..Config::default()
        };
        assert_eq!(keys(&bad_url), ["video.turn.urls", "video.turn.urls"]);
        let ttl = Config { ttl_s: 10, max_ttl_s: 30 * 24 * 3600, ..Config::default() };
        assert_eq!(keys(&ttl), ["video.turn.max_ttl_s", "video.turn.ttl_s"]);
        let over = Config { ttl_s: 7200, max_ttl_s: 3600, ..Config::default() };
        assert_eq!(keys(&over), ["video.turn.ttl_s"]);
        assert!(on.issuer("video.turn").is_err());
    }
}
