//! The signalling WebSocket at `/api/v1/video/ws`: one per participant. The first frame
//! authenticates (`join` with a customer link, or a room id and a JWT); then the server offers,
//! the page answers and trickles candidates, and the socket carries who joins, leaves and what
//! they send until the participant leaves or the call ends. Contract: docs/video.md.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State as Extract;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use chrono::Utc;
use futures::{SinkExt, StreamExt};
use rtc::peer_connection::transport::RTCIceCandidateInit;
use schema::domain::{VideoMode, VideoRoom, VideoRoomState};
use schema::store;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tracing::Instrument;
use uuid::Uuid;

use crate::State;
use crate::api::{end_room, wake};
use crate::error::VideoError;
use crate::nodes::Pinned;
use crate::recording::spool::TrackRole;
use crate::rooms::{Outgoing, Participant, Refused, Role};
use crate::sfu::quality::Quality;
use crate::sfu::router::{Member, Receives, SlotInfo};
use crate::sfu::{Join, Notice};

/// How long a new socket may take to send `join`.
const JOIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Ping interval; a socket silent for three of them is closed.
const HEARTBEAT: Duration = Duration::from_secs(20);

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum ClientFrame {
    Join {
        link: Option<String>,
        room_id: Option<Uuid>,
        token: Option<String>,
        /// The customer's answer to the recording notice of a recorded call.
        consent: Option<bool>,
        /// Whether the page found a camera and a microphone.
        devices: Option<Devices>,
    },
    Answer {
        sdp: String,
    },
    Candidate {
        candidate: Option<Candidate>,
    },
    Media {
        audio: bool,
        camera: bool,
        screen: bool,
    },
    /// The devices the page found (again after permission was given).
    Devices {
        camera: bool,
        microphone: bool,
    },
    Renegotiate {},
    Leave {},
    End {},
    /// The agent or a supervisor asks the customer for their location.
    LocationRequest {},
    /// The customer's position from the browser (degrees, WGS 84; accuracy in metres).
    Location {
        lat: f64,
        lon: f64,
        accuracy: Option<f64>,
    },
    /// The customer declined to share their location, or the browser could not tell.
    LocationDenied {
        reason: Option<String>,
    },
}

/// An `RTCIceCandidate.toJSON()`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Candidate {
    candidate: String,
    sdp_mid: Option<String>,
    #[serde(rename = "sdpMLineIndex")]
    sdp_mline_index: Option<u16>,
    username_fragment: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
struct Devices {
    camera: bool,
    microphone: bool,
}

fn parse(text: &str) -> Result<ClientFrame, VideoError> {
    serde_json::from_str(text).map_err(|e| VideoError::BadFrame(format!("not a signalling frame: {e}")))
}

pub(crate) async fn upgrade(
    Extract(state): Extract<Arc<State>>,
    headers: axum::http::HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let user_agent = headers
        .get(axum::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|ua| ua.chars().filter(|c| !c.is_control()).take(512).collect::<String>());
    upgrade.read_buffer_size(8 * 1024).write_buffer_size(8 * 1024).max_message_size(256 * 1024).on_upgrade(
        move |socket| {
            let span = tracing::info_span!(
                "video",
                room = tracing::field::Empty,
                participant = tracing::field::Empty,
                role = tracing::field::Empty
            );
            session(state, socket, user_agent).instrument(span)
        },
    )
}

/// Who joined, after authentication.
struct Admitted {
    room: VideoRoom,
    participant: Participant,
    /// The agent's or supervisor's login.
    login: Option<String>,
    consent: Option<bool>,
    devices: Option<Devices>,
}

