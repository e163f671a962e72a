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
use crate::rooms::{Outgoing, Participant, Refused, Role};
use crate::sfu::router::{Member, Receives, SlotInfo};
use crate::sfu::{Join, Notice};

/// How long a new socket may take to send `join`.
const JOIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Ping interval; a socket silent for three of them is closed.
const HEARTBEAT: Duration = Duration::from_secs(20);

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum ClientFrame {
    Join { link: Option<String>, room_id: Option<Uuid>, token: Option<String> },
    Answer { sdp: String },
    Candidate { candidate: Option<Candidate> },
    Media { audio: bool, camera: bool, screen: bool },
    Renegotiate {},
    Leave {},
    End {},
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

fn parse(text: &str) -> Result<ClientFrame, VideoError> {
    serde_json::from_str(text).map_err(|e| VideoError::BadFrame(format!("not a signalling frame: {e}")))
}

pub(crate) async fn upgrade(Extract(state): Extract<Arc<State>>, upgrade: WebSocketUpgrade) -> Response {
    upgrade.read_buffer_size(8 * 1024).write_buffer_size(8 * 1024).max_message_size(256 * 1024).on_upgrade(
        move |socket| {
            let span = tracing::info_span!(
                "video",
                room = tracing::field::Empty,
                participant = tracing::field::Empty,
                role = tracing::field::Empty
            );
            session(state, socket).instrument(span)
        },
    )
}

/// Who joined, after authentication.
struct Admitted {
    room: VideoRoom,
    participant: Participant,
}

async fn authenticate(state: &State, frame: ClientFrame) -> Result<Admitted, VideoError> {
    let ClientFrame::Join { link, room_id, token } = frame else {
        return Err(VideoError::NotJoined);
    };
    let mut conn = state.pool.acquire().await?;
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
            (room, role, claims.name.clone().unwrap_or(claims.sub))
        }
        _ => return Err(VideoError::BadFrame("join needs `link`, or `room_id` and `token`".into())),
    };
    let host = store::claim_room_node(&mut conn, room.id, &state.node).await?;
    if host != state.node {
        return Err(VideoError::OtherNode(host));
    }
    Ok(Admitted { room, participant: Participant { id: Uuid::new_v4(), role, name } })
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

async fn session(state: Arc<State>, socket: WebSocket) {
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
    let Admitted { room, participant } = match admitted {
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
    let joined = match state.sfu.join(Join { member, from }, notice_tx).await {
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
        },
        "ice_servers": ice_servers,
        "participants": others,
    });
    let mut open = send(&mut tx, &hello).await
        && send(&mut tx, &json!({"type": "offer", "sdp": joined.offer, "slots": slots_json(&joined.slots)})).await;
    for media in state.rooms.media_of_others(room.id, participant.id) {
        open = open && send(&mut tx, &media).await;
    }
    record(&state, &room, "joined", &participant).await;

    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    heartbeat.tick().await;
    let mut silent = 0u32;
    let mut room_ended = false;
    while open {
        tokio::select! {
            _ = state.shutdown.cancelled() => {
                close(&mut tx, 1001, "the hub is shutting down").await;
                break;
            }
            _ = heartbeat.tick() => {
                silent += 1;
                if silent > 3 {
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
                    open = send(&mut tx, &json!({"type": "connection", "state": "connected"})).await;
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
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => continue,
                };
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
                        send(&mut tx, &json!({"type": "ended", "reason": "ended_by_agent"})).await;
                        close(&mut tx, 1000, "ended").await;
                        break;
                    }
                    Err(e) => {
                        tracing::debug!(code = e.code(), error = %e, "bad signalling frame");
                        open = send(&mut tx, &e.frame()).await;
                    }
                }
            }
        }
    }

    // leaving: free the peer connection, tell the others, log it, end the room if it stays empty
    state.sfu.leave(peer).await;
    metrics::gauge!("switchboard_video_participants").decrement(1.0);
    let left = state.rooms.remove(room.id, participant.id);
    tracing::info!("left the call");
    if !room_ended {
        record(&state, &room, "left", &participant).await;
    }
    if left == Some(0) {
        let state = state.clone();
        let room_id = room.id;
        tokio::spawn(async move {
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
    state: &State,
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
    }
}

/// Writes a `joined`/`left` transition and wakes the interaction's agents; a failure is
/// logged (the call goes on).
async fn record(state: &State, room: &VideoRoom, transition: &str, participant: &Participant) {
    let extra = json!({"role": participant.role, "participant": {"id": participant.id, "name": participant.name}});
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
