//! The video channel: rooms for an interaction, the embedded SFU on one UDP port, WebSocket
//! signalling, TURN REST credentials and the call pages.
//!
//! - [`sfu`]: one task, one UDP socket, every peer connection of the node; its routing core
//!   ([`sfu::router`]) is a pure state machine, its engine ([`sfu::engine`]) webrtc-rs's
//!   sans-I/O `rtc` crate behind a small trait.
//! - [`rooms`]: who is in which live room on this node.
//! - `signal`: the signalling WebSocket at `/api/v1/video/ws`.
//! - `api`: the REST calls under `/api/v1/video/rooms` and the pages (`/call/{token}`,
//!   `/video/agent`, `/video/call.js`).
//!
//! The contract is `docs/video.md`. Entry point: [`Video::start`].
#![forbid(unsafe_code)]

pub mod branding;
pub mod error;
pub mod exif;
#[cfg(feature = "fake")]
pub mod fake_nominatim;
#[cfg(feature = "fake")]
pub mod fake_smsc;
pub mod geo;
pub mod recording;
pub mod rooms;
pub mod schedule;
pub mod sfu;
pub mod sms;
pub mod survey;
pub mod turn;

mod api;
mod client;
pub mod files;
mod nodes;
mod schedule_api;
mod signal;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use coord::Coordinator;
use ops::auth::Verifier;
use ops::config::Problem;
use schema::domain::VideoQuality;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::nodes::Nodes;
use crate::recording::Recorder;
use crate::rooms::Rooms;
use crate::sfu::Sfu;
use crate::turn::TurnIssuer;

/// The `[video]` configuration section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The SFU's one UDP port for every peer (`127.0.0.1:0`: any free port on loopback).
    pub udp_bind: SocketAddr,
    /// The address browsers reach the UDP port at (the host candidate); not set: the bound
    /// address, or 127.0.0.1 when bound to every interface.
    pub public_ip: Option<IpAddr>,
    /// The port browsers reach the UDP port at (0: the bound port), for a port mapping.
    pub public_port: u16,
    /// The base URL of the call links and pages, as customers reach the hub (e.g.
    /// `https://hub.example.com`); empty: `http://<http.bind>` (fine on one machine only).
    pub public_url: String,
    /// How long a customer link stays valid, in seconds.
    pub link_ttl_s: u64,
    /// A room everyone left is ended after this many seconds (a reload or a network change
    /// rejoins within it).
    pub empty_grace_s: u64,
    /// The most calls this node hosts at once.
    pub max_rooms: usize,
    /// The receive and send buffer asked for the SFU's UDP socket, in bytes (the kernel caps it
    /// at `net.core.rmem_max` / `wmem_max`: raise those to match). 0: the kernel's default.
    pub udp_buffer_bytes: usize,
    /// The video quality cap when `video.start` names none: 480p, 720p, 1080p or 2160p.
    pub default_quality: String,
    /// This node's name in the cluster (which node hosts a room); a random one when empty.
    pub node_id: String,
    /// The base URL this node is reached at by name: a join that reaches another node is sent
    /// to `<node_url>/api/v1/video/ws` of the node hosting the room. Empty: with `public_url`
    /// set, `<public_url>/video-node/<node_id>` (the entry point's route to one node,
    /// deploy/nginx/switchboard.conf); else this process's own listener.
    pub node_url: String,
    /// TURN credentials for an external coturn (`use-auth-secret`).
    pub turn: turn::Config,
    /// Recording of calls (`[video.recording]`).
    pub recording: recording::Config,
    /// The survey the customer page shows after a call (`[video.survey]`).
    pub survey: survey::Config,
    /// The call pages' logo, name, colours, consent text and after-call page (`[video.branding]`).
    pub branding: branding::Config,
    /// Call links by SMS (`[video.sms]`).
    pub sms: sms::Config,
    /// Reverse geocoding of the locations customers share (`[video.geocoder]`).
    pub geocoder: geo::Config,
    /// Scheduled calls and their reminders (`[video.schedules]`).
    pub schedules: schedule::Config,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            udp_bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            public_ip: None,
            public_port: 0,
            public_url: String::new(),
            link_ttl_s: 3600,
            empty_grace_s: 30,
            max_rooms: 100,
            udp_buffer_bytes: 8 * 1024 * 1024,
            default_quality: "720p".into(),
            node_id: String::new(),
            node_url: String::new(),
            turn: turn::Config::default(),
            recording: recording::Config::default(),
            survey: survey::Config::default(),
            branding: branding::Config::default(),
            sms: sms::Config::default(),
            geocoder: geo::Config::default(),
            schedules: schedule::Config::default(),
        }
    }
}

