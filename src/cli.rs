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
