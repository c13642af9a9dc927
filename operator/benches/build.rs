//! Building every child object of a MiniCluster (describe + Secret, ConfigMap, Service, Job)
//! for 1 to 10,000 brokers. `cargo bench -p minicluster-operator --bench build`

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use minicluster_core::MiniCluster;
use minicluster_operator::build::{BuildOptions, build};

fn minicluster(size: i32) -> MiniCluster {
    let yaml = format!(
        "apiVersion: flux-framework.org/v1alpha2\nkind: MiniCluster\nmetadata: {{name: lammps, namespace: hpc, uid: 0b5c1a4e-1111-2222-3333-444455556666}}\nspec:\n  size: {size}\n  containers:\n    - image: ghcr.io/converged-computing/metric-lammps:latest\n      command: lmp -v x 2 -in in.reaxc.hns\n      workingDir: /opt/lammps/examples/reaxff/HNS\n      volumes: {{data: {{claimName: data, path: /data}}}}\n      environment: {{OMP_NUM_THREADS: '1'}}\n"
    );
    serde_norway::from_str(&yaml).unwrap()
}

fn bench(c: &mut Criterion) {
    let cert = minicluster_core::CurveCert::generate("lammps-0")
        .unwrap()
        .to_text();
    let opts = BuildOptions::default();
    let mut g = c.benchmark_group("build_children");
    for size in [1, 64, 1024, 10_000] {
        let mc = minicluster(size);
        g.bench_with_input(BenchmarkId::from_parameter(size), &mc, |b, mc| {
            b.iter(|| build(mc, &cert, &opts).unwrap())
        });
    }
    g.finish();
    let bytes: Vec<(i32, usize)> = [1, 64, 1024, 10_000]
        .iter()
        .map(|&n| {
            let children = build(&minicluster(n), &cert, &opts).unwrap();
            (n, serde_json::to_vec(&children.objects()).unwrap().len())
        })
        .collect();
    println!("objects' JSON size by broker count: {bytes:?}");
}

criterion_group!(benches, bench);
criterion_main!(benches);
