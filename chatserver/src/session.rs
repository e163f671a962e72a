//! One agent socket: a single `select!` loop over the client's frames, the agent's doorbell,
//! the heartbeat, token expiry and shutdown.
//!
//! Events are read from the agent's stored stream from this socket's own cursor, at most
//! [`BATCH`] at a time and only as fast as the client takes them: a slow client holds back its
//! own reads, never the server's memory, and one that stalls a send past `send_timeout` is
//! disconnected with the reason logged.

use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures::SinkExt;
use schema::wire::{Event, Reply, Request, Update};
use tracing::{debug, info, warn};

use crate::AppState;
use crate::commands::{self, SessionState};
use crate::error::{ApiError, code};
use ops::auth::Claims;

/// Events read from the store per query.
const BATCH: i64 = 500;

/// How long a closing socket waits for the client to take its Close frame.
const CLOSE_PATIENCE: Duration = Duration::from_secs(60);

/// How soon a failed read of the agent's stream is tried again.
const RETRY: Duration = Duration::from_millis(500);

/// Close codes in the private range, documented in `docs/agent-api.md`.
pub const CLOSE_TOKEN_EXPIRED: u16 = 4001;
pub const CLOSE_SLOW_CLIENT: u16 = 4008;
pub const CLOSE_NO_PONG: u16 = 4009;
const CLOSE_GOING_AWAY: u16 = 1001;

