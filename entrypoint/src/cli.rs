//! Command line of the entrypoint.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// Start one Flux broker of a MiniCluster: find its rank, install the CURVE certificate,
/// render the broker config and R, wait for rank 0, then run Flux for the MiniCluster's mode
/// (submit, launcher, batch, interactive, restful) as a well-behaved PID 1.
///
/// Exit code: the broker's (so rank 0's is the job's), 128+N when signal N ended it, 125 when
/// the entrypoint itself could not start the broker (the message says why and how to fix it).
/// With --exit-file, the same code is also left in a file, and a second start is refused.
///
/// Examples:
///   entrypoint --dry-run                        # what would happen, nothing written
///   entrypoint --description mc/description.json --cert mc/curve.cert --root /tmp/mc0
///   entrypoint --rank 2 --shared-dir /tmp/mc --root /tmp/mc/2   # brokers sharing a machine
#[derive(Parser, Debug)]
#[command(
    name = "entrypoint",
    version,
    verbatim_doc_comment,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Sub>,
    #[command(flatten)]
    pub start: StartArgs,
}

#[derive(Subcommand, Debug)]
pub enum Sub {
    /// Rank 0's initial program in batch mode: submit each line of FILE as a job, then wait
    /// for all of them (the entrypoint runs this itself).
    Batch(BatchArgs),
    /// Copy this binary into DIR (an init container fills the pods' shared volume this way,
    /// with no shell or coreutils needed in the image).
    Install {
        /// Directory to copy the entrypoint into (created if missing).
        dir: PathBuf,
    },
    /// Exit 0 when this pod's broker runs (a worker: once it joined its parent), else 1
    /// saying why: the broker pods' readiness probe.
    Ready {
        /// The cluster description (where the broker's socket is).
        #[arg(
            long,
            env = "MC_DESCRIPTION",
            value_name = "FILE",
            default_value = "/etc/minicluster/description.json"
        )]
        description: PathBuf,
    },
}

#[derive(Args, Debug)]
pub struct StartArgs {
    /// The cluster description (`minicluster render --out` or the operator's ConfigMap).
    #[arg(
        long,
        env = "MC_DESCRIPTION",
        value_name = "FILE",
        default_value = "/etc/minicluster/description.json"
    )]
    pub description: PathBuf,
    /// The MiniCluster's CURVE certificate (Secret mount); copied to a private 0600 file.
    #[arg(
        long,
        env = "MC_CURVE_CERT",
        value_name = "FILE",
        default_value = "/etc/minicluster/curve.cert"
    )]
    pub cert: PathBuf,
    /// A directory every broker sees: without a certificate, rank 0 creates one here and the
    /// other ranks wait for it.
    #[arg(long, env = "MC_SHARED_DIR", value_name = "DIR")]
    pub shared_dir: Option<PathBuf>,
    /// This broker's rank, when neither JOB_COMPLETION_INDEX nor the hostname tells it.
    #[arg(long, env = "MC_RANK", value_name = "N")]
    pub rank: Option<u32>,
    /// This broker's hostname as Flux sees it (default: the OS hostname).
    #[arg(long, env = "MC_HOSTNAME", value_name = "NAME")]
    pub hostname: Option<String>,
    /// Move every path of the description (config, rundir, statedir) under DIR: one per broker
    /// when several share a machine.
    #[arg(long, env = "MC_ROOT", value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// The flux command (default: <view>/bin/flux, else flux on PATH).
    #[arg(long, env = "FLUX_BIN", value_name = "PATH")]
    pub flux: Option<PathBuf>,
    /// Brokers sharing this machine make R once: the first to start runs `flux R encode`
    /// and leaves R in FILE, the others copy it (R describes this machine's hardware, so
    /// only brokers on one machine may share a FILE). The process launcher passes it.
    #[arg(long, value_name = "FILE")]
    pub resource_cache: Option<PathBuf>,
    /// Brokers sharing this machine start `flux-broker` itself instead of `flux broker`: the
    /// first to start leaves the environment `flux env` gives in FILE, the others read it,
    /// and every broker runs in exactly that environment (a `flux` that cannot say leaves
    /// FILE empty, and the brokers run `flux broker`). The process launcher passes it.
    #[arg(long, value_name = "FILE")]
    pub broker_env_cache: Option<PathBuf>,
    /// Directory whose templates (broker.toml.tera) replace the built-in ones.
    #[arg(long, env = "MINICLUSTER_TEMPLATES", value_name = "DIR")]
    pub templates: Option<PathBuf>,
    /// Start a worker's broker without first checking, by a CURVE handshake, that rank 0
    /// holds this certificate. For launchers that give every broker the same certificate file
    /// (the process launcher passes it): rank 0 cannot hold another, and the broker connects
    /// as soon as rank 0 listens, as under `flux start`.
    #[arg(long)]
    pub no_cert_check: bool,
    /// How long a worker waits for rank 0 to accept connections.
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = duration)]
    pub wait_timeout: Duration,
    /// How long a worker waits for rank 0 to create the certificate in --shared-dir.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = duration)]
    pub cert_timeout: Duration,
    /// After SIGTERM/SIGINT is forwarded, how long the broker has to stop before it and its
    /// processes are killed (a second signal kills at once).
    #[arg(long, value_name = "DURATION", default_value = "20s", value_parser = duration)]
    pub kill_after: Duration,
    /// Run the work at most once and leave its exit code in FILE. Before anything is written
    /// or run (certificate, files, hooks, broker), FILE.started is created exclusively with
    /// this process's pid; if it already exists, the start is refused (exit 125) because it
    /// would run the work a second time. When the broker ends, its exit code (or 125 for a
    /// start that failed after the claim) is written to FILE, atomically, before the
    /// entrypoint exits with it. A launcher that was itself killed can read both files later:
    /// no FILE.started, nothing ran; its pid alive, running; FILE, finished with that code;
    /// neither alive nor FILE, the entrypoint was killed. Remove both files to run again.
    #[arg(long, value_name = "FILE")]
    pub exit_file: Option<PathBuf>,
    /// Print the commands, files and environment this broker would use, and exit.
    #[arg(long)]
    pub dry_run: bool,
    /// With --dry-run: print the plan as JSON.
    #[arg(long, requires = "dry_run")]
    pub json: bool,
    /// Only warnings and errors (also: the spec's logging.quiet).
    #[arg(long)]
    pub quiet: bool,
    /// Debug messages (also: logging.debug).
    #[arg(long)]
    pub debug: bool,
    /// Time stamps and step durations (also: logging.timed).
    #[arg(long)]
    pub timed: bool,
    /// A failing hook stops the start (also: logging.strict).
    #[arg(long)]
    pub strict: bool,
}

#[derive(Args, Debug)]
pub struct BatchArgs {
    /// The flux command.
    #[arg(long, default_value = "flux")]
    pub flux: PathBuf,
    /// Run the lines as given, one after another, instead of submitting them.
    #[arg(long)]
    pub raw: bool,
    /// Working directory of the jobs.
    #[arg(long)]
    pub cwd: Option<String>,
    /// One command per line; blank lines and # comments are skipped.
    pub file: PathBuf,
}

fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 30s, 10m, 1h)"))
}
