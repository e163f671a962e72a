//! A fake of Nominatim's reverse geocoding for tests (feature `fake`), speaking its wire format:
//! `GET /reverse?format=jsonv2&lat=&lon=` answers `{"place_id", "lat", "lon", "display_name",
//! "address"}` for a position within about 100 m of a place the test set
//! ([`FakeNominatim::add_place`]) and `{"error": "Unable to geocode"}` elsewhere; another
//! `format`, or a missing or bad `lat`/`lon`, is 400 with an error, as Nominatim answers. It
//! can be down (503, [`FakeNominatim::set_down`]) or hang without answering
//! ([`FakeNominatim::set_hanging`]).
//!
//! It also stands in for the map provider's static pictures (`video.geocoder.preview_url`):
//! `GET /static?ll=<lon>,<lat>&...` answers a PNG as Yandex's Static API does, 400 without a
//! readable `ll`, and counts the requests ([`FakeNominatim::previews`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

#[derive(Default)]
struct Inner {
    places: Mutex<Vec<(f64, f64, String)>>,
    requests: AtomicUsize,
    previews: AtomicUsize,
    down: AtomicBool,
    hanging: AtomicBool,
    languages: Mutex<Vec<String>>,
}

/// The fake, serving on a loopback port for as long as the runtime runs.
#[derive(Clone)]
pub struct FakeNominatim {
    inner: Arc<Inner>,
    addr: SocketAddr,
}

impl FakeNominatim {
    pub async fn start() -> FakeNominatim {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the fake Nominatim");
        let addr = listener.local_addr().expect("its address");
        let fake = FakeNominatim { inner: Arc::default(), addr };
        let router =
            Router::new().route("/reverse", get(reverse)).route("/static", get(picture)).with_state(fake.clone());
        tokio::spawn(async move { axum::serve(listener, router).await.expect("the fake Nominatim serves") });
        fake
    }

    /// The base URL (`video.geocoder.url`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn add_place(&self, lat: f64, lon: f64, display_name: &str) {
        self.inner.places.lock().unwrap().push((lat, lon, display_name.to_owned()));
    }

    /// Requests received so far.
    pub fn requests(&self) -> usize {
        self.inner.requests.load(Ordering::SeqCst)
    }

    /// Map pictures served so far.
    pub fn previews(&self) -> usize {
        self.inner.previews.load(Ordering::SeqCst)
    }

    /// The `Accept-Language` of each request.
    pub fn languages(&self) -> Vec<String> {
        self.inner.languages.lock().unwrap().clone()
    }

    pub fn set_down(&self, down: bool) {
        self.inner.down.store(down, Ordering::SeqCst);
    }

    /// Requests get no answer (until the client gives up).
    pub fn set_hanging(&self, hanging: bool) {
        self.inner.hanging.store(hanging, Ordering::SeqCst);
    }
}

async fn reverse(
    State(fake): State<FakeNominatim>,
    headers: axum::http::HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    fake.inner.requests.fetch_add(1, Ordering::SeqCst);
    let language = headers.get("accept-language").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    fake.inner.languages.lock().unwrap().push(language);
    if fake.inner.hanging.load(Ordering::SeqCst) {
        std::future::pending::<()>().await;
    }
    if fake.inner.down.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let bad = |message: &str| {
        (StatusCode::BAD_REQUEST, axum::Json(json!({"error": {"code": 400, "message": message}}))).into_response()
    };
    if q.get("format").map(String::as_str) != Some("jsonv2") {
        return bad("this fake answers format=jsonv2 only");
    }
    let coordinate = |k: &str| q.get(k).and_then(|v| v.parse::<f64>().ok()).filter(|v| v.is_finite());
    let (Some(lat), Some(lon)) = (coordinate("lat"), coordinate("lon")) else {
        return bad("Parameter 'lat' and 'lon' must be floating point numbers.");
    };
    let places = fake.inner.places.lock().unwrap();
    // about 100 m: 0.001 degree of latitude, and of longitude at these latitudes' scale
    let found = places.iter().find(|(plat, plon, _)| (plat - lat).abs() < 0.001 && (plon - lon).abs() < 0.002);
    let body = match found {
        Some((plat, plon, name)) => json!({
            "place_id": 1,
            "licence": "Data © OpenStreetMap contributors, ODbL 1.0. https://osm.org/copyright",
            "osm_type": "way",
            "lat": format!("{plat}"),
            "lon": format!("{plon}"),
            "category": "highway",
            "type": "pedestrian",
            "display_name": name,
            "address": {"country_code": "ru"},
        }),
        None => json!({"error": "Unable to geocode"}),
    };
    axum::Json(body).into_response()
}

/// A 1x1 PNG (the map picture of every position: the tests check that it is asked for and shown).
const PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4, 0x89, 0x00, 0x00, 0x00, 0x0d, 0x49,
    0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0xd0, 0xaa, 0x3a, 0xf1, 0x1f, 0x00, 0x04, 0xaa, 0x02, 0x6c, 0x25, 0x43, 0x97,
    0x0a, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];

async fn picture(State(fake): State<FakeNominatim>, Query(q): Query<HashMap<String, String>>) -> Response {
    let position = q.get("ll").and_then(|ll| {
        let (lon, lat) = ll.split_once(',')?;
        Some((lon.parse::<f64>().ok()?, lat.parse::<f64>().ok()?))
    });
    if position.is_none() {
        return (StatusCode::BAD_REQUEST, "ll must be <lon>,<lat>").into_response();
    }
    fake.inner.previews.fetch_add(1, Ordering::SeqCst);
    ([(axum::http::header::CONTENT_TYPE, "image/png")], PNG).into_response()
}
