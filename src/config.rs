//! The configuration of the `switchboard` binary: one TOML file, every key overridable with
//! `SWITCHBOARD_<SECTION>__<KEY>` (see `ops::config`). `config/switchboard.example.toml`
//! documents every key; keep the two in step.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use ops::config::{ConfigError, Problem, Secret};
use ops::telemetry::LogFormat;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub database: DatabaseConfig,
    pub coord: CoordConfig,
    pub http: HttpConfig,
    pub log: LogConfig,
    /// How bearer tokens (agents' and services') are verified, for every component.
    pub jwt: ops::auth::JwtConfig,
    pub chatserver: chatserver::Config,
    pub fileserver: fileserver::Config,
    pub loader: interaction_loader::Config,
    pub connectors: connectors::Config,
    pub video: video::Config,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `postgres://user[:password]@host:port/database`.
    pub url: String,
    /// Replaces the URL's password when set; give it as `{ file = "/path" }` to keep it out of
    /// the config file and the environment.
    pub password: Option<Secret>,
    pub max_connections: u32,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: "postgres://postgres@127.0.0.1:25432/switchboard".into(),
            password: None,
            max_connections: 20,
        }
    }
}

/// Which coordinator `switchboard all` uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// ZooKeeper at `coord.zookeeper`: required as soon as more than one process runs.
    Zookeeper,
    /// In-process: a single `switchboard all`, nothing else.
    Local,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoordConfig {
    pub backend: Backend,
    /// Connect string `host:port[,host:port...]`.
    pub zookeeper: String,
    /// Root path of this deployment's nodes.
    pub root: String,
    pub session_timeout_ms: u64,
}

impl Default for CoordConfig {
    fn default() -> Self {
        CoordConfig {
            backend: Backend::Zookeeper,
            zookeeper: "127.0.0.1:22181".into(),
            root: "/switchboard".into(),
            session_timeout_ms: 6000,
        }
    }
}

impl CoordConfig {
    pub fn session_timeout(&self) -> Duration {
        Duration::from_millis(self.session_timeout_ms)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Address of the one HTTP listener (`127.0.0.1:0`: any free port, printed at start).
    pub bind: SocketAddr,
    /// If set, `/metrics` is served on this address only (an internal listener, e.g.
    /// `10.0.0.5:9090` or `127.0.0.1:9090`) and no longer on `bind`; it serves `/healthz` and
    /// `/readyz` too. Unset (the default): `/metrics` is on `bind`.
    #[serde(default)]
    pub metrics_bind: Option<SocketAddr>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig { bind: SocketAddr::from(([127, 0, 0, 1], 8080)), metrics_bind: None }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
    /// `tracing` filter directives; `RUST_LOG` overrides them when set.
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        // webrtc-rs logs every state change at info and every browser's DTLS extensions at warn
        LogConfig { format: LogFormat::Text, filter: "info,rtc=warn,rtc_dtls=error".into() }
    }
}

/// Session timeouts ZooKeeper can grant (its tickTime bounds them; 1-60 s covers every
/// sensible server setting).
const SESSION_TIMEOUT_MS: std::ops::RangeInclusive<u64> = 1_000..=60_000;

