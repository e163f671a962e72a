//! The one-command demo: on a database with no channel account, `switchboard all` creates a web
//! chat account (its widget on `/webchat/demo`) and two agents, and prints where to go with
//! ready sign-in tokens.

use std::net::SocketAddr;

use anyhow::Context;
use schema::domain::{Channel, Queue, RoutingMode};
use schema::store::{self, AgentProfile, NewAccount};
use sqlx::PgPool;

use crate::config::Config;

/// How long the printed console tokens live.
const TOKEN_TTL_S: u64 = 12 * 3600;

/// The demo agents: login, name, roles.
const AGENTS: &[(&str, &str, &[&str])] =
    &[("alice", "Alice Smith", &["agent", "supervisor"]), ("bob", "Bob Jones", &["agent"])];

/// Seeds an empty database; returns the lines to print (none when the database had accounts).
pub async fn seed_if_empty(db: &PgPool, config: &Config, addr: SocketAddr) -> anyhow::Result<Vec<String>> {
    let mut tx = db.begin().await.context("cannot reach PostgreSQL")?;
    if store::any_account(&mut tx).await? {
        return Ok(Vec::new());
    }
    let queue = config.chatserver.default_queue.clone();
    store::upsert_queue(
        &mut tx,
        &Queue { name: queue.clone(), routing_mode: RoutingMode::Auto, offer_timeout_ms: 30_000 },
    )
    .await?;
    let host = if addr.ip().is_unspecified() { "127.0.0.1".to_owned() } else { addr.ip().to_string() };
    let origin = format!("http://{host}:{}", addr.port());
    let mut origins = vec![origin.clone()];
    if addr.ip().is_loopback() || addr.ip().is_unspecified() {
        origins.push(format!("http://localhost:{}", addr.port()));
    }
    let account = store::create_account(
        &mut tx,
        &NewAccount {
            channel: Channel::Webchat,
            name: "Acme Shop web chat".to_owned(),
            default_queue: queue.clone(),
            credentials: serde_json::json!({}),
            settings: serde_json::json!({
                "allowed_origins": origins,
                "title": "Acme Shop",
                "welcome": "Hi! Ask us anything; an agent answers in a moment.",
            }),
        },
    )
    .await?;
    for (login, name, roles) in AGENTS {
        store::upsert_agent(
            &mut tx,
            &AgentProfile {
                login: (*login).to_owned(),
                name: (*name).to_owned(),
                roles: roles.iter().map(|r| (*r).to_owned()).collect(),
                queues: vec![queue.clone()],
                max_interactions: 3,
            },
        )
        .await?;
    }
    tx.commit().await?;
    tracing::info!(account = %account.id, "demo: created a web chat account and the agents alice and bob");
    let mut lines = vec![
        "demo: an empty database, so a web chat account and two agents were created".to_owned(),
        format!("  widget:    {origin}/webchat/demo?key={}", account.id),
    ];
    for (login, name, roles) in AGENTS {
        match token(config, login, name, roles) {
            Ok(token) => {
                lines.push(format!("  console:   {origin}/console#token={token}   ({name}, {})", roles.join("+")))
            }
            Err(e) => lines.push(format!("  console:   {origin}/console ({login}: no token: {e:#})")),
        }
    }
    match token(config, "admin", "Administrator", &["admin", "supervisor"]) {
        Ok(token) => {
            lines.push(format!("  admin:     {origin}/admin#token={token}   (Administrator, admin+supervisor)"))
        }
        Err(e) => lines.push(format!("  admin:     {origin}/admin (no token: {e:#})")),
    }
    Ok(lines)
}

fn token(config: &Config, login: &str, name: &str, roles: &[&str]) -> anyhow::Result<String> {
    let secret = config.jwt.hs256_secret.as_ref().context("jwt.hs256_secret is not set")?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    let claims = ops::auth::Claims {
        sub: login.to_owned(),
        exp: now + TOKEN_TTL_S,
        name: Some(name.to_owned()),
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
    };
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.expose().as_bytes()),
    )
    .context("cannot sign the token")
}
