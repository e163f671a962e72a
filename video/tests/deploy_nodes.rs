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
//! 4. A recorded call whose node is killed (SIGKILL) goes on being recorded on the node it moves
//!    to, as the recording's second part. With a spool directory shared by the nodes, the
//!    surviving node claims the dead node's spool and finishes the first part during the call,
//!    and the dead node, started again, does not finish it a second time; with a spool per
//!    node, the first part waits for its node, which finishes it when it starts again. Two files, two `recording_ready` events (interaction
//!    log, agent stream, webhook), both parts with the call, each file read back with `ffprobe`
//!    and `ffmpeg` (one VP8 track, one stereo Opus track, the customer left, the agent right).
//!
//! Needs the `switchboard` binary: run by `deploy/tests/video-nodes.sh`, a step of
//! deploy/test.sh (it sets SWITCHBOARD_BIN).

mod support;

use std::time::{Duration, Instant};

use futures::StreamExt;
use schema::domain::RecordingState;
use schema::store;
use serde_json::{Value, json};
use support::media::{self, decode_stereo, ffprobe, tone_db};
use support::{Publish, SECRET, TestPeer, agent_join, customer_join, customer_join_consenting, send, token};
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

const LIMIT: Duration = Duration::from_secs(20);

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn node(db_url: &str, root: &str, name: &str) -> testenv::Switchboard {
    node_with(db_url, root, name, &[])
}

fn bin() -> String {
    std::env::var("SWITCHBOARD_BIN").unwrap_or_else(|_| {
        panic!("SWITCHBOARD_BIN is not set: run deploy/tests/video-nodes.sh (it builds the binary and sets it)")
    })
}

fn node_with(db_url: &str, root: &str, name: &str, extra: &[(&str, &str)]) -> testenv::Switchboard {
    let mut env = vec![
        ("SWITCHBOARD_DATABASE__URL", db_url),
        ("SWITCHBOARD_COORD__ROOT", root),
        ("SWITCHBOARD_COORD__SESSION_TIMEOUT_MS", "2000"),
        ("SWITCHBOARD_JWT__HS256_SECRET", SECRET),
        ("SWITCHBOARD_VIDEO__NODE_ID", name),
    ];
    env.extend_from_slice(extra);
    testenv::Switchboard::start(&bin(), &["video"], &env)
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
    join_publishing(entry, frame, Publish::CALL).await
}

/// [`join`], publishing `publish`.
async fn join_publishing(
    entry: &str,
    frame: &Value,
    publish: Publish,
) -> Result<(TestPeer, String, usize, Duration), String> {
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
                let peer = TestPeer::join(ws, frame.clone(), publish).await;
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
    start_room_with(http, json!({"interaction_id": interaction})).await
}

