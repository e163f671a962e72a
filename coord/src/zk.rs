//! The ZooKeeper coordinator.
//!
//! One supervisor task owns the ZooKeeper session: it connects, publishes the live session on a
//! `watch` channel, and when the session expires (or is closed under it) opens a new one. Every
//! registration is a task that runs against the current session and starts over on the next:
//! membership re-creates its ephemeral node, a campaign re-enters the election, a subscription
//! re-arms its watch and wakes its subscriber so it re-reads its backlog.
//!
//! Layout under the configured root (default `/switchboard`):
//! `members/<group>/<member>` (ephemeral), `elections/<key>/c-<seq>` (ephemeral sequential; the
//! sequence number is the fencing token), `owners/<key>` (persistent, written with
//! compare-and-set), `notify/<topic>` (persistent; one node per topic whose data version is the
//! doorbell: a notification is a `setData`, so the tree never grows with traffic).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use zookeeper_client::{Acls, Client, CreateMode, CreateOptions, SessionState};

use crate::names::{self, Tree};
use crate::own_rings::OwnRings;
use crate::{
    Campaign, Cas, CoordError, Coordinator, Leadership, Member, Membership, Owned, Result, Subscription,
    UNAVAILABLE_AFTER,
};

/// Where and how to reach ZooKeeper.
#[derive(Debug, Clone)]
pub struct ZkConfig {
    /// Connect string: `host:port[,host:port...]`.
    pub connect: String,
    /// Root path of this deployment's nodes, e.g. `/switchboard`.
    pub root: String,
    /// Session timeout negotiated with the server (its tickTime bounds it to 2..20 ticks).
    pub session_timeout: Duration,
}

const PERSISTENT: CreateOptions<'static> = CreateMode::Persistent.with_acls(Acls::anyone_all());
const EPHEMERAL: CreateOptions<'static> = CreateMode::Ephemeral.with_acls(Acls::anyone_all());
const EPHEMERAL_SEQUENTIAL: CreateOptions<'static> = CreateMode::EphemeralSequential.with_acls(Acls::anyone_all());
const RETRY_PAUSE: Duration = Duration::from_millis(200);
/// How long a stopping coordinator keeps its session open to write the doorbells rung before
/// the stop (one round trip when ZooKeeper is reachable).
const FLUSH_DEADLINE: Duration = Duration::from_secs(3);

#[derive(Clone)]
struct Session {
    client: Client,
    generation: u64,
}

/// What background tasks share; deliberately not the coordinator itself, so dropping the last
/// [`ZkCoordinator`] handle shuts everything down.
#[derive(Clone)]
struct Ctx {
    sessions: watch::Receiver<Option<Session>>,
    stop: CancellationToken,
    /// The doorbell versions the notifier wrote, for the watches in this process.
    own: Arc<Mutex<OwnRings>>,
}

impl Ctx {
    /// The live session, waiting for one while there is none. `None` once `cancel` (or the
    /// coordinator) stops.
    async fn session(&self, cancel: &CancellationToken) -> Option<Session> {
        let mut sessions = self.sessions.clone();
        tokio::select! {
            _ = cancel.cancelled() => None,
            _ = self.stop.cancelled() => None,
            s = sessions.wait_for(Option::is_some) => s.ok().and_then(|s| s.clone()),
        }
    }

    /// Resolves when the session of `generation` is over.
    async fn session_ended(&self, generation: u64) {
        let mut sessions = self.sessions.clone();
        let _ = sessions.wait_for(|s| s.as_ref().map(|s| s.generation) != Some(generation)).await;
    }

    fn own(&self) -> std::sync::MutexGuard<'_, OwnRings> {
        // a std mutex: short map updates, never held across an await
        self.own.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn pause(&self, cancel: &CancellationToken) {
        tokio::select! {
            _ = cancel.cancelled() => {}
            _ = self.stop.cancelled() => {}
            _ = tokio::time::sleep(RETRY_PAUSE) => {}
        }
    }
}

