//! Warm reuse on process pools (a pool with an idle timeout): jobs run, one at a time, in a
//! persistent MiniCluster `<pool>-w<hash8>-<n>` through its Flux instance, instead of each in a
//! MiniCluster of its own. `hash8` is a hash of what shapes the MiniCluster (the template,
//! `set.size`, `set.image`, `set.env.*`, its size), so a changed template makes new names and
//! the old clusters are drained: they get no new jobs and are torn down once idle.
//!
//! What is on disk, in the cluster's launch directory, is the truth a restart reads: `warm-busy`
//! (created exclusively; the id of the job it runs), `warm-idle` (its mtime: idle since) and
//! `jobs/<id>.log` (the job's output). Exactly once: the job's timeline names the cluster
//! before anything is submitted (`warm <name>`) and the Flux job id after
//! (`submitted flux id <id> to warm <name>`); a restart finds the job in that cluster by its
//! Flux job name `mcjob-<id>` before submitting again, and a job whose timeline says it was
//! submitted is never submitted again.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use flux_client::{Client, JobId, JobRequest, ListRequest, SubmitOptions};
use minicluster_launcher::process::ProcessLauncher;
use minicluster_launcher::state::{self, Record};
use serde_json::json;

use super::{Control, minicluster};
use crate::pool::Pool;
use crate::store::{Claimed, JobState, LaunchState, Outcome};

const BUSY: &str = "warm-busy";
const IDLE: &str = "warm-idle";

/// What the executor keeps in memory: which warm cluster each running job uses (for its log
/// and clean-up), and one lock so two jobs never pick or start the same cluster.
#[derive(Default)]
pub struct Warm {
    jobs: Mutex<HashMap<u64, String>>,
    pick: Mutex<()>,
}

/// FNV-1a (32 bits), as 8 hex digits: short and stable across builds and machines.
fn fnv1a(bytes: &[u8]) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in bytes {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("{h:08x}")
}

/// The hash of what shapes a pool's warm MiniCluster of `size` brokers.
pub fn hash8(pool: &Pool, size: i32) -> String {
    let mut text = String::new();
    text.push_str(pool.template.as_deref().unwrap_or(""));
    text.push('\0');
    for (k, v) in &pool.set {
        if k == "size" || k == "image" || k.starts_with("env.") {
            text.push_str(&format!("{k}={v}\0"));
        }
    }
    text.push_str(&format!("size={size}"));
    fnv1a(text.as_bytes())
}

pub fn name(pool: &str, hash: &str, n: u32) -> String {
    format!("{pool}-w{hash}-{n}")
}

/// `<pool>-w<hash8>-<n>` back into its parts.
pub fn parse(name: &str) -> Option<(&str, &str, u32)> {
    let (rest, n) = name.rsplit_once('-')?;
    let n = n.parse().ok()?;
    let (pool, hash) = rest.rsplit_once("-w")?;
    (!pool.is_empty() && hash.len() == 8 && hash.bytes().all(|b| b.is_ascii_hexdigit()))
        .then_some((pool, hash, n))
}

/// The warm cluster a timeline detail names (`warm X`, `reused warm X`, `… to warm X`).
fn named_in(detail: &str) -> Option<&str> {
    let at = detail.rfind("warm ")?;
    let rest = &detail[at + 5..];
    let end = rest.find([':', ' ', ',']).unwrap_or(rest.len());
    let n = &rest[..end];
    parse(n).map(|_| n)
}

/// What a job's timeline says of warm reuse: `None` when it never got as far as a launch;
/// `Some(None)` for a launch of its own; `Some(Some((cluster, submitted flux id)))`.
pub fn from_timeline(c: &Claimed) -> Option<Option<(String, Option<u64>)>> {
    let mut cluster = None;
    let mut submitted = None;
    let mut launched = false;
    for e in &c.launch.events {
        if e.state == LaunchState::Requested {
            continue;
        }
        launched = true;
        if let Some(d) = e.detail.as_deref() {
            if let Some(n) = named_in(d) {
                cluster = Some(n.to_string());
            }
            if let Some(id) = d.strip_prefix("submitted flux id ") {
                submitted = id.split_whitespace().next().and_then(|s| s.parse().ok());
            }
        }
    }
    launched.then(|| cluster.map(|n| (n, submitted)))
}

fn ended(state: JobState, exit_code: Option<i32>, reason: impl Into<Option<String>>) -> Outcome {
    Outcome {
        state,
        exit_code,
        reason: reason.into(),
    }
}

