//! Command-line interface.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Bring up Flux Framework MiniClusters (N Flux brokers forming one instance) and run work on them.
#[derive(Parser, Debug)]
#[command(name = "minicluster", version, about, long_about = None)]
pub struct Cli {
    /// More output (-v: what we do, -vv: our debug lines, -vvv: every library's too).
    /// MINICLUSTER_LOG overrides (a tracing filter, e.g. MINICLUSTER_LOG=minicluster_operator=debug).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// The control plane's URL (serve's clients: pools, queues, submit, jobs, job, cancel,
    /// logs --job).
    #[arg(
        long,
        env = "MINICLUSTER_SERVER",
        default_value = "http://127.0.0.1:7878",
        value_name = "URL",
        global = true,
        hide_env_values = true
    )]
    pub server: String,
    #[command(subcommand)]
    pub command: Command,
}

/// Our crates, by their tracing targets.
const OURS: &[&str] = &[
    "minicluster",
    "minicluster_operator",
    "minicluster_launcher",
    "minicluster_pools",
    "minicluster_core",
    "flux_client",
];

impl Cli {
    /// The tracing filter for `-v`s: our crates at info, then debug; libraries (the
    /// Kubernetes client, TLS, HTTP) stay at warn unless -vvv asks for them.
    pub fn log_filter(&self) -> String {
        let ours = |level: &str| {
            std::iter::once("warn".to_string())
                .chain(OURS.iter().map(|c| format!("{c}={level}")))
                .collect::<Vec<_>>()
                .join(",")
        };
        match self.verbose {
            0 => "warn".into(),
            1 => ours("info"),
            2 => ours("debug"),
            _ => "debug".into(),
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
    ///   minicluster run --size 4 -- flux run -N4 ./app       # rank 0 runs flux run itself
    ///   minicluster run -f mc.yaml
    #[command(verbatim_doc_comment)]
    Run {
        #[command(flatten)]
        launch: LaunchArgs,
        /// The command, run on every broker (`flux submit -N SIZE -n TASKS --watch CMD`). A
        /// command that runs Flux jobs itself (`flux run|submit|batch|alloc …`) is instead rank
        /// 0's initial program and gets the whole MiniCluster (launcher mode), unless -f FILE
        /// sets launcher or batch.
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
    /// Run the control plane for batch work: pools, queues and jobs over HTTP.
    ///
    /// Its state is in a database (a SQLite file by default, or PostgreSQL); a dispatcher
    /// launches a MiniCluster per job on an eligible pool.
    ///
    /// Examples:
    ///   minicluster serve                                    # 127.0.0.1:7878, SQLite in the state dir
    ///   minicluster serve --database postgres://mc@db/mc --listen 0.0.0.0:7878
    #[command(verbatim_doc_comment)]
    Serve(ServeArgs),
    /// Pools: where MiniClusters for batch work are launched (a launcher type, its fields, a
    /// MiniCluster template, tags, limits).
    #[command(subcommand)]
    Pools(PoolsCommand),
    /// Queues: who runs how much, in what order (limits, priority, fairness).
    #[command(subcommand)]
    Queues(QueuesCommand),
    /// Submit a job to the control plane (prints its id).
    ///
    /// It waits in its queue, then runs on a MiniCluster of a pool that provides what it
    /// requires.
    ///
    /// Examples:
    ///   minicluster submit -- hostname
    ///   minicluster submit --queue gpu --requires gpu:A100,H100 --size 2 -- ./train
    ///   minicluster submit --wait -- sh -c 'exit 3'; echo $?   # 3
    #[command(verbatim_doc_comment)]
    Submit(SubmitArgs),
    /// List the control plane's jobs, newest first.
    Jobs(JobsArgs),
    /// One job: its state, pool, exit code and launch timeline.
    Job(JobArgs),
    /// Cancel a job: a waiting one at once, a running one by stopping its MiniCluster.
    Cancel(JobArgs),
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
    #[command(flatten)]
    pub runner: RunnerArgs,
    /// Cluster DNS domain used in broker addresses.
    #[arg(long, default_value = "cluster.local", value_name = "DOMAIN")]
    pub cluster_domain: String,
}

/// Where Kubernetes broker pods take our entrypoint from: an init container of the runner
/// image (`Dockerfile.runner`) copies it into the pod.
#[derive(Args, Debug, Clone)]
pub struct RunnerArgs {
    /// The runner image (Kubernetes): the broker pods' init container takes the entrypoint
    /// from it.
    #[arg(long, value_name = "IMAGE", env = "MINICLUSTER_RUNNER_IMAGE", default_value = minicluster_operator::build::DEFAULT_RUNNER_IMAGE)]
    pub runner_image: String,
    /// Pull policy of that init container (Kubernetes).
    #[arg(long, value_name = "POLICY", default_value = minicluster_operator::build::DEFAULT_RUNNER_PULL_POLICY,
        value_parser = ["IfNotPresent", "Always", "Never"])]
    pub runner_pull_policy: String,
}

impl RunnerArgs {
    pub fn build_options(&self, cluster_domain: &str) -> minicluster_operator::build::BuildOptions {
        minicluster_operator::build::BuildOptions {
            runner_image: self.runner_image.clone(),
            runner_pull_policy: self.runner_pull_policy.clone(),
            cluster_domain: cluster_domain.to_string(),
            server: Default::default(),
        }
    }
}

#[derive(Args, Debug)]
pub struct ManifestsArgs {
    /// Directory to write crd.yaml, namespace.yaml, operator.yaml and rbac.yaml into.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Image of the operator Deployment, also the runner image broker pods take the
    /// entrypoint from (build it from Dockerfile.runner).
    #[arg(long, value_name = "IMAGE", default_value = minicluster_operator::build::DEFAULT_RUNNER_IMAGE)]
    pub image: String,
    /// Pull policy of that image.
    #[arg(long, value_name = "POLICY", default_value = minicluster_operator::build::DEFAULT_RUNNER_PULL_POLICY,
        value_parser = ["IfNotPresent", "Always", "Never"])]
    pub pull_policy: String,
    /// Install for one namespace: the operator runs there, watches only it, and gets a Role
    /// there instead of a ClusterRole (the CRD stays cluster-wide).
    #[arg(long, value_name = "NS")]
    pub namespace: Option<String>,
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
    #[command(flatten)]
    pub runner: RunnerArgs,
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
    /// Container image (docker, kubernetes): one with Flux on its PATH (or on the PATH the
    /// spec's environment gives). Without -f FILE no Flux view is added to it on Kubernetes.
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
    #[command(flatten)]
    pub runner: RunnerArgs,
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
    /// The MiniCluster (see `minicluster ls`).
    #[arg(required_unless_present = "job")]
    pub name: Option<String>,
    /// A job of the control plane instead: rank 0's output of its MiniCluster.
    #[arg(long, value_name = "ID", conflicts_with = "name")]
    pub job: Option<u64>,

    /// Which broker.
    #[arg(long, default_value_t = 0)]
    pub rank: u32,
    /// Keep printing as the log grows.
    #[arg(short, long)]
    pub follow: bool,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to serve the HTTP API on.
    #[arg(long, default_value = "127.0.0.1:7878", value_name = "ADDR")]
    pub listen: std::net::SocketAddr,
    /// A SQLite file (default: control.db in the state directory), sqlite://PATH, or
    /// postgres://USER@HOST/DB for a shared deployment.
    #[arg(long, env = "MINICLUSTER_DATABASE", value_name = "URL")]
    pub database: Option<String>,
    /// Where launches and job logs are kept (default: $MINICLUSTER_STATE_DIR/control, else
    /// ~/.local/state/minicluster/control).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// The flux process pools' brokers run (default: flux on PATH).
    #[arg(long, env = "FLUX_BIN", value_name = "PATH")]
    pub flux: Option<PathBuf>,
    /// The entrypoint binary (default: beside minicluster, else on PATH).
    #[arg(long, env = "MINICLUSTER_ENTRYPOINT", value_name = "PATH")]
    pub entrypoint: Option<PathBuf>,
    /// For kubernetes pools with noOperator=true (with the operator, it decides).
    #[command(flatten)]
    pub runner: RunnerArgs,
}

