//! The entry point (docs/operations.md, "The entry point"): Debian's nginx with
//! `deploy/nginx/switchboard.conf` as it is (only its paths and listen ports rewritten) in front
//! of real processes: two `switchboard chatserver`, a file server, a loader, a video node and
//! the connector pair of a WhatsApp account (the fake Cloud API in this process). Everything
//! below goes through nginx over TLS 1.3:
//!
//! - agents: three sockets (alice twice, bob) spread over both chatservers; a customer's message
//!   reaches both of alice's sockets whichever node holds them; alice takes the interaction and
//!   answers with a file, which the connector leader delivers to the platform;
//! - files: a 12 MiB upload streamed (nothing in nginx's client body spool), a `Range` download
//!   answered 206 with the right bytes, a full download streamed (nothing in nginx's proxy
//!   spool);
//! - webhooks: signed platform deliveries to the account's pair; the backup's 503 makes nginx
//!   try the leader (the access log shows `503, 200`), every one stored once;
//! - the REST API, the admin panel, the call page and the video signalling upgrade (also by
//!   node name), a 3 MiB file sent in a call (also by node name), and no video drain route;
//! - TLS: TLS 1.2 is refused, plain HTTP is redirected.
//!
//! Needs Debian's nginx and openssl: run by `deploy/tests/nginx.sh`, a step of deploy/test.sh.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use connectors::fake::whatsapp_cloud::{FakeCloud, WaUser, meta_json, sign};
use futures::{SinkExt, StreamExt};
use schema::domain::{Channel, Queue, RoutingMode};
use schema::store::{self, AgentProfile, NewAccount};
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;
use uuid::Uuid;

const SECRET: &str = "deploy-nginx-secret-deploy-nginx-secret-0123";
const ACCESS_TOKEN: &str = "EAAG-deploy-nginx";
const APP_SECRET: &str = "deploy-nginx-app-secret";
const VERIFY_TOKEN: &str = "deploy-nginx-verify";
const PHONE_NUMBER_ID: &str = "106540352242922";
const WEBHOOKS: usize = 12;
const UPLOAD_BYTES: usize = 12 * 1024 * 1024;

/// nginx started on a rendered copy of deploy/nginx/switchboard.conf; stopped when dropped.
struct Nginx {
    child: Child,
    dir: PathBuf,
    https: u16,
    http: u16,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: the master stops its workers (SIGKILL would leave them running)
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
    }
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The production file with this test's paths and ports; every route and setting as shipped.
fn render(dir: &Path, https: u16, http: u16) -> String {
    let shipped = std::fs::read_to_string(repo().join("deploy/nginx/switchboard.conf")).unwrap();
    let dir = dir.display().to_string();
    let mut rendered = String::new();
    for line in shipped.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("listen [::]") {
            continue; // no IPv6 in CI sandboxes
        }
        let line = match trimmed {
            "listen 80;" => line.replace("listen 80;", &format!("listen 127.0.0.1:{http};")),
            "listen 443 ssl http2;" => line.replace("listen 443 ssl", &format!("listen 127.0.0.1:{https} ssl")),
            _ => line
                .replace("/etc/nginx/switchboard/", &format!("{dir}/"))
                .replace("/var/log/nginx/", &format!("{dir}/")),
        };
        rendered.push_str(&line);
        rendered.push('\n');
    }
    for production in ["listen 80;", "listen 443", "/etc/nginx/", "/var/log/nginx/"] {
        let left = rendered.lines().filter(|l| !l.trim_start().starts_with('#')).any(|l| l.contains(production));
        assert!(!left, "{production} left in the rendered config");
    }
    rendered
}

