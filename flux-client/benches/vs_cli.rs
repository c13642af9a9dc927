//! Our client against the `flux` command line on the same broker, in the same run:
//! submit-and-wait round trips and job-list calls per second, and their ratio.
//!
//! Needs a real Flux (`flux` on PATH or `$FLUX_BIN`); without one it says so and exits.
//! `cargo bench -p flux-client --bench vs_cli` (ROUNDS=N to change the sample size)

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use flux_client::{Client, JobRequest, ListRequest, SubmitOptions};

fn flux_bin() -> Option<PathBuf> {
    std::env::var_os("FLUX_BIN").map(PathBuf::from).or_else(|| {
        std::env::split_paths(&std::env::var_os("PATH")?)
            .map(|d| d.join("flux"))
            .find(|p| p.is_file())
    })
}

fn rate(n: usize, took: Duration) -> f64 {
    n as f64 / took.as_secs_f64()
}

fn cli(bin: &PathBuf, uri: &str, args: &[&str]) {
    let ok = Command::new(bin)
        .args(args)
        .env("FLUX_URI", uri)
        .stdout(Stdio::null())
        .status()
        .unwrap()
        .success();
    assert!(ok, "flux {args:?} failed");
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes --bench; nothing else is read from the command line.
    let Some(bin) = flux_bin() else {
        println!("vs_cli: SKIP — no `flux` on PATH and FLUX_BIN unset");
        return;
    };
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(50);
    let dir = tempfile::tempdir().unwrap();
    let uri = format!("local://{}/local", dir.path().display());
    let mut broker = Command::new(&bin)
        .arg("broker")
        .arg(format!("-Srundir={}/run", dir.path().display()))
        .arg(format!("-Slocal-uri={uri}"))
        .arg("-Sbroker.rc2_none")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let flux = loop {
        if let Ok(c) = Client::connect(&uri).await {
            c.wait_until_running(Duration::from_secs(60)).await.unwrap();
            break c;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let job = JobRequest::new(["true"]).inherit_env();
    let waitable = SubmitOptions {
        waitable: true,
        ..Default::default()
    };
    let long = Duration::from_secs(120);

    // Warm up both paths (module caches, page cache for the CLI's Python).
    flux.job_wait(flux.submit(&job, waitable).await.unwrap(), long)
        .await
        .unwrap();
    cli(&bin, &uri, &["submit", "--wait", "true"]);

    let t = Instant::now();
    for _ in 0..rounds {
        let id = flux.submit(&job, waitable).await.unwrap();
        assert!(flux.job_wait(id, long).await.unwrap().success);
    }
    let ours_submit = rate(rounds, t.elapsed());
    let t = Instant::now();
    for _ in 0..rounds {
        cli(&bin, &uri, &["submit", "--wait", "true"]);
    }
    let cli_submit = rate(rounds, t.elapsed());

    let list = ListRequest::all(0);
    let t = Instant::now();
    for _ in 0..rounds {
        flux.job_list(&list).await.unwrap();
    }
    let ours_list = rate(rounds, t.elapsed());
    let t = Instant::now();
    for _ in 0..rounds {
        cli(&bin, &uri, &["jobs", "-a", "-n"]);
    }
    let cli_list = rate(rounds, t.elapsed());

    let jobs = flux.job_list(&list).await.unwrap().len();
    println!("vs_cli: {rounds} rounds each, one broker, {jobs} jobs listed per call");
    println!(
        "submit+wait  minicluster client {ours_submit:8.1}/s   flux submit --wait {cli_submit:6.1}/s   ratio {:5.1}x",
        ours_submit / cli_submit
    );
    println!(
        "job list     minicluster client {ours_list:8.1}/s   flux jobs -a       {cli_list:6.1}/s   ratio {:5.1}x",
        ours_list / cli_list
    );
    let _ = broker.kill();
    let _ = broker.wait();
}
