//! The SFU's own measure of each participant's connection, from what it receives and sends:
//! loss and jitter of the participant's streams (RFC 3550, per interval), the bitrates both
//! ways, and the round-trip time its receiver reports give. Every [`INTERVAL`] the SFU takes a
//! [`Quality`] of each connected participant: the call pages show it (the quality indicator)
//! and the call records keep it. No clock of its own: fed arrival times.
//!
//! Levels (docs/video.md, Quality): **poor** when loss ≥ 8 %, round trip ≥ 400 ms, jitter ≥
//! 60 ms, or a camera that sends under 30 kbit/s; else **fair** when loss ≥ 2 %, round trip ≥
//! 200 ms, jitter ≥ 30 ms, or a camera under 100 kbit/s; else **good**.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::router::Source;

/// How often a participant's quality is taken.
pub const INTERVAL: Duration = Duration::from_secs(2);

/// good / fair / poor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Good,
    Fair,
    Poor,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Good => "good",
            Level::Fair => "fair",
            Level::Poor => "poor",
        }
    }
}

/// One participant's connection over the last interval.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Quality {
    pub level: Level,
    /// Of the packets the participant sent the SFU: per stream, expected minus received (a
    /// retransmission that repaired a loss counts as received), summed over audio and video.
    pub loss_pct: f64,
    /// Of the participant's audio (its video's when it sends no audio), ms.
    pub jitter_ms: f64,
    pub rtt_ms: Option<f64>,
    /// What the SFU received from the participant and sent to it, kbit/s.
    pub bitrate_in_kbps: f64,
    pub bitrate_out_kbps: f64,
    /// The camera's share of `bitrate_in_kbps`, when the camera sends.
    pub video_kbps: Option<f64>,
}

/// The level for these measures (see the module's doc).
pub fn level(loss_pct: f64, rtt_ms: Option<f64>, jitter_ms: f64, video_kbps: Option<f64>) -> Level {
    let rtt = rtt_ms.unwrap_or(0.0);
    if loss_pct >= 8.0 || rtt >= 400.0 || jitter_ms >= 60.0 || video_kbps.is_some_and(|v| v < 30.0) {
        Level::Poor
    } else if loss_pct >= 2.0 || rtt >= 200.0 || jitter_ms >= 30.0 || video_kbps.is_some_and(|v| v < 100.0) {
        Level::Fair
    } else {
        Level::Good
    }
}

/// Loss, jitter and bytes of one received stream.
#[derive(Debug, Clone, Default)]
pub struct Meter {
    clock: f64,
    epoch: Option<Instant>,
    /// Extended highest sequence number, and its value at the interval's start.
    highest: Option<i64>,
    start: Option<i64>,
    received: u64,
    bytes: u64,
    jitter: f64,
    last_transit: Option<f64>,
    ssrc: u32,
}

/// What one stream did over an interval.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Interval {
    pub expected: u64,
    pub received: u64,
    pub bytes: u64,
    /// RFC 3550's running estimate, ms.
    pub jitter_ms: f64,
}

impl Meter {
    pub fn new(clock: u32) -> Self {
        Meter { clock: f64::from(clock), ..Meter::default() }
    }

    /// A packet arrived at `at`.
    pub fn packet(&mut self, ssrc: u32, seq: u16, ts: u32, bytes: usize, at: Instant) {
        if self.ssrc != ssrc {
            // a new sender on this source: start over
            *self = Meter { clock: self.clock, ssrc, ..Meter::default() };
        }
        let ext = match self.highest {
            None => i64::from(seq),
            Some(h) => h + i64::from(seq.wrapping_sub(h as u16) as i16),
        };
        if self.start.is_none() {
            self.start = Some(ext - 1);
        }
        if self.highest.is_none_or(|h| ext > h) {
            self.highest = Some(ext);
        }
        self.received += 1;
        self.bytes += bytes as u64;
        let epoch = *self.epoch.get_or_insert(at);
        let arrival = at.saturating_duration_since(epoch).as_secs_f64() * self.clock;
        let transit = arrival - f64::from(ts);
        if let Some(last) = self.last_transit {
            let mut d = (transit - last).abs();
            // a timestamp that wrapped or jumped (a new talk spurt after a long pause) is no jitter
            if d > self.clock {
                d = 0.0;
            }
            self.jitter += (d - self.jitter) / 16.0;
        }
        self.last_transit = Some(transit);
    }

    /// The interval since the last call, and starts the next.
    pub fn take(&mut self) -> Interval {
        let expected = match (self.start, self.highest) {
            (Some(s), Some(h)) => (h - s).max(0) as u64,
            _ => 0,
        };
        let out = Interval {
            expected,
            received: self.received,
            bytes: self.bytes,
            jitter_ms: if self.clock > 0.0 { self.jitter / self.clock * 1000.0 } else { 0.0 },
        };
        self.start = self.highest;
        self.received = 0;
        self.bytes = 0;
        out
    }
}

/// Every meter of one participant.
#[derive(Debug, Clone)]
pub struct PeerMeters {
    pub audio: Meter,
    pub camera: Meter,
    pub screen: Meter,
    /// Bytes the SFU sent the participant since the last sample.
    pub bytes_out: u64,
    last: Option<Instant>,
}

impl Default for PeerMeters {
    fn default() -> Self {
        PeerMeters {
            audio: Meter::new(48_000),
            camera: Meter::new(90_000),
            screen: Meter::new(90_000),
            bytes_out: 0,
            last: None,
        }
    }
}

