//! One reconcile of a MiniCluster: read → validate → build (pure) → apply (server-side apply,
//! one field manager) → status. Every API call is here, in this order, so the mock tests can
//! hold it to account.
//!
//! The Job is created once and then only resized, or replaced when the user's spec changes
//! (its hash): a change of ours (an operator upgrade, another runner image) never restarts a
//! running MiniCluster, and a finished one is never run again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PropagationPolicy};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Client, Resource, ResourceExt};
use minicluster_core::spec::MiniClusterStatus;
use minicluster_core::{CurveCert, MiniCluster};
use serde::Serialize;

use crate::build::{self, BuildOptions};
use crate::error::{Error, Result};
use crate::labels::{self, MANAGER};
use crate::metrics::Metrics;
use crate::status::{self, Observed};

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub build: BuildOptions,
    pub metrics: Metrics,
    /// When each MiniCluster's children were last applied, and for which generation.
    pub applied: Applied,
}

/// Children applied, by `namespace/name`: (generation, when). A MiniCluster whose pods
/// change many times a second while they start is reconciled as often; its Secret,
/// ConfigMap and Service are applied again only for a new generation, a new Job, or once
/// [`RESYNC`] has passed (which also brings an operator upgrade's children to every
/// MiniCluster after a restart).
#[derive(Default)]
pub struct Applied(std::sync::Mutex<std::collections::HashMap<String, (i64, Instant)>>);

impl Applied {
    fn fresh(&self, key: &str, generation: i64) -> bool {
        self.0
            .lock()
            .expect("applied lock")
            .get(key)
            .is_some_and(|(g, at)| *g == generation && at.elapsed() < RESYNC)
    }

    fn record(&self, key: &str, generation: i64) {
        self.0
            .lock()
            .expect("applied lock")
            .insert(key.to_string(), (generation, Instant::now()));
    }

    fn forget(&self, key: &str) {
        self.0.lock().expect("applied lock").remove(key);
    }
}

/// How long a healthy MiniCluster waits to be looked at again without any change.
const RESYNC: Duration = Duration::from_secs(300);
/// Workers still running this long after rank 0 succeeded are stopped (servers without a
/// Job success policy).
const STRAGGLERS: Duration = Duration::from_secs(30);

#[tracing::instrument(skip_all, fields(mc = %format!("{}/{}", mc.namespace().unwrap_or_default(), mc.name_any())))]
pub async fn reconcile(mc: Arc<MiniCluster>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    let result = reconcile_inner(&mc, &ctx).await;
    let took = started.elapsed();
    ctx.metrics.observe(took, result.as_ref().err());
    tracing::debug!(took_us = took.as_micros() as u64, "reconciled");
    result
}

/// What the Job needs, as decided from what exists.
#[derive(Debug, PartialEq)]
enum JobStep {
    /// None yet, and the MiniCluster has not finished: create it.
    Create,
    /// Made from another spec: delete it (it is made again once gone).
    Replace,
    /// Resize in place to this many brokers.
    Resize(i32),
    /// The server cannot resize an Indexed Job: say so, change nothing.
    ResizeRefused(String),
    /// Record the spec hash on a Job made before it was kept (an upgrade): no restart.
    Adopt,
    /// Being deleted: look again shortly.
    Wait,
    /// Nothing to do.
    Keep,
}

/// The decision about the Job (pure).
fn job_step(mc: &MiniCluster, job: Option<&Job>, finished: bool, opts: &BuildOptions) -> JobStep {
    let Some(job) = job else {
        return if finished {
            JobStep::Keep
        } else {
            JobStep::Create
        };
    };
    if job.metadata.deletion_timestamp.is_some() {
        return JobStep::Wait;
    }
    if finished || job_done(job) {
        return JobStep::Keep;
    }
    let hash = job
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(labels::SPEC_HASH));
    match hash {
        None => return JobStep::Adopt,
        Some(h) if *h != build::spec_hash(mc) => return JobStep::Replace,
        Some(_) => {}
    }
    let have = job.spec.as_ref().and_then(|s| s.parallelism).unwrap_or(0);
    if have == mc.spec.size {
        JobStep::Keep
    } else if opts.server.elastic_indexed_job() {
        JobStep::Resize(mc.spec.size)
    } else {
        JobStep::ResizeRefused(format!(
            "Kubernetes 1.{} cannot change an Indexed Job's completions (elastic Indexed Jobs need 1.27 or later); the MiniCluster stays at {have} brokers",
            opts.server.minor
        ))
    }
}

