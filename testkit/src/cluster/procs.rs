//! The cluster's processes: started detached (their own session, output to a log file, a pid
//! file each), waited on until they serve, and stopped.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, ServiceAccount};
use kube::Api;

use super::Layout;
use crate::error::{Error, Result, io};

/// Runs a command to its end; its standard output, or an error with its standard error.
pub fn output(cmd: &mut Command) -> Result<String> {
    let shown = format!("{cmd:?}").replace('"', "");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(io(format!("starting {shown}")))?;
    if !out.status.success() {
        return Err(Error::Command {
            command: shown,
            detail: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Starts `program` detached as `name`, its output appended to `logs/NAME.log`.
pub fn start(layout: &Layout, name: &str, program: &Path, args: &[String]) -> Result<u32> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(layout.log(name))
        .map_err(io(format!("opening the log of {name}")))?;
    let err = log.try_clone().map_err(io("cloning a log file"))?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .env("NO_COLOR", "1");
    // Its own session: a Ctrl-C meant for `up` does not reach it.
    cmd.process_group(0);
    let child = cmd
        .spawn()
        .map_err(io(format!("starting {name} ({})", program.display())))?;
    let pid = child.id();
    std::fs::write(layout.pids().join(name), pid.to_string())
        .map_err(io(format!("writing the pid file of {name}")))?;
    Ok(pid)
}

/// Whether the process recorded for `name` is alive.
pub fn alive(layout: &Layout, name: &str) -> bool {
    pid_of(layout, name).is_some_and(is_alive)
}

pub fn pid_of(layout: &Layout, name: &str) -> Option<i32> {
    std::fs::read_to_string(layout.pids().join(name))
        .ok()?
        .trim()
        .parse()
        .ok()
}

pub fn is_alive(pid: i32) -> bool {
    // A zombie has finished; only a live process has a state other than Z.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit(')').next().map(|r| r.trim_start().to_string()))
        .is_some_and(|r| !r.starts_with('Z'))
}

/// Polls `ready` every 250 ms until it holds; fails after `limit` or when `name` has died,
/// pointing at its log.
async fn wait_until<F, Fut>(
    layout: &Layout,
    name: &str,
    what: &str,
    limit: Duration,
    mut ready: F,
) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<bool, String>>,
{
    let until = tokio::time::Instant::now() + limit;
    let mut last = String::new();
    loop {
        match ready().await {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => last = e,
        }
        let died = layout.pids().join(name).exists() && !alive(layout, name);
        if died || tokio::time::Instant::now() > until {
            return Err(Error::Timeout {
                what: if died {
                    format!("{what} ({name} exited)")
                } else {
                    what.to_string()
                },
                secs: limit.as_secs(),
                detail: if last.is_empty() {
                    String::new()
                } else {
                    format!("; last: {last}")
                },
                logs: layout.log(name),
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

pub async fn wait_tcp(
    layout: &Layout,
    name: &str,
    addr: (&str, u16),
    limit: Duration,
) -> Result<()> {
    let what = format!("{name} accepting on {}:{}", addr.0, addr.1);
    wait_until(layout, name, &what, limit, || async move {
        Ok(tokio::net::TcpStream::connect(addr).await.is_ok())
    })
    .await
}

pub async fn wait_file(layout: &Layout, name: &str, path: &Path, limit: Duration) -> Result<()> {
    let what = format!("{} to appear", path.display());
    wait_until(
        layout,
        name,
        &what,
        limit,
        || async move { Ok(path.exists()) },
    )
    .await
}

pub async fn wait_api_ready(layout: &Layout, client: &kube::Client, limit: Duration) -> Result<()> {
    wait_until(
        layout,
        "kube-apiserver",
        "the API server's /readyz",
        limit,
        || async move {
            let req = http::Request::get("/readyz")
                .body(Vec::new())
                .expect("a request");
            client
                .request_text(req)
                .await
                .map(|t| t.trim() == "ok")
                .map_err(|e| e.to_string())
        },
    )
    .await
}

pub async fn wait_node_ready(
    layout: &Layout,
    client: &kube::Client,
    limit: Duration,
) -> Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    wait_until(layout, "kubelet", "the node Ready", limit, || {
        let nodes = nodes.clone();
        async move {
            let n = nodes
                .get_opt(super::NODE)
                .await
                .map_err(|e| e.to_string())?;
            let ready = n
                .and_then(|n| n.status)
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .into_iter()
                .find(|c| c.type_ == "Ready");
            match ready {
                Some(c) if c.status == "True" => Ok(true),
                Some(c) => Err(format!(
                    "Ready={} {}",
                    c.status,
                    c.message.unwrap_or_default()
                )),
                None => Err("the node is not registered yet".into()),
            }
        }
    })
    .await
}

/// Pods can be created in `default` once its ServiceAccount exists.
pub async fn wait_default_service_account(
    layout: &Layout,
    client: &kube::Client,
    limit: Duration,
) -> Result<()> {
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
    wait_until(
        layout,
        "kube-controller-manager",
        "the default ServiceAccount",
        limit,
        || {
            let sas = sas.clone();
            async move {
                sas.get_opt("default")
                    .await
                    .map(|s| s.is_some())
                    .map_err(|e| e.to_string())
            }
        },
    )
    .await
}

/// The DNS responder answers for the API server's Service.
pub async fn wait_dns(layout: &Layout, limit: Duration) -> Result<()> {
    let name = format!("kubernetes.default.svc.{}", super::DOMAIN);
    wait_until(
        layout,
        "dns",
        "DNS answering for the kubernetes Service",
        limit,
        || {
            let name = name.clone();
            async move {
                crate::dns::query_a(super::HOST_IP, &name)
                    .await
                    .map(|ips| !ips.is_empty())
                    .map_err(|e| e.to_string())
            }
        },
    )
    .await
}
