//! The WhatsApp connector on Meta's Cloud API, end to end: the fake Cloud API on one side
//! (webhooks signed like Meta's over bytes with non-ASCII escaped, messages validated like
//! Meta's, media behind the bearer token, the 24-hour window on a virtual clock), the real
//! chatserver and file server with a real WebSocket agent on the other, real PostgreSQL and
//! ZooKeeper between.

mod harness;
#[path = "harness/whatsapp.rs"]
mod wa_hub;

use std::time::Duration;

use connectors::fake::whatsapp_cloud::{Signature, WaUser, meta_json};
use harness::{Client, WAIT, eventually};
use serde_json::{Value, json};
use wa_hub::{Provider, VERIFY_TOKEN, WaHub, customer_message, file_of, send, spawn_wa_hub};

fn anna() -> WaUser {
    WaUser::new("4915112345678", "Anna Berg")
}

/// A hub, a ready agent, a leading connector, and Anna's first message accepted by the agent.
async fn conversation() -> (WaHub, Client, harness::Connector, String, WaUser) {
    let wa = spawn_wa_hub(Provider::Cloud, json!({}), json!({})).await;
    let mut alice = wa.hub.ready_agent("alice").await;
    let connector = wa.start_connector().await;
    let user = anna();
    wa.cloud().text(&user, "Hello, where is order 7731?");
    let interaction = wa.hub.accept_next(&mut alice).await;
    (wa, alice, connector, interaction, user)
}