impl Config {
    /// What is wrong with these settings, each naming its `video.*` key.
    pub fn problems(&self) -> Vec<Problem> {
        let mut problems = self.turn.problems("video.turn");
        problems.extend(self.recording.problems());
        problems.extend(self.survey.problems());
        problems.extend(self.branding.problems());
        problems.extend(self.sms.problems());
        problems.extend(self.geocoder.problems());
        problems.extend(self.schedules.problems());
        if self.default_quality.parse::<VideoQuality>().is_err() {
            problems.push(Problem::new(
                "video.default_quality",
                format!("{:?} is not one of 480p, 720p, 1080p, 2160p", self.default_quality),
            ));
        }
        if self.link_ttl_s < 60 {
            problems.push(Problem::new("video.link_ttl_s", "must be at least 60 seconds"));
        }
        if self.max_rooms == 0 {
            problems.push(Problem::new("video.max_rooms", "must be at least 1"));
        }
        if !self.public_url.is_empty() && url_base(&self.public_url).is_none() {
            problems.push(Problem::new("video.public_url", format!("{:?} is not an http(s) URL", self.public_url)));
        }
        if !self.node_url.is_empty() && url_base(&self.node_url).is_none() {
            problems.push(Problem::new("video.node_url", format!("{:?} is not an http(s) URL", self.node_url)));
        }
        problems
    }

    pub fn quality(&self) -> VideoQuality {
        self.default_quality.parse().unwrap_or(VideoQuality::P720)
    }

    pub fn link_ttl(&self) -> Duration {
        Duration::from_secs(self.link_ttl_s)
    }
}

/// `https://hub.example.com/` -> `https://hub.example.com`; `None` for anything not http(s).
fn url_base(url: &str) -> Option<String> {
    let trimmed = url.trim_end_matches('/');
    let rest = trimmed.strip_prefix("https://").or_else(|| trimmed.strip_prefix("http://"))?;
    (!rest.is_empty() && !rest.contains(char::is_whitespace)).then(|| trimmed.to_owned())
}

/// Why the video component cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid video configuration: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Config(Vec<Problem>),
    #[error("cannot bind the SFU's UDP port {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    #[error("cannot open the recordings' spool {0}: {1}")]
    Spool(std::path::PathBuf, std::io::Error),
    #[error("cannot join the video nodes in the coordination service: {0}")]
    Coordination(coord::CoordError),
}

pub(crate) struct State {
    pub config: Config,
    pub public_url: String,
    pub node: String,
    pub pool: PgPool,
    pub coord: Arc<dyn Coordinator>,
    pub verifier: Verifier,
    pub sfu: Sfu,
    pub rooms: Rooms,
    /// This node among the video nodes: rooms pinned through ZooKeeper, draining.
    pub nodes: Nodes,
    pub turn: Option<TurnIssuer>,
    pub recorder: Arc<Recorder>,
    /// The SMS provider of call links; `None` when `[video.sms]` is off.
    pub sms: Option<Arc<dyn sms::SmsProvider>>,
    pub geocoder: geo::Geocoder,
    pub shutdown: CancellationToken,
    /// The background work that must finish before the process exits (the reminders of
    /// scheduled calls, the rooms' expiry, the recordings, and the short tasks a call starts:
    /// its writes to the call records, an SMS's delivery follow-up, a shared location's
    /// address, an empty room's grace); [`Video::stopped`] waits for it.
    pub tasks: TaskTracker,
}

/// Every 5 s: the SFU's counters and what it holds, as Prometheus metrics.
async fn publish_metrics(state: Arc<State>) {
    use std::sync::atomic::Ordering::Relaxed;
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let c = &state.sfu.counters;
        metrics::counter!("switchboard_video_datagrams_in_total").absolute(c.datagrams_in.load(Relaxed));
        metrics::counter!("switchboard_video_datagrams_unknown_total").absolute(c.datagrams_unknown.load(Relaxed));
        metrics::counter!("switchboard_video_datagrams_out_total").absolute(c.datagrams_out.load(Relaxed));
        metrics::counter!("switchboard_video_datagrams_dropped_total").absolute(c.datagrams_dropped.load(Relaxed));
        metrics::counter!("switchboard_video_rtp_forwarded_total").absolute(c.rtp_forwarded.load(Relaxed));
        metrics::counter!("switchboard_video_keyframe_requests_total").absolute(c.keyframe_requests.load(Relaxed));
        metrics::gauge!("switchboard_video_rooms_live").set(state.rooms.room_count() as f64);
        let spool = &state.recorder.spool().counters;
        metrics::counter!("switchboard_video_recording_spooled_packets_total").absolute(spool.packets.load(Relaxed));
        metrics::counter!("switchboard_video_recording_spooled_bytes_total").absolute(spool.bytes.load(Relaxed));
        metrics::counter!("switchboard_video_recording_dropped_total").absolute(spool.dropped.load(Relaxed));
        metrics::counter!("switchboard_video_recording_write_errors_total").absolute(spool.errors.load(Relaxed));
        if let Ok(s) = state.sfu.snapshot().await {
            metrics::gauge!("switchboard_video_peers").set(s.peers as f64);
        }
    }
}

/// A started video component: the routes to mount, and the SFU for tests and benchmarks.
pub struct Video {
    state: Arc<State>,
}

