//! The control plane through the real binaries: `minicluster serve` with process pools whose
//! brokers are the `flux` stand-in, driven by the CLI (`pools`, `queues`, `submit`, `jobs`,
//! `job`, `cancel`, `logs --job`) and, where the CLI cannot get, by its HTTP API.
//!
//! - crash: 200 jobs while `serve` is SIGKILLed and restarted on the same database and state
//!   directory several times; every job runs exactly once and ends `done`, nothing is left.
//!   On SQLite, and on PostgreSQL on the server `$MC_TEST_POSTGRES` names (`.ci/setup` starts
//!   one; without it that test fails, saying so). `MC_TEST_SEED=N` repeats a run's kill
//!   schedule.
//! - the CLI end to end, and bad input refused with one error and nothing half-written.
//!
//! Every server is killed when its test ends, passed or not, and so is every process still
//! naming the test's temporary directory.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::process::{control_cli, files_under, processes_mentioning, run_bounded, succeeded};
use common::{bin, text};
use serde_json::{Value, json};

/// A running `minicluster serve`; dropping it SIGKILLs and reaps it.
struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A PostgreSQL database made for one test (with `psql`, which ships with the server
/// `.ci/setup` installs) and dropped when the test ends, passed or not.
struct TestDatabase {
    server: String,
    name: String,
    url: String,
}

/// `$MC_TEST_POSTGRES`; without it the test fails, saying how to get a server.
fn postgres_server() -> String {
    match std::env::var("MC_TEST_POSTGRES") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "MC_TEST_POSTGRES is not set, and this test needs a PostgreSQL server (fix: run \
             .ci/setup, which starts one on 127.0.0.1:54329 and writes its URL to \
             .ci/postgres.env, then `set -a; . .ci/postgres.env; set +a`; CI always has it)"
        ),
    }
}

fn which(name: &str) -> PathBuf {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} is not on PATH"))
}

fn psql() -> PathBuf {
    let on_path = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join("psql"))
        .find(|p| p.is_file());
    let debian = || {
        let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join("bin/psql"))
            .filter(|p| p.is_file())
            .collect();
        found.sort();
        found.pop()
    };
    on_path.or_else(debian).unwrap_or_else(|| {
        panic!("MC_TEST_POSTGRES is set but psql is not on PATH (fix: apt-get install postgresql-client)")
    })
}

fn sql(server: &str, statement: &str) -> Result<(), String> {
    let out = run_bounded(
        Command::new(psql())
            .args([
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                server,
                "-c",
                statement,
            ])
            .env_remove("PGDATABASE"),
        Duration::from_secs(30),
    );
    if out.status.success() {
        Ok(())
    } else {
        Err(text(&out.stderr))
    }
}

