//! Two `switchboard chatserver` processes on one PostgreSQL and one ZooKeeper: an agent on
//! node A gets what node B does, and when A is killed with SIGKILL mid-stream the agent
//! reconnects to B and `resume_from` gives it every event exactly once, with no gap.

use std::sync::Arc;
use std::time::Duration;

use coord::{Coordinator, ZkConfig, ZkCoordinator};
use futures::{SinkExt, StreamExt};
use schema::domain::{Channel, MessageKind, Queue, RoutingMode};
use schema::store::{self, InboundMessage, Ingested, NewAccount, Sender};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const SECRET: &str = "active-active-secret-active-active-secret";
const WAIT: Duration = Duration::from_secs(15);

struct Node {
    process: testenv::Switchboard,
    url: String,
}

fn start_node(db_url: &str, root: &str, name: &str) -> Node {
    let process = testenv::Switchboard::start(
        env!("CARGO_BIN_EXE_switchboard"),
        &["chatserver"],
        &[
            ("SWITCHBOARD_DATABASE__URL", db_url),
            ("SWITCHBOARD_COORD__ROOT", root),
            ("SWITCHBOARD_COORD__SESSION_TIMEOUT_MS", "2000"),
            ("SWITCHBOARD_JWT__HS256_SECRET", SECRET),
            ("SWITCHBOARD_CHATSERVER__NODE_ID", name),
        ],
    );
    let url = format!("ws://{}/api/v1/agent/ws", process.addr);
    Node { process, url }
}