enum End {
    Client,
    Close(u16, &'static str),
}

pub async fn run(mut socket: WebSocket, state: AppState, claims: Claims) {
    let login = claims.sub.clone();
    let _attached = match state.presence.attach(&login).await {
        Ok(a) => a,
        Err(e) => {
            warn!(agent = %login, error = %e, "cannot announce presence; closing the socket");
            let _ = close(&mut socket, 1011, "coordination unavailable").await;
            return;
        }
    };
    let mut bell = match state.coord.subscribe(&schema::topics::agent(&login)).await {
        Ok(b) => b,
        Err(e) => {
            warn!(agent = %login, error = %e, "cannot subscribe to the agent's events; closing the socket");
            let _ = close(&mut socket, 1011, "coordination unavailable").await;
            return;
        }
    };
    metrics::gauge!("switchboard_agent_sockets").increment(1.0);
    info!(agent = %login, "agent socket open");

    let mut session = SessionState::default();
    let heartbeat = state.config.heartbeat();
    let mut ticker = tokio::time::interval(heartbeat);
    ticker.tick().await;
    let mut last_heard = Instant::now();
    let expires = tokio::time::sleep(until_expiry(claims.exp));
    tokio::pin!(expires);
    let shutdown = state.shutdown.clone();
    // set when a read of the stream failed: try again then, even without a new wake
    let mut retry_at: Option<tokio::time::Instant> = None;
    // the supervisor's live overview, while this socket watches it
    let mut live: Option<tokio::sync::watch::Receiver<crate::live::Snapshot>> = None;

    let end = loop {
        tokio::select! {
            _ = shutdown.cancelled() => break End::Close(CLOSE_GOING_AWAY, "server shutting down"),
            _ = &mut expires => break End::Close(CLOSE_TOKEN_EXPIRED, "token expired; reconnect with a fresh one"),
            frame = socket.recv() => {
                last_heard = Instant::now();
                let text = match frame {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break End::Client,
                    Some(Ok(Message::Ping(_))) | Some(Ok(Message::Pong(_))) => continue,
                    Some(Ok(Message::Binary(_))) => {
                        let reply = Reply::err(None, code::BAD_REQUEST, "binary frames are not supported; send JSON text");
                        if let Err(end) = send(&mut socket, &reply, &state).await { break end }
                        continue;
                    }
                    Some(Ok(Message::Text(text))) => text,
                };
                let was_greeted = session.cursor.is_some();
                let reply = handle(&state, &claims, &mut session, text.as_str()).await;
                if let Err(end) = send(&mut socket, &reply, &state).await { break end }
                if let Some(watch) = session.live.take() {
                    // the reply carried the overview as it is now: push what changes after it
                    live = watch.then(|| state.live.watch());
                    if let Some(rx) = live.as_mut() { rx.borrow_and_update(); }
                }
                if !was_greeted && session.cursor.is_some() {
                    // right after hello: replay what came after resume_from
                    match drain(&mut socket, &state, &login, &mut session).await {
                        Ok(complete) => retry_at = (!complete).then(|| tokio::time::Instant::now() + RETRY),
                        Err(end) => break end,
                    }
                }
            }
            woke = bell.wake(), if session.cursor.is_some() => {
                if woke.is_err() { break End::Close(CLOSE_GOING_AWAY, "server shutting down") }
                match drain(&mut socket, &state, &login, &mut session).await {
                    Ok(complete) => retry_at = (!complete).then(|| tokio::time::Instant::now() + RETRY),
                    Err(end) => break end,
                }
            }
            _ = tokio::time::sleep_until(retry_at.unwrap_or_else(tokio::time::Instant::now)), if retry_at.is_some() => {
                match drain(&mut socket, &state, &login, &mut session).await {
                    Ok(complete) => retry_at = (!complete).then(|| tokio::time::Instant::now() + RETRY),
                    Err(end) => break end,
                }
            }
            changed = async { live.as_mut().expect("guarded").changed().await }, if live.is_some() => {
                if changed.is_err() {
                    live = None; // the node is shutting down
                    continue;
                }
                let snapshot = live.as_mut().expect("guarded").borrow_and_update().clone();
                if let Some(data) = snapshot {
                    let frame = Update { update: "supervisor.overview".to_owned(), data: (*data).clone() };
                    if let Err(end) = send(&mut socket, &frame, &state).await { break end }
                }
            }
            _ = ticker.tick() => {
                if last_heard.elapsed() > heartbeat * 3 {
                    break End::Close(CLOSE_NO_PONG, "no frame or pong for three heartbeats");
                }
                if tokio::time::timeout(state.config.send_timeout(), socket.send(Message::Ping(Default::default()))).await.map_or(true, |r| r.is_err()) {
                    break End::Close(CLOSE_SLOW_CLIENT, "ping could not be sent");
                }
                // A safety net under the doorbell: a writer that died between its commit and its
                // ring (see ARCHITECTURE.md) delays an event by at most one heartbeat instead of
                // until the next ring.
                if session.cursor.is_some() {
                    match drain(&mut socket, &state, &login, &mut session).await {
                        Ok(complete) => retry_at = (!complete).then(|| tokio::time::Instant::now() + RETRY),
                        Err(end) => break end,
                    }
                }
            }
        }
    };
    match end {
        End::Client => info!(agent = %login, "agent socket closed by the client"),
        End::Close(code, reason) => {
            info!(agent = %login, code, reason, "closing agent socket");
            // The closing handshake: send our Close (behind whatever the client has not read
            // yet; a client that reads nothing for CLOSE_PATIENCE is dropped), then read what the
            // client still sends until its Close comes back. Dropping the socket with unread
            // frames in its buffer (the client's pongs) would reset the connection, and the reset
            // would throw away the frames and the Close still on their way to the client.
            if let Ok(Ok(())) = tokio::time::timeout(CLOSE_PATIENCE, close(&mut socket, code, reason)).await {
                let _ = tokio::time::timeout(state.config.send_timeout(), async {
                    while let Some(Ok(frame)) = socket.recv().await {
                        if matches!(frame, Message::Close(_)) {
                            break;
                        }
                    }
                })
                .await;
            }
        }
    }
    metrics::gauge!("switchboard_agent_sockets").decrement(1.0);
}

fn until_expiry(exp: u64) -> Duration {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
    Duration::from_secs(exp.saturating_sub(now))
}

/// Parses and runs one request frame; every frame gets exactly one reply.
async fn handle(state: &AppState, claims: &Claims, session: &mut SessionState, text: &str) -> Reply {
    let value: serde_json::Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => return Reply::err(None, code::BAD_REQUEST, format!("the frame is not JSON: {e}")),
    };
    let id = value.get("id").and_then(|v| v.as_str()).map(str::to_owned);
    let request: Request = match serde_json::from_value(value) {
        Ok(r) => r,
        Err(e) => {
            return Reply::err(
                id,
                code::BAD_REQUEST,
                format!("a request is {{\"id\": string, \"cmd\": string, \"args\": object}}: {e}"),
            );
        }
    };
    // the frame's own strings follow the input rules; a bad `id` is not echoed back
    if let Err(e) = ops::input::check("id", ops::input::Kind::Key, &request.id) {
        return Reply::err(None, code::BAD_REQUEST, e.to_string());
    }
    if let Err(e) = ops::input::check("cmd", ops::input::Kind::Key, &request.cmd) {
        return Reply::err(Some(request.id), code::BAD_REQUEST, e.to_string());
    }
    if !request.args.is_object() && !request.args.is_null() {
        return Reply::err(Some(request.id), code::BAD_REQUEST, "`args` must be an object");
    }
    let started = Instant::now();
    let result = commands::dispatch(state, claims, session, &request.cmd, request.args).await;
    metrics::histogram!("switchboard_agent_command_seconds").record(started.elapsed().as_secs_f64());
    match result {
        Ok(data) => Reply::ok(request.id, data),
        Err(ApiError { code, message }) => {
            debug!(agent = %claims.sub, cmd = %request.cmd, code, message = %ops::input::Escaped(&message), "command refused");
            Reply::err(Some(request.id), code, message)
        }
    }
}

