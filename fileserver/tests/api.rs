//! The file server's HTTP contract (`docs/fileserver.md`) against the real router, PostgreSQL
//! and ZooKeeper.

mod harness;

use fileserver::signing::LinkSigner;
use harness::*;
use reqwest::multipart::{Form, Part};
use schema::domain::MB;

#[tokio::test]
async fn a_raw_upload_comes_back_whole_with_its_headers() {
    let app = spawn_app().await;
    let content = bytes(200_000, 1);
    let answer = app.upload("report.pdf", "application/pdf", content.clone(), "").await;
    assert_eq!(answer.status, 201, "{}", String::from_utf8_lossy(&answer.body));
    let reply = answer.json();
    let id = reply["id"].as_str().unwrap().to_owned();
    assert_eq!(reply["name"], "report.pdf");
    assert_eq!(reply["mime"], "application/pdf");
    assert_eq!(reply["size"], 200_000);
    assert_eq!(reply["sha256"], sha256_hex(&content));
    assert_eq!(reply["url"], format!("/api/v1/files/{id}"));
    assert_eq!(answer.header("location"), format!("/api/v1/files/{id}"));
    assert_eq!(reply.as_object().unwrap().len(), 6, "{reply}");

    let got = app.get(&format!("/api/v1/files/{id}"), Some(&agent()), &[]).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body, content);
    assert_eq!(got.header("content-type"), "application/pdf");
    assert_eq!(got.header("content-length"), "200000");
    assert_eq!(got.header("etag"), format!("\"{}\"", sha256_hex(&content)));
    assert_eq!(got.header("accept-ranges"), "bytes");
    assert_eq!(got.header("content-disposition"), "attachment; filename=\"report.pdf\"");
    assert_eq!(got.header("x-content-type-options"), "nosniff");

    let head = app.http.head(app.url(&format!("/api/v1/files/{id}"))).bearer_auth(agent()).send().await.unwrap();
    let head = Answer::from(head).await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(head.header("content-length"), "200000");
    assert_eq!(head.header("content-type"), "application/pdf");

    let revalidated =
        app.get(&format!("/api/v1/files/{id}"), Some(&agent()), &[("if-none-match", got.header("etag"))]).await;
    assert_eq!(revalidated.status, 304);

    let (by, account): (Option<String>, Option<uuid::Uuid>) =
        sqlx::query_as("SELECT uploaded_by, account_id FROM files WHERE id = $1::uuid")
            .bind(&id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(by.as_deref(), Some("alice"));
    assert_eq!(account, None);
    let key = app.root.join(&id[..2]).join(&id);
    assert_eq!(std::fs::read(key).unwrap(), content, "stored at <root>/<2 chars>/<id>");
}

#[tokio::test]
async fn a_multipart_upload_takes_the_file_part() {
    let app = spawn_app().await;
    let content = bytes(300_000, 2);
    let form = Form::new()
        .text("note", "ignored")
        .part("file", Part::bytes(content.clone()).file_name("photo.jpg").mime_str("image/jpeg").unwrap())
        .text("after", "ignored too");
    let answer = app
        .http
        .post(app.url(&format!("/api/v1/files?account_id={}", app.account_id)))
        .bearer_auth(token("connector-1", &["service"], 600))
        .multipart(form)
        .send()
        .await
        .unwrap();
    let answer = Answer::from(answer).await;
    assert_eq!(answer.status, 201, "{}", String::from_utf8_lossy(&answer.body));
    let reply = answer.json();
    assert_eq!(reply["name"], "photo.jpg");
    assert_eq!(reply["mime"], "image/jpeg");
    assert_eq!(reply["size"], 300_000);
    assert_eq!(reply["sha256"], sha256_hex(&content));
    let id = reply["id"].as_str().unwrap();
    let got = app.get(&format!("/api/v1/files/{id}"), Some(&token("connector-1", &["service"], 600)), &[]).await;
    assert_eq!(got.body, content);
    let account: Option<uuid::Uuid> = sqlx::query_scalar("SELECT account_id FROM files WHERE id = $1::uuid")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(account, Some(app.account_id));

    // the query's name wins over the part's; a part with no type is application/octet-stream
    let form = Form::new().part("file", Part::bytes(b"abc".to_vec()).file_name("x.bin"));
    let answer = app
        .http
        .post(app.url("/api/v1/files?name=renamed.dat"))
        .bearer_auth(agent())
        .multipart(form)
        .send()
        .await
        .unwrap();
    let reply = Answer::from(answer).await.json();
    assert_eq!(reply["name"], "renamed.dat");
    assert_eq!(reply["mime"], "application/octet-stream");

    // no `file` part
    let form = Form::new().text("something", "else");
    let answer = app.http.post(app.url("/api/v1/files")).bearer_auth(agent()).multipart(form).send().await.unwrap();
    let answer = Answer::from(answer).await;
    assert_eq!((answer.status, answer.code().as_str()), (400, "missing_file"));
}

