//! The OK connector end to end: the fake OK Graph API on one side (webhooks with retries, the
//! long poll, `fileUploadUrl` and its upload endpoint, sends validated as OK does), the real
//! chatserver and file server with a real WebSocket agent on the other, real PostgreSQL and
//! ZooKeeper between.

mod harness;
#[path = "harness/ok.rs"]
mod ok_hub;

use std::time::Duration;

use connectors::fake::ok::OkUser;
use harness::{Client, WAIT, eventually};
use ok_hub::{OkHub, WEBHOOK_TOKEN, spawn_ok_hub};
use serde_json::{Value, json};

fn anna() -> OkUser {
    OkUser::new(590_011_223_344, "Anna Berg")
}

async fn external_id(oh: &OkHub, message: &Value) -> String {
    sqlx::query_scalar("SELECT external_message_id FROM messages WHERE id = $1::uuid")
        .bind(message["id"].as_str().unwrap())
        .fetch_one(&oh.hub.pool)
        .await
        .unwrap()
}

/// A hub, a ready agent, a webhook connector, and Anna's first message accepted by the agent.
async fn conversation(settings: Value) -> (OkHub, Client, harness::Connector, String, OkUser, String) {
    let oh = spawn_ok_hub(settings).await;
    let mut alice = oh.hub.ready_agent("alice").await;
    let connector = oh.start_connector().await;
    oh.subscribed(connector.addr).await;
    let user = anna();
    oh.fake.text(&user, "Hello, where is order 7731?");
    let interaction = oh.hub.accept_next(&mut alice).await;
    let chat = oh.fake.chat_of(&user).unwrap();
    (oh, alice, connector, interaction, user, chat)
}

