//! Bot flows end to end on the fake Telegram: a customer writes, the account's greeting flow
//! asks two questions with buttons (a reply keyboard), and hands off to a queue; the agent's
//! offer carries the answers as interaction fields and, once accepted, the transcript; the bot
//! is silent from then on. And the fence: an agent who takes the bot's conversation while the
//! bot waits stops it, so the wait's timer, when it comes, sends nothing.

mod harness;

use std::time::Duration;

use connectors::fake::telegram::{Call, TgUser};
use harness::{eventually, spawn_hub};
use schema::flow::Flow;
use schema::store;
use serde_json::{Value, json};

fn texts_to(calls: &[Call], chat: &str) -> Vec<String> {
    calls
        .iter()
        .filter(|c| c.ok() && c.chat() == chat)
        .filter_map(|c| c.param("text").as_str().map(str::to_owned))
        .collect()
}

async fn until_sent(hub: &harness::Hub, agent: &mut harness::Client, chat: &str, text: &str) -> Call {
    let find = |calls: Vec<Call>| calls.into_iter().find(|c| c.ok() && c.chat() == chat && c.param("text") == text);
    let until = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(call) = find(hub.fake.calls_of("sendMessage")) {
            return call;
        }
        assert!(tokio::time::Instant::now() < until, "{text:?} never reached chat {chat}");
        // keep the agent's socket read (the hub's heartbeat closes one left unread)
        agent.settle(Duration::from_millis(100)).await;
    }
}

async fn greeting_flow(hub: &harness::Hub, flow: Value) {
    let flow: Flow = serde_json::from_value(flow).unwrap();
    let mut conn = hub.pool.acquire().await.unwrap();
    store::save_flow(&mut conn, "greet", &flow, "admin").await.unwrap();
    sqlx::query("UPDATE accounts SET settings = settings || '{\"greeting_flow\": \"greet\"}' WHERE id = $1")
        .bind(hub.account_id)
        .execute(&hub.pool)
        .await
        .unwrap();
}

