//! Video calls: their records (who joined when and how, durations, the quality the SFU
//! measured, the chat, the recording) by interaction, by period and one by one, and as CSV
//! and Excel exports; the storage the file kinds use (admin); whether a queue's calls are
//! recorded (admin). The bodies are here rather than in `model.rs`: they mirror
//! `schema::store::{CallRecord, CallParticipant, Recording, FileUsage}` field for field.

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::Response;
use chrono::{DateTime, Utc};
use schema::store::{self, AuditEntry};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::mpsc;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{page_limit, parse_uuid, required_time, split_page};
use crate::AppState;
use crate::auth::{Principal, Scope};
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery, ErrorBody};
use crate::model::FileRef;
use ops::input::{InputError, Kind, Validate, check_opt};

// ---------------------------------------------------------------- bodies --

/// The quality the SFU sampled of a participant's connection, summed up.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct QualitySummary {
    /// Samples (one per 10 s of connection), and how many were good, fair and poor.
    pub samples: i64,
    pub good: i64,
    pub fair: i64,
    pub poor: i64,
    pub loss_avg_pct: Option<f64>,
    pub loss_max_pct: Option<f64>,
    pub jitter_avg_ms: Option<f64>,
    pub rtt_avg_ms: Option<f64>,
    pub rtt_max_ms: Option<f64>,
    /// What the SFU received from the participant and sent to it.
    pub bitrate_in_avg_kbps: Option<f64>,
    pub bitrate_out_avg_kbps: Option<f64>,
}

/// One join of a participant (a reconnect is another).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CallParticipant {
    pub id: Uuid,
    /// `agent`, `customer` or `supervisor`.
    pub role: String,
    /// The agent's or supervisor's login.
    pub login: Option<String>,
    pub name: String,
    pub joined_at: DateTime<Utc>,
    /// When media first flowed.
    pub connected_at: Option<DateTime<Utc>>,
    pub left_at: Option<DateTime<Utc>>,
    /// `left`, `ended`, `replaced` (the same role joined again), `disconnected`, `timeout`,
    /// `shutdown`.
    pub left_reason: Option<String>,
    pub user_agent: Option<String>,
    /// Read from the user agent: `Chrome 131`, `Windows`, `desktop` / `mobile` / `tablet`.
    pub browser: Option<String>,
    pub os: Option<String>,
    pub device: Option<String>,
    /// Whether the page found a camera and a microphone.
    pub camera: Option<bool>,
    pub microphone: Option<bool>,
    /// `direct`, or `relay` (through TURN).
    pub ice_path: Option<String>,
    /// The customer's answer to a recorded call's notice.
    pub recording_consent: Option<bool>,
    pub consented_at: Option<DateTime<Utc>>,
    pub quality: QualitySummary,
}

/// A call's recording.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Recording {
    pub id: Uuid,
    /// The part of the call's recording: 1, then 2 for what the node the call moved to
    /// recorded (a node died or the call was pinned again), ...
    #[serde(default = "first_part")]
    pub part: i32,
    /// `recording` (the call runs), `processing`, `ready`, `failed` (see `error`), `deleted`
    /// (by retention).
    pub state: String,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<i64>,
    /// The file (WebM, or Matroska for H.264), while it exists.
    pub file: Option<FileRef>,
    pub video_codec: Option<String>,
    pub error: Option<String>,
    pub ready_at: Option<DateTime<Utc>>,
    pub deleted_at: Option<DateTime<Utc>>,
}

fn first_part() -> i32 {
    1
}

/// One video call.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Call {
    pub room_id: Uuid,
    pub interaction_id: Uuid,
    /// The agent who started it.
    pub agent: String,
    /// `two_way` or `one_way`.
    pub mode: String,
    /// `480p`, `720p`, `1080p` or `2160p`.
    pub quality: String,
    /// `open` or `ended`.
    pub state: String,
    pub created_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    /// `ended_by_agent`, `empty`, `expired`, `interaction_closed`.
    pub end_reason: Option<String>,
    /// Whether the call was to be recorded (the customer still had to consent).
    pub record: bool,
    /// From the first join to the end (to now while it runs), ms.
    pub call_ms: Option<i64>,
    /// From the invitation to the customer's first join, ms.
    pub waiting_ms: Option<i64>,
    /// While the agent and the customer were both in the call, ms.
    pub talking_ms: i64,
    pub participants: Vec<CallParticipant>,
    pub chat_messages: i64,
    /// The recording's first part (the whole recording unless the call moved between nodes).
    pub recording: Option<Recording>,
    /// Every part of the recording in order, each its own file with its time range (one part
    /// unless the call moved to another node while it was recorded).
    #[serde(default)]
    pub recordings: Vec<Recording>,
    /// The customer's answers to the post-call survey (also sent as `interaction.rated`).
    pub survey: Option<CallSurvey>,
    /// The latest position the customer shared in the call.
    pub location: Option<CallLocation>,
    /// The files and screenshots sent in the call, oldest first (each also a message of the
    /// interaction).
    #[serde(default)]
    pub files: Vec<CallFile>,
}

