//! The WhatsApp connector through Infobip, end to end: the fake Infobip on one side (unsigned
//! webhooks to a URL holding the account's token, send endpoints validated like Infobip's,
//! files fetched by URL, delivery and seen reports, the 24-hour window on a virtual clock), the
//! real chatserver and file server with a real WebSocket agent on the other, real PostgreSQL and
//! ZooKeeper between.

mod harness;
#[path = "harness/whatsapp.rs"]
mod wa_hub;

use std::time::Duration;

use harness::{Client, WAIT, eventually};
use serde_json::{Value, json};
use wa_hub::{Provider, WEBHOOK_TOKEN, WaHub, customer_message, file_of, send, spawn_wa_hub};

const ANNA: &str = "4915112345678";

async fn conversation(settings: Value, credentials: Value) -> (WaHub, Client, harness::Connector, String) {
    let wa = spawn_wa_hub(Provider::Infobip, settings, credentials).await;
    let mut alice = wa.hub.ready_agent("alice").await;
    let connector = wa.start_connector().await;
    wa.infobip().text(ANNA, "Anna Berg", "Hello, where is order 7731?");
    let interaction = wa.hub.accept_next(&mut alice).await;
    (wa, alice, connector, interaction)
}

#[tokio::test]
async fn every_kind_of_customer_message_reaches_the_agent_with_its_file() {
    let (wa, mut alice, _connector, interaction) = conversation(json!({}), json!({})).await;
    let fake = wa.infobip();
    let customer: (String, Option<String>) =
        sqlx::query_as("SELECT name, phone FROM customers").fetch_one(&wa.hub.pool).await.unwrap();
    assert_eq!(customer, ("Anna Berg".to_owned(), Some("+4915112345678".to_owned())), "from is the customer's phone");

    for (kind, hub_kind, bytes, mime, caption, filename) in [
        ("IMAGE", "image", b"\xff\xd8\xff photo".to_vec(), "image/jpeg", Some("the receipt"), None),
        ("VIDEO", "video", b"\x00\x00\x00\x18ftypmp42".to_vec(), "video/mp4", None, None),
        ("AUDIO", "audio", b"ID3 song".to_vec(), "audio/mpeg", None, None),
        ("VOICE", "voice", b"OggS note".to_vec(), "audio/ogg", None, None),
        (
            "DOCUMENT",
            "document",
            b"%PDF-1.4 invoice".to_vec(),
            "application/pdf",
            Some("my invoice"),
            Some("invoice.pdf"),
        ),
        ("STICKER", "sticker", b"RIFF\x10\x00\x00\x00WEBPVP8".to_vec(), "image/webp", None, None),
    ] {
        let mut extra = json!({});
        if let Some(caption) = caption {
            extra["caption"] = json!(caption);
        }
        if let Some(filename) = filename {
            extra["filename"] = json!(filename);
        }
        fake.file(ANNA, "Anna Berg", kind, (bytes.clone().into(), mime), extra);
        let m = customer_message(&mut alice, hub_kind).await;
        assert_eq!(m["interaction_id"], interaction.as_str());
        let (got, name, got_mime) = file_of(&wa.hub, &m).await;
        assert_eq!((got, got_mime.as_str()), (bytes, mime), "{kind}");
        if let Some(caption) = caption {
            assert_eq!(m["text"], caption, "{kind}");
        }
        if let Some(filename) = filename {
            assert_eq!(name, filename);
        }
    }
    fake.inbound(ANNA, "Anna Berg", json!({"type": "LOCATION", "latitude": 52.5163, "longitude": 13.3777, "name": "Pick-up point", "address": "Pariser Platz 1"}));
    let m = customer_message(&mut alice, "location").await;
    assert_eq!(m["location"], json!({"lat": 52.5163, "lon": 13.3777, "address": "Pick-up point, Pariser Platz 1"}));
    fake.inbound(
        ANNA,
        "Anna Berg",
        json!({"type": "CONTACT", "contacts": [{"name": {"firstName": "Jan", "formattedName": "Jan Kowalski"},
        "phones": [{"phone": "+48600100200", "type": "CELL"}]}]}),
    );
    let m = customer_message(&mut alice, "contact").await;
    assert_eq!(m["contact"], json!({"phone": "+48600100200", "name": "Jan Kowalski"}));
    fake.inbound(ANNA, "Anna Berg", json!({"type": "INTERACTIVE_BUTTON_REPLY", "id": "refund", "title": "Refund"}));
    alice.event_where("message.new", |d| d["message"]["text"] == "refund").await;
    fake.inbound(ANNA, "Anna Berg", json!({"type": "INTERACTIVE_LIST_REPLY", "id": "slot-3", "title": "Friday 10-12"}));
    alice.event_where("message.new", |d| d["message"]["text"] == "slot-3").await;
    fake.text(ANNA, "Anna Berg", "Danke schön 👋");
    alice.event_where("message.new", |d| d["message"]["text"] == "Danke schön 👋").await;
    assert_eq!(wa.count("SELECT count(*) FROM messages WHERE direction = 'in'").await, 12);
    assert_eq!(wa.count("SELECT count(*) FROM dead_letters").await, 0);
}

