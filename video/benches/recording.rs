//! What recording costs, printed, not asserted: how many recorded calls one core carries, and
//! the post-call processing time per minute of call.
//!
//! Synthetic calls, as the SFU hands them to the recorder (`video/src/recording/`): the
//! customer's voice (Opus, 50 packets/s), the customer's camera (640x480, 30 frames/s, VP8 at
//! about 1 Mbit/s by default: a noisy moving pattern made once by `ffmpeg`, a test-only tool, cut
//! into RTP packets of at most 1,100 bytes) and the agent's voice (a tone each), with a sender
//! report per stream every second from clocks that disagree with the SFU's, 20 ms of delay and
//! up to 20 ms of jitter. (The agent's camera, and the supervisor, are not recorded.)
//!
//! 1. **Spooling**, what runs while the calls run: `RECORDING_BENCH_CALLS` calls (default 50)
//!    of `RECORDING_BENCH_SECONDS` (120) each, interleaved in time as if they ran together, go
//!    through one `Spool` (one writer thread, as in the hub) as fast as it takes them
//!    (`packet_wait`, so nothing is dropped). Measured: the CPU time of the writer thread, and of
//!    the thread that feeds it (in the hub that side is the SFU's `try_send` of each packet; here
//!    the thread also makes the packets, so its figure is an upper bound), from
//!    `/proc/self/task/<tid>/schedstat`, per minute of call.
//! 2. **Processing**, after each call: each recording in turn on one thread, as the Recorder's
//!    one worker does (`process::process`: decode both voices, encode the stereo track, assemble
//!    the video frames, write the Matroska file; the upload is not included). Measured: wall and
//!    CPU time per minute of call.
//!
//! Per core = 60 s / CPU seconds per minute of call: recorded calls one core carries while they
//! run (spooling alone), and in a steady state where every call is also processed after it ends
//! (spooling and processing). The writes go to the page cache; the kernel's writeback to the
//! disk runs in its own threads and is not counted.
//!
//! `eval "$(deploy/services.sh env)"` is not needed (no database). Run:
//! `cargo bench -p video --bench recording`; `RECORDING_BENCH_CALLS`,
//! `RECORDING_BENCH_SECONDS`, `RECORDING_BENCH_CODEC` (`vp8` or `h264`),
//! `RECORDING_BENCH_VIDEO_KBPS` (1000) and `RECORDING_BENCH_COMPLEXITY` (the stereo encoder's,
//! `video.recording.audio_complexity`: 5) change it. Figures: docs/benchmarks.md.

#[path = "../tests/support/media.rs"]
mod media;

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use media::{VideoFrame, camera_stream, opus_tone, packetize};
use video::recording::process::{Options, process};
use video::recording::spool::{Spool, TrackKey, TrackRole};
use video::sfu::router::Source;

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The CPU time of a thread so far, in seconds: the first field of its `schedstat` (ns).
fn cpu_of(schedstat: &Path) -> f64 {
    let text = std::fs::read_to_string(schedstat).unwrap_or_default();
    text.split_whitespace().next().and_then(|ns| ns.parse::<f64>().ok()).unwrap_or(0.0) / 1e9
}

/// The `schedstat` file of this process's thread named `name`.
fn thread_schedstat(name: &str) -> Option<std::path::PathBuf> {
    std::fs::read_dir("/proc/self/task").ok()?.flatten().find_map(|task| {
        let comm = std::fs::read_to_string(task.path().join("comm")).ok()?;
        (comm.trim() == name).then(|| task.path().join("schedstat"))
    })
}

/// NTP time of `seconds` after a day in 2025 (a sender's wall clock).
fn ntp(seconds: f64) -> u64 {
    let seconds = seconds + 1_750_000_000.0;
    let secs = seconds.floor();
    ((secs as u64 + 2_208_988_800) << 32) | (((seconds - secs) * 4_294_967_296.0) as u64)
}

/// One synthetic call's streams and their state.
struct Call {
    id: uuid::Uuid,
    /// (track, SSRC, next sequence number) of each recorded stream
    customer_audio: (TrackKey, u32, u16),
    agent_audio: (TrackKey, u32, u16),
    camera: (TrackKey, u32, u16),
    /// The senders' clocks minus the SFU's, s.
    customer_clock: f64,
    agent_clock: f64,
    /// The frame the camera sends next.
    frame: u64,
}

