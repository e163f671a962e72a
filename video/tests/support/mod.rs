//! What the video tests and benchmarks share: a hub with an assigned web chat interaction and
//! the video component served in-process on the real PostgreSQL, and `TestPeer`, a participant
//! built on webrtc-rs's `rtc` crate (the same engine as the SFU, as a full ICE agent) that
//! joins through the signalling socket, publishes synthetic Opus and VP8 RTP and counts what
//! it receives on every mid.
#![allow(dead_code)]

pub mod media;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use rtc::interceptor::Registry;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::interceptor_registry::register_default_interceptors;
use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_OPUS, MIME_TYPE_VP8, MediaEngine};
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::event::{RTCDataChannelEvent, RTCPeerConnectionEvent, RTCTrackEvent};
use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::transport::{CandidateConfig, CandidateHostConfig, RTCIceCandidate};
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp;
use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind};
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub const SECRET: &str = "video-tests-secret-0123456789abcdef";

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The video component on a fresh database, with agent `alice` assigned to a web chat
/// interaction, supervisor `sue`, and agent `bob` who has nothing to do with it.
pub struct Hub {
    pub pool: PgPool,
    pub http: SocketAddr,
    pub video: Arc<video::Video>,
    pub interaction: Uuid,
    pub coord: Arc<dyn coord::Coordinator>,
    pub shutdown: CancellationToken,
    /// The recordings' spool and the file server's files.
    pub dir: Arc<tempfile::TempDir>,
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub fn token(sub: &str, roles: &[&str]) -> String {
    testenv::token(SECRET, sub, roles)
}

impl Hub {
    pub async fn start() -> Hub {
        Self::start_with(video::Config::default()).await
    }

    pub async fn start_with(config: video::Config) -> Hub {
        Self::start_full(config, fileserver::Config::default()).await
    }

    /// The video component and, on the same listener, a file server (where recordings go).
    pub async fn start_full(config: video::Config, files: fileserver::Config) -> Hub {
        testenv::init_logging();
        let (_url, pool) = testenv::database().await;
        let interaction = assigned_interaction(&pool).await;
        Self::start_on(config, files, pool, interaction).await
    }

    /// Another video node (and file server) on this hub's database: a second process of the
    /// cluster, or this one restarted once this one is stopped.
    pub async fn another_node(&self, config: video::Config) -> Hub {
        Self::start_on(config, fileserver::Config::default(), self.pool.clone(), self.interaction).await
    }

