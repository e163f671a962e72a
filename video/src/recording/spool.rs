//! The spool: every recorded track's RTP, as it arrives, appended to a file of its own, so that
//! a call's length costs disk, never memory.
//!
//! The SFU task hands each packet of a recorded track to [`Spool::packet`], which never blocks:
//! the packet (its payload shared, not copied) goes into a bounded queue, and one writer thread
//! appends it to the track's file through a small buffer. A full queue (a disk slower than the
//! calls) drops the packet and counts it (`switchboard_video_recording_dropped_total`), as
//! forwarding must never wait for a recording.
//!
//! A recording is a directory `<spool_dir>/<recording id>/` with `recording.json` (what it is,
//! when it started) and one file per stream: `<n>-<role>-<source>-<peer>-<ssrc>.rtp`, a sequence of
//! records (little endian):
//!
//! - `1`, arrival (u64, µs since the recording started), sequence number (u16), RTP timestamp
//!   (u32), marker (u8), payload type (u8), payload length (u16), payload: an RTP packet;
//! - `2`, arrival (u64), NTP time (u64), RTP timestamp (u32): an RTCP sender report of the
//!   stream's sender.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::Instant;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::sfu::router::Source;

/// Packets waiting for the writer thread, over every recording of the node.
pub const QUEUE: usize = 16_384;
/// The write buffer of one stream's file.
const WRITE_BUFFER: usize = 32 * 1024;
/// How long the writer lets the queue fill between two passes (a recording's stop waits at
/// most this much longer).
const PAUSE: std::time::Duration = std::time::Duration::from_millis(10);
/// How often every stream's buffer is written out to its file at the latest, so a node that
/// dies (kill -9) leaves its spool complete but for about the last second (a live node or its
/// next start finishes it from there).
const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Whose track a stream is: the recording's channels follow the role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrackRole {
    Customer,
    Agent,
    Supervisor,
}

impl TrackRole {
    pub fn as_str(self) -> &'static str {
        match self {
            TrackRole::Customer => "customer",
            TrackRole::Agent => "agent",
            TrackRole::Supervisor => "supervisor",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "customer" => Some(TrackRole::Customer),
            "agent" => Some(TrackRole::Agent),
            "supervisor" => Some(TrackRole::Supervisor),
            _ => None,
        }
    }
}

/// A recorded track of one peer connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TrackKey {
    pub peer: u64,
    pub role: TrackRole,
    pub source: Source,
}

/// What the SFU and the recorder tell the writer thread.
enum Input {
    Start {
        recording: Uuid,
        dir: PathBuf,
        t0: Instant,
    },
    Rtp {
        recording: Uuid,
        track: TrackKey,
        at: Instant,
        ssrc: u32,
        seq: u16,
        ts: u32,
        marker: bool,
        pt: u8,
        payload: Bytes,
    },
    Report {
        recording: Uuid,
        track: TrackKey,
        at: Instant,
        ssrc: u32,
        ntp: u64,
        rtp: u32,
    },
    Stop {
        recording: Uuid,
        done: std::sync::mpsc::Sender<io::Result<u64>>,
    },
}

/// Counters of the spool.
#[derive(Debug, Default)]
pub struct SpoolCounters {
    pub packets: AtomicU64,
    pub bytes: AtomicU64,
    /// Packets dropped because the writer's queue was full.
    pub dropped: AtomicU64,
    /// Write errors (a full disk): the stream's later packets are dropped too.
    pub errors: AtomicU64,
}

/// The handle of the writer thread; cheap to clone.
#[derive(Clone)]
pub struct Spool {
    tx: SyncSender<Input>,
    pub counters: Arc<SpoolCounters>,
}

impl Spool {
    /// Starts the writer thread.
    pub fn start() -> Spool {
        let (tx, rx) = sync_channel(QUEUE);
        let counters = Arc::new(SpoolCounters::default());
        let c = counters.clone();
        std::thread::Builder::new()
            .name("recording-spool".into())
            .spawn(move || writer(rx, c))
            .expect("the spool thread starts");
        Spool { tx, counters }
    }

