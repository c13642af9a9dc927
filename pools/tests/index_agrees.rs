//! The index makes the same decisions as the reference `next`, for random queues, usage,
//! weights and policies, with jobs arriving between decisions, all the way until the queue is
//! empty.

use std::collections::BTreeMap;

use minicluster_pools::queue::{Fairness, Index, QueueConfig, QueueState, Queued, next};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn index_matches_next(
        jobs in proptest::collection::vec((0u8..6, 0u8..4, -1i32..2), 0..80),
        fairness in prop_oneof![Just(Fairness::None), Just(Fairness::Users), Just(Fairness::Projects)],
        weights in proptest::collection::btree_map("u[0-5]|p[0-3]", 0.5f64..3.0, 0..4),
        usage in proptest::collection::btree_map("u[0-5]|p[0-3]", 0.0f64..4.0, 0..6),
        first in 0usize..80,
        arrivals in proptest::collection::vec(0usize..4, 1..20),
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
        let mut pending = jobs.iter().enumerate().map(|(i, (u, p, prio))| Queued {
            id: i as u64,
            user: format!("u{u}"),
            project: format!("p{p}"),
            priority: *prio,
            seq: i as u64,
        });
        let mut waiting: Vec<Queued> = Vec::new();
        let mut index = Index::new(&q);
        for (group, u) in &usage {
            index.set_usage(group, *u);
        }
        let mut usage: BTreeMap<String, f64> = usage;
        let mut arrive = |n: usize, waiting: &mut Vec<Queued>, index: &mut Index| {
            for j in pending.by_ref().take(n) {
                waiting.push(j.clone());
                index.push(j);
            }
        };
        arrive(first, &mut waiting, &mut index);
        for step in 0.. {
            prop_assert_eq!(index.len(), waiting.len());
            let want = next(&q, &waiting, 0, &usage).cloned();
            prop_assert_eq!(index.peek(), want.as_ref());
            let got = index.pop();
            prop_assert_eq!(&got, &want);
            let Some(want) = want else {
                // Empty: the rest arrives, or it is over.
                let before = waiting.len();
                arrive(usize::MAX, &mut waiting, &mut index);
                if waiting.len() == before {
                    break;
                }
                continue;
            };
            waiting.retain(|w| w.id != want.id);
            let group = match fairness {
                Fairness::None => None,
                Fairness::Users => Some(want.user),
                Fairness::Projects => Some(want.project),
            };
            if let Some(group) = group {
                *usage.entry(group.clone()).or_default() += 1.0;
                index.charge(&group, 1.0);
            }
            arrive(arrivals[step % arrivals.len()], &mut waiting, &mut index);
        }
        prop_assert!(index.is_empty());
    }
}
