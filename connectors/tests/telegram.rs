//! The Telegram connector end to end: the fake Bot API on one side, the real chatserver and
//! file server with a real WebSocket agent on the other, real PostgreSQL and ZooKeeper between.

mod harness;

use std::time::Duration;

use connectors::fake::telegram::TgUser;
use harness::{WAIT, eventually, spawn_hub};
use serde_json::json;

fn olga() -> TgUser {
    TgUser { id: 421000777, first_name: "Olga".into(), last_name: Some("K".into()), username: Some("olga_k".into()) }
}

#[tokio::test]
async fn every_kind_of_customer_message_reaches_the_agent_with_its_file() {
    let hub = spawn_hub(json!({})).await;
    let mut alice = hub.ready_agent("alice").await;
    let _connector = hub.start_connector(connectors::Config::default()).await;
    let user = olga();
    let avatar = b"\xff\xd8\xff avatar bytes".to_vec();
    hub.fake.set_profile_photo(user.id, avatar.clone());

    let first = hub.fake.text(&user, "Добрый день! 👋 Где мой заказ 5521?");
    let offer = alice.event("interaction.offered").await;
    let interaction = &offer["data"]["interaction"];
    assert_eq!(interaction["channel"], "telegram");
    assert_eq!(interaction["customer"]["name"], "Olga K");
    assert_eq!(interaction["customer"]["external_id"], "421000777");
    let avatar_url = interaction["customer"]["avatar_url"].as_str().expect("the customer's avatar was fetched");
    assert_eq!(hub.download(avatar_url).await.1, avatar, "the avatar is the profile photo");
    let id = interaction["id"].as_str().unwrap().to_owned();
    let accepted = alice.call("interaction.accept", json!({"interaction_id": id})).await;
    assert_eq!(accepted["ok"], true, "{accepted}");
    let history = alice.call("history.get", json!({"interaction_id": id})).await;
    let texts: Vec<&str> =
        history["data"]["messages"].as_array().unwrap().iter().filter_map(|m| m["text"].as_str()).collect();
    assert!(texts.contains(&"Добрый день! 👋 Где мой заказ 5521?"), "{history}");

    // photo: the largest size, with its caption
    let photo = b"\xff\xd8\xff\xe0 large photo".to_vec();
    hub.fake.photo(&user, photo.clone(), Some("Вот чек"));
    let m = alice.customer_message("image").await;
    assert_eq!(m["text"], "Вот чек");
    let (bytes, name, mime) = hub.file_of(&m, 0).await;
    assert_eq!(bytes, photo);
    assert!(name.starts_with("photo_") && name.ends_with(".jpg"), "{name}");
    assert_eq!(mime, "image/jpeg");

    // files keep Telegram's name and type
    let cases: [(&str, &str, &str, &str, &[u8]); 6] = [
        ("document", "act.pdf", "application/pdf", "document", b"%PDF-1.4 act"),
        ("video", "clip.mp4", "video/mp4", "video", b"\x00\x00\x00\x18ftypmp42"),
        ("audio", "song.mp3", "audio/mpeg", "audio", b"ID3 song"),
        ("voice", "voice.ogg", "audio/ogg", "voice", b"OggS voice"),
        ("sticker", "s.webp", "image/webp", "sticker", b"RIFF webp"),
        ("animation", "fun.mp4", "video/mp4", "video", b"\x00\x00\x00\x18ftypanim"),
    ];
    for (tg_kind, file_name, file_mime, kind, content) in cases {
        hub.fake.file_message(&user, tg_kind, file_name, file_mime, content.to_vec());
        let m = alice.customer_message(kind).await;
        let (bytes, name, mime) = hub.file_of(&m, 0).await;
        assert_eq!(bytes, content, "{tg_kind}");
        assert_eq!(mime, file_mime, "{tg_kind}");
        if matches!(tg_kind, "document" | "audio") {
            assert_eq!(name, file_name, "{tg_kind}");
        }
        if tg_kind == "sticker" {
            assert_eq!(m["text"], "😀", "a sticker's emoji comes as its text");
        }
    }

    hub.fake.location(&user, 55.7539, 37.6208);
    let m = alice.customer_message("location").await;
    assert_eq!(m["location"], json!({"lat": 55.7539, "lon": 37.6208}));

    // the request-phone keyboard answer: the customer's own contact gives their phone
    hub.fake.contact(&user, "79161234567", true);
    let m = alice.customer_message("contact").await;
    assert_eq!(m["contact"], json!({"phone": "79161234567", "name": "Olga"}));
    let phone: Option<String> = sqlx::query_scalar("SELECT phone FROM customers").fetch_one(&hub.pool).await.unwrap();
    assert_eq!(phone.as_deref(), Some("79161234567"));

    hub.fake.forwarded(&user, "Ivan Petrov", "look at this");
    let m =
        alice.event_where("message.new", |d| d["message"]["text"] == "look at this").await["data"]["message"].clone();
    assert_eq!(m["forwarded"]["from_name"], "Ivan Petrov");

    // the customer edits their first message: the agent sees it, the history keeps the original
    hub.fake.edit(&user, first, "Добрый вечер! Где мой заказ 5522?");
    let edited = alice.event("message.edited").await;
    assert_eq!(edited["data"]["message"]["text"], "Добрый вечер! Где мой заказ 5522?");
    assert_eq!(edited["data"]["previous_text"], "Добрый день! 👋 Где мой заказ 5521?");
    let kept: Option<String> =
        sqlx::query_scalar("SELECT old_text FROM message_edits").fetch_one(&hub.pool).await.unwrap();
    assert_eq!(kept.as_deref(), Some("Добрый день! 👋 Где мой заказ 5521?"));

    // an inline button press arrives as a text with the button's data and is answered
    let query = hub.fake.press(&user, 999, "csat:5");
    let m = alice.event_where("message.new", |d| d["message"]["text"] == "csat:5").await;
    assert_eq!(m["data"]["message"]["direction"], "in");
    eventually("answerCallbackQuery", WAIT, || async {
        hub.fake
            .calls_of("answerCallbackQuery")
            .iter()
            .any(|c| c.param("callback_query_id") == query.as_str() && c.ok())
    })
    .await;

    // every update stored once, and confirmed to Telegram (the next getUpdates moved past it)
    let stored = hub.count("SELECT count(*) FROM messages WHERE direction = 'in'").await;
    assert_eq!(stored, 12);
    eventually("every update confirmed", WAIT, || async { hub.fake.unconfirmed() == 0 }).await;
}

