//! The routing decision, as a pure function of a snapshot and the time: no I/O, no clock.
//!
//! - An offer whose timeout has passed expires (the interaction goes back to its queue, the
//!   agent is set `not_ready`).
//! - Each waiting interaction, oldest first, is offered to an online, `ready` agent of its queue
//!   with free capacity (overall and for its channel) who has not declined it: the previous agent
//!   of a returning customer first, otherwise the one idle longest. An agent who gets an offer
//!   counts as busy from now, so the next interaction goes to the next longest-idle agent.
//! - A live video call counts `video_weight` interactions in its agent's overall capacity.

use std::collections::HashSet;

use chrono::{DateTime, Duration, Utc};
use schema::domain::AgentStatus;
use schema::store::{AgentLoad, RoutingSnapshot, Waiting};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Decision {
    /// (interaction, agent) whose offer has expired.
    pub expire: Vec<(Uuid, String)>,
    /// (interaction, agent) to offer.
    pub offer: Vec<(Uuid, String)>,
    /// When the next outstanding offer expires.
    pub next_deadline: Option<DateTime<Utc>>,
}

struct Candidate<'a> {
    agent: &'a AgentLoad,
    open_total: i64,
    open_by_channel: Vec<(String, i64)>,
    idle_since: DateTime<Utc>,
}

impl Candidate<'_> {
    fn open_on(&self, channel: &str) -> i64 {
        self.open_by_channel.iter().find(|(c, _)| c == channel).map_or(0, |(_, n)| *n)
    }

    fn can_take(&self, w: &Waiting) -> bool {
        let channel_cap = self.agent.channel_capacity.get(&w.channel).and_then(|v| v.as_i64());
        self.agent.status == AgentStatus::Ready
            && self.agent.queues.iter().any(|q| q == &w.queue)
            && !w.declined_by.iter().any(|d| d == &self.agent.login)
            && self.open_total < i64::from(self.agent.max_interactions)
            && channel_cap.is_none_or(|cap| self.open_on(&w.channel) < cap)
    }

    fn take(&mut self, channel: &str, now: DateTime<Utc>) {
        self.open_total += 1;
        match self.open_by_channel.iter_mut().find(|(c, _)| c == channel) {
            Some((_, n)) => *n += 1,
            None => self.open_by_channel.push((channel.to_owned(), 1)),
        }
        self.idle_since = now;
    }
}

/// Decides what to do now. `online` are the agents with at least one socket somewhere.
pub fn decide(snapshot: &RoutingSnapshot, online: &HashSet<String>, now: DateTime<Utc>) -> Decision {
    let mut decision = Decision::default();
    let mut expiring = HashSet::new();
    for offer in &snapshot.offers {
        let deadline = offer.offered_at + Duration::milliseconds(i64::from(offer.timeout_ms));
        if deadline <= now {
            decision.expire.push((offer.interaction_id, offer.agent.clone()));
            expiring.insert(offer.agent.as_str());
        } else {
            decision.next_deadline = Some(decision.next_deadline.map_or(deadline, |d| d.min(deadline)));
        }
    }
    let mut candidates: Vec<Candidate> = snapshot
        .agents
        .iter()
        .filter(|a| online.contains(&a.login) && !expiring.contains(a.login.as_str()))
        .map(|a| Candidate {
            agent: a,
            open_total: a.load.iter().map(|(_, n)| n).sum::<i64>() + a.video_calls * snapshot.video_weight,
            open_by_channel: a.load.clone(),
            idle_since: a.idle_since,
        })
        .collect();
    for waiting in &snapshot.waiting {
        let preferred = waiting
            .last_agent
            .as_deref()
            .and_then(|last| candidates.iter().position(|c| c.agent.login == last && c.can_take(waiting)));
        let chosen = preferred.or_else(|| {
            candidates
                .iter()
                .enumerate()
                .filter(|(_, c)| c.can_take(waiting))
                .min_by(|(_, a), (_, b)| {
                    a.idle_since.cmp(&b.idle_since).then_with(|| a.agent.login.cmp(&b.agent.login))
                })
                .map(|(i, _)| i)
        });
        if let Some(i) = chosen {
            // later offers count as later, so equal clocks still rotate between agents
            let order = Duration::microseconds(decision.offer.len() as i64);
            candidates[i].take(&waiting.channel, now + order);
            decision.offer.push((waiting.id, candidates[i].agent.login.clone()));
        }
    }
    decision
}

