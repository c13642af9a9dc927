//! The dispatcher: claims jobs from the queues (a batch of claims per transaction, which also
//! writes their launch records), hands each to its pool's executor, and records how it ended.
//!
//! Exactly once under faults: the launch's name is derived from the job, and an executor
//! asked to run a claimed job first looks for that launch — so a dispatcher restarted after
//! being killed at any point re-attaches to what is running, records what finished while it
//! was down, and starts only what never started.

pub mod docker;
pub mod kubernetes;
pub mod minicluster;
pub mod process;
pub mod warm;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::pool::LauncherType;
use crate::store::{Claimed, JobState, LaunchState, Outcome, Store, StoreError};

/// The store, shared by the HTTP API and the dispatcher.
pub type Shared = Arc<Mutex<Box<dyn Store>>>;

/// Runs the store call `f` with the lock held.
pub fn with<T>(store: &Shared, f: impl FnOnce(&mut dyn Store) -> T) -> T {
    let mut guard = store
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    f(guard.as_mut())
}

/// What an executor may do while a job runs: report steps of the launch, see a cancel.
pub struct Control<'a> {
    store: &'a Shared,
    claimed: &'a Claimed,
    stop: &'a AtomicBool,
}

impl Control<'_> {
    /// Appends a step to the launch's timeline (a store error is logged, not fatal: the
    /// timeline is for people; the job's outcome is what must not be lost).
    pub fn event(&self, state: LaunchState, detail: Option<&str>) {
        tracing::info!(job = self.claimed.job.id, launch = %self.claimed.launch.name, %state, detail, "launch");
        if let Err(e) = with(self.store, |s| {
            s.launch_event(self.claimed.launch.id, state, detail)
        }) {
            tracing::warn!(
                job = self.claimed.job.id,
                "recording launch step {state}: {e}"
            );
        }
    }

    /// Whether someone asked to cancel the job.
    pub fn cancel_requested(&self) -> bool {
        with(self.store, |s| s.job(self.claimed.job.id))
            .map(|j| j.cancel_requested)
            .unwrap_or(false)
    }

    /// Whether the control plane is shutting down (leave the work running; a restart
    /// re-attaches to it).
    pub fn shutting_down(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

/// Runs claimed jobs on one kind of launcher.
pub trait Executor: Send + Sync {
    /// Launches the job's MiniCluster, or re-attaches to the one an earlier run of the
    /// dispatcher launched, and waits until its work ends. `None` when the control plane is
    /// shutting down and the work goes on.
    fn run(&self, claimed: &Claimed, ctl: &Control<'_>) -> Option<Outcome>;
    /// Saves what people will want after the launch is gone (rank 0's log).
    fn keep_log(&self, claimed: &Claimed);
    /// Removes what the launch left, after its outcome is recorded.
    fn clean_up(&self, claimed: &Claimed);
    /// Removes what launches of jobs no longer claimed left behind (a dispatcher killed
    /// between recording an outcome and cleaning up).
    fn sweep(&self, active: &BTreeSet<String>);
    /// Called on every turn of the dispatcher with the pools as they are now (warm
    /// MiniClusters past their idle timeout, or drained, are torn down here).
    fn tick(&self, _pools: &[crate::pool::Pool]) {}
    /// Rank 0's output of a job, from `offset` bytes on (live while it runs).
    fn log(&self, pool: &crate::pool::Pool, job: u64, launch: &str, offset: u64)
    -> Option<Vec<u8>>;
}

/// Where each launcher type's work goes.
pub struct Executors {
    pub process: Arc<dyn Executor>,
    /// `Err`: why this control plane cannot run docker pools' jobs (no Docker Engine).
    pub docker: Result<Arc<dyn Executor>, String>,
    /// `Err`: why this control plane cannot run kubernetes pools' jobs (no cluster).
    pub kubernetes: Result<Arc<dyn Executor>, String>,
}

impl Executors {
    pub fn for_type(&self, t: LauncherType) -> Result<Arc<dyn Executor>, String> {
        match t {
            LauncherType::Process => Ok(Arc::clone(&self.process)),
            LauncherType::Docker => self.docker.clone(),
            LauncherType::Kubernetes => self.kubernetes.clone(),
        }
    }

    /// Every executor there is (for sweeping at start).
    pub fn all(&self) -> Vec<Arc<dyn Executor>> {
        let mut v = vec![Arc::clone(&self.process)];
        v.extend(self.docker.iter().cloned());
        v.extend(self.kubernetes.iter().cloned());
        v
    }
}

/// Jobs claimed in one transaction at most: one commit (one fsync) for all of them, while
/// the store stays free for the HTTP API between batches.
pub const CLAIM_BATCH: usize = 64;

/// Settings of the dispatcher.
#[derive(Clone, Debug)]
pub struct Options {
    /// How often queues are looked at when nothing wakes the dispatcher.
    pub tick: Duration,
}

/// Wakes the dispatcher (a submission, a finished job, a pool change).
#[derive(Default)]
pub struct Wake {
    flag: Mutex<bool>,
    cv: Condvar,
}

impl Wake {
    pub fn notify(&self) {
        *self.flag.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.cv.notify_all();
    }

    fn wait(&self, timeout: Duration) {
        let guard = self.flag.lock().unwrap_or_else(|p| p.into_inner());
        let (mut guard, _) = self
            .cv
            .wait_timeout_while(guard, timeout, |woken| !*woken)
            .unwrap_or_else(|p| p.into_inner());
        *guard = false;
    }
}

pub struct Dispatcher {
    pub store: Shared,
    pub executors: Arc<Executors>,
    pub wake: Arc<Wake>,
    pub stop: Arc<AtomicBool>,
    pub options: Options,
}

impl Dispatcher {
    /// Re-attaches to the claimed jobs, then dispatches until `stop`; returns once every
    /// worker thread has ended (at once on stop: the work itself goes on).
    pub fn run(&self) -> Result<(), StoreError> {
        let mut workers = Vec::new();
        let active = with(&self.store, |s| s.active())?;
        let names: BTreeSet<String> = active.iter().map(|c| c.launch.name.clone()).collect();
        for e in self.executors.all() {
            e.sweep(&names);
        }
        if !active.is_empty() {
            tracing::info!("re-attaching to {} claimed jobs", active.len());
        }
        for c in active {
            workers.push(self.spawn(c));
        }
        while !self.stop.load(Ordering::SeqCst) {
            let mut queues = with(&self.store, |s| s.queues())?;
            queues.sort_by_key(|q| std::cmp::Reverse(q.priority));
            for q in &queues {
                loop {
                    if self.stop.load(Ordering::SeqCst) {
                        break;
                    }
                    // Every claim of a batch is committed before any of its jobs starts.
                    match with(&self.store, |s| s.claim_many(&q.name, CLAIM_BATCH)) {
                        Ok(batch) => {
                            let full = batch.len() == CLAIM_BATCH;
                            workers.extend(batch.into_iter().map(|c| self.spawn(c)));
                            if !full {
                                break;
                            }
                        }
                        Err(e) => {
                            tracing::error!(queue = %q.name, "claim: {e}");
                            break;
                        }
                    }
                }
            }
            workers.retain(|w: &std::thread::JoinHandle<()>| !w.is_finished());
            match with(&self.store, |s| s.pools()) {
                Ok(pools) => {
                    for e in self.executors.all() {
                        e.tick(&pools);
                    }
                }
                Err(e) => tracing::warn!("reading pools: {e}"),
            }
            reap_children();
            self.wake.wait(self.options.tick);
        }
        for w in workers {
            let _ = w.join();
        }
        Ok(())
    }

    fn spawn(&self, c: Claimed) -> std::thread::JoinHandle<()> {
        let store = Arc::clone(&self.store);
        let executors = Arc::clone(&self.executors);
        let stop = Arc::clone(&self.stop);
        let wake = Arc::clone(&self.wake);
        std::thread::spawn(move || {
            let span = tracing::info_span!("job", id = c.job.id, pool = %c.pool.name);
            let _enter = span.enter();
            match executors.for_type(c.pool.launcher) {
                // A launch made before a restart may still run where we cannot look now (the
                // Engine or cluster is down): leave the job claimed for a later start to
                // re-attach, rather than record an outcome that may be false.
                Err(reason) if c.launch.state != LaunchState::Requested => {
                    tracing::warn!(
                        launch = %c.launch.name,
                        "cannot re-attach: {reason}; the job stays claimed until a start that can"
                    );
                }
                Err(reason) => record(
                    &store,
                    &c,
                    &Outcome {
                        state: JobState::Failed,
                        exit_code: None,
                        reason: Some(reason),
                    },
                ),
                Ok(exec) => {
                    let ctl = Control {
                        store: &store,
                        claimed: &c,
                        stop: &stop,
                    };
                    // Log first, then the outcome, then clean-up: killed between any two,
                    // a restart finds the launch again and nothing runs twice.
                    if let Some(o) = exec.run(&c, &ctl) {
                        exec.keep_log(&c);
                        record(&store, &c, &o);
                        exec.clean_up(&c);
                    }
                }
            }
            wake.notify();
        })
    }
}

/// Records an outcome, retrying a store that is briefly unavailable: losing it would leave
/// the job claimed until the next restart.
fn record(store: &Shared, c: &Claimed, o: &Outcome) {
    for attempt in 1..=10 {
        match with(store, |s| s.finish(c.job.id, o)) {
            Ok(()) => {
                tracing::info!(state = %o.state, exit_code = o.exit_code, "job ended");
                return;
            }
            Err(e) => {
                tracing::warn!(attempt, "recording the outcome: {e}");
                std::thread::sleep(Duration::from_millis(200 * attempt));
            }
        }
    }
}

/// Brokers are our children; their outcome is read from the files they write, so nothing
/// waits on them: reap them here, or they stay as zombies that look alive.
fn reap_children() {
    use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
    while let Ok(status) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
        if status == WaitStatus::StillAlive {
            break;
        }
    }
}