/// Coordination through ZooKeeper. Cheap to clone; the last clone dropped (or
/// [`ZkCoordinator::shutdown`]) closes the session, which removes this process's ephemeral
/// nodes at once.
#[derive(Clone)]
pub struct ZkCoordinator {
    inner: Arc<Inner>,
}

struct Inner {
    root: String,
    ctx: Ctx,
    /// Cancelled once the supervisor has closed the session, after the last doorbells.
    closed: CancellationToken,
    notifications: mpsc::UnboundedSender<String>,
    // A std mutex: short map lookups, never held across an await.
    bells: Mutex<HashMap<String, watch::Sender<u64>>>,
    campaigns: Arc<Mutex<HashSet<String>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.ctx.stop.cancel();
    }
}

impl ZkCoordinator {
    /// Starts the session supervisor and waits (up to 10 s) for the first session.
    pub async fn start(config: ZkConfig) -> Result<Self> {
        names::check(config.root.trim_start_matches('/')).map_err(|_| CoordError::InvalidName(config.root.clone()))?;
        if !config.root.starts_with('/') {
            return Err(CoordError::InvalidName(config.root));
        }
        let (tx, sessions) = watch::channel(None);
        let stop = CancellationToken::new();
        let ctx = Ctx { sessions, stop: stop.clone(), own: Arc::default() };
        let (flushed, closed) = (CancellationToken::new(), CancellationToken::new());
        tokio::spawn(supervise(config.clone(), tx, stop.clone(), flushed.clone(), closed.clone()));
        let (notifications, rx) = mpsc::unbounded_channel();
        tokio::spawn(notifier(ctx.clone(), config.root.clone(), rx, flushed));
        let coordinator = ZkCoordinator {
            inner: Arc::new(Inner {
                root: config.root.clone(),
                ctx,
                closed,
                notifications,
                bells: Mutex::default(),
                campaigns: Arc::default(),
            }),
        };
        coordinator.client().await.map_err(|_| {
            CoordError::Unavailable(format!(
                "no ZooKeeper session with {} after {UNAVAILABLE_AFTER:?}: is ZooKeeper running? (deploy/services.sh start)",
                config.connect
            ))
        })?;
        Ok(coordinator)
    }

    /// Stops every registration of this coordinator, writes the doorbells rung before (for up
    /// to [`FLUSH_DEADLINE`]) and closes the session. Returns once the session is closed.
    /// Dropping the last handle does the same in the background.
    pub async fn shutdown(&self) {
        self.inner.ctx.stop.cancel();
        self.inner.closed.cancelled().await;
    }

    /// The current ZooKeeper session id, for logs and tests.
    pub fn session_id(&self) -> Option<i64> {
        self.inner.ctx.sessions.borrow().as_ref().map(|s| s.client.session_id().0)
    }

    /// A client on the live session, waiting a while for one.
    async fn client(&self) -> Result<Client> {
        let never = CancellationToken::new();
        match tokio::time::timeout(UNAVAILABLE_AFTER, self.inner.ctx.session(&never)).await {
            Ok(Some(s)) => Ok(s.client),
            Ok(None) => Err(CoordError::Closed),
            Err(_) => Err(CoordError::Unavailable("no ZooKeeper session".into())),
        }
    }

    fn path(&self, tree: Tree, name: &str) -> Result<String> {
        tree.path(&self.inner.root, name)
    }

    fn bell(&self, topic: &str) -> watch::Sender<u64> {
        let mut bells = self.inner.bells.lock().unwrap_or_else(|p| p.into_inner());
        bells.entry(topic.to_owned()).or_insert_with(|| watch::channel(0).0).clone()
    }
}

fn unavailable(e: zookeeper_client::Error) -> CoordError {
    CoordError::Unavailable(e.to_string())
}