/// A file or screenshot sent in a call (docs/video.md, "Screenshots and files").
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CallFile {
    pub file_id: Uuid,
    /// The message of the interaction that carries it.
    pub message_id: Uuid,
    pub name: String,
    pub mime: String,
    pub size: i64,
    /// `/api/v1/files/{id}`, while the file exists.
    pub url: String,
    /// Who sent it: `agent`, `customer` or `supervisor`.
    pub role: String,
    pub sender_name: String,
    /// A screenshot of the call's video (a JPEG).
    pub screenshot: bool,
    /// The customer's position the hub wrote into the screenshot's EXIF.
    pub gps: Option<CallFileGps>,
    pub at: DateTime<Utc>,
}

/// A position written into a screenshot's EXIF (WGS 84).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CallFileGps {
    pub lat: f64,
    pub lon: f64,
}

/// A position the customer shared in a call (from their browser, WGS 84).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CallLocation {
    pub lat: f64,
    pub lon: f64,
    /// Metres, as the browser estimated it.
    pub accuracy_m: Option<f64>,
    /// What the geocoder found there (none when it was off or down).
    pub address: Option<String>,
    pub at: DateTime<Utc>,
}

/// The customer's answers to a call's post-call survey.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CallSurvey {
    /// 1 (worst) to 5 (best).
    pub rating: i16,
    /// The optional questions answered, in the survey's order.
    pub answers: Vec<SurveyAnswer>,
    pub submitted_at: DateTime<Utc>,
}

/// One answered question, with the question as the customer read it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SurveyAnswer {
    /// The question's id in the survey's settings.
    pub id: String,
    pub question: String,
    pub answer: String,
}

impl From<store::CallSurvey> for CallSurvey {
    fn from(s: store::CallSurvey) -> Self {
        CallSurvey {
            rating: s.rating,
            answers: s
                .answers
                .into_iter()
                .map(|a| SurveyAnswer { id: a.id, question: a.question, answer: a.answer })
                .collect(),
            submitted_at: s.submitted_at,
        }
    }
}

/// A call's quality sample.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct QualitySample {
    pub participant_id: Uuid,
    pub at: DateTime<Utc>,
    /// `good`, `fair` or `poor` (the worst of the sample's 10 s).
    pub level: String,
    pub loss_pct: f32,
    pub jitter_ms: f32,
    pub rtt_ms: Option<f32>,
    pub bitrate_in_kbps: f32,
    pub bitrate_out_kbps: f32,
}

/// A chat message of a call.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChatLine {
    pub participant_id: Uuid,
    pub role: String,
    pub name: String,
    pub text: String,
    pub at: DateTime<Utc>,
}

