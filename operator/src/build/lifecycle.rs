//! How a MiniCluster ends, in the Job's own terms where the server has them: rank 0 decides.
//!
//! - Rank 0's container exits with its command's code. Any other non-zero code of the Flux
//!   container fails the Job at once (pod failure policy `FailJob`): nothing is retried, so
//!   nothing finished or half-done runs again.
//! - A worker stopped from outside (pod deleted, evicted, scaled away) exits with
//!   [`WORKER_LEFT`]; the policy ignores that failure, so the Job starts the worker again and
//!   it rejoins the running instance.
//! - The Job succeeds as soon as index 0 (rank 0) succeeds (success policy); the Job
//!   controller then stops the workers still running. Servers without a success policy see
//!   the workers leave with the instance; the operator stops stragglers itself.

use k8s_openapi::api::batch::v1::{
    PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement, PodFailurePolicyRule, SuccessPolicy,
    SuccessPolicyRule,
};
use minicluster_core::exit_codes::WORKER_LEFT;

pub fn pod_failure_policy(flux_container: &str) -> PodFailurePolicy {
    let on = |operator: &str, values: Vec<i32>| PodFailurePolicyOnExitCodesRequirement {
        container_name: Some(flux_container.to_string()),
        operator: operator.into(),
        values,
    };
    PodFailurePolicy {
        rules: vec![
            PodFailurePolicyRule {
                action: "Ignore".into(),
                on_exit_codes: Some(on("In", vec![WORKER_LEFT])),
                ..PodFailurePolicyRule::default()
            },
            PodFailurePolicyRule {
                action: "FailJob".into(),
                on_exit_codes: Some(on("NotIn", vec![0])),
                ..PodFailurePolicyRule::default()
            },
        ],
    }
}

pub fn success_policy() -> SuccessPolicy {
    SuccessPolicy {
        rules: vec![SuccessPolicyRule {
            succeeded_indexes: Some("0".into()),
            succeeded_count: None,
        }],
    }
}
