//! Known media for the recording tests: Opus tones (libopus, as the hub links it), a VP8 or
//! H.264 test pattern (made once by `ffmpeg`, test-only), and what the tests read back with
//! `ffprobe` and `ffmpeg`: the file's streams, and the level of a tone in each channel.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use bytes::Bytes;
use rtc::rtp::packetizer::Payloader;

pub const RATE: usize = 48_000;
/// Samples in one 20 ms Opus packet.
pub const FRAME: usize = 960;

/// A sine at `freq` Hz, 20 ms Opus packets (mono, 48 kHz, as a browser sends), `seconds` long,
/// at `amplitude` of full scale.
pub fn opus_tone(freq: f64, seconds: f64, amplitude: f64) -> Vec<Bytes> {
    let mut encoder = opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip).unwrap();
    encoder.set_bitrate(opus::Bitrate::Bits(32_000)).unwrap();
    let frames = (seconds * 50.0).round() as usize;
    let mut out = Vec::with_capacity(frames);
    let mut pcm = vec![0i16; FRAME];
    let mut buf = vec![0u8; 1500];
    for f in 0..frames {
        for (i, s) in pcm.iter_mut().enumerate() {
            let t = (f * FRAME + i) as f64 / RATE as f64;
            *s = (amplitude * 32767.0 * (2.0 * std::f64::consts::PI * freq * t).sin()) as i16;
        }
        let n = encoder.encode(&pcm, &mut buf).unwrap();
        out.push(Bytes::copy_from_slice(&buf[..n]));
    }
    out
}

/// Whether ffmpeg and ffprobe are installed (Debian's `ffmpeg`); the tests say how otherwise.
pub fn require_ffmpeg() {
    for tool in ["ffmpeg", "ffprobe"] {
        let found = Command::new(tool).arg("-version").output().is_ok_and(|o| o.status.success());
        assert!(found, "{tool} is missing: the recording tests read files back with it (apt-get install ffmpeg)");
    }
}

/// One encoded video frame of the pattern.
#[derive(Clone)]
pub struct VideoFrame {
    pub data: Bytes,
    pub key: bool,
}

fn ffmpeg(args: &[&str]) {
    let out = Command::new("ffmpeg").args(["-hide_banner", "-loglevel", "error", "-y"]).args(args).output().unwrap();
    assert!(out.status.success(), "ffmpeg {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// 10 s of VP8 test pattern, 320x240, 15 frames/s, a keyframe every second (made once).
pub fn vp8_pattern() -> &'static [VideoFrame] {
    static FRAMES: OnceLock<Vec<VideoFrame>> = OnceLock::new();
    FRAMES.get_or_init(|| {
        require_ffmpeg();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pattern.ivf");
        ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x240:rate=15",
            "-t",
            "10",
            "-c:v",
            "libvpx",
            "-g",
            "15",
            "-deadline",
            "realtime",
            "-b:v",
            "300k",
            path.to_str().unwrap(),
        ]);
        read_ivf(&path)
    })
}

/// The VP8 frames of an IVF file.
fn read_ivf(path: &Path) -> Vec<VideoFrame> {
    let bytes = std::fs::read(path).unwrap();
    let header_len = u16::from_le_bytes([bytes[6], bytes[7]]) as usize;
    let mut frames = Vec::new();
    let mut at = header_len;
    while at + 12 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let data = Bytes::copy_from_slice(&bytes[at + 12..at + 12 + len]);
        let key = data[0] & 1 == 0;
        frames.push(VideoFrame { data, key });
        at += 12 + len;
    }
    frames
}

/// 10 s of a camera-like stream for benchmarks: a moving test pattern with noise (so the
/// encoder spends its bitrate), `size` (e.g. `640x480`), `fps` frames/s, about `kbps`
/// kbit/s (constant bitrate), a keyframe every 2 s; VP8 or, with `h264`, H.264 constrained
/// baseline in Annex B access units.
pub fn camera_stream(size: &str, fps: u32, kbps: u32, h264: bool) -> Vec<VideoFrame> {
    require_ffmpeg();
    let dir = tempfile::tempdir().unwrap();
    let source = format!("testsrc2=size={size}:rate={fps},noise=alls=12:allf=t");
    let (rate, gop) = (format!("{kbps}k"), (fps * 2).to_string());
    let path = dir.path().join(if h264 { "camera.h264" } else { "camera.ivf" });
    let out = path.to_str().unwrap();
    let mut args = vec!["-f", "lavfi", "-i", &source, "-t", "10", "-pix_fmt", "yuv420p", "-g", &gop];
    args.extend(["-b:v", &rate, "-minrate", &rate, "-maxrate", &rate, "-bufsize", &rate]);
    if h264 {
        args.extend(["-c:v", "libx264", "-profile:v", "baseline", "-x264-params", "aud=1", "-f", "h264", out]);
        ffmpeg(&args);
        split_access_units(&std::fs::read(&path).unwrap())
    } else {
        args.extend(["-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8", out]);
        ffmpeg(&args);
        read_ivf(&path)
    }
}

