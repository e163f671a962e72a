//! The PostgreSQL store.
//!
//! Every function takes `&mut PgConnection` (pass `&mut *tx` for a transaction) so the caller
//! decides what commits together. Queries are runtime-checked (`sqlx::query`), and the tests in
//! `schema/tests` run each of them against a real database.

mod admin;
mod call_files;
mod campaigns;
mod connector;
mod dead_letters;
mod directory;
mod events;
mod fencing;
mod fields;
mod files;
mod flows;
mod history;
mod inbound;
mod links;
mod live;
mod locations;
mod ok;
mod outbound;
mod receipts;
mod recording;
mod reports;
mod routing;
mod rows;
mod schedules;
mod stats;
mod survey;
mod video;
mod vk;
mod webchat;
mod webhooks;
/// WhatsApp's service window and templates (not glob-exported: `store::whatsapp::...`).
pub mod whatsapp;

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

pub use admin::*;
pub use call_files::*;
pub use campaigns::*;
pub use connector::*;
pub use dead_letters::*;
pub use directory::*;
pub use events::*;
pub use fencing::*;
pub use fields::*;
pub use files::*;
pub use flows::*;
pub use history::*;
pub use inbound::*;
pub use links::*;
pub use live::*;
pub use locations::*;
pub use ok::*;
pub use outbound::*;
pub use receipts::*;
pub use recording::*;
pub use reports::*;
pub use routing::*;
pub use rows::{load_interaction, load_message, load_messages};
pub use schedules::*;
pub use stats::*;
pub use survey::*;
pub use video::*;
pub use vk::*;
pub use webchat::*;
pub use webhooks::*;

/// What can go wrong in the store. Callers map these once, at their API edge.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{what} {id} not found")]
    NotFound { what: &'static str, id: String },
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("fencing token {token} for {key} is stale: {current} has been seen")]
    StaleFence { key: String, token: i64, current: i64 },
    #[error("the database holds a value this build does not know: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl StoreError {
    /// Whether the same write can never succeed however often it is tried (the data itself is
    /// refused: a data exception, a value too large, a check or foreign key that fails), as
    /// opposed to a database that is down, busy or lost a race.
    pub fn is_permanent(&self) -> bool {
        match self {
            StoreError::Invalid(_) | StoreError::Corrupt(_) | StoreError::Forbidden(_) => true,
            StoreError::NotFound { .. } | StoreError::Conflict(_) | StoreError::StaleFence { .. } => false,
            StoreError::Database(sqlx::Error::Database(db)) => {
                let code = db.code().unwrap_or_default();
                // 22: data exception (bad encoding, value too long, invalid text); 54: program
                // limit exceeded (a row too large); 23514/23503: check and foreign key violations
                code.starts_with("22") || code.starts_with("54") || code == "23514" || code == "23503"
            }
            StoreError::Database(sqlx::Error::Encode(_) | sqlx::Error::ColumnDecode { .. }) => true,
            StoreError::Database(_) => false,
        }
    }

    pub(crate) fn not_found(what: &'static str, id: impl ToString) -> Self {
        StoreError::NotFound { what, id: id.to_string() }
    }
}

impl From<crate::domain::UnknownValue> for StoreError {
    fn from(e: crate::domain::UnknownValue) -> Self {
        StoreError::Corrupt(e.to_string())
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Opens a pool. `url` is a `postgres://` URL; its password never reaches the logs.
pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool> {
    let options: PgConnectOptions = url.parse()?;
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await?;
    Ok(pool)
}

/// Whether the database answers (for readiness probes).
pub async fn ping(pool: &PgPool) -> Result<()> {
    sqlx::query("SELECT 1").execute(pool).await?;
    Ok(())
}

/// The migration versions recorded as applied (none before the first migration).
pub async fn applied_migrations(pool: &PgPool) -> Result<std::collections::BTreeSet<i64>> {
    let table = crate::MIGRATOR.table_name.as_ref();
    let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL").bind(table).fetch_one(pool).await?;
    if !exists {
        return Ok(Default::default());
    }
    // the table name is sqlx's constant, not input
    let versions: Vec<i64> =
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT version FROM {table} WHERE success")))
            .fetch_all(pool)
            .await?;
    Ok(versions.into_iter().collect())
}

/// Applies every pending migration; a no-op when the database is current.
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    crate::MIGRATOR.run(pool).await
}
