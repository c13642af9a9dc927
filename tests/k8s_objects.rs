//! Every object `minicluster render` produces for every anchor example validates offline and
//! strictly against the Kubernetes 1.37 schemas, and every MiniCluster example validates
//! against our generated CRD (unknown fields are errors). `tests/validate/validate.py` runs in
//! the venv `.ci/setup` makes (or `$MC_TEST_PYTHON`).

use std::path::{Path, PathBuf};
use std::process::Command;

const K8S: &str = "1.37";

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn python() -> PathBuf {
    let p = std::env::var_os("MC_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join(".venv/bin/python"));
    assert!(
        p.exists(),
        "{} is missing: run .ci/setup (it installs kubernetes-validate into .venv) or set MC_TEST_PYTHON",
        p.display()
    );
    p
}

/// Every `.yaml`/`.yml` under `dir`, in sorted order.
fn all_yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            all_yaml_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(p);
        }
    }
}

/// The YAML files under `dir` that hold Kubernetes documents (not, say, a CI workflow among
/// the examples).
fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut all = Vec::new();
    all_yaml_files(dir, &mut all);
    out.extend(
        all.into_iter()
            .filter(|p| std::fs::read_to_string(p).is_ok_and(|t| t.contains("apiVersion:"))),
    );
}

fn examples() -> Vec<PathBuf> {
    let mut v = Vec::new();
    yaml_files(
        &workspace().join("../shared/anchors/flux-operator-v1alpha2/examples"),
        &mut v,
    );
    yaml_files(&workspace().join("examples"), &mut v);
    assert!(v.len() > 20, "anchor examples not found");
    v
}

fn minicluster(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_minicluster"))
        .args(args)
        .output()
        .unwrap()
}

/// `minicluster render FILE --with-cert --out DIR`: every object, the Secret included.
fn render_into(file: &Path, out_dir: &Path) -> std::process::Output {
    minicluster(&[
        "render",
        file.to_str().unwrap(),
        "--with-cert",
        "--out",
        out_dir.to_str().unwrap(),
    ])
}

/// Runs the validator; its report and whether everything passed.
fn validate(crd: &Path, files: &[PathBuf]) -> (bool, String) {
    let out = Command::new(python())
        .arg(workspace().join("tests/validate/validate.py"))
        .args(["--k8s-version", K8S, "--strict-crd", "--crd"])
        .arg(crd)
        .args(files)
        .output()
        .unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), report)
}

fn our_crd(dir: &Path) -> PathBuf {
    let crd = dir.join("crd.yaml");
    let out = minicluster(&["crd"]);
    assert!(out.status.success());
    std::fs::write(&crd, &out.stdout).unwrap();
    crd
}

