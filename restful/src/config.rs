//! Command line and environment: which address, which Flux, which auth.
//!
//! Secrets come only from the environment (never from flags, which `ps` shows):
//! `FLUX_SECRET_KEY` (the shared secret of the handshake), `FLUX_TOKEN_SIGNING_KEY` (signs
//! access tokens; random per start when unset), `FLUX_USER` + `FLUX_TOKEN` (a superuser and
//! their password, as the Flux Operator sets them).

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use crate::auth::{Auth, BackendKind, Secret};
use crate::error::{RestError, Result};

#[derive(Debug, Parser)]
#[command(
    name = "minicluster-rest",
    version,
    about = "A flux-restful-api compatible REST server for a Flux instance ($FLUX_URI)"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Read a password on stdin and print its argon2 hash, for a users file line `name:HASH`.
    HashPassword,
    /// Print the OpenAPI document.
    Openapi,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendChoice {
    /// The Flux instance at $FLUX_URI.
    Flux,
    /// An in-memory stand-in for Flux. Only for tests of the HTTP layer.
    StandIn,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Directory whose `restful/*.html` replace the built-in web page templates.
    #[arg(long, env = "MINICLUSTER_TEMPLATES", value_name = "DIR")]
    pub templates: Option<std::path::PathBuf>,
    /// Address to listen on.
    #[arg(long, env = "MINICLUSTER_REST_HOST", default_value = "0.0.0.0")]
    pub host: IpAddr,
    /// Port to listen on (0: any free port; the chosen one is printed).
    #[arg(long, env = "MINICLUSTER_REST_PORT", default_value_t = 5000)]
    pub port: u16,
    /// Auth backend: none, database (users and passwords) or shared-secret (users plus the
    /// flux-restful-client token handshake). Default: shared-secret when FLUX_REQUIRE_AUTH is
    /// true or FLUX_SECRET_KEY is set with a user, database when only users are given, else none.
    #[arg(long, env = "FLUX_AUTH_BACKEND")]
    pub auth: Option<String>,
    /// Users file: one `name:argon2-hash` (or `name:argon2-hash:superuser`) per line.
    #[arg(long, env = "MINICLUSTER_REST_USERS_FILE")]
    pub users_file: Option<PathBuf>,
    /// Serve without authentication on an address other than loopback.
    #[arg(long, env = "MINICLUSTER_REST_ALLOW_NO_AUTH")]
    pub allow_no_auth_on_network: bool,
    /// Lifetime of access tokens, in minutes.
    #[arg(long, env = "FLUX_ACCESS_TOKEN_EXPIRES_MINUTES", default_value_t = 600)]
    pub token_expires_minutes: u64,
    /// Largest request body, in bytes.
    #[arg(long, default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Submissions per second per user; beyond it, 429 with Retry-After. 0 (the default, as
    /// flux-restful): no limit.
    #[arg(long, env = "MINICLUSTER_REST_SUBMIT_RATE", default_value_t = 0.0)]
    pub submit_rate: f64,
    /// Submissions a user may make at once before --submit-rate applies.
    #[arg(long, env = "MINICLUSTER_REST_SUBMIT_BURST", default_value_t = 100)]
    pub submit_burst: u32,
    /// Answer with minicluster's stricter checks instead of flux-restful 1.1.0's: every
    /// problem of a submission in one 400 (types and unknown parameters too, instead of a 422),
    /// 404 for unknown job ids on every job route, 400 for an unknown launcher, and the
    /// published client's spellings `detail` and `query` honoured.
    #[arg(long, env = "MINICLUSTER_REST_STRICT")]
    pub strict: bool,
    /// Seconds to let requests in flight finish after a stop is asked for.
    #[arg(long, default_value_t = 10)]
    pub grace_seconds: u64,
    /// Server variables (names or PREFIX* patterns, comma separated) passed on to jobs, beyond
    /// the built-in allowlist (PATH, HOME, LANG, …).
    #[arg(long, env = "FLUX_JOB_ENV_PASSTHROUGH", value_delimiter = ',')]
    pub env_passthrough: Vec<String>,
    /// Working directory of jobs that name none (default: the server's).
    #[arg(long)]
    pub default_workdir: Option<String>,
    /// Take the instance to have GPUs even when Flux reports none.
    #[arg(long, env = "FLUX_HAS_GPUS")]
    pub has_gpus: bool,
    /// Where Flux is: the instance at $FLUX_URI, or the in-memory stand-in (tests only).
    #[arg(long, value_enum, default_value = "flux", hide = true)]
    pub backend: BackendChoice,
    /// Nodes of the stand-in.
    #[arg(long, default_value_t = 2, hide = true)]
    pub stand_in_nodes: usize,
}

