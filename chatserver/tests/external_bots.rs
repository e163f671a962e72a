//! External bots on the agent WebSocket (docs/bots.md, "External bots"): with the account's
//! `settings.external_bot`, a new conversation opens in state `bot` for the bots (role `bot`)
//! serving its queue. A bot sees only its queues' conversations, writes through the outbox like an
//! agent, hands off with `bot.handoff` (its fields on the agent's offer), and once a person has
//! the conversation every write of the bot is refused with `bot_fenced`.

mod harness;

use std::time::Duration;

use harness::{spawn_app, token};
use schema::store::Ingested;
use serde_json::{Value, json};

fn opened(ingested: &Ingested) -> (String, String) {
    match ingested {
        Ingested::Stored { interaction, .. } => (interaction.id.to_string(), interaction.state.as_str().to_owned()),
        Ingested::Duplicate { .. } => panic!("a new message was taken for a repeat"),
    }
}

fn error_code(reply: &Value) -> &str {
    assert_eq!(reply["ok"], false, "{reply}");
    reply["error"]["code"].as_str().unwrap()
}

/// The next live (not replayed) `message.new` with this text.
async fn message_with_text(client: &mut harness::Client, text: &str) -> Value {
    loop {
        let event = client.event("message.new").await;
        if event["data"]["message"]["text"] == text && event["data"]["catch_up"] != true {
            return event;
        }
    }
}

/// Whether a `message.new` with this text reaches the client within half a second.
async fn heard(client: &mut harness::Client, text: &str) -> bool {
    let mut seen = Vec::new();
    while !client.no_event("message.new", Duration::from_millis(500)).await {
        seen.push(client.event("message.new").await);
    }
    seen.iter().any(|e| e["data"]["message"]["text"] == text)
}

async fn external_bots(app: &harness::TestApp) {
    sqlx::query("UPDATE accounts SET settings = settings || '{\"external_bot\": true}' WHERE id = $1")
        .bind(app.account_id)
        .execute(&app.pool)
        .await
        .unwrap();
}

