//! Every component's command line and configuration file, built purely from the layout and
//! the Kubernetes version (a few settings moved between flags and files across versions).

use serde_json::json;

use super::{
    API_PORT, BRIDGE, DOMAIN, ETCD_PEER_PORT, ETCD_PORT, HOST_IP, Layout, NETWORK, NODE, POD_CIDR,
    SERVICE_CIDR, Version,
};
use crate::error::{Result, io};

/// The pause image every pod's sandbox runs (built here; nothing is pulled).
pub const PAUSE_IMAGE: &str = "minicluster.test/pause:dev";

pub struct Config {
    pub layout: Layout,
    pub version: Version,
}

impl Config {
    fn p(&self, rel: &str) -> String {
        self.layout.path(rel).display().to_string()
    }

    pub fn etcd_args(&self) -> Vec<String> {
        vec![
            format!("--name={NODE}"),
            format!("--data-dir={}", self.p("etcd")),
            format!("--listen-client-urls=http://127.0.0.1:{ETCD_PORT}"),
            format!("--advertise-client-urls=http://127.0.0.1:{ETCD_PORT}"),
            format!("--listen-peer-urls=http://127.0.0.1:{ETCD_PEER_PORT}"),
            format!("--initial-advertise-peer-urls=http://127.0.0.1:{ETCD_PEER_PORT}"),
            format!("--initial-cluster={NODE}=http://127.0.0.1:{ETCD_PEER_PORT}"),
            "--listen-metrics-urls=".into(),
            // One node, a test: durability of every write is not what is tested.
            "--unsafe-no-fsync".into(),
        ]
    }

    pub fn apiserver_args(&self) -> Vec<String> {
        vec![
            format!("--etcd-servers=http://127.0.0.1:{ETCD_PORT}"),
            format!("--bind-address={HOST_IP}"),
            format!("--advertise-address={HOST_IP}"),
            format!("--secure-port={API_PORT}"),
            format!("--tls-cert-file={}", self.p("pki/apiserver.crt")),
            format!("--tls-private-key-file={}", self.p("pki/apiserver.key")),
            format!("--client-ca-file={}", self.p("pki/ca.crt")),
            format!(
                "--kubelet-client-certificate={}",
                self.p("pki/apiserver-kubelet-client.crt")
            ),
            format!(
                "--kubelet-client-key={}",
                self.p("pki/apiserver-kubelet-client.key")
            ),
            // The node's name resolves nowhere; its address does.
            "--kubelet-preferred-address-types=InternalIP".into(),
            format!("--service-account-key-file={}", self.p("pki/sa.pub")),
            format!(
                "--service-account-signing-key-file={}",
                self.p("pki/sa.key")
            ),
            format!("--service-account-issuer=https://kubernetes.default.svc.{DOMAIN}"),
            format!("--service-cluster-ip-range={SERVICE_CIDR}"),
            "--authorization-mode=Node,RBAC".into(),
            "--enable-admission-plugins=NodeRestriction".into(),
            "--allow-privileged=true".into(),
            "--profiling=false".into(),
            "--v=1".into(),
        ]
    }

    pub fn controller_manager_args(&self) -> Vec<String> {
        vec![
            format!("--kubeconfig={}", self.p("controller-manager.kubeconfig")),
            format!(
                "--authentication-kubeconfig={}",
                self.p("controller-manager.kubeconfig")
            ),
            format!(
                "--authorization-kubeconfig={}",
                self.p("controller-manager.kubeconfig")
            ),
            format!(
                "--service-account-private-key-file={}",
                self.p("pki/sa.key")
            ),
            format!("--root-ca-file={}", self.p("pki/ca.crt")),
            "--use-service-account-credentials=true".into(),
            // Certificates are made by `up`; nothing asks for one later.
            "--controllers=*,-csrsigning".into(),
            "--leader-elect=false".into(),
            "--bind-address=127.0.0.1".into(),
            "--profiling=false".into(),
            "--v=1".into(),
        ]
    }

    pub fn scheduler_args(&self) -> Vec<String> {
        vec![
            format!("--kubeconfig={}", self.p("scheduler.kubeconfig")),
            format!(
                "--authentication-kubeconfig={}",
                self.p("scheduler.kubeconfig")
            ),
            format!(
                "--authorization-kubeconfig={}",
                self.p("scheduler.kubeconfig")
            ),
            "--leader-elect=false".into(),
            "--bind-address=127.0.0.1".into(),
            "--profiling=false".into(),
            "--v=1".into(),
        ]
    }

    pub fn kubelet_args(&self) -> Vec<String> {
        let mut a = vec![
            format!("--config={}", self.p("kubelet/config.yaml")),
            format!("--kubeconfig={}", self.p("kubelet.kubeconfig")),
            format!("--root-dir={}", self.p("kubelet/root")),
            format!("--cert-dir={}", self.p("kubelet/pki")),
            format!("--hostname-override={NODE}"),
            format!("--node-ip={HOST_IP}"),
            "--v=1".into(),
        ];
        // Before 1.27 the runtime endpoint was a flag only.
        if self.version.minor < 27 {
            a.push(format!(
                "--container-runtime-endpoint=unix://{}",
                self.layout.containerd_socket().display()
            ));
        }
        a
    }

