//! The store suite: every backend must pass the same tests. Each test takes a function that
//! opens a store on one shared, initially empty database (called again to reopen it, or to
//! get a second connection).

use std::collections::BTreeSet;

use minicluster_pools::queue::{Fairness, QueueConfig, QueueState};
use minicluster_pools::store::{
    JobFilter, JobState, LaunchState, NewJob, Outcome, Store, StoreError,
};
use minicluster_pools::tags::parse_tags;
use minicluster_pools::{LauncherType, Pool};

pub type Open<'a> = &'a (dyn Fn() -> Box<dyn Store> + Sync);

pub fn queue(name: &str, max_running: u32, max_depth: u32) -> QueueConfig {
    QueueConfig {
        max_running,
        max_depth,
        ..QueueConfig::new(name)
    }
}

pub fn job(queue: &str, user: &str) -> NewJob {
    NewJob {
        queue: queue.into(),
        user: user.into(),
        project: "p".into(),
        command: vec!["hostname".into()],
        ..NewJob::default()
    }
}

pub fn pool(name: &str, provides: &[&str]) -> Pool {
    Pool {
        provides: parse_tags(provides).unwrap(),
        max_launches: 1000,
        ..Pool::new(name, LauncherType::Process)
    }
}

pub fn names_are_unique_and_missing_queues_refused(open: Open) {
    let mut s = open();
    s.create_pool(&pool("gpu", &[])).unwrap();
    let e = s.create_pool(&pool("gpu", &[])).unwrap_err();
    assert!(matches!(e, StoreError::Exists { .. }), "{e}");
    assert_eq!(e.http_status(), 409);
    assert_eq!(s.pools().unwrap().len(), 1);
    let e = s.submit(&job("nope", "a")).unwrap_err();
    assert!(e.to_string().contains("no queue named nope"), "{e}");
    assert_eq!(e.http_status(), 404);
    assert!(
        s.jobs(&JobFilter::default()).unwrap().is_empty(),
        "nothing half-written"
    );
    let e = s.update_pool(&pool("cpu", &[])).unwrap_err();
    assert!(matches!(e, StoreError::NotFound { .. }), "{e}");
    s.create_queue(&queue("q", 1, 10)).unwrap();
    assert!(matches!(
        s.create_queue(&queue("q", 1, 10)).unwrap_err(),
        StoreError::Exists { .. }
    ));
}

