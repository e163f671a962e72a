//! Notification throughput, printed (not asserted): wake-ups delivered per second between two
//! processes' sessions through ZooKeeper, and through the in-process coordinator.
//!
//! Run with the local services up: `eval "$(deploy/services.sh env)"; cargo bench -p coord --bench notify`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use coord::{Coordinator, LocalCoordinator, ZkConfig, ZkCoordinator};

const TOPICS: usize = 200;
const RUN_FOR: Duration = Duration::from_secs(5);

/// Rounds of "notify every topic once, wait until every subscriber has woken".
async fn rounds(notifier: Arc<dyn Coordinator>, subscriber: Arc<dyn Coordinator>) -> (f64, Duration) {
    let woken = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for t in 0..TOPICS {
        let mut sub = subscriber.subscribe(&format!("bench/t{t}")).await.unwrap();
        sub.wake().await.unwrap(); // the immediate first wake
        let woken = woken.clone();
        tasks.push(tokio::spawn(async move {
            while sub.wake().await.is_ok() {
                woken.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    woken.store(0, Ordering::SeqCst);
    let start = Instant::now();
    let mut rounds = 0u64;
    let mut worst = Duration::ZERO;
    while start.elapsed() < RUN_FOR {
        let round = Instant::now();
        let target = (rounds + 1) * TOPICS as u64;
        for t in 0..TOPICS {
            notifier.notify(&format!("bench/t{t}"));
        }
        while woken.load(Ordering::SeqCst) < target {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        worst = worst.max(round.elapsed());
        rounds += 1;
    }
    let rate = woken.load(Ordering::SeqCst) as f64 / start.elapsed().as_secs_f64();
    for t in tasks {
        t.abort();
    }
    (rate, worst)
}

/// One topic hammered: how many `notify` calls per second are absorbed, and how many ZooKeeper
/// writes they cost.
async fn burst(notifier: &ZkCoordinator, subscriber: &ZkCoordinator, connect: &str, root: &str) {
    const CALLS: u64 = 200_000;
    let data = Arc::new(AtomicU64::new(0));
    let seen = Arc::new(AtomicU64::new(0));
    let mut sub = subscriber.subscribe("bench/burst").await.unwrap();
    let (d, s) = (data.clone(), seen.clone());
    tokio::spawn(async move {
        while sub.wake().await.is_ok() {
            s.store(d.load(Ordering::SeqCst), Ordering::SeqCst);
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let start = Instant::now();
    for i in 1..=CALLS {
        data.store(i, Ordering::SeqCst);
        notifier.notify("bench/burst");
        if i % 1000 == 0 {
            tokio::task::yield_now().await;
        }
    }
    while seen.load(Ordering::SeqCst) < CALLS {
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    let elapsed = start.elapsed();
    let inspector = zookeeper_client::Client::connect(connect).await.unwrap();
    let (_, stat) = inspector.get_data(&format!("{root}/notify/bench/burst")).await.unwrap();
    println!(
        "zookeeper burst: {CALLS} notify calls on one topic in {elapsed:.2?} ({:.0} calls/s), last one seen by the other process; {} ZooKeeper writes",
        CALLS as f64 / elapsed.as_secs_f64(),
        stat.version
    );
}

#[tokio::main]
async fn main() {
    let connect = std::env::var("SWITCHBOARD_TEST_ZK").expect("eval \"$(deploy/services.sh env)\" first");
    let root = format!("/bench-{}", uuid::Uuid::new_v4().simple());
    let config = ZkConfig { connect: connect.clone(), root: root.clone(), session_timeout: Duration::from_secs(6) };
    let zk_notifier = ZkCoordinator::start(config.clone()).await.unwrap();
    let zk_subscriber = ZkCoordinator::start(config).await.unwrap();

    let (rate, worst) = rounds(Arc::new(zk_notifier.clone()), Arc::new(zk_subscriber.clone())).await;
    println!(
        "zookeeper: {rate:.0} wake-ups/s delivered to another session ({TOPICS} topics per round; slowest round {worst:.2?})"
    );
    burst(&zk_notifier, &zk_subscriber, &connect, &root).await;

    let local = Arc::new(LocalCoordinator::new());
    let (rate, worst) = rounds(local.clone(), local).await;
    println!("in-process: {rate:.0} wake-ups/s ({TOPICS} topics per round; slowest round {worst:.2?})");
}
