//! The VK connector end to end: the fake VK API on one side (the Bots Long Poll and the Callback
//! API, `messages.send` deduplicating on `random_id` as VK does, upload servers), the real
//! chatserver and file server with a real WebSocket agent on the other, real PostgreSQL and
//! ZooKeeper between.

mod harness;
#[path = "harness/vk.rs"]
mod vk_hub;

use std::collections::HashMap;
use std::time::Duration;

use connectors::fake::vk::{Secret, VkUser};
use connectors::vk::mapping::random_id;
use harness::{Client, WAIT, eventually};
use serde_json::{Value, json};
use vk_hub::{CALLBACK_SECRET, GROUP, VkHub, spawn_vk_hub};

fn anna() -> VkUser {
    VkUser::new(7_700_123, "Anna", "Berg")
}

async fn external_id(vh: &VkHub, message: &Value) -> i64 {
    let external: String = sqlx::query_scalar("SELECT external_message_id FROM messages WHERE id = $1::uuid")
        .bind(message["id"].as_str().unwrap())
        .fetch_one(&vh.hub.pool)
        .await
        .unwrap();
    external.parse().unwrap()
}

/// A hub, a ready agent, a long-polling connector, and Anna's first message accepted by the agent.
async fn conversation(settings: Value) -> (VkHub, Client, harness::Connector, String, VkUser) {
    let vh = spawn_vk_hub(settings).await;
    let mut alice = vh.hub.ready_agent("alice").await;
    let connector = vh.start_connector().await;
    vh.polling().await;
    let user = anna();
    vh.fake.text(&user, "Hello, where is order 7731?");
    let interaction = vh.hub.accept_next(&mut alice).await;
    (vh, alice, connector, interaction, user)
}

#[tokio::test]
async fn every_kind_of_customer_message_reaches_the_agent_with_its_file() {
    let vh = spawn_vk_hub(json!({})).await;
    let mut alice = vh.hub.ready_agent("alice").await;
    let _connector = vh.start_connector().await;
    vh.polling().await;
    let settings = vh.fake.long_poll_settings();
    for event in ["message_new", "message_reply", "message_edit", "message_allow", "message_deny", "message_event"] {
        assert_eq!(settings.get(event).map(String::as_str), Some("1"), "{event} asked for");
    }
    assert_eq!(settings.get("api_version").map(String::as_str), Some("5.199"));
    let mut user = anna();
    let avatar = b"\xff\xd8\xff anna's photo_200".to_vec();
    user.photo_200 = Some(vh.fake.add_media(avatar.clone(), "jpg"));

    let first = vh.fake.text(&user, "Hello, where is order 7731? 👋");
    let offer = alice.event("interaction.offered").await;
    let interaction = &offer["data"]["interaction"];
    assert_eq!(interaction["channel"], "vk");
    assert_eq!(interaction["customer"]["name"], "Anna Berg", "named by users.get");
    assert_eq!(interaction["customer"]["external_id"], "7700123");
    let avatar_url = interaction["customer"]["avatar_url"].as_str().expect("the customer's photo was copied");
    assert_eq!(vh.hub.download(avatar_url).await.1, avatar, "the avatar is the hub's copy of VK's photo_200");
    let get = vh.fake.calls_of("users.get").pop().unwrap();
    assert_eq!((get.param("user_ids"), get.param("fields")), (Some("7700123"), Some("photo_200")));
    let id = interaction["id"].as_str().unwrap().to_owned();
    let accepted = alice.call("interaction.accept", json!({"interaction_id": id})).await;
    assert_eq!(accepted["ok"], true, "{accepted}");
    let external: String =
        sqlx::query_scalar("SELECT external_message_id FROM messages").fetch_one(&vh.hub.pool).await.unwrap();
    assert_eq!(external, first.to_string(), "VK's message id is the dedupe key");

    let photo = b"\xff\xd8\xff\xe0 the receipt photo, the largest size".to_vec();
    vh.fake.photo(&user, photo.clone(), Some("Here is the receipt"));
    let m = alice.customer_message("image").await;
    assert_eq!(m["text"], "Here is the receipt");
    let (bytes, _, mime) = vh.hub.file_of(&m, 0).await;
    assert_eq!((bytes, mime.as_str()), (photo, "image/jpeg"), "the largest of the sizes");

    let pdf = b"%PDF-1.4 the contract".to_vec();
    vh.fake.document(&user, "contract.pdf", pdf.clone());
    let m = alice.customer_message("document").await;
    let (bytes, name, mime) = vh.hub.file_of(&m, 0).await;
    assert_eq!((bytes, name.as_str(), mime.as_str()), (pdf, "contract.pdf", "application/pdf"));

    let ogg = b"OggS voice of anna".to_vec();
    vh.fake.voice(&user, ogg.clone());
    let m = alice.customer_message("voice").await;
    let (bytes, _, mime) = vh.hub.file_of(&m, 0).await;
    assert_eq!((bytes, mime.as_str()), (ogg, "audio/ogg"));

    vh.fake.sticker(&user, 9014);
    let m = alice.customer_message("sticker").await;
    assert_eq!(m["sticker_id"], "9014");
    let (bytes, _, mime) = vh.hub.file_of(&m, 0).await;
    assert_eq!((bytes.as_slice(), mime.as_str()), (b"sticker 9014 512".as_slice(), "image/png"));

    let clip = b"\x00\x00\x00\x18ftypmp42 unboxing".to_vec();
    vh.fake.video(&user, "unboxing", clip.clone());
    let m = alice.customer_message("video").await;
    let (bytes, name, mime) = vh.hub.file_of(&m, 0).await;
    assert_eq!((bytes, name.as_str(), mime.as_str()), (clip, "unboxing.mp4", "video/mp4"));

    vh.fake.location(&user, 59.9386, 30.3141, Some("Nevsky prospekt 28"));
    let m = alice.customer_message("location").await;
    assert_eq!(m["location"], json!({"lat": 59.9386, "lon": 30.3141, "address": "Nevsky prospekt 28"}));

    let ivan = VkUser::new(5_550_001, "Ivan", "Petrov");
    vh.fake.forward(&user, &ivan, "The parcel is at the post office");
    let m = alice.event_where("message.new", |d| d["message"]["forwarded"].is_object()).await;
    let m = &m["data"]["message"];
    assert_eq!(m["text"], "The parcel is at the post office");
    assert_eq!(m["forwarded"]["from_name"], "Ivan Petrov");

    // the agent's message, then the customer's reply to it
    let sent = alice.send_message(&id, "r1", json!({"text": "Which parcel?"})).await;
    let vk_id = external_id(&vh, &sent).await;
    vh.fake.reply(&user, "That one", vk_id);
    let m = alice.event_where("message.new", |d| d["message"]["text"] == "That one").await;
    assert_eq!(m["data"]["message"]["reply_to"], sent["id"], "the reply points at the agent's message");

    // the community's own message came back as message_reply: not stored twice; typing ignored
    vh.fake.typing(&user);
    eventually("every update handled and the position stored", WAIT, || async {
        vh.stored_ts().await == Some(vh.fake.ts().to_string())
    })
    .await;
    assert_eq!(vh.fake.handed_out().len(), 11);
    assert_eq!(vh.count("SELECT count(*) FROM messages WHERE direction = 'out'").await, 1);
    assert_eq!(vh.count("SELECT count(*) FROM messages WHERE direction = 'in'").await, 9);

    // the customer edits a message: the agent sees the new text, the original is kept
    vh.fake.edit(&user, first, "Hello, where is order 7732?");
    let edited = alice.event("message.edited").await;
    assert_eq!(edited["data"]["previous_text"], "Hello, where is order 7731? 👋");
    assert_eq!(edited["data"]["message"]["text"], "Hello, where is order 7732?");

    assert_eq!(vh.count("SELECT count(*) FROM dead_letters").await, 0);
}

