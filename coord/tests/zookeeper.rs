//! The ZooKeeper coordinator against the real ZooKeeper that `deploy/services.sh` starts.
//! Each test works under its own root path, so tests run in parallel without seeing each other.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use coord::{Cas, CoordError, Coordinator, Leadership, ZkConfig, ZkCoordinator};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

const SESSION: Duration = Duration::from_secs(2);

fn root() -> String {
    format!("/test-{}", uuid::Uuid::new_v4().simple())
}

async fn coordinator(connect: &str, root: &str) -> ZkCoordinator {
    testenv::init_logging();
    ZkCoordinator::start(ZkConfig { connect: connect.into(), root: root.into(), session_timeout: SESSION })
        .await
        .expect("ZooKeeper reachable")
}

/// Polls `check` until it holds or `within` passes.
async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("not within {within:?}: {what}");
}

async fn leaders(campaigns: &[Option<coord::Campaign>]) -> Vec<(usize, i64)> {
    campaigns
        .iter()
        .enumerate()
        .filter_map(|(i, c)| match c.as_ref()?.current() {
            Leadership::Leader { token } => Some((i, token)),
            Leadership::Candidate => None,
        })
        .collect()
}

#[tokio::test]
async fn one_leader_of_three_and_a_successor_with_a_larger_token_when_it_goes() {
    let zk = testenv::zookeeper();
    let root = root();
    let mut nodes = Vec::new();
    let mut campaigns = Vec::new();
    for i in 0..3 {
        let c = coordinator(&zk, &root).await;
        campaigns.push(Some(c.campaign("connector/acc-1", &format!("node-{i}")).await.unwrap()));
        nodes.push(Some(c));
    }
    eventually(SESSION, "a leader is elected", || async { leaders(&campaigns).await.len() == 1 }).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let elected = leaders(&campaigns).await;
    assert_eq!(elected.len(), 1, "exactly one leader: {elected:?}");
    let (old, old_token) = elected[0];

    // the leader's process goes away: its session closes and its election node with it
    nodes[old].take().unwrap().shutdown().await;
    eventually(SESSION * 2, "a successor is elected", || async {
        leaders(&campaigns).await.iter().any(|(i, _)| *i != old)
    })
    .await;
    let successor = leaders(&campaigns).await.into_iter().find(|(i, _)| *i != old).unwrap();
    assert!(successor.1 > old_token, "fencing tokens grow: {} then {}", old_token, successor.1);

    // the store refuses the deposed leader's token once the successor has written
    let (_url, pool) = testenv::database().await;
    let mut conn = pool.acquire().await.unwrap();
    schema::store::check_fence(&mut conn, "connector/acc-1", old_token).await.unwrap();
    schema::store::check_fence(&mut conn, "connector/acc-1", successor.1).await.unwrap();
    assert!(matches!(
        schema::store::check_fence(&mut conn, "connector/acc-1", old_token).await,
        Err(schema::store::StoreError::StaleFence { .. })
    ));
}

#[tokio::test]
async fn sixteen_racers_for_one_interaction_one_owner() {
    let zk = testenv::zookeeper();
    let root = root();
    let mut nodes = Vec::new();
    for _ in 0..4 {
        nodes.push(coordinator(&zk, &root).await);
    }
    let racers: Vec<JoinHandle<bool>> = (0..16)
        .map(|i| {
            let c = nodes[i % 4].clone();
            tokio::spawn(async move {
                let me = format!("agent-{i}");
                matches!(c.compare_and_set("interaction/9f1c", None, me.as_bytes()).await.unwrap(), Cas::Written { .. })
            })
        })
        .collect();
    let mut winners = 0;
    for r in racers {
        winners += r.await.unwrap() as usize;
    }
    assert_eq!(winners, 1);
    let owned = nodes[0].read("interaction/9f1c").await.unwrap().expect("record written");
    // a versioned update: only a writer holding the current version succeeds
    assert!(matches!(
        nodes[1].compare_and_set("interaction/9f1c", Some(owned.version + 1), b"x").await.unwrap(),
        Cas::Conflict { current: Some(_) }
    ));
    assert!(matches!(
        nodes[2].compare_and_set("interaction/9f1c", Some(owned.version), b"transferred").await.unwrap(),
        Cas::Written { .. }
    ));
    assert!(matches!(nodes[0].compare_and_set("bad//key", None, b"").await, Err(CoordError::InvalidName(_))));
}

