//! Two `switchboard connector --account` processes for one WhatsApp account, behind a small load
//! balancer (the webhook URL configured at Meta or Infobip; it passes a webhook to the next
//! process when one answers 503 or is gone, as `proxy_next_upstream` does), the fake provider in
//! this process, real PostgreSQL and ZooKeeper; once with the Cloud API, once with Infobip. One
//! process leads; it is killed with SIGKILL in the middle of 300 inbound and 300 outbound
//! messages; the other takes over. At the end every inbound message is stored exactly once and
//! every outbound message reached the provider; duplicates at the provider (neither deduplicates
//! a send) are counted and printed.

use std::collections::HashMap;
use std::time::Duration;

use connectors::fake::infobip::FakeInfobip;
use connectors::fake::whatsapp_cloud::{FakeCloud, WaUser};
use schema::domain::Channel;
use schema::store::{self, NewAccount};
use serde_json::json;
use uuid::Uuid;

mod support;
use support::{MAX_IN_FLIGHT, Node, count, leader_of, order_violations, spawn_outbound, start_balancer, wait_for};

const SECRET: &str = "whatsapp-failover-secret-whatsapp-failover";
const ACCESS_TOKEN: &str = "EAAGm0PX4ZCpsBAFailoverToken";
const APP_SECRET: &str = "failover-app-secret";
const VERIFY_TOKEN: &str = "failover-verify";
const PHONE_NUMBER_ID: &str = "119900223344556";
const API_KEY: &str = "failover-infobip-api-key";
const WEBHOOK_TOKEN: &str = "F4ilov3rWebhookTokenF4ilov3rWebhook";
const SENDER: &str = "4930123456";
const USERS: usize = 30;
const INBOUND: usize = 300;
const OUTBOUND: usize = 300;

/// One failover run at a time: two on 2 cores would measure each other.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The fake provider, as the run drives it.
#[derive(Clone)]
enum Fake {
    Cloud(FakeCloud),
    Infobip(FakeInfobip),
}

impl Fake {
    fn name(&self) -> &'static str {
        match self {
            Fake::Cloud(_) => "cloud",
            Fake::Infobip(_) => "infobip",
        }
    }

    fn elapsed(&self) -> Duration {
        match self {
            Fake::Cloud(f) => f.elapsed(),
            Fake::Infobip(f) => f.elapsed(),
        }
    }

    /// A customer message; its platform id.
    fn text(&self, user: &str, text: &str) -> String {
        match self {
            Fake::Cloud(f) => f.text(&WaUser::new(user, &format!("C{user}")), text),
            Fake::Infobip(f) => f.text(user, &format!("C{user}"), text),
        }
    }

    /// Every webhook try of an inbound message: (platform id, HTTP status).
    fn tries(&self) -> Vec<(String, u16)> {
        match self {
            Fake::Cloud(f) => f
                .deliveries()
                .into_iter()
                .flat_map(|d| d.items.into_iter().filter(|i| i.starts_with("wamid.")).map(move |i| (i, d.status)))
                .collect(),
            Fake::Infobip(f) => {
                f.deliveries().into_iter().flat_map(|d| d.ids.into_iter().map(move |i| (i, d.status))).collect()
            }
        }
    }

    /// Every accepted send: (text, platform id, when).
    fn sent(&self) -> Vec<(String, String, Duration)> {
        match self {
            Fake::Cloud(f) => f
                .sent()
                .into_iter()
                .map(|s| (s.body["text"]["body"].as_str().unwrap_or_default().to_owned(), s.id, s.at))
                .collect(),
            Fake::Infobip(f) => f
                .sent()
                .into_iter()
                .map(|s| (s.body["content"]["text"].as_str().unwrap_or_default().to_owned(), s.message_id, s.at))
                .collect(),
        }
    }
}

