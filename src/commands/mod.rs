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
    }
}