#[tokio::test]
async fn agent_replies_reach_telegram_with_the_right_fields_and_statuses_flow_back() {
    let hub = spawn_hub(json!({})).await;
    let mut alice = hub.ready_agent("alice").await;
    let _connector = hub.start_connector(connectors::Config::default()).await;
    let user = olga();
    let question = hub.fake.text(&user, "Где мой заказ?");
    let interaction = hub.accept_next(&mut alice).await;
    let chat = user.id as i64;
    let inbound: String =
        sqlx::query_scalar("SELECT id::text FROM messages WHERE direction = 'in'").fetch_one(&hub.pool).await.unwrap();

    // text with inline buttons, as a reply to the customer's question
    let sent = alice
        .call(
            "message.send",
            json!({"interaction_id": interaction, "client_msg_id": "m1", "text": "Заказ 5521 передан курьеру.",
                   "reply_to": inbound,
                   "keyboard": {"type": "inline", "rows": [[{"text": "👍", "data": "csat:5"}, {"text": "👎", "data": "csat:1"}]]}}),
        )
        .await;
    assert_eq!(sent["data"]["status"], "queued", "{sent}");
    let id = sent["data"]["id"].as_str().unwrap().to_owned();
    let status = alice.event_where("message.status", |d| d["message"]["id"] == id.as_str()).await;
    assert_eq!(status["data"]["message"]["status"], "sent");
    let call = hub.fake.calls_of("sendMessage").pop().unwrap();
    assert_eq!(call.chat(), chat.to_string());
    assert_eq!(call.param("text"), "Заказ 5521 передан курьеру.");
    assert_eq!(call.param("reply_markup")["inline_keyboard"][0][0], json!({"text": "👍", "callback_data": "csat:5"}));
    assert_eq!(call.param("reply_parameters")["message_id"], question);
    let external: String = sqlx::query_scalar("SELECT external_message_id FROM messages WHERE id = $1::uuid")
        .bind(&id)
        .fetch_one(&hub.pool)
        .await
        .unwrap();
    let bot_message = hub.fake.sent_to(chat).pop().unwrap();
    assert_eq!(external, format!("{chat}:{}", bot_message.message_id), "the platform id is recorded");

    // the request-phone keyboard
    alice
        .call(
            "message.send",
            json!({"interaction_id": interaction, "client_msg_id": "m2", "text": "Поделитесь номером",
                   "keyboard": {"type": "reply", "rows": [[{"text": "📱 Отправить номер", "request_phone": true}]]}}),
        )
        .await;
    eventually("the keyboard request", WAIT, || async { hub.fake.calls_of("sendMessage").len() == 2 }).await;
    let call = hub.fake.calls_of("sendMessage").pop().unwrap();
    assert_eq!(
        call.param("reply_markup")["keyboard"][0][0],
        json!({"text": "📱 Отправить номер", "request_contact": true})
    );

    // a file with a caption: uploaded from the file server with sendPhoto
    let photo = b"\xff\xd8\xff\xe0 agent photo".to_vec();
    let file = hub.upload("receipt.jpg", "image/jpeg", photo.clone()).await;
    let sent = alice
        .call(
            "message.send",
            json!({"interaction_id": interaction, "client_msg_id": "m3", "text": "Ваш чек", "file_ids": [file]}),
        )
        .await;
    let photo_id = sent["data"]["id"].as_str().unwrap().to_owned();
    alice
        .event_where("message.status", |d| d["message"]["id"] == photo_id.as_str() && d["message"]["status"] == "sent")
        .await;
    let call = hub.fake.calls_of("sendPhoto").pop().unwrap();
    assert_eq!(call.param("caption"), "Ваш чек");
    assert_eq!(call.files.len(), 1);
    assert_eq!(call.files[0].field, "photo");
    assert_eq!(call.files[0].file_name.as_deref(), Some("receipt.jpg"));
    assert_eq!(call.files[0].bytes.as_ref(), photo.as_slice());
    let pdf = b"%PDF-1.4 invoice".to_vec();
    let file = hub.upload("invoice.pdf", "application/pdf", pdf.clone()).await;
    alice.call("message.send", json!({"interaction_id": interaction, "client_msg_id": "m4", "file_ids": [file]})).await;
    eventually("sendDocument", WAIT, || async { hub.fake.calls_of("sendDocument").len() == 1 }).await;
    assert_eq!(hub.fake.calls_of("sendDocument")[0].files[0].bytes.as_ref(), pdf.as_slice());

    // edit and delete of the agent's own message
    let edited = alice.call("message.edit", json!({"message_id": id, "text": "Заказ 5521 доставлен."})).await;
    assert_eq!(edited["ok"], true, "{edited}");
    eventually("editMessageText", WAIT, || async { hub.fake.calls_of("editMessageText").iter().any(|c| c.ok()) }).await;
    let call = hub.fake.calls_of("editMessageText").pop().unwrap();
    assert_eq!(call.param("message_id"), bot_message.message_id);
    assert_eq!(call.param("text"), "Заказ 5521 доставлен.");
    let deleted = alice.call("message.delete", json!({"message_id": id})).await;
    assert_eq!(deleted["ok"], true, "{deleted}");
    eventually("deleteMessage", WAIT, || async { hub.fake.calls_of("deleteMessage").iter().any(|c| c.ok()) }).await;
    assert!(hub.fake.sent_to(chat).iter().any(|m| m.message_id == bot_message.message_id && m.deleted));

    // a text over 4096 characters goes out as several messages, cut between words
    let words: Vec<String> = (0..1500).map(|i| format!("слово{i}")).collect();
    let long = words.join(" ");
    let sent =
        alice.call("message.send", json!({"interaction_id": interaction, "client_msg_id": "m5", "text": long})).await;
    let long_id = sent["data"]["id"].as_str().unwrap().to_owned();
    alice
        .event_where("message.status", |d| d["message"]["id"] == long_id.as_str() && d["message"]["status"] == "sent")
        .await;
    let parts: Vec<String> =
        hub.fake.calls_of("sendMessage")[2..].iter().map(|c| c.param("text").as_str().unwrap().to_owned()).collect();
    assert!(parts.len() >= 3, "{} parts", parts.len());
    assert!(parts.iter().all(|p| p.encode_utf16().count() <= 4096));
    assert_eq!(parts.join(" "), long);

    // a photo over Telegram's 10 MB is refused at message.send, naming the limit: nothing queued
    let big = vec![0u8; 11 * 1024 * 1024];
    let file = hub.upload("huge.jpg", "image/jpeg", big).await;
    let refused = alice
        .call("message.send", json!({"interaction_id": interaction, "client_msg_id": "m6", "file_ids": [file]}))
        .await;
    assert_eq!(refused["ok"], false, "{refused}");
    assert_eq!(refused["error"]["code"], "file_too_large");
    let error = refused["error"]["message"].as_str().unwrap();
    assert!(error.contains("10 MB") && error.contains("huge.jpg") && error.contains("telegram"), "{error}");
    assert!(hub.fake.calls_of("sendPhoto").len() == 1, "nothing was sent for it");

    // a permanent platform error fails the message with Telegram's reason
    hub.fake.block(chat);
    let sent = alice
        .call("message.send", json!({"interaction_id": interaction, "client_msg_id": "m7", "text": "hello?"}))
        .await;
    let blocked_id = sent["data"]["id"].as_str().unwrap().to_owned();
    let failed = alice.event_where("message.status", |d| d["message"]["id"] == blocked_id.as_str()).await;
    assert_eq!(failed["data"]["message"]["status"], "failed");
    assert_eq!(failed["data"]["message"]["error"], "Forbidden: bot was blocked by the user");
    assert_eq!(hub.count("SELECT count(*) FROM outbox WHERE state = 'pending'").await, 0);
}

