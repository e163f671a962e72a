//! The outbound half of the runtime: the leader's outbox worker.
//!
//! One task per account leader. It wakes on the account's doorbell (`account/<id>`, rung by the
//! chatserver after queueing work), reads pending rows from PostgreSQL into a [`Backlog`], and
//! starts each row when its chat is free and the [`Pacer`] gives a token. A started row is
//! **claimed** first (attempts + 1 and the leader's fencing token on the row, in a fenced
//! transaction), performed as one or more platform requests, and its outcome stored in another
//! fenced transaction, which also appends `message.status` for the agents; their doorbells ring
//! after that commit.
//!
//! - Text over the channel's maximum is split at word boundaries; a file over its kind's
//!   maximum fails the message with an error naming the limit, before anything is sent.
//! - A 429 sets the row's `not_before` to the platform's `retry_after`; network errors and 5xx
//!   back off exponentially; a permanent error fails the row with the platform's reason.
//! - A deposed leader's claim or result is refused by the fence, and the worker stops.
//! - The window between a claim's commit and the outcome's commit is the in-doubt window: a
//!   leader that dies inside it leaves the row pending with its token, and the next leader sends
//!   it again (Telegram has no idempotency key). The next leader counts and logs such rows.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use coord::Coordinator;
use schema::domain::{Channel, FileRef, Limits, Message, OutboxAction};
use schema::store::{self, Announced, OutboxItem, OutboxOutcome, StoreError};
use schema::topics;
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use uuid::Uuid;

use crate::backlog::{Backlog, Finished, Step};
use crate::files::FileServer;
use crate::pacing::{Pacer, backoff};
use crate::platform::{OutFile, Outbound, Part, SendError};
use crate::split::{split_text, text_len};

/// Rows held in memory at most; the rest wait in PostgreSQL.
const WINDOW: i64 = 2000;
/// How often rows that became visible behind the cursor are looked for, and the gauge updated.
const RESCAN_EVERY: Duration = Duration::from_secs(5);
/// How often the backlog gauge is refreshed at most (it is also refreshed on every rescan).
const GAUGE_EVERY: Duration = Duration::from_secs(1);
/// How long storing an outcome is retried before the row is left in doubt.
const RECORD_PATIENCE: Duration = Duration::from_secs(30);
/// How long a stopping worker waits for requests in flight.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// What the outbox worker of one account works with.
#[derive(Clone)]
pub struct OutboxConfig {
    pub pool: PgPool,
    pub coord: Arc<dyn Coordinator>,
    pub account_id: Uuid,
    pub channel: Channel,
    pub limits: Limits,
    pub platform: Arc<dyn Outbound>,
    pub files: FileServer,
    pub pacer: crate::pacing::PacerConfig,
    pub max_in_flight: usize,
}

/// Why the worker stopped on its own.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("deposed: {0}")]
    Deposed(String),
    #[error("cannot subscribe to the account's doorbell: {0}")]
    Coord(#[from] coord::CoordError),
}

struct Held {
    item: OutboxItem,
    /// Platform ids of the parts already sent in earlier attempts by this leader.
    progress: Vec<String>,
}

struct Report {
    id: i64,
    how: Finished,
    progress: Vec<String>,
    deposed: bool,
}

/// A part of an outbound message as planned before sending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub text: Option<String>,
    pub file: Option<FileRef>,
    pub keyboard: bool,
    pub reply: bool,
}

