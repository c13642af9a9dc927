//! Running the broker as a good PID 1: signals forwarded, zombies reaped, the broker's exit
//! code returned, failed workers restarted when the policy says so.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use std::os::unix::process::CommandExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::sys::signal::{Signal, kill, killpg};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2};
use signal_hook::iterator::Signals;

use crate::error::{Error, Result};
use crate::plan::Restart;
use crate::signals::Stop;

/// When the entrypoint started and how long it waited, for the overhead log line.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    pub started: Instant,
    pub waited: Duration,
}

/// How the broker is stopped: SIGTERM/SIGINT are forwarded; when it has not exited
/// `kill_after` later (or a second stop signal comes), its whole process group is killed.
#[derive(Clone, Copy, Debug)]
pub struct StopPolicy {
    pub kill_after: Duration,
}

/// The broker's environment: ours with these variables added, or exactly these.
#[derive(Clone, Copy, Debug)]
pub enum Env<'a> {
    Added(&'a BTreeMap<String, String>),
    Exactly(&'a BTreeMap<String, String>),
}

/// Runs `argv` until it exits (and again, per `restart`); returns its exit code, 128 + the
/// signal number when a signal ended it.
pub fn run(
    argv: &[String],
    env: Env<'_>,
    restart: Restart,
    stop: &Stop,
    clock: Clock,
    policy: StopPolicy,
) -> Result<i32> {
    // Orphans anywhere below us become our children, so we can reap them even when we are
    // not PID 1 (the process launcher).
    let _ = nix::sys::prctl::set_child_subreaper(true);
    let mut signals = Signals::new([SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2])
        .map_err(|e| Error::Program {
        what: "installing signal handlers".into(),
        reason: e.to_string(),
    })?;
    let mut starts = 0u32;
    loop {
        stop.check()?;
        // Its own process group, so that what it leaves behind can be killed with it.
        let mut cmd = std::process::Command::new(&argv[0]);
        cmd.args(&argv[1..]).process_group(0);
        match env {
            Env::Added(vars) => cmd.envs(vars),
            Env::Exactly(vars) => cmd.env_clear().envs(vars),
        };
        // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe. If we are killed outright
        // (SIGKILL), the broker is told to stop instead of running on unsupervised.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).map_err(std::io::Error::from)
            });
        }
        let child = cmd.spawn().map_err(|e| Error::Program {
            what: format!("starting the broker ({})", argv[0]),
            reason: if e.kind() == ErrorKind::NotFound {
                format!(
                    "{} not found (fix: use an image with Flux, or pass --flux PATH)",
                    argv[0]
                )
            } else {
                e.to_string()
            },
        })?;
        starts += 1;
        let pid = Pid::from_raw(child.id() as i32);
        if starts == 1 {
            let overhead = clock.started.elapsed().saturating_sub(clock.waited);
            tracing::info!(
                pid = pid.as_raw(),
                overhead_us = overhead.as_micros() as u64,
                waited_ms = clock.waited.as_millis() as u64,
                "broker started"
            );
        } else {
            tracing::info!(pid = pid.as_raw(), start = starts, "broker started again");
        }
        let (code, stopping) = wait_for(pid, &mut signals, policy);
        // Whatever the broker left in its process group (a job's orphans) goes with it.
        let _ = killpg(pid, Signal::SIGKILL);
        if restart == Restart::OnFailure && code != 0 && !stopping && stop.requested().is_none() {
            let delay = crate::wait::backoff(starts.min(6));
            tracing::warn!(
                code,
                "the broker exited with code {code}; starting it again in {} ms (completeWorkers: false)",
                delay.as_millis()
            );
            if stop.sleep(delay).is_err() {
                return Ok(code);
            }
            continue;
        }
        tracing::info!(code, "the broker exited");
        return Ok(code);
    }
}

/// Blocks until `pid` exits, forwarding signals to it and reaping every other child.
/// Returns its exit code and whether we were asked to stop.
fn wait_for(pid: Pid, signals: &mut Signals, policy: StopPolicy) -> (i32, bool) {
    let mut stopping = false;
    let exited = Arc::new(AtomicBool::new(false));
    // The child may have exited before its SIGCHLD was ours to see: look once first.
    if let Some(code) = reap(pid) {
        return (code, stopping);
    }
    for sig in signals.forever() {
        if sig == SIGCHLD {
            if let Some(code) = reap(pid) {
                exited.store(true, Ordering::SeqCst);
                return (code, stopping);
            }
            continue;
        }
        if sig == SIGTERM || sig == SIGINT {
            if stopping {
                tracing::warn!("second stop signal: killing the broker and its processes");
                let _ = killpg(pid, Signal::SIGKILL);
                continue;
            }
            stopping = true;
            let (exited, after) = (Arc::clone(&exited), policy.kill_after);
            std::thread::spawn(move || {
                std::thread::sleep(after);
                if !exited.load(Ordering::SeqCst) {
                    tracing::warn!(
                        "the broker did not stop within {}s of the signal: killing it and its processes",
                        after.as_secs()
                    );
                    let _ = killpg(pid, Signal::SIGKILL);
                }
            });
        }
        if let Ok(s) = Signal::try_from(sig) {
            tracing::info!("forwarding {s} to the broker");
            let _ = kill(pid, s);
        }
    }
    // forever() only ends if the handle is closed, which we never do.
    (1, stopping)
}

/// Reaps every exited child; the exit code of `pid` if it was among them.
fn reap(pid: Pid) -> Option<i32> {
    let mut found = None;
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(p, code)) if p == pid => found = Some(code),
            Ok(WaitStatus::Signaled(p, sig, _)) if p == pid => found = Some(128 + sig as i32),
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return found,
            Ok(_) => {}
            Err(Errno::EINTR) => {}
            Err(_) => return found,
        }
    }
}
