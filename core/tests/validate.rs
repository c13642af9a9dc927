//! Validation reports every problem at once, each with its field path and a fix.

use minicluster_core::spec::{load_bytes, validate};
use minicluster_core::{DescribeOptions, Error, Mode, describe};

fn spec(body: &str) -> String {
    format!(
        "apiVersion: flux-framework.org/v1alpha2\nkind: MiniCluster\nmetadata:\n  name: mc\nspec:\n{body}"
    )
}

/// The field paths of every problem in `body`.
fn problems(body: &str) -> Vec<String> {
    let loaded = load_bytes("test.yaml", spec(body).as_bytes()).unwrap();
    let errs = validate(&loaded.clusters[0].cluster);
    for e in &errs {
        assert!(!e.fix.is_empty(), "{e} has no fix");
    }
    errs.into_iter().map(|e| e.path).collect()
}

const OK_CONTAINER: &str = "  containers:\n    - image: ubuntu:noble\n      command: hostname\n";

#[test]
fn a_plain_spec_is_valid() {
    assert!(problems(OK_CONTAINER).is_empty());
}

#[test]
fn each_rule_names_its_field() {
    let cases: &[(&str, &str)] = &[
        ("  size: 0\n", "spec.size"),
        ("  size: 4\n  maxSize: 2\n", "spec.maxSize"),
        ("  size: 2\n  minSize: 3\n", "spec.minSize"),
        ("  tasks: 0\n", "spec.tasks"),
        ("  deadlineSeconds: 0\n", "spec.deadlineSeconds"),
        ("  backoffLimit: -1\n", "spec.backoffLimit"),
        (
            "  flux:\n    connectTimeout: soon\n",
            "spec.flux.connectTimeout",
        ),
        ("  flux:\n    logLevel: 8\n", "spec.flux.logLevel"),
        ("  flux:\n    topology: star\n", "spec.flux.topology"),
        (
            "  flux:\n    scheduler:\n      queuePolicy: lifo\n",
            "spec.flux.scheduler.queuePolicy",
        ),
        ("  flux:\n    curveCert: garbage\n", "spec.flux.curveCert"),
        (
            "  flux:\n    brokerConfig: '[bootstrap'\n",
            "spec.flux.brokerConfig",
        ),
        (
            "  flux:\n    container:\n      mountPath: mnt\n",
            "spec.flux.container.mountPath",
        ),
        (
            "  flux:\n    bursting:\n      hostlist: 'a-[1'\n",
            "spec.flux.bursting.hostlist",
        ),
        (
            "  network:\n    headlessName: 9svc\n",
            "spec.network.headlessName",
        ),
        (
            "  pod:\n    restartPolicy: Always\n",
            "spec.pod.restartPolicy",
        ),
        (
            "  pod:\n    resources:\n      cpu: lots\n",
            "spec.pod.resources.cpu",
        ),
        (
            "  pod:\n    tolerations:\n      - operator: Maybe\n",
            "spec.pod.tolerations[0].operator",
        ),
        ("  archive:\n    path: relative\n", "spec.archive.path"),
        (
            "  jobLabels:\n    'bad key!': x\n",
            "spec.jobLabels.bad key!",
        ),
    ];
    for (body, path) in cases {
        let got = problems(&format!("{body}{OK_CONTAINER}"));
        assert_eq!(got, [path.to_string()], "for {body:?}");
    }
}

