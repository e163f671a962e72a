//! A Matroska (WebM when every track is a WebM codec) writer for what a recording holds: a few
//! tracks of already encoded frames, written as they come, to a file.
//!
//! Layout: the EBML header, then a `Segment` whose first children are a reserved `SeekHead`, the
//! `Info` (its `Duration` patched at the end) and a reserved space that receives the `Tracks` at
//! the end (a video track's size and an H.264 track's parameter sets are known only once its
//! first keyframe is seen, and the tracks must come before the clusters for players that stream);
//! then the `Cluster`s, each buffered in memory until it is closed (a new one starts at a video
//! keyframe after [`CLUSTER_MIN`], and at the latest after [`CLUSTER_MAX`] or [`CLUSTER_BYTES`],
//! so memory stays bounded whatever the recording's length); then the `Cues` (one point per
//! cluster), and the `SeekHead`, the `Duration` and the segment's size are written into their
//! places. Timestamps are milliseconds (`TimestampScale` 1,000,000 ns).
//!
//! Why our own: the maintained WebM muxer crate (`webm`, a binding of libwebm) offers VP8, VP9
//! and AV1 only, and a recording may be H.264; the pure Rust Matroska crates we found are
//! demuxers or young frameworks. The subset written here is small and read back in tests by
//! `ffprobe` and `ffmpeg` (docs/video.md, Recording).

use std::io::{self, Seek, SeekFrom, Write};

/// A new cluster starts at a video keyframe once the current one is this old (ms).
pub const CLUSTER_MIN: i64 = 1_000;
/// ... and in any case once it is this old (ms; block timestamps are 16-bit signed offsets).
pub const CLUSTER_MAX: i64 = 5_000;
/// ... or holds this many bytes.
pub const CLUSTER_BYTES: usize = 4 * 1024 * 1024;
/// Room kept for the `Tracks` element before the first cluster.
const TRACKS_ROOM: u64 = 4096;
/// Room kept for the `SeekHead`.
const SEEK_HEAD_ROOM: u64 = 96;

mod id {
    pub const EBML: u32 = 0x1A45_DFA3;
    pub const EBML_VERSION: u32 = 0x4286;
    pub const EBML_READ_VERSION: u32 = 0x42F7;
    pub const EBML_MAX_ID_LENGTH: u32 = 0x42F2;
    pub const EBML_MAX_SIZE_LENGTH: u32 = 0x42F3;
    pub const DOC_TYPE: u32 = 0x4282;
    pub const DOC_TYPE_VERSION: u32 = 0x4287;
    pub const DOC_TYPE_READ_VERSION: u32 = 0x4285;
    pub const SEGMENT: u32 = 0x1853_8067;
    pub const SEEK_HEAD: u32 = 0x114D_9B74;
    pub const SEEK: u32 = 0x4DBB;
    pub const SEEK_ID: u32 = 0x53AB;
    pub const SEEK_POSITION: u32 = 0x53AC;
    pub const INFO: u32 = 0x1549_A966;
    pub const TIMESTAMP_SCALE: u32 = 0x2A_D7B1;
    pub const DURATION: u32 = 0x4489;
    pub const DATE_UTC: u32 = 0x4461;
    pub const MUXING_APP: u32 = 0x4D80;
    pub const WRITING_APP: u32 = 0x5741;
    pub const TITLE: u32 = 0x7BA9;
    pub const TRACKS: u32 = 0x1654_AE6B;
    pub const TRACK_ENTRY: u32 = 0xAE;
    pub const TRACK_NUMBER: u32 = 0xD7;
    pub const TRACK_UID: u32 = 0x73C5;
    pub const TRACK_TYPE: u32 = 0x83;
    pub const FLAG_LACING: u32 = 0x9C;
    pub const NAME: u32 = 0x536E;
    pub const CODEC_ID: u32 = 0x86;
    pub const CODEC_PRIVATE: u32 = 0x63A2;
    pub const CODEC_DELAY: u32 = 0x56AA;
    pub const SEEK_PRE_ROLL: u32 = 0x56BB;
    pub const VIDEO: u32 = 0xE0;
    pub const PIXEL_WIDTH: u32 = 0xB0;
    pub const PIXEL_HEIGHT: u32 = 0xBA;
    pub const AUDIO: u32 = 0xE1;
    pub const SAMPLING_FREQUENCY: u32 = 0xB5;
    pub const CHANNELS: u32 = 0x9F;
    pub const CLUSTER: u32 = 0x1F43_B675;
    pub const TIMESTAMP: u32 = 0xE7;
    pub const SIMPLE_BLOCK: u32 = 0xA3;
    pub const CUES: u32 = 0x1C53_BB6B;
    pub const CUE_POINT: u32 = 0xBB;
    pub const CUE_TIME: u32 = 0xB3;
    pub const CUE_TRACK_POSITIONS: u32 = 0xB7;
    pub const CUE_TRACK: u32 = 0xF7;
    pub const CUE_CLUSTER_POSITION: u32 = 0xF1;
}

