//! The process launcher: N entrypoint processes on this machine, each with its own rank,
//! directory and loopback port, the certificate in the MiniCluster's private directory.
//! Every rank is its own session (process group), so teardown kills everything it started,
//! and the record on disk lets `down` do so after the CLI itself was killed.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use minicluster_core::{CurveCert, DescribeOptions, MiniCluster, describe};
use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::{Id, WaitPidFlag, waitid};
use nix::unistd::Pid;

use crate::error::{Error, Result, io};
use crate::local_resources;
use crate::outcome;
use crate::state::{self, Record};

pub struct ProcessLauncher {
    /// Launches made through [`crate::Launcher`] by this process, until they are waited for.
    pub launched: std::sync::Mutex<std::collections::HashMap<String, Running>>,
    /// Where launches are recorded ([`state::root`]).
    pub root: PathBuf,
    /// The entrypoint binary.
    pub entrypoint: PathBuf,
    /// The `flux` the brokers run (default: the entrypoint's choice, `flux` on PATH).
    pub flux: Option<PathBuf>,
    /// First broker port; the default picks free ones.
    pub port: Option<u16>,
    /// Grace after SIGTERM before everything left is killed.
    pub grace: Duration,
    /// Replaces the mode the spec implies (`Restful`: rank 0 runs the REST server).
    pub mode: Option<minicluster_core::Mode>,
}

/// A launch in progress, owned by the CLI that started it. Dropping it (or the CLI being
/// killed) leaves the brokers running: only [`Running::wait`] and [`Running::teardown`] stop
/// them; [`ProcessLauncher::outcome`] tells later what became of the work.
pub struct Running {
    pub record: Record,
    pub dir: PathBuf,
    /// When the launch began: the origin of the `t_ms` of its trace events (`-v`).
    pub started: Instant,
    children: Vec<Child>,
    /// Each rank's local socket: there once its broker listens.
    sockets: Vec<PathBuf>,
    root: PathBuf,
    grace: Duration,
}

pub use crate::RankState;
pub use crate::outcome::Outcome;

