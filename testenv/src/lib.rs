//! What integration tests need from the local services that `deploy/services.sh start` runs.
//!
//! Each test gets its own freshly migrated database, so tests run in parallel and never see each
//! other's rows. Without the services the helpers panic with the command to run: a test that
//! silently skipped would prove nothing.
#![forbid(unsafe_code)]

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
