//! The operator on a real Kubernetes cluster (the test cluster of `minicluster-testkit`): each
//! test has a namespace of its own with an operator running in it under its own
//! ServiceAccount and exactly the namespaced RBAC `minicluster manifests --namespace` makes,
//! and MiniClusters of the real Flux image. Without the cluster these tests do not run
//! (`tests/run` says how many); they are named `real_kube_` and ignored unless asked for.

use std::path::Path;
use std::time::{Duration, Instant};

use minicluster_testkit::kube::{Namespace, TestCluster, wait_for};

fn minicluster() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_minicluster"))
}

/// A MiniCluster of the test cluster's Flux image (no Flux view: the image has Flux).
fn mc_yaml(c: &TestCluster, name: &str, size: u32, spec: &str, container: &str) -> String {
    format!(
        "apiVersion: flux-framework.org/v1alpha2\nkind: MiniCluster\nmetadata: {{name: {name}}}\nspec:\n  size: {size}\n  flux:\n    container: {{disable: true}}\n{spec}  containers:\n    - image: {}\n{container}",
        c.flux_image
    )
}

fn setup(tag: &str) -> Namespace {
    let c = TestCluster::get();
    let ns = Namespace::new(&c, tag);
    ns.install_operator(minicluster(), &[]);
    ns
}

/// Waits until `n` of a MiniCluster's `n` brokers are ready.
fn wait_ready(ns: &Namespace, mc: &str, n: u32, limit: Duration) {
    wait_for(
        &format!("MiniCluster {mc} {n}/{n} brokers ready"),
        limit,
        || (ns.status(mc, "{.status.ready}") == format!("{n}/{n}")).then_some(()),
        || ns.describe(),
    );
}

/// Waits for a MiniCluster's phase; its status when it gets there.
fn wait_phase(ns: &Namespace, mc: &str, phase: &str, limit: Duration) {
    wait_for(
        &format!("MiniCluster {mc} {phase}"),
        limit,
        || (ns.status(mc, "{.status.phase}") == phase).then_some(()),
        || ns.describe(),
    );
}

fn condition(ns: &Namespace, mc: &str, type_: &str) -> (String, String, String) {
    let get = |f: &str| {
        ns.status(
            mc,
            &format!("{{.status.conditions[?(@.type==\"{type_}\")].{f}}}"),
        )
    };
    (get("status"), get("reason"), get("message"))
}

fn seconds_between(from: &str, to: &str) -> f64 {
    let parse = |s: &str| {
        s.trim()
            .parse::<k8s_openapi::jiff::Timestamp>()
            .unwrap_or_else(|e| panic!("a timestamp {s:?}: {e}"))
    };
    parse(to).duration_since(parse(from)).as_secs_f64()
}

#[test]
#[ignore = "needs the test Kubernetes cluster: KUBE_BIN (tests/run starts it)"]
fn real_kube_sizes_1_2_4_8_succeed_with_every_brokers_output() {
    let ns = setup("sizes");
    let c = &ns.cluster;
    let mut figures = Vec::new();
    for size in [1u32, 2, 4, 8] {
        let name = format!("hello{size}");
        c.apply(&with_ns(
            &ns,
            &mc_yaml(c, &name, size, "", "      command: hostname\n"),
        ));
        wait_phase(&ns, &name, "Succeeded", Duration::from_secs(240));
        assert_eq!(ns.status(&name, "{.status.exitCode}"), "0");
        let rank0 = ns.pod_of_rank(&name, 0);
        let log = ns.ok(&["logs", &rank0, "--timestamps"]);
        for i in 0..size {
            assert!(
                log.lines()
                    .any(|l| l.trim_end().ends_with(&format!(" {name}-{i}"))),
                "broker {i}'s output is missing from rank 0's log:\n{log}"
            );
        }
        // Apply → every broker joined (Flux's quorum-full on rank 0), apply → Succeeded.
        let created = ns.status(&name, "{.metadata.creationTimestamp}");
        let joined = log
            .lines()
            .find(|l| l.contains("quorum-full"))
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or_else(|| panic!("no quorum-full line in rank 0's log:\n{log}"))
            .to_string();
        let succeeded = ns.status(
            &name,
            "{.status.conditions[?(@.type==\"Succeeded\")].lastTransitionTime}",
        );
        figures.push((
            size,
            seconds_between(&created, &joined),
            seconds_between(&created, &succeeded),
        ));
    }
    for (size, joined, done) in figures {
        println!(
            "size {size}: apply → all brokers joined {joined:.1} s, apply → Succeeded {done:.0} s"
        );
    }
}

