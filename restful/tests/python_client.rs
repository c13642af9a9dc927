//! flux-restful-client from PyPI (installed into `.venv` by `.ci/setup`) against our server:
//! with the Flux stand-in always, and inside a real Flux instance when `flux` is on PATH (or
//! `$FLUX_BIN`).

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Server, flux, run_python};

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
        "ok wrong password refused",
        "ok wrong secret refused",
    ] {
        assert!(out.lines().any(|l| l == check), "{check} missing:\n{out}");
    }
}

#[test]
fn published_client_against_the_stand_in() {
    let server = Server::start(&["--backend", "stand-in"], &auth_env());
    for client in ["0.2.1", "1.1.0"] {
        let out = run_python(
            "client_check.py",
            &[&server.url, USER, PASSWORD, SECRET, "stand-in", client],
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
fn published_client_inside_a_real_flux_instance() {
    let Some(flux) = flux() else {
        println!(
            "SKIP: no flux on PATH or in $FLUX_BIN; the client test ran against the stand-in only"
        );
        return;
    };
    let mut cmd = Command::new(&flux);
    cmd.args([
        "start",
        "--test-size=1",
        env!("CARGO_BIN_EXE_minicluster-rest"),
    ]);
    let mut server = Server::start_with(cmd, &["--grace-seconds", "3"], &auth_env());
    for client in ["0.2.1", "1.1.0"] {
        let out = run_python(
            "client_check.py",
            &[&server.url, USER, PASSWORD, SECRET, "flux", client],
        );
        check_output(&out);
    }
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
