//! Branding of the call pages: the logo, the company name, the colours, the consent text shown
//! before the camera is used and the page the customer is sent to after the call. Three layers,
//! each field resolved on its own: a queue's (`[video.branding.queues.<queue>]`) over the
//! account's (`accounts.settings.branding`, JSON) over the default (`[video.branding]`). Without
//! I/O: the config is checked at load (a bad value refuses to start, naming its key); the
//! account's settings come from the database and a bad value there is left out with a warning
//! (a call never breaks on it). Served by `POST /api/v1/video/link` and `GET
//! /api/v1/video/rooms/{id}` as `branding`.

use std::collections::BTreeMap;

use ops::config::Problem;
use serde::{Deserialize, Serialize};

/// The longest company name, in characters.
pub const MAX_NAME_CHARS: usize = 100;
/// The longest consent text, in characters.
pub const MAX_CONSENT_CHARS: usize = 2000;
/// The longest URL (logo, after-call page), in bytes.
pub const MAX_URL_BYTES: usize = 2048;
/// The lowest contrast ratio (WCAG 2, AA for normal text) below which a colour pair is warned of.
pub const MIN_CONTRAST: f64 = 4.5;

/// The consent text of `[video.branding]` when none is configured.
pub const DEFAULT_CONSENT: &str = "When you join, your browser asks to use your camera and microphone. Your video, voice \
and the messages you write here go only to the people in this call: the agent and, if needed, their supervisor. You \
can mute, turn your camera off or leave at any time.";

/// One layer of branding: every field optional (absent: the layer below decides). An empty
/// `after_call_url` or `logo_url` says "none" and stops the layers below.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Layer {
    pub logo_url: Option<String>,
    pub company_name: Option<String>,
    pub primary: Option<String>,
    pub background: Option<String>,
    pub text: Option<String>,
    pub consent_text: Option<String>,
    pub after_call_url: Option<String>,
}

/// `[video.branding]`: the default layer, and the queues' layers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// An https URL of the logo shown in the pages' header; empty: none.
    pub logo_url: String,
    /// The name shown in the header.
    pub company_name: String,
    /// Buttons and links (`#rrggbb`).
    pub primary: String,
    /// The page's background (`#rrggbb`).
    pub background: String,
    /// The page's text (`#rrggbb`).
    pub text: String,
    /// Shown to the customer before the camera and the microphone are asked for.
    pub consent_text: String,
    /// An https URL the customer page goes to after the call (after the survey); empty: none.
    pub after_call_url: String,
    /// Per queue (`[video.branding.queues.<queue>]`): any of the keys above, over the account's.
    pub queues: BTreeMap<String, Layer>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            logo_url: String::new(),
            company_name: "Switchboard".into(),
            primary: "#2f5bea".into(),
            background: "#eef1f5".into(),
            text: "#1d2733".into(),
            consent_text: DEFAULT_CONSENT.into(),
            after_call_url: String::new(),
            queues: BTreeMap::new(),
        }
    }
}

/// The branding a call's pages apply: every field decided (`None`: no logo, no redirect).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Branding {
    pub logo_url: Option<String>,
    pub company_name: String,
    pub primary: String,
    pub background: String,
    pub text: String,
    pub consent_text: String,
    pub after_call_url: Option<String>,
}

/// Why a branding value is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BrandingError {
    #[error("{0:?} is not a colour written #rrggbb")]
    Colour(String),
    #[error("{0:?} is not an https URL (at most {MAX_URL_BYTES} bytes)")]
    Url(String),
    #[error("must be 1 to {max} characters without control characters")]
    Text { max: usize },
    #[error("is not a JSON object")]
    NotObject,
    #[error("{0:?} is not a branding key")]
    UnknownKey(String),
    #[error("must be a string")]
    NotString,
}

/// Parses `#rrggbb` into its three channels.
pub fn parse_colour(s: &str) -> Result<[u8; 3], BrandingError> {
    let bad = || BrandingError::Colour(s.chars().take(40).collect());
    let hex =
        s.strip_prefix('#').filter(|h| h.len() == 6 && h.bytes().all(|b| b.is_ascii_hexdigit())).ok_or_else(bad)?;
    let channel = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).map_err(|_| bad());
    Ok([channel(0)?, channel(2)?, channel(4)?])
}

