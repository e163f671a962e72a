//! Several video nodes (docs/video.md, "Several video nodes"): which node hosts a room's media,
//! decided through ZooKeeper, so that a join reaching any node ends on the right one.
//!
//! - Every video node is a member of `video/nodes` (an ephemeral node of its session) with the
//!   URL it is reached at by name and whether it drains.
//! - A room is **pinned** by the first join: an atomic create of the ownership record
//!   `video/rooms/<room>` holding the node's name (the first create wins, every other join reads
//!   it). A join that reaches another node is answered `room_on_other_node` with the hosting
//!   node's URL, where the page joins again.
//! - A **draining** node pins no new room (a new room goes to a live node that does not drain)
//!   and keeps hosting the rooms it has until their calls end.
//! - A room pinned to a node that is **no longer a member** (its session expired: the node died)
//!   is pinned again, compare-and-set on the record's version, by the node the next join reaches;
//!   the pages rejoin there with a fresh peer connection.
//! - An ended room's record is removed, so ZooKeeper holds only the rooms in use.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use coord::{Cas, CoordError, Coordinator, Member, Membership};
use rand::seq::IndexedRandom;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The group every video node is a member of.
const GROUP: &str = "video/nodes";

fn room_key(room: Uuid) -> String {
    format!("video/rooms/{room}")
}

/// What a node publishes about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct NodeInfo {
    /// The base URL the node is reached at by name (its signalling is `<url>/api/v1/video/ws`).
    url: String,
    draining: bool,
}

/// Where a room's media is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pinned {
    /// On this node.
    Here,
    /// On another live node: the page joins there.
    Elsewhere { node: String, url: String },
}

/// This node in the cluster of video nodes.
pub struct Nodes {
    coord: Arc<dyn Coordinator>,
    node: String,
    url: String,
    draining: AtomicBool,
    membership: Membership,
}

impl Nodes {
    /// Joins `video/nodes` as `node`, reached at `url`.
    pub async fn join(coord: Arc<dyn Coordinator>, node: String, url: String) -> Result<Self, CoordError> {
        let info = NodeInfo { url: url.clone(), draining: false };
        let membership = coord.join(GROUP, &node, serde_json::to_vec(&info).expect("node info")).await?;
        Ok(Nodes { coord, node, url, draining: AtomicBool::new(false), membership })
    }

    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Starts (or stops) draining: no new room is pinned here; the rooms pinned here stay.
    pub fn set_draining(&self, draining: bool) {
        self.draining.store(draining, Ordering::SeqCst);
        let info = NodeInfo { url: self.url.clone(), draining };
        self.membership.update(serde_json::to_vec(&info).expect("node info"));
    }

    /// The node hosting `room`, pinning it first if nobody does (or its node is gone).
    pub async fn pin(&self, room: Uuid) -> Result<Pinned, CoordError> {
        let key = room_key(room);
        // a lost race is read again; three losses in a row mean something is very wrong
        for _ in 0..3 {
            let members = self.coord.members(GROUP).await?;
            let (expected, target) = match self.coord.read(&key).await? {
                Some(owned) => {
                    let host = String::from_utf8_lossy(&owned.data).into_owned();
                    if host == self.node {
                        return Ok(Pinned::Here);
                    }
                    if let Some(url) = url_of(&members, &host) {
                        return Ok(Pinned::Elsewhere { node: host, url });
                    }
                    // its node is gone: the call moves
                    (Some(owned.version), self.target(&members))
                }
                None => (None, self.target(&members)),
            };
            match self.coord.compare_and_set(&key, expected, target.as_bytes()).await? {
                Cas::Written { .. } => {
                    if expected.is_some() {
                        tracing::info!(%room, node = %target, "video room pinned again: its node is gone");
                    }
                    if target == self.node {
                        return Ok(Pinned::Here);
                    }
                    let url = url_of(&members, &target).unwrap_or_default();
                    return Ok(Pinned::Elsewhere { node: target, url });
                }
                Cas::Conflict { .. } => continue,
            }
        }
        Err(CoordError::Unavailable(format!("the pin of video room {room} keeps changing")))
    }

    /// The names of the live video nodes (this one among them).
    pub async fn live(&self) -> Result<Vec<String>, CoordError> {
        Ok(self.coord.members(GROUP).await?.into_iter().map(|m| m.name).collect())
    }

    /// Forgets the pin of an ended room.
    pub async fn unpin(&self, room: Uuid) {
        let key = room_key(room);
        let removed = async {
            if let Some(owned) = self.coord.read(&key).await? {
                self.coord.remove(&key, owned.version).await?;
            }
            Ok::<_, CoordError>(())
        };
        if let Err(e) = removed.await {
            tracing::warn!(%room, error = %e, "cannot remove the ended video room's pin");
        }
    }

    /// Whether this node may end `room` when it expires: it is pinned here, to nobody, or to a
    /// node that is gone.
    pub async fn may_expire(&self, room: Uuid) -> Result<bool, CoordError> {
        let Some(owned) = self.coord.read(&room_key(room)).await? else { return Ok(true) };
        let host = String::from_utf8_lossy(&owned.data).into_owned();
        if host == self.node {
            return Ok(true);
        }
        Ok(url_of(&self.coord.members(GROUP).await?, &host).is_none())
    }