/// A call with its quality samples and chat.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CallDetail {
    #[serde(flatten)]
    pub call: Call,
    pub samples: Vec<QualitySample>,
    pub chat: Vec<ChatLine>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CallList {
    pub items: Vec<Call>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CallPage {
    pub items: Vec<Call>,
    /// Pass as `cursor` (with the same `from`, `to` and `agent`) for the next page; absent on
    /// the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// What one kind of file holds, and the file server's settings for it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StorageKind {
    /// `chat` (what messages carry) or `recording` (video calls).
    pub kind: String,
    pub files: i64,
    pub bytes: i64,
    /// The kind's disk quota; absent: none.
    pub quota_bytes: Option<i64>,
    /// `bytes / quota_bytes`, in percent.
    pub used_pct: Option<f64>,
    /// Files older than this are deleted; absent: kept forever.
    pub retention_days: Option<i32>,
    /// When a file server last published these settings.
    pub settings_at: Option<DateTime<Utc>>,
    /// Uploads refused over the quota, ever, and the last one.
    pub refused: i64,
    pub last_refused_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Storage {
    pub kinds: Vec<StorageKind>,
}

/// Whether a queue's video calls are recorded (a call started with `record` decides for itself).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueueVideo {
    pub record: bool,
}

ops::no_strings!(QueueVideo);

impl From<store::Recording> for Recording {
    fn from(r: store::Recording) -> Self {
        Recording {
            id: r.id,
            part: r.part,
            state: r.state.as_str().to_owned(),
            started_at: r.started_at,
            ended_at: r.ended_at,
            duration_ms: r.duration_ms,
            file: r.file.map(|f| FileRef { id: f.id, name: f.name, mime: f.mime, size: f.size, url: f.url }),
            video_codec: r.video_codec,
            error: r.error,
            ready_at: r.ready_at,
            deleted_at: r.deleted_at,
        }
    }
}

impl From<store::CallRecord> for Call {
    fn from(c: store::CallRecord) -> Self {
        let room = c.room;
        Call {
            room_id: room.id,
            interaction_id: room.interaction_id,
            agent: room.agent,
            mode: room.mode.as_str().to_owned(),
            quality: room.quality.as_str().to_owned(),
            state: room.state.as_str().to_owned(),
            created_at: room.created_at,
            ended_at: room.ended_at,
            end_reason: room.end_reason,
            record: room.record,
            call_ms: c.call_ms,
            waiting_ms: c.waiting_ms,
            talking_ms: c.talking_ms,
            participants: c
                .participants
                .into_iter()
                .map(|p| CallParticipant {
                    id: p.id,
                    role: p.role,
                    login: p.login,
                    name: p.name,
                    joined_at: p.joined_at,
                    connected_at: p.connected_at,
                    left_at: p.left_at,
                    left_reason: p.left_reason,
                    user_agent: p.user_agent,
                    browser: p.browser,
                    os: p.os,
                    device: p.device,
                    camera: p.camera,
                    microphone: p.microphone,
                    ice_path: p.ice_path,
                    recording_consent: p.recording_consent,
                    consented_at: p.consented_at,
                    quality: QualitySummary {
                        samples: p.quality.samples,
                        good: p.quality.good,
                        fair: p.quality.fair,
                        poor: p.quality.poor,
                        loss_avg_pct: p.quality.loss_avg_pct,
                        loss_max_pct: p.quality.loss_max_pct,
                        jitter_avg_ms: p.quality.jitter_avg_ms,
                        rtt_avg_ms: p.quality.rtt_avg_ms,
                        rtt_max_ms: p.quality.rtt_max_ms,
                        bitrate_in_avg_kbps: p.quality.bitrate_in_avg_kbps,
                        bitrate_out_avg_kbps: p.quality.bitrate_out_avg_kbps,
                    },
                })
                .collect(),
            chat_messages: c.chat_messages,
            recording: c.recording.map(Into::into),
            recordings: c.recordings.into_iter().map(Into::into).collect(),
            survey: c.survey.map(Into::into),
            location: c.location.map(|l| CallLocation {
                lat: l.lat,
                lon: l.lon,
                accuracy_m: l.accuracy_m,
                address: l.address,
                at: l.at,
            }),
            files: c
                .files
                .into_iter()
                .map(|f| CallFile {
                    file_id: f.file_id,
                    message_id: f.message_id,
                    url: schema::domain::FileRef::url_for(f.file_id),
                    name: f.name,
                    mime: f.mime,
                    size: f.size,
                    role: f.role,
                    sender_name: f.sender_name,
                    screenshot: f.screenshot,
                    gps: f.gps.map(|g| CallFileGps { lat: g.lat, lon: g.lon }),
                    at: f.at,
                })
                .collect(),
        }
    }
}

// ---------------------------------------------------------------- handlers --

/// The video calls of an interaction, newest first, with their recordings.
#[utoipa::path(
    get,
    path = "/api/v1/interactions/{id}/calls",
    operation_id = "calls_of_interaction",
    tag = "calls",
    params(("id" = Uuid, Path, description = "Interaction id")),
    responses(
        (status = 200, description = "The interaction's calls (none: an empty list)", body = CallList),
        (status = 400, description = "The id is not a UUID", body = ErrorBody),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 403, description = "Lacks `interactions:read`", body = ErrorBody),
    ),
    security(("bearer" = ["interactions:read"]))
)]
pub async fn of_interaction(
    principal: Principal,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<CallList>, ApiError> {
    principal.require(Scope::InteractionsRead)?;
    let id = parse_uuid("id", &id)?;
    let mut conn = state.pool.acquire().await?;
    let calls = store::calls_of_interaction(&mut conn, id).await?;
    Ok(Json(CallList { items: calls.into_iter().map(Into::into).collect() }))
}

/// The period and filter of the call listing and exports.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CallParams {
    /// Calls started from this time, inclusive (RFC 3339).
    #[param(required = true, value_type = String, format = DateTime, example = "2024-05-01T00:00:00Z")]
    pub from: Option<String>,
    /// ... to this time, exclusive (RFC 3339).
    #[param(required = true, value_type = String, format = DateTime, example = "2024-05-02T00:00:00Z")]
    pub to: Option<String>,
    /// Only the calls this agent started.
    pub agent: Option<String>,
    /// Page size, 1 to `loader.max_page_size`; 100 when absent (the listing only).
    #[param(value_type = Option<u32>, minimum = 1)]
    pub limit: Option<String>,
    /// `next_cursor` of the previous page (the listing only).
    pub cursor: Option<String>,
}

