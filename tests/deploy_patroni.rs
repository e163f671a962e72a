//! PostgreSQL high availability (docs/operations.md, "PostgreSQL"): the hub on the two-node
//! Patroni cluster of `deploy/services.sh patroni` (ZooKeeper as its consensus store,
//! synchronous replication), reached through HAProxy, which follows Patroni's leader. A
//! `switchboard all` serves a Telegram account (the fake Bot API in this process) and an agent.
//! While customers write (long polling: an update is acknowledged to Telegram only when the next
//! `getUpdates` moves the offset past it) and the agent replies (`message.send`, retried with the
//! same `client_msg_id` until acknowledged, as the agent API asks of clients), the primary's
//! Patroni and PostgreSQL are killed with SIGKILL. Measured: how long until the new primary
//! takes writes, and until the hub stores and acknowledges again, by itself (its pool drops the
//! dead connections and opens new ones through HAProxy). Checked: every customer message is
//! stored exactly once, every reply acknowledged to the agent is stored exactly once and reaches
//! Telegram; replies sent twice to Telegram (a send whose outcome the dead primary lost: the
//! documented in-doubt window) are counted.
//!
//! Needs the cluster: run by `deploy/tests/patroni.sh`, a step of deploy/test.sh.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use connectors::fake::telegram::{FakeTelegram, TgUser};
use futures::{SinkExt, StreamExt};
use schema::domain::{Channel, Queue, RoutingMode};
use schema::store::{self, AgentProfile, NewAccount};
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection, PgPool};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use uuid::Uuid;

const SECRET: &str = "deploy-patroni-secret-deploy-patroni-secret";
const TOKEN: &str = "7001002003:AAPatroniFailover";
const USERS: u64 = 10;
/// How long the hub may take to store and acknowledge again after the kill.
const RESUME_WITHIN: Duration = Duration::from_secs(60);

fn required(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: start the cluster with `deploy/services.sh patroni start && eval \"$(deploy/services.sh env)\"` (deploy/tests/patroni.sh does)")
    })
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

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn agent_socket(addr: &str) -> Option<Ws> {
    let mut request = format!("ws://{addr}/api/v1/agent/ws").into_client_request().unwrap();
    let token = testenv::token(SECRET, "alice", &["agent"]);
    request.headers_mut().insert("Authorization", format!("Bearer {token}").parse().unwrap());
    let (mut ws, _) =
        tokio::time::timeout(Duration::from_secs(5), tokio_tungstenite::connect_async(request)).await.ok()?.ok()?;
    let hello = call(&mut ws, "hello", "h", json!({})).await?;
    (hello["ok"] == true).then_some(ws)
}

