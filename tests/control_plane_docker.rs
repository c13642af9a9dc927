//! The control plane on docker pools, through the real binaries: `minicluster serve` against
//! the Docker Engine, with an image built here from scratch (no registry): our entrypoint, the
//! `flux` stand-in and a shell (`/bin/sh` of this machine), with the libraries they load,
//! imported with `docker import`.
//!
//! - a job's exit code and output come back through `submit --wait` and `logs --job`;
//! - a running job is cancelled;
//! - `serve` SIGKILLed while a job runs, and restarted: the job is re-attached, its rank 0
//!   created once, its work run once;
//! - without an Engine, docker jobs fail with the reason and the server still serves.
//!
//! Nothing carrying the server's owner label (containers, networks) may be left; every server
//! is killed when its test ends, passed or not.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::image::{Image, docker};
use common::{bin, text};
use serde_json::Value;

const OWNER: &str = "flux-framework.org/control-plane";
const LABEL: &str = "flux-framework.org/minicluster";

/// One control plane's state directory, and what its launches carry.
struct Plane {
    dir: tempfile::TempDir,
}

impl Plane {
    fn new() -> Plane {
        Plane {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// The owner label the server puts on everything it launches.
    fn owner_filter(&self) -> String {
        let launches = self.state().join("launches");
        let path = std::fs::canonicalize(&launches).unwrap_or(launches);
        format!("label={OWNER}={}", path.display())
    }

    /// Containers and networks the server's launches left: (containers, networks).
    fn left(&self) -> (String, String) {
        let f = self.owner_filter();
        (
            text(&docker(&["ps", "-aq", "--filter", &f]).stdout),
            text(&docker(&["network", "ls", "-q", "--filter", &f]).stdout),
        )
    }

    fn assert_nothing_left(&self) {
        let until = Instant::now() + Duration::from_secs(15);
        loop {
            let (c, n) = self.left();
            if c.trim().is_empty() && n.trim().is_empty() {
                return;
            }
            assert!(
                Instant::now() < until,
                "left behind: containers {c:?}, networks {n:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Starts `minicluster serve` on a free loopback port.
    fn serve(&self, envs: &[(&str, &str)]) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("serve.log"))
            .unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_minicluster"));
        cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--state-dir")
            .arg(self.state())
            .env("MINICLUSTER_ENTRYPOINT", bin("entrypoint"))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let server = Server {
            child: cmd.spawn().unwrap(),
            url: format!("http://127.0.0.1:{port}"),
            log: self.dir.path().join("serve.log"),
        };
        let until = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < until,
                "serve never listened: {}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }
}

/// Removes what the server's launches left even when a test fails half-way.
impl Drop for Plane {
    fn drop(&mut self) {
        let f = self.owner_filter();
        for id in text(&docker(&["ps", "-aq", "--filter", &f]).stdout).split_whitespace() {
            let _ = docker(&["rm", "-f", id]);
        }
        for id in text(&docker(&["network", "ls", "-q", "--filter", &f]).stdout).split_whitespace()
        {
            let _ = docker(&["network", "rm", id]);
        }
    }
}

/// A container removed when the test ends.
struct RemoveOnDrop(String);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", &self.0]);
    }
}

/// A running `minicluster serve`; dropping it SIGKILLs and reaps it.
struct Server {
    child: Child,
    url: String,
    log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn cli(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_minicluster"))
            .arg("--server")
            .arg(&self.url)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "{args:?}: {}\nserve: {}",
            text(&out.stderr),
            self.log()
        );
        text(&out.stdout)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn docker_pool(&self, name: &str, image: &str) {
        self.ok(&[
            "pools",
            "create",
            name,
            "--type",
            "docker",
            "--set",
            &format!("image={image}"),
            "--set",
            "size=2",
        ]);
    }

    fn submit(&self, command: &[&str]) -> u64 {
        let mut args = vec!["submit", "--"];
        args.extend(command);
        self.ok(&args).trim().parse().unwrap()
    }

    /// `job ID --json`: the job and its launch.
    fn job(&self, id: u64) -> Value {
        serde_json::from_str(&self.ok(&["job", &id.to_string(), "--json"])).unwrap()
    }

    /// Waits until `pred` holds of the job, at most `limit`.
    fn wait_job(
        &self,
        id: u64,
        limit: Duration,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let until = Instant::now() + limit;
        loop {
            let v = self.job(id);
            if pred(&v) {
                return v;
            }
            assert!(
                Instant::now() < until,
                "job {id}: never {what}: {v:#}\nserve: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn state(v: &Value) -> &str {
    v["job"]["state"].as_str().unwrap_or("")
}

fn ended(v: &Value) -> bool {
    matches!(state(v), "done" | "failed" | "cancelled")
}

/// The launch's timeline as (state, detail).
fn events(v: &Value) -> Vec<(String, String)> {
    v["launch"]["events"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["state"].as_str().unwrap_or("").to_string(),
                e["detail"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn has_event(v: &Value, state: &str) -> bool {
    events(v).iter().any(|(s, _)| s == state)
}

/// The id `submit --wait` reports (`minicluster: job N queued in Q`).
fn queued(out: &Output) -> u64 {
    text(&out.stderr)
        .split_whitespace()
        .nth(2)
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no `job N queued` in {}", text(&out.stderr)))
}

/// A pool name no other test (or run) uses at the same time.
fn pool_name(tag: &str) -> String {
    format!("d{}{tag}", std::process::id())
}

#[test]
fn a_docker_job_returns_its_exit_code_and_output_and_leaves_nothing() {
    minicluster_testkit::require::docker_engine();
    let image = Image::build("code", true);
    let plane = Plane::new();
    let server = plane.serve(&[]);
    let pool = pool_name("c");
    server.docker_pool(&pool, &image.tag);

    let out = server.cli(&["submit", "--wait", "--", "sh", "-c", "echo hi; exit 3"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}\nserve: {}",
        text(&out.stderr),
        server.log()
    );
    assert!(text(&out.stdout).contains("hi"), "{}", text(&out.stdout));
    let id = queued(&out);
    let v = server.job(id);
    assert_eq!(state(&v), "failed", "{v:#}");
    assert_eq!(v["job"]["exit_code"], 3, "{v:#}");
    assert_eq!(v["job"]["reason"], "exit code 3", "{v:#}");
    assert_eq!(v["launch"]["name"], format!("{pool}-j{id}"), "{v:#}");
    for s in ["starting", "started"] {
        assert!(has_event(&v, s), "no {s} in {v:#}");
    }
    // The log outlives the containers.
    let logs = server.ok(&["logs", "--job", &id.to_string()]);
    assert!(logs.contains("hi"), "{logs}");
    assert!(
        plane.state().join(format!("logs/job-{id}.log")).exists(),
        "rank 0's log was not kept"
    );

    // A success is done, with the output of every task.
    let out = server.cli(&[
        "submit",
        "--wait",
        "--",
        "sh",
        "-c",
        "echo ok-$MINICLUSTER_JOB",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let id = queued(&out);
    assert_eq!(
        text(&out.stdout).matches(&format!("ok-{id}")).count(),
        2,
        "{}",
        text(&out.stdout)
    );
    assert_eq!(state(&server.job(id)), "done");
    plane.assert_nothing_left();
}

#[test]
fn a_running_docker_job_is_cancelled() {
    minicluster_testkit::require::docker_engine();
    let image = Image::build("cancel", true);
    let plane = Plane::new();
    let server = plane.serve(&[]);
    let pool = pool_name("x");
    server.docker_pool(&pool, &image.tag);

    let id = server.submit(&["flux", "pause", "600"]);
    let v = server.wait_job(id, Duration::from_secs(30), "connected", |v| {
        has_event(v, "connected")
    });
    let (_, detail) = events(&v)
        .into_iter()
        .find(|(s, _)| s == "connected")
        .unwrap();
    assert!(detail.contains("all 2 brokers"), "{detail}");
    let label = format!("label={LABEL}={pool}-j{id}");
    assert_eq!(
        text(&docker(&["ps", "-q", "--filter", &label]).stdout)
            .lines()
            .count(),
        2
    );
    let started = Instant::now();
    server.ok(&["cancel", &id.to_string()]);
    let v = server.wait_job(id, Duration::from_secs(30), "cancelled", ended);
    assert_eq!(state(&v), "cancelled", "{v:#}");
    assert!(has_event(&v, "stopping"), "{v:#}");
    eprintln!("cancelled in {:?}", started.elapsed());
    plane.assert_nothing_left();
}

#[test]
fn a_killed_control_plane_reattaches_and_the_job_runs_once() {
    minicluster_testkit::require::docker_engine();
    let image = Image::build("kill", true);
    let plane = Plane::new();
    let server = plane.serve(&[]);
    let pool = pool_name("k");
    server.docker_pool(&pool, &image.tag);
    let t0 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 1;

    let id = server.submit(&["sh", "-c", "echo begun; flux pause 4; echo ended; exit 4"]);
    let name = format!("{pool}-j{id}");
    // Its work has begun: rank 0 printed.
    let until = Instant::now() + Duration::from_secs(30);
    while !server
        .ok(&["logs", "--job", &id.to_string()])
        .contains("begun")
    {
        assert!(Instant::now() < until, "never began: {}", server.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let rank0 = format!("{name}-0");
    let id_before = text(&docker(&["inspect", "-f", "{{.Id}}", &rank0]).stdout);
    drop(server); // SIGKILL
    assert_eq!(
        text(&docker(&["inspect", "-f", "{{.State.Status}}", &rank0]).stdout).trim(),
        "running",
        "the work stops with the control plane"
    );

    let server = plane.serve(&[]);
    let v = server.wait_job(id, Duration::from_secs(40), "ended", ended);
    assert_eq!(state(&v), "failed", "{v:#}");
    assert_eq!(v["job"]["exit_code"], 4, "{v:#}");
    assert_eq!(v["job"]["reason"], "exit code 4", "{v:#}");
    let ev = events(&v);
    assert_eq!(
        ev.iter().filter(|(s, _)| s == "starting").count(),
        1,
        "launched more than once: {ev:?}"
    );
    assert!(
        ev.iter()
            .any(|(s, d)| s == "started" && d.contains("re-attached")),
        "not re-attached: {ev:?}"
    );
    // Rank 0's container was created once, and it is the one that ran before the kill.
    let t1 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1;
    let created = text(
        &docker(&[
            "events",
            "--since",
            &t0.to_string(),
            "--until",
            &t1.to_string(),
            "--filter",
            "type=container",
            "--filter",
            "event=create",
            "--filter",
            &format!("label={LABEL}={name}"),
            "--format",
            "{{.Actor.Attributes.name}} {{.Actor.ID}}",
        ])
        .stdout,
    );
    let rank0_created: Vec<&str> = created
        .lines()
        .filter(|l| l.split_whitespace().next() == Some(rank0.as_str()))
        .collect();
    assert_eq!(rank0_created.len(), 1, "{created}");
    assert!(
        rank0_created[0].ends_with(id_before.trim()),
        "{created} vs {id_before}"
    );
    // The work ran once: every task's two lines, once.
    let logs = server.ok(&["logs", "--job", &id.to_string()]);
    assert_eq!(
        logs.matches("begun").count(),
        logs.matches("ended").count(),
        "{logs}"
    );
    assert_eq!(
        logs.matches("begun").count(),
        2,
        "two tasks, once each: {logs}"
    );
    plane.assert_nothing_left();
}

/// What a control plane killed during a launch, or after rank 0 ended, leaves behind decides
/// what a restart does: a rank 0 created but never started is removed and launched again; one
/// that ran is never launched again, and its exit code is the job's.
#[test]
fn leftover_containers_decide_whether_the_work_is_launched_again() {
    minicluster_testkit::require::docker_engine();
    let image = Image::build("left", true);
    let plane = Plane::new();
    std::fs::create_dir_all(plane.state().join("launches")).unwrap();
    let owner = plane.owner_filter();
    let owner = owner.trim_start_matches("label=");
    let pool = pool_name("l");
    // As a launch leaves them: labelled, rank 0 last to start.
    let leave_as = |owner: &str, job: u64, run: Option<&str>| {
        let name = format!("{pool}-j{job}");
        let mut args = vec![
            if run.is_some() { "run" } else { "create" }.to_string(),
            "--name".into(),
            format!("{name}-0"),
            "--label".into(),
            format!("{LABEL}={name}"),
            "--label".into(),
            format!("{LABEL}.rank=0"),
            "--label".into(),
            owner.to_string(),
            image.tag.clone(),
        ];
        match run {
            Some(cmd) => args.extend(["sh".into(), "-c".into(), cmd.into()]),
            None => args.extend(["flux".into(), "pause".into(), "600".into()]),
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        docker(&args)
    };
    let leave = |job: u64, run: Option<&str>| leave_as(owner, job, run);
    // What no job of this store claims is swept when the server starts, but only its own:
    // another control plane's launch (or a `minicluster up`) is left alone.
    assert!(leave(99, None).status.success());
    let foreign = format!("{pool}-j3-0");
    let _foreign = RemoveOnDrop(foreign.clone());
    assert!(leave_as("someone=else", 3, None).status.success());

    let server = plane.serve(&[]);
    server.docker_pool(&pool, &image.tag);
    // Held in the queue while the leftovers are made (a server sweeps only when it starts).
    server.ok(&["queues", "pause", "default"]);
    let fresh = server.submit(&["sh", "-c", "echo fresh; exit 5"]);
    let again = server.submit(&["sh", "-c", "echo again; exit 0"]);
    let taken = server.submit(&["true"]);
    assert_eq!(
        (fresh, again, taken),
        (1, 2, 3),
        "a fresh store numbers jobs from 1"
    );
    let swept = docker(&["inspect", &format!("{pool}-j99-0")]);
    assert!(!swept.status.success(), "not swept");
    assert!(leave(fresh, None).status.success());
    let ran = leave(again, Some("echo earlier; exit 7"));
    assert_eq!(ran.status.code(), Some(7), "{}", text(&ran.stderr));
    server.ok(&["queues", "resume", "default"]);

    // Its rank 0 never started: removed, launched afresh, and run.
    let v = server.wait_job(fresh, Duration::from_secs(30), "ended", ended);
    assert_eq!(v["job"]["exit_code"], 5, "{v:#}");
    let starting: Vec<String> = events(&v)
        .into_iter()
        .filter(|(s, _)| s == "starting")
        .map(|(_, d)| d)
        .collect();
    assert_eq!(starting.len(), 1, "{v:#}");
    assert!(starting[0].contains("never started"), "{v:#}");
    let logs = server.ok(&["logs", "--job", &fresh.to_string()]);
    assert!(logs.contains("fresh"), "{logs}");
    // Its rank 0 already ran: that is its outcome, and nothing is launched.
    let v = server.wait_job(again, Duration::from_secs(30), "ended", ended);
    assert_eq!(v["job"]["exit_code"], 7, "{v:#}");
    assert_eq!(v["job"]["reason"], "exit code 7", "{v:#}");
    assert!(!has_event(&v, "starting"), "launched again: {v:#}");
    let logs = server.ok(&["logs", "--job", &again.to_string()]);
    assert!(
        logs.contains("earlier") && !logs.contains("again"),
        "{logs}"
    );
    // A name another made is not ours to attach to, launch over, or remove.
    let v = server.wait_job(taken, Duration::from_secs(30), "ended", ended);
    let reason = v["job"]["reason"].as_str().unwrap_or("");
    assert!(
        state(&v) == "failed" && reason.contains("not made by this control plane"),
        "{v:#}"
    );
    assert!(docker(&["inspect", &foreign]).status.success(), "removed");
    assert_eq!(server.ok(&["logs", "--job", &taken.to_string()]), "");
    plane.assert_nothing_left();
}

#[test]
fn without_a_docker_engine_docker_jobs_fail_with_the_reason() {
    let plane = Plane::new();
    let server = plane.serve(&[("DOCKER_HOST", "unix:///nonexistent/docker.sock")]);
    server.docker_pool(&pool_name("n"), "no-image-needed");
    let out = server.cli(&["submit", "--wait", "--", "true"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let id = queued(&out);
    let v = server.job(id);
    assert_eq!(state(&v), "failed", "{v:#}");
    let reason = v["job"]["reason"].as_str().unwrap_or("");
    assert!(
        reason.starts_with(
            "docker pools: cannot reach the Docker Engine at unix:///nonexistent/docker.sock: "
        ) && reason.ends_with("(fix: start Docker or set DOCKER_HOST)"),
        "{reason}"
    );
    // The rest of the control plane serves on.
    server.ok(&["jobs"]);
}