impl Validate for CallParams {
    fn validate(&self) -> Result<(), InputError> {
        check_opt("agent", Kind::Key, self.agent.as_deref())
    }
}

impl CallParams {
    fn period(&self) -> Result<(DateTime<Utc>, DateTime<Utc>), ApiError> {
        let from = required_time("from", self.from.as_deref())?;
        let to = required_time("to", self.to.as_deref())?;
        if from >= to {
            return Err(ApiError::bad_request("the period is empty or reversed: from must be before to"));
        }
        Ok((from, to))
    }
}

fn call_cursor(c: &Call) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!(
        "c:{}:{}",
        c.created_at.timestamp_micros(),
        c.room_id
    ))
}

fn parse_call_cursor(cursor: &str) -> Result<(DateTime<Utc>, Uuid), ApiError> {
    use base64::Engine;
    let bad = || ApiError::bad_request("bad cursor: pass back the next_cursor of the previous page unchanged");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(cursor.trim()).map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let mut parts = text.strip_prefix("c:").ok_or_else(bad)?.splitn(2, ':');
    let micros: i64 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
    let id: Uuid = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
    Ok((DateTime::from_timestamp_micros(micros).ok_or_else(bad)?, id))
}

/// Video calls started in a period, oldest first, paged by cursor.
#[utoipa::path(
    get,
    path = "/api/v1/calls",
    operation_id = "list_calls",
    tag = "calls",
    params(CallParams),
    responses(
        (status = 200, description = "One page", body = CallPage),
        (status = 400, description = "A missing, malformed or reversed period, a bad filter or cursor", body = ErrorBody),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 403, description = "Lacks `interactions:read`", body = ErrorBody),
    ),
    security(("bearer" = ["interactions:read"]))
)]
pub async fn list(
    principal: Principal,
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<CallParams>,
) -> Result<Json<CallPage>, ApiError> {
    principal.require(Scope::InteractionsRead)?;
    let (from, to) = params.period()?;
    let limit = page_limit(params.limit.as_deref(), state.config.max_page_size)?;
    let after = params.cursor.as_deref().map(parse_call_cursor).transpose()?;
    let mut conn = state.pool.acquire().await?;
    let rows = store::calls_in_period(&mut conn, from, to, after, params.agent.as_deref(), limit + 1).await?;
    let (rows, more) = split_page(rows, limit);
    let items: Vec<Call> = rows.into_iter().map(Into::into).collect();
    let next_cursor = if more { items.last().map(call_cursor) } else { None };
    Ok(Json(CallPage { items, next_cursor }))
}

