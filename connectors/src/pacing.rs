//! Pacing outbound sends: token buckets for the whole account and for each chat.
//!
//! Sans-IO: a [`Pacer`] is fed the time (`now`, a [`Duration`] since any fixed origin the caller
//! picks) and answers whether a send may go now or when it may; it never reads a clock, sleeps
//! or spawns. The runtime's outbox worker is the thin shell that sleeps until the answer.
//!
//! Each bucket is a GCRA (generic cell rate algorithm) token bucket in integer nanoseconds:
//! a rate of `count` per `per_ms` gives an emission interval `T = per_ms / count`; a bucket of
//! `burst` tokens lets `burst` sends go back to back, after which they are spaced `T` apart.
//!
//! Sends are scheduled from their **ideal** times, not from when the last one actually went: a
//! worker that wakes a little late (timers, scheduling) does not push every later send back, so
//! the rate does not drift below the limit (it did: 28.8/s at a limit of 30/s). What keeps the
//! limit is a second rule on the actual send times: the last `count` sends are remembered, and
//! the next may go only when the oldest of them is a full window (`per_ms`, plus 1% and at most
//! 10 ms of margin for the network's jitter between here and the platform) behind. So no window
//! of `per_ms` ever holds more than `count` sends, wherever it starts.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use schema::domain::Rate;

/// Sliding windows longer than this many sends are not kept (such a rate is "no limit").
const WINDOW_KEPT: u32 = 10_000;

/// The times of the last sends of one rate, oldest first: no window of the rate's period (plus
/// its margin) may hold more than the rate's count.
#[derive(Debug, Clone)]
struct Recent {
    /// The window the rate is defined over, with its margin, in nanoseconds.
    window: u128,
    /// How many sends one window may hold (0: not kept).
    count: usize,
    times: VecDeque<u128>,
}

impl Recent {
    fn new(rate: Rate) -> Self {
        let per = u128::from(rate.per_ms.max(1)) * 1_000_000;
        let margin = (per / 100).min(10_000_000);
        let count = if rate.count <= WINDOW_KEPT { rate.count.max(1) as usize } else { 0 };
        Recent { window: per + margin, count, times: VecDeque::with_capacity(count.min(64)) }
    }

    /// When one more send fits in the window (`now` or later).
    fn ready_at(&self, now: u128) -> u128 {
        match self.times.front() {
            Some(oldest) if self.count > 0 && self.times.len() >= self.count => now.max(oldest + self.window),
            _ => now,
        }
    }

    fn record(&mut self, now: u128) {
        if self.count > 0 {
            if self.times.len() >= self.count {
                self.times.pop_front();
            }
            self.times.push_back(now);
        }
    }

    fn is_idle(&self, now: u128) -> bool {
        self.times.back().is_none_or(|last| last + self.window <= now)
    }
}

/// One GCRA bucket, with the sliding window of its last sends.
#[derive(Debug, Clone)]
struct Bucket {
    /// Emission interval in nanoseconds.
    interval: u128,
    /// How far ahead of `now` the theoretical arrival time may run: `(burst - 1) * interval`.
    tolerance: u128,
    /// Theoretical arrival time of the next send, in nanoseconds.
    tat: u128,
    /// The times the last sends took their tokens.
    recent: Recent,
}

impl Bucket {
    fn new(rate: Rate, burst: u32) -> Self {
        let count = u128::from(rate.count.max(1));
        let per = u128::from(rate.per_ms.max(1)) * 1_000_000;
        let interval = per / count;
        Bucket { interval, tolerance: u128::from(burst.max(1) - 1) * interval, tat: 0, recent: Recent::new(rate) }
    }

    /// When the next send conforms (`now` or later).
    fn ready_at(&self, now: u128) -> u128 {
        self.recent.ready_at(now).max(self.tat.saturating_sub(self.tolerance))
    }

    fn take(&mut self, now: u128) {
        // late by less than one interval: catch up on the ideal schedule; idle longer: start over
        let base = if now >= self.tat + self.interval { now } else { self.tat };
        self.tat = base + self.interval;
        self.recent.record(now);
    }