impl ProcessLauncher {
    /// Starts every broker. With `attach`, rank 0's output is ours (the command's output);
    /// otherwise every rank writes `rank-N.log` in the MiniCluster's directory. Rank 0 runs
    /// with `--exit-file <dir>/rank-0.exit`, so [`ProcessLauncher::outcome`] can tell what
    /// became of its work from the files alone.
    ///
    /// A name whose earlier launch has no live ranks is cleared and launched again only when
    /// that launch's work never started (no `rank-0.exit.started`); otherwise the launch is
    /// refused, since clearing it would forget that the work ran, and running it again would
    /// run it twice. Launches under one root are serialised by a lock on the root, so two
    /// processes never both clear and start the same name.
    pub fn launch(&self, mc: &MiniCluster, persistent: bool, attach: bool) -> Result<Running> {
        let started = Instant::now();
        let name = mc.metadata.name.clone().unwrap_or_default();
        let size = u32::try_from(mc.spec.size).unwrap_or(1);
        let max = u16::try_from(mc.spec.effective_max_size()).unwrap_or(u16::MAX);
        tracing::info!(t_ms = 0, "launch {name}: {size} brokers as local processes");
        // Held until every rank is spawned and recorded (the descriptor is close-on-exec, so
        // the brokers do not inherit it).
        let _lock = lock_root(&self.root)?;
        if let Ok(old) = Record::load(&self.root, &name) {
            if alive_ranks(&old, &self.root).iter().any(|r| r.running) {
                return Err(Error::NameTaken {
                    name,
                    launcher: old.launcher,
                });
            }
            let old_dir = state::dir(&self.root, &name);
            if outcome::started_file(&old_dir).exists() {
                let detail = match outcome::read(&self.root, &name)? {
                    Outcome::Finished { exit_code } => {
                        format!("it finished with exit code {exit_code}")
                    }
                    Outcome::Lost { reason } => reason,
                    Outcome::Running { pid } => format!("rank 0 (pid {pid}) is still running"),
                    Outcome::NotLaunched => "its record is gone".into(),
                };
                return Err(Error::AlreadyStarted { name, detail });
            }
            // A record whose processes are gone before the work began: a launch that was
            // killed or refused early. Clear it.
            let _ = std::fs::remove_dir_all(old_dir);
        }
        let base = match self.port {
            Some(p) => {
                check_ports(p, max)?;
                p
            }
            None => free_ports(max)?,
        };
        let d = describe(
            mc,
            &DescribeOptions {
                loopback_base_port: Some(base),
                mode: self.mode,
                ..DescribeOptions::default()
            },
        )?;
        let dir = state::create_dir(&self.root, &name)?;
        let record = Record {
            name: name.clone(),
            launcher: "process".into(),
            size,
            persistent,
            created: state::now(),
            pids: Vec::new(),
            flux_uri: Some(format!(
                "local://{}/rank-0{}/local",
                dir.display(),
                d.paths.rundir
            )),
            resources: vec![format!(
                "127.0.0.1:{base}-{}",
                u32::from(base) + u32::from(max) - 1
            )],
        };
        record.save(&self.root)?;
        let description = dir.join("description.json");
        std::fs::write(&description, d.to_json()).map_err(io("write", &description))?;
        let cert = dir.join("curve.cert");
        CurveCert::for_minicluster(mc)?.write(&cert)?;
        // R for every broker before any starts, where this machine's cores say it all; else
        // the first entrypoint encodes it with hwloc into the same file.
        let resources = dir.join("R");
        if d.gpus == 0
            && let Some(r) = local_resources::local_r(&d.hostlist, d.max_size)
        {
            std::fs::write(&resources, r).map_err(io("write", &resources))?;
        }
        tracing::info!(
            t_ms = ms(started),
            "{name}: description, certificate and record written"
        );

        let mut running = Running {
            record,
            dir: dir.clone(),
            started,
            children: Vec::new(),
            sockets: (0..size)
                .map(|r| {
                    dir.join(format!("rank-{r}{}", d.paths.rundir))
                        .join("local")
                })
                .collect(),
            root: self.root.clone(),
            grace: self.grace,
        };
        // All at once, as `flux start` does: a worker's broker connects to rank 0 by itself
        // as soon as rank 0 listens, and rank 0 starts its rc1 without waiting for them.
        for rank in 0..size {
            let spawned = self
                .spawn_rank(rank, size, &dir, &description, &cert, attach)
                .and_then(|child| {
                    tracing::debug!(
                        t_ms = ms(started),
                        pid = child.id(),
                        "rank {rank}: entrypoint started"
                    );
                    running.record.pids.push(child.id() as i32);
                    running.children.push(child);
                    // Saved with each pid, so that `down` finds every rank even when this
                    // process is killed half way (a write and a rename: microseconds).
                    running.record.save(&self.root)
                });
            if let Err(e) = spawned {
                running.abandon();
                return Err(e);
            }
        }
        tracing::info!(t_ms = ms(started), "{name}: {size} entrypoints started");
        Ok(running)
    }

