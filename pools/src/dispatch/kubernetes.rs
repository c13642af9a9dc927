//! Jobs on kubernetes pools: a MiniCluster per job, applied for the operator (or, with
//! `noOperator=true`, its Secret, ConfigMap, Service and Job applied directly). What became of
//! a launch is read from the API server on every look — the object named after the launch,
//! its broker pods and their statuses — never from memory, so a control plane killed and
//! restarted sees exactly what a running one sees and re-attaches instead of applying again.
//!
//! Exactly once: the object's name is the launch's (`<pool>-j<job>`) and applying it is a
//! server-side apply of that fixed name, so a second apply changes nothing; and once the
//! launch's timeline says `started`, a missing object is reported, never created again.
//! A job's command runs once: unless the template says otherwise its pods never restart and
//! its Job never retries (`restartPolicy: Never`, `backoffLimit: 0`).
//!
//! The [`Executor`] trait is synchronous; each call runs its own current-thread tokio runtime
//! and makes its own client on it (a client's connections live on the runtime that opened
//! them, so none outlives the call that uses it).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::AsyncReadExt;
use k8s_openapi::api::batch::v1::Job as K8sJob;
use k8s_openapi::api::core::v1::{
    ConfigMap, ContainerStateTerminated, ContainerStatus, Pod, Secret, Service,
};
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, LogParams};
use minicluster_core::MiniCluster;
use minicluster_core::spec::{ContainerResources, ContainerVolume, NetworkSpec, Toleration};
use minicluster_launcher::kubernetes::KubernetesLauncher;
use minicluster_operator::build::BuildOptions;
use minicluster_operator::labels::{self, flux_container, is_rank0};
use serde::de::DeserializeOwned;

use super::{Control, Executor, minicluster};
use crate::pool::Pool;
use crate::store::{Claimed, JobState, LaunchState, Outcome, launch_name};

/// Label of every MiniCluster (and Job) launched for a job: the pool's name.
pub const POOL_LABEL: &str = "flux-framework.org/pool";
/// Label of every MiniCluster (and Job) launched for a job: the job's id.
pub const JOB_LABEL: &str = "flux-framework.org/job";

/// The most of rank 0's log kept, or read live, per call.
const LOG_LIMIT: i64 = 1 << 20;
/// How long one API call may take before it counts as failed.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Makes the API client one call uses, on that call's runtime.
pub type Connect = Arc<dyn Fn() -> Result<Client, String> + Send + Sync>;

pub struct KubernetesExecutor {
    pub connect: Connect,
    /// Namespace of pools that set none (the kubeconfig context's, or the pod's).
    pub namespace: String,
    /// Settings of the objects applied without an operator.
    pub build: BuildOptions,
    /// Where rank 0's log of each job is kept.
    pub logs: PathBuf,
    /// How often a running launch is looked at.
    pub poll: Duration,
    /// How long the API server may fail to answer before a running job is given up.
    pub patience: Duration,
}

impl KubernetesExecutor {
    /// An executor on the cluster `config` names (from `kube::Config::infer`).
    pub fn new(config: kube::Config, logs: PathBuf, build: BuildOptions) -> KubernetesExecutor {
        let namespace = config.default_namespace.clone();
        KubernetesExecutor {
            connect: Arc::new(move || Client::try_from(config.clone()).map_err(|e| e.to_string())),
            namespace,
            build,
            logs,
            poll: Duration::from_secs(2),
            patience: Duration::from_secs(300),
        }
    }

    /// The cluster of the kubeconfig (or of the pod this runs in), if there is one.
    pub async fn infer(logs: PathBuf, build: BuildOptions) -> Result<KubernetesExecutor, String> {
        let config = kube::Config::infer().await.map_err(|e| e.to_string())?;
        // What `Client::try_default` would do: a config no client can be made of is no cluster.
        Client::try_from(config.clone()).map_err(|e| e.to_string())?;
        Ok(KubernetesExecutor::new(config, logs, build))
    }

    fn namespace_of(&self, pool: &Pool) -> String {
        pool.set
            .get("namespace")
            .cloned()
            .unwrap_or_else(|| self.namespace.clone())
    }

    fn kept_log(&self, job: u64) -> PathBuf {
        self.logs.join(format!("job-{job}.log"))
    }

    /// Runs `f` with a client on a current-thread runtime of its own; `None` when there is
    /// no runtime or no client to be had (logged).
    fn block<T, F>(&self, f: impl FnOnce(Client) -> F) -> Option<T>
    where
        F: Future<Output = T>,
    {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!("starting a runtime for the Kubernetes API: {e}");
                return None;
            }
        };
        rt.block_on(async {
            match (self.connect)() {
                Ok(client) => Some(f(client).await),
                Err(e) => {
                    tracing::warn!("a client of the Kubernetes API: {e}");
                    None
                }
            }
        })
    }
}

fn no_operator(pool: &Pool) -> bool {
    pool.set.get("noOperator").is_some_and(|v| v == "true")
}

fn ended(state: JobState, exit_code: Option<i32>, reason: impl Into<Option<String>>) -> Outcome {
    Outcome {
        state,
        exit_code,
        reason: reason.into(),
    }
}