#[test]
#[ignore = "needs the test Kubernetes cluster: KUBE_BIN (tests/run starts it)"]
fn real_kube_a_failing_command_fails_the_minicluster_with_its_code_in_seconds() {
    let ns = setup("fail");
    let c = &ns.cluster;
    let t = Instant::now();
    c.apply(&with_ns(
        &ns,
        &mc_yaml(
            c,
            "fail3",
            2,
            "",
            "      command: sh -c 'echo about to fail; exit 3'\n",
        ),
    ));
    wait_phase(&ns, "fail3", "Failed", Duration::from_secs(120));
    let took = t.elapsed();
    assert_eq!(ns.status("fail3", "{.status.exitCode}"), "3");
    let (status, reason, message) = condition(&ns, "fail3", "Failed");
    assert_eq!((status.as_str(), reason.as_str()), ("True", "Rank0Failed"));
    assert!(message.contains("code 3"), "{message}");
    // Nothing restarts it: rank 0 ran once.
    std::thread::sleep(Duration::from_secs(5));
    let rank0_pods = ns.ok(&[
        "get",
        "pods",
        "-l",
        "app.kubernetes.io/instance=fail3",
        "-o",
        r#"jsonpath={range .items[*]}{.metadata.annotations.batch\.kubernetes\.io/job-completion-index}{" "}{.status.containerStatuses[0].restartCount}{"\n"}{end}"#,
    ]);
    let zeros: Vec<&str> = rank0_pods.lines().filter(|l| l.starts_with("0 ")).collect();
    assert_eq!(
        zeros,
        ["0 0"],
        "one rank 0 pod, never restarted:\n{rank0_pods}"
    );
    let events = ns.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=fail3",
    ]);
    assert!(events.contains("Failed"), "{events}");
    println!(
        "failing command: Failed with exit code 3 {:.1} s after apply",
        took.as_secs_f64()
    );
    assert!(took < Duration::from_secs(60), "took {took:?}");
}

fn with_ns(ns: &Namespace, yaml: &str) -> String {
    yaml.replacen(
        "metadata: {name",
        &format!("metadata: {{namespace: {}, name", ns.name),
        1,
    )
}

#[test]
#[ignore = "needs the test Kubernetes cluster: KUBE_BIN (tests/run starts it)"]
fn real_kube_batch_mode_runs_every_line() {
    let ns = setup("batch");
    let c = &ns.cluster;
    c.apply(&with_ns(
        &ns,
        &mc_yaml(
            c,
            "batch",
            2,
            "",
            "      batch: true\n      command: |\n        echo first-line\n        echo second-line\n",
        ),
    ));
    wait_phase(&ns, "batch", "Succeeded", Duration::from_secs(180));
    let log = ns.ok(&["logs", &ns.pod_of_rank("batch", 0)]);
    assert!(
        log.contains("batch line 1") && log.contains("batch line 2"),
        "{log}"
    );
    assert!(
        log.contains("first-line") && log.contains("second-line"),
        "the jobs' output: {log}"
    );
}

#[test]
#[ignore = "needs the test Kubernetes cluster: KUBE_BIN (tests/run starts it)"]
fn real_kube_workers_rejoin_and_a_lost_rank0_is_reported() {
    let ns = setup("lost");
    let c = &ns.cluster;
    c.apply(&with_ns(
        &ns,
        &mc_yaml(c, "pers", 2, "  interactive: true\n", ""),
    ));
    wait_ready(&ns, "pers", 2, Duration::from_secs(120));
    let rank0 = ns.pod_of_rank("pers", 0);
    let worker = ns.pod_of_rank("pers", 1);
    ns.ok(&["delete", "pod", &worker, "--wait=false"]);
    // A new worker pod, ready (its broker joined), and the instance sees it online.
    wait_for(
        "the worker replaced and joined",
        Duration::from_secs(120),
        || {
            let now = ns.pod_of_rank("pers", 1);
            (now != worker && ns.status("pers", "{.status.ready}") == "2/2").then_some(())
        },
        || ns.describe(),
    );
    let overlay = ns.ok(&["exec", &rank0, "--", "flux", "overlay", "status"]);
    assert!(overlay.contains("pers-1: full"), "{overlay}");
    assert_eq!(ns.status("pers", "{.status.phase}"), "Running");

    // Rank 0 lost: the MiniCluster says so, and is not run again.
    ns.ok(&["delete", "pod", &rank0, "--wait=false"]);
    wait_phase(&ns, "pers", "Failed", Duration::from_secs(120));
    let (_, _, message) = condition(&ns, "pers", "Failed");
    assert!(message.contains("from outside"), "{message}");
}