/// How a message goes out on a channel with `limits`: text split into parts at word
/// boundaries, a short text as the first file's caption, buttons on the last part, the reply
/// reference on the first. Refuses a file over its kind's limit, naming the limit.
pub fn plan_send(message: &Message, channel: Channel, limits: &Limits) -> Result<Vec<Planned>, String> {
    for file in &message.files {
        let (max, kind) = limits.max_file_bytes.for_mime(&file.mime);
        if u64::try_from(file.size).unwrap_or(u64::MAX) > max {
            return Err(format!(
                "file {:?} is {}, over the limit of {} for {kind} on {channel}",
                file.name,
                human_size(file.size as u64),
                human_size(max)
            ));
        }
    }
    let text = message.text.as_deref().filter(|t| !t.trim().is_empty());
    let mut parts: Vec<Planned> = Vec::new();
    let caption = match text {
        Some(t) if !message.files.is_empty() && text_len(t) <= limits.max_caption_chars => Some(t.to_owned()),
        Some(t) => {
            parts.extend(split_text(t, limits.max_text_chars).into_iter().map(|p| Planned {
                text: Some(p),
                file: None,
                keyboard: false,
                reply: false,
            }));
            None
        }
        None => None,
    };
    for (i, file) in message.files.iter().enumerate() {
        parts.push(Planned {
            text: if i == 0 { caption.clone() } else { None },
            file: Some(file.clone()),
            keyboard: false,
            reply: false,
        });
    }
    if parts.is_empty() {
        // no text and no file: the platform's own error says what is wrong
        parts.push(Planned { text: Some(String::new()), file: None, keyboard: false, reply: false });
    }
    parts[0].reply = true;
    parts.last_mut().expect("at least one part").keyboard = true;
    Ok(parts)
}

/// `48213` -> `"47.1 KB"`, `10485760` -> `"10 MB"`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["bytes", "KB", "MB", "GB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else if value.fract() < 0.05 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

struct Ctx {
    config: OutboxConfig,
    token: i64,
    origin: Instant,
    pacer: Mutex<Pacer>,
}

impl Ctx {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    /// Waits for a token for one more request to `chat` (the first request of a row gets its
    /// token when the row starts).
    async fn pace(&self, chat: &str) {
        loop {
            let now = self.now();
            // std mutex: a few arithmetic operations, never held across an await
            let verdict = self.pacer.lock().unwrap_or_else(|e| e.into_inner()).try_take(now, chat);
            match verdict {
                Ok(()) => return,
                Err(at) => tokio::time::sleep_until(self.origin + at).await,
            }
        }
    }

    fn account_label(&self) -> String {
        self.config.account_id.to_string()
    }
}

