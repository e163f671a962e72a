//! Webhook mode: the leader registers the webhook with its secret; deliveries without the
//! right `X-Telegram-Bot-Api-Secret-Token` get 401 and store nothing; good ones are stored
//! before the 200, and a backup that does not lead answers 503 so Telegram delivers again.

mod harness;

use std::time::Duration;

use connectors::fake::telegram::TgUser;
use harness::{WAIT, eventually, spawn_hub_with};
use serde_json::json;

const SECRET: &str = "cc_hub-7f3a9K";

fn update(id: u32, text: &str) -> serde_json::Value {
    json!({"update_id": id, "message": {"message_id": id, "date": 1767225600,
        "from": {"id": 4242, "is_bot": false, "first_name": "Olga"},
        "chat": {"id": 4242, "type": "private", "first_name": "Olga"}, "text": text}})
}

#[tokio::test]
async fn a_wrong_or_missing_secret_gets_401_and_stores_nothing() {
    let hub = spawn_hub_with(json!({}), json!({"webhook_secret": SECRET})).await;
    let mut alice = hub.ready_agent("alice").await;
    let connector = hub.start_webhook_connector(connectors::Config::default()).await;
    eventually("setWebhook", WAIT, || async { hub.fake.webhook().is_some() }).await;
    let webhook = hub.fake.webhook().unwrap();
    assert_eq!(webhook.secret.as_deref(), Some(SECRET));
    assert_eq!(webhook.url, format!("http://{}/api/v1/connectors/{}/telegram", connector.addr, hub.account_id));
    assert!(webhook.allowed_updates.unwrap().as_array().unwrap().contains(&json!("callback_query")));
    assert!(hub.fake.calls_of("getUpdates").is_empty(), "no polling in webhook mode");

    assert_eq!(hub.fake.post_webhook(&update(1, "no secret"), None).await, 401);
    assert_eq!(hub.fake.post_webhook(&update(2, "wrong secret"), Some("cc_hub-7f3a9k")).await, 401);
    assert_eq!(hub.fake.post_webhook(&update(3, "empty secret"), Some("")).await, 401);
    assert_eq!(hub.count("SELECT count(*) FROM messages").await, 0, "nothing stored");
    assert_eq!(hub.count("SELECT count(*) FROM customers").await, 0, "nothing stored");

    // the right secret: stored before the 200, and the agent is offered the chat
    assert_eq!(hub.fake.post_webhook(&update(4, "right secret"), Some(SECRET)).await, 200);
    assert_eq!(hub.count("SELECT count(*) FROM messages").await, 1, "stored before the answer");
    assert_eq!(hub.fake.post_webhook(&update(4, "right secret"), Some(SECRET)).await, 200);
    assert_eq!(hub.count("SELECT count(*) FROM messages").await, 1, "a redelivery is stored once");
    let offer = alice.event("interaction.offered").await;
    assert_eq!(offer["data"]["interaction"]["customer"]["name"], "Olga");

    // the fake as Telegram: an update pushed while the webhook is set is POSTed with the secret
    let user = TgUser::new(777, "Ivan");
    hub.fake.text(&user, "через вебхук");
    eventually("delivered through the webhook", WAIT, || async {
        hub.count("SELECT count(*) FROM messages WHERE text = 'через вебхук'").await == 1
    })
    .await;
    assert!(hub.fake.deliveries().iter().all(|d| d.status == 200), "{:?}", hub.fake.deliveries());

    // a malformed body with the right secret can never be stored: it is parked as a dead letter
    // and acknowledged (a 4xx would make Telegram deliver it again and again)
    let status = reqwest::Client::new()
        .post(&webhook.url)
        .header(connectors::telegram::SECRET_HEADER, SECRET)
        .body("{not json")
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
    assert_eq!(hub.count("SELECT count(*) FROM messages").await, 2);
    assert_eq!(hub.count("SELECT count(*) FROM dead_letters WHERE payload = '{not json'::bytea").await, 1);
}

#[tokio::test]
async fn a_backup_answers_503_until_it_leads() {
    let hub = spawn_hub_with(json!({}), json!({"webhook_secret": SECRET})).await;
    let leader = hub.start_webhook_connector(connectors::Config::default()).await;
    eventually("setWebhook", WAIT, || async { hub.fake.webhook().is_some() }).await;
    let backup = hub.start_webhook_connector(connectors::Config::default()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let backup_url = format!("http://{}/api/v1/connectors/{}/telegram", backup.addr, hub.account_id);
    let post = |url: String, body: serde_json::Value| async move {
        reqwest::Client::new()
            .post(url)
            .header(connectors::telegram::SECRET_HEADER, SECRET)
            .json(&body)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(post(backup_url.clone(), update(10, "to the backup")).await, 503);
    assert_eq!(hub.count("SELECT count(*) FROM messages").await, 0);
    // the backup still checks the secret first
    let wrong = reqwest::Client::new().post(&backup_url).json(&update(11, "x")).send().await.unwrap();
    assert_eq!(wrong.status(), 401);

    leader.stop().await;
    eventually("the backup leads and registers the webhook", WAIT, || async {
        hub.fake.webhook().is_some_and(|w| w.url == backup_url)
    })
    .await;
    assert_eq!(post(backup_url, update(10, "to the backup")).await, 200);
    assert_eq!(hub.count("SELECT count(*) FROM messages").await, 1);
}