    /// Opens a recording's directory (created by the caller, with its `recording.json`); its
    /// streams' times count from `t0`.
    pub fn start_recording(&self, recording: Uuid, dir: PathBuf, t0: Instant) {
        // control messages wait for room: they are rare and must not be lost
        let _ = self.tx.send(Input::Start { recording, dir, t0 });
    }

    /// An RTP packet of a recorded track; never blocks (see the module's doc).
    pub fn packet(
        &self,
        recording: Uuid,
        track: TrackKey,
        at: Instant,
        header: &rtc::rtp::header::Header,
        payload: &Bytes,
    ) {
        let input = Input::Rtp {
            recording,
            track,
            at,
            ssrc: header.ssrc,
            seq: header.sequence_number,
            ts: header.timestamp,
            marker: header.marker,
            pt: header.payload_type,
            payload: payload.clone(),
        };
        self.offer(input);
    }

    /// A sender report of a recorded track's sender; never blocks.
    pub fn sender_report(&self, recording: Uuid, track: TrackKey, at: Instant, ssrc: u32, ntp: u64, rtp: u32) {
        self.offer(Input::Report { recording, track, at, ssrc, ntp, rtp });
    }

    /// [`Spool::packet`] that waits for room in the queue instead of dropping: for tools,
    /// benchmarks and tests that replay media faster than real time (never the SFU).
    pub fn packet_wait(
        &self,
        recording: Uuid,
        track: TrackKey,
        at: Instant,
        header: &rtc::rtp::header::Header,
        payload: &Bytes,
    ) {
        let _ = self.tx.send(Input::Rtp {
            recording,
            track,
            at,
            ssrc: header.ssrc,
            seq: header.sequence_number,
            ts: header.timestamp,
            marker: header.marker,
            pt: header.payload_type,
            payload: payload.clone(),
        });
    }

    /// [`Spool::sender_report`] that waits for room in the queue (see [`Spool::packet_wait`]).
    pub fn sender_report_wait(&self, recording: Uuid, track: TrackKey, at: Instant, ssrc: u32, ntp: u64, rtp: u32) {
        let _ = self.tx.send(Input::Report { recording, track, at, ssrc, ntp, rtp });
    }

    fn offer(&self, input: Input) {
        match self.tx.try_send(input) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// Flushes and closes the recording's files once everything queued before is written;
    /// returns the bytes written.
    pub async fn stop_recording(&self, recording: Uuid) -> io::Result<u64> {
        let (done, rx) = std::sync::mpsc::channel();
        let tx = self.tx.clone();
        tokio::task::spawn_blocking(move || {
            tx.send(Input::Stop { recording, done }).map_err(|_| io::Error::other("the spool thread stopped"))?;
            rx.recv().map_err(|_| io::Error::other("the spool thread stopped"))?
        })
        .await
        .map_err(io::Error::other)?
    }
}

struct Stream {
    out: Option<BufWriter<File>>,
    ssrc: u32,
}

struct Open {
    dir: PathBuf,
    t0: Instant,
    streams: HashMap<TrackKey, Stream>,
    next: u32,
    bytes: u64,
}

impl Open {
    fn stream(&mut self, track: TrackKey, ssrc: u32, counters: &SpoolCounters) -> Option<&mut BufWriter<File>> {
        let fresh = self.streams.get(&track).is_none_or(|s| s.ssrc != ssrc);
        if fresh {
            // a new SSRC on the same track (a new sender) starts a new stream file
            if let Some(mut old) = self.streams.remove(&track)
                && let Some(out) = old.out.as_mut()
            {
                let _ = out.flush();
            }
            let name = format!(
                "{:03}-{}-{}-{}-{ssrc:08x}.rtp",
                self.next,
                track.role.as_str(),
                track.source.as_str(),
                track.peer
            );
            self.next += 1;
            let out = match File::create(self.dir.join(&name)) {
                Ok(file) => Some(BufWriter::with_capacity(WRITE_BUFFER, file)),
                Err(e) => {
                    counters.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, file = %name, "cannot create a recording stream file");
                    None
                }
            };
            self.streams.insert(track, Stream { out, ssrc });
        }
        self.streams.get_mut(&track)?.out.as_mut()
    }
}

