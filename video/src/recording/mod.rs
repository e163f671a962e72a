//! Recording of calls in the hub (docs/video.md, Recording).
//!
//! - [`spool`]: while the call runs, every recorded track's RTP goes to a file of its own
//!   (the SFU hands packets to one writer thread and never waits for it).
//! - [`process`]: when the call ends, the spool becomes one Matroska file: the customer's
//!   video as sent, one stereo Opus track (customer left, agent right), aligned by the
//!   senders' RTCP reports, gaps as silence.
//! - [`mkv`]: the Matroska writer.
//! - [`Recorder`] (here): starts a room's recording when a consenting customer joins a room
//!   that is to be recorded, and when the room ends stops it, has it processed (a bounded
//!   number at a time), uploads the file to the file server as a `recording` (its quota and
//!   retention apply), and records it `ready` (the `video.room` event `recording_ready` reaches
//!   the agents and the webhooks) or `failed` with the reason. At start it finishes what a
//!   previous run of the node left in its spool.
//! - A call that moves to another node (its node died, or it was pinned again) goes on being
//!   recorded there as the next **part** of the room's recording (the consent is the call's);
//!   the part the dead node spooled is finished once, by whichever node claims it first in
//!   PostgreSQL: that node at its next start, or any live node that sees the same spool
//!   directory (a shared `spool_dir`), see [`Recorder::take_over`].

pub mod mkv;
pub mod process;
pub mod spool;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use ops::config::{Problem, Secret};
use schema::domain::{RecordingState, VideoRoom};
use schema::store::{self, RecordingDone};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use uuid::Uuid;

use self::spool::{Meta, Spool};
use crate::sfu::{RecordTap, Sfu};

/// The `[video.recording]` configuration section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where calls are spooled while they run (one directory per recording; about 8 MB per
    /// minute of call at 1 Mbit/s of video).
    pub spool_dir: PathBuf,
    /// The file server the recordings go to; empty: this process's own HTTP listener.
    pub fileserver_url: String,
    /// Mix the supervisor's voice into the agent's (right) channel.
    pub supervisor: bool,
    /// Add the customer's screen share as a second video track.
    pub screen: bool,
    /// The stereo Opus track's bitrate, bits per second.
    pub audio_bitrate: u32,
    /// libopus's encoder complexity, 0 (fastest) to 10.
    pub audio_complexity: u8,
    /// Recordings processed at once (each takes one core while it runs).
    pub workers: usize,
    /// What the customer page says before a recorded call (and what is stored with the
    /// customer's consent).
    pub consent_text: String,
    /// The hub's HS256 secret, to sign the service token of the uploads (set by the process
    /// from `jwt.hs256_secret`, never configured here).
    #[serde(skip)]
    pub service_secret: Option<Secret>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            spool_dir: PathBuf::from(".local/recordings"),
            fileserver_url: String::new(),
            supervisor: false,
            screen: false,
            audio_bitrate: 64_000,
            audio_complexity: 5,
            workers: 1,
            consent_text: "This call is recorded: your video, your voice and the agent's are kept by the company \
                           you are talking to, under its retention policy. Join without recording if you do not agree."
                .into(),
            service_secret: None,
        }
    }
}

impl Config {
    pub fn problems(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        if !(6_000..=510_000).contains(&self.audio_bitrate) {
            problems.push(Problem::new("video.recording.audio_bitrate", "must be between 6000 and 510000"));
        }
        if self.audio_complexity > 10 {
            problems.push(Problem::new("video.recording.audio_complexity", "must be between 0 and 10"));
        }
        if self.workers == 0 {
            problems.push(Problem::new("video.recording.workers", "must be at least 1"));
        }
        if self.consent_text.trim().is_empty() || self.consent_text.len() > 2000 {
            problems.push(Problem::new("video.recording.consent_text", "must be 1 to 2000 characters"));
        }
        problems
    }
}

