//! Admin-defined interaction fields on the agent WebSocket: `interaction.set_field` on an
//! interaction the agent owns, each value checked against its definition with a clear error
//! code, and refused on an interaction that is not the agent's.

mod harness;

use harness::spawn_hub;
use schema::fields::{FieldDef, FieldType};
use schema::store;
use serde_json::{Value, json};

#[tokio::test]
async fn an_agent_sets_the_fields_of_its_interaction_as_defined() {
    let hub = spawn_hub(json!({})).await;
    let mut conn = hub.pool.acquire().await.unwrap();
    for (key, kind, choices, required) in [
        ("topic", FieldType::Choice, vec!["Заказ", "Возврат"], true),
        ("amount", FieldType::Number, vec![], false),
        ("vip", FieldType::Bool, vec![], false),
        ("note", FieldType::Text, vec![], false),
    ] {
        let def = FieldDef {
            key: key.into(),
            label: key.into(),
            kind,
            choices: choices.into_iter().map(String::from).collect(),
            required,
        };
        store::put_field_def(&mut conn, &def).await.unwrap();
    }
    drop(conn);
    let mut alice = hub.ready_agent("alice").await;
    let _connector = hub.start_connector(connectors::Config::default()).await;
    hub.fake.text(&connectors::fake::telegram::TgUser::new(91, "Ирина"), "здравствуйте");
    let id = hub.accept_next(&mut alice).await;
    let mut bob = hub.ready_agent("bob").await;
    let (owner, other) = (&mut alice, &mut bob);

    let set = |key: &str, value: Value| json!({"interaction_id": id, "key": key, "value": value});
    for (key, value) in [
        ("topic", json!("Возврат")),
        ("amount", json!(1250.5)),
        ("vip", json!(true)),
        ("note", json!("  перезвонить вечером ")),
    ] {
        let reply = owner.call("interaction.set_field", set(key, value)).await;
        assert_eq!(reply["ok"], true, "{reply}");
    }
    let reply = owner.call("interaction.set_field", set("vip", Value::Null)).await;
    assert_eq!(
        reply["data"]["fields"],
        json!({"topic": "Возврат", "amount": 1250.5, "note": "перезвонить вечером"}),
        "{reply}"
    );

    for (args, code) in [
        (set("topic", json!("Жалоба")), "invalid_field_value"),
        (set("topic", Value::Null), "invalid_field_value"),
        (set("amount", json!("12")), "invalid_field_value"),
        (set("vip", json!("yes")), "invalid_field_value"),
        (set("note", json!("é".repeat(1001))), "invalid_field_value"),
        // control characters are refused by the input rules of every command
        (set("note", json!("a\u{0007}b")), "bad_request"),
        (set("colour", json!("red")), "unknown_field"),
        (set("Bad Key", json!("x")), "bad_request"),
        (json!({"interaction_id": id, "key": "note"}), "bad_request"),
    ] {
        let reply = owner.call("interaction.set_field", args.clone()).await;
        assert_eq!(
            (reply["ok"].as_bool(), reply["error"]["code"].as_str()),
            (Some(false), Some(code)),
            "{args}: {reply}"
        );
    }
    let reply = owner.call("interaction.set_field", set("topic", json!("Жалоба"))).await;
    assert!(reply["error"]["message"].as_str().unwrap().contains("topic"), "{reply}");
    // not the other agent's to set, nor anyone's once closed
    let reply = other.call("interaction.set_field", set("note", json!("x"))).await;
    assert_eq!(reply["error"]["code"], "interaction_not_found", "{reply}");
    let closed = owner.call("interaction.close", json!({"interaction_id": id})).await;
    assert_eq!(closed["ok"], true, "{closed}");
    let reply = owner.call("interaction.set_field", set("note", json!("x"))).await;
    assert_eq!(reply["error"]["code"], "interaction_not_found", "{reply}");
    let fields: Value = sqlx::query_scalar("SELECT fields FROM interactions WHERE id = $1::uuid")
        .bind(&id)
        .fetch_one(&hub.pool)
        .await
        .unwrap();
    assert_eq!(fields, json!({"topic": "Возврат", "amount": 1250.5, "note": "перезвонить вечером"}));
}
