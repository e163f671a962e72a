//! The customer's location in a call: the checks of a position, the map link, and reverse
//! geocoding through a Nominatim-compatible endpoint (`GET <url>/reverse?format=jsonv2&lat=
//! &lon=`, answered `{"display_name": "...", ...}`), cached, with a timeout, and never failing
//! the call: a geocoder that is off, down or slow leaves the address out.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use ops::config::Problem;
use ops::target::Targets;
use serde::{Deserialize, Serialize};

/// `[video.geocoder]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The base URL of a Nominatim-compatible service (e.g. `https://nominatim.openstreetmap.org`,
    /// whose usage policy allows 1 request/s; a hub with many calls runs its own); empty: no
    /// address, only the coordinates and the map link.
    pub url: String,
    /// Each request, in milliseconds: past it the location is shown without the address.
    pub timeout_ms: u64,
    /// Addresses kept (by position rounded to about 10 m).
    pub cache_size: usize,
    /// `Accept-Language` of the addresses (e.g. `ru`, `en`).
    pub language: String,
    /// The map link; `{lat}` and `{lon}` are replaced.
    pub map_url: String,
    /// The small map picture shown under a shared location in the call's chat: an image URL of
    /// a static map service with `{lat}` and `{lon}` replaced; the participants' browsers load
    /// it, the hub never does. Empty: no picture, the link only.
    pub preview_url: String,
    /// Networks (CIDR) the geocoder may be reached at although internal (a local fake in
    /// tests, a geocoder inside the deployment).
    pub allow_internal: Vec<String>,
}

/// Yandex's Static API: a 320x160 picture at street level with a pin at the position.
const DEFAULT_PREVIEW: &str =
    "https://static-maps.yandex.ru/1.x/?ll={lon},{lat}&z=15&size=320,160&l=map&pt={lon},{lat},pm2rdm";

impl Default for Config {
    fn default() -> Self {
        Config {
            url: String::new(),
            timeout_ms: 3000,
            cache_size: 10_000,
            language: "ru".into(),
            map_url: "https://yandex.ru/maps/?pt={lon},{lat}&z=16".into(),
            preview_url: DEFAULT_PREVIEW.into(),
            allow_internal: Vec::new(),
        }
    }
}

impl Config {
    pub fn problems(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        if !self.map_url.starts_with("https://") && !self.map_url.starts_with("http://") {
            problems.push(Problem::new("video.geocoder.map_url", "must be an http(s) URL"));
        }
        if !self.preview_url.is_empty()
            && !self.preview_url.starts_with("https://")
            && !self.preview_url.starts_with("http://")
        {
            problems.push(Problem::new("video.geocoder.preview_url", "must be an http(s) URL, or empty for none"));
        }
        if self.timeout_ms == 0 {
            problems.push(Problem::new("video.geocoder.timeout_ms", "must be above 0"));
        }
        match self.targets() {
            Ok(targets) if !self.url.is_empty() => {
                if let Err(e) = targets.parse(&self.url) {
                    problems.push(Problem::new("video.geocoder.url", format!("{:?} {e}", self.url)));
                }
            }
            Ok(_) => {}
            Err(e) => problems.push(Problem::new("video.geocoder.allow_internal", e)),
        }
        problems
    }

    fn targets(&self) -> Result<Targets, String> {
        let nets = self
            .allow_internal
            .iter()
            .map(|n| n.parse().map_err(|_| format!("{n:?} is not a network (CIDR)")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Targets::new(nets).for_setting("video.geocoder.allow_internal"))
    }
}

/// Why a position is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PositionError {
    #[error("lat must be -90 to 90 and lon -180 to 180 (degrees, WGS 84)")]
    OutOfRange,
    #[error("accuracy must be 0 to 100000 metres")]
    Accuracy,
}

/// A position as the browser gives it: finite, in range, accuracy (metres) sane.
pub fn check_position(lat: f64, lon: f64, accuracy: Option<f64>) -> Result<(), PositionError> {
    if !lat.is_finite() || !lon.is_finite() || !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
        return Err(PositionError::OutOfRange);
    }
    if accuracy.is_some_and(|a| !a.is_finite() || !(0.0..=100_000.0).contains(&a)) {
        return Err(PositionError::Accuracy);
    }
    Ok(())
}

