//! `commands.script`: the dry run shows the file every broker writes and how rank 0 runs it,
//! and a MiniCluster runs it with bash, per task in submit mode and once as the initial
//! program in launcher mode: with the `flux` stand-in always, with a real `flux` in the
//! `real_flux_` tests (ignored unless asked for; `tests/run` runs them when flux is found).

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

const LIMIT: Duration = Duration::from_secs(90);

/// A container whose work is `script` (a YAML block scalar, escaped as flux-operator users
/// escape it), with `more` container fields.
fn scripted(size: u32, script: &str, more: &str) -> String {
    let body: String = script.lines().map(|l| format!("          {l}\n")).collect();
    spec_yaml(
        size,
        "",
        &format!("{more}      commands:\n        script: |\n{body}"),
    )
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn the_dry_run_shows_the_script_file_and_how_it_runs() {
    let c = Cluster::new(
        &scripted(2, "#!/bin/bash\necho \"task \\${FLUX_TASK_RANK}\"", ""),
        &PathBuf::from(STANDIN),
    );
    let file = c.path("rank-0/mnt/flux/config/custom-entrypoint.sh");
    let out = c.command(0).arg("--dry-run").output().unwrap();
    let plan = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        plan.contains(&format!(
            "--- {} (mode 0755)\n#!/bin/bash\necho \"task ${{FLUX_TASK_RANK}}\"\n",
            file.display()
        )),
        "{plan}"
    );
    assert!(
        plan.contains(&format!("--watch /bin/bash {}", file.display())),
        "{plan}"
    );
    let worker = c.command(1).arg("--dry-run").output().unwrap();
    assert!(
        text(&worker.stdout).contains("custom-entrypoint.sh (mode 0755)"),
        "every broker writes it: {}",
        text(&worker.stdout)
    );
    assert!(!c.path("rank-0").exists(), "a dry run writes nothing");
}

/// Runs a 2-broker MiniCluster to its end: its directory and rank 0's output; the worker must
/// leave cleanly.
fn run_two_brokers(yaml: &str, flux: &Path) -> (Cluster, std::process::Output) {
    let c = Cluster::new(yaml, flux);
    let mut workers = c.start_workers();
    let out = c.run_rank0(LIMIT);
    assert_eq!(wait_all(&mut workers, LIMIT), vec![0], "{}", c.log(1));
    (c, out)
}

/// Submit mode: every task runs the script with bash (`[[ ]]` is bash's), and task 1's exit
/// code is the MiniCluster's.
fn submit_mode_runs_the_script_with_bash_on_every_task(flux: &Path) {
    let script = "#!/bin/bash\necho \"task \\${FLUX_TASK_RANK}\"\nif [[ \"\\${FLUX_TASK_RANK}\" == \"1\" ]]; then\n  exit 3\nfi";
    let (c, out) = run_two_brokers(&scripted(2, script, ""), flux);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let mut lines: Vec<&str> = stdout.lines().collect();
    lines.sort();
    assert_eq!(lines, ["task 0", "task 1"], "{stdout}");
    let file = c.path("rank-1/mnt/flux/config/custom-entrypoint.sh");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o755, "{}", file.display());
}

/// Launcher mode: the script runs once, on rank 0, and its `flux run` gets both brokers.
fn launcher_mode_runs_the_script_once(flux: &Path) {
    let script = "echo \"initial program\"\nflux run -N2 sh -c 'echo \"task \\$FLUX_TASK_RANK\"'";
    let (_c, out) = run_two_brokers(&scripted(2, script, "      launcher: true\n"), flux);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let mut tasks: Vec<&str> = stdout.lines().skip(1).collect();
    tasks.sort();
    assert_eq!(
        (stdout.lines().next(), tasks),
        (Some("initial program"), vec!["task 0", "task 1"]),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn standin_submit_mode_runs_the_script_with_bash_on_every_task() {
    submit_mode_runs_the_script_with_bash_on_every_task(&PathBuf::from(STANDIN));
}

#[test]
fn standin_launcher_mode_runs_the_script_once_and_its_flux_run_gets_the_cluster() {
    launcher_mode_runs_the_script_once(&PathBuf::from(STANDIN));
}

#[test]
#[ignore = "needs a real flux: FLUX_BIN or flux on PATH (tests/run runs these when found)"]
fn real_flux_submit_mode_runs_the_script_with_bash_on_every_task() {
    submit_mode_runs_the_script_with_bash_on_every_task(&minicluster_testkit::require::flux());
}

#[test]
#[ignore = "needs a real flux: FLUX_BIN or flux on PATH (tests/run runs these when found)"]
fn real_flux_launcher_mode_runs_the_script_once_and_its_flux_run_gets_the_cluster() {
    launcher_mode_runs_the_script_once(&minicluster_testkit::require::flux());
}
