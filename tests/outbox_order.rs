//! Per-chat order with concurrent writers: two agents with two sockets each (a `switchboard
//! chatserver` process) send 5,000 messages into 100 chats of one Telegram account served by a
//! `switchboard connector` process (the fake Bot API in this process), the two sockets of an
//! agent writing into the same chats at the same time. Every chat's messages must reach the
//! fake in the order the hub accepted them: the order of their `message.new` events in the
//! interaction's log, which the interaction's row lock makes the order of the commits.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use connectors::fake::telegram::{FakeTelegram, TgUser};
use futures::{SinkExt, StreamExt};
use schema::domain::{Channel, Queue, RoutingMode};
use schema::store::{self, AgentProfile, NewAccount};
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use uuid::Uuid;

const SECRET: &str = "outbox-order-secret-outbox-order-secret";
const TOKEN: &str = "7001002004:AAOrderTest";
const CHATS: u64 = 100;
const MESSAGES: usize = 5_000;
const SOCKETS_PER_AGENT: usize = 2;
const AGENTS: [&str; 2] = ["alice", "bob"];

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One agent socket that sends and waits for each reply (events in between are skipped).
struct Socket {
    ws: Ws,
    n: u64,
}

impl Socket {
    async fn connect(url: &str, login: &str) -> Socket {
        let mut request = url.into_client_request().unwrap();
        let token = testenv::token(SECRET, login, &["agent"]);
        request.headers_mut().insert("Authorization", format!("Bearer {token}").parse().unwrap());
        let (ws, _) = tokio_tungstenite::connect_async(request).await.expect("connect");
        let mut socket = Socket { ws, n: 0 };
        let hello = socket.call("hello", json!({})).await;
        assert_eq!(hello["ok"], true, "{hello}");
        socket
    }

    async fn call(&mut self, cmd: &str, args: Value) -> Value {
        self.n += 1;
        let id = format!("r{}", self.n);
        self.ws.send(Message::Text(json!({"id": id, "cmd": cmd, "args": args}).to_string().into())).await.unwrap();
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(30), self.ws.next())
                .await
                .expect("a reply in time")
                .expect("socket open")
                .expect("a frame");
            if let Message::Text(text) = frame {
                let v: Value = serde_json::from_str(&text).unwrap();
                if v["re"] == id {
                    return v;
                }
            }
        }
    }
}