#[tokio::test]
async fn every_kind_of_customer_message_reaches_the_agent_with_its_file() {
    let wa = spawn_wa_hub(Provider::Cloud, json!({}), json!({})).await;
    let mut alice = wa.hub.ready_agent("alice").await;
    let _connector = wa.start_connector().await;
    let fake = wa.cloud();
    let user = anna();

    let first = fake.text(&user, "Hello, where is order 7731? Grüße 👋");
    let offer = alice.event("interaction.offered").await;
    let interaction = &offer["data"]["interaction"];
    assert_eq!(interaction["channel"], "whatsapp");
    assert_eq!(interaction["customer"]["name"], "Anna Berg");
    assert_eq!(interaction["customer"]["phone"], "+4915112345678", "wa_id is the customer's phone");
    let id = interaction["id"].as_str().unwrap().to_owned();
    alice.call("interaction.accept", json!({"interaction_id": id})).await;
    let stored: String = sqlx::query_scalar("SELECT text FROM messages WHERE external_message_id = $1")
        .bind(&first)
        .fetch_one(&wa.hub.pool)
        .await
        .unwrap();
    assert_eq!(stored, "Hello, where is order 7731? Grüße 👋", "signed with non-ASCII escaped, as Meta does");

    let photo = b"\xff\xd8\xff\xe0 the receipt photo".to_vec();
    fake.image(&user, photo.clone(), Some("Here is the receipt"));
    let m = customer_message(&mut alice, "image").await;
    assert_eq!(m["text"], "Here is the receipt");
    let (bytes, name, mime) = file_of(&wa.hub, &m).await;
    assert_eq!((bytes, mime.as_str()), (photo, "image/jpeg"));
    assert!(name.starts_with("image_") && name.ends_with(".jpg"), "{name}");
    let media_calls: Vec<_> = fake.calls().into_iter().filter(|c| c.method == "GET").collect();
    assert!(media_calls.iter().all(|c| c.headers.get("authorization").is_some_and(|a| a.starts_with("Bearer "))));

    let clip = b"\x00\x00\x00\x18ftypmp42 clip".to_vec();
    fake.video(&user, clip.clone());
    let m = customer_message(&mut alice, "video").await;
    assert_eq!(file_of(&wa.hub, &m).await.0, clip);

    let song = b"ID3 an mp3".to_vec();
    fake.audio(&user, song.clone(), false);
    let m = customer_message(&mut alice, "audio").await;
    let (bytes, _, mime) = file_of(&wa.hub, &m).await;
    assert_eq!((bytes, mime.as_str()), (song, "audio/mpeg"));

    let note = b"OggS a voice note".to_vec();
    fake.audio(&user, note.clone(), true);
    let m = customer_message(&mut alice, "voice").await;
    let (bytes, _, mime) = file_of(&wa.hub, &m).await;
    assert_eq!((bytes, mime.as_str()), (note, "audio/ogg"));

    let pdf = b"%PDF-1.4 the invoice".to_vec();
    fake.document(&user, "invoice.pdf", pdf.clone(), "application/pdf");
    let m = customer_message(&mut alice, "document").await;
    let (bytes, name, mime) = file_of(&wa.hub, &m).await;
    assert_eq!((bytes, name.as_str(), mime.as_str()), (pdf, "invoice.pdf", "application/pdf"));

    let webp = b"RIFF\x10\x00\x00\x00WEBPVP8 sticker".to_vec();
    let sticker = fake.sticker(&user, webp.clone());
    let m = customer_message(&mut alice, "sticker").await;
    assert!(m["sticker_id"].as_str().is_some_and(|s| !s.is_empty()), "{m}");
    assert_eq!(file_of(&wa.hub, &m).await.0, webp);
    let _ = sticker;

    fake.location(&user, 52.5163, 13.3777, "Pick-up point");
    let m = customer_message(&mut alice, "location").await;
    assert_eq!(m["location"], json!({"lat": 52.5163, "lon": 13.3777, "address": "Pick-up point"}));

    fake.contact(&user, "Jan Kowalski", "+48 600 100 200");
    let m = customer_message(&mut alice, "contact").await;
    assert_eq!(m["contact"], json!({"phone": "+48 600 100 200", "name": "Jan Kowalski"}));

    // a button press and a list pick on one of our messages, and a reaction to it
    let ours = send(&mut alice, &id, "q1", json!({"text": "Refund or resend?",
        "keyboard": {"type": "inline", "rows": [[{"text": "Refund", "data": "refund"}, {"text": "Resend", "data": "resend"}]]}}))
    .await;
    let wamid = fake.sent_to(&user.wa_id).pop().unwrap().id;
    fake.button_reply(&user, &wamid, "refund", "Refund");
    let m = alice.event_where("message.new", |d| d["message"]["text"] == "refund").await;
    assert_eq!(m["data"]["message"]["reply_to"], ours["id"], "the press answers our message");
    fake.list_reply(&user, &wamid, "slot-3", "Friday 10-12");
    alice.event_where("message.new", |d| d["message"]["text"] == "slot-3").await;
    fake.reaction(&user, &wamid, "👍");
    let m = alice.event_where("message.new", |d| d["message"]["text"] == "reacted 👍").await;
    assert_eq!(m["data"]["message"]["reply_to"], ours["id"], "the reaction names the message it is about");

    assert_eq!(wa.count("SELECT count(*) FROM dead_letters").await, 0);
    assert_eq!(wa.count("SELECT count(*) FROM messages WHERE direction = 'in'").await, 12);
}