/// The pods a live Job owns; none while it is being deleted or is gone.
fn pods_of(job: Option<&Job>, pods: Vec<Pod>) -> Vec<Pod> {
    let Some(uid) = job
        .filter(|j| j.metadata.deletion_timestamp.is_none())
        .and_then(|j| j.metadata.uid.clone())
    else {
        return Vec::new();
    };
    pods.into_iter()
        .filter(|p| {
            p.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.uid == uid)
        })
        .collect()
}

/// The Job has ended by itself (not being deleted: see `Observed::job_condition`).
fn job_done(job: &Job) -> bool {
    job.metadata.deletion_timestamp.is_none()
        && job
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
            })
}

fn finished(st: Option<&MiniClusterStatus>) -> bool {
    matches!(
        st.and_then(|s| s.phase.as_deref()),
        Some("Succeeded") | Some("Failed")
    )
}

/// The MiniCluster with the maximum size it was created with: without `spec.maxSize` the
/// first size is the maximum, and the brokers' hostlist was made for it — a later size must
/// stay within it, and the description must not change under the running brokers.
fn pin_max_size(mc: &MiniCluster) -> MiniCluster {
    let mut pinned = mc.clone();
    let recorded = mc.status.as_ref().map_or(0, |s| s.maximum_size);
    if pinned.spec.max_size.is_none() && recorded > 0 {
        pinned.spec.max_size = Some(recorded);
    }
    pinned
}