async fn start_room_with(http: &str, body: Value) -> (Uuid, String) {
    let response = reqwest::Client::new()
        .post(format!("http://{http}/api/v1/video/rooms"))
        .bearer_auth(token("alice", &["agent"]))
        .json(&body)
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

/// Rejoins through `entry` until a node takes the join (the dead node's pin expires first).
async fn rejoin(entry: &str, frame: Value, publish: Publish, since: Instant) -> (TestPeer, String) {
    loop {
        match join_publishing(entry, &frame, publish).await {
            Ok((peer, at, _, _)) => return (peer, at),
            Err(_) => {
                assert!(since.elapsed() < LIMIT, "no rejoin within {LIMIT:?}");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
}

/// The parts of a room's recording once `parts` of them are finished (ready or failed).
async fn finished_parts(pool: &sqlx::PgPool, room: Uuid, parts: usize, within: Duration) -> Vec<store::Recording> {
    let deadline = Instant::now() + within;
    loop {
        let mut conn = pool.acquire().await.unwrap();
        let all = store::recordings_of_room(&mut conn, room).await.unwrap();
        if all.len() >= parts && all.iter().all(|r| matches!(r.state, RecordingState::Ready | RecordingState::Failed)) {
            return all;
        }
        assert!(Instant::now() < deadline, "the recording's parts are not finished within {within:?}: {all:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Counts rows of a query with one uuid parameter.
async fn count(pool: &sqlx::PgPool, sql: &'static str, id: Uuid) -> i64 {
    sqlx::query_scalar(sql).bind(id).fetch_one(pool).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the switchboard binary: run by deploy/tests/video-nodes.sh, a step of deploy/test.sh"]
async fn a_recorded_call_moved_off_a_dead_node_is_recorded_in_two_parts() {
    recorded_failover(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the switchboard binary: run by deploy/tests/video-nodes.sh, a step of deploy/test.sh"]
async fn without_a_shared_spool_the_dead_node_finishes_its_part_when_it_restarts() {
    recorded_failover(false).await;
}

/// A recorded call on v1, v1 killed, the call on v2: two parts. With `shared_spool` the nodes
/// share the spool directory and v2 finishes v1's part during the call (v1, restarted, does not
/// again); without, v1's part waits for v1, which finishes it when it starts again.
async fn recorded_failover(shared_spool: bool) {
    media::require_ffmpeg();
    media::vp8_pattern();
    let (db_url, pool) = testenv::database().await;
    let account = testenv::fixtures::webchat_account(&pool, &[("alice", "agent")]).await;
    let interaction =
        testenv::fixtures::assigned_interaction(&pool, account, "wc-rec", "Vera", "a call?", "alice").await;
    sqlx::query(
        "INSERT INTO webhook_subscriptions (id, url, events, secret, created_by) VALUES ($1, 'https://crm.example/hook', '{video.room}', 'whsec', 'admin')",
    )
    .bind(Uuid::new_v4())
    .execute(&pool)
    .await
    .unwrap();
    let root = format!("/test-{}", Uuid::new_v4().simple());
    // one spool directory for both nodes (a shared file system), and a file server of their own
    let shared = tempfile::tempdir().unwrap();
    let (spool, files) = (shared.path().join("spool"), shared.path().join("files"));
    let files_root = files.to_str().unwrap().to_owned();
    let fileserver = testenv::Switchboard::start(
        &bin(),
        &["fileserver"],
        &[
            ("SWITCHBOARD_DATABASE__URL", db_url.as_str()),
            ("SWITCHBOARD_COORD__ROOT", root.as_str()),
            ("SWITCHBOARD_JWT__HS256_SECRET", SECRET),
            ("SWITCHBOARD_FILESERVER__ROOT", files_root.as_str()),
        ],
    );
    let fileserver_url = format!("http://{}", fileserver.addr);
    let spool_of = |node: &str| if shared_spool { spool.clone() } else { spool.join(node) };
    let (spool_v1, spool_v2) = (spool_of("v1"), spool_of("v2"));
    let (dir_v1, dir_v2) = (spool_v1.to_str().unwrap().to_owned(), spool_v2.to_str().unwrap().to_owned());
    let v1_env = [
        ("SWITCHBOARD_VIDEO__RECORDING__SPOOL_DIR", dir_v1.as_str()),
        ("SWITCHBOARD_VIDEO__RECORDING__FILESERVER_URL", fileserver_url.as_str()),
    ];
    let v2_env = [
        ("SWITCHBOARD_VIDEO__RECORDING__SPOOL_DIR", dir_v2.as_str()),
        ("SWITCHBOARD_VIDEO__RECORDING__FILESERVER_URL", fileserver_url.as_str()),
    ];
    let mut v1 = Some(node_with(&db_url, &root, "v1", &v1_env));
    let v2 = node_with(&db_url, &root, "v2", &v2_env);
    let (v1_ws, v2_ws) = (signalling(v1.as_ref().unwrap()), signalling(&v2));

    // the recorded call on v1: the customer consents, a 440 Hz voice and the test pattern; the
    // agent a 1000 Hz voice
    let (room, link) = start_room_with(&v2.addr, json!({"interaction_id": interaction, "record": true})).await;
    let (agent_media, customer_media) = (Publish::media(1000, true), Publish::media(440, true));
    let (mut agent, at, _, _) =
        join_publishing(&v1_ws, &agent_join(room, "alice", &["agent"]), agent_media).await.unwrap();
    assert_eq!(at, v1_ws, "pinned to v1");
    let (mut customer, at, _, _) =
        join_publishing(&v1_ws, &customer_join_consenting(&link, true), customer_media).await.unwrap();
    assert_eq!(at, v1_ws);
    assert_eq!(customer.joined["room"]["recording"], true, "recorded on v1");
    media_flows(&mut agent, &mut customer, "on v1").await;
    tokio::time::sleep(Duration::from_secs(4)).await;

    // v1 dies with the call; both pages rejoin through v2, the customer answering the notice
    // again as the page does
    agent.stop_media();
    customer.stop_media();
    let killed_at = Instant::now();
    let mut dead = v1.take().unwrap();
    dead.child.kill().unwrap();
    dead.child.wait().unwrap();
    let ((mut agent, agent_at), (mut customer, customer_at)) = tokio::join!(
        rejoin(&v2_ws, agent_join(room, "alice", &["agent"]), agent_media, killed_at),
        rejoin(&v2_ws, customer_join_consenting(&link, true), customer_media, killed_at)
    );
    assert_eq!((agent_at.as_str(), customer_at.as_str()), (v2_ws.as_str(), v2_ws.as_str()), "the room moved to v2");
    media_flows(&mut agent, &mut customer, "on v2 after v1 died").await;
    // with a shared spool the part v1 left is taken over by v2 while the call goes on there;
    // without, it waits for v1
    let mut conn = pool.acquire().await.unwrap();
    let deadline = Instant::now() + LIMIT;
    let now = loop {
        let now = store::recordings_of_room(&mut conn, room).await.unwrap();
        if !shared_spool
            || now.first().is_some_and(|p| matches!(p.state, RecordingState::Ready | RecordingState::Failed))
        {
            break now;
        }
        assert!(Instant::now() < deadline, "v2 did not finish the part v1 left: {now:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    if shared_spool {
        assert_eq!((now[0].part, now[0].state), (1, RecordingState::Ready), "v2 finished what v1 spooled: {now:#?}");
    } else {
        assert_eq!(
            (now[0].part, now[0].state, now[0].processor.as_deref()),
            (1, RecordingState::Recording, None),
            "v2 does not see v1's spool: {now:#?}"
        );
    }
    assert_eq!(now.len(), 2, "{now:#?}");
    assert_eq!((now[1].part, now[1].state, now[1].node.as_str()), (2, RecordingState::Recording, "v2"));
    assert!(
        agent.joined["room"]["recording"] == true || customer.joined["room"]["recording"] == true,
        "v2 records the rest of the call: {} / {}",
        agent.joined,
        customer.joined
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    send(&mut agent.ws, json!({"type": "end"})).await;
    let restarted = if shared_spool {
        None
    } else {
        // part 2 is finished by v2; part 1 is left to v1, which starts again
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let now = store::recordings_of_room(&mut conn, room).await.unwrap();
            if now.get(1).is_some_and(|p| matches!(p.state, RecordingState::Ready | RecordingState::Failed)) {
                assert_eq!(now[0].state, RecordingState::Recording, "{now:#?}");
                break;
            }
            assert!(Instant::now() < deadline, "v2 did not finish its part: {now:#?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Some(node_with(&db_url, &root, "v1", &v1_env))
    };
    let parts = finished_parts(&pool, room, 2, Duration::from_secs(60)).await;
    let back = killed_at.elapsed();
    let finisher = if shared_spool { "v2" } else { "v1" };

    // two parts, each a file, one after the other in time
    assert_eq!(parts.len(), 2, "{parts:#?}");
    let (p1, p2) = (&parts[0], &parts[1]);
    assert_eq!(
        (p1.part, p1.node.as_str(), p1.processor.as_deref(), p1.claims),
        (1, "v1", Some(finisher), 1),
        "{p1:#?}"
    );
    assert_eq!((p2.part, p2.node.as_str(), p2.processor.as_deref(), p2.claims), (2, "v2", Some("v2"), 1), "{p2:#?}");
    assert!(p1.state == RecordingState::Ready && p2.state == RecordingState::Ready, "{parts:#?}");
    let (end1, end2) = (p1.ended_at.unwrap(), p2.ended_at.unwrap());
    assert!(end1 <= p2.started_at, "part 1 ends ({end1}) before part 2 starts ({})", p2.started_at);
    let call = store::call_record(&mut conn, room).await.unwrap();
    assert_eq!(call.recordings.iter().map(|r| r.id).collect::<Vec<_>>(), vec![p1.id, p2.id], "listed with the call");
    assert_eq!(call.recording.as_ref().map(|r| r.id), Some(p1.id), "`recording` stays the first part");
    assert!(end2 <= call.room.ended_at.unwrap() + chrono::Duration::seconds(1));

    // every part once: in the interaction's log (so the agent's stream and the webhook)
    let ready: Vec<Value> = sqlx::query_scalar(
        "SELECT data FROM interaction_events WHERE interaction_id = $1 AND kind = 'video.room' AND data->>'state' = 'recording_ready' ORDER BY seq",
    )
    .bind(interaction)
    .fetch_all(&pool)
    .await
    .unwrap();
    // in the order the parts were finished (without a shared spool, part 2 comes first)
    let mut announced: Vec<(i64, String)> = ready
        .iter()
        .map(|d| (d["recording"]["part"].as_i64().unwrap(), d["recording"]["file"]["id"].as_str().unwrap().to_owned()))
        .collect();
    announced.sort();
    let files_of = |p: &store::Recording| p.file.as_ref().unwrap().id.to_string();
    assert_eq!(announced, vec![(1, files_of(p1)), (2, files_of(p2))], "one recording_ready per part");
    assert_eq!(
        count(&pool, "SELECT count(*) FROM agent_events WHERE agent_login = 'alice' AND event = 'video.room' AND data->>'state' = 'recording_ready' AND (data->>'interaction_id')::uuid = $1", interaction).await,
        2,
        "both in the agent's stream"
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM webhook_deliveries d JOIN interaction_events e ON e.interaction_id = d.interaction_id AND e.seq = d.seq WHERE d.interaction_id = $1 AND e.data->>'state' = 'recording_ready'", interaction).await,
        2,
        "both to the webhook"
    );

    // the files: the customer's video, the customer on the left and the agent on the right,
    // as long as each part's time range
    for p in [p1, p2] {
        let file = p.file.clone().unwrap();
        let path = shared.path().join(format!("part{}.webm", p.part));
        let bytes = reqwest::Client::new()
            .get(format!("{fileserver_url}/api/v1/files/{}", file.id))
            .bearer_auth(token("alice", &["agent"]))
            .send()
            .await
            .unwrap();
        assert_eq!(bytes.status(), 200);
        std::fs::write(&path, bytes.bytes().await.unwrap()).unwrap();
        let probe = ffprobe(&path);
        let streams = probe["streams"].as_array().unwrap();
        let video: Vec<_> = streams.iter().filter(|s| s["codec_type"] == "video").collect();
        let audio: Vec<_> = streams.iter().filter(|s| s["codec_type"] == "audio").collect();
        assert_eq!(video.len(), 1, "part {}: {probe}", p.part);
        assert_eq!(video[0]["codec_name"], "vp8");
        assert_eq!((audio.len(), audio[0]["channels"].as_u64()), (1, Some(2)), "part {}: {probe}", p.part);
        let duration: f64 = probe["format"]["duration"].as_str().unwrap().parse().unwrap();
        let range = (p.ended_at.unwrap() - p.started_at).num_milliseconds() as f64 / 1000.0;
        let (left, right) = decode_stereo(&path);
        let (customer_db, agent_db) =
            ((tone_db(&left, 440.0), tone_db(&right, 440.0)), (tone_db(&left, 1000.0), tone_db(&right, 1000.0)));
        println!(
            "part {}: {} on {}, finished by {}: {:.3} s of file for {range:.3} s of call; customer {customer_db:.1?} dB, agent {agent_db:.1?} dB (left, right)",
            p.part,
            file.name,
            p.node,
            p.processor.as_deref().unwrap_or("?"),
            duration
        );
        assert!((duration - range).abs() <= 0.2, "part {}: the file lasts {duration} s, its range {range} s", p.part);
        assert!(range >= 3.0, "part {} holds seconds of the call: {range} s", p.part);
        assert!(customer_db.0 - customer_db.1 >= 20.0, "part {}: customer {customer_db:?}", p.part);
        assert!(agent_db.1 - agent_db.0 >= 20.0, "part {}: agent {agent_db:?}", p.part);
    }

    // v1 comes back (or is back): what was finished is not finished again
    let v1 = restarted.unwrap_or_else(|| node_with(&db_url, &root, "v1", &v1_env));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let again = store::recordings_of_room(&mut conn, room).await.unwrap();
    assert_eq!(
        again.iter().map(|r| (r.id, r.state, r.claims)).collect::<Vec<_>>(),
        parts.iter().map(|r| (r.id, r.state, r.claims)).collect::<Vec<_>>(),
        "finished once"
    );
    let recording_files: i64 =
        sqlx::query_scalar("SELECT count(*) FROM files WHERE kind = 'recording'").fetch_one(&pool).await.unwrap();
    assert_eq!(recording_files, 2, "two files, nothing recorded twice");
    assert!(
        !spool_v1.join(p1.id.to_string()).exists() && !spool_v2.join(p2.id.to_string()).exists(),
        "the spools are cleared"
    );
    println!(
        "recorded failover ({}): part 1 ({:.1} s) spooled by v1, finished by {finisher}; part 2 ({:.1} s) recorded by v2; both ready {:.1} s after the kill; nothing finished twice",
        if shared_spool { "shared spool" } else { "a spool per node" },
        (end1 - p1.started_at).num_milliseconds() as f64 / 1000.0,
        (end2 - p2.started_at).num_milliseconds() as f64 / 1000.0,
        back.as_secs_f64()
    );
    agent.leave().await;
    customer.leave().await;
    drop(v1);
    drop(v2);
    drop(fileserver);
}