    /// Whether the bucket is full again (and forgetting it changes nothing).
    fn is_idle(&self, now: u128) -> bool {
        self.tat <= now && self.recent.is_idle(now)
    }
}

/// Pacing for one account: a global bucket, one bucket per chat, and one per group (a campaign,
/// with its own rate cap under the account's).
#[derive(Debug, Clone)]
pub struct Pacer {
    global: Bucket,
    chat_rate: Rate,
    chat_burst: u32,
    chats: HashMap<String, Bucket>,
    groups: HashMap<String, Bucket>,
    /// Nothing may be sent before this (a platform-wide 429).
    paused_until: u128,
}

/// The two rates of a [`Pacer`] and their bursts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacerConfig {
    pub rate: Rate,
    pub burst: u32,
    pub rate_per_chat: Rate,
    pub burst_per_chat: u32,
}

impl PacerConfig {
    /// Strict pacing (bursts of one) at the given rates.
    pub fn strict(rate: Rate, rate_per_chat: Rate) -> Self {
        PacerConfig { rate, burst: 1, rate_per_chat, burst_per_chat: 1 }
    }
}

fn nanos(d: Duration) -> u128 {
    d.as_nanos()
}

fn duration(n: u128) -> Duration {
    Duration::new((n / 1_000_000_000) as u64, (n % 1_000_000_000) as u32)
}

impl Pacer {
    pub fn new(config: PacerConfig) -> Self {
        Pacer {
            global: Bucket::new(config.rate, config.burst),
            chat_rate: config.rate_per_chat,
            chat_burst: config.burst_per_chat,
            chats: HashMap::new(),
            groups: HashMap::new(),
            paused_until: 0,
        }
    }

    /// When a send to `chat` may go: `now` if it may go at once.
    pub fn ready_at(&self, now: Duration, chat: &str) -> Duration {
        let now = nanos(now);
        let chat_ready = self.chats.get(chat).map_or(now, |b| b.ready_at(now));
        duration(self.global.ready_at(now).max(chat_ready).max(self.paused_until))
    }

    /// When any send may go, counting only the global bucket and a pause: no chat's send goes
    /// earlier.
    pub fn global_ready_at(&self, now: Duration) -> Duration {
        duration(self.global.ready_at(nanos(now)).max(self.paused_until))
    }

    /// When a send of `group` may go, counting only the group's bucket (a group not seen
    /// lately: `now`).
    pub fn group_ready_at(&self, now: Duration, group: &str) -> Duration {
        self.groups.get(group).map_or(now, |b| duration(b.ready_at(nanos(now))))
    }

    /// When a send to `chat` may go, counting only the chat's own bucket (and a pause).
    pub fn chat_ready_at(&self, now: Duration, chat: &str) -> Duration {
        let now = nanos(now);
        let chat_ready = self.chats.get(chat).map_or(now, |b| b.ready_at(now));
        duration(chat_ready.max(self.paused_until))
    }

    /// Takes a token from both buckets if a send to `chat` may go now; otherwise says when.
    pub fn try_take(&mut self, now: Duration, chat: &str) -> Result<(), Duration> {
        self.try_take_in(now, chat, None)
    }

    /// [`Pacer::try_take`] for a send that also belongs to `group` (a campaign) capped at its
    /// rate (strict: no burst): the send takes a token from the group's bucket as well.
    pub fn try_take_in(&mut self, now: Duration, chat: &str, group: Option<(&str, Rate)>) -> Result<(), Duration> {
        let mut at = self.ready_at(now, chat);
        if let Some((key, _)) = group
            && let Some(bucket) = self.groups.get(key)
        {
            at = at.max(duration(bucket.ready_at(nanos(now))));
        }
        if at > now {
            return Err(at);
        }
        let now = nanos(now);
        self.global.take(now);
        let (rate, burst) = (self.chat_rate, self.chat_burst);
        self.chats.entry(chat.to_owned()).or_insert_with(|| Bucket::new(rate, burst)).take(now);
        if let Some((key, rate)) = group {
            self.groups.entry(key.to_owned()).or_insert_with(|| Bucket::new(rate, 1)).take(now);
        }
        Ok(())
    }

