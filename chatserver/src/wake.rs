//! Ringing doorbells after a commit.

use coord::Coordinator;

/// Rings the doorbell of every agent in `agents`.
pub fn wake_agents(coord: &dyn Coordinator, agents: &[String]) {
    for agent in agents {
        coord.notify(&schema::topics::agent(agent));
    }
}
