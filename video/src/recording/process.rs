//! After the call: a recording's spooled streams become one Matroska file with the customer's
//! video as it was sent (VP8 or H.264, not re-encoded) and one stereo Opus track, the
//! customer's voice on the left channel and the agent's on the right.
//!
//! **Time.** Every stream is placed on one timeline, the SFU's clock from the recording's
//! start. A packet's RTP timestamp is first turned into its sender's clock: through the
//! stream's RTCP sender reports (NTP time for an RTP timestamp) when it has any, which puts a
//! participant's audio and video on one clock (lip sync), else through the RTP clock alone.
//! That clock is then tied to the SFU's by the lower envelope of `arrival - sender time` over
//! every packet of that sender (the least-delayed packets show the clock offset; the envelope
//! is taken per 10 s window, smoothed over ±30 s, so a sender clock that drifts is followed).
//! Positions come from timestamps, never from arrival times, so network jitter does not move
//! a sample, and a gap in timestamps (mute, a track turned off, a participant who joined late
//! or reconnected) stays a gap: silence on its channel, not a shift of what follows.
//!
//! **Audio.** Each participant's Opus is decoded (libopus) to 48 kHz mono, a short loss (up to
//! 120 ms) concealed by the decoder, and written at its position into its channel of a stereo
//! buffer that is encoded (libopus, 20 ms frames) as soon as every stream has moved past a
//! frame. The buffer holds a few frames whatever the call's length.
//!
//! **Video.** Packets are put back in order (a small window), assembled into frames, and a
//! frame with a missing packet and everything after it up to the next keyframe is left out
//! (a decoder could not show it). The stream starts at its first keyframe.
//!
//! Memory is bounded: the spool is read twice (once for the headers, to find the clocks, once
//! in full) through 64 KiB buffers, and the Matroska writer holds one cluster.

use std::collections::BTreeMap;
use std::io::{self, BufWriter};
use std::path::Path;

use bytes::Bytes;
use rtc::rtp::packetizer::Depacketizer;

use super::mkv::{self, Codec, Track};
use super::spool::{self, Record, StreamFile, TrackRole};
use crate::sfu::router::Source;

/// 48 kHz: Opus's clock, and the output's sample rate.
pub const RATE: i64 = 48_000;
/// One output audio frame: 20 ms.
pub const FRAME: usize = 960;
/// The payload types of the SFU's offer (`sfu::engine`).
pub const PT_OPUS: u8 = 111;
pub const PT_VP8: u8 = 96;
pub const PT_H264: u8 = 102;

/// What goes into a recording's file.
#[derive(Debug, Clone)]
pub struct Options {
    /// The recording's length in µs (from its start to the end of the call): the audio track
    /// covers all of it, silent where nobody spoke.
    pub end_us: i64,
    /// Mix the supervisor's voice into the agent's (right) channel.
    pub supervisor: bool,
    /// Add the customer's screen share as a second video track.
    pub screen: bool,
    /// The stereo Opus bitrate, bits per second.
    pub bitrate: i32,
    /// libopus's encoder complexity, 0 (fastest) to 10.
    pub complexity: i32,
    /// The file's title (Matroska `Title`).
    pub title: String,
    /// Wall-clock time of the recording's start, ns since the epoch.
    pub started_unix_ns: i64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            end_us: 0,
            supervisor: false,
            screen: false,
            bitrate: 64_000,
            complexity: 5,
            title: String::new(),
            started_unix_ns: 0,
        }
    }
}

/// What a recording's file holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub duration_ms: i64,
    /// `webm` or `matroska`.
    pub doc_type: &'static str,
    pub video_codec: Option<&'static str>,
    pub width: u32,
    pub height: u32,
    pub video_frames: u64,
    pub audio_frames: u64,
    /// Packets of the recorded streams that were read.
    pub packets: u64,
    /// Audio lost and concealed or left silent, in ms, over both channels.
    pub concealed_ms: i64,
    /// Video frames left out (incomplete, or waiting for a keyframe).
    pub frames_dropped: u64,
}

// ---------------------------------------------------------------- clocks --

/// The lower envelope of `arrival - sender time` of one sender clock, per window.
#[derive(Debug, Default, Clone)]
struct Envelope {
    /// Minimum offset (µs) per window of arrival time.
    windows: BTreeMap<i64, i64>,
    smoothed: Vec<(i64, i64)>,
}

/// Envelope windows, µs of arrival time.
const WINDOW_US: i64 = 10_000_000;
/// Windows on each side the minimum is taken over.
const SMOOTH: i64 = 3;

impl Envelope {
    fn observe(&mut self, arrival: i64, offset: i64) {
        let w = arrival.div_euclid(WINDOW_US);
        let entry = self.windows.entry(w).or_insert(offset);
        *entry = (*entry).min(offset);
    }

