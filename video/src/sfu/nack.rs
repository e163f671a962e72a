//! What the SFU's peer connections do with the feedback of the streams they receive, as one
//! interceptor of the `rtc` crate's chain: ask publishers again for packets that did not arrive
//! (generic NACKs, RFC 4585), and let keyframe requests and RTCP reports go on to the
//! application, which the chain's terminus would otherwise drop.
//!
//! It replaces the crate's NACK generator, which a profile of the forwarding benchmark showed
//! at 10% of the SFU's CPU once packets were lost: every 100 ms, for every stream, it scanned
//! its 512-packet log, looked each missing packet up in a hash map, and compared every counted
//! packet with every missing one. Here a stream keeps the list of what is missing, in order,
//! built when a gap opens and shortened as packets come late or are asked for enough times;
//! a stream with nothing missing costs nothing at the tick, and no tick is asked for while
//! nothing is missing. Retransmissions that come on the RTX stream (RFC 4588) repair the
//! original sequence number, so a repaired packet is not asked for again.
//!
//! Being one stage instead of two (the crate's generator and a separate marker of the RTCP
//! the application wants) also saves every packet, both ways, a pass through one more queue.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rtc::interceptor::{Attribute, AttributedPacket, Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::rtcp::sender_report::SenderReport;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::{TransportLayerNack, nack_pairs_from_sequence_numbers};
use rtc::sansio::Protocol;
use rtc::shared::TransportContext;

/// A jump of the sequence numbers larger than this is a new start of the stream (or a loss no
/// retransmission could repair: the SFU's own NACK responder keeps 256 packets, a browser
/// about as many), not packets to ask for.
pub const MAX_GAP: u16 = 256;
/// At most this many missing packets are remembered per stream (the oldest are forgotten).
pub const MAX_MISSING: usize = 256;

/// The missing packets of one received stream.
#[derive(Debug, Default)]
pub struct LossTracker {
    highest: Option<u16>,
    /// Missing sequence numbers, oldest first, with how many times each was asked for.
    missing: VecDeque<(u16, u16)>,
}

impl LossTracker {
    /// A packet arrived on the stream itself.
    pub fn received(&mut self, seq: u16) {
        let Some(highest) = self.highest else {
            self.highest = Some(seq);
            return;
        };
        let ahead = seq.wrapping_sub(highest);
        if ahead == 0 {
            return; // a duplicate
        }
        if ahead < 0x8000 {
            if ahead > MAX_GAP {
                self.missing.clear();
            } else {
                for k in 1..ahead {
                    self.missing.push_back((highest.wrapping_add(k), 0));
                }
                while self.missing.len() > MAX_MISSING {
                    self.missing.pop_front();
                }
            }
            self.highest = Some(seq);
        } else {
            self.repaired(seq);
        }
    }

    /// A packet that was missing came after all: late, or retransmitted.
    pub fn repaired(&mut self, seq: u16) {
        if let Some(i) = self.missing.iter().position(|(s, _)| *s == seq) {
            self.missing.remove(i);
        }
    }

    /// Whether packets are missing.
    pub fn has_missing(&self) -> bool {
        !self.missing.is_empty()
    }

    /// The packets to ask for now, oldest first, into `out`: every missing one, each counted as
    /// asked once more; one asked for `max_asks` times is given up.
    pub fn take_due(&mut self, max_asks: u16, out: &mut Vec<u16>) {
        for (seq, asked) in self.missing.iter_mut() {
            out.push(*seq);
            *asked += 1;
        }
        self.missing.retain(|(_, asked)| *asked < max_asks);
    }
}

/// Keyframe requests (relayed to publishers), sender reports (recordings align streams with
/// them) and receiver reports (the round trip of the quality indicator) go on to the
/// application.
pub fn for_the_application(packets: &[Box<dyn rtc::rtcp::Packet>]) -> bool {
    packets.iter().any(|p| {
        let any = p.as_any();
        any.downcast_ref::<PictureLossIndication>().is_some()
            || any.downcast_ref::<FullIntraRequest>().is_some()
            || any.downcast_ref::<SenderReport>().is_some()
            || any.downcast_ref::<ReceiverReport>().is_some()
    })
}

struct Stream {
    ssrc: u32,
    /// The SSRC of its retransmissions, when they come on an RTX stream.
    rtx: Option<u32>,
    loss: LossTracker,
}

/// The interceptor; see the module's documentation.
pub struct FeedbackInterceptor {
    interval: Duration,
    max_asks: u16,
    sender_ssrc: u32,
    streams: Vec<Stream>,
    next: Option<Instant>,
    read: VecDeque<TaggedPacket>,
    write: VecDeque<TaggedPacket>,
    /// Reused for each stream's NACK.
    due: Vec<u16>,
}