/// The codec of a track, as Matroska names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Codec {
    Vp8,
    /// `V_MPEG4/ISO/AVC`: frames are length-prefixed NAL units (4 bytes), the parameter sets in
    /// the `avcC` record of the codec private data.
    H264,
    /// Opus with its `OpusHead` and the encoder's pre-skip in samples at 48 kHz.
    Opus {
        channels: u8,
        pre_skip: u16,
    },
}

impl Codec {
    fn id(&self) -> &'static str {
        match self {
            Codec::Vp8 => "V_VP8",
            Codec::H264 => "V_MPEG4/ISO/AVC",
            Codec::Opus { .. } => "A_OPUS",
        }
    }

    fn is_video(&self) -> bool {
        !matches!(self, Codec::Opus { .. })
    }

    fn webm(&self) -> bool {
        !matches!(self, Codec::H264)
    }
}

/// A track as declared at the start; what only frames tell (a video's size, H.264's parameter
/// sets) is given later with [`Writer::set_video`].
#[derive(Debug, Clone)]
pub struct Track {
    pub codec: Codec,
    pub name: String,
}

#[derive(Debug, Clone, Default)]
struct VideoInfo {
    width: u32,
    height: u32,
    codec_private: Option<Vec<u8>>,
}

/// The document type a set of tracks needs: `webm` for VP8 and Opus, `matroska` otherwise.
pub fn doc_type(tracks: &[Track]) -> &'static str {
    if tracks.iter().all(|t| t.codec.webm()) { "webm" } else { "matroska" }
}

// ---- EBML primitives ----

fn put_id(out: &mut Vec<u8>, id: u32) {
    let bytes = id.to_be_bytes();
    let skip = bytes.iter().position(|b| *b != 0).unwrap_or(3);
    out.extend_from_slice(&bytes[skip..]);
}

/// The shortest EBML size (VINT) for `n`.
fn put_size(out: &mut Vec<u8>, n: u64) {
    for len in 1..=8u32 {
        // all ones is reserved (unknown size)
        if n < (1u64 << (7 * len)) - 1 {
            let marker = 1u64 << (7 * len);
            let v = n | marker;
            out.extend_from_slice(&v.to_be_bytes()[8 - len as usize..]);
            return;
        }
    }
    panic!("EBML size {n} too large");
}

/// An 8-byte EBML size, for elements patched later.
fn size8(n: u64) -> [u8; 8] {
    (n | (1u64 << 56)).to_be_bytes()
}

fn element(out: &mut Vec<u8>, id: u32, body: &[u8]) {
    put_id(out, id);
    put_size(out, body.len() as u64);
    out.extend_from_slice(body);
}

fn uint(out: &mut Vec<u8>, id: u32, v: u64) {
    let bytes = v.to_be_bytes();
    let skip = bytes.iter().position(|b| *b != 0).unwrap_or(7);
    element(out, id, &bytes[skip..]);
}

