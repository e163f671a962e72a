//! The WebRTC engine behind a small trait: one peer connection, fed datagrams and timeouts,
//! polled for datagrams to send and for what happened. The SFU loop and its routing core know
//! only this trait, so the engine (webrtc-rs's sans-I/O `rtc` crate today) can be swapped or
//! upgraded in one file, and the loop can be driven by a fake in tests.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::BytesMut;
use rtc::data_channel::RTCDataChannelId;
use rtc::interceptor::{NackResponderBuilder, Registry, Slot};
use rtc::media_stream::{MediaStreamTrack, MediaStreamTrackId};
use rtc::peer_connection::RTCPeerConnection;
use rtc::peer_connection::RTCPeerConnectionBuilder;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::interceptor_registry::register_default_interceptors;
use rtc::peer_connection::configuration::media_engine::{
    MIME_TYPE_H264, MIME_TYPE_OPUS, MIME_TYPE_RTX, MIME_TYPE_VP8, MediaEngine,
};
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::event::{RTCDataChannelEvent, RTCPeerConnectionEvent, RTCTrackEvent};
use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::transport::{CandidateConfig, CandidateHostConfig, RTCIceCandidate, RTCIceCandidateInit};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::rtcp::sender_report::SenderReport;
use rtc::rtp;
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::rtp_transceiver::{RTCRtpSenderId, RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};

use super::nack::FeedbackInterceptor;
use super::router::{SEND_SLOTS, Source};

/// What can go wrong inside the engine; the message is for the participant (`bad_sdp`, ...).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("the session description was refused: {0}")]
    BadSdp(String),
    #[error("the ICE candidate was refused: {0}")]
    BadCandidate(String),
    #[error("the peer connection failed: {0}")]
    Internal(String),
}

/// What a peer connection reports.
#[derive(Debug)]
pub enum EngineEvent {
    /// DTLS is up: media can flow.
    Connected,
    /// ICE or DTLS failed, or the connection closed.
    Disconnected,
    /// An RTP packet this participant published on one of its sources.
    Media { source: Source, packet: rtp::Packet },
    /// The participant asked for a keyframe of what it receives on a send slot (PLI or FIR).
    KeyframeRequest { slot: usize },
    /// The data channel is open.
    DataOpen,
    /// A text message on the data channel.
    Data(String),
    /// An RTCP sender report of what this participant publishes on `source`: its clock (NTP)
    /// for an RTP timestamp (recordings align the streams with it).
    SenderReport { source: Source, ssrc: u32, ntp: u64, rtp: u32 },
}

/// What a peer connection tells about its link.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LinkStats {
    /// Round-trip time from the participant's latest receiver report about what the SFU sends
    /// it (RFC 3550, 6.4.1: arrival - LSR - DLSR), ms.
    pub rtt_ms: Option<f64>,
}

/// The middle 32 bits of the NTP time of now (what RTCP's LSR holds), from the wall clock as
/// the crate's sender reports stamp it.
fn ntp_middle_now() -> u32 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs() + 2_208_988_800;
    let frac = (u64::from(since.subsec_nanos()) << 32) / 1_000_000_000;
    (((secs << 32) | frac) >> 16) as u32
}

/// The round trip a report block gives (ms), if it refers to a sender report of ours.
pub fn rtt_from_report(now_middle: u32, lsr: u32, dlsr: u32) -> Option<f64> {
    if lsr == 0 {
        return None;
    }
    let rtt = now_middle.wrapping_sub(lsr).wrapping_sub(dlsr);
    // more than a minute is a report about something else (or a clock step)
    (rtt < 60 * 65_536).then(|| f64::from(rtt) * 1000.0 / 65_536.0)
}

