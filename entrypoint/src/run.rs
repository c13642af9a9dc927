//! Carrying out a plan: certificate, directories, files, R, hooks, the wait, the broker.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use minicluster_core::ClusterDescription;

use crate::cert;
use crate::error::{Error, Result};
use crate::exit_file;
use crate::files;
use crate::plan::{Hook, Plan};
use crate::signals::Stop;
use crate::supervise::{self, Clock, StopPolicy};
use crate::wait;

/// Runs the plan to the end; returns the exit code for the entrypoint. With an exit file, it
/// is claimed first (a second start is refused before anything is written) and the exit code
/// is recorded there at the end, also when the start fails after the claim.
pub fn execute(
    d: &ClusterDescription,
    plan: &Plan,
    strict: bool,
    stop: &Stop,
    started: Instant,
    policy: StopPolicy,
) -> Result<i32> {
    let claim = plan
        .exit_file
        .as_deref()
        .map(|p| exit_file::claim(p, std::process::id()))
        .transpose()?;
    let result = carry_out(d, plan, strict, stop, started, policy);
    if let Some(claim) = claim {
        let code = exit_file::exit_code(&result);
        match claim.record(code) {
            Ok(()) => tracing::debug!(code, "exit code recorded in {}", claim.path().display()),
            Err(e) => tracing::error!("recording exit code {code}: {e}"),
        }
    }
    result
}

fn carry_out(
    d: &ClusterDescription,
    plan: &Plan,
    strict: bool,
    stop: &Stop,
    started: Instant,
    policy: StopPolicy,
) -> Result<i32> {
    // Everything that can be refused is checked before the first write.
    let (cert_text, cert_wait) = timed("certificate", || cert::obtain(d, &plan.cert, stop))?;
    make_dirs(&plan.directories)?;
    cert::install(&cert_text, &plan.cert_path)?;
    for f in &plan.files {
        files::write_atomic(&f.path, f.contents.as_bytes(), f.mode_bits())?;
    }
    timed("resource set R", || write_resource(plan))?;
    for h in &plan.hooks_before {
        run_hook(h, plan, strict)?;
    }
    let rank0_wait = match &plan.wait {
        None => std::time::Duration::ZERO,
        Some(w) => {
            wait::rank0_reachable(&w.uri, std::time::Duration::from_secs(w.timeout_secs), stop)?
        }
    };
    let code = supervise::run(
        &plan.broker,
        &plan.environment,
        plan.restart,
        stop,
        Clock {
            started,
            waited: cert_wait + rank0_wait,
        },
        policy,
    )?;
    for h in &plan.hooks_after {
        run_hook(h, plan, strict)?;
    }
    Ok(code)
}

fn timed<T>(what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let t = Instant::now();
    let r = f();
    tracing::debug!(elapsed_us = t.elapsed().as_micros() as u64, "{what}");
    r
}

/// Creates the directories; if one cannot be made, removes those this call created, so a
/// refused start leaves nothing behind.
fn make_dirs(dirs: &[PathBuf]) -> Result<()> {
    let mut created: Vec<PathBuf> = Vec::new();
    for dir in dirs {
        let missing = first_missing_ancestor(dir);
        if let Err(e) = files::private_dir(dir) {
            for c in created.iter().rev() {
                let _ = std::fs::remove_dir_all(c);
            }
            if let Some(m) = missing {
                let _ = std::fs::remove_dir_all(m);
            }
            return Err(e);
        }
        created.extend(missing);
    }
    Ok(())
}

/// The top-most directory of `dir`'s path that does not exist yet.
fn first_missing_ancestor(dir: &Path) -> Option<PathBuf> {
    let mut missing = None;
    let mut p = Some(dir);
    while let Some(cur) = p {
        if cur.exists() {
            break;
        }
        missing = Some(cur.to_path_buf());
        p = cur.parent();
    }
    missing
}

fn write_resource(plan: &Plan) -> Result<()> {
    let argv = &plan.resource_command;
    let out = Command::new(&argv[0])
        .args(&argv[1..])
        .envs(&plan.environment)
        .output()
        .map_err(|e| Error::Program {
            what: shell_words::join(argv),
            reason: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(Error::Program {
            what: shell_words::join(argv),
            reason: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    files::write_atomic(&plan.resource_path, &out.stdout, 0o644)
}

fn run_hook(h: &Hook, plan: &Plan, strict: bool) -> Result<()> {
    tracing::info!("running the {} hook", h.name);
    let status = Command::new(&h.argv[0])
        .args(&h.argv[1..])
        .envs(&plan.environment)
        .status()
        .map_err(|e| Error::Program {
            what: format!("the {} hook", h.name),
            reason: format!("{e} (a hook runs with sh -c: the image needs a shell)"),
        })?;
    let code = status.code().unwrap_or(1);
    if code != 0 {
        if strict {
            return Err(Error::Hook { hook: h.name, code });
        }
        tracing::warn!(
            "the {} hook exited with code {code}; going on (not strict)",
            h.name
        );
    }
    Ok(())
}