/// Parses a JSON-valued pool field as `T`, refusing fields `T` does not have (a silently
/// dropped `tolerationSeconds` is worse than an error).
fn parse<T: DeserializeOwned>(pool: &Pool, key: &str, what: &str) -> Result<Option<T>, String> {
    let Some(text) = pool.set.get(key) else {
        return Ok(None);
    };
    let mut unknown = Vec::new();
    let parsed: Result<T, _> =
        serde_ignored::deserialize(&mut serde_json::Deserializer::from_str(text), |path| {
            unknown.push(path.to_string())
        });
    match parsed {
        Err(e) => Err(format!(
            "pool {}: set.{key}: {text:?} is not {what}: {e} (fix: `minicluster pools update {} --set {key}='…'`)",
            pool.name, pool.name
        )),
        Ok(_) if !unknown.is_empty() => Err(format!(
            "pool {}: set.{key}: {what} has no field {} (fix: `minicluster pools update {} --set {key}='…'`)",
            pool.name,
            unknown.join(", "),
            pool.name
        )),
        Ok(v) => Ok(Some(v)),
    }
}

/// Applies a kubernetes pool's fields to the MiniCluster a job runs on (pure). Maps merge
/// over the template's (the pool wins per key), tolerations are added, and:
///
/// - `namespace` → `metadata.namespace`; `serviceAccount` → `spec.pod.serviceAccountName`;
///   `nodeSelector` → `spec.pod.nodeSelector`; `tolerations` → `spec.pod.tolerations`;
/// - `resources` and `volumes` → the Flux container's; `imagePullPolicy` → every container's;
/// - `labels` → `metadata.labels` and `spec.jobLabels` (so the Job carries them also without
///   an operator); `annotations` → `metadata.annotations`;
/// - `activeDeadlineSeconds` → `spec.deadlineSeconds`.
///
/// The launch is labelled with its pool and job ([`POOL_LABEL`], [`JOB_LABEL`]); `cleanup`
/// is off (the control plane reads rank 0's end and log, then deletes the MiniCluster); the
/// headless Service is named after the launch unless the template names one (several
/// launches share a namespace); pods do not restart and the Job does not retry unless the
/// template says so.
pub fn apply_pool_fields(mc: &mut MiniCluster, pool: &Pool, job: u64) -> Result<(), String> {
    let node_selector: Option<BTreeMap<String, String>> =
        parse(pool, "nodeSelector", "a JSON map of strings")?;
    let tolerations: Option<Vec<Toleration>> =
        parse(pool, "tolerations", "a JSON list of tolerations")?;
    let resources: Option<ContainerResources> = parse(
        pool,
        "resources",
        "a JSON map of container resources ({\"limits\": {…}, \"requests\": {…}})",
    )?;
    let labels: Option<BTreeMap<String, String>> = parse(pool, "labels", "a JSON map of strings")?;
    let annotations: Option<BTreeMap<String, String>> =
        parse(pool, "annotations", "a JSON map of strings")?;
    let volumes: Option<BTreeMap<String, ContainerVolume>> =
        parse(pool, "volumes", "a JSON map of volume names to volumes")?;
    let deadline = match pool.set.get("activeDeadlineSeconds") {
        None => None,
        Some(v) => Some(v.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
            format!(
                "pool {}: set.activeDeadlineSeconds: {v:?} is not a whole number of seconds of at least 1",
                pool.name
            )
        })?),
    };

    if let Some(ns) = pool.set.get("namespace") {
        mc.metadata.namespace = Some(ns.clone());
    }
    let mut ours = labels.unwrap_or_default();
    ours.insert(POOL_LABEL.into(), pool.name.clone());
    ours.insert(JOB_LABEL.into(), job.to_string());
    mc.metadata
        .labels
        .get_or_insert_with(BTreeMap::new)
        .extend(ours.clone());
    mc.spec.job_labels.extend(ours);
    if let Some(a) = annotations {
        mc.metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .extend(a);
    }
    if let Some(d) = deadline {
        mc.spec.deadline_seconds = d;
    }
    mc.spec.cleanup = false;
    if mc.spec.backoff_limit.is_none() {
        mc.spec.backoff_limit = Some(0);
    }
    let name = mc.metadata.name.clone().unwrap_or_default();
    let network = mc.spec.network.get_or_insert_with(NetworkSpec::default);
    if network.headless_name.is_none() {
        network.headless_name = Some(name);
    }
    let pod = mc.spec.pod.get_or_insert_with(Default::default);
    if pod.restart_policy.is_none() {
        pod.restart_policy = Some("Never".into());
    }
    if let Some(sa) = pool.set.get("serviceAccount") {
        pod.service_account_name = Some(sa.clone());
    }
    if let Some(ns) = node_selector {
        pod.node_selector.extend(ns);
    }
    for t in tolerations.unwrap_or_default() {
        if !pod.tolerations.contains(&t) {
            pod.tolerations.push(t);
        }
    }
    if let Some(policy) = pool.set.get("imagePullPolicy") {
        for c in &mut mc.spec.containers {
            c.image_pull_policy = Some(policy.clone());
            // `pullAlways` would win over the pool's policy.
            c.pull_always = policy == "Always";
        }
    }
    let idx = mc.spec.flux_container_index().unwrap_or(0);
    if let Some(c) = mc.spec.containers.get_mut(idx) {
        if let Some(r) = resources {
            let into = c.resources.get_or_insert_with(Default::default);
            into.limits.extend(r.limits);
            into.requests.extend(r.requests);
        }
        if let Some(v) = volumes {
            c.volumes.extend(v);
        }
    }
    Ok(())
}

/// The headless Service of a launch without an operator (named by [`apply_pool_fields`]).
fn headless_of(c: &Claimed) -> Option<String> {
    minicluster::for_job(&c.job, &c.pool, &c.launch.name)
        .ok()?
        .spec
        .network?
        .headless_name
}

