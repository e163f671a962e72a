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
//! - Right before each request, a [`SendGuard`] checks the times requests actually went: a
//!   claim that took longer than the next one never lets two sends closer than the limit.
//! - Text over the channel's maximum is split at word boundaries; a file over its kind's
//!   maximum fails the message with an error naming the limit, before anything is sent.
//! - A 429 sets the row's `not_before` to the platform's `retry_after`; network errors and 5xx
//!   back off exponentially; a permanent error fails the row with the platform's reason.
//! - A deposed leader's claim or result is refused by the fence, and the worker stops.
//! - Two lanes: live rows (agents' messages, edits, deletions) are read from a cursor in id
//!   order; campaign rows (the bulk lane) are read by what is due and not held yet, and start
//!   only when no live row may (see [`crate::backlog`]): a reply never waits behind a campaign
//!   for more than one token of the account's rate. A campaign row is claimed with its
//!   campaign's decision ([`store::claim_bulk_outbox`]: paused, cancelled, opted out, quiet
//!   hours) and paced by its campaign's own cap as well.
//! - A chat's next row starts as soon as the platform has answered its previous row for good,
//!   while that row's outcome is still being stored (the recorder stores outcomes in the order
//!   they came, so a chat's statuses keep their order); an edit or a deletion, which reads the
//!   platform ids stored with its message's outcome, waits until its chat's outcomes are stored,
//!   and so does a reply to a message that was not on the platform when the row was read (it
//!   looks for the id again when it is sent). Waiting for each outcome's commit held one
//!   account's drain near 3,000 rows/s on two cores, a third of them idle.
//! - The window between a claim's commit and the outcome's commit is the in-doubt window: a
//!   leader that dies inside it leaves the row pending with its token, and the next leader sends
//!   it again (Telegram has no idempotency key); a chat may have a few consecutive rows in it,
//!   which the next leader sends again in their order. The next leader counts and logs such rows.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use coord::Coordinator;
use schema::domain::{Channel, Contact, FileRef, Limits, Location, Message, MessageKind, OutboxAction, Rate, Template};
use schema::store::{self, Announced, BulkClaim, OutboxItem, OutboxOutcome, StoreError};
use schema::topics;
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use uuid::Uuid;

use crate::backlog::{Backlog, Finished, Lane, Step};
use crate::files::FileServer;
use crate::pacing::{Pacer, SendGuard, backoff};
use crate::platform::{FileBody, FileDelivery, LINK_TTL, OutFile, Outbound, Part, SendError, SenderProfile};
use crate::split::{split_text, text_len};
pub use schema::channels::human_size;

/// Live rows held in memory at most; the rest wait in PostgreSQL.
const WINDOW: i64 = 2000;
/// Campaign rows held in memory at most (read again when fewer than half are left).
const BULK_WINDOW: i64 = 2000;
/// How often rows that became visible behind the cursor are looked for, and the gauge updated.
const RESCAN_EVERY: Duration = Duration::from_secs(5);
/// How often the backlog gauge is refreshed at most (it is also refreshed on every rescan).
const GAUGE_EVERY: Duration = Duration::from_secs(1);
/// How often the pacing buckets of idle chats are forgotten (memory stays bounded by the chats
/// sent to within a window of their rate).
const FORGET_EVERY: Duration = Duration::from_secs(1);
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

/// What a performer tells the worker.
enum Report {
    /// The platform answered the row for good (sent, or refused for good) and its outcome is
    /// queued to be stored: the row's chat may go on ([`Backlog::answered`]).
    Answered { id: i64 },
    /// The row's attempt is over: stored, to retry, or left in doubt.
    Ended { id: i64, how: Finished, progress: Vec<String>, deposed: bool },
}

/// A part of an outbound message as planned before sending.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Planned {
    pub text: Option<String>,
    pub file: Option<FileRef>,
    pub as_sticker: bool,
    pub location: Option<Location>,
    pub contact: Option<Contact>,
    pub sticker_id: Option<String>,
    pub forward: bool,
    /// An approved template (WhatsApp), sent as one request with the message's text as its
    /// rendered body.
    pub template: Option<Template>,
    pub keyboard: bool,
    pub reply: bool,
}

