//! Which doorbell writes were this process's own (sans-IO).
//!
//! [`Coordinator::notify`](crate::Coordinator::notify) wakes the subscribers in its own process
//! at once and writes the topic's doorbell in ZooKeeper for the others. The watch this process
//! keeps on the same doorbell then fires for that write too, and woke the same subscribers a
//! second time: every agent socket read its stream twice per batch, the second time for
//! nothing, on the same two cores as the writer's next batch. The notifier records the versions
//! it wrote (for topics watched here); a watch that finds only those between the version it saw
//! last and the one it sees now does not wake anyone. A version it cannot account for (another
//! process's write, a write whose answer it has not seen yet, more writes than it keeps) wakes
//! the subscribers as before: a doubt costs one read, never a missed one.

use std::collections::{HashMap, VecDeque};

/// How many of its own versions a watched topic keeps: more writes than this between two looks
/// of a watch is a doubt (a wake).
const KEEP: usize = 32;

#[derive(Debug, Default)]
pub(crate) struct OwnRings {
    topics: HashMap<String, Topic>,
}

#[derive(Debug, Default)]
struct Topic {
    watchers: usize,
    /// Versions this process wrote, oldest first.
    versions: VecDeque<i32>,
}

impl OwnRings {
    /// A watch on `path` starts: from now on the notifier's writes to it are recorded.
    pub(crate) fn watch(&mut self, path: &str) {
        self.topics.entry(path.to_owned()).or_default().watchers += 1;
    }

    /// A watch on `path` ends; the last one forgets the topic.
    pub(crate) fn unwatch(&mut self, path: &str) {
        if let Some(topic) = self.topics.get_mut(path) {
            topic.watchers = topic.watchers.saturating_sub(1);
            if topic.watchers == 0 {
                self.topics.remove(path);
            }
        }
    }

    /// The notifier wrote `path`'s doorbell, which now has `version`.
    pub(crate) fn wrote(&mut self, path: &str, version: i32) {
        if let Some(topic) = self.topics.get_mut(path) {
            if topic.versions.len() == KEEP {
                topic.versions.pop_front();
            }
            topic.versions.push_back(version);
        }
    }

    /// Whether every version after `seen` up to `now` was written by this process.
    pub(crate) fn covers(&self, path: &str, seen: i32, now: i32) -> bool {
        let Some(topic) = self.topics.get(path) else { return false };
        let Some(count) = now.checked_sub(seen).filter(|n| (1..=KEEP as i32).contains(n)) else {
            return false;
        };
        (1..=count).all(|k| topic.versions.contains(&(seen + k)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: &str = "/sb/notify/agent/alice";

    #[test]
    fn only_a_run_of_our_own_writes_is_covered() {
        let mut own = OwnRings::default();
        own.watch(P);
        own.wrote(P, 4);
        own.wrote(P, 5);
        assert!(own.covers(P, 3, 4));
        assert!(own.covers(P, 3, 5), "both writes ours");
        assert!(!own.covers(P, 2, 5), "version 3 was someone else's");
        own.wrote(P, 7);
        assert!(!own.covers(P, 5, 7), "version 6 was someone else's");
        assert!(own.covers(P, 6, 7));
        assert!(!own.covers(P, 7, 8), "a version not seen written (yet) is a doubt");
        assert!(!own.covers(P, 5, 5) && !own.covers(P, 7, 4), "no move, or backwards: a doubt");
    }

    #[test]
    fn unwatched_topics_record_nothing_and_the_last_watch_forgets() {
        let mut own = OwnRings::default();
        own.wrote(P, 1);
        own.watch(P);
        assert!(!own.covers(P, 0, 1), "written before anyone watched: not recorded");
        own.watch(P);
        own.wrote(P, 2);
        own.unwatch(P);
        assert!(own.covers(P, 1, 2), "a second watch still holds the topic");
        own.unwatch(P);
        assert!(own.topics.is_empty());
        own.unwatch(P);
        assert!(!own.covers(P, 1, 2));
    }

    #[test]
    fn it_keeps_a_bounded_number_of_versions() {
        let mut own = OwnRings::default();
        own.watch(P);
        for v in 1..=1000 {
            own.wrote(P, v);
        }
        assert_eq!(own.topics[P].versions.len(), KEEP);
        assert!(own.covers(P, 1000 - KEEP as i32, 1000));
        assert!(!own.covers(P, 999 - KEEP as i32, 1000), "further back than kept: a doubt");
        assert!(!own.covers(P, i32::MIN, i32::MAX), "no overflow");
    }
}