/// A recording spooling on this node.
#[derive(Debug, Clone)]
struct Active {
    id: Uuid,
    dir: PathBuf,
    t0: Instant,
    /// The part's claims when it started (the claim that ends it compares them).
    claims: i32,
}

/// Why a recording failed, for its row and its event.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("quota_exceeded: {0}")]
    Quota(String),
    #[error("upload: {0}")]
    Upload(String),
    #[error("processing: {0}")]
    Processing(String),
    #[error("empty: nothing was recorded")]
    Empty,
}

/// Wakes the agents named (after a recording is ready or failed).
pub type Wake = Box<dyn Fn(&[String]) + Send + Sync>;

/// Starts, stops and finishes the recordings of this node's rooms.
pub struct Recorder {
    config: Config,
    node: String,
    pool: sqlx::PgPool,
    sfu: Sfu,
    spool: Spool,
    fileserver: String,
    http: reqwest::Client,
    active: Mutex<HashMap<Uuid, Active>>,
    /// One start at a time (two joins of a room must not start two parts).
    starting: tokio::sync::Mutex<()>,
    /// One pass of [`Recorder::take_over`] at a time.
    taking: tokio::sync::Mutex<()>,
    workers: Arc<Semaphore>,
    /// Who to wake after a recording is ready or failed.
    wake: Wake,
    /// The parts being stopped, finished, recovered or taken over in the background.
    tasks: tokio_util::task::TaskTracker,
}

/// What finishing a recording gave (for tests and benchmarks).
#[derive(Debug, Clone)]
pub struct Finished {
    pub recording: store::Recording,
    pub outcome: Option<process::Outcome>,
    pub processing: Duration,
}

