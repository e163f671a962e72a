//! The outbox worker's in-memory view of its backlog: which rows may start now.
//!
//! Sans-IO, like [`crate::pacing`]: fed rows (in outbox id order) and `now`, it answers which
//! row to start next, or until when to wait. Its rules:
//!
//! - **order per chat**: a chat's rows start in id order, one at a time; a row waiting for its
//!   retry time holds back the rows behind it in the same chat (and no other chat);
//! - **fairness**: among chats that may send, the one whose next row is oldest goes first;
//! - **pacing**: a row starts only when the [`Pacer`] gives a token for its chat.
//!
//! The rows themselves stay in PostgreSQL (the outbox table) until they are done or failed;
//! this is a window onto them, refilled from the cursor.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use crate::pacing::Pacer;

#[derive(Debug)]
struct Entry<T> {
    chat: String,
    not_before: Duration,
    payload: T,
}

/// Rows waiting to be performed, per chat.
#[derive(Debug)]
pub struct Backlog<T> {
    entries: HashMap<i64, Entry<T>>,
    queues: HashMap<String, VecDeque<i64>>,
    /// Head row id -> chat, for chats with no row in flight.
    heads: BTreeMap<i64, String>,
    /// The highest id ever pushed: the next read from the store starts after it.
    cursor: i64,
    in_flight: usize,
}

/// What the worker should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Perform this row now (its chat's token is taken).
    Start(i64),
    /// Nothing may start before this time.
    WaitUntil(Duration),
    /// Nothing to do until new rows arrive or a row in flight finishes.
    Idle,
}

/// How a row in flight ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finished {
    /// Done or failed for good: the chat's next row may go.
    Removed,
    /// To be tried again, not before this time; the chat waits for it.
    RetryAt(Duration),
}

impl<T> Default for Backlog<T> {
    fn default() -> Self {
        Backlog { entries: HashMap::new(), queues: HashMap::new(), heads: BTreeMap::new(), cursor: 0, in_flight: 0 }
    }
}

