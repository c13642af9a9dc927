//! `run`, `up`, `down`, `ls`/`status` and `logs`: MiniClusters as local processes.

use std::io::{BufRead, Seek, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use minicluster_launcher::docker::DockerLauncher;
use minicluster_launcher::process::{ProcessLauncher, alive_ranks};
use minicluster_launcher::request::Request;
use minicluster_launcher::state::{self, Record};

use super::stop::StopSignals;
use crate::cli::{DownArgs, LaunchArgs, LogsArgs, StatusArgs, Transport};

fn launcher(args: &LaunchArgs) -> anyhow::Result<ProcessLauncher> {
    Ok(ProcessLauncher {
        root: state::root(),
        entrypoint: find_entrypoint(args.entrypoint.clone())?,
        flux: args.flux.clone(),
        port: args.port,
        grace: Duration::from_secs(10),
        launched: Default::default(),
        mode: None,
    })
}

/// `--entrypoint`, else the one installed beside this binary, else on PATH.
pub(crate) fn find_entrypoint(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(p) = given {
        return Ok(p);
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("entrypoint")))
        .filter(|p| p.is_file());
    if let Some(p) = beside {
        return Ok(p);
    }
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join("entrypoint"))
        .find(|p| p.is_file())
        .context("no entrypoint binary beside minicluster or on PATH (fix: cargo build -p minicluster-entrypoint, or pass --entrypoint PATH)")
}

pub(super) fn request(args: &LaunchArgs, command: Vec<String>, persistent: bool) -> Request {
    Request {
        file: args.file.clone(),
        name: args.name.clone(),
        size: args.size,
        image: args.image.clone(),
        command,
        persistent,
    }
}

pub(super) fn say(quiet: bool) -> impl Fn(&str) {
    move |msg: &str| {
        if !quiet {
            eprintln!("minicluster: {msg}");
        }
    }
}

pub(super) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

async fn docker(args: &LaunchArgs) -> anyhow::Result<DockerLauncher> {
    Ok(DockerLauncher::connect(
        state::root(),
        find_entrypoint(args.entrypoint.clone())?,
        // --flux/FLUX_BIN name a flux on this machine; containers use their image's (its
        // PATH, or the spec's environment).
        None,
    )
    .await?)
}

/// The Docker transport of `run`: containers, rank 0's output, its exit code, nothing left.
fn run_docker(args: &LaunchArgs, command: Vec<String>) -> anyhow::Result<i32> {
    if args.image.is_none() && args.file.is_none() {
        bail!(
            "--image is required with --launcher docker (fix: --image IMAGE, an image with flux)"
        );
    }
    let mc = request(args, command, false).minicluster()?;
    let name = mc.metadata.name.clone().unwrap_or_default();
    let image = mc.spec.containers[mc.spec.flux_container_index().unwrap_or(0)]
        .image
        .clone();
    let progress = say(args.quiet);
    runtime()?.block_on(async {
        let mut stop = StopSignals::install()?;
        let l = docker(args).await?;
        progress(&format!(
            "launching {name}: {} containers of {image}",
            mc.spec.size
        ));
        let launched = tokio::select! {
            r = l.launch(&mc) => Ok(r),
            s = stop.recv() => Err(s),
        };
        match launched {
            Ok(r) => {
                r?;
            }
            Err((signal, code)) => {
                progress(&format!("{signal}: removing what was launched"));
                l.down(&name).await?;
                return Ok(code);
            }
        }
        progress(&format!("{0}/{0} brokers started", mc.spec.size));
        let code = tokio::select! {
            code = l.follow_rank0(&name) => code,
            (signal, code) = stop.recv() => {
                progress(&format!("{signal}: stopping, SIGTERM to rank 0"));
                l.stop(&name).await;
                l.wait_all_stopped(&name, Duration::from_secs(10)).await;
                Ok(code)
            }
        };
        l.wait_all_stopped(&name, Duration::from_secs(10)).await;
        l.down(&name).await?;
        Ok(code?)
    })
}

