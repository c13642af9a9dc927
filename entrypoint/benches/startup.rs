//! Entrypoint overhead: time from the entrypoint's start to the start of the broker, without
//! waits (median of many runs). The broker is a stand-in that exits at once, so only our work
//! and `flux R encode` are measured; with a real `flux` (PATH or `$FLUX_BIN`) its `R encode`
//! is used and also timed alone, in the same run, so our own share can be read off.
//!
//! `cargo bench -p minicluster-entrypoint --bench startup`

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use minicluster_core::{CurveCert, DescribeOptions, describe, spec};

const ENTRYPOINT: &str = env!("CARGO_BIN_EXE_entrypoint");
const STANDIN: &str = env!("CARGO_BIN_EXE_flux-standin");

fn main() {
    let runs: usize = std::env::var("RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(200);
    let dir = tempfile::tempdir().unwrap();
    let description = dir.path().join("description.json");
    let yaml = "apiVersion: flux-framework.org/v1alpha2\nkind: MiniCluster\nmetadata: {name: mc}\nspec:\n  size: 1\n  flux: {container: {disable: true}}\n  containers:\n    - {image: x, launcher: true, command: 'true'}\n";
    let mc = spec::load_bytes("bench", yaml.as_bytes()).unwrap();
    let opts = DescribeOptions {
        loopback_base_port: Some(39_000),
        ..DescribeOptions::default()
    };
    std::fs::write(
        &description,
        describe(&mc.clusters[0].cluster, &opts).unwrap().to_json(),
    )
    .unwrap();
    let cert = dir.path().join("curve.cert");
    CurveCert::generate("mc").unwrap().write(&cert).unwrap();

    // A `flux` whose broker exits at once: the stand-in's R, or a real flux's R.
    let quick = |name: &str, r_from: &Path| -> PathBuf {
        let p = dir.path().join(name);
        std::fs::write(
            &p,
            format!(
                "#!/bin/sh\n[ \"$1\" = broker ] && exit 0\nexec {} \"$@\"\n",
                r_from.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        p
    };

    let standin = quick("flux-standin-quick", Path::new(STANDIN));
    report(
        "stand-in R",
        &overheads(&description, &cert, &standin, dir.path(), runs),
    );

    let real = std::env::var_os("FLUX_BIN").map(PathBuf::from).or_else(|| {
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .map(|d| d.join("flux"))
            .find(|p| p.is_file())
    });
    match real {
        None => println!("real flux: SKIP (no flux on PATH and FLUX_BIN unset)"),
        Some(flux) => {
            let wrapped = quick("flux-real-quick", &flux);
            let with_real = overheads(&description, &cert, &wrapped, dir.path(), runs / 4);
            report("real flux R encode --local", &with_real);
            let alone: Vec<u64> = (0..runs / 4)
                .map(|_| {
                    let t = Instant::now();
                    let ok = Command::new(&flux)
                        .args(["R", "encode", "--hosts=mc-0", "--local"])
                        .output()
                        .unwrap()
                        .status
                        .success();
                    assert!(ok);
                    t.elapsed().as_micros() as u64
                })
                .collect();
            report("`flux R encode --local` alone", &alone);
            println!(
                "entrypoint's own share with a real flux: {:.1} ms (median total minus median R encode)",
                (median(&with_real) as f64 - median(&alone) as f64) / 1000.0
            );
        }
    }
}

fn overheads(description: &Path, cert: &Path, flux: &Path, dir: &Path, runs: usize) -> Vec<u64> {
    (0..runs)
        .map(|i| {
            let root = dir.join(format!("root-{i}"));
            let out = Command::new(ENTRYPOINT)
                .arg("--description")
                .arg(description)
                .arg("--cert")
                .arg(cert)
                .arg("--root")
                .arg(&root)
                .arg("--flux")
                .arg(flux)
                .args(["--rank", "0", "--timed"])
                .env("ENTRYPOINT_LOG", "info")
                .output()
                .unwrap();
            let _ = std::fs::remove_dir_all(&root);
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "{err}");
            err.split("overhead_us=")
                .nth(1)
                .and_then(|s| s.split_whitespace().next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no overhead in:\n{err}"))
        })
        .collect()
}

fn median(v: &[u64]) -> u64 {
    let mut s = v.to_vec();
    s.sort_unstable();
    s[s.len() / 2]
}

fn report(what: &str, v: &[u64]) {
    let mut s = v.to_vec();
    s.sort_unstable();
    println!(
        "{what}: median {:.2} ms, p90 {:.2} ms, min {:.2} ms over {} runs",
        median(v) as f64 / 1000.0,
        s[s.len() * 9 / 10] as f64 / 1000.0,
        s[0] as f64 / 1000.0,
        s.len()
    );
}
