//! The Viber connector end to end: the fake Viber API on one side (callbacks signed like
//! Viber's, `send_message` validated like Viber's, outbound media fetched like Viber does), the
//! real chatserver and file server with a real WebSocket agent on the other, real PostgreSQL and
//! ZooKeeper between.

mod harness;
#[path = "harness/viber.rs"]
mod viber_hub;

use std::time::Duration;

use connectors::fake::viber::{Signature, Subscription, ViberUser};
use harness::{Client, WAIT, eventually};
use serde_json::{Value, json};
use viber_hub::{AUTH_TOKEN, ViberHub, spawn_viber_hub};

fn anna() -> ViberUser {
    ViberUser::new("Vb9kQ2xL0aZ1pT7c4dE3fw==", "Anna Berg")
}

/// A hub, a ready agent, a connector that registered its webhook, and Anna's first message
/// accepted by the agent.
async fn conversation(settings: Value) -> (ViberHub, Client, harness::Connector, String, ViberUser) {
    let vh = spawn_viber_hub(settings).await;
    let mut alice = vh.hub.ready_agent("alice").await;
    let connector = vh.start_connector().await;
    vh.registered().await;
    let user = anna();
    vh.fake.text(&user, "Hello, where is order 7731?");
    let interaction = vh.hub.accept_next(&mut alice).await;
    (vh, alice, connector, interaction, user)
}

#[tokio::test]
async fn the_leader_registers_the_webhook_and_answers_viber_s_check() {
    let vh = spawn_viber_hub(json!({})).await;
    let connector = vh.start_connector().await;
    vh.registered().await;
    let webhook = vh.fake.webhook().unwrap();
    assert_eq!(webhook.url, vh.webhook_url(connector.addr));
    assert!(webhook.send_name && webhook.send_photo);
    let call = vh.fake.calls_of("set_webhook").pop().unwrap();
    assert_eq!(call.headers.get("x-viber-auth-token").map(String::as_str), Some(AUTH_TOKEN));
    for event in ["delivered", "seen", "failed", "subscribed", "unsubscribed", "conversation_started"] {
        assert!(call.param("event_types").as_array().unwrap().contains(&json!(event)), "{event}");
    }
    // Viber's check came before the answer and got a 200
    let check = vh.fake.deliveries().into_iter().find(|d| d.event == "webhook").expect("the check callback");
    assert_eq!(check.status, 200);
    assert_eq!(vh.count("SELECT count(*) FROM messages").await, 0);
    assert_eq!(vh.count("SELECT count(*) FROM dead_letters").await, 0, "the check is not an update to park");
}