#[tokio::test]
async fn agent_replies_reach_vk_by_kind_uploaded_through_its_servers() {
    let (vh, mut alice, _connector, interaction, user) = conversation(json!({})).await;
    let peer = user.id;

    let m = alice.send_message(&interaction, "t1", json!({"text": "Your parcel left the warehouse. 📦"})).await;
    assert_eq!(m["status"], "sent", "{m}");
    let call = vh.fake.calls_of("messages.send").pop().unwrap();
    assert_eq!(call.param("peer_id"), Some("7700123"));
    assert_eq!(call.param("message"), Some("Your parcel left the warehouse. 📦"));
    assert_eq!(call.param("v"), Some("5.199"));
    let row: i64 =
        sqlx::query_scalar("SELECT id FROM outbox ORDER BY id DESC LIMIT 1").fetch_one(&vh.hub.pool).await.unwrap();
    assert_eq!(
        call.param("random_id"),
        Some(random_id(&format!("{row}:0")).to_string().as_str()),
        "from the outbox row"
    );
    let sent = vh.fake.sent_to(peer).pop().unwrap();
    assert_eq!(external_id(&vh, &m).await, sent.id, "VK's message id is the platform id");

    // over 4000 characters: several messages, cut between words, each its own random_id
    let words: Vec<String> = (0..1200).map(|i| format!("word{i}")).collect();
    let long = words.join(" ");
    let before = vh.fake.sent_to(peer).len();
    let m = alice.send_message(&interaction, "t2", json!({"text": long})).await;
    assert_eq!(m["status"], "sent");
    let parts = vh.fake.sent_to(peer)[before..].to_vec();
    assert!(parts.len() >= 2, "{} parts", parts.len());
    assert!(parts.iter().all(|p| p.text.chars().count() <= 4000));
    assert_eq!(parts.iter().map(|p| p.text.clone()).collect::<Vec<_>>().join(" "), long);
    let ids: std::collections::HashSet<i64> = parts.iter().map(|p| p.random_id).collect();
    assert_eq!(ids.len(), parts.len(), "every part has its own random_id");

    // a photo: photos.getMessagesUploadServer -> upload -> photos.saveMessagesPhoto -> attachment
    let photo = b"\xff\xd8\xff\xe0 agent photo".to_vec();
    let file = vh.hub.upload("receipt.jpg", "image/jpeg", photo.clone()).await;
    let m = alice.send_message(&interaction, "f1", json!({"text": "Your receipt", "file_ids": [file]})).await;
    assert_eq!(m["status"], "sent", "{m}");
    let upload = vh.fake.uploads().pop().unwrap();
    assert_eq!((upload.kind.as_str(), upload.field.as_str()), ("photo", "photo"));
    assert_eq!((upload.file_name.as_str(), upload.bytes.as_ref()), ("receipt.jpg", photo.as_slice()));
    let sent = vh.fake.sent_to(peer).pop().unwrap();
    assert_eq!(sent.text, "Your receipt", "the text rides with the photo");
    assert!(sent.param("attachment").unwrap().starts_with(upload.saved_as.as_deref().unwrap()), "{sent:?}");
    assert_eq!(vh.fake.calls_of("photos.getMessagesUploadServer").pop().unwrap().param("peer_id"), Some("7700123"));

    // a document, a video (as a document: a community token cannot upload videos), a voice message
    for (n, (name, mime, kind)) in [
        ("invoice.pdf", "application/pdf", "doc"),
        ("how-to.mp4", "video/mp4", "doc"),
        ("answer.ogg", "audio/ogg", "audio_message"),
    ]
    .into_iter()
    .enumerate()
    {
        let bytes = format!("the bytes of {name}").into_bytes();
        let file = vh.hub.upload(name, mime, bytes.clone()).await;
        let m = alice.send_message(&interaction, &format!("d{n}"), json!({"file_ids": [file]})).await;
        assert_eq!(m["status"], "sent", "{name}: {m}");
        let upload = vh.fake.uploads().pop().unwrap();
        assert_eq!((upload.kind.as_str(), upload.field.as_str()), (kind, "file"), "{name}");
        assert_eq!(upload.bytes.as_ref(), bytes.as_slice(), "{name}: streamed from the file server");
        assert_eq!(upload.content_type, mime);
        let save = vh.fake.calls_of("docs.save").pop().unwrap();
        assert_eq!(save.param("title"), Some(name));
        assert_eq!(
            vh.fake.sent_to(peer).pop().unwrap().param("attachment"),
            upload.saved_as.as_deref(),
            "{name}: attached as saved"
        );
    }

    // a sticker by VK's id; a PNG sent as a sticker goes as a graffiti
    alice.send_message(&interaction, "s1", json!({"sticker": {"sticker_id": "9014"}})).await;
    assert_eq!(vh.fake.sent_to(peer).pop().unwrap().param("sticker_id"), Some("9014"));
    let png = b"\x89PNG sticker".to_vec();
    let file = vh.hub.upload("sticker.png", "image/png", png.clone()).await;
    let m = alice.send_message(&interaction, "s2", json!({"sticker": {"file_id": file}})).await;
    assert_eq!(m["status"], "sent", "{m}");
    assert_eq!(vh.fake.uploads().pop().unwrap().kind, "graffiti");

    // a location; a forward of the customer's first message; a reply to it
    alice
        .send_message(&interaction, "l1", json!({"location": {"lat": 59.9386, "lon": 30.3141, "address": "Our shop"}}))
        .await;
    let sent = vh.fake.sent_to(peer).pop().unwrap();
    assert_eq!(
        (sent.param("lat"), sent.param("long"), sent.text.as_str()),
        (Some("59.9386"), Some("30.3141"), "Our shop")
    );
    let first_in: String =
        sqlx::query_scalar("SELECT id::text FROM messages WHERE direction = 'in' ORDER BY created_at LIMIT 1")
            .fetch_one(&vh.hub.pool)
            .await
            .unwrap();
    let first_vk: String = sqlx::query_scalar(
        "SELECT external_message_id FROM messages WHERE direction = 'in' ORDER BY created_at LIMIT 1",
    )
    .fetch_one(&vh.hub.pool)
    .await
    .unwrap();
    let m = alice.send_message(&interaction, "w1", json!({"forward": {"message_id": first_in}})).await;
    assert_eq!(m["status"], "sent", "{m}");
    assert_eq!(vh.fake.sent_to(peer).pop().unwrap().param("forward_messages"), Some(first_vk.as_str()));
    alice.send_message(&interaction, "w2", json!({"text": "About this one", "reply_to": first_in})).await;
    assert_eq!(vh.fake.sent_to(peer).pop().unwrap().param("reply_to"), Some(first_vk.as_str()));

    // VK cannot send contacts: refused before anything is queued
    let refused = alice
        .call(
            "message.send",
            json!({"interaction_id": interaction, "client_msg_id": "c1", "contact": {"phone": "+7", "name": "Shop"}}),
        )
        .await;
    assert_eq!(refused["error"]["code"], "unsupported_by_channel", "{refused}");

    // every send was echoed as message_reply; none of them was stored as a customer message
    eventually("the echoes handed out", WAIT, || async { vh.fake.handed_out().values().all(|n| *n >= 1) }).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(vh.count("SELECT count(*) FROM messages WHERE direction = 'in'").await, 1);
    assert!(vh.fake.deduplicated().is_empty(), "nothing was sent twice");
    assert_eq!(vh.count("SELECT count(*) FROM outbox WHERE state <> 'done'").await, 0);
}