/// Checks an https URL: `https://host...`, no whitespace or control characters, no quotes (it
/// goes into a CSS-free `src`/`href` but is kept plain anyway).
pub fn check_url(s: &str) -> Result<(), BrandingError> {
    let host = s.strip_prefix("https://").unwrap_or("");
    let host = host.split(['/', '?', '#']).next().unwrap_or("");
    let ok = s.len() <= MAX_URL_BYTES
        && !host.is_empty()
        && !host.contains('@')
        && !s.chars().any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '\'' || c == '<' || c == '>');
    if ok { Ok(()) } else { Err(BrandingError::Url(s.chars().take(80).collect())) }
}

fn check_text(s: &str, max: usize) -> Result<(), BrandingError> {
    let ok = !s.trim().is_empty()
        && s.chars().count() <= max
        && !s.chars().any(|c| c.is_control() && c != '\n' && c != '\t');
    if ok { Ok(()) } else { Err(BrandingError::Text { max }) }
}

/// The WCAG 2 contrast ratio of two colours (1 to 21).
pub fn contrast(a: [u8; 3], b: [u8; 3]) -> f64 {
    fn luminance(c: [u8; 3]) -> f64 {
        let lin = |v: u8| {
            let s = f64::from(v) / 255.0;
            if s <= 0.039_28 { s / 12.92 } else { ((s + 0.055) / 1.055).powf(2.4) }
        };
        0.2126 * lin(c[0]) + 0.7152 * lin(c[1]) + 0.0722 * lin(c[2])
    }
    let (la, lb) = (luminance(a), luminance(b));
    let (hi, lo) = if la > lb { (la, lb) } else { (lb, la) };
    (hi + 0.05) / (lo + 0.05)
}

impl Layer {
    /// Checks every present field; each problem with the field's name.
    fn problems(&self) -> Vec<(&'static str, BrandingError)> {
        let mut out = Vec::new();
        let mut url = |name, v: &Option<String>| {
            if let Some(v) = v.as_deref().filter(|v| !v.is_empty())
                && let Err(e) = check_url(v)
            {
                out.push((name, e));
            }
        };
        url("logo_url", &self.logo_url);
        url("after_call_url", &self.after_call_url);
        for (name, v) in [("primary", &self.primary), ("background", &self.background), ("text", &self.text)] {
            if let Some(Err(e)) = v.as_deref().map(parse_colour) {
                out.push((name, e));
            }
        }
        if let Some(Err(e)) = self.company_name.as_deref().map(|v| check_text(v, MAX_NAME_CHARS)) {
            out.push(("company_name", e));
        }
        if let Some(Err(e)) = self.consent_text.as_deref().map(|v| check_text(v, MAX_CONSENT_CHARS)) {
            out.push(("consent_text", e));
        }
        out
    }

    /// Drops the named field (a bad value from the database).
    fn drop_field(&mut self, name: &str) {
        match name {
            "logo_url" => self.logo_url = None,
            "company_name" => self.company_name = None,
            "primary" => self.primary = None,
            "background" => self.background = None,
            "text" => self.text = None,
            "consent_text" => self.consent_text = None,
            _ => self.after_call_url = None,
        }
    }

    /// The account's layer from `accounts.settings` (its `branding` object; absent: an empty
    /// layer). Every bad value is left out and reported as a warning naming
    /// `accounts.settings.branding.<key>`; the rest is kept.
    pub fn from_account_settings(settings: &serde_json::Value) -> (Layer, Vec<String>) {
        let mut warnings = Vec::new();
        let Some(branding) = settings.get("branding") else { return (Layer::default(), warnings) };
        let key = |k: &str| format!("accounts.settings.branding.{k}");
        let Some(map) = branding.as_object() else {
            warnings.push(format!("accounts.settings.branding {}", BrandingError::NotObject));
            return (Layer::default(), warnings);
        };
        let mut layer = Layer::default();
        for (k, v) in map {
            let slot = match k.as_str() {
                "logo_url" => &mut layer.logo_url,
                "company_name" => &mut layer.company_name,
                "primary" => &mut layer.primary,
                "background" => &mut layer.background,
                "text" => &mut layer.text,
                "consent_text" => &mut layer.consent_text,
                "after_call_url" => &mut layer.after_call_url,
                _ => {
                    warnings.push(format!("accounts.settings.branding: {}", BrandingError::UnknownKey(k.clone())));
                    continue;
                }
            };
            match v.as_str() {
                Some(s) => *slot = Some(s.to_owned()),
                None => warnings.push(format!("{}: {}", key(k), BrandingError::NotString)),
            }
        }
        for (name, e) in layer.problems() {
            warnings.push(format!("{}: {e}; ignored", key(name)));
            layer.drop_field(name);
        }
        (layer, warnings)
    }
}

