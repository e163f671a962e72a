//! Bearer-token authentication shared by every HTTP and WebSocket surface: a bearer JWT issued by the CRM's sign-on (`sub` = agent login, `exp`,
//! optional `name` and `roles`), verified with an HS256 secret or an RS256/ES256 public key.

use std::collections::HashSet;
use std::path::PathBuf;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};

/// How tokens are verified. Exactly one of `hs256_secret` and `public_key_file` must be set.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JwtConfig {
    /// Shared secret for HS256 tokens.
    pub hs256_secret: Option<crate::config::Secret>,
    /// PEM public key for RS256 or ES256 tokens (the algorithm follows the key).
    pub public_key_file: Option<PathBuf>,
    /// Required `iss`, if set.
    pub issuer: Option<String>,
    /// Required `aud`, if set.
    pub audience: Option<String>,
    /// Clock skew allowed on `exp` and `nbf`, in seconds.
    pub leeway_s: u64,
}

/// The verified identity behind a socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub exp: u64,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub roles: Vec<String>,
}

/// At most this many roles in a token.
pub const MAX_ROLES: usize = 32;

impl Claims {
    /// The claims the hub stores or shows are held to the rules of their kind: `sub` is an
    /// agent login ([`Kind::Key`]), `name` a display name ([`Kind::Name`]), each role a
    /// [`Kind::Key`], at most [`MAX_ROLES`] of them.
    ///
    /// [`Kind::Key`]: crate::input::Kind::Key
    /// [`Kind::Name`]: crate::input::Kind::Name
    fn check(&self) -> Result<(), crate::input::InputError> {
        use crate::input::{Kind, check, check_each, check_opt};
        check("sub", Kind::Key, &self.sub)?;
        check_opt("name", Kind::Name, self.name.as_deref())?;
        if self.roles.len() > MAX_ROLES {
            return Err(crate::input::InputError::new("roles", format!("has more than {MAX_ROLES} roles")));
        }
        check_each("roles", Kind::Key, &self.roles)
    }
}

impl Claims {
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// Roles default to `agent` when the token names none.
    pub fn effective_roles(&self) -> Vec<String> {
        if self.roles.is_empty() { vec!["agent".to_owned()] } else { self.roles.clone() }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no bearer token: send `Authorization: Bearer <jwt>` or `?access_token=<jwt>`")]
    Missing,
    #[error("the token has expired")]
    Expired,
    #[error("invalid token: {0}")]
    Invalid(String),
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("set exactly one of jwt.hs256_secret and jwt.public_key_file")]
    NotExactlyOne,
    #[error("cannot read jwt.public_key_file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("jwt.public_key_file {path} is neither an RSA nor an EC public key in PEM")]
    Unusable { path: PathBuf },
    #[error("jwt.hs256_secret is shorter than 32 bytes")]
    WeakSecret,
}

/// Verifies tokens with the configured key.
#[derive(Clone)]
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
}

impl Verifier {
    pub fn from_config(config: &JwtConfig) -> Result<Self, KeyError> {
        let (key, algorithm) = match (&config.hs256_secret, &config.public_key_file) {
            (Some(secret), None) => {
                if secret.expose().len() < 32 {
                    return Err(KeyError::WeakSecret);
                }
                (DecodingKey::from_secret(secret.expose().as_bytes()), Algorithm::HS256)
            }
            (None, Some(path)) => {
                let pem = std::fs::read(path).map_err(|source| KeyError::Read { path: path.clone(), source })?;
                if let Ok(key) = DecodingKey::from_rsa_pem(&pem) {
                    (key, Algorithm::RS256)
                } else if let Ok(key) = DecodingKey::from_ec_pem(&pem) {
                    (key, Algorithm::ES256)
                } else {
                    return Err(KeyError::Unusable { path: path.clone() });
                }
            }
            _ => return Err(KeyError::NotExactlyOne),
        };
        let mut validation = Validation::new(algorithm);
        validation.leeway = config.leeway_s;
        validation.validate_nbf = true;
        validation.required_spec_claims = HashSet::from(["exp".to_owned(), "sub".to_owned()]);
        if let Some(iss) = &config.issuer {
            validation.set_issuer(&[iss]);
        }
        match &config.audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        Ok(Verifier { key, validation })
    }

    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        use jsonwebtoken::errors::ErrorKind;
        match jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation) {
            Ok(data) => match data.claims.check() {
                Ok(()) => Ok(data.claims),
                Err(e) => Err(AuthError::Invalid(format!("claim {e}"))),
            },
            Err(e) => match e.kind() {
                ErrorKind::ExpiredSignature => Err(AuthError::Expired),
                ErrorKind::ImmatureSignature => Err(AuthError::Invalid("the token is not valid yet (`nbf`)".into())),
                _ => Err(AuthError::Invalid(e.to_string())),
            },
        }
    }
}