    /// Holds every send until `until` (the platform said to slow down for everyone).
    pub fn pause(&mut self, until: Duration) {
        self.paused_until = self.paused_until.max(nanos(until));
    }

    /// Forgets chats whose buckets are full again, so memory follows the active chats only.
    pub fn forget_idle(&mut self, now: Duration) {
        let now = nanos(now);
        self.chats.retain(|_, b| !b.is_idle(now));
        self.groups.retain(|_, b| !b.is_idle(now));
    }

    /// How many chats are tracked (for tests).
    pub fn tracked_chats(&self) -> usize {
        self.chats.len()
    }
}

/// The last check before a request leaves: the times requests actually went, for the whole
/// account and per chat, each held to its rate's sliding window.
///
/// The [`Pacer`] hands out tokens when a row starts; the row is then claimed in a transaction
/// (whose commit waits for a disk flush) before its first request goes. A claim slower than
/// the next one would bring two requests closer together than their tokens were, and a window
/// at the platform could hold one send too many (31 in one second at a limit of 30, seen under
/// load). This guard, consulted right before each request, delays such a request instead.
#[derive(Debug, Clone)]
pub struct SendGuard {
    global: Recent,
    chat_rate: Rate,
    chats: HashMap<String, Recent>,
    /// Per group (a campaign with its own cap).
    groups: HashMap<String, Recent>,
}

impl SendGuard {
    pub fn new(rate: Rate, rate_per_chat: Rate) -> Self {
        SendGuard { global: Recent::new(rate), chat_rate: rate_per_chat, chats: HashMap::new(), groups: HashMap::new() }
    }

    /// Records a request to `chat` leaving now if it fits both windows; otherwise says when it
    /// will.
    pub fn try_send(&mut self, now: Duration, chat: &str) -> Result<(), Duration> {
        self.try_send_in(now, chat, None)
    }

    /// [`SendGuard::try_send`] for a request that also belongs to `group` (a campaign), held to
    /// the group's own rate as well.
    pub fn try_send_in(&mut self, now: Duration, chat: &str, group: Option<(&str, Rate)>) -> Result<(), Duration> {
        let now = nanos(now);
        let chat_ready = self.chats.get(chat).map_or(now, |r| r.ready_at(now));
        let group_ready = group.and_then(|(key, _)| self.groups.get(key)).map_or(now, |r| r.ready_at(now));
        let at = self.global.ready_at(now).max(chat_ready).max(group_ready);
        if at > now {
            return Err(duration(at));
        }
        self.global.record(now);
        let rate = self.chat_rate;
        self.chats.entry(chat.to_owned()).or_insert_with(|| Recent::new(rate)).record(now);
        if let Some((key, rate)) = group {
            self.groups.entry(key.to_owned()).or_insert_with(|| Recent::new(rate)).record(now);
        }
        Ok(())
    }

    /// Forgets chats and groups whose windows hold nothing any more.
    pub fn forget_idle(&mut self, now: Duration) {
        let now = nanos(now);
        self.chats.retain(|_, r| !r.is_idle(now));
        self.groups.retain(|_, r| !r.is_idle(now));
    }
}

