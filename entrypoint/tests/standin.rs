//! The stand-in must fail where Flux fails, or the cluster tests that use it prove nothing.
//! Each case starts from files the entrypoint wrote for a working broker, breaks one thing,
//! and runs the broker command the entrypoint would run.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::*;

/// A one-broker MiniCluster whose rank 0 has run once (files in place), and the broker
/// command the entrypoint runs for it.
fn prepared() -> (Cluster, Vec<String>, serde_json::Value) {
    let c = Cluster::new(
        &spec_yaml(1, "", "      launcher: true\n      command: 'true'\n"),
        &PathBuf::from(STANDIN),
    );
    let out = c.run_rank0(Duration::from_secs(30));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dry = c.command(0).args(["--dry-run", "--json"]).output().unwrap();
    let plan: serde_json::Value = serde_json::from_slice(&dry.stdout).unwrap();
    let argv: Vec<String> = plan["broker"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    (c, argv, plan)
}

fn run(argv: &[String]) -> (bool, String) {
    let out = Command::new(&argv[0]).args(&argv[1..]).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn cert_path(plan: &serde_json::Value) -> PathBuf {
    PathBuf::from(plan["cert_path"].as_str().unwrap())
}

#[test]
fn the_entrypoints_files_pass() {
    let (_c, argv, _) = prepared();
    let (ok, err) = run(&argv);
    assert!(ok, "{err}");
}

#[test]
fn a_group_readable_cert_is_refused() {
    let (_c, argv, plan) = prepared();
    std::fs::set_permissions(cert_path(&plan), std::fs::Permissions::from_mode(0o640)).unwrap();
    let (ok, err) = run(&argv);
    assert!(!ok);
    assert!(err.contains("readable by group/other"), "{err}");
}

#[test]
fn a_wrong_hostname_is_refused() {
    let (_c, mut argv, _) = prepared();
    let h = argv
        .iter()
        .position(|a| a.starts_with("-Shostname="))
        .unwrap();
    argv[h] = "-Shostname=mc-9".into();
    let (ok, err) = run(&argv);
    assert!(!ok);
    assert!(
        err.contains("\"mc-9\" not found in bootstrap.hosts"),
        "{err}"
    );
}

#[test]
fn a_malformed_cert_and_an_unknown_config_key_are_refused() {
    let (c, argv, plan) = prepared();
    let cert = cert_path(&plan);
    let text = std::fs::read_to_string(&cert).unwrap();
    std::fs::write(&cert, text.replace("public-key", "publik-key")).unwrap();
    let (ok, err) = run(&argv);
    assert!(!ok && err.contains("CURVE"), "{err}");
    std::fs::write(&cert, text).unwrap();

    let config = PathBuf::from(plan["files"][0]["path"].as_str().unwrap());
    let toml = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        toml.replace("[bootstrap]\n", "[bootstrap]\nzmq_debug = true\n"),
    )
    .unwrap();
    let (ok, err) = run(&argv);
    assert!(!ok && err.contains("unknown key \"zmq_debug\""), "{err}");
    drop(c);
}

#[test]
fn a_broker_with_another_cert_cannot_join() {
    let c = Cluster::new(
        &spec_yaml_flux(
            2,
            "    completeWorkers: true\n",
            "",
            "      command: hostname\n",
        ),
        &PathBuf::from(STANDIN),
    );
    // Rank 1 is given a certificate of its own instead of waiting for the shared one.
    let other = c.path("other.cert");
    minicluster_core::CurveCert::generate("stranger")
        .unwrap()
        .write(&other)
        .unwrap();
    let rank0 = c
        .command(0)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Its entrypoint's CURVE handshake with rank 0 fails before its broker starts.
    let rank1 = c.command_with_cert(1, &other).output().unwrap();
    let err = String::from_utf8_lossy(&rank1.stderr);
    assert_eq!(rank1.status.code(), Some(125), "{err}");
    assert!(
        err.contains("does not hold this MiniCluster's certificate: the CURVE handshake was refused (fix: give every broker the same certificate"),
        "{err}"
    );
    assert!(
        !err.contains("flux-standin: rank 1"),
        "its broker started:\n{err}"
    );
    // Rank 0 never reaches its quorum; stop it as a user would.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(rank0.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let code = wait_output(rank0, Duration::from_secs(10)).status.code();
    assert_eq!(code, Some(143), "the broker's exit code on SIGTERM");
}