impl Video {
    /// Binds the SFU's UDP port and starts the room expiry job. `http_base` is the URL the
    /// hub's HTTP listener is reached at, used when `public_url` is not set.
    pub async fn start(
        config: Config,
        http_base: &str,
        verifier: Verifier,
        pool: PgPool,
        coord: Arc<dyn Coordinator>,
        shutdown: CancellationToken,
    ) -> Result<Self, StartError> {
        let problems = config.problems();
        if !problems.is_empty() {
            return Err(StartError::Config(problems));
        }
        let turn = config.turn.issuer("video.turn").map_err(StartError::Config)?;
        let sms: Option<Arc<dyn sms::SmsProvider>> = config.sms.provider().map_err(StartError::Config)?.map(Arc::from);
        let geocoder = geo::Geocoder::new(config.geocoder.clone()).map_err(StartError::Config)?;
        let public_ip = config.public_ip.unwrap_or(match config.udp_bind.ip() {
            ip if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            ip => ip,
        });
        let public = SocketAddr::new(public_ip, config.public_port);
        let sfu = Sfu::start(config.udp_bind, public, config.udp_buffer_bytes, shutdown.clone())
            .await
            .map_err(|e| StartError::Bind(config.udp_bind, e))?;
        let public_url = if config.public_url.is_empty() {
            http_base.trim_end_matches('/').to_owned()
        } else {
            url_base(&config.public_url).unwrap_or_default()
        };
        let node = if config.node_id.is_empty() {
            format!("video-{}", uuid::Uuid::new_v4().simple())
        } else {
            config.node_id.clone()
        };
        let node_url = if !config.node_url.is_empty() {
            url_base(&config.node_url).unwrap_or_default()
        } else if !config.public_url.is_empty() {
            format!("{public_url}/video-node/{node}")
        } else {
            http_base.trim_end_matches('/').to_owned()
        };
        let nodes =
            Nodes::join(coord.clone(), node.clone(), node_url.clone()).await.map_err(StartError::Coordination)?;
        for warning in config.branding.contrast_warnings() {
            tracing::warn!("{warning}");
        }
        tracing::info!(%public_url, %node, %node_url, udp = %sfu.local_addr(), turn = turn.is_some(), "video channel ready");
        let spool_dir = config.recording.spool_dir.clone();
        let wake_coord = coord.clone();
        let wake = Box::new(move |agents: &[String]| {
            for agent in agents {
                wake_coord.notify(&schema::topics::agent(agent));
            }
        });
        let recorder =
            Recorder::new(config.recording.clone(), node.clone(), pool.clone(), sfu.clone(), http_base, wake)
                .map_err(|e| StartError::Spool(spool_dir, e))?;
        let state = Arc::new(State {
            config,
            public_url,
            node,
            pool,
            coord,
            verifier,
            sfu,
            rooms: Rooms::new(),
            nodes,
            turn,
            recorder: recorder.clone(),
            sms,
            geocoder,
            shutdown: shutdown.clone(),
            tasks: TaskTracker::new(),
        });
        state.tasks.spawn(api::expire_rooms(state.clone()));
        state.tasks.spawn(schedule::run(state.clone()));
        state.tasks.spawn(publish_metrics(state.clone()));
        recorder.recover().await;
        api::take_over_recordings(&state).await;
        let stop = shutdown.clone();
        state.tasks.spawn(async move {
            stop.cancelled().await;
            recorder.shutdown().await;
        });
        state.tasks.close();
        Ok(Video { state })
    }

    pub fn router(&self) -> Router {
        api::router(self.state.clone())
    }

    /// The SFU's UDP address.
    pub fn udp_addr(&self) -> SocketAddr {
        self.state.sfu.local_addr()
    }

    /// The base URL of links and pages.
    pub fn public_url(&self) -> &str {
        &self.state.public_url
    }

    pub fn sfu(&self) -> &Sfu {
        &self.state.sfu
    }

    /// Rooms live on this node.
    pub fn live_rooms(&self) -> usize {
        self.state.rooms.room_count()
    }

    /// The recordings of this node.
    pub fn recorder(&self) -> &Arc<Recorder> {
        &self.state.recorder
    }

    /// Waits, after shutdown, until the background work tracked in `tasks` (the reminder worker,
    /// the rooms' expiry, the metrics, the recordings being flushed and finished, the writes to
    /// the call records and the other short tasks of calls) has finished what it was doing.
    pub async fn stopped(&self) {
        self.state.tasks.wait().await;
    }

    /// One turn of the reminder worker of scheduled calls as if it were `now`; returns when the
    /// next reminder is due. For tests and tools: the worker runs this on its own.
    pub async fn run_reminders(
        &self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<chrono::DateTime<chrono::Utc>>, error::VideoError> {
        schedule::run_once(&self.state, now).await
    }

    /// Starts or stops draining this node: no new room is pinned here, its calls go on.
    pub fn set_draining(&self, draining: bool) {
        self.state.nodes.set_draining(draining);
    }
}