async fn reconcile_inner(user: &MiniCluster, ctx: &Context) -> Result<Action> {
    // Built and validated with its maximum size pinned; the spec hash is of what the user
    // wrote.
    let pinned = pin_max_size(user);
    let mc = &pinned;
    let name = mc.metadata.name.clone().ok_or(Error::Metadata("name"))?;
    let ns = mc
        .metadata
        .namespace
        .clone()
        .ok_or(Error::Metadata("namespace"))?;
    let client = ctx.client.clone();
    let apply = PatchParams::apply(MANAGER).force();
    let mcs: Api<MiniCluster> = Api::namespaced(client.clone(), &ns);
    let jobs: Api<Job> = Api::namespaced(client.clone(), &ns);

    // Read what exists: the Job, and the pods of that Job (a Job being replaced, and its
    // pods ending, say nothing of how this MiniCluster ends).
    let existing = jobs.get_opt(&name).await?;
    let pods = Api::<Pod>::namespaced(client.clone(), &ns)
        .list(&ListParams::default().labels(&labels::selector_string(&name)))
        .await?
        .items;
    let pods = pods_of(existing.as_ref(), pods);
    let was_finished = finished(mc.status.as_ref());

    // Validate: an invalid spec changes nothing; the status still tells what runs.
    let problems = minicluster_core::spec::validate(mc);
    if !problems.is_empty() {
        let o = Observed {
            problems,
            job: existing,
            pods,
            ..Observed::default()
        };
        let st = status::compute(mc, &o, now());
        tracing::info!(
            "invalid spec: {}",
            condition(&st, "Validated").map_or("", |c| &c.message)
        );
        announce(ctx, mc, &st).await;
        patch_status(&mcs, &name, &st).await?;
        return Ok(Action::await_change());
    }

    let mut o = Observed {
        job: existing.clone(),
        pods,
        ..Observed::default()
    };
    let ended_now = o.rank0_finished() || existing.as_ref().is_some_and(job_done);
    let step = job_step(
        user,
        existing.as_ref(),
        was_finished || ended_now,
        &ctx.build,
    );
    let mut requeue = RESYNC;

    let key = format!("{ns}/{name}");
    let generation = mc.metadata.generation.unwrap_or(0);
    let children_fresh = ctx.applied.fresh(&key, generation)
        && matches!(
            step,
            JobStep::Keep | JobStep::Wait | JobStep::ResizeRefused(_)
        );
    if was_finished || ended_now {
        ctx.applied.forget(&key);
    }

    // Build and apply the children a MiniCluster that still runs needs (unless applied for
    // this generation a moment ago and the Job needs nothing).
    if !was_finished && !ended_now && children_fresh {
        o.applied = true;
        if let JobStep::ResizeRefused(why) = &step {
            o.resize_refused = Some(why.clone());
        }
        if step == JobStep::Wait {
            return Ok(Action::requeue(Duration::from_secs(2)));
        }
    } else if !was_finished && !ended_now {
        let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
        let cert = match mc.spec.flux.as_ref().and_then(|f| f.curve_cert.clone()) {
            Some(own) => own,
            None => match existing_cert(&secrets.get_opt(&labels::cert_secret(&name)).await?) {
                Some(kept) => kept,
                None => CurveCert::generate(&format!("{name}-0"))?.to_text(),
            },
        };
        let children = build::build(mc, &cert, &ctx.build)?;
        secrets
            .patch(
                &labels::cert_secret(&name),
                &apply,
                &Patch::Apply(&children.secret),
            )
            .await?;
        Api::<ConfigMap>::namespaced(client.clone(), &ns)
            .patch(
                &labels::config_map(&name),
                &apply,
                &Patch::Apply(&children.config_map),
            )
            .await?;
        let services: Api<Service> = Api::namespaced(client.clone(), &ns);
        let headless = services
            .patch(
                &children.description.network.service,
                &apply,
                &Patch::Apply(&children.headless),
            )
            .await?;
        add_owner(
            &services,
            &headless,
            children.headless_owner.as_ref(),
            MANAGER,
        )
        .await?;
        if let Some((deployment, service)) = &children.services {
            Api::<Deployment>::namespaced(client.clone(), &ns)
                .patch(&labels::services(&name), &apply, &Patch::Apply(deployment))
                .await?;
            services
                .patch(&labels::services(&name), &apply, &Patch::Apply(service))
                .await?;
        }
        o.applied = true;
        match &step {
            JobStep::Create => {
                // Built from the pinned spec, marked with the hash of the user's.
                let mut job = children.job.clone();
                job.metadata
                    .annotations
                    .get_or_insert_with(Default::default)
                    .insert(labels::SPEC_HASH.into(), build::spec_hash(user));
                let job = jobs.patch(&name, &apply, &Patch::Apply(&job)).await?;
                let note = format!(
                    "{} brokers (maxSize {})",
                    mc.spec.size,
                    mc.spec.effective_max_size()
                );
                tracing::info!("created the Job: {note}");
                event(ctx, mc, EventType::Normal, "Created", "Create", &note).await;
                o.job = Some(job);
            }
            JobStep::Replace => {
                tracing::info!("the spec changed: replacing the Job (brokers restart)");
                jobs.delete(
                    &name,
                    &DeleteParams {
                        propagation_policy: Some(PropagationPolicy::Foreground),
                        ..DeleteParams::default()
                    },
                )
                .await?;
                event(
                    ctx,
                    mc,
                    EventType::Normal,
                    "Replacing",
                    "Reconcile",
                    "the spec changed; the Job is replaced (brokers restart)",
                )
                .await;
                return Ok(Action::requeue(Duration::from_secs(2)));
            }
            JobStep::Wait => {
                tracing::info!("the old Job is still being deleted");
                return Ok(Action::requeue(Duration::from_secs(2)));
            }
            JobStep::Resize(to) => {
                let from = existing
                    .as_ref()
                    .and_then(|j| j.spec.as_ref())
                    .and_then(|s| s.parallelism)
                    .unwrap_or(0);
                let patch = serde_json::json!({"spec": {"parallelism": to, "completions": to}});
                let job = jobs.patch(&name, &merge(), &Patch::Merge(&patch)).await?;
                tracing::info!("resized from {from} to {to} brokers");
                event(
                    ctx,
                    mc,
                    EventType::Normal,
                    "Resized",
                    "Scale",
                    &format!("from {from} to {to} brokers"),
                )
                .await;
                o.job = Some(job);
            }
            JobStep::ResizeRefused(why) => {
                tracing::info!("resize refused: {why}");
                o.resize_refused = Some(why.clone());
            }
            JobStep::Adopt => {
                let patch = serde_json::json!({"metadata": {"annotations": {
                    labels::SPEC_HASH: build::spec_hash(user)}}});
                tracing::info!("adopting a Job made by an earlier operator (not restarted)");
                o.job = Some(jobs.patch(&name, &merge(), &Patch::Merge(&patch)).await?);
            }
            JobStep::Keep => {}
        }
        ctx.applied.record(&key, generation);
    } else if existing.is_some() {
        // Finished: only stragglers are stopped, on servers whose Job does not do it.
        let straggling = !ctx.build.server.success_policy()
            && o.rank0_end().is_some_and(|e| e.code == Some(0))
            && o.running() > 0
            && existing
                .as_ref()
                .is_some_and(|j| !job_done(j) && !suspended(j));
        if straggling {
            if rank0_ended_long_ago(&o) {
                tracing::info!("rank 0 succeeded; stopping the workers still running");
                let patch = serde_json::json!({"spec": {"suspend": true}});
                o.job = Some(jobs.patch(&name, &merge(), &Patch::Merge(&patch)).await?);
            } else {
                requeue = STRAGGLERS;
            }
        }
    }

    // Report what the cluster shows.
    let st = status::compute(mc, &o, now());
    tracing::info!(
        "{} {} ({})",
        st.phase.as_deref().unwrap_or("?"),
        st.ready.as_deref().unwrap_or("?"),
        match &step {
            JobStep::Keep => "no change".to_string(),
            s => format!("{s:?}"),
        }
    );
    announce(ctx, mc, &st).await;
    patch_status(&mcs, &name, &st).await?;

    if mc.spec.cleanup && finished(Some(&st)) {
        event(
            ctx,
            mc,
            EventType::Normal,
            "Cleanup",
            "Delete",
            "rank 0 finished and cleanup is set",
        )
        .await;
        tracing::info!("finished with cleanup set: deleting the MiniCluster");
        mcs.delete(&name, &DeleteParams::background()).await?;
        return Ok(Action::await_change());
    }
    Ok(Action::requeue(requeue))
}

