//! WhatsApp's store functions (migration 0011) against a real PostgreSQL: the service window
//! only moves forward and never past now; templates are checked, created, replaced, removed.

use chrono::{Duration, Utc};
use schema::domain::{Channel, Queue, RoutingMode};
use schema::store::whatsapp::{self, TemplateInput};
use schema::store::{self, NewAccount, StoreError};
use uuid::Uuid;

async fn account(pool: &sqlx::PgPool) -> Uuid {
    let mut conn = pool.acquire().await.unwrap();
    store::upsert_queue(
        &mut conn,
        &Queue { name: "support".into(), routing_mode: RoutingMode::Auto, offer_timeout_ms: 30_000 },
    )
    .await
    .unwrap();
    store::create_account(
        &mut conn,
        &NewAccount {
            channel: Channel::Whatsapp,
            name: "shop".into(),
            default_queue: "support".into(),
            credentials: serde_json::json!({}),
            settings: serde_json::json!({}),
        },
    )
    .await
    .unwrap()
    .id
}

#[tokio::test]
async fn the_window_moves_forward_only_and_never_past_now() {
    let (_url, pool) = testenv::database().await;
    let account = account(&pool).await;
    let mut conn = pool.acquire().await.unwrap();
    assert_eq!(whatsapp::last_inbound_at(&mut conn, account, "4915112345678").await.unwrap(), None);
    let yesterday = Utc::now() - Duration::hours(25);
    whatsapp::record_inbound_time(&mut conn, account, "4915112345678", yesterday).await.unwrap();
    let at = whatsapp::last_inbound_at(&mut conn, account, "4915112345678").await.unwrap().unwrap();
    assert!((at - yesterday).num_milliseconds().abs() < 1);
    // a late delivery of an older message changes nothing
    whatsapp::record_inbound_time(&mut conn, account, "4915112345678", yesterday - Duration::hours(3)).await.unwrap();
    assert_eq!(whatsapp::last_inbound_at(&mut conn, account, "4915112345678").await.unwrap(), Some(at));
    // a timestamp in the future counts as now
    let before = Utc::now();
    whatsapp::record_inbound_time(&mut conn, account, "4915112345678", before + Duration::days(2)).await.unwrap();
    let at = whatsapp::last_inbound_at(&mut conn, account, "4915112345678").await.unwrap().unwrap();
    assert!(at >= before - Duration::seconds(1) && at <= Utc::now() + Duration::seconds(1), "{at}");
    assert_eq!(whatsapp::last_inbound_at(&mut conn, account, "someone else").await.unwrap(), None);
}

#[tokio::test]
async fn templates_are_checked_created_replaced_and_removed() {
    let (_url, pool) = testenv::database().await;
    let account = account(&pool).await;
    let mut conn = pool.acquire().await.unwrap();
    let input = TemplateInput {
        name: "order_update".into(),
        language: "en_US".into(),
        category: None,
        body: "Order {{1}} ships on {{2}}.".into(),
    };
    let (template, created) = whatsapp::put_template(&mut conn, account, &input).await.unwrap();
    assert!(created);
    assert_eq!((template.params, template.category.as_str()), (2, "utility"));
    let changed = TemplateInput { body: "Order {{1}} is late.".into(), category: Some("marketing".into()), ..input };
    let (template, created) = whatsapp::put_template(&mut conn, account, &changed).await.unwrap();
    assert!(!created);
    assert_eq!((template.params, template.category.as_str()), (1, "marketing"));
    assert_eq!(whatsapp::list_templates(&mut conn, account).await.unwrap(), vec![template.clone()]);
    assert_eq!(whatsapp::get_template(&mut conn, account, "order_update", "en_US").await.unwrap(), Some(template));
    assert_eq!(whatsapp::get_template(&mut conn, account, "order_update", "de").await.unwrap(), None);
    for (bad, why) in [
        (TemplateInput { name: "Order Update".into(), ..changed.clone() }, "name"),
        (TemplateInput { language: "english".into(), ..changed.clone() }, "language"),
        (TemplateInput { category: Some("spam".into()), ..changed.clone() }, "category"),
        (TemplateInput { body: "{{1}} {{3}}".into(), ..changed.clone() }, "without gaps"),
        (TemplateInput { body: String::new(), ..changed.clone() }, "body"),
    ] {
        match whatsapp::put_template(&mut conn, account, &bad).await {
            Err(StoreError::Invalid(message)) => assert!(message.contains(why), "{message}"),
            other => panic!("{why}: {other:?}"),
        }
    }
    assert!(whatsapp::delete_template(&mut conn, account, "order_update", "en_US").await.unwrap());
    assert!(!whatsapp::delete_template(&mut conn, account, "order_update", "en_US").await.unwrap());
    assert!(whatsapp::list_templates(&mut conn, account).await.unwrap().is_empty());
}
