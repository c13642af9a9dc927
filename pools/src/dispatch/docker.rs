//! Jobs on docker pools: a MiniCluster of containers per job. What became of a launch is read
//! from Docker itself — the containers labelled with the launch's name, and what the Engine
//! recorded of rank 0's process — never from anything held in this process, so a control
//! plane restarted after a SIGKILL sees exactly what a running one sees.
//!
//! Exactly once: rank 0 runs the work, and it is the last container started. A rank 0 that
//! exists but never started means the work never began: its containers are removed and the
//! launch made again. A rank 0 that started (running or exited) began the work: it is never
//! launched again, only watched, or its exit code read.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use minicluster_launcher::Error as LaunchError;
use minicluster_launcher::docker::{self as engine, Container, DockerLauncher};

use super::{Control, Executor, minicluster};
use crate::pool::Pool;
use crate::store::{Claimed, JobState, LaunchState, Outcome};

/// Label naming the control plane (its launch directory) that made a container or network,
/// so that one control plane never re-attaches to, nor sweeps, another's launches on a shared
/// Docker Engine.
pub const OWNER: &str = "flux-framework.org/control-plane";

/// How long rank 0 has to stop after SIGTERM before it is killed.
const GRACE: Duration = Duration::from_secs(10);
/// How long the Engine may fail to answer before a running job is given up.
const UNREACHABLE: Duration = Duration::from_secs(60);

pub struct DockerExecutor {
    /// The Engine pools without `dockerHost` use (`None`: `$DOCKER_HOST`, else the local
    /// socket).
    pub host: Option<String>,
    /// Where launch records are kept.
    pub root: PathBuf,
    /// This control plane's [`OWNER`] label: its launch directory, made absolute.
    pub owner: String,
    /// Our entrypoint binary, copied into every container.
    pub entrypoint: PathBuf,
    /// `flux` inside the images, when it is not on their PATH.
    pub flux: Option<String>,
    /// Where rank 0's log of each job is kept.
    pub logs: PathBuf,
    /// How often a running launch is looked at.
    pub poll: Duration,
}

fn ended(state: JobState, exit_code: Option<i32>, reason: impl Into<Option<String>>) -> Outcome {
    Outcome {
        state,
        exit_code,
        reason: reason.into(),
    }
}

/// Runs `f` to its end on a runtime of this thread (the dispatcher calls executors from plain
/// threads; the HTTP API from blocking tasks).
fn block_on<F: Future>(f: F) -> Result<F::Output, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map(|rt| rt.block_on(f))
        .map_err(|e| format!("starting a runtime for the Docker client: {e}"))
}

impl DockerExecutor {
    /// An executor on the Engine at `$DOCKER_HOST` (else the local socket), once it answers;
    /// `Err` is the reason docker pools' jobs fail with.
    pub async fn connect(
        root: PathBuf,
        entrypoint: PathBuf,
        flux: Option<String>,
        logs: PathBuf,
    ) -> Result<Self, String> {
        let where_ = engine::engine_address(None);
        let unreachable = |reason: String| {
            format!(
                "docker pools: cannot reach the Docker Engine at {where_}: {reason} (fix: start Docker or set DOCKER_HOST)"
            )
        };
        let docker = engine::client(None).map_err(|e| unreachable(e.to_string()))?;
        match tokio::time::timeout(Duration::from_secs(10), docker.ping()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(unreachable(e.to_string())),
            Err(_) => return Err(unreachable("no answer within 10 s".into())),
        }
        // Absolute, and the same on every start, so a restart knows its own launches.
        let _ = std::fs::create_dir_all(&root);
        let owner = std::fs::canonicalize(&root)
            .unwrap_or_else(|_| root.clone())
            .display()
            .to_string();
        Ok(DockerExecutor {
            host: None,
            root,
            owner,
            entrypoint,
            flux,
            logs,
            poll: Duration::from_millis(250),
        })
    }

    /// A launcher on `pool`'s Engine (its `dockerHost`, else ours). Made afresh for each call,
    /// on the caller's runtime: a client's connections belong to the runtime they were made on.
    fn launcher(&self, pool: &Pool) -> Result<DockerLauncher, String> {
        let host = pool.set.get("dockerHost").or(self.host.as_ref());
        Ok(DockerLauncher {
            docker: engine::client(host.map(String::as_str)).map_err(|e| e.to_string())?,
            root: self.root.clone(),
            entrypoint: self.entrypoint.clone(),
            flux: self.flux.clone(),
        })
    }