/// Picks the bearer token from the `Authorization` header, else from `access_token`.
pub fn bearer<'a>(authorization: Option<&'a str>, access_token: Option<&'a str>) -> Result<&'a str, AuthError> {
    if let Some(header) = authorization {
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or_else(|| AuthError::Invalid("the Authorization header is not `Bearer <jwt>`".into()))?;
        return Ok(token.trim());
    }
    access_token.filter(|t| !t.is_empty()).ok_or(AuthError::Missing)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn verifier() -> Verifier {
        Verifier::from_config(&JwtConfig {
            hs256_secret: Some(crate::config::Secret::new(SECRET)),
            ..Default::default()
        })
        .unwrap()
    }

    fn token(sub: &str, exp_offset: i64) -> String {
        let exp = (chrono::Utc::now().timestamp() + exp_offset) as u64;
        sign(&Claims { sub: sub.into(), exp, name: Some("Alice".into()), roles: vec!["agent".into()] })
    }

    fn sign(claims: &impl Serialize) -> String {
        encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(SECRET.as_bytes())).unwrap()
    }

    #[test]
    fn nbf_is_checked_and_claims_are_held_to_their_rules() {
        let v = verifier();
        let now = chrono::Utc::now().timestamp() as u64;
        let good = Claims { sub: "alice".into(), exp: now + 60, name: None, roles: vec![] };
        assert!(v.verify(&sign(&good)).is_ok());
        // `nbf` is checked from the token itself (with `leeway_s`); `Claims` does not keep it
        assert!(v.verify(&sign(&serde_json::json!({"sub": "alice", "exp": now + 60, "nbf": now - 10}))).is_ok());
        let early = v.verify(&sign(&serde_json::json!({"sub": "alice", "exp": now + 600, "nbf": now + 300})));
        assert!(matches!(&early, Err(AuthError::Invalid(m)) if m.contains("nbf")), "{early:?}");
        let refused = |claims: Claims, field: &str| match v.verify(&sign(&claims)) {
            Err(AuthError::Invalid(m)) => {
                assert!(m.contains(&format!("`{field}`")), "{m}");
                assert!(!m.contains('\0'), "the message escapes what it quotes: {m:?}");
            }
            other => panic!("{field}: {other:?}"),
        };
        refused(Claims { sub: "x".repeat(10_000), ..good.clone() }, "sub");
        refused(Claims { sub: "ali\0ce".into(), ..good.clone() }, "sub");
        refused(Claims { sub: "ali\u{1b}ce".into(), ..good.clone() }, "sub");
        refused(Claims { name: Some("A\0".into()), ..good.clone() }, "name");
        refused(Claims { name: Some("A\nB".into()), ..good.clone() }, "name");
        refused(Claims { name: Some("n".repeat(10_000)), ..good.clone() }, "name");
        refused(Claims { roles: vec!["agent\0".into()], ..good.clone() }, "roles[0]");
        refused(Claims { roles: vec!["r".into(); MAX_ROLES + 1], ..good.clone() }, "roles");
    }

    #[test]
    fn accepts_a_good_token_and_names_what_is_wrong_with_bad_ones() {
        let v = verifier();
        assert_eq!(v.verify(&token("alice", 60)).unwrap().sub, "alice");
        assert!(matches!(v.verify(&token("alice", -120)), Err(AuthError::Expired)));
        assert!(matches!(v.verify("not.a.jwt"), Err(AuthError::Invalid(_))));
        let other = encode(
            &Header::new(Algorithm::HS256),
            &Claims { sub: "x".into(), exp: u64::MAX / 2, name: None, roles: vec![] },
            &EncodingKey::from_secret(b"another-secret-another-secret-xx"),
        )
        .unwrap();
        assert!(matches!(v.verify(&other), Err(AuthError::Invalid(_))));
        assert!(matches!(v.verify(&token(" ", 60)), Err(AuthError::Invalid(_))));
    }

    #[test]
    fn bearer_comes_from_the_header_or_the_query() {
        assert_eq!(bearer(Some("Bearer abc"), None).unwrap(), "abc");
        assert_eq!(bearer(None, Some("xyz")).unwrap(), "xyz");
        assert!(matches!(bearer(None, None), Err(AuthError::Missing)));
        assert!(matches!(bearer(Some("Basic abc"), None), Err(AuthError::Invalid(_))));
    }

    #[test]
    fn configuration_mistakes_are_explained() {
        assert!(matches!(Verifier::from_config(&JwtConfig::default()), Err(KeyError::NotExactlyOne)));
        let weak = JwtConfig { hs256_secret: Some(crate::config::Secret::new("short")), ..Default::default() };
        assert!(matches!(Verifier::from_config(&weak), Err(KeyError::WeakSecret)));
    }
}
