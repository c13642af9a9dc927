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
    // The hint `up` prints works as printed.
    let hint = text(&out.stdout)
        .lines()
        .find(|l| l.trim_start().starts_with("docker exec"))
        .unwrap_or_else(|| panic!("no docker exec hint in {}", text(&out.stdout)))
        .trim()
        .to_string();
    let ran = Command::new("sh").args(["-c", &hint]).output().unwrap();
    assert!(ran.status.success(), "{hint}: {}", text(&ran.stderr));
    assert_eq!(
        text(&ran.stdout).lines().count(),
        2,
        "{hint}: {}",
        text(&ran.stdout)
    );
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
    // An image whose `flux` is on no PATH it has: the entrypoint's one error line, its exit
    // code, and nothing left. The caller's FLUX_BIN (a path on this machine) plays no part.
    let image = Image::build_with("noflux", false, FLUX_ELSEWHERE, "/usr/bin:/bin");
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
    .env("FLUX_BIN", bin("flux-standin"))
    .output()
    .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert!(
        err.contains("entrypoint: error: no flux command found"),
        "{err}"
    );
    assert!(
        err.contains("environment PATH"),
        "the fix names the spec's PATH: {err}"
    );
    assert_nothing_left(&name);
}

/// Where an image outside /usr/local/bin keeps Flux.
const FLUX_ELSEWHERE: &str = "/usr/local/flux/bin";

/// `run --launcher docker --size 3 -- hostname` with an image whose Flux is found only through
/// `path` (its own PATH) or `spec_path` (the spec's environment), FLUX_BIN set in our shell.
fn flux_found_through(tag_name: &str, path: &str, spec_path: Option<&str>) {
    minicluster_testkit::require::docker_engine();
    let image = Image::build_with(tag_name, false, FLUX_ELSEWHERE, path);
    let state = tempfile::tempdir().unwrap();
    let name = format!("{tag_name}{}", std::process::id());
    let _cleanup = Cleanup(name.clone());
    let mut args = vec!["run", "--launcher", "docker", "--image", &image.tag];
    let spec = state.path().join("mc.yaml");
    if let Some(p) = spec_path {
        std::fs::write(
            &spec,
            format!(
                "apiVersion: flux-framework.org/v1alpha2\nkind: MiniCluster\nmetadata: {{name: {name}}}\nspec:\n  size: 3\n  logging: {{quiet: true}}\n  containers:\n    - image: {}\n      command: hostname\n      environment:\n        PATH: {p}\n",
                image.tag
            ),
        )
        .unwrap();
        args.extend(["-f", spec.to_str().unwrap()]);
    } else {
        args.extend(["--size", "3", "--name", &name, "--", "hostname"]);
    }
    let out = minicluster(state.path(), &args)
        .env("FLUX_BIN", "/nonexistent/host/flux")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // One line per task; the stand-in runs every task on rank 0.
    let hosts: Vec<String> = text(&out.stdout).lines().map(String::from).collect();
    assert_eq!(hosts, vec![format!("{name}-0"); 3], "{}", text(&out.stderr));
    assert_nothing_left(&name);
}

#[test]
fn flux_on_the_image_path_is_found_whatever_flux_bin_says() {
    flux_found_through("imgpath", &format!("{FLUX_ELSEWHERE}:/usr/bin:/bin"), None);
}

#[test]
fn flux_on_the_spec_environment_path_is_found() {
    flux_found_through(
        "specpath",
        "/usr/bin:/bin",
        Some(&format!("{FLUX_ELSEWHERE}:/usr/bin:/bin")),
    );
}