fn merge() -> PatchParams {
    PatchParams {
        field_manager: Some(MANAGER.into()),
        ..PatchParams::default()
    }
}

fn suspended(job: &Job) -> bool {
    job.spec.as_ref().and_then(|s| s.suspend) == Some(true)
}

/// Rank 0's container ended more than [`STRAGGLERS`] ago.
fn rank0_ended_long_ago(o: &Observed) -> bool {
    let finished_at = o
        .pods
        .iter()
        .filter(|p| labels::is_rank0(p))
        .filter_map(|p| {
            p.status
                .as_ref()?
                .container_statuses
                .as_ref()?
                .iter()
                .find_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.clone())
        })
        .max();
    finished_at.is_some_and(|t| {
        Timestamp::now()
            .duration_since(t.0)
            .as_secs()
            .max(0)
            .unsigned_abs()
            >= STRAGGLERS.as_secs()
    })
}

fn condition<'a>(st: &'a MiniClusterStatus, t: &str) -> Option<&'a Condition> {
    st.conditions.iter().find(|c| c.type_ == t)
}

/// Events for what changed since the last status: a refused spec, a refused resize, brokers
/// that cannot start, success, failure — each once, when it first happens.
async fn announce(ctx: &Context, mc: &MiniCluster, st: &MiniClusterStatus) {
    let before = mc.status.as_ref();
    let was = |t: &str| before.and_then(|b| condition(b, t));
    let changed = |c: &Condition| {
        was(&c.type_)
            .is_none_or(|p| p.status != c.status || p.reason != c.reason || p.message != c.message)
    };
    for c in &st.conditions {
        let (warn, reason) = match (c.type_.as_str(), c.status.as_str(), c.reason.as_str()) {
            ("Validated", "False", r) => (true, r.to_string()),
            ("Resized", "False", _) => (true, "ResizeRefused".into()),
            ("BrokersReady", "False", r)
                if matches!(
                    r,
                    "ImagePullFailed" | "ContainerCannotStart" | "CrashLoopBackOff"
                ) =>
            {
                (true, r.to_string())
            }
            ("Succeeded", "True", _) => (false, "Succeeded".into()),
            ("Failed", "True", _) => (true, "Failed".into()),
            _ => continue,
        };
        if changed(c) {
            let kind = if warn {
                EventType::Warning
            } else {
                EventType::Normal
            };
            event(ctx, mc, kind, &reason, "Observe", &c.message).await;
        }
    }
}