/// A declared `Content-Length` over the limit is refused before a byte of the body is read:
/// the client here sends only the headers.
#[tokio::test]
async fn an_oversized_content_length_is_refused_before_the_body() {
    let app = spawn_app().await;
    let token = agent();

    let answer = app
        .raw(
            &format!(
                "POST /api/v1/files?name=big.mp4&channel=telegram HTTP/1.1\r\nAuthorization: Bearer {token}\r\n\
                 Content-Type: video/mp4\r\nContent-Length: {}",
                60 * MB
            ),
            b"",
        )
        .await;
    assert_eq!(answer.status, 413, "{}", answer.head);
    let error = &answer.json()["error"];
    assert_eq!(error["code"], "file_too_large");
    assert_eq!(error["limit"], 50 * MB);
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("50 MB") && message.contains("telegram"), "{message}");

    // the account's channel applies when none is named
    let answer = app
        .raw(
            &format!(
                "POST /api/v1/files?name=big.mp4&account_id={} HTTP/1.1\r\nAuthorization: Bearer {token}\r\n\
                 Content-Type: video/mp4\r\nContent-Length: {}",
                app.account_id,
                50 * MB + 1
            ),
            b"",
        )
        .await;
    assert_eq!(answer.status, 413, "{}", answer.head);

    // over the hub's own maximum, no channel named
    let answer = app
        .raw(
            &format!(
                "POST /api/v1/files?name=huge.iso HTTP/1.1\r\nAuthorization: Bearer {token}\r\n\
                 Content-Type: application/octet-stream\r\nContent-Length: {}",
                100 * MB + 1
            ),
            b"",
        )
        .await;
    assert_eq!(answer.status, 413, "{}", answer.head);
    assert_eq!(answer.json()["error"]["limit"], 100 * MB);
    assert!(answer.json()["error"]["message"].as_str().unwrap().contains("fileserver.max_upload_bytes"));

    // a multipart body over the limit and the allowance for its framing
    let answer = app
        .raw(
            &format!(
                "POST /api/v1/files?channel=viber HTTP/1.1\r\nAuthorization: Bearer {token}\r\n\
                 Content-Type: multipart/form-data; boundary=XyZ\r\nContent-Length: {}",
                51 * MB
            ),
            b"",
        )
        .await;
    assert_eq!(answer.status, 413, "{}", answer.head);

    // with Expect: 100-continue the client is told before it sends anything
    let answer = app
        .raw(
            &format!(
                "POST /api/v1/files?name=big.bin&channel=telegram HTTP/1.1\r\nAuthorization: Bearer {token}\r\n\
                 Expect: 100-continue\r\nContent-Length: {}",
                51 * MB
            ),
            b"",
        )
        .await;
    assert_eq!(answer.status, 413, "{}", answer.head);

    assert_eq!(app.file_rows().await, 0);
    assert_eq!(app.files_on_disk(), Vec::<std::path::PathBuf>::new());
}

