//! Coordination between Switchboard processes.
//!
//! ZooKeeper holds what is live and who owns what; PostgreSQL holds what must be kept. This
//! crate gives the first half behind one trait, [`Coordinator`], with two implementations:
//!
//! - [`ZkCoordinator`]: ZooKeeper, for every deployment with more than one process. It survives
//!   session expiry and server restarts by itself: a supervisor opens a new session, and every
//!   registration (membership, campaign, subscription) re-creates its nodes and watches on it.
//! - [`LocalCoordinator`]: in-process, for `switchboard all` on one node and for unit tests.
//!
//! What it offers:
//! - **membership**: [`Coordinator::join`] keeps an ephemeral member node for as long as the
//!   returned [`Membership`] lives; agent presence is membership in `presence/<agent>`;
//! - **leader election** per key: [`Coordinator::campaign`]; the leader's token is its election
//!   sequence number, larger for every later leader, written with its writes so a deposed leader
//!   is refused (`schema::store::check_fence`);
//! - **ownership records** written with compare-and-set ([`Coordinator::compare_and_set`]);
//! - **one leader loop** for every elected job: [`lead`] campaigns, runs a term's work while
//!   leading, cancels it when deposed, and campaigns afresh when the fence refused a write;
//! - **notifications**: [`Coordinator::notify`] rings a topic's doorbell and
//!   [`Coordinator::subscribe`] wakes on it. A wake carries no payload: it means "read
//!   PostgreSQL from your cursor". Notifications coalesce (one ZooKeeper write in flight per
//!   topic and process, however many `notify` calls; a stopping coordinator writes what was
//!   rung before it closes its session), the first wake comes at once and another after every
//!   session change, so a subscriber that re-reads on each wake never misses one.
#![forbid(unsafe_code)]

mod leader;
mod local;
mod names;
mod own_rings;
mod zk;

use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::DropGuard;

pub use leader::{TermEnd, lead};
pub use local::LocalCoordinator;
pub use zk::{ZkConfig, ZkCoordinator};

/// Why a coordination call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CoordError {
    #[error("invalid coordination name {0:?}: use non-empty segments of letters, digits and -_.:@ separated by /")]
    InvalidName(String),
    #[error("{group}/{member} is already registered by another live process")]
    AlreadyMember { group: String, member: String },
    #[error("coordination service unavailable: {0}")]
    Unavailable(String),
    #[error("the coordinator has shut down")]
    Closed,
}

pub type Result<T, E = CoordError> = std::result::Result<T, E>;

/// A live member of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    pub data: Vec<u8>,
}

/// An ownership record and its version, for compare-and-set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owned {
    pub data: Vec<u8>,
    pub version: i32,
}

/// The result of [`Coordinator::compare_and_set`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cas {
    /// Written; the record now has this version.
    Written { version: i32 },
    /// Someone else wrote first: the record as it is now (`None`: it does not exist).
    Conflict { current: Option<Owned> },
}

/// Where a campaign stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leadership {
    /// Not the leader (or not sure: disconnected from ZooKeeper).
    Candidate,
    /// The leader, with its fencing token.
    Leader { token: i64 },
}

#[async_trait]
pub trait Coordinator: Send + Sync + 'static {
    /// Registers `member` in `group` until the returned handle is dropped.
    async fn join(&self, group: &str, member: &str, data: Vec<u8>) -> Result<Membership>;

    /// The live members of `group`, sorted by name.
    async fn members(&self, group: &str) -> Result<Vec<Member>>;

    /// Enters the election for `key`. Leadership lasts until the [`Campaign`] is dropped or the
    /// process loses its session; the campaign then re-enters by itself.
    async fn campaign(&self, key: &str, candidate: &str) -> Result<Campaign>;

    /// The ownership record `key`, if any.
    async fn read(&self, key: &str) -> Result<Option<Owned>>;

    /// Writes the ownership record `key` if its version is still `expected` (`None`: create it,
    /// only if it does not exist).
    async fn compare_and_set(&self, key: &str, expected: Option<i32>, data: &[u8]) -> Result<Cas>;

    /// Deletes the record `key` if it still has `version`. Returns whether it did.
    async fn remove(&self, key: &str, version: i32) -> Result<bool>;

    /// Rings `topic`'s doorbell. Returns at once; the write is coalesced and retried in the
    /// background, and still made when the coordinator stops right after. Call it after the
    /// commit of whatever the subscribers must read.
    fn notify(&self, topic: &str);

    /// Wakes whenever `topic` is notified, at once on subscription, and after every session
    /// change. Dropping the subscription ends it.
    async fn subscribe(&self, topic: &str) -> Result<Subscription>;

    /// Whether the coordinator can serve right now (for `/readyz`).
    fn is_ready(&self) -> bool;

    /// Announces that `agent` has a socket on `node` until the handle is dropped.
    async fn announce_presence(&self, agent: &str, node: &str, data: Vec<u8>) -> Result<Membership> {
        self.join(&presence_group(agent), node, data).await
    }

    /// The nodes that hold sockets of `agent`.
    async fn presence(&self, agent: &str) -> Result<Vec<Member>> {
        self.members(&presence_group(agent)).await
    }
}

fn presence_group(agent: &str) -> String {
    format!("presence/{agent}")
}

/// A registration in a group; dropping it leaves the group.
pub struct Membership {
    updates: mpsc::UnboundedSender<Vec<u8>>,
    _leave: DropGuard,
}

impl Membership {
    /// Replaces the member's data (e.g. an agent's status).
    pub fn update(&self, data: Vec<u8>) {
        let _ = self.updates.send(data);
    }
}

/// A place in an election; dropping it resigns.
pub struct Campaign {
    state: watch::Receiver<Leadership>,
    _resign: DropGuard,
}

impl Campaign {
    pub fn current(&self) -> Leadership {
        *self.state.borrow()
    }

    /// Waits until this campaign leads and returns its fencing token.
    pub async fn leading(&mut self) -> Result<i64> {
        let state =
            self.state.wait_for(|s| matches!(s, Leadership::Leader { .. })).await.map_err(|_| CoordError::Closed)?;
        match *state {
            Leadership::Leader { token } => Ok(token),
            Leadership::Candidate => unreachable!("wait_for returned a state it did not wait for"),
        }
    }

    /// Waits until the leadership with `token` ends (resolves at once if it already has).
    pub async fn deposed(&mut self, token: i64) {
        let _ = self.state.wait_for(|s| *s != Leadership::Leader { token }).await;
    }

    /// A receiver that follows this campaign's state.
    pub fn watch(&self) -> watch::Receiver<Leadership> {
        self.state.clone()
    }
}

/// Wakes for one topic; dropping it unsubscribes.
pub struct Subscription {
    bell: watch::Receiver<u64>,
    _stop: Option<DropGuard>,
}

impl Subscription {
    /// Waits for the next wake. `Err(Closed)` once the coordinator has shut down.
    pub async fn wake(&mut self) -> Result<()> {
        self.bell.changed().await.map_err(|_| CoordError::Closed)
    }
}

/// Time after which an unreachable coordination service is reported as such by calls that
/// need it.
pub(crate) const UNAVAILABLE_AFTER: Duration = Duration::from_secs(10);
