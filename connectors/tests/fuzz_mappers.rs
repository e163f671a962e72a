//! Generated inputs for every platform's update parser: what a messenger (or anyone who can reach
//! the webhook route) sends is parsed and mapped without a panic, whatever it is. Each target
//! starts from valid payloads of its platform and mutates them, or builds JSON from the
//! platform's own keys, or sends random bytes. The suite runs a short round of each; the long
//! runs are `#[ignore]`d: `FUZZ_INPUTS=1000000 cargo test -p connectors --test fuzz_mappers --
//! --ignored --nocapture`.

use serde_json::json;
use testenv::fuzz::{Gen, Report, inputs, run};
use uuid::Uuid;

/// A hostile variant of one of `seeds`: a mutation, JSON from `keys`, or random text.
fn input(g: &mut Gen, seeds: &[String], keys: &[&str]) -> Vec<u8> {
    match g.below(10) {
        0..=5 => {
            let seed = g.below(seeds.len());
            g.mutate(&seeds[seed]).into_bytes()
        }
        6..=8 => g.json(keys, 5).to_string().into_bytes(),
        _ => g.string(200).into_bytes(),
    }
}

fn telegram(count: u64) -> Report {
    let seeds: Vec<String> = [
        json!({"update_id": 1, "message": {"message_id": 5, "date": 1767225600,
            "from": {"id": 42, "is_bot": false, "first_name": "Olga"},
            "chat": {"id": 42, "type": "private", "first_name": "Olga"}, "text": "hi"}}),
        json!({"update_id": 2, "message": {"message_id": 6, "date": 1767225600,
            "from": {"id": 42, "is_bot": false, "first_name": "Olga"}, "chat": {"id": 42, "type": "private"},
            "photo": [{"file_id": "a", "file_unique_id": "b", "width": 9, "height": 9, "file_size": 10}], "caption": "c"}}),
        json!({"update_id": 3, "callback_query": {"id": "q", "from": {"id": 42, "is_bot": false, "first_name": "O"},
            "chat_instance": "x", "data": "d"}}),
        json!({"update_id": 4, "edited_message": {"message_id": 5, "date": 1767225600, "edit_date": 1767225601,
            "from": {"id": 42, "is_bot": false, "first_name": "Olga"}, "chat": {"id": 42, "type": "private"}, "text": "x"}}),
    ]
    .iter()
    .map(|v| v.to_string())
    .collect();
    let keys = [
        "update_id",
        "message",
        "message_id",
        "date",
        "from",
        "chat",
        "id",
        "type",
        "text",
        "photo",
        "file_id",
        "caption",
        "callback_query",
        "data",
        "edited_message",
        "contact",
        "location",
        "document",
        "sticker",
        "forward_origin",
        "reply_to_message",
        "is_bot",
        "first_name",
    ];
    run("telegram updates", count, |g, _| {
        let raw = input(g, &seeds, &keys);
        let (_, parsed) = connectors::telegram::receive::parse(&raw);
        if let Ok(update) = parsed {
            let _ = connectors::telegram::mapping::map_update(Uuid::nil(), &update);
        }
    })
}

fn viber(count: u64) -> Report {
    let seeds: Vec<String> = [
        json!({"event": "message", "timestamp": 1767225600123u64, "message_token": 5841339410130812001u64,
            "sender": {"id": "01234567890A=", "name": "Olga", "avatar": "https://x/y"},
            "message": {"type": "text", "text": "hi"}}),
        json!({"event": "message", "timestamp": 1, "message_token": 2, "sender": {"id": "u", "name": "O"},
            "message": {"type": "picture", "media": "https://x/p.jpg", "file_name": "p.jpg", "size": 10}}),
        json!({"event": "delivered", "timestamp": 1, "message_token": 3, "user_id": "u"}),
        json!({"event": "conversation_started", "timestamp": 1, "message_token": 4, "type": "open",
            "user": {"id": "u", "name": "O"}, "subscribed": false}),
    ]
    .iter()
    .map(|v| v.to_string())
    .collect();
    let keys = [
        "event",
        "timestamp",
        "message_token",
        "sender",
        "id",
        "name",
        "avatar",
        "message",
        "type",
        "text",
        "media",
        "file_name",
        "size",
        "location",
        "lat",
        "lon",
        "contact",
        "phone_number",
        "sticker_id",
        "user",
        "user_id",
        "desc",
        "subscribed",
    ];
    run("viber callbacks", count, |g, _| {
        let raw = input(g, &seeds, &keys);
        let _ = connectors::viber::mapping::parse_callback(Uuid::nil(), &raw);
    })
}