/// Ephemeral: launch, stream rank 0's output, exit with the command's code, leave nothing.
pub fn run(args: &LaunchArgs, command: Vec<String>) -> anyhow::Result<i32> {
    match args.launcher {
        Transport::Docker => return run_docker(args, command),
        Transport::Kubernetes => return super::kube::run(args, command),
        Transport::Process => {}
    }
    let l = launcher(args)?;
    let mc = request(args, command, false).minicluster()?;
    let name = mc.metadata.name.clone().unwrap_or_default();
    let progress = say(args.quiet);
    progress(&format!(
        "launching {name}: {} brokers as local processes",
        mc.spec.size
    ));
    let running = l.launch(&mc, false, true)?;
    // While rank 0 runs, count the brokers that join and (-v) trace its states, when it
    // speaks Flux's protocol.
    let trace = tracing::enabled!(tracing::Level::INFO);
    if let (Some(uri), true) = (running.record.flux_uri.clone(), !args.quiet || trace) {
        let (size, quiet, since) = (running.record.size, args.quiet, running.started);
        std::thread::spawn(move || {
            let socket = PathBuf::from(uri.trim_start_matches("local://"));
            let until = std::time::Instant::now() + Duration::from_secs(60);
            while !socket.exists() && std::time::Instant::now() < until {
                std::thread::sleep(Duration::from_millis(20));
            }
            follow_rank0(&uri, size, since, trace, &say(quiet));
        });
    }
    Ok(running.wait(progress)?)
}

/// Persistent: launch, wait until rank 0 is up, print how to reach it, leave it running.
pub fn up(args: &LaunchArgs, json: bool, rest: Option<u16>) -> anyhow::Result<i32> {
    if rest.is_some() && args.launcher != Transport::Process {
        bail!(
            "--rest is available with the process launcher (fix: drop --rest, or use --launcher process)"
        );
    }
    if args.launcher == Transport::Docker {
        if args.image.is_none() && args.file.is_none() {
            bail!(
                "--image is required with --launcher docker (fix: --image IMAGE, an image with flux)"
            );
        }
        let mc = request(args, Vec::new(), true).minicluster()?;
        let record = runtime()?.block_on(async {
            let l = docker(args).await?;
            anyhow::Ok(l.launch(&mc).await?)
        })?;
        if json {
            println!("{}", serde_json::to_string_pretty(&record)?);
        } else {
            println!(
                "MiniCluster {} is up: {} containers",
                record.name, record.size
            );
            // FLUX_URI is set in every container: flux commands reach the instance.
            println!(
                "  docker exec {}-0 flux run -N{} hostname",
                record.name, record.size
            );
            println!("  minicluster down {}", record.name);
        }
        return Ok(0);
    }
    if args.launcher == Transport::Kubernetes {
        return super::kube::up(args, json);
    }
    let mut l = launcher(args)?;
    let mut mc = request(args, Vec::new(), true).minicluster()?;
    let rest_port = match rest {
        None => None,
        Some(p) => {
            // Rank 0's initial program is the REST server, on loopback (no auth needed there).
            let port = if p == 0 { free_port()? } else { p };
            l.mode = Some(minicluster_core::Mode::Restful);
            let idx = mc.spec.flux_container_index().unwrap_or(0);
            mc.spec.containers[idx].command =
                Some(format!("minicluster-rest --host 127.0.0.1 --port {port}"));
            Some(port)
        }
    };
    let mut running = l.launch(&mc, true, false)?;
    let progress = say(args.quiet || json);
    progress(&format!("starting {} brokers…", mc.spec.size));
    if let Err(e) = running.wait_ready(Duration::from_secs(120)) {
        running.teardown();
        return Err(e.into());
    }
    if let Some(port) = rest_port
        && let Err(e) = wait_port(port, Duration::from_secs(60))
    {
        running.teardown();
        bail!(
            "the REST server of rank 0 did not come up on 127.0.0.1:{port}: {e} (fix: see `minicluster logs {}`)",
            mc.metadata.name.clone().unwrap_or_default()
        );
    }
    let record = running.detach();
    if let Some(uri) = &record.flux_uri {
        report_joined(uri, record.size, &progress);
    }
    if let (Some(port), false) = (rest_port, json) {
        println!(
            "REST API (flux-restful-api): http://127.0.0.1:{port}/v1  (docs: /docs, web: /jobs)"
        );
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&record)?);
    } else {
        let uri = record.flux_uri.clone().unwrap_or_default();
        println!("MiniCluster {} is up: {} brokers", record.name, record.size);
        println!("  export FLUX_URI={uri}");
        println!("  flux proxy {uri}        # a shell in the instance");
        println!("  minicluster logs {} --rank 0", record.name);
        println!("  minicluster down {}", record.name);
    }
    Ok(0)
}

