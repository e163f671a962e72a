//! The routing core of the SFU, with no sockets and no clock of its own: who is in which
//! room, which send slot of each subscriber carries which publisher's source, the rewriting
//! that keeps each slot one continuous RTP stream when its publisher changes, and the rate
//! limit on keyframe requests relayed to publishers.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use uuid::Uuid;

/// A peer connection of the SFU (one participant's connection).
pub type PeerId = u64;

/// The send slots of a peer: two other participants x three sources (mids 3..=8).
pub const SEND_SLOTS: usize = 6;

/// At most one keyframe request per publisher source in this interval.
pub const KEYFRAME_INTERVAL: Duration = Duration::from_millis(500);

/// What a participant publishes; the index is the mid of its receive transceiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    Audio,
    Camera,
    Screen,
}

impl Source {
    pub const ALL: [Source; 3] = [Source::Audio, Source::Camera, Source::Screen];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Source::Audio => "audio",
            Source::Camera => "camera",
            Source::Screen => "screen",
        }
    }
}

/// What a participant may receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Receives {
    /// Everything the others publish.
    All,
    /// Only what the customer publishes (the agent's side of a `one_way` call).
    CustomerOnly,
    /// Nothing but data-channel messages (the customer of a `one_way` call).
    Nothing,
}

/// A participant's place in the router.
#[derive(Debug, Clone)]
pub struct Member {
    pub room: Uuid,
    pub participant: Uuid,
    pub is_customer: bool,
    pub receives: Receives,
}

/// Which publisher source a subscriber's send slot carries (mid = 3 + slot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotInfo {
    pub slot: usize,
    pub participant: Uuid,
    pub source: Source,
}

impl SlotInfo {
    pub fn mid(&self) -> String {
        (3 + self.slot).to_string()
    }
}

/// Keeps a send slot one RTP stream: sequence numbers and timestamps continue across a change
/// of publisher (a participant who leaves and one who takes the place, or a reconnect).
#[derive(Debug, Clone, Default)]
struct Rewrite {
    /// The publisher's SSRC the offsets were computed for.
    ssrc: Option<u32>,
    seq_offset: u16,
    ts_offset: u32,
    last_seq: u16,
    last_ts: u32,
    started: bool,
}

impl Rewrite {
    fn apply(&mut self, ssrc: u32, seq: u16, ts: u32) -> (u16, u32) {
        let fresh = self.ssrc != Some(ssrc);
        if fresh {
            if self.started {
                // continue right after the last packet sent on this slot
                self.seq_offset = self.last_seq.wrapping_add(1).wrapping_sub(seq);
                self.ts_offset = self.last_ts.wrapping_add(3000).wrapping_sub(ts);
            }
            self.ssrc = Some(ssrc);
            self.started = true;
        }
        let out = (seq.wrapping_add(self.seq_offset), ts.wrapping_add(self.ts_offset));
        // remember the newest (not a late retransmission)
        if fresh || out.0.wrapping_sub(self.last_seq) < 0x8000 {
            self.last_seq = out.0;
            self.last_ts = out.1;
        }
        out
    }
}

#[derive(Debug)]
struct PeerState {
    member: Member,
    /// The peers on this peer's two send positions.
    others: [Option<PeerId>; 2],
    rewrites: [Rewrite; SEND_SLOTS],
    /// When a keyframe of each source was last asked of this peer.
    last_keyframe: [Option<Instant>; 3],
}

/// One forwarding decision: send the packet to `peer` on `slot` with these numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forward {
    pub peer: PeerId,
    pub slot: usize,
    pub seq: u16,
    pub timestamp: u32,
}

/// What a membership change asks of the I/O side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Tell this peer's participant the new slot mapping.
    Slots { peer: PeerId, slots: Vec<SlotInfo> },
    /// Ask this publisher for a keyframe of `source` (a new subscriber needs one).
    Keyframe { peer: PeerId, source: Source },
}

/// The routing state of every room of one SFU.
#[derive(Debug, Default)]
pub struct Router {
    peers: HashMap<PeerId, PeerState>,
    rooms: HashMap<Uuid, Vec<PeerId>>,
}

impl Router {
    pub fn new() -> Self {
        Router::default()
    }

    pub fn member(&self, peer: PeerId) -> Option<&Member> {
        self.peers.get(&peer).map(|p| &p.member)
    }

