//! Fairness and limits as a simulation: jobs are dispatched as `next` decides, run for a fixed
//! time, and finish; usage counts dispatched jobs.

use std::collections::BTreeMap;

use minicluster_pools::queue::{Fairness, QueueConfig, QueueState, Queued, Refusal, admit, next};

fn queue(fairness: Fairness, weights: &[(&str, f64)]) -> QueueConfig {
    QueueConfig {
        name: "q".into(),
        max_running: 4,
        max_depth: 1000,
        fairness,
        weights: weights.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        state: QueueState::Open,
        pools: vec![],
        priority: 0,
    }
}

/// Two users submit 100 jobs each, user a all first. Returns the dispatch order (users) and
/// the most jobs ever running at once.
fn simulate(q: &QueueConfig) -> (Vec<String>, u32) {
    let mut waiting: Vec<Queued> = Vec::new();
    let mut seq = 0;
    for user in ["a", "b"] {
        for _ in 0..100 {
            seq += 1;
            waiting.push(Queued {
                id: seq,
                user: user.into(),
                project: format!("proj-{user}"),
                priority: 0,
                seq,
            });
        }
    }
    let mut usage: BTreeMap<String, f64> = BTreeMap::new();
    let mut running: Vec<(u64, u32)> = Vec::new(); // (id, finishes at tick)
    let mut order = Vec::new();
    let mut peak = 0;
    for tick in 0..10_000u32 {
        running.retain(|(_, end)| *end > tick);
        while let Some(j) = next(q, &waiting, running.len() as u32, &usage).cloned() {
            waiting.retain(|w| w.id != j.id);
            *usage
                .entry(match q.fairness {
                    Fairness::Projects => j.project.clone(),
                    _ => j.user.clone(),
                })
                .or_default() += 1.0;
            order.push(j.user.clone());
            running.push((j.id, tick + 3));
        }
        peak = peak.max(running.len() as u32);
        if waiting.is_empty() && running.is_empty() {
            break;
        }
    }
    (order, peak)
}

#[test]
fn equal_users_are_interleaved_within_one_job() {
    let (order, peak) = simulate(&queue(Fairness::Users, &[]));
    assert_eq!(order.len(), 200);
    assert_eq!(peak, 4, "max-running holds");
    let (mut a, mut b) = (0i32, 0i32);
    for u in &order {
        if u == "a" {
            a += 1
        } else {
            b += 1
        }
        if a < 100 && b < 100 {
            assert!((a - b).abs() <= 1, "a {a} b {b}: {order:?}");
        }
    }
}

#[test]
fn weights_share_in_proportion_within_one_job() {
    let (order, _) = simulate(&queue(Fairness::Users, &[("a", 2.0)]));
    let (mut a, mut b) = (0.0f64, 0.0f64);
    for u in &order {
        if u == "a" {
            a += 1.0
        } else {
            b += 1.0
        }
        if a < 100.0 && b < 100.0 {
            assert!(
                (a - 2.0 * b).abs() <= 2.0,
                "a {a} b {b}: weight 2 gives twice the share"
            );
        }
    }
}

#[test]
fn projects_and_fifo() {
    let (order, _) = simulate(&queue(Fairness::Projects, &[]));
    assert_eq!(&order[..4], ["a", "b", "a", "b"]);
    let (order, _) = simulate(&queue(Fairness::None, &[]));
    assert!(
        order[..100].iter().all(|u| u == "a"),
        "FIFO: a submitted first"
    );
}

#[test]
fn priority_goes_first_but_never_preempts() {
    let q = queue(Fairness::Users, &[]);
    let job = |id, user: &str, priority| Queued {
        id,
        user: user.into(),
        project: "p".into(),
        priority,
        seq: id,
    };
    let waiting = vec![job(1, "a", 0), job(2, "b", 5), job(3, "a", 5)];
    let usage = BTreeMap::from([("b".to_string(), 10.0)]);
    // Priority 5 first; between a and b, a has used less.
    assert_eq!(next(&q, &waiting, 0, &usage).unwrap().id, 3);
    // Full: nothing, whatever the priority.
    assert!(next(&q, &waiting, 4, &usage).is_none());
}

#[test]
fn depth_pause_and_drain() {
    let mut q = queue(Fairness::Users, &[]);
    q.max_depth = 2;
    assert!(admit(&q, 1).is_ok());
    let e = admit(&q, 2).unwrap_err();
    assert!(matches!(e, Refusal::Full { .. }));
    assert!(e.to_string().contains("queue q is full"), "{e}");
    let waiting = vec![Queued {
        id: 1,
        user: "a".into(),
        project: "p".into(),
        priority: 0,
        seq: 1,
    }];
    q.state = QueueState::Paused;
    assert!(admit(&q, 0).is_ok(), "a paused queue still takes work");
    assert!(
        next(&q, &waiting, 0, &BTreeMap::new()).is_none(),
        "but hands none out"
    );
    q.state = QueueState::Draining;
    assert!(
        matches!(admit(&q, 0), Err(Refusal::Draining { .. })),
        "a draining queue takes none"
    );
    assert_eq!(
        next(&q, &waiting, 0, &BTreeMap::new()).unwrap().id,
        1,
        "but hands out what it holds"
    );
}