impl Recorder {
    pub fn new(
        config: Config,
        node: String,
        pool: sqlx::PgPool,
        sfu: Sfu,
        http_base: &str,
        wake: Wake,
    ) -> std::io::Result<Arc<Recorder>> {
        std::fs::create_dir_all(&config.spool_dir)?;
        let fileserver =
            if config.fileserver_url.is_empty() { http_base.to_owned() } else { config.fileserver_url.clone() };
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(std::io::Error::other)?;
        let workers = Arc::new(Semaphore::new(config.workers.max(1)));
        Ok(Arc::new(Recorder {
            config,
            node,
            pool,
            sfu,
            spool: Spool::start(),
            fileserver: fileserver.trim_end_matches('/').to_owned(),
            http,
            active: Mutex::new(HashMap::new()),
            starting: tokio::sync::Mutex::new(()),
            taking: tokio::sync::Mutex::new(()),
            workers,
            wake,
            tasks: tokio_util::task::TaskTracker::new(),
        }))
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn spool(&self) -> &Spool {
        &self.spool
    }

    /// Whether this room is being recorded on this node.
    pub fn is_recording(&self, room: Uuid) -> bool {
        self.active.lock().expect("recorder lock").contains_key(&room)
    }

    /// The rooms recording on this node.
    pub fn active_rooms(&self) -> Vec<Uuid> {
        self.active.lock().expect("recorder lock").keys().copied().collect()
    }

    pub fn active_count(&self) -> usize {
        self.active.lock().expect("recorder lock").len()
    }

    /// Starts recording `room` when it is to be recorded and its customer consented: by this
    /// join (`consented`), or earlier in the call (the call moved here from another node, or
    /// this node restarted: the rest of the call is the next part of its recording). Nothing
    /// when it already records here. Returns whether it records.
    pub async fn start(&self, room: &VideoRoom, consented: bool) -> Result<bool, store::StoreError> {
        let _one = self.starting.lock().await;
        if self.is_recording(room.id) {
            return Ok(true);
        }
        if !room.record {
            return Ok(false);
        }
        let mut conn = self.pool.acquire().await?;
        if !consented && store::latest_consent(&mut conn, room.id).await? != Some(true) {
            return Ok(false);
        }
        let started_at = Utc::now();
        let Some(recording) = store::start_recording_part(&mut conn, room, &self.node, started_at).await? else {
            tracing::warn!(room = %room.id, "another start took the recording's next part at the same time");
            return Ok(false);
        };
        if recording.part > 1 {
            tracing::info!(room = %room.id, recording = %recording.id, part = recording.part,
                "the call is recorded here from now on (it moved, or its node restarted): the next part of its recording");
        }
        let dir = self.config.spool_dir.join(recording.id.to_string());
        let meta = Meta {
            recording: recording.id,
            room: room.id,
            interaction: room.interaction_id,
            started_unix_us: started_at.timestamp_micros(),
            part: recording.part,
        };
        let written = std::fs::create_dir_all(&dir)
            .and_then(|_| std::fs::write(dir.join("recording.json"), serde_json::to_vec(&meta).unwrap_or_default()));
        if let Err(e) = written {
            tracing::error!(error = %e, dir = %dir.display(), "cannot create the recording's spool");
            let (_, audience) = store::recording_failed(&mut conn, recording.id, &format!("spool: {e}")).await?;
            (self.wake)(&audience);
            return Ok(false);
        }
        let t0 = Instant::now();
        self.spool.start_recording(recording.id, dir.clone(), t0);
        let claims = recording.claims;
        self.active.lock().expect("recorder lock").insert(room.id, Active { id: recording.id, dir, t0, claims });
        let tap = RecordTap {
            recording: recording.id,
            spool: self.spool.clone(),
            supervisor: self.config.supervisor,
            screen: self.config.screen,
        };
        if self.sfu.record(room.id, Some(tap)).await.is_err() {
            tracing::warn!(room = %room.id, "the SFU stopped; the recording gets nothing");
        }
        metrics::counter!("switchboard_video_recordings_started_total").increment(1);
        metrics::gauge!("switchboard_video_recordings_active").increment(1.0);
        tracing::info!(room = %room.id, recording = %recording.id, part = recording.part, "recording started");
        Ok(true)
    }

    /// The room ended: its recording (if this node records it) is stopped and finished in the
    /// background.
    pub fn finish(self: &Arc<Self>, room: Uuid) -> Option<tokio::task::JoinHandle<Option<Finished>>> {
        let active = self.active.lock().expect("recorder lock").remove(&room)?;
        let this = self.clone();
        Some(self.tasks.spawn(async move {
            let _ = this.sfu.record(room, None).await;
            let end_us = active.t0.elapsed().as_micros() as i64;
            if let Err(e) = this.spool.stop_recording(active.id).await {
                tracing::warn!(recording = %active.id, error = %e, "the spool did not flush cleanly");
            }
            metrics::gauge!("switchboard_video_recordings_active").decrement(1.0);
            this.complete(active.id, active.claims, active.dir, end_us, Utc::now()).await
        }))
    }

    /// Flushes every recording spooling here (the process stops: what was spooled is finished
    /// at the next start), then waits for the parts being finished in the background. One the
    /// process stops before it is ready keeps its state in PostgreSQL and is finished again at
    /// the next start (or by a live node sharing the spool).
    pub async fn shutdown(&self) {
        let active: Vec<Active> = self.active.lock().expect("recorder lock").drain().map(|(_, a)| a).collect();
        for a in active {
            let _ = self.spool.stop_recording(a.id).await;
        }
        self.tasks.close();
        self.tasks.wait().await;
    }

    /// Claims a stopped part (its claims were `seen`; it ended at `ended_at`, `end_us` after
    /// its start), then processes, uploads and records it; nothing when another node claimed
    /// it first (that node finishes it).
    async fn complete(
        &self,
        id: Uuid,
        seen: i32,
        dir: PathBuf,
        end_us: i64,
        ended_at: DateTime<Utc>,
    ) -> Option<Finished> {
        if !self.claim(id, seen, &dir, ended_at).await {
            return None;
        }
        self.process_claimed(id, seen + 1, dir, end_us).await
    }

    /// Claims a stopped part for this node; whether it won.
    async fn claim(&self, id: Uuid, seen: i32, dir: &Path, ended_at: DateTime<Utc>) -> bool {
        let claimed = match self.pool.acquire().await {
            Ok(mut conn) => store::claim_recording(&mut conn, id, seen, &self.node, ended_at).await,
            Err(e) => Err(e.into()),
        };
        match claimed {
            Ok(true) => true,
            Ok(false) => {
                metrics::counter!("switchboard_video_recording_claims_lost_total").increment(1);
                tracing::warn!(recording = %id, spool = %dir.display(),
                    "the recording was claimed first by another node (or run); the claimant finishes it");
                false
            }
            Err(e) => {
                tracing::error!(recording = %id, error = %e, "cannot claim the recording; left for a later start");
                false
            }
        }
    }

    /// Processes, uploads and records a part this node claimed (`claims`: its claims since).
    async fn process_claimed(&self, id: Uuid, claims: i32, dir: PathBuf, end_us: i64) -> Option<Finished> {
        let _permit = self.workers.clone().acquire_owned().await.ok()?;
        let started = Instant::now();
        let result = self.produce(id, &dir, end_us).await;
        let processing = started.elapsed();
        let finished = async {
            let mut conn = self.pool.acquire().await?;
            let mut tx = sqlx::Connection::begin(&mut *conn).await?;
            if !store::holds_claim(&mut tx, id, claims).await? {
                return Ok(None);
            }
            let (recording, audience, outcome) = match result {
                Ok((done, outcome)) => {
                    let (r, a) = store::recording_ready(&mut tx, id, &done).await?;
                    (r, a, Some(outcome))
                }
                Err(failure) => {
                    let (r, a) = store::recording_failed(&mut tx, id, &failure.to_string()).await?;
                    (r, a, None)
                }
            };
            tx.commit().await?;
            Ok::<_, store::StoreError>(Some((recording, audience, outcome)))
        }
        .await;
        match finished {
            Ok(None) => {
                // the node was taken for dead while it processed (its coordination session
                // expired) and another one claimed the part: that one records its outcome
                tracing::error!(recording = %id, "lost the claim of the recording while processing it; its outcome is the claimant's");
                metrics::counter!("switchboard_video_recording_claims_lost_total").increment(1);
                None
            }
            Ok(Some((recording, audience, outcome))) => {
                (self.wake)(&audience);
                let outcome_label = if recording.state == RecordingState::Ready { "ready" } else { "failed" };
                metrics::counter!("switchboard_video_recordings_total", "outcome" => outcome_label).increment(1);
                metrics::histogram!("switchboard_video_recording_processing_seconds").record(processing.as_secs_f64());
                if recording.state == RecordingState::Ready {
                    tracing::info!(recording = %id, ?processing, duration_ms = ?recording.duration_ms, "recording ready");
                    let _ = std::fs::remove_dir_all(&dir);
                } else {
                    tracing::warn!(recording = %id, error = ?recording.error, spool = %dir.display(), "recording failed");
                    // a refusal over the quota frees the spool (the quota is there to bound the disk);
                    // other failures keep it for a look
                    if recording
                        .error
                        .as_deref()
                        .is_some_and(|e| e.starts_with("quota_exceeded") || e.starts_with("empty"))
                    {
                        let _ = std::fs::remove_dir_all(&dir);
                    }
                }
                Some(Finished { recording, outcome, processing })
            }
            Err(e) => {
                tracing::error!(recording = %id, error = %e, "cannot record the recording's outcome");
                None
            }
        }
    }

    /// The file from the spool, uploaded.
    async fn produce(&self, id: Uuid, dir: &Path, end_us: i64) -> Result<(RecordingDone, process::Outcome), Failure> {
        let meta: Option<Meta> =
            std::fs::read(dir.join("recording.json")).ok().and_then(|b| serde_json::from_slice(&b).ok());
        let started_unix_ns = meta.as_ref().map_or(0, |m| m.started_unix_us * 1000);
        let options = process::Options {
            end_us,
            supervisor: self.config.supervisor,
            screen: self.config.screen,
            bitrate: self.config.audio_bitrate as i32,
            complexity: i32::from(self.config.audio_complexity),
            title: format!("video call recording {id}"),
            started_unix_ns,
        };
        let out = dir.join("recording.mkv");
        let (input, output) = (dir.to_owned(), out.clone());
        let started = Instant::now();
        let outcome = tokio::task::spawn_blocking(move || process::process(&input, &output, &options))
            .await
            .map_err(|e| Failure::Processing(e.to_string()))?
            .map_err(|e| Failure::Processing(e.to_string()))?;
        let processing_ms = started.elapsed().as_millis() as i64;
        if outcome.packets == 0 {
            return Err(Failure::Empty);
        }
        let (ext, mime) = if outcome.doc_type == "webm" { ("webm", "video/webm") } else { ("mkv", "video/x-matroska") };
        let when = meta
            .as_ref()
            .and_then(|m| DateTime::<Utc>::from_timestamp_micros(m.started_unix_us))
            .unwrap_or_else(Utc::now)
            .format("%Y%m%d-%H%M%S");
        let name = match meta.as_ref().map_or(1, |m| m.part) {
            1 => format!("call-{when}.{ext}"),
            part => format!("call-{when}-part{part}.{ext}"),
        };
        let file_id = self.upload(&out, &name, mime).await?;
        let size = std::fs::metadata(&out).map(|m| m.len() as i64).unwrap_or(0);
        let done = RecordingDone {
            file_id,
            size,
            duration_ms: outcome.duration_ms,
            video_codec: outcome.video_codec.map(str::to_owned),
            processing_ms,
        };
        Ok((done, outcome))
    }

    /// The file server this node stores files in (recordings, the files sent in calls).
    pub(crate) fn fileserver(&self) -> &str {
        &self.fileserver
    }

    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// A service token for the file server, good for 10 minutes.
    pub(crate) fn service_token(&self) -> Result<String, String> {
        self.token().map_err(|e| e.to_string())
    }

    fn token(&self) -> Result<String, Failure> {
        let secret = self
            .config
            .service_secret
            .as_ref()
            .ok_or_else(|| Failure::Upload("no jwt.hs256_secret: the video node cannot sign its upload".into()))?;
        let claims = ops::auth::Claims {
            sub: format!("video:{}", self.node),
            exp: (Utc::now().timestamp() + 600) as u64,
            name: Some("video recorder".into()),
            roles: vec!["service".into()],
        };
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(secret.expose().as_bytes()),
        )
        .map_err(|e| Failure::Upload(format!("cannot sign the upload's token: {e}")))
    }