impl PeerMeters {
    pub fn source(&mut self, source: Source) -> &mut Meter {
        match source {
            Source::Audio => &mut self.audio,
            Source::Camera => &mut self.camera,
            Source::Screen => &mut self.screen,
        }
    }

    /// The participant's quality since the last sample (its first sample counts from `since`).
    pub fn sample(&mut self, now: Instant, since: Instant, rtt_ms: Option<f64>) -> Quality {
        let seconds = now.saturating_duration_since(self.last.unwrap_or(since)).as_secs_f64().max(0.001);
        self.last = Some(now);
        let (a, c, s) = (self.audio.take(), self.camera.take(), self.screen.take());
        // lost per stream: a camera's retransmissions (and any duplicates) may outnumber its
        // losses, and must not hide the voice's
        let expected = a.expected + c.expected + s.expected;
        let lost: u64 = [&a, &c, &s].iter().map(|i| i.expected.saturating_sub(i.received)).sum();
        let loss_pct = if expected == 0 { 0.0 } else { lost as f64 * 100.0 / expected as f64 };
        let jitter_ms = if a.received > 0 { a.jitter_ms } else { c.jitter_ms };
        let kbps = |bytes: u64| bytes as f64 * 8.0 / 1000.0 / seconds;
        let video_kbps = (c.received > 0).then(|| kbps(c.bytes));
        let bytes_out = std::mem::take(&mut self.bytes_out);
        Quality {
            level: level(loss_pct, rtt_ms, jitter_ms, video_kbps),
            loss_pct,
            jitter_ms,
            rtt_ms,
            bitrate_in_kbps: kbps(a.bytes + c.bytes + s.bytes),
            bitrate_out_kbps: kbps(bytes_out),
            video_kbps,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_follow_the_documented_thresholds() {
        assert_eq!(level(0.0, Some(40.0), 5.0, Some(800.0)), Level::Good);
        assert_eq!(level(0.0, None, 5.0, None), Level::Good, "no camera, no round trip yet");
        assert_eq!(level(2.0, Some(40.0), 5.0, None), Level::Fair);
        assert_eq!(level(0.0, Some(250.0), 5.0, None), Level::Fair);
        assert_eq!(level(0.0, None, 35.0, None), Level::Fair);
        assert_eq!(level(0.0, None, 5.0, Some(80.0)), Level::Fair, "a starved camera");
        assert_eq!(level(10.0, None, 5.0, None), Level::Poor);
        assert_eq!(level(0.0, Some(450.0), 5.0, None), Level::Poor);
        assert_eq!(level(0.0, None, 5.0, Some(20.0)), Level::Poor);
    }

    #[test]
    fn loss_jitter_and_bitrate_over_an_interval() {
        let t0 = Instant::now();
        let mut m = PeerMeters::default();
        // 2 s of audio, 50 packets/s of 100 bytes, every tenth lost, arriving on time
        for i in 0..100u16 {
            if i % 10 == 3 {
                continue;
            }
            let at = t0 + Duration::from_millis(u64::from(i) * 20);
            m.source(Source::Audio).packet(1, 1000 + i, u32::from(i) * 960, 100, at);
        }
        m.bytes_out = 250_000;
        let q = m.sample(t0 + Duration::from_secs(2), t0, Some(50.0));
        assert!((q.loss_pct - 10.0).abs() < 1.5, "{q:?}");
        assert!(q.jitter_ms < 1.0, "{q:?}");
        assert!((q.bitrate_in_kbps - 36.0).abs() < 1.0, "{q:?}");
        assert!((q.bitrate_out_kbps - 1000.0).abs() < 1.0, "{q:?}");
        assert_eq!((q.level, q.video_kbps), (Level::Poor, None));

        // the next interval: late arrivals (0 or 40 ms) make jitter, no loss
        for i in 100..200u16 {
            let late = if i % 2 == 0 { 40 } else { 0 };
            let at = t0 + Duration::from_millis(u64::from(i) * 20 + late);
            m.source(Source::Audio).packet(1, 1000 + i, u32::from(i) * 960, 100, at);
        }
        let q = m.sample(t0 + Duration::from_secs(4), t0, None);
        assert_eq!(q.loss_pct, 0.0);
        assert!(q.jitter_ms > 30.0, "{q:?}");
        assert_eq!(q.level, Level::Fair);

        // a lossy network: 15 % of the voice lost; the camera's losses repaired by
        // retransmissions, plus duplicates: more camera packets arrive than were expected, which
        // must not hide the voice's losses
        for i in 200..300u16 {
            let at = t0 + Duration::from_millis(u64::from(i) * 20);
            if i % 20 >= 3 {
                m.source(Source::Audio).packet(1, 1000 + i, u32::from(i) * 960, 100, at);
            }
            m.source(Source::Camera).packet(2, 5000 + i, u32::from(i) * 3000, 1000, at);
            if i % 5 == 0 {
                // a resent packet
                m.source(Source::Camera).packet(2, 5000 + i - 2, u32::from(i - 2) * 3000, 1000, at);
            }
        }
        let q = m.sample(t0 + Duration::from_secs(6), t0, None);
        assert!((q.loss_pct - 7.5).abs() < 1.0, "15 of 200 packets: {q:?}");
        assert_eq!(q.level, Level::Fair);
    }
}