    async fn start_on(
        mut config: video::Config,
        mut files: fileserver::Config,
        pool: PgPool,
        interaction: Uuid,
    ) -> Hub {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let verifier = ops::auth::Verifier::from_config(&ops::auth::JwtConfig {
            hs256_secret: Some(ops::config::Secret::new(SECRET.to_owned())),
            public_key_file: None,
            issuer: None,
            audience: None,
            leeway_s: 0,
        })
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        config.empty_grace_s = config.empty_grace_s.min(1);
        config.recording.spool_dir = dir.path().join("spool");
        config.recording.service_secret = Some(ops::config::Secret::new(SECRET.to_owned()));
        let coordinator: Arc<dyn coord::Coordinator> = Arc::new(coord::LocalCoordinator::new());
        let video = video::Video::start(
            config,
            &format!("http://{http}"),
            verifier.clone(),
            pool.clone(),
            coordinator.clone(),
            shutdown.clone(),
        )
        .await
        .unwrap();
        files.root = dir.path().join("files");
        files.retention_days = 0;
        let fileserver =
            fileserver::Fileserver::start(files, verifier, pool.clone(), coordinator.clone(), shutdown.clone())
                .await
                .unwrap();
        let router = video.router().merge(fileserver.router());
        let stop = shutdown.clone();
        tokio::spawn(async move {
            axum::serve(listener, router).with_graceful_shutdown(async move { stop.cancelled().await }).await.unwrap();
        });
        Hub { pool, http, video: Arc::new(video), interaction, coord: coordinator, shutdown, dir }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// Starts a room over REST as alice; returns the answer.
    pub async fn start_room(&self, body: Value) -> (reqwest::StatusCode, Value) {
        let response = reqwest::Client::new()
            .post(self.url("/api/v1/video/rooms"))
            .bearer_auth(token("alice", &["agent"]))
            .json(&body)
            .send()
            .await
            .unwrap();
        (response.status(), response.json().await.unwrap())
    }

    /// A two-way room of the interaction: (room id, customer link token).
    pub async fn room(&self) -> (Uuid, String) {
        self.room_for(self.interaction).await
    }

    /// A two-way room of `interaction` (assigned to alice).
    pub async fn room_for(&self, interaction: Uuid) -> (Uuid, String) {
        let (status, body) = self.start_room(json!({"interaction_id": interaction})).await;
        assert_eq!(status, 201, "{body}");
        let link = body["customer_link"].as_str().unwrap();
        (body["room_id"].as_str().unwrap().parse().unwrap(), link.rsplit('/').next().unwrap().to_owned())
    }

    pub async fn socket(&self) -> Ws {
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/api/v1/video/ws", self.http)).await.unwrap();
        ws
    }
}

impl Hub {
    /// Another interaction assigned to alice, with customer `customer` on the same account.
    pub async fn another_interaction(&self, customer: &str) -> Uuid {
        let account: Uuid = sqlx::query_scalar("SELECT account_id FROM interactions WHERE id = $1")
            .bind(self.interaction)
            .fetch_one(&self.pool)
            .await
            .unwrap();
        testenv::fixtures::assigned_interaction(&self.pool, account, customer, "Vera", "can we talk on video?", "alice")
            .await
    }
}

/// Agents alice and bob, supervisor sue, a web chat account, and customer Vera's conversation
/// assigned to alice.
async fn assigned_interaction(pool: &PgPool) -> Uuid {
    let account =
        testenv::fixtures::webchat_account(pool, &[("alice", "agent"), ("bob", "agent"), ("sue", "supervisor")]).await;
    testenv::fixtures::assigned_interaction(pool, account, "wc-v", "Vera", "can we talk on video?", "alice").await
}

/// Reads frames until one of `kind` arrives (others are kept in `seen`); panics after 10 s.
pub async fn frame_of(ws: &mut Ws, kind: &str, seen: &mut Vec<Value>) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let next = tokio::time::timeout_at(deadline, ws.next())
            .await
            .unwrap_or_else(|_| panic!("no {kind} frame within 10 s; saw {seen:?}"));
        match next {
            Some(Ok(Message::Text(text))) => {
                let frame: Value = serde_json::from_str(&text).unwrap();
                if frame["type"] == kind {
                    return frame;
                }
                seen.push(frame);
            }
            Some(Ok(Message::Close(close))) => panic!("closed ({close:?}) before a {kind} frame; saw {seen:?}"),
            Some(Ok(_)) => {}
            other => panic!("socket ended before a {kind} frame: {other:?}; saw {seen:?}"),
        }
    }
}

pub async fn send(ws: &mut Ws, frame: Value) {
    ws.send(Message::Text(frame.to_string().into())).await.unwrap();
}

/// A wall-clock time.
pub type Wall = chrono::DateTime<chrono::Utc>;

/// What a test peer received, per mid of its peer connection.
#[derive(Default)]
pub struct Received {
    pub rtp: [AtomicU64; 9],
    pub bytes: AtomicU64,
    pub data: Mutex<Vec<String>>,
    pub connected: AtomicBool,
    pub data_open: AtomicBool,
    /// Keyframe requests (PLI/FIR) this peer received for what it publishes.
    pub keyframe_requests: AtomicU64,
    /// One-way latency samples (µs) of packets whose payload carries a send time.
    pub latencies_us: Mutex<Vec<u64>>,
    /// When this peer's planned mute began and ended (wall clock).
    pub muted: Mutex<Option<(Wall, Option<Wall>)>>,
}

impl Received {
    pub fn on(&self, mid: &str) -> u64 {
        self.rtp[mid.parse::<usize>().unwrap()].load(Ordering::Relaxed)
    }
}

enum PeerCommand {
    Data(String),
    /// A new offer from the server: answer it.
    Offer(String, tokio::sync::oneshot::Sender<String>),
    /// Send a PLI for what arrives on this mid.
    Pli(usize),
}

