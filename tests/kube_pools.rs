//! A kubernetes pool of `minicluster serve` on the test cluster: 20 jobs, each a MiniCluster
//! for the operator (a namespaced one of the test's own), all run exactly once while `serve`
//! is SIGKILLed twice and started again. Named `real_kube_`, ignored unless asked for.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::process::{control_cli, succeeded};
use minicluster_testkit::kube::{Namespace, RUNNER_IMAGE, TestCluster, wait_for};
use serde_json::Value;

const JOBS: u64 = 20;

struct Serve {
    child: Option<Child>,
    url: String,
    state: PathBuf,
    log: PathBuf,
    kubeconfig: PathBuf,
}

impl Serve {
    fn start(state: &Path, kubeconfig: &Path, n: u32) -> Serve {
        let log = state.join(format!("serve-{n}.log"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_minicluster"))
            .args(["serve", "-v", "--listen", "127.0.0.1:0", "--state-dir"])
            .arg(state.join("control"))
            .args(["--runner-image", RUNNER_IMAGE])
            .env("KUBECONFIG", kubeconfig)
            .env("MINICLUSTER_STATE_DIR", state)
            .env_remove("MINICLUSTER_DATABASE")
            .env_remove("MINICLUSTER_SERVER")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let until = Instant::now() + Duration::from_secs(30);
        let url = loop {
            let t = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some((url, _)) = t
                .split("minicluster: control plane on ")
                .nth(1)
                .and_then(|r| r.split_once('\n'))
            {
                break url.trim().to_string();
            }
            if let Some(s) = child.try_wait().unwrap() {
                panic!("serve ended with {s}:\n{t}");
            }
            assert!(Instant::now() < until, "serve did not listen:\n{t}");
            std::thread::sleep(Duration::from_millis(20));
        };
        Serve {
            child: Some(child),
            url,
            state: state.to_path_buf(),
            log,
            kubeconfig: kubeconfig.to_path_buf(),
        }
    }

    fn cli(&self, args: &[&str]) -> String {
        let out = control_cli(&self.url, &self.state, args);
        succeeded(args, &out, || {
            std::fs::read_to_string(&self.log).unwrap_or_default()
        })
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.kill9();
        let _ = &self.kubeconfig;
    }
}

#[test]
#[ignore = "needs the test Kubernetes cluster: KUBE_BIN (tests/run starts it)"]
fn real_kube_a_kubernetes_pool_runs_every_job_once_through_two_kills() {
    let c = TestCluster::get();
    let ns = Namespace::new(&c, "pool");
    ns.install_operator(Path::new(env!("CARGO_BIN_EXE_minicluster")), &[]);
    let state = tempfile::tempdir().unwrap();
    let template = state.path().join("template.yaml");
    std::fs::write(
        &template,
        format!(
            "apiVersion: flux-framework.org/v1alpha2\nkind: MiniCluster\nmetadata: {{name: t}}\nspec:\n  size: 1\n  flux:\n    container: {{disable: true}}\n  containers:\n    - image: {}\n      command: hostname\n",
            c.flux_image
        ),
    )
    .unwrap();
    let began = Instant::now();
    let mut serve = Serve::start(state.path(), &c.kubeconfig, 1);
    serve.cli(&[
        "pools",
        "create",
        "k8s",
        "--type",
        "kubernetes",
        "--set",
        &format!("namespace={}", ns.name),
        "-f",
        template.to_str().unwrap(),
        "--max-launches",
        "4",
    ]);
    for i in 0..JOBS {
        serve.cli(&["submit", "--", "sh", "-c", &format!("echo output-of-{i}")]);
    }
    // Two crashes while jobs run, each followed by a fresh start.
    for n in 2..=3 {
        std::thread::sleep(Duration::from_secs(8));
        serve.kill9();
        serve = Serve::start(state.path(), &c.kubeconfig, n);
    }
    let jobs: Value = wait_for(
        "every job done",
        Duration::from_secs(600),
        || {
            let v: Value = serde_json::from_str(&serve.cli(&["jobs", "--json"])).ok()?;
            let all = v.as_array()?;
            (all.len() as u64 == JOBS
                && all.iter().all(|j| {
                    j["state"] != "waiting" && j["state"] != "claimed" && j["state"] != "running"
                }))
            .then_some(v)
        },
        || ns.describe(),
    );
    for j in jobs.as_array().unwrap() {
        assert_eq!(j["state"], "done", "{j}\n{}", ns.describe());
        assert_eq!(j["exit_code"], 0, "{j}");
        let id = j["id"].as_u64().unwrap().to_string();
        let log = serve.cli(&["logs", "--job", &id]);
        assert!(log.contains("output-of-"), "job {id}: {log}");
    }
    // Each job's MiniCluster was made once: one Created event from the operator each.
    let events = ns.ok(&[
        "get",
        "events",
        "--field-selector",
        "reason=Created,involvedObject.kind=MiniCluster",
        "-o",
        "jsonpath={range .items[*]}{.regarding.name}{.involvedObject.name}{\"\\n\"}{end}",
    ]);
    let mut created: BTreeMap<String, usize> = BTreeMap::new();
    for name in events.lines().filter(|l| !l.is_empty()) {
        *created.entry(name.to_string()).or_default() += 1;
    }
    assert_eq!(created.len() as u64, JOBS, "{created:?}");
    assert!(
        created.values().all(|n| *n == 1),
        "made more than once: {created:?}"
    );
    // Nothing is left running of any job.
    wait_for(
        "no MiniCluster left",
        Duration::from_secs(120),
        || {
            ns.ok(&["get", "miniclusters", "--no-headers"])
                .trim()
                .is_empty()
                .then_some(())
        },
        || ns.describe(),
    );
    serve.kill9();
    println!(
        "kubernetes pool: {JOBS} jobs through 2 kills of serve, each run once, {:.0} s",
        began.elapsed().as_secs_f64()
    );
}