#[test]
fn container_rules() {
    let cases: &[(&str, &[&str])] = &[
        ("  containers: []\n", &["spec.containers"]),
        (
            "  containers:\n    - image: a\n      launcher: true\n      batch: true\n      command: x\n",
            &["spec.containers[0].launcher"],
        ),
        (
            "  containers:\n    - image: a\n      batchRaw: true\n      command: x\n",
            &["spec.containers[0].batchRaw"],
        ),
        (
            "  containers:\n    - image: a\n",
            &["spec.containers[0].command"],
        ),
        (
            "  containers:\n    - image: ''\n      command: x\n",
            &["spec.containers[0].image"],
        ),
        (
            "  containers:\n    - image: a\n      command: x\n      ports: [0]\n",
            &["spec.containers[0].ports[0]"],
        ),
        (
            "  containers:\n    - image: a\n      command: x\n      imagePullPolicy: Sometimes\n",
            &["spec.containers[0].imagePullPolicy"],
        ),
        (
            "  containers:\n    - image: a\n      command: x\n      volumes:\n        data: {}\n",
            &["spec.containers[0].volumes.data.path"],
        ),
        (
            "  containers:\n    - image: a\n      command: x\n      volumes:\n        data: {path: /d, hostPath: /d, claimName: c}\n",
            &["spec.containers[0].volumes.data"],
        ),
        (
            "  containers:\n    - image: a\n      command: x\n    - image: b\n      name: side\n",
            &["spec.containers"],
        ),
        (
            "  containers:\n    - image: a\n      command: x\n      runFlux: true\n    - image: b\n",
            &["spec.containers[1].name"],
        ),
        (
            "  containers:\n    - {image: a, command: x, runFlux: true}\n    - {image: b, runFlux: true, name: b}\n",
            &["spec.containers"],
        ),
        (
            "  containers:\n    - {image: a, command: x, runFlux: true, name: s}\n    - {image: b, name: s}\n",
            &["spec.containers[1].name"],
        ),
        (
            "  containers:\n    - image: a\n      command: x\n      resources:\n        limits:\n          memory: 1GB\n",
            &["spec.containers[0].resources.limits.memory"],
        ),
    ];
    for (body, paths) in cases {
        assert_eq!(problems(body), *paths, "for {body:?}");
    }
}

#[test]
fn all_problems_are_reported_together() {
    let got = problems("  size: 0\n  tasks: 0\n  flux:\n    logLevel: 99\n  containers: []\n");
    assert_eq!(
        got,
        [
            "spec.size",
            "spec.tasks",
            "spec.containers",
            "spec.flux.logLevel"
        ]
    );
}

#[test]
fn long_names_would_make_invalid_hostnames() {
    let name = "a".repeat(61);
    let text = format!(
        "apiVersion: flux-framework.org/v1alpha2\nkind: MiniCluster\nmetadata:\n  name: {name}\nspec:\n  size: 100\n{OK_CONTAINER}"
    );
    let mc = &load_bytes("t", text.as_bytes()).unwrap().clusters[0].cluster;
    let errs = validate(mc);
    assert_eq!(errs.len(), 1);
    assert!(errs[0].problem.contains("63"), "{}", errs[0]);
    assert!(errs[0].fix.contains("at most 60"), "{}", errs[0]);
}

#[test]
fn describe_refuses_an_invalid_spec_with_every_problem() {
    let text = spec("  size: 0\n  containers: []\n");
    let mc = &load_bytes("t", text.as_bytes()).unwrap().clusters[0].cluster;
    match describe(mc, &DescribeOptions::default()) {
        Err(Error::Invalid(errs)) => assert_eq!(errs.len(), 2),
        other => panic!("expected Invalid, got {other:?}"),
    }
}

fn describe_body(body: &str) -> minicluster_core::ClusterDescription {
    let text = spec(body);
    let mc = &load_bytes("t", text.as_bytes()).unwrap().clusters[0].cluster;
    describe(mc, &DescribeOptions::default()).unwrap()
}

#[test]
fn mode_follows_the_spec() {
    assert_eq!(describe_body(OK_CONTAINER).mode, Mode::Submit);
    assert_eq!(
        describe_body("  interactive: true\n  containers:\n    - image: a\n").mode,
        Mode::Interactive
    );
    assert_eq!(
        describe_body("  containers:\n    - {image: a, command: x, launcher: true}\n").mode,
        Mode::Launcher
    );
    assert_eq!(
        describe_body("  containers:\n    - {image: a, command: x, batch: true}\n").mode,
        Mode::Batch
    );
}