/// An Annex B stream (with access unit delimiters) cut into access units.
fn split_access_units(bytes: &[u8]) -> Vec<VideoFrame> {
    // split on the access unit delimiters (start code + NAL type 9)
    let mut starts = Vec::new();
    for i in 0..bytes.len().saturating_sub(4) {
        if bytes[i..i + 4] == [0, 0, 0, 1] && bytes[i + 4] & 0x1F == 9 {
            starts.push(i);
        }
    }
    starts.push(bytes.len());
    starts
        .windows(2)
        .map(|w| {
            let au = &bytes[w[0]..w[1]];
            let key = au.windows(5).any(|n| n[..4] == [0, 0, 0, 1] && n[4] & 0x1F == 5)
                || au.windows(4).any(|n| n[..3] == [0, 0, 1] && n[3] & 0x1F == 5);
            VideoFrame { data: Bytes::copy_from_slice(au), key }
        })
        .collect()
}

/// 10 s of H.264 test pattern (constrained baseline, Annex B access units with an access unit
/// delimiter each), 320x240, 15 frames/s, an IDR every second (made once).
pub fn h264_pattern() -> &'static [VideoFrame] {
    static FRAMES: OnceLock<Vec<VideoFrame>> = OnceLock::new();
    FRAMES.get_or_init(|| {
        require_ffmpeg();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pattern.h264");
        ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x240:rate=15",
            "-t",
            "10",
            "-pix_fmt",
            "yuv420p",
            "-c:v",
            "libx264",
            "-profile:v",
            "baseline",
            "-g",
            "15",
            "-x264-params",
            "aud=1",
            "-f",
            "h264",
            path.to_str().unwrap(),
        ]);
        split_access_units(&std::fs::read(&path).unwrap())
    })
}

/// RTP payloads of a frame.
pub fn packetize(frame: &VideoFrame, h264: bool) -> Vec<Bytes> {
    if h264 {
        rtc::rtp::codec::h264::H264Payloader::default().payload(1100, &frame.data).unwrap()
    } else {
        rtc::rtp::codec::vp8::Vp8Payloader::default().payload(1100, &frame.data).unwrap()
    }
}