#[tokio::test]
async fn the_greeting_flow_asks_two_questions_and_hands_off_with_the_answers() {
    let hub = spawn_hub(json!({})).await;
    greeting_flow(
        &hub,
        json!({
            "start": "hello",
            "fallback_queue": "support",
            "nodes": {
                "hello": {"kind": "send", "text": "Hi! Is it about an order?", "buttons": ["Yes", "No"], "next": "topic"},
                "topic": {"kind": "wait", "var": "topic", "timeout_s": 600, "next": "ask", "on_timeout": "human"},
                "ask": {"kind": "send", "text": "How urgent is it?", "buttons": ["Today", "This week"], "next": "urgency"},
                "urgency": {"kind": "wait", "var": "urgency", "timeout_s": 600, "next": "bye", "on_timeout": "human"},
                "bye": {"kind": "send", "text": "Thanks! A person will answer you here.", "next": "human"},
                "human": {"kind": "handoff", "queue": "support"}
            }
        }),
    )
    .await;
    // the agent is ready from the start: routing must leave the bot's conversation alone
    let mut alice = hub.ready_agent("alice").await;
    let _connector = hub.start_connector(connectors::Config::default()).await;
    let customer = TgUser::new(77, "Maria");
    let chat = "77";

    hub.fake.text(&customer, "hello");
    let first = until_sent(&hub, &mut alice, chat, "Hi! Is it about an order?").await;
    let keyboard = &first.param("reply_markup")["keyboard"];
    assert_eq!((keyboard[0][0]["text"].as_str(), keyboard[1][0]["text"].as_str()), (Some("Yes"), Some("No")));
    hub.fake.text(&customer, "Yes");
    let second = until_sent(&hub, &mut alice, chat, "How urgent is it?").await;
    assert_eq!(second.param("reply_markup")["keyboard"][1][0]["text"], "This week");
    hub.fake.text(&customer, "Today");
    until_sent(&hub, &mut alice, chat, "Thanks! A person will answer you here.").await;

    // the first offer comes after the hand-off: it carries both answers
    let offer = alice.event("interaction.offered").await;
    let interaction = &offer["data"]["interaction"];
    assert_eq!(interaction["fields"]["topic"], "Yes", "{offer}");
    assert_eq!(interaction["fields"]["urgency"], "Today");
    assert_eq!(interaction["fields"]["first_message"], "hello");
    assert_eq!(interaction["queue"], "support");
    let id = interaction["id"].as_str().unwrap().to_owned();
    let accepted = alice.call("interaction.accept", json!({"interaction_id": id})).await;
    assert_eq!(accepted["data"]["state"], "assigned", "{accepted}");

    // the transcript: the customer's words and the bot's, in order
    alice.settle(Duration::from_millis(300)).await;
    let transcript: Vec<(String, String)> = alice
        .take_events()
        .into_iter()
        .filter(|e| e["event"] == "message.new" && e["data"]["catch_up"] == true)
        .map(|e| {
            let m = &e["data"]["message"];
            (m["author"]["kind"].as_str().unwrap().to_owned(), m["text"].as_str().unwrap().to_owned())
        })
        .collect();
    let expected: Vec<(String, String)> = [
        ("customer", "hello"),
        ("bot", "Hi! Is it about an order?"),
        ("customer", "Yes"),
        ("bot", "How urgent is it?"),
        ("customer", "Today"),
        ("bot", "Thanks! A person will answer you here."),
    ]
    .iter()
    .map(|(a, t)| (a.to_string(), t.to_string()))
    .collect();
    assert_eq!(transcript, expected);

    // from now on the customer talks to the agent; the bot says nothing more
    hub.fake.text(&customer, "My order 7731 is late");
    let seen = alice.event_where("message.new", |d| d["message"]["text"] == "My order 7731 is late").await;
    assert_eq!(seen["data"]["message"]["interaction_id"], id.as_str());
    let reply =
        alice.call("message.send", json!({"interaction_id": id, "client_msg_id": "r1", "text": "Let me look"})).await;
    assert_eq!(reply["ok"], true, "{reply}");
    until_sent(&hub, &mut alice, chat, "Let me look").await;
    let sent = texts_to(&hub.fake.calls_of("sendMessage"), chat);
    assert_eq!(
        sent,
        vec!["Hi! Is it about an order?", "How urgent is it?", "Thanks! A person will answer you here.", "Let me look"]
    );
    let run: (bool, Option<String>) =
        sqlx::query_as("SELECT active, outcome FROM bot_runs WHERE interaction_id = $1::uuid")
            .bind(&id)
            .fetch_one(&hub.pool)
            .await
            .unwrap();
    assert_eq!(run, (false, Some("handed off to support".into())));
}

#[tokio::test]
async fn an_agent_who_takes_the_conversation_silences_the_bot_and_its_late_timer() {
    let hub = spawn_hub(json!({})).await;
    greeting_flow(
        &hub,
        json!({
            "start": "hello",
            "fallback_queue": "support",
            "nodes": {
                "hello": {"kind": "send", "text": "Hi! What is it about?", "next": "wait"},
                "wait": {"kind": "wait", "var": "topic", "timeout_s": 1, "next": "human", "on_timeout": "nudge"},
                "nudge": {"kind": "send", "text": "Are you still there?", "next": "end"},
                "human": {"kind": "handoff", "queue": "support"},
                "end": {"kind": "end"}
            }
        }),
    )
    .await;
    let mut alice = hub.ready_agent("alice").await;
    let _connector = hub.start_connector(connectors::Config::default()).await;
    let first = TgUser::new(81, "First");
    hub.fake.text(&first, "hello");
    until_sent(&hub, &mut alice, "81", "Hi! What is it about?").await;
    let id: String = sqlx::query_scalar("SELECT id::text FROM interactions WHERE chat_id = '81' AND state = 'bot'")
        .fetch_one(&hub.pool)
        .await
        .unwrap();
    let taken = alice.call("interaction.take", json!({"interaction_id": id})).await;
    assert_eq!(taken["ok"], true, "{taken}");
    assert_eq!(taken["data"]["state"], "assigned");

    // a second customer's run, whose 1-s timer is due after the first's: once its nudge
    // reaches the platform, the runner has passed the first run's timer too
    let second = TgUser::new(82, "Second");
    hub.fake.text(&second, "hi");
    until_sent(&hub, &mut alice, "82", "Hi! What is it about?").await;
    until_sent(&hub, &mut alice, "82", "Are you still there?").await;
    eventually("the second conversation ended by its bot", Duration::from_secs(10), || async {
        hub.count("SELECT count(*) FROM interactions WHERE chat_id = '82' AND close_reason = 'bot_ended'").await == 1
    })
    .await;
    assert_eq!(texts_to(&hub.fake.calls_of("sendMessage"), "81"), vec!["Hi! What is it about?"], "the bot is silent");
    let (active, outcome): (bool, Option<String>) =
        sqlx::query_as("SELECT active, outcome FROM bot_runs WHERE interaction_id = $1::uuid")
            .bind(&id)
            .fetch_one(&hub.pool)
            .await
            .unwrap();
    assert!(!active);
    assert_eq!(outcome.as_deref(), Some("left state bot: assigned"));
    // the customer's next words go to the agent, not to a bot
    hub.fake.text(&first, "still here");
    alice.event_where("message.new", |d| d["message"]["text"] == "still here").await;
    assert_eq!(hub.count("SELECT count(*) FROM bot_inputs").await, 0);
}