/// One video call, with its quality samples and chat.
#[utoipa::path(
    get,
    path = "/api/v1/calls/{id}",
    operation_id = "get_call",
    tag = "calls",
    params(("id" = Uuid, Path, description = "The call's room id")),
    responses(
        (status = 200, description = "The call", body = CallDetail),
        (status = 400, description = "The id is not a UUID", body = ErrorBody),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 403, description = "Lacks `interactions:read`", body = ErrorBody),
        (status = 404, description = "No such call", body = ErrorBody),
    ),
    security(("bearer" = ["interactions:read"]))
)]
pub async fn get_one(
    principal: Principal,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<CallDetail>, ApiError> {
    principal.require(Scope::InteractionsRead)?;
    let id = parse_uuid("id", &id)?;
    let mut conn = state.pool.acquire().await?;
    let call = store::call_record(&mut conn, id).await?;
    let samples = store::call_quality_samples(&mut conn, id).await?;
    let chat = store::call_chat(&mut conn, id).await?;
    Ok(Json(CallDetail {
        call: call.into(),
        samples: samples
            .into_iter()
            .map(|s| QualitySample {
                participant_id: s.participant_id,
                at: s.at,
                level: s.level,
                loss_pct: s.loss_pct,
                jitter_ms: s.jitter_ms,
                rtt_ms: s.rtt_ms,
                bitrate_in_kbps: s.bitrate_in_kbps,
                bitrate_out_kbps: s.bitrate_out_kbps,
            })
            .collect(),
        chat: chat
            .into_iter()
            .map(|l| ChatLine { participant_id: l.participant_id, role: l.role, name: l.name, text: l.text, at: l.at })
            .collect(),
    }))
}

// ---------------------------------------------------------------- exports --

/// The columns of the call exports.
pub const COLUMNS: [&str; 38] = [
    "room_id",
    "interaction_id",
    "agent",
    "mode",
    "quality",
    "created_at",
    "ended_at",
    "end_reason",
    "call_s",
    "waiting_s",
    "talking_s",
    "participants",
    "customer_browser",
    "customer_os",
    "customer_device",
    "customer_camera",
    "customer_microphone",
    "customer_ice_path",
    "customer_loss_avg_pct",
    "customer_rtt_avg_ms",
    "customer_poor_samples",
    "agent_browser",
    "agent_ice_path",
    "agent_loss_avg_pct",
    "agent_rtt_avg_ms",
    "chat_messages",
    "recording_consent",
    "recording_state",
    "recording_duration_s",
    "recording_file_id",
    "survey_rating",
    "survey_answers",
    "survey_submitted_at",
    "customer_lat",
    "customer_lon",
    "customer_address",
    "recording_parts",
    "recording_file_ids",
];

enum Cell {
    Text(String),
    Number(Option<f64>),
    Time(Option<DateTime<Utc>>),
}

fn cells(c: &Call) -> Vec<Cell> {
    let first = |role: &str| c.participants.iter().find(|p| p.role == role);
    let customer = first("customer");
    let agent = first("agent");
    let text = |s: Option<&str>| Cell::Text(s.unwrap_or_default().to_owned());
    let flag = |b: Option<bool>| Cell::Text(b.map(|b| b.to_string()).unwrap_or_default());
    let secs = |ms: Option<i64>| Cell::Number(ms.map(|ms| ms as f64 / 1000.0));
    vec![
        Cell::Text(c.room_id.to_string()),
        Cell::Text(c.interaction_id.to_string()),
        Cell::Text(c.agent.clone()),
        Cell::Text(c.mode.clone()),
        Cell::Text(c.quality.clone()),
        Cell::Time(Some(c.created_at)),
        Cell::Time(c.ended_at),
        text(c.end_reason.as_deref()),
        secs(c.call_ms),
        secs(c.waiting_ms),
        secs(Some(c.talking_ms)),
        Cell::Number(Some(c.participants.len() as f64)),
        text(customer.and_then(|p| p.browser.as_deref())),
        text(customer.and_then(|p| p.os.as_deref())),
        text(customer.and_then(|p| p.device.as_deref())),
        flag(customer.and_then(|p| p.camera)),
        flag(customer.and_then(|p| p.microphone)),
        text(customer.and_then(|p| p.ice_path.as_deref())),
        Cell::Number(customer.and_then(|p| p.quality.loss_avg_pct)),
        Cell::Number(customer.and_then(|p| p.quality.rtt_avg_ms)),
        Cell::Number(customer.map(|p| p.quality.poor as f64)),
        text(agent.and_then(|p| p.browser.as_deref())),
        text(agent.and_then(|p| p.ice_path.as_deref())),
        Cell::Number(agent.and_then(|p| p.quality.loss_avg_pct)),
        Cell::Number(agent.and_then(|p| p.quality.rtt_avg_ms)),
        Cell::Number(Some(c.chat_messages as f64)),
        flag(customer.and_then(|p| p.recording_consent)),
        text(c.recording.as_ref().map(|r| r.state.as_str())),
        secs(c.recording.as_ref().and_then(|r| r.duration_ms)),
        text(c.recording.as_ref().and_then(|r| r.file.as_ref()).map(|f| f.id.to_string()).as_deref()),
        Cell::Number(c.survey.as_ref().map(|s| f64::from(s.rating))),
        Cell::Text(c.survey.as_ref().map(survey_text).unwrap_or_default()),
        Cell::Time(c.survey.as_ref().map(|s| s.submitted_at)),
        // six decimals (about 10 cm): the numbers' three would blur the position to 100 m
        Cell::Text(c.location.as_ref().map(|l| format!("{:.6}", l.lat)).unwrap_or_default()),
        Cell::Text(c.location.as_ref().map(|l| format!("{:.6}", l.lon)).unwrap_or_default()),
        Cell::Text(c.location.as_ref().and_then(|l| l.address.clone()).unwrap_or_default()),
        Cell::Number(Some(c.recordings.len() as f64)),
        Cell::Text(
            c.recordings.iter().filter_map(|r| r.file.as_ref().map(|f| f.id.to_string())).collect::<Vec<_>>().join(" "),
        ),
    ]
}

/// A survey's answers in one cell: `question: answer` lines.
fn survey_text(s: &CallSurvey) -> String {
    s.answers.iter().map(|a| format!("{}: {}", a.question, a.answer)).collect::<Vec<_>>().join("\n")
}

/// Fetches the export's calls a batch at a time.
struct Batches {
    pool: sqlx::PgPool,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    agent: Option<String>,
    after: Option<(DateTime<Utc>, Uuid)>,
    size: i64,
    done: bool,
}

impl Batches {
    async fn next(&mut self) -> Result<Option<Vec<Call>>, ApiError> {
        if self.done {
            return Ok(None);
        }
        let mut conn = self.pool.acquire().await?;
        let rows =
            store::calls_in_period(&mut conn, self.from, self.to, self.after, self.agent.as_deref(), self.size).await?;
        self.done = (rows.len() as i64) < self.size;
        self.after = rows.last().map(|c| (c.room.created_at, c.room.id));
        Ok(if rows.is_empty() { None } else { Some(rows.into_iter().map(Into::into).collect()) })
    }
}

fn start(state: &AppState, params: &CallParams) -> Result<Batches, ApiError> {
    let (from, to) = params.period()?;
    Ok(Batches {
        pool: state.pool.clone(),
        from,
        to,
        agent: params.agent.clone(),
        after: None,
        size: i64::from(state.config.export_batch.min(500)),
        done: false,
    })
}

fn filename(b: &Batches, ext: &str) -> String {
    let fmt = "%Y%m%dT%H%M%SZ";
    format!("calls-{}-{}.{ext}", b.from.format(fmt), b.to.format(fmt))
}

/// The calls of a period as CSV (UTF-8, a header row, times RFC 3339 UTC, durations in seconds),
/// streamed.
#[utoipa::path(
    get,
    path = "/api/v1/exports/calls.csv",
    operation_id = "export_calls_csv",
    tag = "exports",
    params(CallParams),
    responses(
        (status = 200, description = "The calls started in the period, one per row, oldest first", content_type = "text/csv", body = String),
        (status = 400, description = "A missing, malformed or reversed period, or a bad filter", body = ErrorBody),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 403, description = "Lacks `interactions:read`", body = ErrorBody),
    ),
    security(("bearer" = ["interactions:read"]))
)]
pub async fn csv(
    principal: Principal,
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<CallParams>,
) -> Result<Response, ApiError> {
    principal.require(Scope::InteractionsRead)?;
    let mut batches = start(&state, &params)?;
    let name = filename(&batches, "csv");
    let first = batches.next().await?;
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::spawn(async move {
        let mut batch = first;
        let mut header = true;
        loop {
            let mut out = csv::Writer::from_writer(Vec::new());
            if header {
                let _ = out.write_record(COLUMNS);
                header = false;
            }
            for call in batch.iter().flatten() {
                let record: Vec<String> = cells(call)
                    .into_iter()
                    .map(|cell| match cell {
                        Cell::Text(s) => super::exports::csv_safe(&s).into_owned(),
                        Cell::Number(n) => n.map(|n| format!("{}", (n * 1000.0).round() / 1000.0)).unwrap_or_default(),
                        Cell::Time(t) => {
                            t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)).unwrap_or_default()
                        }
                    })
                    .collect();
                let _ = out.write_record(&record);
            }
            let bytes = out.into_inner().unwrap_or_default();
            if tx.send(Ok(Bytes::from(bytes))).await.is_err() || batch.is_none() {
                return;
            }
            batch = match batches.next().await {
                Ok(Some(rows)) => Some(rows),
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(error = ?e, "calls CSV export stopped by a database error");
                    let _ = tx.send(Err(std::io::Error::other("export failed"))).await;
                    return;
                }
            };
        }
    });
    let body = Body::from_stream(futures::stream::unfold(rx, |mut rx| async { rx.recv().await.map(|i| (i, rx)) }));
    Ok(super::exports::attachment(super::exports::CSV, &name, body))
}

