//! The controller's process: the watch loop, and HTTP for probes and metrics.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Api, Client};
use minicluster_core::MiniCluster;

use crate::build::BuildOptions;
use crate::error::Result;
use crate::features::{OLDEST_MINOR, ServerFeatures};
use crate::labels;
use crate::metrics::Metrics;
use crate::reconcile::{self, Context};

#[derive(Clone)]
struct Shared {
    metrics: Metrics,
    ready: Arc<AtomicBool>,
}

/// Runs the controller until SIGTERM/SIGINT, serving /healthz, /readyz and /metrics on `addr`.
/// /readyz answers ready only once the operator may read what it watches and its watch of
/// MiniClusters has listed them.
pub async fn run(
    addr: SocketAddr,
    mut build: BuildOptions,
    namespace: Option<String>,
) -> Result<()> {
    let client = Client::try_default().await.map_err(|e| {
        let kubeconfig = std::env::var("KUBECONFIG").unwrap_or_else(|_| "~/.kube/config".into());
        tracing::debug!("inferring the Kubernetes config: {e}");
        crate::Error::NoCluster(format!(
            "not in a pod (KUBERNETES_SERVICE_HOST is unset) and no usable kubeconfig at {kubeconfig}"
        ))
    })?;
    // What the server can do decides how a MiniCluster's Job is built (its version).
    let version = client.apiserver_version().await?;
    build.server = ServerFeatures::from_minor(&version.minor);
    tracing::info!(
        "Kubernetes {}.{}: pod failure policy {}, elastic Indexed Jobs {}, Job success policy {}",
        version.major,
        version.minor,
        yes(build.server.pod_failure_policy()),
        yes(build.server.elastic_indexed_job()),
        yes(build.server.success_policy()),
    );
    if build.server.minor < OLDEST_MINOR {
        tracing::warn!(
            "Kubernetes 1.{} is older than the oldest supported (1.{OLDEST_MINOR}): a failing rank 0 may not end its MiniCluster",
            build.server.minor
        );
    }
    let metrics = Metrics::default();
    let ready = Arc::new(AtomicBool::new(false));
    let shared = Shared {
        metrics: metrics.clone(),
        ready: ready.clone(),
    };
    let app = router(shared.metrics, shared.ready);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| crate::Error::Build {
            what: format!("the HTTP listener on {addr}"),
            reason: e.to_string(),
        })?;
    tracing::info!("serving /healthz, /readyz and /metrics on {addr}");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    let (mcs, jobs, pods): (Api<MiniCluster>, Api<Job>, Api<Pod>) = match &namespace {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
        ),
        None => (
            Api::all(client.clone()),
            Api::all(client.clone()),
            Api::all(client.clone()),
        ),
    };
    let ctx = Arc::new(Context {
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: labels::MANAGER.into(),
                instance: std::env::var("POD_NAME").ok(),
            },
        ),
        client,
        build,
        metrics,
        applied: Default::default(),
    });
    let broker_pods = watcher::Config::default().labels(&format!("{}=broker", labels::COMPONENT));
    // Readable, or not ready: a watch the RBAC forbids would only ever log errors.
    let probe = ListParams::default().limit(1);
    let scope = namespace
        .as_deref()
        .map_or("in every namespace".to_string(), |ns| {
            format!("in namespace {ns}")
        });
    let forbidden = |what: &str| {
        let what = format!("list {what} {scope}");
        move |e: kube::Error| crate::Error::Forbidden {
            what,
            reason: e.to_string(),
        }
    };
    mcs.list(&probe).await.map_err(forbidden("MiniClusters"))?;
    jobs.list(&probe).await.map_err(forbidden("Jobs"))?;
    pods.list(
        &probe
            .clone()
            .labels(&format!("{}=broker", labels::COMPONENT)),
    )
    .await
    .map_err(forbidden("pods"))?;
    // Ready once a watch of MiniClusters has listed them all (its first InitDone).
    let listed = watcher(mcs.clone(), watcher::Config::default()).default_backoff();
    tokio::spawn(async move {
        futures::pin_mut!(listed);
        while let Some(ev) = listed.next().await {
            if let Ok(watcher::Event::InitDone) = ev {
                tracing::info!("watching MiniClusters; ready");
                ready.store(true, Ordering::SeqCst);
                break;
            }
        }
    });
    Controller::new(mcs, watcher::Config::default())
        .owns(jobs, watcher::Config::default())
        // Pod phases drive BrokersReady; pods belong to the Job, so map them by label.
        .watches(pods, broker_pods, |pod: Pod| {
            let name = pod.metadata.labels.as_ref()?.get(labels::INSTANCE)?.clone();
            Some(ObjectRef::<MiniCluster>::new(&name).within(pod.metadata.namespace.as_deref()?))
        })
        .shutdown_on_signal()
        .run(reconcile::reconcile, reconcile::error_policy, ctx)
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!("reconcile: {e}");
            }
        })
        .await;
    Ok(())
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// /healthz (the process answers), /readyz (the controller runs), /metrics (Prometheus).
pub fn router(metrics: Metrics, ready: Arc<AtomicBool>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(Shared { metrics, ready })
}

async fn readyz(State(s): State<Shared>) -> (StatusCode, &'static str) {
    if s.ready.load(Ordering::SeqCst) {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting")
    }
}

async fn metrics_text(
    State(s): State<Shared>,
) -> ([(axum::http::HeaderName, &'static str); 1], String) {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.render(),
    )
}