impl Config {
    fn default_layer(&self) -> Layer {
        Layer {
            logo_url: Some(self.logo_url.clone()),
            company_name: Some(self.company_name.clone()),
            primary: Some(self.primary.clone()),
            background: Some(self.background.clone()),
            text: Some(self.text.clone()),
            consent_text: Some(self.consent_text.clone()),
            after_call_url: Some(self.after_call_url.clone()),
        }
    }

    /// What is wrong with these settings, each naming its `video.branding.*` key. A colour pair
    /// with too little contrast is not refused: see [`Config::contrast_warnings`].
    pub fn problems(&self) -> Vec<Problem> {
        let mut problems: Vec<Problem> = self
            .default_layer()
            .problems()
            .into_iter()
            .map(|(name, e)| Problem::new(format!("video.branding.{name}"), e.to_string()))
            .collect();
        for (queue, layer) in &self.queues {
            problems.extend(
                layer
                    .problems()
                    .into_iter()
                    .map(|(name, e)| Problem::new(format!("video.branding.queues.{queue}.{name}"), e.to_string())),
            );
        }
        problems
    }

    /// The colour pairs of the default and of each queue (over the default) whose contrast is
    /// below [`MIN_CONTRAST`], as warnings to log at start.
    pub fn contrast_warnings(&self) -> Vec<String> {
        let mut out = contrast_warnings("video.branding", &self.resolve(None, &Layer::default()));
        for queue in self.queues.keys() {
            out.extend(contrast_warnings(
                &format!("video.branding.queues.{queue}"),
                &self.resolve(Some(queue), &Layer::default()),
            ));
        }
        out
    }

    /// The branding of a call of `queue` whose account has the layer `account` (from
    /// [`Layer::from_account_settings`]): field by field, the queue's, else the account's, else
    /// the default.
    pub fn resolve(&self, queue: Option<&str>, account: &Layer) -> Branding {
        let default = self.default_layer();
        let empty = Layer::default();
        let queue = queue.and_then(|q| self.queues.get(q)).unwrap_or(&empty);
        let pick = |f: fn(&Layer) -> &Option<String>| -> String {
            f(queue).clone().or_else(|| f(account).clone()).or_else(|| f(&default).clone()).unwrap_or_default()
        };
        let some = |s: String| (!s.is_empty()).then_some(s);
        Branding {
            logo_url: some(pick(|l| &l.logo_url)),
            company_name: pick(|l| &l.company_name),
            primary: pick(|l| &l.primary),
            background: pick(|l| &l.background),
            text: pick(|l| &l.text),
            consent_text: pick(|l| &l.consent_text),
            after_call_url: some(pick(|l| &l.after_call_url)),
        }
    }
}

