//! The one-command demo: `switchboard all` on a database with no account seeds a web chat
//! account and two agents, prints the widget and console URLs with sign-in tokens, and serves
//! the widget, its demo page and the console. A second start on the same database seeds nothing.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const SECRET: &str = "demo-test-secret-demo-test-secret-0123";

fn switchboard(db_url: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    for (name, _) in std::env::vars() {
        if name.starts_with("SWITCHBOARD_") && (name.contains("__") || name == "SWITCHBOARD_CONFIG") {
            command.env_remove(name);
        }
    }
    command
        .env_remove("RUST_LOG")
        .env("SWITCHBOARD_LOG__FILTER", "warn")
        .env("SWITCHBOARD_DATABASE__URL", db_url)
        .env("SWITCHBOARD_COORD__BACKEND", "local")
        .env("SWITCHBOARD_HTTP__BIND", "127.0.0.1:0")
        .env("SWITCHBOARD_JWT__HS256_SECRET", SECRET)
        .env(
            "SWITCHBOARD_FILESERVER__ROOT",
            std::env::temp_dir().join(format!("switchboard-demo-{}", uuid::Uuid::new_v4().simple())),
        );
    command
}

struct Running {
    child: Child,
    lines: Vec<String>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `all` and collects what it prints until its banner is complete.
fn start(db_url: &str) -> Running {
    let mut child = switchboard(db_url)
        .arg("all")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn switchboard all");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    // the banner is one write: everything up to a short pause after the first line
    let first = rx.recv_timeout(Duration::from_secs(60)).expect("all prints its banner");
    lines.push(first);
    while let Ok(line) = rx.recv_timeout(Duration::from_millis(500)) {
        lines.push(line);
    }
    Running { child, lines }
}

impl Running {
    fn find(&self, needle: &str) -> Option<String> {
        self.lines.iter().find(|l| l.contains(needle)).cloned()
    }

    fn url_after(&self, needle: &str) -> String {
        let line = self.find(needle).unwrap_or_else(|| panic!("no {needle:?} line in {:#?}", self.lines));
        line.split_whitespace().find(|w| w.starts_with("http://")).expect("a URL").to_owned()
    }
}

#[tokio::test]
async fn all_seeds_an_empty_database_and_serves_the_widget_and_the_console() {
    let (db_url, pool) = testenv::database().await;
    let running = start(&db_url);
    let widget_page = running.url_after("widget:");
    let alice = running.url_after("(Alice Smith");
    let bob = running.url_after("(Bob Jones");
    assert!(alice.contains("/console#token=") && bob.contains("/console#token="), "{:#?}", running.lines);

    let http = reqwest::Client::new();
    let page = http.get(&widget_page).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let key = widget_page.split("key=").nth(1).unwrap().to_owned();
    let html = page.text().await.unwrap();
    assert!(html.contains(&format!("data-key=\"{key}\"")), "{html}");
    let base = widget_page.split("/webchat/").next().unwrap().to_owned();
    let js = http.get(format!("{base}/webchat/widget.js")).send().await.unwrap();
    assert_eq!(js.headers()["content-type"], "text/javascript; charset=utf-8");
    assert!(js.text().await.unwrap().contains("/api/v1/webchat/ws"));
    let console = http.get(format!("{base}/console")).send().await.unwrap();
    assert_eq!(console.status(), 200);
    assert!(console.text().await.unwrap().contains("/console/console.js"));
    for asset in ["/console/console.js", "/console/console.css"] {
        assert_eq!(http.get(format!("{base}{asset}")).send().await.unwrap().status(), 200, "{asset}");
    }

    // the printed tokens sign in to the agent API as the seeded agents
    let token = alice.split("#token=").nth(1).unwrap();
    let data = jsonwebtoken::decode::<serde_json::Value>(
        token,
        &jsonwebtoken::DecodingKey::from_secret(SECRET.as_bytes()),
        &jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256),
    )
    .expect("a token signed with the hub's secret");
    assert_eq!(data.claims["sub"], "alice");
    let agents: Vec<(String, Vec<String>)> =
        sqlx::query_as("SELECT login, queues FROM agents ORDER BY login").fetch_all(&pool).await.unwrap();
    assert_eq!(agents, [("alice".into(), vec!["support".into()]), ("bob".into(), vec!["support".into()])]);
    let settings: serde_json::Value =
        sqlx::query_scalar("SELECT settings FROM accounts WHERE channel = 'webchat'").fetch_one(&pool).await.unwrap();
    assert_eq!(settings["allowed_origins"][0], base.as_str());
    drop(running);

    // a database with an account is left alone
    let again = start(&db_url);
    assert!(again.find("demo:").is_none(), "{:#?}", again.lines);
    assert!(again.find("console:").is_some(), "the console URL is always printed");
    let accounts: i64 = sqlx::query_scalar("SELECT count(*) FROM accounts").fetch_one(&pool).await.unwrap();
    assert_eq!(accounts, 1);
}
