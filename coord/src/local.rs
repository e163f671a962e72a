//! The in-process coordinator: the same semantics as ZooKeeper's, for one process.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::{
    Campaign, Cas, CoordError, Coordinator, Leadership, Member, Membership, Owned, Result, Subscription, names,
};

/// Coordination inside one process (`switchboard all` on a single node, and tests).
#[derive(Clone, Default)]
pub struct LocalCoordinator {
    // A std mutex: every critical section is a few map operations with no `.await`.
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    groups: HashMap<String, BTreeMap<String, Vec<u8>>>,
    elections: HashMap<String, Election>,
    owners: HashMap<String, Owned>,
    topics: HashMap<String, watch::Sender<u64>>,
}

#[derive(Default)]
struct Election {
    last_token: i64,
    candidates: BTreeMap<i64, watch::Sender<Leadership>>,
}

impl Election {
    /// Tells the first candidate it leads.
    fn crown(&mut self) {
        if let Some((token, tx)) = self.candidates.iter().next() {
            let _ = tx.send(Leadership::Leader { token: *token });
        }
    }
}

impl LocalCoordinator {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn bell(&self, topic: &str) -> watch::Sender<u64> {
        self.lock().topics.entry(topic.to_owned()).or_insert_with(|| watch::channel(0).0).clone()
    }
}

