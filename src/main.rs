//! `minicluster`: bring up Flux MiniClusters and run work on them.

mod cli;
mod commands;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    if !matches!(
        cli.command,
        cli::Command::Run { .. } | cli::Command::Serve(_) | cli::Command::Operator(_)
    ) {
        // A command that prints ends quietly when its reader goes away (`| head`), as
        // command-line tools do. `run` keeps going to clean up, and the servers write to
        // sockets only.
        // SAFETY: no other thread exists yet; restoring a default disposition.
        let _ = unsafe {
            nix::sys::signal::signal(
                nix::sys::signal::SIGPIPE,
                nix::sys::signal::SigHandler::SigDfl,
            )
        };
    }
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MINICLUSTER_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(cli.log_filter())),
        )
        // Colour only for a terminal: logs redirected to a file or collected from a pod
        // stay plain text.
        .with_ansi(std::io::stderr().is_terminal())
        .without_time()
        .with_target(false)
        .init();
    match commands::run(cli) {
        Ok(code) => ExitCode::from(u8::try_from(code.clamp(0, 255)).unwrap_or(1)),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
