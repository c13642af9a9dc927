//! Jobs on process pools: a MiniCluster of local entrypoint processes per job. What became of
//! a launch is read from the files rank 0 writes (its claim and its exit code), never from
//! our own child handles, so a restarted control plane sees exactly what a running one sees.

use std::collections::BTreeSet;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use minicluster_launcher::Error as LaunchError;
use minicluster_launcher::outcome::started_file;
use minicluster_launcher::process::{Outcome as Seen, ProcessLauncher};
use minicluster_launcher::state::{self, Record};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use super::{Control, Executor, minicluster, warm};
use crate::pool::Pool;
use crate::store::{Claimed, JobState, LaunchState, Outcome};

pub struct ProcessExecutor {
    /// Where launches keep their state, unless a pool sets `directory`.
    pub root: PathBuf,
    pub entrypoint: PathBuf,
    /// The `flux` brokers run, unless a pool sets `flux` (default: flux on PATH).
    pub flux: Option<PathBuf>,
    /// Where rank 0's log of each job is kept.
    pub logs: PathBuf,
    /// How often a running launch is looked at.
    pub poll: Duration,
    /// Warm MiniClusters of pools with an idle timeout.
    pub warm: warm::Warm,
}

fn ended(state: JobState, exit_code: Option<i32>, reason: impl Into<Option<String>>) -> Outcome {
    Outcome {
        state,
        exit_code,
        reason: reason.into(),
    }
}

impl ProcessExecutor {
    fn root_of(&self, pool: &Pool) -> PathBuf {
        pool.set
            .get("directory")
            .map_or_else(|| self.root.clone(), PathBuf::from)
    }

    fn launcher(&self, pool: &Pool) -> ProcessLauncher {
        ProcessLauncher {
            launched: Default::default(),
            root: self.root_of(pool),
            entrypoint: pool
                .set
                .get("entrypoint")
                .map_or_else(|| self.entrypoint.clone(), PathBuf::from),
            flux: pool
                .set
                .get("flux")
                .map(PathBuf::from)
                .or_else(|| self.flux.clone()),
            port: None,
            grace: Duration::from_secs(5),
            mode: None,
        }
    }

    fn kept_log(&self, job: u64) -> PathBuf {
        self.logs.join(format!("job-{job}.log"))
    }
}

/// Whether rank 0's Flux instance answers on its local socket.
fn connects(root: &Path, name: &str) -> bool {
    Record::load(root, name)
        .ok()
        .and_then(|r| r.flux_uri)
        .map(|u| u.trim_start_matches("local://").to_string())
        .is_some_and(|p| std::os::unix::net::UnixStream::connect(p).is_ok())
}

/// SIGTERM to rank 0's process group: its entrypoint stops the broker, the instance ends,
/// and rank 0 still records its exit code.
fn stop_rank0(root: &Path, name: &str) {
    if let Some(pid) = Record::load(root, name)
        .ok()
        .and_then(|r| r.pids.first().copied())
    {
        let _ = killpg(Pid::from_raw(pid), Signal::SIGTERM);
    }
}

impl Executor for ProcessExecutor {
    fn run(&self, c: &Claimed, ctl: &Control<'_>) -> Option<Outcome> {
        let l = self.launcher(&c.pool);
        // What the timeline says wins (a launch made before the pool changed is followed
        // as it was made); a job not launched yet goes by its pool.
        let is_warm = match warm::from_timeline(c) {
            Some(named) => named.is_some(),
            None => c.pool.idle_timeout > 0,
        };
        if is_warm {
            return self.warm.run(&l, c, ctl, self.poll);
        }
        let name = c.launch.name.as_str();
        // A launch past `requested` was made by an earlier run of the dispatcher.
        let mut attached = false;
        let mut connected = false;
        let mut stopping = false;
        loop {
            if ctl.shutting_down() {
                return None;
            }
            let seen = match l.outcome(name) {
                Ok(s) => s,
                Err(e) => {
                    return Some(ended(
                        JobState::Failed,
                        None,
                        format!("reading launch {name}: {e}"),
                    ));
                }
            };
            let began = started_file(&state::dir(&l.root, name)).exists();
            let unrecorded = matches!(seen, Seen::NotLaunched);
            match seen {
                // Nothing of the work ever started: start it (again).
                Seen::NotLaunched | Seen::Lost { .. } if !began => {
                    if ctl.cancel_requested() {
                        return Some(ended(
                            JobState::Cancelled,
                            None,
                            "cancelled before its MiniCluster started".to_string(),
                        ));
                    }
                    // A control plane killed between creating the launch's directory and
                    // saving its record (or while clearing an old one) leaves a directory
                    // the launcher would refuse to create again; with no claim in it,
                    // nothing ran from it.
                    if unrecorded
                        && state::dir(&l.root, name).exists()
                        && let Err(e) = l.forget(name)
                    {
                        return Some(ended(
                            JobState::Failed,
                            None,
                            format!("clearing launch {name}: {e}"),
                        ));
                    }
                    let mc = match minicluster::for_job(&c.job, &c.pool, name) {
                        Ok(mc) => mc,
                        Err(e) => return Some(ended(JobState::Failed, None, e)),
                    };
                    ctl.event(LaunchState::Starting, None);
                    match l.launch(&mc, false, false) {
                        // Dropping the handle leaves the brokers running; the files tell the rest.
                        Ok(running) => drop(running),
                        // Another start claimed it between our look and our launch: look again.
                        Err(LaunchError::AlreadyStarted { .. }) => continue,
                        Err(e) => {
                            return Some(ended(JobState::Failed, None, format!("launch: {e}")));
                        }
                    }
                    attached = true;
                    ctl.event(
                        LaunchState::Started,
                        Some(&format!("{} brokers as local processes", mc.spec.size)),
                    );
                }
                Seen::Lost { reason } => {
                    let state = if stopping {
                        JobState::Cancelled
                    } else {
                        JobState::Failed
                    };
                    return Some(ended(state, None, reason));
                }
                Seen::Finished { exit_code } => {
                    return Some(match (stopping, exit_code) {
                        (true, code) => ended(
                            JobState::Cancelled,
                            Some(code),
                            "cancelled while running".to_string(),
                        ),
                        (false, 0) => ended(JobState::Done, Some(0), None),
                        (false, code) => {
                            ended(JobState::Failed, Some(code), format!("exit code {code}"))
                        }
                    });
                }
                // Its work began, yet the record that names its processes is gone: nothing
                // can be watched, and starting it again would run it twice.
                Seen::NotLaunched => {
                    return Some(ended(
                        JobState::Failed,
                        None,
                        format!("launch {name} lost its record after its work had started"),
                    ));
                }
                Seen::Running { .. } => {
                    if !attached {
                        attached = true;
                        ctl.event(
                            LaunchState::Started,
                            Some("re-attached after a control plane restart"),
                        );
                    }
                    if !connected && connects(&l.root, name) {
                        connected = true;
                        ctl.event(
                            LaunchState::Connected,
                            Some("rank 0's Flux instance answers"),
                        );
                    }
                    if !stopping && ctl.cancel_requested() {
                        stopping = true;
                        ctl.event(LaunchState::Stopping, Some("cancel requested"));
                        stop_rank0(&l.root, name);
                    }
                }
            }
            std::thread::sleep(self.poll);
        }
    }

