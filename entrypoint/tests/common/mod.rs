//! MiniClusters of entrypoint processes on this machine, for the integration tests.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use minicluster_core::{DescribeOptions, describe, spec};

pub const ENTRYPOINT: &str = env!("CARGO_BIN_EXE_entrypoint");
pub const STANDIN: &str = env!("CARGO_BIN_EXE_flux-standin");

/// `maxSize` consecutive free loopback ports.
fn free_ports(n: u16) -> u16 {
    for _ in 0..200 {
        let base = 20_000 + fastrand::u16(0..40_000);
        let all_free = (0..n).all(|i| TcpListener::bind(("127.0.0.1", base + i)).is_ok());
        if all_free {
            return base;
        }
    }
    panic!("no {n} consecutive free ports on 127.0.0.1");
}

/// A MiniCluster spec body for `size` brokers named `mc`.
pub fn spec_yaml(size: u32, extra_spec: &str, container: &str) -> String {
    spec_yaml_flux(size, "", extra_spec, container)
}

/// Same, with more `spec.flux` fields (indented four spaces).
pub fn spec_yaml_flux(size: u32, flux: &str, extra_spec: &str, container: &str) -> String {
    format!(
        "apiVersion: flux-framework.org/v1alpha2\nkind: MiniCluster\nmetadata: {{name: mc}}\nspec:\n  size: {size}\n  flux:\n    container: {{disable: true}}\n    connectTimeout: 10s\n{flux}{extra_spec}  containers:\n    - image: local\n{container}"
    )
}

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub size: u32,
    pub flux: PathBuf,
    pub description: PathBuf,
}

impl Cluster {
    /// Renders the description (brokers on loopback ports) into a fresh directory.
    pub fn new(yaml: &str, flux: &Path) -> Cluster {
        let loaded = spec::load_bytes("test", yaml.as_bytes()).unwrap();
        let mc = &loaded.clusters[0].cluster;
        let size = mc.spec.size as u32;
        let max = mc.spec.effective_max_size() as u16;
        let opts = DescribeOptions {
            loopback_base_port: Some(free_ports(max)),
            ..DescribeOptions::default()
        };
        let d = describe(mc, &opts).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let description = dir.path().join("description.json");
        std::fs::write(&description, d.to_json()).unwrap();
        std::fs::create_dir(dir.path().join("shared")).unwrap();
        // `flux` on the brokers' PATH is the one under test (commands such as `flux run`).
        std::fs::create_dir(dir.path().join("bin")).unwrap();
        std::os::unix::fs::symlink(flux, dir.path().join("bin/flux")).unwrap();
        Cluster {
            dir,
            size,
            flux: flux.to_path_buf(),
            description,
        }
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// The entrypoint command of broker `rank`.
    pub fn command(&self, rank: u32) -> Command {
        self.command_with_cert(rank, &self.path("no-mounted-cert"))
    }

    /// The entrypoint command of broker `rank`, with `cert` as its mounted certificate.
    pub fn command_with_cert(&self, rank: u32, cert: &Path) -> Command {
        self.command_at(rank, cert, &self.path(&format!("rank-{rank}")))
    }

    /// The entrypoint command of broker `rank`, with its certificate and root directory.
    pub fn command_at(&self, rank: u32, cert: &Path, root: &Path) -> Command {
        let mut c = Command::new(ENTRYPOINT);
        c.arg("--description")
            .arg(&self.description)
            .arg("--cert")
            .arg(cert)
            .arg("--shared-dir")
            .arg(self.path("shared"))
            .arg("--rank")
            .arg(rank.to_string())
            .arg("--root")
            .arg(root)
            .arg("--flux")
            .arg(&self.flux)
            .env_remove("JOB_COMPLETION_INDEX")
            .env("PATH", self.path_env());
        c
    }

    /// Starts the workers (ranks 1..size), their output in `rank-N.log`.
    pub fn start_workers(&self) -> Vec<Child> {
        (1..self.size)
            .map(|r| {
                let log = std::fs::File::create(self.path(&format!("rank-{r}.log"))).unwrap();
                self.command(r)
                    .stdout(log.try_clone().unwrap())
                    .stderr(log)
                    .spawn()
                    .unwrap()
            })
            .collect()
    }

    fn path_env(&self) -> std::ffi::OsString {
        let mut dirs = vec![self.path("bin")];
        dirs.extend(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        ));
        std::env::join_paths(dirs).unwrap()
    }

    pub fn log(&self, rank: u32) -> String {
        std::fs::read_to_string(self.path(&format!("rank-{rank}.log"))).unwrap_or_default()
    }

    /// Runs rank 0 to its end (at most `limit`) with its output captured.
    pub fn run_rank0(&self, limit: Duration) -> Output {
        let child = self
            .command(0)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_output(child, limit)
    }
}

/// Waits for a child with a limit; kills it and fails the test past the limit.
pub fn wait_output(mut child: Child, limit: Duration) -> Output {
    let started = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "still running after {limit:?}\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for every worker to exit within `limit`; their exit codes.
pub fn wait_all(workers: &mut [Child], limit: Duration) -> Vec<i32> {
    let started = Instant::now();
    let mut codes = vec![None; workers.len()];
    while codes.iter().any(Option::is_none) {
        for (i, w) in workers.iter_mut().enumerate() {
            if codes[i].is_none()
                && let Some(s) = w.try_wait().unwrap()
            {
                codes[i] = Some(s.code().unwrap_or(-1));
            }
        }
        if started.elapsed() > limit {
            for w in workers.iter_mut() {
                let _ = w.kill();
                let _ = w.wait();
            }
            panic!("workers still running after {limit:?}: {codes:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    codes.into_iter().map(Option::unwrap).collect()
}

/// Waits until `pred` holds (polling), failing after `limit`.
pub fn wait_until(limit: Duration, what: &str, mut pred: impl FnMut() -> bool) {
    let started = Instant::now();
    while !pred() {
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
