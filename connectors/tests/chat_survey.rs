//! The survey after a closed chat, end to end on the fake Telegram: the agent closes the chat,
//! the customer is asked the rating with a 1-5 keyboard, then the account's question; the
//! answers are stored on the interaction (`call_surveys`, source `chat`), told to the agent as
//! `interaction.rated` and queued for the webhook subscribed to it, and the interaction stays
//! closed. A reply that is not an answer, and a reply after the window, end the survey and go
//! to an agent as any message does.

mod harness;

use std::time::Duration;

use connectors::fake::telegram::{Call, TgUser};
use harness::{eventually, spawn_hub};
use serde_json::{Value, json};
use uuid::Uuid;

fn survey_settings() -> Value {
    json!({"chat_survey": {
        "enabled": true,
        "rating_text": "Оцените наш разговор от 1 до 5",
        "questions": [{"id": "improve", "text": "Что нам улучшить?"}]
    }})
}

async fn until_sent(hub: &harness::Hub, agent: &mut harness::Client, chat: &str, text: &str) -> Call {
    let find = |calls: Vec<Call>| calls.into_iter().find(|c| c.ok() && c.chat() == chat && c.param("text") == text);
    let until = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(call) = find(hub.fake.calls_of("sendMessage")) {
            return call;
        }
        assert!(tokio::time::Instant::now() < until, "{text:?} never reached chat {chat}");
        agent.settle(Duration::from_millis(100)).await;
    }
}

/// The customer writes, alice accepts and closes; the rating question reaches the chat.
async fn closed_and_asked(hub: &harness::Hub, alice: &mut harness::Client, customer: &TgUser) -> Uuid {
    hub.fake.text(customer, "здравствуйте");
    let id = hub.accept_next(alice).await;
    let closed = alice.call("interaction.close", json!({"interaction_id": id})).await;
    assert_eq!(closed["ok"], true, "{closed}");
    let asked = until_sent(hub, alice, &customer.id.to_string(), "Оцените наш разговор от 1 до 5").await;
    let keyboard = &asked.param("reply_markup")["keyboard"];
    let buttons: Vec<&str> = (0..5).map(|n| keyboard[n][0]["text"].as_str().unwrap()).collect();
    assert_eq!(buttons, ["1", "2", "3", "4", "5"]);
    id.parse().unwrap()
}

async fn surveys(hub: &harness::Hub, interaction: Uuid) -> Vec<(String, i16, Value)> {
    sqlx::query_as("SELECT source, rating, answers FROM call_surveys WHERE interaction_id = $1")
        .bind(interaction)
        .fetch_all(&hub.pool)
        .await
        .unwrap()
}

