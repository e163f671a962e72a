//! Logging: `tracing` to stderr, as text for people or JSON for machines, set up once per
//! process.
//!
//! The filter comes from the configuration (`log.filter`, an `EnvFilter` directive such as
//! `info` or `info,coord=debug`); `RUST_LOG`, when set and not empty, overrides it. Tests stay
//! quiet unless `TEST_LOG` is set (see the `testenv` crate).

use std::io::IsTerminal;

use serde::{Deserialize, Serialize};
use tracing_subscriber::EnvFilter;

/// How log lines look.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable, one line per event.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("invalid log filter {filter:?} (from {origin}): {reason}")]
    Filter { filter: String, origin: &'static str, reason: String },
    #[error("logging is already set up in this process")]
    AlreadyInitialized,
}

/// Installs the global subscriber. Call once, first thing in `main`.
pub fn init(format: LogFormat, filter: &str) -> Result<(), TelemetryError> {
    let rust_log = std::env::var("RUST_LOG").ok();
    let filter = env_filter(filter, rust_log.as_deref())?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let installed = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    installed.map_err(|_| TelemetryError::AlreadyInitialized)
}

/// The filter in force: `RUST_LOG` if set and not empty, else the configured one.
fn env_filter(configured: &str, rust_log: Option<&str>) -> Result<EnvFilter, TelemetryError> {
    let (filter, origin) = match rust_log {
        Some(v) if !v.trim().is_empty() => (v, "RUST_LOG"),
        _ => (configured, "log.filter"),
    };
    EnvFilter::try_new(filter).map_err(|e| TelemetryError::Filter {
        filter: filter.to_owned(),
        origin,
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_filter_applies_without_rust_log() {
        let filter = env_filter("warn,ops=debug", None).unwrap();
        assert_eq!(filter.to_string(), "ops=debug,warn");
        let filter = env_filter("info", Some("  ")).unwrap();
        assert_eq!(filter.to_string(), "info");
    }

    #[test]
    fn rust_log_overrides_the_configured_filter() {
        let filter = env_filter("info", Some("debug")).unwrap();
        assert_eq!(filter.to_string(), "debug");
    }

    #[test]
    fn a_bad_filter_names_where_it_came_from() {
        let err = env_filter("info,[=", None).unwrap_err().to_string();
        assert!(err.contains("log.filter"), "{err}");
        let err = env_filter("info", Some("info,[=")).unwrap_err().to_string();
        assert!(err.contains("RUST_LOG"), "{err}");
    }

    #[test]
    fn formats_parse_from_config_strings() {
        #[derive(Deserialize)]
        struct Log {
            format: LogFormat,
        }
        let log: Log = toml::from_str("format = \"json\"").unwrap();
        assert_eq!(log.format, LogFormat::Json);
        assert!(toml::from_str::<Log>("format = \"xml\"").is_err());
    }
}
