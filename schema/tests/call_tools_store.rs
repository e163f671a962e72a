//! The call tools in the store (migration 0018): every query of `store::survey`,
//! `store::links` and `store::locations`, against a real database.

use schema::domain::{VideoMode, VideoQuality};
use schema::store::{self, LinkVia, NewParticipant, NewRoom, NewSms, StoreError, SurveyAnswer};
use serde_json::json;
use uuid::Uuid;

#[tokio::test]
async fn surveys_links_sms_and_locations() {
    let (_url, pool) = testenv::database().await;
    let account = testenv::fixtures::webchat_account(&pool, &[("alice", "agent")]).await;
    let interaction = testenv::fixtures::assigned_interaction(&pool, account, "wc-t", "Tina", "a call?", "alice").await;
    let mut conn = pool.acquire().await.unwrap();
    let (new, link) = NewRoom::with_new_link(
        interaction,
        "alice",
        "Alice",
        VideoMode::TwoWay,
        VideoQuality::P720,
        "http://hub.test",
        std::time::Duration::from_secs(3600),
    );
    let room = store::start_room(&mut conn, &new).await.unwrap().room;
    let link = link.rsplit('/').next().unwrap().to_owned();

    // the survey: the queue, whether the customer joined, once per call, rated 1-5
    assert_eq!(store::room_queue(&mut conn, &room).await.unwrap().as_deref(), Some("support"));
    assert!(!store::customer_joined(&mut conn, room.id).await.unwrap());
    let customer = NewParticipant {
        id: Uuid::new_v4(),
        room_id: room.id,
        role: "customer".into(),
        name: "Tina".into(),
        ..Default::default()
    };
    store::insert_participant(&mut conn, &customer).await.unwrap();
    assert!(store::customer_joined(&mut conn, room.id).await.unwrap());
    assert!(matches!(store::insert_call_survey(&mut conn, &room, 6, &[]).await, Err(StoreError::Invalid(_))));
    assert!(!store::survey_answered(&mut conn, room.id).await.unwrap());
    let answers = vec![SurveyAnswer { id: "c".into(), question: "Q?".into(), answer: "A".into() }];
    let (survey, audience) = store::insert_call_survey(&mut conn, &room, 3, &answers).await.unwrap();
    assert_eq!((survey.rating, audience), (3, vec!["alice".to_owned()]));
    assert!(store::survey_answered(&mut conn, room.id).await.unwrap());
    assert!(matches!(store::insert_call_survey(&mut conn, &room, 5, &[]).await, Err(StoreError::Conflict(_))));
    assert_eq!(store::surveys_of_rooms(&mut conn, &[room.id]).await.unwrap(), vec![survey.clone()]);
    assert_eq!(store::rated_event(&survey)["answers"], json!([{"id": "c", "question": "Q?", "answer": "A"}]));
    let detail = store::interaction_detail(&mut conn, interaction).await.unwrap();
    assert_eq!(detail.rating, Some(3));

    // extra links open the same room; the invitation's still does
    let copied = store::add_room_link(&mut conn, room.id, LinkVia::Copy, "alice").await.unwrap();
    assert_ne!(copied, link);
    for token in [&link, &copied] {
        assert_eq!(store::room_by_link(&mut conn, token).await.unwrap().map(|r| r.id), Some(room.id));
    }
    assert!(store::room_by_link(&mut conn, "never-issued").await.unwrap().is_none());

    // an SMS: sending, then sent, then delivered; the same state twice is a no-op
    let sms_link = store::add_room_link(&mut conn, room.id, LinkVia::Sms, "alice").await.unwrap();
    let sms = Uuid::new_v4();
    let new_sms =
        NewSms { id: sms, room: room.id, link: &sms_link, agent: "alice", phone: "79123456789", provider: "smsc" };
    store::insert_sms(&mut conn, &new_sms).await.unwrap();
    assert_eq!(store::load_sms(&mut conn, sms).await.unwrap().state, "sending");
    let data = json!({"sms_id": sms, "state": "sent"});
    let woke = store::record_sms_state(&mut conn, &room, sms, "sent", Some("1001"), None, &data).await.unwrap();
    assert_eq!(woke, Some(vec!["alice".to_owned()]));
    assert_eq!(store::record_sms_state(&mut conn, &room, sms, "sent", None, None, &data).await.unwrap(), None);
    store::record_sms_state(&mut conn, &room, sms, "failed", None, Some("undeliverable"), &data).await.unwrap();
    let row = store::load_sms(&mut conn, sms).await.unwrap();
    assert_eq!(
        (row.state.as_str(), row.provider_id.as_deref(), row.error.as_deref()),
        ("failed", Some("1001"), Some("undeliverable")),
        "the provider's id stays"
    );
    let logged: i64 =
        sqlx::query_scalar("SELECT count(*) FROM interaction_events WHERE interaction_id = $1 AND kind = 'video.sms'")
            .bind(interaction)
            .fetch_one(&mut *conn)
            .await
            .unwrap();
    assert_eq!(logged, 2);
    assert!(matches!(store::load_sms(&mut conn, Uuid::new_v4()).await, Err(StoreError::NotFound { .. })));

    // locations: the latest per call, at most 20 kept
    let first = store::insert_location(&mut conn, room.id, customer.id, 1.0, 2.0, Some(5.0), Some("Here"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((first.lat, first.address.as_deref()), (1.0, Some("Here")));
    for i in 1..store::MAX_LOCATIONS_PER_CALL {
        assert!(
            store::insert_location(&mut conn, room.id, customer.id, 3.0, i as f64, None, None).await.unwrap().is_some()
        );
    }
    assert!(store::insert_location(&mut conn, room.id, customer.id, 9.0, 9.0, None, None).await.unwrap().is_none());
    let latest = store::latest_locations(&mut conn, &[room.id]).await.unwrap();
    assert_eq!(latest.len(), 1);
    assert_eq!((latest[0].lat, latest[0].lon), (3.0, (store::MAX_LOCATIONS_PER_CALL - 1) as f64));
    let record = store::call_record(&mut conn, room.id).await.unwrap();
    assert_eq!(record.survey.map(|s| s.rating), Some(3));
    assert_eq!(record.location.map(|l| l.lon), Some((store::MAX_LOCATIONS_PER_CALL - 1) as f64));
}