    /// Starts the entrypoint of one rank of `size`, in its own session; rank 0 with the exit
    /// file.
    fn spawn_rank(
        &self,
        rank: u32,
        size: u32,
        dir: &Path,
        description: &Path,
        cert: &Path,
        attach: bool,
    ) -> Result<Child> {
        let mut cmd = Command::new(&self.entrypoint);
        cmd.arg("--description")
            .arg(description)
            .arg("--cert")
            .arg(cert)
            .arg("--rank")
            .arg(rank.to_string())
            .arg("--root")
            .arg(dir.join(format!("rank-{rank}")))
            // The ranks share this machine, so its R is made once for all of them.
            .arg("--resource-cache")
            .arg(dir.join("R"))
            // Every rank is given this one certificate file.
            .arg("--no-cert-check")
            .env_remove("JOB_COMPLETION_INDEX")
            // Our other programs (minicluster-rest) sit beside the entrypoint.
            .env("PATH", path_with(self.entrypoint.parent()))
            .stdin(Stdio::null());
        if rank == 0 {
            cmd.arg("--exit-file").arg(outcome::exit_file(dir));
        }
        // The ranks also share the environment `flux broker` builds, so each execs
        // flux-broker in it; asking `flux env` costs what one `flux broker` does, so a single
        // broker does not ask.
        if size > 1 {
            cmd.arg("--broker-env-cache").arg(dir.join("broker.env"));
        }
        if let Some(f) = &self.flux {
            cmd.arg("--flux").arg(f);
        }
        if !(attach && rank == 0) {
            let log = dir.join(format!("rank-{rank}.log"));
            let f = std::fs::File::create(&log).map_err(io("create", &log))?;
            cmd.stdout(f.try_clone().map_err(io("open", &log))?)
                .stderr(f);
        }
        // SAFETY: setsid() is async-signal-safe; it runs in the child before exec.
        unsafe {
            cmd.pre_exec(|| {
                nix::unistd::setsid()
                    .map(|_| ())
                    .map_err(std::io::Error::from)
            });
        }
        cmd.spawn().map_err(|e| Error::Setup {
            what: format!("starting {}", self.entrypoint.display()),
            reason: e.to_string(),
            fix: "build it (cargo build -p minicluster-entrypoint) or pass --entrypoint PATH"
                .into(),
        })
    }

    /// What became of launch `name`'s work, from its directory alone (also after the process
    /// that launched it was killed): [`Outcome::NotLaunched`] (nothing was spawned: the record
    /// is saved before any spawn), [`Outcome::Running`], [`Outcome::Finished`] with rank 0's
    /// exit code, or [`Outcome::Lost`] when it ended without one. Changes nothing.
    pub fn outcome(&self, name: &str) -> Result<Outcome> {
        outcome::read(&self.root, name)
    }

    /// Removes launch `name`'s directory once its work is over, so the name reads
    /// [`Outcome::NotLaunched`] and may be launched again: call it only after the Finished or
    /// Lost outcome has been recorded elsewhere, as that outcome is forgotten here.
    ///
    /// Not [`ProcessLauncher::down`]: `down` stops whatever runs, which would cut the work
    /// short. `forget` refuses while the work is [`Outcome::Running`]; ranks still left
    /// behind a finished rank 0 (workers leaving with the instance) are stopped as `down`
    /// stops them. Forgetting a name with nothing launched is not an error. Returns the
    /// outcome that was forgotten.
    pub fn forget(&self, name: &str) -> Result<Outcome> {
        let _lock = lock_root(&self.root)?;
        let outcome = self.outcome(name)?;
        if let Outcome::Running { pid } = outcome {
            return Err(Error::Setup {
                what: format!("forgetting MiniCluster {name}"),
                reason: format!("its work is still running (pid {pid})"),
                fix: format!("wait for its outcome, or `minicluster down {name}` to stop it"),
            });
        }
        let dir = state::dir(&self.root, name);
        if let Ok(record) = Record::load(&self.root, name) {
            stop_all(&record, &self.root, self.grace);
        }
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("remove", &dir)(e)),
            _ => Ok(outcome),
        }
    }

    /// Stops a recorded MiniCluster: SIGTERM to every rank, SIGKILL after the grace, then its
    /// directory is removed. Returns how many ranks were still running.
    pub fn down(&self, name: &str) -> Result<usize> {
        let record = Record::load(&self.root, name)?;
        let alive = stop_all(&record, &self.root, self.grace);
        std::fs::remove_dir_all(state::dir(&self.root, name))
            .map_err(io("remove", &state::dir(&self.root, name)))?;
        Ok(alive)
    }

    pub fn status(&self, name: &str) -> Result<(Record, Vec<RankState>)> {
        let record = Record::load(&self.root, name)?;
        let ranks = alive_ranks(&record, &self.root);
        Ok((record, ranks))
    }
}

