//! Black-box tests of the `switchboard` binary: the real executable, configured through the
//! environment as an operator would, against the PostgreSQL and ZooKeeper that
//! `deploy/services.sh start` runs (each test on its own database).

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};

/// The binary with a clean configuration environment: no inherited `SWITCHBOARD_*` config
/// keys or config file, quiet logs.
fn switchboard() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    for (name, _) in std::env::vars() {
        if name.starts_with("SWITCHBOARD_") && (name.contains("__") || name == "SWITCHBOARD_CONFIG") {
            command.env_remove(name);
        }
    }
    command.env_remove("RUST_LOG").env("SWITCHBOARD_LOG__FILTER", "warn");
    command
}

fn run(command: &mut Command) -> Output {
    command.stdin(Stdio::null()).output().expect("run switchboard")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn temp_file(name: &str, contents: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("switchboard-test-{}-{name}", uuid::Uuid::new_v4().simple()));
    std::fs::write(&path, contents).expect("write temp file");
    path
}

/// A database with nothing in it, not even the migrations.
async fn empty_database() -> String {
    let admin_url = std::env::var("SWITCHBOARD_TEST_DATABASE_URL").expect(
        "SWITCHBOARD_TEST_DATABASE_URL is not set: run deploy/test.sh, or \
         `deploy/services.sh start && eval \"$(deploy/services.sh env)\"` first",
    );
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&admin_url).await.expect("connect to SWITCHBOARD_TEST_DATABASE_URL");
    // the name is generated here, never from input
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .expect("create database");
    let (base, _) = admin_url.rsplit_once('/').expect("URL ends with /<db>");
    format!("{base}/{name}")
}

#[test]
fn help_works_for_every_subcommand() {
    for args in [
        &["--help"][..],
        &["help"],
        &["migrate", "--help"],
        &["all", "--help"],
        &["config", "--help"],
        &["fileserver", "--help"],
        &["loader", "--help"],
        &["help", "all"],
    ] {
        let out = run(switchboard().args(args));
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        let stdout = text(&out.stdout);
        assert!(stdout.contains("Usage: switchboard"), "{args:?}: {stdout}");
    }
    let out = run(switchboard().arg("--help"));
    let stdout = text(&out.stdout);
    for subcommand in ["migrate", "all", "config"] {
        assert!(stdout.contains(subcommand), "{stdout}");
    }
}

#[test]
fn a_bad_config_value_exits_non_zero_naming_the_key() {
    for subcommand in ["config", "migrate", "all"] {
        let out = run(switchboard().arg(subcommand).env("SWITCHBOARD_COORD__BACKEND", "etcd"));
        assert_eq!(out.status.code(), Some(2), "{subcommand}");
        let stderr = text(&out.stderr);
        assert!(stderr.contains("coord.backend"), "{stderr}");
        assert!(stderr.contains("etcd"), "{stderr}");
        assert!(stderr.contains("SWITCHBOARD_COORD__BACKEND"), "{stderr}");
    }
}

#[test]
fn out_of_range_values_and_unknown_keys_are_refused() {
    let out = run(switchboard().arg("config").env("SWITCHBOARD_DATABASE__MAX_CONNECTIONS", "0"));
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("database.max_connections: must be at least 1"));

    let file = temp_file("typo.toml", "[http]\nbnid = \"127.0.0.1:1\"\n");
    let out = run(switchboard().arg("config").arg("--config").arg(&file));
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("http.bnid: unknown key"), "{stderr}");
    assert!(stderr.contains(&file.display().to_string()), "{stderr}");
}