#[tokio::test]
async fn text_images_and_video_both_ways_through_the_webhook() {
    let oh = spawn_ok_hub(json!({})).await;
    let mut alice = oh.hub.ready_agent("alice").await;
    let connector = oh.start_connector().await;
    oh.subscribed(connector.addr).await;
    let subscribe = oh.fake.calls_of("subscribe").pop().unwrap();
    assert_eq!(subscribe.body, json!({"url": oh.webhook_url(connector.addr)}), "the URL carries the account's token");
    assert_eq!(subscribe.content_type.as_deref(), Some("application/json;charset=utf-8"));
    let user = anna();

    let first = oh.fake.text(&user, "Hello, where is order 7731? 👋");
    let offer = alice.event("interaction.offered").await;
    let interaction = &offer["data"]["interaction"];
    assert_eq!(interaction["channel"], "ok");
    assert_eq!(interaction["customer"]["name"], "Anna Berg");
    assert_eq!(interaction["customer"]["external_id"], "user:590011223344");
    let id = interaction["id"].as_str().unwrap().to_owned();
    let accepted = alice.call("interaction.accept", json!({"interaction_id": id})).await;
    assert_eq!(accepted["ok"], true, "{accepted}");
    let (external, text): (String, String) =
        sqlx::query_as("SELECT external_message_id, text FROM messages").fetch_one(&oh.hub.pool).await.unwrap();
    assert_eq!(
        (external.as_str(), text.as_str()),
        (first.as_str(), "Hello, where is order 7731? 👋"),
        "OK's mid is the dedupe key"
    );

    let photo = b"\xff\xd8\xff\xe0 the receipt photo".to_vec();
    oh.fake.image(&user, photo.clone(), Some("Here is the receipt"));
    let m = alice.customer_message("image").await;
    assert_eq!(m["text"], "Here is the receipt");
    let (bytes, _, mime) = oh.hub.file_of(&m, 0).await;
    assert_eq!((bytes, mime.as_str()), (photo, "image/jpeg"));

    let clip = b"\x00\x00\x00\x18ftypmp42 unboxing".to_vec();
    oh.fake.video(&user, clip.clone());
    let m = alice.customer_message("video").await;
    let (bytes, name, mime) = oh.hub.file_of(&m, 0).await;
    assert_eq!((bytes, mime.as_str()), (clip, "video/mp4"));
    assert!(name.ends_with(".mp4"), "{name}");

    // what the seed refuses on OK arrives as a line for the agent, never silently dropped
    oh.fake.attachment(
        &user,
        "STICKER",
        json!({"url": oh.fake.add_media(b"sticker".to_vec(), "png"), "code": "smile"}),
    );
    oh.fake.attachment(
        &user,
        "FILE",
        json!({"url": oh.fake.add_media(b"%PDF".to_vec(), "pdf"), "name": "contract.pdf"}),
    );
    oh.fake.attachment(&user, "LOCATION", json!({"latitude": 59.93, "longitude": 30.31}));
    for what in ["a sticker", "a file (contract.pdf)", "a location"] {
        let m =
            alice.event_where("message.new", |d| d["message"]["text"].as_str().is_some_and(|t| t.contains(what))).await;
        assert!(m["data"]["message"]["files"].as_array().unwrap().is_empty(), "{what}: nothing fetched");
        assert!(m["data"]["message"]["text"].as_str().unwrap().contains("does not carry"), "{m}");
    }

    // the agent: text (with emoji), a reply, a long text, an image, a video
    let m = alice
        .send_message(
            &id,
            "t1",
            json!({"text": "Your parcel left the warehouse. 📦", "reply_to": m_id(&oh, &first).await}),
        )
        .await;
    assert_eq!(m["status"], "sent", "{m}");
    let call = oh.fake.calls_of("messages").pop().unwrap();
    let chat = oh.fake.chat_of(&user).unwrap();
    assert_eq!(call.path, format!("me/messages/{chat}"));
    assert_eq!(call.content_type.as_deref(), Some("application/json;charset=utf-8"));
    assert_eq!(
        call.body,
        json!({"recipient": {"chat_id": chat}, "message": {"text": "Your parcel left the warehouse. 📦", "reply_to": first}})
    );
    let sent = oh.fake.sent_to(&chat).pop().unwrap();
    assert_eq!(external_id(&oh, &m).await, sent.mid, "OK's mid is the platform id");

    // the customer answers the agent's message
    oh.fake.message(&user, json!({"text": "That one", "reply_to": sent.mid}));
    let reply = alice.event_where("message.new", |d| d["message"]["text"] == "That one").await;
    assert_eq!(reply["data"]["message"]["reply_to"], m["id"], "the reply points at the agent's message");

    let words: Vec<String> = (0..1200).map(|i| format!("word{i}")).collect();
    let long = words.join(" ");
    let before = oh.fake.sent_to(&chat).len();
    assert_eq!(alice.send_message(&id, "t2", json!({"text": long})).await["status"], "sent");
    let parts = oh.fake.sent_to(&chat)[before..].to_vec();
    assert!(parts.len() >= 2 && parts.iter().all(|p| p.text.chars().count() <= 4000), "{} parts", parts.len());
    assert_eq!(parts.iter().map(|p| p.text.clone()).collect::<Vec<_>>().join(" "), long);

    let jpeg = b"\xff\xd8\xff\xe0 agent photo".to_vec();
    let file = oh.hub.upload("receipt.jpg", "image/jpeg", jpeg.clone()).await;
    let m = alice.send_message(&id, "f1", json!({"text": "Your receipt", "file_ids": [file]})).await;
    assert_eq!(m["status"], "sent", "{m}");
    let asked = oh.fake.calls_of("fileUploadUrl").pop().unwrap();
    assert_eq!(asked.param("type"), Some("IMAGE"));
    let upload = oh.fake.uploads().pop().unwrap();
    assert_eq!(
        (upload.kind.as_str(), upload.file_name.as_str(), upload.bytes.as_ref()),
        ("IMAGE", "receipt.jpg", jpeg.as_slice())
    );
    assert_eq!(upload.content_type, "image/jpeg");
    let sent = oh.fake.sent_to(&chat).pop().unwrap();
    assert_eq!(sent.text, "Your receipt", "the text rides with the image");
    assert_eq!(sent.attachments(), vec![json!({"type": "IMAGE", "payload": {"token": upload.token}})]);

    // a video: its token comes with the upload URL; OK processes it before a send may carry it
    oh.fake.set_processing(Duration::from_millis(700));
    let mp4 = b"\x00\x00\x00\x18ftypmp42 how-to".to_vec();
    let file = oh.hub.upload("how-to.mp4", "video/mp4", mp4.clone()).await;
    let m = alice.send_message(&id, "f2", json!({"file_ids": [file]})).await;
    assert_eq!(m["status"], "sent", "{m}");
    let upload = oh.fake.uploads().pop().unwrap();
    assert_eq!((upload.kind.as_str(), upload.bytes.as_ref()), ("VIDEO", mp4.as_slice()));
    assert_eq!(
        oh.fake.sent_to(&chat).pop().unwrap().attachments(),
        vec![json!({"type": "VIDEO", "payload": {"token": upload.token}})]
    );
    let not_ready = oh.fake.calls_of("messages").iter().filter(|c| c.error == Some(2)).count();
    assert!(not_ready >= 1, "the first try came while OK processed the video");
    assert_eq!(oh.fake.uploads().iter().filter(|u| u.kind == "VIDEO").count(), 1, "uploaded once");

    // every delivery was answered 200 at once: nothing redelivered
    let deliveries = oh.fake.deliveries();
    assert!(deliveries.iter().all(|d| d.status == 200 && d.retry == 0), "{deliveries:?}");
    assert!(deliveries.iter().all(|d| d.took < Duration::from_secs(2)), "{deliveries:?}");
    assert_eq!(oh.count("SELECT count(*) FROM ok_inbox").await, 0, "every delivery stored and removed");
    assert_eq!(oh.count("SELECT count(*) FROM dead_letters").await, 0);
}