fn start_nginx(upstreams: &str, https: u16, http: u16) -> Nginx {
    let dir = std::env::temp_dir().join(format!("switchboard-nginx-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(dir.join("tls")).unwrap();
    for spool in ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"] {
        std::fs::create_dir_all(dir.join(spool)).unwrap();
    }
    // a certificate authority, and a certificate it signed for localhost and 127.0.0.1
    let openssl = |args: &[&str]| {
        let made =
            Command::new("openssl").args(args).current_dir(&dir).stderr(Stdio::null()).status().expect("openssl");
        assert!(made.success(), "openssl {args:?}");
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    openssl(
        &[&["req", "-x509"][..], &ec, &["-days", "2", "-subj", "/CN=test CA", "-keyout", "ca.key", "-out", "ca.pem"]]
            .concat(),
    );
    openssl(
        &[&["req"][..], &ec, &["-subj", "/CN=localhost", "-keyout", "tls/privkey.pem", "-out", "leaf.csr"]].concat(),
    );
    std::fs::write(dir.join("leaf.ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
        .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "leaf.ext",
        "-out",
        "tls/fullchain.pem",
    ]);
    std::fs::write(dir.join("switchboard.conf"), render(&dir, https, http)).unwrap();
    std::fs::write(dir.join("upstreams.conf"), upstreams).unwrap();
    let d = dir.display();
    // as root nginx's workers would switch to `nobody`, who cannot read this directory
    let user = if is_root() { "user root root;" } else { "" };
    let main = format!(
        "{user}
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    include /etc/nginx/mime.types;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    access_log off;
    include {d}/switchboard.conf;
}}
"
    );
    std::fs::write(dir.join("nginx.conf"), main).unwrap();
    let nginx = std::env::var("NGINX").unwrap_or_else(|_| "/usr/sbin/nginx".into());
    let checked = Command::new(&nginx)
        .arg("-t")
        .arg("-q")
        .arg("-p")
        .arg(&dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .output()
        .unwrap_or_else(|e| panic!("{nginx}: {e}: install Debian's nginx (deploy/tests/nginx.sh does)"));
    assert!(checked.status.success(), "nginx -t: {}", String::from_utf8_lossy(&checked.stderr));
    let child = Command::new(&nginx)
        .arg("-p")
        .arg(&dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .args(["-g", "daemon off;"])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", https)).is_err() {
        assert!(Instant::now() < deadline, "nginx does not listen on {https}");
        std::thread::sleep(Duration::from_millis(50));
    }
    Nginx { child, dir, https, http }
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0\n")).unwrap_or(false)
}

fn node(args: &[&str], env: &[(&str, &str)]) -> testenv::Switchboard {
    testenv::Switchboard::start(env!("CARGO_BIN_EXE_switchboard"), args, env)
}

async fn metric(addr: &str, line_prefix: &str) -> f64 {
    let text = reqwest::get(format!("http://{addr}/metrics")).await.unwrap().text().await.unwrap();
    text.lines().filter(|l| l.starts_with(line_prefix)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
}

async fn wait_for(what: &str, within: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

type Ws = WebSocketStream<reqwest::Upgraded>;

/// A WebSocket through nginx over TLS: reqwest makes the HTTP/1.1 upgrade, tungstenite speaks on
/// the upgraded connection.
async fn websocket(client: &reqwest::Client, url: &str, token: Option<&str>) -> Ws {
    let mut request = client
        .get(url)
        .header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Version", "13")
        .header("Sec-WebSocket-Key", tokio_tungstenite::tungstenite::handshake::client::generate_key());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 101, "{url}: {:?}", response.text().await);
    let upgraded = response.upgrade().await.unwrap();
    WebSocketStream::from_raw_socket(upgraded, Role::Client, None).await
}

struct Agent {
    ws: Ws,
    n: u64,
    events: Vec<Value>,
}

impl Agent {
    async fn connect(client: &reqwest::Client, base: &str, login: &str) -> Agent {
        let token = testenv::token(SECRET, login, &["agent"]);
        let ws = websocket(client, &format!("{base}/api/v1/agent/ws"), Some(&token)).await;
        let mut agent = Agent { ws, n: 0, events: Vec::new() };
        let hello = agent.call("hello", json!({})).await;
        assert_eq!(hello["ok"], true, "{hello}");
        agent
    }

    async fn call(&mut self, cmd: &str, args: Value) -> Value {
        self.n += 1;
        let id = format!("r{}", self.n);
        self.ws.send(Message::Text(json!({"id": id, "cmd": cmd, "args": args}).to_string().into())).await.unwrap();
        loop {
            let frame = self.frame().await;
            if frame["re"] == id {
                return frame;
            }
        }
    }

    async fn frame(&mut self) -> Value {
        loop {
            let next = tokio::time::timeout(Duration::from_secs(20), self.ws.next()).await.expect("a frame in time");
            match next.expect("socket open").expect("a frame") {
                Message::Text(t) => {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    if v.get("seq").is_some() {
                        self.events.push(v.clone());
                    }
                    return v;
                }
                Message::Close(c) => panic!("closed: {c:?}"),
                _ => {}
            }
        }
    }

    async fn until(&mut self, name: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let mut seen = 0;
        loop {
            if let Some(e) = self.events[seen..].iter().find(|e| e["event"] == name && pred(e)) {
                return e.clone();
            }
            seen = self.events.len();
            self.frame().await;
        }
    }
}

fn files_in(dir: &Path) -> usize {
    walk(dir).len()
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() { out.extend(walk(&p)) } else { out.push(p) }
        }
    }
    out
}

