//! Inbound throughput and latency, black box: the real `switchboard all` binary (release build)
//! polls a fake Telegram Bot API that hands out pages of up to 100 updates, and agents on real
//! WebSocket sockets receive the messages. PostgreSQL and ZooKeeper run in their own processes.
//!
//! Prints, for the database it is given:
//! - **sustained**: messages/s from the fake's queue to the agents' sockets, flat out;
//! - **latency at a fixed rate** (default 1,000 messages/s): from the moment the fake holds an
//!   update (a waiting `getUpdates` returns it at once) to the agent's socket, p50/p99/max;
//! - **CPU per message** of the hub process, of PostgreSQL (every backend of the cluster) and of
//!   ZooKeeper, from `/proc`, over the sustained phase.
//!
//! Run through `bench/inbound.sh`, which runs it twice: on a PostgreSQL with its production
//! settings (fsync and synchronous_commit on) and on the test cluster's fast settings. By hand:
//! `eval "$(deploy/services.sh env)"; BENCH_PG_PID=<postmaster pid> BENCH_ZK_PID=<zookeeper pid>
//! cargo bench --bench inbound`. `BENCH_MESSAGES`, `BENCH_CHATS`, `BENCH_AGENTS`, `BENCH_RATE`,
//! `BENCH_SECONDS` change the defaults (20,000, 100, 4, 1,000, 10). Printed, not asserted.
//!
//! Then the outbound side, measured at the fake (when each `sendMessage` arrived):
//! - **drain with no platform limit**: `BENCH_OUT_MESSAGES` (20,000) replies queued in the
//!   outbox in one transaction while the connector runs; messages/s from the first request to
//!   the last, and CPU per message of the hub, PostgreSQL and ZooKeeper;
//! - **campaign**: a started campaign of `BENCH_CAMPAIGN` (10,000) recipients on the account
//!   with no platform limit: recipients/s at the fake and CPU per recipient;
//! - **pacing**: `BENCH_PACED_MESSAGES` (1,800) replies to a second account limited to
//!   `BENCH_PACED_RATE` (30) messages/s: the observed rate and the busiest 1-second window.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use connectors::fake::telegram::{FakeTelegram, TgUser};
use futures::{SinkExt, StreamExt};
use schema::domain::{Channel, Queue, RoutingMode};
use schema::store::{self, AgentProfile, NewAccount};
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const SECRET: &str = "inbound-bench-secret-inbound-bench-secret";
const TOKEN: &str = "7001002003:AAInboundBench";
const PACED_TOKEN: &str = "7001002004:AAPacedBench";

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn now_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros() as u64
}

/// Clock ticks per second of `/proc/<pid>/stat`.
const TICKS: f64 = 100.0;

/// utime + stime of a process, plus cutime + cstime (its reaped children), in ticks.
fn cpu_ticks(pid: u32, with_children: bool) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0 };
    let after = &stat[stat.rfind(')').map(|i| i + 2).unwrap_or(0)..];
    let fields: Vec<u64> = after.split_whitespace().map(|f| f.parse().unwrap_or(0)).collect();
    // fields from `state` (index 0): utime is 11, stime 12, cutime 13, cstime 14
    let own = fields.get(11).unwrap_or(&0) + fields.get(12).unwrap_or(&0);
    if with_children { own + fields.get(13).unwrap_or(&0) + fields.get(14).unwrap_or(&0) } else { own }
}

/// CPU ticks of a PostgreSQL cluster: the postmaster with its reaped children, and every live
/// child (backends, WAL writer, checkpointer...).
fn postgres_ticks(postmaster: u32) -> u64 {
    let mut total = cpu_ticks(postmaster, true);
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let after = &stat[stat.rfind(')').map(|i| i + 2).unwrap_or(0)..];
        let ppid: u32 = after.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
        if ppid == postmaster {
            total += cpu_ticks(pid, false);
        }
    }
    total
}

struct Cpu {
    hub: u64,
    postgres: u64,
    zookeeper: u64,
}