#[test]
#[ignore = "needs the test Kubernetes cluster: KUBE_BIN (tests/run starts it)"]
fn real_kube_scale_2_4_2_brokers_join_and_leave() {
    let ns = setup("scale");
    let c = &ns.cluster;
    c.apply(&with_ns(
        &ns,
        &mc_yaml(c, "elastic", 2, "  maxSize: 4\n  interactive: true\n", ""),
    ));
    let ready = |n: u32| wait_ready(&ns, "elastic", n, Duration::from_secs(120));
    ready(2);
    let rank0 = ns.pod_of_rank("elastic", 0);
    let up = |n: usize| {
        let list = ns.ok(&[
            "exec", &rank0, "--", "flux", "resource", "list", "-s", "up", "-no", "{nnodes}",
        ]);
        assert_eq!(list.trim(), n.to_string(), "flux resource list -s up");
    };
    up(2);
    ns.ok(&["scale", "minicluster/elastic", "--replicas", "4"]);
    if c.minor < 27 {
        // Kubernetes before 1.27 cannot resize an Indexed Job: said, not retried silently.
        wait_for(
            "ResizeRefused",
            Duration::from_secs(60),
            || (condition(&ns, "elastic", "Resized").1 == "ResizeRefused").then_some(()),
            || ns.describe(),
        );
        assert_eq!(ns.status("elastic", "{.status.size}"), "2");
        let events = ns.ok(&["get", "events", "--field-selector", "reason=ResizeRefused"]);
        assert!(events.contains("1.27"), "{events}");
        return;
    }
    ready(4);
    wait_for(
        "4 nodes up in Flux",
        Duration::from_secs(60),
        || {
            let list = ns.ok(&[
                "exec", &rank0, "--", "flux", "resource", "list", "-s", "up", "-no", "{nnodes}",
            ]);
            (list.trim() == "4").then_some(())
        },
        || ns.describe(),
    );
    let hosts = ns.ok(&["exec", &rank0, "--", "flux", "run", "-N4", "hostname"]);
    let mut hosts: Vec<&str> = hosts.lines().collect();
    hosts.sort();
    assert_eq!(hosts, ["elastic-0", "elastic-1", "elastic-2", "elastic-3"]);
    ns.ok(&["scale", "minicluster/elastic", "--replicas", "2"]);
    wait_for(
        "two broker pods left",
        Duration::from_secs(120),
        || {
            let pods = ns.ok(&[
                "get",
                "pods",
                "-l",
                "app.kubernetes.io/instance=elastic",
                "--no-headers",
            ]);
            (pods.lines().count() == 2).then_some(())
        },
        || ns.describe(),
    );
    wait_for(
        "2 nodes up in Flux",
        Duration::from_secs(60),
        || {
            let list = ns.ok(&[
                "exec", &rank0, "--", "flux", "resource", "list", "-s", "up", "-no", "{nnodes}",
            ]);
            (list.trim() == "2").then_some(())
        },
        || ns.describe(),
    );
    // The removed brokers left cleanly; the instance runs on.
    let overlay = ns.ok(&["exec", &rank0, "--", "flux", "overlay", "status"]);
    assert!(!overlay.contains("lost"), "{overlay}");
    assert_eq!(ns.status("elastic", "{.status.phase}"), "Running");
}