impl FeedbackInterceptor {
    /// NACKs every `interval` while packets are missing, each packet asked for at most
    /// `max_asks` times.
    pub fn new(interval: Duration, max_asks: u16) -> Self {
        FeedbackInterceptor {
            interval,
            max_asks: max_asks.max(1),
            sender_ssrc: rand::random(),
            streams: Vec::new(),
            next: None,
            read: VecDeque::new(),
            write: VecDeque::new(),
            due: Vec::new(),
        }
    }

    fn rtp(&mut self, now: Instant, packet: &rtc::rtp::Packet) {
        let ssrc = packet.header.ssrc;
        if let Some(stream) = self.streams.iter_mut().find(|s| s.ssrc == ssrc) {
            stream.loss.received(packet.header.sequence_number);
        } else if let Some(stream) = self.streams.iter_mut().find(|s| s.rtx == Some(ssrc)) {
            // RFC 4588: the original sequence number opens the payload (padding-only RTX
            // packets, sent to probe bandwidth, have none)
            if packet.payload.len() >= 2 {
                stream.loss.repaired(u16::from_be_bytes([packet.payload[0], packet.payload[1]]));
            }
        } else {
            return;
        }
        if self.next.is_none() && self.streams.iter().any(|s| s.loss.has_missing()) {
            self.next = Some(now + self.interval);
        }
    }
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for FeedbackInterceptor {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        let deliver = match &msg.message.packet {
            Packet::Rtp(packet) => {
                self.rtp(msg.now, packet);
                false
            }
            Packet::Rtcp(packets) => for_the_application(packets),
            _ => false,
        };
        if deliver {
            msg.message.add(Attribute::DeliverToApplication);
        }
        self.read.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.write.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write.pop_front()
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), Self::Error> {
        if self.next.is_none_or(|next| now < next) {
            return Ok(());
        }
        for stream in &mut self.streams {
            self.due.clear();
            stream.loss.take_due(self.max_asks, &mut self.due);
            if self.due.is_empty() {
                continue;
            }
            let nack = TransportLayerNack {
                sender_ssrc: self.sender_ssrc,
                media_ssrc: stream.ssrc,
                nacks: nack_pairs_from_sequence_numbers(&self.due),
            };
            self.write.push_back(TaggedPacket {
                now,
                transport: TransportContext::default(),
                message: AttributedPacket::new(Packet::Rtcp(vec![Box::new(nack)])),
            });
        }
        self.next = self.streams.iter().any(|s| s.loss.has_missing()).then(|| now + self.interval);
        Ok(())
    }

    fn poll_timeout(&mut self) -> Option<Instant> {
        self.next
    }
}