/// A condition of the MiniCluster's or the Job's status.
#[derive(Clone, Debug, Default, PartialEq)]
struct Cond {
    type_: String,
    status: String,
    reason: String,
    message: String,
}

/// What the object named after the launch says: how many brokers, whether it is being
/// deleted, its conditions.
#[derive(Clone, Debug, Default)]
struct Look {
    size: i32,
    deleting: bool,
    conditions: Vec<Cond>,
}

impl Look {
    fn of_minicluster(mc: &MiniCluster) -> Look {
        Look {
            size: mc.spec.size,
            deleting: mc.metadata.deletion_timestamp.is_some(),
            conditions: mc
                .status
                .iter()
                .flat_map(|s| &s.conditions)
                .map(|c| Cond {
                    type_: c.type_.clone(),
                    status: c.status.clone(),
                    reason: c.reason.clone(),
                    message: c.message.clone(),
                })
                .collect(),
        }
    }

    fn of_job(j: &K8sJob) -> Look {
        Look {
            size: j.spec.as_ref().and_then(|s| s.parallelism).unwrap_or(1),
            deleting: j.metadata.deletion_timestamp.is_some(),
            conditions: j
                .status
                .iter()
                .flat_map(|s| s.conditions.iter().flatten())
                .map(|c| Cond {
                    type_: c.type_.clone(),
                    status: c.status.clone(),
                    reason: c.reason.clone().unwrap_or_default(),
                    message: c.message.clone().unwrap_or_default(),
                })
                .collect(),
        }
    }

    /// The condition of `type_` when it has `status`.
    fn condition(&self, type_: &str, status: &str) -> Option<&Cond> {
        self.conditions
            .iter()
            .find(|c| c.type_ == type_ && c.status == status)
    }
}

fn phase(p: &Pod) -> Option<&str> {
    p.status.as_ref()?.phase.as_deref()
}

fn pod_reason(p: &Pod) -> Option<&str> {
    p.status.as_ref()?.reason.as_deref()
}

fn pod_name(p: &Pod) -> &str {
    p.metadata.name.as_deref().unwrap_or("?")
}

/// Every container status of a pod, init containers first.
fn statuses(p: &Pod) -> impl Iterator<Item = &ContainerStatus> {
    p.status.iter().flat_map(|s| {
        s.init_container_statuses
            .iter()
            .flatten()
            .chain(s.container_statuses.iter().flatten())
    })
}

/// How rank 0's Flux container ended, if it has.
fn rank0_end(p: &Pod) -> Option<&ContainerStateTerminated> {
    let flux = flux_container(p);
    p.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|s| flux.as_deref().is_none_or(|f| s.name == f))?
        .state
        .as_ref()?
        .terminated
        .as_ref()
}

/// Rank 0's pod: the one whose Flux container ended, else the newest.
fn rank0(pods: &[Pod]) -> Option<&Pod> {
    let mut zero: Vec<&Pod> = pods.iter().filter(|p| is_rank0(p)).collect();
    zero.sort_by_key(|p| p.metadata.creation_timestamp.clone().map(|t| t.0));
    zero.iter()
        .find(|p| rank0_end(p).is_some())
        .or(zero.last())
        .copied()
}

const IMAGE_PULL: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
];

/// How the launch ended, if it has, from its object's conditions and its broker pods (pure).
/// The reasons are DESIGN.md's: deadline exceeded, evicted, OOM killed, image pull, exit code.
fn classify(look: &Look, pods: &[Pod]) -> Option<Outcome> {
    let zero = rank0(pods);
    let code = zero.and_then(rank0_end).map(|t| t.exit_code);
    let failed = look.condition("Failed", "True");
    if let Some(f) = failed.filter(|f| f.reason == "DeadlineExceeded") {
        return Some(ended(
            JobState::Failed,
            code,
            format!("deadline exceeded: {}", f.message),
        ));
    }
    if let Some(p) = pods
        .iter()
        .find(|p| pod_reason(p) == Some("DeadlineExceeded"))
    {
        return Some(ended(
            JobState::Failed,
            code,
            format!("deadline exceeded: pod {}", pod_name(p)),
        ));
    }
    let evicted = |p: &Pod| {
        format!(
            "evicted: pod {}: {}",
            pod_name(p),
            p.status
                .as_ref()
                .and_then(|s| s.message.as_deref())
                .unwrap_or("")
        )
    };
    if let Some(p) = zero.filter(|p| pod_reason(p) == Some("Evicted")) {
        return Some(ended(JobState::Failed, code, evicted(p)));
    }
    if let Some(t) = zero.and_then(rank0_end) {
        return Some(match (t.reason.as_deref(), t.exit_code) {
            (Some("OOMKilled"), c) => ended(
                JobState::Failed,
                Some(c),
                format!("OOM killed: rank 0 (exit code {c})"),
            ),
            (_, 0) => ended(JobState::Done, Some(0), None),
            (_, c) => ended(JobState::Failed, Some(c), format!("exit code {c}")),
        });
    }
    if let Some(p) = pods.iter().find(|p| pod_reason(p) == Some("Evicted")) {
        return Some(ended(JobState::Failed, None, evicted(p)));
    }
    for p in pods {
        for s in statuses(p) {
            let state = s.state.as_ref();
            if let Some(t) = state
                .and_then(|st| st.terminated.as_ref())
                .filter(|t| t.reason.as_deref() == Some("OOMKilled"))
            {
                return Some(ended(
                    JobState::Failed,
                    None,
                    format!(
                        "OOM killed: container {} of pod {} (exit code {})",
                        s.name,
                        pod_name(p),
                        t.exit_code
                    ),
                ));
            }
            if let Some(w) = state
                .and_then(|st| st.waiting.as_ref())
                .filter(|w| IMAGE_PULL.contains(&w.reason.as_deref().unwrap_or("")))
            {
                return Some(ended(
                    JobState::Failed,
                    None,
                    format!(
                        "image pull: {} of container {} ({}): {}",
                        w.reason.as_deref().unwrap_or(""),
                        s.name,
                        s.image,
                        w.message.as_deref().unwrap_or("")
                    ),
                ));
            }
        }
    }
    if let Some(f) = failed {
        return Some(ended(
            JobState::Failed,
            None,
            format!("{}: {}", f.reason, f.message),
        ));
    }
    if look.condition("Complete", "True").is_some() || look.condition("Succeeded", "True").is_some()
    {
        // Every index succeeded (its pods may be gone already).
        return Some(ended(JobState::Done, Some(0), None));
    }
    if let Some(v) = look.condition("Validated", "False") {
        return Some(ended(
            JobState::Failed,
            None,
            format!("the operator refused the MiniCluster: {}", v.message),
        ));
    }
    None
}