/// With no `Content-Length` (chunked), the limit is enforced while streaming: the upload stops
/// at the chunk that crosses it, and the partial file is deleted.
#[tokio::test]
async fn an_oversized_chunked_body_is_cut_off_and_leaves_nothing() {
    let app = spawn_with(|c| c.max_upload_bytes = MB).await;
    let token = agent();
    let head = format!(
        "POST /api/v1/files?name=stream.bin HTTP/1.1\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/octet-stream\r\nTransfer-Encoding: chunked"
    );
    // exactly one byte too many, in 64 KiB chunks, with no final chunk: the server must answer
    // without waiting for the end of the body
    let mut chunks: Vec<Vec<u8>> = (0..16).map(|i| bytes(64 * 1024, i)).collect();
    chunks.push(vec![7]);
    let answer = app.raw(&head, &chunked(&chunks, false)).await;
    assert_eq!(answer.status, 413, "{}", answer.head);
    assert_eq!(answer.json()["error"]["code"], "file_too_large");
    assert_eq!(answer.json()["error"]["limit"], MB);
    assert!(answer.head.to_ascii_lowercase().contains("connection: close"), "{}", answer.head);
    assert_eq!(app.file_rows().await, 0);
    assert_eq!(app.files_on_disk(), Vec::<std::path::PathBuf>::new(), "the partial file is deleted");

    // exactly the limit is fine
    chunks.pop();
    let answer = app.raw(&head, &chunked(&chunks, true)).await;
    assert_eq!(answer.status, 201, "{}", answer.body);
    assert_eq!(answer.json()["size"], MB);
    assert_eq!(app.file_rows().await, 1);

    // the same through reqwest's streamed (chunked) body
    let over: Vec<Result<Vec<u8>, std::io::Error>> = (0..17).map(|i| Ok(bytes(64 * 1024, i))).collect();
    let result = app
        .http
        .post(app.url("/api/v1/files?name=s.bin"))
        .bearer_auth(&token)
        .body(reqwest::Body::wrap_stream(futures::stream::iter(over)))
        .send()
        .await;
    if let Ok(response) = result {
        assert_eq!(response.status(), 413);
    } // else: the server closed before the client finished sending; nothing was stored either way
    assert_eq!(app.file_rows().await, 1);
    assert_eq!(app.files_on_disk().len(), 1);

    // and through a multipart part of unknown length
    let over: Vec<Result<Vec<u8>, std::io::Error>> = (0..17).map(|i| Ok(bytes(64 * 1024, i))).collect();
    let part = Part::stream(reqwest::Body::wrap_stream(futures::stream::iter(over))).file_name("m.bin");
    let result = app
        .http
        .post(app.url("/api/v1/files"))
        .bearer_auth(&token)
        .multipart(Form::new().part("file", part))
        .send()
        .await;
    if let Ok(response) = result {
        assert_eq!(response.status(), 413);
    }
    assert_eq!(app.file_rows().await, 1);
    assert_eq!(app.files_on_disk().len(), 1);
}

#[tokio::test]
async fn range_requests() {
    let app = spawn_app().await;
    let content = bytes(1000, 3);
    let id = app.upload_ok("data.bin", "application/octet-stream", content.clone()).await;
    let path = format!("/api/v1/files/{id}");
    let token = agent();

    let first = app.get(&path, Some(&token), &[("range", "bytes=0-99")]).await;
    assert_eq!(first.status, 206);
    assert_eq!(first.body, content[..100]);
    assert_eq!(first.header("content-range"), "bytes 0-99/1000");
    assert_eq!(first.header("content-length"), "100");

    let suffix = app.get(&path, Some(&token), &[("range", "bytes=-100")]).await;
    assert_eq!(suffix.status, 206);
    assert_eq!(suffix.body, content[900..]);
    assert_eq!(suffix.header("content-range"), "bytes 900-999/1000");

    let open = app.get(&path, Some(&token), &[("range", "bytes=990-")]).await;
    assert_eq!((open.status, open.body.as_slice()), (206, &content[990..]));

    let past = app.get(&path, Some(&token), &[("range", "bytes=1000-")]).await;
    assert_eq!(past.status, 416);
    assert_eq!(past.header("content-range"), "bytes */1000");
    assert_eq!(past.code(), "range_not_satisfiable");

    // several ranges: the whole file (allowed by the RFC)
    let many = app.get(&path, Some(&token), &[("range", "bytes=0-1,5-6")]).await;
    assert_eq!((many.status, many.body.len()), (200, 1000));

    // If-Range with a stale validator: the whole file
    let stale = app.get(&path, Some(&token), &[("range", "bytes=0-9"), ("if-range", "\"old\"")]).await;
    assert_eq!((stale.status, stale.body.len()), (200, 1000));
    let fresh = app.get(&path, Some(&token), &[("range", "bytes=0-9"), ("if-range", first.header("etag"))]).await;
    assert_eq!((fresh.status, fresh.body.as_slice()), (206, &content[..10]));
}

