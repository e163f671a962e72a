//! A WhatsApp account's message templates through the admin API: listed, created, replaced and
//! removed, each change audited, bad input refused with what to fix, channels without templates
//! refused.

mod harness;

use reqwest::{Method, StatusCode};
use serde_json::json;

use harness::spawn_app;

#[tokio::test]
async fn templates_are_listed_created_replaced_removed_and_audited() {
    let app = spawn_app().await;
    let base = format!("/api/v1/accounts/{}/templates", app.whatsapp);
    let (status, list) = app.get(&base).await;
    assert_eq!((status, list), (StatusCode::OK, json!({"items": []})));

    let (status, created) = app
        .send(
            Method::PUT,
            &format!("{base}/order_update/en_US"),
            Some(json!({"body": "Hello {{1}}, order {{2}} shipped."})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!((created["params"].as_i64(), created["category"].as_str()), (Some(2), Some("utility")));
    let (status, replaced) = app
        .send(
            Method::PUT,
            &format!("{base}/order_update/en_US"),
            Some(json!({"body": "Order {{1}} is late.", "category": "marketing"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{replaced}");
    assert_eq!(replaced["params"], 1);
    let (_, list) = app.get(&base).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(list["items"][0]["body"], "Order {{1}} is late.");

    for (path, body, why) in [
        ("Order%20Update/en", json!({"body": "x"}), "template name"),
        ("order_update/english", json!({"body": "x"}), "template language"),
        ("order_update/en", json!({"body": "{{1}} {{3}}"}), "without gaps"),
        ("order_update/en", json!({"body": "x", "category": "spam"}), "category"),
        ("order_update/en", json!({"text": "x"}), "unknown field"),
    ] {
        let (status, error) = app.send(Method::PUT, &format!("{base}/{path}"), Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {error}");
        assert!(error["error"]["message"].as_str().unwrap().contains(why), "{path}: {error}");
    }
    let telegram = format!("/api/v1/accounts/{}/templates", app.telegram);
    let (status, error) = app.get(&telegram).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error["error"]["message"], "telegram accounts have no message templates");
    let (status, _) = app.get(&format!("/api/v1/accounts/{}/templates", uuid::Uuid::nil())).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, _) = app.send(Method::DELETE, &format!("{base}/order_update/en_US"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = app.send(Method::DELETE, &format!("{base}/order_update/en_US"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, list) = app.get(&base).await;
    assert_eq!(list, json!({"items": []}));

    let (status, audit) = app.get("/api/v1/audit?limit=100").await;
    assert_eq!(status, StatusCode::OK, "{audit}");
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["target_kind"] == "template")
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions.len(), 3, "{audit}");
    for action in ["template.create", "template.update", "template.delete"] {
        assert!(actions.contains(&action), "{action} in {actions:?}");
    }
}
