//! Taking the cluster down so that nothing is left: pods deleted while the kubelet can still
//! tear their sandboxes down; every component stopped; whatever still runs in the pods'
//! cgroups killed; mounts under the state directory and the pods' network namespaces
//! removed; the iptables chains that appeared since `up` (ours and the CNI plugins'), the
//! bridge, cgroups, logs and files removed. It works on a cluster that only half came up, or
//! whose processes were killed, and says what it could not remove.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, ListParams};
use serde::{Deserialize, Serialize};

use super::{Layout, NETWORK, network, procs};
use crate::error::{Error, Result, io};

/// The order components stop in: users of the API first, etcd last.
const COMPONENTS: &[&str] = &[
    "kubelet",
    "kube-scheduler",
    "kube-controller-manager",
    "dns",
    "kube-apiserver",
    "containerd",
    "etcd",
];

/// What the machine had before `up`, so `down` removes only what came after.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Before {
    /// `table/chain` of every iptables chain.
    pub chains: BTreeSet<String>,
    pub netns: BTreeSet<String>,
    pub existed: BTreeSet<String>,
}

/// Directories the kubelet and CNI plugins use outside our state directory.
const SHARED_DIRS: &[&str] = &[
    "/var/log/pods",
    "/var/log/containers",
    "/var/lib/cni",
    "/run/netns",
];

impl Before {
    pub fn record(layout: &Layout) -> Result<()> {
        let b = Before {
            chains: chains(),
            netns: netns(),
            existed: SHARED_DIRS
                .iter()
                .filter(|d| Path::new(d).exists())
                .map(|d| d.to_string())
                .collect(),
        };
        std::fs::write(
            layout.before(),
            serde_json::to_vec_pretty(&b).expect("json"),
        )
        .map_err(io("recording the machine's state"))
    }

    fn load(layout: &Layout) -> Option<Before> {
        serde_json::from_slice(&std::fs::read(layout.before()).ok()?).ok()
    }
}

pub async fn down(layout: &Layout, progress: &dyn Fn(&str)) -> Result<()> {
    let before = Before::load(layout);
    let _ = std::fs::remove_file(layout.ready_marker());

    // Nothing makes new pods once the controllers and the scheduler are gone.
    stop(layout, "kube-controller-manager");
    stop(layout, "kube-scheduler");
    if procs::alive(layout, "kube-apiserver") && procs::alive(layout, "kubelet") {
        progress("deleting every pod while the kubelet can tear their sandboxes down");
        if let Err(e) = delete_pods(layout).await {
            progress(&format!("(pods not deleted through the API: {e})"));
        }
    }
    for name in COMPONENTS {
        stop(layout, name);
    }
    progress("stopping what still runs in the pods' cgroups");
    kill_pod_cgroups();
    kill_mentioning(&layout.dir);

    progress("unmounting, removing network namespaces, chains and the bridge");
    unmount_under(&layout.dir);
    let netns_before = before.as_ref().map(|b| b.netns.clone()).unwrap_or_default();
    for ns in netns().difference(&netns_before) {
        let p = format!("/run/netns/{ns}");
        let _ = Command::new("umount").arg(&p).status();
        let _ = std::fs::remove_file(&p);
    }
    network::down();
    if let Some(b) = &before {
        remove_new_chains(&b.chains);
    }
    remove_pod_cgroups();
    remove_shared(before.as_ref());
    std::fs::remove_dir_all(&layout.dir)
        .or_else(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Ok(())
            } else {
                Err(e)
            }
        })
        .map_err(io(format!("removing {}", layout.dir.display())))?;

    let left = leftovers(layout, before.as_ref());
    if left.is_empty() {
        progress("down: nothing left");
        Ok(())
    } else {
        Err(Error::Leftovers(left.join("; ")))
    }
}

