//! A single-node Kubernetes cluster on this machine, for the tests that need a real one: etcd,
//! kube-apiserver (Node,RBAC), kube-controller-manager, kube-scheduler and a kubelet on a
//! containerd of its own, pods on a bridge, and our DNS responder for `*.svc.cluster.local`.
//!
//! `up` starts it from the binaries in `$KUBE_BIN` and Debian's etcd, containerd and CNI
//! plugins, and imports our images into its containerd; `down` stops it and removes
//! everything it made (processes, mounts, cgroups, the bridge, iptables chains, files).
//! No kube-proxy: headless Services work, ClusterIP Services do not (the `kubernetes`
//! Service's address is forwarded to the API server by one DNAT rule, so pods reach it).

pub mod config;
pub mod images;
pub mod network;
pub mod pki;
pub mod procs;
pub mod teardown;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result, io};

/// Addresses and names of the test cluster. Chosen off the ranges Docker and common LANs
/// use; the API server and DNS listen on the bridge's host address, which only this machine
/// and its pods reach.
pub const BRIDGE: &str = "mck0";
pub const HOST_IP: Ipv4Addr = Ipv4Addr::new(10, 218, 0, 1);
pub const POD_CIDR: &str = "10.218.0.0/16";
pub const SERVICE_CIDR: &str = "10.219.0.0/16";
/// The `kubernetes` Service's ClusterIP: the first of the service range.
pub const API_SERVICE_IP: Ipv4Addr = Ipv4Addr::new(10, 219, 0, 1);
pub const API_PORT: u16 = 6443;
pub const ETCD_PORT: u16 = 23790;
pub const ETCD_PEER_PORT: u16 = 23800;
pub const NODE: &str = "minicluster-node";
pub const DOMAIN: &str = "cluster.local";
/// The CNI network's name (its cache entries and chain comments carry it).
pub const NETWORK: &str = "minicluster-test";

/// Where the cluster keeps its state; one cluster per machine.
#[derive(Clone, Debug)]
pub struct Layout {
    pub dir: PathBuf,
}

impl Layout {
    /// `$MINICLUSTER_TESTKIT_DIR`, else `/var/lib/minicluster-testkit`.
    pub fn from_env() -> Layout {
        Layout {
            dir: std::env::var_os("MINICLUSTER_TESTKIT_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/var/lib/minicluster-testkit")),
        }
    }
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }
    pub fn pki(&self) -> PathBuf {
        self.path("pki")
    }
    pub fn logs(&self) -> PathBuf {
        self.path("logs")
    }
    pub fn log(&self, component: &str) -> PathBuf {
        self.logs().join(format!("{component}.log"))
    }
    pub fn pids(&self) -> PathBuf {
        self.path("pids")
    }
    pub fn kubeconfig(&self, user: &str) -> PathBuf {
        self.path(&format!("{user}.kubeconfig"))
    }
    /// The kubeconfig tests and `kubectl` use: cluster-admin.
    pub fn admin_kubeconfig(&self) -> PathBuf {
        self.kubeconfig("admin")
    }
    pub fn containerd_socket(&self) -> PathBuf {
        self.path("containerd/containerd.sock")
    }
    /// What `up` recorded of the machine before it changed anything (for `down`).
    pub fn before(&self) -> PathBuf {
        self.path("before.json")
    }
    /// Written last by `up`: the cluster is ready.
    pub fn ready_marker(&self) -> PathBuf {
        self.path("ready")
    }
}

/// What `up` needs from outside: the Kubernetes binaries, Debian's, and a real flux.
#[derive(Clone, Debug)]
pub struct Inputs {
    /// kube-apiserver, kube-controller-manager, kube-scheduler, kubelet.
    pub kube_bin: PathBuf,
    /// The real `flux` whose installation goes into the Flux image.
    pub flux: PathBuf,
    /// Our binaries (entrypoint, minicluster, minicluster-rest) for the images.
    pub our_bin: PathBuf,
}

/// The Kubernetes version of `$KUBE_BIN`'s API server: (major, minor, full string).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Version {
    pub minor: u32,
    pub full: String,
}

impl Version {
    /// From `kube-apiserver --version` ("Kubernetes v1.36.3").
    pub fn parse(out: &str) -> Option<Version> {
        let v = out.split_whitespace().find(|w| w.starts_with('v'))?;
        let mut parts = v.trim_start_matches('v').split('.');
        let major: u32 = parts.next()?.parse().ok()?;
        let minor: u32 = parts.next()?.parse().ok()?;
        (major == 1).then(|| Version {
            minor,
            full: v.to_string(),
        })
    }

    pub fn of(kube_bin: &Path) -> Result<Version> {
        let out = procs::output(
            std::process::Command::new(kube_bin.join("kube-apiserver")).arg("--version"),
        )?;
        Version::parse(&out).ok_or_else(|| Error::Command {
            command: "kube-apiserver --version".into(),
            detail: format!("unexpected output {out:?}"),
        })
    }
}

