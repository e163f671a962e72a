//! A 100 MB upload and download stream through with flat memory: the body is never held whole,
//! on either side. Alone in its test binary so the process's memory is this test's.

mod harness;

use futures::StreamExt;
use harness::*;
use schema::domain::MB;
use sha2::{Digest, Sha256};

/// `VmRSS` and `VmHWM` (peak) of this process, in bytes.
fn memory() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let field = |name: &str| -> u64 {
        let line = status.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("no {name}"));
        let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kb * 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[tokio::test]
async fn a_100_mb_file_streams_in_and_out_with_flat_memory() {
    let app = spawn_app().await;
    const CHUNK: usize = 256 * 1024;
    let chunks = (100 * MB) as usize / CHUNK;
    // the same bytes on both sides without keeping them: regenerated per chunk from its index
    let chunk = |i: usize| bytes(CHUNK, i as u64);
    let mut expected = Sha256::new();
    for i in 0..chunks {
        expected.update(chunk(i));
    }
    let expected = hex::encode(expected.finalize());

    let (rss_before, _) = memory();
    let body = futures::stream::iter(0..chunks).map(move |i| Ok::<_, std::io::Error>(chunk(i)));
    let response = app
        .http
        .post(app.url("/api/v1/files?name=big.bin"))
        .bearer_auth(agent())
        .header("content-type", "application/octet-stream")
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .unwrap();
    let answer = Answer::from(response).await;
    assert_eq!(answer.status, 201, "{}", String::from_utf8_lossy(&answer.body));
    assert_eq!(answer.json()["size"], 100 * MB);
    assert_eq!(answer.json()["sha256"], expected);
    let id = answer.json()["id"].as_str().unwrap().to_owned();

    let response = app.http.get(app.url(&format!("/api/v1/files/{id}"))).bearer_auth(agent()).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-length"], (100 * MB).to_string().as_str());
    let mut stream = response.bytes_stream();
    let mut got = Sha256::new();
    let mut size = 0u64;
    while let Some(piece) = stream.next().await {
        let piece = piece.unwrap();
        size += piece.len() as u64;
        got.update(&piece);
    }
    assert_eq!(size, 100 * MB);
    assert_eq!(hex::encode(got.finalize()), expected);

    let (rss_after, peak) = memory();
    let growth = peak.saturating_sub(rss_before);
    eprintln!(
        "RSS before {} MB, after {} MB, peak {} MB: peak growth {} MB for a 100 MB round trip",
        rss_before / MB,
        rss_after / MB,
        peak / MB,
        growth / MB
    );
    assert!(growth < 40 * MB, "memory grew by {} MB: the body was buffered", growth / MB);
}
