//! The campaign store against a real PostgreSQL: what a claim decides (schedule, quiet hours,
//! end time, pause), outcomes one by one and in a batch, platform receipts for campaign
//! messages (also those that overtake the outcome), and a reply linking the interaction.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{Timelike, Utc};
use schema::domain::{Channel, Queue, RoutingMode};
use schema::store::{
    self, BulkClaim, CampaignAction, CampaignState, InboundMessage, Ingested, NewAccount, NewCampaign, OutboxOutcome,
    Receipt, ReceiptOutcome, RecipientInput, Sender,
};
use sqlx::PgPool;
use uuid::Uuid;

const TOKEN: i64 = 5;

async fn account(pool: &PgPool) -> Uuid {
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
            channel: Channel::Viber,
            name: "promo".into(),
            default_queue: "support".into(),
            credentials: serde_json::json!({"auth_token": "x"}),
            settings: serde_json::json!({}),
        },
    )
    .await
    .unwrap()
    .id
}

async fn inbound(pool: &PgPool, account_id: Uuid, user: &str, text: &str) -> (Uuid, serde_json::Value) {
    let msg = InboundMessage {
        account_id,
        external_message_id: Uuid::now_v7().to_string(),
        chat_id: user.into(),
        sender: Sender { external_id: user.into(), name: user.into(), ..Default::default() },
        text: Some(text.into()),
        ..Default::default()
    };
    let mut tx = pool.begin().await.unwrap();
    let stored = store::ingest_inbound(&mut tx, &msg, Duration::from_secs(60)).await.unwrap();
    tx.commit().await.unwrap();
    match stored {
        Ingested::Stored { interaction, .. } => (interaction.id, serde_json::Value::Object(interaction.fields)),
        Ingested::Duplicate { .. } => panic!("duplicate"),
    }
}

async fn campaign(pool: &PgPool, account_id: Uuid, users: &[&str], quiet: Option<(i16, i16)>) -> Uuid {
    let mut customers = Vec::new();
    for user in users {
        inbound(pool, account_id, user, "hello").await;
        let id: Uuid = sqlx::query_scalar("SELECT customer_id FROM customer_identities WHERE external_id = $1")
            .bind(user)
            .fetch_one(pool)
            .await
            .unwrap();
        customers.push(id);
    }
    let mut tx = pool.begin().await.unwrap();
    let c = store::create_campaign(
        &mut tx,
        &NewCampaign {
            account_id,
            name: "spring".into(),
            text: "Hi {{name}}".into(),
            template: None,
            rate_per_s: Some(5),
            starts_at: None,
            ends_at: None,
            quiet,
            utc_offset_min: 0,
            created_by: "test".into(),
            flow: None,
        },
    )
    .await
    .unwrap();
    let recipients: Vec<RecipientInput> = customers
        .iter()
        .map(|id| RecipientInput {
            customer_id: Some(*id),
            variables: BTreeMap::from([("name".to_owned(), "N".to_owned())]),
            ..RecipientInput::default()
        })
        .collect();
    store::add_recipients(&mut tx, c.id, &recipients, 0).await.unwrap();
    store::change_campaign(&mut tx, c.id, CampaignAction::Start).await.unwrap();
    tx.commit().await.unwrap();
    c.id
}

async fn rows(pool: &PgPool, campaign: Uuid) -> Vec<i64> {
    sqlx::query_scalar("SELECT id FROM outbox WHERE campaign_id = $1 ORDER BY id")
        .bind(campaign)
        .fetch_all(pool)
        .await
        .unwrap()
}

async fn claim(pool: &PgPool, account_id: Uuid, ids: &[i64]) -> Vec<(i64, BulkClaim)> {
    let mut tx = pool.begin().await.unwrap();
    let claims = store::claim_bulk_outbox(&mut tx, account_id, TOKEN, ids, Utc::now()).await.unwrap();
    tx.commit().await.unwrap();
    claims
}

