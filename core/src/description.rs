//! The cluster description: the one document the entrypoint needs to start a broker.
//!
//! It is derived from a MiniCluster by a pure function ([`describe`]), written by the operator
//! and the launchers (ConfigMap, copied file), and read by the entrypoint. It holds no secret:
//! the CURVE certificate travels separately (Secret, 0400 file).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::spec::{
    DEFAULT_BROKER_PORT, DEFAULT_FLUX_MOUNT_PATH, DEFAULT_HEADLESS_NAME, MiniCluster,
    script_file_text, validate,
};

/// Version of the description format; bumped on any incompatible change.
pub const DESCRIPTION_VERSION: u32 = 1;

/// Everything a broker of the MiniCluster needs to know.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterDescription {
    /// [`DESCRIPTION_VERSION`].
    pub version: u32,
    /// MiniCluster name; broker `i` is `<name>-<i>`.
    pub name: String,
    /// Kubernetes namespace (part of the connect address).
    pub namespace: String,
    /// Brokers started now.
    pub size: u32,
    /// Brokers the instance can grow to; the hostlist covers this many.
    pub max_size: u32,
    /// Brokers that must be online before work starts.
    pub quorum: u32,
    /// Hostnames of all brokers (RFC 29), in rank order.
    pub hostlist: String,
    pub network: Network,
    pub mode: Mode,
    /// The user's command (submit, launcher, batch script lines, or the restful server);
    /// `hooks.script` stands in for it when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Total tasks for `flux submit -n` (never fewer than the number of brokers).
    pub tasks: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// Environment of the command.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub environment: BTreeMap<String, String>,
    /// GPUs of each broker's node (from the Flux container's `nvidia.com/gpu`, `amd.com/gpu`
    /// or `gpu` limit); they go into the resource set R.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub gpus: u32,
    pub flux: FluxOptions,
    pub hooks: Hooks,
    pub logging: Logging,
    pub paths: Paths,
}

/// How brokers find each other.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Network {
    /// TCP port of every broker (`%p`).
    pub port: u16,
    /// ZeroMQ bind URI pattern (flux-config-bootstrap(5) `default_bind`).
    pub bind: String,
    /// ZeroMQ connect URI pattern (`default_connect`); `%h` is the hostname.
    pub connect: String,
    /// Headless Service that gives brokers their DNS names.
    pub service: String,
    /// Cluster DNS domain.
    pub cluster_domain: String,
    /// Explicit per-broker addresses, in rank order; when present they replace the patterns
    /// above (brokers sharing one machine, each on its own loopback port).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<Endpoint>,
}

/// Where one broker listens and how the others reach it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Endpoint {
    pub host: String,
    pub bind: String,
    pub connect: String,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// What rank 0 runs.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// `flux submit` the command across the cluster and wait for it.
    Submit,
    /// The command is the initial program; it submits its own jobs.
    Launcher,
    /// The command's lines are submitted as separate jobs, then all are waited for.
    Batch,
    /// Persistent: brokers run until stopped, jobs come from outside.
    Interactive,
    /// Persistent, with the REST server as rank 0's initial program.
    Restful,
}

/// Flux settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FluxOptions {
    /// Where the Flux view is mounted (`<view>/bin/flux`); `None` when the image has Flux.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub view: Option<String>,
    /// Broker log level written to stderr.
    pub log_level: u8,
    /// TBON connect timeout (Flux Standard Duration).
    pub connect_timeout: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub option_flags: Option<String>,
    /// Replaces `flux submit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submit_command: Option<String>,
    /// Arguments of `flux start --wrap`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wrap: Option<String>,
    /// `sched-simple` instead of Fluxion.
    pub simple_scheduler: bool,
    /// Fluxion queue policy.
    pub queue_policy: String,
    /// Workers exit instead of restarting their broker.
    pub complete_workers: bool,
    /// Batch lines are run as given, not wrapped in `flux submit`.
    pub batch_raw: bool,
    /// `-S` options of every broker.
    pub broker_options: Vec<String>,
    /// A broker config given in the spec; used verbatim instead of the generated one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker_config: Option<String>,
    /// The spec carries its own CURVE certificate (otherwise the launcher generates one).
    pub curve_cert_provided: bool,
    /// Directory to restore the instance from and save it to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive: Option<String>,
}

