//! Everything a broker start will do, decided up front by a pure function of the cluster
//! description, the command-line options and facts read from the environment. `--dry-run`
//! prints it; `run` carries it out. Every refusal happens here, before any file is written.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use minicluster_core::{ClusterDescription, Mode, Templates};
use serde::Serialize;

use crate::cert::{self, CertFacts, CertSource};
use crate::commands;
use crate::error::Result;
use crate::identity::{self, Identity, IdentityFacts};

/// Name of the rendered broker config inside the config directory.
pub const BROKER_CONFIG_NAME: &str = "broker.toml";
/// Name of the batch lines file inside the config directory.
pub const BATCH_FILE_NAME: &str = "batch";

/// Facts about this machine and process, read before planning.
#[derive(Clone, Debug)]
pub struct Facts {
    pub identity: IdentityFacts,
    pub cert: CertFacts,
    /// The `flux` to run.
    pub flux: PathBuf,
    /// This binary (the batch runner).
    pub self_exe: PathBuf,
    /// CPUs this process may use (cores of R when GPUs are asked for).
    pub cpus: usize,
    /// `$PATH`, `$LD_LIBRARY_PATH` as inherited.
    pub path: Option<String>,
    pub ld_library_path: Option<String>,
    /// `<view>/lib/python3.X/site-packages` when the view has one.
    pub view_python: Option<String>,
}

/// Options that are not facts: where to put things, how long to wait.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// Move every path of the description under this directory.
    pub root: Option<PathBuf>,
    pub wait_timeout: Duration,
    /// `--exit-file`: claimed before any user work, the exit code written there at the end.
    pub exit_file: Option<PathBuf>,
    /// `--no-cert-check`: every broker was given the same certificate file.
    pub no_cert_check: bool,
    /// `--broker-env-cache`: brokers sharing this machine start `flux-broker` directly.
    pub broker_env_cache: Option<PathBuf>,
}

#[derive(Clone, Debug, Serialize)]
pub struct PlannedFile {
    pub path: PathBuf,
    /// Octal, as `ls -l` users read it (`0600`).
    pub mode: String,
    pub contents: String,
}