    fn finish(&mut self) {
        let keys: Vec<i64> = self.windows.keys().copied().collect();
        self.smoothed = keys
            .iter()
            .map(|&w| {
                let m = self.windows.range(w - SMOOTH..=w + SMOOTH).map(|(_, v)| *v).min().unwrap_or(0);
                (w * WINDOW_US + WINDOW_US / 2, m)
            })
            .collect();
    }

    fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }

    /// The offset at `arrival`: linear between window centres, flat beyond the ends.
    fn at(&self, arrival: i64) -> i64 {
        let s = &self.smoothed;
        match s.iter().position(|(t, _)| *t > arrival) {
            None => s.last().map_or(0, |p| p.1),
            Some(0) => s[0].1,
            Some(i) => {
                let (t0, v0) = s[i - 1];
                let (t1, v1) = s[i];
                v0 + ((v1 - v0) as i128 * (arrival - t0) as i128 / (t1 - t0) as i128) as i64
            }
        }
    }
}

/// Extends 32-bit RTP timestamps and 16-bit sequence numbers across wraps.
#[derive(Debug, Default, Clone, Copy)]
struct Unwrap {
    last: Option<i64>,
}

impl Unwrap {
    fn ts(&mut self, ts: u32) -> i64 {
        let ext = match self.last {
            None => i64::from(ts),
            Some(last) => last + i64::from(ts.wrapping_sub(last as u32) as i32),
        };
        // a late packet does not move the reference back
        if self.last.is_none_or(|l| ext > l) {
            self.last = Some(ext);
        }
        ext
    }

    fn seq(&mut self, seq: u16) -> i64 {
        let ext = match self.last {
            None => i64::from(seq),
            Some(last) => last + i64::from(seq.wrapping_sub(last as u16) as i16),
        };
        if self.last.is_none_or(|l| ext > l) {
            self.last = Some(ext);
        }
        ext
    }
}

fn ntp_us(ntp: u64) -> i64 {
    let secs = (ntp >> 32) as i64;
    let frac = (ntp & 0xFFFF_FFFF) as i64;
    secs * 1_000_000 + ((frac * 1_000_000) >> 32)
}

/// A sender report, its RTP timestamp extended on the stream's timeline.
#[derive(Debug, Clone, Copy)]
struct Report {
    ntp_us: i64,
    rtp: i64,
}

/// How one stream's timestamps become sender time.
#[derive(Debug, Clone)]
struct Clock {
    rate: i64,
    ts: Unwrap,
    report: Option<Report>,
    first_report: Option<Report>,
}

impl Clock {
    fn new(rate: i64, first_report: Option<Report>) -> Self {
        Clock { rate, ts: Unwrap::default(), report: None, first_report }
    }

    fn report(&mut self, ntp: u64, rtp: u32) {
        let rtp = self.ts.ts(rtp);
        self.report = Some(Report { ntp_us: ntp_us(ntp), rtp });
        self.first_report.get_or_insert(Report { ntp_us: ntp_us(ntp), rtp });
    }

    /// The sender time (µs) of an extended timestamp: through the latest report (the first
    /// for packets before it), or the RTP clock alone.
    fn sender_us(&self, ext: i64) -> i64 {
        match self.report.or(self.first_report) {
            Some(r) => r.ntp_us + (ext - r.rtp) * 1_000_000 / self.rate,
            None => ext * 1_000_000 / self.rate,
        }
    }
}

/// The first pass over a stream's headers.
struct Scan {
    reported: bool,
    first_report: Option<Report>,
    ntp: Envelope,
    rtp: Envelope,
    packets: u64,
    pt: Option<u8>,
}

fn scan(file: &StreamFile, rate: i64) -> io::Result<Scan> {
    let mut clock = Clock::new(rate, None);
    let mut out = Scan {
        reported: false,
        first_report: None,
        ntp: Envelope::default(),
        rtp: Envelope::default(),
        packets: 0,
        pt: None,
    };
    for record in spool::records(&file.path, true)? {
        match record {
            Record::Report { ntp, rtp, .. } => {
                clock.report(ntp, rtp);
                out.reported = true;
                out.first_report = clock.first_report;
            }
            Record::Rtp { at, ts, pt, .. } => {
                out.packets += 1;
                out.pt.get_or_insert(pt);
                let ext = clock.ts.ts(ts);
                let at = at as i64;
                out.rtp.observe(at, at - ext * 1_000_000 / rate);
                if clock.report.is_some() {
                    out.ntp.observe(at, at - clock.sender_us(ext));
                }
            }
        }
    }
    Ok(out)
}

/// Where a stream's packets go on the timeline.
#[derive(Debug, Clone)]
struct Placement {
    clock: Clock,
    envelope: Envelope,
}

impl Placement {
    /// The timeline position (µs) of a packet that arrived at `at` with timestamp `ext`.
    fn position(&self, ext: i64, at: i64) -> i64 {
        self.clock.sender_us(ext) + self.envelope.at(at)
    }
}