#[tokio::test]
async fn a_non_ascii_name_survives_in_content_disposition() {
    let app = spawn_app().await;
    let name = "Счёт №5521 (итог).pdf";
    let answer = app.upload(name, "application/pdf", b"%PDF-1.4".to_vec(), "").await;
    assert_eq!(answer.status, 201);
    assert_eq!(answer.json()["name"], name);
    let id = answer.json()["id"].as_str().unwrap().to_owned();
    let got = app.get(&format!("/api/v1/files/{id}"), Some(&agent()), &[]).await;
    assert_eq!(
        got.header("content-disposition"),
        "attachment; filename=\"____ _5521 (____).pdf\"; \
         filename*=UTF-8''%D0%A1%D1%87%D1%91%D1%82%20%E2%84%965521%20%28%D0%B8%D1%82%D0%BE%D0%B3%29.pdf"
    );
}

#[tokio::test]
async fn signed_links_work_without_a_token_until_they_expire() {
    let app = spawn_with(|c| c.link_max_ttl_s = 600).await;
    let content = bytes(5000, 4);
    let id = app.upload_ok("scan.png", "image/png", content.clone()).await;

    let link = app.http.post(app.url(&format!("/api/v1/files/{id}/link?ttl_s=60"))).bearer_auth(agent()).send().await;
    let link = Answer::from(link.unwrap()).await;
    assert_eq!(link.status, 200);
    let url = link.json()["url"].as_str().unwrap().to_owned();
    assert!(url.starts_with(&format!("/api/v1/files/{id}?exp=")), "{url}");
    let expires_at: chrono::DateTime<chrono::Utc> = link.json()["expires_at"].as_str().unwrap().parse().unwrap();
    let left = expires_at - chrono::Utc::now();
    assert!(left > chrono::TimeDelta::seconds(50) && left <= chrono::TimeDelta::seconds(61), "{left}");

    let got = app.get(&url, None, &[]).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body, content);
    let ranged = app.get(&url, None, &[("range", "bytes=0-9")]).await;
    assert_eq!((ranged.status, ranged.body.as_slice()), (206, &content[..10]));

    // tampered signature, tampered expiry, half a link
    let (base, query) = url.split_once('?').unwrap();
    let (exp, sig) = query.split_once("&sig=").unwrap();
    let exp: i64 = exp.strip_prefix("exp=").unwrap().parse().unwrap();
    let flipped = format!("{}{}", if sig.starts_with('0') { "1" } else { "0" }, &sig[1..]);
    for bad in [
        format!("{base}?exp={exp}&sig={flipped}"),
        format!("{base}?exp={}&sig={sig}", exp + 3600),
        format!("{base}?exp={exp}"),
        format!("/api/v1/files/{}?exp={exp}&sig={sig}", uuid::Uuid::new_v4()),
    ] {
        let refused = app.get(&bad, None, &[]).await;
        assert_eq!((refused.status, refused.code().as_str()), (403, "bad_signature"), "{bad}");
    }

    // a correctly signed link whose time is up
    let past = chrono::Utc::now().timestamp() - 5;
    let expired = format!("{base}?{}", LinkSigner::new(SIGNING_KEY.as_bytes()).query(id, past));
    let refused = app.get(&expired, None, &[]).await;
    assert_eq!((refused.status, refused.code().as_str()), (403, "link_expired"));
    assert!(refused.json()["error"]["message"].as_str().unwrap().contains("expired"));

    // the lifetime is capped; the default applies when none is asked
    let capped = app.http.post(app.url(&format!("/api/v1/files/{id}/link?ttl_s=999999"))).bearer_auth(agent()).send();
    let capped = Answer::from(capped.await.unwrap()).await.json();
    assert_eq!(capped["ttl_s"], 600);
    let default = app.http.post(app.url(&format!("/api/v1/files/{id}/link"))).bearer_auth(agent()).send();
    assert_eq!(Answer::from(default.await.unwrap()).await.json()["ttl_s"], 300);

    // links are only made for files that exist, and only with a token
    let missing = app.http.post(app.url(&format!("/api/v1/files/{}/link", uuid::Uuid::new_v4()))).bearer_auth(agent());
    assert_eq!(Answer::from(missing.send().await.unwrap()).await.status, 404);
    let anonymous = app.http.post(app.url(&format!("/api/v1/files/{id}/link"))).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
}