fn float(out: &mut Vec<u8>, id: u32, v: f64) {
    element(out, id, &v.to_be_bytes());
}

fn string(out: &mut Vec<u8>, id: u32, v: &str) {
    element(out, id, v.as_bytes());
}

fn master(out: &mut Vec<u8>, id: u32, fill: impl FnOnce(&mut Vec<u8>)) {
    let mut body = Vec::new();
    fill(&mut body);
    element(out, id, &body);
}

/// A `Void` element of exactly `len` bytes (at least 2).
fn void(len: u64) -> Vec<u8> {
    assert!(len >= 2, "a Void element takes at least 2 bytes");
    let mut out = vec![0xEC];
    // size field of 1 byte up to 126, else 8 bytes
    if len - 2 < 127 {
        put_size(&mut out, len - 2);
    } else {
        out.extend_from_slice(&size8(len - 9));
    }
    out.resize(len as usize, 0);
    out
}

/// The `OpusHead` of an Opus track (RFC 7845, 5.1), mapping family 0.
pub fn opus_head(channels: u8, pre_skip: u16) -> Vec<u8> {
    let mut head = b"OpusHead".to_vec();
    head.push(1);
    head.push(channels);
    head.extend_from_slice(&pre_skip.to_le_bytes());
    head.extend_from_slice(&48_000u32.to_le_bytes());
    head.extend_from_slice(&0i16.to_le_bytes());
    head.push(0);
    head
}

/// The `avcC` record (ISO/IEC 14496-15) of one SPS and one PPS, 4-byte NAL lengths.
pub fn avc_config(sps: &[u8], pps: &[u8]) -> Vec<u8> {
    let mut out = vec![
        1,
        sps.get(1).copied().unwrap_or(66),
        sps.get(2).copied().unwrap_or(0),
        sps.get(3).copied().unwrap_or(31),
        0xFF,
        0xE1,
    ];
    out.extend_from_slice(&(sps.len() as u16).to_be_bytes());
    out.extend_from_slice(sps);
    out.push(1);
    out.extend_from_slice(&(pps.len() as u16).to_be_bytes());
    out.extend_from_slice(pps);
    out
}

struct Cue {
    time: i64,
    track: u64,
    /// Of the cluster, relative to the segment's data.
    position: u64,
}

/// Writes one Matroska file. Call [`Writer::finish`] at the end: without it the file has no
/// duration, tracks or cues.
pub struct Writer<W: Write + Seek> {
    out: W,
    tracks: Vec<Track>,
    video: Vec<VideoInfo>,
    segment_size_at: u64,
    segment_data: u64,
    seek_head_at: u64,
    info_at: u64,
    duration_at: u64,
    tracks_at: u64,
    cluster: Vec<u8>,
    cluster_time: Option<i64>,
    cluster_has_key: bool,
    cues: Vec<Cue>,
    last_time: i64,
    /// Time of the end of the last frame given (its timestamp plus its duration, if known).
    end_time: i64,
    blocks: u64,
}