/// Owns the session: connect, publish, and start over when it ends. Once stopped, it keeps the
/// live session until the notifier has written what was rung before the stop (`flushed`, or
/// [`FLUSH_DEADLINE`]), then closes it and cancels `closed`.
async fn supervise(
    config: ZkConfig,
    tx: watch::Sender<Option<Session>>,
    stop: CancellationToken,
    flushed: CancellationToken,
    closed: CancellationToken,
) {
    let _closed = closed.drop_guard();
    let mut generation = 0;
    let mut backoff = Duration::from_millis(100);
    loop {
        let connecting = Client::connector()
            .with_session_timeout(config.session_timeout)
            .with_fail_eagerly()
            .connect(&config.connect);
        let connected = tokio::select! {
            _ = stop.cancelled() => return,
            c = connecting => c,
        };
        let ready = match connected {
            Ok(client) => client.mkdir(&config.root, &PERSISTENT).await.map(|()| client),
            Err(e) => Err(e),
        };
        let client = match ready {
            Ok(client) => client,
            Err(e) => {
                warn!(connect = %config.connect, error = %e, ?backoff, "cannot open a ZooKeeper session; retrying");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        generation += 1;
        info!(session = %client.session_id(), generation, timeout = ?client.session_timeout(), "ZooKeeper session established");
        let mut states = client.state_watcher();
        tx.send_replace(Some(Session { client, generation }));
        loop {
            let state = tokio::select! {
                _ = stop.cancelled() => {
                    // the notifier gives up at the same deadline; this one only bounds a stuck one
                    let _ = tokio::time::timeout(FLUSH_DEADLINE * 2, flushed.cancelled()).await;
                    tx.send_replace(None);
                    return;
                }
                state = states.changed() => state,
            };
            match state {
                SessionState::Disconnected => {
                    warn!(generation, "ZooKeeper connection lost; reconnecting within the session")
                }
                SessionState::SyncConnected | SessionState::ConnectedReadOnly => {
                    info!(generation, "ZooKeeper connection restored")
                }
                SessionState::Expired | SessionState::Closed | SessionState::AuthFailed => {
                    warn!(generation, ?state, "ZooKeeper session ended; opening a new one");
                    tx.send_replace(None);
                    break;
                }
            }
        }
    }
}

/// Writes doorbells: at most one write in flight per topic; notifications arriving meanwhile
/// mark the topic dirty and cost one more write when it completes. Failed writes are retried
/// until they land, so a notification sent during an outage still arrives after it.
///
/// A ring is a promise to readers in other processes, so stopping does not drop any: once the
/// coordinator stops (or its last handle is dropped), what is still queued, dirty or in flight
/// is written, for up to [`FLUSH_DEADLINE`], before `flushed` lets the supervisor close the
/// session. Dropping them was the lost wake-up the delivery benchmark saw: a writer that
/// commits, rings and ends lost its last rings, and its readers slept until a safety net.
async fn notifier(ctx: Ctx, root: String, mut rx: mpsc::UnboundedReceiver<String>, flushed: CancellationToken) {
    let _flushed = flushed.drop_guard();
    let mut doorbells = Doorbells::new(&ctx, &root);
    let mut retry = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = ctx.stop.cancelled() => break,
            topic = rx.recv() => match topic {
                None => break,
                Some(topic) => doorbells.ring(topic),
            },
            Some((topic, result)) = doorbells.writes.next() => doorbells.written(topic, result),
            _ = retry.tick(), if !doorbells.dirty.is_empty() => doorbells.retry(),
        }
    }
    // stopping: what was rung before the stop is still written
    while let Ok(topic) = rx.try_recv() {
        doorbells.ring(topic);
    }
    let deadline = tokio::time::sleep(FLUSH_DEADLINE);
    tokio::pin!(deadline);
    let mut sessions = ctx.sessions.clone();
    while !doorbells.is_idle() {
        tokio::select! {
            // stopped while between sessions: none comes back to write with
            _ = sessions.wait_for(Option::is_none) => {
                warn!(topics = doorbells.dirty.len() + doorbells.in_flight.len(), "stopped without a ZooKeeper session: doorbells not written; their readers wait for their safety nets");
                return;
            }
            _ = &mut deadline => {
                warn!(topics = doorbells.dirty.len() + doorbells.in_flight.len(), "doorbells not written before the shutdown deadline; their readers wait for their safety nets");
                return;
            }
            Some((topic, result)) = doorbells.writes.next() => doorbells.written(topic, result),
            _ = retry.tick(), if !doorbells.dirty.is_empty() => doorbells.retry(),
        }
    }
}

