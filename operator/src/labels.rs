//! Labels and names shared by every child of a MiniCluster.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;

/// The field manager of every write (server-side apply).
pub const MANAGER: &str = "minicluster-operator";

pub const NAME: &str = "app.kubernetes.io/name";
pub const INSTANCE: &str = "app.kubernetes.io/instance";
pub const COMPONENT: &str = "app.kubernetes.io/component";
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Set by Kubernetes on the pods of an Indexed Job: as an annotation by every version, as a
/// label too from 1.28.
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";
/// The container `kubectl logs/exec` (and our launcher) pick in a broker pod: Flux's.
pub const DEFAULT_CONTAINER: &str = "kubectl.kubernetes.io/default-container";
/// On every broker pod: the headless Service whose DNS names it gets. MiniClusters of one
/// namespace may share a Service name; the Service selects this label, so each of them keeps
/// its pods' records.
pub const HEADLESS: &str = "flux-framework.org/headless-service";
/// Hash of the user's spec a Job was built from; a change means the Job must be replaced.
pub const SPEC_HASH: &str = "flux-framework.org/spec-hash";

/// Labels of every child of MiniCluster `name`.
pub fn common(name: &str, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (NAME.into(), "minicluster".into()),
        (INSTANCE.into(), name.into()),
        (COMPONENT.into(), component.into()),
        (MANAGED_BY.into(), MANAGER.into()),
    ])
}

/// Labels that select the broker pods of MiniCluster `name`.
pub fn broker_selector(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (INSTANCE.into(), name.into()),
        (COMPONENT.into(), "broker".into()),
    ])
}

/// The selector as a string (`status.selector`, list calls).
pub fn selector_string(name: &str) -> String {
    broker_selector(name)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Child names.
pub fn cert_secret(name: &str) -> String {
    format!("{name}-curve-cert")
}
pub fn config_map(name: &str) -> String {
    format!("{name}-description")
}
pub fn services(name: &str) -> String {
    format!("{name}-services")
}

/// A broker pod's index in its Indexed Job (its rank): the completion-index annotation, which
/// every Kubernetes version with Indexed Jobs sets, else the label (1.28+) of the same name.
pub fn pod_index(pod: &Pod) -> Option<u32> {
    let m = &pod.metadata;
    m.annotations
        .as_ref()
        .and_then(|a| a.get(COMPLETION_INDEX))
        .or_else(|| m.labels.as_ref().and_then(|l| l.get(COMPLETION_INDEX)))
        .and_then(|i| i.parse().ok())
}

/// Whether `pod` is rank 0's.
pub fn is_rank0(pod: &Pod) -> bool {
    pod_index(pod) == Some(0)
}

/// The container that runs Flux in a broker pod: the one the operator marks as the pod's
/// default container, else (a pod made by another operator) the first.
pub fn flux_container(pod: &Pod) -> Option<String> {
    match pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DEFAULT_CONTAINER))
    {
        Some(name) => Some(name.clone()),
        None => pod
            .spec
            .as_ref()?
            .containers
            .first()
            .map(|c| c.name.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(meta: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({"metadata": meta})).unwrap()
    }

    #[test]
    fn the_index_is_read_from_the_annotation_or_the_label() {
        // Kubernetes before 1.28: the annotation only.
        let old = pod(serde_json::json!({"annotations": {COMPLETION_INDEX: "0"}}));
        assert_eq!(pod_index(&old), Some(0));
        assert!(is_rank0(&old));
        let new = pod(serde_json::json!({"labels": {COMPLETION_INDEX: "3"}}));
        assert_eq!(pod_index(&new), Some(3));
        assert!(!is_rank0(&new));
        assert_eq!(pod_index(&pod(serde_json::json!({}))), None);
    }
}