/// The calls of a period as an Excel workbook (one sheet, a header row, times as Excel dates in
/// UTC, durations in seconds).
#[utoipa::path(
    get,
    path = "/api/v1/exports/calls.xlsx",
    operation_id = "export_calls_xlsx",
    tag = "exports",
    params(CallParams),
    responses(
        (status = 200, description = "The calls started in the period, one per row, oldest first",
         content_type = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", body = crate::model::XlsxFile),
        (status = 400, description = "A missing, malformed or reversed period, or a bad filter", body = ErrorBody),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 403, description = "Lacks `interactions:read`", body = ErrorBody),
    ),
    security(("bearer" = ["interactions:read"]))
)]
pub async fn xlsx(
    principal: Principal,
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<CallParams>,
) -> Result<Response, ApiError> {
    principal.require(Scope::InteractionsRead)?;
    let mut batches = start(&state, &params)?;
    let name = filename(&batches, "xlsx");
    let (tx, rx) = mpsc::channel::<Vec<Call>>(2);
    let writer = tokio::task::spawn_blocking(move || write_workbook(rx));
    let fetched = async {
        while let Some(rows) = batches.next().await? {
            if tx.send(rows).await.is_err() {
                break;
            }
        }
        Ok::<_, ApiError>(())
    }
    .await;
    drop(tx);
    let written = writer.await.map_err(|_| ApiError::internal())?;
    fetched?;
    let file = written.map_err(|e| {
        tracing::warn!(error = %e, "cannot write the calls Excel export");
        ApiError::internal()
    })?;
    let handle = file.reopen().map_err(|_| ApiError::internal())?;
    drop(file);
    let stream = tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(handle));
    Ok(super::exports::attachment(super::exports::XLSX, &name, Body::from_stream(stream)))
}