/// How a message goes out on a channel with `limits`: a contact, a location, a sticker or a
/// forward as one request; otherwise text split into parts at word boundaries, a short text as
/// the first file's caption, buttons on the last part, the reply reference on the first.
/// Refuses a file over its kind's limit, naming the limit.
pub fn plan_send(message: &Message, channel: Channel, limits: &Limits) -> Result<Vec<Planned>, String> {
    plan_send_with(message, channel, limits, &|_| true)
}

/// [`plan_send`] for a platform on which only some files carry a caption (`takes_caption` of
/// the first file's MIME type): otherwise the text goes first, as a message of its own.
pub fn plan_send_with(
    message: &Message,
    channel: Channel,
    limits: &Limits,
    takes_caption: &dyn Fn(&str) -> bool,
) -> Result<Vec<Planned>, String> {
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
    let alone = if let Some(template) = &message.template {
        Some(Planned { template: Some(template.clone()), text: message.text.clone(), ..Planned::default() })
    } else if let Some(location) = &message.location {
        Some(Planned { location: Some(location.clone()), ..Planned::default() })
    } else if let Some(contact) = &message.contact {
        Some(Planned { contact: Some(contact.clone()), ..Planned::default() })
    } else if let Some(sticker) = &message.sticker_id {
        Some(Planned { sticker_id: Some(sticker.clone()), ..Planned::default() })
    } else if message.forward_of.is_some() {
        Some(Planned { forward: true, ..Planned::default() })
    } else if message.kind == MessageKind::Sticker && message.files.len() == 1 {
        Some(Planned { file: message.files.first().cloned(), as_sticker: true, ..Planned::default() })
    } else {
        None
    };
    if let Some(part) = alone {
        return Ok(vec![Planned { keyboard: true, reply: true, ..part }]);
    }
    let text = message.text.as_deref().filter(|t| !t.trim().is_empty());
    let mut parts: Vec<Planned> = Vec::new();
    let caption = match text {
        Some(t)
            if message.files.first().is_some_and(|f| takes_caption(&f.mime))
                && text_len(t) <= limits.max_caption_chars =>
        {
            Some(t.to_owned())
        }
        Some(t) => {
            parts.extend(
                split_text(t, limits.max_text_chars)
                    .into_iter()
                    .map(|p| Planned { text: Some(p), ..Planned::default() }),
            );
            None
        }
        None => None,
    };
    for (i, file) in message.files.iter().enumerate() {
        parts.push(Planned {
            text: if i == 0 { caption.clone() } else { None },
            file: Some(file.clone()),
            ..Planned::default()
        });
    }
    if parts.is_empty() {
        // no text and no file: the platform's own error says what is wrong
        parts.push(Planned { text: Some(String::new()), ..Planned::default() });
    }
    parts[0].reply = true;
    parts.last_mut().expect("at least one part").keyboard = true;
    Ok(parts)
}

struct Ctx {
    config: OutboxConfig,
    token: i64,
    origin: Instant,
    pacer: Mutex<Pacer>,
    /// The last check before each request ([`SendGuard`]).
    guard: Mutex<SendGuard>,
    /// The recorder: outcomes that finish while its previous transaction runs are stored
    /// together ([`record_outcomes`]).
    recorder: mpsc::Sender<Record>,
}

/// An outcome waiting to be stored, and where the result goes.
struct Record {
    id: i64,
    outcome: OutboxOutcome,
    stored: oneshot::Sender<Result<(), StoreError>>,
}

/// Outcomes stored together at most.
const RECORD_BATCH: usize = 256;

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

    /// Waits until a request of `item` leaving now keeps every window of its rates (the
    /// account's, its chat's, and its campaign's for a campaign row), as the platform will see
    /// it, within the limit; the request must go right after.
    async fn cleared(&self, item: &OutboxItem) {
        let group = self.group_of(item);
        let group = group.as_ref().map(|(key, rate)| (key.as_str(), *rate));
        loop {
            let now = self.now();
            let verdict = self.guard.lock().unwrap_or_else(|e| e.into_inner()).try_send_in(now, &item.chat_id, group);
            match verdict {
                Ok(()) => return,
                Err(at) => tokio::time::sleep_until(self.origin + at).await,
            }
        }
    }

    fn account_label(&self) -> String {
        self.config.account_id.to_string()
    }

    /// A campaign row's group and cap: its campaign, at its own rate or else the account's.
    fn group_of(&self, item: &OutboxItem) -> Option<(String, Rate)> {
        item.bulk.as_ref().map(|bulk| {
            let rate =
                bulk.rate_per_s.and_then(|r| u32::try_from(r).ok()).map_or(self.config.pacer.rate, Rate::per_second);
            (bulk.campaign_id.to_string(), rate)
        })
    }
}