/// One request and its reply (events in between are skipped); `None` if the socket failed or
/// no reply came within 15 s.
async fn call(ws: &mut Ws, cmd: &str, id: &str, args: Value) -> Option<Value> {
    ws.send(Message::Text(json!({"id": id, "cmd": cmd, "args": args}).to_string().into())).await.ok()?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await.ok()?? {
            Ok(Message::Text(t)) => {
                let v: Value = serde_json::from_str(&t).ok()?;
                if v["re"] == id {
                    return Some(v);
                }
            }
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// What the agent saw: for each reply number, when it was acknowledged, and every failed try.
#[derive(Default)]
struct AgentLog {
    acked: BTreeMap<u64, Instant>,
    failed_tries: u64,
    reconnects: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the Patroni cluster: run by deploy/tests/patroni.sh, a step of deploy/test.sh"]
async fn killing_the_postgresql_primary_loses_nothing_acknowledged() {
    testenv::init_logging();
    let admin_url = required("SWITCHBOARD_TEST_PATRONI_URL");
    let script = required("SWITCHBOARD_TEST_PATRONI_SCRIPT");
    // a database of its own on the cluster, through HAProxy
    let name = format!("t_{}", Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&admin_url).await.expect("the primary through HAProxy");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut admin).await.unwrap();
    let sync: Vec<(String, String)> = sqlx::query_as("SELECT application_name, sync_state FROM pg_stat_replication")
        .fetch_all(&mut admin)
        .await
        .unwrap();
    assert!(sync.iter().any(|(_, state)| state == "sync"), "a synchronous standby before the kill: {sync:?}");
    let standbys: String = sqlx::query_scalar("SHOW synchronous_standby_names").fetch_one(&mut admin).await.unwrap();
    drop(admin);
    let db_url = format!("{}/{name}", admin_url.rsplit_once('/').unwrap().0);
    let pool = schema::store::connect(&db_url, 5).await.unwrap();
    schema::store::migrate(&pool).await.unwrap();

    let fake = FakeTelegram::start(TOKEN).await;
    fake.set_latency(Duration::from_millis(10));
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
            name: "patroni".into(),
            default_queue: "support".into(),
            credentials: json!({"bot_token": TOKEN}),
            settings: json!({"api_url": fake.api_url(), "poll_timeout_s": 2,
                "limits": {"rate": {"count": 100, "per_ms": 1000}, "rate_per_chat": {"count": 20, "per_ms": 1000}}}),
        },
    )
    .await
    .unwrap();
    store::upsert_agent(
        &mut conn,
        &AgentProfile {
            login: "alice".into(),
            name: "Alice".into(),
            roles: vec!["agent".into()],
            queues: vec!["support".into()],
            max_interactions: 100,
        },
    )
    .await
    .unwrap();
    drop(conn);
    let root = format!("/test-{}", Uuid::new_v4().simple());
    let files = std::env::temp_dir().join(format!("switchboard-patroni-files-{}", Uuid::new_v4().simple()));
    let files_s = files.display().to_string();
    let hub = testenv::Switchboard::start(
        env!("CARGO_BIN_EXE_switchboard"),
        &["all"],
        &[
            ("SWITCHBOARD_DATABASE__URL", &db_url),
            ("SWITCHBOARD_COORD__ROOT", &root),
            ("SWITCHBOARD_JWT__HS256_SECRET", SECRET),
            ("SWITCHBOARD_FILESERVER__ROOT", &files_s),
        ],
    );

    // every customer writes once; the interactions go to alice
    let users: Vec<TgUser> = (0..USERS).map(|i| TgUser::new(700_000 + i, &format!("C{i}"))).collect();
    let written: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    for user in &users {
        let text = format!("in {} #0", user.id);
        fake.text(user, &text);
        written.lock().unwrap().push((text, Instant::now()));
    }
    wait_for("the first messages", Duration::from_secs(30), async || {
        count(&pool, "SELECT count(*) FROM messages").await == USERS as i64
    })
    .await;
    sqlx::query("UPDATE interactions SET state = 'assigned', agent = 'alice'").execute(&pool).await.unwrap();
    let interactions: Vec<Uuid> =
        sqlx::query_scalar("SELECT id FROM interactions ORDER BY chat_id").fetch_all(&pool).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));

    // customers: one message every 50 ms, round robin
    let customers = {
        let (fake, users, written, stop) = (fake.clone(), users.clone(), written.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 1u64;
            while !stop.load(Ordering::SeqCst) {
                let user = &users[(n % USERS) as usize];
                let text = format!("in {} #{n}", user.id);
                fake.text(user, &text);
                written.lock().unwrap().push((text, Instant::now()));
                n += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    // the agent: reply n, retried with the same client_msg_id until acknowledged
    let agent_log: Arc<Mutex<AgentLog>> = Arc::default();
    let agent = {
        let (addr, log, stop, interactions) = (hub.addr.clone(), agent_log.clone(), stop.clone(), interactions.clone());
        tokio::spawn(async move {
            let mut ws: Option<Ws> = None;
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let Some(socket) = ws.as_mut() else {
                    ws = agent_socket(&addr).await;
                    if ws.is_none() {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    } else {
                        log.lock().unwrap().reconnects += 1;
                    }
                    continue;
                };
                let args = json!({"interaction_id": interactions[(n % USERS) as usize],
                    "client_msg_id": format!("reply-{n}"), "text": format!("reply #{n}")});
                match call(socket, "message.send", &format!("s{n}"), args).await {
                    Some(reply) if reply["ok"] == true => {
                        log.lock().unwrap().acked.insert(n, Instant::now());
                        n += 1;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Some(_) => {
                        log.lock().unwrap().failed_tries += 1;
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    None => {
                        log.lock().unwrap().failed_tries += 1;
                        ws = None;
                    }
                }
            }
        })
    };

    // under way: then the primary dies
    wait_for("replies and messages under way", Duration::from_secs(30), async || {
        agent_log.lock().unwrap().acked.len() >= 30
            && count(&pool, "SELECT count(*) FROM messages WHERE direction = 'in'").await >= 3 * USERS as i64
    })
    .await;
    let acked_before = agent_log.lock().unwrap().acked.len();
    let killed = std::process::Command::new(&script).args(["patroni", "kill-primary"]).output().unwrap();
    let killed_at = Instant::now();
    assert!(killed.status.success(), "kill-primary: {}", String::from_utf8_lossy(&killed.stderr));
    let killed_what = String::from_utf8_lossy(&killed.stdout).trim().to_owned();

    // the database: when does a new connection through HAProxy reach a writable primary?
    let db_back = loop {
        let writable = async {
            let mut c =
                tokio::time::timeout(Duration::from_secs(2), PgConnection::connect(&admin_url)).await.ok()?.ok()?;
            let primary: bool = sqlx::query_scalar("SELECT NOT pg_is_in_recovery()").fetch_one(&mut c).await.ok()?;
            primary.then_some(())
        };
        if writable.await.is_some() {
            break killed_at.elapsed();
        }
        assert!(killed_at.elapsed() < RESUME_WITHIN, "no writable primary within {RESUME_WITHIN:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // the hub: the first reply acknowledged and the first customer message stored after the kill
    let fresh = PgPool::connect(&db_url).await.unwrap();
    let mut agent_back = None;
    let mut inbound_back = None;
    let inbound_before: i64 = {
        // messages the dead primary had (all of them: replication is synchronous)
        count(&fresh, "SELECT count(*) FROM messages WHERE direction = 'in'").await
    };
    while agent_back.is_none() || inbound_back.is_none() {
        if agent_back.is_none() {
            agent_back = agent_log.lock().unwrap().acked.values().find(|at| **at > killed_at).map(|at| *at - killed_at);
        }
        if inbound_back.is_none()
            && count(&fresh, "SELECT count(*) FROM messages WHERE direction = 'in'").await > inbound_before
        {
            inbound_back = Some(killed_at.elapsed());
        }
        assert!(killed_at.elapsed() < RESUME_WITHIN, "the hub did not resume within {RESUME_WITHIN:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // a while more of traffic on the new primary, then quiet
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop.store(true, Ordering::SeqCst);
    customers.await.unwrap();
    agent.await.unwrap();

    let written: Vec<String> = written.lock().unwrap().iter().map(|(t, _)| t.clone()).collect();
    let log = std::mem::take(&mut *agent_log.lock().unwrap());
    let acked: Vec<u64> = log.acked.keys().copied().collect();
    wait_for("every customer message stored and every reply sent", Duration::from_secs(90), async || {
        count(&fresh, "SELECT count(*) FROM messages WHERE direction = 'in'").await >= written.len() as i64
            && count(&fresh, "SELECT count(*) FROM outbox WHERE state <> 'done'").await == 0
    })
    .await;

    // the last batch is acknowledged by the next long poll, which moves the offset past it
    let delivered = || -> std::collections::BTreeSet<u32> {
        fake.calls_of("getUpdates").iter().flat_map(|c| c.update_ids.clone()).collect()
    };
    let max_offset =
        || fake.calls_of("getUpdates").iter().filter_map(|c| c.param("offset").as_i64()).max().unwrap_or(0);
    wait_for("every update acknowledged to Telegram", Duration::from_secs(30), async || {
        delivered().last().is_some_and(|last| max_offset() > i64::from(*last))
    })
    .await;

    // inbound: every message written is stored exactly once, acknowledged or not
    let stored: Vec<(String, i64)> =
        sqlx::query_as("SELECT text, count(*) FROM messages WHERE direction = 'in' GROUP BY text")
            .fetch_all(&fresh)
            .await
            .unwrap();
    let stored: HashMap<String, i64> = stored.into_iter().collect();
    let lost_in: Vec<&String> = written.iter().filter(|t| !stored.contains_key(*t)).collect();
    let twice_in: Vec<(&String, &i64)> = stored.iter().filter(|(_, n)| **n > 1).collect();
    let (delivered, max_offset) = (delivered(), max_offset());
    let acknowledged_updates = delivered.iter().filter(|id| i64::from(**id) < max_offset).count();
    let dead_letters = count(&fresh, "SELECT count(*) FROM dead_letters").await;

    // outbound: every acknowledged reply stored once and sent; duplicates at the platform counted
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT client_msg_id, count(*) FROM messages WHERE direction = 'out' AND client_msg_id IS NOT NULL GROUP BY client_msg_id",
    )
    .fetch_all(&fresh)
    .await
    .unwrap();
    let rows: HashMap<String, i64> = rows.into_iter().collect();
    let lost_out: Vec<u64> = acked.iter().copied().filter(|n| !rows.contains_key(&format!("reply-{n}"))).collect();
    let twice_out: Vec<(&String, &i64)> = rows.iter().filter(|(_, n)| **n > 1).collect();
    let mut sends: HashMap<String, usize> = HashMap::new();
    for c in fake.calls_of("sendMessage").into_iter().filter(|c| c.ok()) {
        *sends.entry(c.param("text").as_str().unwrap_or_default().to_owned()).or_default() += 1;
    }
    let unsent: Vec<u64> = acked.iter().copied().filter(|n| !sends.contains_key(&format!("reply #{n}"))).collect();
    let sent_twice = sends.values().filter(|n| **n > 1).count();
    let stored_not_acked = rows.len() - acked.iter().filter(|n| rows.contains_key(&format!("reply-{n}"))).count();

    println!("patroni failover report:");
    println!("  synchronous standby before the kill: {sync:?} (synchronous_standby_names = {standbys})");
    println!("  {killed_what}; {acked_before} replies acknowledged before it");
    println!("  new primary writable through HAProxy after {:.1} s", db_back.as_secs_f64());
    println!(
        "  hub resumed by itself: first reply acknowledged {:.1} s, first customer message stored {:.1} s after the kill",
        agent_back.unwrap().as_secs_f64(),
        inbound_back.unwrap().as_secs_f64()
    );
    println!(
        "  customers: {} messages written, {} stored, lost {}, stored twice {}; {} updates acknowledged to Telegram; dead letters {}",
        written.len(),
        stored.len(),
        lost_in.len(),
        twice_in.len(),
        acknowledged_updates,
        dead_letters
    );
    println!(
        "  agent: {} replies acknowledged ({} failed tries retried, {} reconnections), lost {}, stored twice {}, not sent {}; {} stored whose reply the agent never saw; {} sent twice to Telegram",
        acked.len(),
        log.failed_tries,
        log.reconnects.saturating_sub(1),
        lost_out.len(),
        twice_out.len(),
        unsent.len(),
        stored_not_acked,
        sent_twice
    );
    assert!(lost_in.is_empty(), "customer messages lost: {lost_in:?}");
    assert!(twice_in.is_empty(), "customer messages stored twice: {twice_in:?}");
    assert_eq!(acknowledged_updates, delivered.len(), "every update delivered was acknowledged in the end");
    assert_eq!(dead_letters, 0, "no update was parked as a dead letter");
    assert!(lost_out.is_empty(), "replies acknowledged to the agent but lost: {lost_out:?}");
    assert!(twice_out.is_empty(), "replies stored twice: {twice_out:?}");
    assert!(unsent.is_empty(), "acknowledged replies never sent: {unsent:?}");
    drop(hub);
    fresh.close().await;
    pool.close().await;
    let _ = std::fs::remove_dir_all(files);
}
