//! The MiniCluster's status, computed (purely) from what was observed: validation, the Job and
//! the broker pods. Rank 0 decides the outcome: its exit code (or its loss) is the
//! MiniCluster's, whatever the workers do. A finished MiniCluster stays finished. A condition
//! keeps its transition time while its status stays the same.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ContainerStateTerminated, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use minicluster_core::spec::MiniClusterStatus;
use minicluster_core::{FieldError, MiniCluster};

use crate::labels;
use minicluster_core::exit_codes;

/// What reconcile saw and did.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// Problems of the spec; empty when valid.
    pub problems: Vec<FieldError>,
    /// The children were applied in this reconcile.
    pub applied: bool,
    pub job: Option<Job>,
    pub pods: Vec<Pod>,
    /// A size change the server cannot make: why.
    pub resize_refused: Option<String>,
}

/// How rank 0 ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rank0End {
    /// Its container's exit code; `None` when the pod was lost with no exit code.
    pub code: Option<i32>,
    /// What Kubernetes says of it (OOMKilled, Evicted, Error, Completed…).
    pub reason: String,
    /// Its termination message (the entrypoint's error, else its log's end), last line.
    pub message: String,
}

/// Waiting reasons that do not get better by waiting.
const STUCK: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
    "CrashLoopBackOff",
];

impl Observed {
    fn live_pods(&self) -> impl Iterator<Item = &Pod> {
        self.pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
    }

    /// Broker pods that are Ready: their broker runs, so workers have joined (the readiness
    /// probe asks the broker) — not merely containers running.
    pub fn ready(&self) -> usize {
        self.live_pods()
            .filter(|p| {
                p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
            .count()
    }

    /// Broker pods in phase Running.
    pub fn running(&self) -> usize {
        self.live_pods()
            .filter(|p| phase(p) == Some("Running"))
            .count()
    }

    /// The Job's condition of `type_` when it is True: (reason, message). A Job being deleted
    /// (replaced after an edit) tells nothing: its pods end because it goes, and a server may
    /// still mark it Failed for that (1.26 does, by the pod failure policy).
    pub fn job_condition(&self, type_: &str) -> Option<(String, String)> {
        self.job
            .as_ref()
            .filter(|j| j.metadata.deletion_timestamp.is_none())?
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

    /// How rank 0 ended, if it did: the newest index-0 pod's Flux container terminated, or
    /// the pod failed without one (evicted, its node lost).
    pub fn rank0_end(&self) -> Option<Rank0End> {
        let pod = self
            .pods
            .iter()
            .filter(|p| labels::is_rank0(p))
            .max_by_key(|p| p.metadata.creation_timestamp.clone().map(|t| t.0))?;
        if let Some(t) = terminated(pod) {
            // The entrypoint's own line saying the code adds nothing to the code.
            let message = last_line(t.message.as_deref().unwrap_or_default());
            let plain = message == format!("the command exited with code {}", t.exit_code);
            return Some(Rank0End {
                code: Some(t.exit_code),
                reason: t.reason.clone().unwrap_or_default(),
                message: if plain { String::new() } else { message },
            });
        }
        if phase(pod) == Some("Failed") {
            let st = pod.status.clone().unwrap_or_default();
            return Some(Rank0End {
                code: None,
                reason: st.reason.unwrap_or_else(|| "Lost".into()),
                message: last_line(&st.message.unwrap_or_default()),
            });
        }
        None
    }

    /// Rank 0 has finished (ended, or its Job is complete).
    pub fn rank0_finished(&self) -> bool {
        self.rank0_end().is_some() || self.job_condition("Complete").is_some()
    }

    /// A pod that cannot start or keeps failing: (reason, "pod X container Y: message").
    pub fn pod_problem(&self) -> Option<(String, String)> {
        self.live_pods().find_map(stuck)
    }

    /// The first broker whose Flux container failed, and its termination message: why a Job
    /// failed when a worker could not start (e.g. a certificate that is not rank 0's). A
    /// worker that left (stopped from outside, to be replaced) is no failure.
    pub fn first_failure(&self) -> Option<Failure> {
        self.pods
            .iter()
            .filter_map(|p| terminated(p).map(|t| (p, t)))
            .filter(|(_, t)| t.exit_code != 0 && t.exit_code != exit_codes::WORKER_LEFT)
            .min_by_key(|(_, t)| t.finished_at.clone().map(|t| t.0))
            .map(|(p, t)| Failure {
                rank: labels::pod_index(p),
                code: t.exit_code,
                message: t.message.as_deref().map(last_line).unwrap_or_default(),
            })
    }
}

/// A broker's Flux container that ended with a non-zero code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub rank: Option<u32>,
    pub code: i32,
    /// The last line of its termination message.
    pub message: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.rank {
            Some(r) => write!(f, "rank {r}")?,
            None => f.write_str("rank ?")?,
        }
        write!(f, " exited with code {}{}", self.code, colon(&self.message))
    }
}

/// (rank, exit code) from the message a Job's pod failure policy leaves in its Failed
/// condition: "Container C for pod NS/JOB-INDEX-XXXXX failed with exit code N matching FailJob
/// rule at index I".
fn failed_by_policy(job: &Job, message: &str) -> Option<(u32, i32)> {
    let rest = message.split_once(" for pod ")?.1;
    let (pod, rest) = rest.split_once(' ')?;
    let pod = pod.rsplit('/').next()?;
    let index = pod
        .strip_prefix(job.metadata.name.as_deref()?)?
        .strip_prefix('-')?
        .split('-')
        .next()?
        .parse()
        .ok()?;
    let code = rest
        .strip_prefix("failed with exit code ")?
        .split(' ')
        .next()?
        .parse()
        .ok()?;
    Some((index, code))
}

/// ": MESSAGE" after what it explains, or nothing for an empty message.
fn colon(message: &str) -> String {
    if message.is_empty() {
        String::new()
    } else {
        format!(": {message}")
    }
}

fn phase(p: &Pod) -> Option<&str> {
    p.status.as_ref()?.phase.as_deref()
}

/// The Flux container's terminated state.
fn terminated(p: &Pod) -> Option<&ContainerStateTerminated> {
    let name = labels::flux_container(p);
    p.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|s| name.as_deref().is_none_or(|n| n == s.name))?
        .state
        .as_ref()?
        .terminated
        .as_ref()
}