impl<W: Write + Seek> Writer<W> {
    /// Starts the file: header, segment, reserved seek head, info and room for the tracks.
    pub fn new(mut out: W, tracks: Vec<Track>, title: &str, date_utc_ns: i64) -> io::Result<Self> {
        let mut head = Vec::new();
        master(&mut head, id::EBML, |b| {
            uint(b, id::EBML_VERSION, 1);
            uint(b, id::EBML_READ_VERSION, 1);
            uint(b, id::EBML_MAX_ID_LENGTH, 4);
            uint(b, id::EBML_MAX_SIZE_LENGTH, 8);
            string(b, id::DOC_TYPE, doc_type(&tracks));
            uint(b, id::DOC_TYPE_VERSION, 4);
            uint(b, id::DOC_TYPE_READ_VERSION, 2);
        });
        put_id(&mut head, id::SEGMENT);
        let start = out.stream_position()?;
        let segment_size_at = start + head.len() as u64;
        head.extend_from_slice(&size8(0));
        let segment_data = start + head.len() as u64;
        let seek_head_at = segment_data;
        head.extend_from_slice(&void(SEEK_HEAD_ROOM));
        let info_at = start + head.len() as u64;
        let mut info = Vec::new();
        // Duration last, at a known offset from the end of the element
        master(&mut info, id::INFO, |b| {
            uint(b, id::TIMESTAMP_SCALE, 1_000_000);
            string(b, id::MUXING_APP, "switchboard");
            string(b, id::WRITING_APP, "switchboard video recorder");
            if !title.is_empty() {
                string(b, id::TITLE, title);
            }
            element(b, id::DATE_UTC, &(date_utc_ns - 978_307_200_000_000_000).to_be_bytes());
            float(b, id::DURATION, 0.0);
        });
        let duration_at = info_at + info.len() as u64 - 8;
        head.extend_from_slice(&info);
        let tracks_at = start + head.len() as u64;
        head.extend_from_slice(&void(TRACKS_ROOM));
        out.write_all(&head)?;
        let video = vec![VideoInfo::default(); tracks.len()];
        Ok(Writer {
            out,
            tracks,
            video,
            segment_size_at,
            segment_data,
            seek_head_at,
            info_at,
            duration_at,
            tracks_at,
            cluster: Vec::new(),
            cluster_time: None,
            cluster_has_key: false,
            cues: Vec::new(),
            last_time: 0,
            end_time: 0,
            blocks: 0,
        })
    }

    /// What only a video track's frames tell: its size, and for H.264 the `avcC` record.
    pub fn set_video(&mut self, track: usize, width: u32, height: u32, codec_private: Option<Vec<u8>>) {
        if let Some(v) = self.video.get_mut(track) {
            if v.width == 0 {
                v.width = width;
                v.height = height;
            }
            if v.codec_private.is_none() {
                v.codec_private = codec_private;
            }
        }
    }

    /// Frames written so far.
    pub fn blocks(&self) -> u64 {
        self.blocks
    }

    /// Adds a frame of `track` (0-based, in the order given to [`Writer::new`]) at `time` ms.
    /// Frames should come in time order across tracks; one that goes back in time is written
    /// at the time of the previous one. `duration` is the frame's length in ms when known.
    pub fn frame(&mut self, track: usize, time: i64, keyframe: bool, data: &[u8], duration: i64) -> io::Result<()> {
        let time = time.max(self.last_time);
        self.last_time = time;
        self.end_time = self.end_time.max(time + duration);
        let is_video = self.tracks[track].codec.is_video();
        let start_new = match self.cluster_time {
            None => true,
            Some(t) => {
                let age = time - t;
                age >= CLUSTER_MAX
                    || self.cluster.len() >= CLUSTER_BYTES
                    || (is_video && keyframe && age >= CLUSTER_MIN)
            }
        };
        if start_new {
            self.close_cluster()?;
            self.cluster_time = Some(time);
            uint(&mut self.cluster, id::TIMESTAMP, time as u64);
        }
        if is_video && keyframe && !self.cluster_has_key {
            self.cluster_has_key = true;
        }
        let relative = (time - self.cluster_time.unwrap_or(time)) as i16;
        let mut block = Vec::with_capacity(data.len() + 4);
        put_size(&mut block, track as u64 + 1);
        block.extend_from_slice(&relative.to_be_bytes());
        // audio frames are all keyframes
        block.push(if keyframe || !is_video { 0x80 } else { 0 });
        block.extend_from_slice(data);
        element(&mut self.cluster, id::SIMPLE_BLOCK, &block);
        self.blocks += 1;
        Ok(())
    }