/// The branding's colour pairs that the pages draw text with, whose contrast is below
/// [`MIN_CONTRAST`], each naming `key` and the pair: the text on the background and on the
/// cards (white), and the buttons' white labels on the primary colour.
pub fn contrast_warnings(key: &str, b: &Branding) -> Vec<String> {
    let (Ok(bg), Ok(text), Ok(primary)) =
        (parse_colour(&b.background), parse_colour(&b.text), parse_colour(&b.primary))
    else {
        return Vec::new();
    };
    const WHITE: [u8; 3] = [255, 255, 255];
    let pairs = [
        ("text", &b.text, text, "background", b.background.as_str(), bg),
        ("text", &b.text, text, "the cards' white", "#ffffff", WHITE),
        ("the buttons' white labels", &"#ffffff".to_owned(), WHITE, "primary", b.primary.as_str(), primary),
    ];
    let mut out = Vec::new();
    for (fg_name, fg_value, fg, bg_name, bg_value, bg) in pairs {
        let ratio = contrast(fg, bg);
        if ratio < MIN_CONTRAST {
            out.push(format!(
                "{key}: {fg_name} {fg_value} on {bg_name} {bg_value} has a contrast of {ratio:.1}:1, below {MIN_CONTRAST}:1; hard to read"
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config() -> Config {
        let mut c = Config { company_name: "Default Co".into(), ..Config::default() };
        c.queues.insert(
            "sales".into(),
            Layer { company_name: Some("Sales Co".into()), primary: Some("#aa0000".into()), ..Layer::default() },
        );
        c
    }

    #[test]
    fn the_default_applies_without_account_or_queue() {
        let b = config().resolve(None, &Layer::default());
        assert_eq!(b.company_name, "Default Co");
        assert_eq!(b.primary, "#2f5bea");
        assert_eq!(b.logo_url, None);
        assert_eq!(b.after_call_url, None);
    }

    #[test]
    fn the_account_overrides_the_default_and_the_queue_overrides_both_field_by_field() {
        let (account, warnings) = Layer::from_account_settings(&json!({
            "api_url": "https://elsewhere.example",
            "branding": {"company_name": "Acme", "primary": "#00aa00", "background": "#fafafa",
                         "after_call_url": "https://acme.example/thanks"}
        }));
        assert!(warnings.is_empty(), "{warnings:?}");
        let b = config().resolve(None, &account);
        assert_eq!((b.company_name.as_str(), b.primary.as_str()), ("Acme", "#00aa00"));
        assert_eq!(b.after_call_url.as_deref(), Some("https://acme.example/thanks"));
        let b = config().resolve(Some("sales"), &account);
        assert_eq!((b.company_name.as_str(), b.primary.as_str()), ("Sales Co", "#aa0000"));
        assert_eq!(b.background, "#fafafa", "what the queue leaves out comes from the account");
        assert_eq!(b.text, "#1d2733", "what both leave out comes from the default");
        let b = config().resolve(Some("support"), &account);
        assert_eq!(b.company_name, "Acme", "a queue without branding changes nothing");
    }

    #[test]
    fn an_empty_url_in_a_layer_turns_the_redirect_off() {
        let (account, _) = Layer::from_account_settings(&json!({"branding": {"after_call_url": "https://a.example/"}}));
        let mut c = config();
        c.queues.get_mut("sales").unwrap().after_call_url = Some(String::new());
        assert_eq!(c.resolve(Some("sales"), &account).after_call_url, None);
    }

    #[test]
    fn bad_values_from_the_database_are_ignored_with_a_warning_naming_the_key() {
        let (layer, warnings) = Layer::from_account_settings(&json!({
            "branding": {"primary": "red", "logo_url": "http://plain.example/logo.png", "company_name": "Acme",
                         "text": 12, "colour": "#000000", "consent_text": "  "}
        }));
        assert_eq!(layer, Layer { company_name: Some("Acme".into()), ..Layer::default() });
        let all = warnings.join("\n");
        for key in ["branding.primary", "branding.logo_url", "branding.text", "\"colour\"", "branding.consent_text"] {
            assert!(all.contains(key), "{key} in {all}");
        }
        let (layer, warnings) = Layer::from_account_settings(&json!({"branding": "blue"}));
        assert_eq!((layer, warnings.len()), (Layer::default(), 1));
    }

    #[test]
    fn bad_config_values_are_problems_naming_their_key() {
        let mut c = config();
        c.background = "#ffff".into();
        c.after_call_url = "javascript:alert(1)".into();
        c.queues.get_mut("sales").unwrap().primary = Some("#GG0000".into());
        c.queues.get_mut("sales").unwrap().company_name = Some(String::new());
        let keys: Vec<String> = c.problems().into_iter().map(|p| p.key).collect();
        assert_eq!(
            keys,
            [
                "video.branding.after_call_url",
                "video.branding.background",
                "video.branding.queues.sales.primary",
                "video.branding.queues.sales.company_name"
            ]
        );
        assert!(Config::default().problems().is_empty());
    }

    #[test]
    fn colours_and_urls() {
        assert_eq!(parse_colour("#1F5fbf"), Ok([0x1f, 0x5f, 0xbf]));
        for bad in ["1f5fbf", "#1f5fb", "#1f5fbfa", "#xyzxyz", "#+1+1+1"] {
            assert!(parse_colour(bad).is_err(), "{bad}");
        }
        assert!(check_url("https://cdn.example/logo.svg?v=2").is_ok());
        for bad in [
            "http://a.example",
            "https://",
            "https:///x",
            "https://a.example/x y",
            "https://a@b.example",
            "//a.example",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn too_little_contrast_is_warned_of_not_refused() {
        assert!((contrast([0, 0, 0], [255, 255, 255]) - 21.0).abs() < 0.01);
        assert!(Config::default().contrast_warnings().is_empty());
        let mut c = config();
        c.queues.get_mut("sales").unwrap().primary = Some("#ffdd00".into());
        c.queues.get_mut("sales").unwrap().text = Some("#777777".into());
        assert!(c.problems().is_empty());
        let warnings = c.contrast_warnings();
        assert_eq!(warnings.len(), 3, "{warnings:?}");
        assert!(
            warnings[0].starts_with("video.branding.queues.sales: text #777777 on background #eef1f5"),
            "{}",
            warnings[0]
        );
        assert!(warnings[2].contains("white labels #ffffff on primary #ffdd00"), "{}", warnings[2]);
    }
}