/// One peer connection of the SFU: the server side of one participant.
pub trait Engine: Send {
    /// The local ICE username fragment of the latest offer: how the demultiplexer recognises
    /// this peer's STUN.
    fn ice_ufrag(&self) -> &str;
    /// A fresh offer (the whole call: see docs/video.md), with an ICE restart when `restart`.
    fn offer(&mut self, now: Instant, restart: bool) -> Result<String, EngineError>;
    fn accept_answer(&mut self, now: Instant, sdp: String) -> Result<(), EngineError>;
    fn add_remote_candidate(&mut self, candidate: RTCIceCandidateInit) -> Result<(), EngineError>;
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]);
    fn handle_timeout(&mut self, now: Instant);
    fn poll_timeout(&mut self) -> Option<Instant>;
    fn poll_transmit(&mut self) -> Option<(SocketAddr, BytesMut)>;
    fn poll_event(&mut self) -> Option<EngineEvent>;
    /// Forwards a packet on send slot `slot` (0..SEND_SLOTS), rewriting its SSRC.
    fn send_media(&mut self, now: Instant, slot: usize, packet: rtp::Packet);
    /// Asks this participant for a keyframe of `source`.
    fn request_keyframe(&mut self, now: Instant, source: Source);
    fn send_data(&mut self, now: Instant, text: &str);
    /// The link's statistics (round-trip time); called every few seconds.
    fn link_stats(&mut self, _now: Instant) -> LinkStats {
        LinkStats::default()
    }
    fn close(&mut self);
}

/// Settings shared by every peer of one SFU.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// The address of the host candidate (the public address of the SFU's UDP port).
    pub candidate: SocketAddr,
    /// The address the socket is bound to (what datagrams are tagged with).
    pub local: SocketAddr,
}

/// [`Engine`] on webrtc-rs's sans-I/O `rtc` crate.
pub struct RtcEngine {
    pc: RTCPeerConnection,
    settings: EngineSettings,
    ufrag: String,
    /// Track ids of the receivers on mids 0, 1, 2, learnt from `OnTrack`.
    receivers: Vec<(MediaStreamTrackId, Source, u32)>,
    /// The senders of the send slots, with their track ids and SSRCs.
    senders: Vec<(RTCRtpSenderId, MediaStreamTrackId, u32)>,
    data_channel: Option<RTCDataChannelId>,
    pending: std::collections::VecDeque<EngineEvent>,
    connected: bool,
    /// The latest round trip from a receiver report, ms.
    rtt_ms: Option<f64>,
}

fn internal(e: impl std::fmt::Display) -> EngineError {
    EngineError::Internal(e.to_string())
}

fn media_engine() -> Result<MediaEngine, EngineError> {
    let mut media = MediaEngine::default();
    let feedback = |typ: &str, parameter: &str| RTCPFeedback { typ: typ.into(), parameter: parameter.into() };
    let video_feedback = vec![
        feedback("goog-remb", ""),
        feedback("transport-cc", ""),
        feedback("ccm", "fir"),
        feedback("nack", ""),
        feedback("nack", "pli"),
    ];
    let codec =
        |mime: &str, clock_rate: u32, channels: u16, fmtp: &str, fb: Vec<RTCPFeedback>, pt: u8| RTCRtpCodecParameters {
            rtp_codec: RTCRtpCodec {
                mime_type: mime.into(),
                clock_rate,
                channels,
                sdp_fmtp_line: fmtp.into(),
                rtcp_feedback: fb,
            },
            payload_type: pt,
        };
    media
        .register_codec(
            codec(MIME_TYPE_OPUS, 48000, 2, "minptime=10;useinbandfec=1", vec![feedback("transport-cc", "")], 111),
            RtpCodecKind::Audio,
        )
        .map_err(internal)?;
    for c in [
        codec(MIME_TYPE_VP8, 90000, 0, "", video_feedback.clone(), 96),
        codec(MIME_TYPE_RTX, 90000, 0, "apt=96", vec![], 97),
        codec(
            MIME_TYPE_H264,
            90000,
            0,
            "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
            video_feedback,
            102,
        ),
        codec(MIME_TYPE_RTX, 90000, 0, "apt=102", vec![], 103),
    ] {
        media.register_codec(c, RtpCodecKind::Video).map_err(internal)?;
    }
    Ok(media)
}

