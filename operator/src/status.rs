//! The MiniCluster's status, computed (purely) from what was observed: validation, the Job and
//! the broker pods. A condition keeps its transition time while its status stays the same.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use minicluster_core::spec::MiniClusterStatus;
use minicluster_core::{FieldError, MiniCluster};

use crate::labels;

/// What reconcile saw and did.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// Problems of the spec; empty when valid.
    pub problems: Vec<FieldError>,
    /// The children were applied in this reconcile.
    pub applied: bool,
    pub job: Option<Job>,
    pub pods: Vec<Pod>,
}

impl Observed {
    /// Broker pods in phase Running.
    pub fn running(&self) -> usize {
        self.pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .count()
    }

    /// The Job's condition of `type_` when it is True: (reason, message).
    pub fn job_condition(&self, type_: &str) -> Option<(String, String)> {
        self.job
            .as_ref()?
            .status
            .as_ref()?
            .conditions
            .as_ref()?
            .iter()
            .find(|c| c.type_ == type_ && c.status == "True")
            .map(|c| {
                (
                    c.reason.clone().unwrap_or_else(|| type_.to_string()),
                    c.message.clone().unwrap_or_default(),
                )
            })
    }

    /// Rank 0's pod has finished (Succeeded or Failed).
    pub fn rank0_finished(&self) -> bool {
        self.pods.iter().any(|p| {
            labels::is_rank0(p)
                && matches!(
                    p.status.as_ref().and_then(|s| s.phase.as_deref()),
                    Some("Succeeded") | Some("Failed")
                )
        }) || self.job_condition("Complete").is_some()
    }
}

pub fn compute(mc: &MiniCluster, o: &Observed, now: Time) -> MiniClusterStatus {
    let prev = mc.status.clone().unwrap_or_default();
    let generation = mc.metadata.generation;
    let name = mc.metadata.name.clone().unwrap_or_default();
    let valid = o.problems.is_empty();
    let job_size = o
        .job
        .as_ref()
        .and_then(|j| j.spec.as_ref())
        .and_then(|s| s.parallelism);
    // An invalid spec changes nothing: the size in effect stays the Job's.
    let size = if valid {
        mc.spec.size
    } else {
        job_size.unwrap_or(prev.size)
    };
    let running = o.running();
    let succeeded = o.job_condition("Complete");
    let failed = o.job_condition("Failed");

    let mut conds = Vec::new();
    let mut set = |type_: &str, ok: bool, reason: &str, message: String| {
        conds.push(condition(
            &prev.conditions,
            type_,
            ok,
            reason,
            message,
            generation,
            now.clone(),
        ));
    };
    if valid {
        set("Validated", true, "Valid", "the spec is valid".into());
    } else {
        let list = o
            .problems
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join("; ");
        let reason = if o.problems.iter().any(|p| p.path == "spec.maxSize") {
            "SizeRefused"
        } else {
            "InvalidSpec"
        };
        set("Validated", false, reason, list);
    }
    let created = o.applied || o.job.is_some();
    set(
        "Created",
        created,
        if created {
            "ChildrenApplied"
        } else {
            "NotCreated"
        },
        if created {
            "Secret, ConfigMap, Service and Job are applied".into()
        } else {
            "nothing is created until the spec is valid".into()
        },
    );
    set(
        "BrokersReady",
        size > 0 && running >= size as usize,
        if running >= size as usize {
            "AllRunning"
        } else {
            "Starting"
        },
        format!("{running}/{size} brokers running"),
    );
    match &succeeded {
        Some((reason, message)) => set("Succeeded", true, &camel(reason), message.clone()),
        None => set("Succeeded", false, "NotFinished", String::new()),
    }
    match &failed {
        Some((reason, message)) => set("Failed", true, &camel(reason), message.clone()),
        None => set("Failed", false, "NotFailed", String::new()),
    }

    let phase = if !valid && o.job.is_none() {
        "Invalid"
    } else if failed.is_some() {
        "Failed"
    } else if succeeded.is_some() {
        "Succeeded"
    } else if running > 0 {
        "Running"
    } else {
        "Pending"
    };
    MiniClusterStatus {
        conditions: conds,
        jobid: prev.jobid,
        maximum_size: mc.spec.effective_max_size(),
        selector: labels::selector_string(&name),
        size,
        ready: Some(format!("{running}/{size}")),
        phase: Some(phase.into()),
    }
}

fn condition(
    prev: &[Condition],
    type_: &str,
    ok: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: Time,
) -> Condition {
    let status = if ok { "True" } else { "False" };
    let since = prev
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or(now);
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: camel(reason),
        // The API server limits messages to 32 KiB.
        message: message.chars().take(32_000).collect(),
        last_transition_time: since,
        observed_generation: generation,
    }
}

/// Condition reasons must be CamelCase identifiers.
fn camel(s: &str) -> String {
    let out: String = s.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    if out.is_empty() {
        "Unknown".into()
    } else {
        out
    }
}