#[test]
#[ignore = "needs the test Kubernetes cluster: KUBE_BIN (tests/run starts it)"]
fn real_kube_three_miniclusters_share_a_namespace_and_its_service() {
    let ns = setup("share");
    let c = &ns.cluster;
    for name in ["ma", "mb", "mc"] {
        c.apply(&with_ns(
            &ns,
            &mc_yaml(c, name, 2, "  interactive: true\n", ""),
        ));
    }
    for name in ["ma", "mb", "mc"] {
        wait_ready(&ns, name, 2, Duration::from_secs(180));
    }
    // One Service for all three, owned by each.
    let owners = ns.ok(&[
        "get",
        "service",
        "flux-service",
        "-o",
        "jsonpath={.metadata.ownerReferences[*].name}",
    ]);
    let mut owners: Vec<&str> = owners.split_whitespace().collect();
    owners.sort();
    assert_eq!(owners, ["ma", "mb", "mc"]);
    ns.ok(&["delete", "minicluster", "mb", "--wait=true"]);
    // The others keep their names and their instances work.
    for name in ["ma", "mc"] {
        let rank0 = ns.pod_of_rank(name, 0);
        let resolved = ns.ok(&[
            "exec",
            &rank0,
            "--",
            "getent",
            "hosts",
            &format!("{name}-1.flux-service.{}.svc.cluster.local", ns.name),
        ]);
        assert!(!resolved.trim().is_empty());
        let hosts = ns.ok(&["exec", &rank0, "--", "flux", "run", "-N2", "hostname"]);
        assert_eq!(hosts.lines().count(), 2, "{hosts}");
    }
    let owners = ns.ok(&[
        "get",
        "service",
        "flux-service",
        "-o",
        "jsonpath={.metadata.ownerReferences[*].name}",
    ]);
    assert!(!owners.contains("mb"), "{owners}");
    for name in ["ma", "mc"] {
        ns.ok(&["delete", "minicluster", name, "--wait=true"]);
    }
    wait_for(
        "the Service gone with its last owner",
        Duration::from_secs(60),
        || {
            ns.kubectl(&["get", "service", "flux-service"])
                .status
                .code()
                .filter(|c| *c != 0)
        },
        || ns.describe(),
    );
}

#[test]
#[ignore = "needs the test Kubernetes cluster: KUBE_BIN (tests/run starts it)"]
fn real_kube_an_operator_upgrade_reruns_nothing() {
    let ns = setup("upgrade");
    let c = &ns.cluster;
    c.apply(&with_ns(
        &ns,
        &mc_yaml(c, "done", 1, "", "      command: hostname\n"),
    ));
    c.apply(&with_ns(
        &ns,
        &mc_yaml(c, "live", 2, "  interactive: true\n", ""),
    ));
    wait_phase(&ns, "done", "Succeeded", Duration::from_secs(180));
    wait_ready(&ns, "live", 2, Duration::from_secs(180));
    let pods_before = ns.ok(&["get", "pods", "-o", "jsonpath={.items[*].metadata.uid}"]);
    let job_before = ns.ok(&["get", "job", "live", "-o", "jsonpath={.metadata.uid}"]);
    // Another runner image: another pod template for the same specs.
    c.tag_image(
        minicluster_testkit::kube::RUNNER_IMAGE,
        "minicluster.test/runner:v2",
    );
    ns.ok(&[
        "set",
        "image",
        "deployment/minicluster-operator",
        "operator=minicluster.test/runner:v2",
    ]);
    let args = ns.ok(&[
        "get",
        "deployment/minicluster-operator",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].command}",
    ]);
    let patched = args.replace(
        minicluster_testkit::kube::RUNNER_IMAGE,
        "minicluster.test/runner:v2",
    );
    ns.ok(&[
        "patch",
        "deployment/minicluster-operator",
        "--type=json",
        "-p",
        &format!(r#"[{{"op":"replace","path":"/spec/template/spec/containers/0/command","value":{patched}}}]"#),
    ]);
    ns.ok(&[
        "rollout",
        "status",
        "deployment/minicluster-operator",
        "--timeout=120s",
    ]);
    // Give the new operator time to reconcile both.
    std::thread::sleep(Duration::from_secs(15));
    let pods_after = ns.ok(&["get", "pods", "-o", "jsonpath={.items[*].metadata.uid}"]);
    let broker_pods = |all: &str| {
        let mut v: Vec<String> = all.split_whitespace().map(String::from).collect();
        v.sort();
        v
    };
    let operator_pods: Vec<String> = ns
        .ok(&[
            "get",
            "pods",
            "-l",
            "app.kubernetes.io/name=minicluster-operator",
            "-o",
            "jsonpath={.items[*].metadata.uid}",
        ])
        .split_whitespace()
        .map(String::from)
        .collect();
    let keep = |v: Vec<String>| -> Vec<String> {
        v.into_iter()
            .filter(|u| !operator_pods.contains(u))
            .collect()
    };
    let before: Vec<String> = keep(broker_pods(&pods_before));
    let after: Vec<String> = keep(broker_pods(&pods_after));
    // The old operator pod is gone from `after`; every broker pod is the same pod.
    assert!(
        after.iter().all(|u| before.contains(u)),
        "new pods appeared:\nbefore {before:?}\nafter {after:?}\n{}",
        ns.describe()
    );
    assert_eq!(
        ns.ok(&["get", "job", "live", "-o", "jsonpath={.metadata.uid}"]),
        job_before
    );
    assert_eq!(ns.status("done", "{.status.phase}"), "Succeeded");
    assert_eq!(ns.status("live", "{.status.ready}"), "2/2");
}