fn block_on<F: Future>(rt: &tokio::runtime::Runtime, f: F) -> F::Output {
    rt.block_on(f)
}

fn uri_of(root: &Path, name: &str) -> Option<String> {
    Record::load(root, name).ok().and_then(|r| r.flux_uri)
}

/// Every warm cluster under `root`: (name, its record).
fn clusters(root: &Path) -> Vec<(String, Record)> {
    std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            parse(&n)?;
            let r = Record::load(root, &n).ok()?;
            Some((n, r))
        })
        .collect()
}

fn alive(root: &Path, r: &Record) -> bool {
    let ranks = minicluster_launcher::process::alive_ranks(r, root);
    !ranks.is_empty() && ranks.iter().all(|s| s.running)
}

fn busy_of(dir: &Path) -> Option<u64> {
    std::fs::read_to_string(dir.join(BUSY))
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

/// Takes the cluster for `job`: true when it is now ours (or already was).
fn take(dir: &Path, job: u64) -> bool {
    use std::io::Write;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dir.join(BUSY))
    {
        Ok(mut f) => f.write_all(job.to_string().as_bytes()).is_ok(),
        Err(_) => busy_of(dir) == Some(job),
    }
}

/// Gives the cluster back (only if `job` holds it), idle from now.
fn release(dir: &Path, job: u64) {
    if busy_of(dir) == Some(job) {
        let _ = std::fs::write(dir.join(IDLE), job.to_string());
        let _ = std::fs::remove_file(dir.join(BUSY));
    }
}

fn idle_for(dir: &Path, created: u64) -> Duration {
    let since = std::fs::metadata(dir.join(IDLE))
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| SystemTime::UNIX_EPOCH + Duration::from_secs(created));
    SystemTime::now().duration_since(since).unwrap_or_default()
}

pub fn job_log(root: &Path, cluster: &str, job: u64) -> PathBuf {
    state::dir(root, cluster)
        .join("jobs")
        .join(format!("{job}.log"))
}

/// The MiniCluster a warm cluster of `pool` is: the job's, without the job in it.
fn warm_minicluster(c: &Claimed, name: &str) -> Result<minicluster_core::MiniCluster, String> {
    let mut job = c.job.clone();
    job.spec.command = vec!["true".into()];
    let mut mc = minicluster::for_job(&job, &c.pool, name)?;
    mc.spec.interactive = true;
    let idx = mc.spec.flux_container_index().unwrap_or(0);
    if let Some(k) = mc.spec.containers.get_mut(idx) {
        k.command = None;
        k.environment.remove("MINICLUSTER_JOB");
    }
    let problems = minicluster_core::spec::validate(&mc);
    if !problems.is_empty() {
        let list: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        return Err(format!(
            "pool {}: its warm MiniCluster is not valid: {}",
            c.pool.name,
            list.join("; ")
        ));
    }
    Ok(mc)
}

/// How the job ran, from its eventlog: `None` while it runs.
fn fate(log: &[flux_client::EventlogEntry]) -> Option<Result<i32, String>> {
    if let Some(f) = log.iter().find(|e| e.name == "finish") {
        let status = f
            .context
            .as_ref()
            .and_then(|c| c.get("status"))
            .and_then(|s| s.as_i64())
            .unwrap_or(0) as i32;
        return Some(Ok(status));
    }
    if log.iter().any(|e| e.name == "clean") {
        let note = log
            .iter()
            .rev()
            .find(|e| e.name == "exception")
            .and_then(|e| e.context.as_ref())
            .and_then(|c| c.get("note"))
            .and_then(|n| n.as_str())
            .unwrap_or("no finish event")
            .to_string();
        return Some(Err(note));
    }
    None
}