/// Runs the worker until `stop` is cancelled or the fence says this leader was deposed.
pub async fn run(config: OutboxConfig, token: i64, stop: CancellationToken) -> Result<(), WorkerError> {
    let mut bell = config.coord.subscribe(&topics::account(config.account_id)).await?;
    let (recorder, records) = mpsc::channel(RECORD_BATCH * 4);
    tokio::spawn(record_outcomes(config.clone(), token, records));
    let ctx = Arc::new(Ctx {
        pacer: Mutex::new(Pacer::new(config.pacer)),
        guard: Mutex::new(SendGuard::new(config.pacer.rate, config.pacer.rate_per_chat)),
        config,
        token,
        origin: Instant::now(),
        recorder,
    });
    let account = ctx.config.account_id;
    info!(%account, token, "outbox worker started");
    let (report_tx, mut reports) = mpsc::unbounded_channel::<Report>();
    // two claimers, so a live row's claim never waits for a batch of campaign rows' claim
    let (claimed_tx, mut claimed_rx) = mpsc::unbounded_channel::<ClaimResult>();
    let (live_claims, claims_rx) = mpsc::unbounded_channel::<ClaimRequest>();
    tokio::spawn(claim_rows(ctx.clone(), claims_rx, claimed_tx.clone()));
    let (bulk_claims, claims_rx) = mpsc::unbounded_channel::<ClaimRequest>();
    tokio::spawn(claim_rows(ctx.clone(), claims_rx, claimed_tx));
    let mut backlog: Backlog<Held> = Backlog::new();
    let mut read_new = true;
    // whether the last read stopped at the window's edge, rows waiting behind it
    let mut more_in_store = false;
    let mut more_bulk = false;
    // whether campaign rows are to be read (they are not on every doorbell: agents ring it)
    let mut read_bulk = true;
    let mut rescan_at = Instant::now();
    let mut gauge_at = Instant::now();
    let mut forget_at = Instant::now();
    let result = loop {
        if read_new || read_bulk || Instant::now() >= rescan_at {
            let rescan = Instant::now() >= rescan_at;
            let bulk = (read_bulk || rescan) && (backlog.bulk_len() as i64) < BULK_WINDOW / 2;
            match refill(&ctx, &mut backlog, rescan, bulk, &mut gauge_at).await {
                Ok((more, bulk_more)) => {
                    read_new = false;
                    more_in_store = more;
                    if bulk {
                        read_bulk = false;
                        more_bulk = bulk_more;
                    }
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
        if Instant::now() >= forget_at {
            // a walk over every chat's bucket: once in a while, not for every row started (a
            // drain to thousands of chats would walk thousands of buckets per row)
            let now = ctx.now();
            ctx.pacer.lock().unwrap_or_else(|e| e.into_inner()).forget_idle(now);
            ctx.guard.lock().unwrap_or_else(|e| e.into_inner()).forget_idle(now);
            forget_at = Instant::now() + FORGET_EVERY;
        }
        let wait = loop {
            let now = ctx.now();
            let step = {
                let mut pacer = ctx.pacer.lock().unwrap_or_else(|e| e.into_inner());
                backlog.next(now, &mut pacer, ctx.config.max_in_flight)
            };
            match step {
                Step::Start(id) => started.push(id),
                Step::WaitUntil(at) => break Some(at),
                Step::Idle => break None,
            }
        };
        if !started.is_empty() {
            // claimed by the claimer, together with whatever starts while its transaction runs;
            // the rows stay in flight until their claim comes back
            let (bulk, live): (Vec<i64>, Vec<i64>) =
                started.iter().copied().partition(|id| backlog.get(*id).is_some_and(|h| h.item.bulk.is_some()));
            let sent = (live.is_empty() || live_claims.send(ClaimRequest { live, bulk: Vec::new() }).is_ok())
                && (bulk.is_empty() || bulk_claims.send(ClaimRequest { live: Vec::new(), bulk }).is_ok());
            if !sent {
                break Err(WorkerError::Deposed("a claimer stopped".into()));
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
                // a campaign may have started or resumed
                read_bulk |= backlog.bulk_len() == 0;
            }
            Some(result) = claimed_rx.recv() => {
                match result {
                    Ok(answer) => {
                        if start_claimed(&ctx, &mut backlog, answer, &report_tx) {
                            read_bulk = true;
                        }
                    }
                    Err((StoreError::StaleFence { current, .. }, _)) => {
                        break Err(WorkerError::Deposed(format!("token {token} is older than {current}")));
                    }
                    Err((e, ids)) => {
                        warn!(%account, error = %e, "cannot claim outbox rows; trying again in a second");
                        for id in ids {
                            backlog.finish(id, Finished::RetryAt(ctx.now() + Duration::from_secs(1)));
                        }
                    }
                }
            }
            Some(report) = reports.recv() => {
                // every report waiting is taken now, so the rows they free start together and
                // share one claim transaction (one commit) instead of one each
                let mut next = Some(report);
                let mut deposed = false;
                while let Some(report) = next {
                    match report {
                        Report::Answered { id } => backlog.answered(id),
                        Report::Ended { id, how, deposed: true, .. } => {
                            // its attempt is over (the outcome refused): not waited for below
                            backlog.finish(id, how);
                            deposed = true;
                            break;
                        }
                        Report::Ended { id, how, progress, deposed: false } => {
                            if let Some(held) = backlog.get_mut(id) {
                                held.progress = progress;
                            }
                            backlog.finish(id, how);
                        }
                    }
                    next = reports.try_recv().ok();
                }
                if deposed {
                    break Err(WorkerError::Deposed("the fence refused an outcome".into()));
                }
                if more_in_store && ((backlog.len() - backlog.bulk_len()) as i64) < WINDOW / 2 {
                    read_new = true;
                }
                if more_bulk && (backlog.bulk_len() as i64) < BULK_WINDOW / 2 {
                    read_bulk = true;
                }
            }
            _ = tokio::time::sleep_until(rescan_at) => {}
            _ = sleep => {}
        }
    };
    // let requests in flight finish and record their outcome (a deposed leader's records are
    // refused by the fence anyway)
    // rows claimed meanwhile are performed (they were started before the stop: sending them now
    // leaves nothing in doubt for the next leader)
    drop(live_claims);
    drop(bulk_claims);
    let deadline = Instant::now() + STOP_GRACE;
    let mut left = backlog.unfinished();
    let mut claims_open = true;
    while left > 0 {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => break,
            result = claimed_rx.recv(), if claims_open => match result {
                Some(Ok(answer)) => {
                    let requested = answer.requested.len();
                    let performed = answer.claimed.len();
                    start_claimed(&ctx, &mut backlog, answer, &report_tx);
                    left -= requested - performed;
                }
                Some(Err((_, ids))) => left -= ids.len(),
                None => claims_open = false,
            },
            report = reports.recv() => match report {
                Some(Report::Ended { .. }) => left -= 1,
                Some(Report::Answered { .. }) => {}
                None => break,
            },
        }
    }
    if left > 0 {
        warn!(%account, left, "stopped with requests in flight; their rows stay pending (in doubt)");
    }
    info!(%account, token, "outbox worker stopped");
    result
}

/// Reads pending rows into the backlog: live rows after the cursor, and on `rescan` also rows
/// that became visible behind it; with `bulk`, the campaign rows that are due; refreshes the backlog gauge at most once per `GAUGE_EVERY`. Returns whether
/// more live rows wait after the cursor, and whether more campaign rows may be due.
async fn refill(
    ctx: &Ctx,
    backlog: &mut Backlog<Held>,
    rescan: bool,
    bulk: bool,
    gauge_at: &mut Instant,
) -> Result<(bool, bool), StoreError> {
    let account = ctx.config.account_id;
    let mut conn = ctx.config.pool.acquire().await?;
    let room = (WINDOW - (backlog.len() - backlog.bulk_len()) as i64).max(0);
    let mut more = more_may_wait(room, 0);
    let mut found: Vec<OutboxItem> = Vec::new();
    if rescan && backlog.cursor() > 0 {
        // only the rows not held are loaded: a long drain holds up to WINDOW rows, which a read
        // of every pending row behind the cursor would load again every RESCAN_EVERY
        let held = backlog.live_ids();
        let behind = store::pending_outbox_behind(&mut conn, account, backlog.cursor(), &held, WINDOW).await?;
        found.extend(behind.into_iter().filter(|i| !backlog.contains(i.id)));
    }
    if room > 0 {
        let after = store::pending_outbox(&mut conn, account, backlog.cursor(), room).await?;
        more = more_may_wait(room, after.len());
        found.extend(after);
    }
    let mut more_bulk = false;
    if bulk {
        let room = BULK_WINDOW - backlog.bulk_len() as i64;
        let due = store::pending_bulk_outbox(&mut conn, account, &backlog.bulk_ids(), room).await?;
        more_bulk = due.len() as i64 == room;
        found.extend(due);
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
        let lane = match ctx.group_of(&item) {
            None => Lane::Live,
            Some((group, rate)) => Lane::Bulk { group, rate },
        };
        // an edit or a deletion reads the platform ids its message got, and a reply to a message
        // not on the platform when the row was read looks for its id again: stored with the
        // outcome of an earlier row of its chat
        let after_outcomes = item.action != OutboxAction::Send
            || (item.message.reply_to.is_some() && item.reply_to_external_id.is_none());
        backlog.push_in(id, &chat, lane, now + wait, Held { item, progress: Vec::new() });
        if after_outcomes {
            backlog.after_outcomes(id);
        }
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
    debug!(%account, held = backlog.len(), bulk = backlog.bulk_len(), more, more_bulk, "outbox read");
    Ok((more, more_bulk))
}

/// Whether live rows may still wait after the cursor, after a read that had room for `room`
/// rows and found `found`. A read with no room (the window full: a doorbell rang while the
/// backlog held `WINDOW` rows) looked at nothing, so whatever waited still does. It used to say
/// "nothing more", and the drain of a backlog over `WINDOW` rows stopped after the window until
/// the next rescan, 5 s later (seen at every hub start with a backlog: the subscription's first
/// wake comes right after the first read).
fn more_may_wait(room: i64, found: usize) -> bool {
    room == 0 || found as i64 >= room
}

/// Rows started by the worker, to claim.
struct ClaimRequest {
    live: Vec<i64>,
    bulk: Vec<i64>,
}

/// The claimer's answer: which of the rows it was asked for may be performed now.
struct Claimed {
    requested: Vec<i64>,
    claimed: HashSet<i64>,
}

type ClaimResult = Result<Claimed, (StoreError, Vec<i64>)>;

/// The claimer of one worker: takes every request waiting after the first and claims the rows
/// together in one fenced transaction ([`claim`]), so the worker's loop never waits for a
/// claim and a busy account pays one claim transaction per batch, not per row. Ends when the
/// worker is gone.
async fn claim_rows(
    ctx: Arc<Ctx>,
    mut requests: mpsc::UnboundedReceiver<ClaimRequest>,
    answers: mpsc::UnboundedSender<ClaimResult>,
) {
    while let Some(first) = requests.recv().await {
        let ClaimRequest { mut live, mut bulk } = first;
        while let Ok(more) = requests.try_recv() {
            live.extend(more.live);
            bulk.extend(more.bulk);
        }
        let requested: Vec<i64> = live.iter().chain(&bulk).copied().collect();
        metrics::histogram!("switchboard_outbox_claim_batch_size").record(requested.len() as f64);
        let answer = match claim(&ctx, &live, &bulk).await {
            Ok(claimed) => Ok(Claimed { requested, claimed }),
            Err(e) => Err((e, requested)),
        };
        if answers.send(answer).is_err() {
            return;
        }
    }
}

/// Performs the claimed rows of `answer` (a task each) and drops the others from the backlog
/// (finished meanwhile by this leader's earlier attempt, or a campaign's row that may not go
/// now: paused, skipped, moved). Returns whether the bulk lane should be read again (it ran dry
/// that way).
fn start_claimed(
    ctx: &Arc<Ctx>,
    backlog: &mut Backlog<Held>,
    answer: Claimed,
    reports: &mpsc::UnboundedSender<Report>,
) -> bool {
    let mut read_again = false;
    for id in answer.requested {
        if !answer.claimed.contains(&id) {
            backlog.finish(id, Finished::Removed);
            // the lane ran dry by rows that may not go (a pause): look for due rows again
            read_again |= backlog.bulk_len() == 0;
            continue;
        }
        let Some(held) = backlog.get_mut(id) else { continue };
        held.item.attempts += 1;
        let item = held.item.clone();
        let progress = held.progress.clone();
        let ctx = ctx.clone();
        let reports = reports.clone();
        tokio::spawn(async move {
            let report = perform(&ctx, item, progress, &reports).await;
            let _ = reports.send(report);
        });
    }
    read_again
}

/// Claims the live rows `live` and the campaign rows `bulk` in one fenced transaction; returns
/// the ids to perform now.
async fn claim(ctx: &Ctx, live: &[i64], bulk: &[i64]) -> Result<HashSet<i64>, StoreError> {
    let account = ctx.config.account_id;
    let mut tx = ctx.config.pool.begin().await?;
    let mut claimed: HashSet<i64> = HashSet::new();
    if !live.is_empty() {
        claimed.extend(store::claim_outbox(&mut tx, account, ctx.token, live).await?);
    }
    if !bulk.is_empty() {
        for (id, how) in store::claim_bulk_outbox(&mut tx, account, ctx.token, bulk, Utc::now()).await? {
            match how {
                BulkClaim::Go => {
                    claimed.insert(id);
                }
                BulkClaim::Skipped(reason) => {
                    debug!(%account, outbox = id, %reason, "campaign row skipped");
                    metrics::counter!("switchboard_campaign_skipped_total", "account" => ctx.account_label())
                        .increment(1);
                }
                BulkClaim::Later(_) | BulkClaim::Held => {}
            }
        }
    }
    tx.commit().await?;
    Ok(claimed)
}

/// Performs one row and stores its outcome. Once the platform has answered for good and the
/// outcome is queued for the recorder, [`Report::Answered`] lets the row's chat go on: the
/// chat's next row is claimed and sent while this outcome is stored (the recorder stores
/// outcomes in the order they were queued, so a chat's outcomes keep their order).
async fn perform(
    ctx: &Ctx,
    item: OutboxItem,
    mut progress: Vec<String>,
    reports: &mpsc::UnboundedSender<Report>,
) -> Report {
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
    // a row to retry holds its chat until it ends: the worker hears of it only then
    let mut answered = matches!(outcome, OutboxOutcome::Retry { .. });
    loop {
        let (stored, result) = oneshot::channel();
        let queued = ctx.recorder.send(Record { id: item.id, outcome: outcome.clone(), stored }).await;
        if !answered && queued.is_ok() {
            answered = true;
            let _ = reports.send(Report::Answered { id: item.id });
        }
        let recorded = match queued {
            Ok(()) => result.await.unwrap_or(Err(StoreError::Database(sqlx::Error::PoolClosed))),
            Err(_) => Err(StoreError::Database(sqlx::Error::PoolClosed)),
        };
        match recorded {
            Ok(()) => return Report::Ended { id: item.id, how, progress, deposed: false },
            Err(StoreError::StaleFence { .. }) => {
                warn!(%account, outbox = item.id, "deposed before the outcome was stored: the row stays in doubt");
                return Report::Ended { id: item.id, how, progress, deposed: true };
            }
            Err(e) if Instant::now() < deadline => {
                warn!(%account, outbox = item.id, error = %e, "cannot store the outcome yet; trying again");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => {
                warn!(%account, outbox = item.id, error = %e, "cannot store the outcome: the row stays pending and will be sent again");
                return Report::Ended {
                    id: item.id,
                    how: Finished::RetryAt(ctx.now() + backoff(1)),
                    progress,
                    deposed: false,
                };
            }
        }
    }
}

/// The recorder of one worker: takes every outcome waiting (up to [`RECORD_BATCH`]) after the
/// first, stores them in one transaction ([`store::finish_outbox_many`]: one commit and one fence
/// check for the batch), rings each agent's doorbell once, and answers each performer. A batch
/// the fence refuses refuses every outcome in it; a batch that fails otherwise is stored one
/// outcome at a time, so one bad row fails alone. Ends when the worker and its performers are
/// gone.
async fn record_outcomes(config: OutboxConfig, token: i64, mut records: mpsc::Receiver<Record>) {
    let account = config.account_id;
    let mut batch = Vec::with_capacity(RECORD_BATCH);
    // the first record waited for, then every one already waiting (0: the senders are gone)
    while records.recv_many(&mut batch, RECORD_BATCH).await > 0 {
        let outcomes: Vec<(i64, OutboxOutcome)> = batch.iter().map(|r| (r.id, r.outcome.clone())).collect();
        let together = async {
            let mut tx = config.pool.begin().await?;
            let announced = store::finish_outbox_many(&mut tx, account, token, &outcomes).await?;
            tx.commit().await?;
            Ok::<Vec<Announced>, StoreError>(announced)
        }
        .await;
        let results: Vec<Result<Announced, StoreError>> = match together {
            Ok(announced) => announced.into_iter().map(Ok).collect(),
            Err(StoreError::StaleFence { key, token, current }) => {
                batch.iter().map(|_| Err(StoreError::StaleFence { key: key.clone(), token, current })).collect()
            }
            Err(e) => {
                if batch.len() > 1 {
                    debug!(%account, error = %e, size = batch.len(), "a batch of outcomes failed; storing them one by one");
                }
                let mut each = Vec::with_capacity(batch.len());
                for (id, outcome) in &outcomes {
                    let alone = async {
                        let mut tx = config.pool.begin().await?;
                        let announced = store::finish_outbox(&mut tx, account, token, *id, outcome).await?;
                        tx.commit().await?;
                        Ok::<Announced, StoreError>(announced)
                    }
                    .await;
                    each.push(alone);
                }
                each
            }
        };
        let mut agents: Vec<&String> = results.iter().flatten().flat_map(|a| &a.audience).collect();
        agents.sort_unstable();
        agents.dedup();
        for agent in agents {
            config.coord.notify(&topics::agent(agent));
        }
        metrics::histogram!("switchboard_outbox_outcome_batch_size").record(batch.len() as f64);
        for (record, result) in batch.drain(..).zip(results) {
            let _ = record.stored.send(result.map(drop));
        }
    }
}

/// The platform ids `message`'s parts got, as stored with its outcome.
async fn external_ids(ctx: &Ctx, message: Uuid) -> Result<Vec<String>, StoreError> {
    let mut conn = ctx.config.pool.acquire().await?;
    store::message_external_ids(&mut conn, message).await
}

/// The platform id of `message`'s first part, if it reached the platform: for a reply to a
/// message whose id was not stored yet when the replying row was read (an agent's message sent
/// just before).
async fn first_external_id(ctx: &Ctx, message: Uuid) -> Result<Option<String>, StoreError> {
    match external_ids(ctx, message).await {
        Ok(ids) => Ok(ids.into_iter().next()),
        Err(StoreError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// A file as the channel takes it: streamed from the file server, or a signed link.
async fn out_file(ctx: &Ctx, meta: &FileRef) -> Result<OutFile, crate::files::FileError> {
    let body = match ctx.config.platform.file_delivery() {
        FileDelivery::Upload => FileBody::Stream(ctx.config.files.stream(meta.id).await?),
        FileDelivery::Link => FileBody::Link(ctx.config.files.link(meta.id, LINK_TTL).await?),
    };
    Ok(OutFile { meta: meta.clone(), body })
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
            let reply_to = match (&item.reply_to_external_id, item.message.reply_to) {
                (None, Some(original)) => match first_external_id(ctx, original).await {
                    Ok(id) => id,
                    Err(e) => return on_error(SendError::Transient(e.to_string()), item.attempts),
                },
                (known, _) => known.clone(),
            };
            let takes_caption = |mime: &str| platform.takes_caption(mime);
            let plan = match plan_send_with(&item.message, ctx.config.channel, limits, &takes_caption) {
                Ok(plan) => plan,
                Err(error) => return OutboxOutcome::Failed { error },
            };
            let sender =
                SenderProfile { name: item.message.author.name.clone(), avatar_url: item.author_avatar.clone() };
            for (i, planned) in plan.into_iter().enumerate() {
                if i < progress.len() {
                    continue;
                }
                let file = match &planned.file {
                    Some(meta) => match out_file(ctx, meta).await {
                        Ok(file) => Some(file),
                        Err(e) if e.is_transient() => {
                            return on_error(SendError::Transient(e.to_string()), item.attempts);
                        }
                        Err(e) => {
                            return OutboxOutcome::Failed { error: format!("file {:?}: {e}", meta.name) };
                        }
                    },
                    None => None,
                };
                if planned.forward && item.forward_of_external_id.is_none() {
                    return OutboxOutcome::Failed {
                        error: "the forwarded message never reached the platform, so it cannot be forwarded".into(),
                    };
                }
                if i > first_request {
                    ctx.pace(chat).await;
                }
                let part = Part {
                    text: planned.text,
                    file,
                    as_sticker: planned.as_sticker,
                    location: planned.location,
                    contact: planned.contact,
                    sticker_id: planned.sticker_id,
                    forward_of: if planned.forward { item.forward_of_external_id.clone() } else { None },
                    template: planned.template,
                    keyboard: if planned.keyboard { item.message.keyboard.clone() } else { None },
                    reply_to: if planned.reply { reply_to.clone() } else { None },
                    sender: Some(sender.clone()),
                    idempotency_key: format!("{}:{i}", item.id),
                };
                ctx.cleared(item).await;
                match platform.send(chat, part).await {
                    Ok(id) => progress.push(id),
                    Err(e) => return on_error(e, item.attempts),
                }
            }
            OutboxOutcome::Done { external_ids: progress.clone() }
        }
        OutboxAction::Edit | OutboxAction::Delete => {
            let external = match external_ids(ctx, item.message.id).await {
                Ok(ids) => ids,
                Err(e) => return on_error(SendError::Transient(e.to_string()), item.attempts),
            };
            if item.action == OutboxAction::Delete {
                for (i, id) in external.iter().enumerate() {
                    if i < progress.len() {
                        continue;
                    }
                    if i > first_request {
                        ctx.pace(chat).await;
                    }
                    ctx.cleared(item).await;
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
            ctx.cleared(item).await;
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
            sticker_id: None,
            forward_of: None,
            keyboard: Some(Keyboard::Remove),
            template: None,
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
    fn a_file_that_takes_no_caption_gets_its_text_as_a_message_before_it() {
        let m = message(Some("the contract"), vec![("a.pdf", "application/pdf", 10), ("b.jpg", "image/jpeg", 10)]);
        let only_images = |mime: &str| mime.starts_with("image/");
        let plan = plan_send_with(&m, Channel::Viber, &Channel::Viber.capabilities().limits, &only_images).unwrap();
        assert_eq!(plan.len(), 3);
        assert_eq!((plan[0].text.as_deref(), plan[0].file.is_none()), (Some("the contract"), true));
        assert_eq!((plan[1].text.as_deref(), plan[1].file.as_ref().map(|f| f.name.as_str())), (None, Some("a.pdf")));
        assert!(plan[0].reply && plan[2].keyboard);
        let m = message(Some("look"), vec![("b.jpg", "image/jpeg", 10)]);
        let plan = plan_send_with(&m, Channel::Viber, &Channel::Viber.capabilities().limits, &only_images).unwrap();
        assert_eq!(plan.len(), 1, "a picture carries its caption");
        assert_eq!(plan[0].text.as_deref(), Some("look"));
    }

    #[test]
    fn a_template_goes_alone_with_its_rendered_body_and_never_split() {
        let body = "Your order 7731 has shipped. ".repeat(200);
        let mut m = message(Some(&body), vec![]);
        m.template = Some(Template { name: "order_update".into(), language: "en".into(), params: vec!["7731".into()] });
        let limits = Channel::Whatsapp.capabilities().limits;
        let plan = plan_send(&m, Channel::Whatsapp, &limits).unwrap();
        assert_eq!(plan.len(), 1, "a template is one request however long its body");
        assert_eq!(plan[0].template.as_ref().map(|t| t.name.as_str()), Some("order_update"));
        assert_eq!(plan[0].text.as_deref(), Some(body.as_str()));
        assert!(plan[0].reply && plan[0].keyboard);
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
    fn a_read_without_room_leaves_the_rows_behind_the_window_waiting() {
        assert!(more_may_wait(0, 0), "the window was full: nothing was looked at");
        assert!(more_may_wait(500, 500), "a full page: more may follow");
        assert!(!more_may_wait(500, 499), "a short page: the store had no more");
        assert!(!more_may_wait(500, 0));
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