#[test]
fn broker_options_follow_the_spec() {
    let d = describe_body(&format!(
        "  size: 4\n  maxSize: 10\n  minSize: 3\n  interactive: true\n  logging:\n    zeromq: true\n  flux:\n    topology: binomial\n    logLevel: 5\n    connectTimeout: 30s\n{OK_CONTAINER}"
    ));
    let opts = &d.flux.broker_options;
    for want in [
        "-Slog-stderr-level=5",
        "-Stbon.connect_timeout=30s",
        "-Sbroker.quorum=3",
        "-Stbon.topo=binomial",
        "-Stbon.zmqdebug=1",
        "-Sbroker.rc2_none",
    ] {
        assert!(
            opts.iter().any(|o| o == want),
            "{want} missing from {opts:?}"
        );
    }
    assert_eq!(d.hostlist, "mc-[0-9]");
    assert_eq!((d.size, d.max_size, d.quorum), (4, 10, 3));
    // Without minSize every started broker is needed, but never the ones not started yet.
    let d = describe_body(&format!("  size: 2\n  maxSize: 8\n{OK_CONTAINER}"));
    assert!(
        d.flux
            .broker_options
            .contains(&"-Sbroker.quorum=2".to_string())
    );
    assert!(
        !d.flux
            .broker_options
            .iter()
            .any(|o| o.starts_with("-Sbroker.rc2_none"))
    );
}

#[test]
fn the_topology_defaults_to_flat_on_a_network_and_to_flux_starts_tree_on_one_machine() {
    let topo = |body: &str, opts: &DescribeOptions| {
        let text = spec(body);
        let mc = &load_bytes("t", text.as_bytes()).unwrap().clusters[0].cluster;
        describe(mc, opts)
            .unwrap()
            .flux
            .broker_options
            .into_iter()
            .find(|o| o.starts_with("-Stbon.topo="))
    };
    let network = DescribeOptions::default();
    let loopback = DescribeOptions {
        loopback_base_port: Some(40000),
        ..DescribeOptions::default()
    };
    // As flux-operator: config bootstrap's own default (rank 0 the parent of every broker).
    assert_eq!(topo(OK_CONTAINER, &network), None);
    assert_eq!(
        topo(OK_CONTAINER, &loopback).as_deref(),
        Some("-Stbon.topo=kary:32")
    );
    let minimal = format!("  flux:\n    minimalService: true\n{OK_CONTAINER}");
    assert_eq!(
        topo(&minimal, &network).as_deref(),
        Some("-Stbon.topo=kary:0")
    );
    let named = format!("  flux:\n    topology: binomial\n{OK_CONTAINER}");
    assert_eq!(
        topo(&named, &loopback).as_deref(),
        Some("-Stbon.topo=binomial")
    );
}

#[test]
fn tasks_are_never_fewer_than_brokers_and_env_merges() {
    let d = describe_body(
        "  size: 4\n  tasks: 1\n  flux:\n    environment: {A: flux, B: flux}\n  containers:\n    - image: a\n      command: x\n      environment: {B: app}\n",
    );
    assert_eq!(d.tasks, 4);
    assert_eq!(d.environment.get("A").map(String::as_str), Some("flux"));
    assert_eq!(d.environment.get("B").map(String::as_str), Some("app"));
}

#[test]
fn cluster_domain_and_namespace_are_parameters() {
    let text = spec(OK_CONTAINER);
    let mc = &load_bytes("t", text.as_bytes()).unwrap().clusters[0].cluster;
    let opts = DescribeOptions {
        namespace: "hpc".into(),
        cluster_domain: "example.org".into(),
        ..DescribeOptions::default()
    };
    let d = describe(mc, &opts).unwrap();
    assert_eq!(
        d.network.connect,
        "tcp://%h.flux-service.hpc.svc.example.org:%p"
    );
    let back = minicluster_core::ClusterDescription::from_json(&d.to_json()).unwrap();
    assert_eq!(back, d);
}

#[test]
fn an_emptydir_without_a_path_is_shared_memory() {
    for volume in [
        "{emptyDir: true}",
        "{emptyDir: true, emptyDirMedium: memory}",
        "{emptyDir: true, emptyDirMedium: Memory, emptyDirSizeLimit: 1Gi}",
    ] {
        let body = format!("{OK_CONTAINER}      volumes:\n        shm: {volume}\n");
        assert!(problems(&body).is_empty(), "{volume}");
        let text = spec(&body);
        let mc = &load_bytes("t", text.as_bytes()).unwrap().clusters[0].cluster;
        let vol = &mc.spec.containers[0].volumes["shm"];
        assert_eq!(vol.mount_path(), Some("/dev/shm"), "{volume}");
    }
    let text = spec(&format!(
        "{OK_CONTAINER}      volumes:\n        scratch: {{emptyDir: true, path: /scratch, emptyDirMedium: memory}}\n"
    ));
    let mc = &load_bytes("t", text.as_bytes()).unwrap().clusters[0].cluster;
    let vol = &mc.spec.containers[0].volumes["scratch"];
    assert_eq!(vol.mount_path(), Some("/scratch"), "a given path is kept");
    assert_eq!(vol.kubernetes_medium().as_deref(), Some("Memory"));
    assert_eq!(
        problems(&format!(
            "{OK_CONTAINER}      volumes:\n        shm: {{emptyDir: true, emptyDirMedium: ssd}}\n"
        )),
        ["spec.containers[0].volumes.shm.emptyDirMedium"]
    );
}

