//! A campaign survives `kill -9` of its connector leader: two `switchboard connector
//! --account` processes for one Telegram account (the fake Bot API in this process answering
//! after 25 ms), a campaign of 1,000 recipients at the account's 100/s; the leader is killed a
//! third of the way through and the other one finishes. Every recipient reaches the fake, none
//! twice except requests the dead leader had in flight (each counted as in doubt), and the
//! campaign ends `finished` with every recipient `sent`.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use connectors::fake::telegram::FakeTelegram;
use schema::domain::{Channel, Queue, RoutingMode};
use schema::store::{self, CampaignAction, NewAccount, NewCampaign, RecipientInput};
use serde_json::json;
use uuid::Uuid;

mod support;
use support::{MAX_IN_FLIGHT, Node, count, leader_of, wait_for};

const SECRET: &str = "campaign-failover-secret-campaign-failover";
const TOKEN: &str = "7001002004:AACampaignFailover";
const RECIPIENTS: i64 = 1_000;
const FIRST_CHAT: i64 = 8_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_mid_campaign_loses_no_recipient_and_repeats_only_the_counted_in_doubt() {
    let (db_url, pool) = testenv::database().await;
    let root = format!("/test-{}", Uuid::new_v4().simple());
    let fake = FakeTelegram::start(TOKEN).await;
    fake.set_latency(Duration::from_millis(25));
    let mut conn = pool.acquire().await.unwrap();
    store::upsert_queue(
        &mut conn,
        &Queue { name: "support".into(), routing_mode: RoutingMode::Manual, offer_timeout_ms: 30_000 },
    )
    .await
    .unwrap();
    let account = store::create_account(
        &mut conn,
        &NewAccount {
            channel: Channel::Telegram,
            name: "campaigns".into(),
            default_queue: "support".into(),
            credentials: json!({"bot_token": TOKEN}),
            settings: json!({"api_url": fake.api_url(), "poll_timeout_s": 5,
                "limits": {"rate": {"count": 100, "per_ms": 1000}}}),
        },
    )
    .await
    .unwrap()
    .id;
    let mut recipients = Vec::new();
    for n in 0..RECIPIENTS {
        let id = Uuid::now_v7();
        sqlx::query("INSERT INTO customers (id, name) VALUES ($1, $2)")
            .bind(id)
            .bind(format!("C{n}"))
            .execute(&mut *conn)
            .await
            .unwrap();
        sqlx::query("INSERT INTO customer_identities (account_id, external_id, customer_id) VALUES ($1, $2, $3)")
            .bind(account)
            .bind((FIRST_CHAT + n).to_string())
            .bind(id)
            .execute(&mut *conn)
            .await
            .unwrap();
        recipients.push(RecipientInput {
            customer_id: Some(id),
            variables: BTreeMap::from([("n".to_owned(), n.to_string())]),
            ..RecipientInput::default()
        });
    }
    fake.know((0..RECIPIENTS).map(|n| FIRST_CHAT + n));
    let campaign = store::create_campaign(
        &mut conn,
        &NewCampaign {
            account_id: account,
            name: "failover".into(),
            text: "Offer #{{n}}".into(),
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
    store::add_recipients(&mut conn, campaign.id, &recipients, 0).await.unwrap();
    drop(conn);
    let coord = support::coordinator(&root).await;

    let mut nodes = vec![
        Node::start(&db_url, &root, account, "a", SECRET, &[]),
        Node::start(&db_url, &root, account, "b", SECRET, &[]),
    ];
    let leader_index = leader_of(&nodes, account).await;
    {
        let mut tx = pool.begin().await.unwrap();
        store::change_campaign(&mut tx, campaign.id, CampaignAction::Start).await.unwrap();
        tx.commit().await.unwrap();
        coord.notify(&schema::topics::account(account));
    }
    let started = Instant::now();

    wait_for("a third sent", Duration::from_secs(60), async || {
        count(&pool, "SELECT count(*) FROM campaign_recipients WHERE state = 'sent'").await >= RECIPIENTS / 3
    })
    .await;
    let mut killed = nodes.remove(leader_index);
    let backup = nodes.remove(0);
    killed.kill();
    let killed_at = fake.elapsed();
    let sent_before = count(&pool, "SELECT count(*) FROM campaign_recipients WHERE state = 'sent'").await;
    wait_for("the backup leads", Duration::from_secs(20), async || backup.leads(account).await).await;
    let took_over = fake.elapsed().saturating_sub(killed_at);
    wait_for("the campaign finished", Duration::from_secs(90), async || {
        count(&pool, "SELECT count(*) FROM campaigns WHERE state = 'finished'").await == 1
    })
    .await;
    let elapsed = started.elapsed();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut sends: HashMap<String, Vec<Duration>> = HashMap::new();
    for call in fake.calls_of("sendMessage").into_iter().filter(|c| c.ok()) {
        sends.entry(call.chat()).or_default().push(call.at);
    }
    assert_eq!(sends.len(), RECIPIENTS as usize, "every recipient reached Telegram");
    assert_eq!(
        count(&pool, "SELECT count(*) FROM campaign_recipients WHERE state = 'sent'").await,
        RECIPIENTS,
        "and is reported sent"
    );
    let duplicates: Vec<(&String, &Vec<Duration>)> = sends.iter().filter(|(_, at)| at.len() > 1).collect();
    let in_doubt = count(&pool, "SELECT count(*) FROM outbox WHERE campaign_id IS NOT NULL AND attempts > 1").await;
    println!(
        "campaign failover: {RECIPIENTS} recipients in {elapsed:?}; leader killed at {killed_at:?} with {sent_before} \
         sent, backup took over after {took_over:?}; {} recipients sent twice, {in_doubt} rows in doubt (attempted \
         by both leaders)",
        duplicates.len()
    );
    for (chat, at) in &duplicates {
        assert_eq!(at.len(), 2, "{chat}: at most one repeat");
        assert!(at[0] <= killed_at && at[1] >= killed_at, "{chat}: the dead leader's request, then the new one's");
    }
    assert!(duplicates.len() <= MAX_IN_FLIGHT, "repeats are bounded by the requests in flight at the kill");
    assert!(duplicates.len() as i64 <= in_doubt, "every repeat is a row counted in doubt");
}