fn header(seq: u16, ts: u32, ssrc: u32, pt: u8, marker: bool) -> rtc::rtp::header::Header {
    rtc::rtp::header::Header {
        sequence_number: seq,
        timestamp: ts,
        ssrc,
        payload_type: pt,
        marker,
        ..Default::default()
    }
}

fn main() {
    let calls: usize = env("RECORDING_BENCH_CALLS", 50);
    let seconds: u64 = env("RECORDING_BENCH_SECONDS", 120);
    let h264 = std::env::var("RECORDING_BENCH_CODEC").is_ok_and(|c| c.eq_ignore_ascii_case("h264"));
    let kbps: u32 = env("RECORDING_BENCH_VIDEO_KBPS", 1000);
    let complexity: i32 = env("RECORDING_BENCH_COMPLEXITY", Options::default().complexity);
    let fps = 30u64;

    let frames: Vec<VideoFrame> = camera_stream("640x480", fps as u32, kbps, h264);
    let packets: Vec<Vec<Bytes>> = frames.iter().map(|f| packetize(f, h264)).collect();
    let video_bytes: usize = packets.iter().flatten().map(Bytes::len).sum();
    let video_packets: usize = packets.iter().map(Vec::len).sum();
    let clip = frames.len() as f64 / fps as f64;
    let customer_tone = opus_tone(440.0, 1.0, 0.3);
    let agent_tone = opus_tone(1000.0, 1.0, 0.3);
    let codec = if h264 { "H.264" } else { "VP8" };
    println!(
        "recording benchmark: {calls} calls of {seconds} s; customer camera {codec} 640x480 {fps} fps, \
         {:.0} kbit/s in {:.0} packets/s; Opus 50 packets/s from the customer and the agent; {} cores",
        video_bytes as f64 * 8.0 / clip / 1000.0,
        video_packets as f64 / clip,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
    );

    let dir = tempfile::Builder::new().prefix("recording-bench-").tempdir().unwrap();
    let spool = Spool::start();
    // the thread names itself once it runs
    let deadline = Instant::now() + Duration::from_secs(5);
    let writer = loop {
        match thread_schedstat("recording-spool") {
            Some(stat) => break stat,
            None if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            None => panic!("no thread named recording-spool: the spool's writer"),
        }
    };
    let feeder = Path::new("/proc/thread-self/schedstat");
    let t0 = Instant::now();
    let mut all: Vec<Call> = (0..calls)
        .map(|i| {
            let peer = i as u64 * 2;
            let id = uuid::Uuid::new_v4();
            let call_dir = dir.path().join(id.to_string());
            std::fs::create_dir_all(&call_dir).unwrap();
            spool.start_recording(id, call_dir, t0);
            let key = |peer, role, source| TrackKey { peer, role, source };
            Call {
                id,
                customer_audio: (key(peer, TrackRole::Customer, Source::Audio), 0xA000 + i as u32, 100),
                agent_audio: (key(peer + 1, TrackRole::Agent, Source::Audio), 0xC000 + i as u32, 200),
                camera: (key(peer, TrackRole::Customer, Source::Camera), 0xB000 + i as u32, 7000),
                customer_clock: 3.7 + i as f64,
                agent_clock: -120.25 - i as f64,
                frame: (i as u64 * 7) % frames.len() as u64,
            }
        })
        .collect();

    // 1. spooling
    let (writer0, feeder0, wall0) = (cpu_of(&writer), cpu_of(feeder), Instant::now());
    let jitter = |n: u64| (n.wrapping_mul(2_654_435_761) % 1000) as f64 / 1000.0 * 20.0;
    let at = |t: f64, n: u64| t0 + Duration::from_secs_f64(t + (20.0 + jitter(n)) / 1000.0);
    let mut n = 0u64;
    let mut next_frame = 0u64;
    for step in 0..seconds * 50 {
        let t = step as f64 / 50.0;
        let ats = 1_000u32.wrapping_add((step * 960) as u32);
        for call in &mut all {
            for ((track, ssrc, seq), tone) in
                [(&mut call.customer_audio, &customer_tone), (&mut call.agent_audio, &agent_tone)]
            {
                n += 1;
                let h = header(*seq, ats, *ssrc, 111, false);
                *seq = seq.wrapping_add(1);
                spool.packet_wait(call.id, *track, at(t, n), &h, &tone[(step % 50) as usize]);
            }
        }
        // camera frames due before the next step
        while (next_frame as f64) / (fps as f64) < t + 0.02 {
            let ft = next_frame as f64 / fps as f64;
            let vts = 5_000u32.wrapping_add((next_frame * 90_000 / fps) as u32);
            for call in &mut all {
                let payloads = &packets[(call.frame % packets.len() as u64) as usize];
                call.frame += 1;
                let (track, ssrc, seq) = &mut call.camera;
                for (i, p) in payloads.iter().enumerate() {
                    n += 1;
                    let h = header(*seq, vts, *ssrc, if h264 { 102 } else { 96 }, i == payloads.len() - 1);
                    *seq = seq.wrapping_add(1);
                    spool.packet_wait(call.id, *track, at(ft, n), &h, p);
                }
            }
            next_frame += 1;
        }
        // a sender report per stream every second, from the sender's own clock
        if step % 50 == 49 {
            for call in &all {
                let vts = 5_000u32.wrapping_add((t * 90_000.0) as u32);
                let (ca, aa, cam) = (call.customer_audio, call.agent_audio, call.camera);
                spool.sender_report_wait(call.id, ca.0, at(t, n), ca.1, ntp(t + call.customer_clock), ats);
                spool.sender_report_wait(call.id, aa.0, at(t, n), aa.1, ntp(t + call.agent_clock), ats);
                spool.sender_report_wait(call.id, cam.0, at(t, n), cam.1, ntp(t + call.customer_clock), vts);
            }
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let mut spooled = 0u64;
    for call in &all {
        spooled += rt.block_on(spool.stop_recording(call.id)).unwrap();
    }
    let wall = wall0.elapsed().as_secs_f64();
    let (writer_cpu, feeder_cpu) = (cpu_of(&writer) - writer0, cpu_of(feeder) - feeder0);
    let call_minutes = (calls as u64 * seconds) as f64 / 60.0;
    let records = spool.counters.packets.load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "\n1. spooling {call_minutes:.1} minutes of call ({records} records, {:.1} MB) in {wall:.2} s: \
         {:.0} records/s through one writer thread",
        spooled as f64 / 1e6,
        records as f64 / wall
    );
    let writer_per_min = writer_cpu / call_minutes;
    let feeder_per_min = feeder_cpu / call_minutes;
    println!(
        "   CPU per minute of call: writer {:.1} ms, feeder {:.1} ms (upper bound of the SFU's side); \
         spool {:.1} MB per minute of call",
        writer_per_min * 1000.0,
        feeder_per_min * 1000.0,
        spooled as f64 / 1e6 / call_minutes
    );
    let spool_per_min = writer_per_min + feeder_per_min;
    println!("   recorded calls per core while they run (spooling alone): {:.0}", 60.0 / spool_per_min);

    // 2. processing
    let mut process_cpu = 0.0;
    let mut process_wall = 0.0;
    let mut file_bytes = 0u64;
    let mut slowest: f64 = 0.0;
    for call in &all {
        let call_dir = dir.path().join(call.id.to_string());
        let out = dir.path().join(format!("{}.mkv", call.id));
        let options = Options { end_us: (seconds * 1_000_000) as i64, complexity, ..Options::default() };
        let (c0, w0) = (cpu_of(feeder), Instant::now());
        let outcome = process(&call_dir, &out, &options).expect("processing");
        let (c, w) = (cpu_of(feeder) - c0, w0.elapsed().as_secs_f64());
        assert!(outcome.video_frames > 0 && outcome.audio_frames > 0, "{outcome:?}");
        process_cpu += c;
        process_wall += w;
        slowest = slowest.max(w);
        file_bytes += std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
        let _ = std::fs::remove_dir_all(&call_dir);
        let _ = std::fs::remove_file(&out);
    }
    let process_per_min = process_cpu / call_minutes;
    println!(
        "\n2. processing {calls} recordings of {seconds} s one after the other (Opus complexity {complexity}): \
         {:.2} s of CPU and {:.2} s of wall time per minute of call (slowest recording {slowest:.2} s); files {:.1} MB \
         per minute of call",
        process_per_min,
        process_wall / call_minutes,
        file_bytes as f64 / 1e6 / call_minutes
    );
    println!(
        "   a call of one hour is ready {:.0} s after it ends (one worker, this machine)",
        process_wall / call_minutes * 60.0
    );
    println!(
        "\nrecorded calls per core: {:.0} while they run (spooling), {:.0} with every call also processed \
         after it ends ({:.2} s of CPU per minute of call)",
        60.0 / spool_per_min,
        60.0 / (spool_per_min + process_per_min),
        spool_per_min + process_per_min
    );
}
