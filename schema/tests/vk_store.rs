//! The VK connector's store functions against a real PostgreSQL: the long-poll position, the
//! customers' permission for the community to write to them, and a known customer's name and
//! avatar.

use schema::domain::Channel;
use schema::store::{self, NewAccount, Sender};
use sqlx::PgPool;
use uuid::Uuid;

async fn vk_account(pool: &PgPool) -> Uuid {
    // (the fixture's web chat account comes with the queue `support`)
    testenv::fixtures::webchat_account(pool, &[]).await;
    let mut conn = pool.acquire().await.unwrap();
    store::create_account(
        &mut conn,
        &NewAccount {
            channel: Channel::Vk,
            name: "community".into(),
            default_queue: "support".into(),
            credentials: serde_json::json!({"access_token": "vk1.a.test"}),
            settings: serde_json::json!({"group_id": 231000555}),
        },
    )
    .await
    .unwrap()
    .id
}

#[tokio::test]
async fn the_long_poll_position_is_kept_per_account() {
    let (_url, pool) = testenv::database().await;
    let account = vk_account(&pool).await;
    let mut conn = pool.acquire().await.unwrap();
    assert_eq!(store::vk_long_poll_ts(&mut conn, account).await.unwrap(), None);
    store::set_vk_long_poll_ts(&mut conn, account, "2210").await.unwrap();
    store::set_vk_long_poll_ts(&mut conn, account, "2215").await.unwrap();
    assert_eq!(store::vk_long_poll_ts(&mut conn, account).await.unwrap().as_deref(), Some("2215"));
    assert_eq!(store::vk_long_poll_ts(&mut conn, Uuid::new_v4()).await.unwrap(), None);
}

#[tokio::test]
async fn permissions_follow_allow_and_deny_and_writing_lifts_a_denial() {
    let (_url, pool) = testenv::database().await;
    let account = vk_account(&pool).await;
    let mut conn = pool.acquire().await.unwrap();
    assert_eq!(store::vk_permission(&mut conn, account, "7700123").await.unwrap(), None);
    assert!(!store::lift_vk_denial(&mut conn, account, "7700123").await.unwrap(), "nothing to lift");
    assert_eq!(store::vk_permission(&mut conn, account, "7700123").await.unwrap(), None, "and nothing written");

    store::set_vk_permission(&mut conn, account, "7700123", false).await.unwrap();
    let denied = store::vk_permission(&mut conn, account, "7700123").await.unwrap().unwrap();
    assert!(!denied.allowed);
    store::set_vk_permission(&mut conn, account, "7700123", true).await.unwrap();
    assert!(store::vk_permission(&mut conn, account, "7700123").await.unwrap().unwrap().allowed);
    store::set_vk_permission(&mut conn, account, "7700123", false).await.unwrap();
    assert!(store::lift_vk_denial(&mut conn, account, "7700123").await.unwrap());
    let lifted = store::vk_permission(&mut conn, account, "7700123").await.unwrap().unwrap();
    assert!(lifted.allowed && lifted.changed_at >= denied.changed_at);
    assert!(!store::lift_vk_denial(&mut conn, account, "7700123").await.unwrap());
}

#[tokio::test]
async fn a_known_customer_s_name_and_avatar() {
    let (_url, pool) = testenv::database().await;
    let account = vk_account(&pool).await;
    let mut conn = pool.acquire().await.unwrap();
    assert_eq!(store::vk_customer(&mut conn, account, "7700123").await.unwrap(), None);
    let mut tx = pool.begin().await.unwrap();
    store::upsert_customer(
        &mut tx,
        account,
        &Sender {
            external_id: "7700123".into(),
            name: "Anna Berg".into(),
            avatar_url: Some("/api/v1/files/0196a1c0-0000-7000-8000-000000000001".into()),
            ..Sender::default()
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let known = store::vk_customer(&mut conn, account, "7700123").await.unwrap().unwrap();
    assert_eq!(known.name, "Anna Berg");
    assert_eq!(known.avatar_url.as_deref(), Some("/api/v1/files/0196a1c0-0000-7000-8000-000000000001"));
}
