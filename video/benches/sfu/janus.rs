//! The Janus side of the SFU benchmark: Debian's `janus` started from `bench/janus/run.sh`
//! (VideoRoom plugin, HTTP transport) inside a network namespace the benchmark creates
//! ([`Netns`]: Janus refuses loopback candidates, and the load may go only to loopback or to
//! such a namespace), and participants built on webrtc-rs's `rtc` crate, like `TestPeer`, that
//! publish and subscribe through the VideoRoom API from the host's end of the veth pair.
//!
//! A participant has two peer connections, as Janus's VideoRoom wants: a publisher (it offers
//! in `publish`, Janus answers) and one multistream subscriber for every other publisher of the
//! room (Janus offers in `attached` after a subscriber `join`, the participant answers with
//! `start`). The media is the same as `TestPeer`'s: VP8 packets of 1,100 bytes and Opus packets
//! of 160 bytes, the send time in their first 8 bytes.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use bytes::{Bytes, BytesMut};
use rtc::peer_connection::RTCPeerConnection;
use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_OPUS, MIME_TYPE_VP8};
use rtc::peer_connection::event::RTCPeerConnectionEvent;
use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::rtp;
use rtc::rtp_transceiver::RTCRtpSenderId;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use serde_json::{Value, json};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use crate::support::{client_peer_connection, host_candidate, track};

