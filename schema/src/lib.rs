//! Switchboard's shared contract.
//!
//! - [`flow`]: bot flows: the graph, its validation (errors naming the node) and the sans-IO
//!   interpreter fed `(now, run, input)`.
//! - [`fields`]: admin-defined interaction fields: definitions and the checks of a value.
//! - [`domain`]: the objects every crate talks about (interactions, messages, agents...), with
//!   the serde shape the agent API and the REST API expose.
//! - [`campaign`]: the pure decisions of outbound campaigns (placeholders, stop words, quiet
//!   hours, whether a recipient's row may go now).
//! - [`channels`]: the capability matrix (what each channel does) and the limits per channel.
//! - [`survey`]: the customer survey (post-call and after a closed chat): the checks of an
//!   answer and the sans-IO steps of the chat survey.
//! - [`wire`]: the frames of the agent WebSocket API.
//! - [`store`]: the PostgreSQL store. Functions take a connection or transaction so the caller
//!   owns the commit; queries are runtime-checked and covered by this crate's tests.
//! - [`MIGRATOR`]: the embedded SQL migrations (`schema/migrations`).
#![forbid(unsafe_code)]

pub mod campaign;
pub mod channels;
pub mod domain;
pub mod fields;
pub mod flow;
pub mod store;
pub mod survey;
pub mod topics;
pub mod wire;

/// The embedded migrations. Applying them twice is a no-op.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");