/// Sends everything after the session's cursor, in order. `Ok(false)` when the stream could
/// not be read (logged): the caller tries again shortly.
async fn drain(socket: &mut WebSocket, state: &AppState, login: &str, session: &mut SessionState) -> Result<bool, End> {
    let Some(mut cursor) = session.cursor else { return Ok(true) };
    loop {
        let read = async {
            let mut conn = state.pool.acquire().await?;
            schema::store::agent_events_after(&mut conn, login, cursor, BATCH).await
        };
        let events = match read.await {
            Ok(events) => events,
            Err(e) => {
                warn!(agent = %login, error = %e, "cannot read the agent's events; retrying in {RETRY:?}");
                return Ok(false);
            }
        };
        let full = events.len() as i64 == BATCH;
        let Some(last) = events.last().map(|e| e.seq) else { return Ok(true) };
        metrics::counter!("switchboard_agent_events_pushed_total").increment(events.len() as u64);
        // the batch is queued frame by frame (each within send_timeout, as a full buffer writes)
        // and written with one flush: one write to the socket for many events, not one per event
        for e in events {
            let text =
                serde_json::to_string(&Event { seq: e.seq, event: e.event, data: e.data }).expect("frames serialize");
            timed(state, socket.feed(Message::Text(text.into()))).await?;
        }
        timed(state, socket.flush()).await?;
        cursor = last;
        session.cursor = Some(cursor);
        if !full {
            return Ok(true);
        }
    }
}

async fn send<T: serde::Serialize>(socket: &mut WebSocket, frame: &T, state: &AppState) -> Result<(), End> {
    let text = serde_json::to_string(frame).expect("frames serialize");
    timed(state, socket.send(Message::Text(text.into()))).await
}

/// A write to the socket, which must finish within `send_timeout`.
async fn timed(state: &AppState, write: impl Future<Output = Result<(), axum::Error>>) -> Result<(), End> {
    match tokio::time::timeout(state.config.send_timeout(), write).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(End::Client),
        Err(_) => {
            warn!(timeout = ?state.config.send_timeout(), "agent socket too slow to take a frame; disconnecting it");
            Err(End::Close(CLOSE_SLOW_CLIENT, "too slow to receive"))
        }
    }
}

async fn close(socket: &mut WebSocket, code: u16, reason: &'static str) -> Result<(), axum::Error> {
    socket.send(Message::Close(Some(CloseFrame { code, reason: Utf8Bytes::from_static(reason) }))).await
}
