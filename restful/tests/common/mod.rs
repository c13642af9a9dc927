//! Shared by the integration tests: our binary on a free loopback port (alone or inside a real
//! Flux instance), the test venv's Python, and the real `flux` of `real_flux_` tests.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `$MC_TEST_PYTHON`, else the workspace venv; `None` (and the reason) when neither exists.
pub fn python() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("MC_TEST_PYTHON") {
        return Ok(p.into());
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    if venv.exists() {
        Ok(venv)
    } else {
        Err(format!(
            "{} is missing: run .ci/setup (it installs the Python test tools) or set MC_TEST_PYTHON",
            venv.display()
        ))
    }
}

/// The venv's Python, failing the test when the machine is not set up (as other crates do).
pub fn python_or_fail() -> PathBuf {
    python().unwrap_or_else(|e| panic!("{e}"))
}

pub fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/py")
        .join(name)
}

/// The real `flux` a `real_flux_` test runs: `$FLUX_BIN` (which must be a file), else `flux`
/// on PATH; the test fails, saying how to fix it, when there is none.
pub fn flux_or_fail() -> PathBuf {
    if let Some(p) = std::env::var_os("FLUX_BIN") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "FLUX_BIN={} is not a file: point it at flux-core's flux, or unset it",
            p.display()
        );
        return p;
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join("flux"))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| {
            panic!("this test needs a real flux: set FLUX_BIN or put flux-core's flux on PATH")
        })
}

/// A running `minicluster-rest`; killed when dropped.
pub struct Server {
    pub child: Child,
    pub url: String,
    /// Our server's own pid (the child may be `flux start`, which runs it).
    pub pid: u32,
    pub stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Server {
    /// Start our binary with `args` and `env` on 127.0.0.1 and a free port.
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Server {
        Self::start_with(
            Command::new(env!("CARGO_BIN_EXE_minicluster-rest")),
            args,
            env,
        )
    }

    /// Start our binary as the initial program of a one-broker Flux instance (`flux start
    /// --test-size=1`); the instance ends when our server does.
    pub fn start_in_flux(flux: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut cmd = Command::new(flux);
        cmd.args([
            "start",
            "--test-size=1",
            env!("CARGO_BIN_EXE_minicluster-rest"),
        ]);
        Self::start_with(cmd, args, env)
    }

    /// Start `cmd` (our binary, or a wrapper that runs it) and wait for its address line.
    pub fn start_with(mut cmd: Command, args: &[&str], env: &[(&str, &str)]) -> Server {
        cmd.args(["--host", "127.0.0.1", "--port", "0"])
            .args(args)
            .env_remove("FLUX_USER")
            .env_remove("FLUX_TOKEN")
            .env_remove("FLUX_SECRET_KEY")
            .env_remove("FLUX_REQUIRE_AUTH")
            .env_remove("FLUX_AUTH_BACKEND")
            .env("MINICLUSTER_REST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start minicluster-rest");
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let err_pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err_pipe).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("minicluster-rest: listening on ") {
                    let url = rest
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_string();
                    let pid = rest
                        .split("(pid ")
                        .nth(1)
                        .and_then(|p| p.trim_end_matches(')').parse::<u32>().ok())
                        .unwrap_or(0);
                    let _ = tx.send((url, pid));
                }
            }
        });
        let (url, pid) = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(u) => u,
            Err(_) => {
                let _ = child.kill();
                panic!("minicluster-rest did not start: {}", stderr.lock().unwrap());
            }
        };
        Server {
            child,
            url,
            pid,
            stderr,
        }
    }

    pub fn logs(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// SIGTERM to our server, then wait (at most `limit`) for the child to exit (with `flux
    /// start`, the instance ends when its initial program, our server, does).
    pub fn terminate(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        if let Ok(Some(s)) = self.child.try_wait() {
            return Some(s);
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.terminate(Duration::from_secs(10));
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run a Python script; panic with its output when it fails.
pub fn run_python(script_name: &str, args: &[&str]) -> String {
    let out = Command::new(python_or_fail())
        .arg(script(script_name))
        .args(args)
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{script_name} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    stdout
}
