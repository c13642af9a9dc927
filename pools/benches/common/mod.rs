//! What the claim benchmarks share: the queue they claim from, the claim loop, and how a run
//! is reported.

use std::time::{Duration, Instant};

use minicluster_pools::queue::QueueConfig;
use minicluster_pools::store::{NewJob, Store};
use minicluster_pools::tags::parse_tags;
use minicluster_pools::{LauncherType, Pool};

pub const QUEUE: &str = "batch";

/// A whole number from the environment, else `default`.
pub fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// 20 pools (a gpu model and a zone each, no launch limit), a queue over them with weighted
/// fair share between 1,000 users (every tenth weighs 2), and `jobs` waiting jobs at three
/// priorities, each requiring one gpu model.
pub fn fill(s: &mut dyn Store, jobs: usize) {
    let gpus = ["A100", "H100", "V100", "L4"];
    for i in 0..20 {
        let mut p = Pool::new(format!("pool{i}"), LauncherType::Process);
        p.provides =
            parse_tags(&[format!("gpu:{}", gpus[i % 4]), format!("zone:z{}", i % 5)]).unwrap();
        p.max_launches = u32::MAX;
        s.create_pool(&p).unwrap();
    }
    let mut q = QueueConfig::new(QUEUE);
    q.max_running = u32::MAX;
    q.max_depth = u32::MAX;
    q.weights = (0..1000)
        .filter(|u| u % 10 == 0)
        .map(|u| (format!("user{u}"), 2.0))
        .collect();
    s.create_queue(&q).unwrap();
    let batch: Vec<NewJob> = (0..jobs)
        .map(|i| NewJob {
            queue: QUEUE.into(),
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

/// Claim transactions and how long each took.
#[derive(Default)]
pub struct Run {
    pub claims: usize,
    pub elapsed: Duration,
    pub transactions: Vec<Duration>,
    /// Every job claimed, to check none was claimed twice.
    pub jobs: Vec<u64>,
}

impl Run {
    /// Claims `at_least` jobs (or until the queue has none), `batch` per transaction.
    pub fn claim(s: &mut dyn Store, at_least: usize, batch: usize) -> Run {
        let mut run = Run::default();
        let began = Instant::now();
        while run.claims < at_least {
            let t = Instant::now();
            let got = s.claim_many(QUEUE, batch).unwrap();
            run.transactions.push(t.elapsed());
            if got.is_empty() {
                break;
            }
            run.claims += got.len();
            run.jobs.extend(got.iter().map(|c| c.job.id));
        }
        run.elapsed = began.elapsed();
        run
    }

    pub fn rate(&self) -> f64 {
        self.claims as f64 / self.elapsed.as_secs_f64()
    }

    /// "R claims/s; a transaction p50 …, p99 … (N claims)"; panics if a job was claimed twice.
    pub fn report(&mut self) -> String {
        let mut ids = self.jobs.clone();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), self.jobs.len(), "a job was claimed twice");
        self.transactions.sort();
        let p = |q: f64| {
            let t = &self.transactions;
            t[((t.len() as f64 * q) as usize).min(t.len() - 1)]
        };
        format!(
            "{:>6.0} claims/s; a transaction p50 {:.1?}, p99 {:.1?} ({} claims, each once)",
            self.rate(),
            p(0.5),
            p(0.99),
            self.claims
        )
    }
}