#[tokio::test]
async fn every_kind_of_customer_message_reaches_the_agent_with_its_file() {
    let vh = spawn_viber_hub(json!({})).await;
    let mut alice = vh.hub.ready_agent("alice").await;
    let _connector = vh.start_connector().await;
    vh.registered().await;
    let mut user = anna();
    let avatar = b"\xff\xd8\xff anna's avatar".to_vec();
    user.avatar = Some(vh.fake.add_media(avatar.clone(), "jpg"));

    let first = vh.fake.text(&user, "Hello, where is order 7731? 👋");
    assert!(first > 1 << 53, "the fake's tokens are beyond a double's exact range");
    let offer = alice.event("interaction.offered").await;
    let interaction = &offer["data"]["interaction"];
    assert_eq!(interaction["channel"], "viber");
    assert_eq!(interaction["customer"]["name"], "Anna Berg");
    assert_eq!(interaction["customer"]["external_id"], user.id.as_str());
    let avatar_url = interaction["customer"]["avatar_url"].as_str().expect("the customer's avatar was copied");
    assert_eq!(vh.hub.download(avatar_url).await.1, avatar, "the avatar is the hub's copy of Viber's");
    let id = interaction["id"].as_str().unwrap().to_owned();
    let accepted = alice.call("interaction.accept", json!({"interaction_id": id})).await;
    assert_eq!(accepted["ok"], true, "{accepted}");
    let external: String =
        sqlx::query_scalar("SELECT external_message_id FROM messages").fetch_one(&vh.hub.pool).await.unwrap();
    assert_eq!(external, first.to_string(), "the message token is kept exact");

    let photo = b"\xff\xd8\xff\xe0 the receipt photo".to_vec();
    vh.fake.picture(&user, photo.clone(), Some("Here is the receipt"));
    let m = alice.customer_message("image").await;
    assert_eq!(m["text"], "Here is the receipt");
    let (bytes, name, mime) = vh.hub.file_of(&m, 0).await;
    assert_eq!((bytes, name.as_str(), mime.as_str()), (photo, "IMG_0412.jpg", "image/jpeg"));

    let clip = b"\x00\x00\x00\x18ftypmp42 clip".to_vec();
    vh.fake.video(&user, clip.clone());
    let m = alice.customer_message("video").await;
    let (bytes, _, mime) = vh.hub.file_of(&m, 0).await;
    assert_eq!((bytes, mime.as_str()), (clip, "video/mp4"));

    let pdf = b"%PDF-1.4 the contract".to_vec();
    vh.fake.file(&user, "contract.pdf", pdf.clone());
    let m = alice.customer_message("document").await;
    let (bytes, name, mime) = vh.hub.file_of(&m, 0).await;
    assert_eq!((bytes, name.as_str(), mime.as_str()), (pdf, "contract.pdf", "application/pdf"));

    vh.fake.sticker(&user, 40133);
    let m = alice.customer_message("sticker").await;
    assert_eq!(m["sticker_id"], "40133");
    let (bytes, _, mime) = vh.hub.file_of(&m, 0).await;
    assert_eq!((bytes.as_slice(), mime.as_str()), (b"PNG sticker 40133".as_slice(), "image/png"));

    vh.fake.location(&user, 52.5200, 13.4050);
    let m = alice.customer_message("location").await;
    assert_eq!(m["location"], json!({"lat": 52.52, "lon": 13.405}));

    // someone else's card is a contact, not the customer's phone
    vh.fake.contact(&user, "Ivan Petrov", "+79161234567");
    let m = alice.customer_message("contact").await;
    assert_eq!(m["contact"], json!({"phone": "+79161234567", "name": "Ivan Petrov"}));
    let phone: Option<String> =
        sqlx::query_scalar("SELECT phone FROM customers").fetch_one(&vh.hub.pool).await.unwrap();
    assert_eq!(phone, None);
    // the share-phone answer: their own number
    vh.fake.share_phone(&user, "+4915112345678");
    let m = alice.event_where("message.new", |d| d["message"]["contact"]["phone"] == "+4915112345678").await;
    assert_eq!(m["data"]["message"]["contact"]["name"], "Anna Berg");
    let phone: Option<String> =
        sqlx::query_scalar("SELECT phone FROM customers").fetch_one(&vh.hub.pool).await.unwrap();
    assert_eq!(phone.as_deref(), Some("+4915112345678"));

    vh.fake.url(&user, "https://shop.example/order/7731");
    let m = alice.event_where("message.new", |d| d["message"]["text"] == "https://shop.example/order/7731").await;
    assert_eq!(m["data"]["message"]["kind"], "text");

    assert_eq!(vh.count("SELECT count(*) FROM messages WHERE direction = 'in'").await, 9);
    let answered: Vec<u16> = vh.fake.deliveries().iter().map(|d| d.status).collect();
    assert!(answered.iter().all(|s| *s == 200), "every callback answered 200 the first time: {answered:?}");
    // a redelivery is stored once
    let again = vh
        .fake
        .post_callback(
            &json!({"event": "message", "timestamp": 1, "message_token": first,
        "sender": user.json(), "message": {"type": "text", "text": "Hello, where is order 7731? 👋"}}),
            Signature::Right,
        )
        .await;
    assert_eq!(again.status, 200);
    assert_eq!(vh.count("SELECT count(*) FROM messages WHERE direction = 'in'").await, 9);
}

