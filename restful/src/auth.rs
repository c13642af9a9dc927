//! Who may call: the auth backends, passwords (argon2), and access tokens (HS256 JWTs).
//!
//! - `none`: every request is anonymous. Only on a loopback address unless explicitly allowed.
//! - `database`: users with argon2-hashed passwords (a users file and/or `FLUX_USER` +
//!   `FLUX_TOKEN`), OAuth2 password login at `/v1/login/access-token`.
//! - `shared-secret`: the same users plus the handshake at `/v1/token` that
//!   flux-restful-client performs: a JWT signed with the shared `FLUX_SECRET_KEY` carrying
//!   `user`, `pass` and `scope: "token"`.
//!
//! Access tokens are signed with a server-only key (`FLUX_TOKEN_SIGNING_KEY`, or a random key
//! per start), never with the shared secret, and expire.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::error::{RestError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    None,
    Database,
    SharedSecret,
}

impl BackendKind {
    pub fn parse(s: &str) -> Result<BackendKind> {
        match s.trim().to_ascii_lowercase().as_str() {
            "none" => Ok(BackendKind::None),
            "database" | "users" | "password" => Ok(BackendKind::Database),
            "shared-secret" => Ok(BackendKind::SharedSecret),
            other => Err(RestError::Config(format!(
                "unknown auth backend {other:?}: choose none, database or shared-secret"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            BackendKind::None => "none",
            BackendKind::Database => "database",
            BackendKind::SharedSecret => "shared-secret",
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub superuser: bool,
}

#[derive(Clone)]
struct UserRecord {
    hash: String,
    superuser: bool,
}

/// A secret that never prints.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Secret {
        Secret(bytes.into())
    }
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
    /// 32 random bytes.
    pub fn random() -> Result<Secret> {
        let mut key = vec![0u8; 32];
        getrandom::fill(&mut key)
            .map_err(|e| RestError::Config(format!("no randomness for a signing key: {e}")))?;
        Ok(Secret(key))
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// The whole auth configuration of a running server.
pub struct Auth {
    pub kind: BackendKind,
    users: HashMap<String, UserRecord>,
    shared_secret: Option<Secret>,
    signing_key: Secret,
    pub token_ttl: Duration,
    dummy_hash: String,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("kind", &self.kind)
            .field("users", &self.users.len())
            .field("handshake", &self.shared_secret.is_some())
            .finish()
    }
}

#[derive(Serialize, Deserialize)]
struct AccessClaims {
    sub: String,
    backend: String,
    iat: u64,
    exp: u64,
}

#[derive(Deserialize)]
struct HandshakeClaims {
    #[serde(default)]
    user: Option<serde_json::Value>,
    #[serde(default)]
    pass: Option<serde_json::Value>,
    #[serde(default)]
    scope: Option<serde_json::Value>,
}

/// Hash a password for the users file (argon2id, random salt, PHC string).
pub fn hash_password(password: &str) -> Result<String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt)
        .map_err(|e| RestError::Config(format!("no randomness for a salt: {e}")))?;
    let salt = SaltString::encode_b64(&salt)
        .map_err(|e| RestError::Config(format!("cannot encode salt: {e}")))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| RestError::Config(format!("cannot hash password: {e}")))
}

fn verify_hash(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Auth {
    pub fn new(kind: BackendKind, signing_key: Secret, token_ttl: Duration) -> Result<Auth> {
        Ok(Auth {
            kind,
            users: HashMap::new(),
            shared_secret: None,
            signing_key,
            token_ttl,
            dummy_hash: hash_password("no such user")?,
        })
    }

    /// No authentication.
    pub fn none() -> Auth {
        Auth {
            kind: BackendKind::None,
            users: HashMap::new(),
            shared_secret: None,
            signing_key: Secret(vec![0; 32]),
            token_ttl: Duration::from_secs(600),
            dummy_hash: String::new(),
        }
    }

    pub fn set_shared_secret(&mut self, secret: Secret) {
        self.shared_secret = Some(secret);
    }

    /// Add a user whose password is given in clear (e.g. `FLUX_USER`/`FLUX_TOKEN`); only the
    /// hash is kept.
    pub fn add_user_password(&mut self, name: &str, password: &str, superuser: bool) -> Result<()> {
        let hash = hash_password(password)?;
        self.add_user_hash(name, &hash, superuser)
    }

    pub fn add_user_hash(&mut self, name: &str, hash: &str, superuser: bool) -> Result<()> {
        if name.is_empty() || name.contains(':') || name.chars().any(char::is_whitespace) {
            return Err(RestError::Config(format!(
                "user name {name:?} is not valid: use a non-empty name without ':' or spaces"
            )));
        }
        PasswordHash::new(hash).map_err(|_| {
            RestError::Config(format!(
                "the password hash of user {name} is not a PHC string: make one with `minicluster-rest hash-password`"
            ))
        })?;
        self.users.insert(
            name.to_string(),
            UserRecord {
                hash: hash.to_string(),
                superuser,
            },
        );
        Ok(())
    }

    /// Read a users file: one `name:argon2-hash[:superuser]` per line; `#` starts a comment.
    pub fn load_users_file(&mut self, path: &Path) -> Result<usize> {
        let text = std::fs::read_to_string(path).map_err(|e| RestError::Io {
            context: format!("cannot read the users file {}", path.display()),
            source: e,
        })?;
        let mut n = 0;
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |why: &str| {
                RestError::Config(format!(
                    "{}:{}: {why} (each line is name:argon2-hash or name:argon2-hash:superuser)",
                    path.display(),
                    i + 1
                ))
            };
            let mut parts = line.splitn(3, ':');
            let name = parts.next().unwrap_or_default();
            let hash = parts.next().ok_or_else(|| bad("no password hash"))?;
            let superuser = match parts.next() {
                None => false,
                Some("superuser") => true,
                Some(_) => return Err(bad("the third field can only be 'superuser'")),
            };
            self.add_user_hash(name, hash, superuser)
                .map_err(|e| bad(&e.to_string()))?;
            n += 1;
        }
        Ok(n)
    }

    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    pub fn requires_auth(&self) -> bool {
        self.kind != BackendKind::None
    }

    pub fn supports_password(&self) -> bool {
        self.kind != BackendKind::None
    }

    pub fn handshake_enabled(&self) -> bool {
        self.kind == BackendKind::SharedSecret && self.shared_secret.is_some()
    }

    /// Check a user name and password. Takes the same time whether or not the user exists.
    pub fn authenticate(&self, name: &str, password: &str) -> Option<Principal> {
        if !self.supports_password() {
            return None;
        }
        match self.users.get(name) {
            Some(u) => verify_hash(&u.hash, password).then(|| Principal {
                name: name.to_string(),
                superuser: u.superuser,
            }),
            None => {
                let _ = verify_hash(&self.dummy_hash, password);
                None
            }
        }
    }

    pub fn issue_token(&self, who: &Principal) -> Result<String> {
        let now = unix_now();
        let claims = AccessClaims {
            sub: who.name.clone(),
            backend: self.kind.name().into(),
            iat: now,
            exp: now + self.token_ttl.as_secs().max(1),
        };
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(self.signing_key.expose()),
        )
        .map_err(|e| RestError::Config(format!("cannot sign an access token: {e}")))
    }

