//! Screenshots and files sent in a call, over HTTP on the real PostgreSQL with the file server
//! on the same listener: both sides send, both see the call's files (and no other call's), each
//! file is a message of the interaction; a screenshot carries the customer's last shared
//! position in its EXIF; bad inputs get 4xx with their codes; 100 MB streams through with the
//! process's memory flat, one byte more is 413.

mod support;

use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use support::{Hub, agent_join, customer_join, frame_of, send, token};
use uuid::Uuid;

/// A minimal JPEG's structure: SOI, APP0 JFIF, DQT, SOS with two bytes of data, EOI.
fn jpeg() -> Vec<u8> {
    let mut j = vec![0xFF, 0xD8];
    j.extend_from_slice(&[0xFF, 0xE0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0, 1, 1, 0, 0, 1, 0, 1, 0, 0]);
    j.extend_from_slice(&[0xFF, 0xDB, 0x00, 0x04, 0x00, 0x01]);
    j.extend_from_slice(&[0xFF, 0xDA, 0x00, 0x03, 0x01, 0x12, 0x34, 0xFF, 0xD9]);
    j
}

enum Auth<'a> {
    None,
    Jwt(String),
    Link(&'a str),
}

async fn upload(hub: &Hub, room: Uuid, query: &str, auth: Auth<'_>, mime: &str, body: Vec<u8>) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .post(hub.url(&format!("/api/v1/video/rooms/{room}/files?{query}")))
        .header("content-type", mime)
        .body(body);
    request = match auth {
        Auth::None => request,
        Auth::Jwt(t) => request.bearer_auth(t),
        Auth::Link(l) => request.header("x-call-link", l),
    };
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn authed(hub: &Hub, method: reqwest::Method, path: &str, auth: Auth<'_>) -> (u16, Value) {
    let mut request = reqwest::Client::new().request(method, hub.url(path));
    request = match auth {
        Auth::None => request,
        Auth::Jwt(t) => request.bearer_auth(t),
        Auth::Link(l) => request.header("x-call-link", l),
    };
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The bytes of a call's file through its signed link.
async fn download(hub: &Hub, room: Uuid, file: &str, auth: Auth<'_>) -> Vec<u8> {
    let (status, link) =
        authed(hub, reqwest::Method::POST, &format!("/api/v1/video/rooms/{room}/files/{file}/link"), auth).await;
    assert_eq!(status, 200, "{link}");
    let response = reqwest::get(hub.url(link["url"].as_str().unwrap())).await.unwrap();
    assert_eq!(response.status(), 200);
    response.bytes().await.unwrap().to_vec()
}

fn alice() -> Auth<'static> {
    Auth::Jwt(token("alice", &["agent"]))
}

#[tokio::test]
async fn both_sides_send_files_kept_with_the_interaction() {
    let hub = Hub::start().await;
    let (room, link) = hub.room().await;
    let mut customer = hub.socket().await;
    send(&mut customer, customer_join(&link)).await;
    frame_of(&mut customer, "joined", &mut Vec::new()).await;
    let mut agent = hub.socket().await;
    send(&mut agent, agent_join(room, "alice", &["agent"])).await;
    frame_of(&mut agent, "joined", &mut Vec::new()).await;

    let (status, sent) =
        upload(&hub, room, "name=%D0%B0%D0%BA%D1%82.pdf", alice(), "application/pdf", b"%PDF-1.4 act".to_vec()).await;
    assert_eq!(status, 201, "{sent}");
    assert_eq!((sent["name"].as_str(), sent["size"].as_i64()), (Some("акт.pdf"), Some(12)));
    assert_eq!((sent["role"].as_str(), sent["screenshot"].as_bool()), (Some("agent"), Some(false)));
    // both pages hear of it on the signalling socket
    for ws in [&mut customer, &mut agent] {
        let frame = frame_of(ws, "file", &mut Vec::new()).await;
        assert_eq!(frame["file"]["file_id"], sent["file_id"]);
    }
    let (status, theirs) =
        upload(&hub, room, "name=photo.txt", Auth::Link(&link), "text/plain", b"hello".to_vec()).await;
    assert_eq!(status, 201, "{theirs}");
    assert_eq!((theirs["role"].as_str(), theirs["sender_name"].as_str()), (Some("customer"), Some("Vera")));
    assert_eq!(frame_of(&mut agent, "file", &mut Vec::new()).await["file"]["file_id"], theirs["file_id"]);

    // both list the call's files and download them
    for auth in [alice(), Auth::Link(&link), Auth::Jwt(token("sue", &["supervisor"]))] {
        let (status, list) =
            authed(&hub, reqwest::Method::GET, &format!("/api/v1/video/rooms/{room}/files"), auth).await;
        assert_eq!(status, 200, "{list}");
        let ids: Vec<&Value> = list["files"].as_array().unwrap().iter().map(|f| &f["file_id"]).collect();
        assert_eq!(ids, vec![&sent["file_id"], &theirs["file_id"]]);
    }
    assert_eq!(download(&hub, room, sent["file_id"].as_str().unwrap(), Auth::Link(&link)).await, b"%PDF-1.4 act");
    assert_eq!(download(&hub, room, theirs["file_id"].as_str().unwrap(), alice()).await, b"hello");

    // each is a message of the interaction carrying the file, and message.new in its log
    let rows: Vec<(String, String, String, Uuid)> = sqlx::query_as(
        "SELECT m.direction, m.author_kind, m.kind, mf.file_id FROM messages m
         JOIN message_files mf ON mf.message_id = m.id WHERE m.interaction_id = $1 ORDER BY m.created_at",
    )
    .bind(hub.interaction)
    .fetch_all(&hub.pool)
    .await
    .unwrap();
    let sent_id: Uuid = sent["file_id"].as_str().unwrap().parse().unwrap();
    let theirs_id: Uuid = theirs["file_id"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        rows,
        vec![
            ("out".into(), "agent".into(), "document".into(), sent_id),
            ("in".into(), "customer".into(), "document".into(), theirs_id)
        ]
    );
    let events: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM interaction_events WHERE interaction_id = $1 AND kind = 'message.new'
           AND data->'message'->'files' != '[]'::jsonb",
    )
    .bind(hub.interaction)
    .fetch_one(&hub.pool)
    .await
    .unwrap();
    assert_eq!(events, 2);
    // nothing goes to the channel's outbox: the file reached the customer in the call
    let outbox: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM outbox o JOIN message_files mf ON mf.message_id = o.message_id WHERE mf.file_id = ANY($1)",
    )
    .bind(vec![sent_id, theirs_id])
    .fetch_one(&hub.pool)
    .await
    .unwrap();
    assert_eq!(outbox, 0);
    // and the call records list them
    let record = schema::store::call_record(&mut hub.pool.acquire().await.unwrap(), room).await.unwrap();
    let listed: Vec<(Uuid, &str, &str)> =
        record.files.iter().map(|f| (f.file_id, f.role.as_str(), f.name.as_str())).collect();
    assert_eq!(listed, vec![(sent_id, "agent", "акт.pdf"), (theirs_id, "customer", "photo.txt")]);
}