// ---------------------------------------------------------------- packets --

struct Packet {
    seq: i64,
    ts: i64,
    at: i64,
    marker: bool,
    pt: u8,
    payload: Bytes,
}

/// A stream's packets in sequence order: a small reorder window over the spool's arrival
/// order, with the clock's reports applied as they come.
struct Ordered {
    records: Box<dyn Iterator<Item = Record> + Send>,
    placement: Placement,
    seq: Unwrap,
    window: BTreeMap<i64, Packet>,
    done: bool,
    packets: u64,
}

/// Packets held to put late ones back in order.
const REORDER_PACKETS: usize = 64;
/// ... or this long after the oldest arrived (µs).
const REORDER_US: i64 = 250_000;

impl Ordered {
    fn new(file: &StreamFile, placement: Placement) -> io::Result<Self> {
        Ok(Ordered {
            records: Box::new(spool::records(&file.path, false)?),
            placement,
            seq: Unwrap::default(),
            window: BTreeMap::new(),
            done: false,
            packets: 0,
        })
    }

    fn next_packet(&mut self) -> Option<(Packet, i64)> {
        loop {
            let ready = match (self.window.first_key_value(), self.window.last_key_value()) {
                (Some((_, first)), Some((_, last))) => {
                    self.done || self.window.len() > REORDER_PACKETS || last.at - first.at > REORDER_US
                }
                _ => false,
            };
            if ready {
                let (_, packet) = self.window.pop_first()?;
                let position = self.placement.position(packet.ts, packet.at);
                return Some((packet, position));
            }
            if self.done {
                return None;
            }
            match self.records.next() {
                None => self.done = true,
                Some(Record::Report { ntp, rtp, .. }) => self.placement.clock.report(ntp, rtp),
                Some(Record::Rtp { at, seq, ts, marker, pt, payload }) => {
                    self.packets += 1;
                    let seq = self.seq.seq(seq);
                    let ts = self.placement.clock.ts.ts(ts);
                    self.window.entry(seq).or_insert(Packet {
                        seq,
                        ts,
                        at: at as i64,
                        marker,
                        pt,
                        payload: Bytes::from(payload),
                    });
                }
            }
        }
    }
}

// ---------------------------------------------------------------- audio --

/// One participant's Opus stream, decoded to positioned mono PCM.
struct AudioStream {
    packets: Ordered,
    channel: usize,
    decoder: opus::Decoder,
    last_seq: Option<i64>,
    /// Where the next chunk continues (samples), to keep a stream contiguous.
    expected: Option<i64>,
    peeked: Option<(i64, Vec<i16>)>,
    concealed: i64,
}

/// A loss up to this long (samples) is concealed by the decoder; a longer one stays silent.
const CONCEAL_MAX: i64 = 120 * RATE / 1000;
/// A chunk this close (samples) to where the stream left off continues it.
const SNAP: i64 = 10 * RATE / 1000;

impl AudioStream {
    fn next_chunk(&mut self) -> Option<(i64, Vec<i16>)> {
        if let Some(chunk) = self.peeked.take() {
            return Some(chunk);
        }
        loop {
            let (packet, position_us) = self.packets.next_packet()?;
            if self.last_seq.is_some_and(|last| packet.seq <= last) {
                continue; // a duplicate or a packet given up on
            }
            if packet.pt != PT_OPUS {
                continue;
            }
            let lost = self.last_seq.map_or(0, |last| packet.seq - last - 1);
            self.last_seq = Some(packet.seq);
            let mut pos = position_us * RATE / 1_000_000;
            let mut out = Vec::new();
            if let Some(expected) = self.expected {
                if (pos - expected).abs() <= SNAP {
                    pos = expected;
                } else if lost > 0 && pos > expected && pos - expected <= CONCEAL_MAX {
                    // packet loss: the decoder conceals it (in 2.5 ms steps)
                    let gap = ((pos - expected) / 120 * 120) as usize;
                    let mut plc = vec![0i16; gap];
                    if let Ok(n) = self.decoder.decode(&[], &mut plc, false) {
                        plc.truncate(n);
                        self.concealed += n as i64;
                        out = plc;
                        pos = expected;
                    }
                } else if pos > expected {
                    self.concealed += pos - expected;
                }
            }
            let mut pcm = vec![0i16; 5760];
            let n = match self.decoder.decode(&packet.payload, &mut pcm, false) {
                Ok(n) => n,
                Err(e) => {
                    tracing::debug!(error = %e, "an Opus packet of a recording does not decode");
                    continue;
                }
            };
            pcm.truncate(n);
            out.extend_from_slice(&pcm);
            self.expected = Some(pos + out.len() as i64);
            return Some((pos, out));
        }
    }

    fn peek_pos(&mut self) -> Option<i64> {
        if self.peeked.is_none() {
            self.peeked = self.next_chunk();
        }
        self.peeked.as_ref().map(|(p, _)| *p)
    }
}

