//! A batch of claims decides as claims one after another over the whole queue do: `plan`,
//! which loads waiting jobs only as it needs them (the oldest of each group at the top
//! priority, then a group's next), against `decide` over every waiting job, with running,
//! usage and pool launches counted after each claim. Jobs no pool can run, full pools,
//! disabled pools, a queue limited to some pools, paused queues and `max_running` included.

use std::collections::BTreeMap;

use minicluster_pools::queue::{Fairness, QueueConfig, QueueState, Queued};
use minicluster_pools::store::plan::{Start, Waiting, plan};
use minicluster_pools::store::{Candidate, Result, decide, fairness_group};
use minicluster_pools::tags::parse_tags;
use minicluster_pools::{LauncherType, Pool};
use proptest::prelude::*;

/// The waiting jobs of one queue in memory, oldest first, as a backend reads them.
struct Memory<'a> {
    q: &'a QueueConfig,
    jobs: &'a [Candidate],
    /// How many jobs were read.
    read: usize,
}

impl Memory<'_> {
    fn group<'j>(&self, c: &'j Candidate) -> &'j str {
        self.q.group(&c.queued.user, &c.queued.project)
    }

    fn give(&mut self, out: Vec<Candidate>) -> Result<Vec<Candidate>> {
        self.read += out.len();
        Ok(out)
    }
}

impl Waiting for Memory<'_> {
    fn top_priority(&mut self, below: Option<i32>) -> Result<Option<i32>> {
        Ok(self
            .jobs
            .iter()
            .map(|c| c.queued.priority)
            .filter(|p| below.is_none_or(|b| *p < b))
            .max())
    }

    fn heads(&mut self, priority: i32) -> Result<Vec<Candidate>> {
        let mut seen = std::collections::BTreeSet::new();
        let out = self
            .jobs
            .iter()
            .filter(|c| c.queued.priority == priority && seen.insert(self.group(c)))
            .cloned()
            .collect();
        self.give(out)
    }

    fn after(
        &mut self,
        priority: i32,
        group: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Candidate>> {
        let out = self
            .jobs
            .iter()
            .filter(|c| {
                c.queued.priority == priority && self.group(c) == group && c.queued.id > after
            })
            .take(limit)
            .cloned()
            .collect();
        self.give(out)
    }
}

fn pool(name: &str, provides: &[&str], max_launches: u32, enabled: bool) -> Pool {
    Pool {
        provides: parse_tags(provides).unwrap(),
        max_launches,
        enabled,
        ..Pool::new(name, LauncherType::Process)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]
    #[test]
    fn a_batch_decides_as_claims_one_by_one(
        jobs in proptest::collection::vec((0u8..5, 0u8..3, 0i32..3, 0u8..5), 0..60),
        fairness in prop_oneof![Just(Fairness::None), Just(Fairness::Users), Just(Fairness::Projects)],
        weights in proptest::collection::btree_map("u[0-4]|p[0-2]", 0.5f64..3.0, 0..3),
        usage in proptest::collection::btree_map("u[0-4]|p[0-2]", 0.0f64..5.0, 0..6),
        limits in proptest::collection::vec((0u32..4, 0u32..3, proptest::bool::weighted(0.85)), 3),
        only in proptest::collection::vec(any::<bool>(), 3),
        state in prop_oneof![Just(QueueState::Open), Just(QueueState::Draining), Just(QueueState::Paused)],
        max_running in 0u32..30,
        running in 0u32..4,
        max in 0usize..40,
    ) {
        // gpu V100 no pool provides; the cpu pool takes only jobs without requirements.
        let wants = [&[][..], &["gpu:A100"], &["gpu:H100"], &["gpu:V100"], &["gpu:A100,H100"]];
        let pools: Vec<Pool> = [("a100", &["gpu:A100"][..]), ("cpu", &[]), ("h100", &["gpu:H100"])]
            .iter()
            .zip(&limits)
            .map(|((name, provides), (max_launches, _, enabled))| pool(name, provides, *max_launches, *enabled))
            .collect();
        let pool_running: BTreeMap<String, u32> = pools
            .iter()
            .zip(&limits)
            .map(|(p, (_, n, _))| (p.name.clone(), *n))
            .collect();
        let q = QueueConfig {
            fairness,
            weights,
            state,
            max_running,
            pools: pools.iter().zip(&only).filter(|(_, o)| **o).map(|(p, _)| p.name.clone()).collect(),
            ..QueueConfig::new("q")
        };
        let all: Vec<Candidate> = jobs
            .iter()
            .enumerate()
            .map(|(i, (u, p, prio, w))| Candidate {
                queued: Queued { id: i as u64 + 1, user: format!("u{u}"), project: format!("p{p}"), priority: *prio, seq: i as u64 + 1 },
                requires: parse_tags(wants[*w as usize]).unwrap(),
            })
            .collect();

        // Claims one by one over the whole queue, each counted before the next.
        let mut want = Vec::new();
        let (mut left, mut running_now, mut usage_now, mut pools_now) =
            (all.clone(), running, usage.clone(), pool_running.clone());
        while want.len() < max {
            let Some((c, p)) = decide(&q, &left, running_now, &usage_now, &pools, &pools_now) else {
                break;
            };
            let (id, name) = (c.queued.id, p.name.clone());
            *usage_now.entry(fairness_group(&q, &c.queued.user, &c.queued.project)).or_default() += 1.0;
            left.retain(|c| c.queued.id != id);
            running_now += 1;
            *pools_now.entry(name.clone()).or_default() += 1;
            want.push((id, name));
        }

        let start = Start { queue: &q, running, usage: &usage, pools: &pools, pool_running: &pool_running };
        let mut memory = Memory { q: &q, jobs: &all, read: 0 };
        let got: Vec<(u64, String)> = plan(&start, max, &mut memory)
            .unwrap()
            .into_iter()
            .map(|(c, p)| (c.queued.id, p.name.clone()))
            .collect();
        prop_assert_eq!(got, want);
    }
}

/// What a batch reads: the oldest job of each group at the top priority, then a group's next
/// jobs only when that group could be next, not the queue.
#[test]
fn a_batch_reads_the_groups_not_the_queue() {
    let q = QueueConfig {
        max_running: u32::MAX,
        ..QueueConfig::new("q")
    };
    // 100 users with 50 jobs each at priority 1, as many at priority 0.
    let all: Vec<Candidate> = (1..=10_000u64)
        .map(|i| Candidate {
            queued: Queued {
                id: i,
                user: format!("u{}", (i / 2) % 100),
                project: "p".into(),
                priority: (i % 2) as i32,
                seq: i,
            },
            requires: Default::default(),
        })
        .collect();
    let pools = [pool("cpu", &[], u32::MAX, true)];
    let (usage, pool_running) = (BTreeMap::new(), BTreeMap::new());
    let start = Start {
        queue: &q,
        running: 0,
        usage: &usage,
        pools: &pools,
        pool_running: &pool_running,
    };
    let reads = |max: usize| {
        let mut memory = Memory {
            q: &q,
            jobs: &all,
            read: 0,
        };
        let got = plan(&start, max, &mut memory).unwrap();
        assert_eq!(got.len(), max);
        assert!(got.iter().all(|(c, _)| c.queued.priority == 1));
        memory.read
    };
    // 64 claims go to 64 users with no usage yet: no group is read again.
    assert_eq!(reads(64), 100);
    // Past 100 claims every user has had one; which goes next depends on every user's next
    // job, read one each.
    assert_eq!(reads(150), 200);
}