    /// Streams the file to the file server as a `recording`; its id.
    async fn upload(&self, path: &Path, name: &str, mime: &str) -> Result<Uuid, Failure> {
        let file = tokio::fs::File::open(path).await.map_err(|e| Failure::Upload(e.to_string()))?;
        let len = file.metadata().await.map_err(|e| Failure::Upload(e.to_string()))?.len();
        let mut url = reqwest::Url::parse(&format!("{}/api/v1/files", self.fileserver))
            .map_err(|e| Failure::Upload(format!("video.recording.fileserver_url: {e}")))?;
        url.query_pairs_mut()
            .append_pair("name", name)
            .append_pair("kind", "recording")
            .append_pair("channel", "video");
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024));
        let response = self
            .http
            .post(url)
            .bearer_auth(self.token()?)
            .header(reqwest::header::CONTENT_TYPE, mime)
            .header(reqwest::header::CONTENT_LENGTH, len)
            .body(body)
            .send()
            .await
            .map_err(|e| Failure::Upload(e.to_string()))?;
        let status = response.status();
        let answer: serde_json::Value = response.json().await.unwrap_or_default();
        if status.is_success() {
            return answer["id"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| Failure::Upload(format!("the file server answered {answer} without an id")));
        }
        let message = answer["error"]["message"].as_str().unwrap_or("no reason given").to_owned();
        if answer["error"]["code"] == "quota_exceeded" {
            Err(Failure::Quota(message))
        } else {
            Err(Failure::Upload(format!("{status}: {message}")))
        }
    }

    /// At start: the recordings a previous run of this node left unfinished are finished from
    /// their spool (up to their last packet), or failed when nothing is left of them; each is
    /// claimed first, so a live node that took one over meanwhile keeps it.
    pub async fn recover(self: &Arc<Self>) {
        let unfinished = match self.pool.acquire().await {
            Ok(mut conn) => store::unfinished_recordings(&mut conn, &self.node).await,
            Err(e) => Err(e.into()),
        };
        let unfinished = match unfinished {
            Ok(list) => list,
            Err(e) => {
                tracing::warn!(error = %e, "cannot look for unfinished recordings");
                return;
            }
        };
        for recording in unfinished {
            let dir = self.config.spool_dir.join(recording.id.to_string());
            tracing::info!(recording = %recording.id, part = recording.part, spool = %dir.display(),
                "finishing a recording left by an earlier run");
            let this = self.clone();
            self.tasks.spawn(async move { this.finish_left(recording, dir).await });
        }
    }

    /// Takes over the parts that nodes no longer `live` left unfinished (spooling, or being
    /// processed, when they died) and whose spool this node sees (a `spool_dir` shared between
    /// the nodes): each is claimed in PostgreSQL (once, whoever races for it) and finished here.
    /// A part whose spool is not here waits for its node's next start. Returns how many parts
    /// this node claimed.
    pub async fn take_over(self: &Arc<Self>, live: &[String]) -> usize {
        let _one = self.taking.lock().await;
        let unfinished = match self.pool.acquire().await {
            Ok(mut conn) => store::all_unfinished_recordings(&mut conn).await,
            Err(e) => Err(e.into()),
        };
        let unfinished = match unfinished {
            Ok(list) => list,
            Err(e) => {
                tracing::warn!(error = %e, "cannot look for recordings left by dead nodes");
                return 0;
            }
        };
        let mut taken = 0;
        for recording in unfinished {
            let owner = orphan_owner(&recording, &self.node, live);
            let Some(owner) = owner else { continue };
            let dir = self.config.spool_dir.join(recording.id.to_string());
            if !spool_of(&dir, recording.id) {
                continue;
            }
            tracing::info!(recording = %recording.id, room = %recording.room_id, part = recording.part, dead = %owner,
                spool = %dir.display(), "taking over a recording its dead node left unfinished");
            let (end_us, ended_at) = left_end(&recording, &dir).await;
            if !self.claim(recording.id, recording.claims, &dir, ended_at).await {
                continue;
            }
            metrics::counter!("switchboard_video_recordings_taken_over_total").increment(1);
            taken += 1;
            let this = self.clone();
            let claims = recording.claims + 1;
            self.tasks.spawn(async move { this.process_claimed(recording.id, claims, dir, end_us).await });
        }
        taken
    }

    /// Finishes a part a run of a node left (its spool up to the last packet written).
    async fn finish_left(&self, recording: store::Recording, dir: PathBuf) -> Option<Finished> {
        let (end_us, ended_at) = left_end(&recording, &dir).await;
        self.complete(recording.id, recording.claims, dir, end_us, ended_at).await
    }
}

