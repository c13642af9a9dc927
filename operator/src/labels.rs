//! Labels and names shared by every child of a MiniCluster.

use std::collections::BTreeMap;

/// The field manager of every write (server-side apply).
pub const MANAGER: &str = "minicluster-operator";

pub const NAME: &str = "app.kubernetes.io/name";
pub const INSTANCE: &str = "app.kubernetes.io/instance";
pub const COMPONENT: &str = "app.kubernetes.io/component";
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Set by Kubernetes on the pods of an Indexed Job.
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";
/// The container `kubectl logs/exec` (and our launcher) pick in a broker pod: Flux's.
pub const DEFAULT_CONTAINER: &str = "kubectl.kubernetes.io/default-container";
/// Hash of the Job's pod template; a change means the Job must be replaced.
pub const TEMPLATE_HASH: &str = "flux-framework.org/template-hash";

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
