//! What the capability matrix lets an agent send on Telegram beyond text and files (contact,
//! location, sticker, forward), an agent-started conversation, and updates that can never be
//! stored, end to end through the fake Bot API.

mod harness;

use connectors::fake::telegram::TgUser;
use harness::{WAIT, eventually, spawn_hub, spawn_hub_with};
use serde_json::json;

fn olga() -> TgUser {
    TgUser { id: 421000777, first_name: "Olga".into(), last_name: None, username: None }
}

fn ivan() -> TgUser {
    TgUser { id: 421000888, first_name: "Ivan".into(), last_name: None, username: None }
}

#[tokio::test]
async fn contact_location_sticker_and_forward_reach_telegram() {
    let hub = spawn_hub(json!({})).await;
    let mut alice = hub.ready_agent("alice").await;
    let _connector = hub.start_connector(connectors::Config::default()).await;
    let user = olga();
    let question = hub.fake.text(&user, "Где ваш офис?");
    let interaction = hub.accept_next(&mut alice).await;
    let chat = user.id as i64;
    let sticker_bytes = b"RIFF\x00\x00\x00\x00WEBPVP8 sticker".to_vec();
    hub.fake.file_message(&user, "sticker", "s.webp", "image/webp", sticker_bytes);
    let inbound_sticker =
        alice.event_where("message.new", |d| d["message"]["kind"] == "sticker").await["data"]["message"].clone();
    let sticker_id = inbound_sticker["sticker_id"].as_str().expect("an inbound sticker keeps its id").to_owned();
    let first: String = sqlx::query_scalar("SELECT id::text FROM messages WHERE direction = 'in' ORDER BY created_at")
        .fetch_one(&hub.pool)
        .await
        .unwrap();

    let send = |id: &str, args: serde_json::Value| {
        let mut args = args;
        args["interaction_id"] = json!(interaction);
        args["client_msg_id"] = json!(id);
        args
    };
    for (id, args) in [
        ("c-contact", json!({"contact": {"phone": "+7 495 000-00-00", "name": "Courier desk"}})),
        ("c-location", json!({"location": {"lat": 55.7558, "lon": 37.6173, "address": "Red Square"}})),
        ("c-sticker-id", json!({"sticker": {"sticker_id": sticker_id}})),
        ("c-forward", json!({"forward": {"message_id": first}})),
    ] {
        let sent = alice.call("message.send", send(id, args)).await;
        assert_eq!(sent["ok"], true, "{id}: {sent}");
        let message_id = sent["data"]["id"].as_str().unwrap().to_owned();
        let status = alice.event_where("message.status", |d| d["message"]["id"] == message_id.as_str()).await;
        assert_eq!(status["data"]["message"]["status"], "sent", "{id}: {status}");
    }
    let contact = hub.fake.calls_of("sendContact").pop().expect("sendContact");
    assert_eq!(contact.chat(), chat.to_string());
    assert_eq!(contact.param("phone_number"), "+7 495 000-00-00");
    assert_eq!(contact.param("first_name"), "Courier desk");
    let location = hub.fake.calls_of("sendLocation").pop().expect("sendLocation");
    assert_eq!(location.param("latitude"), 55.7558);
    assert_eq!(location.param("longitude"), 37.6173);
    let sticker = hub.fake.calls_of("sendSticker").pop().expect("sendSticker");
    assert_eq!(sticker.param("sticker"), sticker_id.as_str());
    assert!(sticker.ok(), "the fake knows the sticker's file id");
    let forward = hub.fake.calls_of("forwardMessage").pop().expect("forwardMessage");
    assert_eq!(forward.param("from_chat_id"), chat);
    assert_eq!(forward.param("message_id"), question);

    // a sticker from a file is uploaded with sendSticker
    let webp = b"RIFF\x00\x00\x00\x00WEBPVP8 own sticker".to_vec();
    let file = hub.upload("thanks.webp", "image/webp", webp.clone()).await;
    let sent = alice.call("message.send", send("c-sticker-file", json!({"sticker": {"file_id": file}}))).await;
    assert_eq!(sent["data"]["kind"], "sticker", "{sent}");
    eventually("sendSticker upload", WAIT, || async {
        hub.fake.calls_of("sendSticker").iter().any(|c| c.files.first().is_some_and(|f| f.bytes.as_ref() == webp))
    })
    .await;

    // contradictory content is refused before anything is queued
    let refused =
        alice.call("message.send", send("c-both", json!({"text": "here", "location": {"lat": 1.0, "lon": 2.0}}))).await;
    assert_eq!(refused["error"]["code"], "bad_request", "{refused}");
    let refused = alice.call("message.send", send("c-far", json!({"location": {"lat": 91.0, "lon": 2.0}}))).await;
    assert_eq!(refused["error"]["code"], "bad_request", "{refused}");
}

#[tokio::test]
async fn an_agent_starts_a_conversation_through_the_connector() {
    let hub = spawn_hub(json!({})).await;
    let mut alice = hub.ready_agent("alice").await;
    let _connector = hub.start_connector(connectors::Config::default()).await;
    let user = ivan();
    hub.fake.text(&user, "Привет");
    let interaction = hub.accept_next(&mut alice).await;
    let closed = alice.call("interaction.close", json!({"interaction_id": interaction})).await;
    assert_eq!(closed["ok"], true, "{closed}");

    let started = alice
        .call(
            "interaction.start",
            json!({"account_id": hub.account_id, "customer": {"external_id": user.id.to_string()},
                   "message": "Ваш заказ готов к выдаче"}),
        )
        .await;
    assert_eq!(started["ok"], true, "{started}");
    assert_eq!(started["data"]["state"], "assigned");
    eventually("the first message of the started conversation", WAIT, || async {
        hub.fake
            .calls_of("sendMessage")
            .iter()
            .any(|c| c.ok() && c.chat() == user.id.to_string() && c.param("text") == "Ваш заказ готов к выдаче")
    })
    .await;
}

