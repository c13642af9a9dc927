//! The Kubernetes launcher: applies the MiniCluster (the operator does the rest) or, without
//! an operator, the objects it would make; follows rank 0's pod log; returns its exit code.

use std::time::Duration;

use futures::{AsyncBufReadExt, StreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, LogParams, Patch, PatchParams};
use minicluster_core::{CurveCert, MiniCluster};
use minicluster_operator::build::{BuildOptions, build};
use minicluster_operator::labels;

use crate::error::{Error, Result};

/// Field manager of the CLI's writes (the operator has its own).
pub const MANAGER: &str = "minicluster-cli";

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
        let children = build(&mc, &cert, &self.build).map_err(|e| Error::Setup {
            what: "building the objects".into(),
            reason: e.to_string(),
            fix: "fix the MiniCluster".into(),
        })?;
        let ns = &self.namespace;
        Api::<Secret>::namespaced(self.client.clone(), ns)
            .patch(
                &labels::cert_secret(&name),
                &apply,
                &Patch::Apply(&children.secret),
            )
            .await
            .map_err(kube_err("applying the Secret"))?;
        Api::<ConfigMap>::namespaced(self.client.clone(), ns)
            .patch(
                &labels::config_map(&name),
                &apply,
                &Patch::Apply(&children.config_map),
            )
            .await
            .map_err(kube_err("applying the ConfigMap"))?;
        Api::<Service>::namespaced(self.client.clone(), ns)
            .patch(
                &children.description.network.service,
                &apply,
                &Patch::Apply(&children.headless),
            )
            .await
            .map_err(kube_err("applying the Service"))?;
        Api::<Job>::namespaced(self.client.clone(), ns)
            .patch(&name, &apply, &Patch::Apply(&children.job))
            .await
            .map_err(kube_err("applying the Job"))?;
        Ok(())
    }

    /// Rank 0's pod, once it exists.
    async fn rank0(&self, name: &str, timeout: Duration) -> Result<Pod> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        // Rank 0 is told by its completion index, not a label selector: servers before 1.28
        // set the index only as an annotation.
        let selector = labels::selector_string(name);
        let started = tokio::time::Instant::now();
        loop {
            let list = pods
                .list(&ListParams::default().labels(&selector))
                .await
                .map_err(kube_err("listing pods"))?;
            if let Some(p) = list.items.into_iter().filter(labels::is_rank0).find(|p| {
                matches!(
                    p.status.as_ref().and_then(|s| s.phase.as_deref()),
                    Some("Running") | Some("Succeeded") | Some("Failed")
                )
            }) {
                return Ok(p);
            }
            if started.elapsed() > timeout {
                return Err(Error::Setup {
                    what: format!("rank 0 of {name}"),
                    reason: format!("no running pod after {}s", timeout.as_secs()),
                    fix: format!(
                        "kubectl describe minicluster {name}; kubectl get pods -l {selector}"
                    ),
                });
            }
            tokio::time::sleep(self.poll).await;
        }
    }

    /// Streams rank 0's log until it ends; returns the broker container's exit code.
    pub async fn follow_rank0(&self, name: &str, timeout: Duration) -> Result<i32> {
        let pod = self.rank0(name, timeout).await?;
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
        while let Some(line) = lines.next().await {
            match line {
                Ok(l) => println!("{l}"),
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

    /// Deletes the MiniCluster (its children go with it) or, without an operator, the objects.
    pub async fn down(&self, name: &str) -> Result<()> {
        let dp = DeleteParams::background();
        if !self.no_operator {
            let api: Api<MiniCluster> = Api::namespaced(self.client.clone(), &self.namespace);
            api.delete(name, &dp)
                .await
                .map_err(kube_err("deleting the MiniCluster"))?;
            return Ok(());
        }
        let ns = &self.namespace;
        let c = &self.client;
        let _ = Api::<Job>::namespaced(c.clone(), ns)
            .delete(name, &dp)
            .await;
        let _ = Api::<ConfigMap>::namespaced(c.clone(), ns)
            .delete(&labels::config_map(name), &dp)
            .await;
        let _ = Api::<Secret>::namespaced(c.clone(), ns)
            .delete(&labels::cert_secret(name), &dp)
            .await;
        Ok(())
    }
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
            resources: vec![self.namespace.clone()],
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
        KubernetesLauncher::follow_rank0(self, name, Duration::from_secs(600)).await
    }
    async fn down(&self, name: &str) -> Result<usize> {
        KubernetesLauncher::down(self, name).await.map(|()| 0)
    }
}