impl Warm {
    pub fn cluster_of(&self, job: u64) -> Option<String> {
        self.jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&job)
            .cloned()
    }

    fn remember(&self, job: u64, cluster: &str) {
        self.jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(job, cluster.to_string());
    }

    /// Runs a claimed job in a warm cluster (re-attaching to the one its timeline names).
    pub fn run(
        &self,
        l: &ProcessLauncher,
        c: &Claimed,
        ctl: &Control<'_>,
        poll: Duration,
    ) -> Option<Outcome> {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => return Some(ended(JobState::Failed, None, format!("a runtime: {e}"))),
        };
        let root = &l.root;
        let id = c.job.id;
        let flux_name = format!("mcjob-{id}");
        let (mut cluster, submitted) = match from_timeline(c) {
            Some(Some((n, s))) => (Some(n), s),
            _ => (None, None),
        };
        // Re-attach: the cluster the timeline names, and the job in it by its name.
        if let Some(n) = cluster.clone() {
            let up = Record::load(root, &n).is_ok_and(|r| alive(root, &r));
            let found = if up {
                let uri = uri_of(root, &n).unwrap_or_default();
                match block_on(&rt, find(&uri, &flux_name)) {
                    Ok(f) => f,
                    Err(e) => {
                        return Some(ended(
                            JobState::Failed,
                            None,
                            format!("lost: warm {n} does not answer: {e}"),
                        ));
                    }
                }
            } else {
                None
            };
            match (found, submitted) {
                (Some(fid), _) => {
                    self.remember(id, &n);
                    take(&state::dir(root, &n), id);
                    ctl.event(
                        LaunchState::Started,
                        Some(&format!(
                            "re-attached to flux id {fid} in warm {n} after a control plane restart"
                        )),
                    );
                    return self.wait(&rt, root, &n, ctl, JobId(fid), poll);
                }
                (None, Some(fid)) => {
                    let why = if up {
                        format!("warm {n} no longer knows it")
                    } else {
                        format!("warm {n} is gone")
                    };
                    return Some(ended(
                        JobState::Failed,
                        None,
                        format!("lost: submitted as flux id {fid}, and {why}"),
                    ));
                }
                // Named, never submitted: safe to submit, there if it is still up.
                (None, None) if up && take(&state::dir(root, &n), id) => {}
                (None, None) => cluster = None,
            }
        }
        if ctl.cancel_requested() {
            return Some(ended(
                JobState::Cancelled,
                None,
                "cancelled before it started".to_string(),
            ));
        }
        let n = match cluster {
            Some(n) => n,
            None => match self.pick(l, c, ctl) {
                Ok(n) => n,
                Err(e) => return Some(ended(JobState::Failed, None, e)),
            },
        };
        self.remember(id, &n);
        let dir = state::dir(root, &n);
        let mc = match minicluster::for_job(&c.job, &c.pool, &n) {
            Ok(mc) => mc,
            Err(e) => return Some(ended(JobState::Failed, None, e)),
        };
        let k = mc
            .spec
            .containers
            .get(mc.spec.flux_container_index().unwrap_or(0));
        let mut req = JobRequest::new(c.job.spec.command.clone()).inherit_env();
        if let Some(k) = k {
            req.environment.extend(k.environment.clone());
            req.cwd = k.working_dir.clone();
        }
        let size = u64::try_from(mc.spec.size.max(1)).unwrap_or(1);
        req.nodes = Some(size);
        req.tasks = Some(u64::try_from(mc.spec.tasks).unwrap_or(1).max(size));
        req.name = Some(flux_name);
        // Absolute: the job's shell opens it from wherever the job runs.
        let log =
            std::path::absolute(job_log(root, &n, id)).unwrap_or_else(|_| job_log(root, &n, id));
        if let Err(e) = std::fs::create_dir_all(dir.join("jobs")) {
            return Some(ended(
                JobState::Failed,
                None,
                format!("{}: {e}", dir.display()),
            ));
        }
        let file = json!({"type": "file", "path": log.display().to_string()});
        req.shell_options
            .insert("output".into(), json!({"stdout": file, "stderr": file}));
        let uri = uri_of(root, &n).unwrap_or_default();
        let fid = match block_on(&rt, async {
            Client::connect(&uri)
                .await?
                .submit(&req, SubmitOptions::default())
                .await
        }) {
            Ok(f) => f,
            Err(e) => {
                // Nothing was submitted: the cluster is free again.
                release(&dir, id);
                return Some(ended(
                    JobState::Failed,
                    None,
                    format!("submitting to warm {n}: {e}"),
                ));
            }
        };
        ctl.event(
            LaunchState::Connected,
            Some(&format!("submitted flux id {} to warm {n}", fid.0)),
        );
        self.wait(&rt, root, &n, ctl, fid, poll)
    }

    /// An idle warm cluster of the job's shape (taken for it), or a new one.
    fn pick(&self, l: &ProcessLauncher, c: &Claimed, ctl: &Control<'_>) -> Result<String, String> {
        let root = &l.root;
        let id = c.job.id;
        let size = minicluster::for_job(&c.job, &c.pool, "x")?.spec.size;
        let hash = hash8(&c.pool, size);
        let _g = self.pick.lock().unwrap_or_else(|p| p.into_inner());
        let mut mine: Vec<(u32, String, Record)> = clusters(root)
            .into_iter()
            .filter_map(|(n, r)| {
                let (p, h, k) = parse(&n)?;
                (p == c.pool.name && h == hash).then(|| (k, n.clone(), r))
            })
            .collect();
        mine.sort_by_key(|(k, _, _)| *k);
        for (_, n, r) in &mine {
            if alive(root, r) && take(&state::dir(root, n), id) {
                ctl.event(LaunchState::Started, Some(&format!("reused warm {n}")));
                return Ok(n.clone());
            }
        }
        // Numbers are never reused (a counter beside the launches), so a name in an old
        // timeline never means a later cluster.
        let counter = root.join(".warm-counter");
        let next = std::fs::read_to_string(&counter)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            .unwrap_or(0)
            .max(mine.last().map_or(0, |(k, _, _)| *k))
            + 1;
        std::fs::create_dir_all(root)
            .and_then(|()| std::fs::write(&counter, next.to_string()))
            .map_err(|e| format!("{}: {e}", counter.display()))?;
        let n = name(&c.pool.name, &hash, next);
        let mc = warm_minicluster(c, &n)?;
        ctl.event(LaunchState::Starting, Some(&format!("starting warm {n}")));
        let mut running = l
            .launch(&mc, true, false)
            .map_err(|e| format!("launching warm {n}: {e}"))?;
        take(&running.dir, id);
        if let Err(e) = running.wait_ready(Duration::from_secs(60)) {
            running.teardown();
            let _ = l.down(&n);
            return Err(format!("warm {n} did not come up: {e}"));
        }
        // Dropping the handle leaves the brokers running.
        drop(running);
        ctl.event(
            LaunchState::Started,
            Some(&format!(
                "warm {n}: {} brokers as local processes",
                mc.spec.size
            )),
        );
        Ok(n)
    }

    fn wait(
        &self,
        rt: &tokio::runtime::Runtime,
        root: &Path,
        n: &str,
        ctl: &Control<'_>,
        fid: JobId,
        poll: Duration,
    ) -> Option<Outcome> {
        let uri = uri_of(root, n).unwrap_or_default();
        let mut client = None;
        let mut cancelled = false;
        loop {
            if ctl.shutting_down() {
                return None;
            }
            let up = Record::load(root, n).is_ok_and(|r| alive(root, &r));
            if !up {
                return Some(ended(
                    JobState::Failed,
                    None,
                    format!("lost: warm {n} ended while flux id {} ran", fid.0),
                ));
            }
            if client.is_none() {
                client = block_on(rt, Client::connect(&uri)).ok();
            }
            if let Some(cl) = &client {
                if !cancelled && ctl.cancel_requested() {
                    cancelled = true;
                    ctl.event(LaunchState::Stopping, Some("cancel requested"));
                    let _ = block_on(rt, cl.job_cancel(fid, Some("cancelled")));
                }
                match block_on(rt, cl.job_eventlog(fid)) {
                    Ok(log) => match fate(&log) {
                        Some(Ok(status)) => {
                            let code = (status >> 8) & 0xff;
                            let signal = status & 0x7f;
                            return Some(match (cancelled, signal, code) {
                                (true, _, _) => ended(
                                    JobState::Cancelled,
                                    (signal == 0).then_some(code),
                                    "cancelled while running".to_string(),
                                ),
                                (false, 0, 0) => ended(JobState::Done, Some(0), None),
                                (false, 0, code) => {
                                    ended(JobState::Failed, Some(code), format!("exit code {code}"))
                                }
                                (false, sig, _) => {
                                    ended(JobState::Failed, None, format!("killed by signal {sig}"))
                                }
                            });
                        }
                        Some(Err(note)) => {
                            let state = if cancelled {
                                JobState::Cancelled
                            } else {
                                JobState::Failed
                            };
                            return Some(ended(state, None, note));
                        }
                        None => {}
                    },
                    Err(e) => {
                        tracing::debug!(warm = n, "eventlog of {}: {e}", fid.0);
                        client = None;
                    }
                }
            }
            std::thread::sleep(poll.max(Duration::from_millis(100)));
        }
    }

    /// After the outcome is recorded: the job's output file goes, the cluster is idle.
    pub fn clean_up(&self, root: &Path, job: u64) {
        let cluster = self
            .jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&job);
        if let Some(n) = cluster {
            let _ = std::fs::remove_file(job_log(root, &n, job));
            release(&state::dir(root, &n), job);
        }
    }

    /// Frees the clusters held by jobs no longer claimed (a control plane killed between
    /// recording an outcome and cleaning up).
    pub fn sweep(&self, root: &Path, active_jobs: &BTreeSet<u64>) {
        for (n, _) in clusters(root) {
            let dir = state::dir(root, &n);
            if let Some(j) = busy_of(&dir)
                && !active_jobs.contains(&j)
            {
                let _ = std::fs::remove_file(job_log(root, &n, j));
                release(&dir, j);
            }
        }
    }

    /// Tears down what is idle: past its pool's idle timeout, drained (its shape is no longer
    /// the pool's), its pool gone or no longer warm, or its brokers dead.
    pub fn reap(&self, l: &ProcessLauncher, pools: &[Pool]) {
        // A job picking or starting a cluster holds the lock (a start takes seconds): look
        // again on the next turn rather than hold up the dispatcher.
        let _g = match self.pick.try_lock() {
            Ok(g) => g,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return,
        };
        for (n, r) in clusters(&l.root) {
            let dir = state::dir(&l.root, &n);
            let Some((pool, hash, _)) = parse(&n) else {
                continue;
            };
            let up = alive(&l.root, &r);
            if busy_of(&dir).is_some() && up {
                continue;
            }
            let why = match pools.iter().find(|p| p.name == pool) {
                _ if !up => Some("its brokers ended".to_string()),
                None => Some("its pool is gone".to_string()),
                Some(p) if p.idle_timeout == 0 => Some("its pool is no longer warm".into()),
                Some(p) if hash8(p, i32::try_from(r.size).unwrap_or(1)) != hash => {
                    Some("drained: its pool's template changed".into())
                }
                Some(p) if idle_for(&dir, r.created) >= Duration::from_secs(p.idle_timeout) => {
                    Some(format!("idle for {}s", p.idle_timeout))
                }
                Some(_) => None,
            };
            if let Some(why) = why {
                match l.down(&n) {
                    Ok(_) => tracing::info!(warm = %n, "torn down: {why}"),
                    Err(e) => tracing::warn!(warm = %n, "tearing down: {e}"),
                }
            }
        }
    }
}

