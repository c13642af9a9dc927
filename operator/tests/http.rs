//! The operator's probes and metrics over real HTTP on loopback.

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use minicluster_operator::metrics::Metrics;
use minicluster_operator::server::router;

fn get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn probes_and_metrics() {
    let metrics = Metrics::default();
    let ready = Arc::new(AtomicBool::new(false));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(axum::serve(listener, router(metrics.clone(), ready.clone())).into_future());

    let r = tokio::task::spawn_blocking(move || get(addr, "/healthz"))
        .await
        .unwrap();
    assert!(r.starts_with("HTTP/1.1 200") && r.ends_with("ok"), "{r}");
    let r = tokio::task::spawn_blocking(move || get(addr, "/readyz"))
        .await
        .unwrap();
    assert!(
        r.starts_with("HTTP/1.1 503"),
        "not ready before the controller runs: {r}"
    );
    ready.store(true, Ordering::SeqCst);
    let r = tokio::task::spawn_blocking(move || get(addr, "/readyz"))
        .await
        .unwrap();
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");

    metrics.observe(Duration::from_millis(3), None);
    metrics.observe(
        Duration::from_millis(5),
        Some(&minicluster_operator::Error::Metadata("name")),
    );
    let r = tokio::task::spawn_blocking(move || get(addr, "/metrics"))
        .await
        .unwrap();
    assert!(r.contains("minicluster_operator_reconciles_total 2"), "{r}");
    assert!(
        r.contains("minicluster_operator_reconcile_failures_total{reason=\"metadata\"} 1"),
        "{r}"
    );
    assert!(
        r.contains("minicluster_operator_reconcile_duration_seconds_count 2"),
        "{r}"
    );
}
