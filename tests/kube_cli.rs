//! `minicluster run/up/status/logs/down --launcher kubernetes` on the test cluster, with the
//! operator (a namespaced one of the test's own) and without it (`--no-operator`): output,
//! exit codes, Ctrl-C and SIGTERM, and that nothing is left in the namespace afterwards.
//! Named `real_kube_`, ignored unless asked for (`tests/run` runs them with `KUBE_BIN`).

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use minicluster_testkit::kube::{Namespace, RUNNER_IMAGE, TestCluster, wait_for};

fn minicluster() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_minicluster"))
}

/// The CLI pointed at the test cluster, with a state directory of its own (`run` and `up`
/// get the namespace; later commands find it in the launch record).
fn cli(ns: &Namespace, state: &Path, args: &[&str]) -> Command {
    let mut all: Vec<&str> = args.to_vec();
    if matches!(args.first(), Some(&"run") | Some(&"up")) {
        let at = all.iter().position(|a| *a == "--").unwrap_or(all.len());
        all.splice(at..at, ["--namespace", ns.name.as_str()]);
    }
    let mut c = Command::new(minicluster());
    c.args(&all)
        .env("KUBECONFIG", &ns.cluster.kubeconfig)
        .env("MINICLUSTER_STATE_DIR", state)
        .env_remove("MINICLUSTER_RUNNER_IMAGE")
        .stdin(Stdio::null());
    c
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `VERB --launcher kubernetes` of MiniCluster `name`: 2 brokers of `image`, with or without
/// the operator.
fn launch_args<'a>(
    verb: &'a str,
    name: &'a str,
    image: &'a str,
    no_operator: bool,
) -> Vec<&'a str> {
    let mut args = vec![
        verb,
        "--launcher",
        "kubernetes",
        "--image",
        image,
        "--size",
        "2",
        "--name",
        name,
    ];
    if no_operator {
        args.extend(["--no-operator", "--runner-image", RUNNER_IMAGE]);
    }
    args
}

/// `run --launcher kubernetes` of `cmd` on 2 brokers (MiniCluster `r`), not started yet.
fn run_command(ns: &Namespace, state: &Path, no_operator: bool, cmd: &[&str]) -> Command {
    let mut args = launch_args("run", "r", &ns.cluster.flux_image, no_operator);
    args.push("--");
    args.extend_from_slice(cmd);
    cli(ns, state, &args)
}

/// [`run_command`] to its end.
fn run(ns: &Namespace, state: &Path, no_operator: bool, cmd: &[&str]) -> Output {
    run_command(ns, state, no_operator, cmd).output().unwrap()
}

/// Nothing of MiniCluster `name` is left in the namespace.
fn assert_nothing_left(ns: &Namespace, name: &str) {
    wait_for(
        &format!("nothing left of {name}"),
        Duration::from_secs(90),
        || {
            let left = ns.ok(&[
                "get",
                "miniclusters,jobs,pods,secrets,configmaps",
                "-l",
                &format!("app.kubernetes.io/instance={name}"),
                "--no-headers",
            ]);
            let mc = ns.kubectl(&["get", "minicluster", name]).status.success();
            let svc = ns
                .kubectl(&["get", "service", "flux-service"])
                .status
                .success();
            (left.trim().is_empty() && !mc && !svc).then_some(())
        },
        || ns.describe(),
    );
}

fn output_and_exit_codes(no_operator: bool) {
    let c = TestCluster::get();
    let ns = Namespace::new(&c, if no_operator { "run-noop" } else { "run-op" });
    if !no_operator {
        ns.install_operator(minicluster(), &[]);
    }
    let state = tempfile::tempdir().unwrap();
    let t = Instant::now();
    let out = run(&ns, state.path(), no_operator, &["hostname"]);
    let took = t.elapsed();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        text(&out.stderr),
        ns.describe()
    );
    let mut hosts: Vec<String> = text(&out.stdout).lines().map(String::from).collect();
    hosts.sort();
    assert_eq!(hosts, ["r-0", "r-1"], "{}", text(&out.stderr));
    println!(
        "run --launcher kubernetes{} --size 2 -- hostname: {:.1} s",
        if no_operator { " --no-operator" } else { "" },
        took.as_secs_f64()
    );
    assert_nothing_left(&ns, "r");
    let out = run(
        &ns,
        state.path(),
        no_operator,
        &["sh", "-c", "echo failing; exit 3"],
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("failing"));
    assert_nothing_left(&ns, "r");

    // Ctrl-C and SIGTERM stop the run and delete what it applied.
    for (signal, code) in [("INT", 130), ("TERM", 143)] {
        let child = run_command(&ns, state.path(), no_operator, &["sleep", "600"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_for(
            "rank 0 running",
            Duration::from_secs(120),
            || {
                let phase = ns.ok(&[
                    "get",
                    "pods",
                    "-l",
                    "app.kubernetes.io/instance=r",
                    "-o",
                    "jsonpath={.items[*].status.phase}",
                ]);
                (phase.split_whitespace().filter(|p| *p == "Running").count() == 2).then_some(())
            },
            || ns.describe(),
        );
        Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(code),
            "{signal}: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).contains(&format!("SIG{signal}")),
            "{}",
            text(&out.stderr)
        );
        assert_nothing_left(&ns, "r");
    }
}