/// Whether every broker runs (or the operator says so).
fn all_running(look: &Look, pods: &[Pod]) -> Option<String> {
    let running = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none() && phase(p) == Some("Running"))
        .count();
    if let Some(c) = look.condition("BrokersReady", "True") {
        return Some(c.message.clone());
    }
    (look.size > 0 && running >= look.size as usize)
        .then(|| format!("{running}/{} broker pods running", look.size))
}

/// A failed API call that waiting will not mend.
fn permanent(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 401 || s.code == 403)
}

fn not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// A failed API call; `fatal` when waiting will not mend it.
#[derive(Debug)]
struct CallError {
    fatal: bool,
    text: String,
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl From<CallError> for String {
    fn from(e: CallError) -> String {
        e.text
    }
}

/// One API call, bounded by [`CALL_TIMEOUT`].
async fn timed<T>(f: impl Future<Output = kube::Result<T>>) -> Result<T, CallError> {
    match tokio::time::timeout(CALL_TIMEOUT, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) if permanent(&e) => Err(CallError {
            fatal: true,
            text: format!(
                "{e} (fix: grant the control plane get, list, patch and delete on miniclusters, jobs, pods, pods/log, services, configmaps and secrets)"
            ),
        }),
        Ok(Err(e)) => Err(CallError {
            fatal: false,
            text: e.to_string(),
        }),
        Err(_) => Err(CallError {
            fatal: false,
            text: format!("no answer within {}s", CALL_TIMEOUT.as_secs()),
        }),
    }
}

/// One launch on one client.
struct Launch<'a> {
    client: Client,
    ns: String,
    name: &'a str,
    no_operator: bool,
}

impl Launch<'_> {
    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// The object named after the launch, if it exists.
    async fn look(&self) -> kube::Result<Option<Look>> {
        if self.no_operator {
            let api: Api<K8sJob> = Api::namespaced(self.client.clone(), &self.ns);
            Ok(api.get_opt(self.name).await?.as_ref().map(Look::of_job))
        } else {
            let api: Api<MiniCluster> = Api::namespaced(self.client.clone(), &self.ns);
            Ok(api
                .get_opt(self.name)
                .await?
                .as_ref()
                .map(Look::of_minicluster))
        }
    }

    async fn broker_pods(&self) -> kube::Result<Vec<Pod>> {
        let selector = labels::selector_string(self.name);
        Ok(self
            .pods()
            .list(&ListParams::default().labels(&selector))
            .await?
            .items)
    }

    /// Deletes what the launch applied; what is already gone counts as deleted.
    async fn delete(&self, dp: &DeleteParams, headless: Option<&str>) -> Result<(), String> {
        async fn gone<K>(api: Api<K>, name: &str, dp: &DeleteParams) -> Result<(), String>
        where
            K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug,
        {
            match tokio::time::timeout(CALL_TIMEOUT, api.delete(name, dp)).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) if not_found(&e) => Ok(()),
                Ok(Err(e)) => Err(format!("deleting {name}: {e}")),
                Err(_) => Err(format!(
                    "deleting {name}: no answer within {}s",
                    CALL_TIMEOUT.as_secs()
                )),
            }
        }
        let (c, ns) = (&self.client, self.ns.as_str());
        if !self.no_operator {
            // Its children are owned by it and go with it.
            return gone(Api::<MiniCluster>::namespaced(c.clone(), ns), self.name, dp).await;
        }
        let results = [
            gone(Api::<K8sJob>::namespaced(c.clone(), ns), self.name, dp).await,
            gone(
                Api::<ConfigMap>::namespaced(c.clone(), ns),
                &labels::config_map(self.name),
                dp,
            )
            .await,
            gone(
                Api::<Secret>::namespaced(c.clone(), ns),
                &labels::cert_secret(self.name),
                dp,
            )
            .await,
            match headless {
                Some(svc) => gone(Api::<Service>::namespaced(c.clone(), ns), svc, dp).await,
                None => Ok(()),
            },
        ];
        let errors: Vec<String> = results.into_iter().filter_map(Result::err).collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }

    /// Rank 0's log from its start, at most `limit` bytes; `None` without a rank 0 pod.
    async fn rank0_log(&self, limit: i64) -> Result<Option<Vec<u8>>, String> {
        // Rank 0 by its completion index (an annotation before Kubernetes 1.28), not a label.
        let selector = labels::selector_string(self.name);
        let list = timed(self.pods().list(&ListParams::default().labels(&selector))).await?;
        let Some(pod) = rank0(&list.items) else {
            return Ok(None);
        };
        let mut stream = timed(self.pods().log_stream(
            pod_name(pod),
            &LogParams {
                container: flux_container(pod),
                limit_bytes: Some(limit),
                ..LogParams::default()
            },
        ))
        .await?;
        let mut out = Vec::new();
        tokio::time::timeout(CALL_TIMEOUT, stream.read_to_end(&mut out))
            .await
            .map_err(|_| "reading rank 0's log: no end".to_string())?
            .map_err(|e| format!("reading rank 0's log: {e}"))?;
        Ok(Some(out))
    }
}

