//! Carrying out a plan: certificate, directories, files, R, hooks, the wait, the broker.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use minicluster_core::ClusterDescription;

use crate::broker_env;
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
/// is recorded there at the end, also when the start fails after the claim. With
/// `resource_cache`, R is taken from there when another broker on this machine made it.
pub fn execute(
    d: &ClusterDescription,
    plan: &Plan,
    strict: bool,
    stop: &Stop,
    started: Instant,
    policy: StopPolicy,
    resource_cache: Option<&Path>,
) -> Result<i32> {
    let claim = plan
        .exit_file
        .as_deref()
        .map(|p| exit_file::claim(p, std::process::id()))
        .transpose()?;
    let result = carry_out(d, plan, strict, stop, started, policy, resource_cache);
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
    resource_cache: Option<&Path>,
) -> Result<i32> {
    // Everything that can be refused is checked before the first write.
    let (cert_text, cert_wait) = timed("certificate", || cert::obtain(d, &plan.cert, stop))?;
    make_dirs(&plan.directories)?;
    cert::install(&cert_text, &plan.cert_path)?;
    for f in &plan.files {
        files::replace(&f.path, f.contents.as_bytes(), f.mode_bits())?;
    }
    timed("resource set R", || write_resource(plan, resource_cache))?;
    for h in &plan.hooks_before {
        run_hook(h, plan, strict)?;
    }
    let rank0_wait = match &plan.wait {
        None => std::time::Duration::ZERO,
        Some(w) => {
            let reachable = wait::rank0_reachable(
                &w.uri,
                std::time::Duration::from_secs(w.timeout_secs),
                stop,
            )?;
            let checked = if w.cert_check {
                crate::curve_check::rank0_holds_cert(&plan.name, w, &cert_text, stop)?
            } else {
                std::time::Duration::ZERO
            };
            reachable + checked
        }
    };
    let direct = timed("broker environment", || direct_broker(plan));
    let (argv, environment) = match &direct {
        Some(d) => (&d.argv, supervise::Env::Exactly(&d.environment)),
        None => (&plan.broker, supervise::Env::Added(&plan.environment)),
    };
    let code = supervise::run(
        argv,
        environment,
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

fn timed<T>(what: &str, f: impl FnOnce() -> T) -> T {
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

fn write_resource(plan: &Plan, cache: Option<&Path>) -> Result<()> {
    let r = match cache {
        None => encode_resource(plan)?,
        // Brokers sharing a machine all encode the same R from the same hardware; one
        // `flux R encode` (an hwloc scan) instead of one per broker keeps N brokers from
        // queueing for the CPU before any of them starts.
        Some(c) => shared_file(c, "--resource-cache", || encode_resource(plan))?,
    };
    files::replace(&plan.resource_path, &r, 0o644)
}

/// `flux-broker` and its environment, when the plan starts it directly and `flux env`
/// answered (once for this machine, in the cache); else `None`: `flux broker` as planned.
fn direct_broker(plan: &Plan) -> Option<broker_env::Direct> {
    let d = plan.direct_broker.as_ref()?;
    let made = shared_file(&d.env_cache, "--broker-env-cache", || {
        // A flux that cannot answer leaves an empty cache, so the other brokers do not ask.
        Ok(
            run_output(&d.env_command, &plan.environment).unwrap_or_else(|e| {
                tracing::debug!("{e}");
                Vec::new()
            }),
        )
    });
    match made {
        Ok(bytes) => {
            let found = broker_env::parse(&bytes)
                .and_then(|env| broker_env::direct(&plan.broker, d.flux_at, env));
            if found.is_none() {
                tracing::debug!(
                    "no flux-broker from `flux env`: starting the broker with `flux broker`"
                );
            }
            found
        }
        Err(e) => {
            tracing::warn!("{e}; starting the broker with `flux broker`");
            None
        }
    }
}

/// The contents of `cache`, made there by the first process to get its lock (`make`); the
/// others wait for the lock and read. The lock dies with its holder, and the file appears
/// whole (write + rename) or not at all. `flag` names the option that gave `cache`.
fn shared_file(
    cache: &Path,
    flag: &str,
    make: impl FnOnce() -> Result<Vec<u8>>,
) -> Result<Vec<u8>> {
    let fix = format!("pass a {flag} FILE in a directory this user can write");
    let fix = fix.as_str();
    let lock_path = cache.with_extension("lock");
    let lock = std::fs::File::create(&lock_path).map_err(Error::io("create", &lock_path, fix))?;
    lock.lock().map_err(Error::io("lock", &lock_path, fix))?;
    match std::fs::read(cache) {
        Ok(r) => {
            tracing::debug!("R from {}", cache.display());
            Ok(r)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let r = make()?;
            // Owner-only: an environment may hold secrets.
            files::write_atomic(cache, &r, 0o600)?;
            Ok(r)
        }
        Err(e) => Err(Error::io("read", cache, fix)(e)),
    }
}

fn encode_resource(plan: &Plan) -> Result<Vec<u8>> {
    run_output(&plan.resource_command, &plan.environment)
}

/// The standard output of `argv`, run with `env` added to ours; an error unless it exits 0.
fn run_output(argv: &[String], env: &BTreeMap<String, String>) -> Result<Vec<u8>> {
    let out = Command::new(&argv[0])
        .args(&argv[1..])
        .envs(env)
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
    Ok(out.stdout)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn brokers_sharing_a_cache_encode_r_once() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("R");
        let encoded = AtomicUsize::new(0);
        let encode = || {
            encoded.fetch_add(1, Ordering::SeqCst);
            // Long enough for the others to queue on the lock.
            std::thread::sleep(std::time::Duration::from_millis(50));
            Ok(b"{\"version\": 1}".to_vec())
        };
        let got: Vec<Vec<u8>> = std::thread::scope(|s| {
            let all: Vec<_> = (0..8)
                .map(|_| s.spawn(|| shared_file(&cache, "--resource-cache", encode).unwrap()))
                .collect();
            all.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(encoded.load(Ordering::SeqCst), 1);
        assert!(got.iter().all(|r| r == b"{\"version\": 1}"));
        assert_eq!(std::fs::read(&cache).unwrap(), b"{\"version\": 1}");
    }

    #[test]
    fn a_failed_encode_leaves_no_cache_and_the_next_broker_tries_again() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("R");
        let failed = shared_file(&cache, "--resource-cache", || {
            Err(Error::Program {
                what: "flux R encode".into(),
                reason: "exit status: 1".into(),
            })
        });
        assert!(failed.is_err());
        assert!(!cache.exists());
        let r = shared_file(&cache, "--resource-cache", || Ok(b"R".to_vec())).unwrap();
        assert_eq!(r, b"R");
    }

    #[test]
    fn an_unwritable_cache_names_the_flag() {
        let e = shared_file(Path::new("/nonexistent-dir/R"), "--resource-cache", || {
            Ok(Vec::new())
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("--resource-cache"), "{e}");
    }

    /// A plan whose `flux` is `script` and whose brokers share `dir/broker.env`; the
    /// spec's environment puts `dir` on `FLUX_EXEC_PATH`.
    fn plan_with_flux(dir: &Path, script: &str) -> Plan {
        use std::os::unix::fs::PermissionsExt;
        let flux = dir.join("flux");
        std::fs::write(&flux, script).unwrap();
        std::fs::set_permissions(&flux, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut d = crate::testing::description(2, 2);
        d.environment
            .insert("FLUX_EXEC_PATH".into(), dir.display().to_string());
        let mut facts = crate::testing::facts("mc-1");
        facts.flux = flux;
        let settings = crate::plan::Settings {
            broker_env_cache: Some(dir.join("broker.env")),
            ..Default::default()
        };
        crate::plan::build(
            &d,
            &minicluster_core::Templates::embedded(),
            &settings,
            &facts,
        )
        .unwrap()
    }

    #[test]
    fn the_broker_is_flux_broker_in_the_environment_flux_env_printed_once() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("flux-broker"), "").unwrap();
        let asked = dir.path().join("asked");
        // `flux env CMD` runs CMD in Flux's environment; this one counts the questions.
        let plan = plan_with_flux(
            dir.path(),
            &format!(
                "#!/bin/sh\necho >> {}\n[ \"$1\" = env ] || exit 1\nshift\nFLUX_FROM_ENV=1 exec \"$@\"\n",
                asked.display()
            ),
        );
        let first = direct_broker(&plan).expect("flux env answered");
        let second = direct_broker(&plan).expect("read from the cache");
        assert_eq!(first, second);
        assert_eq!(std::fs::read_to_string(&asked).unwrap().lines().count(), 1);
        let exe = dir.path().join("flux-broker").display().to_string();
        assert_eq!(first.argv[0], exe);
        assert_eq!(first.argv[1..], plan.broker[2..]);
        assert_eq!(first.environment["FLUX_FROM_ENV"], "1");
        assert_eq!(
            first.environment["FLUX_EXEC_PATH"],
            dir.path().display().to_string()
        );
        let mode = std::fs::metadata(dir.path().join("broker.env"))
            .unwrap()
            .permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
    }

    #[test]
    fn a_flux_without_env_leaves_an_empty_cache_and_every_broker_runs_flux_broker() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("flux-broker"), "").unwrap();
        let asked = dir.path().join("asked");
        let plan = plan_with_flux(
            dir.path(),
            &format!("#!/bin/sh\necho >> {}\nexit 1\n", asked.display()),
        );
        assert_eq!(direct_broker(&plan), None);
        assert_eq!(direct_broker(&plan), None);
        assert_eq!(std::fs::read_to_string(&asked).unwrap().lines().count(), 1);
        assert_eq!(std::fs::read(dir.path().join("broker.env")).unwrap(), b"");
    }
}
