//! Claims through the store, the way the dispatcher makes them: one transaction that picks
//! the next job (priority, weighted fair share, FIFO) and a pool with room, and writes the
//! launch record. 100,000 queued jobs across 1,000 users and 20 pools, in a SQLite file (WAL,
//! synchronous=FULL: every claim is on disk before it is used). Prints claims per second and
//! p50/p99.
//!
//! `cargo bench -p minicluster-pools --bench store_claim`

use std::time::{Duration, Instant};

use minicluster_pools::queue::QueueConfig;
use minicluster_pools::store::{JobState, NewJob, Outcome, SqliteStore, Store};
use minicluster_pools::tags::parse_tags;
use minicluster_pools::{LauncherType, Pool};

fn main() {
    let jobs: usize = std::env::var("JOBS")
        .ok()
        .and_then(|j| j.parse().ok())
        .unwrap_or(100_000);
    let claims: usize = std::env::var("CLAIMS")
        .ok()
        .and_then(|d| d.parse().ok())
        .unwrap_or(300);
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("bench.db");
    let mut s = SqliteStore::open(&path).expect("the store opens");
    let t = Instant::now();
    fill(&mut s, jobs);
    eprintln!("sqlite: {jobs} jobs queued in {:.1?}", t.elapsed());
    println!("sqlite:    {}", measure(&mut s, claims));
}

fn fill(s: &mut SqliteStore, jobs: usize) {
    let gpus = ["A100", "H100", "V100", "L4"];
    for i in 0..20 {
        let mut p = Pool::new(format!("pool{i}"), LauncherType::Process);
        p.provides =
            parse_tags(&[format!("gpu:{}", gpus[i % 4]), format!("zone:z{}", i % 5)]).unwrap();
        p.max_launches = u32::MAX;
        s.create_pool(&p).unwrap();
    }
    let mut q = QueueConfig::new("batch");
    q.max_running = u32::MAX;
    q.max_depth = u32::MAX;
    s.create_queue(&q).unwrap();
    let batch: Vec<NewJob> = (0..jobs)
        .map(|i| NewJob {
            queue: "batch".into(),
            user: format!("user{}", i % 1000),
            project: "p".into(),
            priority: (i % 3) as i32,
            command: vec!["true".into()],
            requires: parse_tags(&[format!("gpu:{}", gpus[i % 4])]).unwrap(),
            size: None,
        })
        .collect();
    s.submit_many(&batch).unwrap();
}

fn measure(s: &mut dyn Store, n: usize) -> String {
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let c = s.claim("batch").unwrap().expect("a job to claim");
        lat.push(t.elapsed());
        s.finish(
            c.job.id,
            &Outcome {
                state: JobState::Done,
                exit_code: Some(0),
                reason: None,
            },
        )
        .unwrap();
    }
    lat.sort();
    let p = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
    format!(
        "{:.0} claims/s, p50 {:?}, p99 {:?} ({n} claims)",
        n as f64 / lat.iter().sum::<Duration>().as_secs_f64(),
        p(0.5),
        p(0.99)
    )
}
