//! Running commands with a time limit, and looking for what a test left behind (processes,
//! files).

use std::io::Read;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::text;

/// Runs `cmd` to its end, or kills it and fails after `limit`.
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
    let pipe = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = pipe(child.stdout.take().map(|r| Box::new(r) as _));
    let err = pipe(child.stderr.take().map(|r| Box::new(r) as _));
    let until = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > until {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{cmd:?} did not end within {limit:?}\nstdout: {}\nstderr: {}",
                text(&out.join().unwrap()),
                text(&err.join().unwrap())
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// Processes (not zombies) whose command line contains `s`, as "pid: cmdline".
pub fn processes_mentioning(s: &str) -> Vec<(i32, String)> {
    let me = std::process::id() as i32;
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_string_lossy().parse::<i32>().ok()?;
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let zombie = stat
                .rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('Z'));
            (pid != me && cmd.contains(s) && !zombie).then_some((pid, cmd))
        })
        .collect()
}

/// Processes (not zombies) whose environment holds `key=value`: every descendant of a
/// process started with it, also those that left its session or whose command line names
/// nothing of the test.
pub fn processes_with_env(key: &str, value: &str) -> Vec<(i32, String)> {
    let me = std::process::id() as i32;
    let want = format!("{key}={value}");
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_string_lossy().parse::<i32>().ok()?;
            let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
            let has = env.split(|b| *b == 0).any(|kv| kv == want.as_bytes());
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let zombie = stat
                .rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('Z'));
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            (pid != me && has && !zombie).then_some((pid, cmd))
        })
        .collect()
}

/// Every file under `dir`, relative to it.
pub fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p.clone());
            }
            out.push(p.strip_prefix(dir).unwrap_or(&p).display().to_string());
        }
    }
    out.sort();
    out
}

/// The `minicluster` CLI as a client of the control plane at `server`, with `state` as its
/// state directory and user `tester` (at most 60 s).
pub fn control_cli(server: &str, state: &Path, args: &[&str]) -> Output {
    run_bounded(
        Command::new(env!("CARGO_BIN_EXE_minicluster"))
            .args(args)
            .env("MINICLUSTER_SERVER", server)
            .env("MINICLUSTER_STATE_DIR", state)
            .env("USER", "tester")
            .env_remove("MINICLUSTER_DATABASE"),
        Duration::from_secs(60),
    )
}

/// The standard output of `minicluster ARGS`, which must have succeeded; `context` (the
/// server's log, read only on failure) goes into the failure.
pub fn succeeded(args: &[&str], out: &Output, context: impl FnOnce() -> String) -> String {
    assert!(
        out.status.success(),
        "minicluster {args:?} failed ({}):\n{}{}\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr),
        context()
    );
    text(&out.stdout)
}