async fn authenticate(state: &State, frame: ClientFrame) -> Result<Admitted, VideoError> {
    let ClientFrame::Join { link, room_id, token, consent, devices } = frame else {
        return Err(VideoError::NotJoined);
    };
    let mut conn = state.pool.acquire().await?;
    let mut login = None;
    let (room, role, name) = match (link, room_id, token) {
        (Some(link), None, None) => {
            let room = store::room_by_link(&mut conn, &link).await?.ok_or(VideoError::BadLink)?;
            if room.state == VideoRoomState::Ended {
                return Err(VideoError::RoomEnded);
            }
            if room.link_expires_at < Utc::now() {
                return Err(VideoError::LinkExpired(room.link_expires_at.to_rfc3339()));
            }
            let customer = store::load_interaction(&mut conn, room.interaction_id).await?.customer;
            (room, Role::Customer, customer.name)
        }
        (None, Some(room_id), Some(token)) => {
            let claims = state.verifier.verify(&token)?;
            let room = store::load_room(&mut conn, room_id).await?;
            let role = if claims.sub == room.agent {
                Role::Agent
            } else if claims.has_role("supervisor") {
                Role::Supervisor
            } else {
                return Err(VideoError::Forbidden(
                    "only the agent who started the call or a supervisor may join it with a token".into(),
                ));
            };
            if room.state == VideoRoomState::Ended {
                return Err(VideoError::RoomEnded);
            }
            login = Some(claims.sub.clone());
            (room, role, claims.name.clone().unwrap_or(claims.sub))
        }
        _ => return Err(VideoError::BadFrame("join needs `link`, or `room_id` and `token`".into())),
    };
    // which node hosts the call: pinned through ZooKeeper (crate::nodes); the database keeps
    // the first node that hosted it
    match state.nodes.pin(room.id).await.map_err(|e| VideoError::internal("cannot pin the video room", e))? {
        Pinned::Here => {}
        Pinned::Elsewhere { node, url } => {
            return Err(VideoError::OtherNode { node, url: crate::nodes::signalling_url(&url) });
        }
    }
    store::claim_room_node(&mut conn, room.id, &state.node).await?;
    Ok(Admitted {
        room,
        participant: Participant { id: Uuid::new_v4(), role, name, login: login.clone() },
        login,
        consent,
        devices,
    })
}

fn receives(mode: VideoMode, role: Role) -> Receives {
    match (mode, role) {
        (VideoMode::TwoWay, _) => Receives::All,
        (VideoMode::OneWay, Role::Customer) => Receives::Nothing,
        (VideoMode::OneWay, _) => Receives::CustomerOnly,
    }
}

fn slots_json(slots: &[SlotInfo]) -> Value {
    Value::Array(
        slots
            .iter()
            .map(|s| json!({"mid": s.mid(), "participant_id": s.participant, "source": s.source.as_str()}))
            .collect(),
    )
}

async fn send(ws: &mut futures::stream::SplitSink<WebSocket, Message>, frame: &Value) -> bool {
    ws.send(Message::Text(Utf8Bytes::from(frame.to_string()))).await.is_ok()
}

async fn close(ws: &mut futures::stream::SplitSink<WebSocket, Message>, code: u16, reason: &str) {
    let _ = ws.send(Message::Close(Some(CloseFrame { code, reason: Utf8Bytes::from(reason.to_owned()) }))).await;
}

fn track_role(role: Role) -> TrackRole {
    match role {
        Role::Agent => TrackRole::Agent,
        Role::Customer => TrackRole::Customer,
        Role::Supervisor => TrackRole::Supervisor,
    }
}

/// The `quality` frame of a participant.
fn quality_frame(participant: Uuid, q: &Quality) -> Value {
    json!({
        "type": "quality",
        "participant_id": participant,
        "level": q.level,
        "loss_pct": (q.loss_pct * 10.0).round() / 10.0,
        "jitter_ms": q.jitter_ms.round(),
        "rtt_ms": q.rtt_ms.map(f64::round),
        "bitrate_in_kbps": q.bitrate_in_kbps.round(),
        "bitrate_out_kbps": q.bitrate_out_kbps.round(),
    })
}