#[tokio::test]
async fn every_endpoint_needs_a_valid_token() {
    let app = spawn_app().await;
    let id = app.upload_ok("a.txt", "text/plain", b"hello".to_vec()).await;
    let file = format!("/api/v1/files/{id}");
    let link = format!("/api/v1/files/{id}/link");
    let cases: [(Option<String>, u16, &str); 5] = [
        (None, 401, "unauthorized"),
        (Some("not-a-jwt".into()), 401, "invalid_token"),
        (Some(token("alice", &["agent"], -120)), 401, "token_expired"),
        (Some(token("report-reader", &["integrator"], 600)), 403, "forbidden"),
        (Some(agent()), 0, ""),
    ];
    for (token, status, code) in cases {
        let with = |r: reqwest::RequestBuilder| match &token {
            Some(t) => r.bearer_auth(t),
            None => r,
        };
        let answers = [
            with(app.http.post(app.url("/api/v1/files?name=b.txt")).body("hi")).send().await.unwrap(),
            with(app.http.get(app.url(&file))).send().await.unwrap(),
            with(app.http.head(app.url(&file))).send().await.unwrap(),
            with(app.http.post(app.url(&link))).send().await.unwrap(),
        ];
        for answer in answers {
            let answer = Answer::from(answer).await;
            if status == 0 {
                assert!(answer.status < 300, "{}", String::from_utf8_lossy(&answer.body));
                continue;
            }
            assert_eq!(answer.status, status, "{token:?}");
            if !answer.body.is_empty() {
                assert_eq!(answer.code(), code);
                assert!(answer.json()["error"]["message"].is_string());
            }
            if status == 401 {
                assert_eq!(answer.header("www-authenticate"), "Bearer");
            }
        }
    }
    // every role the hub knows may use it; agents and bots only for files of interactions they
    // may see (here none: `x` did not upload it and it is in no interaction)
    for role in ["agent", "supervisor", "admin", "bot", "service"] {
        let got = app.get(&file, Some(&token("x", &[role], 600)), &[]).await;
        let expected = if fileserver::READ_ANY.contains(&role) { 200 } else { 403 };
        assert_eq!(got.status, expected, "{role}");
    }
    // nothing was stored by the refused uploads (one by the valid token)
    assert_eq!(app.file_rows().await, 2);
}

#[tokio::test]
async fn bad_uploads_are_refused_with_the_reason() {
    let app = spawn_app().await;
    let cases = [
        ("", "missing_name"),
        ("name=%20%20", "invalid_name"),
        ("name=a.txt&channel=icq", "invalid_channel"),
        ("name=a.txt&account_id=123", "invalid_account_id"),
        ("name=a.txt&account_id=00000000-0000-0000-0000-000000000001", "unknown_account"),
    ];
    for (query, code) in cases {
        let answer = app
            .http
            .post(format!("{}?{query}", app.url("/api/v1/files")))
            .bearer_auth(agent())
            .body("hi")
            .send()
            .await
            .unwrap();
        let answer = Answer::from(answer).await;
        assert_eq!((answer.status, answer.code().as_str()), (400, code), "{query}");
    }
    let query = format!("account_id={}&channel=vk", app.account_id);
    let mismatch = app.upload("a.txt", "text/plain", b"hi".to_vec(), &query).await;
    assert_eq!(mismatch.code(), "channel_mismatch");
    let bad_mime = app.upload("a.txt", "text html", b"hi".to_vec(), "").await;
    assert_eq!((bad_mime.status, bad_mime.code().as_str()), (400, "invalid_mime"));
    let empty = app.upload("empty.txt", "text/plain", Vec::new(), "").await;
    assert_eq!((empty.status, empty.code().as_str()), (400, "empty_file"));

    assert_eq!(app.file_rows().await, 0);
    assert_eq!(app.files_on_disk(), Vec::<std::path::PathBuf>::new());

    let missing = app.get(&format!("/api/v1/files/{}", uuid::Uuid::new_v4()), Some(&agent()), &[]).await;
    assert_eq!((missing.status, missing.code().as_str()), (404, "not_found"));
    let not_uuid = app.get("/api/v1/files/nope", Some(&agent()), &[]).await;
    assert_eq!(not_uuid.status, 404);
}

