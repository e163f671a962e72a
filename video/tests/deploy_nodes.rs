//! Several video nodes (docs/video.md, "Several video nodes"): two `switchboard video`
//! processes on one PostgreSQL and one ZooKeeper, and webrtc-rs participants that join the way
//! the pages do (the join frame on the signalling socket, following `room_on_other_node` to the
//! URL it names).
//!
//! 1. The first join pins the room to its node; a join that reaches the other node is sent
//!    there, and media flows both ways through the hosting node.
//! 2. A draining node pins no new room (a new call reaching it goes to the other node) and
//!    keeps its call; once that call ends it hosts nothing and could stop.
//! 3. The node hosting a call is killed with SIGKILL: the participants rejoin through the
//!    surviving node (what the entry point would reach), which pins the room again once the dead
//!    node's ZooKeeper session is gone; media flows again, and the time it took is reported.
//!
//! Needs the `switchboard` binary: run by `deploy/tests/video-nodes.sh`, a step of
//! deploy/test.sh (it sets SWITCHBOARD_BIN).

mod support;

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};
use support::{Publish, SECRET, TestPeer, agent_join, customer_join, send, token};
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

const LIMIT: Duration = Duration::from_secs(20);

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn node(db_url: &str, root: &str, name: &str) -> testenv::Switchboard {
    let bin = std::env::var("SWITCHBOARD_BIN").unwrap_or_else(|_| {
        panic!("SWITCHBOARD_BIN is not set: run deploy/tests/video-nodes.sh (it builds the binary and sets it)")
    });
    testenv::Switchboard::start(
        &bin,
        &["video"],
        &[
            ("SWITCHBOARD_DATABASE__URL", db_url),
            ("SWITCHBOARD_COORD__ROOT", root),
            ("SWITCHBOARD_COORD__SESSION_TIMEOUT_MS", "2000"),
            ("SWITCHBOARD_JWT__HS256_SECRET", SECRET),
            ("SWITCHBOARD_VIDEO__NODE_ID", name),
        ],
    )
}

fn signalling(node: &testenv::Switchboard) -> String {
    format!("ws://{}/api/v1/video/ws", node.addr)
}

async fn connect(url: &str) -> Option<Ws> {
    tokio::time::timeout(Duration::from_secs(3), tokio_tungstenite::connect_async(url))
        .await
        .ok()?
        .ok()
        .map(|(ws, _)| ws)
}

