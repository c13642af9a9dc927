//! Warm reuse on a process pool, through the real binaries (`minicluster serve`, the
//! entrypoint, the `flux` stand-in answering the local connector on rank 0's socket): jobs of
//! a pool with an idle timeout run one after another in one persistent MiniCluster, which is
//! torn down once idle past the timeout; a template change drains it; a control plane
//! SIGKILLed while a warm job runs re-attaches to it and the job runs once.
//!
//! The server is killed when the test ends, passed or not, and so is every process still
//! naming the test's temporary directory.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::process::{control_cli, processes_mentioning, processes_with_env, succeeded};
use common::{bin, text};
use serde_json::Value;

struct Plane {
    server: Option<Child>,
    url: String,
    tmp: tempfile::TempDir,
    starts: u32,
}

impl Drop for Plane {
    fn drop(&mut self) {
        if let Some(mut s) = self.server.take() {
            let _ = s.kill();
            let _ = s.wait();
        }
        for (pid, _) in self.leftovers() {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Plane {
    fn new() -> Plane {
        Plane {
            server: None,
            url: String::new(),
            tmp: tempfile::Builder::new()
                .prefix("mc-warm-")
                .tempdir()
                .unwrap(),
            starts: 0,
        }
    }

    /// Every process this control plane started, however far down: they all carry its
    /// state directory in their environment.
    fn leftovers(&self) -> Vec<(i32, String)> {
        let dir = self.tmp.path().display().to_string();
        let mut all = processes_with_env("MINICLUSTER_STATE_DIR", &dir);
        all.extend(processes_mentioning(&dir));
        all.sort();
        all.dedup();
        all
    }

    fn launches_dir(&self) -> PathBuf {
        self.tmp.path().join("control").join("launches")
    }

    fn logs(&self) -> String {
        (1..=self.starts)
            .map(|n| {
                let p = self.tmp.path().join(format!("serve-{n}.log"));
                let t = std::fs::read_to_string(p).unwrap_or_default();
                let lines: Vec<&str> = t.lines().collect();
                format!(
                    "--- serve start {n} ---\n{}\n",
                    lines[lines.len().saturating_sub(25)..].join("\n")
                )
            })
            .collect()
    }

    fn start(&mut self) {
        assert!(self.server.is_none());
        self.starts += 1;
        let log_path = self.tmp.path().join(format!("serve-{}.log", self.starts));
        let log = std::fs::File::create(&log_path).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_minicluster"))
            .args(["serve", "-v", "--listen", "127.0.0.1:0", "--state-dir"])
            .arg(self.tmp.path().join("control"))
            .arg("--flux")
            .arg(bin("flux-standin"))
            .arg("--entrypoint")
            .arg(bin("entrypoint"))
            .env("MINICLUSTER_STATE_DIR", self.tmp.path())
            .env("NO_COLOR", "1")
            .env_remove("MINICLUSTER_LOG")
            .env_remove("MINICLUSTER_DATABASE")
            .env_remove("MINICLUSTER_SERVER")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            let t = std::fs::read_to_string(&log_path).unwrap_or_default();
            if let Some((url, _)) = t
                .split("minicluster: control plane on ")
                .nth(1)
                .and_then(|rest| rest.split_once('\n'))
            {
                self.url = url.trim().to_string();
                break;
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!("serve ended with {status} before it listened:\n{t}");
            }
            assert!(Instant::now() < until, "serve did not listen:\n{t}");
            std::thread::sleep(Duration::from_millis(10));
        }
        self.server = Some(child);
        while !self.mc(&["pools", "list"]).status.success() {
            assert!(Instant::now() < until, "serve does not answer");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill9(&mut self) {
        let mut s = self.server.take().expect("a running server");
        let _ = s.kill();
        let _ = s.wait();
    }

    /// SIGTERM, as a service manager stops it; killed if it has not ended within 10 s.
    fn stop(&mut self) {
        let mut s = self.server.take().expect("a running server");
        let _ = Command::new("kill")
            .args(["-TERM", &s.id().to_string()])
            .status();
        let until = Instant::now() + Duration::from_secs(10);
        while s.try_wait().unwrap().is_none() {
            if Instant::now() > until {
                let _ = s.kill();
                let _ = s.wait();
                panic!("serve did not end within 10 s of SIGTERM\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn mc(&self, args: &[&str]) -> Output {
        control_cli(&self.url, self.tmp.path(), args)
    }

    /// The CLI, which must succeed; its standard output.
    fn ok(&self, args: &[&str]) -> String {
        succeeded(args, &self.mc(args), || self.logs())
    }

    /// Each launch's timeline, by job id: (state, detail) in order.
    fn timelines(&self) -> Vec<(u64, Vec<(String, String)>)> {
        let v: Value =
            serde_json::from_str(&self.ok(&["pools", "launches", "cpu", "--json"])).unwrap();
        let mut out: Vec<(u64, Vec<(String, String)>)> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                let events = l["events"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| {
                        (
                            e["state"].as_str().unwrap_or("").to_string(),
                            e["detail"].as_str().unwrap_or("").to_string(),
                        )
                    })
                    .collect();
                (l["job"].as_u64().unwrap(), events)
            })
            .collect();
        out.sort_by_key(|(j, _)| *j);
        out
    }

    fn timeline(&self, job: u64) -> Vec<(String, String)> {
        self.timelines()
            .into_iter()
            .find(|(j, _)| *j == job)
            .map(|(_, e)| e)
            .unwrap_or_default()
    }

    fn job_state(&self, id: u64) -> String {
        let out = self.mc(&["job", &id.to_string(), "--json"]);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        let j = if v.get("job").is_some() {
            &v["job"]
        } else {
            &v
        };
        j["state"].as_str().unwrap_or("").to_string()
    }
}

/// The warm MiniCluster a timeline names.
fn warm_of(events: &[(String, String)]) -> Option<String> {
    events.iter().rev().find_map(|(_, d)| {
        let at = d.rfind("warm ")?;
        let n = d[at + 5..].split([':', ' ']).next()?;
        Some(n.to_string())
    })
}

fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool, logs: impl Fn() -> String) {
    let until = Instant::now() + limit;
    while !f() {
        assert!(
            Instant::now() < until,
            "{what} within {limit:?}\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn gone(p: &Plane, name: &str) -> bool {
    !p.launches_dir().join(name).exists()
        && processes_mentioning(&p.launches_dir().join(name).display().to_string()).is_empty()
}

#[test]
fn warm_pool_reuses_tears_down_drains_and_survives_a_kill() {
    let started = Instant::now();
    let mut p = Plane::new();
    p.start();
    p.ok(&[
        "pools",
        "create",
        "cpu",
        "--type",
        "process",
        "--set",
        "size=2",
        "--idle-timeout",
        "3s",
    ]);

    // Four jobs one after another: their exit codes and output, one MiniCluster for all.
    for i in 1..=4u64 {
        let out = p.mc(&[
            "submit",
            "--wait",
            "--",
            "sh",
            "-c",
            &format!("echo out-of-$MINICLUSTER_JOB task-$FLUX_TASK_RANK; exit {i}"),
        ]);
        assert_eq!(
            out.status.code(),
            Some(i as i32),
            "job {i}: {}\n{}",
            text(&out.stderr),
            p.logs()
        );
        let stdout = text(&out.stdout);
        for task in 0..2 {
            assert!(
                stdout.contains(&format!("out-of-{i} task-{task}\n")),
                "job {i}: {stdout:?}"
            );
        }
    }
    let t = p.timelines();
    assert_eq!(t.len(), 4, "{t:?}");
    let starting = t
        .iter()
        .flat_map(|(_, e)| e.iter())
        .filter(|(s, _)| s == "starting")
        .count();
    assert_eq!(starting, 1, "one MiniCluster for four jobs: {t:?}");
    let first = warm_of(&t[0].1).expect("job 1 names its warm MiniCluster");
    assert!(first.starts_with("cpu-w"), "{first}");
    for (job, events) in &t[1..] {
        assert!(
            events
                .iter()
                .any(|(_, d)| *d == format!("reused warm {first}")),
            "job {job}: {events:?}"
        );
    }

    // Idle past its timeout: torn down, nothing left.
    wait_until(
        "the idle warm MiniCluster torn down",
        Duration::from_secs(10),
        || gone(&p, &first),
        || p.logs(),
    );

    // SIGKILL while a warm job runs; the restarted control plane re-attaches: it runs once.
    let marks = p.tmp.path().join("marks");
    let cmd = format!(
        "sleep 2; echo ran-$FLUX_TASK_RANK >> {}; echo done",
        marks.display()
    );
    p.ok(&["submit", "--", "sh", "-c", &cmd]);
    wait_until(
        "job 5 submitted to a warm MiniCluster",
        Duration::from_secs(15),
        || {
            p.timeline(5)
                .iter()
                .any(|(_, d)| d.starts_with("submitted flux id"))
        },
        || p.logs(),
    );
    p.kill9();
    p.start();
    wait_until(
        "job 5 done after the restart",
        Duration::from_secs(15),
        || p.job_state(5) == "done",
        || p.logs(),
    );
    let mut ran: Vec<String> = std::fs::read_to_string(&marks)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    ran.sort();
    assert_eq!(ran, ["ran-0", "ran-1"], "each task once");
    assert!(
        p.timeline(5)
            .iter()
            .any(|(_, d)| d.starts_with("re-attached to flux id")),
        "{:?}",
        p.timeline(5)
    );
    let fifth = warm_of(&p.timeline(5)).unwrap();
    assert_ne!(
        fifth, first,
        "a new warm MiniCluster after the first was torn down"
    );
    let log = p.ok(&["logs", "--job", "5"]);
    assert_eq!(log.matches("done").count(), 2, "{log:?}");

    // A template change: the next job starts a new warm MiniCluster; the old one, idle, is
    // drained (a long idle timeout, so only the drain removes it).
    p.ok(&["pools", "update", "cpu", "--idle-timeout", "60s"]);
    let out = p.ok(&["submit", "--wait", "--", "sh", "-c", "echo x=${X:-unset}"]);
    assert!(out.contains("x=unset"), "{out}");
    assert_eq!(
        warm_of(&p.timeline(6)),
        Some(fifth.clone()),
        "same shape: reused"
    );
    p.ok(&["pools", "update", "cpu", "--set", "env.X=1"]);
    let out = p.ok(&["submit", "--wait", "--", "sh", "-c", "echo x=${X:-unset}"]);
    assert!(out.contains("x=1"), "{out}");
    let seventh = warm_of(&p.timeline(7)).unwrap();
    assert_ne!(seventh, fifth, "{:?}", p.timeline(7));
    assert!(
        p.timeline(7).iter().any(|(s, _)| s == "starting"),
        "{:?}",
        p.timeline(7)
    );
    wait_until(
        "the old warm MiniCluster drained",
        Duration::from_secs(5),
        || gone(&p, &fifth),
        || p.logs(),
    );
    assert!(
        p.launches_dir().join(&seventh).exists(),
        "the new one is kept while within its idle timeout"
    );

    // A cancel reaches the job in the warm MiniCluster, which stays for the next one.
    p.ok(&["submit", "--", "sleep", "30"]);
    wait_until(
        "job 8 submitted",
        Duration::from_secs(10),
        || {
            p.timeline(8)
                .iter()
                .any(|(_, d)| d.starts_with("submitted flux id"))
        },
        || p.logs(),
    );
    assert_eq!(warm_of(&p.timeline(8)), Some(seventh.clone()));
    p.ok(&["cancel", "8"]);
    wait_until(
        "job 8 cancelled",
        Duration::from_secs(10),
        || p.job_state(8) == "cancelled",
        || p.logs(),
    );
    let out = p.ok(&["submit", "--wait", "--", "echo", "after-cancel"]);
    assert!(out.contains("after-cancel"), "{out}");
    assert_eq!(warm_of(&p.timeline(9)), Some(seventh.clone()));

    // The end: idle warm MiniClusters are torn down, and after the control plane stops
    // nothing it started is left.
    p.ok(&["pools", "update", "cpu", "--idle-timeout", "1s"]);
    wait_until(
        "the last warm MiniCluster torn down",
        Duration::from_secs(10),
        || gone(&p, &seventh),
        || p.logs(),
    );
    p.stop();
    wait_until(
        "nothing left of the control plane",
        Duration::from_secs(5),
        || p.leftovers().is_empty(),
        || format!("{:?}\n{}", p.leftovers(), p.logs()),
    );
    println!("warm test: {:.1} s", started.elapsed().as_secs_f64());
}