/// Runs the worker until `stop` is cancelled or the fence says this leader was deposed.
pub async fn run(config: OutboxConfig, token: i64, stop: CancellationToken) -> Result<(), WorkerError> {
    let mut bell = config.coord.subscribe(&topics::account(config.account_id)).await?;
    let ctx = Arc::new(Ctx { pacer: Mutex::new(Pacer::new(config.pacer)), config, token, origin: Instant::now() });
    let account = ctx.config.account_id;
    info!(%account, token, "outbox worker started");
    let (report_tx, mut reports) = mpsc::unbounded_channel::<Report>();
    let mut backlog: Backlog<Held> = Backlog::new();
    let mut read_new = true;
    // whether the last read stopped at the window's edge, rows waiting behind it
    let mut more_in_store = false;
    let mut rescan_at = Instant::now();
    let mut gauge_at = Instant::now();
    let result = loop {
        if read_new || Instant::now() >= rescan_at {
            let rescan = Instant::now() >= rescan_at;
            match refill(&ctx, &mut backlog, rescan, &mut gauge_at).await {
                Ok(more) => {
                    read_new = false;
                    more_in_store = more;
                    if rescan {
                        rescan_at = Instant::now() + RESCAN_EVERY;
                    }
                }
                Err(e) => {
                    warn!(%account, error = %e, "cannot read the outbox; trying again in a second");
                    tokio::select! {
                        _ = stop.cancelled() => break Ok(()),
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
            }
        }

        // start what may start
        let mut started = Vec::new();
        let wait = loop {
            let now = ctx.now();
            let step = {
                let mut pacer = ctx.pacer.lock().unwrap_or_else(|e| e.into_inner());
                pacer.forget_idle(now);
                backlog.next(now, &mut pacer, ctx.config.max_in_flight)
            };
            match step {
                Step::Start(id) => started.push(id),
                Step::WaitUntil(at) => break Some(at),
                Step::Idle => break None,
            }
        };
        if !started.is_empty() {
            match claim(&ctx, &started).await {
                Ok(claimed) => {
                    for id in started {
                        if !claimed.contains(&id) {
                            // finished meanwhile (by this leader's earlier attempt)
                            backlog.finish(id, Finished::Removed);
                            continue;
                        }
                        let held = backlog.get_mut(id).expect("a started row is held");
                        held.item.attempts += 1;
                        let item = held.item.clone();
                        let progress = held.progress.clone();
                        let ctx = ctx.clone();
                        let report_tx = report_tx.clone();
                        tokio::spawn(async move {
                            let report = perform(&ctx, item, progress).await;
                            let _ = report_tx.send(report);
                        });
                    }
                }
                Err(StoreError::StaleFence { current, .. }) => {
                    break Err(WorkerError::Deposed(format!("token {token} is older than {current}")));
                }
                Err(e) => {
                    warn!(%account, error = %e, "cannot claim outbox rows; trying again in a second");
                    for id in started {
                        backlog.finish(id, Finished::RetryAt(ctx.now() + Duration::from_secs(1)));
                    }
                }
            }
            continue;
        }

        let sleep = async {
            match wait {
                Some(at) => tokio::time::sleep_until(ctx.origin + at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = stop.cancelled() => break Ok(()),
            woke = bell.wake() => {
                if let Err(e) = woke {
                    break Err(e.into());
                }
                read_new = true;
            }
            Some(report) = reports.recv() => {
                if report.deposed {
                    break Err(WorkerError::Deposed("the fence refused an outcome".into()));
                }
                if let Some(held) = backlog.get_mut(report.id) {
                    held.progress = report.progress;
                }
                backlog.finish(report.id, report.how);
                if more_in_store && (backlog.len() as i64) < WINDOW / 2 {
                    read_new = true;
                }
            }
            _ = tokio::time::sleep_until(rescan_at) => {}
            _ = sleep => {}
        }
    };
    // let requests in flight finish and record their outcome (a deposed leader's records are
    // refused by the fence anyway)
    let deadline = Instant::now() + STOP_GRACE;
    let mut left = backlog.in_flight();
    while left > 0 {
        match tokio::time::timeout_at(deadline, reports.recv()).await {
            Ok(Some(_)) => left -= 1,
            _ => break,
        }
    }
    if left > 0 {
        warn!(%account, left, "stopped with requests in flight; their rows stay pending (in doubt)");
    }
    info!(%account, token, "outbox worker stopped");
    result
}

/// Reads pending rows into the backlog: those after the cursor, and on `rescan` also rows
/// that became visible behind it; refreshes the backlog gauge at most once per `GAUGE_EVERY`.
/// Returns whether more rows wait after the cursor.
async fn refill(
    ctx: &Ctx,
    backlog: &mut Backlog<Held>,
    rescan: bool,
    gauge_at: &mut Instant,
) -> Result<bool, StoreError> {
    let account = ctx.config.account_id;
    let mut conn = ctx.config.pool.acquire().await?;
    let room = (WINDOW - backlog.len() as i64).max(0);
    let mut more = false;
    let mut found: Vec<OutboxItem> = Vec::new();
    if rescan && backlog.cursor() > 0 {
        let behind = store::pending_outbox(&mut conn, account, 0, WINDOW).await?;
        found.extend(behind.into_iter().filter(|i| i.id <= backlog.cursor() && !backlog.contains(i.id)));
    }
    if room > 0 {
        let after = store::pending_outbox(&mut conn, account, backlog.cursor(), room).await?;
        more = after.len() as i64 == room;
        found.extend(after);
    }
    if Instant::now() >= *gauge_at {
        let pending = store::outbox_backlog(&mut conn, account).await?;
        metrics::gauge!("switchboard_outbox_backlog", "account" => ctx.account_label()).set(pending as f64);
        *gauge_at = Instant::now() + GAUGE_EVERY;
    }
    drop(conn);
    let mut in_doubt = Vec::new();
    let now = ctx.now();
    let wall = Utc::now();
    for item in found {
        if item.attempts > 0 && item.fencing_token.is_some_and(|t| t < ctx.token) {
            in_doubt.push(item.id);
        }
        let wait = (item.not_before - wall).to_std().unwrap_or(Duration::ZERO);
        let chat = item.chat_id.clone();
        let id = item.id;
        backlog.push(id, &chat, now + wait, Held { item, progress: Vec::new() });
    }
    if !in_doubt.is_empty() {
        metrics::counter!("switchboard_outbox_in_doubt_total", "account" => ctx.account_label())
            .increment(in_doubt.len() as u64);
        warn!(
            %account,
            rows = ?in_doubt,
            "rows attempted by an earlier leader and never finished: sending them again (the platform may have them already)"
        );
    }
    debug!(%account, held = backlog.len(), more, "outbox read");
    Ok(more)
}

async fn claim(ctx: &Ctx, ids: &[i64]) -> Result<HashSet<i64>, StoreError> {
    let mut tx = ctx.config.pool.begin().await?;
    let claimed = store::claim_outbox(&mut tx, ctx.config.account_id, ctx.token, ids).await?;
    tx.commit().await?;
    Ok(claimed.into_iter().collect())
}

/// Performs one row and stores its outcome.
async fn perform(ctx: &Ctx, item: OutboxItem, mut progress: Vec<String>) -> Report {
    let account = ctx.config.account_id;
    let outcome = deliver(ctx, &item, &mut progress).await;
    let how = match &outcome {
        OutboxOutcome::Retry { not_before, .. } => {
            Finished::RetryAt(ctx.now() + (*not_before - Utc::now()).to_std().unwrap_or(Duration::ZERO))
        }
        _ => Finished::Removed,
    };
    match &outcome {
        OutboxOutcome::Done { .. } => {
            metrics::counter!("switchboard_connector_outbound_total", "account" => ctx.account_label(), "result" => "done")
                .increment(1)
        }
        OutboxOutcome::Failed { error } => {
            warn!(%account, outbox = item.id, %error, "outbound failed for good");
            metrics::counter!("switchboard_connector_outbound_total", "account" => ctx.account_label(), "result" => "failed")
                .increment(1)
        }
        OutboxOutcome::Retry { error, .. } => {
            debug!(%account, outbox = item.id, %error, "outbound to retry");
            metrics::counter!("switchboard_connector_outbound_retries_total", "account" => ctx.account_label())
                .increment(1)
        }
    }
    let deadline = Instant::now() + RECORD_PATIENCE;
    loop {
        let recorded = async {
            let mut tx = ctx.config.pool.begin().await?;
            let announced = store::finish_outbox(&mut tx, account, ctx.token, item.id, &outcome).await?;
            tx.commit().await?;
            Ok::<Announced, StoreError>(announced)
        }
        .await;
        match recorded {
            Ok(announced) => {
                for agent in &announced.audience {
                    ctx.config.coord.notify(&topics::agent(agent));
                }
                return Report { id: item.id, how, progress, deposed: false };
            }
            Err(StoreError::StaleFence { .. }) => {
                warn!(%account, outbox = item.id, "deposed before the outcome was stored: the row stays in doubt");
                return Report { id: item.id, how, progress, deposed: true };
            }
            Err(e) if Instant::now() < deadline => {
                warn!(%account, outbox = item.id, error = %e, "cannot store the outcome yet; trying again");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => {
                warn!(%account, outbox = item.id, error = %e, "cannot store the outcome: the row stays pending and will be sent again");
                return Report {
                    id: item.id,
                    how: Finished::RetryAt(ctx.now() + backoff(1)),
                    progress,
                    deposed: false,
                };
            }
        }
    }
}

fn on_error(error: SendError, attempts: i32) -> OutboxOutcome {
    match error {
        SendError::RetryAfter(wait) => OutboxOutcome::Retry {
            not_before: Utc::now() + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX),
            error: format!("rate limited by the platform: retry after {} s", wait.as_secs_f64()),
        },
        SendError::Transient(error) => OutboxOutcome::Retry {
            not_before: Utc::now()
                + chrono::Duration::from_std(backoff(attempts.max(1) as u32)).unwrap_or(chrono::Duration::MAX),
            error,
        },
        SendError::Permanent(error) => OutboxOutcome::Failed { error },
    }
}

async fn deliver(ctx: &Ctx, item: &OutboxItem, progress: &mut Vec<String>) -> OutboxOutcome {
    let platform = &ctx.config.platform;
    let limits = &ctx.config.limits;
    let chat = item.chat_id.as_str();
    let first_request = progress.len();
    match item.action {
        OutboxAction::Send => {
            let plan = match plan_send(&item.message, ctx.config.channel, limits) {
                Ok(plan) => plan,
                Err(error) => return OutboxOutcome::Failed { error },
            };
            for (i, planned) in plan.into_iter().enumerate() {
                if i < progress.len() {
                    continue;
                }
                let file = match &planned.file {
                    Some(meta) => match ctx.config.files.download(meta.id).await {
                        Ok(bytes) => Some(OutFile { meta: meta.clone(), bytes }),
                        Err(e) if e.is_transient() => {
                            return on_error(SendError::Transient(e.to_string()), item.attempts);
                        }
                        Err(e) => {
                            return OutboxOutcome::Failed { error: format!("file {:?}: {e}", meta.name) };
                        }
                    },
                    None => None,
                };
                if i > first_request {
                    ctx.pace(chat).await;
                }
                let part = Part {
                    text: planned.text,
                    file,
                    keyboard: if planned.keyboard { item.message.keyboard.clone() } else { None },
                    reply_to: if planned.reply { item.reply_to_external_id.clone() } else { None },
                };
                match platform.send(chat, part).await {
                    Ok(id) => progress.push(id),
                    Err(e) => return on_error(e, item.attempts),
                }
            }
            OutboxOutcome::Done { external_ids: progress.clone() }
        }
        OutboxAction::Edit | OutboxAction::Delete => {
            let external = {
                let ids = async {
                    let mut conn = ctx.config.pool.acquire().await?;
                    store::message_external_ids(&mut conn, item.message.id).await
                };
                match ids.await {
                    Ok(ids) => ids,
                    Err(e) => return on_error(SendError::Transient(e.to_string()), item.attempts),
                }
            };
            if item.action == OutboxAction::Delete {
                for (i, id) in external.iter().enumerate() {
                    if i < progress.len() {
                        continue;
                    }
                    if i > first_request {
                        ctx.pace(chat).await;
                    }
                    match platform.delete(chat, id).await {
                        Ok(()) => progress.push(id.clone()),
                        Err(e) => return on_error(e, item.attempts),
                    }
                }
                return OutboxOutcome::Done { external_ids: Vec::new() };
            }
            let Some(first) = external.first() else {
                return OutboxOutcome::Failed {
                    error: "the message was never delivered to the platform, so it cannot be edited there".into(),
                };
            };
            let text = item.message.text.clone().unwrap_or_default();
            let caption = !item.message.files.is_empty();
            let max = if caption { limits.max_caption_chars } else { limits.max_text_chars };
            if text_len(&text) > max || external.len() > 1 {
                return OutboxOutcome::Failed {
                    error: format!(
                        "the new text is {} characters; an edit on {} must fit one message of at most {max}",
                        text_len(&text),
                        ctx.config.channel
                    ),
                };
            }
            match platform.edit(chat, first, &text, caption).await {
                Ok(()) => OutboxOutcome::Done { external_ids: Vec::new() },
                Err(e) => on_error(e, item.attempts),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use schema::domain::{Author, AuthorKind, Direction, Keyboard, MessageKind, MessageStatus};

    fn message(text: Option<&str>, files: Vec<(&str, &str, i64)>) -> Message {
        Message {
            id: Uuid::nil(),
            interaction_id: Uuid::nil(),
            direction: Direction::Out,
            author: Author { kind: AuthorKind::Agent, id: "a".into(), name: "A".into() },
            kind: MessageKind::Text,
            text: text.map(str::to_owned),
            files: files
                .into_iter()
                .map(|(name, mime, size)| FileRef {
                    id: Uuid::nil(),
                    name: name.into(),
                    mime: mime.into(),
                    size,
                    url: String::new(),
                })
                .collect(),
            location: None,
            contact: None,
            reply_to: None,
            forwarded: None,
            keyboard: Some(Keyboard::Remove),
            status: MessageStatus::Queued,
            error: None,
            client_msg_id: None,
            created_at: Utc::now(),
            edited_at: None,
            deleted: false,
        }
    }

    fn telegram() -> Limits {
        Channel::Telegram.capabilities().limits
    }

    #[test]
    fn long_text_is_split_with_buttons_on_the_last_part_and_the_reply_on_the_first() {
        let text = "word ".repeat(2000);
        let plan = plan_send(&message(Some(&text), vec![]), Channel::Telegram, &telegram()).unwrap();
        assert_eq!(plan.len(), 3);
        assert!(plan.iter().all(|p| text_len(p.text.as_deref().unwrap()) <= 4096));
        assert_eq!(plan.iter().map(|p| p.reply).collect::<Vec<_>>(), vec![true, false, false]);
        assert_eq!(plan.iter().map(|p| p.keyboard).collect::<Vec<_>>(), vec![false, false, true]);
    }

    #[test]
    fn short_text_becomes_the_caption_of_the_first_file() {
        let m = message(Some("see attached"), vec![("a.pdf", "application/pdf", 10), ("b.png", "image/png", 10)]);
        let plan = plan_send(&m, Channel::Telegram, &telegram()).unwrap();
        assert_eq!(plan.len(), 2);
        assert_eq!(plan[0].text.as_deref(), Some("see attached"));
        assert_eq!(plan[1].text, None);
        let long = "x ".repeat(700);
        let plan =
            plan_send(&message(Some(&long), vec![("a.pdf", "application/pdf", 10)]), Channel::Telegram, &telegram())
                .unwrap();
        assert_eq!(plan.len(), 2, "a text over the caption limit goes first, on its own");
        assert!(plan[0].file.is_none() && plan[1].text.is_none());
    }

    #[test]
    fn a_file_over_its_limit_is_refused_naming_the_limit() {
        let m = message(None, vec![("big.jpg", "image/jpeg", 11 * 1024 * 1024)]);
        let err = plan_send(&m, Channel::Telegram, &telegram()).unwrap_err();
        assert_eq!(err, "file \"big.jpg\" is 11 MB, over the limit of 10 MB for images on telegram");
        let doc = message(None, vec![("big.zip", "application/zip", 11 * 1024 * 1024)]);
        assert!(plan_send(&doc, Channel::Telegram, &telegram()).is_ok(), "documents may be 50 MB");
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_size(512), "512 bytes");
        assert_eq!(human_size(48213), "47.1 KB");
        assert_eq!(human_size(10 * 1024 * 1024), "10 MB");
    }

    #[test]
    fn errors_map_to_outcomes() {
        assert!(matches!(on_error(SendError::Permanent("Bad Request: chat not found".into()), 1),
            OutboxOutcome::Failed { error } if error == "Bad Request: chat not found"));
        let before = Utc::now();
        match on_error(SendError::RetryAfter(Duration::from_secs(7)), 1) {
            OutboxOutcome::Retry { not_before, .. } => {
                assert!(not_before >= before + chrono::Duration::seconds(7));
            }
            other => panic!("{other:?}"),
        }
        match on_error(SendError::Transient("502".into()), 3) {
            OutboxOutcome::Retry { not_before, .. } => {
                assert!(not_before >= before + chrono::Duration::seconds(4));
            }
            other => panic!("{other:?}"),
        }
    }
}
