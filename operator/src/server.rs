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
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, watcher};
use kube::{Api, Client};
use minicluster_core::MiniCluster;

use crate::build::BuildOptions;
use crate::error::Result;
use crate::labels;
use crate::metrics::Metrics;
use crate::reconcile::{self, Context};

#[derive(Clone)]
struct Shared {
    metrics: Metrics,
    ready: Arc<AtomicBool>,
}

/// Runs the controller until SIGTERM/SIGINT, serving /healthz, /readyz and /metrics on `addr`.
pub async fn run(addr: SocketAddr, build: BuildOptions, namespace: Option<String>) -> Result<()> {
    let client = Client::try_default().await.map_err(|e| {
        let kubeconfig = std::env::var("KUBECONFIG").unwrap_or_else(|_| "~/.kube/config".into());
        tracing::debug!("inferring the Kubernetes config: {e}");
        crate::Error::NoCluster(format!(
            "not in a pod (KUBERNETES_SERVICE_HOST is unset) and no usable kubeconfig at {kubeconfig}"
        ))
    })?;
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
    });
    let broker_pods = watcher::Config::default().labels(&format!("{}=broker", labels::COMPONENT));
    ready.store(true, Ordering::SeqCst);
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