fn sample(hub: u32, pg: Option<u32>, zk: Option<u32>) -> Cpu {
    Cpu {
        hub: cpu_ticks(hub, true),
        postgres: pg.map(postgres_ticks).unwrap_or(0),
        zookeeper: zk.map(|p| cpu_ticks(p, true)).unwrap_or(0),
    }
}

/// Receive times of messages, by their text.
type Seen = Arc<Mutex<HashMap<String, u64>>>;

async fn agent(addr: &str, login: &str, seen: Seen, count: Arc<AtomicUsize>) {
    let mut request = format!("ws://{addr}/api/v1/agent/ws").into_client_request().unwrap();
    let token = testenv::token(SECRET, login, &["agent"]);
    request.headers_mut().insert("Authorization", format!("Bearer {token}").parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.expect("agent connects");
    ws.send(Message::Text(r#"{"id":"h","cmd":"hello"}"#.into())).await.unwrap();
    tokio::spawn(async move {
        while let Some(Ok(frame)) = ws.next().await {
            let Message::Text(text) = frame else { continue };
            let at = now_micros();
            let Ok(value) = serde_json::from_str::<Value>(&text) else { continue };
            if value["event"] == "message.new" && value["data"]["message"]["direction"] == "in" {
                if let Some(text) = value["data"]["message"]["text"].as_str() {
                    seen.lock().await.insert(text.to_owned(), at);
                }
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
}

/// Where the latency phase's time went, from the fake's own record of the `getUpdates` calls:
/// call `k` handed out the updates from its `offset` up to the next call's `offset` (which
/// acknowledges them), at the later of its arrival and the first of them being queued (a
/// long poll waits for it). Per message: the wait until the hub's `getUpdates` took it, and
/// from there to the agent's socket (storing, committing, ringing, reading, sending); and the
/// hub's polling cycle (arrival to arrival of `getUpdates`) and page sizes.
fn latency_split(
    polls: &[connectors::fake::telegram::Call],
    queued: &[(u32, Duration, u64)],
    received: impl Fn(usize) -> Option<u64>,
) -> Option<String> {
    let offset = |c: &connectors::fake::telegram::Call| c.params.get("offset").and_then(Value::as_i64);
    let first = queued.first()?.0 as i64;
    let last = queued.last()?.0 as i64;
    let queued_at = |update: i64| queued.get(usize::try_from(update - first).ok()?).map(|q| q.1);
    let (mut waits, mut onwards, mut cycles, mut pages) = (vec![], vec![], vec![], vec![]);
    for pair in polls.windows(2) {
        let (Some(from), Some(to)) = (offset(&pair[0]), offset(&pair[1])) else { continue };
        let (from, to) = (from.max(first), to.min(last + 1));
        if from >= to {
            continue;
        }
        cycles.push((pair[1].at.saturating_sub(pair[0].at)).as_micros() as u64);
        pages.push((to - from) as u64);
        let handed_out = pair[0].at.max(queued_at(from)?);
        for update in from..to {
            let n = (update - first) as usize;
            let (_, fake_at, epoch_at) = queued[n];
            let waited = handed_out.saturating_sub(fake_at).as_micros() as u64;
            waits.push(waited);
            if let Some(got) = received(n) {
                onwards.push(got.saturating_sub(epoch_at + waited));
            }
        }
    }
    if waits.is_empty() {
        return None;
    }
    for v in [&mut waits, &mut onwards, &mut cycles, &mut pages] {
        v.sort_unstable();
    }
    let pages_median = pages[pages.len() / 2];
    Some(format!(
        "    of which: waiting for the hub's getUpdates p50 {:.1} ms, p99 {:.1} ms; handed out -> agent's socket p50 {:.1} ms, \
         p99 {:.1} ms; polling cycle p50 {:.1} ms, p99 {:.1} ms over {} polls, {pages_median} updates per page (median)",
        percentile(&waits, 0.50),
        percentile(&waits, 0.99),
        percentile(&onwards, 0.50),
        percentile(&onwards, 0.99),
        percentile(&cycles, 0.50),
        percentile(&cycles, 0.99),
        cycles.len(),
    ))
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

#[tokio::main]
async fn main() {
    let total = env("BENCH_MESSAGES", 20_000) as usize;
    let chats = env("BENCH_CHATS", 100);
    let agents = env("BENCH_AGENTS", 4);
    let rate = env("BENCH_RATE", 1_000);
    let seconds = env("BENCH_SECONDS", 10);
    let label = std::env::var("BENCH_LABEL").unwrap_or_else(|_| "postgres".into());
    let pg_pid: Option<u32> = std::env::var("BENCH_PG_PID").ok().and_then(|p| p.parse().ok());
    let zk_pid: Option<u32> = std::env::var("BENCH_ZK_PID").ok().and_then(|p| p.parse().ok());

    let (db_url, pool) = testenv::database().await;
    let fake = FakeTelegram::start(TOKEN).await;
    let mut conn = pool.acquire().await.unwrap();
    store::upsert_queue(
        &mut conn,
        &Queue { name: "support".into(), routing_mode: RoutingMode::Manual, offer_timeout_ms: 30_000 },
    )
    .await
    .unwrap();
    store::create_account(
        &mut conn,
        &NewAccount {
            channel: Channel::Telegram,
            name: "bench".into(),
            default_queue: "support".into(),
            credentials: json!({"bot_token": TOKEN}),
            // no platform limit, so the outbound drain measures the hub
            settings: json!({"api_url": fake.api_url(), "poll_timeout_s": 10, "limits": {
                "rate": {"count": 1_000_000, "per_ms": 1000},
                "rate_per_chat": {"count": 1_000_000, "per_ms": 1000}}}),
        },
    )
    .await
    .unwrap();
    let paced_rate = env("BENCH_PACED_RATE", 30);
    let paced_fake = FakeTelegram::start(PACED_TOKEN).await;
    store::create_account(
        &mut conn,
        &NewAccount {
            channel: Channel::Telegram,
            name: "paced".into(),
            default_queue: "support".into(),
            credentials: json!({"bot_token": PACED_TOKEN}),
            settings: json!({"api_url": paced_fake.api_url(), "poll_timeout_s": 10, "limits": {
                "rate": {"count": paced_rate, "per_ms": 1000},
                "rate_per_chat": {"count": 1_000_000, "per_ms": 1000}}}),
        },
    )
    .await
    .unwrap();
    let logins: Vec<String> = (0..agents).map(|a| format!("agent{a}")).collect();
    for login in &logins {
        store::upsert_agent(
            &mut conn,
            &AgentProfile {
                login: login.clone(),
                name: login.clone(),
                roles: vec!["agent".into()],
                queues: vec!["support".into()],
                max_interactions: 10_000,
            },
        )
        .await
        .unwrap();
    }
    drop(conn);
    let root = format!("/bench-{}", uuid::Uuid::new_v4().simple());
    let start_hub = || {
        testenv::Switchboard::start(
            env!("CARGO_BIN_EXE_switchboard"),
            &["all"],
            &[
                ("SWITCHBOARD_DATABASE__URL", &db_url),
                ("SWITCHBOARD_DATABASE__MAX_CONNECTIONS", "30"),
                ("SWITCHBOARD_COORD__ROOT", &root),
                ("SWITCHBOARD_JWT__HS256_SECRET", SECRET),
            ],
        )
    };
    let hub = start_hub();

    // every chat writes once; the interactions are then spread over the agents
    let users: Vec<TgUser> = (0..chats).map(|i| TgUser::new(500_000 + i, &format!("C{i}"))).collect();
    for user in &users {
        fake.text(user, &format!("hello {}", user.id));
    }
    let paced_users: Vec<TgUser> = (0..chats).map(|i| TgUser::new(600_000 + i, &format!("P{i}"))).collect();
    for user in &paced_users {
        paced_fake.text(user, &format!("hello {}", user.id));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM interactions").fetch_one(&pool).await.unwrap();
        if n == 2 * chats as i64 {
            break;
        }
        assert!(Instant::now() < deadline, "the first messages were not stored within a minute");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sqlx::query(
        "UPDATE interactions SET state = 'assigned',
             agent = 'agent' || (abs(hashtext(id::text)) % $1)",
    )
    .bind(agents as i32)
    .execute(&pool)
    .await
    .unwrap();
    let seen: Seen = Arc::new(Mutex::new(HashMap::new()));
    let count = Arc::new(AtomicUsize::new(0));
    for login in &logins {
        agent(&hub.addr, login, seen.clone(), count.clone()).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // sustained: everything queued at the fake at once, delivered as fast as the hub goes
    let before = sample(hub.pid(), pg_pid, zk_pid);
    let started = Instant::now();
    for n in 0..total {
        fake.text(&users[n % users.len()], &format!("s{n}"));
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    while count.load(Ordering::Relaxed) < total {
        assert!(Instant::now() < deadline, "only {} of {total} delivered in 10 minutes", count.load(Ordering::Relaxed));
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let after = sample(hub.pid(), pg_pid, zk_pid);
    let per_message = |a: u64, b: u64| (b.saturating_sub(a)) as f64 / TICKS * 1000.0 / total as f64;
    let sustained = total as f64 / elapsed;

    // latency at a fixed rate: one message every 1/rate s, each stamped when the fake got it
    count.store(0, Ordering::Relaxed);
    seen.lock().await.clear();
    let n_latency = (rate * seconds) as usize;
    let mut sent_at: HashMap<String, u64> = HashMap::with_capacity(n_latency);
    // for the breakdown: each message's update id and when the fake queued it, on its clock
    let polls_before = fake.calls_of("getUpdates").len();
    let mut queued: Vec<(u32, Duration, u64)> = Vec::with_capacity(n_latency);
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let start = tokio::time::Instant::now();
    for n in 0..n_latency {
        tokio::time::sleep_until(start + interval * n as u32).await;
        let text = format!("l{n}");
        let (at, fake_at) = (now_micros(), fake.elapsed());
        sent_at.insert(text.clone(), at);
        fake.text(&users[n % users.len()], &text);
        queued.push((fake.last_update_id(), fake_at, at));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while count.load(Ordering::Relaxed) < n_latency && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let seen = seen.lock().await;
    let mut latencies: Vec<u64> =
        sent_at.iter().filter_map(|(text, at)| seen.get(text).map(|got| got.saturating_sub(*at))).collect();
    latencies.sort_unstable();
    let lost = n_latency - latencies.len();
    let split = latency_split(&fake.calls_of("getUpdates")[polls_before.saturating_sub(1)..], &queued, |n| {
        seen.get(&format!("l{n}")).copied()
    });

    println!("inbound benchmark ({label}): {chats} chats, {agents} agent sockets, hub = switchboard all");
    println!("  sustained: {total} messages in {elapsed:.2} s = {sustained:.0} messages/s to the agents' sockets");
    println!(
        "  CPU per message: hub {:.3} ms, PostgreSQL {}, ZooKeeper {}",
        per_message(before.hub, after.hub),
        if pg_pid.is_some() { format!("{:.3} ms", per_message(before.postgres, after.postgres)) } else { "n/a".into() },
        if zk_pid.is_some() {
            format!("{:.3} ms", per_message(before.zookeeper, after.zookeeper))
        } else {
            "n/a".into()
        },
    );
    println!(
        "  latency at {rate} messages/s for {seconds} s: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms{}",
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0),
        if lost > 0 { format!(" ({lost} not received within 2 minutes)") } else { String::new() }
    );
    if let Some(split) = split {
        println!("{split}");
    }

    stop(hub).await;

    // outbound: the outbox filled while no hub runs, then a hub started to drain it
    let out_total = env("BENCH_OUT_MESSAGES", 20_000) as usize;
    enqueue(&pool, "bench", out_total, "o").await;
    let hub = start_hub();
    let before = sample(hub.pid(), pg_pid, zk_pid);
    let sends = sent(&fake, out_total).await;
    let after = sample(hub.pid(), pg_pid, zk_pid);
    let per_message = |a: u64, b: u64| (b.saturating_sub(a)) as f64 / TICKS * 1000.0 / out_total as f64;
    let span = (*sends.last().unwrap() - sends[0]).as_secs_f64();
    println!(
        "  outbound, no platform limit: {out_total} queued replies sent in {span:.2} s at the fake = {:.0} messages/s",
        (out_total - 1) as f64 / span
    );
    println!(
        "  CPU per outbound message (hub start included): hub {:.3} ms, PostgreSQL {}, ZooKeeper {}",
        per_message(before.hub, after.hub),
        if pg_pid.is_some() { format!("{:.3} ms", per_message(before.postgres, after.postgres)) } else { "n/a".into() },
        if zk_pid.is_some() {
            format!("{:.3} ms", per_message(before.zookeeper, after.zookeeper))
        } else {
            "n/a".into()
        },
    );
    stop(hub).await;

    // campaigns: a started campaign's recipients, drained by a fresh hub with no platform limit
    let campaign_total = env("BENCH_CAMPAIGN", 10_000) as usize;
    let earlier = fake.calls_of("sendMessage").iter().filter(|c| c.ok()).count();
    start_campaign(&pool, &fake, "bench", campaign_total).await;
    let hub = start_hub();
    let before = sample(hub.pid(), pg_pid, zk_pid);
    let sends = sent(&fake, earlier + campaign_total).await;
    let after = sample(hub.pid(), pg_pid, zk_pid);
    let sends = &sends[earlier..];
    let span = (*sends.last().unwrap() - sends[0]).as_secs_f64();
    let per_recipient = |a: u64, b: u64| (b.saturating_sub(a)) as f64 / TICKS * 1000.0 / campaign_total as f64;
    println!(
        "  campaign, no platform limit: {campaign_total} recipients sent in {span:.2} s at the fake = {:.0} recipients/s; \
         CPU per recipient (hub start included): hub {:.3} ms, PostgreSQL {}",
        (campaign_total - 1) as f64 / span,
        per_recipient(before.hub, after.hub),
        if pg_pid.is_some() {
            format!("{:.3} ms", per_recipient(before.postgres, after.postgres))
        } else {
            "n/a".into()
        },
    );
    stop(hub).await;

    // pacing: a full outbox of the account limited to `paced_rate`, measured at its fake
    let paced_total = env("BENCH_PACED_MESSAGES", 1_800) as usize;
    enqueue(&pool, "paced", paced_total, "p").await;
    let hub = start_hub();
    let sends = sent(&paced_fake, paced_total).await;
    let span = (*sends.last().unwrap() - sends[0]).as_secs_f64();
    let mut gaps: Vec<u64> = sends.windows(2).map(|w| (w[1] - w[0]).as_micros() as u64).collect();
    gaps.sort_unstable();
    println!(
        "  pacing at {paced_rate}/s: {paced_total} replies in {span:.2} s = {:.2} messages/s; busiest 1-second window {}; \
         median gap {:.1} ms",
        (paced_total - 1) as f64 / span,
        busiest_second(&sends),
        percentile(&gaps, 0.5)
    );
    stop(hub).await;
}

/// A campaign of `total` recipients on account `name` (customers who wrote to the bot earlier,
/// known to its fake), created and started while no hub runs: its outbox rows wait.
async fn start_campaign(pool: &sqlx::PgPool, fake: &FakeTelegram, name: &str, total: usize) {
    const FIRST_CHAT: i64 = 7_000_000;
    let account: uuid::Uuid =
        sqlx::query_scalar("SELECT id FROM accounts WHERE name = $1").bind(name).fetch_one(pool).await.unwrap();
    let customers: Vec<uuid::Uuid> = (0..total).map(|_| uuid::Uuid::now_v7()).collect();
    let names: Vec<String> = (0..total).map(|n| format!("Recipient {n}")).collect();
    let chats: Vec<String> = (0..total).map(|n| (FIRST_CHAT + n as i64).to_string()).collect();
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("INSERT INTO customers (id, name) SELECT * FROM unnest($1::uuid[], $2::text[])")
        .bind(&customers)
        .bind(&names)
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO customer_identities (account_id, external_id, customer_id, display_name)
         SELECT $1, chat, id, name FROM unnest($2::text[], $3::uuid[], $4::text[]) AS t(chat, id, name)",
    )
    .bind(account)
    .bind(&chats)
    .bind(&customers)
    .bind(&names)
    .execute(&mut *tx)
    .await
    .unwrap();
    fake.know((0..total).map(|n| FIRST_CHAT + n as i64));
    let campaign = store::create_campaign(
        &mut tx,
        &store::NewCampaign {
            account_id: account,
            name: "bench".into(),
            text: "Новая коллекция, {{name}}: скидка по коду {{code}}".into(),
            template: None,
            rate_per_s: None,
            starts_at: None,
            ends_at: None,
            quiet: None,
            utc_offset_min: 0,
            created_by: "bench".into(),
            flow: None,
        },
    )
    .await
    .unwrap();
    let recipients: Vec<store::RecipientInput> = customers
        .iter()
        .enumerate()
        .map(|(n, id)| store::RecipientInput {
            customer_id: Some(*id),
            variables: std::collections::BTreeMap::from([
                ("name".into(), format!("Recipient {n}")),
                ("code".into(), format!("B{n}")),
            ]),
            ..store::RecipientInput::default()
        })
        .collect();
    store::add_recipients(&mut tx, campaign.id, &recipients, 0).await.unwrap();
    store::change_campaign(&mut tx, campaign.id, store::CampaignAction::Start).await.unwrap();
    tx.commit().await.unwrap();
}

/// Stops the hub as an operator does (SIGTERM: it hands its leaderships back), then for good.
async fn stop(hub: testenv::Switchboard) {
    let _ = std::process::Command::new("kill").args(["-TERM", &hub.pid().to_string()]).status();
    tokio::time::sleep(Duration::from_secs(3)).await;
    drop(hub);
}

/// Queues `total` replies to the chats of account `name`, 100 per transaction, as agents'
/// `message.send` would (with no hub running, nothing is sent meanwhile).
async fn enqueue(pool: &sqlx::PgPool, name: &str, total: usize, tag: &str) {
    let rows: Vec<(uuid::Uuid, String)> = sqlx::query_as(
        "SELECT i.id, i.agent FROM interactions i JOIN accounts a ON a.id = i.account_id WHERE a.name = $1",
    )
    .bind(name)
    .fetch_all(pool)
    .await
    .unwrap();
    for chunk in (0..total).collect::<Vec<_>>().chunks(100) {
        let mut tx = pool.begin().await.unwrap();
        for &n in chunk {
            let (interaction_id, agent) = &rows[n % rows.len()];
            store::enqueue_outbound(
                &mut tx,
                &store::OutboundMessage {
                    interaction_id: *interaction_id,
                    agent_login: agent.clone(),
                    agent_name: agent.clone(),
                    client_msg_id: format!("{tag}{n}"),
                    text: Some(format!("{tag}{n}")),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        }
        tx.commit().await.unwrap();
    }
}

/// Waits until the fake has answered `total` `sendMessage` requests; returns when each reached
/// the fake, in order.
async fn sent(fake: &FakeTelegram, total: usize) -> Vec<Duration> {
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        // counted in place: copying the fake's whole log (thousands of calls with their
        // parameters) under its lock at every look took CPU from the hub on the same cores
        // and held up the fake's answers
        let answered = fake.ok_count_of("sendMessage");
        if answered >= total {
            let mut sends: Vec<Duration> =
                fake.calls_of("sendMessage").iter().filter(|c| c.ok()).map(|c| c.at).collect();
            // the fake records a call when it answers; requests in flight together may be
            // answered out of their arrival order
            sends.sort_unstable();
            return sends;
        }
        assert!(Instant::now() < deadline, "only {answered} of {total} replies sent in 15 minutes");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The most requests that arrived within any 1-second window (times in order).
fn busiest_second(times: &[Duration]) -> usize {
    let mut best = 0;
    let mut start = 0;
    for end in 0..times.len() {
        while times[end] - times[start] >= Duration::from_secs(1) {
            start += 1;
        }
        best = best.max(end - start + 1);
    }
    best
}