#[tokio::test]
async fn membership_and_presence_follow_the_handles() {
    let zk = testenv::zookeeper();
    let root = root();
    let a = coordinator(&zk, &root).await;
    let b = coordinator(&zk, &root).await;
    let m = a.join("chatserver", "node-a", b"10.0.0.1:8080".to_vec()).await.unwrap();
    let _p = a.announce_presence("alice", "node-a", b"ready".to_vec()).await.unwrap();
    assert!(matches!(b.join("chatserver", "node-a", vec![]).await, Err(CoordError::AlreadyMember { .. })));
    let members = b.members("chatserver").await.unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].data, b"10.0.0.1:8080");
    m.update(b"10.0.0.1:9090".to_vec());
    eventually(SESSION, "update visible", || async {
        b.members("chatserver").await.unwrap().first().is_some_and(|m| m.data == b"10.0.0.1:9090")
    })
    .await;
    drop(m);
    eventually(SESSION, "member gone", || async { b.members("chatserver").await.unwrap().is_empty() }).await;
    assert_eq!(b.presence("alice").await.unwrap()[0].name, "node-a");
    a.shutdown().await;
    eventually(SESSION, "presence ends with the session", || async { b.presence("alice").await.unwrap().is_empty() })
        .await;
}

/// A consumer as the product has one: the data lives elsewhere (PostgreSQL in the product, a
/// counter here); a wake means "read it".
fn consume(mut sub: coord::Subscription, data: Arc<AtomicU64>) -> (Arc<AtomicU64>, JoinHandle<()>) {
    let seen = Arc::new(AtomicU64::new(0));
    let seen2 = seen.clone();
    let task = tokio::spawn(async move {
        while sub.wake().await.is_ok() {
            seen2.store(data.load(Ordering::SeqCst), Ordering::SeqCst);
        }
    });
    (seen, task)
}

#[tokio::test]
async fn notifications_coalesce_reach_other_processes_and_keep_zookeeper_small() {
    let zk = testenv::zookeeper();
    let root = root();
    let subscriber = coordinator(&zk, &root).await;
    let notifier = coordinator(&zk, &root).await;
    let data = Arc::new(AtomicU64::new(0));
    let (seen, _task) = consume(subscriber.subscribe("agent/alice").await.unwrap(), data.clone());
    tokio::time::sleep(Duration::from_millis(200)).await;
    for i in 1..=5_000u64 {
        data.store(i, Ordering::SeqCst); // "commit"
        notifier.notify("agent/alice");
        if i % 500 == 0 {
            tokio::task::yield_now().await;
        }
    }
    eventually(Duration::from_secs(5), "the last notification is seen", || async {
        seen.load(Ordering::SeqCst) == 5_000
    })
    .await;
    // one doorbell node per topic, however many notifications went through it
    let inspector = zookeeper_client::Client::connect(&zk).await.unwrap();
    let topics = inspector.list_children(&format!("{root}/notify/agent")).await.unwrap();
    assert_eq!(topics, vec!["alice".to_string()]);
    let children = inspector.list_children(&format!("{root}/notify/agent/alice")).await.unwrap();
    assert!(children.is_empty());
    let (_, stat) = inspector.get_data(&format!("{root}/notify/agent/alice")).await.unwrap();
    assert!(stat.version < 5_000, "notifications were coalesced ({} writes for 5000)", stat.version);
}

