//! The supervisors' live view: `supervisor.overview` with `live: true` keeps pushing the overview
//! (agents with presence, status and load; queues; the open interactions with their wait) as
//! `update` frames whenever it changes.
//!
//! One watcher task per node computes the snapshot for every socket of the node that watches, so
//! a hundred supervisors cost one query per change, not a hundred. It wakes on the routing
//! doorbell (a new or returning customer, a freed slot, an agent ready) and re-reads every
//! second as well (an accepted offer, a close or a presence change ring no doorbell of its own);
//! it publishes only a snapshot that differs from the last one. The snapshots go out through a
//! `watch` channel: a socket that is slow to take them gets the newest when it is ready, never a
//! backlog. The task stops a few seconds after the last watcher left.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use coord::Coordinator;
use serde_json::Value;
use sqlx::PgPool;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// How often the snapshot is re-read without a wake-up.
const POLL: Duration = Duration::from_secs(1);
/// After a wake-up, what else arrives within this is read together.
const SETTLE: Duration = Duration::from_millis(150);
/// How long presence (a coordinator read per agent) is reused.
const PRESENCE_TTL: Duration = Duration::from_secs(3);
/// How long the task idles without watchers before it stops.
const IDLE: Duration = Duration::from_secs(5);

pub type Snapshot = Option<Arc<Value>>;

/// This node's watcher of the live overview.
pub struct Live {
    pool: PgPool,
    coord: Arc<dyn Coordinator>,
    shutdown: CancellationToken,
    sender: Mutex<Option<Arc<watch::Sender<Snapshot>>>>,
}

impl Live {
    pub fn new(pool: PgPool, coord: Arc<dyn Coordinator>, shutdown: CancellationToken) -> Arc<Self> {
        Arc::new(Live { pool, coord, shutdown, sender: Mutex::new(None) })
    }

    /// A receiver of the snapshots, starting the node's watcher if it is not running.
    pub fn watch(self: &Arc<Self>) -> watch::Receiver<Snapshot> {
        let mut sender = self.sender.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = sender.as_ref() {
            return tx.subscribe();
        }
        let (tx, rx) = watch::channel(None);
        let tx = Arc::new(tx);
        *sender = Some(tx.clone());
        tokio::spawn(self.clone().run(tx));
        rx
    }

    async fn run(self: Arc<Self>, tx: Arc<watch::Sender<Snapshot>>) {
        debug!("live overview watcher started");
        let mut bell = match self.coord.subscribe(schema::topics::ROUTING).await {
            Ok(bell) => Some(bell),
            Err(e) => {
                warn!(error = %e, "live overview: no routing doorbell; reading every second only");
                None
            }
        };
        let mut presence = PresenceCache::default();
        let mut ticker = tokio::time::interval(POLL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut idle_since: Option<Instant> = None;
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => break,
                woke = async { bell.as_mut().expect("guarded").wake().await }, if bell.is_some() => {
                    if woke.is_err() { bell = None; }
                    tokio::time::sleep(SETTLE).await;
                }
                _ = ticker.tick() => {}
            }
            if tx.receiver_count() == 0 {
                let since = *idle_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= IDLE {
                    let mut sender = self.sender.lock().unwrap_or_else(|e| e.into_inner());
                    // a watcher that came meanwhile keeps the task
                    if tx.receiver_count() == 0 {
                        *sender = None;
                        break;
                    }
                }
                continue;
            }
            idle_since = None;
            match snapshot(&self.pool, self.coord.as_ref(), &mut presence).await {
                Ok(value) => {
                    tx.send_if_modified(|current| {
                        if current.as_deref() == Some(&value) {
                            false
                        } else {
                            *current = Some(Arc::new(value));
                            true
                        }
                    });
                }
                Err(e) => warn!(error = %e, "live overview: cannot read the overview; retrying"),
            }
        }
        debug!("live overview watcher stopped");
    }
}

/// Which agents have a socket somewhere, re-read at most every [`PRESENCE_TTL`].
#[derive(Default)]
pub struct PresenceCache {
    read_at: Option<Instant>,
    online: HashMap<String, bool>,
}

impl PresenceCache {
    async fn online(&mut self, coord: &dyn Coordinator, login: &str) -> bool {
        let fresh = self.read_at.is_some_and(|t| t.elapsed() < PRESENCE_TTL);
        if let (true, Some(known)) = (fresh, self.online.get(login)) {
            return *known;
        }
        let online = coord
            .presence(&crate::presence::presence_name(login))
            .await
            .map(|nodes| !nodes.is_empty())
            .unwrap_or(false);
        self.online.insert(login.to_owned(), online);
        online
    }

    fn refresh(&mut self) {
        if self.read_at.is_none_or(|t| t.elapsed() >= PRESENCE_TTL) {
            self.online.clear();
            self.read_at = Some(Instant::now());
        }
    }
}

/// The overview as `supervisor.overview` answers it: [`schema::store::live_overview`] with each
/// agent's `online` (a socket on any node).
pub async fn snapshot(
    pool: &PgPool,
    coord: &dyn Coordinator,
    presence: &mut PresenceCache,
) -> Result<Value, schema::store::StoreError> {
    let mut value = {
        let mut conn = pool.acquire().await?;
        schema::store::live_overview(&mut conn).await?
    };
    presence.refresh();
    if let Some(agents) = value["agents"].as_array_mut() {
        for agent in agents {
            let login = agent["login"].as_str().unwrap_or_default().to_owned();
            agent["online"] = Value::Bool(presence.online(coord, &login).await);
        }
    }
    Ok(value)
}
