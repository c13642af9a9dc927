//! The check that rank 0 holds this MiniCluster's certificate, against libzmq itself (a
//! pyzmq CURVE server from `.venv`, `curve_check.py`) and, in the `real_flux_` test, against
//! a real Flux broker in a 2-broker MiniCluster of entrypoint processes.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use minicluster_core::CurveCert;
use minicluster_entrypoint::Error;
use minicluster_entrypoint::curve_check::{handshake, rank0_holds_cert};
use minicluster_entrypoint::curve_handshake::{Failure, Refusal};
use minicluster_entrypoint::plan::WaitTarget;
use minicluster_entrypoint::signals::Stop;

/// pyzmq's ROUTER socket as a CURVE server holding a certificate; stopped on drop.
struct Libzmq {
    child: Child,
    out: BufReader<ChildStdout>,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Libzmq {
    fn serving(cert: &CurveCert) -> Libzmq {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("curve.cert");
        cert.write(&path).unwrap();
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/curve_check.py");
        let mut child = Command::new(minicluster_testkit::require::python())
            .arg(script)
            .arg(&path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let port = line.trim().parse().unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("curve_check.py printed no port (is pyzmq in .venv? run .ci/setup): {line:?}")
        });
        Libzmq {
            child,
            out,
            port,
            _dir: dir,
        }
    }

    /// Stops the server; the handshake events libzmq reported (`event NAME VALUE`).
    fn events(mut self) -> Vec<String> {
        drop(self.child.stdin.take());
        let mut rest = String::new();
        self.out.read_to_string(&mut rest).unwrap();
        assert!(self.child.wait().unwrap().success(), "{rest}");
        rest.lines().map(String::from).collect()
    }
}

impl Drop for Libzmq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn target(port: u16) -> WaitTarget {
    WaitTarget {
        uri: format!("tcp://127.0.0.1:{port}"),
        timeout_secs: 0,
        cert_check: true,
    }
}

#[test]
fn libzmq_welcomes_a_worker_with_the_same_certificate() {
    let cert = CurveCert::generate("mc-0").unwrap();
    let server = Libzmq::serving(&cert);
    handshake("127.0.0.1", server.port, &cert).unwrap();
    // Through the entrypoint's step too: the same answer, and the time it took.
    rank0_holds_cert("mc", &target(server.port), &cert.to_text(), &Stop::none()).unwrap();
    // To libzmq each was a connection that went away during the handshake: no protocol or
    // authentication failure (a Flux broker logs these only with tbon.zmqdebug).
    let events = server.events();
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(
        events
            .iter()
            .all(|e| e.starts_with("event HANDSHAKE_FAILED_NO_DETAIL ")),
        "{events:?}"
    );
}

#[test]
fn libzmq_refuses_a_worker_with_another_certificate() {
    let ours = CurveCert::generate("mc-0").unwrap();
    let stranger = CurveCert::generate("other-0").unwrap();
    let server = Libzmq::serving(&ours);
    let failure = handshake("127.0.0.1", server.port, &stranger).unwrap_err();
    assert!(
        matches!(failure, Failure::Refused(Refusal::Closed)),
        "{failure:?}"
    );
    let e = rank0_holds_cert(
        "mc",
        &target(server.port),
        &stranger.to_text(),
        &Stop::none(),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "rank 0 (127.0.0.1:{}) does not hold this MiniCluster's certificate: the CURVE handshake was refused (fix: give every broker the same certificate — the Secret mc-curve-cert, or spec.flux.curveCert)",
            server.port
        )
    );
    let text = stranger.to_text();
    let secret = text.lines().find(|l| l.contains("secret-key")).unwrap();
    assert!(!format!("{e} {e:?}").contains(secret.split('"').nth(1).unwrap()));
    // libzmq's own reason: it could not open HELLO's box with its secret key (once for
    // `handshake`, twice for the check, which takes a refusal as final when it comes again).
    let events = server.events();
    let cryptographic = "event HANDSHAKE_FAILED_PROTOCOL PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC";
    assert_eq!(
        events.iter().filter(|e| *e == cryptographic).count(),
        3,
        "{events:?}"
    );
}