/// The notifier's state: which topics have a write in flight and which need another one.
struct Doorbells<'a> {
    ctx: &'a Ctx,
    root: &'a str,
    dirty: HashSet<String>,
    in_flight: HashSet<String>,
    writes: FuturesUnordered<BoxFuture<'static, (String, Result<i32, zookeeper_client::Error>)>>,
}

impl<'a> Doorbells<'a> {
    fn new(ctx: &'a Ctx, root: &'a str) -> Self {
        Doorbells { ctx, root, dirty: HashSet::new(), in_flight: HashSet::new(), writes: FuturesUnordered::new() }
    }

    /// A notification: write now, or once more after the write in flight.
    fn ring(&mut self, topic: String) {
        if self.in_flight.contains(&topic) {
            self.dirty.insert(topic);
        } else {
            self.write(topic);
        }
    }

    fn path(&self, topic: &str) -> String {
        format!("{}/notify/{topic}", self.root)
    }

    fn write(&mut self, topic: String) {
        self.in_flight.insert(topic.clone());
        let session = self.ctx.sessions.borrow().clone();
        let path = self.path(&topic);
        self.writes.push(Box::pin(async move {
            let result = match session {
                Some(s) => ring_doorbell(&s.client, &path).await,
                None => Err(zookeeper_client::Error::ConnectionLoss),
            };
            (topic, result)
        }));
    }

    /// A write came back: on success, with the doorbell's new version.
    fn written(&mut self, topic: String, result: Result<i32, zookeeper_client::Error>) {
        self.in_flight.remove(&topic);
        match result {
            Ok(version) => {
                self.ctx.own().wrote(&self.path(&topic), version);
                if self.dirty.remove(&topic) {
                    self.write(topic);
                }
            }
            Err(e) => {
                debug!(topic, error = %e, "notification not written yet; will retry");
                self.dirty.insert(topic);
            }
        }
    }

    /// Writes again the dirty topics that have no write in flight.
    fn retry(&mut self) {
        let ready: Vec<String> = self.dirty.iter().filter(|t| !self.in_flight.contains(*t)).cloned().collect();
        for topic in ready {
            self.dirty.remove(&topic);
            self.write(topic);
        }
    }

    fn is_idle(&self) -> bool {
        self.dirty.is_empty() && self.in_flight.is_empty()
    }
}

/// Writes `path`'s doorbell; returns its new version.
async fn ring_doorbell(client: &Client, path: &str) -> Result<i32, zookeeper_client::Error> {
    match client.set_data(path, &[], None).await {
        Ok(stat) => Ok(stat.version),
        Err(zookeeper_client::Error::NoNode) => {
            // a subscriber may create the node at the same moment (mkdir then succeeds without
            // a write): ring it once it exists, so the version moves past what they read
            ensure_node(client, path).await?;
            client.set_data(path, &[], None).await.map(|stat| stat.version)
        }
        Err(e) => Err(e),
    }
}

/// Creates a persistent node and its parents if missing.
async fn ensure_node(client: &Client, path: &str) -> Result<(), zookeeper_client::Error> {
    client.mkdir(path, &PERSISTENT).await
}

async fn ensure_parent(client: &Client, path: &str) -> Result<(), zookeeper_client::Error> {
    match path.rsplit_once('/') {
        Some((parent, _)) if !parent.is_empty() => ensure_node(client, parent).await,
        _ => Ok(()),
    }
}

/// Creates our ephemeral node at `path`, or adopts it if this session already made it.
async fn register(client: &Client, path: &str, data: &[u8]) -> Result<(), RegisterError> {
    ensure_parent(client, path).await?;
    match client.create(path, data, &EPHEMERAL).await {
        Ok(_) => Ok(()),
        Err(zookeeper_client::Error::NodeExists) => match client.check_stat(path).await? {
            Some(stat) if stat.ephemeral_owner == client.session_id().0 => {
                client.set_data(path, data, None).await?;
                Ok(())
            }
            _ => Err(RegisterError::Taken),
        },
        Err(e) => Err(e.into()),
    }
}