#[tokio::test]
async fn subscribers_are_customers_agents_can_write_to_and_the_welcome_is_the_answer() {
    let vh = spawn_viber_hub(json!({"welcome": "Hi! How can we help?", "sender_name": "Acme Support"})).await;
    let mut alice = vh.hub.ready_agent("alice").await;
    let _connector = vh.start_connector().await;
    vh.registered().await;

    // opening the chat: the welcome message is the HTTP answer, and the customer is known
    let bo = ViberUser::new("bo000000000000000000A==", "Bo");
    let opened = vh.fake.conversation_started(&bo).await;
    assert_eq!(opened.status, 200);
    assert_eq!(
        opened.answer_json().expect("a JSON answer"),
        json!({"sender": {"name": "Acme Support"}, "type": "text", "text": "Hi! How can we help?"})
    );
    assert_eq!(vh.count("SELECT count(*) FROM customers").await, 1);
    assert_eq!(vh.count("SELECT count(*) FROM interactions").await, 0, "nothing opened for the agents");

    // a subscriber (with an avatar) becomes a customer an agent can start a conversation with
    let mut dora = ViberUser::new("dora0000000000000000B==", "Dora Stein");
    dora.avatar = Some(vh.fake.add_media(b"\xff\xd8 dora".to_vec(), "jpg"));
    vh.fake.subscribed(&dora);
    eventually("Dora stored", WAIT, || async {
        vh.count("SELECT count(*) FROM customers WHERE name = 'Dora Stein' AND avatar_url IS NOT NULL").await == 1
    })
    .await;
    let started = alice
        .call(
            "interaction.start",
            json!({"account_id": vh.account_id, "customer": {"external_id": dora.id}, "message": "Your order shipped."}),
        )
        .await;
    assert_eq!(started["ok"], true, "{started}");
    eventually("the message at Viber", WAIT, || async { !vh.fake.sent_to(&dora.id).is_empty() }).await;
    assert_eq!(vh.fake.sent_to(&dora.id)[0].body["text"], "Your order shipped.");

    // an unsubscribed customer's message fails with the reason
    let eve = ViberUser::new("eve00000000000000000C==", "Eve");
    vh.fake.subscribed(&eve);
    eventually("Eve stored", WAIT, || async {
        vh.count("SELECT count(*) FROM customers WHERE name = 'Eve'").await == 1
    })
    .await;
    vh.fake.unsubscribed(&eve);
    eventually("unsubscribed answered", WAIT, || async {
        vh.fake.deliveries().iter().any(|d| d.event == "unsubscribed" && d.status == 200)
    })
    .await;
    assert_eq!(vh.fake.subscription(&eve.id), Some(Subscription::Unsubscribed));
    let started = alice
        .call(
            "interaction.start",
            json!({"account_id": vh.account_id, "customer": {"external_id": eve.id}, "message": "Hello?"}),
        )
        .await;
    assert_eq!(started["ok"], true, "{started}");
    let failed = alice.event_where("message.status", |d| d["message"]["status"] == "failed").await;
    assert_eq!(
        failed["data"]["message"]["error"],
        "the customer is not subscribed to the bot (Viber status 6, receiverNotSubscribed)"
    );
    assert_eq!(vh.fake.calls_of("send_message").iter().filter(|c| c.status == 6).count(), 1, "tried once, not retried");
}