/// Commands run around the broker (each via `sh -c`, only when given), and the script that
/// stands in for the command.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Hooks {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker_pre: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_pre: Option<String>,
    /// Wrapper placed before `flux start` / `flux submit` / `flux broker`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// The contents of the script file (`commands.script`, as
    /// [`crate::spec::script_file_text`] gives it) that runs with `/bin/bash` in place of
    /// the command, in submit and launcher mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script: Option<String>,
}

/// Logging flags of the entrypoint.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Logging {
    pub quiet: bool,
    pub strict: bool,
    pub debug: bool,
    pub timed: bool,
    pub zeromq: bool,
}

/// Files and directories of a broker.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Paths {
    /// Directory of the rendered broker config (`--config-path`).
    pub config_dir: String,
    /// Private copy of the CURVE certificate (mode 0600).
    pub curve_cert: String,
    /// Resource set R.
    pub resource: String,
    /// Broker rundir (holds the local socket).
    pub rundir: String,
    /// Broker statedir.
    pub statedir: String,
}

/// The TBON topology of brokers on one machine when the spec names none: Flux's own default
/// outside config bootstrap.
pub const LOOPBACK_TOPOLOGY: &str = "kary:32";

/// Where the description is going: settings that are not part of the spec.
#[derive(Clone, Debug)]
pub struct DescribeOptions {
    /// Namespace of the MiniCluster when its metadata has none.
    pub namespace: String,
    /// Cluster DNS domain (`cluster.local` on most clusters).
    pub cluster_domain: String,
    /// Network interface brokers bind to (`%p` is the port).
    pub bind_interface: String,
    /// Replace the mode derived from the spec (launchers use `restful`).
    pub mode: Option<Mode>,
    /// Brokers share this machine: broker `i` listens on `127.0.0.1:<base + i>`.
    pub loopback_base_port: Option<u16>,
}

impl Default for DescribeOptions {
    fn default() -> Self {
        DescribeOptions {
            namespace: "default".into(),
            cluster_domain: "cluster.local".into(),
            bind_interface: "eth0".into(),
            mode: None,
            loopback_base_port: None,
        }
    }
}