#[async_trait]
impl Coordinator for LocalCoordinator {
    async fn join(&self, group: &str, member: &str, data: Vec<u8>) -> Result<Membership> {
        names::check(group)?;
        names::check(member)?;
        {
            let mut state = self.lock();
            let members = state.groups.entry(group.to_owned()).or_default();
            if members.contains_key(member) {
                return Err(CoordError::AlreadyMember { group: group.to_owned(), member: member.to_owned() });
            }
            members.insert(member.to_owned(), data);
        }
        let (updates, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
        let leave = CancellationToken::new();
        let this = self.clone();
        let (group, member, stop) = (group.to_owned(), member.to_owned(), leave.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    Some(data) = rx.recv() => {
                        if let Some(slot) = this.lock().groups.get_mut(&group).and_then(|m| m.get_mut(&member)) {
                            *slot = data;
                        }
                    }
                }
            }
            if let Some(members) = this.lock().groups.get_mut(&group) {
                members.remove(&member);
            }
        });
        Ok(Membership { updates, _leave: leave.drop_guard() })
    }

    async fn members(&self, group: &str) -> Result<Vec<Member>> {
        names::check(group)?;
        let state = self.lock();
        Ok(state
            .groups
            .get(group)
            .map(|m| m.iter().map(|(name, data)| Member { name: name.clone(), data: data.clone() }).collect())
            .unwrap_or_default())
    }

    async fn campaign(&self, key: &str, candidate: &str) -> Result<Campaign> {
        names::check(key)?;
        names::check(candidate)?;
        let (tx, rx) = watch::channel(Leadership::Candidate);
        let token = {
            let mut state = self.lock();
            let election = state.elections.entry(key.to_owned()).or_default();
            election.last_token += 1;
            let token = election.last_token;
            election.candidates.insert(token, tx);
            election.crown();
            token
        };
        let resign = CancellationToken::new();
        let (this, key, stop) = (self.clone(), key.to_owned(), resign.clone());
        tokio::spawn(async move {
            stop.cancelled().await;
            let mut state = this.lock();
            if let Some(election) = state.elections.get_mut(&key) {
                election.candidates.remove(&token);
                election.crown();
            }
        });
        Ok(Campaign { state: rx, _resign: resign.drop_guard() })
    }

    async fn read(&self, key: &str) -> Result<Option<Owned>> {
        names::check(key)?;
        Ok(self.lock().owners.get(key).cloned())
    }

    async fn compare_and_set(&self, key: &str, expected: Option<i32>, data: &[u8]) -> Result<Cas> {
        names::check(key)?;
        let mut state = self.lock();
        let current = state.owners.get(key).cloned();
        match (expected, current) {
            (None, None) => {
                state.owners.insert(key.to_owned(), Owned { data: data.to_vec(), version: 0 });
                Ok(Cas::Written { version: 0 })
            }
            (Some(v), Some(cur)) if cur.version == v => {
                let version = v + 1;
                state.owners.insert(key.to_owned(), Owned { data: data.to_vec(), version });
                Ok(Cas::Written { version })
            }
            (_, current) => Ok(Cas::Conflict { current }),
        }
    }

    async fn remove(&self, key: &str, version: i32) -> Result<bool> {
        names::check(key)?;
        let mut state = self.lock();
        if state.owners.get(key).is_some_and(|o| o.version == version) {
            state.owners.remove(key);
            return Ok(true);
        }
        Ok(false)
    }

    fn notify(&self, topic: &str) {
        if names::check(topic).is_err() {
            tracing::error!(topic, "notify: invalid topic name, nothing sent");
            return;
        }
        self.bell(topic).send_modify(|n| *n += 1);
    }

    async fn subscribe(&self, topic: &str) -> Result<Subscription> {
        names::check(topic)?;
        let mut bell = self.bell(topic).subscribe();
        bell.mark_changed();
        Ok(Subscription { bell, _stop: None })
    }

    fn is_ready(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn election_passes_to_the_next_candidate_with_a_larger_token() {
        let c = LocalCoordinator::new();
        let mut a = c.campaign("connector/x", "a").await.unwrap();
        let mut b = c.campaign("connector/x", "b").await.unwrap();
        let ta = a.leading().await.unwrap();
        assert_eq!(b.current(), Leadership::Candidate);
        drop(a);
        let tb = tokio::time::timeout(Duration::from_secs(1), b.leading()).await.unwrap().unwrap();
        assert!(tb > ta);
    }

    #[tokio::test]
    async fn membership_ends_with_its_handle() {
        let c = LocalCoordinator::new();
        let m = c.announce_presence("alice", "node-1", b"ready".to_vec()).await.unwrap();
        assert!(matches!(c.join("presence/alice", "node-1", vec![]).await, Err(CoordError::AlreadyMember { .. })));
        m.update(b"away".to_vec());
        tokio::task::yield_now().await;
        assert_eq!(c.presence("alice").await.unwrap()[0].data, b"away");
        drop(m);
        for _ in 0..100 {
            if c.presence("alice").await.unwrap().is_empty() {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("member still present after its handle was dropped");
    }

    #[tokio::test]
    async fn compare_and_set_lets_one_writer_win() {
        let c = LocalCoordinator::new();
        assert_eq!(c.compare_and_set("i/1", None, b"a").await.unwrap(), Cas::Written { version: 0 });
        assert!(matches!(c.compare_and_set("i/1", None, b"b").await.unwrap(), Cas::Conflict { .. }));
        assert_eq!(c.compare_and_set("i/1", Some(0), b"b").await.unwrap(), Cas::Written { version: 1 });
        assert!(matches!(c.compare_and_set("i/1", Some(0), b"c").await.unwrap(), Cas::Conflict { .. }));
        assert!(!c.remove("i/1", 0).await.unwrap());
        assert!(c.remove("i/1", 1).await.unwrap());
        assert_eq!(c.read("i/1").await.unwrap(), None);
    }

    #[tokio::test]
    async fn notifications_coalesce_and_the_first_wake_is_immediate() {
        let c = LocalCoordinator::new();
        let mut sub = c.subscribe("agent/alice").await.unwrap();
        sub.wake().await.unwrap();
        for _ in 0..10 {
            c.notify("agent/alice");
        }
        sub.wake().await.unwrap();
        assert!(tokio::time::timeout(Duration::from_millis(20), sub.wake()).await.is_err(), "ten notifies, one wake");
    }
}
