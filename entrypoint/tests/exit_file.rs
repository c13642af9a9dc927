//! `--exit-file`: the work runs at most once and its exit code is left on disk, with the
//! `flux` stand-in and a one-broker MiniCluster.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::*;

const LIMIT: Duration = Duration::from_secs(60);

fn one_broker(command: &str) -> Cluster {
    Cluster::new(
        &spec_yaml(
            1,
            "",
            &format!("      launcher: true\n      command: {command}\n"),
        ),
        &PathBuf::from(STANDIN),
    )
}

fn run(c: &Cluster, exit: &std::path::Path) -> std::process::Output {
    let child = c
        .command(0)
        .arg("--exit-file")
        .arg(exit)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_output(child, LIMIT)
}

#[test]
fn the_exit_code_is_recorded_and_a_second_start_is_refused() {
    let c = one_broker("sh -c 'exit 7'");
    let exit = c.path("rank-0.exit");
    let started = c.path("rank-0.exit.started");
    let first = c
        .command(0)
        .arg("--exit-file")
        .arg(&exit)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = first.id();
    let out = wait_output(first, LIMIT);
    assert_eq!(
        out.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read_to_string(&exit).unwrap(), "7\n");
    assert_eq!(
        std::fs::read_to_string(&started).unwrap(),
        format!("{pid}\n")
    );

    let again = run(&c, &exit);
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert_eq!(again.status.code(), Some(125), "{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(errors.len(), 1, "one error line: {stderr}");
    assert!(
        errors[0].starts_with("entrypoint: error: ")
            && errors[0].contains(&format!("already claimed by pid {pid}"))
            && errors[0].contains("second time")
            && errors[0].contains("fix: remove"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(&exit).unwrap(),
        "7\n",
        "the refused start changed nothing"
    );
}

#[test]
fn a_setup_failure_after_the_claim_is_recorded_as_125() {
    let c = one_broker("hostname");
    let cert = c.path("mounted.cert");
    std::fs::write(&cert, "not a certificate\n").unwrap();
    let exit = c.path("rank-0.exit");
    let out = c
        .command_with_cert(0, &cert)
        .arg("--exit-file")
        .arg(&exit)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&out.stderr).contains("CURVE certificate"));
    assert_eq!(std::fs::read_to_string(&exit).unwrap(), "125\n");
}

#[test]
fn dry_run_shows_the_exit_file_and_creates_nothing() {
    let c = one_broker("hostname");
    let exit = c.path("rank-0.exit");
    for json in [false, true] {
        let mut cmd = c.command(0);
        cmd.arg("--dry-run").arg("--exit-file").arg(&exit);
        if json {
            cmd.arg("--json");
        }
        let out = cmd.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains(&exit.display().to_string()), "{stdout}");
        if !json {
            assert!(stdout.contains("rank-0.exit.started"), "{stdout}");
        }
    }
    assert!(!exit.exists());
    assert!(!c.path("rank-0.exit.started").exists());
    assert!(!c.path("rank-0").exists(), "a dry run writes nothing");
}
