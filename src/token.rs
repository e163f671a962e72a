//! `switchboard token`: mints a bearer token with the configured HS256 secret, for trying the
//! agent API, for tests, and for service accounts (role `service`).

use anyhow::Context;
use clap::Parser;

use crate::config::Config;

#[derive(Debug, Parser)]
pub struct Args {
    /// The agent's login (the token's `sub`)
    #[arg(long)]
    sub: String,
    /// Display name
    #[arg(long)]
    name: Option<String>,
    /// Roles, comma-separated: agent, supervisor, admin, bot, service
    #[arg(long, value_delimiter = ',', default_value = "agent")]
    roles: Vec<String>,
    /// Lifetime in seconds
    #[arg(long, default_value_t = 3600)]
    ttl: u64,
}

pub fn run(config: &Config, args: &Args) -> anyhow::Result<()> {
    let secret = config
        .jwt
        .hs256_secret
        .as_ref()
        .context("jwt.hs256_secret is not set: tokens for an RS256/ES256 setup come from your sign-on")?;
    const ROLES: &[&str] = &["agent", "supervisor", "admin", "bot", "service"];
    if let Some(bad) = args.roles.iter().find(|r| !ROLES.contains(&r.as_str())) {
        anyhow::bail!("unknown role {bad:?}; roles are {}", ROLES.join(", "));
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    let claims = ops::auth::Claims {
        sub: args.sub.clone(),
        exp: now + args.ttl,
        name: args.name.clone(),
        roles: args.roles.clone(),
    };
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.expose().as_bytes()),
    )
    .context("cannot sign the token")?;
    println!("{token}");
    Ok(())
}