async fn setup(pool: &PgPool, fake: &FakeCloud) -> Uuid {
    let mut conn = pool.acquire().await.unwrap();
    store::upsert_queue(
        &mut conn,
        &Queue { name: "support".into(), routing_mode: RoutingMode::Manual, offer_timeout_ms: 30_000 },
    )
    .await
    .unwrap();
    for login in ["alice", "bob"] {
        store::upsert_agent(
            &mut conn,
            &AgentProfile {
                login: login.into(),
                name: login.into(),
                roles: vec!["agent".into()],
                queues: vec!["support".into()],
                max_interactions: 10,
            },
        )
        .await
        .unwrap();
    }
    store::create_account(
        &mut conn,
        &NewAccount {
            channel: Channel::Whatsapp,
            name: "entry point".into(),
            default_queue: "support".into(),
            credentials: json!({"access_token": ACCESS_TOKEN, "app_secret": APP_SECRET, "verify_token": VERIFY_TOKEN}),
            settings: json!({"provider": "cloud", "api_url": fake.api_url(), "phone_number_id": PHONE_NUMBER_ID}),
        },
    )
    .await
    .unwrap()
    .id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Debian's nginx: run by deploy/tests/nginx.sh, a step of deploy/test.sh"]
async fn nginx_in_front_of_chatservers_files_webhooks_rest_and_video() {
    let (db_url, pool) = testenv::database().await;
    let root = format!("/test-{}", Uuid::new_v4().simple());
    let fake = FakeCloud::start(ACCESS_TOKEN, APP_SECRET, VERIFY_TOKEN, PHONE_NUMBER_ID).await;
    let account = setup(&pool, &fake).await;
    // nginx's ports first: the connectors register <public_url>/api/v1/connectors/...
    let (https, http) = (free_port(), free_port());
    let base = format!("https://localhost:{https}");
    let files_root = std::env::temp_dir().join(format!("switchboard-nginx-files-{}", Uuid::new_v4().simple()));
    let files_root_s = files_root.display().to_string();
    let base_env = [
        ("SWITCHBOARD_DATABASE__URL", db_url.as_str()),
        ("SWITCHBOARD_COORD__ROOT", root.as_str()),
        ("SWITCHBOARD_COORD__SESSION_TIMEOUT_MS", "2000"),
        ("SWITCHBOARD_JWT__HS256_SECRET", SECRET),
        ("SWITCHBOARD_FILESERVER__ROOT", files_root_s.as_str()),
    ];
    let with = |extra: &[(&'static str, &str)]| -> Vec<(String, String)> {
        base_env.iter().chain(extra.iter()).map(|(k, v)| (k.to_string(), v.to_string())).collect()
    };
    let start = |args: &[&str], env: Vec<(String, String)>| {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        node(args, &env)
    };
    let chat_a = start(&["chatserver"], with(&[("SWITCHBOARD_CHATSERVER__NODE_ID", "chat-a")]));
    let chat_b = start(&["chatserver"], with(&[("SWITCHBOARD_CHATSERVER__NODE_ID", "chat-b")]));
    let files = start(&["fileserver"], with(&[]));
    let loader = start(&["loader"], with(&[]));
    let files_url = format!("http://{}", files.addr);
    let account_s = account.to_string();
    let conn_a = start(
        &["connector", "--account", &account_s],
        with(&[
            ("SWITCHBOARD_CONNECTORS__NODE_ID", "conn-a"),
            ("SWITCHBOARD_CONNECTORS__FILESERVER_URL", &files_url),
            ("SWITCHBOARD_CONNECTORS__PUBLIC_URL", &base),
        ]),
    );
    let conn_b = start(
        &["connector", "--account", &account_s],
        with(&[
            ("SWITCHBOARD_CONNECTORS__NODE_ID", "conn-b"),
            ("SWITCHBOARD_CONNECTORS__FILESERVER_URL", &files_url),
            ("SWITCHBOARD_CONNECTORS__PUBLIC_URL", &base),
        ]),
    );
    let video = start(
        &["video"],
        with(&[
            ("SWITCHBOARD_VIDEO__NODE_ID", "video-1"),
            ("SWITCHBOARD_VIDEO__RECORDING__FILESERVER_URL", &files_url),
        ]),
    );

    let upstreams = format!(
        "upstream switchboard_chatserver {{ server {a}; server {b}; keepalive 4; }}
upstream switchboard_fileserver {{ server {files}; keepalive 4; }}
upstream switchboard_loader {{ server {loader}; keepalive 4; }}
upstream switchboard_video {{ server {video}; }}
upstream switchboard_video_video-1 {{ server {video}; }}
upstream switchboard_webchat {{ server {ca}; server {cb}; }}
upstream switchboard_connector_test {{ server {ca}; server {cb}; }}
map $switchboard_account $switchboard_connector {{
    default \"\";
    {account} switchboard_connector_test;
}}
",
        a = chat_a.addr,
        b = chat_b.addr,
        files = files.addr,
        loader = loader.addr,
        video = video.addr,
        ca = conn_a.addr,
        cb = conn_b.addr,
    );
    let nginx = start_nginx(&upstreams, https, http);
    let cert = reqwest::Certificate::from_pem(&std::fs::read(nginx.dir.join("ca.pem")).unwrap()).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(cert.clone())
        .tls_built_in_root_certs(false)
        .resolve("localhost", ([127, 0, 0, 1], nginx.https).into())
        .min_tls_version(reqwest::tls::Version::TLS_1_3)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();

    // TLS: 1.3 only; plain HTTP redirects to HTTPS
    let old = reqwest::Client::builder()
        .add_root_certificate(cert)
        .tls_built_in_root_certs(false)
        .resolve("localhost", ([127, 0, 0, 1], nginx.https).into())
        .max_tls_version(reqwest::tls::Version::TLS_1_2)
        .build()
        .unwrap();
    let refused = old.get(format!("{base}/api/v1/openapi.json")).send().await.expect_err("TLS 1.2 is refused");
    let why = format!("{refused:?}");
    assert!(why.contains("ProtocolVersion"), "refused for its version: {why}");
    let plain = client.get(format!("http://127.0.0.1:{}/api/v1/openapi.json", nginx.http)).send().await.unwrap();
    assert_eq!(plain.status(), 301);
    assert!(plain.headers()["location"].to_str().unwrap().starts_with("https://"), "to HTTPS");
    assert_eq!(client.get(format!("{base}/metrics")).send().await.unwrap().status(), 404, "no /metrics outside");
    println!("tls: TLS 1.2 refused, TLS 1.3 served, http:// redirected (301)");

    // the connector pair: one leads
    wait_for("a connector leads", Duration::from_secs(20), async || {
        metric(&conn_a.addr, "switchboard_connector_leader{").await
            + metric(&conn_b.addr, "switchboard_connector_leader{").await
            == 1.0
    })
    .await;

    // agents: alice twice and bob, through nginx, spread over both chatservers
    let mut alice1 = Agent::connect(&client, &base, "alice").await;
    let mut alice2 = Agent::connect(&client, &base, "alice").await;
    let mut bob = Agent::connect(&client, &base, "bob").await;
    let (on_a, on_b) = (
        metric(&chat_a.addr, "switchboard_agent_sockets").await,
        metric(&chat_b.addr, "switchboard_agent_sockets").await,
    );
    assert_eq!(on_a + on_b, 3.0, "three agent sockets");
    assert!(on_a >= 1.0 && on_b >= 1.0, "the sockets are spread over both chatservers: {on_a} and {on_b}");
    println!("agents: 3 sockets through nginx, {on_a} on chat-a and {on_b} on chat-b");

    // webhooks: signed deliveries of customer messages to the pair, through nginx
    let user = WaUser::new("4915100000001", "Vera");
    let mut ids = Vec::new();
    for n in 0..WEBHOOKS {
        let (id, item) = fake.message_item(&user, json!({"type": "text", "text": {"body": format!("hello #{n}")}}));
        let body = json!({"object": "whatsapp_business_account", "entry": [{"id": "1029384756", "changes": [
            {"field": "messages", "value": fake.value(&user, vec![item])}]}]});
        let raw = meta_json(&body);
        let response = client
            .post(format!("{base}/api/v1/connectors/{account}/whatsapp"))
            .header("content-type", "application/json")
            .header("x-hub-signature-256", sign(APP_SECRET, &raw))
            .body(raw)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "webhook #{n}: {:?}", response.text().await);
        ids.push(id);
    }
    let unsigned = client
        .post(format!("{base}/api/v1/connectors/{account}/whatsapp"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 401, "an unsigned delivery is refused by the connector");
    let unknown = client.post(format!("{base}/api/v1/connectors/{}/whatsapp", Uuid::new_v4())).send().await.unwrap();
    assert_eq!(unknown.status(), 404, "an account nginx has no pair for");
    let stored: i64 =
        sqlx::query_scalar("SELECT count(DISTINCT external_message_id) FROM messages WHERE direction = 'in'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(stored, WEBHOOKS as i64, "every delivery stored once");
    let log = std::fs::read_to_string(nginx.dir.join("switchboard.access.log")).unwrap();
    let webhook_lines: Vec<&str> =
        log.lines().filter(|l| l.contains("/api/v1/connectors/") && l.contains(" 200 ")).collect();
    let retried = webhook_lines.iter().filter(|l| l.contains("503, 200")).count();
    assert!(retried > 0, "some deliveries reached the backup first and were passed to the leader: {webhook_lines:#?}");
    println!(
        "webhooks: {WEBHOOKS} signed deliveries stored once; {retried} answered 503 by the backup and retried on the leader by nginx"
    );

    // alice's sockets (on either node) see the customer's messages; she takes the interaction
    let interaction: Uuid = sqlx::query_scalar("SELECT id FROM interactions").fetch_one(&pool).await.unwrap();
    let taken = alice1.call("interaction.take", json!({"interaction_id": interaction})).await;
    assert_eq!(taken["ok"], true, "{taken}");
    for socket in [&mut alice1, &mut alice2] {
        socket.until("message.new", |e| e["data"]["message"]["text"] == format!("hello #{}", WEBHOOKS - 1)).await;
    }

    // files: a 12 MiB upload streamed through nginx, then a Range and a full download
    let token = testenv::token(SECRET, "alice", &["agent"]);
    let body: Vec<u8> = (0..UPLOAD_BYTES).map(|i| (i * 7 % 251) as u8).collect();
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = body.chunks(64 * 1024).map(|c| Ok(c.to_vec())).collect();
    let uploaded = client
        .post(format!("{base}/api/v1/files?name=manual.bin&channel=whatsapp"))
        .bearer_auth(&token)
        .header("content-type", "application/pdf")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(uploaded.status(), 201, "{:?}", uploaded.text().await);
    let file: Value = uploaded.json().await.unwrap();
    let file_id = file["id"].as_str().unwrap().to_owned();
    assert_eq!(files_in(&nginx.dir.join("client_body")), 0, "nginx spooled no upload to its disk");
    let ranged = client
        .get(format!("{base}/api/v1/files/{file_id}"))
        .bearer_auth(&token)
        .header("range", "bytes=1000000-1000999")
        .send()
        .await
        .unwrap();
    assert_eq!(ranged.status(), 206);
    assert_eq!(ranged.headers()["content-range"], format!("bytes 1000000-1000999/{UPLOAD_BYTES}").as_str());
    assert_eq!(ranged.bytes().await.unwrap().as_ref(), &body[1_000_000..1_001_000], "the range's bytes");
    let whole = client.get(format!("{base}/api/v1/files/{file_id}")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(whole.status(), 200);
    assert_eq!(whole.bytes().await.unwrap().len(), UPLOAD_BYTES);
    assert_eq!(files_in(&nginx.dir.join("proxy")), 0, "nginx spooled no download to its disk");
    println!(
        "files: 12 MiB uploaded chunked and downloaded whole, nothing spooled by nginx; Range 1000000-1000999 -> 206"
    );

    // alice answers with the file: the connector leader sends it to the platform
    let sent = alice2
        .call(
            "message.send",
            json!({"interaction_id": interaction, "client_msg_id": "via-nginx-1", "text": "here is the manual", "file_ids": [file_id]}),
        )
        .await;
    assert_eq!(sent["ok"], true, "{sent}");
    wait_for("the answer reached the platform", Duration::from_secs(30), async || {
        !fake.sent_to(&user.wa_id).is_empty()
    })
    .await;
    // bob is not in the conversation: nothing of it reached him
    let bob_events = bob.call("agent.set_status", json!({"status": "ready"})).await;
    assert_eq!(bob_events["ok"], true);
    assert!(bob.events.iter().all(|e| e["event"] != "message.new"), "bob sees nothing of alice's chat");

    // the REST API (loader), the call page and the video signalling, through nginx
    let admin = testenv::token(SECRET, "root", &["admin"]);
    let listed = client
        .get(format!("{base}/api/v1/interactions?from=2000-01-01T00:00:00Z&to=2100-01-01T00:00:00Z"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200);
    let listed: Value = listed.json().await.unwrap();
    assert!(listed.to_string().contains(&interaction.to_string()), "the interaction is listed: {listed}");
    let page = client.get(format!("{base}/call/some-link-token")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("<html"), "the customer's call page");
    let mut signal = websocket(&client, &format!("{base}/api/v1/video/ws"), None).await;
    signal.send(Message::Text(json!({"type": "join", "link": "no-such-link"}).to_string().into())).await.unwrap();
    let refused = tokio::time::timeout(Duration::from_secs(10), signal.next()).await.unwrap().unwrap().unwrap();
    assert!(refused.to_text().unwrap().contains("unauthorized"), "{refused:?}");
    // the route to one video node by name (where room_on_other_node sends a page)
    let mut by_name = websocket(&client, &format!("{base}/video-node/video-1/api/v1/video/ws"), None).await;
    by_name.send(Message::Text(json!({"type": "join", "link": "no-such-link"}).to_string().into())).await.unwrap();
    let refused = tokio::time::timeout(Duration::from_secs(10), by_name.next()).await.unwrap().unwrap().unwrap();
    assert!(refused.to_text().unwrap().contains("unauthorized"), "{refused:?}");
    // a file sent in a call, past the server's 1 MB body limit: through nginx to the video node,
    // which streams it to the file server; also by node name (where a redirected page sends it)
    let room = client
        .post(format!("{base}/api/v1/video/rooms"))
        .bearer_auth(&token)
        .json(&json!({"interaction_id": interaction}))
        .send()
        .await
        .unwrap();
    assert_eq!(room.status(), 201);
    let room: Value = room.json().await.unwrap();
    let room = room["room_id"].as_str().unwrap().to_owned();
    const CALL_FILE: u64 = 3 * 1024 * 1024;
    for (prefix, name) in [("", "in-call.bin"), ("/video-node/video-1", "by-node.bin")] {
        let sent = client
            .post(format!("{base}{prefix}/api/v1/video/rooms/{room}/files?name={name}"))
            .bearer_auth(&token)
            .header("content-type", "application/octet-stream")
            .body(vec![5u8; CALL_FILE as usize])
            .send()
            .await
            .unwrap();
        let status = sent.status();
        let sent: Value = sent.json().await.unwrap_or_default();
        assert_eq!(status, 201, "{prefix}: {sent}");
        assert_eq!((sent["name"].as_str(), sent["size"].as_u64()), (Some(name), Some(CALL_FILE)), "{sent}");
        let link = client
            .post(format!("{base}{prefix}/api/v1/video/rooms/{room}/files/{}/link", sent["file_id"].as_str().unwrap()))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(link.status(), 200, "{prefix}: the file's link");
    }
    let drain = client.get(format!("{base}/api/v1/video/drain")).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(drain.status(), 404, "draining is not served through the entry point");
    // the admin panel (the loader's static pages)
    for path in ["/admin", "/admin/app.js"] {
        let panel = client.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(panel.status(), 200, "{path} through nginx");
        assert!(panel.headers().contains_key("content-security-policy"), "{path}: the panel's own headers");
    }
    println!(
        "rest, admin panel, call page, video signalling and call files (and by node name): served through nginx; drain is not"
    );

    // the /metrics of every process, for deploy/tests/monitoring.sh (which metrics a live hub exports)
    if let Ok(dump) = std::env::var("SWITCHBOARD_METRICS_DUMP") {
        std::fs::create_dir_all(&dump).unwrap();
        tokio::time::sleep(Duration::from_secs(5)).await; // the video node publishes every 5 s
        for (name, process) in [
            ("chat-a", &chat_a),
            ("chat-b", &chat_b),
            ("files", &files),
            ("loader", &loader),
            ("conn-a", &conn_a),
            ("conn-b", &conn_b),
            ("video", &video),
        ] {
            let text = reqwest::get(format!("http://{}/metrics", process.addr)).await.unwrap().text().await.unwrap();
            std::fs::write(Path::new(&dump).join(format!("nginx-{name}.prom")), text).unwrap();
        }
    }

    let dir = nginx.dir.clone();
    drop(nginx);
    let _ = std::fs::remove_dir_all(&files_root);
    let _ = std::fs::remove_dir_all(dir);
}
