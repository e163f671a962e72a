//! The outbox worker's in-memory view of its backlog: which rows may start now.
//!
//! Sans-IO, like [`crate::pacing`]: fed rows (in outbox id order) and `now`, it answers which
//! row to start next, or until when to wait. Its rules:
//!
//! - **order per chat**: a chat's rows start in id order, one at a time; a row waiting for its
//!   retry time holds back the rows behind it in the same chat (and no other chat). A row is
//!   done with its chat when the platform has answered it for good ([`Backlog::answered`]),
//!   before its outcome is stored: the chat's next row goes meanwhile, except a row that needs
//!   the stored outcomes of the rows before it (an edit, a deletion or a reply reads the
//!   platform ids they got: [`Backlog::after_outcomes`]);
//! - **fairness**: among chats that may send, the one whose next row is oldest goes first;
//! - **pacing**: a row starts only when the [`Pacer`] gives a token for its chat;
//! - **lanes**: live conversation rows ([`Lane::Live`]) are always considered before bulk rows
//!   ([`Lane::Bulk`], campaigns), which share the account's rate but never its last in-flight
//!   slot. A live row therefore waits for at most one token of the global rate however long the
//!   campaign backlog is; a bulk row also takes a token from its group's bucket (the campaign's
//!   own rate cap).
//!
//! The rows themselves stay in PostgreSQL (the outbox table) until they are done or failed;
//! this is a window onto them, refilled from the cursor.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use schema::domain::Rate;

use crate::pacing::Pacer;

/// Which lane a row travels in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lane {
    /// A live conversation: an agent's (or a bot's) message, edit or deletion.
    Live,
    /// Bulk traffic of `group` (a campaign), capped at `rate`.
    Bulk { group: String, rate: Rate },
}

#[derive(Debug)]
struct Entry<T> {
    chat: String,
    lane: Lane,
    not_before: Duration,
    /// Starts only when no earlier row of its chat waits for its outcome to be stored.
    after_outcomes: bool,
    /// Answered by the platform; its outcome is being stored.
    answered: bool,
    payload: T,
}

/// Rows waiting to be performed, per chat.
#[derive(Debug)]
pub struct Backlog<T> {
    entries: HashMap<i64, Entry<T>>,
    queues: HashMap<String, VecDeque<i64>>,
    /// Head row id -> chat, for chats with no row in flight, per lane.
    live_heads: BTreeMap<i64, String>,
    bulk_heads: BTreeMap<i64, String>,
    /// The highest live id ever pushed: the next read of live rows starts after it (bulk rows
    /// are read by what is not held, see [`Backlog::bulk_ids`]).
    cursor: i64,
    in_flight: usize,
    bulk_in_flight: usize,
    bulk_held: usize,
    /// Rows answered and not finished yet, per chat.
    answered: HashMap<String, usize>,
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
    /// To be tried again, not before this time; the chat waits for it. For a row already
    /// answered (its chat has moved on) this forgets the row instead: a later read of the
    /// store finds it again.
    RetryAt(Duration),
}

impl<T> Default for Backlog<T> {
    fn default() -> Self {
        Backlog {
            entries: HashMap::new(),
            queues: HashMap::new(),
            live_heads: BTreeMap::new(),
            bulk_heads: BTreeMap::new(),
            cursor: 0,
            in_flight: 0,
            bulk_in_flight: 0,
            bulk_held: 0,
            answered: HashMap::new(),
        }
    }
}