async fn count(pool: &PgPool, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

async fn wait_for(what: &str, within: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_chat_gets_its_messages_in_the_order_the_hub_accepted_them() {
    let (db_url, pool) = testenv::database().await;
    let root = format!("/test-{}", Uuid::new_v4().simple());
    let fake = FakeTelegram::start(TOKEN).await;
    let mut conn = pool.acquire().await.unwrap();
    store::upsert_queue(
        &mut conn,
        &Queue { name: "support".into(), routing_mode: RoutingMode::Manual, offer_timeout_ms: 30_000 },
    )
    .await
    .unwrap();
    // limits far above the test's rate: order, not pacing, is under test
    let account = store::create_account(
        &mut conn,
        &NewAccount {
            channel: Channel::Telegram,
            name: "order".into(),
            default_queue: "support".into(),
            credentials: json!({"bot_token": TOKEN}),
            settings: json!({"api_url": fake.api_url(), "poll_timeout_s": 5,
                "limits": {"rate": {"count": 5000, "per_ms": 1000}, "rate_per_chat": {"count": 1000, "per_ms": 1000}}}),
        },
    )
    .await
    .unwrap()
    .id;
    for login in AGENTS {
        let profile = AgentProfile {
            login: login.into(),
            name: login.into(),
            roles: vec!["agent".into()],
            queues: vec!["support".into()],
            max_interactions: 100,
        };
        store::upsert_agent(&mut conn, &profile).await.unwrap();
    }
    drop(conn);
    let env = [
        ("SWITCHBOARD_DATABASE__URL", db_url.as_str()),
        ("SWITCHBOARD_COORD__ROOT", root.as_str()),
        ("SWITCHBOARD_JWT__HS256_SECRET", SECRET),
    ];
    let chatserver = testenv::Switchboard::start(env!("CARGO_BIN_EXE_switchboard"), &["chatserver"], &env);
    let account_arg = account.to_string();
    let connector =
        testenv::Switchboard::start(env!("CARGO_BIN_EXE_switchboard"), &["connector", "--account", &account_arg], &env);

    // every customer writes once; the chats are shared out between the two agents
    let users: Vec<TgUser> = (0..CHATS).map(|i| TgUser::new(700_000 + i, &format!("C{i}"))).collect();
    for user in &users {
        fake.text(user, "hello");
    }
    wait_for("the customers' first messages", Duration::from_secs(60), async || {
        count(&pool, "SELECT count(*) FROM messages WHERE direction = 'in'").await == CHATS as i64
    })
    .await;
    let interactions: Vec<(Uuid, String)> =
        sqlx::query_as("SELECT id, chat_id FROM interactions ORDER BY chat_id").fetch_all(&pool).await.unwrap();
    assert_eq!(interactions.len(), CHATS as usize);
    for (i, (id, _)) in interactions.iter().enumerate() {
        sqlx::query("UPDATE interactions SET state = 'assigned', agent = $2, last_agent = $2 WHERE id = $1")
            .bind(id)
            .bind(AGENTS[i % AGENTS.len()])
            .execute(&pool)
            .await
            .unwrap();
    }

    // four sockets, two per agent; an agent's two sockets walk its chats in step, so they
    // write into the same chat at the same time
    let url = format!("ws://{}/api/v1/agent/ws", chatserver.addr);
    let per_socket = MESSAGES / (AGENTS.len() * SOCKETS_PER_AGENT);
    let started = Instant::now();
    let mut writers = Vec::new();
    for (a, login) in AGENTS.iter().enumerate() {
        let chats: Vec<Uuid> =
            interactions.iter().enumerate().filter(|(i, _)| i % AGENTS.len() == a).map(|(_, (id, _))| *id).collect();
        for tab in 0..SOCKETS_PER_AGENT {
            let url = url.clone();
            let chats = chats.clone();
            let login = login.to_string();
            writers.push(tokio::spawn(async move {
                let mut socket = Socket::connect(&url, &login).await;
                for n in 0..per_socket {
                    let interaction_id = chats[n % chats.len()];
                    let text = format!("{login}/{tab} #{n}");
                    let reply = socket
                        .call(
                            "message.send",
                            json!({"interaction_id": interaction_id, "client_msg_id": text, "text": text}),
                        )
                        .await;
                    assert_eq!(reply["ok"], true, "{reply}");
                }
            }));
        }
    }
    for writer in writers {
        writer.await.unwrap();
    }
    let accepted_in = started.elapsed();
    wait_for("every message sent", Duration::from_secs(180), async || fake.calls_of("sendMessage").len() >= MESSAGES)
        .await;
    let delivered_in = started.elapsed();

    // the order the hub accepted them: the interaction's log of outbound `message.new`
    let accepted: Vec<(String, String)> = sqlx::query_as(
        "SELECT i.chat_id, e.data->'message'->>'text' FROM interaction_events e
         JOIN interactions i ON i.id = e.interaction_id
         WHERE e.kind = 'message.new' AND e.data->'message'->>'direction' = 'out'
         ORDER BY e.interaction_id, e.seq",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(accepted.len(), MESSAGES);
    let mut expected: HashMap<String, Vec<String>> = HashMap::new();
    for (chat, text) in accepted {
        expected.entry(chat).or_default().push(text);
    }
    let mut late = 0;
    let mut chats_out_of_order = 0;
    for (chat, want) in &expected {
        let got: Vec<String> = fake
            .sent_to(chat.parse().unwrap())
            .into_iter()
            .filter_map(|s| s.text)
            .filter(|t| t.contains(" #"))
            .collect();
        assert_eq!(got.len(), want.len(), "chat {chat}: every message once");
        let inversions = got.iter().zip(want).filter(|(g, w)| g != w).count();
        if inversions > 0 {
            chats_out_of_order += 1;
            late += inversions;
        }
    }
    eprintln!(
        "{MESSAGES} messages from {} sockets into {CHATS} chats: accepted in {accepted_in:?}, all at the platform \
         after {delivered_in:?}; {chats_out_of_order} chats out of order ({late} messages in the wrong place)",
        AGENTS.len() * SOCKETS_PER_AGENT
    );
    assert_eq!(chats_out_of_order, 0, "{late} messages reached the platform out of the hub's order");
    drop(connector);
}