/// The quality samples of a participant, gathered into one record every [`SAMPLE_RECORD`]:
/// the worst level, the mean loss, jitter, round trip and bitrates.
#[derive(Default)]
struct QualityLog {
    samples: Vec<Quality>,
}

/// Quality goes to the call records in one row per this many samples (10 s).
const SAMPLE_RECORD: usize = 5;

impl QualityLog {
    fn push(&mut self, q: Quality, participant: Uuid) -> Option<store::QualitySample> {
        self.samples.push(q);
        (self.samples.len() >= SAMPLE_RECORD).then(|| self.flush(participant)).flatten()
    }

    fn flush(&mut self, participant: Uuid) -> Option<store::QualitySample> {
        let samples = std::mem::take(&mut self.samples);
        let n = samples.len() as f64;
        let worst = samples.iter().map(|q| q.level).max()?;
        let mean = |f: &dyn Fn(&Quality) -> f64| samples.iter().map(f).sum::<f64>() / n;
        let rtts: Vec<f64> = samples.iter().filter_map(|q| q.rtt_ms).collect();
        Some(store::QualitySample {
            participant_id: participant,
            at: Utc::now(),
            level: worst.as_str().to_owned(),
            loss_pct: mean(&|q| q.loss_pct) as f32,
            jitter_ms: mean(&|q| q.jitter_ms) as f32,
            rtt_ms: (!rtts.is_empty()).then(|| (rtts.iter().sum::<f64>() / rtts.len() as f64) as f32),
            bitrate_in_kbps: mean(&|q| q.bitrate_in_kbps) as f32,
            bitrate_out_kbps: mean(&|q| q.bitrate_out_kbps) as f32,
        })
    }
}

/// Writes to the call records in the background: a failure is logged, the call goes on.
fn keep(state: &Arc<State>, what: &'static str, write: impl AsyncWrite) {
    let pool = state.pool.clone();
    state.tasks.spawn(async move {
        let result = async {
            let mut conn = pool.acquire().await?;
            write.run(&mut conn).await
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, what, "cannot write to the call records");
        }
    });
}

/// One write to the call records.
trait AsyncWrite: Send + 'static {
    fn run(
        self,
        conn: &mut sqlx::PgConnection,
    ) -> impl std::future::Future<Output = Result<(), store::StoreError>> + Send;
}