    /// The caller a bearer token names, if we signed it, it has not expired, and the user is
    /// still known.
    pub fn verify_token(&self, token: &str) -> Result<Principal> {
        let mut v = Validation::new(Algorithm::HS256);
        v.leeway = 0;
        v.set_required_spec_claims(&["exp", "sub"]);
        let data = jsonwebtoken::decode::<AccessClaims>(
            token,
            &DecodingKey::from_secret(self.signing_key.expose()),
            &v,
        )
        .map_err(|_| RestError::BadToken)?;
        if data.claims.backend != self.kind.name() {
            return Err(RestError::BadToken);
        }
        let user = self
            .users
            .get(&data.claims.sub)
            .ok_or(RestError::BadToken)?;
        Ok(Principal {
            name: data.claims.sub,
            superuser: user.superuser,
        })
    }

    /// The `/v1/token` handshake: the encoded credentials of an `Authorization` header.
    pub fn handshake(&self, authorization: Option<&str>) -> Result<Principal> {
        let Some(secret) = self
            .shared_secret
            .as_ref()
            .filter(|_| self.handshake_enabled())
        else {
            return Err(RestError::LoginRefused(
                "The shared-secret token handshake is not enabled on this server.".into(),
            ));
        };
        let encoded = authorization
            .unwrap_or_default()
            .rsplit(' ')
            .next()
            .unwrap_or_default()
            .trim();
        if encoded.is_empty() {
            return Err(RestError::LoginRefused(
                "Missing Authorization header".into(),
            ));
        }
        let mut v = Validation::new(Algorithm::HS256);
        v.required_spec_claims.clear();
        v.validate_exp = false;
        let claims = jsonwebtoken::decode::<HandshakeClaims>(
            encoded,
            &DecodingKey::from_secret(secret.expose()),
            &v,
        )
        .map_err(|_| RestError::LoginRefused("Could not decode credentials".into()))?
        .claims;
        let text = |v: &Option<serde_json::Value>| match v {
            Some(serde_json::Value::String(s)) if !s.is_empty() => Some(s.clone()),
            _ => None,
        };
        let (Some(user), Some(pass), Some(scope)) =
            (text(&claims.user), text(&claims.pass), text(&claims.scope))
        else {
            let missing = [
                ("user", &claims.user),
                ("pass", &claims.pass),
                ("scope", &claims.scope),
            ]
            .into_iter()
            .find(|(_, v)| text(v).is_none())
            .map(|(k, _)| k)
            .unwrap_or("user");
            return Err(RestError::LoginRefused(format!(
                "Credentials are missing '{missing}'"
            )));
        };
        if scope != "token" {
            return Err(RestError::LoginRefused("Invalid scope".into()));
        }
        self.authenticate(&user, &pass)
            .ok_or_else(|| RestError::LoginRefused("Incorrect user or password".into()))
    }
}