/// How many rows bulk traffic may have in flight: all but one slot, which stays free for live
/// traffic (with a single slot, bulk may use it).
pub fn bulk_in_flight_cap(max_in_flight: usize) -> usize {
    max_in_flight.saturating_sub(1).max(1)
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
        self.push_in(id, chat, Lane::Live, not_before, payload);
    }

    /// [`Backlog::push`] in a given lane. A chat's rows keep their order across lanes.
    pub fn push_in(&mut self, id: i64, chat: &str, lane: Lane, not_before: Duration, payload: T) {
        if self.entries.contains_key(&id) {
            return;
        }
        if lane == Lane::Live {
            self.cursor = self.cursor.max(id);
        } else {
            self.bulk_held += 1;
        }
        let bulk = lane != Lane::Live;
        let entry = Entry { chat: chat.to_owned(), lane, not_before, after_outcomes: false, answered: false, payload };
        self.entries.insert(id, entry);
        let queue = self.queues.entry(chat.to_owned()).or_default();
        queue.push_back(id);
        if queue.len() == 1 {
            self.heads_of(bulk).insert(id, chat.to_owned());
        }
    }

    /// Row `id`, held and not started, starts only when no earlier row of its chat waits for
    /// its outcome to be stored (see [`Backlog::answered`]).
    pub fn after_outcomes(&mut self, id: i64) {
        if let Some(entry) = self.entries.get_mut(&id) {
            entry.after_outcomes = true;
        }
    }

    fn heads_of(&mut self, bulk: bool) -> &mut BTreeMap<i64, String> {
        if bulk { &mut self.bulk_heads } else { &mut self.live_heads }
    }

    fn head(&mut self, id: i64, chat: String) {
        let bulk = self.entries.get(&id).is_some_and(|e| e.lane != Lane::Live);
        self.heads_of(bulk).insert(id, chat);
    }

    /// Bulk rows held (waiting or in flight).
    pub fn bulk_len(&self) -> usize {
        self.bulk_held
    }

    /// The ids of the bulk rows held, which a read of bulk rows must skip.
    pub fn bulk_ids(&self) -> Vec<i64> {
        self.entries.iter().filter(|(_, e)| e.lane != Lane::Live).map(|(id, _)| *id).collect()
    }

    /// The ids of the live rows held, which a look for rows behind the cursor skips.
    pub fn live_ids(&self) -> Vec<i64> {
        self.entries.iter().filter(|(_, e)| e.lane == Lane::Live).map(|(id, _)| *id).collect()
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

    /// Rows in flight (started, not answered yet).
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Rows started and not finished: in flight, or answered with their outcome being stored.
    pub fn unfinished(&self) -> usize {
        self.in_flight + self.answered.values().sum::<usize>()
    }

    pub fn get(&self, id: i64) -> Option<&T> {
        self.entries.get(&id).map(|e| &e.payload)
    }

    pub fn get_mut(&mut self, id: i64) -> Option<&mut T> {
        self.entries.get_mut(&id).map(|e| &mut e.payload)
    }

    /// The next row that may start at `now`, taking its tokens from `pacer`; or how long to
    /// wait. Live rows first; never more than `max_in_flight` rows in flight, nor more than
    /// [`bulk_in_flight_cap`] bulk rows.
    pub fn next(&mut self, now: Duration, pacer: &mut Pacer, max_in_flight: usize) -> Step {
        if self.in_flight >= max_in_flight {
            return Step::Idle;
        }
        // nothing goes before the global bucket allows: no need to look at every head (a
        // campaign holds thousands)
        let global = pacer.global_ready_at(now);
        if global > now && !(self.live_heads.is_empty() && self.bulk_heads.is_empty()) {
            return Step::WaitUntil(global);
        }
        let mut wake: Option<Duration> = None;
        let mut start = None;
        let bulk_may = self.bulk_in_flight < bulk_in_flight_cap(max_in_flight);
        // groups whose own cap refused a row: their other rows are refused too
        let mut capped: Vec<&str> = Vec::new();
        let lanes = [(false, &self.live_heads), (true, &self.bulk_heads)];
        'lanes: for (bulk, heads) in lanes {
            if bulk && !bulk_may {
                break;
            }
            for (&id, chat) in heads {
                let entry = &self.entries[&id];
                if entry.after_outcomes && self.answered.contains_key(chat) {
                    // goes when the outcomes are stored ([`Backlog::finish`] of the last one)
                    continue;
                }
                if entry.not_before > now {
                    wake = Some(wake.map_or(entry.not_before, |w| w.min(entry.not_before)));
                    continue;
                }
                let group = match &entry.lane {
                    Lane::Live => None,
                    Lane::Bulk { group, rate } => {
                        if capped.contains(&group.as_str()) {
                            continue;
                        }
                        let ready = pacer.group_ready_at(now, group);
                        if ready > now {
                            capped.push(group);
                            wake = Some(wake.map_or(ready, |w| w.min(ready)));
                            continue;
                        }
                        Some((group.as_str(), *rate))
                    }
                };
                match pacer.try_take_in(now, chat, group) {
                    Ok(()) => {
                        start = Some((id, bulk));
                        break 'lanes;
                    }
                    Err(at) => wake = Some(wake.map_or(at, |w| w.min(at))),
                }
            }
        }
        match (start, wake) {
            (Some((id, bulk)), _) => {
                self.heads_of(bulk).remove(&id);
                self.in_flight += 1;
                if bulk {
                    self.bulk_in_flight += 1;
                }
                Step::Start(id)
            }
            (None, Some(at)) => Step::WaitUntil(at),
            (None, None) => Step::Idle,
        }
    }

    /// Row `id`, in flight, was answered by the platform for good (sent, or refused for good)
    /// and its outcome is being stored: its slot is free and its chat's next row may start.
    /// The row stays held (a read of the store skips it) until [`Backlog::finish`].
    pub fn answered(&mut self, id: i64) {
        let Some(entry) = self.entries.get_mut(&id) else { return };
        if entry.answered {
            return;
        }
        entry.answered = true;
        let chat = entry.chat.clone();
        let bulk = entry.lane != Lane::Live;
        self.free_slot(bulk);
        *self.answered.entry(chat.clone()).or_default() += 1;
        self.advance(id, chat);
    }

    /// Row `id`, which was started, has ended.
    pub fn finish(&mut self, id: i64, how: Finished) -> Option<T> {
        let entry = self.entries.get(&id)?;
        let chat = entry.chat.clone();
        let bulk = entry.lane != Lane::Live;
        if entry.answered {
            // its chat moved on when it was answered: whatever `how` says, it leaves
            let payload = self.drop_entry(id)?;
            if let Some(left) = self.answered.get_mut(&chat) {
                *left -= 1;
                if *left == 0 {
                    self.answered.remove(&chat);
                }
            }
            return Some(payload);
        }
        self.free_slot(bulk);
        match how {
            Finished::RetryAt(at) => {
                if let Some(entry) = self.entries.get_mut(&id) {
                    entry.not_before = at;
                }
                self.heads_of(bulk).insert(id, chat);
                None
            }
            Finished::Removed => {
                let payload = self.drop_entry(id)?;
                self.advance(id, chat);
                Some(payload)
            }
        }
    }

    /// A started row's in-flight slot is free again.
    fn free_slot(&mut self, bulk: bool) {
        self.in_flight = self.in_flight.saturating_sub(1);
        if bulk {
            self.bulk_in_flight = self.bulk_in_flight.saturating_sub(1);
        }
    }

    /// Row `id` is held no more; its payload.
    fn drop_entry(&mut self, id: i64) -> Option<T> {
        let entry = self.entries.remove(&id)?;
        if entry.lane != Lane::Live {
            self.bulk_held -= 1;
        }
        Some(entry.payload)
    }

    /// Takes row `id` off the front of its chat's queue; the next row becomes the chat's head.
    fn advance(&mut self, id: i64, chat: String) {
        let Some(queue) = self.queues.get_mut(&chat) else { return };
        debug_assert_eq!(queue.front(), Some(&id));
        queue.pop_front();
        match queue.front() {
            Some(&next) => self.head(next, chat),
            None => {
                self.queues.remove(&chat);
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

    fn bulk(group: &str, per_second: u32) -> Lane {
        Lane::Bulk { group: group.into(), rate: Rate::per_second(per_second) }
    }

    /// A campaign of 10,000 rows drains at the account's full rate; a live reply queued in the
    /// middle starts at the next token of the global rate (one slot: 1/300 s), not behind the
    /// backlog, and the campaign goes on after it.
    #[test]
    fn a_live_row_waits_one_rate_slot_behind_a_campaign_backlog() {
        let mut b = Backlog::new();
        let mut p = Pacer::new(PacerConfig::strict(Rate::per_second(300), Rate::per_second(1)));
        for id in 1..=10_000 {
            b.push_in(id, &format!("r{id}"), bulk("c", 300), ms(0), ());
        }
        let mut now = ms(0);
        let mut started = Vec::new();
        let mut live_queued_at = None;
        let mut live_started_at = None;
        while started.len() < 2_000 {
            if started.len() == 1_000 && live_queued_at.is_none() {
                // between two slots, as a real reply would arrive
                now += Duration::from_micros(700);
                b.push(20_000, "live", now, ());
                live_queued_at = Some(now);
            }
            match b.next(now, &mut p, 8) {
                Step::Start(id) => {
                    if id == 20_000 {
                        live_started_at = Some(now);
                    }
                    started.push((now, id));
                    b.finish(id, Finished::Removed);
                }
                Step::WaitUntil(at) => now = at,
                Step::Idle => panic!("work is left"),
            }
        }
        let waited = live_started_at.unwrap() - live_queued_at.unwrap();
        assert!(waited <= Duration::from_nanos(1_000_000_000 / 300), "the live row waited {waited:?}");
        let position = started.iter().position(|(_, id)| *id == 20_000).unwrap();
        assert_eq!(position, 1_000, "the live row is the very next send");
        assert_eq!(b.bulk_len(), 10_000 - 1_999);
        let times: Vec<Duration> = started.iter().map(|(t, _)| *t).collect();
        let in_first_second = times.iter().take_while(|t| **t < Duration::from_secs(1)).count();
        assert_eq!(in_first_second, 300, "campaign and reply share the account's rate");
    }

    #[test]
    fn bulk_rows_never_take_the_last_slot_and_keep_their_groups_cap() {
        let mut b = Backlog::new();
        let mut p = fast();
        for id in 1..=10 {
            b.push_in(id, &format!("r{id}"), bulk("slow", 10), ms(0), ());
        }
        for id in 11..=20 {
            b.push_in(id, &format!("q{id}"), bulk("fast", 1000), ms(0), ());
        }
        assert_eq!(b.next(ms(0), &mut p, 3), Step::Start(1));
        assert_eq!(b.next(ms(1), &mut p, 3), Step::Start(11), "the slow campaign waits for its cap");
        assert_eq!(b.next(ms(2), &mut p, 3), Step::Idle, "the third slot is kept for live traffic");
        b.push(30, "live", ms(2), ());
        assert_eq!(b.next(ms(2), &mut p, 3), Step::Start(30));
        assert_eq!(b.in_flight(), 3);
        b.finish(11, Finished::Removed);
        assert_eq!(b.next(ms(3), &mut p, 3), Step::Start(12));
        b.finish(12, Finished::Removed);
        b.finish(1, Finished::Removed);
        assert_eq!(b.next(ms(4), &mut p, 3), Step::Start(13), "slow's next token is at 100 ms");
        b.finish(13, Finished::Removed);
        b.finish(30, Finished::Removed);
        assert_eq!(b.next(ms(5), &mut p, 3), Step::Start(14));
        assert_eq!(b.next(ms(6), &mut p, 3), Step::Start(15));
        assert_eq!(b.next(ms(7), &mut p, 3), Step::Idle);
        assert_eq!(b.cursor(), 30, "only live rows move the cursor");
        let mut ids = b.bulk_ids();
        ids.sort_unstable();
        assert_eq!(ids, vec![2, 3, 4, 5, 6, 7, 8, 9, 10, 14, 15, 16, 17, 18, 19, 20]);
        b.finish(14, Finished::Removed);
        b.finish(15, Finished::Removed);
        assert_eq!(b.next(ms(50), &mut p, 3), Step::Start(16), "the slow campaign's head still waits for its cap");
        assert_eq!(b.next(ms(100), &mut p, 3), Step::Start(2), "its token came");
    }

    /// What the worker claims in one transaction: every row that may start at the same `now`
    /// (asked until the answer is not `Start`), bounded by the free slots and one row per chat;
    /// the rows the set's outcomes free start as the next set.
    #[test]
    fn rows_start_in_sets_bounded_by_the_free_slots_and_one_per_chat() {
        let mut b = Backlog::new();
        // no platform limit to speak of: a burst lets every free slot start at the same `now`
        let mut p = Pacer::new(PacerConfig {
            rate: Rate::per_second(100_000),
            burst: 1_000,
            rate_per_chat: Rate::per_second(100_000),
            burst_per_chat: 1,
        });
        for id in 1..=300 {
            b.push(id, &format!("c{}", id % 100), ms(0), ());
        }
        let set = |b: &mut Backlog<()>, p: &mut Pacer, now| {
            let mut ids = Vec::new();
            while let Step::Start(id) = b.next(now, p, 64) {
                ids.push(id);
            }
            ids
        };
        let first = set(&mut b, &mut p, ms(0));
        assert_eq!(first, (1..=64).collect::<Vec<_>>(), "the 64 oldest heads, one claim");
        assert!(set(&mut b, &mut p, ms(1)).is_empty(), "no slot is free");
        for id in &first[..10] {
            b.finish(*id, Finished::Removed);
        }
        let second = set(&mut b, &mut p, ms(2));
        assert_eq!(second, (65..=74).collect::<Vec<_>>(), "ten slots freed: the next ten heads together");
        for id in first[10..].iter().chain(&second) {
            b.finish(*id, Finished::Removed);
        }
        let third = set(&mut b, &mut p, ms(3));
        assert_eq!(third.len(), 64);
        assert_eq!(third[..26], (75..=100).collect::<Vec<_>>()[..], "the chats not yet served first");
        assert_eq!(third[26..], (101..=138).collect::<Vec<_>>()[..], "then each chat's next row");
        let mut live = b.live_ids();
        live.sort_unstable();
        assert_eq!(live, (75..=300).collect::<Vec<_>>(), "held: in flight and waiting");
    }

    /// A row answered by the platform frees its slot and its chat at once; it stays held
    /// (reads of the store skip it) until its outcome is stored.
    #[test]
    fn an_answered_row_lets_its_chat_go_on_while_its_outcome_is_stored() {
        let mut b = Backlog::new();
        let mut p = fast();
        b.push(1, "a", ms(0), ());
        b.push(2, "a", ms(0), ());
        assert_eq!(b.next(ms(0), &mut p, 1), Step::Start(1));
        assert_eq!(b.next(ms(1), &mut p, 1), Step::Idle, "one slot, taken");
        b.answered(1);
        assert_eq!((b.in_flight(), b.unfinished()), (0, 1));
        assert_eq!(b.next(ms(2), &mut p, 1), Step::Start(2), "the chat's next row, before 1 is stored");
        assert!(b.contains(1), "still held: a read of the store must not take it again");
        assert_eq!(b.live_ids().len(), 2);
        b.answered(2);
        b.finish(2, Finished::Removed);
        b.finish(1, Finished::Removed);
        assert!(b.is_empty());
        assert_eq!((b.in_flight(), b.unfinished()), (0, 0));
    }

    /// An edit or a deletion reads the platform ids its message got: it waits until every
    /// answered row of its chat has its outcome stored, and other chats go on meanwhile.
    #[test]
    fn a_row_after_outcomes_waits_for_its_chats_outcomes_only() {
        let mut b = Backlog::new();
        let mut p = fast();
        b.push(1, "a", ms(0), ());
        b.push(2, "a", ms(0), ());
        b.after_outcomes(2);
        b.push(3, "b", ms(0), ());
        assert_eq!(b.next(ms(0), &mut p, 10), Step::Start(1));
        b.answered(1);
        assert_eq!(b.next(ms(1), &mut p, 10), Step::Start(3), "b goes; a's edit waits");
        assert_eq!(b.next(ms(2), &mut p, 10), Step::Idle, "nothing to wake for but the outcome");
        b.finish(1, Finished::Removed);
        assert_eq!(b.next(ms(3), &mut p, 10), Step::Start(2));
    }

    /// An answered row whose outcome could not be stored is forgotten, not put back in front
    /// of rows its chat already started: the next read of the store finds it again.
    #[test]
    fn an_answered_row_that_cannot_be_stored_is_forgotten() {
        let mut b = Backlog::new();
        let mut p = fast();
        b.push_in(1, "a", bulk("c", 1000), ms(0), ());
        b.push_in(2, "a", bulk("c", 1000), ms(0), ());
        assert_eq!(b.next(ms(0), &mut p, 10), Step::Start(1));
        b.answered(1);
        assert_eq!(b.next(ms(1), &mut p, 10), Step::Start(2));
        assert_eq!(b.finish(1, Finished::RetryAt(ms(500))), Some(()));
        assert!(!b.contains(1));
        assert_eq!((b.bulk_len(), b.in_flight(), b.unfinished()), (1, 1, 1));
        b.finish(2, Finished::Removed);
        assert!(b.is_empty());
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
