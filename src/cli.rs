//! Command-line interface.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Bring up Flux Framework MiniClusters (N Flux brokers forming one instance) and run work on them.
#[derive(Parser, Debug)]
#[command(name = "minicluster", version, about, long_about = None)]
pub struct Cli {
    /// More output (-v: info, -vv: debug). MINICLUSTER_LOG overrides (e.g. MINICLUSTER_LOG=debug).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    pub fn log_level(&self) -> &'static str {
        match self.verbose {
            0 => "warn",
            1 => "info",
            _ => "debug",
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Validate a MiniCluster and render what its brokers need: the cluster description, the
    /// broker config and (with --with-cert) a fresh CURVE certificate.
    ///
    /// Without FILE, renders the built-in hello-world MiniCluster (4 brokers).
    ///
    /// Examples:
    ///   minicluster render                               # built-in example, printed
    ///   minicluster render mc.yaml --out ./mc --with-cert
    ///   kubectl get mc flux-sample -o yaml | minicluster render -
    #[command(verbatim_doc_comment)]
    Render(RenderArgs),
    /// Print the MiniCluster CustomResourceDefinition (YAML), for `kubectl apply -f -`.
    Crd,
    /// Run the MiniCluster operator: watches MiniClusters and makes their Secret, ConfigMap,
    /// headless Service and Indexed Job (in-cluster, or from your kubeconfig).
    ///
    /// Serves /healthz, /readyz and Prometheus /metrics on --listen.
    Operator(OperatorArgs),
    /// Launch an ephemeral MiniCluster, run CMD across it, stream its output and exit with
    /// its exit code. Nothing is left behind, also after Ctrl-C.
    ///
    /// Examples:
    ///   minicluster run --size 4 -- hostname                 # 4 lines, one per broker
    ///   minicluster run --size 2 -- sh -c 'exit 3'; echo $?   # 3
    ///   minicluster run -f mc.yaml
    #[command(verbatim_doc_comment)]
    Run {
        #[command(flatten)]
        launch: LaunchArgs,
        /// The command, run on every broker (`flux submit -N SIZE -n TASKS --watch CMD`).
        #[arg(last = true, value_name = "CMD")]
        command: Vec<String>,
    },
    /// Launch a persistent MiniCluster and print how to reach it (FLUX_URI, flux proxy).
    Up {
        #[command(flatten)]
        launch: LaunchArgs,
        /// Print the launch record as JSON.
        #[arg(long)]
        json: bool,
        /// Rank 0 runs the REST server (flux-restful-api) on 127.0.0.1:PORT (process
        /// launcher; without PORT, a free one).
        #[arg(long, value_name = "PORT", num_args = 0..=1, default_missing_value = "0")]
        rest: Option<u16>,
    },
    /// Stop a MiniCluster and remove everything it left (processes, files).
    Down(DownArgs),
    /// List MiniClusters (or show one) with their running brokers.
    #[command(alias = "ls")]
    Status(StatusArgs),
    /// Print a broker's log (rank 0 by default); -f follows it.
    Logs(LogsArgs),
    /// Print shell completions: `minicluster completions bash > /etc/bash_completion.d/minicluster`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the operator's manifests (CRD, RBAC, Deployment), as committed under deploy/.
    ///
    /// Example: minicluster manifests --out deploy && kubectl apply -f deploy/
    Manifests(ManifestsArgs),
}

#[derive(Args, Debug)]
pub struct OperatorArgs {
    /// Address of /healthz, /readyz and /metrics.
    #[arg(long, default_value = "0.0.0.0:8080", value_name = "ADDR")]
    pub listen: std::net::SocketAddr,
    /// Watch only this namespace (default: all).
    #[arg(long, value_name = "NS")]
    pub namespace: Option<String>,
    /// Image the broker pods' init container takes the entrypoint from.
    #[arg(long, value_name = "IMAGE", env = "MINICLUSTER_RUNNER_IMAGE", default_value = minicluster_operator::build::DEFAULT_RUNNER_IMAGE)]
    pub runner_image: String,
    /// Cluster DNS domain used in broker addresses.
    #[arg(long, default_value = "cluster.local", value_name = "DOMAIN")]
    pub cluster_domain: String,
}

#[derive(Args, Debug)]
pub struct ManifestsArgs {
    /// Directory to write crd.yaml, rbac.yaml and operator.yaml into.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Image of the operator Deployment.
    #[arg(long, value_name = "IMAGE", default_value = minicluster_operator::build::DEFAULT_RUNNER_IMAGE)]
    pub image: String,
}

#[derive(Args, Debug)]
pub struct RenderArgs {
    /// MiniCluster YAML (flux-framework.org/v1alpha2); `-` reads standard input.
    pub file: Option<PathBuf>,
    /// Write the files into this directory (created if missing) instead of printing them.
    #[arg(short, long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Also produce a CURVE certificate: the spec's flux.curveCert, or a freshly generated one.
    #[arg(long)]
    pub with_cert: bool,
    /// Treat fields the MiniCluster schema does not know as errors instead of warnings.
    #[arg(long)]
    pub strict: bool,
    /// Namespace used in broker addresses when the YAML has none.
    #[arg(long, default_value = "default", value_name = "NS")]
    pub namespace: String,
    /// Cluster DNS domain used in broker addresses.
    #[arg(long, default_value = "cluster.local", value_name = "DOMAIN")]
    pub cluster_domain: String,
    /// Image the operator takes the entrypoint from (an init container of every broker pod).
    #[arg(long, value_name = "IMAGE", env = "MINICLUSTER_RUNNER_IMAGE", default_value = minicluster_operator::build::DEFAULT_RUNNER_IMAGE)]
    pub runner_image: String,
    /// Brokers share this machine (local processes): broker i listens on 127.0.0.1:PORT+i.
    #[arg(long, value_name = "PORT")]
    pub loopback_port: Option<u16>,
    /// Directory whose templates (e.g. broker.toml.tera) replace the built-in ones.
    #[arg(long, value_name = "DIR", env = "MINICLUSTER_TEMPLATES")]
    pub templates: Option<PathBuf>,
}

/// Where MiniClusters are launched.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// Local processes on this machine, each broker on its own loopback port.
    Process,
    /// Docker containers on a network of their own.
    Docker,
    /// A MiniCluster object for the operator.
    Kubernetes,
}