#[tokio::test]
async fn keyboards_one_time_and_inline_and_a_callback_button_press() {
    let (vh, mut alice, _connector, interaction, user) = conversation(json!({})).await;
    let peer = user.id;

    let m = alice.send_message(
        &interaction,
        "k1",
        json!({"text": "Refund or resend?", "keyboard": {"type": "reply", "rows": [[{"text": "Refund"}, {"text": "Resend"}]]}}),
    )
    .await;
    assert_eq!(m["status"], "sent", "{m}");
    let k = vh.fake.sent_to(peer).pop().unwrap().keyboard().unwrap();
    assert_eq!(
        k,
        json!({"one_time": true, "buttons": [[{"action": {"type": "text", "label": "Refund"}}, {"action": {"type": "text", "label": "Resend"}}]]})
    );
    // a text button sends its label
    vh.fake.message_new(&user, json!({"text": "Refund", "payload": "{\"button\":\"1\"}"}));
    alice.event_where("message.new", |d| d["message"]["text"] == "Refund").await;

    alice.send_message(
        &interaction,
        "k2",
        json!({"text": "How did we do?", "keyboard": {"type": "inline", "rows": [[{"text": "👍", "data": "csat:5"}, {"text": "👎", "data": "csat:1"}],
            [{"text": "Track it", "data": "https://track.example.com/7731"}]]}}),
    )
    .await;
    let k = vh.fake.sent_to(peer).pop().unwrap().keyboard().unwrap();
    assert_eq!(k["inline"], true);
    assert_eq!(
        k["buttons"][0][0],
        json!({"action": {"type": "callback", "label": "👍", "payload": "{\"data\":\"csat:5\"}"}})
    );
    assert_eq!(
        k["buttons"][1][0],
        json!({"action": {"type": "open_link", "label": "Track it", "link": "https://track.example.com/7731"}})
    );
    // the customer presses 👍: the agent gets the data as a message; VK's button is answered
    let press = vh.fake.press(&user, json!({"data": "csat:5"}));
    let m = alice.event_where("message.new", |d| d["message"]["text"] == "csat:5").await;
    assert_eq!(m["data"]["message"]["direction"], "in");
    eventually("the press answered", WAIT, || async { !vh.fake.event_answers().is_empty() }).await;
    let answer = vh.fake.event_answers().pop().unwrap();
    assert_eq!((answer.event_id.as_str(), answer.user_id, answer.accepted), (press.as_str(), peer, true));

    // the keyboard goes away
    alice.send_message(&interaction, "k3", json!({"text": "Thanks!", "keyboard": {"type": "remove"}})).await;
    assert_eq!(vh.fake.sent_to(peer).pop().unwrap().keyboard().unwrap(), json!({"one_time": true, "buttons": []}));
}