#[cfg(test)]
mod tests {
    use super::*;
    use schema::store::PendingOffer;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_767_225_600 + secs, 0).unwrap()
    }

    fn agent(login: &str, idle: i64, max: i32) -> AgentLoad {
        AgentLoad {
            login: login.into(),
            status: AgentStatus::Ready,
            queues: vec!["support".into()],
            max_interactions: max,
            channel_capacity: Default::default(),
            idle_since: t(idle),
            load: vec![],
            video_calls: 0,
        }
    }

    fn waiting(n: u128, created: i64) -> Waiting {
        Waiting {
            id: Uuid::from_u128(n),
            queue: "support".into(),
            channel: "telegram".into(),
            created_at: t(created),
            last_agent: None,
            declined_by: vec![],
        }
    }

    fn online(names: &[&str]) -> HashSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn ten_interactions_two_agents_of_capacity_three_get_six_offers_longest_idle_first() {
        let snapshot = RoutingSnapshot {
            video_weight: 0,
            now: None,
            waiting: (0..10).map(|i| waiting(i, i as i64)).collect(),
            agents: vec![agent("bob", 5, 3), agent("alice", 1, 3)],
            offers: vec![],
        };
        let d = decide(&snapshot, &online(&["alice", "bob"]), t(100));
        let agents: Vec<&str> = d.offer.iter().map(|(_, a)| a.as_str()).collect();
        assert_eq!(agents, ["alice", "bob", "alice", "bob", "alice", "bob"]);
        let ids: Vec<u128> = d.offer.iter().map(|(i, _)| i.as_u128()).collect();
        assert_eq!(ids, [0, 1, 2, 3, 4, 5], "oldest interactions first, none twice");
    }

    #[test]
    fn offline_busy_declined_and_other_queue_agents_are_skipped() {
        let mut full = agent("full", 0, 1);
        full.load = vec![("telegram".into(), 1)];
        let mut sales = agent("sales", 0, 3);
        sales.queues = vec!["sales".into()];
        let mut capped = agent("capped", 0, 5);
        capped.channel_capacity.insert("telegram".into(), serde_json::json!(1));
        capped.load = vec![("telegram".into(), 1)];
        let mut w = waiting(1, 0);
        w.declined_by = vec!["decliner".into()];
        let snapshot = RoutingSnapshot {
            video_weight: 0,
            now: None,
            waiting: vec![w],
            agents: vec![full, sales, capped, agent("decliner", 0, 3), agent("offline", 0, 3)],
            offers: vec![],
        };
        let d = decide(&snapshot, &online(&["full", "sales", "capped", "decliner"]), t(10));
        assert!(d.offer.is_empty(), "{d:?}");
    }

    #[test]
    fn a_returning_customer_goes_to_the_last_agent_and_expired_offers_expire() {
        let mut w = waiting(1, 0);
        w.last_agent = Some("bob".into());
        let snapshot = RoutingSnapshot {
            video_weight: 0,
            now: None,
            waiting: vec![w],
            agents: vec![agent("alice", 0, 3), agent("bob", 50, 3), agent("carol", 0, 3)],
            offers: vec![
                PendingOffer {
                    interaction_id: Uuid::from_u128(7),
                    agent: "carol".into(),
                    offered_at: t(0),
                    timeout_ms: 5_000,
                },
                PendingOffer {
                    interaction_id: Uuid::from_u128(8),
                    agent: "alice".into(),
                    offered_at: t(8),
                    timeout_ms: 5_000,
                },
            ],
        };
        let d = decide(&snapshot, &online(&["alice", "bob", "carol"]), t(10));
        assert_eq!(d.offer, vec![(Uuid::from_u128(1), "bob".to_string())]);
        assert_eq!(d.expire, vec![(Uuid::from_u128(7), "carol".to_string())]);
        assert_eq!(d.next_deadline, Some(t(13)));
    }

    #[test]
    fn a_live_call_counts_its_weight_in_the_capacity() {
        let mut busy = agent("alice", 0, 3);
        busy.load = vec![("telegram".into(), 1)];
        busy.video_calls = 1;
        let snapshot = |weight| RoutingSnapshot {
            now: Some(t(100)),
            waiting: vec![waiting(1, 10), waiting(2, 20)],
            agents: vec![busy.clone()],
            offers: vec![],
            video_weight: weight,
        };
        let all = online(&["alice"]);
        // weight 2: one chat + the call = 3 = the capacity: nothing offered
        assert!(decide(&snapshot(2), &all, t(100)).offer.is_empty());
        // weight 1: one slot left, one offer
        assert_eq!(decide(&snapshot(1), &all, t(100)).offer, vec![(Uuid::from_u128(1), "alice".to_owned())]);
        // weight 0: calls do not count
        assert_eq!(decide(&snapshot(0), &all, t(100)).offer.len(), 2);
    }
}
