//! Waiting for rank 0 before a worker starts its broker: until rank 0's name resolves and its
//! port accepts TCP, with bounded, jittered retries and a message per attempt.
//!
//! Only a name needs this. The broker's TBON connection (a ZeroMQ socket) retries by itself
//! every 100 ms until rank 0 listens, so a worker given rank 0's address (brokers sharing a
//! machine, on loopback ports) starts its broker at once, as `flux start` starts its brokers;
//! waiting there would only add our backoff to the join.

use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::signals::Stop;

/// Delay before retry `attempt` (1-based): 200 ms doubling to 5 s, each ±50% so that a
/// thousand workers do not knock in step.
pub fn backoff(attempt: u32) -> Duration {
    let base = 200u64
        .saturating_mul(1 << attempt.saturating_sub(1).min(5))
        .min(5_000);
    Duration::from_millis(base / 2 + fastrand::u64(0..=base))
}

/// `tcp://host:port` → (host, port). IPv6 hosts come in brackets.
pub fn parse_tcp_uri(uri: &str) -> Option<(String, u16)> {
    let rest = uri.strip_prefix("tcp://")?;
    let (host, port) = rest.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return None;
    }
    Some((host.to_string(), port.parse().ok()?))
}

/// One attempt: what is missing, or the address that answered.
fn probe(host: &str, port: u16) -> std::result::Result<SocketAddr, String> {
    let addrs: Vec<SocketAddr> = match (host, port).to_socket_addrs() {
        Ok(a) => a.collect(),
        Err(e) => return Err(format!("name {host} does not resolve yet ({e})")),
    };
    if addrs.is_empty() {
        return Err(format!("name {host} does not resolve yet"));
    }
    let mut last = String::new();
    for a in &addrs {
        match TcpStream::connect_timeout(a, Duration::from_secs(2)) {
            Ok(_) => return Ok(*a),
            Err(e) => {
                last = format!("{host} ({a}) does not accept connections on port {port} yet ({e})")
            }
        }
    }
    Err(last)
}

/// Waits until `uri`'s name resolves and its port accepts a TCP connection; returns the time
/// spent. An address (`tcp://127.0.0.1:9100`) is not waited for (see the module's note).
pub fn rank0_reachable(uri: &str, timeout: Duration, stop: &Stop) -> Result<Duration> {
    let (host, port) = parse_tcp_uri(uri).ok_or_else(|| Error::Command {
        field: "network.connect",
        reason: format!("{uri:?} is not a tcp://HOST:PORT address"),
        fix: "render the description again with `minicluster render`".into(),
    })?;
    if host.parse::<IpAddr>().is_ok() {
        tracing::debug!("rank 0 is at {host}:{port}: no name to wait for");
        return Ok(Duration::ZERO);
    }
    let started = Instant::now();
    let mut attempt = 0u32;
    loop {
        stop.check()?;
        attempt += 1;
        match probe(&host, port) {
            Ok(addr) => {
                let waited = started.elapsed();
                tracing::info!(
                    waited_ms = waited.as_millis() as u64,
                    attempts = attempt,
                    "rank 0 is reachable at {addr}"
                );
                return Ok(waited);
            }
            Err(missing) => {
                if started.elapsed() >= timeout {
                    return Err(Error::Timeout {
                        what: format!("rank 0 at {uri}: {missing}"),
                        after: timeout,
                        fix: "check that rank 0 is running and that the headless Service publishes not-ready addresses, or raise --wait-timeout".into(),
                    });
                }
                tracing::info!(
                    attempt,
                    waited_ms = started.elapsed().as_millis() as u64,
                    "waiting for rank 0: {missing}"
                );
                stop.sleep(backoff(attempt))?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        for attempt in 1..40 {
            let d = backoff(attempt).as_millis() as u64;
            let base = (200u64 << (attempt - 1).min(5)).min(5000);
            assert!(
                d >= base / 2 && d <= base + base / 2,
                "attempt {attempt}: {d}"
            );
        }
        let spread: std::collections::HashSet<_> = (0..20).map(|_| backoff(3)).collect();
        assert!(spread.len() > 1, "no jitter");
    }

    #[test]
    fn uris() {
        assert_eq!(
            parse_tcp_uri("tcp://mc-0.flux-service.default.svc.cluster.local:8050"),
            Some(("mc-0.flux-service.default.svc.cluster.local".into(), 8050))
        );
        assert_eq!(parse_tcp_uri("tcp://[::1]:9"), Some(("::1".into(), 9)));
        assert_eq!(parse_tcp_uri("ipc:///x"), None);
        assert_eq!(parse_tcp_uri("tcp://h:port"), None);
    }

    #[test]
    fn reachable_port_and_bounded_wait() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        // A name: resolved, then connected to.
        let uri = format!("tcp://localhost:{port}");
        rank0_reachable(&uri, Duration::from_secs(5), &Stop::none()).unwrap();
        drop(l);
        let e = rank0_reachable(&uri, Duration::from_millis(400), &Stop::none())
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not accept connections"), "{e}");
        let e = rank0_reachable(
            "tcp://no-such-host.invalid:1",
            Duration::from_millis(300),
            &Stop::none(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("does not resolve"), "{e}");
    }

    #[test]
    fn an_address_is_not_waited_for() {
        // Nothing listens there: the broker's own connection retries, not we.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        for uri in [
            format!("tcp://127.0.0.1:{port}"),
            format!("tcp://[::1]:{port}"),
        ] {
            let waited = rank0_reachable(&uri, Duration::from_secs(5), &Stop::none()).unwrap();
            assert_eq!(waited, Duration::ZERO, "{uri}");
        }
    }
}