#[tokio::test]
async fn every_kind_the_agent_sends_goes_out_uploads_first() {
    let (wa, mut alice, _connector, interaction, user) = conversation().await;
    let fake = wa.cloud();
    let first_in: String = sqlx::query_scalar("SELECT id::text FROM messages WHERE direction = 'in'")
        .fetch_one(&wa.hub.pool)
        .await
        .unwrap();

    let m =
        send(&mut alice, &interaction, "t1", json!({"text": "Your parcel left the warehouse.", "reply_to": first_in}))
            .await;
    assert_eq!(m["status"], "sent", "{m}");
    let out = fake.sent_to(&user.wa_id).pop().unwrap();
    assert_eq!(out.body["text"]["body"], "Your parcel left the warehouse.");
    assert!(
        out.body["context"]["message_id"].as_str().unwrap().starts_with("wamid."),
        "a reply names the customer's message"
    );
    let stored: String = sqlx::query_scalar("SELECT external_message_id FROM messages WHERE id = $1::uuid")
        .bind(m["id"].as_str().unwrap())
        .fetch_one(&wa.hub.pool)
        .await
        .unwrap();
    assert_eq!(stored, out.id, "the wamid is the message's platform id");

    for (n, (name, mime, kind, bytes)) in [
        ("label.jpg", "image/jpeg", "image", b"\xff\xd8\xff jpeg".to_vec()),
        ("clip.mp4", "video/mp4", "video", b"\x00\x00\x00\x18ftypmp42".to_vec()),
        ("song.mp3", "audio/mpeg", "audio", b"ID3 mp3".to_vec()),
        ("note.ogg", "audio/ogg", "audio", b"OggS opus".to_vec()),
        ("invoice.pdf", "application/pdf", "document", b"%PDF-1.4".to_vec()),
    ]
    .into_iter()
    .enumerate()
    {
        let file = wa.hub.upload(name, mime, bytes.clone()).await;
        let m = send(&mut alice, &interaction, &format!("f{n}"), json!({"text": "for you", "file_ids": [file]})).await;
        assert_eq!(m["status"], "sent", "{name}: {m}");
        let out = fake.sent_to(&user.wa_id).pop().unwrap();
        assert_eq!(out.kind(), kind, "{name}");
        let media_id = out.body[kind]["id"].as_str().expect("sent by the uploaded media id");
        let upload = fake.upload_of(media_id).expect("uploaded first");
        assert_eq!((upload.bytes.to_vec(), upload.mime.as_str()), (bytes, mime), "{name}");
        match kind {
            "audio" => assert!(out.body["audio"].get("caption").is_none()),
            "document" => assert_eq!(out.body["document"]["filename"], "invoice.pdf"),
            _ => assert_eq!(out.body[kind]["caption"], "for you"),
        }
    }
    // audio carries no caption on WhatsApp: the text went first, as its own message
    let texts =
        fake.sent_to(&user.wa_id).iter().filter(|s| s.kind() == "text" && s.body["text"]["body"] == "for you").count();
    assert_eq!(texts, 2, "one text before each audio file");

    let webp = wa.hub.upload("hi.webp", "image/webp", b"RIFF\x10\x00\x00\x00WEBPVP8 hi".to_vec()).await;
    send(&mut alice, &interaction, "s1", json!({"sticker": {"file_id": webp}})).await;
    assert_eq!(fake.sent_to(&user.wa_id).pop().unwrap().kind(), "sticker");
    // a sticker by the media id of one the business uploaded before
    let sticker = fake.add_upload("thanks.webp", "image/webp", b"RIFF\x10\x00\x00\x00WEBPVP8 thanks".to_vec());
    let m = send(&mut alice, &interaction, "s2", json!({"sticker": {"sticker_id": sticker}})).await;
    assert_eq!(m["status"], "sent", "{m}");
    assert_eq!(fake.sent_to(&user.wa_id).pop().unwrap().body["sticker"], json!({"id": sticker}));

    send(
        &mut alice,
        &interaction,
        "l1",
        json!({"location": {"lat": 52.5163, "lon": 13.3777, "address": "Pariser Platz 1"}}),
    )
    .await;
    let out = fake.sent_to(&user.wa_id).pop().unwrap();
    assert_eq!(out.body["location"], json!({"latitude": 52.5163, "longitude": 13.3777, "address": "Pariser Platz 1"}));
    send(&mut alice, &interaction, "c1", json!({"contact": {"phone": "+49 30 1234", "name": "Courier desk"}})).await;
    assert_eq!(fake.sent_to(&user.wa_id).pop().unwrap().body["contacts"][0]["phones"][0]["phone"], "+49 30 1234");

    send(&mut alice, &interaction, "b1", json!({"text": "Refund or resend?",
        "keyboard": {"type": "inline", "rows": [[{"text": "Refund", "data": "refund"}, {"text": "Resend", "data": "resend"}]]}}))
    .await;
    let out = fake.sent_to(&user.wa_id).pop().unwrap();
    assert_eq!(out.body["interactive"]["type"], "button");
    assert_eq!(
        out.body["interactive"]["action"]["buttons"][1],
        json!({"type": "reply", "reply": {"id": "resend", "title": "Resend"}})
    );
    let rows: Vec<Value> =
        (1..=5).map(|i| json!({"text": format!("Friday slot {i}"), "data": format!("slot-{i}")})).collect();
    send(
        &mut alice,
        &interaction,
        "b2",
        json!({"text": "When shall we come?", "keyboard": {"type": "inline", "rows": [rows]}}),
    )
    .await;
    let out = fake.sent_to(&user.wa_id).pop().unwrap();
    assert_eq!(out.body["interactive"]["type"], "list");
    assert_eq!(out.body["interactive"]["action"]["sections"][0]["rows"].as_array().unwrap().len(), 5);

    // what WhatsApp cannot do is refused before anything is queued
    for (args, feature) in [
        (json!({"text": "pick", "keyboard": {"type": "reply", "rows": [[{"text": "A"}]]}}), "reply keyboards"),
        (json!({"forward": {"message_id": first_in}}), "forwarding messages"),
    ] {
        let mut args = args;
        args["interaction_id"] = json!(interaction);
        args["client_msg_id"] = json!(feature);
        let refused = alice.call("message.send", args).await;
        assert_eq!(refused["error"]["code"], "unsupported_by_channel", "{refused}");
        assert!(refused["error"]["message"].as_str().unwrap().contains(feature), "{refused}");
    }
    assert_eq!(wa.count("SELECT count(*) FROM messages WHERE direction = 'out' AND status = 'failed'").await, 0);
}

