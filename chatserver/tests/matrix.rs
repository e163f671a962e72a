//! The capability matrix at `message.send`: on every channel, every feature an agent's message
//! can need is accepted where the channel does it and refused with `unsupported_by_channel`,
//! naming the channel and the feature, where it does not; nothing refused is queued.

mod harness;

use std::time::Duration;

use harness::spawn_app;
use schema::domain::{Channel, Feature, MessageKind};
use schema::store::{self, InboundMessage, Ingested, NewAccount, Sender};
use serde_json::{Value, json};
use uuid::Uuid;

/// A file row of this type (the bytes are never read here).
async fn file(pool: &sqlx::PgPool, mime: &str) -> Uuid {
    let id = Uuid::now_v7();
    sqlx::query("INSERT INTO files (id, name, mime, size, sha256, storage_key) VALUES ($1, 'f', $2, 100, 'x', $3)")
        .bind(id)
        .bind(mime)
        .bind(format!("test/{id}"))
        .execute(pool)
        .await
        .unwrap();
    id
}

/// The `message.send` args that need exactly `feature` (besides text where it needs one), or
/// `None` for matrix lines that are not about what an agent sends.
async fn args_for(pool: &sqlx::PgPool, feature: Feature, forwardable: Uuid) -> Option<Value> {
    let files = |mime: &'static str| async move { json!({"file_ids": [file(pool, mime).await]}) };
    Some(match feature {
        Feature::Chat => json!({"text": "hello"}),
        Feature::ReplyKeyboard => json!({"text": "pick", "keyboard": {"type": "reply", "rows": [[{"text": "A"}]]}}),
        Feature::InlineButtons => {
            json!({"text": "pick", "keyboard": {"type": "inline", "rows": [[{"text": "A", "data": "a"}]]}})
        }
        Feature::SendImages => files("image/png").await,
        Feature::SendVideo => files("video/mp4").await,
        Feature::SendAudio => files("audio/mpeg").await,
        Feature::SendVoice => files("audio/ogg").await,
        Feature::SendDocuments => files("application/pdf").await,
        Feature::SendStickers => json!({"sticker": {"sticker_id": "CAACAgIAAxkB"}}),
        Feature::SendContact => json!({"contact": {"phone": "+70000000000", "name": "Desk"}}),
        Feature::SendLocation => json!({"location": {"lat": 55.75, "lon": 37.61}}),
        Feature::Forward => json!({"forward": {"message_id": forwardable}}),
        _ => return None,
    })
}

#[tokio::test]
async fn message_send_walks_the_whole_matrix_on_every_channel() {
    let app = spawn_app(30_000).await;
    app.agent("alice", &["support"], 100, &["agent"]).await;
    let mut alice = app.connect("alice", &["agent"]).await;
    let mut checked = 0;
    for (n, channel) in Channel::ALL.iter().copied().enumerate() {
        let (interaction, forwardable) = {
            let mut conn = app.pool.begin().await.unwrap();
            let account = store::create_account(
                &mut conn,
                &NewAccount {
                    channel,
                    name: format!("{channel} account"),
                    default_queue: "support".into(),
                    credentials: json!({}),
                    settings: json!({}),
                },
            )
            .await
            .unwrap();
            let msg = InboundMessage {
                account_id: account.id,
                external_message_id: format!("m-{n}"),
                chat_id: format!("chat-{n}"),
                sender: Sender { external_id: format!("c-{n}"), name: "Customer".into(), ..Default::default() },
                kind: MessageKind::Text,
                text: Some("hi".into()),
                ..Default::default()
            };
            let Ingested::Stored { interaction, message, .. } =
                store::ingest_inbound(&mut conn, &msg, Duration::from_secs(60)).await.unwrap()
            else {
                panic!("stored");
            };
            // the customer just wrote (WhatsApp's module records it): inside any service window
            store::whatsapp::record_inbound_time(&mut conn, account.id, &msg.sender.external_id, chrono::Utc::now())
                .await
                .unwrap();
            store::take(&mut conn, interaction.id, "alice", true).await.unwrap();
            conn.commit().await.unwrap();
            (interaction.id, message.id)
        };
        let caps = channel.capabilities();
        for feature in Feature::ALL.iter().copied() {
            let Some(mut args) = args_for(&app.pool, feature, forwardable).await else { continue };
            args["interaction_id"] = json!(interaction);
            args["client_msg_id"] = json!(format!("{channel}-{feature:?}"));
            let reply = alice.call("message.send", args).await;
            if caps.has(feature) {
                assert_eq!(reply["ok"], true, "{channel} does {}: {reply}", feature.label());
            } else {
                assert_eq!(reply["error"]["code"], "unsupported_by_channel", "{channel}, {}: {reply}", feature.label());
                let message = reply["error"]["message"].as_str().unwrap();
                assert_eq!(message, format!("{channel} does not support {}", feature.label()));
            }
            checked += 1;
        }
        // the agent's own messages: edit and delete
        let sent = alice
            .call(
                "message.send",
                json!({"interaction_id": interaction, "client_msg_id": format!("{channel}-own"), "text": "mine"}),
            )
            .await;
        let own = sent["data"]["id"].clone();
        let edited = alice.call("message.edit", json!({"message_id": own, "text": "mine, edited"})).await;
        let deleted = alice.call("message.delete", json!({"message_id": own})).await;
        for reply in [edited, deleted] {
            if caps.has(Feature::EditDeleteOwn) {
                assert_eq!(reply["ok"], true, "{channel}: {reply}");
            } else {
                assert_eq!(reply["error"]["code"], "unsupported_by_channel", "{channel}: {reply}");
            }
        }
        // a reply keyboard asking for the customer's phone
        if caps.has(Feature::ReplyKeyboard) {
            let reply = alice
                .call(
                    "message.send",
                    json!({"interaction_id": interaction, "client_msg_id": format!("{channel}-phone"), "text": "phone?",
                           "keyboard": {"type": "reply", "rows": [[{"text": "Share", "request_phone": true}]]}}),
                )
                .await;
            let expected = if caps.has(Feature::CustomerPhone) { Value::Bool(true) } else { Value::Bool(false) };
            assert_eq!(reply["ok"], expected, "{channel}: {reply}");
        }
    }
    assert_eq!(checked, 12 * Channel::ALL.len(), "every sendable line on every channel");
    // nothing refused was queued: every outbox row is a message the channel can carry
    let queued: i64 = app.count("SELECT count(*) FROM outbox").await;
    let accepted: i64 = app.count("SELECT count(*) FROM messages WHERE direction = 'out'").await;
    assert_eq!(queued, accepted + app.count("SELECT count(*) FROM outbox WHERE action <> 'send'").await);
}