/// Adds `owner` to a shared object's owners, keeping the others (a strategic merge by uid),
/// unless it is there already; `manager` is the writer's field manager.
pub async fn add_owner<K>(
    api: &Api<K>,
    obj: &K,
    owner: Option<&OwnerReference>,
    manager: &str,
) -> Result<()>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let Some(owner) = owner else { return Ok(()) };
    let meta = obj.meta();
    if meta
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.uid == owner.uid)
    {
        return Ok(());
    }
    let name = meta.name.clone().unwrap_or_default();
    let patch = serde_json::json!({"metadata": {"ownerReferences": [owner]}});
    api.patch(
        &name,
        &PatchParams {
            field_manager: Some(manager.into()),
            ..PatchParams::default()
        },
        &Patch::Strategic(patch),
    )
    .await?;
    Ok(())
}

/// Requeue after a failure; the error is counted by the metrics.
pub fn error_policy(mc: Arc<MiniCluster>, err: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(
        "reconcile of {}/{} failed: {err}",
        mc.namespace().unwrap_or_default(),
        mc.name_any()
    );
    Action::requeue(Duration::from_secs(15))
}

fn now() -> Time {
    Time(Timestamp::now())
}

/// The certificate an existing Secret holds, if it is a valid one.
fn existing_cert(secret: &Option<Secret>) -> Option<String> {
    let bytes = secret.as_ref()?.data.as_ref()?.get(build::CERT_KEY)?;
    let text = String::from_utf8(bytes.0.clone()).ok()?;
    CurveCert::parse(&text).ok().map(|_| text)
}

#[derive(Serialize, Debug)]
struct StatusPatch<'a> {
    #[serde(rename = "apiVersion")]
    api_version: &'a str,
    kind: &'a str,
    status: &'a MiniClusterStatus,
}