fn write_workbook(mut rx: mpsc::Receiver<Vec<Call>>) -> Result<tempfile::NamedTempFile, rust_xlsxwriter::XlsxError> {
    use rust_xlsxwriter::{Format, Workbook};
    let mut workbook = Workbook::new();
    let bold = Format::new().set_bold();
    let time = Format::new().set_num_format("yyyy-mm-dd hh:mm:ss");
    {
        let sheet = workbook.add_worksheet_with_constant_memory()?;
        sheet.set_name("calls")?;
        for (col, name) in COLUMNS.iter().enumerate() {
            sheet.write_string_with_format(0, col as u16, *name, &bold)?;
            sheet.set_column_width(col as u16, if name.ends_with("_id") || name.ends_with("_at") { 24 } else { 14 })?;
        }
        sheet.set_freeze_panes(1, 0)?;
        let mut row: u32 = 1;
        'batches: while let Some(calls) = rx.blocking_recv() {
            for call in &calls {
                if row >= 1_048_576 {
                    break 'batches;
                }
                for (col, cell) in cells(call).into_iter().enumerate() {
                    match cell {
                        Cell::Text(s) if !s.is_empty() => {
                            sheet.write_string(row, col as u16, s)?;
                        }
                        Cell::Number(Some(n)) => {
                            sheet.write_number(row, col as u16, n)?;
                        }
                        Cell::Time(Some(t)) => {
                            sheet.write_datetime_with_format(row, col as u16, t.naive_utc(), &time)?;
                        }
                        _ => {}
                    }
                }
                row += 1;
            }
        }
    }
    let file = tempfile::NamedTempFile::new()?;
    workbook.save(file.path())?;
    Ok(file)
}