async fn run(provider: &str) {
    let _serial = SERIAL.lock().await;
    let (db_url, pool) = testenv::database().await;
    let root = format!("/test-{}", Uuid::new_v4().simple());
    let (front, backends) = start_balancer(&["content-type", "x-hub-signature-256", "authorization"]).await;
    let (fake, credentials, settings) = match provider {
        "cloud" => {
            let fake = FakeCloud::start(ACCESS_TOKEN, APP_SECRET, VERIFY_TOKEN, PHONE_NUMBER_ID).await;
            fake.set_latency(Duration::from_millis(25));
            fake.set_redelivery(500, Duration::from_millis(20));
            fake.set_limits(10_000, 1_000);
            let settings = json!({"provider": "cloud", "api_url": fake.api_url(), "phone_number_id": PHONE_NUMBER_ID});
            let credentials =
                json!({"access_token": ACCESS_TOKEN, "app_secret": APP_SECRET, "verify_token": VERIFY_TOKEN});
            (Fake::Cloud(fake), credentials, settings)
        }
        _ => {
            let fake = FakeInfobip::start(API_KEY, SENDER).await;
            fake.set_latency(Duration::from_millis(25));
            fake.set_redelivery(500, Duration::from_millis(20));
            let settings = json!({"provider": "infobip", "api_url": fake.api_url(), "sender": SENDER});
            let credentials = json!({"api_key": API_KEY, "webhook_token": WEBHOOK_TOKEN});
            (Fake::Infobip(fake), credentials, settings)
        }
    };
    let mut settings = settings;
    settings["limits"] =
        json!({"rate": {"count": 100, "per_ms": 1000}, "rate_per_chat": {"count": 20, "per_ms": 1000}});
    support::queue_and_alice(&pool).await;
    let mut conn = pool.acquire().await.unwrap();
    let account = store::create_account(
        &mut conn,
        &NewAccount {
            channel: Channel::Whatsapp,
            name: "failover".into(),
            default_queue: "support".into(),
            credentials,
            settings,
        },
    )
    .await
    .unwrap()
    .id;
    drop(conn);
    let coord = support::coordinator(&root).await;
    let webhook_url = format!("{front}/api/v1/connectors/{account}/whatsapp");
    sqlx::query("UPDATE accounts SET settings = settings || jsonb_build_object('webhook_url', $1::text)")
        .bind(&webhook_url)
        .execute(&pool)
        .await
        .unwrap();
    match &fake {
        Fake::Cloud(f) => f.set_webhook(&webhook_url),
        Fake::Infobip(f) => f.set_webhook(&format!("{webhook_url}?token={WEBHOOK_TOKEN}"), None),
    }
    let mut nodes = vec![
        Node::start(&db_url, &root, account, "a", SECRET, &[]),
        Node::start(&db_url, &root, account, "b", SECRET, &[]),
    ];
    backends.write().unwrap().extend(nodes.iter().map(|n| n.http.clone()));
    let leader_index = leader_of(&nodes, account).await;

    // each customer writes once (opening the 24-hour window); their interactions go to alice
    let users: Vec<String> = (0..USERS).map(|i| format!("49151000{i:05}")).collect();
    for user in &users {
        fake.text(user, &format!("in {user} #0"));
    }
    wait_for("the first messages", Duration::from_secs(30), async || {
        count(&pool, "SELECT count(*) FROM messages").await == USERS as i64
    })
    .await;
    let interactions = support::assign_all_to_alice(&pool).await;

    let per_user = INBOUND / USERS;
    let inbound = {
        let fake = fake.clone();
        let users = users.clone();
        tokio::spawn(async move {
            for n in 1..per_user {
                for user in &users {
                    fake.text(user, &format!("in {user} #{n}"));
                }
                tokio::time::sleep(Duration::from_millis(800)).await;
            }
        })
    };
    let outbound = spawn_outbound(pool.clone(), coord.clone(), account, interactions.clone(), OUTBOUND, 30);

    support::wait_under_way(&pool, 100, Duration::from_secs(30)).await;
    let leader = nodes.remove(leader_index);
    let backup = nodes.remove(0);
    let killed_name = leader.name;
    let mut killed = leader;
    killed.kill();
    let killed_at = fake.elapsed();
    let sent_before = count(&pool, "SELECT count(*) FROM messages WHERE direction = 'out' AND status = 'sent'").await;
    let stored_before = count(&pool, "SELECT count(*) FROM messages WHERE direction = 'in'").await;

    wait_for("the backup leads", Duration::from_secs(20), async || backup.leads(account).await).await;
    let took_over_at = fake.elapsed();
    inbound.await.unwrap();
    outbound.await.unwrap();
    support::wait_all_through(&pool, INBOUND, OUTBOUND, Duration::from_secs(120)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    // inbound: every webhook stored exactly once
    let distinct =
        count(&pool, "SELECT count(DISTINCT external_message_id) FROM messages WHERE direction = 'in'").await;
    assert_eq!(distinct, INBOUND as i64, "every inbound message stored exactly once");
    let mut tries: HashMap<String, Vec<u16>> = HashMap::new();
    for (id, status) in fake.tries() {
        tries.entry(id).or_default().push(status);
    }
    assert_eq!(tries.len(), INBOUND);
    assert!(tries.values().all(|s| s.last() == Some(&200)), "every webhook ended with a 200");
    let retried = tries.values().filter(|s| s.len() > 1).count();
    let failed_tries: usize = tries.values().map(|s| s.len() - 1).sum();
    assert_eq!(count(&pool, "SELECT count(*) FROM dead_letters").await, 0);
    let windows = count(&pool, "SELECT count(*) FROM service_windows").await;
    assert_eq!(windows, USERS as i64, "every customer's window recorded");

    // outbound: every message reached the provider; duplicates counted with their times
    let mut sends: HashMap<String, Vec<(String, Duration)>> = HashMap::new();
    for (text, id, at) in fake.sent() {
        sends.entry(text).or_default().push((id, at));
    }
    assert_eq!(sends.len(), OUTBOUND, "every outbound message reached the provider");
    let mut duplicates: Vec<(String, Vec<(String, Duration)>)> =
        sends.iter().filter(|(_, s)| s.len() > 1).map(|(t, s)| (t.clone(), s.clone())).collect();
    duplicates.sort_by_key(|(_, s)| s[0].1);
    let in_doubt = count(&pool, "SELECT count(*) FROM outbox WHERE attempts > 1").await;
    assert_eq!(count(&pool, "SELECT count(*) FROM outbox WHERE state <> 'done'").await, 0);
    let ids: Vec<String> = sqlx::query_scalar("SELECT external_message_id FROM messages WHERE direction = 'out'")
        .fetch_all(&pool)
        .await
        .unwrap();
    let known: std::collections::HashSet<String> = fake.sent().into_iter().map(|(_, id, _)| id).collect();
    assert!(ids.iter().all(|t| known.contains(t)), "every stored platform id is one the provider answered");

    let out_of_order = order_violations(sends.iter().map(|(text, s)| (text.as_str(), s[0].1)));

    println!("whatsapp ({}) failover report:", fake.name());
    println!(
        "  leader {killed_name} killed at {killed_at:?} (fake clock) with {sent_before} outbound sent, {stored_before} inbound stored"
    );
    println!("  backup took over after {:?}", took_over_at.saturating_sub(killed_at));
    println!(
        "  inbound: {INBOUND} stored exactly once; {retried} webhooks needed more than one try ({failed_tries} tries not answered 200), 0 dead letters"
    );
    println!(
        "  outbound: {OUTBOUND} reached the provider; {} sent twice; {in_doubt} outbox rows attempted more than once",
        duplicates.len()
    );
    for (text, s) in &duplicates {
        let same_id = s[0].0 == s[1].0;
        println!(
            "    duplicate {text:?}: first at {:?} ({:?} before the kill), again at {:?} ({:?} after it){}",
            s[0].1,
            killed_at.saturating_sub(s[0].1),
            s[1].1,
            s[1].1.saturating_sub(killed_at),
            if same_id { ", the same messageId both times" } else { "" }
        );
    }
    println!("  per-chat order violations among first deliveries: {out_of_order}");
    for (_, s) in &duplicates {
        assert!(s[0].1 <= killed_at + Duration::from_millis(100), "a duplicate's first send came from the dead leader");
        assert!(s[1].1 >= killed_at, "and its second from the new one");
        if fake.name() == "infobip" {
            assert_eq!(s[0].0, s[1].0, "Infobip gets the same messageId on the resend");
        }
    }
    assert!(duplicates.len() <= MAX_IN_FLIGHT, "duplicates are bounded by the requests in flight ({MAX_IN_FLIGHT})");
    assert_eq!(out_of_order, 0, "each chat's messages went out in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_cloud_api_leader_mid_stream_loses_nothing_and_stores_nothing_twice() {
    run("cloud").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_infobip_leader_mid_stream_loses_nothing_and_stores_nothing_twice() {
    run("infobip").await;
}
