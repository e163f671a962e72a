//! Connecting to PostgreSQL and applying the migrations, with errors that say what to do.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::Context;
use sqlx::PgPool;

use crate::config::{Config, redact_url};

/// Opens the pool `database.*` describes.
pub async fn connect(config: &Config) -> anyhow::Result<PgPool> {
    let url = config.database_url()?;
    let shown = redact_url(&url);
    tracing::info!(url = %shown, max_connections = config.database.max_connections, "connecting to PostgreSQL");
    match schema::store::connect(&url, config.database.max_connections).await {
        Ok(pool) => Ok(pool),
        Err(pool_error) => {
            // The pool reports only that it timed out; one direct attempt says why.
            let cause = match direct_attempt(&url).await {
                Some(cause) => cause,
                None => pool_error.to_string(),
            };
            let hint = if cause.contains("refused") || cause.contains("timed out") || cause.contains("no answer") {
                "is it running? (deploy/services.sh start)"
            } else {
                "check database.url (SWITCHBOARD_DATABASE__URL)"
            };
            anyhow::bail!("cannot connect to PostgreSQL at {shown}: {cause}; {hint}")
        }
    }
}

/// Why a single connection to `url` fails (`None`: it does not).
async fn direct_attempt(url: &str) -> Option<String> {
    use sqlx::Connection;
    match tokio::time::timeout(Duration::from_secs(5), sqlx::PgConnection::connect(url)).await {
        Ok(Ok(conn)) => {
            let _ = conn.close().await;
            None
        }
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some("no answer within 5s".to_owned()),
    }
}

/// A migration applied by [`migrate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub version: i64,
    pub description: String,
}

/// Applies the pending migrations; returns the ones it applied (empty: already up to date).
pub async fn migrate(pool: &PgPool) -> anyhow::Result<Vec<Applied>> {
    let before = applied_versions(pool).await?;
    schema::store::migrate(pool).await.context("cannot apply the database migrations")?;
    let after = applied_versions(pool).await?;
    let applied: Vec<Applied> = schema::MIGRATOR
        .iter()
        .filter(|m| after.contains(&m.version) && !before.contains(&m.version))
        .map(|m| Applied { version: m.version, description: m.description.to_string() })
        .collect();
    for m in &applied {
        tracing::info!(version = m.version, description = %m.description, "migration applied");
    }
    Ok(applied)
}

/// Versions recorded as applied in sqlx's bookkeeping table (none if it does not exist yet).
async fn applied_versions(pool: &PgPool) -> anyhow::Result<BTreeSet<i64>> {
    schema::store::applied_migrations(pool).await.context("cannot read the migration history")
}
