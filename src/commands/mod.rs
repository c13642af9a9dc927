//! One module per subcommand.

mod control;
mod kube;
mod launch;
mod render;
mod stop;

use crate::cli::{Cli, Command};

/// Runs a subcommand; its exit code (the command's, for `run`).
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    let server = cli.server.clone();
    match cli.command {
        Command::Run { launch, command } => launch::run(&launch, command),
        Command::Up { launch, json, rest } => launch::up(&launch, json, rest),
        Command::Down(a) => launch::down(&a),
        Command::Status(a) => launch::status(&a),
        Command::Logs(a) => launch::logs(&a, &server),
        Command::Serve(a) => control::serve(&a),
        Command::Pools(c) => control::pools(&server, &c),
        Command::Queues(c) => control::queues(&server, &c),
        Command::Submit(a) => control::submit(&server, &a),
        Command::Jobs(a) => control::jobs(&server, &a),
        Command::Job(a) => control::job(&server, &a),
        Command::Cancel(a) => control::cancel(&server, &a),
        other => run_other(other).map(|()| 0),
    }
}

fn run_other(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Render(args) => render::run(&args),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut cmd = crate::cli::Cli::command();
            clap_complete::generate(shell, &mut cmd, "minicluster", &mut std::io::stdout());
            Ok(())
        }
        Command::Crd => {
            print!("{}", minicluster_core::spec::crd_yaml());
            Ok(())
        }
        Command::Operator(args) => {
            let build = args.runner.build_options(&args.cluster_domain);
            tokio::runtime::Runtime::new()?.block_on(minicluster_operator::server::run(
                args.listen,
                build,
                args.namespace,
            ))?;
            Ok(())
        }
        Command::Manifests(args) => {
            std::fs::create_dir_all(&args.out)?;
            let opts = minicluster_operator::deploy::DeployOptions {
                image: args.image.clone(),
                pull_policy: args.pull_policy.clone(),
                namespace: args.namespace.clone(),
            };
            for (name, text) in minicluster_operator::deploy::files(&opts) {
                let path = args.out.join(name);
                std::fs::write(&path, text)?;
                eprintln!("wrote {}", path.display());
            }
            Ok(())
        }
        _ => unreachable!("handled in run"),
    }
}