/// A TCP proxy in front of ZooKeeper that can cut every connection, to partition a client.
struct Proxy {
    addr: String,
    blocked: Arc<std::sync::atomic::AtomicBool>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(upstream: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let blocked = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (upstream, b, c) = (upstream.to_owned(), blocked.clone(), conns.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if b.load(Ordering::SeqCst) {
                    continue; // dropped: the client sees the connection close
                }
                let upstream = upstream.clone();
                c.lock().await.push(tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                }));
            }
        });
        Proxy { addr, blocked, conns }
    }

    async fn cut(&self) {
        self.blocked.store(true, Ordering::SeqCst);
        for c in self.conns.lock().await.drain(..) {
            c.abort();
        }
    }

    fn restore(&self) {
        self.blocked.store(false, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn a_process_recovers_from_session_expiry_by_itself_and_misses_no_notification() {
    let zk = testenv::zookeeper();
    let root = root();
    let proxy = Proxy::start(&zk).await;
    let partitioned = coordinator(&proxy.addr, &root).await;
    let observer = coordinator(&zk, &root).await;

    let _member = partitioned.join("chatserver", "node-a", b"a".to_vec()).await.unwrap();
    let mut campaign = partitioned.campaign("connector/acc-1", "node-a").await.unwrap();
    let first_token = campaign.leading().await.unwrap();
    let data = Arc::new(AtomicU64::new(0));
    let (seen, _task) = consume(partitioned.subscribe("agent/alice").await.unwrap(), data.clone());
    let first_session = partitioned.session_id().unwrap();
    assert_eq!(observer.members("chatserver").await.unwrap().len(), 1);

    proxy.cut().await;
    // the server expires the partitioned session: its member node disappears...
    eventually(SESSION * 4, "the partitioned session expires", || async {
        observer.members("chatserver").await.unwrap().is_empty()
    })
    .await;
    assert_eq!(campaign.current(), Leadership::Candidate, "a partitioned leader steps down");
    // ...and a notification is sent while it is away
    data.store(1, Ordering::SeqCst);
    observer.notify("agent/alice");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(seen.load(Ordering::SeqCst), 0, "nothing can arrive during the partition");

    proxy.restore();
    eventually(SESSION * 5, "a new session, member back, notification delivered", || async {
        partitioned.session_id().is_some_and(|s| s != first_session)
            && observer.members("chatserver").await.unwrap().len() == 1
            && seen.load(Ordering::SeqCst) == 1
    })
    .await;
    let token = tokio::time::timeout(SESSION * 2, campaign.leading()).await.expect("re-elected").unwrap();
    assert!(token > first_token, "re-entered the election with a new token");
    assert!(partitioned.is_ready());
}

#[tokio::test]
async fn ensemble_keeps_electing_and_notifying_with_one_node_down() {
    let (connect, script) = testenv::zookeeper_ensemble();
    let root = root();
    let a = coordinator(&connect, &root).await;
    let b = coordinator(&connect, &root).await;
    let data = Arc::new(AtomicU64::new(0));
    let (seen, _task) = consume(b.subscribe("agent/bob").await.unwrap(), data.clone());
    let mut campaigns = vec![
        Some(a.campaign("connector/acc-2", "a").await.unwrap()),
        Some(b.campaign("connector/acc-2", "b").await.unwrap()),
    ];
    // either may have entered first
    eventually(SESSION * 2, "a leader is elected", || async { leaders(&campaigns).await.len() == 1 }).await;
    let (first, first_token) = leaders(&campaigns).await[0];

    let node = |action: &str| {
        let status = std::process::Command::new(&script)
            .args(["ensemble", action, "1"])
            .status()
            .expect("run deploy/services.sh");
        assert!(status.success(), "deploy/services.sh ensemble {action} 1 failed");
    };
    node("stop-node");
    let restart = scopeguard(move || node("start-node"));

    data.store(7, Ordering::SeqCst);
    a.notify("agent/bob");
    eventually(SESSION * 5, "notification through the surviving quorum", || async { seen.load(Ordering::SeqCst) == 7 })
        .await;
    campaigns[first] = None; // the leader resigns
    eventually(SESSION * 5, "the other candidate leads", || async {
        leaders(&campaigns).await.iter().any(|(i, _)| *i != first)
    })
    .await;
    let (_, second_token) = leaders(&campaigns).await[0];
    assert!(second_token > first_token, "fencing tokens grow: {first_token} then {second_token}");
    drop(restart);
}

/// Runs `f` when dropped, so a failing assertion still restarts the stopped node.
fn scopeguard<F: FnOnce()>(f: F) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}

/// A watch event lost between a fire and the next arm would leave its topic silent for good:
/// nothing re-reads the doorbell by the clock, so this fails instead of arriving late.
#[tokio::test]
async fn the_last_notification_of_every_topic_arrives_under_interleaved_load() {
    let zk = testenv::zookeeper();
    let root = root();
    let subscriber = coordinator(&zk, &root).await;
    let notifier = coordinator(&zk, &root).await;
    const TOPICS: usize = 200;
    const ROUNDS: u64 = 30;
    let mut data = Vec::new();
    let mut seen = Vec::new();
    for t in 0..TOPICS {
        let d = Arc::new(AtomicU64::new(0));
        let (s, _task) = consume(subscriber.subscribe(&format!("agent/a{t}")).await.unwrap(), d.clone());
        std::mem::forget(_task); // keep consuming until the test ends
        data.push(d);
        seen.push(s);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // topic t is notified in the rounds where (t + round) is not a multiple of 3, so topics
    // interleave and each one's notifications land while earlier ones are in flight
    let notified = |t: usize, round: u64| !(t + round as usize).is_multiple_of(3);
    for round in 1..=ROUNDS {
        for (t, d) in data.iter().enumerate() {
            if notified(t, round) {
                d.store(round, Ordering::SeqCst);
                notifier.notify(&format!("agent/a{t}"));
            }
        }
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    for (t, s) in seen.iter().enumerate() {
        let last = (1..=ROUNDS).rev().find(|r| notified(t, *r)).unwrap();
        eventually(Duration::from_secs(10), &format!("topic a{t} sees its last notification ({last})"), || {
            let s = s.clone();
            async move { s.load(Ordering::SeqCst) == last }
        })
        .await;
    }
}

/// Subscribes to `topics` and waits until each subscription has taken the wakes it starts with
/// (one at once, one when its watch is first armed), so any later wake is a notification.
async fn quiet_subscriptions(coordinator: &ZkCoordinator, topics: &[String]) -> Vec<coord::Subscription> {
    let mut subs = Vec::new();
    for topic in topics {
        subs.push(coordinator.subscribe(topic).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for sub in &mut subs {
        while tokio::time::timeout(Duration::from_millis(50), sub.wake()).await.is_ok() {}
    }
    subs
}

/// The lost wake-up of the delivery benchmark: a writer commits, rings its readers' doorbells
/// and goes away at once (its last coordinator handle dropped, as a process ends). The rings
/// were queued for the background writer, which stopped with the coordinator and dropped them,
/// so the readers slept until a safety net woke them. Every ring sent before the end must reach
/// ZooKeeper before the session closes.
#[tokio::test]
async fn doorbells_rung_just_before_the_notifier_goes_away_still_ring() {
    let zk = testenv::zookeeper();
    let root = root();
    let subscriber = coordinator(&zk, &root).await;
    let topics: Vec<String> = (0..50).map(|t| format!("agent/last{t}")).collect();
    let mut subs = quiet_subscriptions(&subscriber, &topics).await;
    let notifier = coordinator(&zk, &root).await;
    for topic in &topics {
        notifier.notify(topic);
    }
    drop(notifier);
    // well under any safety net: the ring itself must arrive
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    let mut silent = Vec::new();
    for (topic, sub) in topics.iter().zip(&mut subs) {
        if tokio::time::timeout_at(deadline, sub.wake()).await.is_err() {
            silent.push(topic.clone());
        }
    }
    assert!(silent.is_empty(), "{} of {} doorbells never rang: {silent:?}", silent.len(), topics.len());
}

/// A process stopping on SIGTERM: by the time `shutdown` returns, every doorbell it rang before
/// is written.
#[tokio::test]
async fn shutdown_returns_after_the_doorbells_rung_before_it_are_written() {
    let zk = testenv::zookeeper();
    let root = root();
    let notifier = coordinator(&zk, &root).await;
    let topics: Vec<String> = (0..50).map(|t| format!("agent/stop{t}")).collect();
    for topic in &topics {
        notifier.notify(topic);
    }
    notifier.shutdown().await;
    let inspector = zookeeper_client::Client::connect(&zk).await.unwrap();
    for topic in &topics {
        let written = inspector.get_data(&format!("{root}/notify/{topic}")).await;
        assert!(matches!(written, Ok((_, ref stat)) if stat.version >= 1), "{topic} not rung: {written:?}");
    }
}

/// A process's own ring wakes its own subscribers once: `notify` wakes them at once, and the
/// watch on the same doorbell, which fires for that write too, does not wake them again (it
/// did: every agent socket read its stream a second time, for nothing, after every batch). A
/// ring from another process still wakes them, also between two of our own.
#[tokio::test]
async fn a_ring_wakes_the_subscribers_of_its_own_process_once() {
    let zk = testenv::zookeeper();
    let root = root();
    let here = coordinator(&zk, &root).await;
    let elsewhere = coordinator(&zk, &root).await;
    let topic = "agent/once".to_string();
    let mut sub = quiet_subscriptions(&here, std::slice::from_ref(&topic)).await.remove(0);
    let quiet = Duration::from_millis(400); // many ZooKeeper round trips on loopback
    for round in 0..5 {
        here.notify(&topic);
        tokio::time::timeout(Duration::from_secs(1), sub.wake()).await.expect("the ring wakes").unwrap();
        assert!(
            tokio::time::timeout(quiet, sub.wake()).await.is_err(),
            "round {round}: woken a second time for the same ring, by its own doorbell's watch"
        );
    }
    for round in 0..3 {
        elsewhere.notify(&topic);
        tokio::time::timeout(Duration::from_secs(3), sub.wake()).await.expect("another process's ring wakes").unwrap();
        here.notify(&topic);
        tokio::time::timeout(Duration::from_secs(1), sub.wake()).await.expect("our ring wakes").unwrap();
        assert!(tokio::time::timeout(quiet, sub.wake()).await.is_err(), "round {round}: a second wake for our ring");
    }
}
