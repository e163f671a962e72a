//! Pacing outbound sends: token buckets for the whole account and for each chat.
//!
//! Sans-IO: a [`Pacer`] is fed the time (`now`, a [`Duration`] since any fixed origin the caller
//! picks) and answers whether a send may go now or when it may; it never reads a clock, sleeps
//! or spawns. The runtime's outbox worker is the thin shell that sleeps until the answer.
//!
//! Each bucket is a GCRA (generic cell rate algorithm) token bucket in integer nanoseconds:
//! a rate of `count` per `per_ms` gives an emission interval `T = per_ms / count`; a bucket of
//! `burst` tokens lets `burst` sends go back to back, after which they are spaced `T` apart.
//! With the default burst of 1, any window of length `L` holds at most `floor(L / T) + 1`
//! sends, so any half-open second holds at most the configured count.

use std::collections::HashMap;
use std::time::Duration;

use schema::domain::Rate;

/// One GCRA bucket.
#[derive(Debug, Clone)]
struct Bucket {
    /// Emission interval in nanoseconds.
    interval: u128,
    /// How far ahead of `now` the theoretical arrival time may run: `(burst - 1) * interval`.
    tolerance: u128,
    /// Theoretical arrival time of the next send, in nanoseconds.
    tat: u128,
}

impl Bucket {
    fn new(rate: Rate, burst: u32) -> Self {
        let count = u128::from(rate.count.max(1));
        let interval = u128::from(rate.per_ms.max(1)) * 1_000_000 / count;
        Bucket { interval, tolerance: u128::from(burst.max(1) - 1) * interval, tat: 0 }
    }

    /// When the next send conforms (`now` or later).
    fn ready_at(&self, now: u128) -> u128 {
        now.max(self.tat.saturating_sub(self.tolerance))
    }

    fn take(&mut self, now: u128) {
        self.tat = self.tat.max(now) + self.interval;
    }

    /// Whether the bucket is full again (and forgetting it changes nothing).
    fn is_idle(&self, now: u128) -> bool {
        self.tat <= now
    }
}

/// Pacing for one account: a global bucket and one bucket per chat.
#[derive(Debug, Clone)]
pub struct Pacer {
    global: Bucket,
    chat_rate: Rate,
    chat_burst: u32,
    chats: HashMap<String, Bucket>,
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
            paused_until: 0,
        }
    }

    /// When a send to `chat` may go: `now` if it may go at once.
    pub fn ready_at(&self, now: Duration, chat: &str) -> Duration {
        let now = nanos(now);
        let chat_ready = self.chats.get(chat).map_or(now, |b| b.ready_at(now));
        duration(self.global.ready_at(now).max(chat_ready).max(self.paused_until))
    }

    /// When a send to `chat` may go, counting only the chat's own bucket (and a pause).
    pub fn chat_ready_at(&self, now: Duration, chat: &str) -> Duration {
        let now = nanos(now);
        let chat_ready = self.chats.get(chat).map_or(now, |b| b.ready_at(now));
        duration(chat_ready.max(self.paused_until))
    }

    /// Takes a token from both buckets if a send to `chat` may go now; otherwise says when.
    pub fn try_take(&mut self, now: Duration, chat: &str) -> Result<(), Duration> {
        let at = self.ready_at(now, chat);
        if at > now {
            return Err(at);
        }
        let now = nanos(now);
        self.global.take(now);
        let (rate, burst) = (self.chat_rate, self.chat_burst);
        self.chats.entry(chat.to_owned()).or_insert_with(|| Bucket::new(rate, burst)).take(now);
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
    }

    /// How many chats are tracked (for tests).
    pub fn tracked_chats(&self) -> usize {
        self.chats.len()
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
        assert_eq!(busy, vec![ms(0), ms(1000), ms(2000), ms(3000), ms(4000)]);
    }

    #[test]
    fn ready_at_says_when_and_nothing_is_taken_on_refusal() {
        let mut pacer = Pacer::new(PacerConfig::strict(Rate::per_second(2), Rate::per_second(1)));
        assert_eq!(pacer.try_take(ms(0), "x"), Ok(()));
        assert_eq!(pacer.try_take(ms(10), "x"), Err(ms(1000)), "the chat bucket decides");
        assert_eq!(pacer.try_take(ms(10), "y"), Err(ms(500)), "the global bucket decides");
        assert_eq!(pacer.ready_at(ms(10), "y"), ms(500));
        assert_eq!(pacer.chat_ready_at(ms(10), "y"), ms(10));
        assert_eq!(pacer.try_take(ms(500), "y"), Ok(()));
        assert_eq!(pacer.try_take(ms(1000), "x"), Ok(()));
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
        assert_eq!(pacer.try_take(ms(1), "wa"), Err(ms(6000)));
        assert_eq!(pacer.try_take(ms(6000), "wa"), Ok(()));
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
        pacer.forget_idle(ms(1050));
        assert_eq!(pacer.tracked_chats(), 49, "chats used after 50 ms are still cooling down");
        pacer.forget_idle(ms(2000));
        assert_eq!(pacer.tracked_chats(), 0);
    }

    #[test]
    fn backoff_doubles_up_to_five_minutes() {
        let secs: Vec<u64> = (1..=12).map(|a| backoff(a).as_secs()).collect();
        assert_eq!(secs, vec![1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert_eq!(backoff(0), Duration::from_secs(1));
        assert_eq!(backoff(u32::MAX), Duration::from_secs(300));
    }
}
