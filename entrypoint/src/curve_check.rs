//! Before a worker starts its broker: does rank 0 hold this MiniCluster's certificate?
//!
//! A broker given another MiniCluster's certificate connects to rank 0, fails the CURVE
//! handshake and retries forever without a word (neither libzmq nor Flux logs it), and the
//! MiniCluster waits at "1/N brokers". So the worker first does the handshake itself
//! ([`curve_handshake`]) with the certificate it will give its broker, and stops with the
//! cause and the fix when rank 0 turns it down.

use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use minicluster_core::CurveCert;

use crate::curve_handshake::{self, Failure};
use crate::error::{Error, Result};
use crate::plan::WaitTarget;
use crate::signals::Stop;
use crate::wait::parse_tcp_uri;

/// Between tries while rank 0 does not answer (not listening yet, or restarting): from 10 ms,
/// as brokers sharing a machine start within milliseconds of each other, doubling to ZeroMQ's
/// reconnect interval, so a worker knocks no more often than its broker would.
const FIRST_RETRY: Duration = Duration::from_millis(10);
const RETRY: Duration = Duration::from_millis(100);

/// Checks that rank 0 at `wait.uri` holds the keypair of `cert_text` and returns the time it
/// took. Only an answer fails the check: a refusal seen twice in a row (once could be rank 0
/// restarting mid-handshake) or a server that is not ZMTP. A connection that fails or a
/// handshake with no answer within [`curve_handshake::LIMIT`] (rank 0 starting, or busy on a
/// loaded node) is tried again for up to `wait.timeout_secs`. `name` is the MiniCluster's,
/// for the fix.
pub fn rank0_holds_cert(
    name: &str,
    wait: &WaitTarget,
    cert_text: &str,
    stop: &Stop,
) -> Result<Duration> {
    check(name, wait, cert_text, stop, curve_handshake::LIMIT)
}

/// [`rank0_holds_cert`] with `limit` for each handshake.
fn check(
    name: &str,
    wait: &WaitTarget,
    cert_text: &str,
    stop: &Stop,
    limit: Duration,
) -> Result<Duration> {
    let (host, port) = parse_tcp_uri(&wait.uri).ok_or_else(|| Error::Command {
        field: "network.connect",
        reason: format!("{:?} is not a tcp://HOST:PORT address", wait.uri),
        fix: "render the description again with `minicluster render`".into(),
    })?;
    let cert = CurveCert::parse(cert_text)?;
    let endpoint = format!("{host}:{port}");
    let patience = Duration::from_secs(wait.timeout_secs);
    let started = Instant::now();
    let mut refused_before = false;
    let mut pause = FIRST_RETRY;
    loop {
        stop.check()?;
        let t = Instant::now();
        match handshake_within(&host, port, &cert, limit) {
            Ok(()) => {
                tracing::info!(
                    handshake_us = t.elapsed().as_micros() as u64,
                    "rank 0 ({endpoint}) holds this MiniCluster's certificate"
                );
                return Ok(started.elapsed());
            }
            Err(Failure::Refused(r)) if !refused_before => {
                tracing::debug!("CURVE check: rank 0 ({endpoint}) refused once ({r:?}); once more");
                refused_before = true;
                stop.sleep(pause)?;
                pause = (pause * 2).min(RETRY);
            }
            Err(f @ (Failure::Network(_) | Failure::TimedOut { .. }))
                if started.elapsed() < patience =>
            {
                // Not listening yet is the common case while rank 0 starts: quiet. A
                // handshake with no answer is worth a line.
                if matches!(f, Failure::TimedOut { .. }) {
                    tracing::info!("CURVE check: no answer from rank 0 ({endpoint}) yet: {f}");
                } else {
                    tracing::debug!("CURVE check: rank 0 ({endpoint}) not reachable yet: {f}");
                }
                refused_before = false;
                stop.sleep(pause)?;
                pause = (pause * 2).min(RETRY);
            }
            Err(failure) => {
                return Err(Error::Rank0Cert {
                    fix: fix(&failure, name, &wait.uri),
                    endpoint,
                    failure,
                });
            }
        }
    }
}

/// One connection and handshake with rank 0, all within [`curve_handshake::LIMIT`].
pub fn handshake(host: &str, port: u16, cert: &CurveCert) -> std::result::Result<(), Failure> {
    handshake_within(host, port, cert, curve_handshake::LIMIT)
}

fn handshake_within(
    host: &str,
    port: u16,
    cert: &CurveCert,
    limit: Duration,
) -> std::result::Result<(), Failure> {
    let deadline = Instant::now() + limit;
    let mut last = None;
    for addr in (host, port).to_socket_addrs().map_err(Failure::Network)? {
        let left = deadline.saturating_duration_since(Instant::now());
        match TcpStream::connect_timeout(&addr, left.max(Duration::from_millis(1))) {
            Ok(stream) => {
                // Two small writes, each waiting for an answer: no batching wanted.
                let _ = stream.set_nodelay(true);
                return curve_handshake::client(&stream, cert, deadline);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(Failure::Network(last.unwrap_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::NotFound, "the name has no address")
    })))
}