/// The wait before retry number `attempts` (1 = the first retry) after a transient failure:
/// 1 s, 2 s, 4 s, ... up to five minutes.
pub fn backoff(attempts: u32) -> Duration {
    const MAX: Duration = Duration::from_secs(300);
    let exp = attempts.saturating_sub(1).min(16);
    Duration::from_secs(1u64 << exp).min(MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Drives a pacer with a fake clock: at every millisecond, sends as many queued messages as
    /// it allows. Returns `(time, chat)` of every send.
    fn simulate(pacer: &mut Pacer, queued: &[(&str, usize)], until: Duration) -> Vec<(Duration, String)> {
        let mut left: Vec<(String, usize)> = queued.iter().map(|(c, n)| (c.to_string(), *n)).collect();
        let mut sent = Vec::new();
        let mut now = Duration::ZERO;
        while now <= until {
            for (chat, n) in left.iter_mut() {
                if *n > 0 && pacer.try_take(now, chat).is_ok() {
                    *n -= 1;
                    sent.push((now, chat.clone()));
                }
            }
            now += ms(1);
        }
        sent
    }

    /// The most sends in any half-open window `[t, t + window)`.
    fn max_in_window(times: &[Duration], window: Duration) -> usize {
        let mut best = 0;
        for (i, t) in times.iter().enumerate() {
            let n = times[i..].iter().take_while(|u| **u < *t + window).count();
            best = best.max(n);
        }
        best
    }

    #[test]
    fn global_and_per_chat_rates_hold_in_every_window() {
        let mut pacer = Pacer::new(PacerConfig::strict(Rate::per_second(10), Rate::per_second(2)));
        let chats: Vec<String> = (0..8).map(|i| format!("chat-{i}")).collect();
        let queued: Vec<(&str, usize)> = chats.iter().map(|c| (c.as_str(), 10)).collect();
        let sent = simulate(&mut pacer, &queued, Duration::from_secs(20));
        assert_eq!(sent.len(), 80, "everything goes out eventually");
        let all: Vec<Duration> = sent.iter().map(|(t, _)| *t).collect();
        assert_eq!(max_in_window(&all, Duration::from_secs(1)), 10);
        for chat in &chats {
            let times: Vec<Duration> = sent.iter().filter(|(_, c)| c == chat).map(|(t, _)| *t).collect();
            assert!(max_in_window(&times, Duration::from_secs(1)) <= 2, "{chat}: {times:?}");
        }
        // while every chat has work, the global rate is the bound and it is used in full
        assert_eq!(sent.iter().filter(|(t, _)| *t < Duration::from_secs(4)).count(), 40);
    }

    #[test]
    fn a_busy_chat_does_not_hold_back_the_others() {
        let mut pacer = Pacer::new(PacerConfig::strict(Rate::per_second(100), Rate::per_second(1)));
        let sent = simulate(&mut pacer, &[("busy", 5), ("a", 1), ("b", 1)], Duration::from_secs(10));
        let at = |chat: &str| sent.iter().find(|(_, c)| c == chat).unwrap().0;
        assert!(at("a") < ms(100) && at("b") < ms(100), "{sent:?}");
        let busy: Vec<Duration> = sent.iter().filter(|(_, c)| c == "busy").map(|(t, _)| *t).collect();
        assert_eq!(busy, vec![ms(0), ms(1010), ms(2020), ms(3030), ms(4040)], "1 s and 1% of margin apart");
    }

    #[test]
    fn ready_at_says_when_and_nothing_is_taken_on_refusal() {
        let mut pacer = Pacer::new(PacerConfig::strict(Rate::per_second(2), Rate::per_second(1)));
        assert_eq!(pacer.try_take(ms(0), "x"), Ok(()));
        assert_eq!(pacer.try_take(ms(10), "x"), Err(ms(1010)), "the chat bucket decides");
        assert_eq!(pacer.try_take(ms(10), "y"), Err(ms(500)), "the global bucket decides");
        assert_eq!(pacer.ready_at(ms(10), "y"), ms(500));
        assert_eq!(pacer.chat_ready_at(ms(10), "y"), ms(10));
        assert_eq!(pacer.try_take(ms(500), "y"), Ok(()));
        assert_eq!(pacer.try_take(ms(1010), "x"), Ok(()));
        assert_eq!(pacer.try_take(ms(1010), "z"), Err(ms(1510)), "two sends per window: the one at 500 ms + 1010 ms");
    }

    #[test]
    fn bursts_then_spacing() {
        let mut pacer = Pacer::new(PacerConfig {
            rate: Rate::per_second(10),
            burst: 3,
            rate_per_chat: Rate::per_second(1000),
            burst_per_chat: 1000,
        });
        for chat in ["a", "b", "c"] {
            assert_eq!(pacer.try_take(ms(0), chat), Ok(()));
        }
        assert_eq!(pacer.try_take(ms(0), "d"), Err(ms(100)));
        assert_eq!(pacer.try_take(ms(100), "d"), Ok(()));
        assert_eq!(pacer.try_take(ms(100), "e"), Err(ms(200)));
    }

    #[test]
    fn slow_rates_such_as_one_per_six_seconds() {
        let mut pacer = Pacer::new(PacerConfig::strict(Rate::per_second(80), Rate { count: 1, per_ms: 6000 }));
        assert_eq!(pacer.try_take(ms(0), "wa"), Ok(()));
        assert_eq!(pacer.try_take(ms(1), "wa"), Err(ms(6010)));
        assert_eq!(pacer.try_take(ms(6010), "wa"), Ok(()));
    }

    #[test]
    fn a_pause_holds_everyone() {
        let mut pacer = Pacer::new(PacerConfig::strict(Rate::per_second(100), Rate::per_second(100)));
        pacer.pause(ms(3000));
        assert_eq!(pacer.try_take(ms(5), "a"), Err(ms(3000)));
        assert_eq!(pacer.try_take(ms(3000), "a"), Ok(()));
    }

    #[test]
    fn idle_chats_are_forgotten() {
        let mut pacer = Pacer::new(PacerConfig::strict(Rate::per_second(1000), Rate::per_second(1)));
        for i in 0..100 {
            pacer.try_take(ms(i), &format!("c{i}")).unwrap();
        }
        assert_eq!(pacer.tracked_chats(), 100);
        pacer.forget_idle(ms(1060));
        assert_eq!(pacer.tracked_chats(), 49, "chats used after 50 ms are still cooling down");
        pacer.forget_idle(ms(2100));
        assert_eq!(pacer.tracked_chats(), 0);
    }

    /// A worker that wakes 1.3 ms after every moment a send may go (a busy machine) still sends
    /// at the full rate: the schedule follows the ideal times, not the late ones; and no
    /// one-second window, wherever it starts, holds more than the limit.
    #[test]
    fn a_late_worker_keeps_the_full_rate_and_never_exceeds_it() {
        for limit in [30u32, 80, 300] {
            let mut pacer = Pacer::new(PacerConfig::strict(Rate::per_second(limit), Rate::per_second(limit)));
            let mut now = Duration::ZERO;
            let mut sent = Vec::new();
            let total = limit as usize * 60;
            while sent.len() < total {
                match pacer.try_take(now, &format!("chat-{}", sent.len() % 1000)) {
                    Ok(()) => {
                        sent.push(now);
                        now += Duration::from_micros(50);
                    }
                    Err(at) => now = at + Duration::from_micros(1300),
                }
            }
            let span = (*sent.last().unwrap() - sent[0]).as_secs_f64();
            let rate = (sent.len() - 1) as f64 / span;
            assert!(rate >= f64::from(limit) * 0.98, "{limit}/s: {rate:.2}/s");
            assert!(max_in_window(&sent, Duration::from_secs(1)) <= limit as usize, "{limit}/s: over the limit");
        }
    }

    #[test]
    fn a_group_is_held_to_its_own_cap_under_the_global_rate() {
        let mut pacer = Pacer::new(PacerConfig::strict(Rate::per_second(100), Rate::per_second(100)));
        let cap = Some(("campaign", Rate::per_second(10)));
        assert_eq!(pacer.try_take_in(ms(0), "a", cap), Ok(()));
        assert_eq!(pacer.try_take_in(ms(10), "b", cap), Err(ms(100)), "the group's cap decides");
        assert_eq!(pacer.try_take_in(ms(10), "c", None), Ok(()), "other traffic uses the rest of the rate");
        assert_eq!(pacer.try_take_in(ms(100), "b", cap), Ok(()));
        pacer.forget_idle(ms(5000));
        assert!(pacer.groups.is_empty(), "idle groups are forgotten");
    }

    #[test]
    fn the_guard_holds_a_groups_own_rate_at_the_wire() {
        let mut guard = SendGuard::new(Rate::per_second(100), Rate::per_second(100));
        let cap = Some(("campaign", Rate::per_second(2)));
        assert_eq!(guard.try_send_in(ms(0), "a", cap), Ok(()));
        assert_eq!(guard.try_send_in(ms(1), "b", cap), Ok(()));
        assert_eq!(guard.try_send_in(ms(2), "c", cap), Err(ms(1010)), "a third within the group's window");
        assert_eq!(guard.try_send_in(ms(2), "d", None), Ok(()), "other requests are not held by it");
        assert_eq!(guard.try_send_in(ms(1010), "c", cap), Ok(()));
        guard.forget_idle(ms(5000));
        assert!(guard.groups.is_empty(), "idle groups are forgotten");
    }

    #[test]
    fn backoff_doubles_up_to_five_minutes() {
        let secs: Vec<u64> = (1..=12).map(|a| backoff(a).as_secs()).collect();
        assert_eq!(secs, vec![1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert_eq!(backoff(0), Duration::from_secs(1));
        assert_eq!(backoff(u32::MAX), Duration::from_secs(300));
    }

    /// Tokens handed out on the ideal schedule, then requests delayed by claims of varying
    /// length (0 to 60 ms): the guard holds every 1-second window at the platform to the limit.
    #[test]
    fn the_send_guard_keeps_the_limit_when_claims_take_varying_time() {
        let rate = Rate::per_second(30);
        let mut pacer = Pacer::new(PacerConfig::strict(rate, Rate::per_second(1000)));
        let tokens: Vec<Duration> =
            simulate(&mut pacer, &[("a", 300)], ms(20_000)).into_iter().map(|(t, _)| t).collect();
        // a slow claim, then fast ones: requests bunch up where the guard is absent
        let delay = |i: usize| if i.is_multiple_of(60) { ms(60) } else { Duration::ZERO };
        let busiest = |times: &[Duration]| {
            (0..times.len()).map(|i| times[i..].iter().take_while(|t| **t - times[i] < ms(1000)).count()).max().unwrap()
        };
        let unguarded: Vec<Duration> = tokens.iter().enumerate().map(|(i, t)| *t + delay(i)).collect();
        let mut unguarded_sorted = unguarded.clone();
        unguarded_sorted.sort();
        assert!(busiest(&unguarded_sorted) > 30, "the scenario must overrun without the guard");

        let mut guard = SendGuard::new(rate, Rate::per_second(1000));
        let mut sent = Vec::new();
        for wanted in unguarded {
            let mut at = wanted.max(sent.last().copied().unwrap_or_default());
            loop {
                match guard.try_send(at, "a") {
                    Ok(()) => break,
                    Err(later) => at = later,
                }
            }
            sent.push(at);
        }
        assert!(busiest(&sent) <= 30, "busiest window {}", busiest(&sent));
        let span = (*sent.last().unwrap() - sent[0]).as_secs_f64();
        let observed = (sent.len() - 1) as f64 / span;
        assert!(observed > 30.0 * 0.98, "the guard delays only the bunched requests: {observed:.2}/s");
    }

    #[test]
    fn the_send_guard_holds_each_chat_to_its_own_rate_and_forgets_idle_chats() {
        let mut guard = SendGuard::new(Rate::per_second(1000), Rate::per_second(1));
        assert_eq!(guard.try_send(ms(0), "a"), Ok(()));
        assert_eq!(guard.try_send(ms(1), "b"), Ok(()));
        assert_eq!(guard.try_send(ms(500), "a"), Err(ms(1010)), "one per second per chat, plus the margin");
        assert_eq!(guard.try_send(ms(1010), "a"), Ok(()));
        guard.forget_idle(ms(1020));
        assert_eq!(guard.chats.len(), 1, "b is idle; a sent 10 ms ago");
    }
}