impl<T> Backlog<T> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether row `id` is held.
    pub fn contains(&self, id: i64) -> bool {
        self.entries.contains_key(&id)
    }

    /// Adds row `id` behind the rows of its chat; a row already held is ignored. Rows arrive in
    /// id order, except a row whose transaction committed after a later one's: it queues
    /// behind what its chat already holds, in the order the rows became visible.
    pub fn push(&mut self, id: i64, chat: &str, not_before: Duration, payload: T) {
        if self.entries.contains_key(&id) {
            return;
        }
        self.cursor = self.cursor.max(id);
        self.entries.insert(id, Entry { chat: chat.to_owned(), not_before, payload });
        let queue = self.queues.entry(chat.to_owned()).or_default();
        queue.push_back(id);
        if queue.len() == 1 {
            self.heads.insert(id, chat.to_owned());
        }
    }

    /// The highest row id seen.
    pub fn cursor(&self) -> i64 {
        self.cursor
    }

    /// Rows held (waiting or in flight).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Rows in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    pub fn get(&self, id: i64) -> Option<&T> {
        self.entries.get(&id).map(|e| &e.payload)
    }

    pub fn get_mut(&mut self, id: i64) -> Option<&mut T> {
        self.entries.get_mut(&id).map(|e| &mut e.payload)
    }

    /// The next row that may start at `now`, taking its chat's token from `pacer`; or how long
    /// to wait. Never more than `max_in_flight` rows in flight.
    pub fn next(&mut self, now: Duration, pacer: &mut Pacer, max_in_flight: usize) -> Step {
        if self.in_flight >= max_in_flight {
            return Step::Idle;
        }
        let mut wake: Option<Duration> = None;
        let mut start = None;
        for (&id, chat) in &self.heads {
            let entry = &self.entries[&id];
            if entry.not_before > now {
                wake = Some(wake.map_or(entry.not_before, |w| w.min(entry.not_before)));
                continue;
            }
            match pacer.try_take(now, chat) {
                Ok(()) => {
                    start = Some(id);
                    break;
                }
                Err(at) => wake = Some(wake.map_or(at, |w| w.min(at))),
            }
        }
        match (start, wake) {
            (Some(id), _) => {
                self.heads.remove(&id);
                self.in_flight += 1;
                Step::Start(id)
            }
            (None, Some(at)) => Step::WaitUntil(at),
            (None, None) => Step::Idle,
        }
    }

    /// Row `id`, which was started, has ended.
    pub fn finish(&mut self, id: i64, how: Finished) -> Option<T> {
        let chat = self.entries.get(&id)?.chat.clone();
        self.in_flight = self.in_flight.saturating_sub(1);
        match how {
            Finished::RetryAt(at) => {
                if let Some(entry) = self.entries.get_mut(&id) {
                    entry.not_before = at;
                }
                self.heads.insert(id, chat);
                None
            }
            Finished::Removed => {
                let entry = self.entries.remove(&id)?;
                let queue = self.queues.get_mut(&chat)?;
                debug_assert_eq!(queue.front(), Some(&id));
                queue.pop_front();
                match queue.front() {
                    Some(&next) => {
                        self.heads.insert(next, chat);
                    }
                    None => {
                        self.queues.remove(&chat);
                    }
                }
                Some(entry.payload)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pacing::PacerConfig;
    use schema::domain::Rate;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn fast() -> Pacer {
        Pacer::new(PacerConfig::strict(Rate::per_second(1000), Rate::per_second(1000)))
    }

    #[test]
    fn one_row_per_chat_in_flight_in_id_order() {
        let mut b = Backlog::new();
        let mut p = fast();
        b.push(1, "a", ms(0), ());
        b.push(2, "a", ms(0), ());
        b.push(3, "b", ms(0), ());
        assert_eq!(b.next(ms(0), &mut p, 10), Step::Start(1));
        assert_eq!(b.next(ms(1), &mut p, 10), Step::Start(3), "a is busy; b goes");
        assert_eq!(b.next(ms(2), &mut p, 10), Step::Idle);
        b.finish(1, Finished::Removed);
        assert_eq!(b.next(ms(3), &mut p, 10), Step::Start(2));
        assert_eq!(b.in_flight(), 2);
    }

    #[test]
    fn a_retry_holds_back_its_chat_only() {
        let mut b = Backlog::new();
        let mut p = fast();
        b.push(1, "a", ms(0), ());
        b.push(2, "a", ms(0), ());
        b.push(3, "b", ms(0), ());
        assert_eq!(b.next(ms(0), &mut p, 10), Step::Start(1));
        b.finish(1, Finished::RetryAt(ms(5000)));
        assert_eq!(b.next(ms(10), &mut p, 10), Step::Start(3));
        assert_eq!(b.next(ms(20), &mut p, 10), Step::WaitUntil(ms(5000)));
        assert_eq!(b.next(ms(5000), &mut p, 10), Step::Start(1), "the retried row, before row 2");
        b.finish(1, Finished::Removed);
        assert_eq!(b.next(ms(5001), &mut p, 10), Step::Start(2));
    }

    #[test]
    fn the_oldest_head_goes_first_and_pacing_decides_when() {
        let mut b = Backlog::new();
        let mut p = Pacer::new(PacerConfig::strict(Rate::per_second(10), Rate::per_second(1)));
        b.push(5, "five", ms(0), ());
        b.push(6, "six", ms(0), ());
        b.push(5, "five", ms(0), ()); // held already: ignored
        assert_eq!(b.len(), 2);
        assert_eq!(b.next(ms(0), &mut p, 10), Step::Start(5));
        assert_eq!(b.next(ms(0), &mut p, 10), Step::WaitUntil(ms(100)), "global pacing");
        assert_eq!(b.next(ms(100), &mut p, 10), Step::Start(6));
        assert_eq!(b.cursor(), 6);
    }

    #[test]
    fn a_late_committed_row_queues_behind_its_chat() {
        let mut b = Backlog::new();
        let mut p = fast();
        b.push(7, "a", ms(0), ());
        b.push(4, "a", ms(0), ()); // committed after row 7 was read
        b.push(3, "b", ms(0), ());
        assert_eq!(b.cursor(), 7);
        assert_eq!(b.next(ms(0), &mut p, 10), Step::Start(3), "b's head is the oldest row");
        assert_eq!(b.next(ms(1), &mut p, 10), Step::Start(7), "a keeps the order rows became visible in");
        b.finish(7, Finished::Removed);
        assert_eq!(b.next(ms(2), &mut p, 10), Step::Start(4));
    }

    #[test]
    fn in_flight_is_capped() {
        let mut b = Backlog::new();
        let mut p = fast();
        for id in 1..=5 {
            b.push(id, &format!("c{id}"), ms(0), id * 10);
        }
        assert_eq!(b.next(ms(0), &mut p, 2), Step::Start(1));
        assert_eq!(b.next(ms(1), &mut p, 2), Step::Start(2));
        assert_eq!(b.next(ms(2), &mut p, 2), Step::Idle);
        assert_eq!(b.finish(2, Finished::Removed), Some(20));
        assert_eq!(b.next(ms(3), &mut p, 2), Step::Start(3));
        assert_eq!(b.get(3), Some(&30));
        assert_eq!(b.len(), 4);
    }
}