/// Encode handshake credentials as flux-restful-client does (for tests and tools).
pub fn encode_handshake(user: &str, pass: &str, secret: &[u8]) -> String {
    let claims = serde_json::json!({"user": user, "pass": pass, "scope": "token"});
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Auth {
        let mut a = Auth::new(
            BackendKind::SharedSecret,
            Secret::new(b"signing".to_vec()),
            Duration::from_secs(60),
        )
        .unwrap();
        a.set_shared_secret(Secret::new(b"shared".to_vec()));
        a.add_user_password("alice", "wonderland", false).unwrap();
        a
    }

    #[test]
    fn passwords_tokens_and_handshake() {
        let a = auth();
        assert!(a.authenticate("alice", "wrong").is_none());
        assert!(a.authenticate("bob", "wonderland").is_none());
        let p = a.authenticate("alice", "wonderland").unwrap();
        let t = a.issue_token(&p).unwrap();
        assert_eq!(a.verify_token(&t).unwrap().name, "alice");
        assert!(matches!(
            a.verify_token("garbage"),
            Err(RestError::BadToken)
        ));

        let hs = encode_handshake("alice", "wonderland", b"shared");
        assert_eq!(a.handshake(Some(&format!("Bearer {hs}"))).unwrap(), p);
        let forged = encode_handshake("alice", "wonderland", b"not the secret");
        assert!(matches!(
            a.handshake(Some(&format!("Bearer {forged}"))),
            Err(RestError::LoginRefused(m)) if m == "Could not decode credentials"
        ));
        let wrong = encode_handshake("alice", "nope", b"shared");
        assert!(a.handshake(Some(&wrong)).is_err());
        // A token signed with the shared secret is not an access token.
        assert!(a.verify_token(&hs).is_err());
    }

    #[test]
    fn expired_tokens_are_refused() {
        let a = auth();
        let claims = AccessClaims {
            sub: "alice".into(),
            backend: "shared-secret".into(),
            iat: 1,
            exp: unix_now() - 5,
        };
        let t = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(b"signing"),
        )
        .unwrap();
        assert!(matches!(a.verify_token(&t), Err(RestError::BadToken)));
    }

    #[test]
    fn users_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users");
        let hash = hash_password("pw").unwrap();
        std::fs::write(
            &path,
            format!("# users\nroot:{hash}:superuser\nbob:{hash}\n"),
        )
        .unwrap();
        let mut a = auth();
        assert_eq!(a.load_users_file(&path).unwrap(), 2);
        assert!(a.authenticate("root", "pw").unwrap().superuser);
        assert!(!a.authenticate("bob", "pw").unwrap().superuser);
        std::fs::write(&path, "carol:plaintext\n").unwrap();
        let e = a.load_users_file(&path).unwrap_err().to_string();
        assert!(e.contains("hash-password"), "{e}");
    }

    #[test]
    fn secrets_do_not_print() {
        assert_eq!(format!("{:?}", Secret::new(b"x".to_vec())), "Secret(…)");
        assert!(!format!("{:?}", auth()).contains("shared"));
    }
}
