//! The headless Service that gives brokers their DNS names, and the pod for `spec.services`.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{PodSpec, PodTemplateSpec, Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use minicluster_core::MiniCluster;

use super::job::{app_container, user_volumes};
use crate::labels;

/// Headless: one DNS record per broker pod (`<name>-<i>.<service>.<ns>.svc`), published before
/// the pods are ready, so brokers find each other while they start.
///
/// Several MiniClusters of a namespace may name the same Service (the default `flux-service`),
/// so it belongs to none of them alone: it selects every pod that names it
/// ([`labels::HEADLESS`]), carries no MiniCluster's instance label, and its owners are added
/// one by one ([`Children::headless_owner`](super::Children)), so it goes when the last of
/// them does.
pub fn headless(mut meta: ObjectMeta, mc: &MiniCluster, service: &str) -> Service {
    let mut l = meta.labels.take().unwrap_or_default();
    l.remove(labels::INSTANCE);
    l.insert(labels::HEADLESS.into(), service.into());
    meta.labels = Some(l);
    meta.owner_references = None;
    let ports: Vec<i32> = mc
        .spec
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().copied())
        .collect();
    Service {
        metadata: meta,
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            selector: Some(BTreeMap::from([(
                labels::HEADLESS.to_string(),
                service.to_string(),
            )])),
            ports: service_ports(&ports),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

fn service_ports(ports: &[i32]) -> Option<Vec<ServicePort>> {
    let mut seen = std::collections::BTreeSet::new();
    let list: Vec<ServicePort> = ports
        .iter()
        .filter(|p| seen.insert(**p))
        .map(|p| ServicePort {
            name: Some(format!("port-{p}")),
            port: *p,
            protocol: Some("TCP".into()),
            ..ServicePort::default()
        })
        .collect();
    (!list.is_empty()).then_some(list)
}

/// `spec.services`: containers run beside the MiniCluster (a database, a dashboard) in one
/// pod of their own, kept running by a Deployment, reachable as `<name>-services`.
pub fn service_pod(
    meta: impl Fn(String) -> ObjectMeta,
    mc: &MiniCluster,
    name: &str,
) -> Option<(Deployment, Service)> {
    if mc.spec.services.is_empty() {
        return None;
    }
    let obj = labels::services(name);
    let selector = BTreeMap::from([
        (labels::INSTANCE.to_string(), name.to_string()),
        (labels::COMPONENT.to_string(), "services".to_string()),
    ]);
    let containers = mc
        .spec
        .services
        .iter()
        .enumerate()
        .map(|(i, c)| app_container(c, &format!("service-{i}"), Vec::new()))
        .collect();
    let mut pod_labels = labels::common(name, "services");
    pod_labels.extend(selector.clone());
    let deployment = Deployment {
        metadata: meta(obj.clone()),
        spec: DeploymentSpec {
            replicas: Some(1),
            selector: LabelSelector {
                match_labels: Some(selector.clone()),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers,
                    volumes: user_volumes(&mc.spec.services),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        },
        ..Deployment::default()
    };
    let ports: Vec<i32> = mc
        .spec
        .services
        .iter()
        .flat_map(|c| c.ports.iter().copied())
        .collect();
    let service = Service {
        metadata: meta(obj),
        spec: Some(ServiceSpec {
            cluster_ip: ports.is_empty().then(|| "None".to_string()),
            selector: Some(selector),
            ports: service_ports(&ports),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    };
    Some((deployment, service))
}
