//! Queue decisions at 100,000 queued jobs, 1,000 users (weighted fair share, every tenth user
//! weighs 2), three priorities and 20 pools. A decision picks the next job (priority, least
//! usage per weight, first in first out) and the first pool eligible for its requirements; a
//! new job arrives after each, so the queue stays as deep. Ours (`queue::Index` and
//! `routing::RouteTable`) against the reference measured in the same run: `queue::next`, a
//! pass over every waiting job, and a match of the job's tags against each pool in turn.
//!
//! `cargo bench -p minicluster-pools --bench schedule` (JOBS and DECISIONS change the sizes)

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use minicluster_pools::queue::{Fairness, Index, QueueConfig, QueueState, Queued, next};
use minicluster_pools::routing::{Pool, RouteTable, eligible};
use minicluster_pools::tags::{Tags, parse_tags};

const GPUS: [&str; 4] = ["A100", "H100", "V100", "L4"];

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Job `i`: its user, priority and requirement set (one of eight).
fn job(i: u64) -> Queued {
    Queued {
        id: i,
        user: format!("user{}", i % 1000),
        project: "p".into(),
        priority: (i % 3) as i32,
        seq: i,
    }
}

fn main() {
    let jobs = env_or("JOBS", 100_000) as u64;
    let decisions = env_or("DECISIONS", 200_000);
    let q = QueueConfig {
        name: "batch".into(),
        max_running: u32::MAX,
        max_depth: u32::MAX,
        fairness: Fairness::Users,
        weights: (0..1000)
            .filter(|u| u % 10 == 0)
            .map(|u| (format!("user{u}"), 2.0))
            .collect(),
        state: QueueState::Open,
        pools: vec![],
        priority: 0,
    };
    let pools: Vec<Pool> = (0..20)
        .map(|i| Pool {
            name: format!("pool{i}"),
            provides: parse_tags(&[format!("gpu:{}", GPUS[i % 4]), format!("zone:z{}", i % 5)])
                .unwrap(),
            ..Pool::new("", Default::default())
        })
        .collect();
    let requires: Vec<Tags> = (0..8)
        .map(|i| parse_tags(&[format!("gpu:{}", GPUS[i % 4]), format!("zone:z{}", i % 5)]).unwrap())
        .collect();
    let requires_of = |j: &Queued| &requires[(j.id % 8) as usize];

    let mut waiting: Vec<Queued> = (0..jobs).map(job).collect();
    let mut reference = Decisions::default();
    // Job `arrival` comes in after each decision.
    for arrival in jobs..jobs + (decisions / 1000).max(100) as u64 {
        let t = Instant::now();
        let j = next(&q, &waiting, 0, &reference.usage)
            .expect("a job")
            .clone();
        let pool = pools.iter().position(|p| eligible(requires_of(&j), p));
        reference.took(t, &j, pool);
        let at = waiting.iter().position(|w| w.id == j.id).expect("there");
        waiting.swap_remove(at);
        waiting.push(job(arrival));
    }
    drop(waiting);

    let mut index = Index::new(&q);
    for i in 0..jobs {
        index.push(job(i));
    }
    let mut routes = RouteTable::new(&pools);
    let mut ours = Decisions::default();
    for arrival in jobs..jobs + decisions as u64 {
        let t = Instant::now();
        let j = index.pop().expect("a job");
        let pool = routes.eligible(requires_of(&j)).first().copied();
        index.charge(&j.user, 1.0);
        ours.took(t, &j, pool);
        index.push(job(arrival));
    }
    assert_eq!(
        ours.picked[..reference.picked.len()],
        reference.picked,
        "ours decided otherwise than the reference"
    );

    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "decisions at {jobs} queued jobs, 1,000 users, 20 pools ({cores} cores), next job + first eligible pool:"
    );
    println!("  ours (index):     {}", ours.report());
    println!("  reference (scan): {}", reference.report());
    println!("  ratio: {:.0}x", ours.rate() / reference.rate());
}

/// Decisions made and how long each took.
#[derive(Default)]
struct Decisions {
    usage: BTreeMap<String, f64>,
    times: Vec<Duration>,
    /// (job, pool) of each, to check that ours and the reference agree.
    picked: Vec<(u64, Option<usize>)>,
}

impl Decisions {
    fn took(&mut self, began: Instant, j: &Queued, pool: Option<usize>) {
        self.times.push(began.elapsed());
        *self.usage.entry(j.user.clone()).or_default() += 1.0;
        self.picked.push((j.id, pool));
    }

    fn rate(&self) -> f64 {
        self.times.len() as f64 / self.times.iter().sum::<Duration>().as_secs_f64()
    }

    /// "R decisions/s, p50 …, p99 … (N decisions)".
    fn report(&mut self) -> String {
        self.times.sort();
        let p =
            |q: f64| self.times[((self.times.len() as f64 * q) as usize).min(self.times.len() - 1)];
        format!(
            "{:>9.0} decisions/s, p50 {:.1?}, p99 {:.1?} ({} decisions)",
            self.rate(),
            p(0.5),
            p(0.99),
            self.times.len()
        )
    }
}
