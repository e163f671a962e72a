//! Who is calling, and what they may do.
//!
//! Every route except the OpenAPI document takes `Authorization: Bearer <credential>`:
//!
//! - an **API key** `sk_...` (43 random base64url characters after the prefix). Only its SHA-256
//!   is stored; the key itself is shown once, when it is created. A key carries [`Scope`]s.
//! - a **JWT** from the CRM's sign-on, verified by `ops::auth` with the process's `[jwt]`
//!   settings (the same verifier the chatserver and the file server use). The `admin` role
//!   grants every scope, `supervisor` grants `interactions:read`; other roles grant nothing.
//! - the **bootstrap key** from `loader.bootstrap_key`, if configured: every scope, for creating
//!   the first API keys on an installation without sign-on.
//!
//! No credential, or one that does not verify: 401. A valid one without the scope: 403.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ops::auth::{AuthError, Verifier};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::AppState;
use crate::error::{ApiError, code};

/// What a credential allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum Scope {
    /// Interactions, messages, events, customers, exports.
    #[serde(rename = "interactions:read")]
    InteractionsRead,
    /// Accounts (credentials masked), agents, queues, API keys, the audit log.
    #[serde(rename = "admin:read")]
    AdminRead,
    /// Changing accounts, agents, queues, API keys.
    #[serde(rename = "admin:write")]
    AdminWrite,
    /// Webhook subscriptions and their deliveries.
    #[serde(rename = "webhooks:read")]
    WebhooksRead,
    /// Creating, changing and deleting subscriptions; redelivering.
    #[serde(rename = "webhooks:write")]
    WebhooksWrite,
}

impl Scope {
    pub const ALL: [Scope; 5] =
        [Scope::InteractionsRead, Scope::AdminRead, Scope::AdminWrite, Scope::WebhooksRead, Scope::WebhooksWrite];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::InteractionsRead => "interactions:read",
            Scope::AdminRead => "admin:read",
            Scope::AdminWrite => "admin:write",
            Scope::WebhooksRead => "webhooks:read",
            Scope::WebhooksWrite => "webhooks:write",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|scope| scope.as_str() == s)
    }
}

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// How the audit log names the caller: `key:<id>`, `jwt:<sub>`, `bootstrap`.
    pub actor: String,
    pub scopes: Vec<Scope>,
}

impl Principal {
    /// 403 unless the caller has `scope`.
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.scopes.contains(&scope) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!("this credential lacks the scope {}", scope.as_str())))
        }
    }
}

/// What verifies credentials: the JWT verifier (if sign-on is configured) and the bootstrap
/// key's hash (if one is configured).
#[derive(Clone, Default)]
pub struct Authenticator {
    pub jwt: Option<Verifier>,
    pub bootstrap_hash: Option<Arc<[u8; 32]>>,
}

/// The prefix of every API key.
pub const KEY_PREFIX: &str = "sk_";

/// A new API key: the key to show once, the prefix to list it by, the hash to store.
pub struct NewKey {
    pub key: String,
    pub prefix: String,
    pub hash: [u8; 32],
}

/// Generates a key from 32 random bytes.
pub fn generate_key() -> NewKey {
    let bytes: [u8; 32] = rand::random();
    let key = format!("{KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
    NewKey { prefix: key[..KEY_PREFIX.len() + 6].to_owned(), hash: hash_key(&key), key }
}

pub fn hash_key(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// Constant-time equality of two hashes.
fn same_hash(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn scopes_of_roles(roles: &[String]) -> Vec<Scope> {
    if roles.iter().any(|r| r == "admin") {
        Scope::ALL.to_vec()
    } else if roles.iter().any(|r| r == "supervisor") {
        vec![Scope::InteractionsRead]
    } else {
        Vec::new()
    }
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts.headers.get(header::AUTHORIZATION).map(|v| v.to_str().unwrap_or(""));
        let Some(header) = header else {
            return Err(ApiError::unauthorized(
                code::UNAUTHORIZED,
                "no credentials: send `Authorization: Bearer <API key or JWT>`",
            ));
        };
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::unauthorized(
                    code::INVALID_CREDENTIALS,
                    "the Authorization header is not `Bearer <credential>`",
                )
            })?;
        authenticate(state, token).await
    }
}

async fn authenticate(state: &AppState, token: &str) -> Result<Principal, ApiError> {
    let auth = &state.auth;
    if token.starts_with(KEY_PREFIX) {
        let hash = hash_key(token);
        if let Some(bootstrap) = &auth.bootstrap_hash
            && same_hash(bootstrap, &hash)
        {
            return Ok(Principal { actor: "bootstrap".into(), scopes: Scope::ALL.to_vec() });
        }
        let mut conn = state.pool.acquire().await?;
        let key = schema::store::api_key_by_hash(&mut conn, &hash).await?;
        let Some(key) = key else {
            return Err(ApiError::unauthorized(code::INVALID_CREDENTIALS, "unknown or revoked API key"));
        };
        schema::store::touch_api_key(&mut conn, key.id).await?;
        let scopes = key.scopes.iter().filter_map(|s| Scope::parse(s)).collect();
        return Ok(Principal { actor: format!("key:{}", key.id), scopes });
    }
    let Some(verifier) = &auth.jwt else {
        return Err(ApiError::unauthorized(
            code::INVALID_CREDENTIALS,
            "not an API key (sk_...), and this loader accepts no JWTs",
        ));
    };
    match verifier.verify(token) {
        Ok(claims) => Ok(Principal { actor: format!("jwt:{}", claims.sub), scopes: scopes_of_roles(&claims.roles) }),
        Err(AuthError::Expired) => Err(ApiError::unauthorized(code::TOKEN_EXPIRED, "the token has expired")),
        Err(e) => Err(ApiError::unauthorized(code::INVALID_CREDENTIALS, e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_prefixed_and_hashed() {
        let a = generate_key();
        let b = generate_key();
        assert_ne!(a.key, b.key);
        assert!(a.key.starts_with("sk_") && a.key.len() == 3 + 43, "{}", a.key);
        assert!(a.key.starts_with(&a.prefix) && a.prefix.len() == 9);
        assert_eq!(a.hash, hash_key(&a.key));
        assert!(same_hash(&a.hash, &hash_key(&a.key)));
        assert!(!same_hash(&a.hash, &b.hash));
    }

    #[test]
    fn scopes_round_trip_and_roles_map_to_scopes() {
        for scope in Scope::ALL {
            assert_eq!(Scope::parse(scope.as_str()), Some(scope));
            assert_eq!(serde_json::to_value(scope).unwrap(), serde_json::json!(scope.as_str()));
        }
        assert_eq!(Scope::parse("admin"), None);
        assert_eq!(scopes_of_roles(&["agent".into(), "admin".into()]), Scope::ALL.to_vec());
        assert_eq!(scopes_of_roles(&["supervisor".into()]), vec![Scope::InteractionsRead]);
        assert!(scopes_of_roles(&["agent".into()]).is_empty());
    }
}
