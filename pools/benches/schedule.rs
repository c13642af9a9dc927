//! Scheduling decisions: 100,000 queued jobs across 1,000 users and 20 pools. Each decision
//! picks the next job of the queue (priority, weighted fair share, FIFO) and the first
//! eligible pool for its requirements. Prints decisions per second and the p99 latency.
//!
//! `cargo bench -p minicluster-pools --bench schedule`

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use minicluster_pools::queue::{Fairness, Index, QueueConfig, QueueState, Queued, next};
use minicluster_pools::routing::{Pool, eligible};
use minicluster_pools::tags::parse_tags;

fn main() {
    let jobs: usize = std::env::var("JOBS")
        .ok()
        .and_then(|j| j.parse().ok())
        .unwrap_or(100_000);
    let decisions: usize = std::env::var("DECISIONS")
        .ok()
        .and_then(|d| d.parse().ok())
        .unwrap_or(2_000);
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
    let gpus = ["A100", "H100", "V100", "L4"];
    let pools: Vec<Pool> = (0..20)
        .map(|i| Pool {
            name: format!("pool{i}"),
            provides: parse_tags(&[format!("gpu:{}", gpus[i % 4]), format!("zone:z{}", i % 5)])
                .unwrap(),
            ..Pool::new("", Default::default())
        })
        .collect();
    let requires: Vec<_> = (0..8)
        .map(|i| parse_tags(&[format!("gpu:{}", gpus[i % 4]), format!("zone:z{}", i % 5)]).unwrap())
        .collect();
    let mut waiting: Vec<Queued> = (0..jobs as u64)
        .map(|i| Queued {
            id: i,
            user: format!("user{}", i % 1000),
            project: "p".into(),
            priority: (i % 3) as i32,
            seq: i,
        })
        .collect();
    // The reference decision scans every waiting job; the index looks at one level's groups.
    let reference = measure(
        decisions.min(200),
        |usage| {
            let j = next(&q, &waiting, 0, usage).expect("a job").clone();
            let pos = waiting.iter().position(|w| w.id == j.id).expect("there");
            waiting.swap_remove(pos);
            j
        },
        &pools,
        &requires,
    );
    let mut index = Index::default();
    for i in 0..jobs as u64 {
        index.push(
            &q,
            Queued {
                id: i,
                user: format!("user{}", i % 1000),
                project: "p".into(),
                priority: (i % 3) as i32,
                seq: i,
            },
        );
    }
    let indexed = measure(
        decisions,
        |usage| index.pop(&q, 0, usage).expect("a job"),
        &pools,
        &requires,
    );
    println!(
        "{jobs} queued jobs, 1,000 users, 20 pools (next job + first eligible pool per decision):"
    );
    println!("  index:      {}", indexed);
    println!("  reference:  {}", reference);
}

/// Runs `n` decisions; "R decisions/s, p50, p99".
fn measure(
    n: usize,
    mut pick: impl FnMut(&BTreeMap<String, f64>) -> Queued,
    pools: &[Pool],
    requires: &[minicluster_pools::Tags],
) -> String {
    let mut usage: BTreeMap<String, f64> = BTreeMap::new();
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let j = pick(&usage);
        let req = &requires[(j.id % 8) as usize];
        std::hint::black_box(pools.iter().position(|p| eligible(req, p)));
        lat.push(t.elapsed());
        *usage.entry(j.user).or_default() += 1.0;
    }
    lat.sort();
    let p = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
    format!(
        "{:.0} decisions/s, p50 {:?}, p99 {:?} ({n} decisions)",
        n as f64 / lat.iter().sum::<Duration>().as_secs_f64(),
        p(0.5),
        p(0.99)
    )
}
