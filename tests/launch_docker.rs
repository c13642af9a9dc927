//! `minicluster run/up/down --launcher docker` against the Docker Engine, with an image built
//! here from scratch (no registry): our entrypoint's and the `flux` stand-in's binaries and
//! the libraries they load, imported with `docker import`. Nothing may be left behind:
//! no container, network or volume — also after the CLI is SIGKILLed and `down` runs.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::image::{Image, docker};
use common::{bin, text};

/// Removes what a test launched even when it fails half-way.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let label = format!("label=flux-framework.org/minicluster={}", self.0);
        let ids = text(&docker(&["ps", "-aq", "--filter", &label]).stdout);
        for id in ids.split_whitespace() {
            let _ = docker(&["rm", "-f", id]);
        }
        let nets = text(&docker(&["network", "ls", "-q", "--filter", &label]).stdout);
        for id in nets.split_whitespace() {
            let _ = docker(&["network", "rm", id]);
        }
    }
}

fn minicluster(state: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_minicluster"));
    c.args(args)
        .env("MINICLUSTER_STATE_DIR", state)
        .env("MINICLUSTER_ENTRYPOINT", bin("entrypoint"));
    c
}

/// No container and no network carries the MiniCluster's label.
fn assert_nothing_left(name: &str) {
    let label = format!("label=flux-framework.org/minicluster={name}");
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let c = text(&docker(&["ps", "-aq", "--filter", &label]).stdout);
        let n = text(&docker(&["network", "ls", "-q", "--filter", &label]).stdout);
        let v = text(&docker(&["volume", "ls", "-q", "--filter", &label]).stdout);
        if c.trim().is_empty() && n.trim().is_empty() && v.trim().is_empty() {
            return;
        }
        assert!(
            Instant::now() < until,
            "left behind: containers {c:?}, networks {n:?}, volumes {v:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn four_containers_run_a_command_return_its_code_and_leave_nothing() {
    minicluster_testkit::require::docker_engine();
    let image = Image::build("launch", false);
    let state = tempfile::tempdir().unwrap();
    let name = format!("dk{}", std::process::id());
    let _cleanup = Cleanup(name.clone());
    let out = minicluster(
        state.path(),
        &[
            "run",
            "--launcher",
            "docker",
            "--image",
            &image.tag,
            "--size",
            "4",
            "--name",
            &name,
            "--",
            "flux-standin",
            "--version",
        ],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).matches("flux-standin").count(),
        4,
        "{}",
        text(&out.stdout)
    );
    // Every worker joined rank 0 by its name on the network.
    assert!(
        text(&out.stderr).contains("quorum reached (4 of 4)"),
        "{}",
        text(&out.stderr)
    );
    assert_nothing_left(&name);

    // A failing command's code comes back (the entrypoint's usage error is 2).
    let out = minicluster(
        state.path(),
        &[
            "run",
            "--launcher",
            "docker",
            "--image",
            &image.tag,
            "--size",
            "2",
            "--name",
            &name,
            "--",
            "/.minicluster/entrypoint",
            "--no-such-flag",
        ],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert_nothing_left(&name);
}

#[test]
fn down_removes_everything_after_the_cli_is_killed() {
    minicluster_testkit::require::docker_engine();
    let image = Image::build("launch", false);
    let state = tempfile::tempdir().unwrap();
    let name = format!("dkill{}", std::process::id());
    let _cleanup = Cleanup(name.clone());
    let mut cli = minicluster(
        state.path(),
        &[
            "run",
            "--launcher",
            "docker",
            "--image",
            &image.tag,
            "--size",
            "4",
            "--name",
            &name,
            "--",
            "flux",
            "pause",
            "600",
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let label = format!("label=flux-framework.org/minicluster={name}");
    let until = Instant::now() + Duration::from_secs(60);
    while text(&docker(&["ps", "-q", "--filter", &label]).stdout)
        .lines()
        .count()
        < 4
    {
        assert!(Instant::now() < until, "the containers never all ran");
        std::thread::sleep(Duration::from_millis(200));
    }
    cli.kill().unwrap(); // SIGKILL
    cli.wait().unwrap();
    assert_eq!(
        text(&docker(&["ps", "-q", "--filter", &label]).stdout)
            .lines()
            .count(),
        4
    );
    let out = minicluster(state.path(), &["down", &name])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_nothing_left(&name);
}

#[test]
fn a_name_in_use_and_a_missing_image_get_one_clear_line() {
    minicluster_testkit::require::docker_engine();
    let image = Image::build("launch", false);
    let state = tempfile::tempdir().unwrap();
    let name = format!("dup{}", std::process::id());
    let _cleanup = Cleanup(name.clone());
    let out = minicluster(
        state.path(),
        &[
            "up",
            "--launcher",
            "docker",
            "--image",
            &image.tag,
            "--size",
            "2",
            "--name",
            &name,
        ],
    )
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    // `up` returns once the containers start; their first lines follow shortly.
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let logs = minicluster(state.path(), &["logs", &name, "--rank", "1"])
            .output()
            .unwrap();
        assert!(logs.status.success(), "{}", text(&logs.stderr));
        if text(&logs.stderr).contains("flux-standin: rank 1 joined rank 0") {
            break;
        }
        assert!(
            Instant::now() < until,
            "rank 1 never joined: {}",
            text(&logs.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let status = minicluster(state.path(), &["status", &name, "--json"])
        .output()
        .unwrap();
    let rows: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(rows[0]["running"], 2, "{rows}");
    let again = minicluster(
        state.path(),
        &[
            "up",
            "--launcher",
            "docker",
            "--image",
            &image.tag,
            "--size",
            "2",
            "--name",
            &name,
        ],
    )
    .output()
    .unwrap();
    assert_eq!(again.status.code(), Some(1));
    assert!(
        text(&again.stderr).contains("already running"),
        "{}",
        text(&again.stderr)
    );
    let out = minicluster(state.path(), &["down", &name])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_nothing_left(&name);

    let missing = minicluster(
        state.path(),
        &[
            "run",
            "--launcher",
            "docker",
            "--image",
            "no-such-image:never",
            "--size",
            "2",
            "--name",
            &name,
            "--",
            "true",
        ],
    )
    .output()
    .unwrap();
    let err = text(&missing.stderr);
    assert_eq!(missing.status.code(), Some(1), "{err}");
    assert_eq!(
        err.lines().filter(|l| l.starts_with("error:")).count(),
        1,
        "{err}"
    );
    assert!(
        err.contains("no-such-image") || err.contains("docker images"),
        "{err}"
    );
    assert_nothing_left(&name);
}

#[test]
fn no_docker_engine_and_no_flux_in_the_image_are_clear() {
    let state = tempfile::tempdir().unwrap();
    let out = minicluster(
        state.path(),
        &[
            "run",
            "--launcher",
            "docker",
            "--image",
            "x",
            "--size",
            "2",
            "--",
            "true",
        ],
    )
    .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    .output()
    .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(
        err.lines().filter(|l| l.starts_with("error:")).count(),
        1,
        "{err}"
    );
    assert!(
        err.contains("unix:///nonexistent/docker.sock") && err.contains("start Docker"),
        "{err}"
    );

    minicluster_testkit::require::docker_engine();
    // An image whose `flux` is not where it is said to be: the entrypoint's one error line,
    // its exit code, and nothing left.
    let image = Image::build("launch", false);
    let name = format!("noflux{}", std::process::id());
    let _cleanup = Cleanup(name.clone());
    let out = minicluster(
        state.path(),
        &[
            "run",
            "--launcher",
            "docker",
            "--image",
            &image.tag,
            "--size",
            "2",
            "--name",
            &name,
            "--",
            "true",
        ],
    )
    .env("FLUX_BIN", "/opt/no-flux-here/bin/flux")
    .output()
    .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert!(
        err.contains("entrypoint: error: no flux command found"),
        "{err}"
    );
    assert_nothing_left(&name);
}