#[tokio::test]
async fn edit_and_delete_of_the_agents_messages_reach_vk() {
    let (vh, mut alice, _connector, interaction, user) = conversation(json!({})).await;
    let peer = user.id;
    let m = alice.send_message(&interaction, "e1", json!({"text": "Your order ships on Monday."})).await;
    let vk_id = external_id(&vh, &m).await;

    let edited =
        alice.call("message.edit", json!({"message_id": m["id"], "text": "Your order ships on Tuesday."})).await;
    assert_eq!(edited["ok"], true, "{edited}");
    eventually("the edit at VK", WAIT, || async {
        vh.fake.message(vk_id).is_some_and(|s| s.text == "Your order ships on Tuesday.")
    })
    .await;
    let call = vh.fake.calls_of("messages.edit").pop().unwrap();
    assert_eq!((call.param("peer_id"), call.param("message_id")), (Some("7700123"), Some(vk_id.to_string().as_str())));
    assert!(call.ok());

    // a photo's caption: the photo stays
    let file = vh.hub.upload("label.jpg", "image/jpeg", b"\xff\xd8 label".to_vec()).await;
    let m = alice.send_message(&interaction, "e2", json!({"text": "The label", "file_ids": [file]})).await;
    let photo_id = external_id(&vh, &m).await;
    let attachment = vh.fake.message(photo_id).unwrap().param("attachment").unwrap().to_owned();
    alice.call("message.edit", json!({"message_id": m["id"], "text": "The shipping label"})).await;
    eventually("the caption edited", WAIT, || async {
        vh.fake.message(photo_id).is_some_and(|s| s.text == "The shipping label")
    })
    .await;
    assert_eq!(vh.fake.message(photo_id).unwrap().param("attachment"), Some(attachment.as_str()), "the photo kept");

    // delete: for everybody
    let deleted = alice.call("message.delete", json!({"message_id": m["id"]})).await;
    assert_eq!(deleted["ok"], true, "{deleted}");
    eventually("deleted at VK", WAIT, || async { vh.fake.message(photo_id).is_some_and(|s| s.deleted) }).await;
    let call = vh.fake.calls_of("messages.delete").pop().unwrap();
    assert_eq!(
        (call.param("message_ids"), call.param("delete_for_all")),
        (Some(photo_id.to_string().as_str()), Some("1"))
    );

    // too old for VK: the agent learns why, the message stays as it was
    vh.fake.set_max_ages(Duration::ZERO, Duration::ZERO);
    let first = alice.send_message(&interaction, "e3", json!({"text": "old news"})).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    alice.call("message.edit", json!({"message_id": first["id"], "text": "new news"})).await;
    let failed = alice
        .event_where("message.status", |d| {
            d["message"]["id"] == first["id"] && d["action"] == "edit" && d["error"].is_string()
        })
        .await;
    assert!(failed["data"]["error"].as_str().unwrap().contains("too old to edit"), "{failed}");
    let sent = vh.fake.sent_to(peer);
    assert_eq!(sent.iter().filter(|s| s.deleted).count(), 1);
}