impl Running {
    /// Waits for rank 0 and returns its exit code; then the other ranks get the grace to
    /// leave with the instance, and what is left is killed. SIGINT/SIGTERM/SIGHUP to us stop rank 0
    /// first (it shuts the instance down). With `keep`, nothing is removed (persistent).
    pub fn wait(mut self, progress: impl Fn(&str)) -> Result<i32> {
        let signal = Arc::new(AtomicUsize::new(0));
        for s in [
            signal_hook::consts::SIGINT,
            signal_hook::consts::SIGTERM,
            signal_hook::consts::SIGHUP,
        ] {
            let _ = signal_hook::flag::register_usize(s, Arc::clone(&signal), s as usize);
        }
        let mut stop_sent: Option<Instant> = None;
        let mut started_reported = false;
        let rank0_exited = exit_notice(self.record.pids[0]);
        // Ranks whose broker has not been seen listening yet (traced with -v only).
        let mut unseen: Vec<u32> = if tracing::enabled!(tracing::Level::INFO) {
            (0..self.sockets.len() as u32).collect()
        } else {
            Vec::new()
        };
        let code = loop {
            if !started_reported && self.all_alive() {
                started_reported = true;
                progress(&format!("{0}/{0} brokers started", self.children.len()));
            }
            unseen.retain(|&rank| {
                let up = self.sockets[rank as usize].exists();
                if up {
                    tracing::info!(t_ms = ms(self.started), "rank {rank}: broker listening");
                }
                !up
            });
            if let Some(status) = self.children[0]
                .try_wait()
                .map_err(io("wait for", &self.dir))?
            {
                let code = status.code().unwrap_or_else(|| {
                    128 + std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0)
                });
                tracing::info!(t_ms = ms(self.started), "rank 0 exited with code {code}");
                break code;
            }
            match (signal.load(Ordering::SeqCst), stop_sent) {
                (0, _) => {}
                (_, None) => {
                    progress("stopping: SIGTERM to rank 0");
                    let _ = killpg(Pid::from_raw(self.record.pids[0]), Signal::SIGTERM);
                    stop_sent = Some(Instant::now());
                }
                (_, Some(t)) if t.elapsed() > self.grace => {
                    progress("rank 0 did not stop in time: killing every rank");
                    self.kill_all();
                }
                _ => {}
            }
            // Rank 0's exit ends the wait at once; the tick serves signals and the trace.
            if let Err(RecvTimeoutError::Disconnected) = rank0_exited.recv_timeout(TICK) {
                std::thread::sleep(TICK);
            }
        };
        // The other ranks leave with the instance; give them the grace, then make sure.
        let until = Instant::now() + self.grace;
        while Instant::now() < until
            && self.children[1..]
                .iter_mut()
                .any(|c| matches!(c.try_wait(), Ok(None)))
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        tracing::info!(t_ms = ms(self.started), "every rank exited");
        self.teardown();
        tracing::info!(t_ms = ms(self.started), "cleanup done");
        Ok(code)
    }

    /// [`Running::wait`] without progress messages.
    pub fn wait_keep_logs(self) -> Result<i32> {
        self.wait(|_| {})
    }

    fn all_alive(&mut self) -> bool {
        self.children
            .iter_mut()
            .all(|c| matches!(c.try_wait(), Ok(None)))
    }

    fn kill_all(&mut self) {
        for pid in &self.record.pids {
            let _ = killpg(Pid::from_raw(*pid), Signal::SIGKILL);
        }
    }

    /// A launch that failed part way: kills what it started. Its directory is removed only
    /// when rank 0 never claimed its exit file; otherwise it stays, so the launch reads as
    /// Lost or Finished and the work is not started a second time.
    fn abandon(&mut self) {
        self.stop();
        if !outcome::started_file(&self.dir).exists() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    /// Kills whatever is left and removes the MiniCluster's directory.
    pub fn teardown(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = &self.root;
    }

    /// SIGTERM to every rank, SIGKILL to what is left after 2 s; every child reaped.
    fn stop(&mut self) {
        for pid in &self.record.pids {
            let _ = killpg(Pid::from_raw(*pid), Signal::SIGTERM);
        }
        let until = Instant::now() + Duration::from_secs(2);
        while Instant::now() < until
            && self
                .children
                .iter_mut()
                .any(|c| matches!(c.try_wait(), Ok(None)))
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill_all();
        for c in &mut self.children {
            let _ = c.wait();
        }
    }

    /// Leaves the brokers running (persistent MiniClusters); `down` stops them later.
    pub fn detach(mut self) -> Record {
        self.children.clear();
        self.record.clone()
    }

    /// Waits until rank 0's local socket accepts connections (the instance is up).
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let uri = self.record.flux_uri.clone().unwrap_or_default();
        let path = PathBuf::from(uri.trim_start_matches("local://"));
        let started = Instant::now();
        loop {
            if std::os::unix::net::UnixStream::connect(&path).is_ok() {
                return Ok(());
            }
            if let Some((rank, status)) = self
                .children
                .iter_mut()
                .enumerate()
                .find_map(|(i, c)| c.try_wait().ok().flatten().map(|s| (i, s)))
            {
                let log = self.dir.join(format!("rank-{rank}.log"));
                let tail = std::fs::read_to_string(&log).unwrap_or_default();
                let last: Vec<&str> = tail.lines().rev().take(3).collect();
                return Err(Error::Setup {
                    what: format!("rank {rank}"),
                    reason: format!(
                        "exited ({status}) while starting: {}",
                        last.into_iter().rev().collect::<Vec<_>>().join(" | ")
                    ),
                    fix: format!("see {}", log.display()),
                });
            }
            if started.elapsed() > timeout {
                return Err(Error::Setup {
                    what: "rank 0".into(),
                    reason: format!(
                        "no Flux socket at {} after {}s",
                        path.display(),
                        timeout.as_secs()
                    ),
                    fix: format!("see the logs in {}", self.dir.display()),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// How often [`Running::wait`] looks at signals and, with -v, at the ranks' sockets.
const TICK: Duration = Duration::from_millis(20);

/// A message when child `pid` has exited, which stays ours to reap (`WNOWAIT`).
fn exit_notice(pid: i32) -> Receiver<()> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let exited = WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT;
        if waitid(Id::Pid(Pid::from_raw(pid)), exited).is_ok() {
            let _ = tx.send(());
        }
    });
    rx
}

/// Milliseconds since `t`, for trace events.
fn ms(t: Instant) -> u64 {
    t.elapsed().as_millis() as u64
}

/// Which recorded ranks still run: the pid is alive and its command line names this
/// MiniCluster's directory (a reused pid does not count).
pub fn alive_ranks(record: &Record, root: &Path) -> Vec<RankState> {
    let dir = state::dir(root, &record.name).display().to_string();
    record
        .pids
        .iter()
        .enumerate()
        .map(|(rank, pid)| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let ours = String::from_utf8_lossy(&cmdline).contains(&dir);
            RankState {
                rank: rank as u32,
                pid: *pid,
                running: ours,
            }
        })
        .collect()
}

fn stop_all(record: &Record, root: &Path, grace: Duration) -> usize {
    let alive: Vec<i32> = alive_ranks(record, root)
        .iter()
        .filter(|r| r.running)
        .map(|r| r.pid)
        .collect();
    for pid in &alive {
        let _ = killpg(Pid::from_raw(*pid), Signal::SIGTERM);
    }
    let until = Instant::now() + grace;
    while Instant::now() < until && alive_ranks(record, root).iter().any(|r| r.running) {
        std::thread::sleep(Duration::from_millis(50));
    }
    for pid in &alive {
        let _ = killpg(Pid::from_raw(*pid), Signal::SIGKILL);
    }
    alive.len()
}

/// An exclusive lock on `root` (created if missing), released when the file is dropped.
fn lock_root(root: &Path) -> Result<std::fs::File> {
    std::fs::create_dir_all(root).map_err(io("create", root))?;
    let f = std::fs::File::open(root).map_err(io("open", root))?;
    f.lock().map_err(io("lock", root))?;
    Ok(f)
}

/// `$PATH` with `dir` first.
fn path_with(dir: Option<&Path>) -> std::ffi::OsString {
    let mut dirs: Vec<PathBuf> = dir.map(Path::to_path_buf).into_iter().collect();
    dirs.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(dirs).unwrap_or_default()
}

fn check_ports(base: u16, n: u16) -> Result<()> {
    for i in 0..n {
        let port = base
            .checked_add(i)
            .ok_or(Error::PortInUse { port: u16::MAX })?;
        if TcpListener::bind(("127.0.0.1", port)).is_err() {
            return Err(Error::PortInUse { port });
        }
    }
    Ok(())
}

/// `n` consecutive free loopback ports.
fn free_ports(n: u16) -> Result<u16> {
    for _ in 0..500 {
        let base = 20_000 + fastrand::u16(0..40_000);
        if check_ports(base, n).is_ok() {
            return Ok(base);
        }
    }
    Err(Error::Setup {
        what: "choosing ports".into(),
        reason: format!("no {n} consecutive free ports on 127.0.0.1"),
        fix: "free some ports, or give --port".into(),
    })
}

impl crate::Launcher for ProcessLauncher {
    fn kind(&self) -> &'static str {
        "process"
    }

    async fn launch(&self, mc: &MiniCluster) -> Result<Record> {
        let running = ProcessLauncher::launch(self, mc, mc.spec.interactive, false)?;
        let record = running.record.clone();
        self.launched
            .lock()
            .expect("the launch table is never poisoned")
            .insert(record.name.clone(), running);
        Ok(record)
    }

    async fn ranks(&self, name: &str) -> Result<Vec<RankState>> {
        Ok(self.status(name)?.1)
    }

    async fn follow_rank0(&self, name: &str) -> Result<i32> {
        let running = self
            .launched
            .lock()
            .expect("the launch table is never poisoned")
            .remove(name)
            .ok_or_else(|| Error::Setup {
                what: format!("rank 0 of {name}"),
                reason: "was started by another process; its exit code is not known here".into(),
                fix: format!("minicluster logs {name} -f"),
            })?;
        // Rank 0 writes to its log; copy it out while waiting for the exit code.
        let log = running.dir.join("rank-0.log");
        let copier = std::thread::spawn(move || tail(&log));
        let code = tokio::task::spawn_blocking(move || running.wait_keep_logs())
            .await
            .map_err(|e| Error::Setup {
                what: "waiting for rank 0".into(),
                reason: e.to_string(),
                fix: "report this".into(),
            })??;
        let _ = copier.join();
        Ok(code)
    }

    async fn down(&self, name: &str) -> Result<usize> {
        if let Some(mut r) = self
            .launched
            .lock()
            .expect("the launch table is never poisoned")
            .remove(name)
        {
            r.teardown();
            return Ok(r.record.pids.len());
        }
        ProcessLauncher::down(self, name)
    }
}

/// Copies a log to standard output as it grows, until the file goes away.
fn tail(path: &Path) {
    use std::io::{Read, Write};
    let Ok(mut f) = std::fs::File::open(path) else {
        return;
    };
    let mut buf = [0u8; 8192];
    loop {
        match f.read(&mut buf) {
            Ok(0) => {
                if !path.exists() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Ok(n) => {
                let _ = std::io::stdout().write_all(&buf[..n]);
            }
            Err(_) => return,
        }
    }
}