#[tokio::test]
async fn delivered_and_read_reach_the_agent_and_failures_say_why() {
    let (wa, mut alice, _connector, interaction, user) = conversation().await;
    let fake = wa.cloud();
    fake.set_auto_statuses(true);
    let m = send(&mut alice, &interaction, "r1", json!({"text": "On its way."})).await;
    let id = m["id"].as_str().unwrap().to_owned();
    for status in ["delivered", "read"] {
        alice
            .event_where("message.status", |d| d["message"]["id"] == id.as_str() && d["message"]["status"] == status)
            .await;
    }
    let history: Vec<String> = sqlx::query_scalar(
        "SELECT event->'data'->'message'->>'status' FROM history WHERE entry = 'event' \
         AND event->>'kind' = 'message.status' AND event->'data'->'message'->>'id' = $1 ORDER BY id",
    )
    .bind(&id)
    .fetch_all(&wa.hub.pool)
    .await
    .unwrap();
    assert_eq!(history, vec!["sent", "delivered", "read"]);

    // a late `delivered` changes nothing; a failure after acceptance carries Meta's title and code
    let wamid = fake.sent_to(&user.wa_id).pop().unwrap().id;
    fake.status(&wamid, &user.wa_id, "delivered", None);
    fake.set_auto_statuses(false);
    let m = send(&mut alice, &interaction, "r2", json!({"text": "And another."})).await;
    let id2 = m["id"].as_str().unwrap().to_owned();
    let wamid2 = fake.sent_to(&user.wa_id).pop().unwrap().id;
    fake.status(&wamid2, &user.wa_id, "failed", Some((131026, "Message undeliverable")));
    let s = alice
        .event_where("message.status", |d| d["message"]["id"] == id2.as_str() && d["message"]["status"] == "failed")
        .await;
    assert_eq!(
        s["data"]["message"]["error"],
        "WhatsApp could not deliver it: Message undeliverable (131026): Message undeliverable"
    );
    eventually("the late delivered is absorbed", WAIT, || async {
        !fake.deliveries_of(&format!("status:{wamid}:delivered")).is_empty()
            && fake.deliveries_of(&format!("status:{wamid}:delivered")).iter().all(|d| d.status == 200)
    })
    .await;
    let status: String = sqlx::query_scalar("SELECT status FROM messages WHERE id = $1::uuid")
        .bind(&id)
        .fetch_one(&wa.hub.pool)
        .await
        .unwrap();
    assert_eq!(status, "read", "never back from read");
}

