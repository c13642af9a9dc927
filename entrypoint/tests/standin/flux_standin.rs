//! A stand-in for `flux`, for tests on machines without Flux. It is not Flux: it checks what a
//! Flux broker checks of the files the entrypoint writes, and fails the way Flux fails when
//! they are wrong, then plays a tiny instance so the brokers' join and exit can be tested:
//!
//! - `broker`: reads `--config-path` (`[bootstrap]` keys checked strictly, as flux-core does;
//!   `hosts` entries with `host`/`bind`/`connect`/`parent`), finds its hostname (`-Shostname`
//!   or the OS's) in the hosts, refuses a certificate readable by group or other, a malformed
//!   one or a mismatched key pair, checks rundir/statedir ownership and modes and that R is
//!   there. Rank 0 listens on its bind address; the others connect to rank 0's connect URI
//!   and present the certificate's public key, which rank 0 compares with its own (CURVE
//!   would refuse a stranger). On the same port rank 0 answers a ZMTP greeting and CURVE
//!   HELLO as a libzmq CURVE server holding its certificate would (WELCOME, or a close). Once the quorum has joined, rank 0 runs the initial program;
//!   when it exits, every broker exits and rank 0 returns its code. SIGTERM ends rank 0 and
//!   with it the others.
//! - `R encode --hosts=H`: a resource set with two cores per host.
//! - On rank 0's local socket, the few job services of the local connector that warm pools
//!   use (`flux_server.rs`).
//! - `submit`/`run`: runs the command once per task, here; `job wait --all`: the worst code of
//!   the `--flags=waitable` submissions; `job attach ID`: that submission's code; `pause N`:
//!   sleeps (for images with nothing else).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use minicluster_core::{CurveCert, Hostlist};
use minicluster_entrypoint::curve_handshake::{self, Answer};

mod flux_server;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("broker") => broker(&args[1..]),
        Some("R") if args.get(1).map(String::as_str) == Some("encode") => r_encode(&args[2..]),
        Some("submit") | Some("run") => submit(&args[0], &args[1..]),
        Some("job") if args.get(1).map(String::as_str) == Some("wait") => job_wait(),
        Some("job") if args.get(1).map(String::as_str) == Some("attach") => {
            job_attach(args.get(2).map_or("", String::as_str))
        }
        // Not a Flux command: a sleep for images that have nothing but the stand-in.
        Some("pause") => {
            let secs = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1);
            std::thread::sleep(Duration::from_secs(secs));
            Ok(0)
        }
        Some("--version") => {
            println!("flux-standin (a test stand-in, not Flux)");
            Ok(0)
        }
        _ => Err(format!("unsupported command: {}", args.join(" "))),
    };
    match result {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            eprintln!("flux-standin: {e}");
            ExitCode::from(1)
        }
    }
}

struct Host {
    name: String,
    bind: String,
    connect: String,
}