impl PlannedFile {
    /// The mode as permission bits; owner-only when it does not parse.
    pub fn mode_bits(&self) -> u32 {
        u32::from_str_radix(&self.mode, 8).unwrap_or(0o600)
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct WaitTarget {
    pub uri: String,
    pub timeout_secs: u64,
    /// Whether the worker checks with a CURVE handshake that rank 0 holds its certificate.
    pub cert_check: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct Hook {
    pub name: &'static str,
    pub argv: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Restart {
    /// The broker's exit ends the entrypoint.
    Never,
    /// A worker whose broker fails starts it again (completeWorkers: false).
    OnFailure,
}

#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    pub name: String,
    pub mode: &'static str,
    #[serde(flatten)]
    pub identity: Identity,
    pub size: u32,
    pub cert: CertSource,
    /// The private copy the broker reads (0600).
    pub cert_path: PathBuf,
    /// Owner-only directories created before anything is written.
    pub directories: Vec<PathBuf>,
    pub files: Vec<PlannedFile>,
    /// Command whose output becomes the resource set R, and where it goes.
    pub resource_command: Vec<String>,
    pub resource_path: PathBuf,
    pub wait: Option<WaitTarget>,
    /// Hooks before the broker, in order, and after it.
    pub hooks_before: Vec<Hook>,
    pub hooks_after: Vec<Hook>,
    /// Variables set for the broker (and so for the initial program and its jobs).
    pub environment: BTreeMap<String, String>,
    pub broker: Vec<String>,
    /// `--broker-env-cache`: how `broker` is started as `flux-broker` itself.
    pub direct_broker: Option<DirectBroker>,
    pub restart: Restart,
    /// Where the exit code goes (`--exit-file`); its claim `<file>.started` is made before
    /// the first hook or the broker runs.
    pub exit_file: Option<PathBuf>,
}

/// Starting `flux-broker` itself in the environment `flux broker` would give it
/// ([`crate::broker_env`]): the first broker on this machine runs `env_command` and leaves
/// its output in `env_cache`; `flux` at `flux_at` in the broker's argv, and the `broker`
/// after it, become `flux-broker`. Without an answer, the broker runs as `flux broker`.
#[derive(Clone, Debug, Serialize)]
pub struct DirectBroker {
    pub env_cache: PathBuf,
    pub env_command: Vec<String>,
    pub flux_at: usize,
}

/// Decides everything; reads nothing and writes nothing.
pub fn build(
    d: &ClusterDescription,
    templates: &Templates,
    settings: &Settings,
    facts: &Facts,
) -> Result<Plan> {
    let id = identity::decide(d, &facts.identity)?;
    let cert = cert::decide(d, id.rank, &facts.cert)?;
    let at = |p: &str| reroot(settings.root.as_deref(), p);

    // Paths, moved under --root when brokers share a machine.
    let mut d = d.clone();
    d.paths.config_dir = at(&d.paths.config_dir);
    d.paths.curve_cert = at(&d.paths.curve_cert);
    d.paths.resource = at(&d.paths.resource);
    d.paths.rundir = at(&d.paths.rundir);
    d.paths.statedir = at(&d.paths.statedir);
    let config_dir = PathBuf::from(&d.paths.config_dir);
    let batch_file = config_dir.join(BATCH_FILE_NAME);

    let mut files = vec![PlannedFile {
        path: config_dir.join(BROKER_CONFIG_NAME),
        mode: "0600".into(),
        contents: templates.broker_config(&d)?,
    }];
    let program =
        commands::initial_program(&d, id.rank, &facts.flux, &facts.self_exe, &batch_file)?;
    if d.mode == Mode::Batch && id.rank == 0 {
        let lines = commands::batch_lines(d.command.as_deref().unwrap_or_default());
        files.push(PlannedFile {
            path: batch_file,
            mode: "0600".into(),
            contents: lines.join("\n") + "\n",
        });
    }
    if let Some(script) = d
        .hooks
        .script
        .as_ref()
        .filter(|_| commands::runs_script(&d))
    {
        // Every broker, as in the flux-operator: submit mode runs it on each of them.
        files.push(PlannedFile {
            path: commands::script_path(&d),
            mode: "0755".into(),
            contents: script.clone(),
        });
    }

    let mut broker = Vec::new();
    if let Some(prefix) = &d.hooks.prefix {
        broker.extend(commands::words("commands.prefix", prefix)?);
    }
    if let Some(wrap) = &d.flux.wrap {
        // Same form as `flux start --wrap`: comma-separated words.
        broker.extend(wrap.split(',').filter(|w| !w.is_empty()).map(String::from));
    }
    let flux_at = broker.len();
    broker.push(facts.flux.display().to_string());
    broker.push("broker".into());
    broker.push(format!("--config-path={}", d.paths.config_dir));
    broker.extend(d.flux.broker_options.iter().cloned());
    broker.push(format!("-Srundir={}", d.paths.rundir));
    broker.push(format!("-Sstatedir={}", d.paths.statedir));
    broker.push(format!("-Slocal-uri=local://{}/local", d.paths.rundir));
    if id.set_hostname {
        broker.push(format!("-Shostname={}", id.hostname));
    }
    if let Some(p) = program {
        broker.extend(p);
    }

    let sh = |name: &'static str, cmd: &Option<String>| {
        cmd.as_ref().map(|c| Hook {
            name,
            argv: vec!["sh".into(), "-c".into(), c.clone()],
        })
    };
    let mut hooks_before: Vec<Hook> = [sh("init", &d.hooks.init), sh("pre", &d.hooks.pre)]
        .into_iter()
        .flatten()
        .collect();
    let role_hook = if id.rank == 0 {
        sh("brokerPre", &d.hooks.broker_pre)
    } else {
        sh("workerPre", &d.hooks.worker_pre)
    };
    hooks_before.extend(role_hook);
    let hooks_after = sh("post", &d.hooks.post).into_iter().collect();

    let mut environment = d.environment.clone();
    if let Some(view) = &d.flux.view {
        environment.insert(
            "PATH".into(),
            prepend(&format!("{view}/bin"), facts.path.as_deref()),
        );
        environment.insert(
            "LD_LIBRARY_PATH".into(),
            prepend(&format!("{view}/lib"), facts.ld_library_path.as_deref()),
        );
        if let Some(py) = &facts.view_python {
            environment.insert("PYTHONPATH".into(), py.clone());
        }
    }

    Ok(Plan {
        name: d.name.clone(),
        mode: commands::mode_name(d.mode),
        size: d.size,
        cert,
        cert_path: PathBuf::from(&d.paths.curve_cert),
        directories: vec![
            config_dir,
            PathBuf::from(&d.paths.rundir),
            PathBuf::from(&d.paths.statedir),
        ],
        files,
        resource_command: commands::resource_command(&d, &facts.flux, facts.cpus),
        resource_path: PathBuf::from(&d.paths.resource),
        wait: (id.rank != 0).then(|| WaitTarget {
            uri: d.connect_uri(0),
            timeout_secs: settings.wait_timeout.as_secs(),
            cert_check: !settings.no_cert_check,
        }),
        hooks_before,
        hooks_after,
        environment,
        broker,
        direct_broker: settings
            .broker_env_cache
            .clone()
            .map(|env_cache| DirectBroker {
                env_cache,
                env_command: crate::broker_env::env_command(&facts.flux),
                flux_at,
            }),
        restart: if id.rank != 0 && !d.flux.complete_workers {
            Restart::OnFailure
        } else {
            Restart::Never
        },
        exit_file: settings.exit_file.clone(),
        identity: id,
    })
}

/// Words joined so a shell reads them back unchanged, quoting only where needed.
pub fn join_for_shell(argv: &[String]) -> String {
    let plain = |w: &str| {
        !w.is_empty()
            && w.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_=:,./@%+".contains(c))
    };
    argv.iter()
        .map(|w| {
            if plain(w) {
                w.clone()
            } else {
                shell_words::quote(w).into_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn reroot(root: Option<&Path>, p: &str) -> String {
    match root {
        None => p.to_string(),
        Some(r) => r.join(p.trim_start_matches('/')).display().to_string(),
    }
}

fn prepend(dir: &str, rest: Option<&str>) -> String {
    match rest {
        Some(r) if !r.is_empty() => format!("{dir}:{r}"),
        _ => dir.to_string(),
    }
}

/// The `--dry-run` text: the exact commands, files and environment.
impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let q = |argv: &[String]| join_for_shell(argv);
        writeln!(
            f,
            "# MiniCluster {}: rank {} of {} (from {}), hostname {}, {} mode",
            self.name,
            self.identity.rank,
            self.size,
            identity::source_name(self.identity.rank_source),
            self.identity.hostname,
            self.mode
        )?;
        writeln!(f, "\n## CURVE certificate")?;
        match &self.cert {
            CertSource::Mounted { path } => writeln!(f, "read {}", path.display())?,
            CertSource::CreateShared { path } => writeln!(
                f,
                "create {} if missing (write + rename), then read it",
                path.display()
            )?,
            CertSource::WaitShared { path, timeout } => writeln!(
                f,
                "wait up to {}s for rank 0 to create {}, then read it",
                timeout.as_secs(),
                path.display()
            )?,
            CertSource::GeneratePrivate => writeln!(f, "generate a new keypair")?,
        }
        writeln!(f, "install as {} (mode 0600)", self.cert_path.display())?;
        writeln!(f, "\n## Directories (owner-only, 0700)")?;
        for d in &self.directories {
            writeln!(f, "{}", d.display())?;
        }
        writeln!(f, "\n## Files")?;
        for file in &self.files {
            writeln!(f, "--- {} (mode {})", file.path.display(), file.mode)?;
            f.write_str(&file.contents)?;
            if !file.contents.ends_with('\n') {
                writeln!(f)?;
            }
        }
        writeln!(
            f,
            "--- {} = output of: {}",
            self.resource_path.display(),
            q(&self.resource_command)
        )?;
        if let Some(exit) = &self.exit_file {
            writeln!(f, "\n## Exit file")?;
            writeln!(
                f,
                "claim {} (created exclusively, with this pid) before the first hook or the broker; refuse to start if it exists",
                crate::exit_file::started_path(exit).display()
            )?;
            writeln!(
                f,
                "write the exit code to {} (write + rename) when the broker ends, 125 if the start fails after the claim",
                exit.display()
            )?;
        }
        if let Some(w) = &self.wait {
            writeln!(f, "\n## Wait")?;
            writeln!(
                f,
                "until {} accepts TCP (at most {}s)",
                w.uri, w.timeout_secs
            )?;
            if w.cert_check {
                writeln!(
                    f,
                    "then a CURVE handshake with rank 0 there, with this certificate: exit 125 unless rank 0 holds the same keypair (at most {}s a try)",
                    crate::curve_handshake::LIMIT.as_secs()
                )?;
            } else {
                writeln!(
                    f,
                    "no CURVE check (--no-cert-check: rank 0 was given this same certificate)"
                )?;
            }
        }
        if !self.hooks_before.is_empty() || !self.hooks_after.is_empty() {
            writeln!(f, "\n## Hooks")?;
            for h in &self.hooks_before {
                writeln!(f, "before the broker, {}: {}", h.name, q(&h.argv))?;
            }
            for h in &self.hooks_after {
                writeln!(f, "after the broker, {}: {}", h.name, q(&h.argv))?;
            }
        }
        writeln!(f, "\n## Environment added to the broker's")?;
        for (k, v) in &self.environment {
            writeln!(f, "{k}={v}")?;
        }
        writeln!(f, "\n## Broker")?;
        writeln!(f, "{}", q(&self.broker))?;
        if let Some(d) = &self.direct_broker {
            writeln!(
                f,
                "started as flux-broker itself, in the environment `{}` prints, made once for the brokers on this machine in {}",
                q(&d.env_command),
                d.env_cache.display()
            )?;
        }
        let restart = match self.restart {
            Restart::Never => "its exit code is the entrypoint's",
            Restart::OnFailure => "restarted when it fails (completeWorkers: false); exit 0 ends",
        };
        writeln!(f, "{restart}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{description, facts};

    fn plan_for(d: &ClusterDescription, host: &str) -> Plan {
        build(
            d,
            &Templates::embedded(),
            &Settings::default(),
            &facts(host),
        )
        .unwrap()
    }

    #[test]
    fn rank_zero_plan() {
        let d = description(4, 4);
        let p = plan_for(&d, "mc-0");
        assert_eq!(p.identity.rank, 0);
        assert!(p.wait.is_none(), "rank 0 waits for nobody");
        assert_eq!(p.restart, Restart::Never);
        assert_eq!(p.broker[0], "/mnt/flux/view/bin/flux");
        assert_eq!(p.broker[1], "broker");
        assert!(
            p.broker
                .contains(&"--config-path=/mnt/flux/config".to_string())
        );
        assert!(
            p.broker
                .contains(&"-Slocal-uri=local:///mnt/flux/run/local".to_string())
        );
        assert!(!p.broker.iter().any(|a| a.starts_with("-Shostname")));
        let submit = p.broker.iter().position(|a| a == "submit").unwrap();
        assert_eq!(p.broker[submit + 1..submit + 5], ["-N", "4", "-n", "4"]);
        assert_eq!(p.files[0].path, Path::new("/mnt/flux/config/broker.toml"));
        assert!(p.files[0].contents.contains("[bootstrap]"));
        assert_eq!(p.environment["PATH"], "/mnt/flux/view/bin:/usr/bin");
    }

    #[test]
    fn worker_plan_waits_and_restarts() {
        let d = description(4, 4);
        let p = plan_for(&d, "mc-2");
        assert_eq!(
            p.wait.as_ref().unwrap().uri,
            "tcp://mc-0.flux-service.default.svc.cluster.local:8050"
        );
        assert!(p.wait.as_ref().unwrap().cert_check, "checked unless told");
        assert_eq!(p.restart, Restart::OnFailure);
        assert!(
            p.broker.last().unwrap().starts_with("-Slocal-uri"),
            "no initial program: {:?}",
            p.broker
        );
        let mut d = d;
        d.flux.complete_workers = true;
        assert_eq!(plan_for(&d, "mc-2").restart, Restart::Never);
        let same_cert = Settings {
            no_cert_check: true,
            ..Settings::default()
        };
        let p = build(&d, &Templates::embedded(), &same_cert, &facts("mc-2")).unwrap();
        let w = p.wait.as_ref().unwrap();
        assert!(!w.cert_check);
        assert!(p.to_string().contains("no CURVE check"), "{p}");
    }

    #[test]
    fn hooks_per_role_and_prefix_and_wrap() {
        let mut d = description(2, 2);
        d.hooks.pre = Some("echo pre".into());
        d.hooks.broker_pre = Some("echo b".into());
        d.hooks.worker_pre = Some("echo w".into());
        d.hooks.post = Some("echo post".into());
        d.hooks.prefix = Some("nice -n 5".into());
        d.flux.wrap = Some("strace,-f".into());
        let p0 = plan_for(&d, "mc-0");
        let names: Vec<_> = p0.hooks_before.iter().map(|h| h.name).collect();
        assert_eq!(names, ["pre", "brokerPre"]);
        assert_eq!(p0.hooks_after[0].argv, ["sh", "-c", "echo post"]);
        assert_eq!(
            p0.broker[..6],
            ["nice", "-n", "5", "strace", "-f", "/mnt/flux/view/bin/flux"]
        );
        let p1 = plan_for(&d, "mc-1");
        assert_eq!(
            p1.hooks_before.iter().map(|h| h.name).collect::<Vec<_>>(),
            ["pre", "workerPre"]
        );
        d.hooks = Default::default();
        assert!(
            plan_for(&d, "mc-0").hooks_before.is_empty(),
            "no hook, no shell"
        );
    }

    #[test]
    fn shared_machine_plan_moves_paths_and_names_the_host() {
        let mut d = description(2, 2);
        d.network.endpoints = crate::testing::loopback(&d, 9100);
        let mut f = facts("laptop");
        f.identity.rank_flag = Some(1);
        let settings = Settings {
            root: Some("/tmp/mc/rank-1".into()),
            ..Settings::default()
        };
        let p = build(&d, &Templates::embedded(), &settings, &f).unwrap();
        assert!(p.broker.contains(&"-Shostname=mc-1".to_string()));
        assert!(
            p.broker
                .contains(&"-Srundir=/tmp/mc/rank-1/mnt/flux/run".to_string())
        );
        assert_eq!(
            p.cert_path,
            Path::new("/tmp/mc/rank-1/mnt/flux/config/curve.cert")
        );
        assert_eq!(p.wait.unwrap().uri, "tcp://127.0.0.1:9100");
        let config = &p.files[0].contents;
        assert!(
            config.contains("curve_cert = \"/tmp/mc/rank-1/mnt/flux/config/curve.cert\""),
            "{config}"
        );
        assert!(
            config.contains("{ host = \"mc-1\", bind = \"tcp://127.0.0.1:9101\""),
            "{config}"
        );
    }

    #[test]
    fn batch_plan_writes_the_lines() {
        let mut d = description(2, 2);
        d.mode = Mode::Batch;
        d.command = Some("echo a\n\necho b".into());
        let p = plan_for(&d, "mc-0");
        assert_eq!(p.files[1].path, Path::new("/mnt/flux/config/batch"));
        assert_eq!(p.files[1].contents, "echo a\necho b\n");
        assert!(
            plan_for(&d, "mc-1").files.len() == 1,
            "only rank 0 runs the batch"
        );
    }

    #[test]
    fn every_broker_writes_the_script_it_may_run() {
        let mut d = description(2, 2);
        d.command = None;
        d.hooks.script = Some("echo ${FLUX_TASK_RANK}\n".into());
        for host in ["mc-0", "mc-1"] {
            let p = plan_for(&d, host);
            let f = &p.files[1];
            assert_eq!(f.path, Path::new("/mnt/flux/config/custom-entrypoint.sh"));
            assert_eq!((f.mode.as_str(), f.mode_bits()), ("0755", 0o755));
            assert_eq!(f.contents, "echo ${FLUX_TASK_RANK}\n");
        }
        let text = plan_for(&d, "mc-0").to_string();
        assert!(
            text.contains("--watch /bin/bash /mnt/flux/config/custom-entrypoint.sh"),
            "{text}"
        );
        d.mode = Mode::Interactive;
        assert_eq!(plan_for(&d, "mc-0").files.len(), 1, "nothing runs it");
    }

    #[test]
    fn dry_run_text_shows_everything_but_secrets() {
        let d = description(2, 2);
        let text = plan_for(&d, "mc-1").to_string();
        for want in [
            "rank 1 of 2",
            "## Files",
            "broker.toml",
            "R encode",
            "## Wait",
            "then a CURVE handshake with rank 0",
            "## Broker",
        ] {
            assert!(text.contains(want), "{want} missing:\n{text}");
        }
        assert!(!text.contains("secret-key"), "{text}");
    }

    #[test]
    fn the_exit_file_is_in_the_plan_and_its_text() {
        let d = description(1, 1);
        let settings = Settings {
            exit_file: Some("/tmp/mc/rank-0.exit".into()),
            ..Settings::default()
        };
        let p = build(&d, &Templates::embedded(), &settings, &facts("mc-0")).unwrap();
        assert_eq!(
            p.exit_file.as_deref(),
            Some(Path::new("/tmp/mc/rank-0.exit"))
        );
        let text = p.to_string();
        assert!(
            text.contains("## Exit file")
                && text.contains("claim /tmp/mc/rank-0.exit.started")
                && text.contains("exit code to /tmp/mc/rank-0.exit (write + rename)"),
            "{text}"
        );
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["exit_file"], "/tmp/mc/rank-0.exit");
        let without = plan_for(&d, "mc-0");
        assert!(without.exit_file.is_none());
        assert!(!without.to_string().contains("Exit file"));
    }

    #[test]
    fn interactive_has_no_initial_program_and_rc2_none() {
        let mut d = description(2, 2);
        d.mode = Mode::Interactive;
        d.flux.broker_options.push("-Sbroker.rc2_none".into());
        let p = plan_for(&d, "mc-0");
        assert!(p.broker.last().unwrap().starts_with("-Slocal-uri"));
        assert!(p.broker.contains(&"-Sbroker.rc2_none".to_string()));
    }
}
