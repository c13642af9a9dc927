//! The operator under load on the test cluster: N MiniClusters (default 50, of 2 brokers each,
//! persistent) applied at once in a namespace of their own, reconciled by the operator run
//! here as a process (`minicluster operator --namespace`, so its CPU time and memory are read
//! from /proc). Prints reconcile latency (p50/p99, from the operator's own per-reconcile log
//! lines), apply → all brokers joined (each MiniCluster's BrokersReady turning True), and the
//! operator's CPU time and peak memory.
//!
//!   minicluster-testkit up && eval "$(minicluster-testkit env)"
//!   cargo bench -p minicluster --bench operator_load            # MINICLUSTERS=50 BROKERS=2

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use minicluster_testkit::kube::{Namespace, TestCluster, wait_for};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// (utime + stime in seconds, peak resident memory in MiB) of `pid`.
fn cpu_and_peak(pid: u32) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    // After the command name: state is field 3, utime 14 and stime 15 (1-based).
    let ticks = |i: usize| {
        fields
            .get(i - 3)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let hz = 100.0;
    let cpu = (ticks(14) + ticks(15)) / hz;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let hwm_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(0.0);
    (cpu, hwm_kib / 1024.0)
}

fn main() {
    if std::env::var_os("MC_TEST_KUBECONFIG").is_none() {
        eprintln!(
            "operator_load: needs the test cluster (minicluster-testkit up, then eval \"$(minicluster-testkit env)\")"
        );
        std::process::exit(2);
    }
    let n = env_or("MINICLUSTERS", 50);
    let brokers = env_or("BROKERS", 2);
    let c = TestCluster::get();
    let ns = Namespace::new(&c, "load");
    let minicluster = Path::new(env!("CARGO_BIN_EXE_minicluster"));
    let crd = Command::new(minicluster).arg("crd").output().unwrap();
    c.apply(&String::from_utf8_lossy(&crd.stdout));

    let log_path = std::env::temp_dir().join(format!("operator-load-{}.log", std::process::id()));
    let mut operator = Command::new(minicluster)
        .args([
            "operator",
            "--namespace",
            &ns.name,
            "--listen",
            "127.0.0.1:0",
        ])
        .args(["--runner-image", minicluster_testkit::kube::RUNNER_IMAGE])
        .env("KUBECONFIG", &c.kubeconfig)
        .env("MINICLUSTER_LOG", "warn,minicluster_operator=debug")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));

    let docs: String = (0..n)
        .map(|i| {
            format!(
                "---\napiVersion: flux-framework.org/v1alpha2\nkind: MiniCluster\nmetadata: {{name: load-{i}, namespace: {}}}\nspec:\n  size: {brokers}\n  interactive: true\n  flux:\n    container: {{disable: true}}\n  containers:\n    - image: {}\n",
                ns.name, c.flux_image
            )
        })
        .collect();
    let applied = Instant::now();
    c.apply(&docs);
    let want = format!("{brokers}/{brokers}");
    wait_for(
        "every MiniCluster's brokers joined",
        Duration::from_secs(1800),
        || {
            let ready = ns.ok(&[
                "get",
                "miniclusters",
                "-o",
                "jsonpath={range .items[*]}{.status.ready}{\"\\n\"}{end}",
            ]);
            (ready.lines().filter(|r| *r == want).count() == n).then_some(())
        },
        || ns.describe(),
    );
    let all_joined = applied.elapsed();
    let (cpu, peak) = cpu_and_peak(operator.id());

    // Per MiniCluster: apply → BrokersReady True.
    let times = ns.ok(&[
        "get",
        "miniclusters",
        "-o",
        r#"jsonpath={range .items[*]}{.metadata.creationTimestamp}{" "}{.status.conditions[?(@.type=="BrokersReady")].lastTransitionTime}{"\n"}{end}"#,
    ]);
    let mut joined: Vec<f64> = times
        .lines()
        .filter_map(|l| {
            let (a, b) = l.split_once(' ')?;
            let a: k8s_openapi::jiff::Timestamp = a.parse().ok()?;
            let b: k8s_openapi::jiff::Timestamp = b.parse().ok()?;
            Some(b.duration_since(a).as_secs_f64())
        })
        .collect();
    joined.sort_by(f64::total_cmp);

    let _ = operator.kill();
    let _ = operator.wait();
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    let _ = std::fs::remove_file(&log_path);
    let mut took: Vec<f64> = log
        .lines()
        .filter_map(|l| {
            let v = l.split("took_us=").nth(1)?;
            v.split_whitespace().next()?.parse::<f64>().ok()
        })
        .map(|us| us / 1000.0)
        .collect();
    took.sort_by(f64::total_cmp);

    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "operator_load: {n} MiniClusters × {brokers} brokers, Kubernetes 1.{}, {cores} cores",
        c.minor
    );
    println!(
        "  reconciles: {}, latency p50 {:.1} ms, p99 {:.1} ms",
        took.len(),
        percentile(&took, 0.5),
        percentile(&took, 0.99)
    );
    println!(
        "  apply → all {} brokers joined: {:.1} s (per MiniCluster p50 {:.0} s, p99 {:.0} s)",
        n * brokers,
        all_joined.as_secs_f64(),
        percentile(&joined, 0.5),
        percentile(&joined, 0.99)
    );
    println!("  operator: {cpu:.2} s CPU, peak RSS {peak:.0} MiB");
    drop(ns);
}
