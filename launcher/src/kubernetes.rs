//! The Kubernetes launcher: applies the MiniCluster (the operator does the rest) or, without
//! an operator, the objects it would make; follows rank 0's pod log; returns its exit code.
//!
//! Waiting for rank 0 is never silent: progress is reported as pods change, and what cannot
//! get better ends the wait at once with its reason and fix — an image that cannot be pulled,
//! a container that cannot be created, a spec the operator refused, no operator at all.

use std::time::Duration;

use futures::{AsyncBufReadExt, StreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, ListParams, LogParams, Patch, PatchParams};
use kube::{Client, Resource};
use minicluster_core::{CurveCert, MiniCluster};
use minicluster_operator::build::{BuildOptions, build};
use minicluster_operator::features::ServerFeatures;
use minicluster_operator::labels;
use minicluster_operator::reconcile::add_owner;

use crate::error::{Error, Result};

/// Field manager of the CLI's writes (the operator has its own).
pub const MANAGER: &str = "minicluster-cli";

/// How long a MiniCluster may go without any status before we say no operator answers.
const OPERATOR_PATIENCE: Duration = Duration::from_secs(30);

pub struct KubernetesLauncher {
    pub client: Client,
    pub namespace: String,
    /// Apply the children directly instead of a MiniCluster for the operator.
    pub no_operator: bool,
    pub build: BuildOptions,
    /// Poll interval while waiting for pods.
    pub poll: Duration,
}

fn kube_err(what: &str) -> impl FnOnce(kube::Error) -> Error + '_ {
    move |e| {
        Error::Setup {
        what: what.into(),
        reason: e.to_string(),
        fix: "check the kubeconfig context, the namespace and that the MiniCluster CRD and operator are installed (kubectl apply -f deploy/)".into(),
    }
    }
}

impl KubernetesLauncher {
    /// What `launch` applies, for progress messages.
    pub fn describe(&self, name: &str) -> String {
        if self.no_operator {
            format!(
                "applying the Secret, ConfigMap, Service and Job of {name} in namespace {} (no operator)",
                self.namespace
            )
        } else {
            format!(
                "applying MiniCluster {name} in namespace {}",
                self.namespace
            )
        }
    }

