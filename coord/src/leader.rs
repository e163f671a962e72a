//! The one leader loop every elected job of the hub runs: campaign, lead, step down, and
//! campaign afresh when the fence says another leader took over.
//!
//! A job (a connector account's leader, the router, the file retention job) gives a closure that
//! does the work of one term: it gets the term's fencing token and a cancellation token that is
//! cancelled when the term ends (deposed, or the whole loop stopping), and returns how the term
//! ended. The loop waits for the work to finish before it campaigns again, so two terms of one
//! process never overlap.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{Campaign, Coordinator, Leadership};

/// How a term of leadership ended, as the work saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TermEnd {
    /// The work returned because its term was cancelled (deposed, or stopping).
    Cancelled,
    /// A fenced write was refused: another leader has a larger token. The loop resigns and
    /// campaigns afresh, so this process can never keep acting on a stale term.
    Fenced(String),
    /// The work failed on its own; the loop waits a moment and leads again if still elected.
    Failed(String),
}

/// Pause before a term that ended on a failure is started again while still leading.
const AFTER_FAILURE: Duration = Duration::from_secs(1);
/// Pause between attempts to enter an election the coordinator refused.
const CAMPAIGN_RETRY: Duration = Duration::from_secs(2);

/// Campaigns for `key` as `candidate` and runs `work(token, term)` for every term this process
/// leads, until `stop` is cancelled. Returns when `stop` is cancelled and the current term's work
/// has finished, or when the coordinator has shut down.
pub async fn lead<F, Fut>(coord: &dyn Coordinator, key: &str, candidate: &str, stop: &CancellationToken, mut work: F)
where
    F: FnMut(i64, CancellationToken) -> Fut,
    Fut: Future<Output = TermEnd> + Send + 'static,
{
    let Some(mut campaign) = enter(coord, key, candidate, stop).await else { return };
    loop {
        let token = tokio::select! {
            _ = stop.cancelled() => return,
            token = campaign.leading() => match token {
                Ok(token) => token,
                Err(_) => return, // the coordinator has shut down
            },
        };
        info!(key, token, "leading");
        let term = stop.child_token();
        let mut running = tokio::spawn(work(token, term.clone()));
        let ended = tokio::select! {
            _ = campaign.deposed(token) => {
                info!(key, token, "no longer leading");
                None
            }
            _ = stop.cancelled() => None,
            ended = &mut running => Some(ended),
        };
        term.cancel();
        let ended = match ended {
            Some(ended) => ended,
            None => running.await,
        };
        let ended = ended.unwrap_or_else(|e| TermEnd::Failed(format!("the term's task panicked: {e}")));
        if stop.is_cancelled() {
            return;
        }
        match ended {
            TermEnd::Cancelled => {}
            TermEnd::Fenced(why) => {
                warn!(key, token, %why, "the fence says another leader took over: campaigning afresh");
                drop(campaign);
                let Some(fresh) = enter(coord, key, candidate, stop).await else { return };
                campaign = fresh;
            }
            TermEnd::Failed(why) => {
                warn!(key, token, %why, "the term's work stopped");
                if campaign.current() == (Leadership::Leader { token }) {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(AFTER_FAILURE) => {}
                    }
                }
            }
        }
    }
}

/// Enters the election, retrying while the coordinator refuses; `None` when stopped first.
async fn enter(coord: &dyn Coordinator, key: &str, candidate: &str, stop: &CancellationToken) -> Option<Campaign> {
    loop {
        match coord.campaign(key, candidate).await {
            Ok(campaign) => return Some(campaign),
            Err(crate::CoordError::Closed) => return None,
            Err(e) => {
                warn!(key, error = %e, "cannot enter the election; trying again");
                tokio::select! {
                    _ = stop.cancelled() => return None,
                    _ = tokio::time::sleep(CAMPAIGN_RETRY) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::LocalCoordinator;

    #[tokio::test]
    async fn a_fenced_term_campaigns_afresh_with_a_larger_token() {
        let coord = LocalCoordinator::new();
        let stop = CancellationToken::new();
        let tokens = Arc::new(Mutex::new(Vec::new()));
        let seen = tokens.clone();
        let loop_stop = stop.clone();
        let task = tokio::spawn(async move {
            lead(&coord, "job/x", "a", &loop_stop, move |token, term| {
                let seen = seen.clone();
                async move {
                    let n = {
                        let mut seen = seen.lock().unwrap();
                        seen.push(token);
                        seen.len()
                    };
                    if n == 1 {
                        return TermEnd::Fenced("refused".into());
                    }
                    term.cancelled().await;
                    TermEnd::Cancelled
                }
            })
            .await;
        });
        for _ in 0..200 {
            if tokens.lock().unwrap().len() >= 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let got = tokens.lock().unwrap().clone();
        assert_eq!(got.len(), 2, "a second term after the fence refused the first");
        assert!(got[1] > got[0], "{got:?}");
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(2), task).await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn stopping_waits_for_the_terms_work() {
        let coord = LocalCoordinator::new();
        let stop = CancellationToken::new();
        let finished = Arc::new(Mutex::new(false));
        let flag = finished.clone();
        let loop_stop = stop.clone();
        let task = tokio::spawn(async move {
            lead(&coord, "job/y", "a", &loop_stop, move |_, term| {
                let flag = flag.clone();
                async move {
                    term.cancelled().await;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    *flag.lock().unwrap() = true;
                    TermEnd::Cancelled
                }
            })
            .await;
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        stop.cancel();
        task.await.unwrap();
        assert!(*finished.lock().unwrap(), "the loop returned before the term's work finished");
    }

    #[tokio::test]
    async fn a_deposed_term_is_cancelled_and_the_backup_leads() {
        let coord = Arc::new(LocalCoordinator::new());
        let stop_a = CancellationToken::new();
        let stop_b = CancellationToken::new();
        let terms = Arc::new(Mutex::new(Vec::<(&'static str, i64)>::new()));
        for (name, stop) in [("a", stop_a.clone()), ("b", stop_b.clone())] {
            let (coord, terms) = (coord.clone(), terms.clone());
            tokio::spawn(async move {
                lead(coord.as_ref(), "job/z", name, &stop, move |token, term| {
                    let terms = terms.clone();
                    async move {
                        terms.lock().unwrap().push((name, token));
                        term.cancelled().await;
                        TermEnd::Cancelled
                    }
                })
                .await;
            });
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(terms.lock().unwrap().iter().map(|t| t.0).collect::<Vec<_>>(), vec!["a"]);
        stop_a.cancel();
        for _ in 0..200 {
            if terms.lock().unwrap().len() == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let terms = terms.lock().unwrap().clone();
        assert_eq!(terms.len(), 2);
        assert_eq!(terms[1].0, "b");
        assert!(terms[1].1 > terms[0].1);
        stop_b.cancel();
    }
}