pub fn admission_claims_and_limits(open: Open) {
    let mut s = open();
    s.create_pool(&pool("cpu", &[])).unwrap();
    s.create_queue(&queue("q", 2, 3)).unwrap();
    for u in ["a", "a", "b"] {
        s.submit(&job("q", u)).unwrap();
    }
    let e = s.submit(&job("q", "b")).unwrap_err();
    assert!(e.to_string().contains("queue q is full"), "{e}");
    assert_eq!(e.http_status(), 429);
    let first = s.claim("q").unwrap().unwrap();
    let second = s.claim("q").unwrap().unwrap();
    assert_ne!(first.job.id, second.job.id);
    assert_eq!(first.job.state, JobState::Claimed);
    assert_eq!(first.pool.name, "cpu");
    assert_eq!(first.launch.name, format!("cpu-j{}", first.job.id));
    assert_eq!(first.launch.state, LaunchState::Requested);
    assert!(s.claim("q").unwrap().is_none(), "max-running 2");
    s.finish(
        first.job.id,
        &Outcome {
            state: JobState::Done,
            exit_code: Some(0),
            reason: None,
        },
    )
    .unwrap();
    // Finishing twice changes nothing.
    s.finish(
        first.job.id,
        &Outcome {
            state: JobState::Failed,
            exit_code: Some(9),
            reason: None,
        },
    )
    .unwrap();
    let done = s.job(first.job.id).unwrap();
    assert_eq!((done.state, done.exit_code), (JobState::Done, Some(0)));
    let l = &s.launches(Some("cpu"), 10).unwrap();
    let l = l.iter().find(|l| l.job == first.job.id).unwrap();
    assert_eq!(l.state, LaunchState::Stopped);
    let mut q = queue("q", 2, 3);
    q.state = QueueState::Paused;
    s.update_queue(&q).unwrap();
    assert!(s.claim("q").unwrap().is_none(), "paused");
    q.state = QueueState::Draining;
    s.update_queue(&q).unwrap();
    assert!(
        s.submit(&job("q", "c"))
            .unwrap_err()
            .to_string()
            .contains("draining")
    );
    assert!(s.claim("q").unwrap().is_some(), "draining still dispatches");
    // The state survives reopening.
    drop(s);
    let mut s = open();
    let states: Vec<JobState> = s
        .jobs(&JobFilter::default())
        .unwrap()
        .iter()
        .map(|j| j.state)
        .collect();
    assert_eq!(
        states,
        vec![JobState::Claimed, JobState::Claimed, JobState::Done]
    );
    assert_eq!(s.active().unwrap().len(), 2);
    assert_eq!(
        s.counts("q").unwrap().into_iter().collect::<Vec<_>>(),
        vec![(JobState::Claimed, 2), (JobState::Done, 1)]
    );
    assert!(s.counts("nope").unwrap().is_empty());
    let l = s
        .launch_of(first.job.id)
        .unwrap()
        .expect("a claimed job has a launch");
    assert_eq!((l.job, l.state), (first.job.id, LaunchState::Stopped));
    assert_eq!(s.launch_of(999).unwrap(), None);
}

pub fn routing_and_pool_limits(open: Open) {
    let mut s = open();
    let mut a100 = pool("a100", &["gpu:A100"]);
    a100.max_launches = 1;
    s.create_pool(&a100).unwrap();
    s.create_pool(&pool("cpu", &[])).unwrap();
    s.create_queue(&queue("q", 100, 100)).unwrap();
    let mut gpu_job = job("q", "a");
    gpu_job.requires = parse_tags(&["gpu:A100,H100"]).unwrap();
    let g1 = s.submit(&gpu_job).unwrap();
    let g2 = s.submit(&gpu_job).unwrap();
    let plain = s.submit(&job("q", "b")).unwrap();
    let mut h100 = job("q", "a");
    h100.requires = parse_tags(&["gpu:H100"]).unwrap();
    let e = s.submit(&h100).unwrap_err();
    assert!(matches!(e, StoreError::Unroutable { .. }), "{e}");
    assert_eq!(e.http_status(), 400);

    let c1 = s.claim("q").unwrap().unwrap();
    assert_eq!((c1.job.id, c1.pool.name.as_str()), (g1, "a100"));
    // b's plain job goes next (fair share); then g2 waits for the A100 pool's one slot.
    let c2 = s.claim("q").unwrap().unwrap();
    assert_eq!((c2.job.id, c2.pool.name.as_str()), (plain, "cpu"));
    assert!(s.claim("q").unwrap().is_none(), "a100 is at max_launches 1");
    assert_eq!(s.job(g2).unwrap().state, JobState::Waiting);
    s.finish(
        g1,
        &Outcome {
            state: JobState::Done,
            exit_code: Some(0),
            reason: None,
        },
    )
    .unwrap();
    let c3 = s.claim("q").unwrap().unwrap();
    assert_eq!((c3.job.id, c3.pool.name.as_str()), (g2, "a100"));
    // A disabled pool gets nothing new; deleting one with running work is refused.
    let mut cpu = pool("cpu", &[]);
    cpu.enabled = false;
    s.update_pool(&cpu).unwrap();
    s.submit(&job("q", "c")).unwrap();
    assert!(s.claim("q").unwrap().is_none(), "cpu is disabled");
    let e = s.delete_pool("cpu").unwrap_err();
    assert!(matches!(e, StoreError::Busy(_)), "{e}");
}

