//! Generated inputs for the video channel's parsers of outside input: the SDP answer a page
//! sends and its trickled ICE candidates, fed to the SFU's engine (webrtc-rs underneath), which
//! must refuse what it cannot use and never panic (one task owns every peer connection of the
//! node: a panic there would end every call). Mutants start from a real answer so they get
//! past the first checks. A short run is part of the suite; the long run is `#[ignore]`d (see
//! `testenv::fuzz`). Signalling frames are fuzzed where they are parsed (`signal.rs`).

mod support;

use std::net::SocketAddr;
use std::time::Instant;

use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::transport::RTCIceCandidateInit;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use testenv::fuzz::{self, Gen};
use video::sfu::engine::{Engine, EngineSettings, RtcEngine};

fn settings() -> EngineSettings {
    let addr: SocketAddr = "127.0.0.1:3479".parse().unwrap();
    EngineSettings { candidate: addr, local: addr }
}

/// An engine with its offer made, and a real answer to that offer (as a browser makes it).
fn offered() -> (RtcEngine, String) {
    let now = Instant::now();
    let mut engine = RtcEngine::new(now, settings()).unwrap();
    let offer = engine.offer(now, false).unwrap();
    let mut pc = support::client_peer_connection();
    pc.set_remote_description(now, RTCSessionDescription::offer(offer).unwrap()).unwrap();
    let track = support::track(RtpCodecKind::Audio, "audio/opus", 48000, 2, 1234);
    pc.add_track(track).unwrap();
    let answer = pc.create_answer(None).unwrap();
    (engine, answer.sdp)
}

const SDP_PIECES: &[&str] = &[
    "v=0\r\n",
    "o=- 1 1 IN IP4 0.0.0.0\r\n",
    "s=-\r\n",
    "t=0 0\r\n",
    "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n",
    "m=video 9 UDP/TLS/RTP/SAVPF 96\r\n",
    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n",
    "c=IN IP4 0.0.0.0\r\n",
    "a=mid:0\r\n",
    "a=mid:",
    "a=sendrecv\r\n",
    "a=recvonly\r\n",
    "a=setup:active\r\n",
    "a=ice-ufrag:",
    "a=ice-pwd:",
    "a=fingerprint:sha-256 ",
    "a=rtpmap:111 opus/48000/2\r\n",
    "a=rtcp-mux\r\n",
    "a=group:BUNDLE 0 1 2\r\n",
    "a=ssrc:",
    "a=extmap:",
    "a=fmtp:96 ",
    "a=candidate:",
    "\r\n",
    "\n",
    ":",
    " ",
];

/// One answer to `engine`'s offer; a new engine (with a new offer) after an answer is taken,
/// since only a fresh offer takes an answer (making one costs a certificate, so the engine is
/// kept while answers are refused).
fn answers(g: &mut Gen, template: &str, engine: &mut RtcEngine) {
    let sdp = match g.below(4) {
        0 => g.from_pieces(SDP_PIECES, 30),
        _ => {
            let mut sdp = g.mutate(template);
            for _ in 0..g.below(3) {
                sdp = g.mutate(&sdp);
            }
            sdp
        }
    };
    // refused or taken: either is fine, a panic is not
    if engine.accept_answer(Instant::now(), sdp).is_ok() {
        engine.close();
        *engine = offered().0;
    }
}

const CANDIDATE_PIECES: &[&str] = &[
    "candidate:",
    "1",
    " ",
    "udp",
    "tcp",
    "2130706431",
    "127.0.0.1",
    "::1",
    "fe80::1%eth0",
    "3479",
    "typ",
    "host",
    "srflx",
    "relay",
    "raddr",
    "rport",
    "generation",
    "0",
    "ufrag",
    "tcptype",
    "passive",
    "network-id",
    "x.local",
];

fn candidates(g: &mut Gen, engine: &mut RtcEngine) {
    let candidate = if g.chance(70) {
        g.from_pieces(CANDIDATE_PIECES, 16)
    } else {
        g.mutate("candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host generation 0")
    };
    let init = RTCIceCandidateInit {
        candidate,
        sdp_mid: if g.chance(50) { Some(g.string(4)) } else { None },
        sdp_mline_index: if g.chance(50) { Some(g.pick(&[0u16, 1, 2, 9, u16::MAX])) } else { None },
        username_fragment: if g.chance(30) { Some(g.string(8)) } else { None },
        ..Default::default()
    };
    let _ = engine.add_remote_candidate(init);
}

fn run_all(sdp_inputs: u64, candidate_inputs: u64) {
    let (mut engine, template) = offered();
    let mut answered = offered().0;
    fuzz::run("sdp answers", sdp_inputs, |g, _| answers(g, &template, &mut answered));
    // candidates go to a peer whose real answer was taken
    engine.accept_answer(Instant::now(), template.clone()).unwrap();
    fuzz::run("ice candidates", candidate_inputs, |g, _| candidates(g, &mut engine));
}

#[test]
fn generated_sdp_answers_and_ice_candidates() {
    run_all(3_000, 5_000);
}

#[test]
#[ignore = "long run: FUZZ_INPUTS=<n> cargo test -p video --test fuzz -- --ignored --nocapture"]
fn long_run_sdp_answers_and_ice_candidates() {
    run_all(fuzz::inputs(20_000), fuzz::inputs(20_000) * 10);
}
