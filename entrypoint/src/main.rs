use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use minicluster_core::{ClusterDescription, Templates};
use minicluster_entrypoint::cli::{Cli, StartArgs, Sub};
use minicluster_entrypoint::plan::{self, Settings};
use minicluster_entrypoint::signals::Stop;
use minicluster_entrypoint::supervise::StopPolicy;
use minicluster_entrypoint::{Error, batch, exit_file, facts, run, termination};

fn main() -> ExitCode {
    let started = Instant::now();
    let cli = Cli::parse();
    let result = match &cli.command {
        Some(Sub::Batch(a)) => batch::run(&a.flux, &a.file, a.raw, a.cwd.as_deref()),
        Some(Sub::Install { dir }) => install(dir),
        Some(Sub::Ready { description }) => ready(description),
        None => start(&cli.start, started),
    };
    if let Err(e) = &result {
        eprintln!("entrypoint: error: {e}");
        termination::report(
            Path::new(termination::KUBERNETES_MESSAGE),
            &format!("entrypoint: error: {e}"),
        );
    }
    // The exit file (run::execute) keeps the command's exact code; the container's may say
    // more (termination::container_code).
    ExitCode::from(exit_file::exit_code(&result))
}

fn start(args: &StartArgs, started: Instant) -> Result<i32, Error> {
    // Signals are recorded from the first moment, so a stop during a wait is honoured.
    let stop = Stop::install().map_err(|e| Error::Program {
        what: "installing signal handlers".into(),
        reason: e.to_string(),
    })?;
    let d = read_description(&args.description)?;
    let logging = d.logging;
    init_logging(
        args.quiet || logging.quiet,
        args.debug || logging.debug,
        args.timed || logging.timed,
    );
    let templates = match &args.templates {
        Some(dir) => Templates::with_overrides(dir)?,
        None => Templates::embedded(),
    };
    let facts = facts::gather(&d, args, args.dry_run)?;
    let settings = Settings {
        root: args.root.clone(),
        wait_timeout: args.wait_timeout,
        exit_file: args.exit_file.clone(),
        no_cert_check: args.no_cert_check,
        broker_env_cache: args.broker_env_cache.clone(),
    };
    let plan = plan::build(&d, &templates, &settings, &facts)?;
    if args.dry_run {
        if args.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&plan).expect("a plan always serialises")
            );
        } else {
            print!("{plan}");
        }
        return Ok(0);
    }
    let span = tracing::info_span!("broker", rank = plan.identity.rank);
    let _enter = span.enter();
    tracing::info!(
        "MiniCluster {} rank {} ({}), {} mode",
        plan.name,
        plan.identity.rank,
        plan.identity.hostname,
        plan.mode
    );
    let policy = StopPolicy {
        kill_after: args.kill_after,
    };
    let code = run::execute(
        &d,
        &plan,
        args.strict || logging.strict,
        &stop,
        started,
        policy,
        args.resource_cache.as_deref(),
    )?;
    let out = termination::container_code(plan.identity.rank, stop.requested(), code);
    if out != code {
        tracing::info!("exit code {code} reported as {out}");
    }
    if let Some(message) = termination::message(plan.identity.rank, stop.requested(), code, out) {
        termination::report(Path::new(termination::KUBERNETES_MESSAGE), &message);
    }
    Ok(out)
}

/// Copies this binary to `dir/entrypoint`, atomically and executable.
fn install(dir: &std::path::Path) -> Result<i32, Error> {
    let me = std::env::current_exe().map_err(|e| Error::Program {
        what: "finding this binary".into(),
        reason: e.to_string(),
    })?;
    std::fs::create_dir_all(dir).map_err(Error::io(
        "create directory",
        dir,
        "mount a writable volume there",
    ))?;
    let bytes = std::fs::read(&me).map_err(Error::io(
        "read",
        &me,
        "run the entrypoint from a readable file",
    ))?;
    let dest = dir.join("entrypoint");
    minicluster_entrypoint::files::write_atomic(&dest, &bytes, 0o755)?;
    eprintln!("entrypoint: installed {}", dest.display());
    Ok(0)
}

/// The readiness probe: exit 0 when the broker runs, else 1 with the reason.
fn ready(description: &std::path::Path) -> Result<i32, Error> {
    let d = read_description(description)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Program {
            what: "the readiness check".into(),
            reason: e.to_string(),
        })?;
    match rt.block_on(minicluster_entrypoint::ready::check(
        &d,
        std::time::Duration::from_secs(2),
    )) {
        Ok(state) => {
            println!("ready: the broker is in state {state}");
            Ok(0)
        }
        Err(why) => {
            println!("not ready: {why}");
            Ok(1)
        }
    }
}

fn read_description(path: &std::path::Path) -> Result<ClusterDescription, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::Description {
        path: path.into(),
        reason: e.to_string(),
    })?;
    ClusterDescription::from_json(&text).map_err(|e| Error::Description {
        path: path.into(),
        reason: match e {
            minicluster_core::Error::Input { reason, .. } => reason,
            other => other.to_string(),
        },
    })
}

fn init_logging(quiet: bool, debug: bool, timed: bool) {
    let level = if debug {
        "debug"
    } else if quiet {
        "warn"
    } else {
        "info"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("ENTRYPOINT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if timed {
        fmt.with_timer(tracing_subscriber::fmt::time::uptime())
            .init();
    } else {
        fmt.without_time().init();
    }
}
