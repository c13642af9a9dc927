//! Shared helpers of the integration tests.
// Each test binary uses only some of these helpers.
#![allow(dead_code)]

use std::path::PathBuf;

/// `../shared/anchors/flux-operator-v1alpha2`, beside the repository. Required test data:
/// a missing directory fails the test rather than skipping it.
pub fn anchors() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/anchors/flux-operator-v1alpha2");
    assert!(
        dir.is_dir(),
        "{} is missing: the compatibility anchors must sit beside the repository (../shared)",
        dir.display()
    );
    dir
}

/// Every `.yaml` under `dir`, sorted.
pub fn yaml_files(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}