// ---------------------------------------------------------------- admin --

/// The disk used by each kind of file, its quota, its retention and the uploads refused over
/// the quota.
#[utoipa::path(
    get,
    path = "/api/v1/storage",
    operation_id = "get_storage",
    tag = "admin",
    responses(
        (status = 200, description = "Every kind of file", body = Storage),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 403, description = "Lacks `admin:read`", body = ErrorBody),
    ),
    security(("bearer" = ["admin:read"]))
)]
pub async fn storage(principal: Principal, State(state): State<AppState>) -> Result<Json<Storage>, ApiError> {
    principal.require(Scope::AdminRead)?;
    let mut conn = state.pool.acquire().await?;
    let kinds = store::file_usage(&mut conn)
        .await?
        .into_iter()
        .map(|u| StorageKind {
            kind: u.kind.as_str().to_owned(),
            files: u.files,
            bytes: u.bytes,
            quota_bytes: u.quota_bytes,
            used_pct: u.quota_bytes.map(|q| (u.bytes as f64 * 1000.0 / q as f64).round() / 10.0),
            retention_days: u.retention_days,
            settings_at: u.settings_at,
            refused: u.refused,
            last_refused_at: u.last_refused_at,
        })
        .collect();
    Ok(Json(Storage { kinds }))
}

/// Whether a queue's video calls are recorded.
#[utoipa::path(
    get,
    path = "/api/v1/queues/{name}/video",
    operation_id = "get_queue_video",
    tag = "admin",
    params(("name" = String, Path, description = "Queue name")),
    responses(
        (status = 200, description = "The queue's video settings (not recorded unless set)", body = QueueVideo),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 403, description = "Lacks `admin:read`", body = ErrorBody),
        (status = 404, description = "No such queue", body = ErrorBody),
    ),
    security(("bearer" = ["admin:read"]))
)]
pub async fn get_queue_video(
    principal: Principal,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<QueueVideo>, ApiError> {
    principal.require(Scope::AdminRead)?;
    let mut conn = state.pool.acquire().await?;
    store::get_queue(&mut conn, &name).await?;
    let record = store::video_queue_settings(&mut conn).await?.into_iter().any(|(q, r)| q == name && r);
    Ok(Json(QueueVideo { record }))
}

/// Sets whether a queue's video calls are recorded (the customer is asked to consent).
#[utoipa::path(
    put,
    path = "/api/v1/queues/{name}/video",
    operation_id = "put_queue_video",
    tag = "admin",
    params(("name" = String, Path, description = "Queue name")),
    request_body = QueueVideo,
    responses(
        (status = 200, description = "The queue's video settings as they are now", body = QueueVideo),
        (status = 400, description = "A bad body", body = ErrorBody),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 403, description = "Lacks `admin:write`", body = ErrorBody),
        (status = 404, description = "No such queue", body = ErrorBody),
    ),
    security(("bearer" = ["admin:write"]))
)]
pub async fn put_queue_video(
    principal: Principal,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<QueueVideo>,
) -> Result<Json<QueueVideo>, ApiError> {
    principal.require(Scope::AdminWrite)?;
    let mut tx = state.pool.begin().await?;
    store::put_video_queue_setting(&mut tx, &name, body.record).await?;
    let entry = AuditEntry {
        actor: &principal.actor,
        action: "queue.video",
        target_kind: "queue",
        target_id: &name,
        details: json!({ "record": body.record }),
    };
    store::record_audit(&mut tx, &entry).await?;
    tx.commit().await?;
    Ok(Json(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_cursors_round_trip() {
        let call = Call {
            room_id: Uuid::now_v7(),
            interaction_id: Uuid::now_v7(),
            agent: "alice".into(),
            mode: "two_way".into(),
            quality: "720p".into(),
            state: "ended".into(),
            created_at: DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
            ended_at: None,
            end_reason: None,
            record: false,
            call_ms: None,
            waiting_ms: None,
            talking_ms: 0,
            participants: vec![],
            chat_messages: 0,
            recording: None,
            recordings: Vec::new(),
            survey: None,
            location: None,
            files: vec![],
        };
        assert_eq!(parse_call_cursor(&call_cursor(&call)).unwrap(), (call.created_at, call.room_id));
        assert!(parse_call_cursor("nope").is_err());
        assert_eq!(cells(&call).len(), COLUMNS.len());
    }
}