fn micros(t0: Instant, at: Instant) -> u64 {
    at.saturating_duration_since(t0).as_micros() as u64
}

fn writer(rx: Receiver<Input>, counters: Arc<SpoolCounters>) {
    let mut open: HashMap<Uuid, Open> = HashMap::new();
    let mut record = Vec::with_capacity(2048);
    let mut flushed = Instant::now();
    loop {
        if flushed.elapsed() >= FLUSH_EVERY {
            flush_all(&mut open, &counters);
            flushed = Instant::now();
        }
        let first = match rx.recv_timeout(FLUSH_EVERY) {
            Ok(first) => first,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        };
        handle(first, &mut open, &mut record, &counters);
        // everything queued meanwhile, then a pause while the queue fills: a sender finds no
        // reader asleep on the channel to wake, so the SFU pays no wake-up per packet (at a few
        // thousand packets/s those wake-ups cost more CPU than the writing). Not when the
        // queue was busy (a replay at full speed, or a backlog).
        let mut drained = 1;
        while let Ok(next) = rx.try_recv() {
            handle(next, &mut open, &mut record, &counters);
            drained += 1;
        }
        if drained < QUEUE / 4 {
            std::thread::sleep(PAUSE);
        }
    }
}

/// Writes every stream's buffered records to its file (the page cache: a killed process
/// loses nothing of them).
fn flush_all(open: &mut HashMap<Uuid, Open>, counters: &SpoolCounters) {
    for rec in open.values_mut() {
        for stream in rec.streams.values_mut() {
            if let Some(out) = stream.out.as_mut()
                && let Err(e) = out.flush()
            {
                counters.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "cannot write a recording stream's buffer; its later packets are dropped");
                stream.out = None;
            }
        }
    }
}

/// Writes one input of the queue.
fn handle(input: Input, open: &mut HashMap<Uuid, Open>, record: &mut Vec<u8>, counters: &SpoolCounters) {
    match input {
        Input::Start { recording, dir, t0 } => {
            open.insert(recording, Open { dir, t0, streams: HashMap::new(), next: 0, bytes: 0 });
        }
        Input::Rtp { recording, track, at, ssrc, seq, ts, marker, pt, payload } => {
            let Some(rec) = open.get_mut(&recording) else { return };
            record.clear();
            record.push(1);
            record.extend_from_slice(&micros(rec.t0, at).to_le_bytes());
            record.extend_from_slice(&seq.to_le_bytes());
            record.extend_from_slice(&ts.to_le_bytes());
            record.push(u8::from(marker));
            record.push(pt);
            record.extend_from_slice(&(payload.len().min(u16::MAX as usize) as u16).to_le_bytes());
            record.extend_from_slice(&payload[..payload.len().min(u16::MAX as usize)]);
            write(rec, track, ssrc, record, counters);
        }
        Input::Report { recording, track, at, ssrc, ntp, rtp } => {
            let Some(rec) = open.get_mut(&recording) else { return };
            // a report before the stream's first packet has no file yet and is dropped
            if rec.streams.get(&track).is_none_or(|s| s.ssrc != ssrc) {
                return;
            }
            record.clear();
            record.push(2);
            record.extend_from_slice(&micros(rec.t0, at).to_le_bytes());
            record.extend_from_slice(&ntp.to_le_bytes());
            record.extend_from_slice(&rtp.to_le_bytes());
            write(rec, track, ssrc, record, counters);
        }
        Input::Stop { recording, done } => {
            let result = match open.remove(&recording) {
                Some(mut rec) => {
                    let mut result = Ok(rec.bytes);
                    for stream in rec.streams.values_mut() {
                        if let Some(out) = stream.out.as_mut()
                            && let Err(e) = out.flush()
                        {
                            result = Err(e);
                        }
                    }
                    result
                }
                None => Ok(0),
            };
            let _ = done.send(result);
        }
    }
}