    /// The peers of a room, in join order.
    pub fn room_peers(&self, room: Uuid) -> &[PeerId] {
        self.rooms.get(&room).map(Vec::as_slice).unwrap_or(&[])
    }

    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    /// Adds a peer to its room. Fails when the room already has three peers.
    pub fn join(&mut self, peer: PeerId, member: Member, now: Instant) -> Result<Vec<Effect>, RoomFull> {
        let room = member.room;
        let existing = self.rooms.get(&room).cloned().unwrap_or_default();
        if existing.len() >= 3 {
            return Err(RoomFull);
        }
        let mut state =
            PeerState { member, others: [None, None], rewrites: Default::default(), last_keyframe: [None; 3] };
        for (position, other) in existing.iter().enumerate() {
            state.others[position] = Some(*other);
        }
        self.peers.insert(peer, state);
        for other in &existing {
            if let Some(o) = self.peers.get_mut(other)
                && let Some(free) = o.others.iter_mut().find(|p| p.is_none())
            {
                *free = Some(peer);
            }
        }
        self.rooms.entry(room).or_default().push(peer);
        let mut effects = vec![Effect::Slots { peer, slots: self.slots(peer) }];
        for other in &existing {
            effects.push(Effect::Slots { peer: *other, slots: self.slots(*other) });
        }
        let _ = now;
        Ok(effects)
    }

    /// A peer's media path is up: it needs a keyframe of every video it receives (the
    /// publishers are asked once, within their rate limit).
    pub fn connected(&mut self, peer: PeerId, now: Instant) -> Vec<Effect> {
        let Some(state) = self.peers.get(&peer) else { return Vec::new() };
        let publishers: Vec<PeerId> = state.others.iter().flatten().copied().collect();
        let mut effects = Vec::new();
        for publisher in publishers {
            if !self.may_receive(peer, publisher) {
                continue;
            }
            for source in [Source::Camera, Source::Screen] {
                if self.take_keyframe_budget(publisher, source, now) {
                    effects.push(Effect::Keyframe { peer: publisher, source });
                }
            }
        }
        effects
    }

    /// Removes a peer; the others' slots that carried it fall silent.
    pub fn leave(&mut self, peer: PeerId) -> Vec<Effect> {
        let Some(state) = self.peers.remove(&peer) else { return Vec::new() };
        let room = state.member.room;
        let mut effects = Vec::new();
        if let Some(peers) = self.rooms.get_mut(&room) {
            peers.retain(|p| *p != peer);
            if peers.is_empty() {
                self.rooms.remove(&room);
            }
        }
        for other in self.room_peers(room).to_vec() {
            if let Some(o) = self.peers.get_mut(&other) {
                for position in o.others.iter_mut() {
                    if *position == Some(peer) {
                        *position = None;
                    }
                }
            }
            effects.push(Effect::Slots { peer: other, slots: self.slots(other) });
        }
        effects
    }

    /// Whether `subscriber` may receive what `publisher` publishes.
    fn may_receive(&self, subscriber: PeerId, publisher: PeerId) -> bool {
        let (Some(s), Some(p)) = (self.peers.get(&subscriber), self.peers.get(&publisher)) else { return false };
        match s.member.receives {
            Receives::All => true,
            Receives::CustomerOnly => p.member.is_customer,
            Receives::Nothing => false,
        }
    }

    /// The slot mapping of a peer: which other participant's source each send slot carries.
    pub fn slots(&self, peer: PeerId) -> Vec<SlotInfo> {
        let Some(state) = self.peers.get(&peer) else { return Vec::new() };
        let mut slots = Vec::new();
        for (position, other) in state.others.iter().enumerate() {
            let Some(other) = other else { continue };
            if !self.may_receive(peer, *other) {
                continue;
            }
            let participant = self.peers[other].member.participant;
            for source in Source::ALL {
                slots.push(SlotInfo { slot: position * 3 + source.index(), participant, source });
            }
        }
        slots
    }