#[tokio::test]
async fn every_kind_the_agent_sends_goes_out_files_by_url() {
    let (wa, mut alice, _connector, interaction) = conversation(json!({}), json!({})).await;
    let fake = wa.infobip();

    let m = send(&mut alice, &interaction, "t1", json!({"text": "Your parcel left the warehouse."})).await;
    assert_eq!(m["status"], "sent", "{m}");
    let out = fake.sent_to(ANNA).pop().unwrap();
    assert_eq!(
        (out.endpoint.as_str(), out.body["content"]["text"].as_str()),
        ("text", Some("Your parcel left the warehouse."))
    );
    assert!(out.message_id.starts_with("sb-"), "our messageId: {}", out.message_id);
    assert!(
        out.body["notifyUrl"].as_str().unwrap().ends_with(&format!("?token={WEBHOOK_TOKEN}")),
        "delivery reports come back with the token"
    );
    let stored: String = sqlx::query_scalar("SELECT external_message_id FROM messages WHERE id = $1::uuid")
        .bind(m["id"].as_str().unwrap())
        .fetch_one(&wa.hub.pool)
        .await
        .unwrap();
    assert_eq!(stored, out.message_id);

    for (n, (name, mime, endpoint, bytes)) in [
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
        let out = fake.sent_to(ANNA).pop().unwrap();
        assert_eq!(out.endpoint, endpoint, "{name}");
        let url = out.body["content"]["mediaUrl"].as_str().unwrap();
        let fetched = fake.fetched().into_iter().find(|f| f.url == url).expect("Infobip fetched the file");
        assert_eq!(
            (fetched.status, fetched.bytes.to_vec()),
            (200, bytes),
            "{name}: the file server's signed link works without a token"
        );
        if endpoint == "document" {
            assert_eq!(out.body["content"]["filename"], "invoice.pdf");
        }
    }

    let webp = wa.hub.upload("hi.webp", "image/webp", b"RIFF\x10\x00\x00\x00WEBPVP8 hi".to_vec()).await;
    let m = send(&mut alice, &interaction, "s1", json!({"sticker": {"file_id": webp}})).await;
    assert_eq!((m["status"].as_str(), fake.sent_to(ANNA).pop().unwrap().endpoint.as_str()), (Some("sent"), "sticker"));
    let m = send(&mut alice, &interaction, "s2", json!({"sticker": {"sticker_id": "2210987654329"}})).await;
    assert_eq!(m["status"], "failed", "Infobip has no stickers by id: {m}");
    assert!(m["error"].as_str().unwrap().contains("as files"), "{m}");

    send(
        &mut alice,
        &interaction,
        "l1",
        json!({"location": {"lat": 52.5163, "lon": 13.3777, "address": "Pariser Platz 1"}}),
    )
    .await;
    let out = fake.sent_to(ANNA).pop().unwrap();
    assert_eq!((out.endpoint.as_str(), out.body["content"]["latitude"].as_f64()), ("location", Some(52.5163)));
    send(&mut alice, &interaction, "c1", json!({"contact": {"phone": "+49 30 1234", "name": "Courier desk"}})).await;
    let out = fake.sent_to(ANNA).pop().unwrap();
    assert_eq!(out.body["content"]["contacts"][0]["phones"][0]["phone"], "+49 30 1234");

    send(&mut alice, &interaction, "b1", json!({"text": "Refund or resend?",
        "keyboard": {"type": "inline", "rows": [[{"text": "Refund", "data": "refund"}, {"text": "Resend", "data": "resend"}]]}}))
    .await;
    let out = fake.sent_to(ANNA).pop().unwrap();
    assert_eq!(out.endpoint, "interactive/buttons");
    assert_eq!(
        out.body["content"]["action"]["buttons"][0],
        json!({"type": "REPLY", "id": "refund", "title": "Refund"})
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
    let out = fake.sent_to(ANNA).pop().unwrap();
    assert_eq!(out.endpoint, "interactive/list");
    assert_eq!(out.body["content"]["action"]["sections"][0]["rows"].as_array().unwrap().len(), 5);
}

#[tokio::test]
async fn delivery_and_seen_reports_reach_the_agent() {
    let (wa, mut alice, _connector, interaction) = conversation(json!({}), json!({})).await;
    let fake = wa.infobip();
    fake.set_auto_reports(true);
    let m = send(&mut alice, &interaction, "r1", json!({"text": "On its way."})).await;
    let id = m["id"].as_str().unwrap().to_owned();
    for status in ["delivered", "read"] {
        alice
            .event_where("message.status", |d| d["message"]["id"] == id.as_str() && d["message"]["status"] == status)
            .await;
    }
    fake.set_auto_reports(false);
    let m = send(&mut alice, &interaction, "r2", json!({"text": "And another."})).await;
    let id = m["id"].as_str().unwrap().to_owned();
    let message_id = fake.sent_to(ANNA).pop().unwrap().message_id;
    fake.report(&message_id, "UNDELIVERABLE", Some(("EC_UNKNOWN_SUBSCRIBER", "The number is not on WhatsApp")));
    let s = alice
        .event_where("message.status", |d| d["message"]["id"] == id.as_str() && d["message"]["status"] == "failed")
        .await;
    assert_eq!(
        s["data"]["message"]["error"],
        "WhatsApp (Infobip) could not deliver it: The number is not on WhatsApp (EC_UNKNOWN_SUBSCRIBER)"
    );
}

#[tokio::test]
async fn the_24_hour_window_templates_and_a_customer_who_writes_again() {
    let wa = spawn_wa_hub(Provider::Infobip, json!({}), json!({})).await;
    let mut alice = wa.hub.ready_agent("alice").await;
    let _connector = wa.start_connector().await;
    let fake = wa.infobip();
    wa.add_template("order_update", "en", "Hello {{1}}, your order {{2}} has shipped.").await;

    fake.set_clock(-chrono::Duration::hours(25));
    fake.text(ANNA, "Anna Berg", "Is anybody there?");
    let interaction = wa.hub.accept_next(&mut alice).await;
    fake.set_clock(chrono::Duration::zero());

    let refused = alice
        .call(
            "message.send",
            json!({"interaction_id": interaction, "client_msg_id": "late", "text": "Sorry for the wait!"}),
        )
        .await;
    assert_eq!(refused["error"]["code"], "outside_service_window", "{refused}");
    assert!(refused["error"]["message"].as_str().unwrap().contains("closed at"), "{refused}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(wa.count("SELECT count(*) FROM outbox").await, 0, "nothing queued");
    assert!(fake.sent().is_empty(), "nothing sent");

    fake.set_auto_reports(true);
    let m = send(
        &mut alice,
        &interaction,
        "t1",
        json!({"template": {"name": "order_update", "language": "en", "params": ["Anna", "7731"]}}),
    )
    .await;
    assert_eq!(
        (m["status"].as_str(), m["text"].as_str()),
        (Some("sent"), Some("Hello Anna, your order 7731 has shipped."))
    );
    let id = m["id"].as_str().unwrap().to_owned();
    alice
        .event_where("message.status", |d| d["message"]["id"] == id.as_str() && d["message"]["status"] == "delivered")
        .await;
    let out = fake.sent_to(ANNA).pop().unwrap();
    assert_eq!(out.endpoint, "template");
    assert_eq!(
        out.body["content"],
        json!({"templateName": "order_update", "language": "en",
        "templateData": {"body": {"placeholders": ["Anna", "7731"]}}})
    );

    fake.text(ANNA, "Anna Berg", "Thanks! One more question.");
    alice.event_where("message.new", |d| d["message"]["text"] == "Thanks! One more question.").await;
    let m = send(&mut alice, &interaction, "t2", json!({"text": "Of course, ask away."})).await;
    assert_eq!(m["status"], "sent", "the window is open again: {m}");
    let id = m["id"].as_str().unwrap().to_owned();
    alice
        .event_where("message.status", |d| d["message"]["id"] == id.as_str() && d["message"]["status"] == "read")
        .await;

    // where Infobip's clock says the window closed, its REJECTED report fails the message
    fake.set_auto_reports(false);
    fake.set_clock(chrono::Duration::hours(25));
    let m = send(&mut alice, &interaction, "t3", json!({"text": "Still there?"})).await;
    let id = m["id"].as_str().unwrap().to_owned();
    let s = alice
        .event_where("message.status", |d| d["message"]["id"] == id.as_str() && d["message"]["status"] == "failed")
        .await;
    assert!(s["data"]["message"]["error"].as_str().unwrap().contains("24 hours"), "{s}");
}

#[tokio::test]
async fn webhooks_need_the_url_token_the_configured_header_and_an_allowed_address() {
    let wa = spawn_wa_hub(Provider::Infobip, json!({}), json!({"webhook_authorization": "Basic aW5mb2JpcDpzM2NyM3Q="}))
        .await;
    let connector = wa.start_connector_with_authorization("Basic aW5mb2JpcDpzM2NyM3Q=").await;
    let fake = wa.infobip();
    let url = wa.webhook_url(connector.addr);
    let (_, item) = fake.inbound_item(ANNA, "Anna Berg", json!({"type": "TEXT", "text": "forged?"}));
    let body = json!({"results": [item]});
    let raw = serde_json::to_vec(&body).unwrap();
    assert_eq!(fake.post_raw(&url, &raw, true).await.0, 401, "no token in the URL");
    assert_eq!(fake.post_raw(&format!("{url}?token=guessed-token-guessed-token-guess"), &raw, true).await.0, 401);
    let with_token = format!("{url}?token={WEBHOOK_TOKEN}");
    assert_eq!(fake.post_raw(&with_token, &raw, false).await.0, 401, "without the configured Authorization header");
    assert_eq!(wa.count("SELECT count(*) FROM messages").await, 0, "nothing stored");
    assert_eq!(fake.post_raw(&with_token, &raw, true).await.0, 200);
    assert_eq!(wa.count("SELECT count(*) FROM messages").await, 1);
    let get = reqwest::Client::new()
        .get(&with_token)
        .header("authorization", "Basic aW5mb2JpcDpzM2NyM3Q=")
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 400, "Infobip has no handshake");
    connector.stop().await;

    // an allow-list without this address: 401 even with the token
    sqlx::query(
        "UPDATE accounts SET settings = settings || '{\"allowed_ips\": [\"203.0.113.0/24\"]}'::jsonb WHERE id = $1",
    )
    .bind(wa.account_id)
    .execute(&wa.hub.pool)
    .await
    .unwrap();
    let backup = wa.start_backup().await;
    let url = format!("{}?token={WEBHOOK_TOKEN}", wa.webhook_url(backup.addr));
    eventually("refused from 127.0.0.1", WAIT, || async { fake.post_raw(&url, &raw, true).await.0 == 401 }).await;
    assert_eq!(wa.count("SELECT count(*) FROM messages").await, 1, "nothing more stored");
    drop(backup);
}

#[tokio::test]
async fn a_nul_byte_and_unreadable_items_do_not_block_the_others() {
    let (wa, mut alice, _connector, interaction) = conversation(json!({}), json!({})).await;
    let fake = wa.infobip();
    let url = fake.webhook().unwrap();
    fake.text(ANNA, "Anna Berg", "bad\u{0}byte");
    let (_, a) = fake.inbound_item(ANNA, "Anna Berg", json!({"type": "TEXT", "text": "ordinary one"}));
    let (bad, b) =
        fake.inbound_item(ANNA, "Anna Berg", json!({"type": "LOCATION", "latitude": "north", "longitude": 13.4}));
    let (_, c) = fake.inbound_item(ANNA, "Anna Berg", json!({"type": "TEXT", "text": "ordinary two"}));
    let delivery =
        fake.post(&url, &json!({"results": [a, b, c], "messageCount": 3, "pendingMessageCount": 0}), true).await;
    assert_eq!(delivery.status, 200);
    assert_eq!(
        fake.post_raw(&url, b"{\"results\": [", true).await.0,
        200,
        "an unreadable body is parked and acknowledged"
    );
    fake.text(ANNA, "Anna Berg", "after them");
    alice.event_where("message.new", |d| d["message"]["text"] == "after them").await;
    for text in ["bad\u{FFFD}byte", "ordinary one", "ordinary two"] {
        let m = alice.event_where("message.new", |d| d["message"]["text"] == text).await;
        assert_eq!(m["data"]["message"]["interaction_id"], interaction.as_str());
    }
    let parked: Vec<(String, Vec<u8>)> = sqlx::query_as("SELECT update_key, payload FROM dead_letters ORDER BY id")
        .fetch_all(&wa.hub.pool)
        .await
        .unwrap();
    assert_eq!(parked.len(), 2);
    assert_eq!(parked[0].0, bad);
    let payload: Value = serde_json::from_slice(&parked[0].1).unwrap();
    assert_eq!(payload["results"][0]["message"]["latitude"], "north");
    assert!(parked[1].0.starts_with("unreadable-"));
    assert_eq!(wa.count("SELECT count(*) FROM messages WHERE direction = 'in'").await, 5);
}

#[tokio::test]
async fn too_many_requests_is_waited_for_and_a_refused_key_makes_the_account_unhealthy() {
    let (wa, mut alice, connector, interaction) = conversation(json!({}), json!({})).await;
    let fake = wa.infobip();
    fake.fail_next(429, "TOO_MANY_REQUESTS", "Too many requests");
    let m = send(&mut alice, &interaction, "r1", json!({"text": "slow down"})).await;
    assert_eq!(m["status"], "sent", "{m}");
    let calls: Vec<_> = fake.calls().into_iter().filter(|c| c.body["content"]["text"] == "slow down").collect();
    assert_eq!(calls.iter().map(|c| c.status).collect::<Vec<_>>(), vec![429, 200]);
    assert_eq!(calls[0].body["messageId"], calls[1].body["messageId"], "the same messageId on the retry");

    fake.fail_next(401, "UNAUTHORIZED", "Invalid login details");
    let sent =
        alice.call("message.send", json!({"interaction_id": interaction, "client_msg_id": "r2", "text": "key?"})).await;
    let id = sent["data"]["id"].as_str().unwrap().to_owned();
    eventually("the account is reported", WAIT, || async {
        connector.runtime.problems().iter().any(|(account, why)| *account == wa.account_id && why.contains("api_key"))
    })
    .await;
    alice
        .event_where("message.status", |d| d["message"]["id"] == id.as_str() && d["message"]["status"] == "sent")
        .await;
    eventually("the report is cleared", WAIT, || async { connector.runtime.problems().is_empty() }).await;
    assert_eq!(wa.count("SELECT count(*) FROM messages WHERE status = 'failed'").await, 0);
}