impl Config {
    /// Defaults, then `file`, then the environment; then [`Config::validate`].
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let config: Config = ops::config::load(file)?;
        config.validate()?;
        Ok(config)
    }

    /// What types alone cannot check.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        match url::Url::parse(&self.database.url) {
            Ok(url) if matches!(url.scheme(), "postgres" | "postgresql") => {}
            Ok(url) => problems.push(Problem::new(
                "database.url",
                format!("scheme {:?} is not supported: use postgres://user@host:port/database", url.scheme()),
            )),
            Err(e) => problems
                .push(Problem::new("database.url", format!("not a URL ({e}): use postgres://user@host:port/database"))),
        }
        if self.database.max_connections == 0 {
            problems.push(Problem::new("database.max_connections", "must be at least 1"));
        }
        if self.coord.backend == Backend::Zookeeper && self.coord.zookeeper.trim().is_empty() {
            problems.push(Problem::new(
                "coord.zookeeper",
                "is empty: give host:port[,host:port...] or set coord.backend = \"local\"",
            ));
        }
        if !self.coord.root.starts_with('/') || self.coord.root.len() < 2 {
            problems.push(Problem::new(
                "coord.root",
                format!("{:?} must be an absolute ZooKeeper path such as /switchboard", self.coord.root),
            ));
        }
        if !SESSION_TIMEOUT_MS.contains(&self.coord.session_timeout_ms) {
            problems.push(Problem::new(
                "coord.session_timeout_ms",
                format!(
                    "{} is out of range {}..={}",
                    self.coord.session_timeout_ms,
                    SESSION_TIMEOUT_MS.start(),
                    SESSION_TIMEOUT_MS.end()
                ),
            ));
        }
        problems.extend(self.fileserver.problems());
        problems.extend(self.loader.problems());
        problems.extend(self.video.problems());
        if self.chatserver.video_quality.parse::<schema::domain::VideoQuality>().is_err() {
            problems.push(Problem::new(
                "chatserver.video_quality",
                format!("{:?} is not one of 480p, 720p, 1080p, 2160p", self.chatserver.video_quality),
            ));
        }
        problems.extend(crate::connector::problems(&self.connectors));
        if problems.is_empty() { Ok(()) } else { Err(ConfigError::Invalid(problems)) }
    }

    /// The URL to connect with: `database.url` with `database.password` in it, if set.
    pub fn database_url(&self) -> anyhow::Result<String> {
        let Some(password) = &self.database.password else {
            return Ok(self.database.url.clone());
        };
        let mut url =
            url::Url::parse(&self.database.url).map_err(|e| anyhow::anyhow!("database.url is not a URL: {e}"))?;
        url.set_password(Some(password.expose()))
            .map_err(|()| anyhow::anyhow!("database.url has no host to give a password for"))?;
        Ok(url.into())
    }

    /// This configuration with the database URL's password masked, for printing.
    pub fn redacted(&self) -> Config {
        let mut config = self.clone();
        config.database.url = redact_url(&config.database.url);
        config
    }
}

/// `url` with its password (in the user info or a `password=` query parameter) replaced by
/// `***`, for logs and error messages.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{host}"),
            None => authority.to_owned(),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) if key.eq_ignore_ascii_case("password") => {
                        format!("{key}=***")
                    }
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_local() {
        let config = Config::default();
        config.validate().unwrap();
        assert!(config.http.bind.ip().is_loopback());
        assert_eq!(config.database.url, "postgres://postgres@127.0.0.1:25432/switchboard");
        assert_eq!(config.coord.backend, Backend::Zookeeper);
    }

    #[test]
    fn validation_names_every_bad_key() {
        let mut config = Config::default();
        config.database.url = "mysql://x@y/z".into();
        config.database.max_connections = 0;
        config.coord.root = "switchboard".into();
        config.coord.session_timeout_ms = 10;
        let msg = config.validate().unwrap_err().to_string();
        for key in ["database.url", "database.max_connections", "coord.root", "coord.session_timeout_ms"] {
            assert!(msg.contains(key), "{key} missing from: {msg}");
        }
    }

    #[test]
    fn password_goes_into_the_url() {
        let mut config = Config::default();
        assert_eq!(config.database_url().unwrap(), config.database.url);
        config.database.password = Some(Secret::new("p@ss word"));
        assert_eq!(config.database_url().unwrap(), "postgres://postgres:p%40ss%20word@127.0.0.1:25432/switchboard");
    }

    #[test]
    fn redaction_hides_passwords_only() {
        assert_eq!(redact_url("postgres://u:secret@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            redact_url("postgres://u:p@ss@h/db?sslmode=require&password=x"),
            "postgres://u:***@h/db?sslmode=require&password=***"
        );
        assert_eq!(redact_url("not a url"), "not a url");
    }
}
