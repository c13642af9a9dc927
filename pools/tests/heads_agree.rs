//! A store may load only the oldest waiting job of each fairness group at the top priority
//! when `heads_decide` says so: the decision is then the one the whole queue gives.

use std::collections::BTreeMap;

use minicluster_pools::queue::{Fairness, QueueConfig, Queued};
use minicluster_pools::store::{Candidate, decide, heads_decide};
use minicluster_pools::tags::parse_tags;
use minicluster_pools::{LauncherType, Pool};
use proptest::prelude::*;

fn heads(q: &QueueConfig, all: &[Candidate]) -> Vec<Candidate> {
    let top = all.iter().map(|c| c.queued.priority).max().unwrap();
    let mut by_group: BTreeMap<String, Candidate> = BTreeMap::new();
    for c in all.iter().filter(|c| c.queued.priority == top) {
        let g = match q.fairness {
            Fairness::None => String::new(),
            Fairness::Users => c.queued.user.clone(),
            Fairness::Projects => c.queued.project.clone(),
        };
        by_group.entry(g).or_insert_with(|| c.clone());
    }
    by_group.into_values().collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn heads_give_the_same_decision(
        jobs in proptest::collection::vec((0u8..5, 0u8..3, 0i32..3, 0u8..3), 1..60),
        fairness in prop_oneof![Just(Fairness::None), Just(Fairness::Users), Just(Fairness::Projects)],
        usage in proptest::collection::btree_map("u[0-4]|p[0-2]", 0.0f64..5.0, 0..6),
        full_pools in proptest::collection::vec(any::<bool>(), 2),
    ) {
        let gpus = ["A100", "H100", "V100"];
        let q = QueueConfig { fairness, ..QueueConfig::new("q") };
        // Jobs sorted by id, as stores load them; gpu V100 is provided by no pool.
        let all: Vec<Candidate> = jobs
            .iter()
            .enumerate()
            .map(|(i, (u, p, prio, g))| Candidate {
                queued: Queued { id: i as u64, user: format!("u{u}"), project: format!("p{p}"), priority: *prio, seq: i as u64 },
                requires: parse_tags(&[format!("gpu:{}", gpus[*g as usize])]).unwrap(),
            })
            .collect();
        let pools: Vec<Pool> = ["A100", "H100"]
            .iter()
            .map(|g| Pool { provides: parse_tags(&[format!("gpu:{g}")]).unwrap(), max_launches: 1, ..Pool::new(format!("p-{g}"), LauncherType::Process) })
            .collect();
        let pool_running: BTreeMap<String, u32> = pools
            .iter()
            .zip(&full_pools)
            .map(|(p, full)| (p.name.clone(), u32::from(*full)))
            .collect();
        let h = heads(&q, &all);
        prop_assume!(heads_decide(&q, &h, &pools));
        let want = decide(&q, &all, 0, &usage, &pools, &pool_running).map(|(c, p)| (c.queued.id, p.name.clone()));
        let got = decide(&q, &h, 0, &usage, &pools, &pool_running).map(|(c, p)| (c.queued.id, p.name.clone()));
        prop_assert_eq!(got, want);
    }
}
