//! The SQLite store: names, admission, claims that are recorded with their launch in one
//! transaction, and no job claimed twice by two dispatchers working on one file.

use std::collections::BTreeSet;

use minicluster_pools::queue::{Fairness, QueueConfig, QueueState};
use minicluster_pools::routing::Pool;
use minicluster_pools::store::{NewJob, SqliteStore, StoreError};

fn queue(name: &str, max_running: u32, max_depth: u32) -> QueueConfig {
    QueueConfig {
        name: name.into(),
        max_running,
        max_depth,
        fairness: Fairness::Users,
        weights: Default::default(),
        state: QueueState::Open,
    }
}

fn job(queue: &str, user: &str) -> NewJob {
    NewJob {
        queue: queue.into(),
        user: user.into(),
        project: "p".into(),
        priority: 0,
        command: vec!["hostname".into()],
    }
}

#[test]
fn names_are_unique_and_missing_queues_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = SqliteStore::open(&dir.path().join("mc.db")).unwrap();
    s.create_pool(&Pool {
        name: "gpu".into(),
        enabled: true,
        ..Default::default()
    })
    .unwrap();
    let e = s
        .create_pool(&Pool {
            name: "gpu".into(),
            enabled: true,
            ..Default::default()
        })
        .unwrap_err();
    assert!(matches!(e, StoreError::Exists { .. }), "{e}");
    assert_eq!(s.pools().unwrap().len(), 1);
    let e = s.submit(&job("nope", "a")).unwrap_err().to_string();
    assert!(e.contains("no queue named nope"), "{e}");
    assert_eq!(s.counts("nope").unwrap(), (0, 0, 0), "nothing half-written");
}

#[test]
fn admission_claims_and_limits() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = SqliteStore::open(&dir.path().join("mc.db")).unwrap();
    s.create_queue(&queue("q", 2, 3)).unwrap();
    for u in ["a", "a", "b"] {
        s.submit(&job("q", u)).unwrap();
    }
    let e = s.submit(&job("q", "b")).unwrap_err().to_string();
    assert!(e.contains("queue q is full"), "{e}");
    let first = s.claim("q").unwrap().unwrap();
    let second = s.claim("q").unwrap().unwrap();
    assert_ne!(first.job, second.job);
    assert!(s.claim("q").unwrap().is_none(), "max-running 2");
    assert_eq!(s.counts("q").unwrap(), (1, 2, 0));
    s.finish(first.job, 0).unwrap();
    s.set_queue_state("q", QueueState::Paused).unwrap();
    assert!(s.claim("q").unwrap().is_none(), "paused");
    s.set_queue_state("q", QueueState::Draining).unwrap();
    assert!(
        s.submit(&job("q", "c"))
            .unwrap_err()
            .to_string()
            .contains("draining")
    );
    assert!(s.claim("q").unwrap().is_some(), "draining still dispatches");
    // The state survives reopening the file.
    drop(s);
    let s = SqliteStore::open(&dir.path().join("mc.db")).unwrap();
    assert_eq!(s.counts("q").unwrap(), (0, 2, 1));
}

#[test]
fn two_dispatchers_on_one_file_never_claim_a_job_twice() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("mc.db");
    let mut s = SqliteStore::open(&db).unwrap();
    s.create_queue(&queue("q", 1000, 1000)).unwrap();
    for i in 0..200 {
        s.submit(&job("q", if i % 2 == 0 { "a" } else { "b" }))
            .unwrap();
    }
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let db = db.clone();
            std::thread::spawn(move || {
                let mut s = SqliteStore::open(&db).unwrap();
                let mut got = Vec::new();
                while let Some(c) = s.claim("q").unwrap() {
                    got.push(c.job);
                }
                got
            })
        })
        .collect();
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.join().unwrap());
    }
    let unique: BTreeSet<u64> = all.iter().copied().collect();
    assert_eq!(
        (all.len(), unique.len()),
        (200, 200),
        "every job claimed exactly once"
    );
}
