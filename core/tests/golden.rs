//! Golden files of the rendered broker config and cluster description.
//!
//! To accept a deliberate change: `UPDATE_GOLDEN=1 cargo test -p minicluster-core --test golden`,
//! then review the diff of `core/tests/golden/`.

mod common;

use std::path::{Path, PathBuf};

use minicluster_core::spec::load_file;
use minicluster_core::{DescribeOptions, Templates, describe};

fn check(case: &str, spec: &Path) {
    let loaded = load_file(spec).unwrap();
    let d = describe(&loaded.clusters[0].cluster, &DescribeOptions::default()).unwrap();
    let config = Templates::embedded().broker_config(&d).unwrap();
    let golden = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    for (ext, got) in [
        ("broker.toml", config),
        ("description.json", d.to_json() + "\n"),
    ] {
        let path = golden.join(format!("{case}.{ext}"));
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&path, &got).unwrap();
        }
        let want = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 creates it)", path.display()));
        assert_eq!(got, want, "{case}.{ext} differs from its golden file");
    }
}

fn anchor(rel: &str) -> PathBuf {
    common::anchors().join("examples").join(rel)
}

#[test]
fn hello_world() {
    check("hello-world", &anchor("tests/hello-world/minicluster.yaml"));
}

#[test]
fn one_broker() {
    check(
        "one-broker",
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/specs/one-broker.yaml"),
    );
}

#[test]
fn max_size_above_size() {
    check("scaling-expand", &anchor("scaling/expand/minicluster.yaml"));
}

#[test]
fn minimal_service() {
    check(
        "minimal-service",
        &anchor("tests/minimal-service/minicluster.yaml"),
    );
}

#[test]
fn custom_config_is_used_verbatim() {
    check(
        "custom-config",
        &anchor("tests/custom-config/minicluster.yaml"),
    );
    let golden = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/custom-config.broker.toml"),
    )
    .unwrap();
    assert!(
        golden.contains("hosts = [{host=\"flux-sample-0\""),
        "the user's config must pass through unchanged"
    );
}