#[test]
fn a_peer_that_is_not_zmtp_is_named_with_the_fix() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let t = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut request = [0u8; 64];
        s.read_exact(&mut request).unwrap();
        s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").unwrap();
    });
    let cert = CurveCert::generate("mc-0").unwrap();
    let e = rank0_holds_cert("mc", &target(port), &cert.to_text(), &Stop::none()).unwrap_err();
    t.join().unwrap();
    assert!(
        matches!(
            e,
            Error::Rank0Cert {
                failure: Failure::NotZmtp(_),
                ..
            }
        ),
        "{e:?}"
    );
    let text = e.to_string();
    assert!(
        text.contains("not a ZMTP 3 CURVE server: it sent \"HTTP/1.1 4\"")
            && text.contains("is rank 0's Flux overlay port"),
        "{text}"
    );
}

#[test]
fn nothing_listening_is_a_network_error() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let cert = CurveCert::generate("mc-0").unwrap();
    let failure = handshake("127.0.0.1", port, &cert).unwrap_err();
    match &failure {
        Failure::Network(io) => assert_eq!(io.kind(), std::io::ErrorKind::ConnectionRefused),
        other => panic!("{other:?}"),
    }
    let e = rank0_holds_cert("mc", &target(port), &cert.to_text(), &Stop::none()).unwrap_err();
    assert!(
        e.to_string()
            .starts_with(&format!("rank 0 (127.0.0.1:{port}) cannot be reached")),
        "{e}"
    );
}

// With a real Flux.

/// Runs `c`'s broker `rank` (its entrypoint) with the output in `log`.
fn spawn_logged(mut cmd: Command, log: &Path) -> Child {
    let f = std::fs::File::create(log).unwrap();
    cmd.stdout(f.try_clone().unwrap())
        .stderr(f)
        .spawn()
        .unwrap()
}

#[test]
#[ignore = "needs a real flux: FLUX_BIN or flux on PATH (tests/run runs these when found)"]
fn real_flux_a_worker_with_another_cert_exits_125_and_the_right_one_joins() {
    let flux = minicluster_testkit::require::flux();
    let c = Cluster::new(
        &spec_yaml(
            2,
            "",
            "      launcher: true\n      command: flux run -N2 hostname\n",
        ),
        &flux,
    );
    let rank0 = spawn_logged(c.command(0), &c.path("rank-0.log"));

    // Rank 1 with a certificate of its own: its entrypoint stops before its broker starts.
    let other = c.path("other.cert");
    CurveCert::generate("stranger")
        .unwrap()
        .write(&other)
        .unwrap();
    let t = Instant::now();
    let stranger = c
        .command_at(1, &other, &c.path("stranger"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_output(stranger, Duration::from_secs(10));
    let err = String::from_utf8_lossy(&out.stderr);
    eprintln!("the stranger ended after {:?}", t.elapsed());
    assert_eq!(out.status.code(), Some(125), "{err}");
    let cause = "does not hold this MiniCluster's certificate: the CURVE handshake was refused (fix: give every broker the same certificate — the Secret mc-curve-cert, or spec.flux.curveCert)";
    let error_lines: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("entrypoint: error:"))
        .collect();
    assert_eq!(error_lines.len(), 1, "{err}");
    assert!(error_lines[0].contains(cause), "{err}");

    // The right certificate: rank 1 joins and the command runs on both brokers.
    let mut workers = vec![spawn_logged(c.command(1), &c.path("rank-1.log"))];
    let out = wait_output(rank0, Duration::from_secs(90));
    let log0 = std::fs::read_to_string(c.path("rank-0.log")).unwrap_or_default();
    assert_eq!(
        out.status.code(),
        Some(0),
        "rank 0:\n{log0}\nrank 1:\n{}",
        c.log(1)
    );
    assert_eq!(wait_all(&mut workers, Duration::from_secs(30)), vec![0]);
    assert!(
        c.log(1).contains("rank 0 (127.0.0.1:")
            && c.log(1).contains("holds this MiniCluster's certificate"),
        "{}",
        c.log(1)
    );
    let host = nix::unistd::gethostname().unwrap();
    assert_eq!(
        log0.lines()
            .filter(|l| *l == host.to_string_lossy())
            .count(),
        2,
        "{log0}"
    );
}