/// Derives the cluster description of a valid MiniCluster.
pub fn describe(mc: &MiniCluster, opts: &DescribeOptions) -> Result<ClusterDescription, Error> {
    let problems = validate(mc);
    if !problems.is_empty() {
        return Err(Error::Invalid(problems));
    }
    let spec = &mc.spec;
    let name = mc.metadata.name.clone().unwrap_or_default();
    let namespace = mc
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| opts.namespace.clone());
    // validate() has checked the ranges, so these conversions cannot fail.
    let size = u32::try_from(spec.size).unwrap_or(1);
    let max_size = u32::try_from(spec.effective_max_size()).unwrap_or(size);
    let quorum = spec
        .min_size
        .and_then(|m| u32::try_from(m).ok())
        .unwrap_or(size);
    let container = &spec.containers[spec.flux_container_index().unwrap_or(0)];
    let flux = spec.flux.clone().unwrap_or_default();
    let logging = spec.logging.clone().unwrap_or_default();
    let commands = container.commands.clone().unwrap_or_default();

    let mode = opts.mode.unwrap_or(if spec.interactive {
        Mode::Interactive
    } else if container.launcher == Some(true) {
        Mode::Launcher
    } else if container.batch == Some(true) {
        Mode::Batch
    } else {
        Mode::Submit
    });
    let service = spec
        .network
        .as_ref()
        .and_then(|n| n.headless_name.clone())
        .unwrap_or_else(|| DEFAULT_HEADLESS_NAME.into());
    let view_container = flux.container.clone().unwrap_or_default();
    let mount = if view_container.mount_path.is_empty() {
        DEFAULT_FLUX_MOUNT_PATH.to_string()
    } else {
        view_container.mount_path.clone()
    };
    let config_dir = format!("{mount}/config");
    let paths = Paths {
        curve_cert: format!("{config_dir}/curve.cert"),
        resource: format!("{config_dir}/R"),
        // Inside the shared emptyDir: writable whatever user the image runs as.
        rundir: format!("{mount}/run"),
        statedir: format!("{mount}/state"),
        config_dir,
    };
    let minimal_service = flux.minimal_service == Some(true);
    let topology = flux.topology.clone().or_else(|| {
        if minimal_service {
            // Only rank 0 has a DNS name, so every broker must be its child.
            Some("kary:0".to_string())
        } else if opts.loopback_base_port.is_some() {
            // Brokers sharing one machine: the tree `flux start --test-size` builds. Config
            // bootstrap's default is flat (rank 0 the parent of all), which at 128 brokers
            // on two cores makes rank 0 the bottleneck of the join and the shutdown.
            Some(LOOPBACK_TOPOLOGY.to_string())
        } else {
            None
        }
    });
    let log_level = if logging.quiet {
        0
    } else if logging.debug {
        7
    } else {
        u8::try_from(flux.log_level).unwrap_or(6)
    };
    let mut broker_options = vec![
        format!("-Slog-stderr-level={log_level}"),
        "-Slog-stderr-mode=local".to_string(),
        format!("-Stbon.connect_timeout={}", flux.connect_timeout),
        format!("-Sbroker.quorum={quorum}"),
    ];
    if let Some(t) = &topology {
        broker_options.push(format!("-Stbon.topo={t}"));
    }
    if logging.zeromq {
        broker_options.push("-Stbon.zmqdebug=1".into());
    }
    if mode == Mode::Interactive {
        broker_options.push("-Sbroker.rc2_none".into());
    }
    // rundir, statedir and local-uri come from `paths` at start time: a broker sharing its
    // machine with others has them moved under its own directory.

    let scheduler = flux.scheduler.clone().unwrap_or_default();
    let mut environment = flux.environment.clone();
    environment.extend(container.environment.clone());

    let endpoints = match opts.loopback_base_port {
        None => Vec::new(),
        Some(base) => loopback_endpoints(&name, max_size, base)?,
    };
    let gpus = container
        .resources
        .as_ref()
        .map(|r| gpu_limit(&r.limits))
        .unwrap_or(0);

    Ok(ClusterDescription {
        version: DESCRIPTION_VERSION,
        hostlist: range_hostlist(&name, max_size),
        network: Network {
            port: DEFAULT_BROKER_PORT,
            bind: format!("tcp://{}:%p", opts.bind_interface),
            connect: format!(
                "tcp://%h.{service}.{namespace}.svc.{}:%p",
                opts.cluster_domain
            ),
            service,
            cluster_domain: opts.cluster_domain.clone(),
            endpoints,
        },
        name,
        namespace,
        size,
        max_size,
        quorum,
        mode,
        command: container.command.clone().filter(|c| !c.trim().is_empty()),
        tasks: u32::try_from(spec.tasks).unwrap_or(1).max(size),
        working_dir: container.working_dir.clone(),
        environment,
        gpus,
        flux: FluxOptions {
            view: (!view_container.disable).then(|| format!("{mount}/view")),
            log_level,
            connect_timeout: flux.connect_timeout.clone(),
            option_flags: flux.option_flags.clone(),
            submit_command: flux.submit_command.clone(),
            wrap: flux.wrap.clone(),
            simple_scheduler: scheduler.simple == Some(true),
            queue_policy: scheduler.queue_policy.unwrap_or_else(|| "fcfs".into()),
            complete_workers: flux.complete_workers == Some(true),
            batch_raw: container.batch_raw == Some(true),
            broker_options,
            broker_config: flux.broker_config.clone(),
            curve_cert_provided: flux.curve_cert.is_some(),
            archive: spec.archive.as_ref().and_then(|a| a.path.clone()),
        },
        hooks: Hooks {
            init: commands.init,
            pre: commands.pre,
            post: commands.post,
            broker_pre: commands.broker_pre,
            worker_pre: commands.worker_pre,
            prefix: commands.prefix,
            script: commands
                .script
                .filter(|s| !s.trim().is_empty())
                .map(|s| script_file_text(&s)),
        },
        logging: Logging {
            quiet: logging.quiet,
            strict: logging.strict,
            debug: logging.debug,
            timed: logging.timed,
            zeromq: logging.zeromq,
        },
        paths,
    })
}