enum Write {
    Connected(Uuid, Option<&'static str>),
    Devices(Uuid, bool, bool),
    Left(Uuid, &'static str),
    Samples(Vec<store::QualitySample>),
    Chat(Uuid, store::ChatLine),
}

impl AsyncWrite for Write {
    async fn run(self, conn: &mut sqlx::PgConnection) -> Result<(), store::StoreError> {
        match self {
            Write::Connected(id, path) => store::participant_connected(conn, id, path).await,
            Write::Devices(id, camera, microphone) => store::participant_devices(conn, id, camera, microphone).await,
            Write::Left(id, reason) => store::participant_left(conn, id, reason).await,
            Write::Samples(samples) => store::insert_quality_samples(conn, &samples).await,
            Write::Chat(room, line) => store::insert_video_chat(conn, room, &[line]).await,
        }
    }
}

/// The relay addresses among a participant's trickled candidates (`typ relay`).
fn relay_address(candidate: &str) -> Option<String> {
    let parts: Vec<&str> = candidate.split_whitespace().collect();
    let typ = parts.iter().position(|p| *p == "typ")?;
    if parts.get(typ + 1) != Some(&"relay") {
        return None;
    }
    Some(format!("{}:{}", parts.get(4)?, parts.get(5)?))
}

async fn session(state: Arc<State>, socket: WebSocket, user_agent: Option<String>) {
    let (mut tx, mut rx) = socket.split();
    // the first frame authenticates
    let first = match tokio::time::timeout(JOIN_TIMEOUT, rx.next()).await {
        Ok(Some(Ok(Message::Text(text)))) => parse(&text),
        Ok(Some(Ok(_))) => Err(VideoError::BadFrame("send JSON text frames".into())),
        Ok(_) => return,
        Err(_) => Err(VideoError::BadFrame(format!("no join frame within {JOIN_TIMEOUT:?}"))),
    };
    let admitted = match first {
        Ok(frame) => authenticate(&state, frame).await,
        Err(e) => Err(e),
    };
    let Admitted { room, participant, login, consent, devices } = match admitted {
        Ok(a) => a,
        Err(e) => {
            tracing::info!(code = e.code(), error = %e, "video join refused");
            send(&mut tx, &e.frame()).await;
            close(&mut tx, 4003, e.code()).await;
            return;
        }
    };
    let (out_tx, mut out_rx) = mpsc::unbounded_channel();
    let others = match state.rooms.admit(room.id, participant.clone(), out_tx, state.config.max_rooms) {
        Ok(admission) => {
            if let Some(replaced) = admission.replaced_peer {
                state.sfu.leave(replaced).await;
            }
            admission.others
        }
        Err(Refused::Capacity(n)) => {
            let e = VideoError::Capacity(n);
            send(&mut tx, &e.frame()).await;
            close(&mut tx, 4003, e.code()).await;
            return;
        }
    };
    let (notice_tx, mut notices) = mpsc::unbounded_channel();
    let member = Member {
        room: room.id,
        participant: participant.id,
        is_customer: participant.role == Role::Customer,
        receives: receives(room.mode, participant.role),
    };
    let from = json!({"id": participant.id, "role": participant.role, "name": participant.name});
    let role = track_role(participant.role);
    let joined = match state.sfu.join(Join { member, from, role }, notice_tx).await {
        Ok(joined) => joined,
        Err(e) => {
            let e = VideoError::from(e);
            state.rooms.remove(room.id, participant.id);
            send(&mut tx, &e.frame()).await;
            close(&mut tx, 4003, e.code()).await;
            return;
        }
    };
    let peer = joined.peer;
    state.rooms.set_peer(room.id, participant.id, peer);
    let span = tracing::Span::current();
    span.record("room", tracing::field::display(room.id));
    span.record("participant", tracing::field::display(participant.id));
    span.record("role", participant.role.as_str());
    tracing::info!(peer, "joined the call");
    metrics::gauge!("switchboard_video_participants").increment(1.0);

    // the call records: who joined, from what; for a recorded call, the customer's answer
    let is_customer = participant.role == Role::Customer;
    let asked = room.record && is_customer;
    let consented = asked && consent == Some(true);
    let info = user_agent.as_deref().map(crate::client::parse_user_agent).unwrap_or_default();
    let row = store::NewParticipant {
        id: participant.id,
        room_id: room.id,
        role: participant.role.as_str().to_owned(),
        login: login.clone(),
        name: participant.name.clone(),
        user_agent: user_agent.clone(),
        browser: info.browser,
        os: info.os,
        device: info.device.map(str::to_owned),
        camera: devices.map(|d| d.camera),
        microphone: devices.map(|d| d.microphone),
        recording_consent: asked.then_some(consented),
        consent_text: asked.then(|| state.config.recording.consent_text.clone()),
    };
    // written before anything else of this participant (the same task, awaited)
    let written = async {
        let mut conn = state.pool.acquire().await?;
        store::insert_participant(&mut conn, &row).await
    }
    .await;
    if let Err(e) = written {
        tracing::warn!(error = %e, "cannot write the participant to the call records");
    }
    // a consenting customer starts the recording; any join of a call whose customer consented
    // earlier (the call moved here from another node, or this node restarted) records the rest
    // of it as the recording's next part; a customer who refuses now stops it going on elsewhere
    let refused = asked && consent == Some(false);
    if room.record && !refused && !state.recorder.is_recording(room.id) {
        match state.recorder.start(&room, consented).await {
            Ok(true) => {
                state.rooms.broadcast(room.id, json!({"type": "recording", "state": "started"}), None);
                // the part a dead node left is finished by whoever shares its spool
                let taking = state.clone();
                state.tasks.spawn(async move { crate::api::take_over_recordings(&taking).await });
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "cannot start the call's recording"),
        }
    } else if refused {
        tracing::info!("the customer joined without consenting to the recording: the call is not recorded");
    }
    metrics::counter!("switchboard_video_joins_total", "role" => participant.role.as_str()).increment(1);
    let mut relays: Vec<String> = Vec::new();
    let mut ice_path_known = false;
    let mut quality_log = QualityLog::default();
    let mut left_reason = "left";

    let (width, height, max_bitrate) = room.quality.limits();
    let ice_servers: Vec<Value> = state
        .turn
        .iter()
        .map(|issuer| serde_json::to_value(issuer.issue(&participant.id.to_string(), Utc::now())).expect("ice server"))
        .collect();
    let hello = json!({
        "type": "joined",
        "participant": participant,
        "room": {
            "id": room.id,
            "interaction_id": room.interaction_id,
            "mode": room.mode,
            "quality": {"label": room.quality, "width": width, "height": height, "max_bitrate": max_bitrate},
            "record": room.record,
            "recording": state.recorder.is_recording(room.id),
        },
        "ice_servers": ice_servers,
        "participants": others,
    });
    let mut open = send(&mut tx, &hello).await
        && send(&mut tx, &json!({"type": "offer", "sdp": joined.offer, "slots": slots_json(&joined.slots)})).await;
    for media in state.rooms.media_of_others(room.id, participant.id) {
        open = open && send(&mut tx, &media).await;
    }
    record(&state, &room, "joined", &participant, asked.then_some(consented)).await;

    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    heartbeat.tick().await;
    let mut silent = 0u32;
    let mut room_ended = false;
    while open {
        tokio::select! {
            _ = state.shutdown.cancelled() => {
                left_reason = "shutdown";
                close(&mut tx, 1001, "the hub is shutting down").await;
                break;
            }
            _ = heartbeat.tick() => {
                silent += 1;
                if silent > 3 {
                    left_reason = "timeout";
                    tracing::info!("signalling socket silent for three heartbeats; closing");
                    close(&mut tx, 4009, "heartbeat timeout").await;
                    break;
                }
                open = tx.send(Message::Ping(Default::default())).await.is_ok();
            }
            outgoing = out_rx.recv() => match outgoing {
                Some(Outgoing::Frame(frame)) => open = send(&mut tx, &frame).await,
                Some(Outgoing::Close(frame)) => {
                    // the call ended for everyone: its `ended` is the last word, no `left` after it
                    room_ended |= frame["type"] == "ended";
                    left_reason = if room_ended { "ended" } else { "replaced" };
                    send(&mut tx, &frame).await;
                    close(&mut tx, 1000, frame["type"].as_str().unwrap_or("closed")).await;
                    break;
                }
                None => break,
            },
            notice = notices.recv() => match notice {
                Some(Notice::Slots(slots)) => open = send(&mut tx, &json!({"type": "slots", "slots": slots_json(&slots)})).await,
                Some(Notice::Connected) => {
                    tracing::info!("media connected");
                    keep(&state, "connected", Write::Connected(participant.id, None));
                    open = send(&mut tx, &json!({"type": "connection", "state": "connected"})).await;
                }
                Some(Notice::Quality { quality, remote }) => {
                    if !ice_path_known && let Some(remote) = remote {
                        let relayed = relays.contains(&remote.to_string());
                        let path = if relayed { "relay" } else { "direct" };
                        tracing::info!(path, "media path");
                        metrics::counter!("switchboard_video_media_paths_total", "path" => path).increment(1);
                        keep(&state, "ice path", Write::Connected(participant.id, Some(path)));
                        ice_path_known = true;
                    }
                    let frame = quality_frame(participant.id, &quality);
                    state.rooms.broadcast(room.id, frame.clone(), Some(participant.id));
                    open = send(&mut tx, &frame).await;
                    if let Some(sample) = quality_log.push(quality, participant.id) {
                        metrics::counter!("switchboard_video_quality_samples_total", "level" => sample.level.clone()).increment(1);
                        keep(&state, "quality", Write::Samples(vec![sample]));
                    }
                }
                Some(Notice::Chat { text, at }) => {
                    let line = store::ChatLine {
                        participant_id: participant.id,
                        role: participant.role.as_str().to_owned(),
                        name: participant.name.clone(),
                        text,
                        at,
                    };
                    metrics::counter!("switchboard_video_chat_messages_total").increment(1);
                    keep(&state, "chat", Write::Chat(room.id, line));
                }
                Some(Notice::Disconnected) => {
                    tracing::info!("media disconnected");
                    open = send(&mut tx, &json!({"type": "connection", "state": "disconnected"})).await;
                }
                None => break,
            },
            frame = rx.next() => {
                silent = 0;
                let text = match frame {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Binary(_))) => {
                        open = send(&mut tx, &VideoError::BadFrame("send JSON text frames".into()).frame()).await;
                        continue;
                    }
                    Some(Ok(Message::Close(_))) => break,
                    None | Some(Err(_)) => {
                        left_reason = "disconnected";
                        break;
                    }
                    Some(Ok(_)) => continue,
                };
                if let Ok(ClientFrame::Candidate { candidate: Some(c) }) = parse(&text)
                    && let Some(address) = relay_address(&c.candidate)
                    && relays.len() < 16
                {
                    relays.push(address);
                }
                if let Ok(ClientFrame::Devices { camera, microphone }) = parse(&text) {
                    keep(&state, "devices", Write::Devices(participant.id, camera, microphone));
                }
                match handle(&state, &room, &participant, peer, &text).await {
                    Ok(Step::Continue(reply)) => {
                        if let Some(reply) = reply {
                            open = send(&mut tx, &reply).await;
                        }
                    }
                    Ok(Step::Leave) => {
                        close(&mut tx, 1000, "left").await;
                        break;
                    }
                    Ok(Step::Ended) => {
                        room_ended = true;
                        left_reason = "ended";
                        send(&mut tx, &json!({"type": "ended", "reason": "ended_by_agent"})).await;
                        close(&mut tx, 1000, "ended").await;
                        break;
                    }
                    Err(e) => {
                        tracing::debug!(code = e.code(), error = %ops::input::Escaped(&e.to_string()), "bad signalling frame");
                        open = send(&mut tx, &e.frame()).await;
                    }
                }
            }
        }
    }

