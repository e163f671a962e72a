//! The recording's file from spooled media, without a network: synthetic calls (Opus tones of
//! known frequencies, a VP8 or H.264 test pattern, sender reports from clocks that disagree
//! with the SFU's, network delay and jitter) are fed into the spool as the SFU would, processed,
//! and read back with `ffprobe` and `ffmpeg` (test-only tools). The one-hour call is in
//! `recording_memory.rs` (a process of its own, so nothing else moves its memory).

mod support;

use std::time::Instant;

use support::media::{self, SyntheticSender, decode_stereo, ffprobe, silences, span, tone_db};
use video::recording::process::{Options, process};
use video::recording::spool::{Spool, TrackRole};

const CUSTOMER_HZ: f64 = 440.0;
const AGENT_HZ: f64 = 1000.0;

fn customer(video: Option<bool>) -> SyntheticSender {
    SyntheticSender {
        peer: 1,
        role: TrackRole::Customer,
        tone: CUSTOMER_HZ,
        from: 0.0,
        to: f64::MAX,
        mute: Vec::new(),
        video,
        clock_offset: 3.7, // the customer's computer is 3.7 s ahead
        delay_ms: 40.0,
        jitter_ms: 30.0,
    }
}

fn agent() -> SyntheticSender {
    SyntheticSender {
        peer: 2,
        role: TrackRole::Agent,
        tone: AGENT_HZ,
        from: 0.0,
        to: f64::MAX,
        mute: Vec::new(),
        video: Some(false), // the agent's camera is not recorded
        clock_offset: -120.25,
        delay_ms: 5.0,
        jitter_ms: 10.0,
    }
}

/// Spools the senders for `seconds` and processes the recording; returns the file and what
/// `process` said.
async fn record(
    senders: &[SyntheticSender],
    seconds: f64,
) -> (tempfile::TempDir, std::path::PathBuf, video::recording::process::Outcome) {
    media::require_ffmpeg();
    let dir = tempfile::tempdir().unwrap();
    let spool_dir = dir.path().join("spool");
    std::fs::create_dir_all(&spool_dir).unwrap();
    let spool = Spool::start();
    let id = uuid::Uuid::new_v4();
    let t0 = Instant::now();
    spool.start_recording(id, spool_dir.clone(), t0);
    let feeder = {
        let spool = spool.clone();
        let senders = senders.to_vec();
        tokio::task::spawn_blocking(move || {
            for s in &senders {
                media::feed(&spool, id, t0, s, seconds, |_| {});
            }
        })
    };
    feeder.await.unwrap();
    spool.stop_recording(id).await.unwrap();
    let out = dir.path().join("call.mkv");
    let options = Options { end_us: (seconds * 1e6) as i64, title: "test call".into(), ..Options::default() };
    let (o, p) = (out.clone(), spool_dir.clone());
    let outcome = tokio::task::spawn_blocking(move || process(&p, &o, &options)).await.unwrap().unwrap();
    (dir, out, outcome)
}

fn streams(probe: &serde_json::Value, kind: &str) -> Vec<serde_json::Value> {
    probe["streams"].as_array().unwrap().iter().filter(|s| s["codec_type"] == kind).cloned().collect()
}

#[tokio::test]
async fn the_customer_is_left_the_agent_right_and_a_mute_is_silence_in_place() {
    let mut c = customer(Some(false));
    c.mute = vec![(5.0, 15.0)]; // ten seconds muted in the middle
    let (_dir, path, outcome) = record(&[c, agent()], 20.0).await;
    println!("{outcome:?}");

    let probe = ffprobe(&path);
    let video = streams(&probe, "video");
    let audio = streams(&probe, "audio");
    assert_eq!(video.len(), 1, "one video track (the customer's): {probe}");
    assert_eq!(audio.len(), 1, "one audio track: {probe}");
    assert_eq!((video[0]["codec_name"].as_str(), video[0]["width"].as_u64()), (Some("vp8"), Some(320)));
    assert_eq!((audio[0]["codec_name"].as_str(), audio[0]["channels"].as_u64()), (Some("opus"), Some(2)));
    assert_eq!(probe["format"]["format_name"], "matroska,webm");
    let duration: f64 = probe["format"]["duration"].as_str().unwrap().parse().unwrap();
    assert!((duration - 20.0).abs() < 0.1, "duration {duration} s for a 20 s call");
    assert!(outcome.video_frames >= 290, "{outcome:?}");

    let (left, right) = decode_stereo(&path);
    assert!(((left.len() as f64 / 48_000.0) - 20.0).abs() < 0.1, "{} samples", left.len());
    // outside the mute: each tone at least 20 dB louder on its own side
    for (from, to) in [(0.5, 4.5), (15.5, 19.5)] {
        let (l, r) = (span(&left, from, to), span(&right, from, to));
        let customer = (tone_db(l, CUSTOMER_HZ), tone_db(r, CUSTOMER_HZ));
        let agent = (tone_db(l, AGENT_HZ), tone_db(r, AGENT_HZ));
        println!("{from}-{to} s: customer {customer:.1?} dB (left, right), agent {agent:.1?} dB");
        assert!(customer.0 > -20.0 && customer.0 - customer.1 >= 20.0, "customer tone {customer:?}");
        assert!(agent.1 > -20.0 && agent.1 - agent.0 >= 20.0, "agent tone {agent:?}");
    }
    // the mute: ten seconds of silence on the left, where it was; the agent goes on on the right
    let quiet = silences(&left, -60.0, 1.0);
    println!("silences on the left: {quiet:?}");
    assert_eq!(quiet.len(), 1, "{quiet:?}");
    let (start, end) = quiet[0];
    assert!((start - 5.0).abs() <= 0.06 && (end - 15.0).abs() <= 0.06, "silence {start}-{end} s");
    assert!(tone_db(span(&right, 6.0, 14.0), AGENT_HZ) > -20.0);
    assert!(silences(&right, -60.0, 0.2).is_empty(), "the agent's side has no gap");
}

#[tokio::test]
async fn h264_is_kept_in_matroska_and_a_late_joiner_is_silent_before() {
    let mut a = agent();
    a.from = 4.0; // the agent joins four seconds into the recording
    let (_dir, path, outcome) = record(&[customer(Some(true)), a], 10.0).await;
    println!("{outcome:?}");
    let probe = ffprobe(&path);
    let video = streams(&probe, "video");
    assert_eq!(video.len(), 1, "{probe}");
    assert_eq!(
        (video[0]["codec_name"].as_str(), video[0]["width"].as_u64(), video[0]["height"].as_u64()),
        (Some("h264"), Some(320), Some(240))
    );
    assert_eq!(outcome.doc_type, "matroska");
    // every frame decodes
    let out = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&path)
        .args(["-map", "0:v:0", "-f", "null", "-"])
        .output()
        .unwrap();
    assert!(out.status.success() && out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
    let (_, right) = decode_stereo(&path);
    let quiet = silences(&right, -60.0, 1.0);
    assert_eq!(quiet.len(), 1, "{quiet:?}");
    assert!(quiet[0].0 < 0.05 && (quiet[0].1 - 4.0).abs() <= 0.06, "the agent's side is silent until 4 s: {quiet:?}");
}