#[tokio::test]
async fn a_denied_customer_s_message_fails_at_once_with_the_reason() {
    let (vh, mut alice, _connector, interaction, user) = conversation(json!({})).await;
    let peer = user.id;
    vh.fake.deny(&user);
    eventually("the denial stored", WAIT, || async {
        vh.count("SELECT count(*) FROM vk_message_permissions WHERE NOT allowed").await == 1
    })
    .await;
    let sends_before = vh.fake.calls_of("messages.send").len();
    let m = alice.send_message(&interaction, "d1", json!({"text": "Are you there?"})).await;
    assert_eq!(m["status"], "failed");
    let error = m["error"].as_str().unwrap();
    assert!(error.starts_with("the customer turned off messages from this community on VK"), "{error}");
    assert_eq!(vh.fake.calls_of("messages.send").len(), sends_before, "VK was not even asked");

    // they allow messages again: it goes
    vh.fake.allow(&user);
    eventually("the permission stored", WAIT, || async {
        vh.count("SELECT count(*) FROM vk_message_permissions WHERE allowed").await == 1
    })
    .await;
    let m = alice.send_message(&interaction, "d2", json!({"text": "Welcome back"})).await;
    assert_eq!(m["status"], "sent", "{m}");

    // denied again, then they write: writing lets the community answer
    vh.fake.deny(&user);
    eventually("denied again", WAIT, || async {
        vh.count("SELECT count(*) FROM vk_message_permissions WHERE NOT allowed").await == 1
    })
    .await;
    vh.fake.text(&user, "I changed my mind");
    alice.event_where("message.new", |d| d["message"]["text"] == "I changed my mind").await;
    eventually("the denial lifted", WAIT, || async {
        vh.count("SELECT count(*) FROM vk_message_permissions WHERE allowed").await == 1
    })
    .await;
    assert_eq!(alice.send_message(&interaction, "d3", json!({"text": "Glad to hear"})).await["status"], "sent");

    // VK itself refuses (901): failed with VK's reason, tried once
    vh.fake.set_allowed(peer, false);
    let m = alice.send_message(&interaction, "d4", json!({"text": "Hello?"})).await;
    assert_eq!(m["status"], "failed");
    assert_eq!(
        m["error"],
        "the customer has not allowed messages from this community (VK error 901: Can't send messages for users without permission)"
    );
    assert_eq!(vh.fake.calls_of("messages.send").iter().filter(|c| c.error == Some(901)).count(), 1, "not retried");

    // message_allow from someone new: a customer agents can start a conversation with
    let mut bo = VkUser::new(8_800_555, "Bo", "Lind");
    bo.photo_200 = Some(vh.fake.add_media(b"\xff\xd8 bo".to_vec(), "jpg"));
    vh.fake.allow(&bo);
    eventually("Bo stored", WAIT, || async {
        vh.count("SELECT count(*) FROM customers WHERE name = 'Bo Lind' AND avatar_url IS NOT NULL").await == 1
    })
    .await;
    let started = alice
        .call(
            "interaction.start",
            json!({"account_id": vh.account_id, "customer": {"external_id": "8800555"}, "message": "Your order shipped."}),
        )
        .await;
    assert_eq!(started["ok"], true, "{started}");
    eventually("the message at VK", WAIT, || async { !vh.fake.sent_to(bo.id).is_empty() }).await;
    assert_eq!(vh.fake.sent_to(bo.id)[0].text, "Your order shipped.");
}