#[test]
fn a_missing_config_file_is_named() {
    let out = run(switchboard().args(["config", "--config", "/nonexistent/switchboard.toml"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("config file /nonexistent/switchboard.toml does not exist"));
    let out = run(switchboard().arg("config").env("SWITCHBOARD_CONFIG", "/nonexistent/from-env.toml"));
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("/nonexistent/from-env.toml"));
}

#[test]
fn config_prints_the_layered_result_with_secrets_masked() {
    let password = temp_file("pw", "from-a-file\n");
    let file = temp_file(
        "layers.toml",
        &format!(
            "[database]\nurl = \"postgres://app:inline-secret@db.example:5432/sb\"\n\
             password = {{ file = \"{}\" }}\nmax_connections = 7\n\n[http]\nbind = \"127.0.0.1:9999\"\n",
            password.display()
        ),
    );
    let out = run(switchboard()
        .arg("config")
        .arg("--config")
        .arg(&file)
        .env("SWITCHBOARD_HTTP__BIND", "127.0.0.1:7777")
        .env("SWITCHBOARD_COORD__BACKEND", "local"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(!stdout.contains("inline-secret"), "{stdout}");
    assert!(!stdout.contains("from-a-file"), "{stdout}");
    for line in [
        "url = \"postgres://app:***@db.example:5432/sb\"",
        "password = \"***\"",
        "max_connections = 7",
        "backend = \"local\"",
        "bind = \"127.0.0.1:7777\"",
        "root = \"/switchboard\"",
        "filter = \"warn\"",
    ] {
        assert!(stdout.contains(line), "{line} missing from:\n{stdout}");
    }
}

/// `config/switchboard.example.toml` names every key with its default: uncommented (all but
/// the password file, which does not exist here), it loads and changes nothing.
#[test]
fn the_example_config_lists_every_key_with_its_default() {
    let example = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/switchboard.example.toml"))
        .expect("read the example config");
    let uncommented: String = example
        .lines()
        .map(|line| match line.strip_prefix("# ") {
            Some(rest)
                if !rest.starts_with("password")
                    && rest
                        .split_once(" = ")
                        .is_some_and(|(key, _)| key.chars().all(|c| c.is_ascii_lowercase() || c == '_')) =>
            {
                rest.to_owned()
            }
            _ => line.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    let keys = uncommented.lines().filter(|l| !l.starts_with('#') && l.contains(" = ")).count();
    assert_eq!(keys, 93, "keys in the example:\n{uncommented}");
    let file = temp_file("example.toml", &uncommented);

    let with_file = run(switchboard().arg("config").arg("--config").arg(&file).env("SWITCHBOARD_LOG__FILTER", "info"));
    assert!(with_file.status.success(), "{}", text(&with_file.stderr));
    let defaults = run(switchboard().arg("config").env("SWITCHBOARD_LOG__FILTER", "info"));
    assert_eq!(text(&with_file.stdout), text(&defaults.stdout));
}

#[tokio::test]
async fn migrate_applies_then_reports_up_to_date() {
    let url = empty_database().await;
    let out = run(switchboard().arg("migrate").env("SWITCHBOARD_DATABASE__URL", &url));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let first = text(&out.stdout);
    assert!(first.contains("applied 0001 init"), "{first}");

    let out = run(switchboard().arg("migrate").env("SWITCHBOARD_DATABASE__URL", &url));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let second = text(&out.stdout);
    assert!(second.contains("up to date"), "{second}");
    assert!(!second.contains("applied 0001"), "{second}");
}

#[test]
fn an_unreachable_database_is_a_clear_error() {
    let out = run(switchboard()
        .arg("migrate")
        .env("SWITCHBOARD_DATABASE__URL", "postgres://postgres:hunter2@127.0.0.1:1/switchboard"));
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("cannot connect to PostgreSQL at postgres://postgres:***@127.0.0.1:1/switchboard"),
        "{stderr}"
    );
    assert!(stderr.contains("deploy/services.sh start"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

/// A running `switchboard all`, killed if the test ends without stopping it.
struct Running {
    child: Child,
    addr: SocketAddr,
    stderr: mpsc::Receiver<String>,
}

impl Running {
    /// Starts `switchboard all` on a free port and waits until it prints its address.
    fn start(command: &mut Command) -> Running {
        let mut child = command
            .arg("all")
            .env("SWITCHBOARD_HTTP__BIND", "127.0.0.1:0")
            .env("SWITCHBOARD_JWT__HS256_SECRET", "binary-test-secret-binary-test-secret")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn switchboard all");
        let stdout = child.stdout.take().expect("stdout");
        let (lines_tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut stderr_pipe = child.stderr.take().expect("stderr");
        let (stderr_tx, stderr) = mpsc::channel();
        std::thread::spawn(move || {
            let mut all = String::new();
            let _ = stderr_pipe.read_to_string(&mut all);
            let _ = stderr_tx.send(all);
        });

        let deadline = Instant::now() + Duration::from_secs(30);
        let addr = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(addr) = line.strip_prefix("switchboard: listening on http://") {
                        break addr.parse().expect("a socket address");
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let stderr = stderr.recv().unwrap_or_default();
                    panic!("switchboard all did not print its address; stderr:\n{stderr}");
                }
            }
        };
        Running { child, addr, stderr }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Sends SIGTERM and waits (up to `limit`) for the exit; returns whether it exited 0, and
    /// its stderr.
    fn terminate(mut self, limit: Duration) -> (bool, String) {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().expect("run kill");
        assert!(status.success());
        let deadline = Instant::now() + limit;
        let exited = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("switchboard all still running {limit:?} after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let stderr = self.stderr.recv().unwrap_or_default();
        (exited.success(), stderr)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

async fn get(url: &str) -> (u16, String) {
    let response = reqwest::get(url).await.expect("GET");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

#[tokio::test]
async fn metrics_can_move_to_an_internal_listener() {
    let (url, _pool) = testenv::database().await;
    // a free port for the internal listener (the banner prints the public one)
    let internal = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let running = Running::start(
        switchboard()
            .env("SWITCHBOARD_DATABASE__URL", &url)
            .env("SWITCHBOARD_COORD__BACKEND", "zookeeper")
            .env("SWITCHBOARD_COORD__ZOOKEEPER", testenv::zookeeper())
            .env("SWITCHBOARD_COORD__ROOT", "/switchboard-test-metrics")
            .env("SWITCHBOARD_HTTP__METRICS_BIND", internal.to_string()),
    );
    assert_eq!(get(&running.url("/healthz")).await, (200, "ok".to_owned()));
    assert_eq!(get(&running.url("/metrics")).await.0, 404, "not on the public listener");
    let (status, metrics) = get(&format!("http://{internal}/metrics")).await;
    assert_eq!(status, 200);
    assert!(metrics.contains("switchboard_build_info"), "{metrics}");
    assert!(metrics.contains(r#"route="/healthz",status="200"} 1"#), "requests on the public listener: {metrics}");
    assert_eq!(get(&format!("http://{internal}/readyz")).await.0, 200);
    let (exited_cleanly, stderr) = running.terminate(Duration::from_secs(15));
    assert!(exited_cleanly, "{stderr}");
}

#[tokio::test]
async fn all_serves_ops_routes_and_stops_on_sigterm() {
    let (url, _pool) = testenv::database().await;
    let running = Running::start(
        switchboard()
            .env("SWITCHBOARD_DATABASE__URL", &url)
            .env("SWITCHBOARD_COORD__BACKEND", "zookeeper")
            .env("SWITCHBOARD_COORD__ZOOKEEPER", testenv::zookeeper())
            .env("SWITCHBOARD_COORD__ROOT", "/switchboard-test")
            .env("SWITCHBOARD_LOG__FILTER", "info"),
    );

    assert_eq!(get(&running.url("/healthz")).await, (200, "ok".to_owned()));

    let (status, body) = get(&running.url("/readyz")).await;
    assert_eq!(status, 200, "{body}");
    let report: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(
        report,
        serde_json::json!({"ready": true, "checks": {"connectors": "ok", "postgres": "ok", "zookeeper": "ok"}})
    );

    let (status, metrics) = get(&running.url("/metrics")).await;
    assert_eq!(status, 200);
    assert!(metrics.contains("# TYPE"), "{metrics}");
    assert!(metrics.contains("switchboard_build_info"), "{metrics}");
    assert!(metrics.contains(r#"http_requests_total{method="GET",route="/readyz",status="200"} 1"#), "{metrics}");

    // the interaction loader is mounted: its document is public, its data needs credentials
    let (status, openapi) = get(&running.url("/api/v1/openapi.json")).await;
    assert_eq!(status, 200);
    assert!(openapi.contains("\"openapi\": \"3.1.0\""), "{openapi}");
    let (status, _) = get(&running.url("/api/v1/interactions?from=2024-01-01T00:00:00Z&to=2024-01-02T00:00:00Z")).await;
    assert_eq!(status, 401);

    // (how fast it stops is for a benchmark, not a test; `terminate` only refuses to wait forever)
    let (clean, stderr) = running.terminate(Duration::from_secs(30));
    assert!(clean, "exit status not 0; stderr:\n{stderr}");
    assert!(stderr.contains("SIGTERM received"), "{stderr}");
}

#[tokio::test]
async fn all_runs_with_the_local_coordinator() {
    let (url, _pool) = testenv::database().await;
    let running =
        Running::start(switchboard().env("SWITCHBOARD_DATABASE__URL", &url).env("SWITCHBOARD_COORD__BACKEND", "local"));
    let (status, body) = get(&running.url("/readyz")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, r#"{"ready":true,"checks":{"connectors":"ok","coordinator":"ok","postgres":"ok"}}"#);
    let (clean, stderr) = running.terminate(Duration::from_secs(10));
    assert!(clean, "{stderr}");
}

/// An account the connectors cannot serve (its module refuses its settings) is reported in
/// `/readyz` and as a metric, without taking the process out of service; the others are served.
#[tokio::test]
async fn an_account_that_cannot_be_served_is_reported_not_skipped() {
    let (url, pool) = testenv::database().await;
    sqlx::query("INSERT INTO queues (name) VALUES ('support') ON CONFLICT DO NOTHING").execute(&pool).await.unwrap();
    let broken: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO accounts (id, channel, name, default_queue, credentials, settings)
         VALUES (gen_random_uuid(), 'telegram', 'no token', 'support', '{}', '{}') RETURNING id",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let running =
        Running::start(switchboard().env("SWITCHBOARD_DATABASE__URL", &url).env("SWITCHBOARD_COORD__BACKEND", "local"));
    let deadline = Instant::now() + Duration::from_secs(20);
    let report = loop {
        let (status, body) = get(&running.url("/readyz")).await;
        assert_eq!(status, 200, "one bad account does not make the node unready: {body}");
        let report: serde_json::Value = serde_json::from_str(&body).unwrap();
        if report["checks"]["connectors"] != "ok" || Instant::now() > deadline {
            break report;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let problem = report["checks"]["connectors"].as_str().unwrap();
    assert!(problem.contains(&broken.to_string()) && problem.contains("bot_token"), "{problem}");
    let (_, metrics) = get(&running.url("/metrics")).await;
    assert!(
        metrics
            .contains(&format!(r#"switchboard_connector_account_problem{{account="{broken}",channel="telegram"}} 1"#)),
        "{metrics}"
    );
    let (clean, stderr) = running.terminate(Duration::from_secs(10));
    assert!(clean, "{stderr}");
    assert!(stderr.contains("bot_token"), "the log says what to fix: {stderr}");
}

#[tokio::test]
async fn all_refuses_a_taken_port() {
    let (url, _pool) = testenv::database().await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let out = run(switchboard()
        .arg("all")
        .env("SWITCHBOARD_DATABASE__URL", &url)
        .env("SWITCHBOARD_COORD__BACKEND", "local")
        .env("SWITCHBOARD_JWT__HS256_SECRET", "binary-test-secret-binary-test-secret")
        .env("SWITCHBOARD_HTTP__BIND", taken.local_addr().unwrap().to_string()));
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains(&format!("cannot listen on {}", taken.local_addr().unwrap())), "{stderr}");
}

#[tokio::test]
async fn all_refuses_to_start_without_a_token_key() {
    let (url, _pool) = testenv::database().await;
    let out = run(switchboard()
        .arg("all")
        .env("SWITCHBOARD_DATABASE__URL", &url)
        .env("SWITCHBOARD_COORD__BACKEND", "local")
        .env("SWITCHBOARD_HTTP__BIND", "127.0.0.1:0"));
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("jwt.hs256_secret") && stderr.contains("jwt.public_key_file"), "{stderr}");
}

#[test]
fn token_mints_a_verifiable_agent_token_and_refuses_unknown_roles() {
    let secret = "binary-test-secret-binary-test-secret";
    let out = run(switchboard()
        .args(["token", "--sub", "alice", "--roles", "agent,supervisor", "--ttl", "60"])
        .env("SWITCHBOARD_JWT__HS256_SECRET", secret));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let token = text(&out.stdout).trim().to_owned();
    let verifier = ops::auth::Verifier::from_config(&ops::auth::JwtConfig {
        hs256_secret: Some(ops::config::Secret::new(secret)),
        ..Default::default()
    })
    .unwrap();
    let claims = verifier.verify(&token).expect("the minted token verifies");
    assert_eq!((claims.sub.as_str(), claims.roles.len()), ("alice", 2));

    let out = run(switchboard()
        .args(["token", "--sub", "alice", "--roles", "root"])
        .env("SWITCHBOARD_JWT__HS256_SECRET", secret));
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("unknown role \"root\""), "{}", text(&out.stderr));
}

/// `all` mounts the file server: a token from `switchboard token` uploads, downloads and makes
/// a signed link that works without it.
#[tokio::test]
async fn all_serves_files() {
    let (url, _pool) = testenv::database().await;
    let root = std::env::temp_dir().join(format!("switchboard-test-files-{}", uuid::Uuid::new_v4().simple()));
    let running = Running::start(
        switchboard()
            .env("SWITCHBOARD_DATABASE__URL", &url)
            .env("SWITCHBOARD_COORD__BACKEND", "local")
            .env("SWITCHBOARD_FILESERVER__ROOT", &root),
    );
    let out = run(switchboard()
        .args(["token", "--sub", "connector", "--roles", "service"])
        .env("SWITCHBOARD_JWT__HS256_SECRET", "binary-test-secret-binary-test-secret"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let token = text(&out.stdout).trim().to_owned();
    let http = reqwest::Client::new();

    let uploaded = http
        .post(running.url("/api/v1/files?name=hello.txt&channel=telegram"))
        .bearer_auth(&token)
        .header("content-type", "text/plain")
        .body("hello, files")
        .send()
        .await
        .expect("upload");
    assert_eq!(uploaded.status(), 201);
    let file: serde_json::Value = uploaded.json().await.expect("JSON");
    let id = file["id"].as_str().expect("an id");
    assert!(root.join(&id[..2]).join(id).exists());

    let anonymous = http.get(running.url(&format!("/api/v1/files/{id}"))).send().await.expect("GET");
    assert_eq!(anonymous.status(), 401);
    let link: serde_json::Value = http
        .post(running.url(&format!("/api/v1/files/{id}/link?ttl_s=60")))
        .bearer_auth(&token)
        .send()
        .await
        .expect("link")
        .json()
        .await
        .expect("JSON");
    let (status, body) = get(&running.url(link["url"].as_str().expect("a url"))).await;
    assert_eq!((status, body.as_str()), (200, "hello, files"));

    let (_, metrics) = get(&running.url("/metrics")).await;
    assert!(
        metrics.contains(r#"http_requests_total{method="POST",route="/api/v1/files",status="201"} 1"#),
        "{metrics}"
    );
    let (clean, stderr) = running.terminate(Duration::from_secs(10));
    assert!(clean, "{stderr}");
    let _ = std::fs::remove_dir_all(root);
}