#[tokio::test]
async fn a_429_is_honoured_for_its_retry_after() {
    let hub = spawn_hub(json!({})).await;
    let mut alice = hub.ready_agent("alice").await;
    let _connector = hub.start_connector(connectors::Config::default()).await;
    let user = olga();
    hub.fake.text(&user, "hi");
    let interaction = hub.accept_next(&mut alice).await;
    hub.fake.rate_limit_next("sendMessage", 2);
    let sent = alice
        .call("message.send", json!({"interaction_id": interaction, "client_msg_id": "r1", "text": "slow down"}))
        .await;
    let id = sent["data"]["id"].as_str().unwrap().to_owned();
    let status = alice.event_where("message.status", |d| d["message"]["id"] == id.as_str()).await;
    assert_eq!(status["data"]["message"]["status"], "sent");
    let calls = hub.fake.calls_of("sendMessage");
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(calls[0].status, 429);
    assert!(calls[1].ok());
    let waited = calls[1].at - calls[0].at;
    assert!(waited >= Duration::from_secs(2), "retried after {waited:?}, before the 2 s Telegram asked for");
    let error: Option<String> = sqlx::query_scalar("SELECT last_error FROM outbox").fetch_one(&hub.pool).await.unwrap();
    assert_eq!(error, None, "a success clears the error");
}

