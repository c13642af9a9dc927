//! Cost of deriving the cluster description and rendering the broker config as maxSize grows.
//! The broker config lists hosts as one hostlist range, so neither its size nor its cost should
//! follow maxSize.
//!
//! `cargo bench -p minicluster-core --bench render`

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use minicluster_core::spec::load_bytes;
use minicluster_core::{DescribeOptions, MiniCluster, Templates, describe};

fn cluster(max_size: u32) -> MiniCluster {
    let yaml = format!(
        "apiVersion: flux-framework.org/v1alpha2\nkind: MiniCluster\nmetadata:\n  name: mc\nspec:\n  size: 4\n  maxSize: {max_size}\n  containers:\n    - image: ubuntu:noble\n      command: hostname\n"
    );
    load_bytes("bench", yaml.as_bytes())
        .unwrap()
        .clusters
        .remove(0)
        .cluster
}

fn render(c: &mut Criterion) {
    let templates = Templates::embedded();
    let opts = DescribeOptions::default();
    let mut group = c.benchmark_group("describe+broker_config");
    for max_size in [10u32, 1_000, 100_000] {
        let mc = cluster(max_size);
        let config = templates
            .broker_config(&describe(&mc, &opts).unwrap())
            .unwrap();
        eprintln!(
            "maxSize {max_size:>7}: broker config is {} bytes",
            config.len()
        );
        group.bench_with_input(BenchmarkId::from_parameter(max_size), &mc, |b, mc| {
            b.iter(|| {
                templates
                    .broker_config(&describe(mc, &opts).unwrap())
                    .unwrap()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, render);
criterion_main!(benches);