/// The map link of a position (`{lat}`, `{lon}` with 6 decimals, about 10 cm).
pub fn map_link(template: &str, lat: f64, lon: f64) -> String {
    template.replace("{lat}", &format!("{lat:.6}")).replace("{lon}", &format!("{lon:.6}"))
}

/// The cache key: the position rounded to 4 decimals (about 11 m of latitude).
fn cache_key(lat: f64, lon: f64) -> (i64, i64) {
    ((lat * 10_000.0).round() as i64, (lon * 10_000.0).round() as i64)
}

/// The address in a Nominatim `jsonv2` answer (`display_name`), at most 500 characters, or
/// `None` (an `error` answer: no address there).
pub fn parse_reverse(answer: &serde_json::Value) -> Option<String> {
    let name = answer.get("display_name")?.as_str()?.trim();
    (!name.is_empty()).then(|| name.chars().filter(|c| !c.is_control()).take(500).collect())
}

/// A bounded cache, oldest out first.
#[derive(Debug)]
struct Cache {
    size: usize,
    map: HashMap<(i64, i64), String>,
    order: VecDeque<(i64, i64)>,
}

impl Cache {
    fn get(&self, key: (i64, i64)) -> Option<String> {
        self.map.get(&key).cloned()
    }

    fn put(&mut self, key: (i64, i64), address: String) {
        if self.size == 0 || self.map.contains_key(&key) {
            return;
        }
        if self.map.len() >= self.size
            && let Some(oldest) = self.order.pop_front()
        {
            self.map.remove(&oldest);
        }
        self.map.insert(key, address);
        self.order.push_back(key);
    }
}

/// Reverse geocoding, cached.
pub struct Geocoder {
    config: Config,
    http: Option<(reqwest::Client, Targets)>,
    cache: Mutex<Cache>,
}

impl Geocoder {
    pub fn new(config: Config) -> Result<Geocoder, Vec<Problem>> {
        let problems = config.problems();
        if !problems.is_empty() {
            return Err(problems);
        }
        let http = if config.url.is_empty() {
            None
        } else {
            let targets = config.targets().map_err(|e| vec![Problem::new("video.geocoder.allow_internal", e)])?;
            let client = reqwest::Client::builder()
                .timeout(Duration::from_millis(config.timeout_ms))
                .redirect(reqwest::redirect::Policy::none())
                .dns_resolver(targets.resolver())
                .user_agent(concat!("Switchboard/", env!("CARGO_PKG_VERSION"), " (video calls)"))
                .build()
                .map_err(|e| vec![Problem::new("video.geocoder", format!("cannot build the HTTP client: {e}"))])?;
            Some((client, targets))
        };
        let cache = Mutex::new(Cache { size: config.cache_size, map: HashMap::new(), order: VecDeque::new() });
        Ok(Geocoder { config, http, cache })
    }

    pub fn map_link(&self, lat: f64, lon: f64) -> String {
        map_link(&self.config.map_url, lat, lon)
    }

    /// The map picture of a position, when one is configured.
    pub fn preview_link(&self, lat: f64, lon: f64) -> Option<String> {
        (!self.config.preview_url.is_empty()).then(|| map_link(&self.config.preview_url, lat, lon))
    }