    /// The node a room nobody hosts goes to: this one, unless it drains; then a live node that
    /// does not drain, at random; this one if there is none.
    fn target(&self, members: &[Member]) -> String {
        if !self.draining() {
            return self.node.clone();
        }
        let open: Vec<&Member> = members
            .iter()
            .filter(|m| m.name != self.node)
            .filter(|m| serde_json::from_slice::<NodeInfo>(&m.data).is_ok_and(|i| !i.draining))
            .collect();
        open.choose(&mut rand::rng()).map(|m| m.name.clone()).unwrap_or_else(|| self.node.clone())
    }
}

/// The URL of live member `node`, if it is one.
fn url_of(members: &[Member], node: &str) -> Option<String> {
    let member = members.iter().find(|m| m.name == node)?;
    Some(serde_json::from_slice::<NodeInfo>(&member.data).map(|i| i.url).unwrap_or_default())
}

/// The signalling URL under a node's base URL: `https://h/x` -> `wss://h/x/api/v1/video/ws`.
pub fn signalling_url(base: &str) -> String {
    let base = base.trim_end_matches('/');
    let ws = if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        base.to_owned()
    };
    format!("{ws}/api/v1/video/ws")
}

#[cfg(test)]
mod tests {
    use super::*;
    use coord::LocalCoordinator;

    /// Membership changes reach the coordinator through a task: let it run.
    async fn settle() {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    async fn node(coord: &Arc<dyn Coordinator>, name: &str) -> Nodes {
        Nodes::join(coord.clone(), name.into(), format!("https://hub.example/video-node/{name}")).await.unwrap()
    }

    #[tokio::test]
    async fn the_first_join_pins_the_room_and_other_nodes_send_there() {
        let coord: Arc<dyn Coordinator> = Arc::new(LocalCoordinator::new());
        let (a, b) = (node(&coord, "a").await, node(&coord, "b").await);
        let room = Uuid::new_v4();
        assert_eq!(b.pin(room).await.unwrap(), Pinned::Here);
        assert_eq!(
            a.pin(room).await.unwrap(),
            Pinned::Elsewhere { node: "b".into(), url: "https://hub.example/video-node/b".into() }
        );
        assert_eq!(b.pin(room).await.unwrap(), Pinned::Here, "again: still here");
        assert!(b.may_expire(room).await.unwrap() && !a.may_expire(room).await.unwrap());
        b.unpin(room).await;
        assert_eq!(a.pin(room).await.unwrap(), Pinned::Here, "an ended room's pin is gone");
    }

    #[tokio::test]
    async fn a_draining_node_pins_new_rooms_elsewhere_and_keeps_its_own() {
        let coord: Arc<dyn Coordinator> = Arc::new(LocalCoordinator::new());
        let (a, b) = (node(&coord, "a").await, node(&coord, "b").await);
        let kept = Uuid::new_v4();
        assert_eq!(a.pin(kept).await.unwrap(), Pinned::Here);
        a.set_draining(true);
        settle().await;
        assert!(a.draining());
        let fresh = Uuid::new_v4();
        assert_eq!(
            a.pin(fresh).await.unwrap(),
            Pinned::Elsewhere { node: "b".into(), url: "https://hub.example/video-node/b".into() }
        );
        assert_eq!(b.pin(fresh).await.unwrap(), Pinned::Here, "pinned to b for everyone");
        assert_eq!(a.pin(kept).await.unwrap(), Pinned::Here, "a call it hosts stays");
        b.set_draining(true);
        settle().await;
        let last = Uuid::new_v4();
        assert_eq!(a.pin(last).await.unwrap(), Pinned::Here, "every node drains: better here than nowhere");
    }

    #[tokio::test]
    async fn the_rooms_of_a_node_that_is_gone_are_pinned_again() {
        let coord: Arc<dyn Coordinator> = Arc::new(LocalCoordinator::new());
        let a = node(&coord, "a").await;
        let b = node(&coord, "b").await;
        let room = Uuid::new_v4();
        assert_eq!(a.pin(room).await.unwrap(), Pinned::Here);
        drop(a); // its membership ends, as a dead node's session does
        settle().await;
        assert!(b.may_expire(room).await.unwrap(), "a gone node's room may be expired by anyone");
        assert_eq!(b.pin(room).await.unwrap(), Pinned::Here, "b takes the call");
        let c = node(&coord, "c").await;
        assert_eq!(
            c.pin(room).await.unwrap(),
            Pinned::Elsewhere { node: "b".into(), url: "https://hub.example/video-node/b".into() }
        );
    }

    #[test]
    fn signalling_urls_follow_the_scheme() {
        assert_eq!(
            signalling_url("https://hub.example/video-node/v1/"),
            "wss://hub.example/video-node/v1/api/v1/video/ws"
        );
        assert_eq!(signalling_url("http://127.0.0.1:8080"), "ws://127.0.0.1:8080/api/v1/video/ws");
    }
}