impl RtcEngine {
    /// A peer connection with the whole call's transceivers: three to receive (microphone,
    /// camera, screen) and [`SEND_SLOTS`] to send, plus the data channel.
    pub fn new(now: Instant, settings: EngineSettings) -> Result<Self, EngineError> {
        // no fixed ICE credentials: an ICE restart must change them (the crate reuses fixed
        // ones, and the browser would not restart); the ufrag is read from each offer
        let setting_engine = SettingEngineBuilder::new()
            .with_lite(true)
            .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
            .build();
        let mut media = media_engine()?;
        // the chain ends inbound RTCP before the application unless a packet is marked, and the
        // crate's NACK generator re-asks for a lost packet every 100 ms without end: both are
        // replaced by one interceptor of ours (sfu/nack.rs) that marks the RTCP the SFU acts on
        // (keyframe requests, reports) and asks for a lost packet at most 3 times; 256 packets
        // of send history per stream (about a second of video) instead of 1,024
        let registry = register_default_interceptors(Registry::new(), &mut media)
            .map_err(internal)?
            .with(Slot::NackGenerator, FeedbackInterceptor::new(NACK_INTERVAL, MAX_NACKS_PER_PACKET))
            .with(Slot::NackResponder, NackResponderBuilder::new().with_size(NACK_HISTORY).build());
        let mut pc = RTCPeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_setting_engine(setting_engine)
            .with_media_engine(media)
            .with_interceptor_registry(registry)
            .build(now)
            .map_err(internal)?;
        for kind in [RtpCodecKind::Audio, RtpCodecKind::Video, RtpCodecKind::Video] {
            let init = RTCRtpTransceiverInit { direction: RTCRtpTransceiverDirection::Recvonly, ..Default::default() };
            pc.add_transceiver_from_kind(kind, Some(init)).map_err(internal)?;
        }
        let mut senders = Vec::with_capacity(SEND_SLOTS);
        for slot in 0..SEND_SLOTS {
            let source = Source::ALL[slot % 3];
            let (kind, codec) = match source {
                Source::Audio => (
                    RtpCodecKind::Audio,
                    RTCRtpCodec {
                        mime_type: MIME_TYPE_OPUS.into(),
                        clock_rate: 48000,
                        channels: 2,
                        sdp_fmtp_line: "minptime=10;useinbandfec=1".into(),
                        rtcp_feedback: vec![],
                    },
                ),
                // no codec pinned: the offer carries every registered video codec (VP8, H.264)
                // and a slot forwards whichever its publisher sends, if the subscriber took it
                _ => (RtpCodecKind::Video, RTCRtpCodec::default()),
            };
            let ssrc = rand::random::<u32>();
            let stream = format!("slot{}", slot / 3);
            let track_id: MediaStreamTrackId = format!("slot{slot}-{}", source.as_str());
            let track = MediaStreamTrack::new(
                stream,
                track_id.clone(),
                format!("slot {slot}"),
                kind,
                vec![RTCRtpEncodingParameters {
                    rtp_coding_parameters: RTCRtpCodingParameters { ssrc: Some(ssrc), ..Default::default() },
                    codec,
                    ..Default::default()
                }],
            );
            let init = RTCRtpTransceiverInit { direction: RTCRtpTransceiverDirection::Sendonly, ..Default::default() };
            let transceiver = pc.add_transceiver_from_track(track, Some(init)).map_err(internal)?;
            let sender = pc
                .rtp_transceiver(transceiver)
                .and_then(|t| t.sender())
                .ok_or_else(|| internal("a send transceiver without a sender"))?;
            senders.push((sender, track_id, ssrc));
        }
        let data_channel = pc.create_data_channel("switchboard", None).map_err(internal)?.id();
        let candidate = CandidateHostConfig {
            base_config: CandidateConfig {
                network: "udp".to_owned(),
                address: settings.candidate.ip().to_string(),
                port: settings.candidate.port(),
                component: 1,
                ..Default::default()
            },
            ..Default::default()
        }
        .new_candidate_host()
        .map_err(internal)?;
        pc.add_local_candidate(RTCIceCandidate::from(&candidate).to_json().map_err(internal)?).map_err(internal)?;
        pc.add_local_candidate(RTCIceCandidateInit::default()).map_err(internal)?;
        Ok(RtcEngine {
            pc,
            settings,
            ufrag: String::new(),
            receivers: Vec::new(),
            senders,
            data_channel: Some(data_channel),
            pending: Default::default(),
            connected: false,
            rtt_ms: None,
        })
    }