    /// The address at a position; `None` when geocoding is off, the service fails or is slow
    /// (logged at debug), or knows no address there.
    pub async fn address(&self, lat: f64, lon: f64) -> Option<String> {
        let (client, targets) = self.http.as_ref()?;
        let key = cache_key(lat, lon);
        if let Some(hit) = self.cache.lock().expect("cache lock").get(key) {
            metrics::counter!("switchboard_video_geocoder_total", "outcome" => "cached").increment(1);
            return Some(hit);
        }
        let url = match targets.check_delivery(&format!("{}/reverse", self.config.url.trim_end_matches('/'))) {
            Ok(url) => url,
            Err(e) => {
                tracing::warn!(error = %e, "the geocoder's URL is refused");
                return None;
            }
        };
        let (lat_s, lon_s) = (format!("{lat:.6}"), format!("{lon:.6}"));
        let query = [("format", "jsonv2"), ("lat", lat_s.as_str()), ("lon", lon_s.as_str())];
        let answer = async {
            let response = client
                .get(url)
                .query(&query)
                .header(reqwest::header::ACCEPT_LANGUAGE, &self.config.language)
                .send()
                .await?
                .error_for_status()?;
            response.json::<serde_json::Value>().await
        }
        .await;
        match answer {
            Ok(answer) => {
                let address = parse_reverse(&answer);
                if let Some(address) = &address {
                    self.cache.lock().expect("cache lock").put(key, address.clone());
                }
                metrics::counter!("switchboard_video_geocoder_total", "outcome" => "answered").increment(1);
                address
            }
            Err(e) => {
                tracing::debug!(error = %e.without_url(), "no address from the geocoder");
                metrics::counter!("switchboard_video_geocoder_total", "outcome" => "failed").increment(1);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn positions_are_checked() {
        assert!(check_position(55.7539, 37.6208, Some(25.0)).is_ok());
        assert!(check_position(-90.0, 180.0, None).is_ok());
        assert_eq!(check_position(90.5, 0.0, None), Err(PositionError::OutOfRange));
        assert_eq!(check_position(0.0, -180.1, None), Err(PositionError::OutOfRange));
        assert_eq!(check_position(f64::NAN, 0.0, None), Err(PositionError::OutOfRange));
        assert_eq!(check_position(0.0, f64::INFINITY, None), Err(PositionError::OutOfRange));
        assert_eq!(check_position(0.0, 0.0, Some(-1.0)), Err(PositionError::Accuracy));
        assert_eq!(check_position(0.0, 0.0, Some(1e9)), Err(PositionError::Accuracy));
    }

    #[test]
    fn the_map_link_is_yandex_maps_by_default() {
        let c = Config::default();
        assert_eq!(map_link(&c.map_url, 55.7539, 37.6208), "https://yandex.ru/maps/?pt=37.620800,55.753900&z=16");
        assert_eq!(
            map_link(&c.preview_url, 55.7539, 37.6208),
            "https://static-maps.yandex.ru/1.x/?ll=37.620800,55.753900&z=15&size=320,160&l=map&pt=37.620800,55.753900,pm2rdm"
        );
    }

    #[test]
    fn nominatim_answers_are_read() {
        assert_eq!(
            parse_reverse(&json!({"place_id": 1, "display_name": " Red Square, Moscow ", "address": {}})),
            Some("Red Square, Moscow".into())
        );
        assert_eq!(parse_reverse(&json!({"error": "Unable to geocode"})), None);
        assert_eq!(parse_reverse(&json!({"display_name": ""})), None);
        assert_eq!(parse_reverse(&json!({"display_name": "a\u{0}b\nc"})), Some("abc".into()));
        assert_eq!(parse_reverse(&json!({"display_name": "x".repeat(600)})).unwrap().len(), 500);
    }

    #[test]
    fn the_cache_is_bounded_and_keyed_by_about_ten_metres() {
        let mut cache = Cache { size: 2, map: HashMap::new(), order: VecDeque::new() };
        cache.put(cache_key(55.75391, 37.62081), "a".into());
        assert_eq!(cache.get(cache_key(55.75393, 37.62079)), Some("a".into()), "a few metres away");
        assert_eq!(cache.get(cache_key(55.7549, 37.6208)), None, "100 m away");
        cache.put(cache_key(1.0, 1.0), "b".into());
        cache.put(cache_key(2.0, 2.0), "c".into());
        assert_eq!(cache.get(cache_key(55.75391, 37.62081)), None, "the oldest went");
        assert_eq!(cache.map.len(), 2);
    }

    #[test]
    fn settings_refuse_internal_geocoders_unless_allowed() {
        assert!(Config::default().problems().is_empty());
        let mut c = Config { url: "http://10.0.0.5".into(), ..Config::default() };
        assert_eq!(c.problems()[0].key, "video.geocoder.url");
        c.allow_internal = vec!["10.0.0.0/8".into()];
        assert!(c.problems().is_empty());
        c.map_url = "javascript:alert(1)".into();
        assert_eq!(c.problems()[0].key, "video.geocoder.map_url");
        let mut c = Config { preview_url: "data:image/png;base64,AAAA".into(), ..Config::default() };
        assert_eq!(c.problems()[0].key, "video.geocoder.preview_url");
        c.preview_url = String::new();
        assert!(c.problems().is_empty(), "no picture is allowed");
    }
}