async fn patch_status(mcs: &Api<MiniCluster>, name: &str, st: &MiniClusterStatus) -> Result<()> {
    let body = StatusPatch {
        api_version: "flux-framework.org/v1alpha2",
        kind: "MiniCluster",
        status: st,
    };
    mcs.patch_status(
        name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await?;
    Ok(())
}

/// Publishes an Event; a failure to do so is logged, never fatal.
async fn event(
    ctx: &Context,
    mc: &MiniCluster,
    type_: EventType,
    reason: &str,
    action: &str,
    note: &str,
) {
    let ev = Event {
        type_,
        reason: reason.into(),
        note: Some(note.chars().take(1000).collect()),
        action: action.into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&ev, &mc.object_ref(&())).await {
        tracing::warn!("could not publish event {reason}: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::ServerFeatures;

    fn mc(size: i32) -> MiniCluster {
        serde_norway::from_str(&format!(
            "apiVersion: flux-framework.org/v1alpha2\nkind: MiniCluster\nmetadata: {{name: mc, namespace: hpc}}\nspec:\n  size: {size}\n  maxSize: 4\n  containers:\n    - {{image: x, command: hostname}}\n"
        ))
        .unwrap()
    }

    fn job_of(m: &MiniCluster, parallelism: i32) -> Job {
        let mut j = build::build(
            m,
            &CurveCert::generate("mc-0").unwrap().to_text(),
            &BuildOptions::default(),
        )
        .unwrap()
        .job;
        j.spec.as_mut().unwrap().parallelism = Some(parallelism);
        j
    }

    fn opts(minor: u32) -> BuildOptions {
        BuildOptions {
            server: ServerFeatures { minor },
            ..BuildOptions::default()
        }
    }

    #[test]
    fn the_job_is_made_once_resized_in_place_and_replaced_only_for_the_spec() {
        let m = mc(2);
        assert_eq!(job_step(&m, None, false, &opts(33)), JobStep::Create);
        assert_eq!(
            job_step(&m, None, true, &opts(33)),
            JobStep::Keep,
            "finished: never again"
        );
        let j = job_of(&m, 2);
        assert_eq!(job_step(&m, Some(&j), false, &opts(33)), JobStep::Keep);
        assert_eq!(
            job_step(&mc(4), Some(&j), false, &opts(33)),
            JobStep::Resize(4)
        );
        assert!(matches!(
            job_step(&mc(4), Some(&j), false, &opts(26)),
            JobStep::ResizeRefused(why) if why.contains("1.27")
        ));
        let mut edited = m.clone();
        edited.spec.containers[0].command = Some("date".into());
        assert_eq!(
            job_step(&edited, Some(&j), false, &opts(33)),
            JobStep::Replace
        );
        assert_eq!(job_step(&edited, Some(&j), true, &opts(33)), JobStep::Keep);
    }

    #[test]
    fn pinning_the_maximum_changes_the_build_not_the_hash() {
        let mut m = mc(2);
        m.spec.max_size = None;
        m.status = Some(MiniClusterStatus {
            maximum_size: 2,
            ..Default::default()
        });
        let pinned = pin_max_size(&m);
        assert_ne!(build::spec_hash(&pinned), build::spec_hash(&m));
        // So the Job is marked with the user's (reconcile does), else it is replaced forever.
        let mut j = job_of(&m, 2);
        j.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(labels::SPEC_HASH.into(), build::spec_hash(&m));
        assert_eq!(job_step(&m, Some(&j), false, &opts(33)), JobStep::Keep);
    }

    #[test]
    fn without_max_size_the_first_size_stays_the_maximum() {
        let mut m = mc(2);
        m.spec.max_size = None;
        assert_eq!(
            pin_max_size(&m).spec.max_size,
            None,
            "no status yet: nothing pinned"
        );
        m.status = Some(MiniClusterStatus {
            maximum_size: 2,
            ..Default::default()
        });
        m.spec.size = 8;
        let pinned = pin_max_size(&m);
        assert_eq!(pinned.spec.max_size, Some(2));
        let problems = minicluster_core::spec::validate(&pinned);
        assert!(
            problems.iter().any(|p| p.path == "spec.maxSize"),
            "{problems:?}"
        );
    }

    #[test]
    fn a_change_of_ours_never_replaces_a_running_job() {
        let m = mc(2);
        let j = job_of(&m, 2);
        // Another runner image builds another pod template, from the same spec.
        let other = BuildOptions {
            runner_image: "registry.example/runner:2".into(),
            ..opts(33)
        };
        assert_eq!(job_step(&m, Some(&j), false, &other), JobStep::Keep);
        // A Job from before the spec hash was kept is adopted, not replaced.
        let mut old = j.clone();
        old.metadata.annotations = None;
        assert_eq!(job_step(&m, Some(&old), false, &other), JobStep::Adopt);
    }
}