    /// Where a packet `publisher` sent on `source` goes, with the numbers each copy carries.
    /// The hot path: no allocation beyond the returned array's two entries.
    pub fn route(
        &mut self,
        publisher: PeerId,
        source: Source,
        ssrc: u32,
        seq: u16,
        timestamp: u32,
    ) -> [Option<Forward>; 2] {
        let mut out = [None, None];
        let Some(room) = self.peers.get(&publisher).map(|p| p.member.room) else { return out };
        let Some(peers) = self.rooms.get(&room) else { return out };
        let mut n = 0;
        for &subscriber in peers {
            if subscriber == publisher || n == 2 {
                continue;
            }
            if !self.may_receive(subscriber, publisher) {
                continue;
            }
            let Some(state) = self.peers.get_mut(&subscriber) else { continue };
            let Some(position) = state.others.iter().position(|p| *p == Some(publisher)) else { continue };
            let slot = position * 3 + source.index();
            let (seq, timestamp) = state.rewrites[slot].apply(ssrc, seq, timestamp);
            out[n] = Some(Forward { peer: subscriber, slot, seq, timestamp });
            n += 1;
        }
        out
    }

    /// A subscriber asked for a keyframe on one of its slots: the publisher and source to ask,
    /// unless one was asked for within [`KEYFRAME_INTERVAL`].
    pub fn keyframe_request(&mut self, subscriber: PeerId, slot: usize, now: Instant) -> Option<(PeerId, Source)> {
        let state = self.peers.get(&subscriber)?;
        let publisher = (*state.others.get(slot / 3)?)?;
        let source = Source::ALL[slot % 3];
        if source == Source::Audio || !self.may_receive(subscriber, publisher) {
            return None;
        }
        self.take_keyframe_budget(publisher, source, now).then_some((publisher, source))
    }

    fn take_keyframe_budget(&mut self, publisher: PeerId, source: Source, now: Instant) -> bool {
        let Some(state) = self.peers.get_mut(&publisher) else { return false };
        let last = &mut state.last_keyframe[source.index()];
        if last.is_some_and(|t| now.duration_since(t) < KEYFRAME_INTERVAL) {
            return false;
        }
        *last = Some(now);
        true
    }

    /// The peers a data-channel message of `from` goes to (everyone else in the room).
    pub fn data_audience(&self, from: PeerId) -> Vec<PeerId> {
        let Some(room) = self.peers.get(&from).map(|p| p.member.room) else { return Vec::new() };
        self.room_peers(room).iter().copied().filter(|p| *p != from).collect()
    }
}

/// A room already has three participants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the room already has three participants")]
pub struct RoomFull;

#[cfg(test)]
mod tests {
    use super::*;

    fn member(room: Uuid, customer: bool, receives: Receives) -> Member {
        Member { room, participant: Uuid::new_v4(), is_customer: customer, receives }
    }

    #[test]
    fn a_packet_reaches_every_other_participant_on_its_slot() {
        let mut r = Router::new();
        let room = Uuid::new_v4();
        let now = Instant::now();
        r.join(1, member(room, false, Receives::All), now).unwrap();
        r.join(2, member(room, true, Receives::All), now).unwrap();
        r.join(3, member(room, false, Receives::All), now).unwrap();
        let out = r.route(2, Source::Camera, 77, 10, 1000);
        let got: Vec<_> = out.iter().flatten().map(|f| (f.peer, f.slot)).collect();
        // peer 1 has peer 2 on position 0, peer 3 has peer 2 on position 1
        assert_eq!(got, vec![(1, 1), (3, 4)]);
        assert!(r.route(9, Source::Camera, 1, 1, 1).iter().all(Option::is_none), "unknown publisher");
        assert!(r.join(4, member(room, false, Receives::All), now).is_err(), "a fourth participant is refused");
        let other_room = Uuid::new_v4();
        r.join(5, member(other_room, false, Receives::All), now).unwrap();
        assert!(r.route(5, Source::Audio, 1, 1, 1).iter().all(Option::is_none), "rooms are separate");
    }