/// One participant, joined and connected through the SFU.
pub struct TestPeer {
    pub ws: Ws,
    pub joined: Value,
    pub slots: Value,
    pub received: Arc<Received>,
    pub seen: Vec<Value>,
    commands: mpsc::UnboundedSender<PeerCommand>,
    stop: CancellationToken,
    pub task: tokio::task::JoinHandle<()>,
}

/// How a test peer publishes.
#[derive(Clone, Copy)]
pub struct Publish {
    /// Video packets per second (each ~1,100 bytes; 0: no video).
    pub video_pps: u32,
    /// The payload type of the video packets: 96 is VP8, 102 H.264 (constrained baseline,
    /// packetization mode 1) in the SFU's offer.
    pub video_pt: u8,
    /// Audio packets per second (each ~160 bytes; 0: no audio).
    pub audio_pps: u32,
    /// Real media instead of filler: a tone and the test pattern (see [`Media`]).
    pub media: Option<Media>,
}

impl Publish {
    pub const CALL: Publish = Publish { video_pps: 100, video_pt: 96, audio_pps: 50, media: None };
    pub const NONE: Publish = Publish { video_pps: 0, video_pt: 96, audio_pps: 0, media: None };

    /// A tone of `hz` (20 ms Opus packets) and, with `video`, the VP8 test pattern (15
    /// frames/s), both from real encoders.
    pub fn media(hz: u32, video: bool) -> Publish {
        Publish {
            video_pps: if video { 15 } else { 0 },
            video_pt: 96,
            audio_pps: 50,
            media: Some(Media { tone_hz: hz, mute: None, loss_percent: 0 }),
        }
    }
}

/// Real media for a test peer.
#[derive(Clone, Copy, Debug)]
pub struct Media {
    /// The voice: a sine of this frequency.
    pub tone_hz: u32,
    /// No audio is sent in this span (ms after the media started), its timestamps running on
    /// (a muted or stopped microphone); the peer notes when the span really began and ended.
    pub mute: Option<(u64, u64)>,
    /// This share of the peer's packets is not sent (a lossy network).
    pub loss_percent: u32,
}

/// The epoch of the latency stamps in payloads.
static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

fn micros_since_epoch() -> u64 {
    EPOCH.get_or_init(Instant::now).elapsed().as_micros() as u64
}