impl Interceptor for FeedbackInterceptor {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}

    fn bind_remote_stream(&mut self, info: &StreamInfo) {
        let nack = info.rtcp_feedback.iter().any(|fb| fb.typ == "nack" && fb.parameter.is_empty());
        if nack && !self.streams.iter().any(|s| s.ssrc == info.ssrc) {
            self.streams.push(Stream { ssrc: info.ssrc, rtx: info.ssrc_rtx, loss: LossTracker::default() });
        }
    }

    fn unbind_remote_stream(&mut self, info: &StreamInfo) {
        self.streams.retain(|s| s.ssrc != info.ssrc);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::interceptor::RTCPFeedback;
    use rtc::rtcp::transport_feedbacks::transport_layer_nack::NackPair;

    fn due(t: &mut LossTracker, max: u16) -> Vec<u16> {
        let mut out = Vec::new();
        t.take_due(max, &mut out);
        out
    }

    #[test]
    fn a_gap_is_asked_for_until_it_arrives_or_was_asked_enough() {
        let mut t = LossTracker::default();
        for seq in [10, 11, 14, 15] {
            t.received(seq);
        }
        assert_eq!(due(&mut t, 3), vec![12, 13]);
        t.received(13); // late
        assert_eq!(due(&mut t, 3), vec![12]);
        assert_eq!(due(&mut t, 3), vec![12]);
        assert!(!t.has_missing(), "asked three times: given up");
        assert_eq!(due(&mut t, 3), Vec::<u16>::new());
    }

    #[test]
    fn no_loss_costs_nothing_and_duplicates_change_nothing() {
        let mut t = LossTracker::default();
        for seq in 0..1000u16 {
            t.received(seq);
            t.received(seq);
        }
        assert!(!t.has_missing());
        t.received(500); // an old duplicate
        assert!(!t.has_missing());
    }

    #[test]
    fn sequence_numbers_wrap() {
        let mut t = LossTracker::default();
        for seq in [65_533, 65_534, 1, 2] {
            t.received(seq);
        }
        assert_eq!(due(&mut t, 3), vec![65_535, 0]);
        t.repaired(0);
        assert_eq!(due(&mut t, 3), vec![65_535]);
    }

    #[test]
    fn a_big_jump_is_a_new_start_and_the_list_is_bounded() {
        let mut t = LossTracker::default();
        t.received(1);
        t.received(4);
        t.received(4 + MAX_GAP + 1);
        assert!(!t.has_missing(), "a jump beyond what can be repaired asks for nothing");
        // many gaps of one: only the newest MAX_MISSING are kept
        let mut seq = 1000u16;
        for _ in 0..MAX_MISSING + 10 {
            t.received(seq);
            seq += 2;
        }
        let asked = due(&mut t, 3);
        assert_eq!(asked.len(), MAX_MISSING);
        assert_eq!(*asked.last().unwrap(), seq - 3);
    }

    fn video_stream(ssrc: u32, rtx: Option<u32>) -> StreamInfo {
        StreamInfo {
            ssrc,
            ssrc_rtx: rtx,
            rtcp_feedback: vec![RTCPFeedback { typ: "nack".into(), parameter: String::new() }],
            ..Default::default()
        }
    }

    fn rtp(now: Instant, ssrc: u32, seq: u16, payload: &[u8]) -> TaggedPacket {
        let header = rtc::rtp::header::Header { version: 2, ssrc, sequence_number: seq, ..Default::default() };
        TaggedPacket {
            now,
            transport: TransportContext::default(),
            message: AttributedPacket::new(Packet::Rtp(rtc::rtp::Packet {
                header,
                payload: bytes::Bytes::copy_from_slice(payload),
            })),
        }
    }

    fn nacks(i: &mut FeedbackInterceptor) -> Vec<(u32, Vec<NackPair>)> {
        let mut out = Vec::new();
        while let Some(msg) = i.poll_write() {
            let Packet::Rtcp(packets) = msg.message.packet else { panic!("not RTCP") };
            for p in packets {
                let nack = p.as_any().downcast_ref::<TransportLayerNack>().expect("a NACK");
                out.push((nack.media_ssrc, nack.nacks.clone()));
            }
        }
        out
    }

    #[test]
    fn the_interceptor_nacks_on_its_tick_only_while_packets_are_missing() {
        let t0 = Instant::now();
        let interval = Duration::from_millis(100);
        let mut i = FeedbackInterceptor::new(interval, 2);
        i.bind_remote_stream(&video_stream(7, Some(8)));
        i.bind_remote_stream(&StreamInfo { ssrc: 9, ..Default::default() }); // audio: no NACKs
        for seq in [1, 2, 3] {
            i.handle_read(rtp(t0, 7, seq, b"x")).unwrap();
        }
        for seq in [1, 5] {
            i.handle_read(rtp(t0, 9, seq, b"x")).unwrap();
        }
        while i.poll_read().is_some() {}
        assert_eq!(i.poll_timeout(), None, "nothing missing: no timer");

        i.handle_read(rtp(t0, 7, 6, b"x")).unwrap(); // 4 and 5 lost
        assert_eq!(i.poll_timeout(), Some(t0 + interval));
        i.handle_timeout(t0 + interval / 2).unwrap();
        assert!(nacks(&mut i).is_empty(), "not due yet");
        i.handle_timeout(t0 + interval).unwrap();
        assert_eq!(nacks(&mut i), vec![(7, vec![NackPair { packet_id: 4, lost_packets: 1 }])]);

        // 4 comes back as a retransmission on the RTX stream: only 5 is asked for again
        i.handle_read(rtp(t0, 8, 1, &[0, 4, 0xde, 0xad])).unwrap();
        i.handle_timeout(t0 + interval * 2).unwrap();
        assert_eq!(nacks(&mut i), vec![(7, vec![NackPair { packet_id: 5, lost_packets: 0 }])]);
        assert_eq!(i.poll_timeout(), None, "5 was asked for twice: given up, no timer");

        i.unbind_remote_stream(&video_stream(7, Some(8)));
        i.handle_read(rtp(t0, 7, 100, b"x")).unwrap();
        assert_eq!(i.poll_timeout(), None, "an unbound stream is not watched");
    }

    #[test]
    fn keyframe_requests_and_reports_are_marked_for_the_application() {
        let now = Instant::now();
        let mut i = FeedbackInterceptor::new(Duration::from_millis(100), 3);
        let rtcp = |packet: Box<dyn rtc::rtcp::Packet>| TaggedPacket {
            now,
            transport: TransportContext::default(),
            message: AttributedPacket::new(Packet::Rtcp(vec![packet])),
        };
        i.handle_read(rtcp(Box::new(PictureLossIndication { sender_ssrc: 1, media_ssrc: 2 }))).unwrap();
        i.handle_read(rtcp(Box::new(TransportLayerNack { sender_ssrc: 1, media_ssrc: 2, nacks: vec![] }))).unwrap();
        i.handle_read(rtp(now, 3, 1, b"x")).unwrap();
        let marked: Vec<bool> =
            std::iter::from_fn(|| i.poll_read()).map(|m| m.message.has(&Attribute::DeliverToApplication)).collect();
        assert_eq!(marked, vec![true, false, false]);
    }
}
