//! The SFU: one task owns one UDP socket and every peer connection of this node. Datagrams are
//! demultiplexed to their peer ([`demux`]), fed to its [`engine::Engine`], and what comes out
//! is forwarded by the routing core ([`router`]). Signalling talks to the task through
//! [`Sfu`]'s commands; the task tells each participant's socket what changed through its
//! notice channel.

pub mod data;
pub mod demux;
pub mod engine;
pub mod nack;
pub mod quality;
pub mod router;
pub mod udp;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rtc::peer_connection::transport::RTCIceCandidateInit;
use serde_json::Value;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use self::data::Relay;
use self::demux::Demux;
use self::engine::{Engine, EngineError, EngineEvent, EngineSettings, RtcEngine};
use self::quality::{PeerMeters, Quality};
use self::router::{Effect, Member, PeerId, Router, SlotInfo, Source};
use crate::recording::spool::{Spool, TrackKey, TrackRole};

/// What the SFU tells a participant's signalling socket.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    /// The send slots now carry these participants' sources.
    Slots(Vec<SlotInfo>),
    /// Media can flow.
    Connected,
    /// ICE or DTLS failed or closed: the participant's connection is gone.
    Disconnected,
    /// The participant sent this chat message (relayed to the others), at this time.
    Chat { text: String, at: chrono::DateTime<chrono::Utc> },
    /// The participant's connection over the last interval, and the address its media comes
    /// from (a TURN relay's, when relayed).
    Quality { quality: Quality, remote: Option<SocketAddr> },
}

/// A room's recording, as the SFU feeds it: which tracks go to the spool.
#[derive(Clone)]
pub struct RecordTap {
    pub recording: uuid::Uuid,
    pub spool: Spool,
    /// The supervisor's voice too.
    pub supervisor: bool,
    /// The customer's screen share too.
    pub screen: bool,
}

impl RecordTap {
    /// Whether `source` of a participant in `role` is recorded: everyone's voice (the
    /// supervisor's when configured), the customer's camera (and screen when configured).
    pub fn wants(&self, role: TrackRole, source: Source) -> bool {
        match (role, source) {
            (TrackRole::Supervisor, Source::Audio) => self.supervisor,
            (_, Source::Audio) => true,
            (TrackRole::Customer, Source::Camera) => true,
            (TrackRole::Customer, Source::Screen) => self.screen,
            _ => false,
        }
    }
}

/// One socket carries every peer's media, so its buffers must absorb the bursts of all of them
/// while the task is busy: the kernel's default (about 208 KiB, some 90 full packets) overflows
/// in milliseconds under load, and the retransmissions the losses trigger make it worse (seen
/// in the benchmark as a collapse). The kernel caps the size at `net.core.rmem_max` /
/// `wmem_max`; a smaller buffer than asked is logged with the sysctl to raise.
fn bind_socket(bind: SocketAddr, buffer_bytes: usize) -> std::io::Result<UdpSocket> {
    let socket =
        socket2::Socket::new(socket2::Domain::for_address(bind), socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    socket.set_nonblocking(true)?;
    if buffer_bytes > 0 {
        socket.set_recv_buffer_size(buffer_bytes)?;
        socket.set_send_buffer_size(buffer_bytes)?;
        // Linux reports twice the size it was given (the bookkeeping overhead)
        let (recv, send) = (socket.recv_buffer_size()? / 2, socket.send_buffer_size()? / 2);
        if recv < buffer_bytes || send < buffer_bytes {
            tracing::warn!(
                asked = buffer_bytes,
                receive = recv,
                send,
                "the SFU's UDP buffers are smaller than asked (the kernel caps them): raise them with \
                 `sysctl -w net.core.rmem_max={buffer_bytes} net.core.wmem_max={buffer_bytes}`; under load \
                 the SFU drops packets"
            );
        }
    }
    socket.bind(&bind.into())?;
    UdpSocket::from_std(socket.into())
}

/// What a signalling socket asks of the SFU.
#[derive(Debug, thiserror::Error)]
pub enum SfuError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("the room already has three participants")]
    RoomFull,
    #[error("no such peer")]
    NoPeer,
    #[error("the SFU has stopped")]
    Stopped,
}