/// The hub's id of the customer message with OK's `mid`.
async fn m_id(oh: &OkHub, mid: &str) -> String {
    sqlx::query_scalar("SELECT id::text FROM messages WHERE external_message_id = $1")
        .bind(mid)
        .fetch_one(&oh.hub.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn images_by_signed_link_are_fetched_by_ok() {
    let oh = spawn_ok_hub(json!({"images_by_link": true})).await;
    let mut alice = oh.hub.ready_agent("alice").await;
    let public = format!("http://{}", oh.hub.addr);
    let connector =
        oh.start_connector_with(connectors::Config { public_url: public.clone(), ..Default::default() }).await;
    oh.subscribed(connector.addr).await;
    let user = anna();
    oh.fake.text(&user, "hi");
    let interaction = oh.hub.accept_next(&mut alice).await;
    let chat = oh.fake.chat_of(&user).unwrap();

    let png = b"\x89PNG the label".to_vec();
    let file = oh.hub.upload("label.png", "image/png", png.clone()).await;
    let m = alice.send_message(&interaction, "l1", json!({"text": "The label", "file_ids": [file]})).await;
    assert_eq!(m["status"], "sent", "{m}");
    let attachment = oh.fake.sent_to(&chat).pop().unwrap().attachments().remove(0);
    let url = attachment["payload"]["url"].as_str().expect("by URL").to_owned();
    assert!(url.starts_with(&format!("{public}/api/v1/files/{file}")), "a signed link under the public URL: {url}");
    let fetched = oh.fake.fetched().pop().unwrap();
    assert_eq!((fetched.status, fetched.bytes.as_ref()), (200, png.as_slice()), "OK fetched the image by its link");
    assert!(oh.fake.calls_of("fileUploadUrl").is_empty(), "nothing uploaded");

    // a video still goes up: OK fetches no video
    let file = oh.hub.upload("clip.mp4", "video/mp4", b"ftyp clip".to_vec()).await;
    assert_eq!(alice.send_message(&interaction, "l2", json!({"file_ids": [file]})).await["status"], "sent");
    assert_eq!(oh.fake.uploads().pop().unwrap().bytes.as_ref(), b"ftyp clip");
}

#[tokio::test]
async fn keyboards_a_button_press_and_the_customer_s_phone() {
    let (oh, mut alice, _connector, interaction, user, chat) = conversation(json!({})).await;

    let m = alice.send_message(
        &interaction,
        "k1",
        json!({"text": "How did we do?", "keyboard": {"type": "inline", "rows": [[{"text": "👍", "data": "csat:5"}, {"text": "👎", "data": "csat:1"}],
            [{"text": "Track it", "data": "https://track.example.com/7731"}]]}}),
    )
    .await;
    assert_eq!(m["status"], "sent", "{m}");
    let sent = oh.fake.sent_to(&chat).pop().unwrap();
    assert_eq!(
        sent.keyboard().unwrap(),
        json!([[{"type": "CALLBACK", "text": "👍", "intent": "DEFAULT", "payload": "csat:5"},
                {"type": "CALLBACK", "text": "👎", "intent": "DEFAULT", "payload": "csat:1"}],
               [{"type": "LINK", "text": "Track it", "url": "https://track.example.com/7731"}]])
    );
    // 👍 pressed: the agent gets the data as the customer's message; OK's button is answered
    let press = oh.fake.press(&user, "csat:5", Some(&sent.mid));
    let m = alice.event_where("message.new", |d| d["message"]["text"] == "csat:5").await;
    assert_eq!(m["data"]["message"]["direction"], "in");
    eventually("the press answered", WAIT, || async { !oh.fake.answers().is_empty() }).await;
    let answer = oh.fake.answers().pop().unwrap();
    assert_eq!(
        (answer.callback_id.as_str(), answer.chat_id.as_str(), answer.accepted),
        (press.as_str(), chat.as_str(), true)
    );
    assert_eq!(answer.body, json!({"notification": "✓"}));
    // OK delivers the press again: stored once
    oh.fake.push(json!({"webhookType": "MESSAGE_CALLBACK", "sender": {"user_id": user.id, "name": user.name},
        "recipient": {"chat_id": chat}, "callbackId": press, "payload": "csat:5"}));
    eventually("the repeat delivered", WAIT, || async {
        oh.fake.deliveries_of(&press).iter().filter(|d| d.status == 200).count() == 2
    })
    .await;
    assert_eq!(oh.count("SELECT count(*) FROM messages WHERE text = 'csat:5'").await, 1);

    // a reply keyboard asking for the phone: REQUEST_CONTACT, and a reply button
    let m = alice.send_message(
        &interaction,
        "k2",
        json!({"text": "May I have your number?", "keyboard": {"type": "reply", "rows": [[{"text": "📱 Share my number", "request_phone": true}], [{"text": "No, thanks"}]]}}),
    )
    .await;
    assert_eq!(m["status"], "sent", "{m}");
    assert_eq!(
        oh.fake.sent_to(&chat).pop().unwrap().keyboard().unwrap(),
        json!([[{"type": "REQUEST_CONTACT", "text": "📱 Share my number"}],
               [{"type": "CALLBACK", "text": "No, thanks", "intent": "DEFAULT", "payload": "No, thanks"}]])
    );
    oh.fake.share_phone(&user, "+79001234567");
    let m = alice.customer_message("contact").await;
    assert_eq!(m["contact"], json!({"phone": "+79001234567", "name": "Anna Berg"}));
    eventually("the customer's phone stored", WAIT, || async {
        oh.count("SELECT count(*) FROM customers WHERE phone = '+79001234567'").await == 1
    })
    .await;
    // a reply button's press comes back as the customer's text
    oh.fake.press(&user, "No, thanks", None);
    alice.event_where("message.new", |d| d["message"]["text"] == "No, thanks").await;

    // a removal: OK's buttons belong to their message, so nothing is attached
    alice.send_message(&interaction, "k3", json!({"text": "Thanks!", "keyboard": {"type": "remove"}})).await;
    assert!(oh.fake.sent_to(&chat).pop().unwrap().attachments().is_empty());
}

#[tokio::test]
async fn every_kind_ok_cannot_carry_is_refused_before_it_is_queued() {
    let (oh, mut alice, _connector, interaction, _user, _chat) = conversation(json!({})).await;
    let first_in: String = sqlx::query_scalar("SELECT id::text FROM messages WHERE direction = 'in' LIMIT 1")
        .fetch_one(&oh.hub.pool)
        .await
        .unwrap();
    let own = alice.send_message(&interaction, "own", json!({"text": "mine"})).await;
    let outbox = oh.count("SELECT count(*) FROM outbox").await;
    let sends = oh.fake.calls_of("messages").len();
    let file = |name: &'static str, mime: &'static str| {
        let hub = &oh.hub;
        async move { hub.upload(name, mime, b"bytes".to_vec()).await }
    };
    let cases = [
        ("stickers", json!({"sticker": {"sticker_id": "smile"}}), "sending stickers"),
        ("document", json!({"file_ids": [file("a.pdf", "application/pdf").await]}), "sending documents"),
        ("audio", json!({"file_ids": [file("a.mp3", "audio/mpeg").await]}), "sending audio"),
        ("voice", json!({"file_ids": [file("a.ogg", "audio/ogg").await]}), "sending voice messages"),
        ("contact", json!({"contact": {"phone": "+70000000000", "name": "Desk"}}), "sending contacts"),
        ("location", json!({"location": {"lat": 55.75, "lon": 37.61}}), "sending locations"),
        ("forward", json!({"forward": {"message_id": first_in}}), "forwarding messages"),
    ];
    for (n, (what, mut args, feature)) in cases.into_iter().enumerate() {
        args["interaction_id"] = json!(interaction);
        args["client_msg_id"] = json!(format!("no-{n}"));
        let reply = alice.call("message.send", args).await;
        assert_eq!(reply["error"]["code"], "unsupported_by_channel", "{what}: {reply}");
        assert_eq!(reply["error"]["message"], format!("ok does not support {feature}"), "{what}");
    }
    for (cmd, args) in [
        ("message.edit", json!({"message_id": own["id"], "text": "edited"})),
        ("message.delete", json!({"message_id": own["id"]})),
    ] {
        let reply = alice.call(cmd, args).await;
        assert_eq!(reply["error"]["code"], "unsupported_by_channel", "{cmd}: {reply}");
        assert_eq!(reply["error"]["message"], "ok does not support editing and deleting the agent's messages");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(oh.count("SELECT count(*) FROM outbox").await, outbox, "nothing queued");
    assert_eq!(oh.fake.calls_of("messages").len(), sends, "nothing reached OK");
}

#[tokio::test]
async fn a_wrong_token_or_a_disallowed_address_is_refused_with_nothing_stored() {
    let oh = spawn_ok_hub(json!({"allowed_sources": ["ok"], "trusted_proxies": ["127.0.0.1/32"]})).await;
    let connector = oh.start_connector().await;
    oh.subscribed(connector.addr).await;
    let user = anna();
    let body = |mid: &str| {
        serde_json::to_vec(&json!({"webhookType": "MESSAGE_CREATED", "sender": {"user_id": user.id, "name": user.name},
            "recipient": {"chat_id": "chat:C1"}, "message": {"mid": mid, "text": "is this OK?"}, "timestamp": 1767312000123i64}))
        .unwrap()
    };
    let route = oh.route(connector.addr);
    let right = oh.webhook_url(connector.addr);
    oh.fake.set_forwarded_for(Some("217.20.145.200"));
    let wrong = format!("{route}?token={}", WEBHOOK_TOKEN.replace('4', "5"));
    for (url, why) in
        [(route.clone(), "no token"), (wrong, "a wrong token"), (format!("{route}?token="), "an empty token")]
    {
        let d = oh.fake.post_webhook("m", &url, body("mid:C1.1"), 0).await;
        assert_eq!(d.status, 401, "{why}");
    }
    // from OK's range, but through a proxy the account does not trust... (127.0.0.1 is trusted
    // here, so these are what the trusted proxy says)
    for (forwarded, why) in [
        (None, "a trusted proxy that does not say whom it forwards"),
        (Some("203.0.113.7"), "an address outside OK's ranges"),
        (Some("217.20.145.200, 203.0.113.7"), "OK's address forged on the left"),
        (Some("217.20.145.208"), "just outside a /28"),
    ] {
        oh.fake.set_forwarded_for(forwarded);
        assert_eq!(oh.fake.post_webhook("m", &right, body("mid:C1.1"), 0).await.status, 401, "{why}");
    }
    assert_eq!(oh.count("SELECT count(*) FROM messages").await, 0, "nothing stored");
    assert_eq!(oh.count("SELECT count(*) FROM customers").await, 0, "nothing stored");
    assert_eq!(oh.count("SELECT count(*) FROM ok_inbox").await, 0, "nothing kept");
    assert_eq!(oh.count("SELECT count(*) FROM dead_letters").await, 0, "nothing parked");

    // the right token from OK's range: stored
    oh.fake.set_forwarded_for(Some("217.20.151.161"));
    assert_eq!(oh.fake.post_webhook("m", &right, body("mid:C1.1"), 0).await.status, 200);
    eventually("stored", WAIT, || async { oh.count("SELECT count(*) FROM messages").await == 1 }).await;
    // OK delivers it again: stored once
    assert_eq!(oh.fake.post_webhook("m", &right, body("mid:C1.1"), 0).await.status, 200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(oh.count("SELECT count(*) FROM messages").await, 1);
    assert_eq!(oh.count("SELECT count(*) FROM ok_inbox").await, 0);
}

#[tokio::test]
async fn nul_bytes_and_unreadable_updates_are_parked_between_ordinary_ones() {
    let (oh, mut alice, _connector, interaction, user, chat) = conversation(json!({})).await;
    let nul = oh.fake.text(&user, "bad\u{0}byte");
    oh.fake.push_raw("{not json at all".to_owned());
    let odd = format!(
        r#"{{"webhookType":"MESSAGE_CREATED","sender":{{"user_id":"{}"}},"recipient":{{"chat_id":"{chat}"}},"message":{{"mid":"mid:odd.1","attachments":"not a list"}}}}"#,
        user.id
    );
    oh.fake.push_raw(odd.clone());
    oh.fake.text(&user, "second ordinary");

    let m = alice.event_where("message.new", |d| d["message"]["text"] == "second ordinary").await;
    assert_eq!(m["data"]["message"]["interaction_id"], interaction.as_str());
    alice.event_where("message.new", |d| d["message"]["text"] == "bad\u{FFFD}byte").await;
    let stored: String = sqlx::query_scalar("SELECT text FROM messages WHERE external_message_id = $1")
        .bind(&nul)
        .fetch_one(&oh.hub.pool)
        .await
        .unwrap();
    assert_eq!(stored, "bad\u{FFFD}byte");
    eventually("both parked", WAIT, || async { oh.count("SELECT count(*) FROM dead_letters").await == 2 }).await;
    let mut letters: Vec<(String, Vec<u8>, String)> =
        sqlx::query_as("SELECT update_key, payload, error FROM dead_letters").fetch_all(&oh.hub.pool).await.unwrap();
    // (parked concurrently: neither names a customer to keep them in order)
    letters.sort_by_key(|l| !l.0.starts_with("unreadable-"));
    assert!(letters[0].0.starts_with("unreadable-") && letters[0].1 == b"{not json at all", "{:?}", letters[0]);
    assert_eq!(
        (letters[1].0.as_str(), letters[1].1.as_slice()),
        ("mid:odd.1", odd.as_bytes()),
        "the exact payload is kept"
    );
    assert!(letters[1].2.contains("this build can read"), "{}", letters[1].2);
    // every delivery answered 200 once: nothing blocked, nothing redelivered
    assert!(oh.fake.deliveries().iter().all(|d| d.status == 200 && d.retry == 0));
    assert_eq!(oh.count("SELECT count(*) FROM ok_inbox").await, 0);
    assert_eq!(oh.count("SELECT count(*) FROM messages WHERE direction = 'in'").await, 3);
}

#[tokio::test]
async fn a_slow_media_download_is_stored_after_ok_s_5_seconds_without_a_redelivery() {
    let (oh, mut alice, _connector, _interaction, user, _chat) = conversation(json!({})).await;
    oh.fake.set_media_latency(Duration::from_secs(6));
    let photo = b"\xff\xd8 slow photo".to_vec();
    let mid = oh.fake.image(&user, photo.clone(), None);
    eventually("delivered", WAIT, || async { !oh.fake.deliveries_of(&mid).is_empty() }).await;
    let delivery = oh.fake.deliveries_of(&mid).remove(0);
    assert_eq!(delivery.status, 200);
    assert!(delivery.took < Duration::from_secs(1), "answered at once: {:?}", delivery.took);
    let m = alice.customer_message("image").await;
    assert_eq!(oh.hub.file_of(&m, 0).await.0, photo);
    assert_eq!(oh.fake.deliveries_of(&mid).len(), 1, "OK did not deliver it again");
}

#[tokio::test]
async fn the_subscription_is_renewed_when_ok_drops_it_and_an_earlier_token_s_url_is_unsubscribed() {
    let oh = spawn_ok_hub(json!({"subscription_check_s": 5})).await;
    let connector = oh.start_connector().await;
    oh.subscribed(connector.addr).await;
    // an earlier token's URL of this account, and someone else's
    let old = format!("{}?token=an-earlier-token", oh.route(connector.addr));
    let foreign = format!("http://{}/api/v1/connectors/{}/ok?token=x", connector.addr, uuid::Uuid::new_v4());
    for url in [&old, &foreign] {
        let body = serde_json::to_vec(&json!({"url": url})).unwrap();
        let r = reqwest::Client::new()
            .post(format!("{}graph/me/subscribe?access_token={}", oh.fake.api_url(), ok_hub::TOKEN))
            .header("content-type", "application/json;charset=utf-8")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    eventually("the old URL unsubscribed", Duration::from_secs(12), || async { !oh.fake.webhooks().contains(&old) })
        .await;
    assert!(oh.fake.webhooks().contains(&foreign), "another URL is left alone");

    oh.fake.drop_subscriptions();
    let subscribes = oh.fake.calls_of("subscribe").len();
    eventually("subscribed again", Duration::from_secs(12), || async {
        oh.fake.webhooks().contains(&oh.webhook_url(connector.addr))
    })
    .await;
    assert!(oh.fake.calls_of("subscribe").len() > subscribes);
    let user = anna();
    oh.fake.text(&user, "after the renewal");
    eventually("stored", WAIT, || async { oh.count("SELECT count(*) FROM messages").await == 1 }).await;
}

#[tokio::test]
async fn errors_wait_retry_or_fail_and_an_expired_token_makes_the_account_unhealthy() {
    let (oh, mut alice, connector, interaction, user, chat) = conversation(json!({})).await;

    // flood: a wait, never a failure
    oh.fake.fail_next("messages", 8, "FLOOD_BLOCKED : Flood blocked");
    let m = alice.send_message(&interaction, "e1", json!({"text": "after the flood"})).await;
    assert_eq!(m["status"], "sent", "{m}");
    let calls = oh.fake.calls_of("messages");
    let flood = calls.iter().find(|c| c.error == Some(8)).unwrap();
    let after = calls.iter().find(|c| c.at > flood.at).unwrap();
    assert!(after.at - flood.at >= Duration::from_secs(5), "waited {:?}", after.at - flood.at);

    // an expired token: the message waits, the account is reported, then it goes
    for _ in 0..2 {
        oh.fake.fail_next("messages", 102, "PARAM_SESSION_EXPIRED : Session expired");
    }
    let sent = alice
        .call("message.send", json!({"interaction_id": interaction, "client_msg_id": "e2", "text": "after the fix"}))
        .await;
    assert_eq!(sent["ok"], true);
    eventually("the account reported", WAIT, || async {
        connector.runtime.problems().iter().any(|(id, why)| *id == oh.account_id && why.contains("access_token"))
    })
    .await;
    eventually("sent once the token works", Duration::from_secs(30), || async {
        oh.fake.sent_to(&chat).iter().any(|s| s.text == "after the fix")
    })
    .await;
    eventually("healthy again", WAIT, || async { connector.runtime.problems().is_empty() }).await;

    // the customer no longer allows the group's messages: failed with the reason, tried once
    oh.fake.set_allowed(&user, false);
    let m = alice.send_message(&interaction, "e3", json!({"text": "Hello?"})).await;
    assert_eq!(m["status"], "failed");
    assert_eq!(
        m["error"],
        "OK does not let the group write to this customer: they have not allowed messages from the group (OK error 10: PERMISSION_DENIED : User does not allow messages from the group)"
    );
    assert_eq!(oh.fake.calls_of("messages").iter().filter(|c| c.error == Some(10)).count(), 1, "not retried");
    assert_eq!(oh.count("SELECT count(*) FROM messages WHERE direction = 'out' AND status = 'failed'").await, 1);
}

#[tokio::test]
async fn a_customer_who_opened_the_chat_can_be_written_to_first() {
    let oh = spawn_ok_hub(json!({})).await;
    let mut alice = oh.hub.ready_agent("alice").await;
    let connector = oh.start_connector().await;
    oh.subscribed(connector.addr).await;
    let bo = OkUser::new(577_000_111_222, "Bo Lind");
    oh.fake.chat_started(&bo);
    eventually("Bo recorded", WAIT, || async {
        oh.count("SELECT count(*) FROM customers WHERE name = 'Bo Lind'").await == 1
    })
    .await;
    assert_eq!(oh.count("SELECT count(*) FROM interactions").await, 0, "nothing opened");
    let started = alice
        .call(
            "interaction.start",
            json!({"account_id": oh.account_id, "customer": {"external_id": bo.id}, "message": "Your order shipped."}),
        )
        .await;
    assert_eq!(started["ok"], true, "{started}");
    eventually("the message at OK", WAIT, || async { !oh.fake.sent().is_empty() }).await;
    let sent = oh.fake.sent().pop().unwrap();
    assert_eq!(sent.text, "Your order shipped.");
    assert_eq!(sent.body["recipient"], json!({"user_ids": [bo.id]}), "to the user, by id");
    assert_eq!(Some(sent.chat_id), oh.fake.chat_of(&bo));
}

#[tokio::test]
async fn long_poll_mode_stores_everything_once_and_continues_from_the_stored_marker() {
    let oh = spawn_ok_hub(json!({"mode": "long_poll"})).await;
    let mut alice = oh.hub.ready_agent("alice").await;
    let connector = oh.start_connector().await;
    oh.polling().await;
    let subscribe = oh.fake.calls_of("subscribe").pop().unwrap();
    assert_eq!(
        subscribe.body,
        json!({"types": ["MESSAGE_CREATED", "MESSAGE_CALLBACK", "CHAT_SYSTEM"], "longPolling": true})
    );
    assert!(oh.fake.webhooks().is_empty(), "no webhook");
    let user = anna();
    oh.fake.text(&user, "by long poll");
    let interaction = oh.hub.accept_next(&mut alice).await;
    let photo = b"\xff\xd8 polled photo".to_vec();
    oh.fake.image(&user, photo.clone(), None);
    let m = alice.customer_message("image").await;
    assert_eq!(oh.hub.file_of(&m, 0).await.0, photo);
    let nul = oh.fake.text(&user, "bad\u{0}byte");
    oh.fake.push_raw(
        r#"{"webhookType":"MESSAGE_CREATED","sender":{"user_id":"user:1"},"message":{"mid":"mid:x"}}"#.to_owned(),
    );
    oh.fake.text(&user, "after the bad ones");
    alice.event_where("message.new", |d| d["message"]["text"] == "after the bad ones").await;
    assert_eq!(alice.send_message(&interaction, "p1", json!({"text": "answered"})).await["status"], "sent");
    eventually("the marker past everything", WAIT, || async {
        oh.stored_marker().await == Some(oh.fake.marker().to_string())
    })
    .await;
    assert_eq!(oh.count("SELECT count(*) FROM dead_letters").await, 1);
    let stored: String = sqlx::query_scalar("SELECT text FROM messages WHERE external_message_id = $1")
        .bind(&nul)
        .fetch_one(&oh.hub.pool)
        .await
        .unwrap();
    assert_eq!(stored, "bad\u{FFFD}byte");

    // stopped; customers write meanwhile; a new connector continues from the stored marker
    connector.stop().await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    for i in 0..4 {
        oh.fake.text(&user, &format!("while nobody polled {i}"));
    }
    let _restarted = oh.start_connector().await;
    eventually("what came while nobody polled", WAIT, || async {
        oh.count("SELECT count(*) FROM messages WHERE direction = 'in'").await == 8
    })
    .await;
    let handed: Vec<u32> = oh.fake.handed_out().values().copied().collect();
    assert!(handed.iter().all(|n| *n == 1), "nothing read twice: {handed:?}");
}

#[tokio::test]
async fn a_delivery_ok_gave_up_waiting_for_and_sent_again_is_stored_once() {
    let (oh, mut alice, _connector, _interaction, user, _chat) = conversation(json!({})).await;
    // OK waits 1 ms for the hub this time: every try counts as unanswered and comes again
    oh.fake.set_webhook_retries(3, Duration::from_millis(50), Duration::from_millis(1));
    let mid = oh.fake.text(&user, "are you there?");
    // OK is done trying after three tries, or at a try the hub answered within the millisecond
    // (how many it answered in time is timing, not behaviour, so it is not asserted)
    eventually("OK done trying", WAIT, || async {
        let tries = oh.fake.deliveries_of(&mid);
        tries.len() == 3 || tries.iter().any(|d| d.status == 200)
    })
    .await;
    alice.event_where("message.new", |d| d["message"]["text"] == "are you there?").await;
    // and OK's patience back: a try answered 200
    oh.fake.set_webhook_retries(3, Duration::from_millis(50), Duration::from_secs(5));
    let again = serde_json::to_vec(
        &json!({"webhookType": "MESSAGE_CREATED", "sender": {"user_id": user.id, "name": user.name},
        "recipient": {"chat_id": oh.fake.chat_of(&user).unwrap()}, "message": {"mid": mid, "text": "are you there?"}}),
    )
    .unwrap();
    let url = oh.fake.webhooks().pop().unwrap();
    assert_eq!(oh.fake.deliver(&mid, &url, again).await.status, 200);
    eventually("the inbox drained", WAIT, || async { oh.count("SELECT count(*) FROM ok_inbox").await == 0 }).await;
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM messages WHERE external_message_id = $1")
        .bind(&mid)
        .fetch_one(&oh.hub.pool)
        .await
        .unwrap();
    assert_eq!(stored, 1, "every copy OK sent is absorbed by the unique key on mid");
}