/// A 5xx is retried after a backoff, and the message goes out once. (teloxide itself waits 10 s
/// before reading a 5xx answer, so this test takes that long.)
#[tokio::test]
async fn a_5xx_is_retried_with_backoff_and_sent_once() {
    let hub = spawn_hub(json!({})).await;
    let mut alice = hub.ready_agent("alice").await;
    let _connector = hub.start_connector(connectors::Config::default()).await;
    let user = olga();
    hub.fake.text(&user, "hi");
    let interaction = hub.accept_next(&mut alice).await;
    hub.fake.fail_next("sendMessage", 502, json!({"ok": false, "error_code": 502, "description": "Bad Gateway"}));
    let sent = alice
        .call("message.send", json!({"interaction_id": interaction, "client_msg_id": "g1", "text": "again"}))
        .await;
    let id = sent["data"]["id"].as_str().unwrap().to_owned();
    eventually("sent after the retry", Duration::from_secs(30), || async {
        hub.fake.calls_of("sendMessage").iter().any(|c| c.ok())
    })
    .await;
    let status = alice.event_where("message.status", |d| d["message"]["id"] == id.as_str()).await;
    assert_eq!(status["data"]["message"]["status"], "sent");
    let calls = hub.fake.calls_of("sendMessage");
    assert_eq!(calls.iter().map(|c| c.status).collect::<Vec<_>>(), vec![502, 200]);
    let attempts: i32 = sqlx::query_scalar("SELECT attempts FROM outbox").fetch_one(&hub.pool).await.unwrap();
    assert_eq!(attempts, 2);
}