/// The first text frame of a socket.
async fn first_frame(ws: &mut Ws) -> Option<Value> {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await.ok()?? {
            Ok(Message::Text(t)) => return serde_json::from_str(&t).ok(),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// Joins as a page does through `entry`: `room_on_other_node` sends it to the URL it names.
/// Returns the participant, the signalling URL it joined at, the redirects it followed and the
/// time from the first connection to the `joined` answer of the hosting node (before media);
/// `Err` if a node could not be reached or refused (the page then tries again later).
async fn join(entry: &str, frame: &Value) -> Result<(TestPeer, String, usize, Duration), String> {
    let started = Instant::now();
    let mut url = entry.to_owned();
    for hops in 0..4 {
        let mut probe = connect(&url).await.ok_or_else(|| format!("{url} unreachable"))?;
        send(&mut probe, frame.clone()).await;
        let answer = first_frame(&mut probe).await.ok_or_else(|| format!("{url} closed"))?;
        match answer["type"].as_str() {
            Some("joined") => {
                let admitted = started.elapsed();
                // admitted here: join for real with media (it replaces the probe, one socket per role)
                let ws = connect(&url).await.ok_or_else(|| format!("{url} unreachable"))?;
                let peer = TestPeer::join(ws, frame.clone(), Publish::CALL).await;
                drop(probe);
                return Ok((peer, url, hops, admitted));
            }
            Some("error") if answer["code"] == "room_on_other_node" => {
                url = answer["url"].as_str().ok_or("a redirect without url")?.to_owned();
            }
            _ => return Err(format!("{url}: {answer}")),
        }
    }
    Err("more than 3 redirects".into())
}

/// Media both ways between two participants.
async fn media_flows(a: &mut TestPeer, b: &mut TestPeer, what: &str) {
    let (a_id, b_id) = (a.id(), b.id());
    let deadline = Instant::now() + LIMIT;
    while a.mid_of(&b_id, "camera").is_none() || b.mid_of(&a_id, "camera").is_none() {
        assert!(Instant::now() < deadline, "{what}: no slots for each other");
        if a.mid_of(&b_id, "camera").is_none() {
            tokio::time::timeout(Duration::from_secs(2), a.next_slots()).await.ok();
        }
        if b.mid_of(&a_id, "camera").is_none() {
            tokio::time::timeout(Duration::from_secs(2), b.next_slots()).await.ok();
        }
    }
    let (a_video, b_video) = (a.mid_of(&b_id, "camera").unwrap(), b.mid_of(&a_id, "camera").unwrap());
    let (a0, b0) = (a.received.on(&a_video), b.received.on(&b_video));
    a.wait_until(&format!("{what}: video arrives"), LIMIT, |r| r.on(&a_video) > a0 + 40).await;
    b.wait_until(&format!("{what}: video arrives the other way"), LIMIT, |r| r.on(&b_video) > b0 + 40).await;
}

async fn start_room(http: &str, interaction: Uuid) -> (Uuid, String) {
    let response = reqwest::Client::new()
        .post(format!("http://{http}/api/v1/video/rooms"))
        .bearer_auth(token("alice", &["agent"]))
        .json(&json!({"interaction_id": interaction}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    let link = body["customer_link"].as_str().unwrap().rsplit('/').next().unwrap().to_owned();
    (body["room_id"].as_str().unwrap().parse().unwrap(), link)
}

async fn drain(http: &str, method: reqwest::Method) -> Value {
    let response = reqwest::Client::new()
        .request(method, format!("http://{http}/api/v1/video/drain"))
        .bearer_auth(token("ops", &["admin"]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the switchboard binary: run by deploy/tests/video-nodes.sh, a step of deploy/test.sh"]
async fn rooms_are_pinned_redirected_drained_and_moved_off_a_dead_node() {
    let (db_url, pool) = testenv::database().await;
    let account = testenv::fixtures::webchat_account(&pool, &[("alice", "agent"), ("sue", "supervisor")]).await;
    let first = testenv::fixtures::assigned_interaction(&pool, account, "wc-1", "Vera", "a call?", "alice").await;
    let second = testenv::fixtures::assigned_interaction(&pool, account, "wc-2", "Ivan", "a call?", "alice").await;
    let third = testenv::fixtures::assigned_interaction(&pool, account, "wc-3", "Olga", "a call?", "alice").await;
    let root = format!("/test-{}", Uuid::new_v4().simple());
    let v1 = node(&db_url, &root, "v1");
    let mut v2 = Some(node(&db_url, &root, "v2"));
    let v2_addr = v2.as_ref().unwrap().addr.clone();
    let (v1_ws, v2_ws) = (signalling(&v1), signalling(v2.as_ref().unwrap()));
    let mut v1 = Some(v1);

    // 1. pinned by the first join; a join reaching the other node is sent to it
    let (room, link) = start_room(&v2_addr, first).await;
    let (mut agent, at, hops, pinned) = join(&v1_ws, &agent_join(room, "alice", &["agent"])).await.unwrap();
    assert_eq!((at.as_str(), hops), (v1_ws.as_str(), 0), "the first join pins the room to v1");
    let (mut customer, at, hops, redirected) = join(&v2_ws, &customer_join(&link)).await.unwrap();
    assert_eq!((at.as_str(), hops), (v1_ws.as_str(), 1), "the customer reached v2 and was sent to v1");
    media_flows(&mut agent, &mut customer, "on v1").await;
    println!(
        "pinning: room pinned to v1 by the first join (joined in {} ms); the customer's join at v2 was sent to v1 (joined there {} ms after reaching v2); media both ways",
        pinned.as_millis(),
        redirected.as_millis()
    );

    // 2. a draining node takes no new call and keeps its own
    let (other, other_link) = start_room(&v2_addr, second).await;
    let (mut other_agent, at, _, _) = join(&v2_ws, &agent_join(other, "alice", &["agent"])).await.unwrap();
    assert_eq!(at, v2_ws, "pinned to v2");
    let status = drain(&v2_addr, reqwest::Method::POST).await;
    assert_eq!((status["draining"].as_bool(), status["rooms_live"].as_u64()), (Some(true), Some(1)), "{status}");
    let (new_room, _) = start_room(&v2_addr, third).await;
    let (new_agent, at, hops, _) = join(&v2_ws, &agent_join(new_room, "alice", &["agent"])).await.unwrap();
    assert_eq!((at.as_str(), hops), (v1_ws.as_str(), 1), "a new call reaching draining v2 goes to v1");
    let (mut other_customer, at, _, _) = join(&v2_ws, &customer_join(&other_link)).await.unwrap();
    assert_eq!(at, v2_ws, "the call v2 hosts stays there while it drains");
    media_flows(&mut other_agent, &mut other_customer, "on draining v2").await;
    send(&mut other_agent.ws, json!({"type": "end"})).await;
    other_agent.stop_media();
    other_customer.stop_media();
    let deadline = Instant::now() + LIMIT;
    loop {
        let status = drain(&v2_addr, reqwest::Method::GET).await;
        if status["rooms_live"] == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "v2 still hosts a call: {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drain(&v2_addr, reqwest::Method::DELETE).await;
    new_agent.leave().await;
    println!("draining: v2 sent a new call to v1, kept its own until it ended (rooms_live 0), then took calls again");

    // 3. v1 dies with its call: both pages rejoin through v2, which pins the room again
    agent.stop_media();
    customer.stop_media();
    let killed_at = Instant::now();
    let mut dead = v1.take().unwrap();
    dead.child.kill().unwrap();
    dead.child.wait().unwrap();
    let rejoin = |frame: Value| {
        let entry = v2_ws.clone();
        async move {
            let mut tries = 0;
            loop {
                tries += 1;
                match join(&entry, &frame).await {
                    Ok((peer, at, _, _)) => return (peer, at, tries, killed_at.elapsed()),
                    Err(_) => {
                        assert!(killed_at.elapsed() < LIMIT, "no rejoin within {LIMIT:?}");
                        tokio::time::sleep(Duration::from_millis(250)).await;
                    }
                }
            }
        }
    };
    let ((mut agent, agent_at, agent_tries, agent_back), (mut customer, customer_at, customer_tries, customer_back)) =
        tokio::join!(rejoin(agent_join(room, "alice", &["agent"])), rejoin(customer_join(&link)));
    assert_eq!((agent_at.as_str(), customer_at.as_str()), (v2_ws.as_str(), v2_ws.as_str()), "the room moved to v2");
    media_flows(&mut agent, &mut customer, "on v2 after v1 died").await;
    let media_back = killed_at.elapsed();
    println!(
        "failover: v1 killed; agent rejoined on v2 after {:.1} s ({agent_tries} tries), customer after {:.1} s ({customer_tries} tries); media both ways {:.1} s after the kill (ZooKeeper session timeout 2 s)",
        agent_back.as_secs_f64(),
        customer_back.as_secs_f64(),
        media_back.as_secs_f64()
    );
    agent.leave().await;
    customer.leave().await;
    drop(v2.take());
}