#[tokio::test]
async fn rate_limits_6_and_9_and_lost_answers_deliver_everything_once() {
    let (vh, mut alice, _connector, interaction, user) = conversation(
        json!({"limits": {"rate": {"count": 20, "per_ms": 1000}, "rate_per_chat": {"count": 20, "per_ms": 1000}}}),
    )
    .await;
    let peer = user.id;

    // VK sent it, and its answer was lost: the retry carries the same random_id, VK drops it
    // and answers the first message's id
    for n in 0..2 {
        vh.fake.lose_answer_next("messages.send");
        let m = alice.send_message(&interaction, &format!("l{n}"), json!({"text": format!("lost answer {n}")})).await;
        assert_eq!(m["status"], "sent", "{m}");
        let first = vh.fake.sent_to(peer).pop().unwrap();
        assert_eq!(first.text, format!("lost answer {n}"));
        assert_eq!(external_id(&vh, &m).await, first.id, "the id VK answered the repeat with");
    }
    let deduplicated = vh.fake.deduplicated();
    assert_eq!(deduplicated.len(), 2, "{deduplicated:?}");

    // 6 twice and 9 twice on sends, 6 on an upload server
    for (method, code, message) in [
        ("messages.send", 6, "Too many requests per second"),
        ("messages.send", 9, "Flood control"),
        ("photos.getMessagesUploadServer", 6, "Too many requests per second"),
        ("messages.send", 6, "Too many requests per second"),
        ("messages.send", 9, "Flood control"),
    ] {
        vh.fake.fail_next(method, code, message);
    }
    let file = vh.hub.upload("a.jpg", "image/jpeg", b"\xff\xd8 a".to_vec()).await;
    for n in 0..6 {
        let mut args =
            json!({"interaction_id": interaction, "client_msg_id": format!("r{n}"), "text": format!("burst {n}")});
        if n == 3 {
            args["file_ids"] = json!([file]);
        }
        let sent = alice.call("message.send", args).await;
        assert_eq!(sent["ok"], true, "{sent}");
    }
    eventually("every message sent", Duration::from_secs(60), || async {
        vh.count("SELECT count(*) FROM messages WHERE direction = 'out' AND status = 'sent'").await == 8
    })
    .await;
    let mut texts: HashMap<String, usize> = HashMap::new();
    for s in vh.fake.sent_to(peer) {
        *texts.entry(s.text).or_default() += 1;
    }
    assert_eq!(texts.len(), 8, "{texts:?}");
    assert!(texts.values().all(|n| *n == 1), "every message delivered exactly once: {texts:?}");
    let calls = vh.fake.calls_of("messages.send");
    assert_eq!(calls.iter().filter(|c| c.error == Some(6)).count(), 2);
    assert_eq!(calls.iter().filter(|c| c.error == Some(9)).count(), 2);
    assert_eq!(vh.fake.calls_of("photos.getMessagesUploadServer").iter().filter(|c| c.error == Some(6)).count(), 1);
    assert_eq!(vh.fake.deduplicated().len(), 2, "no other repeat reached VK");
    // a rate limit is a wait, never a failure
    assert_eq!(vh.count("SELECT count(*) FROM messages WHERE direction = 'out' AND status = 'failed'").await, 0);
    let flood = calls.iter().find(|c| c.error == Some(9)).unwrap();
    let after = calls.iter().find(|c| c.at > flood.at && c.param("random_id") == flood.param("random_id")).unwrap();
    assert!(after.at - flood.at >= Duration::from_secs(3), "flood control waits: {:?}", after.at - flood.at);
    let six = calls.iter().find(|c| c.error == Some(6)).unwrap();
    let after = calls.iter().find(|c| c.at > six.at && c.param("random_id") == six.param("random_id")).unwrap();
    assert!(after.at - six.at >= Duration::from_secs(1), "a second after error 6: {:?}", after.at - six.at);
}

#[tokio::test]
async fn error_5_makes_the_account_unhealthy_and_messages_wait_for_it() {
    let (vh, mut alice, connector, interaction, user) = conversation(json!({})).await;
    for _ in 0..3 {
        vh.fake.fail_next("messages.send", 5, "User authorization failed: invalid access_token (4).");
    }
    let sent = alice
        .call("message.send", json!({"interaction_id": interaction, "client_msg_id": "h1", "text": "after the fix"}))
        .await;
    assert_eq!(sent["ok"], true);
    eventually("the account reported", WAIT, || async {
        connector.runtime.problems().iter().any(|(id, why)| *id == vh.account_id && why.contains("access_token"))
    })
    .await;
    // not failed: it waits, and goes once VK takes the token again
    assert_eq!(vh.count("SELECT count(*) FROM messages WHERE direction = 'out' AND status = 'failed'").await, 0);
    eventually("sent once the token works", Duration::from_secs(30), || async {
        vh.count("SELECT count(*) FROM messages WHERE direction = 'out' AND status = 'sent'").await == 1
    })
    .await;
    assert!(connector.runtime.problems().is_empty(), "healthy again: {:?}", connector.runtime.problems());
    assert_eq!(vh.fake.sent_to(user.id).len(), 1);
    assert_eq!(vh.fake.calls_of("messages.send").iter().filter(|c| c.error == Some(5)).count(), 3);
}

