//! The router: one per cluster (leader election), it reads a snapshot, asks [`super::core`]
//! what to do and does it, one conditional transition per interaction, each fenced by the
//! leader's token so a deposed router can no longer write. It runs when woken (a new
//! interaction, an agent ready or freed), when the next offer expires, and every few seconds as a
//! safety net.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use coord::{Coordinator, TermEnd};
use schema::store::{self, OfferEnd, StoreError};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::wake::wake_agents;
use schema::topics;

const SAFETY_NET: Duration = Duration::from_secs(5);

/// `video_weight`: what a live video call counts in its agent's capacity.
pub async fn run(
    pool: PgPool,
    coord: Arc<dyn Coordinator>,
    node: String,
    video_weight: i64,
    shutdown: CancellationToken,
) {
    let leader = coord.clone();
    coord::lead(leader.as_ref(), topics::ROUTER_ELECTION, &node, &shutdown, move |token, term| {
        let (pool, coord) = (pool.clone(), coord.clone());
        async move { route_while_leading(pool, coord, video_weight, token, term).await }
    })
    .await;
}

/// One term of the router: a pass when woken, at the next offer deadline and every few seconds.
async fn route_while_leading(
    pool: PgPool,
    coord: Arc<dyn Coordinator>,
    video_weight: i64,
    token: i64,
    term: CancellationToken,
) -> TermEnd {
    info!(token, "this node routes");
    let mut bell = match coord.subscribe(topics::ROUTING).await {
        Ok(b) => b,
        Err(e) => return TermEnd::Failed(format!("cannot subscribe to {}: {e}", topics::ROUTING)),
    };
    let mut next = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = term.cancelled() => {
                info!(token, "this node no longer routes");
                return TermEnd::Cancelled;
            }
            _ = bell.wake() => {}
            _ = tokio::time::sleep_until(next) => {}
        }
        next = match route_once(&pool, coord.as_ref(), video_weight, token).await {
            Ok(Some(deadline)) => {
                let wait = (deadline - Utc::now()).to_std().unwrap_or_default();
                tokio::time::Instant::now() + wait.min(SAFETY_NET)
            }
            Ok(None) => tokio::time::Instant::now() + SAFETY_NET,
            Err(RouteError::Deposed) => return TermEnd::Fenced(format!("router token {token} refused")),
            Err(RouteError::Other(e)) => {
                warn!(error = %e, "routing pass failed; retrying shortly");
                tokio::time::Instant::now() + Duration::from_millis(500)
            }
        };
    }
}

#[derive(Debug, thiserror::Error)]
enum RouteError {
    #[error("deposed")]
    Deposed,
    #[error(transparent)]
    Other(#[from] StoreError),
}

/// The fencing key of the router's writes.
pub const FENCE: &str = "chatserver/router";

/// One pass: expire, then offer. Returns the next offer deadline.
async fn route_once(
    pool: &PgPool,
    coord: &dyn Coordinator,
    video_weight: i64,
    token: i64,
) -> Result<Option<chrono::DateTime<Utc>>, RouteError> {
    let mut snapshot = {
        let mut conn = pool.acquire().await.map_err(StoreError::from)?;
        store::routing_snapshot(&mut conn).await?
    };
    snapshot.video_weight = video_weight;
    let mut online = HashSet::new();
    for agent in &snapshot.agents {
        match coord.presence(&crate::presence::presence_name(&agent.login)).await {
            Ok(nodes) if !nodes.is_empty() => {
                online.insert(agent.login.clone());
            }
            Ok(_) => {}
            Err(e) => debug!(agent = %agent.login, error = %e, "presence unknown; not offering"),
        }
    }
    let now = snapshot.now.unwrap_or_else(Utc::now);
    let decision = super::core::decide(&snapshot, &online, now);
    for (interaction, agent) in &decision.expire {
        apply(pool, coord, token, Step::Expire(*interaction, agent)).await?;
        info!(%interaction, agent, "offer expired; agent set not_ready");
    }
    if !decision.expire.is_empty() {
        coord.notify(topics::ROUTING); // the expired interactions wait for the next pass
    }
    let mut next = decision.next_deadline;
    for (interaction, agent) in &decision.offer {
        let timeout_ms = queue_timeout(pool, *interaction).await?;
        apply(pool, coord, token, Step::Offer(*interaction, agent, timeout_ms)).await?;
        debug!(%interaction, agent, "offered");
        let deadline = now + chrono::Duration::milliseconds(i64::from(timeout_ms));
        next = Some(next.map_or(deadline, |n| n.min(deadline)));
    }
    Ok(next)
}

async fn queue_timeout(pool: &PgPool, interaction: uuid::Uuid) -> Result<i32, StoreError> {
    let mut conn = pool.acquire().await?;
    let i = store::load_interaction(&mut conn, interaction).await?;
    let queue = i.queue.unwrap_or_default();
    Ok(store::get_queue(&mut conn, &queue).await?.offer_timeout_ms)
}

enum Step<'a> {
    Expire(uuid::Uuid, &'a str),
    Offer(uuid::Uuid, &'a str, i32),
}

/// Runs one fenced transition; a conflict (an agent acted first) is not an error.
async fn apply(pool: &PgPool, coord: &dyn Coordinator, token: i64, step: Step<'_>) -> Result<(), RouteError> {
    let mut tx = pool.begin().await.map_err(StoreError::from)?;
    match store::check_fence(&mut tx, FENCE, token).await {
        Ok(()) => {}
        Err(StoreError::StaleFence { .. }) => return Err(RouteError::Deposed),
        Err(e) => return Err(e.into()),
    }
    let done = match step {
        Step::Expire(interaction, agent) => store::return_offer(&mut tx, interaction, agent, OfferEnd::Expired).await,
        Step::Offer(interaction, agent, timeout_ms) => store::offer(&mut tx, interaction, agent, timeout_ms).await,
    };
    match done {
        Ok(done) => {
            tx.commit().await.map_err(StoreError::from)?;
            wake_agents(coord, &done.notified);
            Ok(())
        }
        Err(StoreError::Conflict(why)) => {
            debug!(why, "routing step lost a race; skipped");
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}