#[tokio::test]
async fn agent_replies_reach_viber_by_kind_with_the_agents_name_and_avatar() {
    let (vh, mut alice, _connector, interaction, user) = conversation(json!({})).await;
    let avatar = "https://hub.example/avatars/alice.jpg";
    sqlx::query("UPDATE agents SET avatar_url = $1 WHERE login = 'alice'")
        .bind(avatar)
        .execute(&vh.hub.pool)
        .await
        .unwrap();

    let m = alice.send_message(&interaction, "t1", json!({"text": "Your parcel left the warehouse."})).await;
    assert_eq!(m["status"], "sent", "{m}");
    let call = vh.fake.calls_of("send_message").pop().unwrap();
    assert_eq!(call.headers.get("x-viber-auth-token").map(String::as_str), Some(AUTH_TOKEN));
    assert_eq!(call.param("receiver"), user.id.as_str());
    assert_eq!(call.param("type"), "text");
    assert_eq!(call.param("text"), "Your parcel left the warehouse.");
    assert_eq!(call.param("sender"), &json!({"name": "Agent alice", "avatar": avatar}), "the agent's name and avatar");
    let external: String = sqlx::query_scalar("SELECT external_message_id FROM messages WHERE id = $1::uuid")
        .bind(m["id"].as_str().unwrap())
        .fetch_one(&vh.hub.pool)
        .await
        .unwrap();
    assert_eq!(external, call.token().unwrap().to_string(), "the message token is the platform id, exact");

    // over 7000 characters: several messages, cut between words
    let words: Vec<String> = (0..2000).map(|i| format!("word{i}")).collect();
    let long = words.join(" ");
    let before = vh.fake.calls_of("send_message").len();
    let m = alice.send_message(&interaction, "t2", json!({"text": long})).await;
    assert_eq!(m["status"], "sent");
    let parts: Vec<String> = vh.fake.calls_of("send_message")[before..]
        .iter()
        .map(|c| c.param("text").as_str().unwrap().to_owned())
        .collect();
    assert!(parts.len() >= 2, "{} parts", parts.len());
    assert!(parts.iter().all(|p| p.chars().count() <= 7000));
    assert_eq!(parts.join(" "), long);

    // files go by signed link, which the fake fetches as Viber does
    let photo = b"\xff\xd8\xff\xe0 agent photo".to_vec();
    let file = vh.hub.upload("receipt.jpg", "image/jpeg", photo.clone()).await;
    let m = alice.send_message(&interaction, "f1", json!({"text": "Your receipt", "file_ids": [file]})).await;
    assert_eq!(m["status"], "sent", "{m}");
    let call = vh.fake.calls_of("send_message").pop().unwrap();
    assert_eq!((call.param("type"), call.param("text")), (&json!("picture"), &json!("Your receipt")));
    let fetched = vh.fake.fetched().pop().unwrap();
    assert_eq!(fetched.url, call.param("media").as_str().unwrap());
    assert!(fetched.url.contains("sig="), "a signed link: {}", fetched.url);
    assert_eq!((fetched.status, fetched.bytes.as_ref()), (200, photo.as_slice()));

    let clip = b"\x00\x00\x00\x18ftypmp42 agent clip".to_vec();
    let file = vh.hub.upload("how-to.mp4", "video/mp4", clip.clone()).await;
    alice.send_message(&interaction, "f2", json!({"file_ids": [file]})).await;
    let call = vh.fake.calls_of("send_message").pop().unwrap();
    assert_eq!(
        (call.param("type"), call.param("size"), call.param("duration")),
        (&json!("video"), &json!(clip.len()), &json!(0))
    );
    assert_eq!(vh.fake.fetched().pop().unwrap().bytes.as_ref(), clip.as_slice());

    // a file message has no text: the text goes first, on its own
    let pdf = b"%PDF-1.4 invoice".to_vec();
    let file = vh.hub.upload("invoice.pdf", "application/pdf", pdf.clone()).await;
    let before = vh.fake.calls_of("send_message").len();
    let m = alice.send_message(&interaction, "f3", json!({"text": "The invoice", "file_ids": [file]})).await;
    assert_eq!(m["status"], "sent");
    let calls = vh.fake.calls_of("send_message")[before..].to_vec();
    assert_eq!(calls.len(), 2);
    assert_eq!((calls[0].param("type"), calls[0].param("text")), (&json!("text"), &json!("The invoice")));
    assert_eq!(calls[1].param("type"), "file");
    assert_eq!((calls[1].param("file_name"), calls[1].param("size")), (&json!("invoice.pdf"), &json!(pdf.len())));
    assert_eq!(vh.fake.fetched().pop().unwrap().bytes.as_ref(), pdf.as_slice());

    alice.send_message(&interaction, "l1", json!({"location": {"lat": 52.52, "lon": 13.405}})).await;
    let call = vh.fake.calls_of("send_message").pop().unwrap();
    assert_eq!(
        (call.param("type"), call.param("location")),
        (&json!("location"), &json!({"lat": 52.52, "lon": 13.405}))
    );
    alice.send_message(&interaction, "c1", json!({"contact": {"phone": "+4930123456", "name": "Acme Returns"}})).await;
    let call = vh.fake.calls_of("send_message").pop().unwrap();
    assert_eq!(call.param("contact"), &json!({"name": "Acme Returns", "phone_number": "+4930123456"}));
    alice.send_message(&interaction, "s1", json!({"sticker": {"sticker_id": "40133"}})).await;
    let call = vh.fake.calls_of("send_message").pop().unwrap();
    assert_eq!((call.param("type"), call.param("sticker_id")), (&json!("sticker"), &json!(40133)));
    alice.send_message(&interaction, "u1", json!({"text": "https://track.example/7731"})).await;
    let call = vh.fake.calls_of("send_message").pop().unwrap();
    assert_eq!((call.param("type"), call.param("media")), (&json!("url"), &json!("https://track.example/7731")));

    // a reply keyboard: the row shares Viber's six columns
    let m = alice.send_message(
        &interaction,
        "k1",
        json!({"text": "Refund or resend?", "keyboard": {"type": "reply", "rows": [[{"text": "Refund"}, {"text": "Resend"}, {"text": "Wait"}]]}}),
    )
    .await;
    assert_eq!(m["status"], "sent");
    let call = vh.fake.calls_of("send_message").pop().unwrap();
    let buttons = call.param("keyboard")["Buttons"].as_array().unwrap().clone();
    assert_eq!(buttons.len(), 3);
    assert_eq!(
        buttons[0],
        json!({"Columns": 2, "Rows": 1, "ActionType": "reply", "ActionBody": "Refund", "Text": "Refund"})
    );
    assert_eq!(call.param("min_api_version"), 1);

    // the share-phone button, and the customer's answer: their phone
    alice.send_message(
        &interaction,
        "k2",
        json!({"text": "May I have your number?", "keyboard": {"type": "reply", "rows": [[{"text": "📱 Share my number", "request_phone": true}]]}}),
    )
    .await;
    let call = vh.fake.calls_of("send_message").pop().unwrap();
    assert_eq!(call.param("min_api_version"), 3);
    assert_eq!(call.param("keyboard")["Buttons"][0]["ActionType"], "share-phone");
    let mut renamed = user.clone();
    renamed.name = "A. B.".into(); // the card's name differs: the tracking data tells it is hers
    vh.fake.share_phone(&renamed, "+4915112345678");
    alice.customer_message("contact").await;
    let phone: Option<String> =
        sqlx::query_scalar("SELECT phone FROM customers").fetch_one(&vh.hub.pool).await.unwrap();
    assert_eq!(phone.as_deref(), Some("+4915112345678"));

    // Viber cannot edit: the chatserver refuses before anything is queued
    let refused = alice.call("message.edit", json!({"message_id": m["id"], "text": "changed"})).await;
    assert_eq!(refused["ok"], false, "{refused}");
    assert_eq!(vh.count("SELECT count(*) FROM messages WHERE direction = 'out' AND status = 'failed'").await, 0);
    assert!(vh.fake.fetched().iter().all(|f| f.status == 200));
    assert!(vh.fake.deliveries().iter().all(|d| d.event != "failed"), "Viber's client took every keyboard");
}