async fn default_queue(app: &harness::TestApp, queue: &str) {
    sqlx::query("UPDATE accounts SET default_queue = $2 WHERE id = $1")
        .bind(app.account_id)
        .bind(queue)
        .execute(&app.pool)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_bot_sees_only_its_queues_writes_and_hands_off_to_an_agent() {
    let app = spawn_app(30_000).await;
    external_bots(&app).await;
    app.agent("support-bot", &["support"], 0, &["bot"]).await;
    app.agent("vip-bot", &["vip"], 0, &["bot"]).await;
    app.agent("alice", &["support"], 3, &["agent"]).await;
    let mut support_bot = app.connect("support-bot", &["bot"]).await;
    let mut vip_bot = app.connect("vip-bot", &["bot"]).await;
    let mut alice = app.connect("alice", &["agent"]).await;
    let ready = alice.call("agent.set_status", json!({"status": "ready"})).await;
    assert_eq!(ready["ok"], true, "{ready}");

    // a conversation of `support`: the support bot has it, nobody else sees it, routing leaves it
    let (id, state) = opened(&app.inbound("u1", "m1", "Where is my order?").await);
    assert_eq!(state, "bot");
    let seen = support_bot.event("message.new").await;
    assert_eq!(seen["data"]["message"]["text"], "Where is my order?");
    assert_eq!(seen["data"]["message"]["interaction_id"], id.as_str());
    assert!(vip_bot.no_event("message.new", Duration::from_millis(500)).await, "another queue's bot saw it");
    assert!(alice.no_event("interaction.offered", Duration::from_millis(500)).await, "routing offered the bot's");
    assert!(alice.no_event("message.new", Duration::from_millis(10)).await);

    // a conversation of `vip`: the other way round
    default_queue(&app, "vip").await;
    let (vip_id, state) = opened(&app.inbound("u2", "m2", "Hello VIP").await);
    assert_eq!(state, "bot");
    let seen = vip_bot.event("message.new").await;
    assert_eq!(seen["data"]["message"]["interaction_id"], vip_id.as_str());
    assert!(support_bot.no_event("message.new", Duration::from_millis(500)).await, "another queue's bot saw it");

    // hello lists what each bot owns, and only that
    let mut again = harness::Client::connect(&app.ws_url(), &token("support-bot", &["bot"], 3600)).await.unwrap();
    let hello = again.call("hello", json!({})).await;
    let listed: Vec<&str> =
        hello["data"]["interactions"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap()).collect();
    assert_eq!(listed, vec![id.as_str()], "{hello}");

    // the bot writes like an agent (the outbox, author `bot`); into another queue's it cannot
    let sent = support_bot
        .call(
            "message.send",
            json!({"interaction_id": id, "client_msg_id": "b1", "text": "Your order number, please?"}),
        )
        .await;
    assert_eq!(sent["ok"], true, "{sent}");
    assert_eq!(sent["data"]["author"]["kind"], "bot", "{sent}");
    assert_eq!(app.count("SELECT count(*) FROM outbox WHERE message_id IS NOT NULL").await, 1);
    let foreign =
        support_bot.call("message.send", json!({"interaction_id": vip_id, "client_msg_id": "b2", "text": "hi"})).await;
    assert_eq!(error_code(&foreign), "interaction_not_found", "{foreign}");

    // agents can neither use the bot's commands nor write into the bot's conversation
    let denied =
        alice.call("bot.handoff", json!({"interaction_id": id, "queue": "support", "fields": {"order": "1"}})).await;
    assert_eq!(error_code(&denied), "forbidden", "{denied}");
    let denied = alice.call("message.send", json!({"interaction_id": id, "client_msg_id": "a1", "text": "hi"})).await;
    assert_eq!(error_code(&denied), "interaction_not_found", "{denied}");

    // bad hand-offs are refused with the reason; nothing changes
    let unknown = support_bot.call("bot.handoff", json!({"interaction_id": id, "queue": "nowhere"})).await;
    assert_eq!(error_code(&unknown), "not_found", "{unknown}");
    let bad = support_bot
        .call("bot.handoff", json!({"interaction_id": id, "queue": "support", "fields": {" order": "x"}}))
        .await;
    assert_eq!(error_code(&bad), "bad_request", "{bad}");
    let bad = support_bot
        .call("bot.handoff", json!({"interaction_id": id, "queue": "support", "fields": {"order": "a\u{0}b"}}))
        .await;
    assert_eq!(error_code(&bad), "bad_request", "{bad}");

    // the hand-off: routing offers the conversation to alice with what the bot collected
    let handed = support_bot
        .call("bot.handoff", json!({"interaction_id": id, "queue": "support", "fields": {"order": "7731"}}))
        .await;
    assert_eq!(handed["ok"], true, "{handed}");
    assert_eq!(handed["data"]["state"], "queued", "{handed}");
    let offer = alice.event("interaction.offered").await;
    assert_eq!(offer["data"]["interaction"]["id"], id.as_str());
    assert_eq!(offer["data"]["interaction"]["fields"]["order"], "7731", "{offer}");

    // from the hand-off on the bot is fenced out: its writes are refused with bot_fenced
    let late =
        support_bot.call("message.send", json!({"interaction_id": id, "client_msg_id": "b3", "text": "x"})).await;
    assert_eq!(error_code(&late), "bot_fenced", "{late}");
    let twice = support_bot.call("bot.handoff", json!({"interaction_id": id, "queue": "support"})).await;
    assert_eq!(error_code(&twice), "bot_fenced", "{twice}");
    let accepted = alice.call("interaction.accept", json!({"interaction_id": id})).await;
    assert_eq!(accepted["data"]["state"], "assigned", "{accepted}");
    let late =
        support_bot.call("message.send", json!({"interaction_id": id, "client_msg_id": "b4", "text": "x"})).await;
    assert_eq!(error_code(&late), "bot_fenced", "{late}");
    assert!(late["error"]["message"].as_str().unwrap().contains("alice"), "{late}");
    // and the customer's next words reach alice, not the bot
    app.inbound("u1", "m3", "7731").await;
    let seen = message_with_text(&mut alice, "7731").await;
    assert_eq!(seen["data"]["message"]["interaction_id"], id.as_str());
    assert!(!heard(&mut support_bot, "7731").await, "the bot still hears the customer after the hand-off");
}

#[tokio::test]
async fn a_person_taking_the_conversation_fences_the_bot_and_cancels_its_unsent_message() {
    let app = spawn_app(30_000).await;
    external_bots(&app).await;
    app.agent("support-bot", &["support"], 0, &["bot"]).await;
    app.agent("sue", &["support"], 3, &["supervisor"]).await;
    let mut bot = app.connect("support-bot", &["bot"]).await;
    let mut sue = app.connect("sue", &["supervisor"]).await;
    let (id, _) = opened(&app.inbound("u1", "m1", "hi").await);
    bot.event("message.new").await;
    // queued in the outbox, not sent (no connector runs here)
    let sent =
        bot.call("message.send", json!({"interaction_id": id, "client_msg_id": "b1", "text": "One moment"})).await;
    assert_eq!(sent["ok"], true, "{sent}");
    let message_id = sent["data"]["id"].as_str().unwrap().to_owned();

    let taken = sue.call("interaction.take", json!({"interaction_id": id})).await;
    assert_eq!(taken["data"]["state"], "assigned", "{taken}");
    let late = bot.call("message.send", json!({"interaction_id": id, "client_msg_id": "b2", "text": "x"})).await;
    assert_eq!(error_code(&late), "bot_fenced", "{late}");
    let edit = bot.call("message.edit", json!({"message_id": message_id, "text": "changed"})).await;
    assert_eq!(error_code(&edit), "bot_fenced", "{edit}");
    let handoff = bot.call("bot.handoff", json!({"interaction_id": id, "queue": "support"})).await;
    assert_eq!(error_code(&handoff), "bot_fenced", "{handoff}");
    // the bot's message that had not gone out never will (migration 0017's fence)
    let (status, outbox): (String, String) = sqlx::query_as(
        "SELECT m.status, o.state FROM messages m JOIN outbox o ON o.message_id = m.id WHERE m.id = $1::uuid",
    )
    .bind(&message_id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!((status.as_str(), outbox.as_str()), ("failed", "failed"));
    // the conversation's next words go to sue only
    app.inbound("u1", "m2", "still there?").await;
    message_with_text(&mut sue, "still there?").await;
    assert!(!heard(&mut bot, "still there?").await, "the fenced bot still hears the customer");
}
