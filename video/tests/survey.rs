//! The post-call survey over HTTP on the real PostgreSQL: the customer page learns the survey
//! from its link, a customer who joined the call answers it once, bad answers are refused with
//! a 4xx and a reason, the answers are stored with the call and become `interaction.rated` in the
//! interaction's log and the agent's stream; a queue whose survey is off gets none.

mod support;

use serde_json::{Value, json};
use support::{Hub, customer_join, frame_of, send};
use video::survey::{Question, Survey};

fn config() -> video::Config {
    let mut config = video::Config::default();
    config.survey.rating_text = "How was the call?".into();
    config.survey.questions = vec![
        Question { id: "solved".into(), text: "Was your question solved?".into() },
        Question { id: "comment".into(), text: "Anything else?".into() },
    ];
    config
}

async fn post(hub: &Hub, path: &str, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new().post(hub.url(path)).json(&body).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn post_raw(hub: &Hub, path: &str, body: String) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(hub.url(path))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The customer joins the call over the signalling socket and hangs up.
async fn customer_joins(hub: &Hub, link: &str) {
    let mut ws = hub.socket().await;
    send(&mut ws, customer_join(link)).await;
    frame_of(&mut ws, "joined", &mut Vec::new()).await;
    send(&mut ws, json!({"type": "leave"})).await;
}

#[tokio::test]
async fn a_customer_who_was_in_the_call_answers_its_survey_once() {
    let hub = Hub::start_with(config()).await;
    let (room, link) = hub.room().await;

    let (status, info) = post(&hub, "/api/v1/video/link", json!({"link": link})).await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(
        info["survey"],
        json!({"enabled": true, "rating_text": "How was the call?", "questions": [
            {"id": "solved", "text": "Was your question solved?"},
            {"id": "comment", "text": "Anything else?"},
        ]})
    );

    // not before the customer was in the call
    let (status, body) = post(&hub, "/api/v1/video/survey", json!({"link": link, "rating": 5})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("not_joined")), "{body}");
    customer_joins(&hub, &link).await;

    // bad answers: each a 4xx with its reason, nothing stored
    let huge = "x".repeat(100_000);
    let bad: Vec<(Value, u16, &str, &str)> = vec![
        (json!({"link": link, "rating": 0}), 400, "bad_request", "1 to 5"),
        (json!({"link": link, "rating": 6}), 400, "bad_request", "1 to 5"),
        (json!({"link": link, "rating": -3}), 400, "bad_request", "1 to 5"),
        (json!({"link": link, "rating": 2.5}), 400, "bad_request", "rating"),
        (json!({"link": link, "rating": "5"}), 400, "bad_request", "rating"),
        (json!({"link": link}), 400, "bad_request", "rating"),
        (json!({"link": link, "rating": 4, "answers": {"mood": "ok"}}), 400, "bad_request", "no question \"mood\""),
        (json!({"link": link, "rating": 4, "answers": {"comment": "a\u{0}b"}}), 400, "bad_request", "control"),
        (json!({"link": link, "rating": 4, "answers": {"comment": "y".repeat(1001)}}), 400, "bad_request", "longer"),
        (json!({"link": link, "rating": 4, "answers": {"comment": 7}}), 400, "bad_request", "answers"),
        (json!({"link": link, "rating": 4, "extra": true}), 400, "bad_request", "extra"),
        (json!({"link": "not-a-link", "rating": 4}), 401, "unauthorized", "not valid"),
        (json!({"link": "l".repeat(5000), "rating": 4}), 401, "unauthorized", "not valid"),
    ];
    for (body, status, code, says) in bad {
        let (got, answer) = post(&hub, "/api/v1/video/survey", body.clone()).await;
        assert_eq!((got, answer["error"]["code"].as_str()), (status, Some(code)), "{body}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{body}: {message}");
    }
    let (status, body) =
        post(&hub, "/api/v1/video/survey", json!({"link": link, "rating": 4, "answers": {"comment": huge}})).await;
    assert_eq!(status, 400, "a body over the limit: {body}");
    let (status, body) = post_raw(&hub, "/api/v1/video/survey", "{\"link\": ".into()).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("bad_request")), "{body}");
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM call_surveys").fetch_one(&hub.pool).await.unwrap();
    assert_eq!(stored, 0);

    // the answer
    let (status, stored) = post(
        &hub,
        "/api/v1/video/survey",
        json!({"link": link, "rating": 5, "answers": {"comment": "  Quick and clear.\nThanks ", "solved": ""}}),
    )
    .await;
    assert_eq!(status, 201, "{stored}");
    assert_eq!(stored["rating"], 5);
    assert_eq!(stored["room_id"], room.to_string());
    assert_eq!(
        stored["answers"],
        json!([{"id": "comment", "question": "Anything else?", "answer": "Quick and clear.\nThanks"}])
    );

    // once
    let (status, again) = post(&hub, "/api/v1/video/survey", json!({"link": link, "rating": 1})).await;
    assert_eq!((status, again["error"]["code"].as_str()), (409, Some("conflict")), "{again}");
    let (_, info) = post(&hub, "/api/v1/video/link", json!({"link": link})).await;
    assert!(info["survey"].is_null(), "an answered survey is not shown again: {info}");

    // kept with the call, in the interaction's log and the agent's stream
    let rating: i16 = sqlx::query_scalar("SELECT rating FROM call_surveys WHERE room_id = $1")
        .bind(room)
        .fetch_one(&hub.pool)
        .await
        .unwrap();
    assert_eq!(rating, 5);
    let logged: Value = sqlx::query_scalar(
        "SELECT data FROM interaction_events WHERE interaction_id = $1 AND kind = 'interaction.rated'",
    )
    .bind(hub.interaction)
    .fetch_one(&hub.pool)
    .await
    .unwrap();
    assert_eq!(logged["rating"], 5);
    assert_eq!(logged["room_id"], room.to_string());
    assert_eq!(logged["answers"][0]["id"], "comment");
    let streamed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM agent_events WHERE agent_login = 'alice' AND event = 'interaction.rated'",
    )
    .fetch_one(&hub.pool)
    .await
    .unwrap();
    assert_eq!(streamed, 1);
    let record = schema::store::call_record(&mut hub.pool.acquire().await.unwrap(), room).await.unwrap();
    assert_eq!(record.survey.map(|s| s.rating), Some(5));
}

#[tokio::test]
async fn a_queue_whose_survey_is_off_gets_none() {
    let mut config = config();
    config
        .survey
        .queues
        .insert("support".into(), Survey { enabled: false, rating_text: "unused".into(), questions: Vec::new() });
    let hub = Hub::start_with(config).await;
    let (_, link) = hub.room().await;
    customer_joins(&hub, &link).await;
    let (status, info) = post(&hub, "/api/v1/video/link", json!({"link": link})).await;
    assert_eq!(status, 200);
    assert!(info["survey"].is_null(), "{info}");
    let (status, body) = post(&hub, "/api/v1/video/survey", json!({"link": link, "rating": 3})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")), "{body}");
}