#[tokio::test]
async fn delivered_and_seen_reach_the_agent_in_order_and_never_go_back() {
    let (vh, mut alice, _connector, interaction, user) = conversation(json!({})).await;
    let m = alice.send_message(&interaction, "r1", json!({"text": "Your parcel left."})).await;
    let id = m["id"].as_str().unwrap().to_owned();
    let token = vh.fake.sent_to(&user.id).pop().unwrap().token;

    vh.fake.delivered(token, &user.id);
    let s = alice.event_where("message.status", |d| d["message"]["id"] == id.as_str()).await;
    assert_eq!(s["data"]["message"]["status"], "delivered");
    vh.fake.seen(token, &user.id);
    let s = alice.event_where("message.status", |d| d["message"]["id"] == id.as_str()).await;
    assert_eq!(s["data"]["message"]["status"], "read");
    // a late delivered changes nothing
    vh.fake.delivered(token, &user.id);
    eventually("the late receipt answered", WAIT, || async {
        vh.fake.deliveries_of(token).iter().filter(|d| d.event == "delivered" && d.status == 200).count() == 2
    })
    .await;
    alice.settle(Duration::from_millis(300)).await;
    assert!(
        !alice.events().iter().any(|e| e["event"] == "message.status" && e["data"]["message"]["id"] == id.as_str()),
        "{:?}",
        alice.events()
    );
    let status: String = sqlx::query_scalar("SELECT status FROM messages WHERE id = $1::uuid")
        .bind(&id)
        .fetch_one(&vh.hub.pool)
        .await
        .unwrap();
    assert_eq!(status, "read");
    let history: Vec<String> = sqlx::query_scalar(
        "SELECT event->'data'->'message'->>'status' FROM history WHERE entry = 'event' \
         AND event->>'kind' = 'message.status' AND event->'data'->'message'->>'id' = $1 ORDER BY id",
    )
    .bind(&id)
    .fetch_all(&vh.hub.pool)
    .await
    .unwrap();
    assert_eq!(history, vec!["sent", "delivered", "read"], "each status once in the history, none going back");

    // failed after it was accepted: the reason reaches the agent
    let m = alice.send_message(&interaction, "r2", json!({"text": "And another."})).await;
    let id = m["id"].as_str().unwrap().to_owned();
    let token = vh.fake.sent_to(&user.id).pop().unwrap().token;
    vh.fake.failed(token, &user.id, "the user's device rejected it");
    let s = alice.event_where("message.status", |d| d["message"]["id"] == id.as_str()).await;
    assert_eq!(s["data"]["message"]["status"], "failed");
    assert_eq!(s["data"]["message"]["error"], "Viber could not deliver it: the user's device rejected it");
}

