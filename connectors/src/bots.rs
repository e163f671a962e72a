//! The bot runner: the account's connector leader runs the bot flows of its interactions in
//! state `bot` (greeting flows, `schema::store::flows`), beside the outbox worker and fenced
//! like it.
//!
//! A turn of one run is one transaction: lock the interaction and its run, feed the sans-IO
//! interpreter (`schema::flow::step`) what happened (the start, each unread customer message,
//! a due timer), store its effects (the bot's messages as outbox rows, through the same worker,
//! limits and receipts as an agent's; the hand-off to a queue with the variables as interaction
//! fields; the end), the run and its wake-up time, check the fence, commit, ring the doorbells.
//! An HTTP node's call is made between two turns (outside any transaction) through the hub's
//! outbound-URL guard with the node's timeout; the run waits in `calling` with a wake-up of now,
//! so a leader that dies mid-call leaves it to the next one, which calls again.
//!
//! The runner wakes on `bots/<account>` (rung by the ingest when the bot's conversation gets a
//! message), at the next run timer, and every [`SAFETY_NET`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Utc};
use coord::Coordinator;
use schema::campaign::render;
#[cfg(test)]
use schema::channels::Feature;
pub use schema::channels::buttons_for;
use schema::domain::Channel;
#[cfg(test)]
use schema::domain::Keyboard;
use schema::flow::{self, Effect, Input, Limits, Node, Position, Run};
use schema::store::{self, BotTurn, StoreError};
use schema::topics;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use uuid::Uuid;

/// How often the runner looks for due runs even when nothing rang.
pub const SAFETY_NET: Duration = Duration::from_secs(5);

/// Runs looked at per round.
const BATCH: i64 = 50;

/// The runner's settings for one account.
#[derive(Clone)]
pub struct BotConfig {
    pub pool: PgPool,
    pub coord: Arc<dyn Coordinator>,
    pub account_id: Uuid,
    pub channel: Channel,
    pub limits: Limits,
    /// The client of HTTP nodes: its resolver drops internal addresses (`ops::target`).
    pub http: reqwest::Client,
    pub targets: ops::target::Targets,
}