fn stuck(p: &Pod) -> Option<(String, String)> {
    let st = p.status.as_ref()?;
    st.init_container_statuses
        .iter()
        .flatten()
        .chain(st.container_statuses.iter().flatten())
        .find_map(|cs| {
            let w = cs.state.as_ref()?.waiting.as_ref()?;
            let reason = w.reason.clone()?;
            STUCK.contains(&reason.as_str()).then(|| {
                (
                    reason,
                    format!(
                        "pod {} container {} ({}): {}",
                        p.metadata.name.clone().unwrap_or_default(),
                        cs.name,
                        cs.image,
                        w.message.clone().unwrap_or_default()
                    ),
                )
            })
        })
}

/// The last non-empty line of a termination message: the entrypoint's one line, or the end
/// of the log Kubernetes put there instead.
fn last_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or_default()
        .chars()
        .take(1000)
        .collect()
}

/// The outcome rank 0 gives, else the Job's: (succeeded, exit code, reason, message).
fn outcome(o: &Observed) -> Option<(bool, Option<i32>, String, String)> {
    let first = o.first_failure();
    let rank0 = o.rank0_end();
    let job_failed = o.job_condition("Failed");
    // A worker that failed first (its Job then failed and stopped rank 0) is the cause; rank
    // 0's own end would only say it was stopped.
    if let Some(worker) = first.as_ref().filter(|f| f.rank.is_some_and(|r| r != 0))
        && (job_failed.is_some() || rank0.is_some())
    {
        let then = rank0
            .as_ref()
            .and_then(|e| e.code)
            .map(|c| format!("; rank 0 then exited with code {c}"))
            .unwrap_or_default();
        let reason = job_failed.map_or_else(|| "WorkerFailed".into(), |(reason, _)| reason);
        return Some((false, None, reason, format!("{worker}{then}")));
    }
    if let Some(end) = rank0 {
        return Some(match end.code {
            Some(0) => (
                true,
                Some(0),
                "Rank0Succeeded".into(),
                "rank 0 exited with code 0".into(),
            ),
            Some(code) => (
                false,
                Some(code),
                if end.reason == "OOMKilled" {
                    "Rank0OOMKilled".into()
                } else {
                    "Rank0Failed".into()
                },
                format!("rank 0 exited with code {code}{}", colon(&end.message)),
            ),
            None => (
                false,
                None,
                "Rank0Lost".into(),
                format!(
                    "rank 0's pod was lost ({}){}",
                    end.reason,
                    colon(&end.message)
                ),
            ),
        });
    }
    if let Some((reason, message)) = job_failed {
        // The failed pod may be gone before it was seen (a deleted pod goes once the Job has
        // counted it); the pod failure policy's message still names it and its code.
        if first.is_none()
            && let Some((rank, code)) = o.job.as_ref().and_then(|j| failed_by_policy(j, &message))
        {
            let lost = "its pod was gone before its message could be read";
            return Some(if rank == 0 {
                let how = if code > 128 {
                    format!(
                        " (signal {}; {lost}: most likely stopped from outside — the pod deleted or evicted, or its node drained)",
                        code - 128
                    )
                } else {
                    format!(" ({lost})")
                };
                (
                    false,
                    Some(code),
                    "Rank0Failed".into(),
                    format!("rank 0 exited with code {code}{how}"),
                )
            } else {
                (
                    false,
                    None,
                    reason,
                    format!("rank {rank} exited with code {code} ({lost})"),
                )
            });
        }
        let why = first.map(|f| format!("; {f}")).unwrap_or_default();
        return Some((false, None, reason, format!("{message}{why}")));
    }
    if let Some((reason, message)) = o.job_condition("Complete") {
        return Some((true, Some(0), reason, message));
    }
    None
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
    // An invalid spec or a refused resize changes nothing: the size in effect is the Job's.
    let size = if valid && o.resize_refused.is_none() {
        mc.spec.size
    } else {
        job_size.unwrap_or(prev.size)
    };
    let ready = o.ready();

    // A finished MiniCluster stays finished, also when its pods are gone.
    let was_finished = matches!(prev.phase.as_deref(), Some("Succeeded") | Some("Failed"));
    let now_outcome = outcome(o);
    let finished = now_outcome.is_some() || was_finished;

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
        let running = if o.job.is_some() {
            "; the MiniCluster keeps running as it was"
        } else {
            ""
        };
        set("Validated", false, reason, format!("{list}{running}"));
    }
    let created = o.applied || o.job.is_some();
    set(
        "Created",
        created,
        if created {
            "ChildrenApplied"
        } else if was_finished {
            "Finished"
        } else {
            "NotCreated"
        },
        if created {
            "Secret, ConfigMap, Service and Job are applied".into()
        } else if was_finished {
            "the MiniCluster has finished; its Job is gone".into()
        } else {
            "nothing is created until the spec is valid".into()
        },
    );
    let (ready_reason, ready_message) = if finished {
        ("Finished", "the MiniCluster has finished".to_string())
    } else if let Some((reason, message)) = o.pod_problem() {
        (reason_str(&reason), message)
    } else if ready >= size as usize && size > 0 {
        ("AllReady", format!("{ready}/{size} brokers ready"))
    } else {
        ("Starting", format!("{ready}/{size} brokers ready"))
    };
    set(
        "BrokersReady",
        !finished && size > 0 && ready >= size as usize,
        ready_reason,
        ready_message,
    );
    match &o.resize_refused {
        Some(why) => set("Resized", false, "ResizeRefused", why.clone()),
        None => set("Resized", true, "SizeInEffect", format!("{size} brokers")),
    }

    let mut exit_code = prev.exit_code;
    let mut phase = None;
    match &now_outcome {
        Some((true, code, reason, message)) => {
            exit_code = *code;
            phase = Some("Succeeded");
            set("Succeeded", true, reason, message.clone());
            set("Failed", false, "NotFailed", String::new());
        }
        Some((false, code, reason, message)) => {
            exit_code = *code;
            phase = Some("Failed");
            set("Succeeded", false, "Failed", String::new());
            set("Failed", true, reason, message.clone());
        }
        None if was_finished => {
            // Keep what was decided.
            for t in ["Succeeded", "Failed"] {
                if let Some(c) = prev.conditions.iter().find(|c| c.type_ == t) {
                    conds.push(c.clone());
                }
            }
            phase = prev.phase.as_deref().map(|p| {
                if p == "Succeeded" {
                    "Succeeded"
                } else {
                    "Failed"
                }
            });
        }
        None => {
            set("Succeeded", false, "NotFinished", String::new());
            set("Failed", false, "NotFailed", String::new());
        }
    }
    let phase = phase.unwrap_or(if !valid && o.job.is_none() {
        "Invalid"
    } else if ready > 0 || o.running() > 0 {
        "Running"
    } else {
        "Pending"
    });
    MiniClusterStatus {
        conditions: conds,
        jobid: prev.jobid,
        // What the brokers' hostlist was made for: an invalid spec does not change it.
        maximum_size: if valid || prev.maximum_size == 0 {
            mc.spec.effective_max_size()
        } else {
            prev.maximum_size
        },
        selector: labels::selector_string(&name),
        size,
        ready: Some(format!("{ready}/{size}")),
        phase: Some(phase.into()),
        exit_code,
    }
}