#[tokio::test]
async fn receipts_that_come_before_the_send_is_recorded_still_apply() {
    let (vh, mut alice, _connector, interaction, user) = conversation(json!({})).await;
    vh.fake.set_auto_receipts(true);
    let mut ids = Vec::new();
    for n in 0..5 {
        let m = alice.send_message(&interaction, &format!("e{n}"), json!({"text": format!("quick reader {n}")})).await;
        ids.push(m["id"].as_str().unwrap().to_owned());
    }
    eventually("every message read", WAIT, || async {
        vh.count("SELECT count(*) FROM messages WHERE direction = 'out' AND status = 'read'").await == 5
    })
    .await;
    for id in &ids {
        alice
            .event_where("message.status", |d| d["message"]["id"] == id.as_str() && d["message"]["status"] == "read")
            .await;
    }
    assert_eq!(vh.fake.sent_to(&user.id).len(), 5);
    assert_eq!(vh.count("SELECT count(*) FROM early_receipts").await, 0, "every early receipt was applied");
}

#[tokio::test]
async fn viber_statuses_rate_limit_and_refused_token() {
    let (vh, mut alice, _connector, interaction, _user) = conversation(json!({})).await;

    // 12: retried after a wait, sent once
    vh.fake.fail_next("send_message", 12, "Too many requests");
    let m = alice.send_message(&interaction, "s1", json!({"text": "slow down"})).await;
    assert_eq!(m["status"], "sent", "{m}");
    let calls: Vec<_> =
        vh.fake.calls_of("send_message").into_iter().filter(|c| c.param("text") == "slow down").collect();
    assert_eq!(calls.iter().map(|c| c.status).collect::<Vec<_>>(), vec![12, 0]);
    let waited = calls[1].at - calls[0].at;
    assert!(waited >= Duration::from_secs(2), "retried after {waited:?}");
    assert_eq!(vh.fake.sent().iter().filter(|s| s.body["text"] == "slow down").count(), 1);

    // 2: the account's token is refused: failed, with what to fix, not retried
    vh.fake.fail_next("send_message", 2, "invalidAuthToken");
    let m = alice.send_message(&interaction, "s2", json!({"text": "hello?"})).await;
    assert_eq!(m["status"], "failed");
    assert!(m["error"].as_str().unwrap().contains("auth_token"), "{m}");

    // nothing left waiting
    assert_eq!(vh.count("SELECT count(*) FROM outbox WHERE state = 'pending'").await, 0);
}