/// `ffprobe -show_streams -show_format` as JSON.
pub fn ffprobe(path: &Path) -> serde_json::Value {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-print_format", "json", "-show_streams", "-show_format"])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "ffprobe: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The audio of a file decoded by ffmpeg to 48 kHz stereo: (left, right).
pub fn decode_stereo(path: &Path) -> (Vec<f64>, Vec<f64>) {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-map", "0:a:0", "-f", "s16le", "-acodec", "pcm_s16le", "-ac", "2", "-ar", "48000", "-"])
        .output()
        .unwrap();
    assert!(out.status.success(), "ffmpeg decode: {}", String::from_utf8_lossy(&out.stderr));
    let samples: Vec<i16> = out.stdout.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect();
    let left = samples.iter().step_by(2).map(|s| f64::from(*s) / 32768.0).collect();
    let right = samples.iter().skip(1).step_by(2).map(|s| f64::from(*s) / 32768.0).collect();
    (left, right)
}

/// The level (dB of full scale, as the RMS of a full-scale sine is -3 dB) of `freq` Hz in
/// `samples` (Goertzel), -200 for silence.
pub fn tone_db(samples: &[f64], freq: f64) -> f64 {
    if samples.is_empty() {
        return -200.0;
    }
    let w = 2.0 * std::f64::consts::PI * freq / RATE as f64;
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0, 0.0);
    for x in samples {
        let s0 = x + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    let amplitude = 2.0 * power.sqrt() / samples.len() as f64;
    if amplitude <= 0.0 { -200.0 } else { 20.0 * (amplitude / std::f64::consts::SQRT_2).log10() }
}

/// The RMS level of `samples` in dB of full scale, -200 for digital silence.
pub fn rms_db(samples: &[f64]) -> f64 {
    if samples.is_empty() {
        return -200.0;
    }
    let rms = (samples.iter().map(|s| s * s).sum::<f64>() / samples.len() as f64).sqrt();
    if rms <= 0.0 { -200.0 } else { 20.0 * rms.log10() }
}

/// The samples of `channel` between `from` and `to` seconds.
pub fn span(channel: &[f64], from: f64, to: f64) -> &[f64] {
    let a = ((from * RATE as f64) as usize).min(channel.len());
    let b = ((to * RATE as f64) as usize).min(channel.len());
    &channel[a..b]
}

/// The silent stretches (RMS under `floor` dB per 20 ms window) of a channel longer than
/// `min` seconds, as (start, end) in seconds.
pub fn silences(channel: &[f64], floor: f64, min: f64) -> Vec<(f64, f64)> {
    let window = FRAME;
    let mut out = Vec::new();
    let mut start = None;
    let n = channel.len() / window;
    for w in 0..=n {
        let quiet = w < n && rms_db(&channel[w * window..(w + 1) * window]) < floor;
        let t = (w * window) as f64 / RATE as f64;
        match (quiet, start) {
            (true, None) => start = Some(t),
            (false, Some(s)) => {
                if t - s >= min {
                    out.push((s, t));
                }
                start = None;
            }
            _ => {}
        }
    }
    out
}

/// A participant of a synthetic call fed straight into the spool.
#[derive(Clone)]
pub struct SyntheticSender {
    pub peer: u64,
    pub role: video::recording::spool::TrackRole,
    /// The tone of its voice (Hz); its audio starts at `from` and stops at `to` (seconds).
    pub tone: f64,
    pub from: f64,
    pub to: f64,
    /// Spans (seconds) in which it sends no audio (muted), the timestamps running on.
    pub mute: Vec<(f64, f64)>,
    /// Whether it sends the video pattern (VP8 or H.264).
    pub video: Option<bool>,
    /// Its wall clock (the sender reports' NTP) minus the SFU's, seconds.
    pub clock_offset: f64,
    /// One-way delay to the SFU, ms, and the jitter on top (0 to this, ms).
    pub delay_ms: f64,
    pub jitter_ms: f64,
}

/// NTP time of `seconds` after a day in 2025 (a sender's wall clock).
fn ntp(seconds: f64) -> u64 {
    let seconds = seconds + 1_750_000_000.0;
    let secs = seconds.floor();
    ((secs as u64 + 2_208_988_800) << 32) | (((seconds - secs) * 4_294_967_296.0) as u64)
}

/// Feeds `seconds` of `sender`'s media into recording `id` of `spool` as the SFU would
/// (arrival times from `t0`, sender reports every second), waiting for room in the queue
/// (nothing is dropped). Calls `tick(second)` after each simulated second of this sender.
pub fn feed(
    spool: &video::recording::spool::Spool,
    id: uuid::Uuid,
    t0: std::time::Instant,
    sender: &SyntheticSender,
    seconds: f64,
    mut tick: impl FnMut(u64),
) {
    use video::recording::spool::TrackKey;
    use video::sfu::router::Source;
    let jitter = |n: u64| (n.wrapping_mul(2_654_435_761) % 1000) as f64 / 1000.0 * sender.jitter_ms;
    let at = |t: f64, n: u64| t0 + std::time::Duration::from_secs_f64(t + (sender.delay_ms + jitter(n)) / 1000.0);
    let tone = opus_tone(sender.tone, 1.0, 0.3);
    let audio = TrackKey { peer: sender.peer, role: sender.role, source: Source::Audio };
    let camera = TrackKey { peer: sender.peer, role: sender.role, source: Source::Camera };
    let (ats0, vts0) = (1_000u32, 5_000u32);
    let (mut aseq, mut vseq) = (100u16, 7_000u16);
    let frames = match sender.video {
        Some(true) => h264_pattern(),
        Some(false) => vp8_pattern(),
        None => &[],
    };
    let mut n = 0u64;
    let mut second = 0u64;
    // 20 ms steps; video frames at 15/s fall between them
    let steps = (seconds * 50.0).round() as u64;
    let mut next_frame = 0u64;
    for step in 0..steps {
        let t = step as f64 / 50.0;
        let ts = ats0.wrapping_add((step * 960) as u32);
        let sending = t >= sender.from && t < sender.to && !sender.mute.iter().any(|(a, b)| t >= *a && t < *b);
        if sending {
            let header = rtc::rtp::header::Header {
                sequence_number: aseq,
                timestamp: ts,
                ssrc: 0xA000 + sender.peer as u32,
                payload_type: 111,
                marker: false,
                ..Default::default()
            };
            aseq = aseq.wrapping_add(1);
            n += 1;
            spool.packet_wait(id, audio, at(t, n), &header, &tone[(step % 50) as usize]);
        }
        // video frames due before the next step
        while !frames.is_empty() && (next_frame as f64) / 15.0 < t + 0.02 {
            let ft = next_frame as f64 / 15.0;
            if ft >= sender.from && ft < sender.to {
                let frame = &frames[(next_frame % frames.len() as u64) as usize];
                let h264 = sender.video == Some(true);
                let payloads = packetize(frame, h264);
                let vts = vts0.wrapping_add((next_frame * 6000) as u32);
                let last = payloads.len() - 1;
                for (i, p) in payloads.iter().enumerate() {
                    let header = rtc::rtp::header::Header {
                        sequence_number: vseq,
                        timestamp: vts,
                        ssrc: 0xB000 + sender.peer as u32,
                        payload_type: if h264 { 102 } else { 96 },
                        marker: i == last,
                        ..Default::default()
                    };
                    vseq = vseq.wrapping_add(1);
                    n += 1;
                    spool.packet_wait(id, camera, at(ft, n), &header, p);
                }
            }
            next_frame += 1;
        }
        // a sender report per stream every second, from the sender's own clock
        if step % 50 == 49 && t >= sender.from && t < sender.to {
            let wall = t + sender.clock_offset;
            spool.sender_report_wait(id, audio, at(t, n), 0xA000 + sender.peer as u32, ntp(wall), ts);
            if !frames.is_empty() {
                let vts = vts0.wrapping_add((t * 90_000.0) as u32);
                spool.sender_report_wait(id, camera, at(t, n), 0xB000 + sender.peer as u32, ntp(wall), vts);
            }
            second += 1;
            tick(second);
        }
    }
}