/// A participant joining through the SFU.
#[derive(Debug, Clone)]
pub struct Join {
    pub member: Member,
    /// Stamped on the participant's data-channel messages (`id`, `role`, `name`).
    pub from: Value,
    /// Whose voice and picture this is, for a recording of the room.
    pub role: TrackRole,
}

/// The offer a joining participant answers.
#[derive(Debug)]
pub struct Joined {
    pub peer: PeerId,
    pub offer: String,
    pub slots: Vec<SlotInfo>,
}

enum Command {
    Join { join: Join, notices: mpsc::UnboundedSender<Notice>, reply: oneshot::Sender<Result<Joined, SfuError>> },
    Answer { peer: PeerId, sdp: String, reply: oneshot::Sender<Result<(), SfuError>> },
    Candidate { peer: PeerId, candidate: RTCIceCandidateInit, reply: oneshot::Sender<Result<(), SfuError>> },
    Renegotiate { peer: PeerId, reply: oneshot::Sender<Result<(String, Vec<SlotInfo>), SfuError>> },
    Leave { peer: PeerId },
    Snapshot { reply: oneshot::Sender<Snapshot> },
    Record { room: uuid::Uuid, tap: Option<RecordTap>, reply: oneshot::Sender<()> },
}

/// Counters of the SFU, shared with metrics and benchmarks.
#[derive(Debug, Default)]
pub struct Counters {
    pub datagrams_in: AtomicU64,
    pub datagrams_unknown: AtomicU64,
    pub datagrams_out: AtomicU64,
    pub datagrams_dropped: AtomicU64,
    pub rtp_forwarded: AtomicU64,
    pub keyframe_requests: AtomicU64,
}

/// What the SFU holds right now (for tests and the leak check: all zero when every call ended).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    pub peers: usize,
    pub rooms: usize,
    pub addresses: usize,
    pub timers: usize,
    /// Rooms whose media goes to a recording.
    pub recordings: usize,
}

/// The handle signalling uses; cheap to clone.
#[derive(Clone)]
pub struct Sfu {
    commands: mpsc::Sender<Command>,
    local_addr: SocketAddr,
    pub counters: Arc<Counters>,
}

impl Sfu {
    /// Binds the UDP socket and starts the task. `public` is the address announced in the host
    /// candidate; its port 0 means the bound port. `buffer_bytes` is asked of the kernel for
    /// the socket's receive and send buffers.
    pub async fn start(
        bind: SocketAddr,
        public: SocketAddr,
        buffer_bytes: usize,
        shutdown: CancellationToken,
    ) -> std::io::Result<Sfu> {
        let socket = bind_socket(bind, buffer_bytes)?;
        let local_addr = socket.local_addr()?;
        let candidate =
            SocketAddr::new(public.ip(), if public.port() == 0 { local_addr.port() } else { public.port() });
        let (tx, rx) = mpsc::channel(1024);
        let counters = Arc::new(Counters::default());
        let settings = EngineSettings { candidate, local: local_addr };
        let task = Task::new(socket, settings, counters.clone());
        tokio::spawn(task.run(rx, shutdown));
        tracing::info!(%local_addr, %candidate, "SFU listening on one UDP port");
        Ok(Sfu { commands: tx, local_addr, counters })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, SfuError> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(make(tx)).await.map_err(|_| SfuError::Stopped)?;
        rx.await.map_err(|_| SfuError::Stopped)
    }

    pub async fn join(&self, join: Join, notices: mpsc::UnboundedSender<Notice>) -> Result<Joined, SfuError> {
        self.ask(|reply| Command::Join { join, notices, reply }).await?
    }

    pub async fn answer(&self, peer: PeerId, sdp: String) -> Result<(), SfuError> {
        self.ask(|reply| Command::Answer { peer, sdp, reply }).await?
    }

    pub async fn candidate(&self, peer: PeerId, candidate: RTCIceCandidateInit) -> Result<(), SfuError> {
        self.ask(|reply| Command::Candidate { peer, candidate, reply }).await?
    }

    /// A fresh offer with an ICE restart, and the current slots.
    pub async fn renegotiate(&self, peer: PeerId) -> Result<(String, Vec<SlotInfo>), SfuError> {
        self.ask(|reply| Command::Renegotiate { peer, reply }).await?
    }

    /// Removes the peer; never fails (a stopped SFU has no peers).
    pub async fn leave(&self, peer: PeerId) {
        let _ = self.commands.send(Command::Leave { peer }).await;
    }

