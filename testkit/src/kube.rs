//! What the `real_kube_` tests use on the running test cluster: finding it (`eval
//! "$(minicluster-testkit env)"`, which `tests/run` does), `kubectl` pointed at it, a
//! namespace of their own that is deleted when they end, and an operator running in it
//! under its own ServiceAccount with exactly the namespaced RBAC `minicluster manifests`
//! generates (so a call the RBAC forbids fails the test).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The runner image `minicluster-testkit up` imports.
pub const RUNNER_IMAGE: &str = "minicluster.test/runner:dev";

/// The test cluster, as `minicluster-testkit env` describes it.
#[derive(Clone, Debug)]
pub struct TestCluster {
    pub kubeconfig: PathBuf,
    /// The Flux image imported by `up` (`minicluster.test/flux:VERSION`).
    pub flux_image: String,
    /// Kubernetes 1.`minor`.
    pub minor: u32,
}

impl TestCluster {
    /// The running test cluster; fails the test when there is none.
    pub fn get() -> TestCluster {
        let kubeconfig = std::env::var_os("MC_TEST_KUBECONFIG").map(PathBuf::from).unwrap_or_else(|| {
            panic!(
                "this test needs the test Kubernetes cluster and MC_TEST_KUBECONFIG is unset (fix: set KUBE_BIN and run tests/run, or `minicluster-testkit up` then `eval \"$(minicluster-testkit env)\"`)"
            )
        });
        assert!(
            kubeconfig.is_file(),
            "MC_TEST_KUBECONFIG={} is not a file: is the test cluster up? (minicluster-testkit up)",
            kubeconfig.display()
        );
        let dir = kubeconfig
            .parent()
            .expect("a state directory")
            .to_path_buf();
        let flux_image = std::fs::read_to_string(dir.join("flux-image"))
            .expect("the test cluster records its Flux image (minicluster-testkit up)");
        let version = std::env::var("MC_TEST_KUBE_VERSION").unwrap_or_default();
        let minor = version
            .trim_start_matches('v')
            .split('.')
            .nth(1)
            .and_then(|m| m.parse().ok())
            .unwrap_or(0);
        TestCluster {
            kubeconfig,
            flux_image: flux_image.trim().to_string(),
            minor,
        }
    }

