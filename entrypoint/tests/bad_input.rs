//! Bad input: one clear error line naming the fix, exit code 125, and nothing left behind.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn cluster() -> Cluster {
    Cluster::new(
        &spec_yaml(2, "", "      command: hostname\n"),
        &PathBuf::from(STANDIN),
    )
}

/// A cluster and a valid certificate mounted for its brokers.
fn cluster_with_mounted_cert() -> (Cluster, PathBuf) {
    let c = cluster();
    let cert = c.path("mounted.cert");
    minicluster_core::CurveCert::generate("mc")
        .unwrap()
        .write(&cert)
        .unwrap();
    (c, cert)
}

/// Runs `cmd`, expects the entrypoint's own failure, returns its one error line.
fn refused(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(125), "stderr:\n{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(errors.len(), 1, "want one error line:\n{stderr}");
    assert!(errors[0].starts_with("entrypoint: error: "), "{stderr}");
    assert!(errors[0].contains("fix:"), "no fix named: {stderr}");
    errors[0].to_string()
}

/// Nothing under `dir` but empty directories we did not create… i.e. nothing at all.
fn assert_nothing_written(dir: &Path) {
    if dir.exists() {
        let left: Vec<_> = walk(dir);
        assert!(left.is_empty(), "left behind: {left:?}");
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        out.push(e.path());
        if e.path().is_dir() {
            out.extend(walk(&e.path()));
        }
    }
    out
}

#[test]
fn missing_description() {
    let c = cluster();
    std::fs::remove_file(&c.description).unwrap();
    let e = refused(&mut c.command(0));
    assert!(e.contains("description.json: No such file"), "{e}");
    assert_nothing_written(&c.path("rank-0"));
}

#[test]
fn corrupt_description_and_unknown_version_and_mode() {
    let c = cluster();
    let good = std::fs::read_to_string(&c.description).unwrap();
    for (text, want) in [
        ("{ not json".to_string(), "key must be a string"),
        (
            good.replace("\"version\": 1", "\"version\": 9"),
            "has version 9, this build reads version 1",
        ),
        (
            good.replace("\"mode\": \"submit\"", "\"mode\": \"bogus\""),
            "unknown variant `bogus`",
        ),
    ] {
        std::fs::write(&c.description, text).unwrap();
        let e = refused(&mut c.command(0));
        assert!(e.contains(want), "{e}");
    }
    assert_nothing_written(&c.path("rank-0"));
}

#[test]
fn corrupt_cert_is_refused_and_its_key_never_shown() {
    let c = cluster();
    let cert = c.path("mounted.cert");
    let good = minicluster_core::CurveCert::generate("mc")
        .unwrap()
        .to_text();
    let secret = good
        .lines()
        .find(|l| l.contains("secret-key"))
        .unwrap()
        .split('"')
        .nth(1)
        .unwrap()
        .to_string();
    std::fs::write(&cert, good.replace("public-key = \"", "public-key = \"xx")).unwrap();
    let out = c.command_with_cert(0, &cert).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr.contains("CURVE certificate") && stderr.contains("mounted.cert"),
        "{stderr}"
    );
    assert!(
        !stderr.contains(&secret),
        "secret key in the message: {stderr}"
    );
    assert_nothing_written(&c.path("rank-0"));
}

#[test]
fn hostname_outside_the_hostlist() {
    // A description for pods (no loopback endpoints): the hostname decides the rank.
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_entrypoint"))
        .args(["--rank", "1", "--hostname", "login7", "--dry-run"])
        .arg("--description")
        .arg(description_for_pods(dir.path()))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr.contains("hostname \"login7\" is not in MiniCluster mc's hostlist mc-[0-1]"),
        "{stderr}"
    );
}

#[test]
fn unwritable_directory() {
    let (c, cert) = cluster_with_mounted_cert();
    let e = refused(&mut c.command_at(0, &cert, Path::new("/proc/entrypoint-test")));
    assert!(
        e.contains("cannot create directory /proc/entrypoint-test"),
        "{e}"
    );
}

#[test]
fn directories_made_before_a_failure_are_removed() {
    let (c, cert) = cluster_with_mounted_cert();
    // The statedir's place is taken by a file: config dir and rundir get made first.
    let root = c.path("rank-0");
    std::fs::create_dir_all(root.join("mnt/flux")).unwrap();
    std::fs::write(root.join("mnt/flux/state"), "in the way").unwrap();
    let e = refused(&mut c.command_with_cert(0, &cert));
    assert!(e.contains("mnt/flux/state"), "{e}");
    assert!(
        !root.join("mnt/flux/config").exists(),
        "config dir left behind"
    );
    assert!(!root.join("mnt/flux/run").exists(), "rundir left behind");
}

#[test]
fn unknown_option_is_a_usage_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_entrypoint"))
        .arg("--frobnicate")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn dry_run_prints_the_plan_and_writes_nothing() {
    let c = cluster();
    let out = c.command(1).arg("--dry-run").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "# MiniCluster mc: rank 1 of 2",
        "wait up to 300s for rank 0 to create",
        "[bootstrap]",
        "R encode '--hosts=mc-[0-1]' --local",
        "## Wait",
        " broker --config-path=",
        "-Shostname=mc-1",
    ] {
        assert!(stdout.contains(want), "{want:?} missing:\n{stdout}");
    }
    assert_nothing_written(&c.path("rank-1"));
    assert_nothing_written(&c.path("shared"));
}

fn description_for_pods(dir: &Path) -> PathBuf {
    let loaded = minicluster_core::spec::load_bytes(
        "t",
        spec_yaml(2, "", "      command: hostname\n").as_bytes(),
    )
    .unwrap();
    let d = minicluster_core::describe(&loaded.clusters[0].cluster, &Default::default()).unwrap();
    let p = dir.join("description.json");
    std::fs::write(&p, d.to_json()).unwrap();
    p
}
