//! `minicluster serve`: the control plane. The HTTP API ([`api`]) and the dispatcher share one
//! store; the dispatcher runs on its own thread and re-attaches to claimed jobs on start.

pub mod api;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use utoipa::OpenApi;

use crate::dispatch::docker::DockerExecutor;
use crate::dispatch::process::ProcessExecutor;
use crate::dispatch::{Dispatcher, Executor, Executors, Options, Shared, Wake};
use crate::queue::QueueConfig;
use crate::store::{self, StoreError};

#[derive(Clone)]
pub struct AppState {
    pub store: Shared,
    pub wake: Arc<Wake>,
    pub executors: Arc<Executors>,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "minicluster control plane", description = "Pools (where MiniClusters are launched), queues (who runs how much, in what order) and the jobs routed through them."),
    paths(
        api::list_pools, api::create_pool, api::get_pool, api::update_pool, api::delete_pool,
        api::disable_pool, api::enable_pool, api::pool_launches, api::import_pools,
        api::list_queues, api::create_queue, api::queue_action,
        api::submit, api::list_jobs, api::get_job, api::cancel, api::job_logs,
    ),
    components(schemas(api::PoolList, api::ImportRequest)),
    tags((name = "pools"), (name = "queues"), (name = "jobs"))
)]
pub struct ApiDoc;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/pools", get(api::list_pools).post(api::create_pool))
        .route("/v1/pools/import", post(api::import_pools))
        .route(
            "/v1/pools/{name}",
            get(api::get_pool)
                .put(api::update_pool)
                .delete(api::delete_pool),
        )
        .route("/v1/pools/{name}/disable", post(api::disable_pool))
        .route("/v1/pools/{name}/enable", post(api::enable_pool))
        .route("/v1/pools/{name}/launches", get(api::pool_launches))
        .route("/v1/queues", get(api::list_queues).post(api::create_queue))
        .route("/v1/queues/{name}/{action}", post(api::queue_action))
        .route("/v1/jobs", get(api::list_jobs).post(api::submit))
        .route("/v1/jobs/{id}", get(api::get_job))
        .route("/v1/jobs/{id}/cancel", post(api::cancel))
        .route("/v1/jobs/{id}/logs", get(api::job_logs))
        .route(
            "/openapi.json",
            get(|| async { axum::Json(ApiDoc::openapi()) }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .layer(axum::extract::DefaultBodyLimit::max(4 << 20))
        .with_state(state)
}

/// What `serve` needs.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub listen: SocketAddr,
    /// A SQLite file path, `sqlite://PATH`, or `postgres://…`.
    pub database: String,
    /// Launch state and kept logs live here.
    pub state_dir: PathBuf,
    pub entrypoint: PathBuf,
    pub flux: Option<PathBuf>,
    pub tick: Duration,
    /// How kubernetes pools without an operator build their objects (the runner image).
    pub kubernetes_build: minicluster_operator::build::BuildOptions,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {reason} (fix: --listen HOST:PORT with a free port)")]
    Listen { addr: SocketAddr, reason: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// The queue a fresh control plane starts with, so `submit` works before any queue exists.
pub const DEFAULT_QUEUE: &str = "default";

/// Serves until SIGINT/SIGTERM; the dispatcher leaves running work running (a restart
/// re-attaches to it).
pub async fn serve(o: ServeOptions) -> Result<(), ServeError> {
    let db = o.database.clone();
    // Off the async threads: the PostgreSQL client blocks (and panics inside a runtime),
    // also when it is dropped after an error.
    let s = tokio::task::spawn_blocking(move || {
        let mut s = store::open(&db)?;
        if s.queues()?.is_empty() {
            match s.create_queue(&QueueConfig::new(DEFAULT_QUEUE)) {
                Ok(()) | Err(StoreError::Exists { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok::<_, StoreError>(s)
    })
    .await
    .map_err(std::io::Error::other)??;
    let shared: Shared = Arc::new(Mutex::new(s));
    // Docker pools run their jobs only when the Engine answers now; otherwise they fail with
    // the reason, and everything else still works.
    let docker = DockerExecutor::connect(
        o.state_dir.join("launches"),
        o.entrypoint.clone(),
        None,
        o.state_dir.join("logs"),
    )
    .await;
    if let Err(e) = &docker {
        tracing::info!("{e}");
    }
    let executors = Arc::new(Executors {
        process: Arc::new(ProcessExecutor {
            root: o.state_dir.join("launches"),
            entrypoint: o.entrypoint.clone(),
            flux: o.flux.clone(),
            logs: o.state_dir.join("logs"),
            poll: Duration::from_millis(50),
            warm: Default::default(),
        }),
        docker: docker.map(|d| Arc::new(d) as Arc<dyn Executor>),
        // Kubernetes pools run their jobs when a kubeconfig (or the pod this runs in) names a
        // cluster; nothing is asked of it until a job runs.
        kubernetes: match crate::dispatch::kubernetes::KubernetesExecutor::infer(
            o.state_dir.join("logs"),
            o.kubernetes_build.clone(),
        )
        .await
        {
            Ok(k) => Ok(Arc::new(k) as Arc<dyn crate::dispatch::Executor>),
            Err(e) => {
                tracing::info!("kubernetes pools: {e}");
                Err("kubernetes pools: no Kubernetes cluster reachable (not in a pod, no usable kubeconfig) (fix: point KUBECONFIG at one)".into())
            }
        },
    });
    let wake = Arc::new(Wake::default());
    let stop = Arc::new(AtomicBool::new(false));
    let dispatcher = Dispatcher {
        store: Arc::clone(&shared),
        executors: Arc::clone(&executors),
        wake: Arc::clone(&wake),
        stop: Arc::clone(&stop),
        options: Options { tick: o.tick },
    };
    let dispatch = std::thread::spawn(move || dispatcher.run());
    let listener =
        tokio::net::TcpListener::bind(o.listen)
            .await
            .map_err(|e| ServeError::Listen {
                addr: o.listen,
                reason: e.to_string(),
            })?;
    let addr = listener.local_addr()?;
    tracing::info!(
        "control plane on http://{addr} (database {})",
        store::postgres::redact(&o.database)
    );
    eprintln!("minicluster: control plane on http://{addr}");
    let app = router(AppState {
        store: shared,
        wake: Arc::clone(&wake),
        executors,
    });
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("a SIGTERM handler installs");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        })
        .await;
    stop.store(true, Ordering::SeqCst);
    wake.notify();
    let _ = tokio::task::spawn_blocking(move || dispatch.join()).await;
    served?;
    Ok(())
}