async fn delete_pods(layout: &Layout) -> Result<()> {
    let client = super::client(layout).await?;
    let pods: Api<Pod> = Api::all(client.clone());
    let all = pods.list(&ListParams::default()).await?;
    for p in &all.items {
        let ns = p.metadata.namespace.clone().unwrap_or_default();
        let name = p.metadata.name.clone().unwrap_or_default();
        let _ = Api::<Pod>::namespaced(client.clone(), &ns)
            // Not forced: the pod goes once the kubelet has stopped it.
            .delete(&name, &DeleteParams::default().grace_period(1))
            .await;
    }
    let until = tokio::time::Instant::now() + Duration::from_secs(60);
    while tokio::time::Instant::now() < until {
        if pods.list(&ListParams::default()).await?.items.is_empty() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(())
}

/// SIGTERM, then SIGKILL after 10 s.
fn stop(layout: &Layout, name: &str) {
    let Some(pid) = procs::pid_of(layout, name) else {
        return;
    };
    if !procs::is_alive(pid) {
        return;
    }
    signal(pid, "TERM");
    for _ in 0..100 {
        if !procs::is_alive(pid) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    signal(pid, "KILL");
}

fn signal(pid: i32, sig: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .stderr(std::process::Stdio::null())
        .status();
}

/// The kubelet's cgroups (cgroupfs driver, cgroup v1 or v2): `kubepods` in each hierarchy.
fn pod_cgroups() -> Vec<PathBuf> {
    let mut out = Vec::new();
    for base in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
        let p = Path::new(base).join("kubepods");
        if p.is_dir() {
            out.push(p);
        }
        for e in std::fs::read_dir(base).into_iter().flatten().flatten() {
            let p = e.path().join("kubepods");
            if p.is_dir() {
                out.push(p);
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Directories under `root`, deepest first.
fn subdirs_deepest_first(root: &Path) -> Vec<PathBuf> {
    let mut all = vec![root.to_path_buf()];
    let mut i = 0;
    while i < all.len() {
        let d = all[i].clone();
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                all.push(e.path());
            }
        }
        i += 1;
    }
    all.reverse();
    all
}

fn kill_pod_cgroups() {
    for _ in 0..3 {
        for cg in pod_cgroups() {
            for d in subdirs_deepest_first(&cg) {
                let procs = std::fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default();
                for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                    signal(pid, "KILL");
                }
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn remove_pod_cgroups() {
    for cg in pod_cgroups() {
        for d in subdirs_deepest_first(&cg) {
            let _ = std::fs::remove_dir(&d);
        }
    }
}

/// Processes whose command line names the state directory (containerd's shims name its
/// socket) are ours.
fn kill_mentioning(dir: &Path) {
    let needle = dir.display().to_string();
    for _ in 0..3 {
        let found = mentioning(&needle);
        if found.is_empty() {
            return;
        }
        for (pid, _) in found {
            signal(pid, "KILL");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn mentioning(needle: &str) -> Vec<(i32, String)> {
    let me = std::process::id() as i32;
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            (pid != me && cmd.contains(needle) && procs::is_alive(pid)).then_some((pid, cmd))
        })
        .collect()
}

/// Mount points at or under `dir`, deepest first (from /proc/self/mountinfo).
fn mounts_under(dir: &Path) -> Vec<String> {
    let prefix = dir.display().to_string();
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut m: Vec<String> = info
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .map(|p| p.replace("\\040", " "))
        .filter(|p| p == &prefix || p.starts_with(&format!("{prefix}/")))
        .collect();
    m.sort_by_key(|p| std::cmp::Reverse(p.len()));
    m.dedup();
    m
}

fn unmount_under(dir: &Path) {
    for _ in 0..3 {
        let m = mounts_under(dir);
        if m.is_empty() {
            return;
        }
        for p in m {
            let _ = Command::new("umount").arg("-l").arg(&p).status();
        }
    }
}

fn netns() -> BTreeSet<String> {
    std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(String::from))
        .collect()
}

/// Every iptables chain as `table/chain`.
fn chains() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for table in ["filter", "nat", "mangle"] {
        let Ok(s) = procs::output(Command::new("iptables").args(["-w", "-t", table, "-S"])) else {
            continue;
        };
        for l in s.lines() {
            if let Some(c) = l.strip_prefix("-N ") {
                out.insert(format!("{table}/{}", c.trim()));
            }
        }
    }
    out
}

/// Removes the rules that jump to chains made since `up`, then those chains.
fn remove_new_chains(before: &BTreeSet<String>) {
    let new: Vec<String> = chains().difference(before).cloned().collect();
    for tc in &new {
        let (table, chain) = tc.split_once('/').expect("table/chain");
        let Ok(rules) = procs::output(Command::new("iptables").args(["-w", "-t", table, "-S"]))
        else {
            continue;
        };
        for rule in rules.lines().filter(|r| r.starts_with("-A ")) {
            if rule
                .split_whitespace()
                .collect::<Vec<_>>()
                .windows(2)
                .any(|w| w[0] == "-j" && w[1] == chain)
            {
                let mut args = vec!["-w".to_string(), "-t".into(), table.into(), "-D".into()];
                // `iptables -S` quotes comments as a shell would.
                args.extend(shell_words::split(&rule[3..]).unwrap_or_default());
                let _ = Command::new("iptables").args(&args).status();
            }
        }
    }
    for tc in &new {
        let (table, chain) = tc.split_once('/').expect("table/chain");
        let _ = Command::new("iptables")
            .args(["-w", "-t", table, "-F", chain])
            .status();
    }
    for tc in &new {
        let (table, chain) = tc.split_once('/').expect("table/chain");
        let _ = Command::new("iptables")
            .args(["-w", "-t", table, "-X", chain])
            .status();
    }
}

/// The kubelet's pod logs and the CNI cache: removed entirely when `up` made them, else only
/// what names our network.
fn remove_shared(before: Option<&Before>) {
    let existed = |d: &str| before.is_none_or(|b| b.existed.contains(d));
    for d in ["/var/log/pods", "/var/log/containers", "/var/lib/cni"] {
        if !existed(d) {
            let _ = std::fs::remove_dir_all(d);
        }
    }
    for e in std::fs::read_dir("/var/lib/cni/results")
        .into_iter()
        .flatten()
        .flatten()
    {
        if e.file_name()
            .to_string_lossy()
            .starts_with(&format!("{NETWORK}-"))
        {
            let _ = std::fs::remove_file(e.path());
        }
    }
    if !existed("/run/netns") && netns().is_empty() {
        let _ = std::fs::remove_dir("/run/netns");
    }
}

/// What is still there after `down`: a list of descriptions, empty when nothing is.
pub fn leftovers(layout: &Layout, before: Option<&Before>) -> Vec<String> {
    let mut left = Vec::new();
    let procs = mentioning(&layout.dir.display().to_string());
    if !procs.is_empty() {
        left.push(format!("processes {procs:?}"));
    }
    let m = mounts_under(&layout.dir);
    if !m.is_empty() {
        left.push(format!("mounts {m:?}"));
    }
    if layout.dir.exists() {
        left.push(format!("{}", layout.dir.display()));
    }
    if network::link_exists(super::BRIDGE) {
        left.push(format!("the bridge {}", super::BRIDGE));
    }
    if let Some(b) = before {
        let new: Vec<String> = chains().difference(&b.chains).cloned().collect();
        if !new.is_empty() {
            left.push(format!("iptables chains {new:?}"));
        }
        let ns: Vec<String> = netns().difference(&b.netns).cloned().collect();
        if !ns.is_empty() {
            left.push(format!("network namespaces {ns:?}"));
        }
    } else if network::chain_exists("nat", network::CHAIN) {
        left.push(format!("the iptables chain nat/{}", network::CHAIN));
    }
    let cg: Vec<PathBuf> = pod_cgroups();
    if !cg.is_empty() {
        left.push(format!("cgroups {cg:?}"));
    }
    left
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deepest_directories_come_first() {
        let d = tempfile_dir();
        std::fs::create_dir_all(d.join("a/b/c")).unwrap();
        let order = subdirs_deepest_first(&d);
        let pos = |s: &str| order.iter().position(|p| p.ends_with(s)).unwrap();
        assert!(pos("a/b/c") < pos("a/b"));
        assert!(pos("a/b") < pos("a"));
        std::fs::remove_dir_all(&d).unwrap();
    }

    fn tempfile_dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("testkit-teardown-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
