//! The index makes the same decisions as the reference `next`, for random queues, usage,
//! weights and policies, all the way until the queue is empty.

use std::collections::BTreeMap;

use minicluster_pools::queue::{Fairness, Index, QueueConfig, QueueState, Queued, next};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn index_matches_next(
        jobs in proptest::collection::vec((0u8..6, 0u8..4, -1i32..2), 0..80),
        fairness in prop_oneof![Just(Fairness::None), Just(Fairness::Users), Just(Fairness::Projects)],
        weights in proptest::collection::btree_map("u[0-5]", 0.5f64..3.0, 0..4),
    ) {
        let q = QueueConfig {
            name: "q".into(),
            max_running: u32::MAX,
            max_depth: u32::MAX,
            fairness,
            weights,
            state: QueueState::Open,
        pools: vec![],
        priority: 0,
        };
        let mut waiting: Vec<Queued> = jobs
            .iter()
            .enumerate()
            .map(|(i, (u, p, prio))| Queued {
                id: i as u64,
                user: format!("u{u}"),
                project: format!("p{p}"),
                priority: *prio,
                seq: i as u64,
            })
            .collect();
        let mut index = Index::default();
        for j in &waiting {
            index.push(&q, j.clone());
        }
        let mut usage: BTreeMap<String, f64> = BTreeMap::new();
        while let Some(want) = next(&q, &waiting, 0, &usage).cloned() {
            let got = index.pop(&q, 0, &usage).expect("the index has it too");
            prop_assert_eq!(&got, &want);
            waiting.retain(|w| w.id != want.id);
            let group = if fairness == Fairness::Projects { want.project } else { want.user };
            *usage.entry(group).or_default() += 1.0;
        }
        prop_assert!(index.is_empty());
    }
}