impl BotConfig {
    /// The HTTP client of HTTP nodes, resolving names through `targets`' guard.
    pub fn client(targets: &ops::target::Targets) -> reqwest::Client {
        reqwest::Client::builder()
            .dns_resolver(targets.resolver())
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("the HTTP client builds")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BotError {
    #[error("another leader took over: {0}")]
    Deposed(String),
    #[error("cannot subscribe to the account's bot doorbell: {0}")]
    Subscribe(#[from] coord::CoordError),
}

/// The run's clock: time since the Unix epoch.
fn now() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default()
}

fn to_time(at: Duration) -> DateTime<Utc> {
    DateTime::from_timestamp(at.as_secs() as i64, at.subsec_nanos()).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// How long a run whose turn failed is left alone before it is tried again.
pub const RETRY_AFTER: Duration = Duration::from_secs(5);

/// Runs the account's bot flows until `stop`, or until the fence refuses this leader.
pub async fn run(config: BotConfig, token: i64, stop: CancellationToken) -> Result<(), BotError> {
    let mut bell = config.coord.subscribe(&topics::bots(config.account_id)).await?;
    let mut failed: HashMap<Uuid, Instant> = HashMap::new();
    loop {
        let wait = match round(&config, token, &mut failed).await {
            Ok(Next::Now) => Duration::ZERO,
            Ok(Next::At(at)) => at.map_or(SAFETY_NET, |at| (at - Utc::now()).to_std().unwrap_or(Duration::ZERO)),
            Err(StoreError::StaleFence { key, token, current }) => {
                return Err(BotError::Deposed(format!("{key}: token {token}, {current} seen")));
            }
            Err(e) => {
                warn!(account = %config.account_id, error = %e, "bot runs failed this round; trying again");
                RETRY_AFTER
            }
        }
        .min(SAFETY_NET);
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = bell.wake() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// When the runner should look again.
enum Next {
    /// More runs are due than one round takes.
    Now,
    /// At the next run timer (`None`: none).
    At(Option<DateTime<Utc>>),
}

/// Runs the due runs once (those whose turn failed lately are left alone until
/// [`RETRY_AFTER`], so a run that cannot go on never spins the runner).
async fn round(config: &BotConfig, token: i64, failed: &mut HashMap<Uuid, Instant>) -> Result<Next, StoreError> {
    failed.retain(|_, until| *until > Instant::now());
    let due = {
        let mut conn = config.pool.acquire().await?;
        store::due_bot_runs(&mut conn, config.account_id, BATCH + failed.len() as i64).await?
    };
    let todo: Vec<Uuid> = due.into_iter().filter(|id| !failed.contains_key(id)).collect();
    let mut ran = 0;
    for id in &todo {
        ran += 1;
        match turn(config, token, *id, None).await {
            Err(e @ StoreError::StaleFence { .. }) => return Err(e),
            Err(e) => {
                warn!(interaction = %id, error = %e, "a bot turn failed; it is tried again later");
                failed.insert(*id, Instant::now() + RETRY_AFTER);
            }
            Ok(()) => {}
        }
    }
    if ran >= BATCH {
        return Ok(Next::Now);
    }
    let mut conn = config.pool.acquire().await?;
    let next = store::next_bot_wake(&mut conn, config.account_id).await?;
    // a timer already past is one of the runs left alone: look again when the first may retry
    let now = Utc::now();
    let retry = failed.values().min().map(|until| {
        now + chrono::Duration::from_std(until.saturating_duration_since(Instant::now())).unwrap_or_default()
    });
    Ok(Next::At(match (next, retry) {
        (Some(next), Some(retry)) if next <= now => Some(retry),
        (next, _) => next,
    }))
}

/// What a turn decided, to do after its commit.
#[derive(Default)]
struct After {
    sent: bool,
    routed: bool,
    agents: Vec<String>,
    call: Option<(String, Duration)>,
}

/// What the interpreter's effects and position mean for the run's next wake-up.
fn wake_of(run: &Run, effects: &[Effect], previous: Option<DateTime<Utc>>, now: Duration) -> Option<DateTime<Utc>> {
    match &run.position {
        Position::Over => None,
        // a leader that dies during the call leaves it due: the next one calls again
        Position::Calling { .. } => Some(to_time(now)),
        Position::Waiting { until, .. } => Some(to_time(*until)),
        Position::At { .. } => effects
            .iter()
            .rev()
            .find_map(|e| if let Effect::WakeAt(at) = e { Some(to_time(*at)) } else { None })
            .or(previous),
    }
}

/// One turn of one run: `http` is the answer of the call the run waits for, if this turn
/// follows one.
async fn turn(
    config: &BotConfig,
    token: i64,
    id: Uuid,
    http: Option<Result<String, String>>,
) -> Result<(), StoreError> {
    let now = now();
    let mut tx = config.pool.begin().await?;
    let Some(BotTurn { flow, run, inputs, wake_at, flow_name, start_node, .. }) =
        store::lock_bot_run(&mut tx, id).await?
    else {
        return Ok(());
    };
    let mut effects = Vec::new();
    let read_up_to = inputs.last().map(|(id, _)| *id);
    let mut run = match run {
        None => {
            // the message(s) that opened the conversation start the run, not answer it
            let first = inputs.iter().map(|(_, t)| t.as_str()).collect::<Vec<_>>().join("\n");
            let vars = BTreeMap::from([("first_message".to_owned(), first)]);
            let mut run = match &start_node {
                // a re-entry: the node the account chose (checked to exist when the run started)
                Some(node) => Run::at(node, now, vars),
                None => Run::new(&flow, now, vars),
            };
            effects.extend(flow::step(&flow, &config.limits, &mut run, now, Input::Begin));
            run
        }
        Some(mut run) => {
            if let Some(answer) = http {
                effects.extend(flow::step(&flow, &config.limits, &mut run, now, Input::Http(answer)));
            }
            for (_, text) in &inputs {
                if matches!(run.position, Position::Calling { .. } | Position::Over) {
                    break;
                }
                effects.extend(flow::step(&flow, &config.limits, &mut run, now, Input::Message(text.clone())));
            }
            if wake_at.is_some_and(|at| at <= to_time(now)) && !matches!(run.position, Position::Calling { .. }) {
                effects.extend(flow::step(&flow, &config.limits, &mut run, now, Input::Timer));
            }
            run
        }
    };
    let mut after = After::default();
    let mut outcome = None;
    for effect in &effects {
        match effect {
            Effect::Send { text, buttons } => {
                let (text, keyboard) = buttons_for(config.channel, text, buttons);
                store::bot_send(&mut tx, id, &flow_name, &text, keyboard.as_ref()).await?;
                after.sent = true;
            }
            Effect::WakeAt(_) => {}
            Effect::Http { url, timeout } => after.call = Some((url.clone(), *timeout)),
            Effect::Handoff { queue, fields, reason } => {
                store::bot_handoff(&mut tx, id, queue, fields, reason.as_deref()).await?;
                after.routed = true;
                if let Some(reason) = reason {
                    info!(interaction = %id, flow = %flow_name, reason = %reason.escape_debug(), "bot handed off");
                }
            }
            Effect::End => {
                let done = store::bot_end(&mut tx, id).await?;
                after.agents.extend(done.notified);
                outcome = Some("ended");
            }
        }
    }
    // a run found waiting for a call's answer with nothing new (a failover during the call, or
    // the call's own turn): make the call
    if after.call.is_none()
        && let Position::Calling { node } = &run.position
        && let Some(Node::Http { url, timeout_ms, .. }) = flow.nodes.get(node)
    {
        match render(url, &flow::url_vars(&run.vars)) {
            Ok(url) => after.call = Some((url, Duration::from_millis(u64::from(*timeout_ms)))),
            Err(e) => {
                // the interpreter rendered it before; a flow that cannot is handed off
                effects = flow::step(&flow, &config.limits, &mut run, now, Input::Http(Err(e)));
                for effect in &effects {
                    if let Effect::Handoff { queue, fields, reason } = effect {
                        store::bot_handoff(&mut tx, id, queue, fields, reason.as_deref()).await?;
                        after.routed = true;
                    }
                }
            }
        }
    }
    let wake = wake_of(&run, &effects, wake_at, now);
    store::save_bot_run(&mut tx, id, &run, wake, read_up_to, outcome).await?;
    store::check_fence(&mut tx, &store::connector_key(config.account_id), token).await?;
    tx.commit().await?;
    if after.sent {
        config.coord.notify(&topics::account(config.account_id));
    }
    if after.routed {
        config.coord.notify(topics::ROUTING);
    }
    after.agents.sort_unstable();
    after.agents.dedup();
    for agent in &after.agents {
        config.coord.notify(&topics::agent(agent));
    }
    if let Some((url, timeout)) = after.call {
        let answer = call(config, &url, timeout).await;
        Box::pin(turn(config, token, id, Some(answer))).await?;
    }
    Ok(())
}

/// The most of an HTTP node's answer kept in its variable.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// An HTTP node's GET: the guard first (no internal address, no credentials in the URL), then
/// the request within `timeout`; a non-2xx status, a body over [`MAX_ANSWER_BYTES`] or anything
/// else that fails is the error the flow sees.
async fn call(config: &BotConfig, url: &str, timeout: Duration) -> Result<String, String> {
    // (the URL itself stays out of the error: a flow may carry a key in it, and the error is
    // logged and kept as the run's outcome)
    let url = config.targets.check_delivery(url).map_err(|e| e.to_string())?;
    let request = async {
        let response = config.http.get(url.clone()).send().await.map_err(|e| e.without_url().to_string())?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("HTTP {status}"));
        }
        let body = response.bytes().await.map_err(|e| e.without_url().to_string())?;
        if body.len() > MAX_ANSWER_BYTES {
            return Err(format!("the answer is over {MAX_ANSWER_BYTES} bytes"));
        }
        Ok(String::from_utf8_lossy(&body).into_owned())
    };
    match tokio::time::timeout(timeout, request).await {
        Ok(answer) => answer,
        Err(_) => Err(format!("timed out after {} ms", timeout.as_millis())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buttons_follow_what_the_channel_shows() {
        let b = vec!["Yes".to_string(), "No".to_string()];
        let (text, k) = buttons_for(Channel::Telegram, "Order?", &b);
        assert_eq!(text, "Order?");
        assert!(matches!(k, Some(Keyboard::Reply { rows }) if rows.len() == 2 && rows[1][0].text == "No"));
        let (text, k) = buttons_for(Channel::Telegram, "Hi", &[]);
        assert_eq!((text.as_str(), k), ("Hi", None));
        // WhatsApp has buttons under a message only: their data is the text
        let (_, k) = buttons_for(Channel::Whatsapp, "Order?", &b);
        assert!(matches!(k, Some(Keyboard::Inline { rows }) if rows[0][0].data == "Yes"));
        // a channel with neither keyboard gets the choices as lines
        assert!(!Channel::Video.capabilities().has(Feature::ReplyKeyboard));
        assert!(!Channel::Video.capabilities().has(Feature::InlineButtons));
        assert_eq!(buttons_for(Channel::Video, "Order?", &b), ("Order?\n\n• Yes\n• No".to_string(), None));
    }

    #[test]
    fn the_wake_up_follows_the_position() {
        let f: flow::Flow = serde_json::from_value(serde_json::json!({
            "start": "a", "fallback_queue": "q",
            "nodes": {"a": {"kind": "wait", "var": "x", "timeout_s": 10, "next": "b", "on_timeout": "b"}, "b": {"kind": "end"}}
        }))
        .unwrap();
        let t = Duration::from_secs(1_700_000_000);
        let mut run = Run::new(&f, t, BTreeMap::new());
        let effects = flow::step(&f, &Limits::default(), &mut run, t, Input::Begin);
        assert_eq!(wake_of(&run, &effects, None, t), Some(to_time(t + Duration::from_secs(10))));
        let effects = flow::step(&f, &Limits::default(), &mut run, t, Input::Message("hi".into()));
        assert!(run.is_over());
        assert_eq!(wake_of(&run, &effects, Some(to_time(t)), t), None);
        let calling = Run { position: Position::Calling { node: "h".into() }, ..run };
        assert_eq!(wake_of(&calling, &[], None, t), Some(to_time(t)), "a call in flight is due again after a failover");
    }
}