/// Brings the cluster up; a cluster already up is left as it is.
pub async fn up(layout: &Layout, inputs: &Inputs, progress: &dyn Fn(&str)) -> Result<()> {
    if layout.ready_marker().exists() {
        progress("the test cluster is already up");
        return Ok(());
    }
    if layout.dir.exists() {
        progress("removing what a previous cluster left");
        teardown::down(layout, progress).await?;
    }
    let version = Version::of(&inputs.kube_bin)?;
    progress(&format!(
        "Kubernetes {} from {}",
        version.full,
        inputs.kube_bin.display()
    ));
    for (what, path, fix) in [
        ("etcd", "/usr/bin/etcd", "apt-get install etcd-server"),
        (
            "containerd",
            "/usr/bin/containerd",
            "apt-get install containerd",
        ),
        ("ctr", "/usr/bin/ctr", "apt-get install containerd"),
        (
            "CNI plugins",
            "/usr/lib/cni/bridge",
            "apt-get install containernetworking-plugins",
        ),
        ("iptables", "/usr/sbin/iptables", "apt-get install iptables"),
        (
            "debootstrap",
            "/usr/sbin/debootstrap",
            "apt-get install debootstrap",
        ),
    ] {
        if !Path::new(path).exists() {
            return Err(Error::Missing {
                what: format!("{what} ({path})"),
                fix: fix.into(),
            });
        }
    }
    for d in [
        "pki",
        "logs",
        "pids",
        "cni/net.d",
        "cni/ipam",
        "cni/cache",
        "containerd",
        "kubelet",
    ] {
        std::fs::create_dir_all(layout.path(d)).map_err(io(format!("creating {d}")))?;
    }
    teardown::Before::record(layout)?;
    std::fs::write(
        layout.path("version.json"),
        serde_json::to_vec(&version).expect("a version serialises"),
    )
    .map_err(io("writing version.json"))?;

    progress("certificates and kubeconfigs");
    let files = pki::generate()?;
    pki::write(layout, &files)?;

    progress("network: bridge, DNAT of the kubernetes Service");
    network::up()?;

    let cfg = config::Config {
        layout: layout.clone(),
        version: version.clone(),
    };
    cfg.write_files()?;

    progress("etcd");
    procs::start(layout, "etcd", Path::new("/usr/bin/etcd"), &cfg.etcd_args())?;
    procs::wait_tcp(
        layout,
        "etcd",
        ("127.0.0.1", ETCD_PORT),
        Duration::from_secs(30),
    )
    .await?;

    progress("containerd");
    procs::start(
        layout,
        "containerd",
        Path::new("/usr/bin/containerd"),
        &[
            "--config".into(),
            layout.path("containerd/config.toml").display().to_string(),
        ],
    )?;
    procs::wait_file(
        layout,
        "containerd",
        &layout.containerd_socket(),
        Duration::from_secs(30),
    )
    .await?;

    progress("kube-apiserver");
    procs::start(
        layout,
        "kube-apiserver",
        &inputs.kube_bin.join("kube-apiserver"),
        &cfg.apiserver_args(),
    )?;
    let admin = client(layout).await?;
    procs::wait_api_ready(layout, &admin, Duration::from_secs(90)).await?;

    progress("kube-controller-manager, kube-scheduler, DNS");
    procs::start(
        layout,
        "kube-controller-manager",
        &inputs.kube_bin.join("kube-controller-manager"),
        &cfg.controller_manager_args(),
    )?;
    procs::start(
        layout,
        "kube-scheduler",
        &inputs.kube_bin.join("kube-scheduler"),
        &cfg.scheduler_args(),
    )?;
    let me = std::env::current_exe().map_err(io("finding this program"))?;
    procs::start(
        layout,
        "dns",
        &me,
        &[
            "dns".into(),
            "--kubeconfig".into(),
            layout.admin_kubeconfig().display().to_string(),
            "--listen".into(),
            format!("{HOST_IP}:53"),
        ],
    )?;

    progress("images: building and importing (the first time takes minutes: debootstrap)");
    images::build_and_import(layout, inputs, progress).await?;

    progress("kubelet");
    procs::start(
        layout,
        "kubelet",
        &inputs.kube_bin.join("kubelet"),
        &cfg.kubelet_args(),
    )?;
    procs::wait_node_ready(layout, &admin, Duration::from_secs(120)).await?;
    procs::wait_default_service_account(layout, &admin, Duration::from_secs(60)).await?;
    procs::wait_dns(layout, Duration::from_secs(30)).await?;

    std::fs::write(layout.ready_marker(), version.full.as_bytes())
        .map_err(io("writing the ready marker"))?;
    progress(&format!(
        "up: Kubernetes {} — export KUBECONFIG={}",
        version.full,
        layout.admin_kubeconfig().display()
    ));
    Ok(())
}

/// A client of the cluster as its administrator.
pub async fn client(layout: &Layout) -> Result<kube::Client> {
    let text = std::fs::read_to_string(layout.admin_kubeconfig())
        .map_err(io("reading the admin kubeconfig"))?;
    let kc: kube::config::Kubeconfig =
        serde_norway::from_str(&text).map_err(|e| Error::Kubeconfig(e.to_string()))?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .map_err(|e| Error::Kubeconfig(e.to_string()))?;
    Ok(kube::Client::try_from(cfg)?)
}

/// The lines `eval "$(minicluster-testkit env)"` takes: where tests find the cluster.
pub fn env_lines(layout: &Layout) -> Result<String> {
    if !layout.ready_marker().exists() {
        return Err(Error::Missing {
            what: "a running test cluster".into(),
            fix: "minicluster-testkit up".into(),
        });
    }
    let kc = layout.admin_kubeconfig();
    Ok(format!(
        "export MC_TEST_KUBECONFIG={kc}\nexport MC_TEST_KUBE_VERSION={}\n",
        std::fs::read_to_string(layout.ready_marker()).unwrap_or_default(),
        kc = kc.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_from_the_api_server() {
        assert_eq!(
            Version::parse("Kubernetes v1.36.3\n"),
            Some(Version {
                minor: 36,
                full: "v1.36.3".into()
            })
        );
        assert_eq!(Version::parse("Kubernetes v1.26.5").unwrap().minor, 26);
        assert_eq!(Version::parse("nonsense"), None);
    }
}