#[tokio::test]
async fn a_screenshot_carries_the_customers_position_in_its_exif() {
    let hub = Hub::start().await;
    let (room, link) = hub.room().await;

    // before any location: no GPS, the JPEG as sent
    let (status, plain) = upload(&hub, room, "screenshot=true", alice(), "image/jpeg", jpeg()).await;
    assert_eq!(status, 201, "{plain}");
    assert_eq!((plain["screenshot"].as_bool(), plain["mime"].as_str()), (Some(true), Some("image/jpeg")));
    assert!(plain["name"].as_str().unwrap().starts_with("screenshot-"), "{plain}");
    assert!(plain["gps"].is_null());
    let bytes = download(&hub, room, plain["file_id"].as_str().unwrap(), alice()).await;
    assert_eq!(bytes, jpeg());

    let mut customer = hub.socket().await;
    send(&mut customer, customer_join(&link)).await;
    frame_of(&mut customer, "joined", &mut Vec::new()).await;
    send(&mut customer, json!({"type": "location", "lat": 55.752023, "lon": 37.617499, "accuracy": 20.0})).await;
    frame_of(&mut customer, "location", &mut Vec::new()).await;
    send(&mut customer, json!({"type": "location", "lat": -33.856784, "lon": 151.215297})).await;
    frame_of(&mut customer, "location", &mut Vec::new()).await;

    // a page's own EXIF (a forged position) is dropped; the last shared position is written
    let forged =
        video::exif::stamp(&jpeg(), Some(&video::exif::GpsStamp { lat: 1.0, lon: 2.0, at: chrono::Utc::now() }))
            .unwrap();
    let (status, shot) = upload(&hub, room, "screenshot=true&name=scratch.jpg", alice(), "image/jpeg", forged).await;
    assert_eq!(status, 201, "{shot}");
    assert_eq!(shot["gps"], json!({"lat": -33.856784, "lon": 151.215297}));
    assert_eq!(frame_of(&mut customer, "file", &mut Vec::new()).await["file"]["file_id"], shot["file_id"]);
    let bytes = download(&hub, room, shot["file_id"].as_str().unwrap(), Auth::Link(&link)).await;
    let (lat, lon) = video::exif::read_gps(&bytes).expect("GPS in the stored screenshot");
    assert!((lat + 33.856784).abs() < 1e-6 && (lon - 151.215297).abs() < 1e-6, "{lat}, {lon}");
    // the customer's screenshot too
    let (status, theirs) = upload(&hub, room, "screenshot=true", Auth::Link(&link), "image/jpeg", jpeg()).await;
    assert_eq!(status, 201, "{theirs}");
    let bytes = download(&hub, room, theirs["file_id"].as_str().unwrap(), alice()).await;
    assert!(video::exif::read_gps(&bytes).is_some());
    let kind: String = sqlx::query_scalar(
        "SELECT m.kind FROM video_files v JOIN messages m ON m.id = v.message_id WHERE v.file_id = $1",
    )
    .bind(shot["file_id"].as_str().unwrap().parse::<Uuid>().unwrap())
    .fetch_one(&hub.pool)
    .await
    .unwrap();
    assert_eq!(kind, "image");
}

