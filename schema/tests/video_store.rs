//! Video rooms in the store against a real PostgreSQL: start (with its invitation message and
//! events), one open room per interaction, the link, the node claim, ending once.

use chrono::Utc;
use schema::domain::{VideoMode, VideoQuality, VideoRoomState};
use schema::store::{self, NewRoom, StoreError};
use sqlx::PgPool;
use uuid::Uuid;

async fn assigned_interaction(pool: &PgPool) -> Uuid {
    let account = testenv::fixtures::webchat_account(pool, &[("alice", "agent"), ("bob", "agent")]).await;
    testenv::fixtures::assigned_interaction(pool, account, "wc-v", "Visitor", "can we talk on video?", "alice").await
}

fn new_room(interaction_id: Uuid, agent: &str, token: &str) -> NewRoom {
    NewRoom {
        interaction_id,
        agent_login: agent.into(),
        agent_name: agent.into(),
        mode: VideoMode::TwoWay,
        quality: VideoQuality::P720,
        link_token: token.into(),
        link_expires_at: Utc::now() + chrono::Duration::hours(1),
        invitation: format!("Join the video call: https://hub.example/call/{token}"),
        record: None,
    }
}

#[tokio::test]
async fn a_room_is_started_once_joined_by_its_link_and_ended_once() {
    let (_url, pool) = testenv::database().await;
    let interaction = assigned_interaction(&pool).await;
    let token = store::new_link_token();
    assert_eq!(token.len(), 43, "32 random bytes, base64url");
    assert_ne!(token, store::new_link_token());

    let mut tx = pool.begin().await.unwrap();
    let started = store::start_room(&mut tx, &new_room(interaction, "alice", &token)).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(started.audience, ["alice"]);
    assert!(started.invitation.created);
    assert_eq!(
        started.invitation.message.text.as_deref(),
        Some(&*format!("Join the video call: https://hub.example/call/{token}"))
    );

    let mut conn = pool.acquire().await.unwrap();
    // the token itself is not stored
    let stored: i64 =
        sqlx::query_scalar("SELECT count(*) FROM video_rooms WHERE encode(link_hash, 'escape') LIKE '%' || $1 || '%'")
            .bind(&token)
            .fetch_one(&mut *conn)
            .await
            .unwrap();
    assert_eq!(stored, 0);
    let by_link = store::room_by_link(&mut conn, &token).await.unwrap().expect("the link opens the room");
    assert_eq!(by_link, started.room);
    assert!(store::room_by_link(&mut conn, "not-a-token").await.unwrap().is_none());

    // one open room per interaction; bob is not in the interaction; nobody else starts one
    let second = store::start_room(&mut conn, &new_room(interaction, "alice", &store::new_link_token())).await;
    assert!(matches!(second, Err(StoreError::Conflict(_))), "{second:?}");
    let stranger = store::start_room(&mut conn, &new_room(interaction, "bob", &store::new_link_token())).await;
    assert!(matches!(stranger, Err(StoreError::NotFound { .. })), "{stranger:?}");

    assert_eq!(store::claim_room_node(&mut conn, started.room.id, "node-a").await.unwrap(), "node-a");
    assert_eq!(
        store::claim_room_node(&mut conn, started.room.id, "node-b").await.unwrap(),
        "node-a",
        "the first claim holds"
    );

    let joined = store::record_room_transition(
        &mut conn,
        &started.room,
        "joined",
        None,
        serde_json::json!({"role": "customer"}),
    )
    .await
    .unwrap();
    assert_eq!(joined, ["alice"]);

    let (ended, audience) =
        store::end_room(&mut conn, started.room.id, "ended_by_agent", Some("alice")).await.unwrap().unwrap();
    assert_eq!(ended.state, VideoRoomState::Ended);
    assert_eq!(ended.end_reason.as_deref(), Some("ended_by_agent"));
    assert_eq!(audience, ["alice"]);
    assert!(store::end_room(&mut conn, started.room.id, "empty", None).await.unwrap().is_none(), "ends once");

    let states: Vec<String> = sqlx::query_scalar(
        "SELECT data->>'state' FROM interaction_events WHERE interaction_id = $1 AND kind = 'video.room' ORDER BY seq",
    )
    .bind(interaction)
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    assert_eq!(states, ["created", "joined", "ended"]);
    let pushed: Vec<String> = sqlx::query_scalar(
        "SELECT data->>'state' FROM agent_events WHERE agent_login = 'alice' AND event = 'video.room' ORDER BY seq",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    assert_eq!(pushed, ["created", "joined", "ended"]);

    // after the end, a new room may be started
    let again = store::start_room(&mut conn, &new_room(interaction, "alice", &store::new_link_token())).await.unwrap();
    assert_eq!(store::rooms_of_interaction(&mut conn, interaction).await.unwrap().len(), 2);
    assert!(store::open_rooms_expired(&mut conn, Utc::now(), 10).await.unwrap().is_empty());
    let expired = store::open_rooms_expired(&mut conn, Utc::now() + chrono::Duration::hours(2), 10).await.unwrap();
    assert_eq!(expired.iter().map(|r| r.id).collect::<Vec<_>>(), [again.room.id]);

    // closing the interaction ends its open call
    store::close(&mut conn, interaction, "alice", Some("resolved")).await.unwrap();
    let closed = store::load_room(&mut conn, again.room.id).await.unwrap();
    assert_eq!((closed.state, closed.end_reason.as_deref()), (VideoRoomState::Ended, Some("interaction_closed")));
}
