//! Runtime conventions every Switchboard component uses, so each one starts, logs, reports and
//! stops the same way:
//!
//! - [`auth`]: bearer JWTs (HS256 secret, RS256/ES256 public key) for every authenticated
//!   endpoint.
//! - [`config`]: typed configuration from defaults, a TOML file and `SWITCHBOARD_*`
//!   environment variables; [`config::Secret`] for values that must never print.
//! - [`telemetry`]: `tracing` to stderr, text or JSON, set up once.
//! - [`metrics`]: the global Prometheus recorder and HTTP request metrics.
//! - [`health`]: `/healthz`, `/readyz` (with registered readiness checks) and `/metrics`.
//! - [`shutdown`]: the process's shutdown token, cancelled by SIGTERM or Ctrl-C.
//! - [`http`]: bind (port 0 in tests), expose the address, serve until the token is
//!   cancelled, drain under a deadline.
//!
//! **This crate knows no component**: no database, no ZooKeeper. Binaries register their
//! readiness checks here; they do not live here.
#![forbid(unsafe_code)]

pub mod auth;
pub mod config;
pub mod health;
pub mod http;
pub mod input;
pub mod metrics;
pub mod outbound;
pub mod shutdown;
pub mod telemetry;