#[derive(Args, Debug)]
pub struct LaunchArgs {
    /// Where to launch.
    #[arg(long, value_enum, default_value = "process")]
    pub launcher: Transport,
    /// A MiniCluster YAML; the flags below override its fields.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Name of the MiniCluster (default: the file's, else "minicluster").
    #[arg(long)]
    pub name: Option<String>,
    /// Number of brokers.
    #[arg(long)]
    pub size: Option<u32>,
    /// Container image (docker, kubernetes).
    #[arg(long)]
    pub image: Option<String>,
    /// First broker port (process launcher; default: free ports).
    #[arg(long)]
    pub port: Option<u16>,
    /// The flux the brokers run (process launcher; default: flux on PATH).
    #[arg(long, env = "FLUX_BIN", value_name = "PATH")]
    pub flux: Option<PathBuf>,
    /// The entrypoint binary (default: beside minicluster, else on PATH).
    #[arg(long, env = "MINICLUSTER_ENTRYPOINT", value_name = "PATH")]
    pub entrypoint: Option<PathBuf>,
    /// Namespace (kubernetes; default: the kubeconfig's).
    #[arg(long, value_name = "NS")]
    pub namespace: Option<String>,
    /// Apply the Secret, ConfigMap, Service and Job directly, with no operator (kubernetes).
    #[arg(long)]
    pub no_operator: bool,
    /// No progress messages.
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct DownArgs {
    /// The MiniCluster to stop.
    pub name: String,
    /// Look for Docker containers of this name even without a launch record.
    #[arg(long)]
    pub docker: bool,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// One MiniCluster (default: all).
    pub name: Option<String>,
    /// JSON output, for scripts.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct LogsArgs {
    pub name: String,
    /// Which broker.
    #[arg(long, default_value_t = 0)]
    pub rank: u32,
    /// Keep printing as the log grows.
    #[arg(short, long)]
    pub follow: bool,
}