#[test]
#[ignore = "needs the test Kubernetes cluster: KUBE_BIN (tests/run starts it)"]
fn real_kube_run_with_the_operator() {
    output_and_exit_codes(false);
}

#[test]
#[ignore = "needs the test Kubernetes cluster: KUBE_BIN (tests/run starts it)"]
fn real_kube_run_without_an_operator() {
    output_and_exit_codes(true);
}

fn up_status_logs_down(no_operator: bool) {
    let c = TestCluster::get();
    let ns = Namespace::new(&c, if no_operator { "up-noop" } else { "up-op" });
    if !no_operator {
        ns.install_operator(minicluster(), &[]);
    }
    let state = tempfile::tempdir().unwrap();
    let args = launch_args("up", "u", &c.flux_image, no_operator);
    let out = cli(&ns, state.path(), &args).output().unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stderr),
        ns.describe()
    );
    // The hint works as printed.
    let stdout = text(&out.stdout);
    let hint = stdout
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("kubectl exec"))
        .unwrap_or_else(|| panic!("no kubectl exec hint: {stdout}"))
        .to_string();
    let ran = Command::new("sh")
        .args(["-c", &hint])
        .env("KUBECONFIG", &c.kubeconfig)
        .env(
            "PATH",
            format!(
                "{}:{}",
                minicluster_testkit::kube::kubectl_path()
                    .parent()
                    .unwrap()
                    .display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .output()
        .unwrap();
    assert!(ran.status.success(), "{hint}: {}", text(&ran.stderr));
    let mut hosts: Vec<String> = text(&ran.stdout).lines().map(String::from).collect();
    hosts.sort();
    assert_eq!(hosts, ["u-0", "u-1"], "{hint}");

    let status = cli(&ns, state.path(), &["status", "--json"])
        .output()
        .unwrap();
    let rows: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(rows[0]["name"], "u");
    assert_eq!(rows[0]["launcher"], "kubernetes");
    assert_eq!(rows[0]["running"], 2, "{rows}");
    let logs = cli(&ns, state.path(), &["logs", "u", "--rank", "1"])
        .output()
        .unwrap();
    // From flags a MiniCluster is quiet: the log is read, whatever it holds.
    assert!(logs.status.success(), "{}", text(&logs.stderr));
    let beyond = cli(&ns, state.path(), &["logs", "u", "--rank", "7"])
        .output()
        .unwrap();
    assert_eq!(beyond.status.code(), Some(1));
    assert!(
        text(&beyond.stderr).contains("rank 7 is not in u"),
        "{}",
        text(&beyond.stderr)
    );
    let down = cli(&ns, state.path(), &["down", "u"]).output().unwrap();
    assert!(down.status.success(), "{}", text(&down.stderr));
    assert_nothing_left(&ns, "u");
    let again = cli(&ns, state.path(), &["down", "u"]).output().unwrap();
    assert_eq!(again.status.code(), Some(1));
    assert!(
        std::fs::read_dir(state.path()).unwrap().next().is_none(),
        "the launch record is gone"
    );
}

#[test]
#[ignore = "needs the test Kubernetes cluster: KUBE_BIN (tests/run starts it)"]
fn real_kube_up_status_logs_down_with_the_operator() {
    up_status_logs_down(false);
}

#[test]
#[ignore = "needs the test Kubernetes cluster: KUBE_BIN (tests/run starts it)"]
fn real_kube_up_status_logs_down_without_an_operator() {
    up_status_logs_down(true);
}