    fn source_of_receiver(&mut self, receiver_id: rtc::rtp_transceiver::RTCRtpReceiverId) -> Option<Source> {
        let transceivers: Vec<_> = self.pc.get_transceivers().collect();
        for id in transceivers {
            let t = self.pc.rtp_transceiver(id)?;
            if t.receiver() == Some(receiver_id) {
                return match t.mid().as_deref() {
                    Some("0") => Some(Source::Audio),
                    Some("1") => Some(Source::Camera),
                    Some("2") => Some(Source::Screen),
                    _ => None,
                };
            }
        }
        None
    }

    /// Takes what the peer connection has for the application. `pumped`: the pipeline has just
    /// been run by `handle_read`, so every message it produced already waits at its end and is
    /// taken without running the pipeline again (`poll_read` runs all its handlers on every
    /// call, the last one finding nothing); data-channel messages are the exception, as taking
    /// them lets SCTP release more.
    fn drain_engine(&mut self, pumped: bool) {
        while let Some(event) = self.pc.poll_event() {
            match event {
                RTCPeerConnectionEvent::OnConnectionStateChangeEvent(state) => match state {
                    RTCPeerConnectionState::Connected if !self.connected => {
                        self.connected = true;
                        self.pending.push_back(EngineEvent::Connected);
                    }
                    RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed if self.connected => {
                        self.connected = false;
                        self.pending.push_back(EngineEvent::Disconnected);
                    }
                    _ => {}
                },
                RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnOpen(init)) => {
                    let source = self.source_of_receiver(init.receiver_id);
                    tracing::debug!(track = %init.track_id, ssrc = init.ssrc, ?source, "track opened");
                    if let Some(source) = source {
                        self.receivers.retain(|(track, ..)| *track != init.track_id);
                        self.receivers.push((init.track_id, source, init.ssrc));
                    }
                }
                RTCPeerConnectionEvent::OnDataChannel(RTCDataChannelEvent::OnOpen(id)) => {
                    self.data_channel = Some(id);
                    self.pending.push_back(EngineEvent::DataOpen);
                }
                _ => {}
            }
        }
        if pumped {
            while let Some(TaggedRTCMessage { message, .. }) = self.pc.poll_media_read() {
                self.read(message);
            }
            if self.pc.poll_data_read().map(|TaggedRTCMessage { message, .. }| self.read(message)).is_none() {
                return;
            }
        }
        while let Some(TaggedRTCMessage { message, .. }) = self.pc.poll_read() {
            self.read(message);
        }
    }

    /// One message of the peer connection for the application.
    fn read(&mut self, message: RTCMessage) {
        match message {
            RTCMessage::RtpPacket(track_id, packet) => {
                if let Some((_, source, ssrc)) = self.receivers.iter_mut().find(|(t, ..)| *t == track_id) {
                    *ssrc = packet.header.ssrc;
                    self.pending.push_back(EngineEvent::Media { source: *source, packet });
                } else {
                    tracing::debug!(track = %track_id, ssrc = packet.header.ssrc, "RTP on a track not opened");
                }
            }
            // A compound packet is tagged with the track of its first packet's first
            // destination (often a report block about another stream), so each PLI and
            // FIR is matched to a send slot by its own media SSRC.
            RTCMessage::RtcpPacket(_, packets) => {
                for packet in &packets {
                    let any = packet.as_any();
                    if let Some(rr) = any.downcast_ref::<ReceiverReport>() {
                        let now = ntp_middle_now();
                        let rtts: Vec<f64> = rr
                            .reports
                            .iter()
                            .filter(|r| self.senders.iter().any(|(_, _, ssrc)| *ssrc == r.ssrc))
                            .filter_map(|r| rtt_from_report(now, r.last_sender_report, r.delay))
                            .collect();
                        if !rtts.is_empty() {
                            self.rtt_ms = Some(rtts.iter().sum::<f64>() / rtts.len() as f64);
                        }
                        continue;
                    }
                    if let Some(sr) = any.downcast_ref::<SenderReport>() {
                        if let Some((_, source, _)) = self.receivers.iter().find(|(_, _, ssrc)| *ssrc == sr.ssrc) {
                            self.pending.push_back(EngineEvent::SenderReport {
                                source: *source,
                                ssrc: sr.ssrc,
                                ntp: sr.ntp_time,
                                rtp: sr.rtp_time,
                            });
                        }
                        continue;
                    }
                    let mut ssrcs = Vec::new();
                    if let Some(pli) = any.downcast_ref::<PictureLossIndication>() {
                        ssrcs.push(pli.media_ssrc);
                    } else if let Some(fir) = any.downcast_ref::<FullIntraRequest>() {
                        ssrcs.extend(fir.fir.iter().map(|entry| entry.ssrc));
                    }
                    for ssrc in ssrcs {
                        if let Some(slot) = self.senders.iter().position(|(_, _, s)| *s == ssrc) {
                            self.pending.push_back(EngineEvent::KeyframeRequest { slot });
                        }
                    }
                }
            }
            RTCMessage::DataChannelMessage(_, message) => {
                if let Ok(text) = std::str::from_utf8(&message.data) {
                    self.pending.push_back(EngineEvent::Data(text.to_owned()));
                }
            }
            _ => {}
        }
    }
}

