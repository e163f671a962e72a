//! The customer's location in a call over the signalling socket, with the fake Nominatim on
//! the real PostgreSQL: the agent asks, the customer's position comes back to everyone with its
//! address and map link and is kept with the call; the geocoder is asked once per place
//! (cached); a geocoder that is down or hangs leaves the address out and the call goes on; bad
//! positions and the wrong roles are refused.

mod support;

use serde_json::{Value, json};
use support::{Hub, agent_join, customer_join, frame_of, send};
use video::fake_nominatim::FakeNominatim;

const KREMLIN: (f64, f64) = (55.7520, 37.6175);

async fn hub_with(fake: &FakeNominatim) -> Hub {
    let mut config = video::Config::default();
    config.geocoder.url = fake.url();
    config.geocoder.allow_internal = vec!["127.0.0.1/32".into()];
    config.geocoder.timeout_ms = 300;
    config.geocoder.language = "en".into();
    Hub::start_with(config).await
}

#[tokio::test]
async fn the_agent_asks_and_everyone_sees_the_customers_address() {
    let fake = FakeNominatim::start().await;
    fake.add_place(KREMLIN.0, KREMLIN.1, "Moscow Kremlin, Moscow, Russia");
    let hub = hub_with(&fake).await;
    let (room, link) = hub.room().await;
    let mut agent = hub.socket().await;
    send(&mut agent, agent_join(room, "alice", &["agent"])).await;
    frame_of(&mut agent, "joined", &mut Vec::new()).await;
    let mut customer = hub.socket().await;
    send(&mut customer, customer_join(&link)).await;
    frame_of(&mut customer, "joined", &mut Vec::new()).await;

    send(&mut agent, json!({"type": "location_request"})).await;
    let asked = frame_of(&mut customer, "location_request", &mut Vec::new()).await;
    assert_eq!(asked["from"]["role"], "agent");

    send(&mut customer, json!({"type": "location", "lat": KREMLIN.0, "lon": KREMLIN.1, "accuracy": 30.0})).await;
    for ws in [&mut agent, &mut customer] {
        let shared = frame_of(ws, "location", &mut Vec::new()).await;
        assert_eq!(shared["address"], "Moscow Kremlin, Moscow, Russia", "{shared}");
        assert_eq!(shared["map_url"], "https://yandex.ru/maps/?pt=37.617500,55.752000&z=16");
        assert_eq!((shared["lat"].as_f64(), shared["accuracy"].as_f64()), (Some(KREMLIN.0), Some(30.0)));
        assert_eq!(shared["from"]["role"], "customer");
    }
    // a few metres away: the cached address, no second request
    send(&mut customer, json!({"type": "location", "lat": KREMLIN.0 + 0.00002, "lon": KREMLIN.1})).await;
    let again = frame_of(&mut agent, "location", &mut Vec::new()).await;
    assert_eq!(again["address"], "Moscow Kremlin, Moscow, Russia");
    assert_eq!(fake.requests(), 1);
    assert_eq!(fake.languages(), vec!["en"]);

    // nowhere known: no address, still the map link
    send(&mut customer, json!({"type": "location", "lat": -33.0, "lon": 151.0})).await;
    let unknown = frame_of(&mut agent, "location", &mut Vec::new()).await;
    assert!(unknown["address"].is_null(), "{unknown}");
    assert!(unknown["map_url"].as_str().unwrap().contains("pt=151.000000,-33.000000"));

    // down, then hanging past the timeout: the location comes without an address, the call goes on
    fake.set_down(true);
    send(&mut customer, json!({"type": "location", "lat": 10.0, "lon": 10.0})).await;
    assert!(frame_of(&mut agent, "location", &mut Vec::new()).await["address"].is_null());
    fake.set_down(false);
    fake.set_hanging(true);
    send(&mut customer, json!({"type": "location", "lat": 11.0, "lon": 11.0})).await;
    assert!(frame_of(&mut agent, "location", &mut Vec::new()).await["address"].is_null());
    send(&mut customer, json!({"type": "media", "audio": true, "camera": false, "screen": false})).await;
    let media = frame_of(&mut agent, "media", &mut Vec::new()).await;
    assert_eq!(media["audio"], true, "the call goes on");

    // refusals: bad positions, the wrong roles
    let bad: Vec<(Value, &str)> = vec![
        (json!({"type": "location", "lat": 91.0, "lon": 0.0}), "bad_frame"),
        (json!({"type": "location", "lat": 0.0, "lon": 0.0, "accuracy": -5.0}), "bad_frame"),
        (json!({"type": "location", "lat": "55.7", "lon": 37.6}), "bad_frame"),
        (json!({"type": "location", "lat": 1.0, "lon": 1.0, "alt": 3}), "bad_frame"),
        (json!({"type": "location_request"}), "forbidden"),
    ];
    for (frame, code) in bad {
        send(&mut customer, frame.clone()).await;
        let error = frame_of(&mut customer, "error", &mut Vec::new()).await;
        assert_eq!(error["code"], code, "{frame}: {error}");
    }
    send(&mut agent, json!({"type": "location", "lat": 1.0, "lon": 1.0})).await;
    assert_eq!(frame_of(&mut agent, "error", &mut Vec::new()).await["code"], "forbidden");

    // the customer may decline; the agent is told
    send(&mut customer, json!({"type": "location_denied", "reason": "User denied Geolocation\u{0}"})).await;
    let denied = frame_of(&mut agent, "location_denied", &mut Vec::new()).await;
    assert_eq!(denied["reason"], "User denied Geolocation");

    // kept with the call: its record has the latest position
    let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM video_locations WHERE room_id = $1")
        .bind(room)
        .fetch_one(&hub.pool)
        .await
        .unwrap();
    assert_eq!(kept, 5);
    let record = schema::store::call_record(&mut hub.pool.acquire().await.unwrap(), room).await.unwrap();
    let latest = record.location.unwrap();
    assert_eq!((latest.lat, latest.lon, latest.address), (11.0, 11.0, None));
    let first: Option<String> =
        sqlx::query_scalar("SELECT address FROM video_locations WHERE room_id = $1 ORDER BY id LIMIT 1")
            .bind(room)
            .fetch_one(&hub.pool)
            .await
            .unwrap();
    assert_eq!(first.as_deref(), Some("Moscow Kremlin, Moscow, Russia"));
}

#[tokio::test]
async fn without_a_geocoder_the_location_still_shows() {
    let hub = Hub::start().await;
    let (room, link) = hub.room().await;
    let mut agent = hub.socket().await;
    send(&mut agent, agent_join(room, "alice", &["agent"])).await;
    frame_of(&mut agent, "joined", &mut Vec::new()).await;
    let mut customer = hub.socket().await;
    send(&mut customer, customer_join(&link)).await;
    frame_of(&mut customer, "joined", &mut Vec::new()).await;
    send(&mut customer, json!({"type": "location", "lat": KREMLIN.0, "lon": KREMLIN.1})).await;
    let shared = frame_of(&mut agent, "location", &mut Vec::new()).await;
    assert!(shared["address"].is_null());
    assert_eq!(shared["map_url"], "https://yandex.ru/maps/?pt=37.617500,55.752000&z=16");
}
