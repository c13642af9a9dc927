//! `entrypoint ready`: the broker pods' readiness probe. A broker is ready when its instance
//! runs (state RUN) — for a worker, once it has joined its parent — asked over the broker's
//! own local socket, so "ready" in a MiniCluster's status means brokers joined, not merely
//! containers running.

use std::time::Duration;

use minicluster_core::ClusterDescription;

/// `Ok(state)` when the broker runs; `Err(why)` otherwise.
pub async fn check(d: &ClusterDescription, timeout: Duration) -> Result<String, String> {
    let uri = format!("local://{}/local", d.paths.rundir);
    let opts = flux_client::ClientOptions {
        connect_timeout: timeout,
        timeout,
        ..Default::default()
    };
    let flux = flux_client::Client::connect_with(&uri, opts)
        .await
        .map_err(|e| format!("the broker does not answer on {uri}: {e}"))?;
    let state = flux
        .broker_state()
        .await
        .map_err(|e| format!("the broker's state: {e}"))?;
    if state.state == "run" {
        Ok(state.state)
    } else {
        Err(format!(
            "the broker is in state {} (ready once it runs)",
            state.state
        ))
    }
}
