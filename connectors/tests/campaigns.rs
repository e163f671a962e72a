//! Campaigns end to end on the fake Telegram: 2,000 recipients on an account limited to 300/s
//! (Telegram's 30/s, raised for the test's speed): each recipient reaches the fake exactly once
//! and no 1-s window holds more than the limit; a pause stops the sends and a resume goes on;
//! recipients who opted out (a stop word written to the bot, or recorded) are skipped with the
//! reason, and one the platform refuses fails with the platform's reason; a live reply to
//! another customer of the account, queued while the campaign drains, goes out at once instead
//! of behind the backlog; a recipient who answers opens an interaction that knows its campaign.

mod harness;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use connectors::fake::telegram::{Call, TgUser};
use harness::{eventually, spawn_hub};
use schema::store::{self, CampaignAction, NewCampaign, RecipientInput};
use serde_json::json;
use uuid::Uuid;

const RATE: usize = 300;
/// 2,000 in CI; `CAMPAIGN_RECIPIENTS=10000` for the full run.
fn recipients() -> i64 {
    std::env::var("CAMPAIGN_RECIPIENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(2_000).max(2_000)
}
const FIRST_CHAT: i64 = 7_000_000;
const IN_FLIGHT: usize = 16;
/// The second campaign: 200 of the same audience, capped at 40/s.
const FLASH: i64 = 200;
const FLASH_FROM: i64 = 1_600;
const FLASH_RATE: usize = 40;
/// Requests can reach the fake a little closer together than they left the connector.
const JITTER: Duration = Duration::from_millis(50);

fn max_in_window(times: &[Duration], window: Duration) -> usize {
    let mut best = 0;
    for (i, t) in times.iter().enumerate() {
        best = best.max(times[i..].iter().take_while(|u| **u < *t + window).count());
    }
    best
}

fn campaign_calls(calls: &[Call]) -> Vec<&Call> {
    calls.iter().filter(|c| c.ok() && c.param("text").as_str().is_some_and(|t| t.starts_with("Winter sale"))).collect()
}

/// Waits until `sent` campaign messages reached the fake, reading the agent's socket meanwhile
/// (a socket left unread is closed by the hub's heartbeat).
async fn until_sent(hub: &harness::Hub, agent: &mut harness::Client, sent: usize) {
    let until = Instant::now() + Duration::from_secs(30 + sent as u64 / 100);
    while campaign_calls(&hub.fake.calls_of("sendMessage")).len() < sent {
        assert!(Instant::now() < until, "{sent} campaign messages not sent in time");
        agent.settle(Duration::from_millis(200)).await;
    }
}

/// Sends `text` to the live customer and returns how long after it was queued it reached the
/// fake, and the fake's clock when it was queued.
async fn live_reply(
    hub: &harness::Hub,
    agent: &mut harness::Client,
    interaction: &str,
    text: &str,
) -> (Duration, Duration) {
    let queued_at = hub.fake.elapsed();
    let reply =
        agent.call("message.send", json!({"interaction_id": interaction, "client_msg_id": text, "text": text})).await;
    assert_eq!(reply["ok"], true, "{reply}");
    let arrived =
        |calls: &[Call]| calls.iter().find(|c| c.ok() && c.chat() == "42" && c.param("text") == text).map(|c| c.at);
    eventually("the live reply reached the platform", Duration::from_secs(10), || async {
        arrived(&hub.fake.calls_of("sendMessage")).is_some()
    })
    .await;
    (arrived(&hub.fake.calls_of("sendMessage")).unwrap() - queued_at, queued_at)
}

#[tokio::test]
async fn two_thousand_recipients_at_the_limit_once_each_with_pause_opt_outs_and_a_live_reply_first() {
    let hub = spawn_hub(json!({"limits": {
        "rate": {"count": RATE, "per_ms": 1000},
        "rate_per_chat": {"count": 1, "per_ms": 1000}}}))
    .await;
    let total = recipients();
    let mut alice = hub.ready_agent("alice").await;
    // 300 requests a second with each taking a claim, the request and the outcome's commit
    // (tens of ms in a debug build on a busy machine) need many requests in flight (8 were too
    // few; the default is 64 since)
    let config = connectors::Config { max_in_flight: IN_FLIGHT, ..connectors::Config::default() };
    let _connector = hub.start_connector(config).await;

    // a live conversation of the same account, and how long a reply takes with no campaign
    let live_user = TgUser::new(42, "Live customer");
    hub.fake.text(&live_user, "hello, is my order on its way?");
    let live = hub.accept_next(&mut alice).await;
    let baseline = live_reply(&hub, &mut alice, &live, "Let me check").await;

    // the audience: customers who started the bot earlier (two statements, so the agent's
    // socket is not left unread for long)
    let customers: Vec<Uuid> = (0..total).map(|_| Uuid::now_v7()).collect();
    let names: Vec<String> = (0..total).map(|n| format!("Customer {n}")).collect();
    let chats: Vec<String> = (0..total).map(|n| (FIRST_CHAT + n).to_string()).collect();
    sqlx::query("INSERT INTO customers (id, name) SELECT * FROM unnest($1::uuid[], $2::text[])")
        .bind(&customers)
        .bind(&names)
        .execute(&hub.pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO customer_identities (account_id, external_id, customer_id, display_name)
         SELECT $1, chat, id, name FROM unnest($2::text[], $3::uuid[], $4::text[]) AS t(chat, id, name)",
    )
    .bind(hub.account_id)
    .bind(&chats)
    .bind(&customers)
    .bind(&names)
    .execute(&hub.pool)
    .await
    .unwrap();
    // every chat but the last is known to the platform: the last one's send is refused
    hub.fake.know((0..total - 1).map(|n| FIRST_CHAT + n));
    let refused_chat = FIRST_CHAT + total - 1;
    // three recipients write a stop word to the bot (in three spellings); ten more opted out
    // through another path earlier
    let stop_writers: Vec<i64> = vec![FIRST_CHAT + 10, FIRST_CHAT + 500, FIRST_CHAT + 1500];
    for (chat, word) in stop_writers.iter().zip(["STOP", "стоп!", "Отписаться"]) {
        hub.fake.text(&TgUser::new(*chat as u64, "Customer"), word);
    }
    let recorded: Vec<i64> = (0..10).map(|k| FIRST_CHAT + 100 + k * 7).collect();
    {
        let mut conn = hub.pool.acquire().await.unwrap();
        for chat in &recorded {
            store::opt_out(&mut conn, hub.account_id, &chat.to_string(), "unsubscribe button").await.unwrap();
        }
    }
    eventually("the stop words are stored as opt-outs", Duration::from_secs(20), || async {
        hub.count("SELECT count(*) FROM campaign_opt_outs").await == 13
    })
    .await;
    let opted: Vec<i64> = stop_writers.iter().chain(&recorded).copied().collect();

    let campaign = {
        let mut tx = hub.pool.begin().await.unwrap();
        let campaign = store::create_campaign(
            &mut tx,
            &NewCampaign {
                account_id: hub.account_id,
                name: "winter".into(),
                text: "Winter sale, {{name}}: code {{code}}".into(),
                template: None,
                rate_per_s: None,
                starts_at: None,
                ends_at: None,
                quiet: None,
                utc_offset_min: 0,
                created_by: "test".into(),
                flow: None,
            },
        )
        .await
        .unwrap();
        let recipients: Vec<RecipientInput> = customers
            .iter()
            .enumerate()
            .map(|(n, id)| RecipientInput {
                customer_id: Some(*id),
                variables: BTreeMap::from([("name".into(), format!("Customer {n}")), ("code".into(), format!("W{n}"))]),
                ..RecipientInput::default()
            })
            .collect();
        let added = store::add_recipients(&mut tx, campaign.id, &recipients, 0).await.unwrap();
        assert_eq!((added.added, added.duplicates, added.unresolved), (total as u64, 0, 0));
        let again = store::add_recipients(&mut tx, campaign.id, &recipients[..5], 0).await.unwrap();
        assert_eq!(again.duplicates, 5, "a chat is in a campaign once");
        tx.commit().await.unwrap();
        campaign
    };
    let start = |action| {
        let pool = hub.pool.clone();
        let coord = hub.coord.clone();
        let account = hub.account_id;
        async move {
            let mut tx = pool.begin().await.unwrap();
            let changed = store::change_campaign(&mut tx, campaign.id, action).await.unwrap();
            tx.commit().await.unwrap();
            coord.notify(&schema::topics::account(account));
            changed
        }
    };
    // a second campaign at the same time, capped at its own rate under the account's
    let flash = {
        let mut tx = hub.pool.begin().await.unwrap();
        let flash = store::create_campaign(
            &mut tx,
            &NewCampaign {
                account_id: hub.account_id,
                name: "flash".into(),
                text: "Flash sale, {{name}}".into(),
                template: None,
                rate_per_s: Some(FLASH_RATE as i32),
                starts_at: None,
                ends_at: None,
                quiet: None,
                utc_offset_min: 0,
                created_by: "test".into(),
                flow: None,
            },
        )
        .await
        .unwrap();
        let audience: Vec<RecipientInput> = (FLASH_FROM..FLASH_FROM + FLASH)
            .map(|n| RecipientInput {
                customer_id: Some(customers[n as usize]),
                variables: BTreeMap::from([("name".into(), format!("Customer {n}"))]),
                ..RecipientInput::default()
            })
            .collect();
        store::add_recipients(&mut tx, flash.id, &audience, 0).await.unwrap();
        store::change_campaign(&mut tx, flash.id, CampaignAction::Start).await.unwrap();
        tx.commit().await.unwrap();
        flash
    };
    let began = Instant::now();
    start(CampaignAction::Start).await;
    // a second start (an overlapping job) queues nobody twice
    start(CampaignAction::Start).await;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox WHERE campaign_id = $1")
        .bind(campaign.id)
        .fetch_one(&hub.pool)
        .await
        .unwrap();
    assert_eq!(
        rows,
        total - opted.len() as i64,
        "one outbox row per recipient; the opted-out ones are skipped before they are queued"
    );

    // pause a third of the way, and check nothing more goes out but what was in flight
    until_sent(&hub, &mut alice, total as usize * 3 / 10).await;
    start(CampaignAction::Pause).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let at_pause = campaign_calls(&hub.fake.calls_of("sendMessage")).len();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after_pause = campaign_calls(&hub.fake.calls_of("sendMessage")).len();
    assert_eq!(after_pause, at_pause, "nothing is sent while the campaign is paused");
    start(CampaignAction::Resume).await;

    // a live reply while the campaign drains again
    until_sent(&hub, &mut alice, at_pause + 300).await;
    let (live_wait, queued_at) = live_reply(&hub, &mut alice, &live, "Yes, it ships today").await;
    let calls = hub.fake.calls_of("sendMessage");
    let live_call = calls.iter().find(|c| c.chat() == "42" && c.param("text") == "Yes, it ships today").unwrap();
    let campaign_before_live =
        campaign_calls(&calls).iter().filter(|c| c.at > queued_at && c.at < live_call.at).count();
    let left_then = total as usize - campaign_calls(&calls).iter().filter(|c| c.at <= queued_at).count();

    let until = Instant::now() + Duration::from_secs(30 + total as u64 / 100);
    while hub.count("SELECT count(*) FROM campaigns WHERE state = 'finished'").await != 2 {
        assert!(Instant::now() < until, "the campaign did not finish");
        alice.settle(Duration::from_millis(200)).await;
    }
    let elapsed = began.elapsed();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let calls = hub.fake.calls_of("sendMessage");
    let sent = campaign_calls(&calls);

    // each recipient once, with its own text; the opted-out and the refused one never
    let mut per_chat: HashMap<String, Vec<&str>> = HashMap::new();
    for c in &sent {
        per_chat.entry(c.chat()).or_default().push(c.param("text").as_str().unwrap());
    }
    let expected = total as usize - opted.len() - 1;
    assert_eq!(sent.len(), expected, "every recipient exactly once");
    assert_eq!(per_chat.len(), expected);
    for n in [0i64, 1, 999, 1998] {
        let chat = (FIRST_CHAT + n).to_string();
        assert_eq!(per_chat[&chat], vec![format!("Winter sale, Customer {n}: code W{n}").as_str()]);
    }
    for chat in &opted {
        assert!(!per_chat.contains_key(&chat.to_string()), "opted-out chat {chat} got the campaign");
    }

    // never above the limit in any window
    let times: Vec<std::time::Duration> = sent.iter().map(|c| c.at).collect();
    let busiest = max_in_window(&times, Duration::from_secs(1));
    let busiest_inner = max_in_window(&times, Duration::from_secs(1) - JITTER);
    assert!(busiest_inner <= RATE, "{busiest_inner} campaign sends within a second, over {RATE}");
    // the full rate while it runs: the longest stretch without the pause
    let resumed: Vec<Duration> = times.iter().copied().filter(|t| *t > live_call.at).collect();
    let rate = (resumed.len() - 1) as f64 / (*resumed.last().unwrap() - resumed[0]).as_secs_f64();

    // the capped campaign: each of its recipients once, never above its own rate
    let flash_sent: Vec<&Call> = calls
        .iter()
        .filter(|c| c.ok() && c.param("text").as_str().is_some_and(|t| t.starts_with("Flash sale")))
        .collect();
    let flash_chats: std::collections::HashSet<String> = flash_sent.iter().map(|c| c.chat()).collect();
    assert_eq!((flash_sent.len(), flash_chats.len()), (FLASH as usize, FLASH as usize));
    let flash_times: Vec<Duration> = flash_sent.iter().map(|c| c.at).collect();
    let flash_busiest = max_in_window(&flash_times, Duration::from_secs(1));
    let flash_inner = max_in_window(&flash_times, Duration::from_secs(1) - JITTER);
    assert!(flash_inner <= FLASH_RATE, "{flash_inner} sends of the capped campaign within a second");
    let flash_rate = (flash_times.len() - 1) as f64 / (*flash_times.last().unwrap() - flash_times[0]).as_secs_f64();
    assert_eq!(
        hub.count("SELECT count(*) FROM campaigns WHERE state = 'finished'").await,
        2,
        "both campaigns finished"
    );
    let flash_report = store::campaign_report(&mut hub.pool.acquire().await.unwrap(), flash.id).await.unwrap();
    assert_eq!(flash_report.counts["sent"], FLASH, "{:?}", flash_report.counts);

    // the report
    let report = {
        let mut conn = hub.pool.acquire().await.unwrap();
        store::campaign_report(&mut conn, campaign.id).await.unwrap()
    };
    assert_eq!(report.counts["sent"], expected as i64, "{:?}", report.counts);
    assert_eq!(report.counts["skipped"], opted.len() as i64);
    assert_eq!(report.counts["failed"], 1);
    assert_eq!(report.counts["queued"], 0);
    let reasons: Vec<(String, String, Option<String>)> =
        sqlx::query_as("SELECT chat_id, state, reason FROM campaign_recipients WHERE state IN ('skipped', 'failed')")
            .fetch_all(&hub.pool)
            .await
            .unwrap();
    for (chat, state, reason) in &reasons {
        let reason = reason.as_deref().unwrap_or_default();
        if *chat == refused_chat.to_string() {
            assert_eq!((state.as_str(), reason), ("failed", "Bad Request: chat not found"));
        } else if stop_writers.iter().any(|c| c.to_string() == *chat) {
            assert!(reason.starts_with("opted out (stop word "), "{chat}: {reason}");
        } else {
            assert_eq!(reason, "opted out (unsubscribe button)", "{chat}");
        }
    }

    // a recipient answers: the interaction knows its campaign, the recipient is `replied`
    // (offers of the stop-word writers left unanswered for 30 s made alice not ready)
    let ready = alice.call("agent.set_status", json!({"status": "ready"})).await;
    assert_eq!(ready["ok"], true, "{ready}");
    let answering = TgUser::new((FIRST_CHAT + 7) as u64, "Customer 7");
    hub.fake.text(&answering, "How long does the sale last?");
    let offer =
        alice.event_where("interaction.offered", |data| data["interaction"]["fields"]["campaign"] == "winter").await;
    assert_eq!(offer["data"]["interaction"]["fields"]["campaign_id"], campaign.id.to_string());
    let replied: (String, Option<Uuid>) =
        sqlx::query_as("SELECT state, interaction_id FROM campaign_recipients WHERE chat_id = $1")
            .bind((FIRST_CHAT + 7).to_string())
            .fetch_one(&hub.pool)
            .await
            .unwrap();
    assert_eq!(replied.0, "replied");
    assert_eq!(replied.1.map(|i| i.to_string()).as_deref(), offer["data"]["interaction"]["id"].as_str());
    // the stop word did not block the customer's own conversation: an agent's reply goes out
    assert_eq!(hub.count("SELECT count(*) FROM campaign_opt_outs").await, 13);

    let slot = Duration::from_secs(1) / RATE as u32;
    let baseline = baseline.0;
    println!(
        "campaign of {total}: {} sent, {} skipped, 1 failed in {elapsed:?} (with a 1.8 s pause); \
         {rate:.1}/s after the resume (limit {RATE}/s); busiest 1-s window {busiest} ({busiest_inner} in \
         {:?}); live reply reached the fake {live_wait:?} after it was queued (one slot is {slot:?}), \
         {campaign_before_live} campaign sends in between, {left_then} recipients still waiting; with no \
         campaign a reply took {baseline:?}; {IN_FLIGHT} requests in flight; the second campaign, capped at \
         {FLASH_RATE}/s: {FLASH} sent once each at {flash_rate:.1}/s, busiest 1-s window {flash_busiest}",
        sent.len(),
        opted.len(),
        Duration::from_secs(1) - JITTER
    );
    // behind the backlog it would have waited for the 1,000 and more recipients still queued;
    // in the lane it takes the next token once the worker has read it, and the campaign sends
    // in between are those already in flight or started while it was read and claimed
    assert!(
        campaign_before_live < 100,
        "the live reply waited behind {campaign_before_live} campaign sends of {left_then} queued"
    );
    // how close to the limit a debug build on a shared machine gets is reported, not asserted
    // (128-294/s here, with other builds on the same two cores; the pacer's own test holds 98%
    // of the limit); crawling is a failure
    assert!(rate >= RATE as f64 / 4.0, "the campaign crawled at {rate:.1}/s");
}