#[tokio::test]
async fn bad_signatures_get_401_and_a_backup_503() {
    let vh = spawn_viber_hub(json!({})).await;
    let leader = vh.start_connector().await;
    vh.registered().await;
    let user = anna();
    let body = json!({"event": "message", "timestamp": 1767312000123u64, "message_token": 5912004410023009001u64,
        "sender": user.json(), "message": {"type": "text", "text": "signed?"}});
    for signature in [Signature::Missing, Signature::Wrong] {
        let delivery = vh.fake.post_callback(&body, signature).await;
        assert_eq!(delivery.status, 401, "{signature:?}");
    }
    // a signature over other bytes than the body (the same JSON, re-serialized with a space)
    let raw = serde_json::to_vec(&body).unwrap();
    let mut spaced = raw.clone();
    spaced.insert(1, b' ');
    let forged = reqwest::Client::new()
        .post(vh.fake.webhook().unwrap().url)
        .header("X-Viber-Content-Signature", connectors::fake::viber::sign(AUTH_TOKEN, &raw))
        .body(spaced)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    assert_eq!(vh.count("SELECT count(*) FROM messages").await, 0, "nothing stored");
    assert_eq!(vh.count("SELECT count(*) FROM customers").await, 0, "nothing stored");
    assert_eq!(vh.count("SELECT count(*) FROM dead_letters").await, 0, "nothing parked");
    // the signature as `?sig=` (as Viber's Node middleware accepts it)
    assert_eq!(vh.fake.post_callback(&body, Signature::Query).await.status, 200);
    assert_eq!(vh.count("SELECT count(*) FROM messages").await, 1);

    let backup = vh.start_connector().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let backup_url = vh.webhook_url(backup.addr);
    let post = |url: String, raw: Vec<u8>, signed: bool| async move {
        let mut request = reqwest::Client::new().post(url).body(raw.clone());
        if signed {
            request = request.header("X-Viber-Content-Signature", connectors::fake::viber::sign(AUTH_TOKEN, &raw));
        }
        request.send().await.unwrap().status().as_u16()
    };
    let second =
        serde_json::to_vec(&json!({"event": "message", "timestamp": 1, "message_token": 5912004410023009002u64,
        "sender": user.json(), "message": {"type": "text", "text": "to the backup"}}))
        .unwrap();
    assert_eq!(post(backup_url.clone(), second.clone(), true).await, 503, "a backup does not take it");
    assert_eq!(post(backup_url.clone(), second.clone(), false).await, 401, "and checks the signature first");
    assert_eq!(vh.count("SELECT count(*) FROM messages").await, 1);

    leader.stop().await;
    eventually("the backup leads and registers its webhook", WAIT, || async {
        vh.fake.webhook().is_some_and(|w| w.url == backup_url)
    })
    .await;
    assert_eq!(post(backup_url, second, true).await, 200);
    assert_eq!(vh.count("SELECT count(*) FROM messages").await, 2);
}

