//! The inbound half of the runtime: what a channel module calls for each customer update.
//!
//! Each call stores in **one transaction**, commits, and only then rings the doorbells: the
//! agent's (`agent/<login>`) for everyone in the interaction's audience and routing's when the
//! message opened an interaction. The channel module acknowledges the platform after the call
//! returns `Ok` (advances the long-poll offset, answers the webhook 200): a crash before the
//! commit means the platform sends the update again; after it, the unique key on
//! `(account, external_message_id)` absorbs the repeat.

use std::sync::Arc;
use std::time::Duration;

use coord::Coordinator;
use schema::store::{self, Announced, InboundMessage, Ingested, StoreError};
use schema::topics;
use sqlx::PgPool;
use uuid::Uuid;

/// Stores inbound updates of one account. Cheap to clone.
#[derive(Clone)]
pub struct Ingest {
    pool: PgPool,
    coord: Arc<dyn Coordinator>,
    account_id: Uuid,
    reopen_window: Duration,
}

/// Transactions lost to a race (two first messages of one customer) are tried this many times.
const RACE_RETRIES: usize = 3;

impl Ingest {
    pub fn new(pool: PgPool, coord: Arc<dyn Coordinator>, account_id: Uuid, reopen_window: Duration) -> Self {
        Ingest { pool, coord, account_id, reopen_window }
    }

    pub fn account_id(&self) -> Uuid {
        self.account_id
    }

    /// Stores one customer message (see [`store::ingest_inbound`]), then rings the doorbells.
    pub async fn message(&self, msg: &InboundMessage) -> Result<Ingested, StoreError> {
        let mut attempt = 0;
        let ingested = loop {
            attempt += 1;
            let result = async {
                let mut tx = self.pool.begin().await?;
                let out = store::ingest_inbound(&mut tx, msg, self.reopen_window).await?;
                tx.commit().await?;
                Ok::<_, StoreError>(out)
            }
            .await;
            match result {
                Err(StoreError::Database(sqlx::Error::Database(db)))
                    if db.is_unique_violation() && attempt < RACE_RETRIES =>
                {
                    tracing::debug!(account = %self.account_id, "lost an interaction race; trying again");
                }
                other => break other?,
            }
        };
        if let Ingested::Stored { opened, audience, .. } = &ingested {
            self.ring(audience);
            if *opened {
                self.coord.notify(topics::ROUTING);
            }
            metrics::counter!("switchboard_connector_inbound_total", "account" => self.account_id.to_string())
                .increment(1);
        } else {
            metrics::counter!("switchboard_connector_inbound_duplicates_total", "account" => self.account_id.to_string())
                .increment(1);
        }
        Ok(ingested)
    }

    /// Whether a customer message with this platform id is stored already (so its media need
    /// not be fetched again).
    pub async fn known(&self, external_message_id: &str) -> Result<bool, StoreError> {
        let mut conn = self.pool.acquire().await?;
        Ok(store::find_message_by_external(&mut conn, self.account_id, external_message_id).await?.is_some())
    }

    /// The customer edited a message: keep the original, store the new text, tell the agents.
    /// `false` when the original was never stored.
    pub async fn edit(&self, external_message_id: &str, new_text: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let announced = store::record_inbound_edit(&mut tx, self.account_id, external_message_id, new_text).await?;
        tx.commit().await?;
        match announced {
            Some(Announced { audience, .. }) => {
                self.ring(&audience);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// `None`: the customer is new; `Some(avatar)`: known, with the avatar URL if any.
    pub async fn customer_avatar(&self, external_id: &str) -> Result<Option<Option<String>>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        store::customer_avatar(&mut conn, self.account_id, external_id).await
    }

    fn ring(&self, audience: &[String]) {
        for agent in audience {
            self.coord.notify(&topics::agent(agent));
        }
    }
}