    /// containerd's configuration (format version 2, containerd 1.6/1.7): its own root,
    /// state and socket, so it never meets Docker's containerd.
    pub fn containerd_toml(&self) -> String {
        let l = &self.layout;
        format!(
            r#"version = 2
root = "{root}"
state = "{state}"
plugin_dir = ""
disabled_plugins = ["io.containerd.internal.v1.tracing", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = "{sock}"

[ttrpc]
  address = "{sock}.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  # No CAP_SYS_RESOURCE here: containers may only raise their OOM score.
  restrict_oom_score_adj = true
  enable_selinux = false

[plugins."io.containerd.grpc.v1.cri".containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
  SystemdCgroup = false

[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = "/usr/lib/cni"
  conf_dir = "{cni}"
  max_conf_num = 1

[plugins."io.containerd.grpc.v1.cri".registry]
  config_path = ""
"#,
            root = l.path("containerd/root").display(),
            state = l.path("containerd/state").display(),
            sock = l.containerd_socket().display(),
            opt = l.path("containerd/opt").display(),
            pause = PAUSE_IMAGE,
            cni = l.path("cni/net.d").display(),
        )
    }

    /// The pod network: one bridge with the host as gateway, addresses from our own IPAM
    /// directory, and the firewall plugin (Docker sets the FORWARD policy to DROP).
    pub fn cni_conflist(&self) -> serde_json::Value {
        json!({
            "cniVersion": "1.0.0",
            "name": NETWORK,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": BRIDGE,
                    "isGateway": true,
                    "ipMasq": false,
                    "hairpinMode": true,
                    "ipam": {
                        "type": "host-local",
                        "dataDir": self.layout.path("cni/ipam").display().to_string(),
                        "ranges": [[{
                            "subnet": POD_CIDR,
                            "rangeStart": "10.218.1.1",
                            "gateway": HOST_IP.to_string(),
                        }]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                    },
                },
                {"type": "firewall", "backend": "iptables"},
                {"type": "portmap", "capabilities": {"portMappings": true}},
            ],
        })
    }

    pub fn kubelet_config(&self) -> serde_json::Value {
        let mut c = json!({
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "authentication": {
                "anonymous": {"enabled": false},
                "webhook": {"enabled": true},
                "x509": {"clientCAFile": self.p("pki/ca.crt")},
            },
            "authorization": {"mode": "Webhook"},
            "cgroupDriver": "cgroupfs",
            "clusterDNS": [HOST_IP.to_string()],
            "clusterDomain": DOMAIN,
            "failSwapOn": false,
            "address": HOST_IP.to_string(),
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": 0,
            "readOnlyPort": 0,
            "staticPodPath": "",
            "serializeImagePulls": false,
            "resolvConf": self.p("kubelet/resolv.conf"),
            // A test machine's disk and memory: evict nothing for pressure.
            "evictionHard": {
                "memory.available": "50Mi",
                "nodefs.available": "1%",
                "nodefs.inodesFree": "1%",
                "imagefs.available": "1%",
            },
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "localStorageCapacityIsolation": false,
            "maxPods": 250,
            "podPidsLimit": -1,
            "protectKernelDefaults": false,
            "makeIPTablesUtilChains": false,
            "syncFrequency": "10s",
            "fileCheckFrequency": "10s",
        });
        if self.version.minor >= 27 {
            c["containerRuntimeEndpoint"] =
                format!("unix://{}", self.layout.containerd_socket().display()).into();
        }
        if self.version.minor >= 31 {
            // This machine has cgroup v1, which newer kubelets refuse unless told.
            c["failCgroupV1"] = false.into();
        }
        c
    }

    /// Writes containerd's, the CNI and the kubelet's configuration files.
    pub fn write_files(&self) -> Result<()> {
        let l = &self.layout;
        let writes = [
            (l.path("containerd/config.toml"), self.containerd_toml()),
            (
                l.path(&format!("cni/net.d/10-{NETWORK}.conflist")),
                serde_json::to_string_pretty(&self.cni_conflist()).expect("json"),
            ),
            (
                l.path("kubelet/config.yaml"),
                serde_norway::to_string(&self.kubelet_config()).expect("yaml"),
            ),
            // Pods with dnsPolicy Default get this: nothing outside the cluster resolves.
            (
                l.path("kubelet/resolv.conf"),
                format!("nameserver {HOST_IP}\n"),
            ),
        ];
        for (path, text) in writes {
            std::fs::write(&path, text).map_err(io(format!("writing {}", path.display())))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(minor: u32) -> Config {
        Config {
            layout: Layout { dir: "/x".into() },
            version: Version {
                minor,
                full: format!("v1.{minor}.0"),
            },
        }
    }

    #[test]
    fn the_runtime_endpoint_moves_from_flag_to_file_at_1_27() {
        let old = cfg(26);
        assert!(
            old.kubelet_args()
                .iter()
                .any(|a| a.starts_with("--container-runtime-endpoint"))
        );
        assert!(
            old.kubelet_config()
                .get("containerRuntimeEndpoint")
                .is_none()
        );
        let new = cfg(36);
        assert!(
            !new.kubelet_args()
                .iter()
                .any(|a| a.starts_with("--container-runtime-endpoint"))
        );
        assert_eq!(
            new.kubelet_config()["containerRuntimeEndpoint"],
            "unix:///x/containerd/containerd.sock"
        );
        assert_eq!(new.kubelet_config()["failCgroupV1"], false);
    }

    #[test]
    fn the_api_server_authorizes_with_node_and_rbac() {
        assert!(
            cfg(36)
                .apiserver_args()
                .contains(&"--authorization-mode=Node,RBAC".into())
        );
    }

    #[test]
    fn containerd_config_parses_as_toml() {
        let t: toml::Table = cfg(36).containerd_toml().parse().unwrap();
        assert_eq!(t["version"].as_integer(), Some(2));
    }
}
