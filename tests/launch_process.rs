//! `minicluster run/up/status/logs/down` with the process launcher: a 4-broker MiniCluster of
//! local processes with the `flux` stand-in always, and with a real `flux` in the `real_flux_`
//! tests (ignored unless asked for; `tests/run` runs them when flux is found). Nothing may be
//! left behind.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{bin, text};

struct Env {
    state: tempfile::TempDir,
    flux: PathBuf,
}

impl Env {
    fn new(flux: PathBuf) -> Env {
        Env {
            state: tempfile::tempdir().unwrap(),
            flux,
        }
    }
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_minicluster"));
        c.args(args)
            .env("MINICLUSTER_STATE_DIR", self.state.path())
            .env("FLUX_BIN", &self.flux)
            .env("MINICLUSTER_ENTRYPOINT", bin("entrypoint"));
        c
    }
    fn out(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }
    /// No process mentions the state directory, and it holds nothing.
    fn assert_nothing_left(&self) {
        let dir = self.state.path().display().to_string();
        let until = Instant::now() + Duration::from_secs(5);
        loop {
            let left = processes_mentioning(&dir);
            if left.is_empty() {
                break;
            }
            assert!(Instant::now() < until, "processes left behind: {left:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
        let files: Vec<_> = std::fs::read_dir(self.state.path())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        assert!(files.is_empty(), "files left behind: {files:?}");
    }
}

fn processes_mentioning(s: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // Zombies are not running anything.
            let zombie = state
                .rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('Z'));
            (cmd.contains(s) && !zombie).then(|| format!("{pid}: {cmd}"))
        })
        .collect()
}

