//! A 4-broker MiniCluster of entrypoint processes on this machine (loopback ports, one
//! directory per broker): with the `flux` stand-in always, and with a real `flux` in the
//! `real_flux_` tests (ignored unless asked for; `tests/run` runs them when flux is found).

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;

const LIMIT: Duration = Duration::from_secs(90);

fn launcher(command: &str) -> String {
    spec_yaml(
        4,
        "",
        &format!("      launcher: true\n      command: {command}\n"),
    )
}

/// All four join, the command runs across the cluster, every broker exits 0.
fn runs_across_four_brokers(flux: &Path, command: &str) -> String {
    let c = Cluster::new(&launcher(command), flux);
    let mut workers = c.start_workers();
    let out = c.run_rank0(LIMIT);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "rank 0 failed:\n{stderr}");
    assert_eq!(
        wait_all(&mut workers, LIMIT),
        vec![0, 0, 0],
        "workers:\n{}",
        c.log(1)
    );
    assert_eq!(
        stdout.lines().count(),
        4,
        "want 4 lines:\n{stdout}\n{stderr}"
    );
    stdout
}

/// The exit code of a failing command is rank 0's.
fn failing_code_comes_back(flux: &Path, command: &str, want: i32) {
    let c = Cluster::new(&launcher(command), flux);
    let mut workers = c.start_workers();
    let out = c.run_rank0(LIMIT);
    assert_eq!(
        out.status.code(),
        Some(want),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(wait_all(&mut workers, LIMIT), vec![0, 0, 0]);
}

/// A persistent MiniCluster: once all have joined, SIGTERM to rank 0's entrypoint ends every
/// broker within 10 s.
fn sigterm_ends_all(flux: &Path, joined: impl Fn(&str) -> bool) {
    let yaml = spec_yaml(4, "  interactive: true\n", "      command: ''\n");
    let c = Cluster::new(&yaml, flux);
    let mut workers = c.start_workers();
    let log0 = c.path("rank-0.log");
    let f = std::fs::File::create(&log0).unwrap();
    let rank0 = c
        .command(0)
        .stdout(f.try_clone().unwrap())
        .stderr(f)
        .spawn()
        .unwrap();
    wait_until(LIMIT, "all four brokers to join", || {
        joined(&std::fs::read_to_string(&log0).unwrap_or_default())
    });
    let t = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(rank0.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let mut all = vec![rank0];
    all.append(&mut workers);
    let codes = wait_all(&mut all, Duration::from_secs(10));
    eprintln!("all ended {:?} after SIGTERM: {codes:?}", t.elapsed());
    assert!(t.elapsed() < Duration::from_secs(10));
    // The workers leave with the instance; none restarts or fails.
    assert_eq!(&codes[1..], &[0, 0, 0], "{}", c.log(1));
}

fn standin() -> PathBuf {
    PathBuf::from(STANDIN)
}

#[test]
fn standin_four_brokers_join_and_run() {
    let out = runs_across_four_brokers(&standin(), "flux run -N4 hostname");
    let host = nix::unistd::gethostname().unwrap();
    assert!(out.lines().all(|l| l == host.to_string_lossy()), "{out}");
}

#[test]
fn standin_failing_exit_code_comes_back() {
    failing_code_comes_back(&standin(), "flux run -N4 sh -c 'exit 3'", 3);
}

#[test]
fn standin_sigterm_to_rank0_ends_all_within_10s() {
    sigterm_ends_all(&standin(), |log| log.contains("quorum reached (4 of 4)"));
}

#[test]
fn standin_submit_mode_runs_tasks_and_batch_mode_waits_for_all() {
    let c = Cluster::new(
        &spec_yaml(2, "  tasks: 3\n", "      command: echo task\n"),
        &standin(),
    );
    let mut workers = c.start_workers();
    let out = c.run_rank0(LIMIT);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).matches("task").count(),
        3
    );
    wait_all(&mut workers, LIMIT);

    let batch =
        "      batch: true\n      command: |\n        true\n        # a comment\n        false\n";
    let c = Cluster::new(&spec_yaml(2, "", batch), &standin());
    let mut workers = c.start_workers();
    let out = c.run_rank0(LIMIT);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("batch line 1: job") && stdout.contains("batch line 2: job"),
        "{stdout}"
    );
    assert_eq!(out.status.code(), Some(1), "one batch job failed");
    wait_all(&mut workers, LIMIT);
}

// With a real Flux.

#[test]
#[ignore = "needs a real flux: FLUX_BIN or flux on PATH (tests/run runs these when found)"]
fn real_flux_four_brokers_join_and_run() {
    let flux = minicluster_testkit::require::flux();
    runs_across_four_brokers(&flux, "flux run -N4 hostname");
}

#[test]
#[ignore = "needs a real flux: FLUX_BIN or flux on PATH (tests/run runs these when found)"]
fn real_flux_failing_exit_code_comes_back() {
    let flux = minicluster_testkit::require::flux();
    failing_code_comes_back(&flux, "flux run -N4 sh -c 'exit 3'", 3);
}

#[test]
#[ignore = "needs a real flux: FLUX_BIN or flux on PATH (tests/run runs these when found)"]
fn real_flux_sigterm_to_rank0_ends_all_within_10s() {
    let flux = minicluster_testkit::require::flux();
    sigterm_ends_all(&flux, |log| log.contains("online: mc-[0-3]"));
}

#[test]
#[ignore = "needs a real flux: FLUX_BIN or flux on PATH (tests/run runs these when found)"]
fn real_flux_batch_mode_shows_each_jobs_output_and_the_worst_code() {
    let flux = minicluster_testkit::require::flux();
    let batch = "      batch: true\n      command: |\n        echo out-of-line-1\n        sh -c 'echo out-of-line-2; exit 4'\n";
    let c = Cluster::new(&spec_yaml(2, "", batch), &flux);
    let mut workers = c.start_workers();
    let out = c.run_rank0(LIMIT);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let first = stdout
        .find("out-of-line-1")
        .unwrap_or_else(|| panic!("{stdout}"));
    let second = stdout
        .find("out-of-line-2")
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(first < second, "in line order: {stdout}");
    assert!(stdout.contains("exited with code 4"), "{stdout}");
    assert_ne!(out.status.code(), Some(0), "a batch job failed");
    wait_all(&mut workers, LIMIT);
}