fn write(rec: &mut Open, track: TrackKey, ssrc: u32, record: &[u8], counters: &SpoolCounters) {
    let Some(out) = rec.stream(track, ssrc, counters) else { return };
    match out.write_all(record) {
        Ok(()) => {
            rec.bytes += record.len() as u64;
            counters.packets.fetch_add(1, Ordering::Relaxed);
            counters.bytes.fetch_add(record.len() as u64, Ordering::Relaxed);
        }
        Err(e) => {
            counters.errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, "cannot write to a recording stream file; its later packets are dropped");
            if let Some(stream) = rec.streams.get_mut(&track) {
                stream.out = None;
            }
        }
    }
}

/// What a recording's directory says about itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Meta {
    pub recording: Uuid,
    pub room: Uuid,
    pub interaction: Uuid,
    /// Wall-clock time of the recording's start (what arrival 0 is), in µs since the epoch.
    pub started_unix_us: i64,
    /// The part of the call's recording (1 unless the call moved between nodes).
    #[serde(default = "first_part")]
    pub part: i32,
}

fn first_part() -> i32 {
    1
}

/// A stream file of a recording, as named by the writer.
#[derive(Debug, Clone)]
pub struct StreamFile {
    pub path: PathBuf,
    pub order: u32,
    pub role: TrackRole,
    pub source: Source,
    /// The SFU's peer connection that sent it: the streams of one peer share a sender clock.
    pub peer: u64,
    pub ssrc: u32,
}

/// The stream files of a recording's directory, in the order they were opened.
pub fn stream_files(dir: &Path) -> io::Result<Vec<StreamFile>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".rtp")) else {
            continue;
        };
        let parts: Vec<&str> = name.split('-').collect();
        let [order, role, source, peer, ssrc] = parts[..] else { continue };
        let source = match source {
            "audio" => Source::Audio,
            "camera" => Source::Camera,
            "screen" => Source::Screen,
            _ => continue,
        };
        let (Ok(order), Some(role), Ok(peer), Ok(ssrc)) =
            (order.parse(), TrackRole::parse(role), peer.parse(), u32::from_str_radix(ssrc, 16))
        else {
            continue;
        };
        out.push(StreamFile { path, order, role, source, peer, ssrc });
    }
    out.sort_by_key(|s| s.order);
    Ok(out)
}

/// One record of a stream file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Rtp { at: u64, seq: u16, ts: u32, marker: bool, pt: u8, payload: Vec<u8> },
    Report { at: u64, ntp: u64, rtp: u32 },
}

/// Reads a stream file record by record; `headers_only` skips the payloads (returned empty).
pub struct Reader {
    input: BufReader<File>,
    headers_only: bool,
}

impl Reader {
    pub fn open(path: &Path, headers_only: bool) -> io::Result<Reader> {
        Ok(Reader { input: BufReader::with_capacity(64 * 1024, File::open(path)?), headers_only })
    }

