//! The delivery worker: claims due deliveries from the outbox, `POST`s them signed, records each
//! attempt and schedules the next one. Any number of loader nodes run it side by side: claims
//! use `FOR UPDATE SKIP LOCKED` and a lease (see `schema::store::claim_deliveries`), so no two
//! nodes send the same attempt.
//!
//! It polls: every `poll_interval` it drains everything due, a batch at a time, `concurrency`
//! requests in flight. (Deliveries are written by a database trigger, so there is no process to
//! ring a doorbell; a poll of an index on due rows costs next to nothing.)

use std::time::{Duration, Instant};

use chrono::Utc;
use futures::StreamExt;
use schema::store::{AttemptOutcome, DueDelivery};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::target::{TargetError, Targets};
use super::{Backoff, EVENT_ID_HEADER, EVENT_TYPE_HEADER, SIGNATURE_HEADER, event_id, sign};
use crate::model::{WebhookCampaignEvent, WebhookEvent};

/// How the worker runs.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub poll_interval: Duration,
    /// Deliveries claimed per round trip.
    pub batch: i64,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Per request; also bounds the lease.
    pub timeout: Duration,
    pub backoff: Backoff,
}

impl WorkerConfig {
    /// How long a claimed delivery is ours: the request's deadline and a margin for recording.
    fn lease(&self) -> Duration {
        self.timeout + Duration::from_secs(30)
    }
}

/// Runs until `shutdown` is cancelled. Every receiver is checked against `targets` as it is
/// sent to: a literal address before the request, a name by the client's resolver (which
/// hands the client only the addresses it checked), and no proxy is used.
pub async fn run(pool: PgPool, config: WorkerConfig, targets: Targets, shutdown: CancellationToken) {
    let client = match reqwest::Client::builder()
        .timeout(config.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .dns_resolver(targets.resolver())
        .user_agent(concat!("switchboard-webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(client) => client,
        Err(e) => {
            warn!(error = %e, "cannot build the webhook HTTP client; webhooks are not delivered");
            return;
        }
    };
    info!(poll_interval = ?config.poll_interval, "webhook delivery worker started");
    loop {
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            let claimed = async {
                let mut conn = pool.acquire().await?;
                schema::store::claim_deliveries(&mut conn, config.batch, config.lease()).await
            }
            .await;
            match claimed {
                Ok(batch) if batch.is_empty() => break,
                Ok(batch) => {
                    debug!(count = batch.len(), "delivering webhooks");
                    let full = batch.len() as i64 == config.batch;
                    futures::stream::iter(batch)
                        .map(|delivery| deliver(&client, &pool, &config, &targets, delivery))
                        .buffer_unordered(config.concurrency.max(1))
                        .collect::<()>()
                        .await;
                    if !full {
                        break;
                    }
                }
                Err(e) => {
                    warn!(error = %e, "cannot claim webhook deliveries; retrying at the next poll");
                    break;
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(config.poll_interval) => {}
        }
    }
}

/// The body of a delivery: the event, as [`WebhookEvent`] documents it.
pub fn payload(delivery: &DueDelivery) -> Vec<u8> {
    let e = &delivery.event;
    if let Some(campaign_id) = delivery.campaign_id {
        let event = WebhookCampaignEvent {
            id: event_id(campaign_id, e.seq),
            event_type: e.kind.clone(),
            campaign_id,
            seq: e.seq,
            created_at: e.created_at,
            data: e.data.clone(),
        };
        return serde_json::to_vec(&event).expect("events serialize");
    }
    let event = WebhookEvent {
        id: event_id(e.interaction_id, e.seq),
        event_type: e.kind.clone(),
        interaction_id: e.interaction_id,
        seq: e.seq,
        actor: e.actor.clone(),
        created_at: e.created_at,
        data: e.data.clone(),
    };
    serde_json::to_vec(&event).expect("events serialize")
}

async fn deliver(
    client: &reqwest::Client,
    pool: &PgPool,
    config: &WorkerConfig,
    targets: &Targets,
    delivery: DueDelivery,
) {
    let body = payload(&delivery);
    let id = event_id(delivery.event.interaction_id, delivery.event.seq);
    let signature = sign(&delivery.secret, Utc::now().timestamp(), &body);
    let started = Instant::now();
    let outcome = match targets.check_delivery(&delivery.url) {
        Ok(url) => send(client, config, url, &id, &delivery, signature, body, started).await,
        Err(refused) => {
            AttemptOutcome { status_code: None, error: Some(format!("the receiver's URL {refused}")), duration_ms: 0 }
        }
    };
    let succeeded = outcome.error.is_none();
    metrics::counter!("loader_webhook_attempts_total", "outcome" => if succeeded { "delivered" } else { "failed" })
        .increment(1);
    let next = config.backoff.next(delivery.attempt, succeeded, delivery.retry_from, Utc::now());
    debug!(delivery = delivery.id, event = %id, attempt = delivery.attempt, ?next, error = ?outcome.error, "webhook attempt");
    let recorded = async {
        let mut conn = pool.acquire().await?;
        schema::store::record_attempt(&mut conn, delivery.id, delivery.attempt, &outcome, next).await
    }
    .await;
    match recorded {
        Ok(true) => {}
        Ok(false) => debug!(delivery = delivery.id, "the lease ran out and the delivery was claimed again"),
        Err(e) => warn!(delivery = delivery.id, error = %e, "cannot record a webhook attempt; it will be retried"),
    }
}

#[allow(clippy::too_many_arguments)]
async fn send(
    client: &reqwest::Client,
    config: &WorkerConfig,
    url: url::Url,
    id: &str,
    delivery: &DueDelivery,
    signature: String,
    body: Vec<u8>,
    started: Instant,
) -> AttemptOutcome {
    let sent = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(EVENT_ID_HEADER, id)
        .header(EVENT_TYPE_HEADER, &delivery.event.kind)
        .header(SIGNATURE_HEADER, signature)
        .body(body)
        .send()
        .await;
    let duration_ms = i32::try_from(started.elapsed().as_millis()).unwrap_or(i32::MAX);
    match sent {
        Ok(response) if response.status().is_success() => {
            AttemptOutcome { status_code: Some(i32::from(response.status().as_u16())), error: None, duration_ms }
        }
        Ok(response) => AttemptOutcome {
            status_code: Some(i32::from(response.status().as_u16())),
            error: Some(format!("the receiver answered {}", response.status())),
            duration_ms,
        },
        Err(e) => {
            let why = if e.is_timeout() {
                format!("no answer within {:?}", config.timeout)
            } else if let Some(refused) = refusal(&e) {
                format!("the receiver's URL {refused}")
            } else if e.is_connect() {
                "cannot connect to the receiver".to_owned()
            } else {
                format!("request failed: {e}")
            };
            AttemptOutcome { status_code: None, error: Some(why), duration_ms }
        }
    }
}

/// The target refusal behind a failed request, if the resolver refused the receiver's name.
fn refusal(e: &reqwest::Error) -> Option<&TargetError> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(err) = source {
        if let Some(refused) = err.downcast_ref::<TargetError>() {
            return Some(refused);
        }
        source = err.source();
    }
    None
}