    fn close_cluster(&mut self) -> io::Result<()> {
        let Some(time) = self.cluster_time.take() else { return Ok(()) };
        let position = self.out.stream_position()? - self.segment_data;
        // a cue per cluster: on the video track where the cluster starts with a keyframe, else
        // on the first track (audio-only recordings seek too)
        let video_track = self.tracks.iter().position(|t| t.codec.is_video());
        match video_track {
            Some(v) if self.cluster_has_key => self.cues.push(Cue { time, track: v as u64 + 1, position }),
            Some(_) => {}
            None => self.cues.push(Cue { time, track: 1, position }),
        }
        let mut head = Vec::with_capacity(12);
        put_id(&mut head, id::CLUSTER);
        put_size(&mut head, self.cluster.len() as u64);
        self.out.write_all(&head)?;
        self.out.write_all(&self.cluster)?;
        self.cluster.clear();
        self.cluster_has_key = false;
        Ok(())
    }

    /// Closes the last cluster, writes the cues, the tracks, the seek head and the duration
    /// (`duration_ms`, or the end of the last frame when `None`); returns the output and the
    /// duration written.
    pub fn finish(mut self, duration_ms: Option<i64>) -> io::Result<(W, i64)> {
        self.close_cluster()?;
        let cues_at = self.out.stream_position()?;
        let mut cues = Vec::new();
        if !self.cues.is_empty() {
            master(&mut cues, id::CUES, |b| {
                for cue in &self.cues {
                    master(b, id::CUE_POINT, |p| {
                        uint(p, id::CUE_TIME, cue.time as u64);
                        master(p, id::CUE_TRACK_POSITIONS, |t| {
                            uint(t, id::CUE_TRACK, cue.track);
                            uint(t, id::CUE_CLUSTER_POSITION, cue.position);
                        });
                    });
                }
            });
            self.out.write_all(&cues)?;
        }
        let end = self.out.stream_position()?;

        // the tracks, into their room
        let mut tracks = Vec::new();
        master(&mut tracks, id::TRACKS, |b| {
            for (i, track) in self.tracks.iter().enumerate() {
                master(b, id::TRACK_ENTRY, |e| {
                    uint(e, id::TRACK_NUMBER, i as u64 + 1);
                    uint(e, id::TRACK_UID, i as u64 + 1);
                    uint(e, id::TRACK_TYPE, if track.codec.is_video() { 1 } else { 2 });
                    uint(e, id::FLAG_LACING, 0);
                    if !track.name.is_empty() {
                        string(e, id::NAME, &track.name);
                    }
                    string(e, id::CODEC_ID, track.codec.id());
                    match &track.codec {
                        Codec::Opus { channels, pre_skip } => {
                            element(e, id::CODEC_PRIVATE, &opus_head(*channels, *pre_skip));
                            uint(e, id::CODEC_DELAY, u64::from(*pre_skip) * 1_000_000_000 / 48_000);
                            uint(e, id::SEEK_PRE_ROLL, 80_000_000);
                            master(e, id::AUDIO, |a| {
                                float(a, id::SAMPLING_FREQUENCY, 48_000.0);
                                uint(a, id::CHANNELS, u64::from(*channels));
                            });
                        }
                        _ => {
                            let v = &self.video[i];
                            if let Some(private) = &v.codec_private {
                                element(e, id::CODEC_PRIVATE, private);
                            }
                            master(e, id::VIDEO, |a| {
                                uint(a, id::PIXEL_WIDTH, u64::from(v.width.max(1)));
                                uint(a, id::PIXEL_HEIGHT, u64::from(v.height.max(1)));
                            });
                        }
                    }
                });
            }
        });
        if tracks.len() as u64 + 2 > TRACKS_ROOM {
            return Err(io::Error::other("the tracks do not fit their reserved room"));
        }
        tracks.extend_from_slice(&void(TRACKS_ROOM - tracks.len() as u64));
        self.out.seek(SeekFrom::Start(self.tracks_at))?;
        self.out.write_all(&tracks)?;

        // the seek head, into its room
        let mut seek = Vec::new();
        master(&mut seek, id::SEEK_HEAD, |b| {
            let mut entry = |element_id: u32, at: u64| {
                master(b, id::SEEK, |s| {
                    let mut raw = Vec::new();
                    put_id(&mut raw, element_id);
                    element(s, id::SEEK_ID, &raw);
                    uint(s, id::SEEK_POSITION, at - self.segment_data);
                });
            };
            entry(id::INFO, self.info_at);
            entry(id::TRACKS, self.tracks_at);
            if !cues.is_empty() {
                entry(id::CUES, cues_at);
            }
        });
        seek.extend_from_slice(&void(SEEK_HEAD_ROOM - seek.len() as u64));
        self.out.seek(SeekFrom::Start(self.seek_head_at))?;
        self.out.write_all(&seek)?;

        let duration = duration_ms.unwrap_or(self.end_time);
        self.out.seek(SeekFrom::Start(self.duration_at))?;
        self.out.write_all(&(duration as f64).to_be_bytes())?;
        self.out.seek(SeekFrom::Start(self.segment_size_at))?;
        self.out.write_all(&size8(end - self.segment_data))?;
        self.out.seek(SeekFrom::Start(end))?;
        self.out.flush()?;
        Ok((self.out, duration))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ebml_sizes_are_the_shortest_and_voids_exact() {
        let size = |n| {
            let mut v = Vec::new();
            put_size(&mut v, n);
            v
        };
        assert_eq!(size(0), vec![0x80]);
        assert_eq!(size(126), vec![0xFE]);
        assert_eq!(size(127), vec![0x40, 0x7F], "0xFF is reserved for an unknown size");
        assert_eq!(size(16_382), vec![0x7F, 0xFE]);
        let mut id = Vec::new();
        put_id(&mut id, 0x1A45_DFA3);
        put_id(&mut id, 0xA3);
        assert_eq!(id, vec![0x1A, 0x45, 0xDF, 0xA3, 0xA3]);
        for len in [2, 3, 128, 129, 130, 4096] {
            assert_eq!(void(len).len() as u64, len);
        }
        assert_eq!(opus_head(2, 312).len(), 19);
    }

    #[test]
    fn a_file_has_its_tracks_cues_and_duration_in_place() {
        let tracks = vec![
            Track { codec: Codec::Vp8, name: "customer camera".into() },
            Track { codec: Codec::Opus { channels: 2, pre_skip: 312 }, name: "customer left, agent right".into() },
        ];
        assert_eq!(doc_type(&tracks), "webm");
        let mut w = Writer::new(io::Cursor::new(Vec::new()), tracks, "test", 0).unwrap();
        w.set_video(0, 320, 240, None);
        for i in 0..600i64 {
            w.frame(1, i * 20, true, &[0xFC, 0xFF, 0xFE], 20).unwrap();
            if i % 3 == 0 {
                w.frame(0, i * 20, i % 150 == 0, &[0u8; 100], 0).unwrap();
            }
        }
        let (out, duration) = w.finish(None).unwrap();
        assert_eq!(duration, 12_000);
        let bytes = out.into_inner();
        assert_eq!(&bytes[..4], &[0x1A, 0x45, 0xDF, 0xA3]);
        let find = |pattern: &[u8]| bytes.windows(pattern.len()).position(|w| w == pattern);
        assert!(find(b"V_VP8").is_some() && find(b"A_OPUS").is_some() && find(b"OpusHead").is_some());
        let clusters = bytes.windows(4).filter(|w| *w == [0x1F, 0x43, 0xB6, 0x75]).count();
        assert!((3..=13).contains(&clusters), "{clusters} clusters");
        assert!(find(&[0x1C, 0x53, 0xBB, 0x6B]).is_some(), "cues");
        let at = find(&[0x44, 0x89, 0x88]).unwrap() + 3;
        assert_eq!(f64::from_be_bytes(bytes[at..at + 8].try_into().unwrap()), 12_000.0);
    }
}