/// A chat's next message goes while the outcome of the one before it is still being stored,
/// but an edit, a deletion or a reply reads the platform id its message got: queued right
/// behind their messages (read together by a connector that starts with them waiting), each
/// edit, deletion and reply reaches the message it names, and no row fails for want of that id.
#[tokio::test]
async fn edits_deletions_and_replies_queued_right_behind_their_messages_reach_those_messages() {
    // no per-chat limit to speak of (the fake does not enforce one): the rows go back to back
    let hub = spawn_hub(json!({"limits": {"rate_per_chat": {"count": 1000, "per_ms": 1000}}})).await;
    let mut alice = hub.ready_agent("alice").await;
    let connector = hub.start_connector(connectors::Config::default()).await;
    let user = olga();
    hub.fake.text(&user, "Здравствуйте");
    let interaction = hub.accept_next(&mut alice).await;
    connector.stop().await;

    const MESSAGES: usize = 20;
    let mut previous: Option<String> = None;
    for n in 0..MESSAGES {
        // each message replies to the one before it
        let sent = alice
            .call(
                "message.send",
                json!({"interaction_id": interaction, "client_msg_id": format!("m{n}"), "text": format!("Черновик {n}"),
                       "reply_to": previous}),
            )
            .await;
        let id = sent["data"]["id"].as_str().expect("the message is queued").to_owned();
        previous = Some(id.clone());
        let edited = alice.call("message.edit", json!({"message_id": id, "text": format!("Ответ {n}")})).await;
        assert_eq!(edited["ok"], true, "{edited}");
        if n % 5 == 4 {
            let deleted = alice.call("message.delete", json!({"message_id": id})).await;
            assert_eq!(deleted["ok"], true, "{deleted}");
        }
    }
    let _connector = hub.start_connector(connectors::Config::default()).await;
    eventually("every row done or failed", WAIT, || async {
        hub.count("SELECT count(*) FROM outbox WHERE state = 'pending'").await == 0
    })
    .await;

    let failed: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT action::text, last_error FROM outbox WHERE state <> 'done' ORDER BY id")
            .fetch_all(&hub.pool)
            .await
            .unwrap();
    assert!(failed.is_empty(), "rows that did not reach the platform: {failed:?}");
    let sent = hub.fake.sent_to(user.id as i64);
    assert_eq!(sent.len(), MESSAGES, "{sent:?}");
    for (n, message) in sent.iter().enumerate() {
        assert_eq!(message.text.as_deref(), Some(format!("Ответ {n}").as_str()), "message {n} was edited");
        assert_eq!(message.deleted, n % 5 == 4, "message {n}");
    }
    let calls = hub.fake.calls_of("sendMessage");
    for n in 1..MESSAGES {
        // sent as it is by then: the edit changed the stored text before the message went
        let call = calls.iter().find(|c| c.param("text") == format!("Ответ {n}").as_str()).expect("sent");
        assert_eq!(call.param("reply_parameters")["message_id"], sent[n - 1].message_id, "message {n} replies");
    }
}

/// A platform whose send is answered after another leader took the account over: it raises
/// the account's fencing token past the worker's, then accepts the message.
struct TakenOverWhileSending {
    pool: sqlx::PgPool,
    key: String,
    newer_token: i64,
    answered: std::sync::Mutex<Vec<std::time::Instant>>,
}

