//! Campaigns through the admin API: created with an audience by customer id and by phone, more
//! recipients from a CSV upload, started (one outbox row per recipient, however often),
//! paused, resumed and cancelled, reported per recipient (JSON and the CSV export), every change
//! audited; bad input refused naming the field, the recipient or the CSV line; an account's
//! stop words set and used by the ingest.

mod harness;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use harness::spawn_app;

async fn customer_of(app: &harness::TestApp, user: &str) -> Uuid {
    sqlx::query_scalar("SELECT customer_id FROM customer_identities WHERE external_id = $1")
        .bind(user)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

async fn outbox_rows(app: &harness::TestApp, campaign: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM outbox WHERE campaign_id = $1::uuid")
        .bind(campaign)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_campaign_is_created_fed_started_paused_resumed_cancelled_reported_and_audited() {
    let app = spawn_app().await;
    app.inbound_with(app.telegram, "cust-anna", "hi", None, Vec::new()).await;
    app.inbound_with(app.telegram, "cust-boris", "hi", Some("+79001112233"), Vec::new()).await;
    app.inbound_with(app.telegram, "cust-vera", "hi", None, Vec::new()).await;
    let anna = customer_of(&app, "cust-anna").await;
    let vera = customer_of(&app, "cust-vera").await;

    let body = json!({
        "account_id": app.telegram,
        "name": "December",
        "text": "Hi {{name}}, your code is {{code}}",
        "quiet_hours": "23:00-07:00",
        "rate_per_s": 20,
        "recipients": [
            {"customer_id": anna, "variables": {"name": "Anna", "code": "A1"}, "utc_offset_min": 180},
            {"phone": "+79001112233", "variables": {"name": "Boris", "code": "B2"}},
        ],
    });
    let (status, created) = app.send(Method::POST, "/api/v1/campaigns", Some(body.clone())).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["campaign"]["id"].as_str().unwrap().to_owned();
    assert_eq!(created["campaign"]["state"], "draft");
    assert_eq!(created["campaign"]["quiet_hours"], "23:00-07:00");
    assert_eq!(created["campaign"]["flow"], Value::Null);
    assert_eq!(created["counts"]["queued"], 2);

    // refusals name what to fix
    let mut missing = body.clone();
    missing["recipients"][1]["variables"] = json!({"name": "Boris"});
    let mut quiet = body.clone();
    quiet["quiet_hours"] = json!("late");
    let mut unknown = body.clone();
    unknown["colour"] = json!("red");
    let mut whatsapp = body.clone();
    whatsapp["account_id"] = json!(app.whatsapp);
    whatsapp["recipients"] = json!([]);
    let mut neither = body.clone();
    neither["recipients"] = json!([{"variables": {"name": "X", "code": "Y"}}]);
    let mut ghost_flow = body.clone();
    ghost_flow["flow"] = json!("ghost");
    let mut bad_flow = body.clone();
    bad_flow["flow"] = json!("Not A Name");
    for (bad, why) in [
        (missing, "recipient 1: no value for {{code}}"),
        (quiet, "quiet_hours"),
        (unknown, "colour"),
        (whatsapp, "template"),
        (neither, "recipients[0]"),
        (ghost_flow, "flow: no flow \"ghost\""),
        (bad_flow, "flow"),
    ] {
        let (status, error) = app.send(Method::POST, "/api/v1/campaigns", Some(bad)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{why}: {error}");
        assert!(error["error"]["message"].as_str().unwrap().contains(why), "{why}: {error}");
    }

    // more recipients from a CSV upload: one new, one unknown customer, one already in
    let csv = format!("customer_id,name,code\n{vera},Vera,V3\n{},Nobody,N0\n{anna},Anna,A1\n", Uuid::now_v7());
    let upload = |body: String, content_type: &'static str| {
        app.http
            .post(app.url(&format!("/api/v1/campaigns/{id}/recipients")))
            .bearer_auth(&app.key)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let response = upload(csv, "text/csv").await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let added: Value = response.json().await.unwrap();
    assert_eq!(added, json!({"added": 1, "duplicates": 1, "unresolved": 1}));
    let response = upload("customer_id,name,code\nnope,X,Y\n".into(), "text/csv").await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let error: Value = response.json().await.unwrap();
    assert!(error["error"]["message"].as_str().unwrap().contains("csv line 2"), "{error}");
    let response = upload("x".into(), "text/plain").await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let huge = format!("phone,name,code\n{}", "+79001112233,B,C\n".repeat(1_100_000));
    let response = upload(huge, "text/csv").await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let error: Value = response.json().await.unwrap();
    assert!(error["error"]["message"].as_str().unwrap().contains("at most 16 MiB"), "{error}");

    // start: one outbox row per resolved recipient, a second start adds none
    let act = |action: &'static str| {
        let path = format!("/api/v1/campaigns/{id}/{action}");
        let app = &app;
        async move { app.send(Method::POST, &path, None).await }
    };
    let (status, started) = act("start").await;
    assert_eq!(status, StatusCode::OK, "{started}");
    assert_eq!(started["campaign"]["state"], "running");
    assert_eq!(outbox_rows(&app, &id).await, 3);
    act("start").await;
    assert_eq!(outbox_rows(&app, &id).await, 3, "a second start queues nobody twice");
    let (status, paused) = act("pause").await;
    assert_eq!((status, paused["campaign"]["state"].as_str()), (StatusCode::OK, Some("paused")));
    let (status, error) = act("start").await;
    assert_eq!(status, StatusCode::CONFLICT, "{error}");
    assert!(error["error"]["message"].as_str().unwrap().contains("is paused"), "{error}");
    let (status, _) = act("launch").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (_, resumed) = act("resume").await;
    assert_eq!(resumed["campaign"]["state"], "running");

    // stop words: the account's own list, and the ingest opts the writer out
    let (status, words) = app
        .send(
            Method::PUT,
            &format!("/api/v1/accounts/{}/opt-out-words", app.telegram),
            Some(json!({"words": ["хватит", "Unsubscribe"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{words}");
    assert_eq!(words, json!({"words": ["ХВАТИТ", "UNSUBSCRIBE"]}));
    app.inbound(app.telegram, "cust-vera", "Хватит!").await;
    app.inbound(app.telegram, "cust-anna", "stop").await;
    let opted: Vec<String> = sqlx::query_scalar("SELECT chat_id FROM campaign_opt_outs ORDER BY chat_id")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert_eq!(opted, vec!["cust-vera"], "STOP is not a stop word of this account any more");

    let (_, cancelled) = act("cancel").await;
    assert_eq!(cancelled["campaign"]["state"], "cancelled");
    assert_eq!(cancelled["counts"]["skipped"], 4, "{cancelled}");
    let (status, _) = act("resume").await;
    assert_eq!(status, StatusCode::CONFLICT);
    let pending: i64 =
        sqlx::query_scalar("SELECT count(*) FROM outbox WHERE campaign_id = $1::uuid AND state = 'pending'")
            .bind(&id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(pending, 0, "a cancelled campaign leaves nothing to send");

    // the per-recipient report, in pages and as CSV
    let (status, page) = app.get(&format!("/api/v1/campaigns/{id}/recipients?limit=3")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["items"].as_array().unwrap().len(), 3);
    let after = page["next_after"].as_i64().unwrap();
    let (_, rest) = app.get(&format!("/api/v1/campaigns/{id}/recipients?after={after}")).await;
    assert_eq!(rest["items"].as_array().unwrap().len(), 1);
    assert_eq!(rest["next_after"], Value::Null);
    let reasons: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .chain(rest["items"].as_array().unwrap())
        .map(|r| r["reason"].as_str().unwrap())
        .collect();
    assert!(reasons.contains(&"the customer has no identity on the campaign's account"), "{reasons:?}");
    assert_eq!(reasons.iter().filter(|r| **r == "campaign cancelled").count(), 3, "{reasons:?}");
    let response = app
        .http
        .get(app.url(&format!("/api/v1/exports/campaigns/{id}/recipients.csv")))
        .bearer_auth(&app.key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let csv = response.text().await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 5, "{csv}");
    assert!(lines[0].starts_with("recipient_id,chat_id,customer_id,phone,state,reason"), "{csv}");
    assert!(lines[1].contains("cust-anna") && lines[1].contains("skipped"), "{csv}");
    // the same rows as an Excel workbook
    let response = app
        .http
        .get(app.url(&format!("/api/v1/exports/campaigns/{id}/recipients.xlsx")))
        .bearer_auth(&app.key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("application/vnd.openxmlformats"));
    let bytes = response.bytes().await.unwrap();
    {
        use calamine::Reader;
        let mut workbook: calamine::Xlsx<_> =
            calamine::open_workbook_from_rs(std::io::Cursor::new(bytes.to_vec())).unwrap();
        let sheet = workbook.worksheet_range("recipients").unwrap();
        let rows: Vec<Vec<String>> = sheet.rows().map(|r| r.iter().map(|c| c.to_string()).collect()).collect();
        assert_eq!(rows.len(), 5, "{rows:?}");
        assert_eq!(rows[0][..6], ["recipient_id", "chat_id", "customer_id", "phone", "state", "reason"]);
        assert!(rows[1].iter().any(|c| c == "cust-anna") && rows[1].iter().any(|c| c == "skipped"), "{rows:?}");
    }
    let missing = app
        .http
        .get(app.url(&format!("/api/v1/exports/campaigns/{}/recipients.xlsx", Uuid::new_v4())))
        .bearer_auth(&app.key)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);

    let (_, list) = app.get(&format!("/api/v1/campaigns?account_id={}", app.telegram)).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    let (status, _) = app.get(&format!("/api/v1/campaigns/{}", Uuid::now_v7())).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (_, audit) = app.get("/api/v1/audit?limit=100").await;
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["target_kind"] == "campaign")
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for action in [
        "campaign.create",
        "campaign.recipients",
        "campaign.start",
        "campaign.pause",
        "campaign.resume",
        "campaign.cancel",
    ] {
        assert!(actions.contains(&action), "{action} in {actions:?}");
    }
}

#[tokio::test]
async fn recipients_come_from_an_excel_upload_with_the_csvs_rules_and_named_rows() {
    const XLSX: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";
    let app = spawn_app().await;
    app.inbound_with(app.telegram, "xl-anna", "hi", None, Vec::new()).await;
    app.inbound_with(app.telegram, "xl-boris", "hi", Some("+79001112299"), Vec::new()).await;
    let anna = customer_of(&app, "xl-anna").await;
    let body = json!({"account_id": app.telegram, "name": "Excel", "text": "Hi {{name}}, order {{order}}"});
    let (status, created) = app.send(Method::POST, "/api/v1/campaigns", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["campaign"]["id"].as_str().unwrap().to_owned();
    let upload = |body: Vec<u8>, content_type: &'static str| {
        app.http
            .post(app.url(&format!("/api/v1/campaigns/{id}/recipients")))
            .bearer_auth(&app.key)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    // a sheet as people make them: the order a number, a blank row, a phone by itself
    let sheet = |rows: &[[&str; 3]]| {
        let mut book = rust_xlsxwriter::Workbook::new();
        let sheet = book.add_worksheet();
        for (r, row) in rows.iter().enumerate() {
            for (c, value) in row.iter().enumerate() {
                match value.parse::<f64>() {
                    _ if value.is_empty() => {}
                    Ok(n) if r > 0 && c == 2 => {
                        sheet.write_number(r as u32, c as u16, n).unwrap();
                    }
                    _ => {
                        sheet.write_string(r as u32, c as u16, *value).unwrap();
                    }
                }
            }
        }
        book.save_to_buffer().unwrap()
    };
    let anna_id = anna.to_string();
    let good = sheet(&[
        ["customer_id", "phone", "order"],
        [anna_id.as_str(), "", "7731"],
        ["", "", ""],
        ["", "+79001112299", "7732"],
    ]);
    // the variables must fill the text: `name` is missing, so each row is refused by its number
    let response = upload(good, XLSX).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let error: Value = response.json().await.unwrap();
    assert!(error["error"]["message"].as_str().unwrap().contains("{{name}}"), "{error}");

    let named = |order_a: &str| {
        let mut book = rust_xlsxwriter::Workbook::new();
        let s = book.add_worksheet();
        for (c, h) in ["customer_id", "phone", "name", "order"].iter().enumerate() {
            s.write_string(0, c as u16, *h).unwrap();
        }
        s.write_string(1, 0, anna_id.as_str()).unwrap();
        s.write_string(1, 2, "Anna").unwrap();
        match order_a.parse::<f64>() {
            Ok(n) => s.write_number(1, 3, n).unwrap(),
            Err(_) => s.write_string(1, 3, order_a).unwrap(),
        };
        s.write_string(3, 1, "+79001112299").unwrap();
        s.write_string(3, 2, "Boris").unwrap();
        s.write_number(3, 3, 7732.0).unwrap();
        s.write_string(4, 0, "not-a-uuid").unwrap();
        s.write_string(4, 2, "Nobody").unwrap();
        s.write_string(4, 3, "1").unwrap();
        book.save_to_buffer().unwrap()
    };
    // a bad row is named (the sheet's row number); nothing of the upload is stored
    let response = upload(named("7731"), XLSX).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["message"], "`xlsx row 5: customer_id` \"not-a-uuid\" is not a UUID", "{error}");
    let (_, report) = app.get(&format!("/api/v1/campaigns/{id}")).await;
    assert_eq!(report["total"], 0, "{report}");

    // without the bad row: both added, the number read as written
    let mut book = rust_xlsxwriter::Workbook::new();
    let s = book.add_worksheet();
    for (c, h) in ["customer_id", "phone", "name", "order"].iter().enumerate() {
        s.write_string(0, c as u16, *h).unwrap();
    }
    s.write_string(1, 0, anna_id.as_str()).unwrap();
    s.write_string(1, 2, "Anna").unwrap();
    s.write_number(1, 3, 7731.0).unwrap();
    s.write_string(3, 1, "+79001112299").unwrap();
    s.write_string(3, 2, "Boris").unwrap();
    s.write_string(3, 3, "7732").unwrap();
    let response = upload(book.save_to_buffer().unwrap(), XLSX).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let added: Value = response.json().await.unwrap();
    assert_eq!(added, json!({"added": 2, "duplicates": 0, "unresolved": 0}));
    let texts: Vec<String> =
        sqlx::query_scalar("SELECT text FROM campaign_recipients WHERE campaign_id = $1::uuid ORDER BY id")
            .bind(&id)
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(texts, vec!["Hi Anna, order 7731", "Hi Boris, order 7732"]);

    // not a workbook, and a type the upload does not take
    let response = upload(b"customer_id\nx\n".to_vec(), XLSX).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let error: Value = response.json().await.unwrap();
    assert!(error["error"]["message"].as_str().unwrap().contains("not a readable Excel workbook"), "{error}");
    let response = upload(b"x".to_vec(), "application/vnd.ms-excel").await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let error: Value = response.json().await.unwrap();
    assert!(error["error"]["message"].as_str().unwrap().contains(XLSX), "{error}");
}