async fn waiting(hub: &harness::Hub, interaction: Uuid) -> bool {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM chat_surveys WHERE interaction_id = $1)")
        .bind(interaction)
        .fetch_one(&hub.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn the_customer_answers_the_survey_in_the_chat_and_it_stays_closed() {
    let hub = spawn_hub(survey_settings()).await;
    sqlx::query(
        "INSERT INTO webhook_subscriptions (id, url, events, secret, created_by)
         VALUES ($1, 'http://127.0.0.1:9/hook', '{interaction.rated}', 'webhook-secret', 'test')",
    )
    .bind(Uuid::new_v4())
    .execute(&hub.pool)
    .await
    .unwrap();
    let mut alice = hub.ready_agent("alice").await;
    let _connector = hub.start_connector(connectors::Config::default()).await;
    let customer = TgUser::new(81, "Ольга");
    let id = closed_and_asked(&hub, &mut alice, &customer).await;

    // a typed digit (a keyboard press comes back the same) is the rating; the question follows
    hub.fake.text(&customer, "4");
    until_sent(&hub, &mut alice, "81", "Что нам улучшить?").await;
    assert!(surveys(&hub, id).await.is_empty(), "stored when the survey is over");
    hub.fake.text(&customer, "отвечайте быстрее");
    let rated = alice.event("interaction.rated").await;
    assert_eq!(rated["data"]["source"], "chat", "{rated}");
    assert_eq!(rated["data"]["rating"], 4);
    assert_eq!(rated["data"]["room_id"], Value::Null);
    let answers = json!([{"id": "improve", "question": "Что нам улучшить?", "answer": "отвечайте быстрее"}]);
    assert_eq!(rated["data"]["answers"], answers);
    assert_eq!(surveys(&hub, id).await, vec![("chat".to_owned(), 4, answers)]);
    assert!(!waiting(&hub, id).await);
    let deliveries: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM webhook_deliveries WHERE interaction_id = $1 AND event_type = 'interaction.rated'",
    )
    .bind(id)
    .fetch_one(&hub.pool)
    .await
    .unwrap();
    assert_eq!(deliveries, 1);
    // the answers stayed in the closed chat: nothing reopened, nothing offered
    let (state, count): (String, i64) = sqlx::query_as(
        "SELECT (SELECT state FROM interactions WHERE id = $1),
                (SELECT count(*) FROM messages WHERE interaction_id = $1 AND direction = 'in')",
    )
    .bind(id)
    .fetch_one(&hub.pool)
    .await
    .unwrap();
    assert_eq!((state.as_str(), count), ("closed", 3));
    assert_eq!(hub.count("SELECT count(*) FROM interactions").await, 1);
    alice.settle(Duration::from_millis(500)).await;
    assert!(!alice.events().iter().any(|e| e["event"] == "interaction.offered"), "{:?}", alice.events());

    // the survey is over: the next message is a conversation again (reopened, offered)
    hub.fake.text(&customer, "ещё вопрос");
    let offered = alice.event("interaction.offered").await;
    assert_eq!(offered["data"]["interaction"]["id"], id.to_string());
}

#[tokio::test]
async fn a_reply_that_is_not_an_answer_ends_the_survey_and_reaches_an_agent() {
    let hub = spawn_hub(survey_settings()).await;
    let mut alice = hub.ready_agent("alice").await;
    let _connector = hub.start_connector(connectors::Config::default()).await;
    let customer = TgUser::new(82, "Пётр");
    let id = closed_and_asked(&hub, &mut alice, &customer).await;

    hub.fake.text(&customer, "а где мой заказ?");
    let offered = alice.event("interaction.offered").await;
    assert_eq!(offered["data"]["interaction"]["id"], id.to_string(), "reopened as before the survey");
    assert!(surveys(&hub, id).await.is_empty());
    assert!(!waiting(&hub, id).await);
    // and the survey does not come back: a digit now is an ordinary message
    let accepted = alice.call("interaction.accept", json!({"interaction_id": id})).await;
    assert_eq!(accepted["data"]["state"], "assigned", "{accepted}");
    hub.fake.text(&customer, "5");
    alice.event_where("message.new", |d| d["message"]["text"] == "5").await;
    assert!(surveys(&hub, id).await.is_empty());
}

#[tokio::test]
async fn a_reply_after_the_window_is_a_new_conversation() {
    let hub = spawn_hub(survey_settings()).await;
    let mut alice = hub.ready_agent("alice").await;
    let _connector = hub.start_connector(connectors::Config::default()).await;
    let customer = TgUser::new(83, "Анна");
    let id = closed_and_asked(&hub, &mut alice, &customer).await;
    // the question went out 31 minutes ago (the window is 30)
    sqlx::query(
        "UPDATE chat_surveys SET state = jsonb_set(state, '{asked_at}', to_jsonb(now() - interval '31 minutes'))
         WHERE interaction_id = $1",
    )
    .bind(id)
    .execute(&hub.pool)
    .await
    .unwrap();

    hub.fake.text(&customer, "5");
    let offered = alice.event("interaction.offered").await;
    assert_eq!(offered["data"]["interaction"]["id"], id.to_string());
    assert!(surveys(&hub, id).await.is_empty(), "a late rating is not stored");
    eventually("the survey is gone", Duration::from_secs(5), || async { !waiting(&hub, id).await }).await;
}
