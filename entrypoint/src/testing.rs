//! Descriptions and facts for the unit tests.

use std::path::PathBuf;
use std::time::Duration;

use minicluster_core::description::Endpoint;
use minicluster_core::{ClusterDescription, DescribeOptions, describe, spec};

use crate::cert::CertFacts;
use crate::identity::IdentityFacts;
use crate::plan::Facts;

/// The description of MiniCluster `mc` with `size` brokers of `max_size`, as the operator
/// would write it.
pub fn description(size: u32, max_size: u32) -> ClusterDescription {
    let yaml = format!(
        "apiVersion: flux-framework.org/v1alpha2\nkind: MiniCluster\nmetadata: {{name: mc}}\nspec:\n  size: {size}\n  maxSize: {max_size}\n  containers:\n    - image: ghcr.io/flux-framework/flux-restful:latest\n      command: hostname\n"
    );
    let loaded = spec::load_bytes("test", yaml.as_bytes()).unwrap();
    describe(&loaded.clusters[0].cluster, &DescribeOptions::default()).unwrap()
}

pub fn loopback(d: &ClusterDescription, base: u16) -> Vec<Endpoint> {
    (0..d.max_size)
        .map(|r| {
            let a = format!("tcp://127.0.0.1:{}", u32::from(base) + r);
            Endpoint {
                host: d.hostname(r),
                bind: a.clone(),
                connect: a,
            }
        })
        .collect()
}

pub fn facts(host: &str) -> Facts {
    Facts {
        identity: IdentityFacts {
            os_hostname: host.into(),
            ..Default::default()
        },
        cert: CertFacts {
            mounted: "/etc/minicluster/curve.cert".into(),
            mounted_exists: true,
            shared_dir: None,
            wait: Duration::from_secs(300),
        },
        flux: PathBuf::from("/mnt/flux/view/bin/flux"),
        self_exe: PathBuf::from("/mnt/flux/entrypoint"),
        cpus: 4,
        path: Some("/usr/bin".into()),
        ld_library_path: None,
        view_python: None,
    }
}