/// The stereo buffer between the decoders and the encoder.
struct Mixer {
    /// The sample position of `buf[0]`: the next frame to encode.
    base: i64,
    /// Interleaved stereo.
    buf: Vec<i16>,
    encoder: opus::Encoder,
    packet: Vec<u8>,
    frames: u64,
}

impl Mixer {
    fn new(bitrate: i32, complexity: i32) -> io::Result<(Self, u16)> {
        let err = |e: opus::Error| io::Error::other(format!("opus encoder: {e}"));
        let mut encoder =
            opus::Encoder::new(RATE as u32, opus::Channels::Stereo, opus::Application::Audio).map_err(err)?;
        encoder.set_bitrate(opus::Bitrate::Bits(bitrate)).map_err(err)?;
        encoder.set_complexity(complexity).map_err(err)?;
        // two independent voices: no intensity stereo, no phase trick that mixes them
        encoder.set_force_channels(Some(opus::Channels::Stereo)).map_err(err)?;
        encoder.set_phase_inversion_disabled(true).map_err(err)?;
        let pre_skip = encoder.get_lookahead().map_err(err)? as u16;
        Ok((Mixer { base: 0, buf: Vec::new(), encoder, packet: vec![0; 4000], frames: 0 }, pre_skip))
    }

    /// Adds `samples` at `pos` to `channel` (0 left, 1 right); what is before the next frame to
    /// encode is too late and dropped.
    fn write(&mut self, channel: usize, pos: i64, samples: &[i16]) {
        let skip = (self.base - pos).max(0) as usize;
        if skip >= samples.len() {
            return;
        }
        let start = (pos + skip as i64 - self.base) as usize;
        let need = (start + samples.len() - skip) * 2;
        if self.buf.len() < need {
            self.buf.resize(need, 0);
        }
        for (i, s) in samples[skip..].iter().enumerate() {
            let at = (start + i) * 2 + channel;
            self.buf[at] = self.buf[at].saturating_add(*s);
        }
    }