#[tokio::test]
async fn a_rate_over_72_a_second_is_refused_with_the_reason() {
    let vh = spawn_vk_hub(json!({"limits": {"rate": {"count": 100, "per_ms": 1000}}})).await;
    let connector = vh.start_connector().await;
    eventually("the account reported", WAIT, || async {
        connector.runtime.problems().iter().any(|(id, why)| *id == vh.account_id && why.contains("at most 72"))
    })
    .await;
    assert!(vh.fake.calls().is_empty(), "nothing asked of VK");
}

#[tokio::test]
async fn callback_mode_checks_the_secret_before_anything_and_confirms_the_server() {
    let vh = spawn_vk_hub(json!({"mode": "callback"})).await;
    vh.fake.set_confirmation_code("5d7ae6c1");
    let leader = vh.start_connector().await;
    let url = vh.webhook_url(leader.addr);
    vh.fake.use_callback(&url, CALLBACK_SECRET, 5, Duration::from_millis(50));
    eventually("the leader leads", WAIT, || async { vh.fake.calls_of("groups.getById").iter().any(|c| c.ok()) }).await;

    // the confirmation: the string VK expects, read from VK (no `confirmation` setting)
    let (status, body, confirmed) = vh.fake.confirm(Secret::Right).await;
    assert!(confirmed, "{status} {body:?}");
    assert_eq!(vh.fake.calls_of("groups.getCallbackConfirmationCode").len(), 1);
    let (status, _, confirmed) = vh.fake.confirm(Secret::Wrong).await;
    assert_eq!((status, confirmed), (401, false));
    let (_, _, confirmed) = vh.fake.confirm(Secret::Missing).await;
    assert!(confirmed, "VK may confirm without the secret");

    // a wrong or missing secret: 401, nothing stored
    let user = anna();
    vh.fake.add_user(&user);
    let update = json!({"group_id": GROUP, "type": "message_new", "event_id": "cb0000000001", "v": "5.199",
        "object": {"message": {"id": 9001, "date": 1767312000, "from_id": user.id, "peer_id": user.id, "out": 0,
            "text": "is this secret?", "attachments": [], "fwd_messages": []}, "client_info": {}}});
    for secret in [Secret::Wrong, Secret::Missing] {
        assert_eq!(vh.fake.post_callback(&update, secret).await.status, 401, "{secret:?}");
    }
    assert_eq!(vh.fake.post_raw(b"not json at all").await.0, 401);
    assert_eq!(vh.count("SELECT count(*) FROM messages").await, 0, "nothing stored");
    assert_eq!(vh.count("SELECT count(*) FROM customers").await, 0, "nothing stored");
    assert_eq!(vh.count("SELECT count(*) FROM dead_letters").await, 0, "nothing parked");
    // the right secret: stored, answered `ok`
    let ok = vh.fake.post_callback(&update, Secret::Right).await;
    assert_eq!((ok.status, ok.body.as_str()), (200, "ok"));
    assert_eq!(vh.count("SELECT count(*) FROM messages").await, 1);
    // VK delivers again (same event): stored once
    assert_eq!(vh.fake.post_callback(&update, Secret::Right).await.body, "ok");
    assert_eq!(vh.count("SELECT count(*) FROM messages").await, 1);

    // the builders' updates go by the Callback API now, with the secret
    vh.fake.set_allowed(user.id, true);
    vh.fake.text(&user, "second by callback");
    eventually("stored", WAIT, || async { vh.count("SELECT count(*) FROM messages").await == 2 }).await;

    // an update that can never be stored is parked, without the secret, and answered ok
    let bad = json!({"group_id": GROUP, "type": "message_new", "event_id": "cb0000000002",
        "object": {"message": {"id": 9002, "from_id": user.id, "peer_id": user.id, "geo": {"coordinates": {"latitude": "north", "longitude": 1}}}}});
    let parked = vh.fake.post_callback(&bad, Secret::Right).await;
    assert_eq!((parked.status, parked.body.as_str()), (200, "ok"));
    let payload: Vec<u8> =
        sqlx::query_scalar("SELECT payload FROM dead_letters").fetch_one(&vh.hub.pool).await.unwrap();
    let payload = String::from_utf8(payload).unwrap();
    assert!(payload.contains("\"north\"") && !payload.contains(CALLBACK_SECRET), "{payload}");

    // a backup checks the secret first, then answers 503 (VK delivers again)
    let backup = vh.start_connector().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let third = json!({"group_id": GROUP, "type": "message_new", "event_id": "cb0000000003",
        "object": {"message": {"id": 9003, "from_id": user.id, "peer_id": user.id, "text": "to the backup"}}});
    vh.fake.use_callback(&vh.webhook_url(backup.addr), CALLBACK_SECRET, 1, Duration::ZERO);
    assert_eq!(vh.fake.post_callback(&third, Secret::Wrong).await.status, 401);
    assert_eq!(vh.fake.post_callback(&third, Secret::Right).await.status, 503);
    leader.stop().await;
    eventually("the backup leads", WAIT, || async { vh.fake.post_callback(&third, Secret::Right).await.status == 200 })
        .await;
    assert_eq!(vh.count("SELECT count(*) FROM messages").await, 3);
}