#[test]
#[ignore = "needs the test Kubernetes cluster: KUBE_BIN (tests/run starts it)"]
fn real_kube_edits_deletion_cleanup_and_a_bad_image() {
    let ns = setup("edits");
    let c = &ns.cluster;
    c.apply(&with_ns(
        &ns,
        &mc_yaml(c, "ed", 2, "  interactive: true\n", ""),
    ));
    wait_ready(&ns, "ed", 2, Duration::from_secs(180));
    let job = ns.ok(&["get", "job", "ed", "-o", "jsonpath={.metadata.uid}"]);
    // An invalid edit (beyond maxSize) changes nothing and says why; status still
    // describes what runs.
    ns.ok(&[
        "patch",
        "minicluster",
        "ed",
        "--type=merge",
        "-p",
        r#"{"spec":{"size":8}}"#,
    ]);
    wait_for(
        "Validated=False",
        Duration::from_secs(60),
        || (condition(&ns, "ed", "Validated").0 == "False").then_some(()),
        || ns.describe(),
    );
    assert_eq!(condition(&ns, "ed", "Validated").1, "SizeRefused");
    assert_eq!(ns.status("ed", "{.status.phase}"), "Running");
    assert_eq!(ns.status("ed", "{.status.ready}"), "2/2");
    assert_eq!(
        ns.ok(&["get", "job", "ed", "-o", "jsonpath={.metadata.uid}"]),
        job
    );
    // A real edit of the spec replaces the Job (brokers restart).
    ns.ok(&[
        "patch",
        "minicluster",
        "ed",
        "--type=merge",
        "-p",
        r#"{"spec":{"size":2,"containers":[{"image":"IMG","environment":{"EDITED":"1"}}]}}"#
            .replace("IMG", &c.flux_image)
            .as_str(),
    ]);
    wait_for(
        "the Job replaced",
        Duration::from_secs(120),
        || {
            let now = ns.ok(&[
                "get",
                "job",
                "ed",
                "--ignore-not-found",
                "-o",
                "jsonpath={.metadata.uid}",
            ]);
            (!now.is_empty() && now != job).then_some(())
        },
        || ns.describe(),
    );
    wait_ready(&ns, "ed", 2, Duration::from_secs(180));
    // Deleting the MiniCluster removes everything it made.
    ns.ok(&["delete", "minicluster", "ed", "--wait=true"]);
    wait_for(
        "nothing left of ed",
        Duration::from_secs(120),
        || {
            let left = ns.ok(&[
                "get",
                "jobs,pods,secrets,configmaps,services",
                "-l",
                "app.kubernetes.io/instance=ed",
                "--no-headers",
            ]);
            let svc = ns.kubectl(&["get", "service", "flux-service"]);
            (left.trim().is_empty() && !svc.status.success()).then_some(())
        },
        || ns.describe(),
    );
    // cleanup: true deletes the MiniCluster once rank 0 finished.
    c.apply(&with_ns(
        &ns,
        &mc_yaml(
            c,
            "clean",
            1,
            "  cleanup: true\n",
            "      command: hostname\n",
        ),
    ));
    wait_for(
        "clean deleted after it finished",
        Duration::from_secs(180),
        || {
            (!ns.kubectl(&["get", "minicluster", "clean"])
                .status
                .success())
            .then_some(())
        },
        || ns.describe(),
    );
    // An image that cannot be pulled: a condition and an event say so.
    c.apply(&with_ns(
        &ns,
        &mc_yaml(c, "badimg", 1, "", "      command: hostname\n")
            .replace(&c.flux_image, "registry.invalid/none:1"),
    ));
    wait_for(
        "ImagePullFailed",
        Duration::from_secs(120),
        || (condition(&ns, "badimg", "BrokersReady").1 == "ImagePullFailed").then_some(()),
        || ns.describe(),
    );
    let (_, _, message) = condition(&ns, "badimg", "BrokersReady");
    assert!(message.contains("registry.invalid/none:1"), "{message}");
    let events = ns.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=badimg,reason=ImagePullFailed",
    ]);
    assert!(events.contains("registry.invalid"), "{events}");
}