    /// Applies the MiniCluster (or its objects).
    pub async fn launch(&self, mc: &MiniCluster) -> Result<()> {
        let mut mc = mc.clone();
        mc.metadata.namespace = Some(self.namespace.clone());
        let name = mc.metadata.name.clone().unwrap_or_default();
        let apply = PatchParams::apply(MANAGER).force();
        if !self.no_operator {
            let api: Api<MiniCluster> = Api::namespaced(self.client.clone(), &self.namespace);
            api.patch(&name, &apply, &Patch::Apply(&mc))
                .await
                .map_err(kube_err("applying the MiniCluster"))?;
            return Ok(());
        }
        let cert = match mc.spec.flux.as_ref().and_then(|f| f.curve_cert.clone()) {
            Some(c) => c,
            None => CurveCert::generate(&format!("{name}-0"))?.to_text(),
        };
        // The Job uses what this server can do (its version), as the operator's does.
        let version = self
            .client
            .apiserver_version()
            .await
            .map_err(kube_err("reading the server's version"))?;
        let opts = BuildOptions {
            server: ServerFeatures::from_minor(&version.minor),
            ..self.build.clone()
        };
        let children = build(&mc, &cert, &opts).map_err(|e| Error::Setup {
            what: "building the objects".into(),
            reason: e.to_string(),
            fix: "fix the MiniCluster".into(),
        })?;
        let ns = &self.namespace;
        // The Job first: it owns the rest, so a launch killed at any point leaves nothing the
        // garbage collector will not remove once the Job is deleted. Its pods wait for the
        // Secret and ConfigMap, which follow at once.
        let job = Api::<Job>::namespaced(self.client.clone(), ns)
            .patch(&name, &apply, &Patch::Apply(&children.job))
            .await
            .map_err(kube_err("applying the Job"))?;
        let owner = job_owner(&job);
        let owned = |mut meta: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
            meta.owner_references = owner.clone().map(|o| vec![o]);
            meta
        };
        let mut secret = children.secret.clone();
        secret.metadata = owned(secret.metadata);
        Api::<Secret>::namespaced(self.client.clone(), ns)
            .patch(&labels::cert_secret(&name), &apply, &Patch::Apply(&secret))
            .await
            .map_err(kube_err("applying the Secret"))?;
        let mut config_map = children.config_map.clone();
        config_map.metadata = owned(config_map.metadata);
        Api::<ConfigMap>::namespaced(self.client.clone(), ns)
            .patch(
                &labels::config_map(&name),
                &apply,
                &Patch::Apply(&config_map),
            )
            .await
            .map_err(kube_err("applying the ConfigMap"))?;
        // The headless Service may be shared: our Job becomes one of its owners.
        let services = Api::<Service>::namespaced(self.client.clone(), ns);
        let service = services
            .patch(
                &children.description.network.service,
                &apply,
                &Patch::Apply(&children.headless),
            )
            .await
            .map_err(kube_err("applying the Service"))?;
        add_owner(&services, &service, owner.as_ref(), MANAGER)
            .await
            .map_err(|e| setup("owning the Service", e))?;
        Ok(())
    }

    /// Rank 0's pod once it runs (or has already ended), reporting progress as the pods
    /// change, and failing at once with the reason when they cannot start.
    pub async fn rank0_running(
        &self,
        name: &str,
        timeout: Duration,
        progress: &dyn Fn(&str),
    ) -> Result<Pod> {
        // Rank 0 is told by its completion index, not a label selector: servers before 1.28
        // set the index only as an annotation.
        self.watch_pods(
            name,
            timeout,
            progress,
            "rank 0 of",
            "running",
            |pods| match pods.iter().filter(|p| labels::is_rank0(p)).find(|p| {
                matches!(
                    p.status.as_ref().and_then(|s| s.phase.as_deref()),
                    Some("Running") | Some("Succeeded") | Some("Failed")
                )
            }) {
                Some(p) => PodsSay::Done(Box::new(p.clone())),
                None => PodsSay::Waiting {
                    summary: waiting_summary(pods),
                    failed: None,
                },
            },
        )
        .await
    }

    /// Waits until `size` broker pods are Ready (their brokers run: rank 0's instance is up
    /// and the workers have joined), reporting progress and failing at once when they cannot
    /// start; rank 0's pod.
    pub async fn wait_ready(
        &self,
        name: &str,
        size: usize,
        timeout: Duration,
        progress: &dyn Fn(&str),
    ) -> Result<Pod> {
        self.watch_pods(name, timeout, progress, "MiniCluster", "ready", |pods| {
            let ready = pods.iter().filter(|p| pod_ready(p)).count();
            if ready >= size
                && let Some(p) = pods.iter().find(|p| labels::is_rank0(p) && pod_ready(p))
            {
                return PodsSay::Done(Box::new(p.clone()));
            }
            let ended = pods.iter().find(|p| {
                labels::is_rank0(p)
                    && matches!(
                        p.status.as_ref().and_then(|s| s.phase.as_deref()),
                        Some("Succeeded") | Some("Failed")
                    )
            });
            PodsSay::Waiting {
                summary: format!("{ready}/{size} brokers ready; {}", waiting_summary(pods)),
                failed: ended.map(|p| Error::Setup {
                    what: format!("MiniCluster {name}"),
                    reason: format!(
                        "rank 0 ended before every broker was ready (pod {})",
                        p.metadata.name.clone().unwrap_or_default()
                    ),
                    fix: format!("minicluster logs {name} --rank 0"),
                }),
            }
        })
        .await
    }

    /// Lists `name`'s pods every poll until `look` finds what it waits for. In between: a pod
    /// that cannot start fails at once, then what `look` says failed; with no pods, whether
    /// an operator is there to make them; `look`'s summary as progress when it changes; after
    /// `timeout`, an error saying "WHAT NAME not STATE after Ns" with that summary.
    async fn watch_pods(
        &self,
        name: &str,
        timeout: Duration,
        progress: &dyn Fn(&str),
        what: &str,
        state: &str,
        mut look: impl FnMut(&[Pod]) -> PodsSay,
    ) -> Result<Pod> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let selector = labels::selector_string(name);
        let started = tokio::time::Instant::now();
        let mut last = String::new();
        loop {
            let list = pods
                .list(&ListParams::default().labels(&selector))
                .await
                .map_err(kube_err("listing pods"))?;
            let (summary, failed) = match look(&list.items) {
                PodsSay::Done(p) => return Ok(*p),
                PodsSay::Waiting { summary, failed } => (summary, failed),
            };
            if let Some(stuck) = list.items.iter().find_map(cannot_start) {
                return Err(stuck);
            }
            if let Some(e) = failed {
                return Err(e);
            }
            if list.items.is_empty() && !self.no_operator {
                self.check_operator(name, started.elapsed()).await?;
            }
            if summary != last {
                progress(&summary);
                last = summary;
            }
            if started.elapsed() > timeout {
                return Err(Error::Setup {
                    what: format!("{what} {name}"),
                    reason: format!("not {state} after {}s ({last})", timeout.as_secs()),
                    fix: format!(
                        "kubectl describe minicluster {name} -n {ns}; kubectl get pods -n {ns} -l {selector}",
                        ns = self.namespace
                    ),
                });
            }
            tokio::time::sleep(self.poll).await;
        }
    }

    /// With no pods yet: a MiniCluster the operator refused, or no operator at all, ends the
    /// wait.
    async fn check_operator(&self, name: &str, waited: Duration) -> Result<()> {
        let api: Api<MiniCluster> = Api::namespaced(self.client.clone(), &self.namespace);
        let mc = api
            .get_opt(name)
            .await
            .map_err(kube_err("reading the MiniCluster"))?;
        let Some(mc) = mc else {
            return Err(Error::Setup {
                what: format!("MiniCluster {name}"),
                reason: "was deleted while it started".into(),
                fix: "run it again".into(),
            });
        };
        let status = mc.status.unwrap_or_default();
        if let Some(c) = status
            .conditions
            .iter()
            .find(|c| c.type_ == "Validated" && c.status == "False")
        {
            return Err(Error::Setup {
                what: format!("MiniCluster {name}"),
                reason: format!("the operator refused it: {}", c.message),
                fix: "fix the fields named, then run it again".into(),
            });
        }
        if status.conditions.is_empty() && waited > OPERATOR_PATIENCE {
            return Err(Error::Setup {
                what: format!("MiniCluster {name}"),
                reason: format!(
                    "has no status after {}s: no operator is running for namespace {}",
                    waited.as_secs(),
                    self.namespace
                ),
                fix: "install the operator (README: The operator), or run with --no-operator"
                    .into(),
            });
        }
        Ok(())
    }

    /// Streams rank 0's log until it ends; returns the broker container's exit code.
    pub async fn follow_rank0(
        &self,
        name: &str,
        timeout: Duration,
        progress: &dyn Fn(&str),
    ) -> Result<i32> {
        let pod = self.rank0_running(name, timeout, progress).await?;
        let pod_name = pod.metadata.name.clone().unwrap_or_default();
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let container = labels::flux_container(&pod);
        let mut lines = pods
            .log_stream(
                &pod_name,
                &LogParams {
                    follow: true,
                    container: container.clone(),
                    ..LogParams::default()
                },
            )
            .await
            .map_err(kube_err("following rank 0's log"))?
            .lines();
        // A reader that went away (`| head`) stops the echo, not the run: its clean-up
        // still happens.
        let mut echo = true;
        while let Some(line) = lines.next().await {
            match line {
                Ok(l) if echo => {
                    use std::io::Write;
                    echo = writeln!(std::io::stdout(), "{l}").is_ok();
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        // The log ends when the container does; read its exit code.
        loop {
            let p = pods
                .get(&pod_name)
                .await
                .map_err(kube_err("reading rank 0's pod"))?;
            if let Some(code) = exit_code(&p, container.as_deref()) {
                return Ok(code);
            }
            tokio::time::sleep(self.poll).await;
        }
    }

    /// Deletes the MiniCluster (its children go with it) or, without an operator, the
    /// objects; then waits (up to `wait`) until its pods are gone.
    pub async fn down(&self, name: &str, wait: Duration) -> Result<()> {
        let dp = DeleteParams::foreground();
        let gone = |r: std::result::Result<_, kube::Error>| match r {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(e),
        };
        let ns = &self.namespace;
        let c = &self.client;
        if !self.no_operator {
            let api: Api<MiniCluster> = Api::namespaced(c.clone(), ns);
            gone(api.delete(name, &dp).await.map(|_| ()))
                .map_err(kube_err("deleting the MiniCluster"))?;
        } else {
            // Its Secret, ConfigMap and share of the Service go with it (owner references).
            gone(
                Api::<Job>::namespaced(c.clone(), ns)
                    .delete(name, &dp)
                    .await
                    .map(|_| ()),
            )
            .map_err(kube_err("deleting the Job"))?;
        }
        let pods: Api<Pod> = Api::namespaced(c.clone(), ns);
        let until = tokio::time::Instant::now() + wait;
        while tokio::time::Instant::now() < until {
            let left = pods
                .list(&ListParams::default().labels(&labels::selector_string(name)))
                .await
                .map_err(kube_err("listing pods"))?;
            if left.items.is_empty() {
                break;
            }
            tokio::time::sleep(self.poll).await;
        }
        Ok(())
    }
}

fn setup(what: &str, e: minicluster_operator::Error) -> Error {
    Error::Setup {
        what: what.into(),
        reason: e.to_string(),
        fix: "check the kubeconfig's permissions in the namespace".into(),
    }
}

/// The Job as an owner (not the controller) of the objects it needs.
fn job_owner(job: &Job) -> Option<OwnerReference> {
    let mut o = job.controller_owner_ref(&())?;
    o.controller = None;
    o.block_owner_deletion = None;
    Some(o)
}

/// Waiting reasons no amount of waiting fixes.
const STUCK: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

/// A pod that cannot start: its container, the reason, and the fix.
/// What the pods show, to [`KubernetesLauncher::watch_pods`].
enum PodsSay {
    /// The pod waited for.
    Done(Box<Pod>),
    /// Not yet: a line for progress, and a failure that ends the wait.
    Waiting {
        summary: String,
        failed: Option<Error>,
    },
}

fn cannot_start(p: &Pod) -> Option<Error> {
    let st = p.status.as_ref()?;
    let all = st
        .init_container_statuses
        .iter()
        .flatten()
        .chain(st.container_statuses.iter().flatten());
    for cs in all {
        let Some(w) = cs.state.as_ref().and_then(|s| s.waiting.as_ref()) else {
            continue;
        };
        let reason = w.reason.clone().unwrap_or_default();
        if !STUCK.contains(&reason.as_str()) {
            continue;
        }
        let pull = reason.contains("Image");
        return Some(Error::Setup {
            what: format!(
                "pod {} (container {})",
                p.metadata.name.clone().unwrap_or_default(),
                cs.name
            ),
            reason: format!(
                "{reason}: {}",
                w.message.clone().unwrap_or_else(|| cs.image.clone())
            ),
            fix: if pull {
                format!(
                    "make {} pullable by the cluster's nodes (name, tag, registry, imagePullSecrets); the init container's image is --runner-image (build it from Dockerfile.runner)",
                    cs.image
                )
            } else {
                "kubectl describe pod to see the container's configuration error".into()
            },
        });
    }
    None
}

/// Ready: the pod's readiness probe says its broker runs.
fn pod_ready(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none()
        && p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// One line on where the pods are: "2/4 pods running; rank 0 Pending (ContainerCreating)".
fn waiting_summary(pods: &[Pod]) -> String {
    if pods.is_empty() {
        return "waiting for the broker pods to be created".into();
    }
    let running = pods
        .iter()
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .count();
    let rank0 = pods.iter().find(|p| labels::is_rank0(p)).map(|p| {
        let st = p.status.clone().unwrap_or_default();
        let why = st
            .init_container_statuses
            .iter()
            .flatten()
            .chain(st.container_statuses.iter().flatten())
            .find_map(|c| c.state.as_ref()?.waiting.as_ref()?.reason.clone());
        match why {
            Some(w) => format!("{} ({w})", st.phase.unwrap_or_default()),
            None => st.phase.unwrap_or_default(),
        }
    });
    format!(
        "waiting: {running}/{} pods running; rank 0 {}",
        pods.len(),
        rank0.unwrap_or_else(|| "not created yet".into())
    )
}

fn exit_code(p: &Pod, container: Option<&str>) -> Option<i32> {
    let statuses = p.status.as_ref()?.container_statuses.as_ref()?;
    statuses
        .iter()
        .find(|s| Some(s.name.as_str()) == container || container.is_none())?
        .state
        .as_ref()?
        .terminated
        .as_ref()
        .map(|t| t.exit_code)
}

impl crate::Launcher for KubernetesLauncher {
    fn kind(&self) -> &'static str {
        "kubernetes"
    }
    async fn launch(&self, mc: &MiniCluster) -> Result<crate::state::Record> {
        KubernetesLauncher::launch(self, mc).await?;
        Ok(crate::state::Record {
            name: mc.metadata.name.clone().unwrap_or_default(),
            launcher: "kubernetes".into(),
            size: u32::try_from(mc.spec.size).unwrap_or(0),
            persistent: mc.spec.interactive,
            created: crate::state::now(),
            pids: Vec::new(),
            flux_uri: None,
            resources: self.resources(),
        })
    }
    async fn ranks(&self, name: &str) -> Result<Vec<crate::RankState>> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let list = pods
            .list(&ListParams::default().labels(&labels::selector_string(name)))
            .await
            .map_err(kube_err("listing pods"))?;
        let mut ranks: Vec<crate::RankState> = list
            .items
            .iter()
            .map(|p| crate::RankState {
                rank: labels::pod_index(p).unwrap_or(0),
                pid: 0,
                running: p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"),
            })
            .collect();
        ranks.sort_by_key(|r| r.rank);
        Ok(ranks)
    }
    async fn follow_rank0(&self, name: &str) -> Result<i32> {
        KubernetesLauncher::follow_rank0(self, name, Duration::from_secs(600), &|_| {}).await
    }
    async fn down(&self, name: &str) -> Result<usize> {
        let running = crate::Launcher::ranks(self, name)
            .await?
            .iter()
            .filter(|r| r.running)
            .count();
        KubernetesLauncher::down(self, name, Duration::from_secs(60)).await?;
        Ok(running)
    }
}

impl KubernetesLauncher {
    /// What a launch record keeps to find this launch again: the namespace, and whether the
    /// objects were applied without an operator.
    pub fn resources(&self) -> Vec<String> {
        let mut r = vec![self.namespace.clone()];
        if self.no_operator {
            r.push(NO_OPERATOR.into());
        }
        r
    }
}

/// Marks a launch record of objects applied without an operator.
pub const NO_OPERATOR: &str = "no-operator";
