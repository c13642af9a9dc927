//! flux-restful-client 0.2.1 and flux-restful 1.1.0's client (PyPI, installed into `.venv` by
//! `.ci/setup`) against our server: with the Flux stand-in in every run (with the default
//! answers and with `--strict`), and inside a real Flux instance (`real_flux_…`).

mod common;

use std::time::Duration;

use common::{Server, flux_or_fail, run_python};

const USER: &str = "fluxuser";
const PASSWORD: &str = "correct horse battery staple";
const SECRET: &str = "the shared secret";

fn auth_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("FLUX_USER", USER),
        ("FLUX_TOKEN", PASSWORD),
        ("FLUX_SECRET_KEY", SECRET),
        ("FLUX_REQUIRE_AUTH", "true"),
    ]
}

fn check_output(out: &str) {
    assert!(out.contains("ALL OK"), "{out}");
    for check in [
        "ok nodes",
        "ok token handshake",
        "ok submit",
        "ok job info",
        "ok output",
        "ok envars",
        "ok jobs",
        "ok jobs detail",
        "ok jobs detail listing",
        "ok search",
        "ok stream",
        "ok stream is live",
        "ok cancel",
        "ok canceled",
        "ok unknown job",
        "ok unknown job output",
        "ok unknown job cancel",
        "ok wrong password refused",
        "ok wrong secret refused",
    ] {
        assert!(out.lines().any(|l| l == check), "{check} missing:\n{out}");
    }
}

/// Both published clients against `server`; `answers` is what the server was started for
/// (`upstream`, its default, or `strict`).
fn run_clients(server: &Server, mode: &str, answers: &str) {
    for client in ["0.2.1", "1.1.0"] {
        let out = run_python(
            "client_check.py",
            &[&server.url, USER, PASSWORD, SECRET, mode, client, answers],
        );
        check_output(&out);
    }
    // No secret or password ever reaches the log.
    let logs = server.logs();
    for secret in [PASSWORD, SECRET] {
        assert!(!logs.contains(secret), "secret in the log:\n{logs}");
    }
    assert!(!logs.contains("eyJ"), "a token in the log:\n{logs}");
}

#[test]
fn published_clients_against_the_stand_in() {
    let server = Server::start(&["--backend", "stand-in"], &auth_env());
    run_clients(&server, "stand-in", "upstream");
}

#[test]
fn published_clients_against_the_stand_in_strict() {
    let server = Server::start(&["--backend", "stand-in", "--strict"], &auth_env());
    run_clients(&server, "stand-in", "strict");
}

#[test]
#[ignore = "needs a real flux: FLUX_BIN or flux on PATH (tests/run runs these when found)"]
fn real_flux_published_clients() {
    let mut server = Server::start_in_flux(&flux_or_fail(), &["--grace-seconds", "3"], &auth_env());
    run_clients(&server, "flux", "upstream");
    // The superuser stops the service; the instance (whose initial program we are) ends.
    let stop = run_python("stop.py", &[&server.url, USER, PASSWORD, SECRET]);
    assert!(stop.contains("Service stopping."), "{stop}");
    let mut ended = None;
    for _ in 0..300 {
        if let Ok(Some(s)) = server.child.try_wait() {
            ended = Some(s);
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = ended.unwrap_or_else(|| {
        panic!(
            "flux start did not end after service/stop:\n{}",
            server.logs()
        )
    });
    assert!(status.success(), "{status}: {}", server.logs());
}