#[async_trait::async_trait]
impl connectors::platform::Outbound for TakenOverWhileSending {
    async fn send(
        &self,
        _chat_id: &str,
        _part: connectors::platform::Part,
    ) -> Result<String, connectors::platform::SendError> {
        let mut conn = self.pool.acquire().await.unwrap();
        schema::store::check_fence(&mut conn, &self.key, self.newer_token).await.unwrap();
        self.answered.lock().unwrap().push(std::time::Instant::now());
        Ok("9001".into())
    }

    async fn edit(&self, _: &str, _: &str, _: &str, _: bool) -> Result<(), connectors::platform::SendError> {
        Err(connectors::platform::SendError::Permanent("not in this test".into()))
    }

    async fn delete(&self, _: &str, _: &str) -> Result<(), connectors::platform::SendError> {
        Err(connectors::platform::SendError::Permanent("not in this test".into()))
    }
}

/// An outbox worker deposed while a row was with the platform (the fence refuses the row's
/// outcome) stops as soon as it hears of it: that row's attempt is over, so nothing is left in
/// flight to wait for. It used to count the row as in flight and wait out its 5-s grace,
/// holding the account's term (and its inbound side) open that long. The row stays pending,
/// in doubt, for the new leader.
#[tokio::test]
async fn a_worker_deposed_while_a_row_is_sent_stops_without_waiting_for_that_row() {
    let hub = spawn_hub(json!({})).await;
    let mut alice = hub.ready_agent("alice").await;
    let connector = hub.start_connector(connectors::Config::default()).await;
    hub.fake.text(&olga(), "Здравствуйте");
    let interaction = hub.accept_next(&mut alice).await;
    connector.stop().await;
    let sent = alice
        .call("message.send", json!({"interaction_id": interaction, "client_msg_id": "m1", "text": "Добрый день"}))
        .await;
    assert_eq!(sent["ok"], true, "{sent}");

    // the worker's term: a token newer than the stopped connector's
    let key = schema::store::connector_key(hub.account_id);
    let current: Option<i64> = sqlx::query_scalar("SELECT token FROM fencing_tokens WHERE key = $1")
        .bind(&key)
        .fetch_optional(&hub.pool)
        .await
        .unwrap();
    let token = current.unwrap_or(0) + 1;
    let platform = std::sync::Arc::new(TakenOverWhileSending {
        pool: hub.pool.clone(),
        key,
        newer_token: token + 1,
        answered: Default::default(),
    });
    let limits = schema::domain::Limits::for_account(schema::domain::Channel::Telegram, &json!({})).unwrap();
    let files = connectors::files::FileServer::new(
        format!("http://{}", hub.addr).parse().unwrap(),
        Some(ops::config::Secret::new(harness::SECRET)),
        None,
        schema::domain::Channel::Telegram,
        hub.account_id,
    );
    let config = connectors::outbox::OutboxConfig {
        pool: hub.pool.clone(),
        coord: hub.coord.clone(),
        account_id: hub.account_id,
        channel: schema::domain::Channel::Telegram,
        limits,
        platform: platform.clone(),
        files,
        pacer: connectors::pacing::PacerConfig::strict(limits.rate, limits.rate_per_chat),
        max_in_flight: 8,
    };
    let ended =
        tokio::time::timeout(WAIT, connectors::outbox::run(config, token, tokio_util::sync::CancellationToken::new()))
            .await
            .expect("the deposed worker stops");
    let stopped = std::time::Instant::now();
    assert!(matches!(ended, Err(connectors::outbox::WorkerError::Deposed(_))), "{ended:?}");
    let answered = platform.answered.lock().unwrap().clone();
    assert_eq!(answered.len(), 1, "the row went to the platform once");
    // the worker's grace for requests in flight is 5 s; hearing of the refusal takes milliseconds
    let waited = stopped - answered[0];
    assert!(waited < Duration::from_secs(3), "the worker waited {waited:?} after it was deposed");
    assert_eq!(
        hub.count("SELECT count(*) FROM outbox WHERE state = 'pending'").await,
        1,
        "the row whose outcome was refused stays pending for the new leader"
    );
}
