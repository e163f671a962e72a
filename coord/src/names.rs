//! Names of groups, keys and topics, and the ZooKeeper paths they live at.

use crate::{CoordError, Result};

/// Checks a `/`-separated name: every segment non-empty, not `.`/`..`, of `[A-Za-z0-9-_.:@]`.
pub(crate) fn check(name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '@'))
        });
    if valid { Ok(()) } else { Err(CoordError::InvalidName(name.to_owned())) }
}

/// What a name is for: each kind lives in its own subtree.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Tree {
    Members,
    Elections,
    Owners,
    Notify,
}

impl Tree {
    fn dir(self) -> &'static str {
        match self {
            Tree::Members => "members",
            Tree::Elections => "elections",
            Tree::Owners => "owners",
            Tree::Notify => "notify",
        }
    }

    /// The absolute path of `name` under `root`, after checking the name.
    pub(crate) fn path(self, root: &str, name: &str) -> Result<String> {
        check(name)?;
        Ok(format!("{root}/{}/{name}", self.dir()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_per_segment() {
        assert!(check("presence/alice@example.com").is_ok());
        assert!(check("connector/5f0c:primary").is_ok());
        for bad in ["", "/a", "a/", "a//b", "a/../b", ".", "a b", "a\nb", "zook\u{e9}"] {
            assert!(matches!(check(bad), Err(CoordError::InvalidName(_))), "{bad:?} accepted");
        }
    }

    #[test]
    fn paths_sit_under_their_tree() {
        assert_eq!(Tree::Notify.path("/sb", "agent/bob").unwrap(), "/sb/notify/agent/bob");
        assert_eq!(Tree::Owners.path("/sb", "interaction/1").unwrap(), "/sb/owners/interaction/1");
    }
}