#[test]
#[ignore = "needs the test Kubernetes cluster: KUBE_BIN (tests/run starts it)"]
fn real_kube_cluster_wide_install_as_the_readme_says() {
    // `minicluster manifests --out DIR --image IMG` and `kubectl apply -f DIR`, as README's
    // operator section says, then a MiniCluster in a namespace of the test's own.
    let c = TestCluster::get();
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(minicluster())
        .args(["manifests", "--out"])
        .arg(dir.path())
        .args(["--image", minicluster_testkit::kube::RUNNER_IMAGE])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let d = dir.path().to_str().unwrap();
    c.ok(&["apply", "-f", d]);
    let installed = ClusterWide {
        c: c.clone(),
        dir: d.to_string(),
    };
    c.ok(&[
        "rollout",
        "status",
        "-n",
        "minicluster-system",
        "deployment/minicluster-operator",
        "--timeout=120s",
    ]);
    let ns = Namespace::new(&c, "clusterwide");
    // README's example for the test cluster, as it is (its image is the one `up` imports).
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/test-cluster.yaml");
    let text = std::fs::read_to_string(&example).unwrap();
    assert!(
        text.contains(&c.flux_image),
        "examples/test-cluster.yaml names {}",
        c.flux_image
    );
    ns.ok(&["apply", "-f", example.to_str().unwrap()]);
    wait_phase(&ns, "hello-test", "Succeeded", Duration::from_secs(180));
    assert_eq!(ns.status("hello-test", "{.status.exitCode}"), "0");
    if c.minor >= 28 {
        let log = ns.ok(&[
            "logs",
            "-l",
            "app.kubernetes.io/instance=hello-test,batch.kubernetes.io/job-completion-index=0",
            "--tail=-1",
        ]);
        assert!(
            log.contains("hello-test-0") && log.contains("hello-test-1"),
            "{log}"
        );
    }
    drop(ns);
    drop(installed);
}

/// The cluster-wide install, removed (all but the CRD, which other tests share) when the test
/// ends.
struct ClusterWide {
    c: TestCluster,
    dir: String,
}

impl Drop for ClusterWide {
    fn drop(&mut self) {
        for f in ["operator.yaml", "rbac.yaml", "namespace.yaml"] {
            let _ = self
                .c
                .kubectl(&[
                    "delete",
                    "--ignore-not-found",
                    "--wait=true",
                    "-f",
                    &format!("{}/{f}", self.dir),
                ])
                .output();
        }
    }
}

#[test]
#[ignore = "needs the test Kubernetes cluster: KUBE_BIN (tests/run starts it)"]
fn real_kube_a_broker_with_another_clusters_certificate_fails_with_the_cause() {
    let ns = setup("cert");
    let c = &ns.cluster;
    c.apply(&with_ns(
        &ns,
        &mc_yaml(c, "certs", 2, "  interactive: true\n", ""),
    ));
    wait_ready(&ns, "certs", 2, Duration::from_secs(120));
    // Another keypair in the Secret: rank 0 keeps the one it started with, a worker started
    // now gets the other.
    let other = minicluster_core::CurveCert::generate("certs-0")
        .unwrap()
        .to_text();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("curve.cert");
    std::fs::write(&file, other).unwrap();
    let secret = ns.ok(&[
        "create",
        "secret",
        "generic",
        "certs-curve-cert",
        &format!("--from-file=curve.cert={}", file.display()),
        "--dry-run=client",
        "-o",
        "yaml",
    ]);
    c.apply(&secret.replace(
        "metadata:\n",
        &format!("metadata:\n  namespace: {}\n", ns.name),
    ));
    let worker = ns.pod_of_rank("certs", 1);
    let t = Instant::now();
    ns.ok(&["delete", "pod", &worker, "--wait=false"]);
    wait_phase(&ns, "certs", "Failed", Duration::from_secs(120));
    let (_, _, message) = condition(&ns, "certs", "Failed");
    assert!(
        message.starts_with("rank 1 exited with code 125: ")
            && message.contains("does not hold this MiniCluster's certificate: the CURVE handshake was refused (fix: give every broker the same certificate — the Secret certs-curve-cert"),
        "{message}"
    );
    println!(
        "mismatched certificate: Failed, naming the cause, {:.1} s after the worker was replaced",
        t.elapsed().as_secs_f64()
    );
}