    /// `OWNER=<ours>`, as Docker's label filters take it.
    fn owner_label(&self) -> String {
        format!("{OWNER}={}", self.owner)
    }

    /// Whether launch `name`'s rank 0 container exists and is ours.
    async fn ours(&self, l: &DockerLauncher, name: &str) -> bool {
        l.containers_of(name).await.is_ok_and(|cs| {
            cs.iter()
                .any(|k| k.rank == 0 && k.labels.get(OWNER) == Some(&self.owner))
        })
    }

    fn kept_log(&self, job: u64) -> PathBuf {
        self.logs.join(format!("job-{job}.log"))
    }

    async fn watch(&self, c: &Claimed, ctl: &Control<'_>) -> Option<Outcome> {
        let l = match self.launcher(&c.pool) {
            Ok(l) => l,
            Err(e) => return Some(ended(JobState::Failed, None, e)),
        };
        let name = c.launch.name.as_str();
        let rank0 = format!("{name}-0");
        let owner = &self.owner;
        let owner_label = self.owner_label();
        // Steps an earlier run of the dispatcher recorded: past `starting`, the work began.
        let began_before = matches!(
            c.launch.state,
            LaunchState::Started | LaunchState::Connected | LaunchState::Stopping
        );
        let stopping_before = c.launch.state == LaunchState::Stopping;
        let mut attached = false;
        let mut connected = false;
        let mut stop_sent: Option<Instant> = None;
        let mut killed = false;
        let mut launches = 0u32;
        let mut settled = false;
        let mut removed_unstarted = false;
        let mut unreachable_since: Option<Instant> = None;
        loop {
            if ctl.shutting_down() {
                return None;
            }
            let stopping = stop_sent.is_some() || stopping_before;
            let containers = match l.containers_of(name).await {
                Ok(cs) => {
                    unreachable_since = None;
                    cs
                }
                Err(e) => {
                    let since = *unreachable_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > UNREACHABLE {
                        return Some(ended(
                            JobState::Failed,
                            None,
                            format!(
                                "lost: the Docker Engine did not answer for {UNREACHABLE:?}: {e}"
                            ),
                        ));
                    }
                    tracing::warn!(launch = %name, "looking at the containers: {e}");
                    tokio::time::sleep(self.poll).await;
                    continue;
                }
            };
            if let Some(k) = containers
                .iter()
                .find(|k| k.labels.get(OWNER) != Some(owner))
            {
                return Some(ended(
                    JobState::Failed,
                    None,
                    format!(
                        "launch {name}: a container of that name ({}) was not made by this control plane, so it is neither watched nor replaced (fix: `docker rm -f` the containers labelled {}={name} if nothing needs them, or rename the pool)",
                        short(&k.id),
                        engine::LABEL
                    ),
                ));
            }
            let began = began_before || attached;
            let Some(r0) = containers.iter().find(|k| k.rank == 0) else {
                if began {
                    let state = if stopping {
                        JobState::Cancelled
                    } else {
                        JobState::Failed
                    };
                    return Some(ended(
                        state,
                        None,
                        format!(
                            "lost: rank 0's container {rank0} is gone (removed outside the control plane); its work began, so it is not launched again"
                        ),
                    ));
                }
                // Rank 0 is created first: without it nothing of the work exists. Remove what
                // a launch killed half-way left (a network, workers) and launch.
                if ctl.cancel_requested() {
                    return Some(ended(
                        JobState::Cancelled,
                        None,
                        "cancelled before its MiniCluster started".to_string(),
                    ));
                }
                launches += 1;
                if launches > 3 {
                    return Some(ended(
                        JobState::Failed,
                        None,
                        format!(
                            "launch {name}: its containers kept disappearing before rank 0 started"
                        ),
                    ));
                }
                let mc = match minicluster::for_job(&c.job, &c.pool, name) {
                    Ok(mc) => mc,
                    Err(e) => return Some(ended(JobState::Failed, None, e)),
                };
                if let Err(e) = l.down_labelled(name, Some(&owner_label)).await {
                    return Some(ended(JobState::Failed, None, format!("launch: {e}")));
                }
                let image = mc
                    .spec
                    .containers
                    .get(mc.spec.flux_container_index().unwrap_or(0))
                    .map(|k| k.image.clone())
                    .unwrap_or_default();
                let detail = if removed_unstarted {
                    format!(
                        "image {image} (an earlier launch's rank 0 was created but never started: removed)"
                    )
                } else {
                    format!("image {image}")
                };
                ctl.event(LaunchState::Starting, Some(&detail));
                let labels = HashMap::from([(OWNER.to_string(), owner.clone())]);
                match l.launch_labelled(&mc, &labels).await {
                    Ok(_) => {}
                    // Someone made containers of that name between our look and our launch.
                    Err(LaunchError::NameTaken { .. }) => continue,
                    Err(e) => return Some(ended(JobState::Failed, None, format!("launch: {e}"))),
                }
                attached = true;
                ctl.event(
                    LaunchState::Started,
                    Some(&format!(
                        "{} brokers in containers of {image} on network mc-{name}",
                        mc.spec.size
                    )),
                );
                continue;
            };
            if !matches!(r0.status.as_str(), "running" | "paused" | "restarting") {
                let st = match l.process_state(&r0.id).await {
                    Ok(st) => st,
                    // Removed between the list and the look: the next look tells.
                    Err(e) => {
                        tracing::debug!(launch = %name, "{e}");
                        tokio::time::sleep(self.poll).await;
                        continue;
                    }
                };
                if st.running {
                    tokio::time::sleep(self.poll).await;
                    continue;
                }
                if !st.started {
                    // Created, never started: the work never began.
                    if !settled {
                        // A start the killed control plane sent may still be under way.
                        settled = true;
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                    if began {
                        return Some(ended(
                            JobState::Failed,
                            None,
                            format!(
                                "launch {name}: rank 0's container {rank0} never started{}",
                                if st.error.is_empty() {
                                    String::new()
                                } else {
                                    format!(": {}", st.error)
                                }
                            ),
                        ));
                    }
                    tracing::info!(launch = %name, "rank 0 was created but never started: launching again");
                    if let Err(e) = l.down_labelled(name, Some(&owner_label)).await {
                        return Some(ended(JobState::Failed, None, format!("launch: {e}")));
                    }
                    removed_unstarted = true;
                    continue;
                }
                let mut o = finished(&st, stopping);
                if o.state == JobState::Failed && !st.oom_killed {
                    // A broker the kernel killed for memory is why, more than rank 0's code.
                    for k in containers.iter().filter(|k| k.rank != 0) {
                        if l.process_state(&k.id).await.is_ok_and(|w| w.oom_killed) {
                            o.reason = Some(format!(
                                "OOM killed (rank {}; rank 0's exit code {})",
                                k.rank, st.exit_code
                            ));
                            break;
                        }
                    }
                }
                return Some(o);
            }
            if !attached {
                attached = true;
                ctl.event(
                    LaunchState::Started,
                    Some(&format!(
                        "re-attached to rank 0's running container {rank0} after a control plane restart"
                    )),
                );
            }
            if !connected && all_run(&containers) {
                connected = true;
                ctl.event(
                    LaunchState::Connected,
                    Some(&format!("all {} brokers' containers run", containers.len())),
                );
            }
            match stop_sent {
                None if ctl.cancel_requested() => {
                    ctl.event(
                        LaunchState::Stopping,
                        Some("cancel requested: SIGTERM to rank 0"),
                    );
                    l.stop(name).await;
                    stop_sent = Some(Instant::now());
                }
                Some(at) if !killed && at.elapsed() > GRACE => {
                    tracing::warn!(launch = %name, "rank 0 did not stop within {GRACE:?}: killing it");
                    l.signal(name, "SIGKILL").await;
                    killed = true;
                }
                _ => {}
            }
            tokio::time::sleep(self.poll).await;
        }
    }
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

fn all_run(containers: &[Container]) -> bool {
    !containers.is_empty() && containers.iter().all(|k| k.status == "running")
}

/// The outcome of a job whose rank 0 ran and exited.
fn finished(st: &engine::ProcessState, stopping: bool) -> Outcome {
    let code = i32::try_from(st.exit_code).unwrap_or(1);
    if stopping {
        return ended(
            JobState::Cancelled,
            Some(code),
            "cancelled while running".to_string(),
        );
    }
    if st.oom_killed {
        return ended(JobState::Failed, Some(code), "OOM killed".to_string());
    }
    match code {
        0 => ended(JobState::Done, Some(0), None),
        code if st.error.is_empty() => {
            ended(JobState::Failed, Some(code), format!("exit code {code}"))
        }
        code => ended(
            JobState::Failed,
            Some(code),
            format!("exit code {code}: {}", st.error),
        ),
    }
}

impl Executor for DockerExecutor {
    fn run(&self, c: &Claimed, ctl: &Control<'_>) -> Option<Outcome> {
        match block_on(self.watch(c, ctl)) {
            Ok(o) => o,
            Err(e) => Some(ended(JobState::Failed, None, e)),
        }
    }

    fn keep_log(&self, c: &Claimed) {
        let to = self.kept_log(c.job.id);
        let tmp = to.with_extension("log.tmp");
        let kept = block_on(async {
            let l = self.launcher(&c.pool)?;
            std::fs::create_dir_all(&self.logs).map_err(|e| e.to_string())?;
            if !self.ours(&l, &c.launch.name).await {
                return Err("no rank 0 container of ours".to_string());
            }
            let mut f = std::fs::File::create(&tmp).map_err(|e| e.to_string())?;
            l.copy_log(&c.launch.name, 0, 0, None, &mut f)
                .await
                .map_err(|e| e.to_string())?;
            f.sync_all().map_err(|e| e.to_string())?;
            std::fs::rename(&tmp, &to).map_err(|e| e.to_string())
        })
        .and_then(|r| r);
        if let Err(e) = kept {
            let _ = std::fs::remove_file(&tmp);
            tracing::debug!(launch = %c.launch.name, "keeping rank 0's log: {e}");
        }
    }

    fn clean_up(&self, c: &Claimed) {
        let done = block_on(async {
            let l = self.launcher(&c.pool)?;
            l.down_labelled(&c.launch.name, Some(&self.owner_label()))
                .await
                .map_err(|e| e.to_string())
        })
        .and_then(|r| r);
        if let Err(e) = done {
            tracing::warn!(launch = %c.launch.name, "cleaning up: {e}");
        }
    }

    fn sweep(&self, active: &BTreeSet<String>) {
        let owner = self.owner_label();
        let swept = block_on(async {
            let l = self.launcher(&Pool::default())?;
            let names = l.names(Some(&owner)).await.map_err(|e| e.to_string())?;
            for name in names {
                if active.contains(&name) || !is_job_launch(&name) {
                    continue;
                }
                match l.down_labelled(&name, Some(&owner)).await {
                    Ok(_) => tracing::info!(launch = %name, "removed what a finished job left"),
                    Err(e) => tracing::warn!(launch = %name, "cleaning up: {e}"),
                }
            }
            Ok::<(), String>(())
        })
        .and_then(|r| r);
        if let Err(e) = swept {
            tracing::warn!("sweeping docker launches: {e}");
        }
    }

    fn log(&self, pool: &Pool, job: u64, launch: &str, offset: u64) -> Option<Vec<u8>> {
        // A snapshot of at most 1 MiB per call; callers page on with the offset.
        const LIMIT: u64 = 1 << 20;
        let kept = self.kept_log(job);
        if let Ok(mut f) = std::fs::File::open(&kept) {
            f.seek(SeekFrom::Start(offset)).ok()?;
            let mut out = Vec::new();
            f.take(LIMIT).read_to_end(&mut out).ok()?;
            return Some(out);
        }
        block_on(async {
            let l = self.launcher(pool).ok()?;
            if !self.ours(&l, launch).await {
                return None;
            }
            let mut out = Vec::new();
            let read = l.copy_log(launch, 0, offset, Some(LIMIT), &mut out);
            match tokio::time::timeout(Duration::from_secs(10), read).await {
                Ok(Ok(_)) => Some(out),
                _ => None,
            }
        })
        .ok()
        .flatten()
    }
}

/// Launch names the dispatcher makes: `<pool>-j<job>`.
fn is_job_launch(name: &str) -> bool {
    name.rsplit_once("-j").is_some_and(|(pool, id)| {
        !pool.is_empty() && !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(exit_code: i64) -> engine::ProcessState {
        engine::ProcessState {
            started: true,
            exit_code,
            ..Default::default()
        }
    }

    #[test]
    fn exits_are_classified() {
        assert_eq!(
            finished(&st(0), false),
            ended(JobState::Done, Some(0), None)
        );
        assert_eq!(
            finished(&st(3), false),
            ended(JobState::Failed, Some(3), "exit code 3".to_string())
        );
        let oom = engine::ProcessState {
            oom_killed: true,
            ..st(137)
        };
        assert_eq!(
            finished(&oom, false),
            ended(JobState::Failed, Some(137), "OOM killed".to_string())
        );
        assert_eq!(finished(&st(143), true).state, JobState::Cancelled);
        assert_eq!(finished(&st(0), true).state, JobState::Cancelled);
    }

    #[test]
    fn only_job_launches_are_swept() {
        assert!(is_job_launch("cpu-j7"));
        assert!(is_job_launch("a-b-j12"));
        for n in ["cpu", "cpu-j", "-j7", "cpu-jx", "dev"] {
            assert!(!is_job_launch(n), "{n}");
        }
    }
}