    /// Tags an image the cluster's containerd has with another name (a second runner image
    /// for upgrade tests, without building one).
    pub fn tag_image(&self, from: &str, to: &str) {
        let socket = self
            .kubeconfig
            .parent()
            .expect("a state directory")
            .join("containerd/containerd.sock");
        let out = Command::new("ctr")
            .arg("--address")
            .arg(&socket)
            .args([
                "--namespace",
                "k8s.io",
                "images",
                "tag",
                "--force",
                from,
                to,
            ])
            .output()
            .expect("ctr");
        assert!(
            out.status.success(),
            "ctr images tag: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `kubectl ARGS` against the test cluster (never the user's kubeconfig).
    pub fn kubectl(&self, args: &[&str]) -> Command {
        let mut c = Command::new(kubectl_path());
        c.args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .stdin(Stdio::null());
        c
    }

    /// `kubectl ARGS`, which must succeed; its standard output.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args).output().expect("running kubectl");
        assert!(
            out.status.success(),
            "kubectl {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `kubectl apply --server-side -f -` of `yaml`.
    pub fn apply(&self, yaml: &str) -> String {
        use std::io::Write;
        let mut child = self
            .kubectl(&["apply", "--server-side", "--force-conflicts", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running kubectl");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(yaml.as_bytes())
            .expect("writing to kubectl");
        let out = child.wait_with_output().expect("kubectl");
        assert!(
            out.status.success(),
            "kubectl apply: {}\n{yaml}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `kubectl get … -o jsonpath=PATH` (empty when the object is not there).
    pub fn jsonpath(&self, ns: &str, what: &str, path: &str) -> String {
        let out = self
            .kubectl(&[
                "get",
                "-n",
                ns,
                what,
                "--ignore-not-found",
                "-o",
                &format!("jsonpath={path}"),
            ])
            .output()
            .expect("kubectl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// `$KUBE_BIN/kubectl`, else `kubectl` on PATH.
pub fn kubectl_path() -> PathBuf {
    if let Some(d) = std::env::var_os("KUBE_BIN") {
        let p = Path::new(&d).join("kubectl");
        if p.is_file() {
            return p;
        }
    }
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join("kubectl"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("the test cluster's tests need kubectl (fix: put it in $KUBE_BIN or on PATH)")
        })
}

/// Polls `f` every 250 ms until it returns `Some`, failing with `what` and `context()` after
/// `limit`.
pub fn wait_for<T>(
    what: &str,
    limit: Duration,
    mut f: impl FnMut() -> Option<T>,
    context: impl Fn() -> String,
) -> T {
    let until = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < until,
            "{what}: not within {limit:?}\n{}",
            context()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A namespace of the test's own, deleted (and waited for) when the test ends.
pub struct Namespace {
    pub cluster: TestCluster,
    pub name: String,
}

impl Namespace {
    /// `mc-e2e-TAG-PID`: unique per test process.
    pub fn new(cluster: &TestCluster, tag: &str) -> Namespace {
        let name = format!("mc-e2e-{tag}-{}", std::process::id());
        cluster.ok(&["create", "namespace", &name]);
        Namespace {
            cluster: cluster.clone(),
            name,
        }
    }

    /// Installs the CRD (idempotent, shared by every test) and an operator of this namespace
    /// from `minicluster manifests --namespace` (`minicluster` is the CLI binary), then waits
    /// until it is ready.
    pub fn install_operator(&self, minicluster: &Path, extra_args: &[&str]) {
        let dir = tempfile_dir(&format!("manifests-{}", self.name));
        let out = Command::new(minicluster)
            .args(["manifests", "--out"])
            .arg(&dir)
            .args(["--image", RUNNER_IMAGE, "--namespace", &self.name])
            .output()
            .expect("minicluster manifests");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for f in ["crd.yaml", "rbac.yaml", "operator.yaml"] {
            let mut text = std::fs::read_to_string(dir.join(f)).expect("a manifest");
            if f == "operator.yaml" && !extra_args.is_empty() {
                let extra: String = extra_args
                    .iter()
                    .map(|a| format!("\n        - {a}"))
                    .collect();
                text = text.replacen(
                    "        - operator",
                    &format!("        - operator{extra}"),
                    1,
                );
            }
            self.cluster.apply(&text);
        }
        let _ = std::fs::remove_dir_all(&dir);
        self.wait_operator_ready();
    }

    pub fn wait_operator_ready(&self) {
        wait_for(
            "the operator ready",
            Duration::from_secs(90),
            || {
                let ready = self.cluster.jsonpath(
                    &self.name,
                    "deployment/minicluster-operator",
                    "{.status.readyReplicas}",
                );
                (ready.trim() == "1").then_some(())
            },
            || {
                self.cluster
                    .ok(&["get", "-n", &self.name, "pods", "-o", "wide"])
            },
        );
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        let mut a = vec!["-n", self.name.as_str()];
        a.extend_from_slice(args);
        self.cluster.kubectl(&a).output().expect("kubectl")
    }

    /// `kubectl -n NS ARGS`, which must succeed; its standard output.
    pub fn ok(&self, args: &[&str]) -> String {
        let mut a = vec!["-n", self.name.as_str()];
        a.extend_from_slice(args);
        self.cluster.ok(&a)
    }

    /// A MiniCluster's status field (`{.status.phase}` etc.).
    pub fn status(&self, mc: &str, path: &str) -> String {
        self.cluster
            .jsonpath(&self.name, &format!("minicluster/{mc}"), path)
    }

    /// What to show when a wait fails: MiniClusters, pods, events and the operator's log.
    pub fn describe(&self) -> String {
        let show = |args: &[&str]| {
            let o = self.kubectl(args);
            format!(
                "$ kubectl {}\n{}{}",
                args.join(" "),
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            )
        };
        [
            show(&["get", "mc,jobs,pods", "-o", "wide"]),
            show(&["get", "mc", "-o", "yaml"]),
            show(&["get", "events", "--sort-by=.lastTimestamp"]),
            show(&["logs", "deploy/minicluster-operator", "--tail=40"]),
        ]
        .join("\n")
    }

    /// The pod of `mc`'s rank `rank` (the newest), once it exists.
    pub fn pod_of_rank(&self, mc: &str, rank: u32) -> String {
        wait_for(
            &format!("a pod of rank {rank} of {mc}"),
            Duration::from_secs(120),
            || {
                let out = self.ok(&[
                    "get",
                    "pods",
                    "-l",
                    &format!("app.kubernetes.io/instance={mc}"),
                    "--sort-by=.metadata.creationTimestamp",
                    "-o",
                    r#"jsonpath={range .items[*]}{.metadata.name}{" "}{.metadata.annotations.batch\.kubernetes\.io/job-completion-index}{"\n"}{end}"#,
                ]);
                out.lines()
                    .filter_map(|l| l.split_once(' '))
                    .rfind(|(_, i)| i.trim() == rank.to_string())
                    .map(|(n, _)| n.to_string())
            },
            || self.describe(),
        )
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        // Deleting the namespace deletes everything in it; wait, so nothing outlives the test.
        let _ = self
            .cluster
            .kubectl(&[
                "delete",
                "namespace",
                &self.name,
                "--wait=true",
                "--timeout=180s",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn tempfile_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mc-e2e-{tag}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("a temporary directory");
    d
}