    /// Encodes every frame that ends at or before `until` (samples).
    fn emit_until<W: io::Write + io::Seek>(
        &mut self,
        until: i64,
        out: &mut mkv::Writer<W>,
        track: usize,
    ) -> io::Result<()> {
        while self.base + FRAME as i64 <= until {
            if self.buf.len() < FRAME * 2 {
                self.buf.resize(FRAME * 2, 0);
            }
            let n = self
                .encoder
                .encode(&self.buf[..FRAME * 2], &mut self.packet)
                .map_err(|e| io::Error::other(format!("opus encoder: {e}")))?;
            out.frame(track, self.base * 1000 / RATE, true, &self.packet[..n], 20)?;
            self.buf.drain(..FRAME * 2);
            self.base += FRAME as i64;
            self.frames += 1;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------- video --

/// An assembled video frame.
struct Frame {
    time_ms: i64,
    key: bool,
    data: Vec<u8>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum VideoCodec {
    Vp8,
    H264,
}

/// One video stream, assembled into frames.
struct VideoStream {
    packets: Ordered,
    codec: VideoCodec,
    track: usize,
    /// The packets of the frame being assembled (one timestamp).
    current: Vec<Packet>,
    current_position: i64,
    broken: bool,
    last_seq: Option<i64>,
    waiting_key: bool,
    peeked: Option<Frame>,
    dropped: u64,
    /// What the first keyframe told: size, and H.264's parameter sets.
    width: u32,
    height: u32,
    sps: Option<Vec<u8>>,
    pps: Option<Vec<u8>>,
}

impl VideoStream {
    fn new(packets: Ordered, codec: VideoCodec, track: usize) -> Self {
        VideoStream {
            packets,
            codec,
            track,
            current: Vec::new(),
            current_position: 0,
            broken: false,
            last_seq: None,
            waiting_key: true,
            peeked: None,
            dropped: 0,
            width: 0,
            height: 0,
            sps: None,
            pps: None,
        }
    }

    fn next_frame(&mut self) -> Option<Frame> {
        if let Some(f) = self.peeked.take() {
            return Some(f);
        }
        loop {
            let next = self.packets.next_packet();
            let Some((packet, position)) = next else {
                // the end: the frame in progress, if whole
                if self.current.is_empty() {
                    return None;
                }
                if let Some(frame) = self.finish_frame() {
                    return Some(frame);
                }
                continue;
            };
            if self.last_seq.is_some_and(|last| packet.seq <= last) {
                continue;
            }
            let expected = self.last_seq.map(|l| l + 1);
            self.last_seq = Some(packet.seq);
            let fresh_ts = self.current.first().is_none_or(|p| p.ts != packet.ts);
            let mut done = None;
            if fresh_ts && !self.current.is_empty() {
                done = self.finish_frame();
            }
            if expected.is_some_and(|e| packet.seq != e) {
                // a packet is missing: if it belonged to this frame, the frame is broken
                if !fresh_ts || self.current.is_empty() {
                    self.broken = true;
                }
                // ... and a missing packet at the boundary breaks one or the other: wait for a key
                self.waiting_key = true;
            }
            if self.current.is_empty() {
                self.current_position = position;
            }
            self.current.push(packet);
            if let Some(frame) = done {
                return Some(frame);
            }
        }
    }

    /// Depacketizes the frame in progress; `None` when it is broken or waits for a keyframe.
    fn finish_frame(&mut self) -> Option<Frame> {
        let packets = std::mem::take(&mut self.current);
        let broken = std::mem::take(&mut self.broken) || !packets.last().is_some_and(|p| p.marker);
        let time_ms = self.current_position / 1000;
        if broken || packets.iter().any(|p| p.pt != packets[0].pt) {
            self.dropped += 1;
            self.waiting_key = true;
            return None;
        }
        let mut data = Vec::new();
        match self.codec {
            VideoCodec::Vp8 => {
                for (i, p) in packets.iter().enumerate() {
                    match vp8_payload(&p.payload) {
                        // the frame starts with the first partition's start
                        Some((start, pid, bytes)) if i > 0 || (start && pid == 0) => data.extend_from_slice(bytes),
                        _ => {
                            self.dropped += 1;
                            self.waiting_key = true;
                            return None;
                        }
                    }
                }
            }
            VideoCodec::H264 => {
                let mut depacketizer = rtc::rtp::codec::h264::H264Packet::default();
                depacketizer.is_avc = true;
                for p in &packets {
                    match depacketizer.depacketize(&p.payload) {
                        Ok(bytes) => data.extend_from_slice(&bytes),
                        Err(_) => {
                            self.dropped += 1;
                            self.waiting_key = true;
                            return None;
                        }
                    }
                }
            }
        }
        let key = match self.codec {
            VideoCodec::Vp8 => vp8_keyframe(&data).is_some(),
            VideoCodec::H264 => self.h264_scan(&data),
        };
        if key
            && self.width == 0
            && let VideoCodec::Vp8 = self.codec
            && let Some((w, h)) = vp8_keyframe(&data)
        {
            self.width = w;
            self.height = h;
        }
        if self.waiting_key && !key || data.is_empty() {
            self.dropped += 1;
            return None;
        }
        self.waiting_key = false;
        Some(Frame { time_ms, key, data })
    }

    /// Whether an AVC (length-prefixed) access unit holds an IDR slice; keeps the first SPS
    /// and PPS and the size the SPS gives.
    fn h264_scan(&mut self, au: &[u8]) -> bool {
        let mut key = false;
        let mut i = 0;
        while i + 4 <= au.len() {
            let len = u32::from_be_bytes(au[i..i + 4].try_into().expect("4 bytes")) as usize;
            let Some(nal) = au.get(i + 4..i + 4 + len) else { break };
            match nal.first().map(|b| b & 0x1F) {
                Some(5) => key = true,
                Some(7) if self.sps.is_none() => {
                    if let Some((w, h)) = h264_size(nal) {
                        self.width = w;
                        self.height = h;
                    }
                    self.sps = Some(nal.to_vec());
                }
                Some(8) if self.pps.is_none() => self.pps = Some(nal.to_vec()),
                _ => {}
            }
            i += 4 + len;
        }
        key
    }

    fn peek_ms(&mut self) -> Option<i64> {
        if self.peeked.is_none() {
            self.peeked = self.next_frame();
        }
        self.peeked.as_ref().map(|f| f.time_ms)
    }
}

/// A VP8 RTP payload (RFC 7741): whether it starts a partition, the partition index, and the
/// VP8 data after the payload descriptor. (Ours: the `rtc` crate's depacketizer refuses a
/// payload under 4 bytes, which a frame's last fragment can be.)
pub fn vp8_payload(payload: &[u8]) -> Option<(bool, u8, &[u8])> {
    let first = *payload.first()?;
    let (start, pid) = (first & 0x10 != 0, first & 0x07);
    let mut at = 1;
    if first & 0x80 != 0 {
        let x = *payload.get(at)?;
        at += 1;
        if x & 0x80 != 0 {
            // PictureID: 7 or 15 bits
            at += if payload.get(at)? & 0x80 != 0 { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            at += 1; // TL0PICIDX
        }
        if x & 0x30 != 0 {
            at += 1; // TID/Y/KEYIDX
        }
    }
    let data = payload.get(at..)?;
    (!data.is_empty()).then_some((start, pid, data))
}

/// A VP8 keyframe's size; `None` for an interframe.
pub fn vp8_keyframe(frame: &[u8]) -> Option<(u32, u32)> {
    if frame.len() < 10 || frame[0] & 1 != 0 || frame[3..6] != [0x9D, 0x01, 0x2A] {
        return None;
    }
    let w = u32::from(u16::from_le_bytes([frame[6], frame[7]]) & 0x3FFF);
    let h = u32::from(u16::from_le_bytes([frame[8], frame[9]]) & 0x3FFF);
    Some((w, h))
}

/// Reads the bits of an H.264 RBSP (emulation prevention removed).
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Bits<'_> {
    fn bit(&mut self) -> Option<u32> {
        let byte = self.data.get(self.pos / 8)?;
        let b = (byte >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Some(u32::from(b))
    }

    fn bits(&mut self, n: u32) -> Option<u32> {
        (0..n).try_fold(0u32, |acc, _| Some((acc << 1) | self.bit()?))
    }

    fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        Some((1u32 << zeros) - 1 + self.bits(zeros)?)
    }

    fn se(&mut self) -> Option<i32> {
        let v = self.ue()?;
        Some(if v % 2 == 1 { v.div_ceil(2) as i32 } else { -((v / 2) as i32) })
    }
}

/// The picture size an H.264 SPS NAL unit (header byte included) declares.
pub fn h264_size(nal: &[u8]) -> Option<(u32, u32)> {
    let mut rbsp = Vec::with_capacity(nal.len());
    let mut zeros = 0;
    for &b in nal.get(1..)? {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        rbsp.push(b);
    }
    let mut r = Bits { data: &rbsp, pos: 0 };
    let profile = r.bits(8)?;
    r.bits(16)?; // constraints, level
    r.ue()?; // sps id
    let mut chroma = 1;
    if [100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135].contains(&profile) {
        chroma = r.ue()?;
        if chroma == 3 {
            r.bit()?;
        }
        r.ue()?;
        r.ue()?;
        r.bit()?;
        if r.bit()? == 1 {
            for i in 0..if chroma == 3 { 12 } else { 8 } {
                if r.bit()? == 1 {
                    let size = if i < 6 { 16 } else { 64 };
                    let (mut last, mut next) = (8i32, 8i32);
                    for _ in 0..size {
                        if next != 0 {
                            next = (last + r.se()? + 256) % 256;
                        }
                        if next != 0 {
                            last = next;
                        }
                    }
                }
            }
        }
    }
    r.ue()?; // log2_max_frame_num
    match r.ue()? {
        0 => {
            r.ue()?;
        }
        1 => {
            r.bit()?;
            r.se()?;
            r.se()?;
            for _ in 0..r.ue()? {
                r.se()?;
            }
        }
        _ => {}
    }
    r.ue()?; // max_num_ref_frames
    r.bit()?;
    let width_mbs = r.ue()? + 1;
    let height_units = r.ue()? + 1;
    let frame_mbs_only = r.bit()?;
    if frame_mbs_only == 0 {
        r.bit()?;
    }
    r.bit()?;
    let (mut cl, mut cr, mut ct, mut cb) = (0, 0, 0, 0);
    if r.bit()? == 1 {
        cl = r.ue()?;
        cr = r.ue()?;
        ct = r.ue()?;
        cb = r.ue()?;
    }
    let (unit_x, unit_y) = match chroma {
        0 => (1, 2 - frame_mbs_only),
        3 => (1, 2 - frame_mbs_only),
        2 => (2, 2 - frame_mbs_only),
        _ => (2, 2 * (2 - frame_mbs_only)),
    };
    let width = (width_mbs * 16).checked_sub((cl + cr) * unit_x)?;
    let height = ((2 - frame_mbs_only) * height_units * 16).checked_sub((ct + cb) * unit_y)?;
    Some((width, height))
}

// ---------------------------------------------------------------- the whole --

/// Turns the spooled streams in `dir` into the Matroska file `out`.
pub fn process(dir: &Path, out: &Path, options: &Options) -> io::Result<Outcome> {
    let files = spool::stream_files(dir)?;
    // which streams go in, and how: audio of the customer (left), the agent (right) and,
    // when configured, the supervisor (right); video of the customer
    let audio_channel = |role: TrackRole| match role {
        TrackRole::Customer => Some(0),
        TrackRole::Agent => Some(1),
        TrackRole::Supervisor => options.supervisor.then_some(1),
    };
    let mut wanted = Vec::new();
    for file in files {
        let keep = match (file.role, file.source) {
            (role, Source::Audio) => audio_channel(role).is_some(),
            (TrackRole::Customer, Source::Camera) => true,
            (TrackRole::Customer, Source::Screen) => options.screen,
            _ => false,
        };
        if keep {
            wanted.push(file);
        }
    }

    // pass 1: the clocks
    let mut scans = Vec::new();
    let mut peer_envelopes: BTreeMap<u64, Envelope> = BTreeMap::new();
    for file in &wanted {
        let rate = if file.source == Source::Audio { RATE } else { 90_000 };
        let s = scan(file, rate)?;
        if s.reported {
            let env = peer_envelopes.entry(file.peer).or_default();
            for (w, v) in &s.ntp.windows {
                let e = env.windows.entry(*w).or_insert(*v);
                *e = (*e).min(*v);
            }
        }
        scans.push(s);
    }
    for env in peer_envelopes.values_mut() {
        env.finish();
    }

    // the tracks: the first video codec of each source decides its track
    let video_codec = |pt: Option<u8>| match pt {
        Some(PT_VP8) => Some(VideoCodec::Vp8),
        Some(PT_H264) => Some(VideoCodec::H264),
        _ => None,
    };
    let mut tracks = Vec::new();
    let mut track_of_source: Vec<(Source, VideoCodec, usize)> = Vec::new();
    for (file, s) in wanted.iter().zip(&scans) {
        if file.source == Source::Audio || track_of_source.iter().any(|(src, ..)| *src == file.source) {
            continue;
        }
        if let Some(codec) = video_codec(s.pt) {
            track_of_source.push((file.source, codec, tracks.len()));
            tracks.push(Track {
                codec: if codec == VideoCodec::Vp8 { Codec::Vp8 } else { Codec::H264 },
                name: format!("customer {}", file.source.as_str()),
            });
        }
    }
    let (mut mixer, pre_skip) = Mixer::new(options.bitrate, options.complexity)?;
    let audio_track = tracks.len();
    tracks.push(Track { codec: Codec::Opus { channels: 2, pre_skip }, name: "customer (left), agent (right)".into() });
    let doc_type = mkv::doc_type(&tracks);
    let file = std::fs::File::create(out)?;
    let mut writer = mkv::Writer::new(
        BufWriter::with_capacity(256 * 1024, file),
        tracks.clone(),
        &options.title,
        options.started_unix_ns,
    )?;

    // pass 2: the media
    let mut audio = Vec::new();
    let mut video = Vec::new();
    for (file, mut s) in wanted.iter().zip(scans) {
        let rate = if file.source == Source::Audio { RATE } else { 90_000 };
        let envelope = match peer_envelopes.get(&file.peer) {
            Some(env) if s.reported && !env.is_empty() => env.clone(),
            _ => {
                s.rtp.finish();
                s.rtp
            }
        };
        let reports = if s.reported { s.first_report } else { None };
        let placement = Placement { clock: Clock::new(rate, reports), envelope };
        let ordered = Ordered::new(file, placement)?;
        if file.source == Source::Audio {
            let decoder = opus::Decoder::new(RATE as u32, opus::Channels::Mono)
                .map_err(|e| io::Error::other(format!("opus decoder: {e}")))?;
            audio.push(AudioStream {
                packets: ordered,
                channel: audio_channel(file.role).unwrap_or(0),
                decoder,
                last_seq: None,
                expected: None,
                peeked: None,
                concealed: 0,
            });
        } else if let Some(&(_, codec, track)) = track_of_source.iter().find(|(src, ..)| *src == file.source)
            && video_codec(s.pt) == Some(codec)
        {
            video.push(VideoStream::new(ordered, codec, track));
        }
    }

    // merge every stream in timeline order
    let end_samples = options.end_us.max(0) * RATE / 1_000_000;
    let end_ms = options.end_us.max(0) / 1000;
    let mut video_frames = 0u64;
    let mut sized = vec![false; tracks.len()];
    loop {
        let next_audio = audio.iter_mut().enumerate().filter_map(|(i, a)| a.peek_pos().map(|p| (p, i))).min();
        let next_video = video.iter_mut().enumerate().filter_map(|(i, v)| v.peek_ms().map(|t| (t, i))).min();
        let audio_us = next_audio.map(|(p, _)| p * 1_000_000 / RATE);
        let video_us = next_video.map(|(t, _)| t * 1000);
        match (audio_us, video_us) {
            (None, None) => break,
            (Some(a), v) if v.is_none_or(|v| a <= v) => {
                let (pos, i) = next_audio.expect("some");
                mixer.emit_until(pos.min(end_samples), &mut writer, audio_track)?;
                if let Some((pos, pcm)) = audio[i].next_chunk() {
                    let channel = audio[i].channel;
                    if pos < end_samples {
                        let keep = ((end_samples - pos) as usize).min(pcm.len());
                        mixer.write(channel, pos, &pcm[..keep]);
                    }
                }
            }
            _ => {
                let (time, i) = next_video.expect("some");
                mixer.emit_until((time * RATE / 1000).min(end_samples), &mut writer, audio_track)?;
                let stream = &mut video[i];
                let Some(frame) = stream.next_frame() else { continue };
                if !sized[stream.track] && frame.key {
                    let private = match (&stream.sps, &stream.pps) {
                        (Some(sps), Some(pps)) => Some(mkv::avc_config(sps, pps)),
                        _ => None,
                    };
                    writer.set_video(stream.track, stream.width, stream.height, private);
                    sized[stream.track] = true;
                }
                if (0..end_ms).contains(&frame.time_ms) {
                    writer.frame(stream.track, frame.time_ms, frame.key, &frame.data, 0)?;
                    video_frames += 1;
                }
            }
        }
    }
    mixer.emit_until((end_samples + FRAME as i64 - 1) / FRAME as i64 * FRAME as i64, &mut writer, audio_track)?;
    let packets =
        audio.iter().map(|a| a.packets.packets).sum::<u64>() + video.iter().map(|v| v.packets.packets).sum::<u64>();
    let concealed_ms = audio.iter().map(|a| a.concealed).sum::<i64>() * 1000 / RATE;
    let frames_dropped = video.iter().map(|v| v.dropped).sum();
    let first_video = video.first().map(|v| (v.codec, v.width, v.height));
    let (writer_out, duration_ms) = writer.finish(Some(end_ms))?;
    let file = writer_out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    Ok(Outcome {
        duration_ms,
        doc_type,
        video_codec: first_video.map(|(c, ..)| if c == VideoCodec::Vp8 { "vp8" } else { "h264" }),
        width: first_video.map_or(0, |v| v.1),
        height: first_video.map_or(0, |v| v.2),
        video_frames,
        audio_frames: mixer.frames,
        packets,
        concealed_ms,
        frames_dropped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_envelope_follows_the_least_delayed_packets() {
        let mut env = Envelope::default();
        for i in 0..600i64 {
            let arrival = i * 100_000; // 60 s, 10 packets/s
            let jitter = (i * 7919 % 50) * 1000; // 0 to 49 ms of delay
            env.observe(arrival, 5_000 + jitter);
        }
        env.finish();
        for at in [0, 15_000_000, 59_000_000] {
            assert_eq!(env.at(at), 5_000, "at {at}");
        }
        // a clock that drifts 1 ms per 10 s is followed within the smoothing
        let mut drift = Envelope::default();
        for i in 0..3600i64 {
            drift.observe(i * 1_000_000, 1_000 + i * 100);
        }
        drift.finish();
        let err = (drift.at(1_800_000_000) - (1_000 + 1_800 * 100)).abs();
        assert!(err < 5_000, "{err} µs off");
    }

    #[test]
    fn timestamps_and_sequence_numbers_unwrap() {
        let mut u = Unwrap::default();
        assert_eq!(u.ts(u32::MAX - 959), i64::from(u32::MAX) - 959);
        assert_eq!(u.ts(0), i64::from(u32::MAX) + 1);
        assert_eq!(u.ts(u32::MAX - 959), i64::from(u32::MAX) - 959, "a late packet from before the wrap");
        let mut s = Unwrap::default();
        assert_eq!(s.seq(65_535), 65_535);
        assert_eq!(s.seq(1), 65_537);
        assert_eq!(ntp_us(3u64 << 32 | 1u64 << 31), 3_500_000);
    }

    #[test]
    fn vp8_payload_descriptors_of_every_shape() {
        assert_eq!(vp8_payload(&[0x10, 0xAB]), Some((true, 0, &[0xAB][..])), "a 2-byte last fragment");
        assert_eq!(vp8_payload(&[0x90, 0x80, 0x81, 0x23, 7, 8]), Some((true, 0, &[7, 8][..])), "15-bit picture id");
        assert_eq!(vp8_payload(&[0x91, 0xE0, 0x05, 0x11, 0x40, 9]), Some((true, 1, &[9][..])), "picture id, tl0, tid");
        assert_eq!(vp8_payload(&[0x00, 1, 2]), Some((false, 0, &[1, 2][..])));
        assert_eq!(vp8_payload(&[0x90, 0x80]), None, "cut short");
        assert_eq!(vp8_payload(&[0x10]), None, "no data");
    }

    #[test]
    fn vp8_and_h264_keyframes_tell_their_size() {
        let mut key = vec![0x10, 0x02, 0x00, 0x9D, 0x01, 0x2A, 0x80, 0x02, 0xE0, 0x01];
        assert_eq!(vp8_keyframe(&key), Some((640, 480)));
        key[0] |= 1;
        assert_eq!(vp8_keyframe(&key), None, "an interframe");
        // x264's constrained baseline 640x480 and high 1280x720 (cropped from 1280x736) SPSs
        let baseline = [
            0x67, 0x42, 0xC0, 0x16, 0xD9, 0x00, 0xA0, 0x3D, 0xB0, 0x11, 0x00, 0x00, 0x03, 0x00, 0x01, 0x00, 0x00, 0x03,
            0x00, 0x14, 0x0F, 0x16, 0x2E, 0x48,
        ];
        assert_eq!(h264_size(&baseline), Some((640, 480)));
        let high = [
            0x67, 0x64, 0x00, 0x1F, 0xAC, 0xD9, 0x40, 0x50, 0x05, 0xBB, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00,
            0x00, 0x03, 0x01, 0x40, 0xF1, 0x83, 0x19, 0x60,
        ];
        assert_eq!(h264_size(&high), Some((1280, 720)));
    }
}