pub fn down(args: &DownArgs) -> anyhow::Result<i32> {
    if let Ok(r) = Record::load(&state::root(), &args.name)
        && r.launcher == "kubernetes"
    {
        return super::kube::down(&r);
    }
    let launched_by = Record::load(&state::root(), &args.name).map(|r| r.launcher);
    // Docker launches are found by label even when the record is gone.
    if launched_by
        .as_deref()
        .map_or(args.docker, |l| l == "docker")
    {
        let removed = runtime()?.block_on(async {
            let l = records_docker().await?;
            anyhow::Ok(l.down(&args.name).await?)
        })?;
        if removed == 0 && launched_by.is_err() {
            bail!(
                "no MiniCluster named {} (fix: `minicluster ls` lists them)",
                args.name
            );
        }
        eprintln!(
            "minicluster: {} is down ({removed} containers removed)",
            args.name
        );
        return Ok(0);
    }
    let l = ProcessLauncher {
        root: state::root(),
        entrypoint: PathBuf::new(),
        flux: None,
        port: None,
        grace: Duration::from_secs(10),
        launched: Default::default(),
        mode: None,
    };
    let stopped = l.down(&args.name)?;
    eprintln!(
        "minicluster: {} is down ({stopped} brokers were running)",
        args.name
    );
    Ok(0)
}

pub fn status(args: &StatusArgs) -> anyhow::Result<i32> {
    let root = state::root();
    let records: Vec<Record> = match &args.name {
        Some(n) => vec![Record::load(&root, n)?],
        None => Record::list(&root),
    };
    let rows: Vec<serde_json::Value> = records
        .iter()
        .map(|r| {
            let ranks = alive_ranks(r, &root);
            let up = if r.launcher == "docker" {
                docker_running(&r.name)
            } else if r.launcher == "kubernetes" {
                super::kube::running(r)
            } else {
                ranks.iter().filter(|x| x.running).count()
            };
            serde_json::json!({"name": r.name, "launcher": r.launcher, "size": r.size,
                "running": up, "persistent": r.persistent, "flux_uri": r.flux_uri, "ranks": ranks})
        })
        .collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(0);
    }
    if rows.is_empty() {
        eprintln!("minicluster: no MiniClusters (minicluster up starts one)");
        return Ok(0);
    }
    println!(
        "{:<24} {:<10} {:>7}  FLUX_URI",
        "NAME", "LAUNCHER", "RUNNING"
    );
    for r in rows {
        println!(
            "{:<24} {:<10} {:>7}  {}",
            r["name"].as_str().unwrap_or_default(),
            r["launcher"].as_str().unwrap_or_default(),
            format!("{}/{}", r["running"], r["size"]),
            r["flux_uri"].as_str().unwrap_or("-")
        );
    }
    Ok(0)
}