fn broker(args: &[String]) -> Result<i32, String> {
    let mut config_path = None;
    let mut attrs = BTreeMap::new();
    let mut i = 0;
    while i < args.len() && args[i].starts_with('-') {
        let a = &args[i];
        if let Some(p) = a.strip_prefix("--config-path=") {
            config_path = Some(PathBuf::from(p));
        } else if let Some(kv) = a.strip_prefix("-S") {
            let (k, v) = kv.split_once('=').unwrap_or((kv, "1"));
            attrs.insert(k.to_string(), v.to_string());
        } else {
            return Err(format!("broker: unknown option {a}"));
        }
        i += 1;
    }
    let program = &args[i..];
    let dir = config_path.ok_or("broker: no --config-path")?;
    let config = load_config(&dir)?;
    let boot = config
        .get("bootstrap")
        .and_then(|b| b.as_table())
        .ok_or("Config file error [bootstrap]: missing")?;
    for k in boot.keys() {
        if ![
            "hosts",
            "curve_cert",
            "default_port",
            "default_bind",
            "default_connect",
            "enable_ipv6",
        ]
        .contains(&k.as_str())
        {
            return Err(format!("Config file error [bootstrap]: unknown key {k:?}"));
        }
    }
    let port = boot
        .get("default_port")
        .and_then(|p| p.as_integer())
        .unwrap_or(0);
    let dflt = |k: &str| {
        boot.get(k)
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string()
    };
    let (default_bind, default_connect) = (dflt("default_bind"), dflt("default_connect"));
    let mut hosts = Vec::new();
    for entry in boot
        .get("hosts")
        .and_then(|h| h.as_array())
        .ok_or("Config file error [bootstrap]: no hosts")?
    {
        let t = entry.as_table().ok_or("hosts entry is not a table")?;
        for k in t.keys() {
            if !["host", "bind", "connect", "parent"].contains(&k.as_str()) {
                return Err(format!(
                    "Config file error [bootstrap]: hosts: unknown key {k:?}"
                ));
            }
        }
        let list = t
            .get("host")
            .and_then(|h| h.as_str())
            .ok_or("hosts entry without host")?;
        let list = Hostlist::parse(list).map_err(|e| e.to_string())?;
        for name in list.hosts() {
            let fill = |pattern: &str| pattern.replace("%h", name).replace("%p", &port.to_string());
            let get = |k: &str, d: &str| t.get(k).and_then(|v| v.as_str()).map_or(fill(d), fill);
            hosts.push(Host {
                name: name.clone(),
                bind: get("bind", &default_bind),
                connect: get("connect", &default_connect),
            });
        }
    }
    let hostname = match attrs.get("hostname") {
        Some(h) => h.clone(),
        None => nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    let rank = hosts
        .iter()
        .position(|h| h.name == hostname)
        .ok_or_else(|| format!("overlay: hostname {hostname:?} not found in bootstrap.hosts"))?;
    let cert_path = boot
        .get("curve_cert")
        .and_then(|c| c.as_str())
        .ok_or("Config file error [bootstrap]: no curve_cert")?;
    let cert = load_cert(Path::new(cert_path))?;
    for (attr, what) in [("rundir", "rundir"), ("statedir", "statedir")] {
        if let Some(p) = attrs.get(attr) {
            check_dir(Path::new(p), what)?;
        }
    }
    if let Some(r) = config
        .get("resource")
        .and_then(|r| r.get("path"))
        .and_then(|p| p.as_str())
    {
        let text = std::fs::read_to_string(r).map_err(|e| format!("resource.path {r}: {e}"))?;
        serde_json::from_str::<serde_json::Value>(&text)
            .map_err(|e| format!("resource.path {r}: not R: {e}"))?;
    }
    let size = hosts.len();
    let quorum: usize = attrs
        .get("broker.quorum")
        .map(|q| {
            q.parse()
                .map_err(|_| "Error parsing broker.quorum attribute".to_string())
        })
        .transpose()?
        .unwrap_or(size);
    eprintln!("flux-standin: rank {rank} of {size} ({hostname}) starting");

    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, Arc::clone(&stop)).map_err(|e| e.to_string())?;
    }
    let uri = format!(
        "local://{}/local",
        attrs.get("rundir").cloned().unwrap_or_default()
    );
    if rank == 0 {
        leader(&hosts, &cert, quorum, program, &uri, &stop)
    } else {
        follower(&hosts, rank, &cert, &attrs, &stop)
    }
}

fn load_config(dir: &Path) -> Result<toml::Table, String> {
    let mut merged = toml::Table::new();
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for e in entries.flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "toml") {
            let text = std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
            let t: toml::Table = text
                .parse()
                .map_err(|e| format!("Config file error: {}: {e}", p.display()))?;
            merged.extend(t);
        }
    }
    Ok(merged)
}

fn load_cert(path: &Path) -> Result<CurveCert, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.permissions().mode() & 0o044 != 0 {
        return Err(format!("{}: readable by group/other", path.display()));
    }
    CurveCert::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn check_dir(p: &Path, what: &str) -> Result<(), String> {
    let meta = std::fs::metadata(p).map_err(|e| format!("{what} {}: {e}", p.display()))?;
    if !meta.is_dir() {
        return Err(format!("{what} {}: Not a directory", p.display()));
    }
    if meta.uid() != nix::unistd::getuid().as_raw() {
        return Err(format!(
            "{what} {} is not owned by instance owner",
            p.display()
        ));
    }
    if meta.permissions().mode() & 0o700 != 0o700 {
        return Err(format!(
            "{what} {} does not have owner=rwx permissions",
            p.display()
        ));
    }
    Ok(())
}

