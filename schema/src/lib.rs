//! Switchboard's shared contract.
//!
//! - [`domain`]: the objects every crate talks about (interactions, messages, agents...), with
//!   the serde shape the agent API and the REST API expose.
//! - [`wire`]: the frames of the agent WebSocket API.
//! - [`store`]: the PostgreSQL store. Functions take a connection or transaction so the caller
//!   owns the commit; queries are runtime-checked and covered by this crate's tests.
//! - [`MIGRATOR`]: the embedded SQL migrations (`schema/migrations`).
#![forbid(unsafe_code)]

pub mod domain;
pub mod store;
pub mod topics;
pub mod wire;

/// The embedded migrations. Applying them twice is a no-op.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");