fn vk(count: u64) -> Report {
    let seeds: Vec<String> = [
        json!({"type": "message_new", "event_id": "e1", "group_id": 1, "object": {"message": {"id": 7,
            "date": 1767225600, "peer_id": 42, "from_id": 42, "text": "hi", "attachments": []}}}),
        json!({"type": "message_new", "group_id": 1, "object": {"message": {"id": 8, "date": 1, "peer_id": 42,
            "from_id": 42, "text": "", "attachments": [{"type": "photo", "photo": {"sizes": [{"type": "x",
            "url": "https://x/p.jpg", "width": 9, "height": 9}]}}]}}}),
        json!({"type": "message_allow", "group_id": 1, "object": {"user_id": 42, "key": "k"}}),
        json!({"type": "message_event", "group_id": 1, "object": {"user_id": 42, "peer_id": 42,
            "event_id": "ev", "payload": {"b": 1}}}),
    ]
    .iter()
    .map(|v| v.to_string())
    .collect();
    let keys = [
        "type",
        "event_id",
        "group_id",
        "object",
        "message",
        "id",
        "date",
        "peer_id",
        "from_id",
        "text",
        "attachments",
        "photo",
        "sizes",
        "url",
        "doc",
        "sticker",
        "audio_message",
        "geo",
        "fwd_messages",
        "reply_message",
        "user_id",
        "payload",
        "secret",
    ];
    run("vk updates", count, |g, _| {
        let raw = input(g, &seeds, &keys);
        let _ = connectors::vk::mapping::parse_update(Uuid::nil(), &raw);
    })
}

fn ok(count: u64) -> Report {
    let seeds: Vec<String> = [
        json!({"webhookType": "MESSAGE_CREATED", "recipient": {"chat_id": "chat:C1"},
            "sender": {"user_id": "user:U1", "name": "Olga"}, "timestamp": 1767225600000u64,
            "message": {"text": "hi", "mid": "mid.1"}}),
        json!({"webhookType": "MESSAGE_CALLBACK", "callbackId": "cb1", "payload": "p",
            "sender": {"user_id": "user:U1", "name": "O"}, "recipient": {"chat_id": "chat:C1"}, "timestamp": 1}),
        json!({"webhookType": "CHAT_SYSTEM", "type": "USER_ADDED", "chat_id": "chat:C1", "timestamp": 1}),
    ]
    .iter()
    .map(|v| v.to_string())
    .collect();
    let keys = [
        "webhookType",
        "recipient",
        "chat_id",
        "sender",
        "user_id",
        "name",
        "timestamp",
        "message",
        "text",
        "mid",
        "attachments",
        "type",
        "payload",
        "url",
        "callbackId",
        "reply_to",
    ];
    run("ok updates", count, |g, _| {
        let raw = input(g, &seeds, &keys);
        let _ = connectors::ok::mapping::parse_update(Uuid::nil(), &raw);
    })
}

fn whatsapp(count: u64) -> Report {
    let seeds: Vec<String> = [
        json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages",
            "value": {"messaging_product": "whatsapp", "metadata": {"phone_number_id": "p"},
            "contacts": [{"profile": {"name": "Olga"}, "wa_id": "79990001122"}],
            "messages": [{"from": "79990001122", "id": "wamid.1", "timestamp": "1767225600", "type": "text",
            "text": {"body": "hi"}}]}}]}]}),
        json!({"object": "whatsapp_business_account", "entry": [{"changes": [{"field": "messages", "value": {
            "statuses": [{"id": "wamid.2", "status": "read", "timestamp": "1", "recipient_id": "7999"}]}}]}]}),
    ]
    .iter()
    .map(|v| v.to_string())
    .collect();
    let infobip: Vec<String> = [json!({"results": [{"from": "79990001122", "to": "447", "integrationType": "WHATSAPP",
        "receivedAt": "2026-01-01T00:00:00.000+0000", "messageId": "m1", "message": {"type": "TEXT", "text": "hi"},
        "contact": {"name": "Olga"}}]})]
    .iter()
    .map(|v| v.to_string())
    .collect();
    let keys = [
        "object",
        "entry",
        "id",
        "changes",
        "field",
        "value",
        "messages",
        "from",
        "timestamp",
        "type",
        "text",
        "body",
        "image",
        "caption",
        "statuses",
        "status",
        "errors",
        "code",
        "title",
        "contacts",
        "wa_id",
        "profile",
        "name",
        "interactive",
        "button_reply",
        "list_reply",
        "reaction",
        "location",
        "results",
        "messageId",
        "message",
        "receivedAt",
        "to",
        "url",
    ];
    run("whatsapp webhooks", count, |g, i| {
        if i % 3 == 0 {
            let raw = input(g, &infobip, &keys);
            let _ = connectors::whatsapp::infobip::parse(Uuid::nil(), &raw);
        } else {
            let raw = input(g, &seeds, &keys);
            let _ = connectors::whatsapp::cloud::parse(Uuid::nil(), &raw);
        }
    })
}

#[test]
fn every_platform_parser_takes_generated_input_without_a_panic() {
    for target in [telegram, viber, vk, ok, whatsapp] {
        target(inputs(3_000));
    }
}

#[test]
#[ignore = "a long run: FUZZ_INPUTS=1000000 cargo test -p connectors --test fuzz_mappers -- --ignored --nocapture"]
fn long_run_of_every_platform_parser() {
    for target in [telegram, viber, vk, ok, whatsapp] {
        target(inputs(1_000_000));
    }
}