impl TestPeer {
    /// Joins with `join` (a join frame), answers the offer and starts the media loop.
    pub async fn join(hub_ws: Ws, join: Value, publish: Publish) -> TestPeer {
        let mut ws = hub_ws;
        send(&mut ws, join).await;
        let mut seen = Vec::new();
        let joined = frame_of(&mut ws, "joined", &mut seen).await;
        let offer = frame_of(&mut ws, "offer", &mut seen).await;
        let slots = offer["slots"].clone();

        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let local = socket.local_addr().unwrap();
        let mut pc = client_peer_connection();
        let offer = RTCSessionDescription::offer(offer["sdp"].as_str().unwrap().to_owned()).unwrap();
        pc.set_remote_description(Instant::now(), offer).unwrap();
        let audio_ssrc = rand::random::<u32>();
        let video_ssrc = rand::random::<u32>();
        let audio_sender = pc.add_track(track(RtpCodecKind::Audio, MIME_TYPE_OPUS, 48000, 2, audio_ssrc)).unwrap();
        let video_sender = pc.add_track(track(RtpCodecKind::Video, MIME_TYPE_VP8, 90000, 0, video_ssrc)).unwrap();
        let answer = pc.create_answer(None).unwrap();
        pc.set_local_description(Instant::now(), answer).unwrap();
        let candidate = host_candidate(local);
        pc.add_local_candidate(candidate.clone()).unwrap();
        let sdp = pc.local_description().unwrap().sdp;
        send(&mut ws, json!({"type": "answer", "sdp": sdp})).await;
        send(
            &mut ws,
            json!({"type": "candidate", "candidate": {"candidate": candidate.candidate, "sdpMid": "0", "sdpMLineIndex": 0}}),
        )
        .await;
        send(&mut ws, json!({"type": "candidate", "candidate": null})).await;

        let received = Arc::new(Received::default());
        let (commands, mut command_rx) = mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        let task = {
            let received = received.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut pc = pc;
                let mut buf = vec![0u8; 2048];
                let mut track_mids: HashMap<String, usize> = HashMap::new();
                let mut mid_ssrcs: HashMap<usize, u32> = HashMap::new();
                let mut data_channel = None;
                // a missed tick is skipped, as an encoder would: no burst to catch up
                let ticker = |pps: u32| {
                    (pps > 0).then(|| {
                        let mut t = tokio::time::interval(Duration::from_secs_f64(1.0 / pps as f64));
                        // (real media keeps its capture clock: every 20 ms of sound is sent, late
                        // after a stall, so its timestamps follow the wall clock)
                        t.set_missed_tick_behavior(if publish.media.is_some() {
                            tokio::time::MissedTickBehavior::Burst
                        } else {
                            tokio::time::MissedTickBehavior::Skip
                        });
                        t
                    })
                };
                let mut video_tick = ticker(publish.video_pps);
                let mut audio_tick = ticker(publish.audio_pps);
                let (mut vseq, mut aseq, mut vts, mut ats) = (0u16, 0u16, 0u32, 0u32);
                let tone = publish.media.map(|m| media::opus_tone(f64::from(m.tone_hz), 1.0, 0.3));
                let pattern = publish.media.filter(|_| publish.video_pps > 0).map(|_| media::vp8_pattern());
                let (mut frame_no, mut audio_no, mut sent_no) = (0usize, 0u64, 0u64);
                let mut media_started: Option<Instant> = None;
                let lose = |n: u64| {
                    publish.media.is_some_and(|m| {
                        m.loss_percent > 0 && n.wrapping_mul(2_654_435_761) % 100 < u64::from(m.loss_percent)
                    })
                };
                loop {
                    while let Some(out) = pc.poll_write() {
                        let _ = socket.send_to(&out.message, out.transport.peer_addr).await;
                    }
                    while let Some(event) = pc.poll_event() {
                        match event {
                            RTCPeerConnectionEvent::OnConnectionStateChangeEvent(RTCPeerConnectionState::Connected) => {
                                received.connected.store(true, Ordering::SeqCst);
                            }
                            RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnOpen(init)) => {
                                let ids: Vec<_> = pc.get_transceivers().collect();
                                for id in ids {
                                    if let Some(t) = pc.rtp_transceiver(id)
                                        && t.receiver() == Some(init.receiver_id)
                                        && let Some(mid) = t.mid().as_deref().and_then(|m| m.parse().ok())
                                    {
                                        track_mids.insert(init.track_id.clone(), mid);
                                    }
                                }
                            }
                            RTCPeerConnectionEvent::OnDataChannel(RTCDataChannelEvent::OnOpen(id)) => {
                                data_channel = Some(id);
                                received.data_open.store(true, Ordering::SeqCst);
                            }
                            _ => {}
                        }
                    }
                    while let Some(TaggedRTCMessage { message, .. }) = pc.poll_read() {
                        match message {
                            RTCMessage::RtpPacket(track, packet) => {
                                if let Some(&mid) = track_mids.get(&track) {
                                    mid_ssrcs.insert(mid, packet.header.ssrc);
                                    received.rtp[mid].fetch_add(1, Ordering::Relaxed);
                                    received.bytes.fetch_add(packet.payload.len() as u64, Ordering::Relaxed);
                                    if packet.payload.len() >= 8 {
                                        let sent = u64::from_be_bytes(packet.payload[..8].try_into().unwrap());
                                        let now = micros_since_epoch();
                                        if sent > 0 && now >= sent {
                                            let mut l = received.latencies_us.lock().unwrap();
                                            if l.len() < 1_000_000 {
                                                l.push(now - sent);
                                            }
                                        }
                                    }
                                }
                            }
                            RTCMessage::RtcpPacket(_, packets) => {
                                let plis = packets
                                    .iter()
                                    .filter(|p| p.as_any().downcast_ref::<PictureLossIndication>().is_some())
                                    .count();
                                received.keyframe_requests.fetch_add(plis as u64, Ordering::Relaxed);
                            }
                            RTCMessage::DataChannelMessage(_, message) => {
                                received.data.lock().unwrap().push(String::from_utf8_lossy(&message.data).into_owned());
                            }
                            _ => {}
                        }
                    }
                    let deadline = pc.poll_timeout().unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
                    let sleep = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline));
                    let connected = received.connected.load(Ordering::Relaxed);
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = sleep => { let _ = pc.handle_timeout(Instant::now()); }
                        r = socket.recv_from(&mut buf) => {
                            if let Ok((n, from)) = r {
                                let _ = pc.handle_read(TaggedBytesMut {
                                    now: Instant::now(),
                                    transport: TransportContext { local_addr: local, peer_addr: from, ecn: None, transport_protocol: TransportProtocol::UDP },
                                    message: BytesMut::from(&buf[..n]),
                                });
                            }
                        }
                        Some(command) = command_rx.recv() => match command {
                            PeerCommand::Data(text) => {
                                if let Some(id) = data_channel && let Some(mut dc) = pc.data_channel(id) {
                                    let _ = dc.send_text(Instant::now(), text);
                                }
                            }
                            PeerCommand::Pli(mid) => {
                                let media_ssrc = mid_ssrcs.get(&mid).copied().unwrap_or(0);
                                let receivers: Vec<_> = pc.get_transceivers().collect();
                                for id in receivers {
                                    let receiver = pc.rtp_transceiver(id).filter(|t| t.mid().as_deref() == Some(&*mid.to_string())).and_then(|t| t.receiver());
                                    if let Some(receiver) = receiver && let Some(mut r) = pc.rtp_receiver(receiver) {
                                        let _ = r.write_rtcp(Instant::now(), vec![Box::new(PictureLossIndication { sender_ssrc: 1, media_ssrc })]);
                                    }
                                }
                            }
                            PeerCommand::Offer(sdp, reply) => {
                                let offer = RTCSessionDescription::offer(sdp).unwrap();
                                pc.set_remote_description(Instant::now(), offer).unwrap();
                                let answer = pc.create_answer(None).unwrap();
                                pc.set_local_description(Instant::now(), answer).unwrap();
                                let _ = reply.send(pc.local_description().unwrap().sdp);
                            }
                        },
                        _ = async { video_tick.as_mut().unwrap().tick().await }, if connected && video_tick.is_some() => {
                            if let Some(frames) = pattern {

                                let frame = &frames[frame_no % frames.len()];
                                frame_no += 1;
                                vts = vts.wrapping_add(6000);
                                let payloads = media::packetize(frame, false);
                                let last = payloads.len() - 1;
                                for (i, payload) in payloads.into_iter().enumerate() {
                                    vseq = vseq.wrapping_add(1);
                                    sent_no += 1;
                                    if lose(sent_no) {
                                        continue;
                                    }
                                    let packet = rtp::Packet {
                                        header: rtp::header::Header { version: 2, marker: i == last, payload_type: 96, sequence_number: vseq, timestamp: vts, ssrc: video_ssrc, ..Default::default() },
                                        payload,
                                    };
                                    if let Some(mut s) = pc.rtp_sender(video_sender) { let _ = s.write_rtp(Instant::now(), packet); }
                                }
                            } else {
                                vseq = vseq.wrapping_add(1);
                                vts = vts.wrapping_add(900);
                                let mut payload = vec![0u8; 1100];
                                payload[..8].copy_from_slice(&micros_since_epoch().to_be_bytes());
                                let packet = rtp::Packet {
                                    header: rtp::header::Header { version: 2, marker: true, payload_type: publish.video_pt, sequence_number: vseq, timestamp: vts, ssrc: video_ssrc, ..Default::default() },
                                    payload: Bytes::from(payload),
                                };
                                if let Some(mut s) = pc.rtp_sender(video_sender) { let _ = s.write_rtp(Instant::now(), packet); }
                            }
                        }
                        _ = async { audio_tick.as_mut().unwrap().tick().await }, if connected && audio_tick.is_some() => {
                            if let Some(tone) = tone.as_ref() {
                                let started = *media_started.get_or_insert_with(Instant::now);
                                ats = ats.wrapping_add(960);
                                let payload = tone[(audio_no % 50) as usize].clone();
                                audio_no += 1;
                                let elapsed = started.elapsed().as_millis() as u64;
                                let muted = publish.media.and_then(|m| m.mute).is_some_and(|(a, b)| elapsed >= a && elapsed < b);
                                {
                                    let mut m = received.muted.lock().unwrap();
                                    match (*m, muted) {
                                        (None, true) => *m = Some((chrono::Utc::now(), None)),
                                        (Some((s, None)), false) => *m = Some((s, Some(chrono::Utc::now()))),
                                        _ => {}
                                    }
                                }
                                // a muted microphone sends nothing (its sequence numbers do not
                                // move); a lost packet was numbered and never arrives
                                if muted {
                                    continue;
                                }
                                aseq = aseq.wrapping_add(1);
                                sent_no += 1;
                                if lose(sent_no) {
                                    continue;
                                }
                                let packet = rtp::Packet {
                                    header: rtp::header::Header { version: 2, payload_type: 111, sequence_number: aseq, timestamp: ats, ssrc: audio_ssrc, ..Default::default() },
                                    payload,
                                };
                                if let Some(mut s) = pc.rtp_sender(audio_sender) { let _ = s.write_rtp(Instant::now(), packet); }
                            } else {
                                aseq = aseq.wrapping_add(1);
                                ats = ats.wrapping_add(960);
                                let mut payload = vec![0u8; 160];
                                payload[..8].copy_from_slice(&micros_since_epoch().to_be_bytes());
                                let packet = rtp::Packet {
                                    header: rtp::header::Header { version: 2, payload_type: 111, sequence_number: aseq, timestamp: ats, ssrc: audio_ssrc, ..Default::default() },
                                    payload: Bytes::from(payload),
                                };
                                if let Some(mut s) = pc.rtp_sender(audio_sender) { let _ = s.write_rtp(Instant::now(), packet); }
                            }
                        }
                    }
                }
                let _ = pc.close();
            })
        };
        TestPeer { ws, joined, slots, received, seen, commands, stop, task }
    }

    pub fn id(&self) -> String {
        self.joined["participant"]["id"].as_str().unwrap().to_owned()
    }

    /// The mid on which this peer receives `source` of `participant`, per the latest slots.
    pub fn mid_of(&self, participant: &str, source: &str) -> Option<String> {
        self.slots.as_array()?.iter().find_map(|s| {
            (s["participant_id"] == participant && s["source"] == source).then(|| s["mid"].as_str().unwrap().to_owned())
        })
    }

    /// Reads signalling frames until a `slots` frame arrives and applies it.
    pub async fn next_slots(&mut self) {
        let frame = frame_of(&mut self.ws, "slots", &mut self.seen).await;
        self.slots = frame["slots"].clone();
    }

    /// An ICE restart: asks for a new offer, answers it.
    pub async fn restart_ice(&mut self) {
        send(&mut self.ws, json!({"type": "renegotiate"})).await;
        let offer = frame_of(&mut self.ws, "offer", &mut self.seen).await;
        assert_eq!(offer["restart"], true);
        self.slots = offer["slots"].clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let _ = self.commands.send(PeerCommand::Offer(offer["sdp"].as_str().unwrap().to_owned(), tx));
        let answer = rx.await.unwrap();
        send(&mut self.ws, json!({"type": "answer", "sdp": answer})).await;
    }

    /// Asks the SFU for a keyframe of what arrives on `mid` (a PLI, as a decoder that lost
    /// one would).
    pub fn request_keyframe(&self, mid: &str) {
        let _ = self.commands.send(PeerCommand::Pli(mid.parse().unwrap()));
    }

    pub fn send_data(&self, text: &str) {
        let _ = self.commands.send(PeerCommand::Data(text.to_owned()));
    }

    /// Waits until `check` holds, polling every 20 ms; panics with `what` after `limit`.
    pub async fn wait_until(&self, what: &str, limit: Duration, check: impl Fn(&Received) -> bool) {
        let deadline = Instant::now() + limit;
        while !check(&self.received) {
            assert!(
                Instant::now() < deadline,
                "{what}: not within {limit:?}; this peer ({}): connected {}, data channel {}, rtp per mid {:?}, slots {}",
                self.joined["participant"]["role"],
                self.received.connected.load(Ordering::SeqCst),
                self.received.data_open.load(Ordering::SeqCst),
                self.received.rtp.iter().map(|c| c.load(Ordering::Relaxed)).collect::<Vec<_>>(),
                self.slots,
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the media and closes the socket (a participant leaving).
    pub async fn leave(mut self) {
        let _ = send(&mut self.ws, json!({"type": "leave"})).await;
        self.stop.cancel();
        let _ = self.task.await;
        let _ = self.ws.close(None).await;
    }

    /// Stops the media loop only (a vanished browser: no leave, no close).
    pub fn stop_media(&self) {
        self.stop.cancel();
    }
}

/// A webrtc-rs peer connection as a participant's browser would have: every default codec
/// and interceptor, no mDNS, and keyframe requests delivered to the application (the chain
/// would end them otherwise) so a test can count them: the SFU's NACK generator and marker in
/// place of the crate's generator, asking for a lost packet up to 10 times as Chromium does.
/// Like Chromium it answers the SFU's `actpass` as the DTLS client (webrtc-rs would take the
/// server's part when the offer is ICE-lite) and offers its SRTP profiles in Chromium's order
/// (libwebrtc's `CryptoOptions::GetSupportedDtlsSrtpCryptoSuites`: AES_CM_128_HMAC_SHA1_80,
/// then the GCM suites), so the SFU, the DTLS server, takes the profile a browser's call gets.
pub fn client_peer_connection() -> RTCPeerConnection {
    use rtc::dtls::extension::extension_use_srtp::SrtpProtectionProfile;
    let setting_engine = SettingEngineBuilder::new()
        .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
        .with_answering_dtls_role(rtc::peer_connection::transport::RTCDtlsRole::Client)
        .with_srtp_protection_profiles(vec![
            SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80,
            SrtpProtectionProfile::Srtp_Aead_Aes_256_Gcm,
            SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm,
        ])
        .build();
    let mut media = MediaEngine::default();
    media.register_default_codecs().unwrap();
    let registry = register_default_interceptors(Registry::new(), &mut media).unwrap().with(
        rtc::interceptor::Slot::NackGenerator,
        video::sfu::nack::FeedbackInterceptor::new(Duration::from_millis(100), 10),
    );
    RTCPeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_setting_engine(setting_engine)
        .with_media_engine(media)
        .with_interceptor_registry(registry)
        .build(Instant::now())
        .unwrap()
}

/// A track to publish: one encoding with `ssrc` and the codec `mime`.
pub fn track(kind: RtpCodecKind, mime: &str, clock_rate: u32, channels: u16, ssrc: u32) -> MediaStreamTrack {
    MediaStreamTrack::new(
        "me".into(),
        format!("{mime}-{ssrc}"),
        mime.into(),
        kind,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters { ssrc: Some(ssrc), ..Default::default() },
            codec: RTCRtpCodec { mime_type: mime.into(), clock_rate, channels, ..Default::default() },
            ..Default::default()
        }],
    )
}

/// The UDP host candidate of a socket bound at `local`.
pub fn host_candidate(local: SocketAddr) -> rtc::peer_connection::transport::RTCIceCandidateInit {
    let candidate = CandidateHostConfig {
        base_config: CandidateConfig {
            network: "udp".into(),
            address: local.ip().to_string(),
            port: local.port(),
            component: 1,
            ..Default::default()
        },
        ..Default::default()
    }
    .new_candidate_host()
    .unwrap();
    RTCIceCandidate::from(&candidate).to_json().unwrap()
}

pub fn agent_join(room: Uuid, who: &str, roles: &[&str]) -> Value {
    json!({"type": "join", "room_id": room, "token": token(who, roles)})
}

pub fn customer_join(link: &str) -> Value {
    json!({"type": "join", "link": link})
}

/// A customer's join answering a recorded call's notice.
pub fn customer_join_consenting(link: &str, consent: bool) -> Value {
    json!({"type": "join", "link": link, "consent": consent, "devices": {"camera": true, "microphone": true}})
}