#[tokio::test]
async fn an_http_node_fills_a_variable_and_a_failing_one_hands_off_with_the_reason() {
    // the shop's endpoint: order 7731 is known, anything else is a server error
    let app = axum::Router::new().route(
        "/orders/{id}",
        axum::routing::get(|axum::extract::Path(id): axum::extract::Path<String>| async move {
            if id == "7731" {
                (axum::http::StatusCode::OK, "shipped")
            } else {
                (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "boom")
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let shop = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let hub = spawn_hub(json!({})).await;
    greeting_flow(
        &hub,
        json!({
            "start": "lookup",
            "fallback_queue": "support",
            "nodes": {
                "lookup": {"kind": "http", "url": format!("http://{shop}/orders/{{{{first_message}}}}"),
                           "timeout_ms": 5000, "var": "status", "next": "human"},
                "human": {"kind": "handoff", "queue": "support"}
            }
        }),
    )
    .await;
    // the shop is on this machine: the deployment lets bot flows call it
    let config = connectors::Config { bots_allow_internal: vec!["127.0.0.1/32".into()], ..Default::default() };
    let _connector = hub.start_connector(config).await;
    hub.fake.text(&TgUser::new(91, "Known"), "7731");
    hub.fake.text(&TgUser::new(92, "Unknown"), "1");
    let outcome = |chat: &'static str| {
        let pool = hub.pool.clone();
        async move {
            sqlx::query_as::<_, (String, Value, Option<String>)>(
                "SELECT i.state, i.fields, r.outcome FROM interactions i JOIN bot_runs r ON r.interaction_id = i.id
                 WHERE i.chat_id = $1",
            )
            .bind(chat)
            .fetch_optional(&pool)
            .await
            .unwrap()
        }
    };
    eventually("both runs handed off", Duration::from_secs(20), || async {
        outcome("91").await.is_some_and(|o| o.0 == "queued") && outcome("92").await.is_some_and(|o| o.0 == "queued")
    })
    .await;
    let (_, fields, reason) = outcome("91").await.unwrap();
    assert_eq!(fields["status"], "shipped");
    assert_eq!(reason.as_deref(), Some("handed off to support"));
    let (_, fields, reason) = outcome("92").await.unwrap();
    assert!(fields.get("status").is_none(), "{fields}");
    assert_eq!(
        reason.as_deref(),
        Some("handed off to support: HTTP node \"lookup\" failed: HTTP 500 Internal Server Error")
    );
    server.abort();
}

#[tokio::test]
async fn an_http_node_aimed_at_an_internal_address_is_refused_and_hands_off() {
    let hub = spawn_hub(json!({})).await;
    greeting_flow(
        &hub,
        json!({
            "start": "lookup",
            "fallback_queue": "support",
            "nodes": {
                "lookup": {"kind": "http", "url": "http://169.254.169.254/latest/meta-data/", "timeout_ms": 5000,
                           "var": "secrets", "next": "human"},
                "human": {"kind": "handoff", "queue": "support"}
            }
        }),
    )
    .await;
    let _connector = hub.start_connector(connectors::Config::default()).await;
    hub.fake.text(&TgUser::new(93, "Curious"), "hi");
    eventually("the run handed off", Duration::from_secs(20), || async {
        hub.count("SELECT count(*) FROM interactions WHERE chat_id = '93' AND state = 'queued'").await == 1
    })
    .await;
    let reason: String = sqlx::query_scalar("SELECT outcome FROM bot_runs").fetch_one(&hub.pool).await.unwrap();
    assert!(reason.contains("HTTP node \"lookup\" failed") && reason.contains("cloud metadata"), "{reason}");
}

#[tokio::test]
async fn a_new_leader_resumes_a_run_from_postgresql() {
    let hub = spawn_hub(json!({})).await;
    greeting_flow(
        &hub,
        json!({
            "start": "hello",
            "fallback_queue": "support",
            "nodes": {
                "hello": {"kind": "send", "text": "Hi! What is it about?", "next": "wait"},
                "wait": {"kind": "wait", "var": "topic", "timeout_s": 600, "next": "human", "on_timeout": "nudge"},
                "nudge": {"kind": "send", "text": "Are you still there?", "next": "topic"},
                "topic": {"kind": "wait", "var": "topic", "timeout_s": 600, "next": "human", "on_timeout": "human"},
                "human": {"kind": "handoff", "queue": "support"}
            }
        }),
    )
    .await;
    let mut alice = hub.ready_agent("alice").await;
    let first = hub.start_connector(connectors::Config::default()).await;
    let customer = TgUser::new(95, "Patient");
    hub.fake.text(&customer, "hello");
    until_sent(&hub, &mut alice, "95", "Hi! What is it about?").await;
    // the leader stops while the run waits; meanwhile its 10 minutes pass (the stored run's
    // deadline and wake-up moved to the past); the next leader finds both in PostgreSQL
    first.stop().await;
    let moved = sqlx::query(
        "UPDATE bot_runs SET wake_at = now() - interval '1 s',
             run = jsonb_set(run, '{position,until,secs}', to_jsonb(extract(epoch FROM now())::bigint - 1))
         WHERE run->'position'->>'state' = 'waiting'",
    )
    .execute(&hub.pool)
    .await
    .unwrap();
    assert_eq!(moved.rows_affected(), 1);
    let _second = hub.start_connector(connectors::Config::default()).await;
    until_sent(&hub, &mut alice, "95", "Are you still there?").await;
    hub.fake.text(&customer, "billing");
    let offer = alice.event("interaction.offered").await;
    assert_eq!(offer["data"]["interaction"]["fields"]["topic"], "billing", "{offer}");
    assert_eq!(
        texts_to(&hub.fake.calls_of("sendMessage"), "95"),
        vec!["Hi! What is it about?", "Are you still there?"],
        "each message once"
    );
    let tokens: Vec<Option<i64>> = sqlx::query_scalar(
        "SELECT o.fencing_token FROM outbox o JOIN messages m ON m.id = o.message_id
         WHERE m.author_kind = 'bot' ORDER BY o.id",
    )
    .fetch_all(&hub.pool)
    .await
    .unwrap();
    assert!(tokens.len() == 2 && tokens[1] > tokens[0], "the nudge went out under the second leader: {tokens:?}");
}

#[tokio::test]
async fn after_an_agent_closes_the_customers_next_message_re_enters_the_chosen_node() {
    let hub = spawn_hub(json!({})).await;
    let flow: Flow = serde_json::from_value(json!({
        "start": "hello",
        "fallback_queue": "support",
        "nodes": {
            "hello": {"kind": "send", "text": "Hi! (the greeting)", "next": "ask"},
            "ask": {"kind": "wait", "var": "question", "timeout_s": 600, "next": "human", "on_timeout": "back"},
            "back": {"kind": "send", "text": "Welcome back! Was your question answered?", "buttons": ["Yes", "No"],
                     "next": "answered"},
            "answered": {"kind": "wait", "var": "answered", "timeout_s": 600, "next": "route", "on_timeout": "human"},
            "route": {"kind": "branch", "var": "answered", "cases": [{"equals": "yes", "next": "bye"}],
                      "default": "human"},
            "bye": {"kind": "end"},
            "human": {"kind": "handoff", "queue": "support"}
        }
    }))
    .unwrap();
    store::save_flow(&mut hub.pool.acquire().await.unwrap(), "after", &flow, "admin").await.unwrap();
    // no greeting flow: the first conversation goes straight to the queue
    sqlx::query(
        "UPDATE accounts SET settings = settings || '{\"reentry\": {\"flow\": \"after\", \"node\": \"back\"}}'
         WHERE id = $1",
    )
    .bind(hub.account_id)
    .execute(&hub.pool)
    .await
    .unwrap();
    let mut alice = hub.ready_agent("alice").await;
    let _connector = hub.start_connector(connectors::Config::default()).await;
    let customer = TgUser::new(91, "Olga");
    let chat = "91";

    hub.fake.text(&customer, "Where is my parcel?");
    let offer = alice.event("interaction.offered").await;
    assert_eq!(offer["data"]["interaction"]["state"], "offered", "{offer}");
    let id = offer["data"]["interaction"]["id"].as_str().unwrap().to_owned();
    let accepted = alice.call("interaction.accept", json!({"interaction_id": id})).await;
    assert_eq!(accepted["data"]["state"], "assigned", "{accepted}");
    let reply =
        alice.call("message.send", json!({"interaction_id": id, "client_msg_id": "a1", "text": "It left today"})).await;
    assert_eq!(reply["ok"], true, "{reply}");
    until_sent(&hub, &mut alice, chat, "It left today").await;
    let closed = alice.call("interaction.close", json!({"interaction_id": id, "reason": "resolved"})).await;
    assert_eq!(closed["data"]["state"], "closed", "{closed}");

    // the customer writes again: the conversation re-enters the chosen node, not the queue (and
    // not the flow's start)
    hub.fake.text(&customer, "One more thing");
    let back = until_sent(&hub, &mut alice, chat, "Welcome back! Was your question answered?").await;
    assert_eq!(back.param("reply_markup")["keyboard"][1][0]["text"], "No");
    let (state, reopened): (String, Value) = sqlx::query_as(
        "SELECT i.state, e.data FROM interactions i
         JOIN interaction_events e ON e.interaction_id = i.id AND e.kind = 'interaction.reopened'
         WHERE i.id = $1::uuid",
    )
    .bind(&id)
    .fetch_one(&hub.pool)
    .await
    .unwrap();
    assert_eq!(state, "bot");
    assert_eq!(reopened["reentry"], json!({"flow": "after", "version": 1, "node": "back"}), "{reopened}");
    // the bot has it: nothing is offered while it asks
    alice.settle(Duration::from_millis(500)).await;
    assert!(!alice.events().iter().any(|e| e["event"] == "interaction.offered"), "routed while the bot asks");

    // "No": the flow hands the conversation back to the queue, the answers as fields
    hub.fake.text(&customer, "No");
    let offer = alice.event("interaction.offered").await;
    let interaction = &offer["data"]["interaction"];
    assert_eq!(interaction["id"], id.as_str());
    assert_eq!(interaction["fields"]["answered"], "No", "{offer}");
    assert_eq!(interaction["fields"]["first_message"], "One more thing");
    assert_eq!(
        texts_to(&hub.fake.calls_of("sendMessage"), chat),
        vec!["It left today", "Welcome back! Was your question answered?"],
        "the flow's start never ran"
    );
    let run: (bool, Option<String>, Option<String>) =
        sqlx::query_as("SELECT active, outcome, start_node FROM bot_runs WHERE interaction_id = $1::uuid")
            .bind(&id)
            .fetch_one(&hub.pool)
            .await
            .unwrap();
    assert_eq!(run, (false, Some("handed off to support".into()), Some("back".into())));
}

#[tokio::test]
async fn a_reply_to_a_campaign_with_a_flow_continues_in_that_flow_knowing_its_campaign() {
    let hub = spawn_hub(json!({})).await;
    let flow: Flow = serde_json::from_value(json!({
        "start": "ask",
        "fallback_queue": "support",
        "nodes": {
            "ask": {"kind": "send", "text": "Thanks for answering! How did we do?", "buttons": ["Good", "Bad"],
                    "next": "rate"},
            "rate": {"kind": "wait", "var": "rating", "timeout_s": 600, "next": "human", "on_timeout": "human"},
            "human": {"kind": "handoff", "queue": "support"}
        }
    }))
    .unwrap();
    let customer_id = uuid::Uuid::now_v7();
    {
        let mut conn = hub.pool.acquire().await.unwrap();
        store::save_flow(&mut conn, "after-sale", &flow, "admin").await.unwrap();
        // a customer the account knows (a campaign reaches known customers only)
        sqlx::query("INSERT INTO customers (id, name) VALUES ($1, 'Pavel')")
            .bind(customer_id)
            .execute(&mut *conn)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO customer_identities (account_id, external_id, customer_id, display_name)
             VALUES ($1, '95', $2, 'Pavel')",
        )
        .bind(hub.account_id)
        .bind(customer_id)
        .execute(&mut *conn)
        .await
        .unwrap();
    }
    hub.fake.know([95]);
    let new = |flow: Option<&str>| store::NewCampaign {
        account_id: hub.account_id,
        name: "spring".into(),
        text: "Spring sale: code {{code}}".into(),
        template: None,
        rate_per_s: None,
        starts_at: None,
        ends_at: None,
        quiet: None,
        utc_offset_min: 0,
        created_by: "test".into(),
        flow: flow.map(str::to_owned),
    };
    let mut tx = hub.pool.begin().await.unwrap();
    // a flow that does not exist is refused, naming the field
    match store::create_campaign(&mut tx, &new(Some("ghost"))).await {
        Err(store::StoreError::Invalid(message)) => assert_eq!(message, "flow: no flow \"ghost\""),
        other => panic!("a campaign with a missing flow: {other:?}"),
    }
    let campaign = store::create_campaign(&mut tx, &new(Some("after-sale"))).await.unwrap();
    assert_eq!(campaign.flow.as_deref(), Some("after-sale"));
    let recipient = store::RecipientInput {
        customer_id: Some(customer_id),
        variables: std::collections::BTreeMap::from([("code".into(), "S1".into())]),
        ..Default::default()
    };
    assert_eq!(store::add_recipients(&mut tx, campaign.id, &[recipient], 0).await.unwrap().added, 1);
    store::change_campaign(&mut tx, campaign.id, store::CampaignAction::Start).await.unwrap();
    tx.commit().await.unwrap();

    let mut alice = hub.ready_agent("alice").await;
    let _connector = hub.start_connector(connectors::Config::default()).await;
    let chat = "95";
    until_sent(&hub, &mut alice, chat, "Spring sale: code S1").await;

    // the recipient answers: the interaction knows its campaign and continues in its flow
    let customer = TgUser::new(95, "Pavel");
    hub.fake.text(&customer, "Tell me more");
    until_sent(&hub, &mut alice, chat, "Thanks for answering! How did we do?").await;
    let (id, state, campaign_of): (String, String, Option<uuid::Uuid>) = sqlx::query_as(
        "SELECT id::text, state, campaign_id FROM interactions WHERE chat_id = '95' AND state <> 'closed'",
    )
    .fetch_one(&hub.pool)
    .await
    .unwrap();
    assert_eq!((state.as_str(), campaign_of), ("bot", Some(campaign.id)));
    let run: (String, bool) = sqlx::query_as("SELECT flow_name, active FROM bot_runs WHERE interaction_id = $1::uuid")
        .bind(&id)
        .fetch_one(&hub.pool)
        .await
        .unwrap();
    assert_eq!(run, ("after-sale".to_owned(), true));
    alice.settle(Duration::from_millis(300)).await;
    assert!(!alice.events().iter().any(|e| e["event"] == "interaction.offered"), "routed while the flow runs");

    // the flow hands off: the agent's offer carries the campaign and the answers
    hub.fake.text(&customer, "Good");
    let offer = alice.event("interaction.offered").await;
    let interaction = &offer["data"]["interaction"];
    assert_eq!(interaction["id"], id.as_str());
    assert_eq!(interaction["fields"]["campaign"], "spring", "{offer}");
    assert_eq!(interaction["fields"]["campaign_id"], campaign.id.to_string());
    assert_eq!(interaction["fields"]["rating"], "Good");
    assert_eq!(interaction["fields"]["first_message"], "Tell me more");
    let recipient: String = sqlx::query_scalar("SELECT state FROM campaign_recipients WHERE campaign_id = $1")
        .bind(campaign.id)
        .fetch_one(&hub.pool)
        .await
        .unwrap();
    assert_eq!(recipient, "replied");
}