    pub async fn snapshot(&self) -> Result<Snapshot, SfuError> {
        self.ask(|reply| Command::Snapshot { reply }).await
    }

    /// Starts (`Some`) or stops (`None`) feeding a room's media to a recording. Returns once
    /// the SFU applied it: after a stop, no packet of the room goes to the spool any more.
    pub async fn record(&self, room: uuid::Uuid, tap: Option<RecordTap>) -> Result<(), SfuError> {
        self.ask(|reply| Command::Record { room, tap, reply }).await
    }
}

struct Peer {
    engine: Box<dyn Engine>,
    notices: mpsc::UnboundedSender<Notice>,
    from: Value,
    role: TrackRole,
    meters: PeerMeters,
    joined: Instant,
    /// Where its datagrams come from.
    remote: Option<SocketAddr>,
    relay: Relay,
    deadline: Option<Instant>,
    /// DTLS is up: media sent before would be dropped by the engine anyway.
    connected: bool,
    /// Datagrams that came before the answer was applied (the browser starts its checks as
    /// soon as it has answered; the engine cannot answer them yet and would drop them, and a
    /// client that gives up early never connects). Replayed once the answer is in.
    early: Option<Vec<(SocketAddr, Instant, Vec<u8>)>>,
}

/// At most this many early datagrams are kept per peer.
const EARLY_DATAGRAMS: usize = 64;

struct Task {
    socket: UdpSocket,
    settings: EngineSettings,
    counters: Arc<Counters>,
    peers: HashMap<PeerId, Peer>,
    router: Router,
    demux: Demux,
    timers: BinaryHeap<Reverse<(Instant, PeerId)>>,
    /// Peers that got input since their output was last drained.
    dirty: Vec<PeerId>,
    events: Vec<EngineEvent>,
    next_peer: PeerId,
    /// The rooms being recorded.
    recordings: HashMap<uuid::Uuid, RecordTap>,
    /// The datagrams of this turn, sent together by `flush` (kept to reuse its allocation).
    out: Vec<(SocketAddr, bytes::BytesMut)>,
}

/// How many `recvmmsg` batches ([`udp::BATCH`] datagrams each) one wake-up reads before it
/// looks at commands and timers again.
const READ_BATCHES: usize = 2;

impl Task {
    fn new(socket: UdpSocket, settings: EngineSettings, counters: Arc<Counters>) -> Self {
        Task {
            socket,
            settings,
            counters,
            peers: HashMap::new(),
            router: Router::new(),
            demux: Demux::default(),
            timers: BinaryHeap::new(),
            dirty: Vec::new(),
            events: Vec::new(),
            next_peer: 1,
            recordings: HashMap::new(),
            out: Vec::new(),
        }
    }

