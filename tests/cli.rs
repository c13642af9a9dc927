//! The `minicluster` command as a user runs it: output, files, exit codes, and one clear error
//! line (never a panic) for bad input.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use common::bin;
use common::process::{files_under, processes_mentioning, run_bounded};

fn minicluster(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_minicluster"))
        .args(args)
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Fails unless the command exited non-zero with exactly one `error:` line containing `want`.
fn assert_one_line_error(o: &Output, want: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "stderr: {err}");
    assert!(!err.contains("panicked"), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line, got: {err}");
    assert!(
        lines[0].starts_with("error: ") && lines[0].contains(want),
        "want {want:?} in {err}"
    );
}

#[test]
fn render_without_a_file_uses_the_built_in_hello_world() {
    let o = minicluster(&["render"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8(o.stdout.clone()).unwrap();
    assert!(out.contains("==> hello-world/description.json <=="));
    assert!(out.contains("==> hello-world/broker.toml <=="));
    assert!(out.contains("hosts = [\n    { host = \"hello-world-[0-3]\" },\n]"));
    assert!(
        !out.contains("/curve.cert <=="),
        "no cert unless --with-cert"
    );
    assert_eq!(stderr(&o), "", "the built-in example has no warnings");
}

#[test]
fn render_out_writes_files_and_an_owner_only_cert() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("mc");
    let o = minicluster(&["render", "--with-cert", "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let cert = out.join("curve.cert");
    assert_eq!(
        std::fs::metadata(&cert).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let c = minicluster_core::CurveCert::read(&cert).unwrap();
    assert_eq!(c.name(), Some("hello-world-0"));
    let config: toml::Table = std::fs::read_to_string(out.join("broker.toml"))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(config["bootstrap"]["default_port"].as_integer(), Some(8050));
    let d = minicluster_core::ClusterDescription::from_json(
        &std::fs::read_to_string(out.join("description.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(d.size, 4);
}

#[test]
fn the_spec_cert_is_used_when_given() {
    let dir = tempfile::tempdir().unwrap();
    let spec = Path::new(env!("CARGO_MANIFEST_DIR")).join(
        "../shared/anchors/flux-operator-v1alpha2/examples/tests/custom-config/minicluster.yaml",
    );
    let o = minicluster(&[
        "render",
        spec.to_str().unwrap(),
        "--with-cert",
        "--out",
        dir.path().to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let c = minicluster_core::CurveCert::read(&dir.path().join("curve.cert")).unwrap();
    assert_eq!(c.public_key(), "}D{Y3<amLLl*TIt>@b*umPD-nBr#I}[PnV!lZBkW");
}

#[test]
fn bad_input_gives_one_clear_error_line() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p.to_str().unwrap().to_string()
    };
    let big = {
        let mut s =
            b"apiVersion: flux-framework.org/v1alpha2\nkind: MiniCluster\nspec:\n  junk: \""
                .to_vec();
        s.resize(50 * 1024 * 1024, b'y');
        s
    };
    let deep = format!("x: {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
    let deep_block: String = (0..1500)
        .map(|i| format!("{}k{i}:\n", "  ".repeat(i)))
        .collect();
    let cases: Vec<(String, &str)> = vec![
        (write("empty.yaml", b""), "is empty"),
        (write("comments.yaml", b"# nothing here\n---\n"), "is empty"),
        (write("big.yaml", &big), "larger than 4 MiB"),
        (write("latin1.yaml", b"kind: Mini\xe9Cluster\n"), "not UTF-8"),
        (write("deep.yaml", deep.as_bytes()), "nests brackets deeper than 64"),
        (write("deep-block.yaml", deep_block.as_bytes()), "recursion limit"),
        (write("cm.yaml", b"apiVersion: v1\nkind: ConfigMap\n"), "has no MiniCluster: document 1 is a ConfigMap"),
        (write("list.yaml", b"- a\n- b\n"), "not a mapping"),
        (write("broken.yaml", b"spec: [\n"), "not valid YAML"),
        (write("old.yaml", b"apiVersion: flux-framework.org/v1alpha1\nkind: MiniCluster\n"), "use apiVersion: flux-framework.org/v1alpha2"),
        (write("type.yaml", b"apiVersion: flux-framework.org/v1alpha2\nkind: MiniCluster\nmetadata: {name: a}\nspec:\n  containers: []\n  size: four\n"), "spec.size: invalid type"),
        (dir.path().join("missing.yaml").to_str().unwrap().to_string(), "No such file"),
    ];
    for (file, want) in &cases {
        assert_one_line_error(&minicluster(&["render", file]), want);
    }
}

#[test]
fn unknown_fields_warn_and_strict_refuses_them() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("mc.yaml");
    std::fs::write(&p, "apiVersion: flux-framework.org/v1alpha2\nkind: MiniCluster\nmetadata: {name: a}\nspec:\n  sise: 4\n  containers:\n    - {image: a, command: x, comand: y}\n").unwrap();
    let o = minicluster(&["render", p.to_str().unwrap()]);
    assert!(o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("spec.sise is not a MiniCluster field"),
        "{err}"
    );
    assert!(
        err.contains("spec.containers[0].comand is not a MiniCluster field"),
        "{err}"
    );
    let o = minicluster(&["render", "--strict", p.to_str().unwrap()]);
    assert_one_line_error(&o, "spec.sise, spec.containers[0].comand");
}

#[test]
fn an_invalid_spec_lists_every_problem_and_no_secret() {
    let secret = "5khD%TixeW<j<6ssPNG>s<nY1E}5)fyk@TI)g8Xu";
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("mc.yaml");
    std::fs::write(&p, format!(
        "apiVersion: flux-framework.org/v1alpha2\nkind: MiniCluster\nmetadata: {{name: a}}\nspec:\n  size: 0\n  flux:\n    curveCert: |\n      curve\n          public-key = \"}}D{{Y3<amLLl*TIt>@b*umPD-nBr#I}}[PnV!lZBkX\"\n          secret-key = \"{secret}\"\n  containers:\n    - {{image: a, command: x}}\n"
    )).unwrap();
    let o = minicluster(&["render", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("2 problems"), "{err}");
    assert!(err.contains("spec.size: is 0"), "{err}");
    assert!(
        err.contains("spec.flux.curveCert: invalid CURVE certificate"),
        "{err}"
    );
    assert!(!err.contains(secret), "the secret key leaked: {err}");
}

#[test]
fn crd_prints_the_custom_resource_definition() {
    let o = minicluster(&["crd"]);
    assert!(o.status.success());
    let v: serde_json::Value = serde_norway::from_slice(&o.stdout).unwrap();
    assert_eq!(v["kind"], "CustomResourceDefinition");
    assert_eq!(v["metadata"]["name"], "miniclusters.flux-framework.org");
}

/// `minicluster run …` with the process launcher and `flux`, its state in `state`.
fn run_with(flux: &Path, state: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_minicluster"));
    cmd.arg("run")
        .args(args)
        .env("MINICLUSTER_STATE_DIR", state)
        .env("FLUX_BIN", flux)
        .env("MINICLUSTER_ENTRYPOINT", bin("entrypoint"));
    run_bounded(&mut cmd, Duration::from_secs(120))
}

fn assert_nothing_left(state: &Path) {
    let dir = state.display().to_string();
    let until = std::time::Instant::now() + Duration::from_secs(5);
    while !processes_mentioning(&dir).is_empty() {
        assert!(
            std::time::Instant::now() < until,
            "left running: {:?}",
            processes_mentioning(&dir)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        files_under(state),
        Vec::<String>::new(),
        "files left behind"
    );
}

const NESTED: &str = "apiVersion: flux-framework.org/v1alpha2\nkind: MiniCluster\nmetadata: {name: nested}\nspec:\n  size: 2\n  containers:\n    - image: local\n      command: flux run -N2 hostname\n";

#[test]
fn a_flux_job_command_in_submit_mode_is_refused_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("nested.yaml");
    std::fs::write(&spec, NESTED).unwrap();
    let want = "spec.containers[0].command: `flux run -N2 hostname` in the command would start a Flux job inside the job submit mode runs the command as (`flux submit -N 2 … --watch`)";
    let fix = "(fix: set launcher: true on this container";
    let o = minicluster(&["render", spec.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains(want) && stderr(&o).contains(fix),
        "{}",
        stderr(&o)
    );

    // The same spec given to `run`: refused before anything starts, never a silent hang.
    let state = tempfile::tempdir().unwrap();
    let o = run_with(
        &bin("flux-standin"),
        state.path(),
        &["-f", spec.to_str().unwrap()],
    );
    assert_ne!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(want) && stderr(&o).contains(fix),
        "{}",
        stderr(&o)
    );
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
    assert_nothing_left(state.path());
}

/// `run --size 2 -- flux run -N2 hostname`: rank 0 runs `flux run` itself, one line per task.
fn flux_job_command_from_flags_runs(flux: &Path) {
    let state = tempfile::tempdir().unwrap();
    let o = run_with(
        flux,
        state.path(),
        &["--size", "2", "--", "flux", "run", "-N2", "hostname"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        format!("{0}\n{0}\n", host.trim()),
        "one line per task of flux run -N2: {}",
        stderr(&o)
    );
    assert_nothing_left(state.path());
}

#[test]
fn run_from_flags_makes_a_flux_job_command_the_initial_program() {
    flux_job_command_from_flags_runs(&bin("flux-standin"));
}

#[test]
#[ignore = "needs a real flux: FLUX_BIN or flux on PATH (tests/run runs these when found)"]
fn real_flux_run_from_flags_makes_a_flux_job_command_the_initial_program() {
    flux_job_command_from_flags_runs(&minicluster_testkit::require::flux());
}

#[test]
fn render_shows_the_script_and_the_shared_memory_mount() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("script.yaml");
    std::fs::write(
        &spec,
        "apiVersion: flux-framework.org/v1alpha2\nkind: MiniCluster\nmetadata: {name: s}\nspec:\n  size: 2\n  containers:\n    - image: local\n      volumes:\n        shm: {emptyDir: true}\n      commands:\n        script: |\n          echo \"task \\${FLUX_TASK_RANK}\"\n",
    )
    .unwrap();
    let o = minicluster(&["render", spec.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8(o.stdout).unwrap();
    assert!(
        out.contains(r#""script": "echo \"task ${FLUX_TASK_RANK}\"\n""#),
        "{out}"
    );
    assert!(
        out.contains("- mountPath: /dev/shm\n          name: shm"),
        "{out}"
    );
    assert!(out.contains("emptyDir: {}"), "{out}");
}

#[test]
fn output_to_a_reader_that_goes_away_ends_quietly() {
    use std::io::Read;
    // More than a pipe holds (64 KiB), read a little, then close the pipe: `| head -1`.
    let mut child = Command::new(env!("CARGO_BIN_EXE_minicluster"))
        .args(["completions", "bash"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 16];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.is_empty(), "nothing on stderr: {err}");
    use std::os::unix::process::ExitStatusExt;
    assert!(
        out.status.success() || out.status.signal() == Some(13),
        "{:?}",
        out.status
    );
}