/// The Flux job id of the job named `name` in the instance at `uri`, if there is one.
async fn find(uri: &str, name: &str) -> flux_client::Result<Option<u64>> {
    let cl = Client::connect(uri).await?;
    let req = ListRequest {
        max_entries: 0,
        attrs: vec!["name".into(), "state".into()],
        since: None,
        constraint: Some(json!({"name": [name]})),
    };
    Ok(cl.job_list(&req).await?.first().map(|j| j.id.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::LauncherType;

    #[test]
    fn names_hash_what_shapes_the_minicluster() {
        let mut p = Pool::new("cpu", LauncherType::Process);
        p.set.insert("size".into(), "2".into());
        let h = hash8(&p, 2);
        assert_eq!(h.len(), 8);
        assert_eq!(h, hash8(&p.clone(), 2), "stable");
        let n = name("cpu", &h, 3);
        assert_eq!(n, format!("cpu-w{h}-3"));
        assert_eq!(parse(&n), Some(("cpu", h.as_str(), 3)));
        assert_eq!(parse("cpu-j7"), None);
        assert_eq!(
            parse("my-wpool-wdeadbeef-1"),
            Some(("my-wpool", "deadbeef", 1))
        );
        // What the MiniCluster is made of changes the name; other fields do not.
        let mut env = p.clone();
        env.set.insert("env.X".into(), "1".into());
        assert_ne!(hash8(&env, 2), h);
        let mut t = p.clone();
        t.template = Some("kind: MiniCluster\n".into());
        assert_ne!(hash8(&t, 2), h);
        assert_ne!(hash8(&p, 3), h);
        let mut other = p.clone();
        other.max_launches = 9;
        other.idle_timeout = 60;
        assert_eq!(hash8(&other, 2), h);
        // FNV-1a's published value of "a".
        assert_eq!(fnv1a(b"a"), "e40c292c");
        assert_eq!(
            named_in(&format!("submitted flux id 5 to warm {n}")),
            Some(n.as_str())
        );
        assert_eq!(named_in(&format!("warm {n}: 2 brokers")), Some(n.as_str()));
        assert_eq!(named_in("2 brokers as local processes"), None);
    }
}