#[tokio::test]
async fn a_nul_byte_and_an_unreadable_update_do_not_block_the_others() {
    let vh = spawn_viber_hub(json!({})).await;
    let mut alice = vh.hub.ready_agent("alice").await;
    let _connector = vh.start_connector().await;
    vh.registered().await;
    let user = anna();
    vh.fake.text(&user, "first ordinary");
    let interaction = vh.hub.accept_next(&mut alice).await;
    let nul = vh.fake.text(&user, "bad\u{0}byte");
    let bad = vh.fake.message(&user, json!({"type": "location", "location": {"lat": "north", "lon": 13.4}}));
    vh.fake.text(&user, "second ordinary");

    let m = alice.event_where("message.new", |d| d["message"]["text"] == "second ordinary").await;
    assert_eq!(m["data"]["message"]["interaction_id"], interaction.as_str());
    alice.event_where("message.new", |d| d["message"]["text"] == "bad\u{FFFD}byte").await;
    eventually("every callback answered", WAIT, || async {
        [nul, bad].iter().all(|t| vh.fake.deliveries_of(*t).iter().any(|d| d.status == 200))
    })
    .await;
    let stored: String = sqlx::query_scalar("SELECT text FROM messages WHERE external_message_id = $1")
        .bind(nul.to_string())
        .fetch_one(&vh.hub.pool)
        .await
        .unwrap();
    assert_eq!(stored, "bad\u{FFFD}byte");
    let (key, payload, error): (String, Vec<u8>, String) =
        sqlx::query_as("SELECT update_key, payload, error FROM dead_letters").fetch_one(&vh.hub.pool).await.unwrap();
    assert_eq!(key, bad.to_string());
    let parked: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(parked["message"]["location"]["lat"], "north", "the raw payload is kept");
    assert!(error.contains("cannot read"), "{error}");
    assert_eq!(vh.fake.deliveries_of(bad).len(), 1, "parked at once and answered 200: Viber does not retry it");
    assert_eq!(vh.count("SELECT count(*) FROM messages WHERE direction = 'in'").await, 3);
}

#[tokio::test]
async fn media_that_keeps_failing_is_stored_as_a_note_and_a_brief_failure_is_retried() {
    let vh = spawn_viber_hub(json!({})).await;
    let mut alice = vh.hub.ready_agent("alice").await;
    let _connector = vh.start_connector().await;
    vh.registered().await;
    vh.fake.set_redelivery(10, Duration::from_millis(20));
    let user = anna();
    vh.fake.text(&user, "hi");
    vh.hub.accept_next(&mut alice).await;

    // the media URL answers 503 twice: Viber redelivers (the hub answered 503), then it works
    vh.fake.fail_media(2);
    let token = vh.fake.picture(&user, b"\xff\xd8 eventually".to_vec(), None);
    let m = alice.customer_message("image").await;
    assert_eq!(vh.hub.file_of(&m, 0).await.0, b"\xff\xd8 eventually");
    let statuses = |token: u64| vh.fake.deliveries_of(token).iter().map(|d| d.status).collect::<Vec<u16>>();
    eventually("the last try answered", WAIT, || async { statuses(token).last() == Some(&200) }).await;
    assert_eq!(statuses(token), vec![503, 503, 200]);

    // it keeps failing: after five tries the message is stored with a note instead of the file
    vh.fake.fail_media(1000);
    let token = vh.fake.picture(&user, b"\xff\xd8 never".to_vec(), Some("the label"));
    let m = alice.customer_message("image").await;
    assert!(m["files"].as_array().unwrap().is_empty());
    let text = m["text"].as_str().unwrap();
    assert!(text.starts_with("the label\n[IMG_0412.jpg: could not be fetched from Viber"), "{text}");
    eventually("the last try answered", WAIT, || async { statuses(token).last() == Some(&200) }).await;
    assert_eq!(statuses(token), vec![503, 503, 503, 503, 200]);
    assert_eq!(vh.count("SELECT count(*) FROM dead_letters").await, 0);
}
