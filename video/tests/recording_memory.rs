//! A long call (both voices, the customer's VP8 video) spooled at full speed with synthetic
//! media, then processed into its file: the process's resident memory is sampled all along and
//! stays flat (a test binary of its own, so no other test moves it). The suite runs a
//! 20-minute call (about 20 s in a debug build); the hour is an ignored test of its own (about a
//! minute): `cargo test -p video --test recording_memory -- --ignored --nocapture` (run it
//! with `--ignored`, not `--include-ignored`: two at once would share the process's memory).

mod support;

use std::time::{Duration, Instant};

use support::media::{self, SyntheticSender, ffprobe};
use video::recording::process::{Options, process};
use video::recording::spool::{Spool, TrackRole};

fn sender(peer: u64, role: TrackRole, tone: f64, video: Option<bool>) -> SyntheticSender {
    SyntheticSender {
        peer,
        role,
        tone,
        from: 0.0,
        to: f64::MAX,
        mute: Vec::new(),
        video,
        clock_offset: peer as f64 * 2.5,
        delay_ms: 20.0,
        jitter_ms: 20.0,
    }
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Twenty minutes of a call: memory stays flat while spooling and processing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_twenty_minute_call_keeps_memory_flat() {
    call_keeps_memory_flat(1200.0).await;
}

/// An hour of a call, the same way (long: ignored in the suite).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long: cargo test -p video --test recording_memory -- --ignored --nocapture"]
async fn an_hour_long_call_keeps_memory_flat() {
    call_keeps_memory_flat(3600.0).await;
}

/// A call of `seconds` (both voices, the customer's VP8 video) spooled at full speed, then
/// processed: resident memory is sampled all along and must stay flat (within 16 MiB of its
/// level after the first simulated minutes), whatever the length.
async fn call_keeps_memory_flat(seconds: f64) {
    media::require_ffmpeg();
    media::vp8_pattern();
    let dir = tempfile::tempdir().unwrap();
    let spool_dir = dir.path().join("spool");
    std::fs::create_dir_all(&spool_dir).unwrap();
    let spool = Spool::start();
    let id = uuid::Uuid::new_v4();
    let t0 = Instant::now();
    spool.start_recording(id, spool_dir.clone(), t0);
    let started = Instant::now();
    // both senders at once, from two threads, sampling memory as they go
    let samples = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut feeders = Vec::new();
    for sender in [sender(1, TrackRole::Customer, 440.0, Some(false)), sender(2, TrackRole::Agent, 1000.0, None)] {
        let (spool, samples) = (spool.clone(), samples.clone());
        feeders.push(tokio::task::spawn_blocking(move || {
            media::feed(&spool, id, t0, &sender, seconds, |second| {
                if second % 60 == 0 {
                    samples.lock().unwrap().push((second, rss_kib()));
                }
            })
        }));
    }
    for f in feeders {
        f.await.unwrap();
    }
    let spooled = spool.stop_recording(id).await.unwrap();
    let spool_time = started.elapsed();

    let out = dir.path().join("call.webm");
    let options = Options { end_us: (seconds * 1e6) as i64, ..Options::default() };
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut peak = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(rss_kib());
                std::thread::sleep(Duration::from_millis(50));
            }
            peak
        })
    };
    let processing = Instant::now();
    let (o, p) = (out.clone(), spool_dir.clone());
    let outcome = tokio::task::spawn_blocking(move || process(&p, &o, &options)).await.unwrap().unwrap();
    let processing = processing.elapsed();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let peak_processing = sampler.join().unwrap();

    let samples = samples.lock().unwrap().clone();
    let file = std::fs::metadata(&out).unwrap().len();
    let baseline = samples.iter().find(|(s, _)| *s >= 300.min(seconds as u64 / 4)).map_or(samples[0].1, |s| s.1);
    let peak_spooling = samples.iter().map(|(_, r)| *r).max().unwrap();
    println!(
        "{seconds} s of call: spooled {spooled} bytes in {spool_time:.1?}; processed in {processing:.1?} \
         ({:.2} s per minute of call) into {file} bytes; RSS after the first minutes {baseline} KiB, \
         peak while spooling {peak_spooling} KiB, peak while processing {peak_processing} KiB; {outcome:?}",
        processing.as_secs_f64() / (seconds / 60.0)
    );
    println!("RSS samples (simulated second, KiB): {samples:?}");
    assert!(peak_spooling <= baseline + 16 * 1024, "spooling grew memory: {samples:?}");
    assert!(peak_processing <= baseline + 16 * 1024, "processing grew memory to {peak_processing} KiB");
    let probe = ffprobe(&out);
    let duration: f64 = probe["format"]["duration"].as_str().unwrap().parse().unwrap();
    assert!((duration - seconds).abs() < 0.1, "{duration}");
}