    /// The next record; `None` at the end (a record cut short by a crash ends the file).
    pub fn next_record(&mut self) -> io::Result<Option<Record>> {
        let mut kind = [0u8; 1];
        match self.input.read_exact(&mut kind) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        let result = match kind[0] {
            1 => {
                let mut h = [0u8; 8 + 2 + 4 + 1 + 1 + 2];
                self.input.read_exact(&mut h)?;
                let len = u16::from_le_bytes([h[16], h[17]]) as usize;
                let payload = if self.headers_only {
                    self.input.seek_relative(len as i64)?;
                    Vec::new()
                } else {
                    let mut p = vec![0u8; len];
                    self.input.read_exact(&mut p)?;
                    p
                };
                Record::Rtp {
                    at: u64::from_le_bytes(h[..8].try_into().expect("8 bytes")),
                    seq: u16::from_le_bytes([h[8], h[9]]),
                    ts: u32::from_le_bytes(h[10..14].try_into().expect("4 bytes")),
                    marker: h[14] != 0,
                    pt: h[15],
                    payload,
                }
            }
            2 => {
                let mut h = [0u8; 8 + 8 + 4];
                self.input.read_exact(&mut h)?;
                Record::Report {
                    at: u64::from_le_bytes(h[..8].try_into().expect("8 bytes")),
                    ntp: u64::from_le_bytes(h[8..16].try_into().expect("8 bytes")),
                    rtp: u32::from_le_bytes(h[16..20].try_into().expect("4 bytes")),
                }
            }
            other => {
                return Err(io::Error::new(io::ErrorKind::InvalidData, format!("unknown spool record type {other}")));
            }
        };
        Ok(Some(result))
    }
}

/// Reads records until the end, treating a record cut short as the end.
pub fn records(path: &Path, headers_only: bool) -> io::Result<impl Iterator<Item = Record> + Send + use<>> {
    let mut reader = Reader::open(path, headers_only)?;
    Ok(std::iter::from_fn(move || match reader.next_record() {
        Ok(record) => record,
        Err(e) => {
            if e.kind() != io::ErrorKind::UnexpectedEof {
                tracing::warn!(error = %e, "a recording stream file ends in a bad record");
            }
            None
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn packets_and_reports_come_back_in_order_per_stream() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::start();
        let id = Uuid::new_v4();
        let t0 = Instant::now();
        spool.start_recording(id, dir.path().to_owned(), t0);
        let audio = TrackKey { peer: 1, role: TrackRole::Customer, source: Source::Audio };
        let video = TrackKey { peer: 2, role: TrackRole::Agent, source: Source::Camera };
        let header = |seq, ssrc| rtc::rtp::header::Header {
            sequence_number: seq,
            timestamp: u32::from(seq) * 960,
            ssrc,
            payload_type: 111,
            marker: seq % 2 == 0,
            ..Default::default()
        };
        for seq in 0..100u16 {
            spool.packet(id, audio, t0, &header(seq, 7), &Bytes::from(vec![seq as u8; 20]));
            spool.packet(id, video, t0, &header(seq, 9), &Bytes::from(vec![1u8; 3]));
        }
        spool.sender_report(id, audio, t0, 7, 42, 4242);
        spool.sender_report(id, audio, t0, 8, 1, 1); // not the stream's SSRC: dropped
        // a new SSRC on the audio track: a new stream
        spool.packet(id, audio, t0, &header(5, 8), &Bytes::from_static(b"x"));
        let written = spool.stop_recording(id).await.unwrap();
        assert!(written > 100 * 20);
        let files = stream_files(dir.path()).unwrap();
        let names: Vec<_> = files.iter().map(|f| (f.order, f.role, f.source, f.peer, f.ssrc)).collect();
        assert_eq!(
            names,
            vec![
                (0, TrackRole::Customer, Source::Audio, 1, 7),
                (1, TrackRole::Agent, Source::Camera, 2, 9),
                (2, TrackRole::Customer, Source::Audio, 1, 8)
            ]
        );
        let first: Vec<Record> = records(&files[0].path, false).unwrap().collect();
        assert_eq!(first.len(), 101);
        assert_eq!(first[3], Record::Rtp { at: 0, seq: 3, ts: 2880, marker: false, pt: 111, payload: vec![3; 20] });
        assert_eq!(first[100], Record::Report { at: 0, ntp: 42, rtp: 4242 });
        let headers: Vec<Record> = records(&files[0].path, true).unwrap().collect();
        assert!(matches!(&headers[99], Record::Rtp { seq: 99, payload, .. } if payload.is_empty()));
        assert_eq!(spool.counters.dropped.load(Ordering::Relaxed), 0);
    }
}
