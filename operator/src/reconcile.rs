//! One reconcile of a MiniCluster: read → validate → build (pure) → apply (server-side apply,
//! one field manager) → status. Every API call is here, in this order, so the mock tests can
//! hold it to account.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PropagationPolicy};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Client, Resource, ResourceExt};
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
}

/// How long until a healthy MiniCluster is looked at again without any change.
const RESYNC: Duration = Duration::from_secs(300);

#[tracing::instrument(skip_all, fields(minicluster = %mc.name_any(), namespace = mc.namespace().unwrap_or_default()))]
pub async fn reconcile(mc: Arc<MiniCluster>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    let result = reconcile_inner(&mc, &ctx).await;
    ctx.metrics
        .observe(started.elapsed(), result.as_ref().err());
    result
}

async fn reconcile_inner(mc: &MiniCluster, ctx: &Context) -> Result<Action> {
    let name = mc.metadata.name.clone().ok_or(Error::Metadata("name"))?;
    let ns = mc
        .metadata
        .namespace
        .clone()
        .ok_or(Error::Metadata("namespace"))?;
    let client = ctx.client.clone();
    let apply = PatchParams::apply(MANAGER).force();
    let mcs: Api<MiniCluster> = Api::namespaced(client.clone(), &ns);

    // Validate: an invalid spec changes nothing but the status.
    let problems = minicluster_core::spec::validate(mc);
    if !problems.is_empty() {
        let o = Observed {
            problems,
            ..Observed::default()
        };
        let st = status::compute(mc, &o, now());
        let cond = st
            .conditions
            .iter()
            .find(|c| c.type_ == "Validated")
            .cloned();
        let already = mc
            .status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Validated"))
            .is_some_and(|c| {
                Some(c) == cond.as_ref()
                    || (c.status == "False"
                        && Some(&c.message) == cond.as_ref().map(|c| &c.message))
            });
        if let (false, Some(c)) = (already, cond) {
            event(
                ctx,
                mc,
                EventType::Warning,
                &c.reason,
                "Validate",
                &c.message,
            )
            .await;
        }
        patch_status(&mcs, &name, &st).await?;
        return Ok(Action::await_change());
    }

    // Read what must be kept: the certificate.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let cert = match mc.spec.flux.as_ref().and_then(|f| f.curve_cert.clone()) {
        Some(own) => own,
        None => match existing_cert(&secrets.get_opt(&labels::cert_secret(&name)).await?) {
            Some(kept) => kept,
            None => CurveCert::generate(&format!("{name}-0"))?.to_text(),
        },
    };

    // Build, then apply in dependency order.
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

    let jobs: Api<Job> = Api::namespaced(client.clone(), &ns);
    let existing = jobs.get_opt(&name).await?;
    let want_hash = hash_of(&children.job);
    let job = match &existing {
        // Kubernetes refuses edits to a Job's pod template: replace the Job.
        Some(old) if hash_of(old) != want_hash && old.metadata.deletion_timestamp.is_none() => {
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
                "the pod template changed; the Job is replaced (brokers restart)",
            )
            .await;
            return Ok(Action::requeue(Duration::from_secs(5)));
        }
        Some(old) if old.metadata.deletion_timestamp.is_some() => {
            return Ok(Action::requeue(Duration::from_secs(5)));
        }
        _ => {
            jobs.patch(&name, &apply, &Patch::Apply(&children.job))
                .await?
        }
    };
    match existing
        .as_ref()
        .and_then(|j| j.spec.as_ref())
        .and_then(|s| s.parallelism)
    {
        None => {
            event(
                ctx,
                mc,
                EventType::Normal,
                "Created",
                "Create",
                &format!(
                    "{} brokers (maxSize {})",
                    mc.spec.size,
                    mc.spec.effective_max_size()
                ),
            )
            .await;
        }
        Some(old) if old != mc.spec.size => {
            event(
                ctx,
                mc,
                EventType::Normal,
                "Resized",
                "Scale",
                &format!("from {old} to {} brokers", mc.spec.size),
            )
            .await;
        }
        Some(_) => {}
    }

    // Observe the brokers, then report.
    let pods = Api::<Pod>::namespaced(client.clone(), &ns)
        .list(&ListParams::default().labels(&labels::selector_string(&name)))
        .await?
        .items;
    let o = Observed {
        problems: Vec::new(),
        applied: true,
        job: Some(job),
        pods,
    };
    let st = status::compute(mc, &o, now());
    let failed_now = st
        .conditions
        .iter()
        .any(|c| c.type_ == "Failed" && c.status == "True");
    let failed_before = mc.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "Failed" && c.status == "True")
    });
    if let (true, false, Some(c)) = (
        failed_now,
        failed_before,
        st.conditions.iter().find(|c| c.type_ == "Failed"),
    ) {
        event(
            ctx,
            mc,
            EventType::Warning,
            "Failed",
            "Observe",
            &format!("{}: {}", c.reason, c.message),
        )
        .await;
    }
    patch_status(&mcs, &name, &st).await?;

    if mc.spec.cleanup && o.rank0_finished() {
        event(
            ctx,
            mc,
            EventType::Normal,
            "Cleanup",
            "Delete",
            "rank 0 finished and cleanup is set",
        )
        .await;
        mcs.delete(&name, &DeleteParams::background()).await?;
        return Ok(Action::await_change());
    }
    Ok(Action::requeue(RESYNC))
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
pub fn error_policy(_mc: Arc<MiniCluster>, err: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!("reconcile failed: {err}");
    Action::requeue(Duration::from_secs(15))
}

fn now() -> Time {
    Time(Timestamp::now())
}

fn hash_of(job: &Job) -> Option<String> {
    job.metadata
        .annotations
        .as_ref()?
        .get(labels::TEMPLATE_HASH)
        .cloned()
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
    status: &'a minicluster_core::spec::MiniClusterStatus,
}

async fn patch_status(
    mcs: &Api<MiniCluster>,
    name: &str,
    st: &minicluster_core::spec::MiniClusterStatus,
) -> Result<()> {
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