/// Where a part a node left ends: its last packet's arrival (µs after its start), and when
/// that was (a part already being processed keeps the end it was given).
async fn left_end(recording: &store::Recording, dir: &Path) -> (i64, DateTime<Utc>) {
    let spool_dir = dir.to_owned();
    let end_us = tokio::task::spawn_blocking(move || last_arrival_us(&spool_dir)).await.unwrap_or(0);
    let ended_at = recording.ended_at.unwrap_or(recording.started_at + chrono::Duration::microseconds(end_us));
    (end_us, ended_at)
}

/// The node that left `recording` unfinished when it is neither `me` nor a live node: the one
/// that spooled it (still recording) or the one processing it.
fn orphan_owner<'a>(recording: &'a store::Recording, me: &str, live: &[String]) -> Option<&'a str> {
    let owner = match recording.state {
        RecordingState::Recording => recording.node.as_str(),
        RecordingState::Processing => recording.processor.as_deref().unwrap_or(recording.node.as_str()),
        _ => return None,
    };
    (owner != me && !live.iter().any(|n| n == owner)).then_some(owner)
}

/// Whether `dir` is the spool of `recording` (the node that wrote it shares the spool
/// directory with this one).
fn spool_of(dir: &Path, recording: Uuid) -> bool {
    std::fs::read(dir.join("recording.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<Meta>(&b).ok())
        .is_some_and(|m| m.recording == recording)
}

/// The arrival time of the last packet in a spool (µs), 0 when it has none.
fn last_arrival_us(dir: &Path) -> i64 {
    let Ok(files) = spool::stream_files(dir) else { return 0 };
    let mut last = 0u64;
    for file in files {
        if let Ok(records) = spool::records(&file.path, true) {
            for record in records {
                if let spool::Record::Rtp { at, .. } = record {
                    last = last.max(at);
                }
            }
        }
    }
    last as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(state: RecordingState, node: &str, processor: Option<&str>) -> store::Recording {
        store::Recording {
            id: Uuid::new_v4(),
            room_id: Uuid::new_v4(),
            interaction_id: Uuid::new_v4(),
            part: 1,
            state,
            node: node.into(),
            processor: processor.map(str::to_owned),
            claims: 0,
            started_at: Utc::now(),
            ended_at: None,
            duration_ms: None,
            file: None,
            video_codec: None,
            error: None,
            processing_ms: None,
            ready_at: None,
            deleted_at: None,
        }
    }

    #[test]
    fn only_the_unfinished_parts_of_dead_nodes_are_taken_over() {
        let live = vec!["b".to_owned(), "c".to_owned()];
        // spooled by a, which is gone: b takes it
        assert_eq!(orphan_owner(&part(RecordingState::Recording, "a", None), "b", &live), Some("a"));
        // spooled by c, alive: not taken (its recording may be running)
        assert_eq!(orphan_owner(&part(RecordingState::Recording, "c", None), "b", &live), None);
        // this node's own parts are its start's to finish, not taken over
        assert_eq!(orphan_owner(&part(RecordingState::Recording, "b", None), "b", &live), None);
        // spooled by c (alive) but processed by a, which died while processing it
        assert_eq!(orphan_owner(&part(RecordingState::Processing, "c", Some("a")), "b", &live), Some("a"));
        // processed by a live node, or by this one
        assert_eq!(orphan_owner(&part(RecordingState::Processing, "a", Some("c")), "b", &live), None);
        assert_eq!(orphan_owner(&part(RecordingState::Processing, "a", Some("b")), "b", &live), None);
        // finished parts are nobody's business
        for done in [RecordingState::Ready, RecordingState::Failed, RecordingState::Deleted] {
            assert_eq!(orphan_owner(&part(done, "a", Some("a")), "b", &live), None);
        }
    }

    #[test]
    fn a_spool_is_recognised_by_its_recording_json() {
        let dir = tempfile::tempdir().unwrap();
        let id = Uuid::new_v4();
        assert!(!spool_of(dir.path(), id), "no recording.json: not shared here");
        let meta =
            Meta { recording: id, room: Uuid::new_v4(), interaction: Uuid::new_v4(), started_unix_us: 0, part: 2 };
        std::fs::write(dir.path().join("recording.json"), serde_json::to_vec(&meta).unwrap()).unwrap();
        assert!(spool_of(dir.path(), id));
        assert!(!spool_of(dir.path(), Uuid::new_v4()), "another recording's spool");
        // a spool written before parts existed is part 1
        let old = serde_json::json!({"recording": id, "room": id, "interaction": id, "started_unix_us": 5});
        let read: Meta = serde_json::from_value(old).unwrap();
        assert_eq!(read.part, 1);
    }
}
