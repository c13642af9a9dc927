//! Submissions through our server into a real Flux broker: submissions per second and
//! p50/p99 latency of `POST /v1/jobs/submit`, and of `GET /v1/jobs/{id}`.
//!
//! `cargo bench -p minicluster-rest --bench load` (needs `flux` on PATH or `$FLUX_BIN`, and
//! exits non-zero without; `LOAD_SECONDS`, `LOAD_CONCURRENCY` to change the run). The server
//! runs with its defaults: no submission rate limit, as flux-restful.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// `$FLUX_BIN` (which must be a file), else `flux` on PATH; without one the benchmark cannot
/// run, and says so with a non-zero exit.
fn flux_or_exit() -> PathBuf {
    let found = match std::env::var_os("FLUX_BIN") {
        Some(p) => {
            let p = PathBuf::from(p);
            if !p.is_file() {
                eprintln!(
                    "load: FLUX_BIN={} is not a file: point it at flux-core's flux, or unset it",
                    p.display()
                );
                std::process::exit(2);
            }
            Some(p)
        }
        None => std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join("flux"))
                .find(|p| p.is_file())
        }),
    };
    found.unwrap_or_else(|| {
        eprintln!(
            "load: this benchmark needs a real flux: set FLUX_BIN or put flux-core's flux on PATH"
        );
        std::process::exit(2);
    })
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let flux = flux_or_exit();
    let secs: u64 = std::env::var("LOAD_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let conc: usize = std::env::var("LOAD_CONCURRENCY")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
    let mut child = Command::new(&flux)
        .args([
            "start",
            "--test-size=1",
            env!("CARGO_BIN_EXE_minicluster-rest"),
        ])
        .args(["--host", "127.0.0.1", "--port", "0", "--grace-seconds", "2"])
        .env("MINICLUSTER_REST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("flux start");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (url, pid) = loop {
        match lines.next() {
            Some(Ok(l)) => {
                if let Some(rest) = l.strip_prefix("minicluster-rest: listening on ") {
                    let url = rest
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_string();
                    let pid = rest
                        .split("(pid ")
                        .nth(1)
                        .unwrap_or("")
                        .trim_end_matches(')')
                        .to_string();
                    break (url, pid);
                }
            }
            _ => panic!("the server did not start"),
        }
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (submits, gets, elapsed) = rt.block_on(async {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(conc)
            .build()
            .unwrap();
        // Warm up.
        for _ in 0..20 {
            client
                .post(format!("{url}/v1/jobs/submit?command=true"))
                .send()
                .await
                .unwrap();
        }
        let stop = Arc::new(AtomicBool::new(false));
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..conc {
            let (client, url, stop) = (client.clone(), url.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                let mut sub = Vec::new();
                let mut get = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    let r = client
                        .post(format!("{url}/v1/jobs/submit?command=true"))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 200);
                    let id = r.json::<serde_json::Value>().await.unwrap()["id"]
                        .as_u64()
                        .unwrap();
                    sub.push(t.elapsed());
                    let t = Instant::now();
                    let r = client
                        .get(format!("{url}/v1/jobs/{id}"))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 200);
                    let _ = r.bytes().await;
                    get.push(t.elapsed());
                }
                (sub, get)
            }));
        }
        tokio::time::sleep(Duration::from_secs(secs)).await;
        stop.store(true, Ordering::Relaxed);
        let mut submits = Vec::new();
        let mut gets = Vec::new();
        for t in tasks {
            let (s, g) = t.await.unwrap();
            submits.extend(s);
            gets.extend(g);
        }
        let elapsed = start.elapsed();
        (submits, gets, elapsed)
    });
    // Our server is the instance's initial program: when it ends, so does the instance.
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let _ = child.wait();
    let (mut s, mut g) = (submits, gets);
    s.sort();
    g.sort();
    println!(
        "load: {conc} clients for {:.1} s against flux-core (flux start --test-size=1)",
        elapsed.as_secs_f64()
    );
    println!(
        "POST /v1/jobs/submit: {} submissions, {:.0}/s, p50 {}, p99 {}",
        s.len(),
        s.len() as f64 / elapsed.as_secs_f64(),
        ms(pct(&s, 0.5)),
        ms(pct(&s, 0.99))
    );
    println!(
        "GET /v1/jobs/{{id}}:   {} lookups, p50 {}, p99 {}",
        g.len(),
        ms(pct(&g, 0.5)),
        ms(pct(&g, 0.99))
    );
}