/// The fields of a pool that `create` and `update` take.
#[derive(Args, Debug)]
pub struct PoolFields {
    /// Launcher fields, key=value (several per flag with commas): size, image, serverHost,
    /// concurrency, env.NAME; process: directory, flux, entrypoint; docker: dockerHost;
    /// kubernetes: namespace, serviceAccount, nodeSelector, tolerations, resources,
    /// imagePullPolicy, labels, annotations, activeDeadlineSeconds, volumes, noOperator.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// A tag the pool provides: KEY:VALUE[,VALUE…] or KEY:true (one flag per key).
    #[arg(long, value_name = "TAG")]
    pub provides: Vec<String>,
    /// A tag a job must require for this pool to take it (the pool also provides it).
    #[arg(long, value_name = "TAG")]
    pub accepts: Vec<String>,
    /// The MiniCluster YAML each launch starts from.
    #[arg(short = 'f', long = "file", value_name = "TEMPLATE.yaml")]
    pub template: Option<PathBuf>,
    /// MiniClusters of this pool running at once (default 4).
    #[arg(long, value_name = "N")]
    pub max_launches: Option<u32>,
    /// Turns warm reuse on: jobs run in an idle MiniCluster of the same template, kept this
    /// long with no work: 90s, 5m, 1h (default 0: a fresh MiniCluster per job).
    #[arg(long, value_name = "DURATION")]
    pub idle_timeout: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum PoolsCommand {
    /// Create a pool
    ///
    /// Examples:
    ///   minicluster pools create cpu --type process --set size=2
    ///   minicluster pools create a100 --type kubernetes --set namespace=hpc --provides gpu:A100 --accepts gpu:A100,H100 -f mc.yaml
    #[command(verbatim_doc_comment)]
    Create {
        name: String,
        /// process, docker or kubernetes.
        #[arg(long = "type", value_name = "TYPE", default_value = "process")]
        launcher: String,
        #[command(flatten)]
        fields: PoolFields,
    },
    /// List pools.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show one pool.
    Get {
        name: String,
    },
    /// Change a pool: the flags given replace those fields (tags and sets are merged by key).
    Update {
        name: String,
        #[command(flatten)]
        fields: PoolFields,
    },
    /// Delete a pool (refused while it has running launches: disable it first).
    Delete {
        name: String,
    },
    /// Stop assigning work to a pool; its running work finishes.
    Disable {
        name: String,
    },
    Enable {
        name: String,
    },
    /// A pool's launches and their timelines.
    Launches {
        name: String,
        /// Keep the table up to date until Ctrl-C.
        #[arg(long)]
        watch: bool,
        #[arg(long)]
        json: bool,
    },
    /// Write the pools as TOML.
    Export {
        /// The file (default: standard output).
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Only these pools.
        #[arg(long, value_name = "NAME")]
        only: Vec<String>,
    },
    /// Make the server's pools match a TOML file: pools in it are created or updated, pools
    /// missing from it are deleted (only those named by --only, when given). Prints the diff
    /// first; applying is refused if the pools changed since.
    Import {
        file: PathBuf,
        /// Print the diff and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Limit the import to these pools.
        #[arg(long, value_name = "NAME")]
        only: Vec<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum QueuesCommand {
    /// Create a queue
    ///
    /// Example: minicluster queues create gpu --pools a100,h100 --max-running 8 --fairness users --weights alice=2
    #[command(verbatim_doc_comment)]
    Create {
        name: String,
        /// The pools it routes to (default: every pool).
        #[arg(long, value_delimiter = ',', value_name = "POOL,…")]
        pools: Vec<String>,
        /// Jobs running at once (default 16).
        #[arg(long, value_name = "N")]
        max_running: Option<u32>,
        /// Jobs waiting at most; a full queue refuses submissions (default 10000).
        #[arg(long, value_name = "N")]
        max_depth: Option<u32>,
        /// Among queues, higher is dispatched first.
        #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
        priority: i32,
        /// none (FIFO within a priority), users or projects (weighted fair share by recent use).
        #[arg(long, default_value = "users", value_name = "POLICY")]
        fairness: String,
        /// Weights of users or projects: NAME=W,… (default 1 each).
        #[arg(long, value_delimiter = ',', value_name = "NAME=W,…")]
        weights: Vec<String>,
    },
    /// List queues with their job counts.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Stop dispatching (submissions are still taken).
    Pause { name: String },
    /// Dispatch and take submissions again.
    Resume { name: String },
    /// Take no new submissions; dispatch what waits.
    Drain { name: String },
}

#[derive(Args, Debug)]
pub struct SubmitArgs {
    /// The queue (a fresh control plane has `default`, over every pool).
    #[arg(long, default_value = "default")]
    pub queue: String,
    /// A tag the job requires: KEY:VALUE[,VALUE…] (any of these) or KEY:true (any value).
    #[arg(long, value_name = "TAG")]
    pub requires: Vec<String>,
    /// Brokers of its MiniCluster (default: the pool's).
    #[arg(long)]
    pub size: Option<u32>,
    /// Higher runs first within the queue (never preempts).
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub priority: i32,
    /// Who submits (default: $USER).
    #[arg(long)]
    pub user: Option<String>,
    /// The project it counts against (fairness by projects).
    #[arg(long, default_value = "")]
    pub project: String,
    /// Wait for the job, print its output and exit with its exit code.
    #[arg(long)]
    pub wait: bool,
    /// Print the job as JSON.
    #[arg(long)]
    pub json: bool,
    /// The command, run on the job's MiniCluster (`flux submit -N SIZE … CMD`).
    #[arg(last = true, value_name = "CMD", required = true)]
    pub command: Vec<String>,
}

#[derive(Args, Debug)]
pub struct JobsArgs {
    #[arg(long)]
    pub queue: Option<String>,
    /// waiting, claimed, done, failed or cancelled.
    #[arg(long)]
    pub state: Option<String>,
    #[arg(long)]
    pub user: Option<String>,
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct JobArgs {
    pub id: u64,
    #[arg(long)]
    pub json: bool,
}