/// Files follow interaction access: an agent reads (and links) a file of an interaction assigned
/// to it now or before, or joined, or its own upload; any other agent gets 403 for the file and
/// for a signed link; supervisors, admins and services read any file.
#[tokio::test]
async fn an_agent_reads_only_the_files_of_interactions_it_may_see() {
    use schema::store::{self, AgentProfile, InboundMessage, Ingested, Sender, TransferTarget};
    let app = spawn_app().await;
    let mut conn = app.pool.acquire().await.unwrap();
    for login in ["alice", "bob", "carol", "dave", "eve"] {
        let profile = AgentProfile {
            login: login.into(),
            name: login.into(),
            roles: vec!["agent".into()],
            queues: vec!["support".into()],
            max_interactions: 3,
        };
        store::upsert_agent(&mut conn, &profile).await.unwrap();
    }
    // the connector stores the customer's photo, then the message that carries it
    let service = token("connector-1", &["service"], 600);
    let photo = Answer::from(
        app.http
            .post(app.url(&format!("/api/v1/files?name=photo.jpg&account_id={}", app.account_id)))
            .bearer_auth(&service)
            .header("content-type", "image/jpeg")
            .body(bytes(1000, 7))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(photo.status, 201);
    let photo: uuid::Uuid = photo.json()["id"].as_str().unwrap().parse().unwrap();
    let inbound = InboundMessage {
        account_id: app.account_id,
        external_message_id: "42:1".into(),
        chat_id: "42".into(),
        sender: Sender {
            external_id: "42".into(),
            name: "Customer".into(),
            username: None,
            phone: None,
            avatar_url: None,
        },
        kind: schema::domain::MessageKind::Image,
        text: None,
        file_ids: vec![photo],
        location: None,
        contact: None,
        reply_to_external_id: None,
        forwarded: None,
        sent_at: None,
        sticker_id: None,
    };
    drop(conn);
    let mut tx = app.pool.begin().await.unwrap();
    let Ingested::Stored { interaction, .. } =
        store::ingest_inbound(&mut tx, &inbound, std::time::Duration::from_secs(3600)).await.unwrap()
    else {
        panic!("stored")
    };
    // bob had it, handed it back to the queue; alice has it now; carol monitors it
    store::take(&mut tx, interaction.id, "bob", true).await.unwrap();
    store::transfer(&mut tx, interaction.id, "bob", &TransferTarget::Queue("support".into()), None).await.unwrap();
    store::take(&mut tx, interaction.id, "alice", true).await.unwrap();
    store::join(&mut tx, interaction.id, "carol", "monitor").await.unwrap();
    tx.commit().await.unwrap();
    let eve = token("eve", &["agent"], 600);
    let own = Answer::from(
        app.http.post(app.url("/api/v1/files?name=notes.txt")).bearer_auth(&eve).body("mine").send().await.unwrap(),
    )
    .await;
    let own = own.json()["id"].as_str().unwrap().to_owned();

    let file = format!("/api/v1/files/{photo}");
    let link = |who: &str| {
        app.http.post(app.url(&format!("/api/v1/files/{photo}/link"))).bearer_auth(token(who, &["agent"], 600)).send()
    };
    for who in ["alice", "bob", "carol"] {
        let got = app.get(&file, Some(&token(who, &["agent"], 600)), &[]).await;
        assert_eq!(got.status, 200, "{who} may see the interaction");
        assert_eq!(link(who).await.unwrap().status(), 200, "{who} may link it");
    }
    for who in ["dave", "eve"] {
        let got = app.get(&file, Some(&token(who, &["agent"], 600)), &[]).await;
        assert_eq!((got.status, got.code()), (403, "forbidden".to_owned()), "{who} has no link to the interaction");
        let refused = Answer::from(link(who).await.unwrap()).await;
        assert_eq!((refused.status, refused.code()), (403, "forbidden".to_owned()), "{who} mints no link");
    }
    assert_eq!(app.get(&format!("/api/v1/files/{own}"), Some(&eve), &[]).await.status, 200, "her own upload");
    assert_eq!(app.get(&format!("/api/v1/files/{own}"), Some(&token("alice", &["agent"], 600)), &[]).await.status, 403);
    for role in ["supervisor", "admin", "service"] {
        assert_eq!(app.get(&file, Some(&token("sue", &[role], 600)), &[]).await.status, 200, "{role}");
    }
}
