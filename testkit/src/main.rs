//! `minicluster-testkit`: the single-node Kubernetes cluster the `real_kube_` tests run on.
//!
//!   minicluster-testkit up        # needs root, $KUBE_BIN and a real flux
//!   eval "$(minicluster-testkit env)"
//!   minicluster-testkit down      # removes everything `up` made

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use minicluster_testkit::cluster::{self, Inputs, Layout};
use minicluster_testkit::{dns, require};

#[derive(Parser)]
#[command(
    name = "minicluster-testkit",
    about = "A single-node Kubernetes cluster on this machine, for the tests that need a real one",
    long_about = "A single-node Kubernetes cluster on this machine, for the tests that need a real one.\n\n\
    `up` starts etcd, kube-apiserver (Node,RBAC), kube-controller-manager, kube-scheduler and a kubelet \
    on a containerd of its own, with a bridge for pods and a DNS responder for *.svc.cluster.local, and \
    imports images built here (no registry is reachable): minicluster.test/runner:dev (our binaries) and \
    minicluster.test/flux:VERSION (Debian bookworm, the given flux-core, our binaries). State lives in \
    $MINICLUSTER_TESTKIT_DIR (default /var/lib/minicluster-testkit); `down` removes all of it, and every \
    process, mount, cgroup, network namespace, iptables chain and the bridge that `up` made."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the cluster (a running one is left as it is); needs root.
    Up {
        /// Directory with kube-apiserver, kube-controller-manager, kube-scheduler and kubelet.
        #[arg(long, env = "KUBE_BIN")]
        kube_bin: PathBuf,
        /// The flux-core whose installation goes into the Flux image (default: $FLUX_BIN or
        /// `flux` on PATH).
        #[arg(long)]
        flux: Option<PathBuf>,
        /// Where our binaries are (default: beside this program).
        #[arg(long)]
        bin_dir: Option<PathBuf>,
    },
    /// Stop the cluster and remove everything it made.
    Down,
    /// Print shell lines that point the tests at the running cluster.
    Env,
    /// Rebuild and import the images (after rebuilding our binaries).
    Images {
        #[arg(long, env = "KUBE_BIN")]
        kube_bin: PathBuf,
        #[arg(long)]
        flux: Option<PathBuf>,
        #[arg(long)]
        bin_dir: Option<PathBuf>,
    },
    /// The DNS responder (started by `up`).
    #[command(hide = true)]
    Dns {
        #[arg(long)]
        kubeconfig: PathBuf,
        #[arg(long)]
        listen: SocketAddr,
    },
    /// What a pod sandbox runs: waits until it is stopped (started by the runtime).
    #[command(hide = true)]
    Pause,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MINICLUSTER_TESTKIT_LOG")
                // Polling the API server while it starts makes the client log each refusal.
                .unwrap_or_else(|_| "info,kube_client=off".into()),
        )
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    if let Command::Pause = cli.command {
        return pause();
    }
    let rt = tokio::runtime::Runtime::new().expect("a tokio runtime");
    match rt.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("minicluster-testkit: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn say(line: &str) {
    eprintln!("minicluster-testkit: {line}");
}

fn inputs(
    kube_bin: PathBuf,
    flux: Option<PathBuf>,
    bin_dir: Option<PathBuf>,
) -> minicluster_testkit::Result<Inputs> {
    let flux = match flux.or_else(require::find_flux) {
        Some(f) => f,
        None => {
            return Err(minicluster_testkit::Error::Missing {
                what: "a real flux for the Flux image".into(),
                fix: "set FLUX_BIN to flux-core's flux, or pass --flux".into(),
            });
        }
    };
    let our_bin = match bin_dir {
        Some(d) => d,
        None => std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(PathBuf::from))
            .unwrap_or_default(),
    };
    Ok(Inputs {
        kube_bin,
        flux,
        our_bin,
    })
}

async fn run(cmd: Command) -> minicluster_testkit::Result<()> {
    let layout = Layout::from_env();
    match cmd {
        Command::Up {
            kube_bin,
            flux,
            bin_dir,
        } => {
            let started = std::time::Instant::now();
            cluster::up(&layout, &inputs(kube_bin, flux, bin_dir)?, &say).await?;
            say(&format!("took {:.1} s", started.elapsed().as_secs_f64()));
            Ok(())
        }
        Command::Down => cluster::teardown::down(&layout, &say).await,
        Command::Env => {
            print!("{}", cluster::env_lines(&layout)?);
            Ok(())
        }
        Command::Images {
            kube_bin,
            flux,
            bin_dir,
        } => {
            cluster::images::build_and_import(&layout, &inputs(kube_bin, flux, bin_dir)?, &say)
                .await
        }
        Command::Dns { kubeconfig, listen } => {
            let text = std::fs::read_to_string(&kubeconfig)
                .map_err(minicluster_testkit::error::io("reading the kubeconfig"))?;
            let kc: kube::config::Kubeconfig = serde_norway::from_str(&text)
                .map_err(|e| minicluster_testkit::Error::Kubeconfig(e.to_string()))?;
            let cfg = kube::Config::from_custom_kubeconfig(
                kc,
                &kube::config::KubeConfigOptions::default(),
            )
            .await
            .map_err(|e| minicluster_testkit::Error::Kubeconfig(e.to_string()))?;
            dns::serve(kube::Client::try_from(cfg)?, listen, cluster::DOMAIN).await
        }
        Command::Pause => unreachable!("handled before the runtime starts"),
    }
}

/// A pod sandbox's process: sleeps until SIGTERM or SIGINT, reaping the processes it adopts
/// (it is PID 1 of pods that share their process namespace).
fn pause() -> ExitCode {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        if signal_hook::flag::register(sig, stop.clone()).is_err() {
            return ExitCode::FAILURE;
        }
    }
    while !stop.load(Ordering::SeqCst) {
        while let Ok(status) = nix::sys::wait::waitpid(
            nix::unistd::Pid::from_raw(-1),
            Some(nix::sys::wait::WaitPidFlag::WNOHANG),
        ) {
            if status == nix::sys::wait::WaitStatus::StillAlive {
                break;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    ExitCode::SUCCESS
}