    async fn run(mut self, mut commands: mpsc::Receiver<Command>, shutdown: CancellationToken) {
        let mut inbox = udp::Inbox::default();
        let mut quality = tokio::time::interval(quality::INTERVAL);
        quality.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let next_timer = self.timers.peek().map(|Reverse((t, _))| *t);
            let sleep = tokio::time::sleep_until(
                next_timer
                    .map(tokio::time::Instant::from_std)
                    .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600)),
            );
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                command = commands.recv() => match command {
                    Some(command) => self.command(command),
                    None => break,
                },
                ready = self.socket.readable() => {
                    if let Err(e) = ready {
                        tracing::debug!(error = %e, "SFU socket read failed");
                    }
                    // a few batches, then commands and timers get their turn
                    for _ in 0..READ_BATCHES {
                        match inbox.read(&self.socket) {
                            Ok(0) => break,
                            Ok(_) => {
                                for (from, data) in inbox.datagrams() {
                                    self.datagram(from, data);
                                }
                            }
                            Err(e) => {
                                tracing::debug!(error = %e, "SFU socket read failed");
                                break;
                            }
                        }
                    }
                }
                _ = quality.tick() => self.sample_quality(),
                _ = sleep => {}
            }
            // due timers run on every turn: under a steady stream of datagrams the socket is
            // always ready, and retransmissions of a handshake in progress must not starve
            self.timeouts();
            self.flush();
        }
        for (_, mut peer) in self.peers.drain() {
            peer.engine.close();
        }
        tracing::info!("SFU stopped");
    }

    fn command(&mut self, command: Command) {
        let now = Instant::now();
        match command {
            Command::Join { join, notices, reply } => {
                let _ = reply.send(self.join(join, notices, now));
            }
            Command::Answer { peer, sdp, reply } => {
                let result = match self.peers.get_mut(&peer) {
                    Some(p) => {
                        let result = p.engine.accept_answer(now, sdp).map_err(SfuError::from);
                        if result.is_ok()
                            && let Some(early) = p.early.take()
                        {
                            for (from, at, data) in early {
                                p.engine.handle_datagram(at, from, &data);
                            }
                        }
                        result
                    }
                    None => Err(SfuError::NoPeer),
                };
                self.dirty.push(peer);
                self.process(peer);
                let _ = reply.send(result);
            }
            Command::Candidate { peer, candidate, reply } => {
                let result = match self.peers.get_mut(&peer) {
                    Some(p) => p.engine.add_remote_candidate(candidate).map_err(SfuError::from),
                    None => Err(SfuError::NoPeer),
                };
                self.dirty.push(peer);
                let _ = reply.send(result);
            }
            Command::Renegotiate { peer, reply } => {
                let result = match self.peers.get_mut(&peer) {
                    Some(p) => {
                        let offer = p.engine.offer(now, true).map_err(SfuError::from);
                        // the restart's checks come with the new ufrag, maybe from a new path
                        self.demux.add(peer, p.engine.ice_ufrag());
                        offer
                    }
                    None => Err(SfuError::NoPeer),
                };
                self.dirty.push(peer);
                let _ = reply.send(result.map(|sdp| (sdp, self.router.slots(peer))));
            }
            Command::Leave { peer } => self.remove(peer),
            Command::Snapshot { reply } => {
                let _ = reply.send(Snapshot {
                    peers: self.peers.len().max(self.router.peer_count()),
                    rooms: self.router.room_count(),
                    addresses: self.demux.addresses(),
                    timers: self.peers.values().filter(|p| p.deadline.is_some()).count(),
                    recordings: self.recordings.len(),
                });
            }
            Command::Record { room, tap, reply } => {
                match tap {
                    Some(tap) => {
                        // the recording's video starts at a keyframe
                        for peer in self.router.room_peers(room).to_vec() {
                            if let Some(p) = self.peers.get_mut(&peer)
                                && p.role == TrackRole::Customer
                            {
                                p.engine.request_keyframe(now, Source::Camera);
                                if tap.screen {
                                    p.engine.request_keyframe(now, Source::Screen);
                                }
                                self.counters.keyframe_requests.fetch_add(1, Ordering::Relaxed);
                                self.dirty.push(peer);
                            }
                        }
                        self.recordings.insert(room, tap);
                    }
                    None => {
                        self.recordings.remove(&room);
                    }
                }
                let _ = reply.send(());
            }
        }
    }

    fn join(&mut self, join: Join, notices: mpsc::UnboundedSender<Notice>, now: Instant) -> Result<Joined, SfuError> {
        if self.router.room_peers(join.member.room).len() >= 3 {
            return Err(SfuError::RoomFull);
        }
        let mut engine = RtcEngine::new(now, self.settings.clone())?;
        let offer = engine.offer(now, false)?;
        let peer = self.next_peer;
        self.next_peer += 1;
        self.demux.add(peer, engine.ice_ufrag());
        tracing::debug!(peer, ufrag = engine.ice_ufrag(), room = %join.member.room, "peer created");
        self.peers.insert(
            peer,
            Peer {
                engine: Box::new(engine),
                notices,
                from: join.from,
                role: join.role,
                meters: PeerMeters::default(),
                joined: now,
                remote: None,
                relay: Relay::default(),
                deadline: None,
                connected: false,
                early: Some(Vec::new()),
            },
        );
        let effects = self.router.join(peer, join.member, now).map_err(|_| SfuError::RoomFull)?;
        let slots = self.router.slots(peer);
        self.apply(effects, now, Some(peer));
        self.dirty.push(peer);
        Ok(Joined { peer, offer, slots })
    }

    fn remove(&mut self, peer: PeerId) {
        tracing::debug!(peer, "peer removed");
        if let Some(mut p) = self.peers.remove(&peer) {
            p.engine.close();
        }
        self.demux.remove(peer);
        let effects = self.router.leave(peer);
        self.apply(effects, Instant::now(), None);
    }

    /// Carries out what a membership change asks; `skip_slots` already has its mapping.
    fn apply(&mut self, effects: Vec<Effect>, now: Instant, skip_slots: Option<PeerId>) {
        for effect in effects {
            match effect {
                Effect::Slots { peer, slots } => {
                    if Some(peer) != skip_slots
                        && let Some(p) = self.peers.get(&peer)
                    {
                        let _ = p.notices.send(Notice::Slots(slots));
                    }
                }
                Effect::Keyframe { peer, source } => {
                    if let Some(p) = self.peers.get_mut(&peer) {
                        p.engine.request_keyframe(now, source);
                        self.counters.keyframe_requests.fetch_add(1, Ordering::Relaxed);
                        self.dirty.push(peer);
                    }
                }
            }
        }
    }

    fn datagram(&mut self, from: SocketAddr, data: &[u8]) {
        self.counters.datagrams_in.fetch_add(1, Ordering::Relaxed);
        let Some(peer) = self.demux.route(from, data) else {
            self.counters.datagrams_unknown.fetch_add(1, Ordering::Relaxed);
            if let Some(ufrag) = demux::stun_local_ufrag(data) {
                tracing::debug!(%from, ufrag, "STUN for no peer of this SFU (gone, or never here)");
            }
            return;
        };
        let Some(p) = self.peers.get_mut(&peer) else { return };
        p.remote = Some(from);
        if let Some(early) = &mut p.early {
            if early.len() < EARLY_DATAGRAMS {
                early.push((from, Instant::now(), data.to_vec()));
            }
            return;
        }
        p.engine.handle_datagram(Instant::now(), from, data);
        self.dirty.push(peer);
        self.process(peer);
    }

    fn timeouts(&mut self) {
        let now = Instant::now();
        while let Some(Reverse((at, peer))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(p) = self.peers.get_mut(&peer) else { continue };
            if p.deadline != Some(at) {
                continue; // superseded by a later deadline
            }
            p.deadline = None;
            p.engine.handle_timeout(now);
            self.dirty.push(peer);
            self.process(peer);
        }
    }

    /// Acts on what `peer` reported: forwards media, relays keyframe requests and data.
    fn process(&mut self, peer: PeerId) {
        let Some(p) = self.peers.get_mut(&peer) else { return };
        while let Some(event) = p.engine.poll_event() {
            self.events.push(event);
        }
        if self.events.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut events = std::mem::take(&mut self.events);
        for event in events.drain(..) {
            match event {
                EngineEvent::Media { source, mut packet } => {
                    let h = &packet.header;
                    let role = match self.peers.get_mut(&peer) {
                        Some(p) => {
                            p.meters.source(source).packet(
                                h.ssrc,
                                h.sequence_number,
                                h.timestamp,
                                packet.payload.len() + 12,
                                now,
                            );
                            p.role
                        }
                        None => continue,
                    };
                    if !self.recordings.is_empty()
                        && let Some(member) = self.router.member(peer)
                        && let Some(tap) = self.recordings.get(&member.room)
                        && tap.wants(role, source)
                    {
                        tap.spool.packet(tap.recording, TrackKey { peer, role, source }, now, h, &packet.payload);
                    }
                    let forwards = self.router.route(peer, source, h.ssrc, h.sequence_number, h.timestamp);
                    // the publisher's extension ids mean nothing on the subscribers' connections:
                    // dropped once here, so each copy below is a header and a shared payload
                    packet.header.extension = false;
                    packet.header.extensions.clear();
                    packet.header.extension_profile = 0;
                    let mut forwarded = 0;
                    for forward in forwards.into_iter().flatten() {
                        if let Some(target) = self.peers.get_mut(&forward.peer)
                            && target.connected
                        {
                            let mut copy = packet.clone();
                            copy.header.sequence_number = forward.seq;
                            copy.header.timestamp = forward.timestamp;
                            target.meters.bytes_out += (copy.payload.len() + 12) as u64;
                            target.engine.send_media(now, forward.slot, copy);
                            forwarded += 1;
                            self.dirty.push(forward.peer);
                        }
                    }
                    if forwarded > 0 {
                        self.counters.rtp_forwarded.fetch_add(forwarded, Ordering::Relaxed);
                    }
                }
                EngineEvent::SenderReport { source, ssrc, ntp, rtp } => {
                    let Some(role) = self.peers.get(&peer).map(|p| p.role) else { continue };
                    if let Some(member) = self.router.member(peer)
                        && let Some(tap) = self.recordings.get(&member.room)
                        && tap.wants(role, source)
                    {
                        tap.spool.sender_report(tap.recording, TrackKey { peer, role, source }, now, ssrc, ntp, rtp);
                    }
                }
                EngineEvent::KeyframeRequest { slot } => {
                    if let Some((publisher, source)) = self.router.keyframe_request(peer, slot, now)
                        && let Some(target) = self.peers.get_mut(&publisher)
                    {
                        target.engine.request_keyframe(now, source);
                        self.counters.keyframe_requests.fetch_add(1, Ordering::Relaxed);
                        self.dirty.push(publisher);
                    }
                }
                EngineEvent::Data(text) => self.relay_data(peer, &text, now),
                EngineEvent::Connected => {
                    if let Some(p) = self.peers.get_mut(&peer) {
                        p.connected = true;
                    }
                    // keyframes asked for at join went out before this peer could decrypt them
                    let effects = self.router.connected(peer, now);
                    self.apply(effects, now, None);
                    self.notify(peer, Notice::Connected);
                }
                EngineEvent::Disconnected => {
                    if let Some(p) = self.peers.get_mut(&peer) {
                        p.connected = false;
                    }
                    self.notify(peer, Notice::Disconnected);
                }
                EngineEvent::DataOpen => {}
            }
        }
        self.events = events;
    }

    /// Every connected participant's quality over the last interval, to its signalling socket.
    fn sample_quality(&mut self) {
        let now = Instant::now();
        for p in self.peers.values_mut() {
            if !p.connected {
                continue;
            }
            let link = p.engine.link_stats(now);
            let quality = p.meters.sample(now, p.joined, link.rtt_ms);
            let _ = p.notices.send(Notice::Quality { quality, remote: p.remote });
        }
    }

    fn notify(&self, peer: PeerId, notice: Notice) {
        if let Some(p) = self.peers.get(&peer) {
            let _ = p.notices.send(notice);
        }
    }

    fn relay_data(&mut self, from: PeerId, text: &str, now: Instant) {
        let wall = chrono::Utc::now();
        let at = wall.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let Some(sender) = self.peers.get_mut(&from) else { return };
        let stamped = match sender.relay.relay(text, &sender.from, &at, now) {
            Ok(stamped) => stamped,
            Err(why) => {
                tracing::debug!(peer = from, %why, "data-channel message dropped");
                return;
            }
        };
        if let Some(chat) = sender.relay.take_chat() {
            let _ = sender.notices.send(Notice::Chat { text: chat, at: wall });
        }
        for target in self.router.data_audience(from) {
            if let Some(t) = self.peers.get_mut(&target) {
                t.engine.send_data(now, &stamped);
                self.dirty.push(target);
            }
        }
    }

    /// Sends what every dirty peer has queued and re-arms its timer.
    fn flush(&mut self) {
        let mut dirty = std::mem::take(&mut self.dirty);
        dirty.sort_unstable();
        dirty.dedup();
        let mut out = std::mem::take(&mut self.out);
        for peer in dirty.drain(..) {
            let Some(p) = self.peers.get_mut(&peer) else { continue };
            while let Some(datagram) = p.engine.poll_transmit() {
                out.push(datagram);
            }
            let deadline = p.engine.poll_timeout();
            if deadline != p.deadline {
                p.deadline = deadline;
                if let Some(at) = deadline {
                    self.timers.push(Reverse((at, peer)));
                }
            }
        }
        // every peer's datagrams of this turn leave together, a few system calls in all
        let sent = udp::send_all(&self.socket, &out);
        self.counters.datagrams_out.fetch_add(sent.sent, Ordering::Relaxed);
        self.counters.datagrams_dropped.fetch_add(sent.dropped, Ordering::Relaxed);
        out.clear();
        self.out = out;
        self.dirty = dirty;
        // stale timer entries are skipped when popped; keep the heap from growing without end
        if self.timers.len() > 64 + 8 * self.peers.len() {
            let live: Vec<_> = self.peers.iter().filter_map(|(id, p)| p.deadline.map(|d| Reverse((d, *id)))).collect();
            self.timers = live.into_iter().collect();
        }
    }
}