    // leaving: free the peer connection, tell the others, log it, end the room if it stays empty
    state.sfu.leave(peer).await;
    if let Some(sample) = quality_log.flush(participant.id) {
        keep(&state, "quality", Write::Samples(vec![sample]));
    }
    keep(&state, "left", Write::Left(participant.id, left_reason));
    metrics::gauge!("switchboard_video_participants").decrement(1.0);
    let left = state.rooms.remove(room.id, participant.id);
    tracing::info!("left the call");
    if !room_ended {
        record(&state, &room, "left", &participant, None).await;
    }
    if left == Some(0) {
        let grace = state.clone();
        let room_id = room.id;
        state.tasks.spawn(async move {
            let state = grace;
            tokio::select! {
                _ = state.shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(state.config.empty_grace_s)) => {}
            }
            if !state.rooms.is_live(room_id)
                && let Err(e) = end_room(&state, room_id, "empty", None).await
            {
                tracing::warn!(room = %room_id, error = %e, "cannot end the empty room");
            }
        });
    }
}

enum Step {
    Continue(Option<Value>),
    Leave,
    Ended,
}

async fn handle(
    state: &std::sync::Arc<State>,
    room: &VideoRoom,
    participant: &Participant,
    peer: u64,
    text: &str,
) -> Result<Step, VideoError> {
    match parse(text)? {
        ClientFrame::Join { .. } => Err(VideoError::BadFrame("already joined: send join once".into())),
        ClientFrame::Answer { sdp } => {
            if sdp.len() > 64 * 1024 {
                return Err(VideoError::BadSdp("the answer is longer than 64 KiB".into()));
            }
            state.sfu.answer(peer, sdp).await?;
            Ok(Step::Continue(None))
        }
        ClientFrame::Candidate { candidate } => {
            let init = match candidate {
                None => RTCIceCandidateInit::default(),
                Some(c) => {
                    if c.candidate.len() > 1024 {
                        return Err(VideoError::BadCandidate("the candidate is longer than 1 KiB".into()));
                    }
                    RTCIceCandidateInit {
                        candidate: c.candidate,
                        sdp_mid: c.sdp_mid,
                        sdp_mline_index: c.sdp_mline_index,
                        username_fragment: c.username_fragment,
                        ..Default::default()
                    }
                }
            };
            state.sfu.candidate(peer, init).await?;
            Ok(Step::Continue(None))
        }
        ClientFrame::Media { audio, camera, screen } => {
            state.rooms.media(room.id, participant.id, audio, camera, screen);
            Ok(Step::Continue(None))
        }
        ClientFrame::Devices { .. } => Ok(Step::Continue(None)),
        ClientFrame::Renegotiate {} => {
            let (sdp, slots) = state.sfu.renegotiate(peer).await?;
            Ok(Step::Continue(Some(json!({"type": "offer", "sdp": sdp, "slots": slots_json(&slots), "restart": true}))))
        }
        ClientFrame::Leave {} => Ok(Step::Leave),
        ClientFrame::End {} => {
            if participant.role == Role::Customer {
                return Err(VideoError::Forbidden(
                    "only the agent or a supervisor can end the call for everyone; send leave".into(),
                ));
            }
            end_room(state, room.id, "ended_by_agent", None).await?;
            Ok(Step::Ended)
        }
        ClientFrame::LocationRequest {} => {
            if participant.role == Role::Customer {
                return Err(VideoError::Forbidden("only the agent or a supervisor asks for the location".into()));
            }
            let frame = json!({"type": "location_request", "from": who(participant)});
            state.rooms.broadcast(room.id, frame, Some(participant.id));
            tracing::info!("location asked for");
            Ok(Step::Continue(None))
        }
        ClientFrame::Location { lat, lon, accuracy } => {
            if participant.role != Role::Customer {
                return Err(VideoError::Forbidden("only the customer shares their location".into()));
            }
            crate::geo::check_position(lat, lon, accuracy).map_err(|e| VideoError::BadFrame(e.to_string()))?;
            // the address may take the geocoder's timeout: the socket goes on meanwhile
            state.tasks.spawn(share_location(state.clone(), room.clone(), participant.clone(), lat, lon, accuracy));
            Ok(Step::Continue(None))
        }
        ClientFrame::LocationDenied { reason } => {
            if participant.role != Role::Customer {
                return Err(VideoError::Forbidden("only the customer shares their location".into()));
            }
            let reason: Option<String> = reason.map(|r| r.chars().filter(|c| !c.is_control()).take(200).collect());
            let frame = json!({"type": "location_denied", "from": who(participant), "reason": reason});
            state.rooms.broadcast(room.id, frame, Some(participant.id));
            Ok(Step::Continue(None))
        }
    }
}