#[derive(Debug, thiserror::Error)]
enum RegisterError {
    #[error("held by another session")]
    Taken,
    #[error(transparent)]
    Zk(#[from] zookeeper_client::Error),
}

#[async_trait]
impl Coordinator for ZkCoordinator {
    async fn join(&self, group: &str, member: &str, data: Vec<u8>) -> Result<Membership> {
        names::check(member)?;
        let path = format!("{}/{member}", self.path(Tree::Members, group)?);
        let client = self.client().await?;
        register(&client, &path, &data).await.map_err(|e| match e {
            RegisterError::Taken => CoordError::AlreadyMember { group: group.to_owned(), member: member.to_owned() },
            RegisterError::Zk(e) => unavailable(e),
        })?;
        let (updates, rx) = mpsc::unbounded_channel();
        let leave = CancellationToken::new();
        tokio::spawn(keep_member(self.inner.ctx.clone(), path, data, rx, leave.clone()));
        Ok(Membership { updates, _leave: leave.drop_guard() })
    }

    async fn members(&self, group: &str) -> Result<Vec<Member>> {
        let dir = self.path(Tree::Members, group)?;
        let client = self.client().await?;
        let mut names = match client.list_children(&dir).await {
            Ok(names) => names,
            Err(zookeeper_client::Error::NoNode) => return Ok(Vec::new()),
            Err(e) => return Err(unavailable(e)),
        };
        names.sort();
        let mut members = Vec::with_capacity(names.len());
        for name in names {
            match client.get_data(&format!("{dir}/{name}")).await {
                Ok((data, _)) => members.push(Member { name, data }),
                Err(zookeeper_client::Error::NoNode) => {} // left meanwhile
                Err(e) => return Err(unavailable(e)),
            }
        }
        Ok(members)
    }

    async fn campaign(&self, key: &str, candidate: &str) -> Result<Campaign> {
        names::check(candidate)?;
        let dir = self.path(Tree::Elections, key)?;
        {
            let mut campaigns = self.inner.campaigns.lock().unwrap_or_else(|p| p.into_inner());
            if !campaigns.insert(dir.clone()) {
                return Err(CoordError::AlreadyMember {
                    group: format!("elections/{key}"),
                    member: candidate.to_owned(),
                });
            }
        }
        let (tx, rx) = watch::channel(Leadership::Candidate);
        let resign = CancellationToken::new();
        let campaigns = self.inner.campaigns.clone();
        let ctx = self.inner.ctx.clone();
        let (candidate, stop) = (candidate.as_bytes().to_vec(), resign.clone());
        tokio::spawn(async move {
            run_campaign(&ctx, &dir, &candidate, &tx, &stop).await;
            tx.send_replace(Leadership::Candidate);
            campaigns.lock().unwrap_or_else(|p| p.into_inner()).remove(&dir);
        });
        Ok(Campaign { state: rx, _resign: resign.drop_guard() })
    }