    #[test]
    fn slots_name_the_participants_and_a_leaver_frees_its_place() {
        let mut r = Router::new();
        let room = Uuid::new_v4();
        let now = Instant::now();
        let a = member(room, false, Receives::All);
        let c = member(room, true, Receives::All);
        r.join(1, a.clone(), now).unwrap();
        let effects = r.join(2, c.clone(), now).unwrap();
        assert!(
            effects.contains(&Effect::Slots {
                peer: 1,
                slots: Source::ALL
                    .iter()
                    .map(|&s| SlotInfo { slot: s.index(), participant: c.participant, source: s })
                    .collect()
            })
        );
        assert_eq!(
            r.connected(2, now),
            vec![
                Effect::Keyframe { peer: 1, source: Source::Camera },
                Effect::Keyframe { peer: 1, source: Source::Screen }
            ],
            "once connected, the newcomer needs the others' keyframes"
        );
        assert_eq!(r.connected(2, now), vec![], "within the rate limit");
        let effects = r.leave(2);
        assert_eq!(effects, vec![Effect::Slots { peer: 1, slots: vec![] }]);
        assert_eq!(r.peer_count(), 1);
        r.leave(1);
        assert_eq!((r.peer_count(), r.room_count()), (0, 0), "nothing is left behind");
    }

    #[test]
    fn one_way_calls_send_nothing_back_to_the_customer() {
        let mut r = Router::new();
        let room = Uuid::new_v4();
        let now = Instant::now();
        r.join(1, member(room, false, Receives::CustomerOnly), now).unwrap();
        r.join(2, member(room, true, Receives::Nothing), now).unwrap();
        r.join(3, member(room, false, Receives::CustomerOnly), now).unwrap();
        let from_agent: Vec<_> = r.route(1, Source::Camera, 5, 1, 1).iter().flatten().map(|f| f.peer).collect();
        assert!(from_agent.is_empty(), "the agent's video reaches nobody: {from_agent:?}");
        let from_customer: Vec<_> = r.route(2, Source::Camera, 6, 1, 1).iter().flatten().map(|f| f.peer).collect();
        assert_eq!(from_customer, vec![1, 3]);
        assert!(r.slots(2).is_empty());
        assert_eq!(r.data_audience(2), vec![1, 3], "chat still goes both ways");
    }

    #[test]
    fn keyframe_requests_are_rate_limited_per_publisher_source() {
        let mut r = Router::new();
        let room = Uuid::new_v4();
        let t0 = Instant::now();
        r.join(1, member(room, false, Receives::All), t0).unwrap();
        r.join(2, member(room, true, Receives::All), t0).unwrap();
        // peer 2 connected at t0: peer 1 was asked for keyframes then
        assert_eq!(r.connected(2, t0).len(), 2);
        assert_eq!(r.keyframe_request(2, 1, t0 + Duration::from_millis(10)), None);
        let later = t0 + KEYFRAME_INTERVAL;
        assert_eq!(r.keyframe_request(2, 1, later), Some((1, Source::Camera)));
        assert_eq!(r.keyframe_request(2, 1, later + Duration::from_millis(100)), None);
        assert_eq!(r.keyframe_request(2, 2, later), Some((1, Source::Screen)), "each source has its own budget");
        assert_eq!(r.keyframe_request(2, 0, later), None, "audio has no keyframes");
        assert_eq!(r.keyframe_request(2, 3, later), None, "an empty position");
    }

    #[test]
    fn a_slot_stays_one_stream_when_its_publisher_changes() {
        let mut r = Router::new();
        let room = Uuid::new_v4();
        let now = Instant::now();
        r.join(1, member(room, false, Receives::All), now).unwrap();
        r.join(2, member(room, true, Receives::All), now).unwrap();
        let first = r.route(2, Source::Camera, 100, 500, 9000)[0].unwrap();
        let second = r.route(2, Source::Camera, 100, 501, 12000)[0].unwrap();
        assert_eq!((first.seq, first.timestamp), (500, 9000), "the first publisher's numbers pass through");
        assert_eq!((second.seq, second.timestamp), (501, 12000));
        // the customer reconnects: a new peer, a new SSRC, numbers from elsewhere
        r.leave(2);
        r.join(3, member(room, true, Receives::All), now).unwrap();
        let next = r.route(3, Source::Camera, 200, 40000, 7).unwrap_first();
        assert_eq!(next.slot, 1, "the same place");
        assert_eq!(next.seq, 502, "sequence numbers continue");
        assert_eq!(next.timestamp, 15000, "timestamps move forward");
        let after = r.route(3, Source::Camera, 200, 40001, 3007).unwrap_first();
        assert_eq!((after.seq, after.timestamp), (503, 18000));
    }

    trait First {
        fn unwrap_first(self) -> Forward;
    }
    impl First for [Option<Forward>; 2] {
        fn unwrap_first(self) -> Forward {
            self[0].expect("one forward")
        }
    }
}
