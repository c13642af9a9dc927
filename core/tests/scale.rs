//! The broker config does not grow with maxSize: hosts are one hostlist range.

use minicluster_core::spec::load_bytes;
use minicluster_core::{DescribeOptions, Templates, describe};

fn config_len(max_size: u32) -> usize {
    let yaml = format!(
        "apiVersion: flux-framework.org/v1alpha2\nkind: MiniCluster\nmetadata:\n  name: mc\nspec:\n  size: 1\n  maxSize: {max_size}\n  containers:\n    - image: a\n      command: x\n"
    );
    let mc = load_bytes("t", yaml.as_bytes())
        .unwrap()
        .clusters
        .remove(0)
        .cluster;
    let d = describe(&mc, &DescribeOptions::default()).unwrap();
    assert_eq!(d.hostlist, format!("mc-[0-{}]", max_size - 1));
    Templates::embedded().broker_config(&d).unwrap().len()
}

#[test]
fn broker_config_size_is_independent_of_max_size() {
    let small = config_len(10);
    // Only the digits of maxSize in the hostlist and the header comment change.
    assert_eq!(config_len(100_000), small + 2 * 4);
    assert_eq!(config_len(1_000_000), small + 2 * 5);
}