#[tokio::test]
async fn the_24_hour_window_templates_and_a_customer_who_writes_again() {
    let wa = spawn_wa_hub(Provider::Cloud, json!({}), json!({})).await;
    let mut alice = wa.hub.ready_agent("alice").await;
    let _connector = wa.start_connector().await;
    let fake = wa.cloud();
    wa.add_template("order_update", "en", "Hello {{1}}, your order {{2}} has shipped.").await;
    let user = anna();

    // the customer wrote 25 hours ago (the fake's clock then), and nobody answered
    fake.set_clock(-chrono::Duration::hours(25));
    fake.text(&user, "Is anybody there?");
    let interaction = wa.hub.accept_next(&mut alice).await;
    fake.set_clock(chrono::Duration::zero());

    let sent_before = fake.sent().len();
    let outbox_before = wa.count("SELECT count(*) FROM outbox").await;
    let refused = alice
        .call(
            "message.send",
            json!({"interaction_id": interaction, "client_msg_id": "late", "text": "Sorry for the wait!"}),
        )
        .await;
    assert_eq!(refused["error"]["code"], "outside_service_window", "{refused}");
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(message.contains("24 hours") && message.contains("closed at") && message.contains("template"), "{message}");
    let file = wa.hub.upload("a.jpg", "image/jpeg", b"\xff\xd8\xff".to_vec()).await;
    let refused = alice
        .call("message.send", json!({"interaction_id": interaction, "client_msg_id": "late-file", "file_ids": [file]}))
        .await;
    assert_eq!(refused["error"]["code"], "outside_service_window", "files too: {refused}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(wa.count("SELECT count(*) FROM outbox").await, outbox_before, "nothing queued");
    assert_eq!(fake.sent().len(), sent_before, "nothing sent");

    // a template goes out at any time, and is delivered
    fake.set_auto_statuses(true);
    let wrong = alice
        .call(
            "message.send",
            json!({"interaction_id": interaction, "client_msg_id": "t0",
            "template": {"name": "order_update", "language": "en", "params": ["Anna"]}}),
        )
        .await;
    assert_eq!(wrong["error"]["code"], "bad_request", "two parameters: {wrong}");
    let unknown = alice
        .call(
            "message.send",
            json!({"interaction_id": interaction, "client_msg_id": "t00",
            "template": {"name": "order_update", "language": "de", "params": ["Anna", "7731"]}}),
        )
        .await;
    assert_eq!(unknown["error"]["code"], "bad_request", "no German version: {unknown}");
    let m = send(
        &mut alice,
        &interaction,
        "t1",
        json!({"template": {"name": "order_update", "language": "en", "params": ["Anna", "7731"]}}),
    )
    .await;
    assert_eq!(m["status"], "sent", "{m}");
    assert_eq!(m["text"], "Hello Anna, your order 7731 has shipped.", "the agent sees what the customer reads");
    assert_eq!(m["template"]["name"], "order_update");
    let id = m["id"].as_str().unwrap().to_owned();
    alice
        .event_where("message.status", |d| d["message"]["id"] == id.as_str() && d["message"]["status"] == "delivered")
        .await;
    let out = fake.sent_to(&user.wa_id).pop().unwrap();
    assert_eq!(out.kind(), "template");
    assert_eq!(out.body["template"]["components"][0]["parameters"][1], json!({"type": "text", "text": "7731"}));

    // the customer writes again: the window is open, a free-form answer goes out
    fake.text(&user, "Thanks! One more question.");
    alice.event_where("message.new", |d| d["message"]["text"] == "Thanks! One more question.").await;
    let m = send(&mut alice, &interaction, "t2", json!({"text": "Of course, ask away."})).await;
    assert_eq!(m["status"], "sent", "{m}");
    let id = m["id"].as_str().unwrap().to_owned();
    alice
        .event_where("message.status", |d| d["message"]["id"] == id.as_str() && d["message"]["status"] == "read")
        .await;

    // Meta's own verdict wins where the hub's clock disagrees: 131047, synchronous or by status
    fake.fail_next(400, 131047, "Re-engagement message");
    let m = send(&mut alice, &interaction, "t3", json!({"text": "Still there?"})).await;
    assert_eq!(m["status"], "failed");
    assert!(m["error"].as_str().unwrap().starts_with("outside WhatsApp's 24-hour window"), "{m}");

    // templates are WhatsApp's: a Telegram interaction refuses them
    let telegram = {
        let mut tx = wa.hub.pool.begin().await.unwrap();
        let msg = schema::store::InboundMessage {
            account_id: wa.hub.account_id,
            external_message_id: "1001:1".into(),
            chat_id: "1001".into(),
            sender: schema::store::Sender { external_id: "1001".into(), name: "Tom".into(), ..Default::default() },
            kind: schema::domain::MessageKind::Text,
            text: Some("Hi from Telegram".into()),
            ..Default::default()
        };
        let schema::store::Ingested::Stored { interaction, .. } =
            schema::store::ingest_inbound(&mut tx, &msg, Duration::from_secs(60)).await.unwrap()
        else {
            panic!("stored")
        };
        schema::store::take(&mut tx, interaction.id, "alice", true).await.unwrap();
        tx.commit().await.unwrap();
        interaction.id
    };
    let refused = alice
        .call(
            "message.send",
            json!({"interaction_id": telegram, "client_msg_id": "tg-t",
            "template": {"name": "order_update", "language": "en", "params": ["Anna", "7731"]}}),
        )
        .await;
    assert_eq!(refused["error"]["code"], "unsupported_by_channel", "{refused}");
    assert_eq!(refused["error"]["message"], "telegram does not support message templates");
}

#[tokio::test]
async fn signatures_and_the_verification_handshake() {
    let wa = spawn_wa_hub(Provider::Cloud, json!({}), json!({})).await;
    let leader = wa.start_connector().await;
    let fake = wa.cloud();
    assert_eq!(fake.handshake(VERIFY_TOKEN, "1158201444").await, (200, "1158201444".into()));
    assert_eq!(fake.handshake("not-the-token", "1158201444").await.0, 401);

    let user = anna();
    let (_, item) = fake.message_item(&user, json!({"type": "text", "text": {"body": "forged"}}));
    let body = json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages", "value": fake.value(&user, vec![item])}]}]});
    assert_eq!(fake.post(&body, Signature::Wrong).await.status, 401);
    assert_eq!(fake.post(&body, Signature::Missing).await.status, 401);
    // a body re-serialised after signing (raw UTF-8 instead of Meta's escapes) does not match
    let raw = meta_json(&body);
    let signature = connectors::fake::whatsapp_cloud::sign(wa_hub::APP_SECRET, &raw);
    let reserialised = serde_json::to_vec(&serde_json::from_slice::<Value>(&raw).unwrap()).unwrap();
    let response = reqwest::Client::new()
        .post(wa.webhook_url(leader.addr))
        .header("X-Hub-Signature-256", signature)
        .body(reserialised)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "no non-ASCII here: the same bytes");
    assert_eq!(wa.count("SELECT count(*) FROM messages").await, 1, "only the rightly signed one");
    let (_, item) = fake.message_item(&user, json!({"type": "text", "text": {"body": "Grüße"}}));
    let body = json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages", "value": fake.value(&user, vec![item])}]}]});
    let raw = meta_json(&body);
    let signature = connectors::fake::whatsapp_cloud::sign(wa_hub::APP_SECRET, &raw);
    let reserialised = serde_json::to_vec(&serde_json::from_slice::<Value>(&raw).unwrap()).unwrap();
    assert_ne!(raw, reserialised);
    let response = reqwest::Client::new()
        .post(wa.webhook_url(leader.addr))
        .header("X-Hub-Signature-256", signature)
        .body(reserialised)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401, "verified over the bytes received, never re-serialised JSON");
    assert_eq!(wa.count("SELECT count(*) FROM messages").await, 1);
    assert_eq!(wa.count("SELECT count(*) FROM dead_letters").await, 0);

    // a backup answers 503 (Meta delivers again), the handshake too
    let backup = wa.start_backup().await;
    assert_eq!(fake.post(&body, Signature::Right).await.status, 200, "the leader still answers");
    let url = wa.webhook_url(backup.addr);
    let response = reqwest::Client::new()
        .get(&url)
        .query(&[("hub.mode", "subscribe"), ("hub.verify_token", VERIFY_TOKEN), ("hub.challenge", "5")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
}

#[tokio::test]
async fn a_nul_byte_and_unreadable_items_do_not_block_the_others() {
    let (wa, mut alice, _connector, interaction, user) = conversation().await;
    let fake = wa.cloud();
    let nul = fake.text(&user, "bad\u{0}byte");
    let (ok1, a) = fake.message_item(&user, json!({"type": "text", "text": {"body": "ordinary one"}}));
    let (bad, b) =
        fake.message_item(&user, json!({"type": "location", "location": {"latitude": "north", "longitude": 13.4}}));
    let (ok2, c) = fake.message_item(&user, json!({"type": "text", "text": {"body": "ordinary two"}}));
    let delivery = fake.post_batch(vec![fake.value(&user, vec![a, b]), fake.value(&user, vec![c])]).await;
    assert_eq!(delivery.status, 200, "the batch is acknowledged: its bad item is parked");
    let unreadable = fake.post_raw(b"{\"object\": \"whatsapp_business_account\", \"entry\": [", Signature::Right).await;
    assert_eq!(unreadable.0, 200, "an unreadable body is parked and acknowledged");
    fake.text(&user, "after them");

    alice.event_where("message.new", |d| d["message"]["text"] == "after them").await;
    for text in ["bad\u{FFFD}byte", "ordinary one", "ordinary two"] {
        let m = alice.event_where("message.new", |d| d["message"]["text"] == text).await;
        assert_eq!(m["data"]["message"]["interaction_id"], interaction.as_str());
    }
    let parked: Vec<(String, Vec<u8>, String)> =
        sqlx::query_as("SELECT update_key, payload, error FROM dead_letters ORDER BY id")
            .fetch_all(&wa.hub.pool)
            .await
            .unwrap();
    assert_eq!(parked.len(), 2, "{parked:?}");
    assert_eq!(parked[0].0, bad);
    let payload: Value = serde_json::from_slice(&parked[0].1).unwrap();
    assert_eq!(
        payload["entry"][0]["changes"][0]["value"]["messages"][0]["location"]["latitude"], "north",
        "the item alone, as received"
    );
    assert!(parked[0].2.contains("cannot read"), "{}", parked[0].2);
    assert!(parked[1].0.starts_with("unreadable-"), "{}", parked[1].0);
    assert_eq!(wa.count("SELECT count(*) FROM messages WHERE direction = 'in'").await, 5);
    let _ = (nul, ok1, ok2);
}

#[tokio::test]
async fn rate_limits_are_waited_for_and_a_refused_token_makes_the_account_unhealthy() {
    let (wa, mut alice, connector, interaction, user) = conversation().await;
    let fake = wa.cloud();

    fake.fail_next(400, 130429, "Rate limit hit");
    let m = send(&mut alice, &interaction, "r1", json!({"text": "the number is busy"})).await;
    assert_eq!(m["status"], "sent", "{m}");
    fake.fail_next(429, 131056, "(Business Account, Consumer Account) pair rate limit hit");
    let m = send(&mut alice, &interaction, "r2", json!({"text": "too many to Anna"})).await;
    assert_eq!(m["status"], "sent", "{m}");
    let calls: Vec<_> = fake.calls().into_iter().filter(|c| c.body["text"]["body"] == "too many to Anna").collect();
    assert_eq!(calls.iter().map(|c| c.status).collect::<Vec<_>>(), vec![429, 200]);
    assert!(calls[1].at - calls[0].at >= Duration::from_secs(6), "the customer's pace: about one every 6 s");
    assert_eq!(fake.sent_to(&user.wa_id).iter().filter(|s| s.body["text"]["body"] == "too many to Anna").count(), 1);

    // an expired token: reported, and the message waits instead of failing
    fake.fail_next(401, 190, "Error validating access token: Session has expired");
    let sent = alice
        .call("message.send", json!({"interaction_id": interaction, "client_msg_id": "r3", "text": "token?"}))
        .await;
    let id = sent["data"]["id"].as_str().unwrap().to_owned();
    eventually("the account is reported", WAIT, || async {
        connector
            .runtime
            .problems()
            .iter()
            .any(|(account, why)| *account == wa.account_id && why.contains("access token"))
    })
    .await;
    let s = alice
        .event_where("message.status", |d| d["message"]["id"] == id.as_str() && d["message"]["status"] == "sent")
        .await;
    assert_eq!(s["data"]["message"]["status"], "sent", "retried once the token works again, never failed");
    eventually("the report is cleared", WAIT, || async { connector.runtime.problems().is_empty() }).await;
    assert_eq!(wa.count("SELECT count(*) FROM messages WHERE status = 'failed'").await, 0);
}
