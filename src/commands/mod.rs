//! One module per subcommand.

mod render;

use crate::cli::{Cli, Command};

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Render(args) => render::run(&args),
        Command::Crd => {
            print!("{}", minicluster_core::spec::crd_yaml());
            Ok(())
        }
        Command::Operator(args) => {
            let build = minicluster_operator::build::BuildOptions {
                runner_image: args.runner_image,
                cluster_domain: args.cluster_domain,
            };
            tokio::runtime::Runtime::new()?.block_on(minicluster_operator::server::run(
                args.listen,
                build,
                args.namespace,
            ))?;
            Ok(())
        }
        Command::Manifests(args) => {
            std::fs::create_dir_all(&args.out)?;
            for (name, text) in minicluster_operator::deploy::files(&args.image) {
                let path = args.out.join(name);
                std::fs::write(&path, text)?;
                eprintln!("wrote {}", path.display());
            }
            Ok(())
        }
    }
}