fn run_scenario(flux: PathBuf, real: bool) {
    let env = Env::new(flux);
    let out = env.out(&["run", "--size", "4", "--", "hostname"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).lines().count(),
        4,
        "{}",
        text(&out.stdout)
    );
    assert!(
        text(&out.stderr).contains("4/4 brokers started"),
        "{}",
        text(&out.stderr)
    );
    if real {
        // Counted over Flux's protocol on rank 0's socket while the command runs.
        assert!(
            text(&out.stderr).contains("4/4 brokers joined"),
            "{}",
            text(&out.stderr)
        );
    }
    env.assert_nothing_left();
    let out = env.out(&["run", "--size", "4", "--", "sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    env.assert_nothing_left();
}

#[test]
fn standin_run_returns_output_and_exit_code_and_leaves_nothing() {
    run_scenario(bin("flux-standin"), false);
}

#[test]
#[ignore = "needs a real flux: FLUX_BIN or flux on PATH (tests/run runs these when found)"]
fn real_flux_run_returns_output_and_exit_code_and_leaves_nothing() {
    let flux = minicluster_testkit::require::flux();
    run_scenario(flux, true);
}

fn up_status_logs_down(flux: PathBuf, real: bool) {
    let env = Env::new(flux);
    let out = env.out(&["up", "--size", "4", "--name", "persist", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    if real {
        // Counted over Flux's own protocol on rank 0's socket.
        let joined = env.out(&["up", "--size", "2", "--name", "persist2"]);
        assert!(joined.status.success(), "{}", text(&joined.stderr));
        assert!(
            text(&joined.stderr).contains("2/2 brokers joined"),
            "{}",
            text(&joined.stderr)
        );
        assert!(env.out(&["down", "persist2"]).status.success());
    }
    // Each rank's broker: flux-broker itself, in the environment `flux env` gave once; the
    // stand-in has no `flux env`, so its brokers run as `flux broker`.
    let dir = format!("{}/", env.state.path().join("persist").display());
    let brokers: Vec<String> = processes_mentioning(&dir)
        .into_iter()
        .filter(|p| p.contains("--config-path="))
        .collect();
    assert_eq!(brokers.len(), 4, "{brokers:?}");
    let form = if real {
        "/flux-broker --config-path="
    } else {
        "flux-standin broker --config-path="
    };
    assert!(brokers.iter().all(|b| b.contains(form)), "{brokers:?}");
    let record: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(record["name"], "persist");
    assert!(record["flux_uri"].as_str().unwrap().starts_with("local://"));

    let out = env.out(&["status", "--json"]);
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows[0]["running"], 4, "{rows}");

    let taken = env.out(&["up", "--size", "2", "--name", "persist"]);
    assert_eq!(taken.status.code(), Some(1));
    assert!(
        text(&taken.stderr).contains("already running"),
        "{}",
        text(&taken.stderr)
    );

    let out = env.out(&["logs", "persist", "--rank", "1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    let out = env.out(&["down", "persist"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    env.assert_nothing_left();
    let again = env.out(&["down", "persist"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(text(&again.stderr).contains("no MiniCluster named persist"));
}

#[test]
fn standin_up_status_logs_down() {
    up_status_logs_down(bin("flux-standin"), false);
}

#[test]
#[ignore = "needs a real flux: FLUX_BIN or flux on PATH (tests/run runs these when found)"]
fn real_flux_up_status_logs_down() {
    let flux = minicluster_testkit::require::flux();
    up_status_logs_down(flux, true);
}

#[test]
fn down_cleans_up_after_the_cli_is_killed() {
    let env = Env::new(bin("flux-standin"));
    let mut cli = env
        .cmd(&[
            "run", "--size", "4", "--name", "killed", "--", "sleep", "60",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let out = env.out(&["status", "killed", "--json"]);
        let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if rows[0]["running"] == 4 {
            break;
        }
        assert!(Instant::now() < until, "the brokers never all ran");
        std::thread::sleep(Duration::from_millis(100));
    }
    cli.kill().unwrap(); // SIGKILL: no chance to clean up
    cli.wait().unwrap();
    let dir = env.state.path().display().to_string();
    assert!(
        !processes_mentioning(&dir).is_empty(),
        "the brokers should outlive the killed CLI"
    );
    let out = env.out(&["down", "killed"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    env.assert_nothing_left();
}

#[test]
fn bad_requests_get_one_clear_line_and_start_nothing() {
    let env = Env::new(bin("flux-standin"));
    let one_line = |out: &Output, want: &str| {
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(errors.len(), 1, "{err}");
        assert!(err.contains(want), "want {want:?} in {err}");
    };
    one_line(&env.out(&["run", "--size", "0", "--", "true"]), "spec.size");
    one_line(&env.out(&["run", "--size", "2"]), "command");
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port().to_string();
    one_line(
        &env.out(&["run", "--size", "2", "--port", &port, "--", "true"]),
        "is in use",
    );
    one_line(
        &env.out(&[
            "run",
            "--launcher",
            "process",
            "--entrypoint",
            "/nonexistent/entrypoint",
            "--size",
            "2",
            "--",
            "true",
        ]),
        "/nonexistent/entrypoint",
    );
    env.assert_nothing_left();
}

/// Ctrl-C (SIGINT), SIGTERM (a CI runner cancelling a step) and SIGHUP (a closed terminal)
/// all stop the run the same way and leave nothing.
fn signal_stops_the_run_and_leaves_nothing(signal: &str) {
    let env = Env::new(bin("flux-standin"));
    let standin = bin("flux-standin");
    let cli = env
        .cmd(&[
            "run",
            "--size",
            "3",
            "--name",
            "interrupted",
            "--",
            standin.to_str().unwrap(),
            "pause",
            "600",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let out = env.out(&["status", "interrupted", "--json"]);
        let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if rows[0]["running"] == 3 {
            break;
        }
        assert!(Instant::now() < until, "the brokers never all ran");
        std::thread::sleep(Duration::from_millis(100));
    }
    let t = Instant::now();
    let sent = Command::new("kill")
        .args([&format!("-{signal}"), &cli.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let out = cli.wait_with_output().unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "{signal}: took {:?}",
        t.elapsed()
    );
    assert!(
        text(&out.stderr).contains("stopping: SIGTERM to rank 0"),
        "{signal}: {}",
        text(&out.stderr)
    );
    env.assert_nothing_left();
}

#[test]
fn ctrl_c_stops_the_run_and_leaves_nothing() {
    signal_stops_the_run_and_leaves_nothing("INT");
}

#[test]
fn sigterm_stops_the_run_and_leaves_nothing() {
    signal_stops_the_run_and_leaves_nothing("TERM");
}

#[test]
fn sighup_stops_the_run_and_leaves_nothing() {
    signal_stops_the_run_and_leaves_nothing("HUP");
}

#[test]
#[ignore = "needs a real flux: FLUX_BIN or flux on PATH (tests/run runs these when found)"]
fn real_flux_up_with_the_rest_server_on_rank0() {
    let flux = minicluster_testkit::require::flux();
    let env = Env::new(flux);
    let out = env.out(&["up", "--size", "2", "--name", "rest", "--rest"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let port: u16 = stdout
        .split("http://127.0.0.1:")
        .nth(1)
        .and_then(|s| s.split('/').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no REST URL in: {stdout}"));
    // flux-restful-api's /v1/nodes, answered by Flux through our server on rank 0.
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET /v1/nodes HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains("\"nodes\""), "{reply}");
    assert!(env.out(&["down", "rest"]).status.success());
    env.assert_nothing_left();
}
