//! Prometheus metrics of the controller: reconciles, failures by reason, durations.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::error::Error;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: String,
}

#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    reconciles: Counter,
    failures: Family<Reason, Counter>,
    duration: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("minicluster_operator");
        let reconciles = Counter::default();
        let failures = Family::<Reason, Counter>::default();
        // 0.5 ms … ~16 s, doubling: fine enough to read a p99 from.
        let duration = Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
            0.0005, 2.0, 16,
        ));
        registry.register("reconciles", "Reconciles run", reconciles.clone());
        registry.register(
            "reconcile_failures",
            "Reconciles that failed, by reason",
            failures.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time per reconcile",
            duration.clone(),
        );
        Metrics {
            registry: Arc::new(registry),
            reconciles,
            failures,
            duration,
        }
    }
}

impl Metrics {
    pub fn observe(&self, took: Duration, err: Option<&Error>) {
        self.reconciles.inc();
        self.duration.observe(took.as_secs_f64());
        if let Some(e) = err {
            self.failures
                .get_or_create(&Reason {
                    reason: reason(e).into(),
                })
                .inc();
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

fn reason(e: &Error) -> &'static str {
    match e {
        Error::Core(_) => "invalid",
        Error::Kube(kube::Error::Api(_)) => "api",
        Error::Kube(_) => "connection",
        Error::Build { .. } => "build",
        Error::Metadata(_) => "metadata",
        Error::NoCluster(_) => "no-cluster",
        Error::Forbidden { .. } => "forbidden",
    }
}
