//! `run`, `up`, `down`, `status` and `logs` on Kubernetes: a MiniCluster for the operator (or
//! its objects, with `--no-operator`), followed through rank 0's pod, recorded in the state
//! directory so later commands find it.

use std::time::Duration;

use anyhow::Context;
use futures::{AsyncBufReadExt, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, LogParams};
use minicluster_launcher::kubernetes::{KubernetesLauncher, NO_OPERATOR};
use minicluster_launcher::state::{self, Record};
use minicluster_operator::labels;

use super::launch::{request, runtime, say};
use super::stop::StopSignals;
use crate::cli::LaunchArgs;

/// How long rank 0 may take to start (pulling images included).
const START: Duration = Duration::from_secs(600);
/// How long `down` waits for the pods to go.
const GONE: Duration = Duration::from_secs(60);

async fn client() -> anyhow::Result<kube::Client> {
    kube::Client::try_default().await.map_err(|_| {
        anyhow::anyhow!(
            "cannot find a Kubernetes cluster: not in a pod and no usable kubeconfig (fix: point KUBECONFIG at one, or use --launcher process|docker)"
        )
    })
}

async fn launcher(args: &LaunchArgs) -> anyhow::Result<KubernetesLauncher> {
    let client = client().await?;
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_string());
    Ok(KubernetesLauncher {
        client,
        namespace,
        no_operator: args.no_operator,
        build: args.runner.build_options("cluster.local"),
        poll: Duration::from_secs(1),
    })
}

/// The launcher of a recorded launch: its namespace, with or without the operator.
async fn of_record(record: &Record) -> anyhow::Result<KubernetesLauncher> {
    let client = client().await?;
    Ok(KubernetesLauncher {
        namespace: record
            .resources
            .first()
            .cloned()
            .unwrap_or_else(|| client.default_namespace().to_string()),
        no_operator: record.resources.iter().any(|r| r == NO_OPERATOR),
        client,
        build: Default::default(),
        poll: Duration::from_secs(1),
    })
}

/// Ephemeral: apply, follow rank 0, delete; Ctrl-C, SIGTERM and SIGHUP delete too.
pub fn run(args: &LaunchArgs, command: Vec<String>) -> anyhow::Result<i32> {
    let mc = request(args, command, false).minicluster()?;
    let name = mc.metadata.name.clone().unwrap_or_default();
    let progress = say(args.quiet);
    runtime()?.block_on(async {
        let mut stop = StopSignals::install()?;
        let l = launcher(args).await?;
        progress(&l.describe(&name));
        let applied = tokio::select! {
            r = l.launch(&mc) => Ok(r),
            s = stop.recv() => Err(s),
        };
        let code = match applied {
            Ok(r) => {
                r?;
                tokio::select! {
                    code = l.follow_rank0(&name, START, &progress) => code.map_err(anyhow::Error::from),
                    (signal, code) = stop.recv() => {
                        progress(&format!("{signal}: deleting {name}"));
                        Ok(code)
                    }
                }
            }
            Err((signal, code)) => {
                progress(&format!("{signal}: deleting what was applied"));
                Ok(code)
            }
        };
        l.down(&name, GONE).await?;
        code
    })
}

/// Persistent: apply, wait until rank 0 runs, record it, print how to reach it.
pub fn up(args: &LaunchArgs, json: bool) -> anyhow::Result<i32> {
    let mut mc = request(args, Vec::new(), true).minicluster()?;
    let name = mc.metadata.name.clone().unwrap_or_default();
    let root = state::root();
    if let Ok(r) = Record::load(&root, &name) {
        anyhow::bail!(
            "MiniCluster {name} is already running ({}) (fix: `minicluster down {name}`, or pick another --name)",
            r.launcher
        );
    }
    let progress = say(args.quiet || json);
    runtime()?.block_on(async {
        let mut stop = StopSignals::install()?;
        let l = launcher(args).await?;
        mc.metadata.namespace = Some(l.namespace.clone());
        progress(&l.describe(&name));
        let record = minicluster_launcher::Launcher::launch(&l, &mc).await?;
        state::create_dir(&root, &name)?;
        record.save(&root)?;
        let size = usize::try_from(mc.spec.size).unwrap_or(0);
        let pod = tokio::select! {
            p = l.wait_ready(&name, size, START, &progress) => p,
            (signal, code) = stop.recv() => {
                progress(&format!("{signal}: deleting {name}"));
                l.down(&name, GONE).await?;
                let _ = std::fs::remove_dir_all(state::dir(&root, &name));
                return Ok(code);
            }
        };
        let pod = match pod {
            Ok(p) => p,
            Err(e) => {
                progress(&format!("{e}; deleting {name}"));
                l.down(&name, GONE).await?;
                let _ = std::fs::remove_dir_all(state::dir(&root, &name));
                return Err(e.into());
            }
        };
        let pod_name = pod.metadata.name.clone().unwrap_or_default();
        let ns = &l.namespace;
        if json {
            println!("{}", serde_json::to_string_pretty(&record)?);
        } else {
            println!(
                "MiniCluster {name} is up in namespace {ns}: {} brokers (rank 0 is pod {pod_name})",
                record.size
            );
            println!(
                "  kubectl exec -n {ns} {pod_name} -- flux run -N{} hostname",
                record.size
            );
            println!("  minicluster logs {name} --rank 0");
            println!("  minicluster down {name}");
        }
        Ok(0)
    })
}

/// Deletes a recorded launch and forgets it.
pub fn down(record: &Record) -> anyhow::Result<i32> {
    let running = runtime()?.block_on(async {
        let l = of_record(record).await?;
        anyhow::Ok(minicluster_launcher::Launcher::down(&l, &record.name).await?)
    })?;
    let dir = state::dir(&state::root(), &record.name);
    std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    eprintln!(
        "minicluster: {} is down ({running} broker pods were running)",
        record.name
    );
    Ok(0)
}

/// Broker pods running (0 when the cluster cannot be reached).
pub fn running(record: &Record) -> usize {
    runtime()
        .ok()
        .and_then(|rt| {
            rt.block_on(async {
                let l = of_record(record).await.ok()?;
                let ranks = minicluster_launcher::Launcher::ranks(&l, &record.name)
                    .await
                    .ok()?;
                Some(ranks.iter().filter(|r| r.running).count())
            })
        })
        .unwrap_or(0)
}

/// A broker's log: the Flux container of the pod whose index is `rank`.
pub fn logs(record: &Record, rank: u32, follow: bool) -> anyhow::Result<i32> {
    runtime()?.block_on(async {
        let l = of_record(record).await?;
        let pods: Api<Pod> = Api::namespaced(l.client.clone(), &l.namespace);
        let list = pods
            .list(&ListParams::default().labels(&labels::selector_string(&record.name)))
            .await?;
        let Some(pod) = list
            .items
            .iter()
            .filter(|p| labels::pod_index(p) == Some(rank))
            .max_by_key(|p| p.metadata.creation_timestamp.clone().map(|t| t.0))
        else {
            anyhow::bail!(
                "no pod of rank {rank} of {} in namespace {} (fix: kubectl get pods -n {} -l {})",
                record.name,
                l.namespace,
                l.namespace,
                labels::selector_string(&record.name)
            );
        };
        let mut lines = pods
            .log_stream(
                &pod.metadata.name.clone().unwrap_or_default(),
                &LogParams {
                    follow,
                    container: labels::flux_container(pod),
                    ..LogParams::default()
                },
            )
            .await?
            .lines();
        while let Some(line) = lines.next().await {
            println!("{}", line?);
        }
        Ok(0)
    })
}