pub fn cancel_and_timeline(open: Open) {
    let mut s = open();
    s.create_pool(&pool("cpu", &[])).unwrap();
    s.create_queue(&queue("q", 1, 100)).unwrap();
    let waiting = s.submit(&job("q", "a")).unwrap();
    let later = s.submit(&job("q", "a")).unwrap();
    let c = s.claim("q").unwrap().unwrap();
    assert_eq!(c.job.id, waiting);
    let cancelled = s.cancel(later).unwrap();
    assert_eq!(cancelled.state, JobState::Cancelled);
    let marked = s.cancel(waiting).unwrap();
    assert_eq!(
        (marked.state, marked.cancel_requested),
        (JobState::Claimed, true)
    );
    for st in [
        LaunchState::Starting,
        LaunchState::Started,
        LaunchState::Connected,
    ] {
        s.launch_event(c.launch.id, st, None).unwrap();
    }
    s.launch_event(c.launch.id, LaunchState::Stopping, Some("cancelled"))
        .unwrap();
    s.finish(
        waiting,
        &Outcome {
            state: JobState::Cancelled,
            exit_code: None,
            reason: Some("cancelled while running".into()),
        },
    )
    .unwrap();
    let l = s.launches(None, 10).unwrap().remove(0);
    let steps: Vec<LaunchState> = l.events.iter().map(|e| e.state).collect();
    assert_eq!(
        steps,
        [
            LaunchState::Requested,
            LaunchState::Starting,
            LaunchState::Started,
            LaunchState::Connected,
            LaunchState::Stopping,
            LaunchState::Stopped
        ]
    );
    assert!(l.events.windows(2).all(|w| w[0].at <= w[1].at));
    let e = s.cancel(waiting).unwrap_err();
    assert!(matches!(e, StoreError::Finished { .. }), "{e}");
    assert!(matches!(s.cancel(999).unwrap_err(), StoreError::NoJob(999)));
}

pub fn import_is_one_transaction_and_refuses_stale_diffs(open: Open) {
    let mut s = open();
    s.create_pool(&pool("old", &[])).unwrap();
    s.create_pool(&pool("keep", &[])).unwrap();
    let rev = s.pools_revision().unwrap();
    // Someone changes the pools after the diff was computed.
    s.update_pool(&pool("keep", &["arch:x86"])).unwrap();
    let e = s
        .import_pools(&[pool("new", &[])], &["old".into()], rev)
        .unwrap_err();
    assert!(matches!(e, StoreError::Stale { .. }), "{e}");
    let names: Vec<String> = s.pools().unwrap().into_iter().map(|p| p.name).collect();
    assert_eq!(names, ["keep", "old"], "nothing applied");
    let rev = s.pools_revision().unwrap();
    s.import_pools(&[pool("new", &[]), pool("keep", &[])], &["old".into()], rev)
        .unwrap();
    let names: Vec<String> = s.pools().unwrap().into_iter().map(|p| p.name).collect();
    assert_eq!(names, ["keep", "new"]);
    assert!(s.pools().unwrap()[0].provides.is_empty(), "keep updated");
    assert!(s.pools_revision().unwrap() > rev);
}

pub fn two_dispatchers_never_claim_a_job_twice(open: Open) {
    claim_at_once(open, 200, &[1, 1]);
}

pub fn dispatchers_in_batches_never_claim_a_job_twice(open: Open) {
    claim_at_once(open, 300, &[1, 7, 16]);
}

