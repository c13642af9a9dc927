//! Submissions through our server into a real Flux broker: submissions per second and
//! p50/p99 latency of `POST /v1/jobs/submit`, and of `GET /v1/jobs/{id}`, next to a
//! reference measured in the same run: Flux's own Python bindings (`flux python`) submitting
//! the same jobs (`true`, from `JobspecV1.from_command`) and reading each one back
//! (`job-list.list-id`, as our `GET` does) with as many requests outstanding as we have HTTP
//! clients, for as long, inside a fresh instance of the same kind. It prints both rates,
//! the ratio ours/reference, the core count and the load average.
//!
//! `cargo bench -p minicluster-rest --bench load` (needs `flux` on PATH or `$FLUX_BIN`, with
//! flux-core's Python bindings, and exits non-zero without; `LOAD_SECONDS`,
//! `LOAD_CONCURRENCY` to change the run). The server runs with its defaults: no submission
//! rate limit, as flux-restful.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
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

/// The reference: Flux's own Python client doing what our HTTP clients make the server do.
/// `conc` slots, each submitting `true` (`JobspecV1.from_command`, with the working directory
/// and an environment like the one our server passes) and then reading the job back with
/// `job-list.list-id`, its next submission sent when that answer arrives, until `secs` have
/// passed; then the outstanding ones finish. One JSON line out: the latencies in seconds.
const REFERENCE_PY: &str = r#"
import json, os, sys, time
import flux
from flux.job import JobspecV1, job_list_id, submit_async

secs, conc = float(sys.argv[1]), int(sys.argv[2])
h = flux.Flux()
js = JobspecV1.from_command(["true"])
js.cwd = os.getcwd()
keep = ("PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TERM", "TZ", "TMPDIR")
js.environment = {k: v for k, v in os.environ.items() if k in keep or k.startswith("LC_")}
for _ in range(20):
    submit_async(h, js).get_id()
submits, gets = [], []
state = {"active": conc, "deadline": 0.0}


def submit():
    submit_async(h, js).then(submitted, time.monotonic())


def submitted(f, t):
    jobid = f.get_id()
    submits.append(time.monotonic() - t)
    job_list_id(h, jobid, ["all"]).then(looked_up, time.monotonic())


def looked_up(f, t):
    f.get_job()
    gets.append(time.monotonic() - t)
    if time.monotonic() < state["deadline"]:
        submit()
        return
    state["active"] -= 1
    if state["active"] == 0:
        h.reactor_stop()


start = time.monotonic()
state["deadline"] = start + secs
for _ in range(conc):
    submit()
h.reactor_run()
elapsed = time.monotonic() - start
print(json.dumps({"submits": submits, "gets": gets, "elapsed": elapsed}))
"#;

/// Latencies of one side of the comparison.
struct Run {
    submits: Vec<Duration>,
    gets: Vec<Duration>,
    elapsed: Duration,
}

impl Run {
    fn sorted(mut self) -> Self {
        self.submits.sort();
        self.gets.sort();
        self
    }

    fn rate(&self) -> f64 {
        self.submits.len() as f64 / self.elapsed.as_secs_f64()
    }
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

/// The 1, 5 and 15 minute load averages, as `/proc/loadavg` has them.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// Our server as the initial program of `flux start --test-size=1`, `conc` HTTP clients each
/// submitting `true` and reading the job back for `secs`.
fn ours(flux: &Path, secs: u64, conc: usize) -> Run {
    let mut child = Command::new(flux)
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
    let run = rt.block_on(async {
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
        Run {
            submits,
            gets,
            elapsed: start.elapsed(),
        }
    });
    // Our server is the instance's initial program: when it ends, so does the instance.
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let _ = child.wait();
    run.sorted()
}

/// The reference script as the initial program of a fresh `flux start --test-size=1`; exits
/// non-zero, saying why, when it cannot run (no Python bindings, for one).
fn reference(flux: &Path, secs: u64, conc: usize) -> Run {
    let dir = tempfile::tempdir().expect("temporary directory");
    let script = dir.path().join("reference.py");
    std::fs::write(&script, REFERENCE_PY).expect("write the reference script");
    let out = Command::new(flux)
        .args(["start", "--test-size=1"])
        .arg(flux)
        .arg("python")
        .arg(&script)
        .args([secs.to_string(), conc.to_string()])
        .stderr(Stdio::inherit())
        .output()
        .expect("flux start");
    let parsed = std::str::from_utf8(&out.stdout)
        .ok()
        .and_then(|s| s.lines().rev().find(|l| l.starts_with('{')))
        .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok());
    let Some(v) = parsed.filter(|_| out.status.success()) else {
        eprintln!(
            "load: the reference (flux python, submitting through flux-core's Python bindings) \
             failed ({}): its figures are needed next to ours; build flux-core with its Python \
             bindings",
            out.status
        );
        std::process::exit(2);
    };
    let secs_list = |k: &str| -> Vec<Duration> {
        v[k].as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_f64())
                    .map(Duration::from_secs_f64)
                    .collect()
            })
            .unwrap_or_default()
    };
    Run {
        submits: secs_list("submits"),
        gets: secs_list("gets"),
        elapsed: Duration::from_secs_f64(v["elapsed"].as_f64().unwrap_or(f64::NAN)),
    }
    .sorted()
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
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load_before = loadavg();
    let ours = ours(&flux, secs, conc);
    let load_between = loadavg();
    let refr = reference(&flux, secs, conc);
    let load_after = loadavg();
    println!(
        "load: {conc} clients for {:.1} s against flux-core (flux start --test-size=1); \
         nproc {cores}; load average {load_before} before, {load_between} between, \
         {load_after} after",
        ours.elapsed.as_secs_f64()
    );
    println!(
        "POST /v1/jobs/submit: {} submissions, {:.0}/s, p50 {}, p99 {}",
        ours.submits.len(),
        ours.rate(),
        ms(pct(&ours.submits, 0.5)),
        ms(pct(&ours.submits, 0.99))
    );
    println!(
        "GET /v1/jobs/{{id}}:   {} lookups, p50 {}, p99 {}",
        ours.gets.len(),
        ms(pct(&ours.gets, 0.5)),
        ms(pct(&ours.gets, 0.99))
    );
    println!(
        "reference (flux python: submit_async + job_list_id, {conc} outstanding, {:.1} s):",
        refr.elapsed.as_secs_f64()
    );
    println!(
        "  job-ingest.submit:  {} submissions, {:.0}/s, p50 {}, p99 {}",
        refr.submits.len(),
        refr.rate(),
        ms(pct(&refr.submits, 0.5)),
        ms(pct(&refr.submits, 0.99))
    );
    println!(
        "  job-list.list-id:   {} lookups, p50 {}, p99 {}",
        refr.gets.len(),
        ms(pct(&refr.gets, 0.5)),
        ms(pct(&refr.gets, 0.99))
    );
    println!(
        "ratio ours/reference: {:.2} ({:.0}/s vs {:.0}/s, nproc {cores}, load average {load_after})",
        ours.rate() / refr.rate(),
        ours.rate(),
        refr.rate()
    );
}