/// A waiting reason as a condition reason (both are CamelCase).
fn reason_str(r: &str) -> &'static str {
    match r {
        "ErrImagePull" | "ImagePullBackOff" | "InvalidImageName" | "ErrImageNeverPull" => {
            "ImagePullFailed"
        }
        "CrashLoopBackOff" => "CrashLoopBackOff",
        _ => "ContainerCannotStart",
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mc(status: Option<serde_json::Value>) -> MiniCluster {
        let mut v = json!({"apiVersion": "flux-framework.org/v1alpha2", "kind": "MiniCluster",
            "metadata": {"name": "mc", "namespace": "hpc", "generation": 1},
            "spec": {"size": 2, "containers": [{"image": "x", "command": "hostname"}]}});
        if let Some(s) = status {
            v["status"] = s;
        }
        serde_json::from_value(v).unwrap()
    }

    fn pod(index: u32, status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": format!("mc-{index}-x"), "creationTimestamp": "2026-01-01T00:00:00Z",
                "annotations": {labels::COMPLETION_INDEX: index.to_string(),
                    labels::DEFAULT_CONTAINER: "mc"}},
            "spec": {"containers": [{"name": "mc"}]},
            "status": status}))
        .unwrap()
    }

    fn ended(code: i32, message: &str) -> serde_json::Value {
        json!({"phase": if code == 0 { "Succeeded" } else { "Failed" }, "containerStatuses": [
            {"name": "mc", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
             "state": {"terminated": {"exitCode": code, "reason": "Error", "message": message}}}]})
    }

    fn running(ready: bool) -> serde_json::Value {
        json!({"phase": "Running", "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]})
    }

    fn now() -> Time {
        Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)
    }

    fn cond<'a>(st: &'a MiniClusterStatus, t: &str) -> &'a Condition {
        st.conditions.iter().find(|c| c.type_ == t).unwrap()
    }

    #[test]
    fn rank0s_code_decides_whatever_the_workers_do() {
        let o = Observed {
            pods: vec![pod(0, ended(3, "more\nboom")), pod(1, running(true))],
            ..Observed::default()
        };
        let st = compute(&mc(None), &o, now());
        assert_eq!(st.phase.as_deref(), Some("Failed"));
        assert_eq!(st.exit_code, Some(3));
        let f = cond(&st, "Failed");
        assert_eq!(f.status, "True");
        assert_eq!(f.message, "rank 0 exited with code 3: boom");
        assert_eq!(cond(&st, "BrokersReady").reason, "Finished");
    }

    #[test]
    fn ready_means_pods_ready_not_phase_running() {
        let o = Observed {
            pods: vec![pod(0, running(true)), pod(1, running(false))],
            ..Observed::default()
        };
        let st = compute(&mc(None), &o, now());
        assert_eq!(st.ready.as_deref(), Some("1/2"));
        assert_eq!(cond(&st, "BrokersReady").status, "False");
        assert_eq!(st.phase.as_deref(), Some("Running"));
    }

    #[test]
    fn a_finished_minicluster_stays_finished_when_its_pods_are_gone() {
        let done = compute(
            &mc(None),
            &Observed {
                pods: vec![pod(0, ended(0, ""))],
                ..Observed::default()
            },
            now(),
        );
        assert_eq!(done.phase.as_deref(), Some("Succeeded"));
        let later = compute(
            &mc(Some(serde_json::to_value(&done).unwrap())),
            &Observed::default(),
            now(),
        );
        assert_eq!(later.phase.as_deref(), Some("Succeeded"));
        assert_eq!(later.exit_code, Some(0));
        assert_eq!(cond(&later, "Succeeded").status, "True");
    }

    #[test]
    fn an_image_that_cannot_be_pulled_is_named() {
        let stuck = json!({"phase": "Pending", "initContainerStatuses": [{"name": "minicluster-entrypoint",
            "image": "ghcr.io/minicluster/runner:latest", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}}}]});
        let st = compute(
            &mc(None),
            &Observed {
                pods: vec![pod(0, stuck)],
                ..Observed::default()
            },
            now(),
        );
        let c = cond(&st, "BrokersReady");
        assert_eq!(c.reason, "ImagePullFailed");
        assert!(
            c.message.contains("ghcr.io/minicluster/runner:latest"),
            "{}",
            c.message
        );
    }

    #[test]
    fn a_failed_job_names_its_first_failing_broker() {
        let job: Job = serde_json::from_value(json!({"status": {"conditions": [
            {"type": "Failed", "status": "True", "reason": "PodFailurePolicy",
             "message": "Container mc for pod hpc/mc-1-x failed with exit code 125 matching FailJob rule at index 0"}]}}))
        .unwrap();
        let o = Observed {
            job: Some(job),
            pods: vec![
                pod(0, running(true)),
                pod(
                    1,
                    ended(
                        125,
                        "entrypoint: error: rank 0 does not hold this MiniCluster's certificate",
                    ),
                ),
            ],
            ..Observed::default()
        };
        let st = compute(&mc(None), &o, now());
        let f = cond(&st, "Failed");
        assert_eq!(f.reason, "PodFailurePolicy");
        assert!(
            f.message
                .contains("rank 1 exited with code 125: entrypoint: error: rank 0 does not hold"),
            "{}",
            f.message
        );
    }

    #[test]
    fn a_worker_that_failed_first_is_the_cause_not_rank_0_stopped_after_it() {
        let job: Job = serde_json::from_value(json!({"status": {"conditions": [
            {"type": "Failed", "status": "True", "reason": "PodFailurePolicy",
             "message": "Container mc for pod hpc/mc-1-x failed with exit code 125 matching FailJob rule at index 0"}]}}))
        .unwrap();
        let at = |p: &mut Pod, t: &str| {
            let st = p
                .status
                .as_mut()
                .unwrap()
                .container_statuses
                .as_mut()
                .unwrap();
            st[0]
                .state
                .as_mut()
                .unwrap()
                .terminated
                .as_mut()
                .unwrap()
                .finished_at = Some(Time(t.parse().unwrap()));
        };
        let mut worker = pod(
            1,
            ended(
                125,
                "entrypoint: error: rank 0 (mc-0:8050) does not hold this MiniCluster's certificate",
            ),
        );
        at(&mut worker, "2026-01-01T00:00:01Z");
        let mut rank0 = pod(0, ended(143, "rank 0 stopped by signal 15 from outside"));
        at(&mut rank0, "2026-01-01T00:00:02Z");
        for job in [Some(job), None] {
            let o = Observed {
                job,
                pods: vec![rank0.clone(), worker.clone()],
                ..Observed::default()
            };
            let st = compute(&mc(None), &o, now());
            let f = cond(&st, "Failed");
            assert_eq!(
                f.message,
                "rank 1 exited with code 125: entrypoint: error: rank 0 (mc-0:8050) does not hold this MiniCluster's certificate; rank 0 then exited with code 143"
            );
            assert!(["PodFailurePolicy", "WorkerFailed"].contains(&f.reason.as_str()));
            assert_eq!(st.exit_code, None);
        }
        // Rank 0 failing first stays rank 0's failure.
        at(&mut rank0, "2026-01-01T00:00:00Z");
        let o = Observed {
            pods: vec![rank0, worker],
            ..Observed::default()
        };
        let st = compute(&mc(None), &o, now());
        let f = cond(&st, "Failed");
        assert!(
            f.message.starts_with("rank 0 exited with code 143"),
            "{}",
            f.message
        );
    }

    #[test]
    fn a_failed_pod_already_gone_is_read_from_the_policy_message() {
        let job = |message: &str, deleting: bool| -> Job {
            serde_json::from_value(json!({
                "metadata": {"name": "pers", "deletionTimestamp": deleting.then_some("2026-01-01T00:00:00Z")},
                "status": {"conditions": [{"type": "Failed", "status": "True", "reason": "PodFailurePolicy",
                "message": message}]}}))
            .unwrap()
        };
        let rank0 = "Container pers for pod ns/pers-0-cd7rx failed with exit code 143 matching FailJob rule at index 1";
        let o = Observed {
            job: Some(job(rank0, false)),
            ..Observed::default()
        };
        let st = compute(&mc(None), &o, now());
        let f = cond(&st, "Failed");
        assert_eq!(f.reason, "Rank0Failed");
        assert!(
            f.message
                .starts_with("rank 0 exited with code 143 (signal 15;")
                && f.message.contains("stopped from outside"),
            "{}",
            f.message
        );
        assert_eq!(st.exit_code, Some(143));

        let worker = "Container pers for pod ns/pers-12-x9 failed with exit code 125 matching FailJob rule at index 1";
        let o = Observed {
            job: Some(job(worker, false)),
            ..Observed::default()
        };
        let f = cond(&compute(&mc(None), &o, now()), "Failed").clone();
        assert_eq!(f.reason, "PodFailurePolicy");
        assert!(
            f.message.starts_with("rank 12 exited with code 125 ("),
            "{}",
            f.message
        );

        // A Job being deleted (replaced after an edit) decides nothing.
        let o = Observed {
            job: Some(job(rank0, true)),
            ..Observed::default()
        };
        let st = compute(&mc(None), &o, now());
        assert!(
            st.conditions
                .iter()
                .all(|c| !(c.type_ == "Failed" && c.status == "True")),
            "{:?}",
            st.conditions
        );
        assert_ne!(st.phase.as_deref(), Some("Failed"));
    }

    #[test]
    fn an_invalid_size_does_not_move_the_maximum() {
        // As reconcile sees it: the recorded maximum pinned as maxSize.
        let mut m = mc(Some(json!({"maximumSize": 2, "size": 2})));
        m.spec.size = 8;
        m.spec.max_size = Some(2);
        let st = compute(
            &m,
            &Observed {
                problems: minicluster_core::spec::validate(&m),
                ..Observed::default()
            },
            now(),
        );
        assert_eq!(st.maximum_size, 2);
    }

    #[test]
    fn a_refused_resize_keeps_the_size_in_effect() {
        let job: Job =
            serde_json::from_value(json!({"spec": {"parallelism": 2, "template": {}}})).unwrap();
        let mut m = mc(None);
        m.spec.size = 4;
        m.spec.max_size = Some(4);
        let st = compute(
            &m,
            &Observed {
                job: Some(job),
                resize_refused: Some("Kubernetes 1.26 cannot".into()),
                ..Observed::default()
            },
            now(),
        );
        assert_eq!(st.size, 2);
        assert_eq!(cond(&st, "Resized").reason, "ResizeRefused");
    }
}
