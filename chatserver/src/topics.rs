//! Names of the coordination topics the chatserver rings and listens to.

use uuid::Uuid;

/// The doorbell of one agent's event stream. Logins that are not plain coordination names are
/// hex-encoded, so any login maps to a valid, distinct topic.
pub fn agent(login: &str) -> String {
    let plain = !login.is_empty()
        && !login.starts_with('x')
        && login != "."
        && login != ".."
        && login.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'));
    if plain {
        format!("agent/{login}")
    } else {
        let hex: String = login.bytes().map(|b| format!("{b:02x}")).collect();
        format!("agent/x{hex}")
    }
}

/// Routing has something to look at (a new or returned interaction, a free agent).
pub const ROUTING: &str = "chatserver/routing";

/// The leader election of the router.
pub const ROUTER_ELECTION: &str = "chatserver/router";

/// The outbox of one channel account has work.
pub fn account(id: Uuid) -> String {
    format!("account/{id}")
}

/// Rings every topic of `agents`.
pub fn wake_agents(coord: &dyn coord::Coordinator, agents: &[String]) {
    for agent in agents {
        coord.notify(&self::agent(agent));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_login_gets_a_distinct_valid_topic() {
        assert_eq!(agent("alice@example.com"), "agent/alice@example.com");
        assert_eq!(agent("Анна"), "agent/xd090d0bdd0bdd0b0");
        assert_ne!(agent("x41"), agent("A"), "an x-prefixed login cannot collide with an encoded one");
        assert_eq!(agent("a/b"), "agent/x612f62");
    }
}