fn who(participant: &Participant) -> Value {
    json!({"id": participant.id, "role": participant.role, "name": participant.name})
}

/// Finds the address of a shared position (never failing: without it when the geocoder is off
/// or down), keeps the position with the call and shows it to everyone in the room, the
/// customer included, as `location`.
async fn share_location(
    state: std::sync::Arc<State>,
    room: VideoRoom,
    participant: Participant,
    lat: f64,
    lon: f64,
    accuracy: Option<f64>,
) {
    let address = state.geocoder.address(lat, lon).await;
    let kept = async {
        let mut conn = state.pool.acquire().await?;
        store::insert_location(&mut conn, room.id, participant.id, lat, lon, accuracy, address.as_deref()).await
    }
    .await;
    let at = match kept {
        Ok(Some(location)) => location.at,
        Ok(None) => {
            tracing::debug!("location dropped: the call keeps 20 at most");
            return;
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot keep the shared location");
            chrono::Utc::now()
        }
    };
    tracing::info!(address = address.is_some(), "location shared");
    metrics::counter!("switchboard_video_locations_total").increment(1);
    let frame = json!({
        "type": "location",
        "from": who(&participant),
        "lat": lat,
        "lon": lon,
        "accuracy": accuracy,
        "address": address,
        "map_url": state.geocoder.map_link(lat, lon),
        "preview_url": state.geocoder.preview_link(lat, lon),
        "at": at,
    });
    state.rooms.broadcast(room.id, frame, None);
}