impl KubernetesExecutor {
    fn launch<'a>(&self, client: Client, c: &'a Claimed) -> Launch<'a> {
        Launch {
            client,
            ns: self.namespace_of(&c.pool),
            name: &c.launch.name,
            no_operator: no_operator(&c.pool),
        }
    }

    /// Sleeps one poll interval, waking early when the control plane shuts down.
    async fn pause(&self, ctl: &Control<'_>) {
        let until = tokio::time::Instant::now() + self.poll;
        while tokio::time::Instant::now() < until && !ctl.shutting_down() {
            tokio::time::sleep(Duration::from_millis(100).min(self.poll)).await;
        }
    }

    async fn follow(&self, client: Client, c: &Claimed, ctl: &Control<'_>) -> Option<Outcome> {
        let l = self.launch(client.clone(), c);
        let name = c.launch.name.as_str();
        // Started in an earlier run of the dispatcher: it was applied, and is never again.
        let mut began = c.launch.events.iter().any(|e| {
            matches!(
                e.state,
                LaunchState::Started | LaunchState::Connected | LaunchState::Stopping
            )
        });
        let mut announced = false;
        let mut connected = false;
        let mut failing: Option<Instant> = None;
        loop {
            if ctl.shutting_down() {
                return None;
            }
            // Looking: the object, then its pods. A failed look is retried until `patience`.
            let seen = match timed(l.look()).await {
                Ok(None) => Ok(None),
                Ok(Some(look)) => timed(l.broker_pods()).await.map(|p| Some((look, p))),
                Err(e) => Err(e),
            };
            let seen = match seen {
                Ok(s) => {
                    failing = None;
                    s
                }
                Err(e) => {
                    let since = *failing.get_or_insert_with(Instant::now);
                    if e.fatal || since.elapsed() >= self.patience {
                        return Some(ended(
                            JobState::Failed,
                            None,
                            format!("looking at {name} in namespace {}: {e}", l.ns),
                        ));
                    }
                    tracing::warn!(launch = name, "looking at the launch: {e}");
                    self.pause(ctl).await;
                    continue;
                }
            };
            match seen {
                None if began => {
                    let (state, why) = if ctl.cancel_requested() {
                        (JobState::Cancelled, "cancelled; its MiniCluster is gone")
                    } else {
                        (
                            JobState::Failed,
                            "its MiniCluster was deleted before its work ended (not launched again: its work may have run)",
                        )
                    };
                    return Some(ended(state, None, why.to_string()));
                }
                None => {
                    if ctl.cancel_requested() {
                        return Some(ended(
                            JobState::Cancelled,
                            None,
                            "cancelled before its MiniCluster started".to_string(),
                        ));
                    }
                    let mc = match minicluster::for_job(&c.job, &c.pool, name) {
                        Ok(mc) => mc,
                        Err(e) => return Some(ended(JobState::Failed, None, e)),
                    };
                    ctl.event(LaunchState::Starting, None);
                    let launcher = KubernetesLauncher {
                        client: client.clone(),
                        namespace: l.ns.clone(),
                        no_operator: l.no_operator,
                        build: self.build.clone(),
                        poll: self.poll,
                    };
                    if let Err(e) = launcher.launch(&mc).await {
                        return Some(ended(JobState::Failed, None, format!("launch: {e}")));
                    }
                    began = true;
                    announced = true;
                    let how = if l.no_operator {
                        "its objects applied directly"
                    } else {
                        "a MiniCluster for the operator"
                    };
                    ctl.event(
                        LaunchState::Started,
                        Some(&format!(
                            "{} brokers in namespace {}, {how}",
                            mc.spec.size, l.ns
                        )),
                    );
                }
                Some((look, pods)) => {
                    began = true;
                    if !announced {
                        announced = true;
                        ctl.event(
                            LaunchState::Started,
                            Some("re-attached after a control plane restart"),
                        );
                    }
                    // An earlier run deleted it on cancel and was stopped before recording so.
                    if look.deleting && ctl.cancel_requested() {
                        return Some(ended(
                            JobState::Cancelled,
                            None,
                            "cancelled while running".to_string(),
                        ));
                    }
                    if let Some(o) = classify(&look, &pods) {
                        return Some(o);
                    }
                    if !connected && let Some(how) = all_running(&look, &pods) {
                        connected = true;
                        ctl.event(LaunchState::Connected, Some(&how));
                    }
                    if ctl.cancel_requested() {
                        ctl.event(LaunchState::Stopping, Some("cancel requested"));
                        let headless = if l.no_operator { headless_of(c) } else { None };
                        if let Err(e) = l
                            .delete(&DeleteParams::foreground(), headless.as_deref())
                            .await
                        {
                            // Clean-up deletes it again; the sweep at the next start too.
                            tracing::warn!(launch = name, "deleting on cancel: {e}");
                        }
                        return Some(ended(
                            JobState::Cancelled,
                            None,
                            "cancelled while running".to_string(),
                        ));
                    }
                }
            }
            self.pause(ctl).await;
        }
    }
}

