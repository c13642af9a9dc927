//! Pure builders: every child object of a MiniCluster as a function of its spec (and of the
//! certificate to keep). Nothing here talks to the API server.

mod config;
mod job;
mod lifecycle;
mod services;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;
use minicluster_core::{ClusterDescription, DescribeOptions, MiniCluster, describe};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::labels;

pub use config::CERT_KEY;
pub use job::{ENTRYPOINT_DIR, spec_hash};

/// Settings of the operator that are not part of a MiniCluster.
#[derive(Clone, Debug)]
pub struct BuildOptions {
    /// Image holding the entrypoint binary (the operator's runner image).
    pub runner_image: String,
    /// Pull policy of the init container that takes the entrypoint from it.
    pub runner_pull_policy: String,
    /// Cluster DNS domain.
    pub cluster_domain: String,
    /// What the API server can do (its version).
    pub server: crate::features::ServerFeatures,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            runner_image: DEFAULT_RUNNER_IMAGE.into(),
            runner_pull_policy: DEFAULT_RUNNER_PULL_POLICY.into(),
            cluster_domain: "cluster.local".into(),
            server: Default::default(),
        }
    }
}

/// The runner image is pinned by its tag: a node that has it uses it (also for `:latest`,
/// whose implicit policy would be Always and fail wherever no registry is reachable).
pub const DEFAULT_RUNNER_PULL_POLICY: &str = "IfNotPresent";

/// The runner image built from `Dockerfile.runner`.
pub const DEFAULT_RUNNER_IMAGE: &str = "ghcr.io/minicluster/runner:latest";

/// Everything the operator creates for one MiniCluster.
#[derive(Clone, Debug)]
pub struct Children {
    pub description: ClusterDescription,
    pub secret: Secret,
    pub config_map: ConfigMap,
    /// Applied without owners: it may be shared (see [`services::headless`]).
    pub headless: Service,
    /// This MiniCluster as one owner of the headless Service, added by a merge patch that
    /// keeps the other owners.
    pub headless_owner: Option<OwnerReference>,
    /// `spec.services`: their Deployment and Service.
    pub services: Option<(Deployment, Service)>,
    pub job: Job,
}

impl Children {
    /// All objects, in the order they are applied, as JSON.
    pub fn objects(&self) -> Vec<serde_json::Value> {
        fn v<T: Serialize>(t: &T) -> serde_json::Value {
            serde_json::to_value(t).expect("Kubernetes objects serialise")
        }
        let mut out = vec![v(&self.secret), v(&self.config_map), v(&self.headless)];
        if let Some((d, s)) = &self.services {
            out.push(v(d));
            out.push(v(s));
        }
        out.push(v(&self.job));
        out
    }
}

/// Builds every child. `cert` is the certificate text to keep (the existing Secret's, the
/// spec's, or a fresh one chosen by the caller).
pub fn build(mc: &MiniCluster, cert: &str, opts: &BuildOptions) -> Result<Children> {
    let name = mc.metadata.name.clone().ok_or(Error::Metadata("name"))?;
    let namespace = mc
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let d = describe(
        mc,
        &DescribeOptions {
            namespace: namespace.clone(),
            cluster_domain: opts.cluster_domain.clone(),
            ..DescribeOptions::default()
        },
    )?;
    let owner = mc.controller_owner_ref(&());
    let meta = |obj_name: String, component: &str| ObjectMeta {
        name: Some(obj_name),
        namespace: Some(namespace.clone()),
        labels: Some(labels::common(&name, component)),
        owner_references: owner.clone().map(|o: OwnerReference| vec![o]),
        ..ObjectMeta::default()
    };
    Ok(Children {
        secret: config::cert_secret(meta(labels::cert_secret(&name), "certificate"), cert),
        config_map: config::description(meta(labels::config_map(&name), "description"), &d),
        headless: services::headless(
            meta(d.network.service.clone(), "network"),
            mc,
            &d.network.service,
        ),
        headless_owner: owner.clone().map(|mut o| {
            // One owner among several: not the controller.
            o.controller = None;
            o.block_owner_deletion = None;
            o
        }),
        services: services::service_pod(|n| meta(n, "services"), mc, &name),
        job: job::job(meta(name.clone(), "broker"), mc, &d, opts),
        description: d,
    })
}