/// Writes a `joined`/`left` transition and wakes the interaction's agents; a failure is
/// logged (the call goes on). `consent`: the customer's answer to a recorded call's notice.
async fn record(state: &State, room: &VideoRoom, transition: &str, participant: &Participant, consent: Option<bool>) {
    let mut extra = json!({"role": participant.role, "participant": {"id": participant.id, "name": participant.name}});
    if let Some(consent) = consent {
        extra["recording_consent"] = consent.into();
    }
    let written = async {
        let mut tx = state.pool.begin().await?;
        let audience = store::record_room_transition(&mut tx, room, transition, None, extra).await?;
        tx.commit().await?;
        Ok::<_, store::StoreError>(audience)
    };
    match written.await {
        Ok(audience) => wake(state, &audience),
        Err(e) => tracing::warn!(error = %e, transition, "cannot record the video room transition"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use testenv::fuzz;

    const KEYS: &[&str] = &[
        "type",
        "link",
        "room_id",
        "token",
        "sdp",
        "candidate",
        "sdpMid",
        "sdpMLineIndex",
        "usernameFragment",
        "audio",
        "camera",
        "screen",
        "consent",
        "devices",
        "microphone",
    ];
    const TYPES: &[&str] =
        &["join", "answer", "candidate", "media", "devices", "renegotiate", "leave", "end", "offer", ""];

    /// Whatever a socket sends is a frame or `bad_frame`, never a panic.
    #[test]
    fn generated_signalling_frames_parse_or_are_refused() {
        frames("signalling frames", 30_000);
    }

    #[test]
    #[ignore = "long run: FUZZ_INPUTS=<n> cargo test -p video --lib signal -- --ignored --nocapture"]
    fn long_run_signalling_frames() {
        frames("signalling frames (long)", fuzz::inputs(1_000_000));
    }

    fn frames(name: &str, count: u64) {
        fuzz::run(name, count, |g, _| {
            let text = match g.below(4) {
                0 => g.string(64),
                1 => g.mutate(r#"{"type":"candidate","candidate":{"candidate":"candidate:1 1 udp 1 1.2.3.4 5 typ host","sdpMid":"0","sdpMLineIndex":0}}"#),
                _ => {
                    let mut frame = g.json(KEYS, 4);
                    if let Value::Object(map) = &mut frame
                        && g.chance(80)
                    {
                        map.insert("type".into(), Value::String(g.pick(TYPES).to_owned()));
                    }
                    frame.to_string()
                }
            };
            match parse(&text) {
                Ok(_) | Err(VideoError::BadFrame(_)) => {}
                Err(other) => panic!("{text:?}: {other:?}"),
            }
        });
    }
}