impl Executor for KubernetesExecutor {
    fn run(&self, c: &Claimed, ctl: &Control<'_>) -> Option<Outcome> {
        match self.block(|client| self.follow(client, c, ctl)) {
            Some(o) => o,
            None if ctl.shutting_down() => None,
            None => Some(ended(
                JobState::Failed,
                None,
                "no client of the Kubernetes API could be made (see the control plane's log)"
                    .to_string(),
            )),
        }
    }

    fn keep_log(&self, c: &Claimed) {
        let log =
            self.block(|client| async move { self.launch(client, c).rank0_log(LOG_LIMIT).await });
        let bytes = match log {
            Some(Ok(Some(b))) => b,
            Some(Ok(None)) => {
                tracing::debug!(launch = %c.launch.name, "keeping the log: no rank 0 pod");
                return;
            }
            Some(Err(e)) => {
                tracing::debug!(launch = %c.launch.name, "keeping the log: {e}");
                return;
            }
            None => return,
        };
        let to = self.kept_log(c.job.id);
        let tmp = to.with_extension("log.tmp");
        let written = std::fs::create_dir_all(&self.logs)
            .and_then(|()| std::fs::write(&tmp, &bytes))
            .and_then(|()| std::fs::rename(&tmp, &to));
        if let Err(e) = written {
            tracing::warn!("keeping {}: {e}", to.display());
        }
    }

    fn clean_up(&self, c: &Claimed) {
        let headless = no_operator(&c.pool).then(|| headless_of(c)).flatten();
        let done = self.block(|client| async move {
            self.launch(client, c)
                .delete(&DeleteParams::background(), headless.as_deref())
                .await
        });
        if let Some(Err(e)) = done {
            tracing::warn!(launch = %c.launch.name, "cleaning up: {e}");
        }
    }

    /// One list per kind over every namespace, by our label: what a dispatcher killed between
    /// recording an outcome and cleaning up left. Without the right to list cluster-wide it
    /// sweeps nothing (logged); a later clean-up of the same name is not needed, as names are
    /// never reused.
    fn sweep(&self, active: &BTreeSet<String>) {
        let swept = self.block(|client| async move {
            let lp = ListParams::default().labels(POOL_LABEL);
            let ours = |meta: &kube::api::ObjectMeta| -> Option<(String, String)> {
                let l = meta.labels.as_ref()?;
                let id: u64 = l.get(JOB_LABEL)?.parse().ok()?;
                let name = meta.name.clone()?;
                (name == launch_name(l.get(POOL_LABEL)?, id) && !active.contains(&name))
                    .then(|| (meta.namespace.clone().unwrap_or_default(), name))
            };
            let mut stale: Vec<(String, String, bool)> = Vec::new();
            match timed(Api::<MiniCluster>::all(client.clone()).list(&lp)).await {
                Ok(list) => stale.extend(
                    list.items
                        .iter()
                        .filter_map(|m| ours(&m.metadata))
                        .map(|(ns, n)| (ns, n, false)),
                ),
                Err(e) => tracing::debug!("sweeping MiniClusters: {e}"),
            }
            match timed(Api::<K8sJob>::all(client.clone()).list(&lp)).await {
                Ok(list) => stale.extend(
                    list.items
                        .iter()
                        // A Job with an owner is its MiniCluster's, swept with it.
                        .filter(|j| j.metadata.owner_references.as_ref().is_none_or(Vec::is_empty))
                        .filter_map(|j| ours(&j.metadata))
                        .map(|(ns, n)| (ns, n, true)),
                ),
                Err(e) => tracing::debug!("sweeping Jobs: {e}"),
            }
            for (ns, name, no_operator) in stale {
                let l = Launch {
                    client: client.clone(),
                    ns: ns.clone(),
                    name: &name,
                    no_operator,
                };
                let headless = no_operator.then_some(name.as_str());
                match l.delete(&DeleteParams::background(), headless).await {
                    Ok(()) => tracing::info!(launch = %name, namespace = %ns, "removed what a finished job left"),
                    Err(e) => tracing::warn!(launch = %name, namespace = %ns, "sweeping: {e}"),
                }
            }
        });
        if swept.is_none() {
            tracing::debug!("kubernetes sweep skipped: no client");
        }
    }