/// The one problem of `body`, as `render` prints it.
fn only_problem(body: &str) -> String {
    let loaded = load_bytes("test.yaml", spec(body).as_bytes()).unwrap();
    let errs = validate(&loaded.clusters[0].cluster);
    assert_eq!(errs.len(), 1, "{errs:?}");
    errs[0].to_string()
}

#[test]
fn a_script_stands_in_for_the_command() {
    let script = "  containers:\n    - image: a\n      commands:\n        script: |\n          #!/bin/bash\n          echo \"rank \\${FLUX_TASK_RANK}\"\n";
    assert!(problems(script).is_empty());
    let d = describe_body(script);
    assert_eq!(d.mode, Mode::Submit);
    assert_eq!(d.command, None);
    assert_eq!(
        d.hooks.script.as_deref(),
        Some("#!/bin/bash\necho \"rank ${FLUX_TASK_RANK}\"\n"),
        "escaped as in a here-document"
    );
    let launcher = format!("{script}      launcher: true\n");
    assert_eq!(describe_body(&launcher).mode, Mode::Launcher);

    let both = format!("{script}      command: hostname\n");
    let e = only_problem(&both);
    assert!(
        e.starts_with("spec.containers[0].commands.script: is given with command")
            && e.contains("keep either command or commands.script"),
        "{e}"
    );
    let batch = format!("{script}      batch: true\n");
    let e = only_problem(&batch);
    assert!(
        e.starts_with("spec.containers[0].commands.script: is given with batch: true"),
        "{e}"
    );
}

#[test]
fn a_flux_job_inside_submit_mode_is_refused_with_the_fix() {
    let e = only_problem(
        "  size: 3\n  containers:\n    - image: a\n      command: flux run -N3 hostname\n",
    );
    assert_eq!(
        e,
        "spec.containers[0].command: `flux run -N3 hostname` in the command would start a Flux job inside the job submit mode runs the command as (`flux submit -N 3 … --watch`); the inner job waits for brokers the outer job holds, so the MiniCluster would hang (fix: set launcher: true on this container, so the command runs once, on rank 0, and `flux run -N3` gets the whole MiniCluster; or drop `flux run -N3` from the command, as submit mode already runs it on every broker (spec.size, spec.tasks))"
    );
    for command in [
        "flux submit --wait ./app",
        "sh -c 'cd /data && flux run -N2 ./app'",
        "flux mini batch -N2 job.sh",
        "flux alloc -N2 ./app",
    ] {
        let body = format!("  containers:\n    - image: a\n      command: \"{command}\"\n");
        assert_eq!(problems(&body), ["spec.containers[0].command"], "{command}");
    }
    let script = "  containers:\n    - image: a\n      commands:\n        script: |\n          cd /data\n          flux run -N2 ./app\n";
    let e = only_problem(script);
    assert!(
        e.starts_with("spec.containers[0].commands.script: `flux run -N2 ./app` in the script"),
        "{e}"
    );
    // Where the command is rank 0's own program, Flux jobs are what it is for.
    for fine in [
        "      command: flux run -N2 hostname\n      launcher: true\n",
        "      command: flux run -N2 hostname\n      batch: true\n",
        "      command: flux resource list\n",
        "      command: flux start flux run -N2 hostname\n",
    ] {
        let body = format!("  containers:\n    - image: a\n{fine}");
        assert!(problems(&body).is_empty(), "{fine}");
    }
    let interactive = "  interactive: true\n  containers:\n    - image: a\n      command: flux run -N2 hostname\n";
    assert!(problems(interactive).is_empty());
}