fn token(login: &str) -> String {
    testenv::token(SECRET, login, &["agent"])
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

struct Agent {
    ws: Ws,
    n: u64,
    events: Vec<Value>,
}

impl Agent {
    async fn connect(url: &str, login: &str, resume_from: Option<i64>) -> Agent {
        let mut request = url.into_client_request().unwrap();
        request.headers_mut().insert("Authorization", format!("Bearer {}", token(login)).parse().unwrap());
        let (ws, _) = tokio_tungstenite::connect_async(request).await.expect("connect");
        let mut agent = Agent { ws, n: 0, events: Vec::new() };
        let args = match resume_from {
            Some(seq) => json!({ "resume_from": seq }),
            None => json!({}),
        };
        let hello = agent.call("hello", args).await;
        assert_eq!(hello["ok"], true, "{hello}");
        agent
    }

    async fn call(&mut self, cmd: &str, args: Value) -> Value {
        self.n += 1;
        let id = format!("r{}", self.n);
        self.ws.send(Message::Text(json!({"id": id, "cmd": cmd, "args": args}).to_string().into())).await.unwrap();
        loop {
            let frame = self.frame().await.expect("socket open");
            if frame["re"] == id {
                return frame;
            }
        }
    }

    /// The next reply frame; events that arrive meanwhile are kept in `events`.
    async fn frame(&mut self) -> Option<Value> {
        loop {
            let v = self.any_frame().await?;
            if v.get("seq").is_none() {
                return Some(v);
            }
        }
    }

    /// The next JSON frame of any kind (events are also kept in `events`); `None` once closed.
    async fn any_frame(&mut self) -> Option<Value> {
        loop {
            match tokio::time::timeout(WAIT, self.ws.next()).await.expect("a frame in time")? {
                Ok(Message::Text(t)) => {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    if v.get("seq").is_some() {
                        self.events.push(v.clone());
                    }
                    return Some(v);
                }
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// Reads events until one named `name` for which `pred` holds.
    async fn until(&mut self, name: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let mut seen = 0;
        loop {
            if let Some(e) = self.events[seen..].iter().find(|e| e["event"] == name && pred(e)) {
                return e.clone();
            }
            seen = self.events.len();
            if self.any_frame().await.is_none() {
                panic!("socket closed while waiting for {name}");
            }
        }
    }

    fn seqs(&self) -> Vec<i64> {
        self.events.iter().map(|e| e["seq"].as_i64().unwrap()).collect()
    }
}

#[tokio::test]
async fn an_agent_keeps_every_event_across_a_killed_node() {
    let (db_url, pool) = testenv::database().await;
    let root = format!("/test-{}", uuid::Uuid::new_v4().simple());
    let mut conn = pool.acquire().await.unwrap();
    store::upsert_queue(
        &mut conn,
        &Queue { name: "support".into(), routing_mode: RoutingMode::Auto, offer_timeout_ms: 30_000 },
    )
    .await
    .unwrap();
    let account = store::create_account(
        &mut conn,
        &NewAccount {
            channel: Channel::Telegram,
            name: "shop".into(),
            default_queue: "support".into(),
            credentials: json!({}),
            settings: json!({}),
        },
    )
    .await
    .unwrap();
    for login in ["alice", "bob"] {
        store::upsert_agent(
            &mut conn,
            &store::AgentProfile {
                login: login.into(),
                name: login.into(),
                roles: vec!["agent".into()],
                queues: vec!["support".into()],
                max_interactions: 5,
            },
        )
        .await
        .unwrap();
    }
    drop(conn);

    // B starts first, so B is the router: routing decisions for alice are made on B
    let node_b = start_node(&db_url, &root, "node-b");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut node_a = start_node(&db_url, &root, "node-a");

    let connector: Arc<dyn Coordinator> = Arc::new(
        ZkCoordinator::start(ZkConfig {
            connect: testenv::zookeeper(),
            root: root.clone(),
            session_timeout: Duration::from_secs(4),
        })
        .await
        .unwrap(),
    );
    let account_id = account.id;
    let inbound = move |n: usize| {
        let (pool, connector) = (pool.clone(), connector.clone());
        async move {
            let msg = InboundMessage {
                account_id,
                external_message_id: format!("c1:{n}"),
                chat_id: "c1".into(),
                sender: Sender { external_id: "c1".into(), name: "Customer".into(), ..Default::default() },
                kind: MessageKind::Text,
                text: Some(format!("message {n}")),
                file_ids: vec![],
                location: None,
                contact: None,
                reply_to_external_id: None,
                forwarded: None,
                sent_at: None,
                sticker_id: None,
            };
            let mut tx = pool.begin().await.unwrap();
            let out = store::ingest_inbound(&mut tx, &msg, Duration::from_secs(3600)).await.unwrap();
            tx.commit().await.unwrap();
            if let Ingested::Stored { audience, opened, .. } = out {
                for a in audience {
                    connector.notify(&schema::topics::agent(&a));
                }
                if opened {
                    connector.notify(schema::topics::ROUTING);
                }
            }
        }
    };

    let mut alice = Agent::connect(&node_a.url, "alice", None).await;
    let mut bob = Agent::connect(&node_b.url, "bob", None).await;
    bob.call("agent.set_status", json!({"status": "ready"})).await;
    inbound(0).await;
    let offer = bob.until("interaction.offered", |_| true).await;
    let id = offer["data"]["interaction"]["id"].as_str().unwrap().to_owned();
    bob.call("interaction.accept", json!({"interaction_id": id})).await;

    // bob, on B, hands the chat to alice, on A
    let moved = bob.call("interaction.transfer", json!({"interaction_id": id, "to_agent": "alice"})).await;
    assert_eq!(moved["data"]["agent"], "alice", "{moved}");
    alice.until("interaction.transferred", |_| true).await;
    inbound(1).await;
    alice.until("message.new", |e| e["data"]["message"]["text"] == "message 1").await;
    let transfers = alice.events.iter().filter(|e| e["event"] == "interaction.transferred").count();
    assert_eq!(transfers, 1, "received once");

    // a stream of 60 messages; node A is killed after 20
    let writer = tokio::spawn({
        let inbound = inbound.clone();
        async move {
            for n in 2..62 {
                inbound(n).await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });
    alice.until("message.new", |e| e["data"]["message"]["text"] == "message 21").await;
    node_a.process.child.kill().expect("SIGKILL node A");
    node_a.process.child.wait().unwrap();
    // drain whatever A had sent before dying
    while alice.any_frame().await.is_some() {}
    let before: Vec<i64> = alice.seqs();
    let last_seen = *before.last().unwrap();

    let mut again = Agent::connect(&node_b.url, "alice", Some(last_seen)).await;
    writer.await.unwrap();
    again.until("message.new", |e| e["data"]["message"]["text"] == "message 61").await;

    let all: Vec<i64> = before.iter().chain(again.seqs().iter()).copied().collect();
    let first = all[0];
    assert_eq!(all, (first..first + all.len() as i64).collect::<Vec<_>>(), "every event once, no gap: {all:?}");
    let texts: Vec<String> = alice
        .events
        .iter()
        .chain(again.events.iter())
        .filter(|e| e["event"] == "message.new")
        .map(|e| e["data"]["message"]["text"].as_str().unwrap().to_owned())
        .collect();
    // message 0 reached alice with the transfer, in the conversation replayed into her stream
    let expected: Vec<String> = (0..62).map(|n| format!("message {n}")).collect();
    assert_eq!(texts, expected, "every message exactly once, in order");
    let replayed: Vec<&Value> = alice.events.iter().filter(|e| e["data"]["catch_up"] == true).collect();
    assert_eq!(replayed.len(), 1, "{replayed:?}");
    drop(node_b);
}