/// A free loopback port.
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Waits until 127.0.0.1:`port` accepts connections.
fn wait_port(port: u16, timeout: Duration) -> std::io::Result<()> {
    let until = std::time::Instant::now() + timeout;
    loop {
        match std::net::TcpStream::connect(("127.0.0.1", port)) {
            Ok(_) => return Ok(()),
            Err(e) if std::time::Instant::now() > until => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// Asks rank 0 (over Flux's own protocol) how many brokers are online, reporting as the
/// count grows, until all have joined (at most a minute). Counting starts once rank 0's
/// instance runs (its resource service is loaded by then); a rank 0 that cannot answer
/// (the test stand-in) is left alone at once.
fn report_joined(uri: &str, size: u32, progress: &impl Fn(&str)) {
    let Ok(rt) = runtime() else { return };
    rt.block_on(async {
        if let Some(flux) = rank0_client(uri).await {
            count_joined(&flux, size, None, progress).await;
        }
    });
}

/// `run`'s watch on rank 0: the joined brokers as in [`report_joined`], and with `trace`
/// (-v) every state rank 0's broker enters (rc1, run = the command started, cleanup = it
/// ended, shutdown, rc3, …), as `t_ms` since the launch began.
fn follow_rank0(
    uri: &str,
    size: u32,
    since: std::time::Instant,
    trace: bool,
    progress: &impl Fn(&str),
) {
    let Ok(rt) = runtime() else { return };
    rt.block_on(async {
        let t_ms = || since.elapsed().as_millis() as u64;
        // The socket's file appears a moment before the broker accepts on it.
        let until = tokio::time::Instant::now() + Duration::from_secs(2);
        let flux = loop {
            match rank0_client(uri).await {
                Some(f) => break f,
                None if tokio::time::Instant::now() < until => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                None => return,
            }
        };
        tracing::info!(t_ms = t_ms(), "rank 0: answering on {uri}");
        let states = async {
            if trace && let Err(e) = trace_states(&flux, &t_ms).await {
                tracing::debug!("not tracing rank 0's states: {e}");
            }
        };
        tokio::join!(states, count_joined(&flux, size, Some(&t_ms), progress));
    });
}

async fn rank0_client(uri: &str) -> Option<flux_client::Client> {
    let opts = flux_client::ClientOptions {
        connect_timeout: Duration::from_secs(2),
        timeout: Duration::from_secs(5),
        ..Default::default()
    };
    flux_client::Client::connect_with(uri, opts)
        .await
        .inspect_err(|e| tracing::debug!("not counting joined brokers: {e}"))
        .ok()
}

/// Logs each state rank 0's broker enters, until it goes away. `state-machine.monitor`
/// streams them as numbers; their names come from `state-machine.get`, which answers once
/// the broker's services are up (a few ms after its socket appears).
async fn trace_states(
    flux: &flux_client::Client,
    t_ms: &impl Fn() -> u64,
) -> flux_client::Result<()> {
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    while let Err(e) = flux.broker_state().await {
        if tokio::time::Instant::now() > until {
            return Err(e);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut states = flux.rpc_stream(
        flux_client::Request::new("state-machine.monitor").json(&serde_json::json!({}))?,
    )?;
    let mut last = String::new();
    while let Some(update) = states.next().await {
        update?;
        let name = flux.broker_state().await?.state;
        if name != last {
            let meaning = match name.as_str() {
                "init" => " (rc1)",
                "run" => " (the command started)",
                "cleanup" => " (the command ended)",
                "finalize" => " (rc3)",
                _ => "",
            };
            tracing::info!(t_ms = t_ms(), "rank 0: {name}{meaning}");
            if name == "finalize" {
                // What follows takes milliseconds and ends with the broker's exit, which
                // the launcher reports.
                return Ok(());
            }
            last = name;
        }
    }
    Ok(())
}

/// Reports the online brokers as their count grows, once rank 0's instance runs.
async fn count_joined(
    flux: &flux_client::Client,
    size: u32,
    t_ms: Option<&dyn Fn() -> u64>,
    progress: &impl Fn(&str),
) {
    if let Err(e) = flux.wait_until_running(Duration::from_secs(60)).await {
        tracing::debug!("not counting joined brokers: {e}");
        return;
    }
    let until = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut last = usize::MAX;
    while tokio::time::Instant::now() < until {
        let online = match flux.resource_status().await.and_then(|s| s.online_ranks()) {
            Ok(o) => o,
            Err(e) => {
                tracing::debug!("not counting joined brokers: {e}");
                return;
            }
        };
        if online.len() != last {
            last = online.len();
            progress(&format!("{last}/{size} brokers joined"));
        }
        if last >= size as usize {
            if let Some(t_ms) = t_ms {
                tracing::info!(t_ms = t_ms(), "{size}/{size} brokers joined");
            }
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A Docker client for launches already made (down, status, logs): no entrypoint to copy.
async fn records_docker() -> minicluster_launcher::Result<DockerLauncher> {
    DockerLauncher::connect(state::root(), PathBuf::new(), None).await
}

/// Running containers of a Docker launch (0 when Docker cannot be reached).
fn docker_running(name: &str) -> usize {
    runtime()
        .ok()
        .and_then(|rt| {
            rt.block_on(async {
                let l = records_docker().await.ok()?;
                l.running(name).await.ok()
            })
        })
        .unwrap_or(0)
}

pub fn logs(args: &LogsArgs, server: &str) -> anyhow::Result<i32> {
    let Some(name) = &args.name else {
        return super::control::job_logs(server, args.job.unwrap_or(0), args.follow);
    };
    let root = state::root();
    let record = Record::load(&root, name)?;
    if args.rank >= record.size {
        bail!(
            "rank {} is not in {} (ranks 0-{})",
            args.rank,
            record.name,
            record.size - 1
        );
    }
    if record.launcher == "docker" {
        runtime()?.block_on(async {
            let l = records_docker().await?;
            l.logs(&record.name, args.rank, args.follow).await
        })?;
        return Ok(0);
    }
    if record.launcher == "kubernetes" {
        return super::kube::logs(&record, args.rank, args.follow);
    }
    let path = state::dir(&root, &record.name).join(format!("rank-{}.log", args.rank));
    let mut f =
        std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
    let mut out = std::io::stdout().lock();
    std::io::copy(&mut f, &mut out)?;
    if !args.follow {
        return Ok(0);
    }
    let mut pos = f.stream_position()?;
    loop {
        if !path.exists() {
            return Ok(0); // torn down
        }
        let mut r = std::io::BufReader::new(&f);
        let mut line = String::new();
        while r.read_line(&mut line)? > 0 {
            out.write_all(line.as_bytes())?;
            pos += line.len() as u64;
            line.clear();
        }
        out.flush()?;
        f.seek(std::io::SeekFrom::Start(pos))?;
        std::thread::sleep(Duration::from_millis(200));
    }
}