fn sock_addr(uri: &str) -> Result<std::net::SocketAddr, String> {
    let rest = uri
        .strip_prefix("tcp://")
        .ok_or_else(|| format!("{uri}: not tcp://"))?;
    // An interface name (tcp://eth0:8050), as ZeroMQ takes: here, every address.
    if let Some((iface, port)) = rest.rsplit_once(':')
        && (iface.starts_with("eth") || iface.starts_with("en") || iface == "*")
    {
        let port: u16 = port.parse().map_err(|_| format!("{uri}: bad port"))?;
        return Ok(std::net::SocketAddr::from(([0, 0, 0, 0], port)));
    }
    rest.to_socket_addrs()
        .map_err(|e| format!("{uri}: {e}"))?
        .next()
        .ok_or_else(|| format!("{uri}: no address"))
}

fn leader(
    hosts: &[Host],
    cert: &CurveCert,
    quorum: usize,
    program: &[String],
    uri: &str,
    stop: &AtomicBool,
) -> Result<i32, String> {
    let listener = TcpListener::bind(sock_addr(&hosts[0].bind)?)
        .map_err(|e| format!("overlay bind {}: {e}", hosts[0].bind))?;
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let mut peers: Vec<TcpStream> = Vec::new();
    let mut program_child: Option<std::process::Child> = None;
    let started = Instant::now();
    let instance = Arc::new(flux_server::Instance::default());
    loop {
        if stop.load(Ordering::SeqCst) {
            eprintln!("flux-standin: rank 0 stopping on signal");
            instance.kill_all();
            if let Some(c) = &mut program_child {
                // The program and every task it started, as Flux cancels the jobs of an
                // instance that shuts down.
                kill_tree(c.id());
                let _ = c.wait();
            }
            shutdown(&mut peers);
            return Ok(143);
        }
        match listener.accept() {
            Ok((s, _)) => {
                if let Some(p) = admit(s, hosts, cert) {
                    peers.push(p);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e.to_string()),
        }
        if program_child.is_none() && peers.len() + 1 >= quorum {
            // The instance is up: clients reach it on the local URI, as with Flux.
            if let Some(path) = uri.strip_prefix("local://").filter(|p| !p.is_empty())
                && let Err(e) = instance.serve(path)
            {
                eprintln!("flux-standin: local connector {path}: {e}");
            }
            eprintln!(
                "flux-standin: quorum reached ({} of {}) after {:?}",
                peers.len() + 1,
                hosts.len(),
                started.elapsed()
            );
            if program.is_empty() {
                // No initial program: run until stopped (a child that waits for the signal).
                // It dies with this broker, so a broker killed outright leaves nothing behind.
                let mut pause = Command::new(std::env::current_exe().map_err(|e| e.to_string())?);
                pause.args(["pause", "1000000"]);
                // SAFETY: only an async-signal-safe prctl between fork and exec.
                unsafe {
                    pause.pre_exec(|| {
                        nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                            .map_err(std::io::Error::from)
                    });
                }
                program_child = Some(pause.spawn().map_err(|e| e.to_string())?);
            } else {
                program_child = Some(
                    Command::new(&program[0])
                        .args(&program[1..])
                        .env("FLUX_URI", uri)
                        .env("FLUX_STANDIN_SIZE", hosts.len().to_string())
                        .spawn()
                        .map_err(|e| format!("initial program {}: {e}", program[0]))?,
                );
            }
        }
        if let Some(c) = &mut program_child
            && let Some(status) = c.try_wait().map_err(|e| e.to_string())?
        {
            instance.kill_all();
            shutdown(&mut peers);
            let code = status.code().unwrap_or(1);
            eprintln!("flux-standin: initial program exited with code {code}");
            return Ok(code);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGKILLs `pid` and all its descendants (children first found, then killed together).
fn kill_tree(pid: u32) {
    let mut all = vec![pid];
    let mut i = 0;
    while i < all.len() {
        let tasks = std::fs::read_dir(format!("/proc/{}/task", all[i]));
        for t in tasks.into_iter().flatten().flatten() {
            let kids = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
            all.extend(
                kids.split_whitespace()
                    .filter_map(|k| k.parse::<u32>().ok()),
            );
        }
        i += 1;
    }
    for p in all {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(p as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// A worker's hello: `HELLO <rank> <hostname> <public key>`. A connection that says nothing
/// (a reachability probe) is dropped. One that opens with a ZMTP greeting (the entrypoint's
/// check of rank 0's certificate) gets the CURVE server's answer up to WELCOME: WELCOME with
/// the same keypair, a closed connection otherwise, as libzmq answers.
fn admit(s: TcpStream, hosts: &[Host], cert: &CurveCert) -> Option<TcpStream> {
    s.set_nonblocking(false).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut first = [0u8; 1];
    if s.peek(&mut first).ok()? == 1 && first[0] == 0xff {
        let deadline = Instant::now() + curve_handshake::LIMIT;
        match curve_handshake::serve(&s, cert, deadline) {
            Ok(Answer::Welcomed) => eprintln!("flux-standin: answered a CURVE handshake"),
            Ok(Answer::Refused) => eprintln!(
                "flux-standin: refused a CURVE handshake: its certificate is not this MiniCluster's"
            ),
            Err(e) => eprintln!("flux-standin: CURVE handshake: {e}"),
        }
        return None;
    }
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line).ok()?;
    let mut w = line.split_whitespace();
    if w.next() != Some("HELLO") {
        return None;
    }
    let (rank, host, key) = (w.next()?, w.next()?, w.next()?);
    let mut s2 = s.try_clone().ok()?;
    if key != cert.public_key() {
        eprintln!("flux-standin: refused {host}: its certificate is not this MiniCluster's");
        let _ = writeln!(
            s2,
            "DENIED certificate does not match rank 0's (CURVE handshake failed)"
        );
        return None;
    }
    let known = rank
        .parse::<usize>()
        .ok()
        .and_then(|r| hosts.get(r))
        .is_some_and(|h| h.name == host);
    if !known {
        let _ = writeln!(s2, "DENIED {host} is not rank {rank} in bootstrap.hosts");
        return None;
    }
    let _ = writeln!(s2, "OK");
    eprintln!("flux-standin: rank {rank} ({host}) joined");
    s.set_read_timeout(None).ok()?;
    Some(s)
}

fn shutdown(peers: &mut Vec<TcpStream>) {
    for p in peers.iter_mut() {
        let _ = writeln!(p, "SHUTDOWN");
    }
    peers.clear();
}

fn follower(
    hosts: &[Host],
    rank: usize,
    cert: &CurveCert,
    attrs: &BTreeMap<String, String>,
    stop: &AtomicBool,
) -> Result<i32, String> {
    let timeout = attrs
        .get("tbon.connect_timeout")
        .and_then(|t| humantime::parse_duration(t).ok())
        .unwrap_or(Duration::from_secs(30))
        .max(Duration::from_secs(5));
    let addr = sock_addr(&hosts[0].connect)?;
    let started = Instant::now();
    let mut s = loop {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            Ok(s) => break s,
            Err(e) if started.elapsed() > timeout => {
                return Err(format!("cannot reach rank 0 at {}: {e}", hosts[0].connect));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    writeln!(s, "HELLO {rank} {} {}", hosts[rank].name, cert.public_key())
        .map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(s);
    let mut line = String::new();
    let mut joined = false;
    loop {
        if stop.load(Ordering::SeqCst) {
            return Ok(0);
        }
        match reader.read_line(&mut line) {
            Ok(0) => return Err("lost the connection to rank 0".into()),
            Ok(_) => {
                let msg = line.trim().to_string();
                line.clear();
                if msg == "OK" {
                    joined = true;
                    eprintln!("flux-standin: rank {rank} joined rank 0");
                } else if msg == "SHUTDOWN" && joined {
                    eprintln!("flux-standin: rank {rank} shutting down with the instance");
                    return Ok(0);
                } else if let Some(why) = msg.strip_prefix("DENIED ") {
                    return Err(format!("rank 0 refused rank {rank}: {why}"));
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(format!("connection to rank 0: {e}")),
        }
    }
}

fn r_encode(args: &[String]) -> Result<i32, String> {
    let hosts = args
        .iter()
        .find_map(|a| a.strip_prefix("--hosts="))
        .ok_or("R encode: --hosts is required here")?;
    let n = Hostlist::parse(hosts).map_err(|e| e.to_string())?.len();
    let ranks = if n == 1 {
        "0".to_string()
    } else {
        format!("0-{}", n - 1)
    };
    println!(
        "{}",
        serde_json::json!({"version": 1, "execution": {"R_lite": [{"rank": ranks, "children": {"core": "0-1"}}],
            "starttime": 0.0, "expiration": 0.0, "nodelist": [hosts]}})
    );
    Ok(0)
}

/// `submit`/`run` OPTIONS... COMMAND...: the command once per task, on this machine.
fn submit(verb: &str, args: &[String]) -> Result<i32, String> {
    let mut tasks = 1usize;
    let mut nodes = None;
    let mut waitable = false;
    let mut watch = verb == "run";
    let mut cwd = None;
    let mut i = 0;
    while i < args.len() && args[i].starts_with('-') {
        let a = args[i].as_str();
        let takes_value = matches!(
            a,
            "-N" | "-n" | "-c" | "-g" | "-t" | "-o" | "--setattr" | "--env"
        );
        let value = if takes_value {
            i += 1;
            args.get(i).cloned()
        } else {
            a.split_once('=').map(|(_, v)| v.to_string())
        };
        match a.split('=').next().unwrap_or(a) {
            "-n" | "--ntasks" => tasks = value.and_then(|v| v.parse().ok()).ok_or("bad -n")?,
            "-N" | "--nodes" => nodes = value.and_then(|v| v.parse::<usize>().ok()),
            "--cwd" => cwd = value,
            "--watch" | "--wait" => watch = true,
            "--flags" => waitable = value.is_some_and(|v| v.contains("waitable")),
            _ => {}
        }
        i += 1;
    }
    // A short option with its number attached (-N4).
    for a in &args[..i] {
        if let Some(n) = a.strip_prefix("-N").and_then(|n| n.parse::<usize>().ok()) {
            nodes = Some(n);
        }
        if let Some(n) = a.strip_prefix("-n").and_then(|n| n.parse::<usize>().ok()) {
            tasks = n;
        }
    }
    if let Some(n) = nodes {
        tasks = tasks.max(n);
    }
    let cmd = &args[i..];
    if cmd.is_empty() {
        return Err(format!("{verb}: no command"));
    }
    let mut worst = 0;
    for t in 0..tasks {
        let mut c = Command::new(&cmd[0]);
        c.args(&cmd[1..]).env("FLUX_TASK_RANK", t.to_string());
        if let Some(d) = &cwd {
            c.current_dir(d);
        }
        let status = c.status().map_err(|e| format!("{}: {e}", cmd[0]))?;
        worst = worst.max(status.code().unwrap_or(1));
    }
    if !watch {
        let id = format!("ƒstandin{}", std::process::id());
        println!("{id}");
        if waitable {
            record_job(&id, worst)?;
        }
        return Ok(0);
    }
    Ok(worst)
}

fn jobs_file() -> Result<PathBuf, String> {
    let uri =
        std::env::var("FLUX_URI").map_err(|_| "FLUX_URI is not set (not inside an instance)")?;
    let rundir = uri
        .strip_prefix("local://")
        .and_then(|p| Path::new(p).parent())
        .ok_or("bad FLUX_URI")?;
    Ok(rundir.join("standin-jobs"))
}

/// A waitable job's id and exit code, one line each.
fn record_job(id: &str, code: i32) -> Result<(), String> {
    let path = jobs_file()?;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    writeln!(f, "{id} {code}").map_err(|e| e.to_string())
}

fn recorded_jobs() -> Result<Vec<(String, i32)>, String> {
    let text = std::fs::read_to_string(jobs_file()?).unwrap_or_default();
    Ok(text
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(id, code)| (id.to_string(), code.trim().parse().unwrap_or(1)))
        .collect())
}

fn job_wait() -> Result<i32, String> {
    let failed = recorded_jobs()?.iter().any(|(_, code)| *code != 0);
    Ok(i32::from(failed))
}

/// `job attach ID`: the job's exit code (its tasks ran, and wrote their output, when it was
/// submitted).
fn job_attach(id: &str) -> Result<i32, String> {
    recorded_jobs()?
        .into_iter()
        .find(|(j, _)| j == id)
        .map(|(_, code)| code)
        .ok_or_else(|| format!("job attach: unknown job {id}"))
}