/// A network namespace of this run, joined to the host by a veth pair (`198.18.<n>.1` on the
/// host's end, `198.18.<n>.2` in the namespace: RFC 2544's benchmarking range, routed nowhere);
/// deleted, with the pair, when dropped. A run killed before that leaves it:
/// `ip netns del sfu-bench-<pid>`.
pub struct Netns {
    pub name: String,
    /// The host's end of the pair: the participants bind to it.
    pub host_ip: std::net::IpAddr,
    /// The namespace's end: Janus's HTTP API and media.
    pub ns_ip: std::net::IpAddr,
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = std::process::Command::new("ip").args(args).output().context("running ip (iproute2)")?;
    if !out.status.success() {
        bail!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

impl Netns {
    /// Creates the namespace and its veth pair (needs root: CAP_NET_ADMIN and CAP_SYS_ADMIN).
    pub fn create() -> anyhow::Result<Netns> {
        let pid = std::process::id();
        let name = format!("sfu-bench-{pid}");
        let n = pid % 250 + 1;
        // interface names are at most 15 characters
        let (host_if, ns_if) = (format!("sbh{pid}"), format!("sbn{pid}"));
        let (host_ip, ns_ip) = (format!("198.18.{n}.1"), format!("198.18.{n}.2"));
        ip(&["netns", "add", &name])?;
        let netns = Netns { name: name.clone(), host_ip: host_ip.parse()?, ns_ip: ns_ip.parse()? };
        // from here on, dropping `netns` removes what was made
        ip(&["link", "add", &host_if, "type", "veth", "peer", "name", &ns_if, "netns", &name])?;
        ip(&["addr", "add", &format!("{host_ip}/30"), "dev", &host_if])?;
        ip(&["link", "set", &host_if, "up"])?;
        ip(&["-n", &name, "addr", "add", &format!("{ns_ip}/30"), "dev", &ns_if])?;
        ip(&["-n", &name, "link", "set", &ns_if, "up"])?;
        ip(&["-n", &name, "link", "set", "lo", "up"])?;
        Ok(netns)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // deleting the namespace deletes its end of the pair, and so the pair
        if let Err(e) = ip(&["netns", "del", &self.name]) {
            eprintln!("could not delete network namespace {}: {e:#}", self.name);
        }
    }
}

/// A Janus process started for one scenario; killed when dropped.
pub struct Janus {
    child: tokio::process::Child,
    pub pid: u32,
    pub api: String,
    pub log: PathBuf,
    /// The one address Janus gathers ICE candidates on (in `netns`).
    pub media_ip: std::net::IpAddr,
}

impl Janus {
    /// Starts Janus through `bench/janus/run.sh` inside `netns` and waits until its HTTP API
    /// answers.
    pub async fn start(netns: &Netns, http_port: u16, rtp_ports: &str) -> anyhow::Result<Janus> {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../bench/janus/run.sh");
        let dir = std::env::temp_dir().join(format!("sfu-bench-janus-{}-{http_port}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let log = dir.join("janus.log");
        let out = std::fs::File::create(&log)?;
        // `ip netns exec` and the script both exec: the child's pid is Janus's
        let child = tokio::process::Command::new("ip")
            .args(["netns", "exec", &netns.name, "bash", script])
            .arg(&dir)
            .arg(http_port.to_string())
            .arg(rtp_ports)
            .arg("0")
            .arg(netns.ns_ip.to_string())
            .arg(netns.ns_ip.to_string())
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .kill_on_drop(true)
            .spawn()
            .context("starting bench/janus/run.sh")?;
        let pid = child.id().ok_or_else(|| anyhow!("janus exited at once"))?;
        let api = format!("http://{}:{http_port}/janus", netns.ns_ip);
        let media_ip = netns.ns_ip;
        let mut janus = Janus { child, pid, api, log, media_ip };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = janus.child.try_wait() {
                bail!("janus exited ({status}); see {}", janus.log.display());
            }
            if Session::create(&janus.api).await.is_ok() {
                let ip = std::fs::read_to_string(dir.join("media_ip"))?;
                janus.media_ip = ip.trim().parse().with_context(|| format!("media_ip {ip:?}"))?;
                return Ok(janus);
            }
            if Instant::now() > deadline {
                bail!("janus's API did not answer within 20 s; see {}", janus.log.display());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// One Janus session over the HTTP transport (long-polled events).
pub struct Session {
    http: reqwest::Client,
    url: String,
    pending: Vec<Value>,
}

fn transaction() -> String {
    format!("{:016x}", rand::random::<u64>())
}

async fn post(http: &reqwest::Client, url: &str, mut body: Value) -> anyhow::Result<Value> {
    body["transaction"] = json!(transaction());
    let reply: Value = http.post(url).json(&body).send().await?.error_for_status()?.json().await?;
    if reply["janus"] == "error" {
        bail!("janus refused {body}: {reply}");
    }
    Ok(reply)
}

impl Session {
    pub async fn create(api: &str) -> anyhow::Result<Session> {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build()?;
        let reply = post(&http, api, json!({"janus": "create"})).await?;
        let id = reply["data"]["id"].as_u64().ok_or_else(|| anyhow!("no session id: {reply}"))?;
        Ok(Session { http, url: format!("{api}/{id}"), pending: Vec::new() })
    }

    pub async fn attach(&self) -> anyhow::Result<u64> {
        let reply = post(&self.http, &self.url, json!({"janus": "attach", "plugin": "janus.plugin.videoroom"})).await?;
        reply["data"]["id"].as_u64().ok_or_else(|| anyhow!("no handle id: {reply}"))
    }

    /// Sends a plugin message; returns Janus's immediate reply (`success` with the plugin's
    /// data for synchronous requests, `ack` for the others).
    pub async fn message(&self, handle: u64, body: Value, jsep: Option<Value>) -> anyhow::Result<Value> {
        let mut message = json!({"janus": "message", "body": body});
        if let Some(jsep) = jsep {
            message["jsep"] = jsep;
        }
        let reply = post(&self.http, &format!("{}/{handle}", self.url), message).await?;
        if let Some(error) = reply["plugindata"]["data"].get("error") {
            bail!("videoroom error: {error}");
        }
        Ok(reply)
    }

    /// The next event of `handle` for which `want` holds (others are kept); fails after 20 s or
    /// on a VideoRoom error.
    pub async fn event(&mut self, handle: u64, want: impl Fn(&Value) -> bool) -> anyhow::Result<Value> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(i) = self.pending.iter().position(|e| e["sender"] == handle && want(e)) {
                return Ok(self.pending.remove(i));
            }
            if let Some(e) =
                self.pending.iter().find(|e| e["sender"] == handle && e["plugindata"]["data"]["error"].is_string())
            {
                bail!("videoroom error: {e}");
            }
            if Instant::now() > deadline {
                bail!("no such event within 20 s; saw {:?}", self.pending);
            }
            let got: Value = self.http.get(format!("{}?maxev=10", self.url)).send().await?.json().await?;
            match got {
                Value::Array(events) => self.pending.extend(events.into_iter().filter(|e| e["janus"] != "keepalive")),
                e if e["janus"] != "keepalive" => self.pending.push(e),
                _ => {}
            }
            self.pending.retain(|e| e["janus"] != "media" && e["janus"] != "webrtcup" && e["janus"] != "slowlink");
        }
    }
}

/// What one participant's connections did.
#[derive(Default)]
pub struct Stats {
    pub publisher_connected: AtomicBool,
    pub subscriber_connected: AtomicBool,
    pub rtp_received: AtomicU64,
    pub latencies_us: std::sync::Mutex<Vec<u64>>,
}

static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

fn micros_since_epoch() -> u64 {
    EPOCH.get_or_init(Instant::now).elapsed().as_micros() as u64
}

/// A participant of a Janus room: publisher and subscriber connections and their tasks.
pub struct Participant {
    session: Session,
    pub feed: u64,
    pub stats: Arc<Stats>,
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Creates VideoRoom room `room` for `publishers` publishers (VP8 and Opus).
pub async fn create_room(api: &str, room: u64, publishers: usize) -> anyhow::Result<()> {
    let session = Session::create(api).await?;
    let handle = session.attach().await?;
    let reply = session
        .message(
            handle,
            json!({"request": "create", "room": room, "publishers": publishers, "audiocodec": "opus",
                   "videocodec": "vp8", "bitrate": 0, "notify_joining": false, "is_private": false}),
            None,
        )
        .await?;
    if reply["plugindata"]["data"]["videoroom"] != "created" {
        bail!("room not created: {reply}");
    }
    Ok(())
}

/// Adds the host candidate of `socket` and ends gathering, so the local description is complete.
fn add_host_candidate(pc: &mut RTCPeerConnection, socket: &UdpSocket) -> anyhow::Result<()> {
    pc.add_local_candidate(host_candidate(socket.local_addr()?))?;
    pc.add_local_candidate(rtc::peer_connection::transport::RTCIceCandidateInit::default())?;
    Ok(())
}

/// What a connection publishes.
struct Sending {
    audio: RTCRtpSenderId,
    video: RTCRtpSenderId,
    audio_ssrc: u32,
    video_ssrc: u32,
    video_pps: u32,
    audio_pps: u32,
}

impl Participant {
    /// Joins `room` as a publisher and starts publishing (`video_pps`, `audio_pps`).
    pub async fn publish(
        api: &str,
        ip: std::net::IpAddr,
        room: u64,
        name: &str,
        video_pps: u32,
        audio_pps: u32,
    ) -> anyhow::Result<Participant> {
        let mut session = Session::create(api).await?;
        let handle = session.attach().await?;
        session
            .message(handle, json!({"request": "join", "ptype": "publisher", "room": room, "display": name}), None)
            .await?;
        let joined = session.event(handle, |e| e["plugindata"]["data"]["videoroom"] == "joined").await?;
        let feed = joined["plugindata"]["data"]["id"].as_u64().ok_or_else(|| anyhow!("no feed id: {joined}"))?;

        let socket = UdpSocket::bind((ip, 0)).await?;
        let mut pc = client_peer_connection();
        let (audio_ssrc, video_ssrc) = (rand::random::<u32>(), rand::random::<u32>());
        let audio = pc.add_track(track(RtpCodecKind::Audio, MIME_TYPE_OPUS, 48000, 2, audio_ssrc))?;
        let video = pc.add_track(track(RtpCodecKind::Video, MIME_TYPE_VP8, 90000, 0, video_ssrc))?;
        let offer = pc.create_offer(None)?;
        pc.set_local_description(Instant::now(), offer)?;
        add_host_candidate(&mut pc, &socket)?;
        let sdp = pc.local_description().ok_or_else(|| anyhow!("no local offer"))?.sdp;
        session
            .message(
                handle,
                json!({"request": "publish", "audio": true, "video": true}),
                Some(json!({"type": "offer", "sdp": sdp, "trickle": false})),
            )
            .await?;
        let configured = session.event(handle, |e| e["jsep"]["type"] == "answer").await?;
        let answer = configured["jsep"]["sdp"].as_str().ok_or_else(|| anyhow!("no answer sdp"))?.to_owned();
        if std::env::var_os("SFU_BENCH_DEBUG").is_some() {
            eprintln!("--- publisher offer\n{sdp}\n--- Janus's answer\n{answer}");
        }
        pc.set_remote_description(Instant::now(), RTCSessionDescription::answer(answer)?)?;

        let stats = Arc::new(Stats::default());
        let stop = CancellationToken::new();
        let sending = Sending { audio, video, audio_ssrc, video_ssrc, video_pps, audio_pps };
        let task = tokio::spawn(media_loop(pc, socket, Some(sending), stats.clone(), true, stop.clone()));
        Ok(Participant { session, feed, stats, stop, tasks: vec![task] })
    }

    /// Subscribes (one multistream connection) to `feeds` of `room`.
    pub async fn subscribe(&mut self, ip: std::net::IpAddr, room: u64, feeds: &[u64]) -> anyhow::Result<()> {
        let handle = self.session.attach().await?;
        let streams: Vec<Value> = feeds.iter().map(|f| json!({"feed": f})).collect();
        self.session
            .message(handle, json!({"request": "join", "ptype": "subscriber", "room": room, "streams": streams}), None)
            .await?;
        let attached = self.session.event(handle, |e| e["jsep"]["type"] == "offer").await?;
        let offer = attached["jsep"]["sdp"].as_str().ok_or_else(|| anyhow!("no offer sdp"))?.to_owned();
        let socket = UdpSocket::bind((ip, 0)).await?;
        let mut pc = client_peer_connection();
        pc.set_remote_description(Instant::now(), RTCSessionDescription::offer(offer)?)?;
        let answer = pc.create_answer(None)?;
        pc.set_local_description(Instant::now(), answer)?;
        add_host_candidate(&mut pc, &socket)?;
        let sdp = pc.local_description().ok_or_else(|| anyhow!("no local answer"))?.sdp;
        self.session
            .message(handle, json!({"request": "start"}), Some(json!({"type": "answer", "sdp": sdp, "trickle": false})))
            .await?;
        self.tasks.push(tokio::spawn(media_loop(pc, socket, None, self.stats.clone(), false, self.stop.clone())));
        Ok(())
    }

    pub async fn stop(self) {
        self.stop.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

async fn media_loop(
    mut pc: RTCPeerConnection,
    socket: UdpSocket,
    sending: Option<Sending>,
    stats: Arc<Stats>,
    publisher: bool,
    stop: CancellationToken,
) {
    let local = socket.local_addr().unwrap();
    let mut buf = vec![0u8; 2048];
    let every = |pps: u32| tokio::time::interval(Duration::from_secs_f64(1.0 / pps.max(1) as f64));
    let mut video_tick = every(sending.as_ref().map_or(1, |s| s.video_pps));
    let mut audio_tick = every(sending.as_ref().map_or(1, |s| s.audio_pps));
    let sends = sending.is_some();
    let (mut vseq, mut aseq, mut vts, mut ats) = (0u16, 0u16, 0u32, 0u32);
    let mut connected = false;
    loop {
        while let Some(out) = pc.poll_write() {
            let _ = socket.send_to(&out.message, out.transport.peer_addr).await;
        }
        while let Some(event) = pc.poll_event() {
            if let RTCPeerConnectionEvent::OnConnectionStateChangeEvent(RTCPeerConnectionState::Connected) = event {
                connected = true;
                let flag = if publisher { &stats.publisher_connected } else { &stats.subscriber_connected };
                flag.store(true, Ordering::SeqCst);
            }
        }
        while let Some(TaggedRTCMessage { message, .. }) = pc.poll_read() {
            if let RTCMessage::RtpPacket(_, packet) = message {
                stats.rtp_received.fetch_add(1, Ordering::Relaxed);
                if packet.payload.len() >= 8 {
                    let sent = u64::from_be_bytes(packet.payload[..8].try_into().unwrap());
                    let now = micros_since_epoch();
                    if sent > 0 && now >= sent {
                        let mut l = stats.latencies_us.lock().unwrap();
                        if l.len() < 1_000_000 {
                            l.push(now - sent);
                        }
                    }
                }
            }
        }
        let deadline = pc.poll_timeout().unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
        let sleep = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline));
        let publishing = sends && connected;
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
            _ = video_tick.tick(), if publishing => {
                let s = sending.as_ref().unwrap();
                vseq = vseq.wrapping_add(1);
                vts = vts.wrapping_add(900);
                let mut payload = vec![0u8; 1100];
                payload[..8].copy_from_slice(&micros_since_epoch().to_be_bytes());
                let packet = rtp::Packet {
                    header: rtp::header::Header { version: 2, marker: true, payload_type: 96, sequence_number: vseq, timestamp: vts, ssrc: s.video_ssrc, ..Default::default() },
                    payload: Bytes::from(payload),
                };
                if let Some(mut sender) = pc.rtp_sender(s.video) { let _ = sender.write_rtp(Instant::now(), packet); }
            }
            _ = audio_tick.tick(), if publishing => {
                let s = sending.as_ref().unwrap();
                aseq = aseq.wrapping_add(1);
                ats = ats.wrapping_add(960);
                let mut payload = vec![0u8; 160];
                payload[..8].copy_from_slice(&micros_since_epoch().to_be_bytes());
                let packet = rtp::Packet {
                    header: rtp::header::Header { version: 2, payload_type: 111, sequence_number: aseq, timestamp: ats, ssrc: s.audio_ssrc, ..Default::default() },
                    payload: Bytes::from(payload),
                };
                if let Some(mut sender) = pc.rtp_sender(s.audio) { let _ = sender.write_rtp(Instant::now(), packet); }
            }
        }
    }
    let _ = pc.close();
}