async fn state_of(pool: &PgPool, chat: &str) -> (String, Option<String>) {
    sqlx::query_as("SELECT state, reason FROM campaign_recipients WHERE chat_id = $1")
        .bind(chat)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn claims_follow_pause_quiet_hours_and_the_end_time() {
    let (_, pool) = testenv::database().await;
    let account_id = account(&pool).await;
    let c = campaign(&pool, account_id, &["q1", "q2"], None).await;
    let ids = rows(&pool, c).await;
    let bulk = store::pending_bulk_outbox(&mut pool.acquire().await.unwrap(), account_id, &[], 10).await.unwrap();
    assert_eq!(bulk.len(), 2);
    assert_eq!(bulk[0].message.text.as_deref(), Some("Hi N"));
    assert_eq!(bulk[0].bulk.as_ref().unwrap().rate_per_s, Some(5));
    let held = store::pending_bulk_outbox(&mut pool.acquire().await.unwrap(), account_id, &[ids[0]], 10).await.unwrap();
    assert_eq!(held.iter().map(|i| i.id).collect::<Vec<_>>(), vec![ids[1]], "rows held are skipped");

    let mut tx = pool.begin().await.unwrap();
    store::change_campaign(&mut tx, c, CampaignAction::Pause).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(claim(&pool, account_id, &ids).await, vec![(ids[0], BulkClaim::Held), (ids[1], BulkClaim::Held)]);
    assert!(
        store::pending_bulk_outbox(&mut pool.acquire().await.unwrap(), account_id, &[], 10).await.unwrap().is_empty()
    );

    // quiet now, for everyone: the rows move to the end of the quiet hours
    let minute = (Utc::now().hour() * 60 + Utc::now().minute()) as i16;
    let q = campaign(&pool, account_id, &["q3"], Some(((minute + 1439) % 1440, (minute + 2) % 1440))).await;
    let q_ids = rows(&pool, q).await;
    match &claim(&pool, account_id, &q_ids).await[0].1 {
        BulkClaim::Later(at) => assert!(*at > Utc::now() && *at <= Utc::now() + chrono::Duration::minutes(3)),
        other => panic!("{other:?}"),
    }
    assert!(
        store::pending_bulk_outbox(&mut pool.acquire().await.unwrap(), account_id, &[], 10).await.unwrap().is_empty(),
        "a moved row is not read before it is due"
    );

    // past its end time: skipped with the reason, and the campaign ends
    let mut tx = pool.begin().await.unwrap();
    store::change_campaign(&mut tx, c, CampaignAction::Resume).await.unwrap();
    tx.commit().await.unwrap();
    sqlx::query("UPDATE campaigns SET ends_at = now() - interval '1 minute' WHERE id = $1")
        .bind(c)
        .execute(&pool)
        .await
        .unwrap();
    let claims = claim(&pool, account_id, &ids).await;
    assert!(matches!(&claims[0].1, BulkClaim::Skipped(r) if r.contains("end time")), "{claims:?}");
    assert_eq!(state_of(&pool, "q1").await.0, "skipped");
    let report = store::campaign_report(&mut pool.acquire().await.unwrap(), c).await.unwrap();
    assert_eq!(report.campaign.state, CampaignState::Finished);
    assert_eq!(report.counts["skipped"], 2);
}

#[tokio::test]
async fn a_web_chat_account_runs_no_campaign() {
    let (_, pool) = testenv::database().await;
    account(&pool).await;
    let mut conn = pool.acquire().await.unwrap();
    let webchat = store::create_account(
        &mut conn,
        &NewAccount {
            channel: Channel::Webchat,
            name: "site".into(),
            default_queue: "support".into(),
            credentials: serde_json::json!({}),
            settings: serde_json::json!({}),
        },
    )
    .await
    .unwrap()
    .id;
    let refused = store::create_campaign(
        &mut conn,
        &NewCampaign {
            account_id: webchat,
            name: "x".into(),
            text: "y".into(),
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
    .unwrap_err();
    assert!(refused.to_string().contains("cannot run campaigns"), "{refused}");
}

#[tokio::test]
async fn outcomes_receipts_and_a_reply_move_each_recipient_forward() {
    let (_, pool) = testenv::database().await;
    let account_id = account(&pool).await;
    let c = campaign(&pool, account_id, &["r1", "r2", "r3", "r4"], None).await;
    let ids = rows(&pool, c).await;
    let claims = claim(&pool, account_id, &ids).await;
    assert!(claims.iter().all(|(_, c)| *c == BulkClaim::Go), "{claims:?}");

    // one outcome alone; a receipt that overtakes the outcome of another; then a batch
    let mut tx = pool.begin().await.unwrap();
    store::finish_outbox(&mut tx, account_id, TOKEN, ids[0], &OutboxOutcome::Done { external_ids: vec!["m1".into()] })
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(state_of(&pool, "r1").await.0, "sent");
    let mut tx = pool.begin().await.unwrap();
    let early = store::record_receipt(&mut tx, account_id, "m2", &Receipt::Read).await.unwrap();
    tx.commit().await.unwrap();
    assert!(matches!(early, ReceiptOutcome::Early));
    let mut tx = pool.begin().await.unwrap();
    store::finish_outbox_many(
        &mut tx,
        account_id,
        TOKEN,
        &[
            (ids[1], OutboxOutcome::Done { external_ids: vec!["m2".into()] }),
            (ids[2], OutboxOutcome::Failed { error: "Forbidden: blocked".into() }),
            (ids[3], OutboxOutcome::Retry { not_before: Utc::now(), error: "502".into() }),
        ],
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(state_of(&pool, "r2").await.0, "read", "the early receipt applied with the outcome");
    assert_eq!(state_of(&pool, "r3").await, ("failed".into(), Some("Forbidden: blocked".into())));
    assert_eq!(state_of(&pool, "r4").await.0, "queued");

    for (receipt, expected) in
        [(Receipt::Delivered, "delivered"), (Receipt::Read, "read"), (Receipt::Delivered, "read")]
    {
        let mut tx = pool.begin().await.unwrap();
        store::record_receipt(&mut tx, account_id, "m1", &receipt).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(state_of(&pool, "r1").await.0, expected, "never backwards");
    }

    // r1 answers: replied, and the interaction knows the campaign
    let (interaction, fields) = inbound(&pool, account_id, "r1", "tell me more").await;
    assert_eq!(fields["campaign"], "spring");
    assert_eq!(fields["campaign_id"], c.to_string());
    let (state, linked): (String, Option<Uuid>) =
        sqlx::query_as("SELECT state, interaction_id FROM campaign_recipients WHERE chat_id = 'r1'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((state.as_str(), linked), ("replied", Some(interaction)));
    let mut tx = pool.begin().await.unwrap();
    store::record_receipt(&mut tx, account_id, "m1", &Receipt::Read).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(state_of(&pool, "r1").await.0, "replied", "a receipt never undoes a reply");

    // the last row ends the campaign
    let mut tx = pool.begin().await.unwrap();
    store::finish_outbox(&mut tx, account_id, TOKEN, ids[3], &OutboxOutcome::Done { external_ids: vec!["m4".into()] })
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let report = store::campaign_report(&mut pool.acquire().await.unwrap(), c).await.unwrap();
    assert_eq!(report.campaign.state, CampaignState::Finished);
    assert_eq!(
        (report.counts["replied"], report.counts["read"], report.counts["failed"], report.counts["sent"]),
        (1, 1, 1, 1)
    );
}