    fn keep_log(&self, c: &Claimed) {
        let root = self.root_of(&c.pool);
        let from = match self.warm.cluster_of(c.job.id) {
            Some(n) => warm::job_log(&root, &n, c.job.id),
            None => state::dir(&root, &c.launch.name).join("rank-0.log"),
        };
        let to = self.kept_log(c.job.id);
        let tmp = to.with_extension("log.tmp");
        let copied = std::fs::create_dir_all(&self.logs)
            .and_then(|()| std::fs::copy(&from, &tmp))
            .and_then(|_| std::fs::rename(&tmp, &to));
        if let Err(e) = copied {
            tracing::debug!("keeping {}: {e}", from.display());
        }
    }

    fn clean_up(&self, c: &Claimed) {
        if self.warm.cluster_of(c.job.id).is_some() {
            self.warm.clean_up(&self.root_of(&c.pool), c.job.id);
            return;
        }
        if let Err(e) = self.launcher(&c.pool).forget(&c.launch.name) {
            tracing::warn!(launch = %c.launch.name, "cleaning up: {e}");
        }
    }

    fn sweep(&self, active: &BTreeSet<String>) {
        let l = self.launcher(&Pool::default());
        let jobs: BTreeSet<u64> = active
            .iter()
            .filter(|n| is_job_launch(n))
            .filter_map(|n| n.rsplit_once("-j").and_then(|(_, id)| id.parse().ok()))
            .collect();
        self.warm.sweep(&self.root, &jobs);
        // Every launch directory, not only those with a record: a control plane killed while
        // it removed a finished launch leaves one whose record is already gone.
        let names: BTreeSet<String> = std::fs::read_dir(&self.root)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        for name in names {
            if !active.contains(&name) && is_job_launch(&name) {
                match l.forget(&name) {
                    Ok(_) => tracing::info!(launch = %name, "removed what a finished job left"),
                    Err(e) => tracing::warn!(launch = %name, "cleaning up: {e}"),
                }
            }
        }
    }

    fn tick(&self, pools: &[Pool]) {
        self.reap(pools);
    }

    fn log(&self, pool: &Pool, job: u64, launch: &str, offset: u64) -> Option<Vec<u8>> {
        let kept = self.kept_log(job);
        let root = self.root_of(pool);
        let path = if kept.exists() {
            kept
        } else if let Some(n) = self.warm.cluster_of(job) {
            warm::job_log(&root, &n, job)
        } else {
            state::dir(&root, launch).join("rank-0.log")
        };
        let mut f = std::fs::File::open(path).ok()?;
        f.seek(SeekFrom::Start(offset)).ok()?;
        let mut out = Vec::new();
        // A snapshot of at most 1 MiB per call; callers page on with the offset.
        f.take(1 << 20).read_to_end(&mut out).ok()?;
        Some(out)
    }
}

impl ProcessExecutor {
    /// Tears down the warm MiniClusters that are done (see [`warm::Warm::reap`]).
    pub fn reap(&self, pools: &[Pool]) {
        let mut roots: BTreeSet<PathBuf> = BTreeSet::from([self.root.clone()]);
        roots.extend(pools.iter().map(|p| self.root_of(p)));
        for root in roots {
            let mut l = self.launcher(&Pool::default());
            l.root = root;
            self.warm.reap(&l, pools);
        }
    }
}

/// Launch names the dispatcher makes: `<pool>-j<job>`.
fn is_job_launch(name: &str) -> bool {
    name.rsplit_once("-j").is_some_and(|(pool, id)| {
        !pool.is_empty() && !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit())
    })
}
