//! `minicluster-rest`: the REST server of a persistent MiniCluster (rank 0's initial program
//! in `restful` mode), or of any Flux instance reachable at `$FLUX_URI`.

use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use minicluster_rest::config::{BackendChoice, Cli, Command};
use minicluster_rest::limits::RateLimiter;
use minicluster_rest::{AppState, FluxBackend, FluxClientBackend, StandIn};

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MINICLUSTER_REST_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match cli.command {
        Some(Command::HashPassword) => hash_password(),
        Some(Command::Openapi) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&minicluster_rest::openapi::document())
                    .unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        None => {
            let rt = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => return fail(&format!("cannot start the async runtime: {e}")),
            };
            let result = rt.block_on(run(cli.serve));
            // Do not wait for tasks that outlive the server (a stuck Flux call).
            rt.shutdown_timeout(Duration::from_secs(1));
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(&e.to_string()),
            }
        }
    }
}

/// Stop when the broker goes away: without it there is nothing to serve (and in a MiniCluster
/// the instance is over).
async fn watch_broker(client: flux_client::Client, state: AppState) {
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        match client.attr_get("size").await {
            Ok(_)
            | Err(flux_client::Error::Remote { .. })
            | Err(flux_client::Error::Timeout { .. }) => {}
            Err(e) => {
                tracing::warn!(error = %e, "lost the Flux broker: shutting down");
                state.request_shutdown();
                return;
            }
        }
    }
}

fn fail(msg: &str) -> ExitCode {
    eprintln!("minicluster-rest: error: {msg}");
    ExitCode::FAILURE
}

fn hash_password() -> ExitCode {
    let mut line = String::new();
    if std::io::stdin().lock().read_line(&mut line).is_err() || line.trim_end().is_empty() {
        return fail("give the password on stdin (one line)");
    }
    match minicluster_rest::auth::hash_password(line.trim_end_matches(['\n', '\r'])) {
        Ok(h) => {
            println!("{h}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e.to_string()),
    }
}

async fn run(args: minicluster_rest::config::ServeArgs) -> minicluster_rest::Result<()> {
    let auth = args.auth()?;
    let mut flux_client = None;
    let backend: Arc<dyn FluxBackend> = match args.backend {
        BackendChoice::Flux => {
            let b = FluxClientBackend::connect_env().await?;
            flux_client = Some(b.client().clone());
            Arc::new(b)
        }
        BackendChoice::StandIn => {
            tracing::warn!("serving the in-memory Flux stand-in: for tests only");
            Arc::new(StandIn::new(args.stand_in_nodes.max(1)))
        }
    };
    let limiter = if args.submit_rate > 0.0 {
        RateLimiter::new(args.submit_rate, args.submit_burst)
    } else {
        RateLimiter::unlimited()
    };
    let state = AppState::new(backend, auth, limiter, args.server_config()?);
    let addr = SocketAddr::new(args.host, args.port);
    let listener =
        tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| minicluster_rest::RestError::Io {
                context: format!("cannot listen on {addr} (choose another --port or --host)"),
                source: e,
            })?;
    let local = listener
        .local_addr()
        .map_err(|e| minicluster_rest::RestError::Io {
            context: "listener address".into(),
            source: e,
        })?;
    tracing::info!(
        %local,
        auth = state.auth.kind.name(),
        backend = state.backend.name(),
        "serving"
    );
    // Tests and scripts read the address (and our pid) from this one line.
    println!(
        "minicluster-rest: listening on http://{local} (pid {})",
        std::process::id()
    );
    let _ = std::io::stdout().flush();
    if let Some(client) = flux_client {
        tokio::spawn(watch_broker(client, state.clone()));
    }
    minicluster_rest::serve(listener, state, Duration::from_secs(args.grace_seconds)).await?;
    tracing::info!("stopped");
    Ok(())
}
