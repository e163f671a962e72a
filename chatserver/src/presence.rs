//! This node's agent presence in the coordinator: one presence registration per agent with at
//! least one socket here, however many sockets (tabs) it has.

use std::collections::HashMap;
use std::sync::Arc;

use coord::{Coordinator, Membership};
use tokio::sync::Mutex;

pub struct Presence {
    coord: Arc<dyn Coordinator>,
    node: String,
    // a tokio mutex: the first attach of an agent awaits its registration while holding it
    agents: Mutex<HashMap<String, (usize, Membership)>>,
}

/// Held by a socket; dropping it detaches.
pub struct Attached {
    presence: Arc<Presence>,
    login: String,
}

impl Presence {
    pub fn new(coord: Arc<dyn Coordinator>, node: String) -> Arc<Self> {
        Arc::new(Presence { coord, node, agents: Mutex::default() })
    }

    pub async fn attach(self: &Arc<Self>, login: &str) -> Result<Attached, coord::CoordError> {
        let mut agents = self.agents.lock().await;
        if let Some((count, _)) = agents.get_mut(login) {
            *count += 1;
        } else {
            let membership = self.coord.announce_presence(&presence_name(login), &self.node, Vec::new()).await?;
            agents.insert(login.to_owned(), (1, membership));
        }
        Ok(Attached { presence: self.clone(), login: login.to_owned() })
    }

    /// Number of distinct agents with a socket on this node.
    pub async fn agents(&self) -> usize {
        self.agents.lock().await.len()
    }
}

/// The presence group name of a login (same encoding as its topic).
pub fn presence_name(login: &str) -> String {
    schema::topics::agent(login).trim_start_matches("agent/").to_owned()
}

impl Drop for Attached {
    fn drop(&mut self) {
        let presence = self.presence.clone();
        let login = std::mem::take(&mut self.login);
        tokio::spawn(async move {
            let mut agents = presence.agents.lock().await;
            if let Some((count, _)) = agents.get_mut(&login) {
                *count -= 1;
                if *count == 0 {
                    agents.remove(&login); // dropping the membership leaves the group
                }
            }
        });
    }
}
