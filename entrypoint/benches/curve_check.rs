//! What the worker's check of rank 0's certificate costs: one CURVE handshake (connect, ZMTP
//! greeting, HELLO, WELCOME) with a real Flux broker's overlay port on loopback, next to a
//! bare TCP connect to the same port. Also counts what the broker logged meanwhile (at its
//! default log level). Needs a real flux (`$FLUX_BIN` or PATH) and exits non-zero without.
//!
//! `cargo bench -p minicluster-entrypoint --bench curve_check` (`RUNS=N`, default 500)

use std::net::{TcpListener, TcpStream};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use minicluster_core::{CurveCert, DescribeOptions, describe, spec};
use minicluster_entrypoint::curve_check::handshake;

const ENTRYPOINT: &str = env!("CARGO_BIN_EXE_entrypoint");

fn main() -> ExitCode {
    let Some(flux) = minicluster_testkit::require::find_flux() else {
        eprintln!("curve_check bench: no real flux (set FLUX_BIN or put flux on PATH)");
        return ExitCode::FAILURE;
    };
    let runs: usize = std::env::var("RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(500);
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    // Rank 0 of two, with no command: its broker binds the overlay and waits for rank 1.
    let yaml = "apiVersion: flux-framework.org/v1alpha2\nkind: MiniCluster\nmetadata: {name: mc}\nspec:\n  size: 2\n  interactive: true\n  flux: {container: {disable: true}}\n  containers:\n    - {image: x, command: ''}\n";
    let mc = spec::load_bytes("bench", yaml.as_bytes()).unwrap();
    let opts = DescribeOptions {
        loopback_base_port: Some(port),
        ..DescribeOptions::default()
    };
    let description = dir.path().join("description.json");
    std::fs::write(
        &description,
        describe(&mc.clusters[0].cluster, &opts).unwrap().to_json(),
    )
    .unwrap();
    let cert_path = dir.path().join("curve.cert");
    let cert = CurveCert::generate("mc-0").unwrap();
    cert.write(&cert_path).unwrap();
    let log_path = dir.path().join("rank-0.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut rank0 = Command::new(ENTRYPOINT)
        .arg("--description")
        .arg(&description)
        .arg("--cert")
        .arg(&cert_path)
        .arg("--root")
        .arg(dir.path().join("rank-0"))
        .arg("--flux")
        .arg(&flux)
        .args(["--rank", "0"])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();

    let result = measure(port, &cert, runs, &log_path);
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(rank0.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let stopped = Instant::now();
    while rank0.try_wait().unwrap().is_none() {
        if stopped.elapsed() > Duration::from_secs(15) {
            let _ = rank0.kill();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("curve_check bench: {e}");
            eprintln!("{}", std::fs::read_to_string(&log_path).unwrap_or_default());
            ExitCode::FAILURE
        }
    }
}

fn measure(port: u16, cert: &CurveCert, runs: usize, log: &std::path::Path) -> Result<(), String> {
    let up = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if up.elapsed() > Duration::from_secs(60) {
            return Err("rank 0's broker did not listen within 60 s".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    handshake("127.0.0.1", port, cert).map_err(|e| format!("the first handshake: {e}"))?;
    let stranger = CurveCert::generate("stranger").unwrap();
    if handshake("127.0.0.1", port, &stranger).is_ok() {
        return Err("a stranger's handshake passed".into());
    }
    // Rank 0 logs its start (rc1) for a while: count only what comes after it is quiet.
    let lines = || {
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .count()
    };
    let (mut seen, mut quiet_since) = (lines(), Instant::now());
    while quiet_since.elapsed() < Duration::from_secs(1) && up.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(100));
        if lines() != seen {
            (seen, quiet_since) = (lines(), Instant::now());
        }
    }
    let logged_before = lines();

    let mut checks = Vec::with_capacity(runs);
    let mut connects = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        handshake("127.0.0.1", port, cert).map_err(|e| e.to_string())?;
        checks.push(t.elapsed().as_micros() as u64);
        let t = Instant::now();
        drop(TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?);
        connects.push(t.elapsed().as_micros() as u64);
    }
    report("CURVE check (connect + greeting + HELLO/WELCOME)", &checks);
    report("bare TCP connect", &connects);
    // The broker's answers are asynchronous: give its log a moment to show any.
    std::thread::sleep(Duration::from_millis(500));
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let logged: Vec<&str> = text.lines().skip(logged_before).collect();
    println!(
        "rank 0 logged {} lines during {runs} checks{}",
        logged.len(),
        logged
            .iter()
            .take(5)
            .map(|l| format!("\n  {l}"))
            .collect::<String>()
    );
    Ok(())
}

fn report(what: &str, v: &[u64]) {
    let mut s = v.to_vec();
    s.sort_unstable();
    println!(
        "{what}: median {} µs, p90 {} µs, min {} µs over {} runs",
        s[s.len() / 2],
        s[s.len() * 9 / 10],
        s[0],
        s.len()
    );
}
