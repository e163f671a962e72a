//! Names of the coordination topics, the contract between the processes that ring them and
//! the ones that listen: a connector rings `agent/<login>` after storing a message for an
//! assigned interaction and `chatserver/routing` after opening one; the chatserver rings
//! `account/<id>` after queueing outbound work and `webchat/<id>` after an agent typed or read
//! in a web chat. (Names only: this crate knows no coordinator.)

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

/// Video rooms may have ended outside the video node (their interaction closed): the nodes
/// with live rooms re-read their state.
pub const VIDEO_ROOMS: &str = "video/rooms";

/// The leader election of the router.
pub const ROUTER_ELECTION: &str = "chatserver/router";

/// The outbox of one channel account has work.
pub fn account(id: Uuid) -> String {
    format!("account/{id}")
}

/// The bot runs of one channel account have work (a customer wrote to the bot): the account's
/// connector leader runs them.
pub fn bots(id: Uuid) -> String {
    format!("bots/{id}")
}

/// The customer sockets of one web chat account: something a widget shows changed (an agent
/// typing, a read mark). Every process holding customer sockets of the account listens and
/// rings only the sockets whose `webchat_signals` version moved.
pub fn webchat(account: Uuid) -> String {
    format!("webchat/{account}")
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
