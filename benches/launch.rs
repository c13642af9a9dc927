//! Time from `minicluster run` to rank 0's command starting, and the whole run, for 1, 4 and
//! 16 brokers: process launcher with the `flux` stand-in and (when present) a real `flux`,
//! next to bare `flux start --test-size=N true` in the same run; docker launcher with the
//! stand-in image of the tests when `MC_BENCH_IMAGE` names one.
//!
//! `cargo bench -p minicluster --bench launch` (RUNS=5 by default).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn bin(name: &str) -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_minicluster")).with_file_name(name)
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// (to command start, whole run) of one `minicluster run`.
fn one(args: &[&str], flux: Option<&Path>, state: &Path) -> (Duration, Duration) {
    let t0 = now_ns();
    let started = Instant::now();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_minicluster"));
    cmd.args(args)
        .env("MINICLUSTER_STATE_DIR", state)
        .env("MINICLUSTER_ENTRYPOINT", bin("entrypoint"))
        .env_remove("FLUX_BIN");
    if let Some(f) = flux {
        cmd.env("FLUX_BIN", f);
    }
    let out = cmd.output().unwrap();
    let total = started.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The command prints the wall clock in ns when it starts (once per task: take the first).
    let first: u128 = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .min()
        .unwrap_or(t0);
    (
        Duration::from_nanos((first.saturating_sub(t0)) as u64),
        total,
    )
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let runs: usize = std::env::var("RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    let state = tempfile::tempdir().unwrap();
    let real = std::env::var_os("FLUX_BIN").map(PathBuf::from).or_else(|| {
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .map(|d| d.join("flux"))
            .find(|p| p.is_file())
    });
    let mut fluxes = vec![("stand-in", bin("flux-standin"))];
    match &real {
        Some(f) => fluxes.push(("flux", f.clone())),
        None => println!("real flux: SKIP (no flux on PATH and FLUX_BIN unset)"),
    }
    println!(
        "| launcher | flux | brokers | to command start | whole run | `flux start --test-size=N true` |"
    );
    println!("|---|---|---:|---:|---:|---:|");
    for (label, flux) in &fluxes {
        for size in [1u32, 4, 16] {
            let n = size.to_string();
            let (mut start, mut total) = (Vec::new(), Vec::new());
            for _ in 0..runs {
                let (s, t) = one(
                    &["run", "--size", &n, "--", "date", "+%s%N"],
                    Some(flux),
                    state.path(),
                );
                start.push(s);
                total.push(t);
            }
            let bare = if *label == "flux" {
                let t: Vec<Duration> = (0..runs)
                    .map(|_| {
                        let i = Instant::now();
                        let ok = Command::new(flux)
                            .args(["start", &format!("--test-size={size}"), "true"])
                            .status()
                            .unwrap()
                            .success();
                        assert!(ok);
                        i.elapsed()
                    })
                    .collect();
                format!("{:.2} s", median(t).as_secs_f64())
            } else {
                "—".into()
            };
            println!(
                "| process | {label} | {size} | {:.2} s | {:.2} s | {bare} |",
                median(start).as_secs_f64(),
                median(total).as_secs_f64()
            );
        }
    }
    if let Ok(image) = std::env::var("MC_BENCH_IMAGE") {
        for size in [1u32, 4, 16] {
            let n = size.to_string();
            let total: Vec<Duration> = (0..runs)
                .map(|_| {
                    one(
                        &[
                            "run",
                            "--launcher",
                            "docker",
                            "--image",
                            &image,
                            "--size",
                            &n,
                            "--",
                            "flux-standin",
                            "--version",
                        ],
                        None,
                        state.path(),
                    )
                    .1
                })
                .collect();
            println!(
                "| docker | stand-in | {size} | — | {:.2} s | — |",
                median(total).as_secs_f64()
            );
        }
    }
}
