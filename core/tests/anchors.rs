//! Every published flux-operator v1alpha2 example loads, validates and renders.

mod common;

use minicluster_core::spec::load_file;
use minicluster_core::{DescribeOptions, Templates, describe};

#[test]
fn every_anchor_example_loads_validates_and_renders() {
    let dir = common::anchors().join("examples");
    let files = common::yaml_files(&dir);
    assert!(
        files.len() >= 30,
        "expected the anchor examples, found {}",
        files.len()
    );
    let templates = Templates::embedded();
    let mut rendered = 0;
    let mut not_miniclusters = Vec::new();
    for path in &files {
        let rel = path.strip_prefix(&dir).unwrap().display().to_string();
        let loaded = match load_file(path) {
            Ok(l) => l,
            Err(e) => {
                // Only files with no MiniCluster at all (PersistentVolumes and claims) may fail,
                // and they must say so.
                let msg = e.to_string();
                assert!(msg.contains("has no MiniCluster"), "{rel}: {msg}");
                assert!(msg.contains("PersistentVolume"), "{rel}: {msg}");
                not_miniclusters.push(rel);
                continue;
            }
        };
        for lc in &loaded.clusters {
            assert!(
                lc.unknown_fields.is_empty(),
                "{rel}: unknown fields {:?}",
                lc.unknown_fields
            );
            let d = describe(&lc.cluster, &DescribeOptions::default())
                .unwrap_or_else(|e| panic!("{rel}: {e}"));
            let config = templates.broker_config(&d).unwrap();
            let table: toml::Table = config
                .parse()
                .unwrap_or_else(|e| panic!("{rel}: broker config is not TOML: {e}"));
            assert!(table.contains_key("bootstrap"), "{rel}: no [bootstrap]");
            rendered += 1;
        }
    }
    assert_eq!(
        not_miniclusters,
        [
            "tests/existing-volumes/pv.yaml",
            "tests/existing-volumes/pvc.yaml",
            "tests/snakemake/volumes.yaml",
            "tests/volumes/volumes.yaml"
        ]
    );
    assert_eq!(rendered, files.len() - not_miniclusters.len());
}