#[tokio::test]
async fn a_nul_byte_and_an_unreadable_update_do_not_block_the_others_and_the_position_moves_on() {
    let vh = spawn_vk_hub(json!({})).await;
    let mut alice = vh.hub.ready_agent("alice").await;
    let _connector = vh.start_connector().await;
    vh.polling().await;
    let user = anna();
    vh.fake.text(&user, "first ordinary");
    let interaction = vh.hub.accept_next(&mut alice).await;
    let nul = vh.fake.text(&user, "bad\u{0}byte");
    let bad = r#"{"group_id":231000555,"type":"message_new","event_id":"badbadbad001","v":"5.199","object":{"message":{"id":99001,"from_id":7700123,"peer_id":7700123,"text":"","geo":{"type":"point","coordinates":{"latitude":"north","longitude":30.3}}}}}"#;
    vh.fake.push_raw(bad.to_owned());
    vh.fake.text(&user, "second ordinary");

    let m = alice.event_where("message.new", |d| d["message"]["text"] == "second ordinary").await;
    assert_eq!(m["data"]["message"]["interaction_id"], interaction.as_str());
    alice.event_where("message.new", |d| d["message"]["text"] == "bad\u{FFFD}byte").await;
    let stored: String = sqlx::query_scalar("SELECT text FROM messages WHERE external_message_id = $1")
        .bind(nul.to_string())
        .fetch_one(&vh.hub.pool)
        .await
        .unwrap();
    assert_eq!(stored, "bad\u{FFFD}byte");
    let (key, payload, error): (String, Vec<u8>, String) =
        sqlx::query_as("SELECT update_key, payload, error FROM dead_letters").fetch_one(&vh.hub.pool).await.unwrap();
    assert_eq!(key, "badbadbad001");
    assert_eq!(payload, bad.as_bytes(), "the exact payload is kept");
    assert!(error.contains("cannot read"), "{error}");
    eventually("the position past all four", WAIT, || async { vh.stored_ts().await == Some(vh.fake.ts().to_string()) })
        .await;
    assert_eq!(vh.count("SELECT count(*) FROM messages WHERE direction = 'in'").await, 3);
    assert!(vh.fake.handed_out().values().all(|n| *n == 1), "nothing read twice: {:?}", vh.fake.handed_out());
}

#[tokio::test]
async fn long_poll_failed_1_2_3_and_a_restart_lose_nothing_and_store_nothing_twice() {
    let vh = spawn_vk_hub(json!({})).await;
    let mut alice = vh.hub.ready_agent("alice").await;
    let connector = vh.start_connector().await;
    vh.polling().await;
    let user = anna();
    let mut expected = 0;
    let mut write = |n: usize| {
        for i in 0..n {
            vh.fake.text(&user, &format!("message {}", expected + i));
        }
        expected += n;
        expected
    };
    let stored = || async { vh.count("SELECT count(*) FROM messages WHERE direction = 'in'").await };

    let n = write(3);
    eventually("the first three", WAIT, || async { stored().await == n as i64 }).await;
    vh.hub.accept_next(&mut alice).await;

    // 2: the key expired: a new key, the same position
    let servers = vh.fake.calls_of("groups.getLongPollServer").len();
    vh.fake.fail_poll(2);
    let n = write(2);
    eventually("after failed 2", WAIT, || async { stored().await == n as i64 }).await;
    assert_eq!(vh.fake.calls_of("groups.getLongPollServer").len(), servers + 1);
    // keys expire on VK's side too
    vh.fake.expire_keys();
    let n = write(2);
    eventually("after the keys expired", WAIT, || async { stored().await == n as i64 }).await;
    assert_eq!(vh.fake.calls_of("groups.getLongPollServer").len(), servers + 2);

    // 3: information lost: a new key and position
    vh.fake.fail_poll(3);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let n = write(2);
    eventually("after failed 3", WAIT, || async { stored().await == n as i64 }).await;
    assert_eq!(vh.fake.calls_of("groups.getLongPollServer").len(), servers + 3);

    // 1: history outdated: continue from the ts VK gives
    vh.fake.fail_poll(1);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let n = write(2);
    eventually("after failed 1", WAIT, || async { stored().await == n as i64 }).await;
    eventually("the position stored", WAIT, || async { vh.stored_ts().await == Some(vh.fake.ts().to_string()) }).await;

    // stopped; customers write meanwhile; a new connector continues from the stored position
    connector.stop().await;
    // (a check the stopped poller left open at the fake ends within its wait)
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let n = write(4);
    let restarted = vh.start_connector().await;
    eventually("what came while nobody polled", WAIT, || async { stored().await == n as i64 }).await;
    let distinct = vh.count("SELECT count(DISTINCT external_message_id) FROM messages WHERE direction = 'in'").await;
    assert_eq!(distinct, n as i64, "every message stored once");
    let handed: Vec<u32> = vh.fake.handed_out().values().copied().collect();
    assert!(handed.iter().all(|n| *n == 1), "the restart read nothing twice: {handed:?}");
    assert_eq!(vh.count("SELECT count(*) FROM dead_letters").await, 0);
    drop(restarted);
}
