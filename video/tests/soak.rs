//! The leak check: 1,000 short calls (agent and customer exchange media for a moment, then
//! both leave), eight at a time on eight interactions. After all of them the SFU holds no
//! peer, room, address or timer, the process has no more tasks or file descriptors than after
//! the first 100, and resident memory is within 10% of its level after the first 100
//! (webrtc-rs 0.21.0 had a reported leak of closed peer connections). Prints what it measured.

mod support;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use schema::domain::VideoRoomState;
use schema::store;
use support::{Hub, Publish, TestPeer, agent_join, customer_join};
use uuid::Uuid;

const CALLS: usize = 1000;
const WARM_UP: usize = 100;
const AT_ONCE: usize = 8;

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Open file descriptors, not counting the database pool's connections (it grows lazily up
/// to its maximum as calls overlap).
fn open_fds(hub: &Hub) -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count() - hub.pool.size() as usize
}

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current().metrics().num_alive_tasks()
}

/// One call on `interaction`: the room, both sides, media both ways, both leave, room ended.
async fn call(hub: &Hub, interaction: Uuid) {
    let (room, link) = hub.room_for(interaction).await;
    let mut agent = TestPeer::join(hub.socket().await, agent_join(room, "alice", &["agent"]), Publish::CALL).await;
    let customer = TestPeer::join(hub.socket().await, customer_join(&link), Publish::CALL).await;
    agent.next_slots().await;
    let video = agent.mid_of(&customer.id(), "camera").unwrap();
    let customer_connected = customer.received.clone();
    let waited = tokio::spawn({
        let video = video.clone();
        async move {
            agent.wait_until("media flows", Duration::from_secs(20), |r| r.on(&video) > 5).await;
            agent
        }
    })
    .await;
    let agent = match waited {
        Ok(agent) => agent,
        Err(e) => panic!(
            "{e}; the customer: connected {}, sent to the SFU? counters {:?}",
            customer_connected.connected.load(Ordering::SeqCst),
            hub.video.sfu().counters,
        ),
    };
    customer.leave().await;
    agent.leave().await;
    // the room ends once everyone left (after the grace); end it now so the next call can start
    let mut conn = hub.pool.acquire().await.unwrap();
    let open = store::load_room(&mut conn, room).await.unwrap();
    if open.state == VideoRoomState::Open {
        store::end_room(&mut conn, room, "ended_by_agent", None).await.unwrap();
    }
}

/// `calls` calls, `AT_ONCE` at a time, one interaction per worker.
async fn calls(hub: &Arc<Hub>, interactions: &[Uuid], calls: usize) {
    let mut workers = Vec::new();
    for (w, &interaction) in interactions.iter().enumerate() {
        let hub = hub.clone();
        let mine = calls / AT_ONCE + usize::from(w < calls % AT_ONCE);
        workers.push(tokio::spawn(async move {
            for _ in 0..mine {
                call(&hub, interaction).await;
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
}

/// Waits until the SFU and the rooms have let go of every call (leaving is asynchronous).
async fn settle(hub: &Hub) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = hub.video.sfu().snapshot().await.unwrap();
        if s.peers == 0 && s.rooms == 0 && s.addresses == 0 && hub.video.live_rooms() == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the SFU still holds {s:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // the sockets' tasks finish right after they leave, the empty-room timers after the
    // grace (1 s in tests)
    tokio::time::sleep(Duration::from_millis(1500)).await;
}

#[tokio::test]
async fn a_thousand_calls_leave_nothing_behind() {
    let hub = Arc::new(Hub::start().await);
    let mut interactions = vec![hub.interaction];
    for i in 1..AT_ONCE {
        interactions.push(hub.another_interaction(&format!("wc-soak-{i}")).await);
    }
    // the database pool opens connections lazily as calls overlap: open them all now, so its
    // growth is not mistaken for a leak
    let mut held = Vec::new();
    for _ in 0..hub.pool.options().get_max_connections() {
        held.push(hub.pool.acquire().await.unwrap());
    }
    drop(held);
    let started = Instant::now();
    calls(&hub, &interactions, WARM_UP).await;
    settle(&hub).await;
    let (rss0, fds0, tasks0) = (rss_kib(), open_fds(&hub), alive_tasks());
    println!("after {WARM_UP} calls: RSS {rss0} KiB, {fds0} fds, {tasks0} tasks");

    calls(&hub, &interactions, CALLS - WARM_UP).await;
    settle(&hub).await;
    let (rss, fds, tasks) = (rss_kib(), open_fds(&hub), alive_tasks());
    let forwarded = hub.video.sfu().counters.rtp_forwarded.load(Ordering::Relaxed);
    println!(
        "after {CALLS} calls in {:.0?}: RSS {rss} KiB ({:+.1}% from call {WARM_UP}), {fds} fds, {tasks} tasks, {forwarded} RTP packets forwarded",
        started.elapsed(),
        (rss as f64 - rss0 as f64) * 100.0 / rss0 as f64,
    );
    let ended: i64 = sqlx::query_scalar("SELECT count(*) FROM video_rooms WHERE state = 'ended'")
        .fetch_one(&hub.pool)
        .await
        .unwrap();
    assert_eq!(ended, CALLS as i64, "every call's room ended");
    let snapshot = hub.video.sfu().snapshot().await.unwrap();
    assert_eq!((snapshot.peers, snapshot.rooms, snapshot.addresses, snapshot.timers), (0, 0, 0, 0), "{snapshot:?}");
    assert!(fds <= fds0, "file descriptors grew from {fds0} to {fds}");
    assert!(tasks <= tasks0, "tasks grew from {tasks0} to {tasks}");
    assert!(rss as f64 <= rss0 as f64 * 1.10, "resident memory grew from {rss0} KiB to {rss} KiB");
}