    fn log(&self, pool: &Pool, job: u64, launch: &str, offset: u64) -> Option<Vec<u8>> {
        let kept = self.kept_log(job);
        if kept.exists() {
            let mut f = std::fs::File::open(kept).ok()?;
            f.seek(SeekFrom::Start(offset)).ok()?;
            let mut out = Vec::new();
            // A snapshot of at most 1 MiB per call; callers page on with the offset.
            f.take(LOG_LIMIT as u64).read_to_end(&mut out).ok()?;
            return Some(out);
        }
        // Live: the log API reads from the start, so read up to offset + 1 MiB and cut.
        let limit = i64::try_from(offset).ok()?.checked_add(LOG_LIMIT)?;
        let live = self.block(|client| async move {
            Launch {
                client,
                ns: self.namespace_of(pool),
                name: launch,
                no_operator: no_operator(pool),
            }
            .rank0_log(limit)
            .await
        })?;
        match live {
            Ok(Some(bytes)) => Some(
                bytes
                    .get(usize::try_from(offset).ok()?..)
                    .unwrap_or_default()
                    .to_vec(),
            ),
            Ok(None) => None,
            Err(e) => {
                tracing::debug!(launch, "reading rank 0's log: {e}");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::LauncherType;
    use crate::store::{Job, NewJob};
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    use serde_json::json;

    fn job() -> Job {
        Job {
            state: JobState::Claimed,
            ..Job::waiting(
                7,
                NewJob {
                    queue: "q".into(),
                    user: "u".into(),
                    command: vec!["hostname".into()],
                    ..NewJob::default()
                },
            )
        }
    }

    fn pool(sets: &[(&str, &str)]) -> Pool {
        let mut p = Pool::new("gpu", LauncherType::Kubernetes);
        for (k, v) in sets {
            p.set.insert((*k).into(), (*v).into());
        }
        p
    }

    #[test]
    fn every_field_lands_on_its_spec_field() {
        let p = pool(&[
            ("namespace", "hpc"),
            ("serviceAccount", "flux"),
            ("nodeSelector", r#"{"disktype": "ssd"}"#),
            (
                "tolerations",
                r#"[{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}]"#,
            ),
            (
                "resources",
                r#"{"limits": {"memory": "4Gi", "nvidia.com/gpu": 1}, "requests": {"cpu": "2"}}"#,
            ),
            ("imagePullPolicy", "IfNotPresent"),
            ("labels", r#"{"team": "a"}"#),
            ("annotations", r#"{"note": "x"}"#),
            ("activeDeadlineSeconds", "600"),
            (
                "volumes",
                r#"{"data": {"claimName": "data", "path": "/data"}}"#,
            ),
        ]);
        let mc = minicluster::for_job(&job(), &p, "gpu-j7").unwrap();
        assert_eq!(mc.metadata.namespace.as_deref(), Some("hpc"));
        let l = mc.metadata.labels.as_ref().unwrap();
        assert_eq!(
            (
                l["team"].as_str(),
                l[POOL_LABEL].as_str(),
                l[JOB_LABEL].as_str()
            ),
            ("a", "gpu", "7")
        );
        assert_eq!(mc.spec.job_labels, *l, "the Job is labelled too");
        assert_eq!(mc.metadata.annotations.as_ref().unwrap()["note"], "x");
        assert_eq!(mc.spec.deadline_seconds, 600);
        let pod = mc.spec.pod.as_ref().unwrap();
        assert_eq!(pod.service_account_name.as_deref(), Some("flux"));
        assert_eq!(pod.node_selector["disktype"], "ssd");
        assert_eq!(
            pod.tolerations,
            vec![Toleration {
                key: Some("gpu".into()),
                operator: Some("Exists".into()),
                effect: Some("NoSchedule".into()),
                value: None
            }]
        );
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
        assert_eq!(mc.spec.backoff_limit, Some(0));
        assert!(!mc.spec.cleanup);
        assert_eq!(
            mc.spec.network.as_ref().unwrap().headless_name.as_deref(),
            Some("gpu-j7")
        );
        let c = &mc.spec.containers[0];
        assert_eq!(c.image_pull_policy.as_deref(), Some("IfNotPresent"));
        let r = c.resources.as_ref().unwrap();
        assert_eq!(r.limits["memory"], IntOrString::String("4Gi".into()));
        assert_eq!(r.limits["nvidia.com/gpu"], IntOrString::Int(1));
        assert_eq!(r.requests["cpu"], IntOrString::String("2".into()));
        assert_eq!(c.volumes["data"].claim_name.as_deref(), Some("data"));
        assert_eq!(c.volumes["data"].path.as_deref(), Some("/data"));
    }

    #[test]
    fn the_template_is_kept_where_the_pool_is_silent_and_merged_where_not() {
        let mut p = pool(&[("nodeSelector", r#"{"zone": "b"}"#)]);
        p.template = Some(
            "apiVersion: flux-framework.org/v1alpha2\nkind: MiniCluster\nmetadata: {name: tpl}\nspec:\n  size: 2\n  backoffLimit: 3\n  cleanup: true\n  network: {headlessName: tpl-net}\n  pod:\n    restartPolicy: OnFailure\n    nodeSelector: {disktype: ssd, zone: a}\n  containers:\n    - image: img\n      pullAlways: true\n".into(),
        );
        let mc = minicluster::for_job(&job(), &p, "gpu-j7").unwrap();
        let pod = mc.spec.pod.as_ref().unwrap();
        assert_eq!(pod.node_selector["disktype"], "ssd");
        assert_eq!(pod.node_selector["zone"], "b", "the pool wins per key");
        assert_eq!(pod.restart_policy.as_deref(), Some("OnFailure"));
        assert_eq!(mc.spec.backoff_limit, Some(3));
        assert!(!mc.spec.cleanup, "rank 0's end must stay readable");
        assert_eq!(
            mc.spec.network.as_ref().unwrap().headless_name.as_deref(),
            Some("tpl-net")
        );
        assert!(mc.spec.containers[0].pull_always, "no imagePullPolicy set");
        let mc =
            minicluster::for_job(&job(), &pool(&[("imagePullPolicy", "Never")]), "gpu-j7").unwrap();
        assert!(!mc.spec.containers[0].pull_always);
    }

    #[test]
    fn bad_values_are_refused_with_the_field_named() {
        for (key, value, want) in [
            (
                "nodeSelector",
                "{",
                "set.nodeSelector: \"{\" is not a JSON map of strings",
            ),
            ("nodeSelector", r#"{"a": 1}"#, "set.nodeSelector"),
            ("tolerations", r#"{"key": "gpu"}"#, "set.tolerations"),
            (
                "tolerations",
                r#"[{"key": "gpu", "tolerationSeconds": 5}]"#,
                "set.tolerations: a JSON list of tolerations has no field 0.tolerationSeconds",
            ),
            ("resources", r#"{"cpu": "2"}"#, "set.resources"),
            ("volumes", r#"{"data": {"claim": "x"}}"#, "data.claim"),
            ("labels", "[]", "set.labels"),
            ("annotations", r#"{"a": {"b": 1}}"#, "set.annotations"),
            ("activeDeadlineSeconds", "0", "set.activeDeadlineSeconds"),
        ] {
            let e = minicluster::for_job(&job(), &pool(&[(key, value)]), "gpu-j7").unwrap_err();
            assert!(e.contains(want), "{key}={value}: {e}");
            assert!(e.starts_with("pool gpu: "), "{e}");
        }
    }

    fn pod(index: &str, status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": format!("gpu-j7-{index}-abcde"),
                "labels": {labels::COMPLETION_INDEX: index},
                "annotations": {labels::DEFAULT_CONTAINER: "gpu-j7"}},
            "spec": {"containers": [{"name": "gpu-j7"}]},
            "status": status,
        }))
        .unwrap()
    }

    fn terminated(code: i32, reason: &str) -> serde_json::Value {
        json!({"phase": if code == 0 { "Succeeded" } else { "Failed" }, "containerStatuses": [
            {"name": "gpu-j7", "image": "img", "imageID": "", "ready": false, "restartCount": 0,
             "state": {"terminated": {"exitCode": code, "reason": reason}}}]})
    }

    fn failed(reason: &str) -> Look {
        Look {
            size: 2,
            deleting: false,
            conditions: vec![Cond {
                type_: "Failed".into(),
                status: "True".into(),
                reason: reason.into(),
                message: "Job was active longer than specified deadline".into(),
            }],
        }
    }

    #[test]
    fn outcomes_are_classified() {
        let none = Look {
            size: 2,
            ..Look::default()
        };
        let reason = |o: Option<Outcome>| {
            let o = o.expect("an outcome");
            (o.state, o.exit_code, o.reason.unwrap_or_default())
        };
        let running = pod("1", json!({"phase": "Running"}));
        assert!(classify(&none, std::slice::from_ref(&running)).is_none());
        assert_eq!(
            reason(classify(
                &none,
                &[pod("0", terminated(0, "Completed")), running.clone()]
            )),
            (JobState::Done, Some(0), String::new())
        );
        assert_eq!(
            reason(classify(&none, &[pod("0", terminated(3, "Error"))])),
            (JobState::Failed, Some(3), "exit code 3".into())
        );
        assert_eq!(
            reason(classify(&none, &[pod("0", terminated(137, "OOMKilled"))])).2,
            "OOM killed: rank 0 (exit code 137)"
        );
        let (state, code, why) = reason(classify(
            &failed("DeadlineExceeded"),
            &[pod("0", terminated(143, "Error"))],
        ));
        assert_eq!((state, code), (JobState::Failed, Some(143)));
        assert!(
            why.starts_with("deadline exceeded: Job was active"),
            "{why}"
        );
        let evicted = pod(
            "1",
            json!({"phase": "Failed", "reason": "Evicted", "message": "The node was low on resource: memory."}),
        );
        assert_eq!(
            reason(classify(
                &none,
                &[pod("0", json!({"phase": "Running"})), evicted]
            ))
            .2,
            "evicted: pod gpu-j7-1-abcde: The node was low on resource: memory."
        );
        let pull = pod(
            "0",
            json!({"phase": "Pending", "initContainerStatuses": [{"name": "flux-view", "image": "view:x",
                "imageID": "", "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image \"view:x\""}}}]}),
        );
        assert_eq!(
            reason(classify(&none, &[pull])).2,
            "image pull: ImagePullBackOff of container flux-view (view:x): Back-off pulling image \"view:x\""
        );
        assert_eq!(
            reason(classify(&failed("BackoffLimitExceeded"), &[])).2,
            "BackoffLimitExceeded: Job was active longer than specified deadline"
        );
        let mut complete = none.clone();
        complete.conditions.push(Cond {
            type_: "Complete".into(),
            status: "True".into(),
            ..Cond::default()
        });
        assert_eq!(reason(classify(&complete, &[])).0, JobState::Done);
    }

    #[test]
    fn connected_when_every_broker_runs() {
        let look = Look {
            size: 2,
            ..Look::default()
        };
        let running = |i| pod(i, json!({"phase": "Running"}));
        assert_eq!(all_running(&look, &[running("0")]), None);
        assert_eq!(
            all_running(&look, &[running("0"), running("1")]).as_deref(),
            Some("2/2 broker pods running")
        );
        let mut ready = look.clone();
        ready.conditions.push(Cond {
            type_: "BrokersReady".into(),
            status: "True".into(),
            reason: "AllRunning".into(),
            message: "2/2 brokers running".into(),
        });
        assert_eq!(
            all_running(&ready, &[]).as_deref(),
            Some("2/2 brokers running")
        );
    }
}