    async fn read(&self, key: &str) -> Result<Option<Owned>> {
        let path = self.path(Tree::Owners, key)?;
        match self.client().await?.get_data(&path).await {
            Ok((data, stat)) => Ok(Some(Owned { data, version: stat.version })),
            Err(zookeeper_client::Error::NoNode) => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn compare_and_set(&self, key: &str, expected: Option<i32>, data: &[u8]) -> Result<Cas> {
        let path = self.path(Tree::Owners, key)?;
        let client = self.client().await?;
        let written = match expected {
            None => {
                ensure_parent(&client, &path).await.map_err(unavailable)?;
                client.create(&path, data, &PERSISTENT).await.map(|(stat, _)| stat.version)
            }
            Some(version) => client.set_data(&path, data, Some(version)).await.map(|stat| stat.version),
        };
        match written {
            Ok(version) => Ok(Cas::Written { version }),
            Err(zookeeper_client::Error::NodeExists)
            | Err(zookeeper_client::Error::BadVersion)
            | Err(zookeeper_client::Error::NoNode) => Ok(Cas::Conflict { current: self.read(key).await? }),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn remove(&self, key: &str, version: i32) -> Result<bool> {
        let path = self.path(Tree::Owners, key)?;
        match self.client().await?.delete(&path, Some(version)).await {
            Ok(()) => Ok(true),
            Err(zookeeper_client::Error::NoNode) | Err(zookeeper_client::Error::BadVersion) => Ok(false),
            Err(e) => Err(unavailable(e)),
        }
    }

    fn notify(&self, topic: &str) {
        if let Err(e) = names::check(topic) {
            tracing::error!(topic, error = %e, "notify: nothing sent");
            return;
        }
        // subscribers in this process are woken at once; other processes through ZooKeeper
        if let Some(bell) = self.inner.bells.lock().unwrap_or_else(|p| p.into_inner()).get(topic) {
            bell.send_modify(|n| *n += 1);
        }
        let _ = self.inner.notifications.send(topic.to_owned());
    }

    async fn subscribe(&self, topic: &str) -> Result<Subscription> {
        let path = self.path(Tree::Notify, topic)?;
        let bell = self.bell(topic);
        let mut receiver = bell.subscribe();
        receiver.mark_changed();
        let stop = CancellationToken::new();
        tokio::spawn(watch_doorbell(self.inner.ctx.clone(), path, bell, stop.clone()));
        Ok(Subscription { bell: receiver, _stop: Some(stop.drop_guard()) })
    }

    fn is_ready(&self) -> bool {
        self.inner.ctx.sessions.borrow().as_ref().is_some_and(|s| s.client.state() == SessionState::SyncConnected)
    }
}

/// Keeps a member node registered across sessions, with its latest data.
async fn keep_member(
    ctx: Ctx,
    path: String,
    mut data: Vec<u8>,
    mut updates: mpsc::UnboundedReceiver<Vec<u8>>,
    leave: CancellationToken,
) {
    let mut registered_in = ctx.sessions.borrow().as_ref().map(|s| s.generation);
    'sessions: while let Some(session) = ctx.session(&leave).await {
        if registered_in != Some(session.generation) {
            if let Err(e) = register(&session.client, &path, &data).await {
                warn!(path, error = %e, "cannot re-register member; retrying");
                ctx.pause(&leave).await;
                continue;
            }
            info!(path, generation = session.generation, "member re-registered on a new session");
            registered_in = Some(session.generation);
        }
        loop {
            tokio::select! {
                _ = leave.cancelled() => {
                    if let Err(e) = session.client.delete(&path, None).await {
                        debug!(path, error = %e, "leaving: node not deleted (the session end removes it)");
                    }
                    return;
                }
                _ = ctx.stop.cancelled() => return,
                _ = ctx.session_ended(session.generation) => continue 'sessions,
                Some(update) = updates.recv() => {
                    data = update;
                    if let Err(e) = session.client.set_data(&path, &data, None).await {
                        warn!(path, error = %e, "member data not updated; re-registering");
                        registered_in = None;
                        ctx.pause(&leave).await;
                        continue 'sessions;
                    }
                }
            }
        }
    }
}

fn sequence_of(name: &str) -> Option<i64> {
    name.strip_prefix("c-")?.parse().ok()
}

/// Runs one campaign until resigned or stopped: enter with an ephemeral sequential node, lead
/// while it is the smallest, otherwise watch the next smaller one. Disconnection demotes at once
/// (the session may be expiring and another leader rising); reconnection in the same session
/// re-checks; a new session re-enters with a new, larger token.
async fn run_campaign(
    ctx: &Ctx,
    dir: &str,
    candidate: &[u8],
    state: &watch::Sender<Leadership>,
    resign: &CancellationToken,
) {
    'sessions: while let Some(session) = ctx.session(resign).await {
        state.send_replace(Leadership::Candidate);
        let client = &session.client;
        let mut zk_state = client.state_watcher();
        let me = match enter_election(client, dir, candidate).await {
            Ok(me) => me,
            Err(e) => {
                warn!(dir, error = %e, "cannot enter the election; retrying");
                ctx.pause(resign).await;
                continue;
            }
        };
        let Some(token) = me.rsplit('/').next().and_then(sequence_of) else {
            warn!(dir, me, "election node without a sequence number");
            return;
        };
        loop {
            let mut contenders: Vec<(i64, String)> = match client.list_children(dir).await {
                Ok(children) => children.into_iter().filter_map(|c| Some((sequence_of(&c)?, c))).collect(),
                Err(e) => {
                    debug!(dir, error = %e, "cannot list candidates; retrying");
                    ctx.pause(resign).await;
                    continue 'sessions;
                }
            };
            contenders.sort();
            if !contenders.iter().any(|(seq, _)| *seq == token) {
                continue 'sessions; // our node is gone: enter again
            }
            match contenders.iter().rev().find(|(seq, _)| *seq < token) {
                None => {
                    info!(dir, token, "leading");
                    state.send_replace(Leadership::Leader { token });
                    loop {
                        tokio::select! {
                            _ = resign.cancelled() => {
                                state.send_replace(Leadership::Candidate);
                                let _ = client.delete(&me, None).await;
                                return;
                            }
                            _ = ctx.stop.cancelled() => return,
                            _ = ctx.session_ended(session.generation) => {
                                warn!(dir, token, "leadership lost with the session");
                                continue 'sessions;
                            }
                            s = zk_state.changed() => match s {
                                SessionState::Disconnected => {
                                    warn!(dir, token, "leadership suspended: disconnected from ZooKeeper");
                                    state.send_replace(Leadership::Candidate);
                                }
                                SessionState::SyncConnected => break, // still ours? look again
                                _ => {}
                            },
                        }
                    }
                }
                Some((_, predecessor)) => {
                    let watched = client.check_and_watch_stat(&format!("{dir}/{predecessor}")).await;
                    match watched {
                        Ok((None, _)) => {}
                        Ok((Some(_), watcher)) => tokio::select! {
                            _ = watcher.changed() => {}
                            _ = resign.cancelled() => {
                                let _ = client.delete(&me, None).await;
                                return;
                            }
                            _ = ctx.stop.cancelled() => return,
                            _ = ctx.session_ended(session.generation) => continue 'sessions,
                        },
                        Err(e) => {
                            debug!(dir, error = %e, "cannot watch the predecessor; retrying");
                            ctx.pause(resign).await;
                        }
                    }
                }
            }
        }
    }
}

/// Our election node in this session: the one an earlier attempt created (a create whose reply
/// was lost still created it), or a new one.
async fn enter_election(client: &Client, dir: &str, candidate: &[u8]) -> Result<String, zookeeper_client::Error> {
    ensure_node(client, dir).await?;
    let prefix = format!("{dir}/c-");
    if let Some(existing) = client.list_ephemerals(dir).await?.into_iter().find(|p| p.starts_with(&prefix)) {
        return Ok(existing);
    }
    let (_, sequence) = client.create(&prefix, candidate, &EPHEMERAL_SEQUENTIAL).await?;
    Ok(format!("{prefix}{sequence}"))
}

/// Follows one topic's doorbell and rings the local bell: when the version moves, when a
/// session starts (the subscriber re-reads what it may have missed) and after a reconnection.
async fn watch_doorbell(ctx: Ctx, path: String, bell: watch::Sender<u64>, stop: CancellationToken) {
    let ring = || bell.send_modify(|n| *n += 1);
    ctx.own().watch(&path);
    let _unwatch = Unwatch { ctx: &ctx, path: &path };
    'sessions: while let Some(session) = ctx.session(&stop).await {
        let client = &session.client;
        let mut zk_state = client.state_watcher();
        let mut last_version: Option<i32> = None;
        loop {
            let (stat, watcher) = match client.get_and_watch_data(&path).await {
                Ok((_, stat, watcher)) => (stat, watcher),
                Err(zookeeper_client::Error::NoNode) => {
                    if let Err(e) = ensure_node(client, &path).await {
                        debug!(path, error = %e, "cannot create the doorbell; retrying");
                        ctx.pause(&stop).await;
                    }
                    continue;
                }
                Err(e) => {
                    debug!(path, error = %e, "cannot watch the doorbell; retrying");
                    ctx.pause(&stop).await;
                    continue 'sessions;
                }
            };
            // the watch is armed before the wake, so a notification after this read triggers it
            // and one before it is seen by the subscriber's re-read
            // (a move made only by this process's own writes woke the subscribers already: see
            // `own_rings`)
            if last_version != Some(stat.version)
                && !last_version.is_some_and(|seen| ctx.own().covers(&path, seen, stat.version))
            {
                ring();
            }
            last_version = Some(stat.version);
            // The armed watch is kept until it fires: dropping an unfired watcher makes the client
            // remove the server's watch, racing the next arm. After a reconnection within the
            // session the client re-arms its watches itself and the server fires those whose node
            // moved meanwhile; a plain read of the version then is a cheap second look.
            let fired = watcher.changed();
            tokio::pin!(fired);
            loop {
                let reconnected = tokio::select! {
                    _ = &mut fired => break,
                    _ = stop.cancelled() => return,
                    _ = ctx.stop.cancelled() => return,
                    _ = ctx.session_ended(session.generation) => continue 'sessions,
                    s = zk_state.changed() => s == SessionState::SyncConnected,
                };
                if reconnected {
                    match client.check_stat(&path).await {
                        Ok(Some(stat)) if Some(stat.version) != last_version => {
                            debug!(path, "doorbell moved while disconnected; ringing");
                            last_version = Some(stat.version);
                            ring();
                        }
                        Ok(_) => {}
                        Err(e) => debug!(path, error = %e, "cannot re-check the doorbell"),
                    }
                }
            }
        }
    }
}

/// Ends a watch's share in [`OwnRings`] however the watch ends.
struct Unwatch<'a> {
    ctx: &'a Ctx,
    path: &'a str,
}

impl Drop for Unwatch<'_> {
    fn drop(&mut self) {
        self.ctx.own().unwatch(self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idle_ctx() -> (watch::Sender<Option<Session>>, Ctx) {
        let (tx, sessions) = watch::channel(None);
        (tx, Ctx { sessions, stop: CancellationToken::new(), own: Arc::default() })
    }

    #[tokio::test]
    async fn a_ring_during_a_write_costs_one_more_write_and_a_failed_write_is_retried() {
        let (_tx, ctx) = idle_ctx();
        let mut bells = Doorbells::new(&ctx, "/r");
        bells.ring("agent/a".into());
        bells.ring("agent/a".into());
        bells.ring("agent/a".into());
        assert_eq!(bells.writes.len(), 1, "one write in flight per topic");
        assert!(bells.dirty.contains("agent/a"), "the rings meanwhile are remembered");
        bells.written("agent/a".into(), Ok(1));
        assert_eq!(bells.writes.len(), 2, "exactly one more write for them");
        assert!(bells.dirty.is_empty() && !bells.is_idle());
        bells.written("agent/a".into(), Err(zookeeper_client::Error::ConnectionLoss));
        assert!(bells.dirty.contains("agent/a") && bells.in_flight.is_empty(), "a failed write is kept");
        bells.retry();
        assert_eq!(bells.writes.len(), 3);
        bells.written("agent/a".into(), Ok(2));
        assert!(bells.is_idle());
    }

    #[tokio::test]
    async fn a_notifier_stopped_between_sessions_does_not_hold_the_shutdown() {
        // rings queued, then the stop, and no session will come back to write them with: the
        // notifier reports them lost at once instead of retrying until the deadline
        let (tx, ctx) = idle_ctx();
        let (notifications, rx) = mpsc::unbounded_channel();
        let flushed = CancellationToken::new();
        for t in 0..3 {
            notifications.send(format!("agent/{t}")).unwrap();
        }
        ctx.stop.cancel();
        drop(notifications);
        let started = tokio::time::Instant::now();
        tokio::time::timeout(FLUSH_DEADLINE * 2, notifier(ctx, "/r".into(), rx, flushed.clone())).await.unwrap();
        assert!(flushed.is_cancelled());
        assert!(started.elapsed() < FLUSH_DEADLINE, "no session to wait for: it gives up at once");
        drop(tx);
    }
}
