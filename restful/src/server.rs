//! The application: shared state, the router, and serving with graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use tokio::sync::watch;

use crate::auth::{Auth, Principal};
use crate::backend::FluxBackend;
use crate::error::{RestError, Result};
use crate::limits::RateLimiter;

/// Settings that shape requests (not auth).
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Largest request body in bytes.
    pub max_body: usize,
    /// Working directory of jobs that give none.
    pub default_cwd: String,
    /// Extra server variables (names or `PREFIX*` patterns) passed to jobs.
    pub env_passthrough: Vec<String>,
    /// Commands `is_launcher` may start.
    pub launchers: Vec<String>,
    /// GPUs to assume when Flux reports none (`FLUX_HAS_GPUS`).
    pub assume_gpus: bool,
    /// The web pages (embedded, or overridden with `--templates`).
    pub pages: Arc<crate::web::Pages>,
    /// Our stricter answers instead of flux-restful's (`--strict`): see the README's
    /// "Where we differ from flux-restful".
    pub strict: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_body: 1024 * 1024,
            default_cwd: std::env::current_dir()
                .map(|d| d.display().to_string())
                .unwrap_or_else(|_| "/tmp".into()),
            env_passthrough: Vec::new(),
            launchers: vec!["nextflow".into(), "snakemake".into()],
            assume_gpus: false,
            pages: Arc::new(crate::web::Pages::new()),
            strict: false,
        }
    }
}

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub backend: Arc<dyn FluxBackend>,
    pub auth: Arc<Auth>,
    pub limiter: Arc<RateLimiter>,
    pub config: Arc<ServerConfig>,
    pub shutdown: Arc<watch::Sender<bool>>,
    pub web: Arc<crate::web::Pages>,
}

impl AppState {
    pub fn new(
        backend: Arc<dyn FluxBackend>,
        auth: Auth,
        limiter: RateLimiter,
        config: ServerConfig,
    ) -> AppState {
        AppState {
            backend,
            auth: Arc::new(auth),
            limiter: Arc::new(limiter),
            web: config.pages.clone(),
            config: Arc::new(config),
            shutdown: Arc::new(watch::channel(false).0),
        }
    }

    /// Ask the server to stop (graceful: open streams end, then the listener closes).
    pub fn request_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// Resolves once shutdown was requested.
    pub fn stopping(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.shutdown.subscribe();
        async move {
            let _ = rx.wait_for(|v| *v).await;
        }
    }

    /// Check a user name and password off the async threads (argon2 is slow on purpose).
    pub async fn authenticate(&self, user: String, pass: String) -> Option<Principal> {
        let auth = self.auth.clone();
        tokio::task::spawn_blocking(move || auth.authenticate(&user, &pass))
            .await
            .ok()
            .flatten()
    }
}

/// The caller of an API route: `None` when the auth backend is `none`. A missing or invalid
/// bearer token is a 401 with `WWW-Authenticate: Bearer`.
pub struct ApiUser(pub Option<Principal>);

impl ApiUser {
    /// The name rate limits and ownership use.
    pub fn key(&self) -> &str {
        self.0
            .as_ref()
            .map(|p| p.name.as_str())
            .unwrap_or("anonymous")
    }
}

pub fn bearer(parts: &Parts) -> Option<&str> {
    let h = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = h.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty()).then(|| token.trim())
}

impl FromRequestParts<AppState> for ApiUser {
    type Rejection = RestError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        if !state.auth.requires_auth() {
            return Ok(ApiUser(None));
        }
        let token = bearer(parts).ok_or(RestError::NotAuthenticated)?;
        let who = state.auth.verify_token(token)?;
        tracing::Span::current().record("user", who.name.as_str());
        Ok(ApiUser(Some(who)))
    }
}

/// Every route: the API under `/v1`, the OpenAPI document and docs, and the web pages.
pub fn router(state: AppState) -> Router {
    let trace = tower::ServiceBuilder::new().layer(axum::middleware::from_fn(trace_request));
    crate::api::routes()
        .merge(crate::openapi::routes())
        .merge(crate::web::routes())
        .layer(trace)
        .with_state(state)
}

async fn trace_request(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    // Only the method and path: never the query (it may hold credentials) or headers.
    let span = tracing::info_span!(
        "request",
        method = %req.method(),
        path = %req.uri().path(),
        user = tracing::field::Empty
    );
    let start = std::time::Instant::now();
    let resp = tracing::Instrument::instrument(next.run(req), span.clone()).await;
    span.in_scope(|| {
        tracing::debug!(
            status = resp.status().as_u16(),
            elapsed_ms = start.elapsed().as_millis() as u64,
            "done"
        );
    });
    resp
}

/// Serve until SIGTERM/SIGINT or `/v1/service/stop`; then stop taking connections, end open
/// output streams, and wait at most `grace` for requests in flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    grace: Duration,
) -> Result<()> {
    let app = router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    let signals = {
        let state = state.clone();
        async move {
            wait_for_signal().await;
            tracing::info!("signal received: shutting down");
            state.request_shutdown();
        }
    };
    tokio::spawn(signals);
    let stopping = state.stopping();
    let server = axum::serve(listener, app).with_graceful_shutdown(stopping);
    let mut done = tokio::spawn(async move { server.await });
    tokio::select! {
        r = &mut done => {
            return r.map_err(|e| RestError::Config(format!("server task failed: {e}")))?
                .map_err(|e| RestError::Io { context: "serving HTTP".into(), source: e });
        }
        _ = state.stopping() => {}
    }
    match tokio::time::timeout(grace, &mut done).await {
        Ok(r) => r
            .map_err(|e| RestError::Config(format!("server task failed: {e}")))?
            .map_err(|e| RestError::Io {
                context: "serving HTTP".into(),
                source: e,
            }),
        Err(_) => {
            tracing::warn!(
                ?grace,
                "requests still open after the grace period; stopping anyway"
            );
            done.abort();
            Ok(())
        }
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