/// One loopback port per broker, `base`, `base + 1`, …, refused when they run past 65535.
fn loopback_endpoints(name: &str, max_size: u32, base: u16) -> Result<Vec<Endpoint>, Error> {
    let last = u32::from(base) + max_size.saturating_sub(1);
    if base == 0 || last > u32::from(u16::MAX) {
        return Err(Error::Invalid(vec![crate::FieldError::new(
            "loopback base port",
            format!("{base} + maxSize {max_size} runs past port 65535 (or is 0)"),
            "choose a base port so that base + maxSize - 1 is at most 65535",
        )]));
    }
    Ok((0..max_size)
        .map(|rank| {
            let addr = format!("tcp://127.0.0.1:{}", u32::from(base) + rank);
            Endpoint {
                host: format!("{name}-{rank}"),
                bind: addr.clone(),
                connect: addr,
            }
        })
        .collect())
}

/// GPUs asked for by a container's limits (the device plugins' resource names).
fn gpu_limit(limits: &BTreeMap<String, IntOrString>) -> u32 {
    ["nvidia.com/gpu", "amd.com/gpu", "gpu"]
        .iter()
        .filter_map(|k| limits.get(*k))
        .filter_map(|v| match v {
            IntOrString::Int(n) => u32::try_from(*n).ok(),
            IntOrString::String(s) => s.trim().parse().ok(),
        })
        .max()
        .unwrap_or(0)
}

/// The idset of the first `n` ids, as Flux writes it: `0` or `0-(n-1)`.
pub fn id_range(n: u32) -> String {
    if n <= 1 {
        "0".into()
    } else {
        format!("0-{}", n - 1)
    }
}

/// `name-[0-(n-1)]` without expanding it, so its cost does not grow with `n`.
pub fn range_hostlist(name: &str, n: u32) -> String {
    match n {
        0 | 1 => format!("{name}-0"),
        n => format!("{name}-[0-{}]", n - 1),
    }
}

impl ClusterDescription {
    /// Hostname of broker `rank`.
    pub fn hostname(&self, rank: u32) -> String {
        format!("{}-{rank}", self.name)
    }

    /// The address other brokers connect to for broker `rank` (`%h` and `%p` filled in).
    pub fn connect_uri(&self, rank: u32) -> String {
        if let Some(e) = self.network.endpoints.get(rank as usize) {
            return e.connect.clone();
        }
        self.network
            .connect
            .replace("%h", &self.hostname(rank))
            .replace("%p", &self.network.port.to_string())
    }

    /// The description as pretty JSON (the form written to ConfigMaps and files).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a description always serialises")
    }

    /// Reads a description, refusing versions this build does not know.
    pub fn from_json(text: &str) -> Result<Self, Error> {
        let d: ClusterDescription = serde_json::from_str(text).map_err(|e| Error::Input {
            source_name: "cluster description".into(),
            reason: e.to_string(),
        })?;
        if d.version != DESCRIPTION_VERSION {
            return Err(Error::Input {
                source_name: "cluster description".into(),
                reason: format!(
                    "has version {}, this build reads version {DESCRIPTION_VERSION}",
                    d.version
                ),
            });
        }
        Ok(d)
    }
}