impl TestDatabase {
    fn create(server: &str) -> TestDatabase {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let name = format!("mc_cp_{}_{nanos:x}", std::process::id());
        sql(server, &format!("CREATE DATABASE \"{name}\"")).unwrap_or_else(|e| {
            panic!(
                "cannot create a database on MC_TEST_POSTGRES ({}): {e}",
                minicluster_pools::store::postgres::redact(server)
            )
        });
        TestDatabase {
            server: server.into(),
            url: minicluster_pools::store::postgres::on_database(server, &name),
            name,
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Never panic here: this also runs while a failed test unwinds.
        let drop = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        if let Err(e) = sql(&self.server, &drop) {
            eprintln!("could not drop test database {}: {e}", self.name);
        }
    }
}

/// One test's control plane: a temporary directory (state, database, logs of every start),
/// the server running on it, and a client. Dropping it kills the server and whatever else
/// still names the directory.
struct Plane {
    server: Option<Server>,
    tmp: tempfile::TempDir,
    database: Option<TestDatabase>,
    starts: u32,
    http: reqwest::blocking::Client,
}

impl Drop for Plane {
    fn drop(&mut self) {
        drop(self.server.take());
        // Brokers run in sessions of their own and outlive a killed server: end those of
        // this test (found by its directory), by pid.
        for (pid, _) in processes_mentioning(&self.tmp.path().display().to_string()) {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Plane {
    fn new(database: Option<TestDatabase>) -> Plane {
        Plane {
            server: None,
            tmp: tempfile::Builder::new()
                .prefix("mc-control-plane-")
                .tempdir()
                .unwrap(),
            database,
            starts: 0,
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap(),
        }
    }

    fn state(&self) -> PathBuf {
        self.tmp.path().join("control")
    }

    fn log_of(&self, start: u32) -> PathBuf {
        self.tmp.path().join(format!("serve-{start}.log"))
    }

    /// The last lines every start of the server wrote, for failure messages.
    fn server_logs(&self) -> String {
        (1..=self.starts)
            .map(|n| {
                let t = std::fs::read_to_string(self.log_of(n)).unwrap_or_default();
                let lines: Vec<&str> = t.lines().collect();
                let tail = lines[lines.len().saturating_sub(15)..].join("\n");
                format!("--- serve start {n} ---\n{tail}\n")
            })
            .collect()
    }

    /// The lines of every start's log that mention any of `needles`, for failure messages.
    fn server_lines(&self, needles: &[String]) -> String {
        (1..=self.starts)
            .map(|n| {
                let t = std::fs::read_to_string(self.log_of(n)).unwrap_or_default();
                let lines: Vec<&str> = t
                    .lines()
                    .filter(|l| needles.iter().any(|x| l.contains(x.as_str())))
                    .collect();
                format!("--- serve start {n} ---\n{}\n", lines.join("\n"))
            })
            .collect()
    }

    /// Starts the server on a free loopback port (it picks one and says which) and waits
    /// until it answers.
    fn start(&mut self) {
        assert!(self.server.is_none(), "one server at a time");
        self.starts += 1;
        let log_path = self.log_of(self.starts);
        let log = std::fs::File::create(&log_path).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_minicluster"));
        cmd.args(["serve", "-v", "--listen", "127.0.0.1:0", "--state-dir"])
            .arg(self.state())
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
            .stderr(log);
        if let Some(db) = &self.database {
            cmd.arg("--database").arg(&db.url);
        }
        let mut server = Server {
            child: cmd.spawn().unwrap(),
            url: String::new(),
        };
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            let t = std::fs::read_to_string(&log_path).unwrap_or_default();
            // The whole line: stderr is unbuffered, so the line may be read half written.
            if let Some((url, _)) = t
                .split("minicluster: control plane on ")
                .nth(1)
                .and_then(|rest| rest.split_once('\n'))
            {
                server.url = url.trim().to_string();
                break;
            }
            if let Some(status) = server.child.try_wait().unwrap() {
                panic!("serve ended with {status} before it listened:\n{t}");
            }
            assert!(
                Instant::now() < until,
                "serve did not listen within 30 s:\n{t}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let healthz = format!("{}/healthz", server.url);
        while !self
            .http
            .get(&healthz)
            .send()
            .is_ok_and(|r| r.status().is_success())
        {
            assert!(
                Instant::now() < until,
                "serve at {} does not answer /healthz",
                server.url
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        self.server = Some(server);
    }

    /// SIGKILL, as a crash would.
    fn kill9(&mut self) {
        drop(self.server.take().expect("a running server"));
    }

    fn url(&self) -> &str {
        &self.server.as_ref().expect("a running server").url
    }

    /// The CLI against this server (at most 60 s).
    fn mc(&self, args: &[&str]) -> Output {
        control_cli(self.url(), self.tmp.path(), args)
    }

    /// The CLI, which must succeed; its standard output.
    fn ok(&self, args: &[&str]) -> String {
        succeeded(args, &self.mc(args), || self.server_logs())
    }

    /// The CLI, which must fail with exit code 1 and one `error:` line naming every
    /// `needles`; its standard error.
    fn refused(&self, args: &[&str], needles: &[&str]) -> String {
        let out = self.mc(args);
        let err = text(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(1),
            "minicluster {args:?}: expected a refusal, got {}:\n{}{err}",
            out.status,
            text(&out.stdout)
        );
        assert_eq!(
            err.matches("error:").count(),
            1,
            "minicluster {args:?}: one error, not {err:?}"
        );
        assert!(err.starts_with("error: "), "{args:?}: {err:?}");
        for n in needles {
            assert!(
                err.contains(n),
                "minicluster {args:?}: {n:?} not in {err:?}"
            );
        }
        err
    }

    fn get(&self, path: &str) -> Value {
        let r = self
            .http
            .get(format!("{}{path}", self.url()))
            .send()
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        assert!(r.status().is_success(), "GET {path}: {}", r.status());
        r.json().unwrap()
    }

    fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.url()))
            .json(body)
            .send()
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        let status = r.status().as_u16();
        let text = r.text().unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Job counts of a queue by state.
    fn counts(&self, queue: &str) -> BTreeMap<String, u64> {
        let qs = self.get("/v1/queues");
        let q = qs
            .as_array()
            .unwrap()
            .iter()
            .find(|q| q["name"] == queue)
            .unwrap_or_else(|| panic!("no queue {queue} in {qs}"));
        serde_json::from_value(q["jobs"].clone()).unwrap()
    }

    fn job(&self, id: u64) -> Value {
        self.get(&format!("/v1/jobs/{id}"))["job"].clone()
    }

    /// Waits (at most `limit`) until job `id` is in `state`.
    fn wait_state(&self, id: u64, state: &str, limit: Duration) -> Value {
        let until = Instant::now() + limit;
        loop {
            let j = self.job(id);
            if j["state"] == state {
                return j;
            }
            assert!(
                Instant::now() < until,
                "job {id} is not {state} after {limit:?}: {j}\n{}",
                self.server_logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The pools and their revision.
    fn pools(&self) -> (u64, Value) {
        let v = self.get("/v1/pools");
        (v["revision"].as_u64().unwrap(), v["pools"].clone())
    }

    fn job_count(&self) -> usize {
        self.get("/v1/jobs?limit=100000").as_array().unwrap().len()
    }

    /// No process names the test's directory (within 10 s: brokers leave as their
    /// instance ends).
    fn assert_no_processes(&self) {
        let dir = self.tmp.path().display().to_string();
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            let left = processes_mentioning(&dir);
            if left.is_empty() {
                return;
            }
            assert!(Instant::now() < until, "processes left behind: {left:#?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The launches directory holds nothing (within 10 s: clean-up follows the outcome).
    fn assert_no_launch_dirs(&self) {
        let launches = self.state().join("launches");
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            let left: Vec<PathBuf> = std::fs::read_dir(&launches)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .collect();
            if left.is_empty() {
                return;
            }
            assert!(
                Instant::now() < until,
                "launches left behind: {left:?}, holding {:?}\n{}",
                left.iter().map(|d| files_under(d)).collect::<Vec<_>>(),
                self.server_lines(
                    &left
                        .iter()
                        .map(|d| d.file_name().unwrap().to_string_lossy().into_owned())
                        .collect::<Vec<_>>()
                )
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

const CRASH_JOBS: u64 = 200;

/// DESIGN.md: a killed control plane loses no job and launches nothing twice.
fn crash_scenario(database: Option<TestDatabase>) {
    let began = Instant::now();
    let mut p = Plane::new(database);
    p.start();
    p.ok(&[
        "pools",
        "create",
        "cpu",
        "--set",
        "size=1",
        "--max-launches",
        "8",
    ]);
    p.ok(&[
        "queues",
        "create",
        "crash",
        "--max-running",
        "8",
        "--fairness",
        "none",
    ]);
    let seed = std::env::var("MC_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    let mut rng = fastrand::Rng::with_seed(seed);
    let kills = rng.u64(5..=8);
    println!("crash test: seed {seed} (MC_TEST_SEED={seed} repeats it), {kills} kills");

    // Submitted while the queue is paused, so the kills below fall while the jobs are
    // dispatched. Each run sleeps 100-400 ms (so claims, launches and outcomes of 8 jobs
    // overlap every kill), then appends the job id the dispatcher put in its environment
    // and the index the test gave it: a run is tagged by both.
    p.ok(&["queues", "pause", "crash"]);
    let ran = p.tmp.path().join("ran.txt");
    let ran_arg = ran.display().to_string();
    let mut index_of: BTreeMap<u64, u64> = BTreeMap::new();
    for i in 0..CRASH_JOBS {
        let nap = format!("0.{}", rng.u64(10..=40));
        let (status, j) = p.post(
            "/v1/jobs",
            &json!({
                "queue": "crash",
                "user": "crash",
                "command": ["sh", "-c", r#"sleep "$3"; echo "$MINICLUSTER_JOB $1" >> "$2""#, "sh", i.to_string(), ran_arg, nap],
            }),
        );
        assert_eq!(status, 201, "submitting job {i}: {j}");
        index_of.insert(j["id"].as_u64().unwrap(), i);
    }
    p.ok(&["queues", "resume", "crash"]);
    for k in 1..=kills {
        let delay = rng.u64(50..=700);
        std::thread::sleep(Duration::from_millis(delay));
        let c = p.counts("crash");
        let n = |s: &str| c.get(s).copied().unwrap_or(0);
        p.kill9();
        println!(
            "  kill {k}/{kills} after {delay} ms: {} waiting, {} claimed, {} ended",
            n("waiting"),
            n("claimed"),
            n("done") + n("failed") + n("cancelled")
        );
        p.start();
    }

    let until = Instant::now() + Duration::from_secs(120);
    loop {
        let c = p.counts("crash");
        if c.get("waiting").copied().unwrap_or(0) + c.get("claimed").copied().unwrap_or(0) == 0 {
            break;
        }
        assert!(
            Instant::now() < until,
            "jobs still not ended 120 s after the last restart: {c:?}\n{}",
            p.server_logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let jobs = p.get("/v1/jobs?queue=crash&limit=100000");
    let jobs = jobs.as_array().unwrap();
    assert_eq!(jobs.len() as u64, CRASH_JOBS, "jobs lost or made up");
    let mut problems = Vec::new();
    let mut suspects = Vec::new();
    for j in jobs {
        if j["state"] != "done" || j["exit_code"] != 0 {
            problems.push(format!(
                "job {}: {} exit {} ({})",
                j["id"], j["state"], j["exit_code"], j["reason"]
            ));
            suspects.push(j["id"].as_u64().unwrap());
        }
    }

    // Every job ran exactly once, as itself.
    let record = std::fs::read_to_string(&ran).unwrap_or_default();
    let mut runs: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for line in record.lines() {
        let (id, idx) = line
            .split_once(' ')
            .unwrap_or_else(|| panic!("{ran:?}: line {line:?} is not \"JOB INDEX\""));
        let id: u64 = id
            .parse()
            .unwrap_or_else(|_| panic!("{ran:?}: {line:?}: MINICLUSTER_JOB is not a job id"));
        runs.entry(id).or_default().push(idx.parse().unwrap());
    }
    for (id, i) in &index_of {
        let problem = match runs.get(id).map(Vec::as_slice) {
            None => format!("job {id} (index {i}) never ran"),
            Some([x]) if x == i => continue,
            Some([x]) => format!("job {id} ran with MINICLUSTER_JOB of job index {x}, not {i}"),
            Some(more) => format!("job {id} ran {} times: {more:?}", more.len()),
        };
        problems.push(problem);
        suspects.push(*id);
    }
    for id in runs.keys().filter(|id| !index_of.contains_key(id)) {
        problems.push(format!("a run tagged with unknown job {id}"));
    }
    let needles: Vec<String> = suspects
        .iter()
        .flat_map(|id| [format!("job{{id={id} "), format!("launch=cpu-j{id} ")])
        .collect();
    assert!(
        problems.is_empty(),
        "seed {seed}, {kills} kills:\n{}\n{}",
        problems.join("\n"),
        p.server_lines(&needles)
    );

    // One launch record per job, each stopped.
    let launches = p.get("/v1/pools/cpu/launches?limit=10000");
    let launches = launches.as_array().unwrap();
    let mut per_job: BTreeMap<u64, usize> = BTreeMap::new();
    for l in launches {
        *per_job.entry(l["job"].as_u64().unwrap()).or_default() += 1;
        assert_eq!(l["state"], "stopped", "launch {l}");
    }
    assert_eq!(per_job.len() as u64, CRASH_JOBS, "a launch record per job");
    assert!(
        per_job.values().all(|n| *n == 1),
        "one launch per job: {per_job:?}"
    );

    p.assert_no_launch_dirs();
    p.kill9();
    p.assert_no_processes();
    println!(
        "crash test: {CRASH_JOBS} jobs, {kills} kills, {:.1} s",
        began.elapsed().as_secs_f64()
    );
}

#[test]
fn killed_control_plane_loses_no_job_and_runs_none_twice_sqlite() {
    crash_scenario(None);
}

#[test]
fn killed_control_plane_loses_no_job_and_runs_none_twice_postgres() {
    crash_scenario(Some(TestDatabase::create(&postgres_server())));
}

#[test]
fn cli_end_to_end() {
    let mut p = Plane::new(None);
    p.start();

    // Pools: create, list, get, update.
    p.ok(&[
        "pools",
        "create",
        "cpu",
        "--set",
        "size=1",
        "--provides",
        "arch:x86",
    ]);
    let list = p.ok(&["pools", "list"]);
    assert!(
        list.lines().any(|l| l.starts_with("cpu ")
            && l.contains("process")
            && l.contains("enabled")
            && l.contains("arch:x86")),
        "{list}"
    );
    let listed: Value = serde_json::from_str(&p.ok(&["pools", "list", "--json"])).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    let got: Value = serde_json::from_str(&p.ok(&["pools", "get", "cpu"])).unwrap();
    assert_eq!(
        (&got["type"], &got["set"]["size"], &got["provides"]["arch"]),
        (&json!("process"), &json!("1"), &json!("x86"))
    );
    p.ok(&[
        "pools",
        "update",
        "cpu",
        "--max-launches",
        "3",
        "--provides",
        "os:linux",
    ]);
    let got: Value = serde_json::from_str(&p.ok(&["pools", "get", "cpu"])).unwrap();
    assert_eq!(got["max_launches"], 3, "{got}");
    assert_eq!(
        got["provides"],
        json!({"arch": "x86", "os": "linux"}),
        "{got}"
    );
    assert_eq!(got["set"]["size"], "1", "update keeps the fields not given");

    // submit --wait: the job's output and exit code.
    let out = p.mc(&[
        "submit",
        "--wait",
        "--",
        "sh",
        "-c",
        "echo out-of-$MINICLUSTER_JOB; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("out-of-1\n"), "{stdout}");
    let out = p.mc(&["submit", "--wait", "--", "echo", "hello world"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("hello world\n"),
        "{}",
        text(&out.stdout)
    );

    // jobs, job ID, logs --job.
    let jobs = p.ok(&["jobs"]);
    let rows: Vec<&str> = jobs.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{jobs}");
    assert!(
        rows[0].trim_start().starts_with("2 ") && rows[0].contains("done"),
        "newest first: {jobs}"
    );
    assert!(
        rows[1].trim_start().starts_with("1 ")
            && rows[1].contains("failed")
            && rows[1].contains(" 3 "),
        "{jobs}"
    );
    let failed: Value =
        serde_json::from_str(&p.ok(&["jobs", "--state", "failed", "--json"])).unwrap();
    assert_eq!(failed.as_array().unwrap().len(), 1, "{failed}");
    assert_eq!(failed[0]["id"], 1);
    let one = p.ok(&["job", "1"]);
    assert!(one.contains("reason: exit code 3"), "{one}");
    assert!(one.contains("requested → starting → started"), "{one}");
    assert!(one.contains("stopped (exit code 3)"), "{one}");
    let one: Value = serde_json::from_str(&p.ok(&["job", "1", "--json"])).unwrap();
    assert_eq!(
        (
            &one["job"]["state"],
            &one["job"]["exit_code"],
            &one["job"]["pool"]
        ),
        (&json!("failed"), &json!(3), &json!("cpu"))
    );
    assert_eq!(one["launch"]["name"], "cpu-j1");
    let logs = p.ok(&["logs", "--job", "1"]);
    assert!(logs.contains("out-of-1\n"), "{logs}");
    p.refused(&["job", "99"], &["no job 99", "HTTP 404"]);

    // A disabled pool gets no new work; enabled again, the job runs.
    p.ok(&["pools", "disable", "cpu"]);
    let got: Value = serde_json::from_str(&p.ok(&["pools", "get", "cpu"])).unwrap();
    assert_eq!(got["enabled"], false);
    let id: u64 = p.ok(&["submit", "--", "true"]).trim().parse().unwrap();
    std::thread::sleep(Duration::from_millis(1200)); // over two dispatcher ticks
    assert_eq!(p.job(id)["state"], "waiting", "a disabled pool took work");
    p.ok(&["pools", "enable", "cpu"]);
    p.wait_state(id, "done", Duration::from_secs(20));

    // Queues: depth limit (paused, so jobs stay waiting), drain, resume.
    p.ok(&["queues", "create", "small", "--max-depth", "2"]);
    p.ok(&["queues", "pause", "small"]);
    let a: u64 = p
        .ok(&["submit", "--queue", "small", "--", "echo", "a"])
        .trim()
        .parse()
        .unwrap();
    let b: u64 = p
        .ok(&["submit", "--queue", "small", "--", "echo", "b"])
        .trim()
        .parse()
        .unwrap();
    let before = p.job_count();
    p.refused(
        &["submit", "--queue", "small", "--", "echo", "c"],
        &["queue small is full", "max-depth 2", "HTTP 429"],
    );
    let (status, body) = p.post(
        "/v1/jobs",
        &json!({"queue": "small", "user": "tester", "command": ["echo", "c"]}),
    );
    assert_eq!(status, 429, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("is full"),
        "{body}"
    );
    assert_eq!(p.job_count(), before, "a refused job was stored");
    let queues = p.ok(&["queues", "list"]);
    assert!(
        queues
            .lines()
            .any(|l| l.starts_with("small ") && l.contains("paused")),
        "{queues}"
    );
    // Cancel a waiting job: at once, and it never runs.
    let out = p.mc(&["cancel", &b.to_string()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("cancelled"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(p.job(b)["state"], "cancelled");
    p.refused(
        &["cancel", &b.to_string()],
        &["cannot be cancelled", "HTTP 409"],
    );
    p.ok(&["queues", "drain", "small"]);
    p.refused(
        &["submit", "--queue", "small", "--", "echo", "d"],
        &["queue small is draining", "HTTP 409"],
    );
    assert_eq!(p.job_count(), before, "a refused job was stored");
    p.ok(&["queues", "resume", "small"]);
    p.wait_state(a, "done", Duration::from_secs(20));
    assert!(p.ok(&["logs", "--job", &a.to_string()]).contains("a\n"));
    assert_eq!(p.job(b)["state"], "cancelled");
    assert_eq!(
        p.ok(&["logs", "--job", &b.to_string()]),
        "",
        "a cancelled job ran"
    );

    // Cancel a running job: its MiniCluster is stopped; a pool with running work is not
    // deleted.
    // Through a link in the test's directory, so a sleep left running would be seen.
    let sleepy = p.tmp.path().join("sleepy");
    std::os::unix::fs::symlink(which("sleep"), &sleepy).unwrap();
    let long: u64 = p
        .ok(&["submit", "--", sleepy.to_str().unwrap(), "60"])
        .trim()
        .parse()
        .unwrap();
    p.wait_state(long, "claimed", Duration::from_secs(20));
    let until = Instant::now() + Duration::from_secs(20);
    while !p.ok(&["job", &long.to_string()]).contains("started") {
        assert!(Instant::now() < until, "job {long} never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    p.refused(
        &["pools", "delete", "cpu"],
        &["pool cpu has running launches", "HTTP 409"],
    );
    let out = p.mc(&["cancel", &long.to_string()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let j = p.wait_state(long, "cancelled", Duration::from_secs(30));
    assert_eq!(j["reason"], "cancelled while running", "{j}");

    // Export, import: no changes.
    let exported = p.tmp.path().join("pools.toml");
    p.ok(&[
        "pools",
        "create",
        "gpu",
        "--provides",
        "gpu:A100",
        "--accepts",
        "gpu:A100,H100",
    ]);
    p.ok(&["pools", "export", "-o", exported.to_str().unwrap()]);
    let (rev, pools) = p.pools();
    let out = p.ok(&["pools", "import", exported.to_str().unwrap()]);
    assert!(out.contains("no changes"), "{out}");
    assert_eq!(
        p.pools(),
        (rev, pools.clone()),
        "a no-change import changed something"
    );
    let only_gpu = p.ok(&["pools", "export", "--only", "gpu"]);
    assert!(
        only_gpu.contains("name = \"gpu\"") && !only_gpu.contains("name = \"cpu\""),
        "{only_gpu}"
    );

    // An edited file: the dry run prints the diff and changes nothing.
    let edited = p.tmp.path().join("edited.toml");
    std::fs::write(
        &edited,
        "[[pool]]\nname = \"cpu\"\ntype = \"process\"\nmax_launches = 5\n[pool.set]\nsize = \"1\"\n\n\
         [[pool]]\nname = \"newp\"\ntype = \"process\"\n",
    )
    .unwrap();
    let edited_arg = edited.to_str().unwrap();
    let diff = p.ok(&["pools", "import", "--dry-run", edited_arg]);
    for want in [
        "~ pool cpu\n",
        "max_launches: 3 → 5",
        "provides.arch: \"x86\" → (none)",
        "+ pool newp (process",
        "- pool gpu\n",
        "1 to create, 1 to update, 1 to delete",
    ] {
        assert!(diff.contains(want), "{want:?} not in the diff:\n{diff}");
    }
    assert_eq!(
        p.pools(),
        (rev, pools.clone()),
        "a dry run changed something"
    );

    // --only limits the scope: gpu (missing from the file) and newp are left alone.
    let scoped = p.ok(&["pools", "import", "--only", "cpu", edited_arg]);
    assert!(
        scoped.contains("0 to create, 1 to update, 0 to delete"),
        "{scoped}"
    );
    assert!(
        !scoped.contains("gpu") && !scoped.contains("newp"),
        "{scoped}"
    );
    let (rev2, pools2) = p.pools();
    assert!(rev2 > rev);
    let names: Vec<&str> = pools2
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["cpu", "gpu"], "{pools2}");
    assert_eq!(pools2[0]["max_launches"], 5);

    // A diff computed before the pools changed is refused, and changes nothing.
    p.ok(&["pools", "update", "gpu", "--max-launches", "2"]);
    let (rev3, pools3) = p.pools();
    let (status, body) = p.post(
        "/v1/pools/import",
        &json!({"upserts": [], "deletes": ["gpu"], "revision": rev2}),
    );
    assert_eq!(status, 409, "{body}");
    let msg = body["error"].as_str().unwrap();
    assert!(
        msg.contains("pools changed since the diff was computed"),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("revision {rev2}, now {rev3}")),
        "{msg}"
    );
    assert_eq!(
        p.pools(),
        (rev3, pools3),
        "a stale import changed something"
    );

    // The whole file: newp created, gpu deleted.
    p.ok(&["pools", "import", edited_arg]);
    let (_, pools4) = p.pools();
    let names: Vec<&str> = pools4
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["cpu", "newp"], "{pools4}");

    // Delete.
    p.ok(&["pools", "delete", "newp"]);
    p.refused(
        &["pools", "get", "newp"],
        &["no pool named newp", "HTTP 404"],
    );
    assert!(!p.ok(&["pools", "list"]).contains("newp"));

    p.assert_no_launch_dirs();
    p.kill9();
    p.assert_no_processes();
}

#[test]
fn bad_input_is_refused_with_one_error_and_nothing_written() {
    let mut p = Plane::new(None);
    p.start();
    p.ok(&["pools", "create", "cpu", "--provides", "arch:x86"]);
    let before = p.pools();
    let unchanged = |what: &str| assert_eq!(p.pools(), before, "{what} changed the pools");

    p.refused(
        &["pools", "create", "x", "--type", "slurm"],
        &[
            "\"slurm\" is not a launcher type",
            "process, docker or kubernetes",
        ],
    );
    unchanged("an unknown launcher type");
    p.refused(
        &["pools", "create", "x", "--set", "colour=red"],
        &["set.colour", "no field \"colour\"", "fix:"],
    );
    unchanged("an unknown launcher field");
    p.refused(
        &["pools", "create", "x", "--provides", "gpu"],
        &["--provides", "tag \"gpu\" has no value", "KEY:VALUE"],
    );
    unchanged("a malformed tag");
    p.refused(
        &["pools", "update", "cpu", "--set", "colour=red"],
        &["set.colour"],
    );
    unchanged("an update with an unknown field");
    p.refused(
        &["pools", "create", "my pool"],
        &["\"my pool\" is not a valid pool name", "fix:"],
    );
    unchanged("a pool name with spaces");

    // The server checks what the CLI checks.
    for (body, needle) in [
        (
            json!({"name": "x", "type": "process", "set": {"colour": "red"}}),
            "set.colour",
        ),
        (
            json!({"name": "my pool", "type": "process"}),
            "not a valid pool name",
        ),
    ] {
        let (status, answer) = p.post("/v1/pools", &body);
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(
            answer["error"].as_str().unwrap_or("").contains(needle),
            "{body}: {answer}"
        );
    }
    unchanged("a pool refused by the server");

    let toml = p.tmp.path().join("broken.toml");
    std::fs::write(&toml, "[[pool]]\nname = \"cpu\"\ntype = process\n").unwrap();
    p.refused(
        &["pools", "import", toml.to_str().unwrap()],
        &["broken.toml", "is not a pools file", "line 3"],
    );
    unchanged("a TOML file that does not parse");

    p.refused(
        &["submit", "--queue", "nope", "--", "true"],
        &["no queue named nope", "HTTP 404"],
    );
    p.refused(
        &["submit", "--requires", "gpu:A100", "--", "true"],
        &[
            "no pool of queue default can run a job that requires",
            "gpu",
            "A100",
            "HTTP 400",
        ],
    );
    p.refused(
        &["submit", "--requires", "gpu", "--", "true"],
        &["--requires", "tag \"gpu\" has no value"],
    );
    assert_eq!(p.job_count(), 0, "a refused submission was stored");
    unchanged("refused submissions");

    p.kill9();
    p.assert_no_processes();
}