/// Dispatchers, each on a connection of its own and claiming in batches of its size, empty a
/// queue of `jobs` at once: each job is claimed once, with its launch, and committed.
fn claim_at_once(open: Open, jobs: usize, batches: &[usize]) {
    let mut s = open();
    s.create_pool(&pool("cpu", &[])).unwrap();
    s.create_queue(&queue("q", 1000, 1000)).unwrap();
    let submitted: Vec<NewJob> = (0..jobs)
        .map(|i| job("q", ["a", "b", "c"][i % 3]))
        .collect();
    assert_eq!(s.submit_many(&submitted).unwrap().len(), jobs);
    drop(s);
    let all: Vec<u64> = std::thread::scope(|scope| {
        let workers: Vec<_> = batches
            .iter()
            .map(|&batch| {
                scope.spawn(move || {
                    let mut s = open();
                    let mut got = Vec::new();
                    loop {
                        let claimed = s.claim_many("q", batch).unwrap();
                        assert!(claimed.len() <= batch);
                        if claimed.is_empty() {
                            break got;
                        }
                        for c in claimed {
                            assert_eq!(c.job.state, JobState::Claimed);
                            assert_eq!(c.launch.job, c.job.id);
                            assert_eq!(c.job.launch, Some(c.launch.id));
                            got.push(c.job.id);
                        }
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    let unique: BTreeSet<u64> = all.iter().copied().collect();
    assert_eq!(
        (all.len(), unique.len()),
        (jobs, jobs),
        "every job claimed exactly once"
    );
    let active = open().active().unwrap();
    assert_eq!(active.len(), jobs, "every claim committed with its launch");
    assert!(
        active
            .iter()
            .all(|c| c.launch.name == format!("cpu-j{}", c.job.id))
    );
}

/// A batch takes the jobs, in the order and on the pools, that as many single claims take:
/// two mirrored queues, each with its own pools, one claimed one job at a time and one in a
/// batch, under each fairness. Priorities, weights, a pool's limit and work no enabled pool
/// can run included.
pub fn a_batch_claims_what_single_claims_would(open: Open) {
    for fairness in [Fairness::None, Fairness::Users, Fairness::Projects] {
        let tag = format!("{fairness:?}").to_lowercase();
        let (one, many) = (format!("one{tag}"), format!("many{tag}"));
        mirror_queues(open, &[&one, &many], fairness);
        let single: Vec<_> = std::iter::from_fn(|| open().claim(&one).unwrap())
            .map(|c| shape(&c))
            .collect();
        let batch: Vec<_> = open()
            .claim_many(&many, 100)
            .unwrap()
            .iter()
            .map(shape)
            .collect();
        assert_eq!(batch, single, "{fairness:?}");
        assert!(batch.len() > 2, "{fairness:?}: {batch:?}");
        assert!(
            batch.iter().filter(|c| c.4 == "gpu").count() <= 2,
            "the gpu pool's limit: {batch:?}"
        );
        // The batch is committed: a fresh connection sees each job claimed with its launch.
        let mut s = open();
        let n = batch.len() as u32;
        let counts = s.counts(&many).unwrap();
        assert_eq!(counts.get(&JobState::Claimed), Some(&n), "{counts:?}");
        let active = s.active().unwrap();
        assert_eq!(
            active.iter().filter(|c| c.job.spec.queue == many).count() as u32,
            n
        );
    }
}

/// The same pools (a gpu pool with room for 2, a cpu pool, a disabled one) and the same 40
/// jobs of 4 users in 3 projects behind each queue of `queues`.
fn mirror_queues(open: Open, queues: &[&str], fairness: Fairness) {
    let mut s = open();
    for side in queues {
        let mut gpu = pool(&format!("{side}-gpu"), &["gpu:A100"]);
        gpu.max_launches = 2;
        s.create_pool(&gpu).unwrap();
        s.create_pool(&pool(&format!("{side}-cpu"), &[])).unwrap();
        let mut off = pool(&format!("{side}-off"), &["gpu:H100"]);
        off.enabled = false;
        s.create_pool(&off).unwrap();
        let mut q = queue(side, 15, 1000);
        q.fairness = fairness;
        q.pools = ["gpu", "cpu", "off"]
            .iter()
            .map(|p| format!("{side}-{p}"))
            .collect();
        q.weights = [("u0".to_string(), 2.0), ("p1".to_string(), 2.0)].into();
        s.create_queue(&q).unwrap();
        let jobs: Vec<NewJob> = (0..40)
            .map(|i| {
                let mut j = job(side, &format!("u{}", i % 4));
                j.command = vec!["place".into(), (i + 1).to_string()];
                j.project = format!("p{}", i % 3);
                j.priority = [0, 0, 1][i % 3];
                j.requires = match i % 7 {
                    0 => parse_tags(&["gpu:A100"]).unwrap(),
                    1 => parse_tags(&["gpu:H100"]).unwrap(),
                    _ => Default::default(),
                };
                j
            })
            .collect();
        s.submit_many(&jobs).unwrap();
    }
}

/// A claim as "its job's place in its queue (1 the first), user, project, priority, pool
/// kind", alike across mirrored queues.
fn shape(c: &minicluster_pools::store::Claimed) -> (u64, String, String, i32, String) {
    let side = &c.job.spec.queue;
    let command = &c.job.spec.command;
    (
        command[1].parse().unwrap(),
        c.job.spec.user.clone(),
        c.job.spec.project.clone(),
        c.job.spec.priority,
        c.pool
            .name
            .trim_start_matches(&format!("{side}-"))
            .to_string(),
    )
}

pub fn fair_share_between_two_users(open: Open) {
    let mut s = open();
    s.create_pool(&pool("cpu", &[])).unwrap();
    let mut q = queue("q", 4, 1000);
    q.fairness = Fairness::Users;
    s.create_queue(&q).unwrap();
    for user in ["a", "b"] {
        for _ in 0..100 {
            s.submit(&job("q", user)).unwrap();
        }
    }
    let mut order = Vec::new();
    let mut running = std::collections::VecDeque::new();
    while order.len() < 200 {
        while let Some(c) = s.claim("q").unwrap() {
            order.push(c.job.spec.user.clone());
            running.push_back(c.job.id);
        }
        assert!(running.len() <= 4, "max-running 4");
        let id = running.pop_front().expect("something runs");
        s.finish(
            id,
            &Outcome {
                state: JobState::Done,
                exit_code: Some(0),
                reason: None,
            },
        )
        .unwrap();
    }
    // Interleaved within one job: at every prefix the two users' counts differ by at most 1.
    let mut diff: i32 = 0;
    for u in &order {
        diff += if u == "a" { 1 } else { -1 };
        assert!(diff.abs() <= 1, "order {order:?}");
    }
}

/// Runs every test of the suite, each on a fresh database from `fresh`.
#[macro_export]
macro_rules! store_suite {
    ($fresh:expr) => {
        #[test]
        fn names_are_unique_and_missing_queues_refused() {
            $fresh(|open| suite::names_are_unique_and_missing_queues_refused(open));
        }
        #[test]
        fn admission_claims_and_limits() {
            $fresh(|open| suite::admission_claims_and_limits(open));
        }
        #[test]
        fn routing_and_pool_limits() {
            $fresh(|open| suite::routing_and_pool_limits(open));
        }
        #[test]
        fn cancel_and_timeline() {
            $fresh(|open| suite::cancel_and_timeline(open));
        }
        #[test]
        fn import_is_one_transaction_and_refuses_stale_diffs() {
            $fresh(|open| suite::import_is_one_transaction_and_refuses_stale_diffs(open));
        }
        #[test]
        fn two_dispatchers_never_claim_a_job_twice() {
            $fresh(|open| suite::two_dispatchers_never_claim_a_job_twice(open));
        }
        #[test]
        fn dispatchers_in_batches_never_claim_a_job_twice() {
            $fresh(|open| suite::dispatchers_in_batches_never_claim_a_job_twice(open));
        }
        #[test]
        fn a_batch_claims_what_single_claims_would() {
            $fresh(|open| suite::a_batch_claims_what_single_claims_would(open));
        }
        #[test]
        fn fair_share_between_two_users() {
            $fresh(|open| suite::fair_share_between_two_users(open));
        }
    };
}