impl Engine for RtcEngine {
    fn ice_ufrag(&self) -> &str {
        &self.ufrag
    }

    fn offer(&mut self, now: Instant, restart: bool) -> Result<String, EngineError> {
        if restart {
            self.pc.restart_ice();
        }
        let offer = self.pc.create_offer(None).map_err(internal)?;
        self.pc.set_local_description(now, offer).map_err(internal)?;
        let local = self.pc.local_description().ok_or_else(|| internal("no local description"))?;
        self.ufrag = local
            .sdp
            .lines()
            .find_map(|l| l.trim().strip_prefix("a=ice-ufrag:"))
            .map(str::to_owned)
            .ok_or_else(|| internal("the offer has no ICE ufrag"))?;
        self.drain_engine(false);
        Ok(local.sdp)
    }

    fn accept_answer(&mut self, now: Instant, sdp: String) -> Result<(), EngineError> {
        let answer = RTCSessionDescription::answer(sdp).map_err(|e| EngineError::BadSdp(e.to_string()))?;
        self.pc.set_remote_description(now, answer).map_err(|e| EngineError::BadSdp(e.to_string()))?;
        self.drain_engine(false);
        Ok(())
    }

    fn add_remote_candidate(&mut self, candidate: RTCIceCandidateInit) -> Result<(), EngineError> {
        if candidate.candidate.is_empty() {
            return Ok(()); // end of candidates: nothing to do for an ICE-lite agent
        }
        self.pc.add_remote_candidate(candidate).map_err(|e| EngineError::BadCandidate(e.to_string()))
    }

    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        let packet = TaggedBytesMut {
            now,
            transport: TransportContext {
                local_addr: self.settings.local,
                peer_addr: from,
                ecn: None,
                transport_protocol: TransportProtocol::UDP,
            },
            message: BytesMut::from(data),
        };
        if let Err(e) = self.pc.handle_read(packet) {
            tracing::debug!(error = %e, %from, "a datagram was refused by the peer connection");
        }
        self.drain_engine(true);
    }

    fn handle_timeout(&mut self, now: Instant) {
        if let Err(e) = self.pc.handle_timeout(now) {
            tracing::debug!(error = %e, "peer connection timeout handling failed");
        }
        self.drain_engine(false);
    }

    fn poll_timeout(&mut self) -> Option<Instant> {
        self.pc.poll_timeout()
    }

    fn poll_transmit(&mut self) -> Option<(SocketAddr, BytesMut)> {
        self.pc.poll_write().map(|m| (m.transport.peer_addr, m.message))
    }

    fn poll_event(&mut self) -> Option<EngineEvent> {
        self.pending.pop_front()
    }

    fn send_media(&mut self, now: Instant, slot: usize, mut packet: rtp::Packet) {
        let Some(&(sender_id, _, ssrc)) = self.senders.get(slot) else { return };
        packet.header.ssrc = ssrc;
        // the publisher's extension ids (mid above all) mean nothing on this connection
        packet.header.extension = false;
        packet.header.extensions.clear();
        packet.header.extension_profile = 0;
        if let Some(mut sender) = self.pc.rtp_sender(sender_id)
            && let Err(e) = sender.write_rtp(now, packet)
        {
            tracing::trace!(error = %e, slot, "forwarding refused by the sender");
        }
    }

    fn request_keyframe(&mut self, now: Instant, source: Source) {
        let Some(&(ref track_id, _, media_ssrc)) = self.receivers.iter().find(|(_, s, _)| *s == source) else { return };
        let track_id = track_id.clone();
        let receivers: Vec<_> = self.pc.get_receivers().collect();
        for id in receivers {
            if let Some(mut receiver) = self.pc.rtp_receiver(id)
                && *receiver.track().track_id() == track_id
            {
                let pli = PictureLossIndication { sender_ssrc: 0, media_ssrc };
                if let Err(e) = receiver.write_rtcp(now, vec![Box::new(pli)]) {
                    tracing::debug!(error = %e, "cannot send a keyframe request");
                }
                return;
            }
        }
    }

    fn send_data(&mut self, now: Instant, text: &str) {
        let Some(id) = self.data_channel else { return };
        if let Some(mut channel) = self.pc.data_channel(id)
            && let Err(e) = channel.send_text(now, text)
        {
            tracing::debug!(error = %e, "cannot send on the data channel");
        }
    }

    fn link_stats(&mut self, _now: Instant) -> LinkStats {
        LinkStats { rtt_ms: self.rtt_ms }
    }

    fn close(&mut self) {
        let _ = self.pc.close();
    }
}

/// How many times a lost packet is asked for again.
const MAX_NACKS_PER_PACKET: u16 = 3;
/// How often lost packets are asked for, while some are missing.
const NACK_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);
/// Packets of send history per stream for answering NACKs (a power of two).
const NACK_HISTORY: u16 = 256;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_receiver_report_gives_the_round_trip() {
        // our report left at LSR; the receiver held it 0.5 s; it came back 0.54 s after it left
        let lsr = 0x1234_0000u32;
        let now = lsr + (0.54 * 65_536.0) as u32;
        let dlsr = (0.5 * 65_536.0) as u32;
        let rtt = rtt_from_report(now, lsr, dlsr).unwrap();
        assert!((rtt - 40.0).abs() < 0.1, "{rtt}");
        assert_eq!(rtt_from_report(now, 0, dlsr), None, "no sender report received yet");
        assert_eq!(rtt_from_report(lsr, now, 0), None, "a report from the future");
        let middle = ntp_middle_now();
        assert!(rtt_from_report(middle, middle.wrapping_sub(655), 0).unwrap() < 11.0);
    }
}