/// A refused upload: query, credentials, type, body, the status and code expected.
type Case<'a> = (&'a str, Auth<'a>, &'a str, Vec<u8>, u16, &'a str);

#[tokio::test]
async fn bad_requests_are_refused_with_their_codes() {
    let hub = Hub::start().await;
    let (room, link) = hub.room().await;
    let other = hub.another_interaction("wc-other").await;
    let (other_room, other_link) = hub.room_for(other).await;
    let (status, their_file) = upload(&hub, other_room, "name=a.txt", alice(), "text/plain", b"theirs".to_vec()).await;
    assert_eq!(status, 201);
    let png = [&[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A][..], b"\0\0\0\rIHDR"].concat();
    let mut cut = jpeg();
    cut.truncate(cut.len() - 3);

    let cases: Vec<Case> = vec![
        ("name=a.txt", Auth::None, "text/plain", b"x".to_vec(), 401, "unauthorized"),
        ("name=a.txt", Auth::Jwt("not-a-jwt".into()), "text/plain", b"x".to_vec(), 401, "invalid_token"),
        ("name=a.txt", Auth::Link("never-issued"), "text/plain", b"x".to_vec(), 401, "unauthorized"),
        ("name=a.txt", Auth::Link(&other_link), "text/plain", b"x".to_vec(), 403, "forbidden"),
        ("name=a.txt", Auth::Jwt(token("bob", &["agent"])), "text/plain", b"x".to_vec(), 404, "room_not_found"),
        ("", alice(), "text/plain", b"x".to_vec(), 400, "bad_request"),
        ("name=a.txt", alice(), "text/plain", Vec::new(), 400, "empty_file"),
        ("screenshot=true", alice(), "image/png", png, 415, "not_jpeg"),
        ("screenshot=true", alice(), "image/jpeg", b"<html>not an image</html>".to_vec(), 415, "not_jpeg"),
        ("screenshot=true", Auth::Link(&link), "image/jpeg", cut, 400, "broken_jpeg"),
        ("screenshot=true", alice(), "image/jpeg", vec![0xFF; 10 * 1024 * 1024 + 1], 413, "file_too_large"),
    ];
    for (query, auth, mime, body, want_status, want_code) in cases {
        let (status, body) = upload(&hub, room, query, auth, mime, body).await;
        assert_eq!((status, body["error"]["code"].as_str()), (want_status, Some(want_code)), "{query}: {body}");
        assert!(!body["error"]["message"].as_str().unwrap().is_empty());
    }
    // a declared length over 100 MB is refused before the body is read
    let response = reqwest::Client::new()
        .post(hub.url(&format!("/api/v1/video/rooms/{room}/files?name=big.bin")))
        .bearer_auth(token("alice", &["agent"]))
        .header("content-length", (100 * 1024 * 1024 + 1).to_string())
        .body(reqwest::Body::wrap_stream(futures::stream::pending::<Result<Bytes, std::io::Error>>()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        (body["error"]["code"].as_str(), body["error"]["limit"].as_u64()),
        (Some("file_too_large"), Some(104857600))
    );

    // another call's file is not this call's
    let path = format!("/api/v1/video/rooms/{room}/files/{}/link", their_file["file_id"].as_str().unwrap());
    let (status, body) = authed(&hub, reqwest::Method::POST, &path, alice()).await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")), "{body}");
    let path = format!("/api/v1/video/rooms/{other_room}/files");
    let (status, _) = authed(&hub, reqwest::Method::GET, &path, Auth::Link(&link)).await;
    assert_eq!(status, 403);
    let (status, _) = authed(&hub, reqwest::Method::GET, &path, Auth::None).await;
    assert_eq!(status, 401);
    let (status, list) =
        authed(&hub, reqwest::Method::GET, &format!("/api/v1/video/rooms/{room}/files"), Auth::Link(&link)).await;
    assert_eq!((status, list["files"].as_array().map(Vec::len)), (200, Some(0)), "nothing of the refused is kept");

    // an ended call takes no more files
    let (status, _) = authed(&hub, reqwest::Method::POST, &format!("/api/v1/video/rooms/{room}/end"), alice()).await;
    assert_eq!(status, 200);
    let (status, body) = upload(&hub, room, "name=late.txt", Auth::Link(&link), "text/plain", b"late".to_vec()).await;
    assert_eq!((status, body["error"]["code"].as_str()), (410, Some("room_ended")), "{body}");
    // the customer reads the call's files for a day after it ended, the agents always
    let files = format!("/api/v1/video/rooms/{room}/files");
    assert_eq!(authed(&hub, reqwest::Method::GET, &files, Auth::Link(&link)).await.0, 200);
    sqlx::query("UPDATE video_rooms SET ended_at = now() - interval '25 hours' WHERE id = $1")
        .bind(room)
        .execute(&hub.pool)
        .await
        .unwrap();
    let (status, body) = authed(&hub, reqwest::Method::GET, &files, Auth::Link(&link)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (410, Some("link_expired")), "{body}");
    assert_eq!(authed(&hub, reqwest::Method::GET, &files, alice()).await.0, 200);
}

/// The process's resident memory, bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

/// `total` bytes in 256 KiB chunks, made as they are sent.
fn stream_of(total: u64) -> reqwest::Body {
    const CHUNK: u64 = 256 * 1024;
    let chunk = Bytes::from(vec![0x5Au8; CHUNK as usize]);
    let chunks = futures::stream::unfold(0u64, move |sent| {
        let chunk = chunk.clone();
        async move {
            (sent < total).then(|| {
                let n = CHUNK.min(total - sent);
                (Ok::<_, std::io::Error>(chunk.slice(..n as usize)), sent + n)
            })
        }
    });
    reqwest::Body::wrap_stream(chunks)
}

#[tokio::test]
async fn a_100_mb_file_streams_through_in_flat_memory_and_one_byte_more_is_413() {
    const LIMIT: u64 = 100 * 1024 * 1024;
    let hub = Hub::start().await;
    let (room, link) = hub.room().await;
    // warm up: one small upload, so that what the first request allocates is counted before
    let (status, _) =
        upload(&hub, room, "name=warm.bin", Auth::Link(&link), "application/octet-stream", vec![1; 1024 * 1024]).await;
    assert_eq!(status, 201);
    let before = rss();
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(before));
    let watch = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                peak.fetch_max(rss(), std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let response = reqwest::Client::new()
        .post(hub.url(&format!("/api/v1/video/rooms/{room}/files?name=big.bin")))
        .header("x-call-link", &link)
        .header("content-type", "application/octet-stream")
        .header("content-length", LIMIT.to_string())
        .body(stream_of(LIMIT))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let stored: Value = response.json().await.unwrap();
    assert_eq!(status, 201, "{stored}");
    assert_eq!(stored["size"].as_u64(), Some(LIMIT));
    // one byte more, without a length: counted while streaming, cut off, nothing kept
    let response = reqwest::Client::new()
        .post(hub.url(&format!("/api/v1/video/rooms/{room}/files?name=bigger.bin")))
        .header("x-call-link", &link)
        .body(stream_of(LIMIT + 1))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "file_too_large", "{body}");
    watch.abort();
    let grew = peak.load(std::sync::atomic::Ordering::Relaxed).saturating_sub(before);
    eprintln!("resident memory grew by {} KiB while streaming 2 x 100 MB", grew / 1024);
    assert!(grew < 40 * 1024 * 1024, "resident memory grew by {grew} bytes");
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT f.name FROM video_files v JOIN files f ON f.id = v.file_id WHERE v.room_id = $1 ORDER BY v.created_at",
    )
    .bind(room)
    .fetch_all(&hub.pool)
    .await
    .unwrap();
    assert_eq!(names, vec!["warm.bin", "big.bin"]);
    // the file server deletes the cut-off upload's part once it sees the body break off
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut on_disk = bytes_under(&hub.dir.path().join("files"));
    while on_disk != LIMIT + 1024 * 1024 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        on_disk = bytes_under(&hub.dir.path().join("files"));
    }
    assert_eq!(on_disk, LIMIT + 1024 * 1024, "the cut-off upload left nothing behind");
}

/// The bytes of the files under `dir`, its subdirectories included.
fn bytes_under(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() { bytes_under(&e.path()) } else { e.metadata().unwrap().len() }
        })
        .sum()
}
