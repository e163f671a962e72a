//! The OK connector's store functions against a real PostgreSQL: the long-poll marker and the
//! webhook deliveries kept until they are stored.

use schema::domain::Channel;
use schema::store::{self, NewAccount, OkInboxRow};
use sqlx::PgPool;
use uuid::Uuid;

async fn ok_account(pool: &PgPool, name: &str) -> Uuid {
    let mut conn = pool.acquire().await.unwrap();
    store::create_account(
        &mut conn,
        &NewAccount {
            channel: Channel::Ok,
            name: name.into(),
            default_queue: "support".into(),
            credentials: serde_json::json!({"access_token": "tkn1.test"}),
            settings: serde_json::json!({}),
        },
    )
    .await
    .unwrap()
    .id
}

async fn accounts(pool: &PgPool) -> (Uuid, Uuid) {
    // (the fixture's web chat account comes with the queue `support`)
    testenv::fixtures::webchat_account(pool, &[]).await;
    (ok_account(pool, "group").await, ok_account(pool, "other group").await)
}

#[tokio::test]
async fn the_long_poll_marker_is_kept_per_account() {
    let (_url, pool) = testenv::database().await;
    let (account, other) = accounts(&pool).await;
    let mut conn = pool.acquire().await.unwrap();
    assert_eq!(store::ok_long_poll_marker(&mut conn, account).await.unwrap(), None);
    store::set_ok_long_poll_marker(&mut conn, account, "1767312000123").await.unwrap();
    store::set_ok_long_poll_marker(&mut conn, account, "1767312000456").await.unwrap();
    assert_eq!(store::ok_long_poll_marker(&mut conn, account).await.unwrap().as_deref(), Some("1767312000456"));
    assert_eq!(store::ok_long_poll_marker(&mut conn, other).await.unwrap(), None);
}

#[tokio::test]
async fn webhook_deliveries_wait_in_order_until_removed_with_their_exact_bytes() {
    let (_url, pool) = testenv::database().await;
    let (account, other) = accounts(&pool).await;
    let mut conn = pool.acquire().await.unwrap();
    let raw: &[u8] = b"{\"text\":\"bad\\u0000byte\"}\x00 not even JSON \xff";
    let first = store::push_ok_inbox(&mut conn, account, b"{\"n\":1}").await.unwrap();
    let second = store::push_ok_inbox(&mut conn, account, raw).await.unwrap();
    let elsewhere = store::push_ok_inbox(&mut conn, other, b"{\"n\":3}").await.unwrap();
    let third = store::push_ok_inbox(&mut conn, account, b"{\"n\":4}").await.unwrap();
    assert!(first < second && second < third);
    assert_eq!(store::ok_inbox_len(&mut conn, account).await.unwrap(), 3);

    let batch = store::ok_inbox_after(&mut conn, account, 0, 2).await.unwrap();
    assert_eq!(
        batch,
        vec![
            OkInboxRow { id: first, payload: b"{\"n\":1}".to_vec() },
            OkInboxRow { id: second, payload: raw.to_vec() }
        ],
        "oldest first, the bytes as posted"
    );
    let rest = store::ok_inbox_after(&mut conn, account, second, 10).await.unwrap();
    assert_eq!(rest.iter().map(|r| r.id).collect::<Vec<_>>(), vec![third]);

    assert_eq!(store::remove_ok_inbox(&mut conn, account, &[first, second, elsewhere]).await.unwrap(), 2);
    assert_eq!(store::remove_ok_inbox(&mut conn, account, &[first]).await.unwrap(), 0, "already gone");
    assert_eq!(store::ok_inbox_len(&mut conn, account).await.unwrap(), 1);
    assert_eq!(store::ok_inbox_len(&mut conn, other).await.unwrap(), 1, "another account's row stays");
}