fn env_secret(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn truthy(name: &str) -> bool {
    std::env::var(name)
        .map(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "1" | "true" | "yes" | "on"
            )
        })
        .unwrap_or(false)
}

impl ServeArgs {
    /// Build the auth configuration and check it is safe to serve with.
    pub fn auth(&self) -> Result<Auth> {
        let user = env_secret("FLUX_USER");
        let token = env_secret("FLUX_TOKEN");
        let secret = env_secret("FLUX_SECRET_KEY");
        let kind = match &self.auth {
            Some(k) => BackendKind::parse(k)?,
            None if truthy("FLUX_REQUIRE_AUTH") => BackendKind::SharedSecret,
            None if secret.is_some() && (token.is_some() || self.users_file.is_some()) => {
                BackendKind::SharedSecret
            }
            None if token.is_some() || self.users_file.is_some() => BackendKind::Database,
            None => BackendKind::None,
        };
        if kind == BackendKind::None {
            if !self.host.is_loopback() && !self.allow_no_auth_on_network {
                return Err(RestError::Config(format!(
                    "refusing to serve without authentication on {}: anyone who reaches it could run jobs. \
                     Set FLUX_USER and FLUX_TOKEN (and FLUX_SECRET_KEY for flux-restful-client), or give \
                     --users-file, or listen on --host 127.0.0.1, or pass --allow-no-auth-on-network",
                    self.host
                )));
            }
            return Ok(Auth::none());
        }
        let signing = match env_secret("FLUX_TOKEN_SIGNING_KEY") {
            Some(k) => Secret::new(k.into_bytes()),
            None => Secret::random()?,
        };
        let mut auth = Auth::new(
            kind,
            signing,
            Duration::from_secs(self.token_expires_minutes.max(1) * 60),
        )?;
        if let Some(path) = &self.users_file {
            auth.load_users_file(path)?;
        }
        match (user, token) {
            (Some(u), Some(t)) => auth.add_user_password(&u, &t, true)?,
            (None, None) => {}
            (Some(_), None) => {
                return Err(RestError::Config(
                    "FLUX_USER is set but FLUX_TOKEN (the password) is not: set both or neither"
                        .into(),
                ));
            }
            (None, Some(t)) => auth.add_user_password("fluxuser", &t, true)?,
        }
        if auth.user_count() == 0 {
            return Err(RestError::Config(format!(
                "the {} auth backend has no users: set FLUX_USER and FLUX_TOKEN, or give --users-file",
                kind.name()
            )));
        }
        if kind == BackendKind::SharedSecret {
            let Some(s) = secret else {
                return Err(RestError::Config(
                    "the shared-secret auth backend needs FLUX_SECRET_KEY (the key clients encode their credentials with)"
                        .into(),
                ));
            };
            auth.set_shared_secret(Secret::new(s.into_bytes()));
        }
        Ok(auth)
    }

    pub fn server_config(&self) -> Result<crate::ServerConfig> {
        let mut c = crate::ServerConfig {
            max_body: self.max_body_bytes,
            env_passthrough: self.env_passthrough.clone(),
            assume_gpus: self.has_gpus,
            strict: self.strict,
            ..Default::default()
        };
        if let Some(w) = &self.default_workdir {
            c.default_cwd = w.clone();
        }
        if let Some(dir) = &self.templates {
            c.pages = std::sync::Arc::new(crate::web::Pages::with_overrides(dir)?);
        }
        Ok(c)
    }
}