/// A customer message holding U+0000 and an update Telegram's schema cannot read arrive between
/// two ordinary ones: both ordinary messages reach the agent, the NUL is stored as U+FFFD, the
/// unreadable update is parked with its raw payload, and the offset moves past all of them.
async fn poison_updates_never_block(webhook: bool) {
    let hub = spawn_hub_with(json!({}), json!({"webhook_secret": "poison-test-secret"})).await;
    let mut alice = hub.ready_agent("alice").await;
    let _connector = if webhook {
        let connector = hub.start_webhook_connector(connectors::Config::default()).await;
        eventually("the webhook is registered", WAIT, || async {
            hub.fake.calls_of("setWebhook").iter().any(|c| c.ok())
        })
        .await;
        connector
    } else {
        hub.start_connector(connectors::Config::default()).await
    };
    let user = olga();
    hub.fake.text(&user, "first");
    hub.fake.text(&user, "bad\u{0}byte");
    let unreadable = hub.fake.push_update(json!({"message": {"message_id": "not a number", "chat": 5}}));
    hub.fake.text(&user, "second");
    let interaction = hub.accept_next(&mut alice).await;
    assert!(!interaction.is_empty());
    eventually("both ordinary messages and the NUL one stored", WAIT, || async {
        hub.count("SELECT count(*) FROM messages WHERE direction = 'in'").await == 3
            && hub.count("SELECT count(*) FROM dead_letters").await == 1
    })
    .await;
    // (the fake posts webhook deliveries concurrently, so their order is not Telegram's)
    let texts: Vec<Option<String>> =
        sqlx::query_scalar("SELECT text FROM messages WHERE direction = 'in' ORDER BY text")
            .fetch_all(&hub.pool)
            .await
            .unwrap();
    assert_eq!(
        texts,
        vec![Some("bad\u{FFFD}byte".to_owned()), Some("first".to_owned()), Some("second".to_owned())],
        "the customer's words arrive, U+0000 replaced"
    );
    let parked: Vec<(String, Vec<u8>, String)> =
        sqlx::query_as("SELECT update_key, payload, error FROM dead_letters").fetch_all(&hub.pool).await.unwrap();
    assert_eq!(parked.len(), 1, "{parked:?}");
    assert_eq!(parked[0].0, unreadable.to_string());
    let payload: serde_json::Value = serde_json::from_slice(&parked[0].1).unwrap();
    assert_eq!(payload["message"]["message_id"], "not a number", "the raw payload is kept");
    assert!(parked[0].2.contains("message"), "the error names what could not be read: {}", parked[0].2);
    if !webhook {
        eventually("every update confirmed", WAIT, || async { hub.fake.unconfirmed() == 0 }).await;
    }
}

#[tokio::test]
async fn poison_updates_never_block_a_polling_account() {
    poison_updates_never_block(false).await;
}

#[tokio::test]
async fn poison_updates_never_block_a_webhook_account() {
    poison_updates_never_block(true).await;
}

/// An update parked while it could not be stored is replayed by the leader once an
/// administrator asks for it (the admin API sets `state = 'replay'`), and stored once.
#[tokio::test]
async fn a_parked_update_is_replayed_when_asked() {
    let hub = spawn_hub(json!({})).await;
    let _alice = hub.ready_agent("alice").await;
    let _connector = hub.start_connector(connectors::Config::default()).await;
    let update = json!({"update_id": 77, "message": {"message_id": 5, "date": 1767225600,
        "from": {"id": 4242, "is_bot": false, "first_name": "Olga"},
        "chat": {"id": 4242, "type": "private", "first_name": "Olga"}, "text": "parked, then replayed"}});
    let unreadable = json!({"update_id": 78, "message": {"message_id": "x"}});
    let (good, bad) = {
        let mut conn = hub.pool.acquire().await.unwrap();
        let good =
            schema::store::park_update(&mut conn, hub.account_id, "77", update.to_string().as_bytes(), "db down", 5)
                .await
                .unwrap();
        let bad = schema::store::park_update(
            &mut conn,
            hub.account_id,
            "78",
            unreadable.to_string().as_bytes(),
            "unreadable",
            1,
        )
        .await
        .unwrap();
        schema::store::request_replay(&mut conn, good).await.unwrap();
        schema::store::request_replay(&mut conn, bad).await.unwrap();
        (good, bad)
    };
    eventually("the replays are done", WAIT, || async {
        hub.count("SELECT count(*) FROM dead_letters WHERE state = 'replay'").await == 0
    })
    .await;
    let states: Vec<(i64, String, i32)> =
        sqlx::query_as("SELECT id, state, attempts FROM dead_letters ORDER BY id").fetch_all(&hub.pool).await.unwrap();
    assert_eq!(states, vec![(good, "replayed".to_owned(), 5), (bad, "parked".to_owned(), 2)]);
    assert_eq!(hub.count("SELECT count(*) FROM messages WHERE text = 'parked, then replayed'").await, 1);
}