/// What `failure` says about rank 0, after "rank 0 (HOST:PORT)".
pub fn predicate(failure: &Failure) -> String {
    match failure {
        Failure::Refused(_) => format!("does not hold this MiniCluster's certificate: {failure}"),
        Failure::TimedOut { .. } | Failure::NotZmtp(_) => {
            format!("did not answer the CURVE handshake as a Flux broker: {failure}")
        }
        Failure::Network(_) => format!("cannot be reached for the CURVE handshake: {failure}"),
        Failure::Randomness(_) => format!("was not asked for the CURVE handshake: {failure}"),
    }
}

fn fix(failure: &Failure, name: &str, uri: &str) -> String {
    match failure {
        Failure::Refused(_) => format!(
            "give every broker the same certificate — the Secret {name}-curve-cert, or spec.flux.curveCert"
        ),
        Failure::TimedOut { .. } | Failure::NotZmtp(_) => format!(
            "check that {uri} is rank 0's Flux overlay port (the description's network.connect) and that nothing else listens there"
        ),
        Failure::Network(_) => {
            "check that rank 0 is running and reachable from here, or raise --wait-timeout".into()
        }
        Failure::Randomness(_) => "run the entrypoint where the kernel's getrandom works".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn target(port: u16, timeout_secs: u64) -> WaitTarget {
        WaitTarget {
            uri: format!("tcp://127.0.0.1:{port}"),
            timeout_secs,
            cert_check: true,
        }
    }

    /// A CURVE server (our own half) holding `cert`, for one connection.
    fn server(cert: CurveCert) -> (u16, std::thread::JoinHandle<()>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let t = std::thread::spawn(move || {
            let (s, _) = l.accept().unwrap();
            let deadline = Instant::now() + curve_handshake::LIMIT;
            let _ = curve_handshake::serve(&s, &cert, deadline);
        });
        (port, t)
    }

    #[test]
    fn the_same_certificate_passes() {
        // Against libzmq, and the refusal of another certificate: tests/curve_check.rs.
        let ours = CurveCert::generate("mc-0").unwrap();
        let (port, t) = server(ours.clone());
        let took =
            rank0_holds_cert("mc", &target(port, 5), &ours.to_text(), &Stop::none()).unwrap();
        t.join().unwrap();
        assert!(took < curve_handshake::LIMIT, "{took:?}");
    }

    #[test]
    fn no_answer_is_tried_again_and_one_refusal_is_not_the_verdict() {
        let ours = CurveCert::generate("mc-0").unwrap();
        let stranger = CurveCert::generate("other-0").unwrap();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let server_cert = ours.clone();
        let t = std::thread::spawn(move || {
            // A busy rank 0 that says nothing, then one restarting with another
            // certificate, then the right one.
            let (silent, _) = l.accept().unwrap();
            let (s, _) = l.accept().unwrap();
            drop(silent);
            let deadline = Instant::now() + curve_handshake::LIMIT;
            assert_eq!(
                curve_handshake::serve(&s, &stranger, deadline).unwrap(),
                curve_handshake::Answer::Refused
            );
            drop(s);
            let (s, _) = l.accept().unwrap();
            let deadline = Instant::now() + curve_handshake::LIMIT;
            curve_handshake::serve(&s, &server_cert, deadline).unwrap()
        });
        let limit = Duration::from_millis(200);
        check(
            "mc",
            &target(port, 10),
            &ours.to_text(),
            &Stop::none(),
            limit,
        )
        .unwrap();
        assert_eq!(t.join().unwrap(), curve_handshake::Answer::Welcomed);
    }

    #[test]
    fn two_refusals_in_a_row_fail_at_once_with_the_fix() {
        let stranger = CurveCert::generate("other-0").unwrap();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let t = std::thread::spawn(move || {
            for _ in 0..2 {
                let (s, _) = l.accept().unwrap();
                let deadline = Instant::now() + curve_handshake::LIMIT;
                let _ = curve_handshake::serve(&s, &stranger, deadline);
            }
        });
        let ours = CurveCert::generate("mc-0").unwrap();
        let started = Instant::now();
        let e =
            rank0_holds_cert("mc", &target(port, 600), &ours.to_text(), &Stop::none()).unwrap_err();
        t.join().unwrap();
        assert!(started.elapsed() < Duration::from_secs(5));
        let text = e.to_string();
        assert!(
            text.contains("does not hold this MiniCluster's certificate")
                && text.contains("the Secret mc-curve-cert"),
            "{text}"
        );
    }

    #[test]
    fn a_refused_connection_is_tried_again_until_rank0_listens() {
        let cert = CurveCert::generate("mc-0").unwrap();
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let late = cert.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            let l = TcpListener::bind(("127.0.0.1", port)).unwrap();
            let (s, _) = l.accept().unwrap();
            let _ = curve_handshake::serve(&s, &late, Instant::now() + curve_handshake::LIMIT);
        });
        rank0_holds_cert("mc", &target(port, 10), &cert.to_text(), &Stop::none()).unwrap();
        t.join().unwrap();

        // With no patience left, nothing listening is a network error at once.
        let e =
            rank0_holds_cert("mc", &target(port, 0), &cert.to_text(), &Stop::none()).unwrap_err();
        assert!(
            matches!(
                e,
                Error::Rank0Cert {
                    failure: Failure::Network(_),
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(e.to_string().contains("cannot be reached"), "{e}");
    }
}
