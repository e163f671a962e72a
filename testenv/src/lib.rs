//! What integration tests need from the local services that `deploy/services.sh start` runs.
//!
//! Each test gets its own freshly migrated database, so tests run in parallel and never see each
//! other's rows. Without the services the helpers panic with the command to run: a test that
//! silently skipped would prove nothing.
#![forbid(unsafe_code)]

pub mod fixtures;
pub mod fuzz;

use sqlx::{Connection, PgConnection, PgPool};

const HOW: &str = "start the local services first: `deploy/services.sh start && eval \"$(deploy/services.sh env)\"` \
                   (or run the whole suite with `deploy/test.sh`)";

fn required(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| panic!("{var} is not set: {HOW}"))
}

/// Logs go to the test output when `TEST_LOG` is set (e.g. `TEST_LOG=debug`).
pub fn init_logging() {
    if let Ok(filter) = std::env::var("TEST_LOG") {
        let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
    }
}

/// The standalone ZooKeeper's connect string.
pub fn zookeeper() -> String {
    required("SWITCHBOARD_TEST_ZK")
}

/// The 3-node ensemble's connect string, and the script that stops and starts its nodes.
pub fn zookeeper_ensemble() -> (String, String) {
    (required("SWITCHBOARD_TEST_ZK_ENSEMBLE"), required("SWITCHBOARD_TEST_ZK_ENSEMBLE_SCRIPT"))
}

/// A fresh, migrated database. Returns its URL and a pool on it.
pub async fn database() -> (String, PgPool) {
    init_logging();
    let admin_url = required("SWITCHBOARD_TEST_DATABASE_URL");
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&admin_url)
        .await
        .unwrap_or_else(|e| panic!("cannot reach PostgreSQL at SWITCHBOARD_TEST_DATABASE_URL ({e}): {HOW}"));
    // the name is generated here from a UUID, never from input
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .expect("create test database");
    let url = match admin_url.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{name}"),
        None => panic!("SWITCHBOARD_TEST_DATABASE_URL must end with /<database>"),
    };
    let pool = schema::store::connect(&url, 20).await.expect("connect to the test database");
    schema::store::migrate(&pool).await.expect("migrations apply to an empty database");
    (url, pool)
}

/// A `switchboard` process on the local services, killed when dropped.
pub struct Switchboard {
    pub child: std::process::Child,
    /// `host:port` of its HTTP listener.
    pub addr: String,
}

impl Switchboard {
    /// Starts the binary at `bin` (a test's `env!("CARGO_BIN_EXE_switchboard")`) with `args` on
    /// the local ZooKeeper and a free port, plus `env` (database URL, coordination root, keys...).
    /// Logs go to the test's stderr at `NODE_LOG` (default `warn`). Returns once it prints its
    /// address.
    pub fn start(bin: &str, args: &[&str], env: &[(&str, &str)]) -> Switchboard {
        use std::io::{BufRead, BufReader};
        let mut command = std::process::Command::new(bin);
        command
            .args(args)
            .env_remove("SWITCHBOARD_CONFIG")
            .env("SWITCHBOARD_COORD__BACKEND", "zookeeper")
            .env("SWITCHBOARD_COORD__ZOOKEEPER", zookeeper())
            .env("SWITCHBOARD_HTTP__BIND", "127.0.0.1:0")
            .env("SWITCHBOARD_LOG__FILTER", std::env::var("NODE_LOG").unwrap_or_else(|_| "warn".into()))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().unwrap_or_else(|e| panic!("spawn {bin} {args:?}: {e}"));
        let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let addr = loop {
            let line = lines.next().expect("switchboard prints its address").expect("read stdout");
            if let Some(addr) = line.strip_prefix("switchboard: listening on http://") {
                break addr.to_owned();
            }
        };
        std::thread::spawn(move || lines.for_each(drop));
        Switchboard { child, addr }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Switchboard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Index entries of `table` read so far by the transaction open on `conn`: how a test tells
/// a lookup that probes its keys from one that walks an index.
pub async fn index_entries_read(conn: &mut PgConnection, table: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT coalesce(sum(pg_stat_get_xact_tuples_returned(indexrelid)), 0)::int8
         FROM pg_index WHERE indrelid = $1::regclass",
    )
    .bind(table)
    .fetch_one(&mut *conn)
    .await
    .expect("pg_stat_get_xact_tuples_returned")
}

/// A bearer token for `sub` with `roles`, signed with the HS256 `secret`, valid for a long time.
pub fn token(secret: &str, sub: &str, roles: &[&str]) -> String {
    let claims = ops::auth::Claims {
        sub: sub.into(),
        exp: u64::MAX / 4,
        name: None,
        roles: roles.iter().map(|r| r.to_string()).collect(),
    };
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign a test token")
}