#[test]
fn rendered_objects_and_our_crd_validate_strictly() {
    let dir = tempfile::tempdir().unwrap();
    let crd = our_crd(dir.path());
    let mut files = vec![crd.clone()];
    let mut rendered = 0;
    for (i, example) in examples().iter().enumerate() {
        if !std::fs::read_to_string(example)
            .unwrap()
            .contains("kind: MiniCluster")
        {
            continue; // volumes and claims that examples use
        }
        rendered += 1;
        let out_dir = dir.path().join(i.to_string());
        let out = render_into(example, &out_dir);
        assert!(
            out.status.success(),
            "{}: {}",
            example.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let mut produced = Vec::new();
        yaml_files(&out_dir, &mut produced);
        assert!(
            !produced.is_empty(),
            "{}: no objects.yaml",
            example.display()
        );
        files.extend(produced);
    }
    let (ok, report) = validate(&crd, &files);
    assert!(ok, "{report}");
    let summary = report.lines().last().unwrap_or_default().to_string();
    eprintln!("{summary}");
    // Each example gives at least a ConfigMap, a Service and a Job (and the Secret).
    let jobs = report.lines().filter(|l| l.contains(" Job/")).count();
    assert!(
        jobs >= rendered && rendered > 20,
        "{rendered} rendered:\n{report}"
    );
}

#[test]
fn every_minicluster_example_validates_against_our_crd() {
    let dir = tempfile::tempdir().unwrap();
    let crd = our_crd(dir.path());
    let (ok, report) = validate(&crd, &examples());
    assert!(ok, "{report}");
    assert!(report.contains("MiniCluster/"), "{report}");
}

#[test]
fn the_validator_refuses_what_kubernetes_refuses() {
    // Without this, a validator that passes everything would make the tests above vacuous.
    let dir = tempfile::tempdir().unwrap();
    let crd = our_crd(dir.path());
    let (ok, report) = validate(
        &crd,
        &[workspace().join("tests/validate/fixtures/bad.yaml")],
    );
    assert!(!ok, "{report}");
    assert!(report.contains("spec.clusterIp: unknown field"), "{report}");
    let typo = dir.path().join("typo.yaml");
    std::fs::write(
        &typo,
        "apiVersion: flux-framework.org/v1alpha2\nkind: MiniCluster\nmetadata: {name: x}\nspec:\n  size: 2\n  contaners: []\n",
    )
    .unwrap();
    let (ok, report) = validate(&crd, &[typo]);
    assert!(!ok && report.contains("contaners"), "{report}");
}

/// Refusals of an upstream example that are right: YAML that kubectl refuses too (a key given
/// twice), another API version, and the specs we refuse on purpose (README: where we differ).
const RIGHTFUL_REFUSALS: [&str; 3] = [
    "is not valid YAML",
    "is not supported; use apiVersion: flux-framework.org/v1alpha2",
    "would start a Flux job inside the job submit mode",
];

/// The documents of a YAML text (separated by `---` lines, blank and comment-only ones left
/// out), each with its top-level `kind` if it has one. Read as text, so a document that is
/// not valid YAML is still counted.
fn documents(text: &str) -> Vec<Option<String>> {
    let mut docs = vec![Vec::new()];
    for line in text.lines() {
        if line == "---" || line.starts_with("--- ") {
            docs.push(Vec::new());
        } else if !line.trim().is_empty() && !line.trim_start().starts_with('#') {
            docs.last_mut().unwrap().push(line);
        }
    }
    docs.into_iter()
        .filter(|d| !d.is_empty())
        .map(|d| {
            d.iter().find_map(|l| {
                l.strip_prefix("kind:")
                    .map(|k| k.trim().trim_matches(['"', '\'']).to_string())
            })
        })
        .collect()
}

#[test]
#[ignore = "needs flux-operator's examples: set FLUX_OPERATOR_EXAMPLES to its examples/ directory"]
fn upstream_examples_render_and_their_objects_validate_strictly() {
    let dir = std::env::var_os("FLUX_OPERATOR_EXAMPLES")
        .map(PathBuf::from)
        .expect("FLUX_OPERATOR_EXAMPLES is not set: point it at the examples/ directory of a flux-operator checkout");
    assert!(
        dir.is_dir(),
        "FLUX_OPERATOR_EXAMPLES={} is not a directory: point it at the examples/ directory of a flux-operator checkout",
        dir.display()
    );
    let tmp = tempfile::tempdir().unwrap();
    let crd = our_crd(tmp.path());
    let mut files = Vec::new();
    all_yaml_files(&dir, &mut files);
    let (mut documents_seen, mut miniclusters, mut rendered, mut warned) = (0, 0, 0, 0);
    let mut refused = Vec::new();
    let mut wrongly_refused = Vec::new();
    let mut produced = Vec::new();
    for (i, file) in files.iter().enumerate() {
        let rel = file.strip_prefix(&dir).unwrap().display().to_string();
        let docs = documents(&std::fs::read_to_string(file).unwrap());
        documents_seen += docs.len();
        let here = docs
            .iter()
            .filter(|k| k.as_deref() == Some("MiniCluster"))
            .count();
        if here == 0 {
            continue;
        }
        miniclusters += here;
        let out_dir = tmp.path().join(i.to_string());
        let out = render_into(file, &out_dir);
        let err = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            let why = err.lines().next().unwrap_or_default().to_string();
            refused.push(format!("{rel}: {why}"));
            if !RIGHTFUL_REFUSALS.iter().any(|r| why.contains(r)) {
                wrongly_refused.push(format!("{rel}: {err}"));
            }
            continue;
        }
        rendered += here;
        let warnings: Vec<&str> = err.lines().filter(|l| l.starts_with("warning:")).collect();
        for w in &warnings {
            assert!(
                w.contains(": spec.") && w.contains("is not a MiniCluster field"),
                "{rel}: a warning that names no field: {w}"
            );
        }
        if !warnings.is_empty() {
            warned += here;
            eprintln!("{}", warnings.join("\n"));
        }
        yaml_files(&out_dir, &mut produced);
    }
    eprintln!(
        "{} files, {documents_seen} documents, {miniclusters} MiniClusters: {rendered} rendered ({warned} with warnings), {} refused",
        files.len(),
        refused.len()
    );
    for r in &refused {
        eprintln!("refused {r}");
    }
    assert!(
        wrongly_refused.is_empty(),
        "valid v1alpha2 MiniClusters refused:\n{}",
        wrongly_refused.join("\n")
    );
    assert!(rendered > 0, "no MiniCluster under {}", dir.display());
    let (ok, report) = validate(&crd, &produced);
    assert!(ok, "{report}");
    eprintln!("{}", report.lines().last().unwrap_or_default());
}

#[test]
fn documents_are_counted_as_text() {
    let docs = documents(
        "# a comment\napiVersion: v1\nkind: Service\n---\n\n---\nkind: 'MiniCluster'\nspec:\n  scaleTargetRef:\n    kind: Job\n--- # end\n",
    );
    assert_eq!(docs, [Some("Service".into()), Some("MiniCluster".into())]);
}

#[test]
fn committed_deploy_manifests_match_the_generated_ones_and_validate() {
    // deploy/ is generated by `minicluster manifests --out deploy`; this fails when it drifts.
    let dir = tempfile::tempdir().unwrap();
    let out = minicluster(&["manifests", "--out", dir.path().to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let committed = workspace().join("deploy");
    let mut files = Vec::new();
    for name in ["crd.yaml", "namespace.yaml", "operator.yaml", "rbac.yaml"] {
        let want = std::fs::read_to_string(dir.path().join(name)).unwrap();
        let have = std::fs::read_to_string(committed.join(name)).unwrap_or_default();
        assert!(
            want == have,
            "deploy/{name} is out of date: run `cargo run -- manifests --out deploy` and commit it"
        );
        files.push(committed.join(name));
    }
    let (ok, report) = validate(&committed.join("crd.yaml"), &files);
    assert!(ok, "{report}");
}
