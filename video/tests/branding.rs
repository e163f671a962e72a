//! The call's branding over HTTP on the real PostgreSQL: the customer page's first call
//! (`POST /api/v1/video/link`) and the agent panel's room (`GET /api/v1/video/rooms/{id}`) both
//! carry it, resolved field by field from the queue (config), the account (`accounts.settings`)
//! and the default; a bad value in the account's settings is left out and the call goes on.

mod support;

use serde_json::{Value, json};
use support::{Hub, token};
use video::branding::Layer;

fn config() -> video::Config {
    let mut config = video::Config::default();
    config.branding.company_name = "Default Co".into();
    config.branding.consent_text = "We use your camera.".into();
    config.branding.queues.insert(
        "support".into(),
        Layer {
            primary: Some("#8a1c1c".into()),
            after_call_url: Some("https://support.example/thanks".into()),
            ..Layer::default()
        },
    );
    config
}

async fn set_account_branding(hub: &Hub, branding: Value) {
    sqlx::query(
        "UPDATE accounts SET settings = settings || jsonb_build_object('branding', $2::jsonb)
         WHERE id = (SELECT account_id FROM interactions WHERE id = $1)",
    )
    .bind(hub.interaction)
    .bind(branding)
    .execute(&hub.pool)
    .await
    .unwrap();
}

async fn link_branding(hub: &Hub, link: &str) -> Value {
    let response =
        reqwest::Client::new().post(hub.url("/api/v1/video/link")).json(&json!({"link": link})).send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.json::<Value>().await.unwrap()["branding"].clone()
}

#[tokio::test]
async fn both_pages_get_the_queue_over_the_account_over_the_default() {
    let hub = Hub::start_with(config()).await;
    set_account_branding(
        &hub,
        json!({"company_name": "Acme", "primary": "#005500", "logo_url": "https://acme.example/logo.svg"}),
    )
    .await;
    let (room, link) = hub.room().await;
    let expected = json!({
        "logo_url": "https://acme.example/logo.svg",
        "company_name": "Acme",
        "primary": "#8a1c1c",
        "background": "#eef1f5",
        "text": "#1d2733",
        "consent_text": "We use your camera.",
        "after_call_url": "https://support.example/thanks",
    });
    assert_eq!(link_branding(&hub, &link).await, expected);

    let response = reqwest::Client::new()
        .get(hub.url(&format!("/api/v1/video/rooms/{room}")))
        .bearer_auth(token("alice", &["agent"]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap()["branding"], expected);
}

#[tokio::test]
async fn a_bad_value_in_the_accounts_settings_is_left_out_and_the_call_goes_on() {
    let hub = Hub::start_with(config()).await;
    set_account_branding(&hub, json!({"company_name": "Acme", "background": "black", "text": 7})).await;
    let (_, link) = hub.room().await;
    let branding = link_branding(&hub, &link).await;
    assert_eq!(branding["company_name"], "Acme");
    assert_eq!((branding["background"].as_str(), branding["text"].as_str()), (Some("#eef1f5"), Some("#1d2733")));
    assert!(branding["logo_url"].is_null(), "{branding}");
}

#[tokio::test]
async fn a_bad_branding_in_the_config_refuses_to_start_naming_the_key() {
    let mut config = config();
    config.branding.queues.get_mut("support").unwrap().text = Some("#12345".into());
    let problems: Vec<String> = config.problems().into_iter().map(|p| p.key).collect();
    assert_eq!(problems, ["video.branding.queues.support.text"]);
}
