//! Validation of a MiniCluster: every problem at once, each with its field path and the fix.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::types::*;
use crate::cert::CurveCert;
use crate::error::FieldError;
use crate::hostlist::Hostlist;
use crate::names::*;

/// Largest MiniCluster accepted (brokers); far above any real instance, it bounds the work
/// done for a typo such as `maxSize: 2000000000`.
pub const MAX_BROKERS: i32 = 1_000_000;

const QUEUE_POLICIES: [&str; 4] = ["fcfs", "easy", "conservative", "hybrid"];

/// Checks a MiniCluster and returns every problem found (empty when it is valid).
pub fn validate(mc: &MiniCluster) -> Vec<FieldError> {
    let mut v = Vec::new();
    let spec = &mc.spec;
    validate_name(mc, &mut v);
    validate_sizes(spec, &mut v);
    validate_containers(spec, &mut v);
    for (i, c) in spec.services.iter().enumerate() {
        let path = format!("spec.services[{i}]");
        if c.name.is_none() {
            v.push(FieldError::new(
                format!("{path}.name"),
                "is missing",
                "give every service container a name",
            ));
        }
        validate_container(&path, c, &mut v);
    }
    if let Some(flux) = &spec.flux {
        validate_flux(flux, &mut v);
    }
    if let Some(name) = spec
        .network
        .as_ref()
        .and_then(|n| n.headless_name.as_deref())
        && let Some(p) = dns1035_label_problem(name)
    {
        v.push(FieldError::new(
            "spec.network.headlessName",
            format!("{name:?} {p}"),
            "use a DNS-1035 label such as flux-service",
        ));
    }
    if let Some(pod) = &spec.pod {
        validate_pod(pod, &mut v);
    }
    if let Some(path) = spec.archive.as_ref().and_then(|a| a.path.as_deref())
        && !path.starts_with('/')
    {
        v.push(FieldError::new(
            "spec.archive.path",
            format!("{path:?} is not an absolute path"),
            "use an absolute path such as /state/archive",
        ));
    }
    for (k, val) in &spec.job_labels {
        validate_label(&format!("spec.jobLabels.{k}"), k, val, &mut v);
    }
    v
}

fn validate_name(mc: &MiniCluster, v: &mut Vec<FieldError>) {
    let Some(name) = mc.metadata.name.as_deref() else {
        v.push(FieldError::new(
            "metadata.name",
            "is missing",
            "give the MiniCluster a name, e.g. metadata.name: flux-sample",
        ));
        return;
    };
    if let Some(p) = dns1035_label_problem(name) {
        v.push(FieldError::new(
            "metadata.name",
            format!("{name:?} {p}"),
            "use lowercase letters, digits and '-', starting with a letter",
        ));
        return;
    }
    // Broker hostnames are `<name>-<index>` and must stay DNS labels.
    let last = format!("{name}-{}", mc.spec.effective_max_size().max(1) - 1);
    if last.len() > 63 {
        v.push(FieldError::new(
            "metadata.name",
            format!("the hostname of the last broker, {last:?}, is {} characters; hostnames have at most 63", last.len()),
            format!("shorten the name to at most {} characters", 63 - (last.len() - name.len())),
        ));
    }
}

fn validate_sizes(spec: &MiniClusterSpec, v: &mut Vec<FieldError>) {
    if spec.size < 1 {
        v.push(FieldError::new(
            "spec.size",
            format!("is {}; a MiniCluster has at least one broker", spec.size),
            "set size to 1 or more",
        ));
    }
    if spec.size > MAX_BROKERS {
        v.push(FieldError::new(
            "spec.size",
            format!(
                "is {}; at most {MAX_BROKERS} brokers are supported",
                spec.size
            ),
            format!("set size to {MAX_BROKERS} or less"),
        ));
    }
    if let Some(max) = spec.max_size {
        if max < spec.size {
            v.push(FieldError::new(
                "spec.maxSize",
                format!("is {max}, smaller than size {}", spec.size),
                format!("set maxSize to at least {} or remove it", spec.size),
            ));
        }
        if max > MAX_BROKERS {
            v.push(FieldError::new(
                "spec.maxSize",
                format!("is {max}; at most {MAX_BROKERS} brokers are supported"),
                format!("set maxSize to {MAX_BROKERS} or less"),
            ));
        }
    }
    if let Some(min) = spec.min_size
        && (min < 1 || min > spec.size)
    {
        v.push(FieldError::new(
            "spec.minSize",
            format!("is {min}; it must be between 1 and size ({})", spec.size),
            "set minSize within 1..=size, or remove it to wait for all brokers",
        ));
    }
    if spec.tasks < 1 {
        v.push(FieldError::new(
            "spec.tasks",
            format!("is {}", spec.tasks),
            "set tasks to 1 or more",
        ));
    }
    if spec.deadline_seconds < 1 {
        v.push(FieldError::new(
            "spec.deadlineSeconds",
            format!("is {}", spec.deadline_seconds),
            "set a positive number of seconds",
        ));
    }
    if let Some(b) = spec.backoff_limit
        && b < 0
    {
        v.push(FieldError::new(
            "spec.backoffLimit",
            format!("is {b}"),
            "set 0 or more retries",
        ));
    }
}

fn validate_containers(spec: &MiniClusterSpec, v: &mut Vec<FieldError>) {
    if spec.containers.is_empty() {
        v.push(FieldError::new(
            "spec.containers",
            "is empty",
            "add a container with the image that has your application",
        ));
        return;
    }
    let flux_marked: Vec<usize> = spec
        .containers
        .iter()
        .enumerate()
        .filter(|(_, c)| c.run_flux == Some(true))
        .map(|(i, _)| i)
        .collect();
    if flux_marked.len() > 1 {
        v.push(FieldError::new(
            "spec.containers",
            format!(
                "containers {flux_marked:?} all set runFlux: true; exactly one container runs Flux"
            ),
            "keep runFlux: true on one container only",
        ));
    } else if flux_marked.is_empty() && spec.containers.len() > 1 {
        v.push(FieldError::new(
            "spec.containers",
            format!(
                "{} containers and none sets runFlux: true; exactly one container runs Flux",
                spec.containers.len()
            ),
            "set runFlux: true on the container that runs your application",
        ));
    }
    let flux_index = spec.flux_container_index();
    let mut names = BTreeSet::new();
    for (i, c) in spec.containers.iter().enumerate() {
        let path = format!("spec.containers[{i}]");
        let runs_flux = flux_index == Some(i);
        if flux_index.is_some() && !runs_flux && c.name.is_none() {
            v.push(FieldError::new(
                format!("{path}.name"),
                "is missing; containers that do not run Flux need a name",
                "add a name such as sidecar",
            ));
        }
        if let Some(n) = &c.name
            && !names.insert(n.clone())
        {
            v.push(FieldError::new(
                format!("{path}.name"),
                format!("{n:?} is used by another container"),
                "give every container a unique name",
            ));
        }
        if runs_flux {
            if c.launcher == Some(true) && c.batch == Some(true) {
                v.push(FieldError::new(
                    format!("{path}.launcher"),
                    "launcher and batch are both true; they are different ways to run the command",
                    "keep one of launcher: true or batch: true",
                ));
            }
            if c.batch_raw == Some(true) && c.batch != Some(true) {
                v.push(FieldError::new(
                    format!("{path}.batchRaw"),
                    "is true but batch is not",
                    "set batch: true as well, or remove batchRaw",
                ));
            }
            validate_work(spec, &path, c, v);
        }
        validate_container(&path, c, v);
    }
}

/// What the Flux container runs: its command or its script (not both), in a form the mode
/// can run without hanging.
fn validate_work(spec: &MiniClusterSpec, path: &str, c: &Container, v: &mut Vec<FieldError>) {
    let command = given(c.command.as_deref());
    let script = given(c.commands.as_ref().and_then(|c| c.script.as_deref()));
    let batch = c.batch == Some(true);
    match (command, script) {
        (None, None) if !spec.interactive => v.push(FieldError::new(
            format!("{path}.command"),
            "is missing; without a command the MiniCluster has nothing to run",
            "give a command (or commands.script), or set spec.interactive: true for a persistent MiniCluster",
        )),
        (Some(_), Some(_)) => v.push(FieldError::new(
            format!("{path}.commands.script"),
            "is given with command; the script is run in place of the command, so one of them would be ignored",
            "keep either command or commands.script",
        )),
        (None, Some(_)) if batch => v.push(FieldError::new(
            format!("{path}.commands.script"),
            "is given with batch: true; batch mode submits the lines of command, so the script would not run",
            "put the lines in command, or remove batch: true to run the script (launcher: true runs it once, on rank 0)",
        )),
        _ => {}
    }
    // Submit mode runs the work as one job over every broker; a Flux job inside it waits for
    // brokers that job holds.
    if spec.interactive || batch || c.launcher == Some(true) {
        return;
    }
    let (field, what, text) = match (command, script) {
        (Some(cmd), _) => ("command", "the command", cmd.to_string()),
        (None, Some(s)) => ("commands.script", "the script", super::script_file_text(s)),
        (None, None) => return,
    };
    if let Some(n) = super::nested_flux_command(&text) {
        v.push(FieldError::new(
            format!("{path}.{field}"),
            format!(
                "`{}` in {what} would start a Flux job inside the job submit mode runs {what} as (`flux submit -N {} … --watch`); the inner job waits for brokers the outer job holds, so the MiniCluster would hang",
                n.command, spec.size
            ),
            format!(
                "set launcher: true on this container, so {what} runs once, on rank 0, and `{}` gets the whole MiniCluster; or drop `{}` from {what}, as submit mode already runs it on every broker (spec.size, spec.tasks)",
                n.prefix, n.prefix
            ),
        ));
    }
}

/// A text that is there and not blank.
fn given(s: Option<&str>) -> Option<&str> {
    s.filter(|s| !s.trim().is_empty())
}

fn validate_container(path: &str, c: &Container, v: &mut Vec<FieldError>) {
    if c.image.trim().is_empty() {
        v.push(FieldError::new(
            format!("{path}.image"),
            "is empty",
            "name the container image, e.g. ubuntu:noble",
        ));
    }
    if let Some(n) = &c.name
        && let Some(p) = dns_label_problem(n)
    {
        v.push(FieldError::new(
            format!("{path}.name"),
            format!("{n:?} {p}"),
            "use a DNS label such as app",
        ));
    }
    if let Some(p) = &c.image_pull_policy
        && !["Always", "IfNotPresent", "Never"].contains(&p.as_str())
    {
        v.push(FieldError::new(
            format!("{path}.imagePullPolicy"),
            format!("{p:?} is not a pull policy"),
            "use Always, IfNotPresent or Never",
        ));
    }
    for (j, port) in c.ports.iter().enumerate() {
        if !(1..=65535).contains(port) {
            v.push(FieldError::new(
                format!("{path}.ports[{j}]"),
                format!("{port} is not a port number"),
                "use a port between 1 and 65535",
            ));
        }
    }
    validate_env(&format!("{path}.environment"), &c.environment, v);
    for (var, s) in &c.secrets {
        if let Some(p) = env_name_problem(var) {
            v.push(FieldError::new(
                format!("{path}.secrets.{var}"),
                format!("variable name {p}"),
                "use a name such as API_TOKEN",
            ));
        }
        if let Some(p) = dns_subdomain_problem(&s.name) {
            v.push(FieldError::new(
                format!("{path}.secrets.{var}.name"),
                format!("{:?} {p}", s.name),
                "name an existing Secret",
            ));
        }
        if s.key.is_empty() {
            v.push(FieldError::new(
                format!("{path}.secrets.{var}.key"),
                "is empty",
                "name a key of the Secret",
            ));
        }
    }
    if let Some(r) = &c.resources {
        validate_quantities(&format!("{path}.resources.limits"), &r.limits, v);
        validate_quantities(&format!("{path}.resources.requests"), &r.requests, v);
    }
    for (name, vol) in &c.volumes {
        validate_volume(&format!("{path}.volumes.{name}"), name, vol, v);
    }
}

fn validate_volume(path: &str, name: &str, vol: &ContainerVolume, v: &mut Vec<FieldError>) {
    if let Some(p) = dns_label_problem(name) {
        v.push(FieldError::new(
            path,
            format!("volume name {name:?} {p}"),
            "use a DNS label such as data",
        ));
    }
    match vol.path.as_deref() {
        None | Some("") if vol.empty_dir => {}
        None | Some("") => v.push(FieldError::new(
            format!("{path}.path"),
            "is missing; a volume needs a mount path (only an emptyDir has a default, /dev/shm)",
            "add path: /where/to/mount",
        )),
        Some(p) if !p.starts_with('/') => v.push(FieldError::new(
            format!("{path}.path"),
            format!("{p:?} is not absolute"),
            "use an absolute path such as /data",
        )),
        _ => {}
    }
    let sources: Vec<&str> = [
        ("claimName", vol.claim_name.is_some()),
        ("configMapName", vol.config_map_name.is_some()),
        ("secretName", vol.secret_name.is_some()),
        ("hostPath", vol.host_path.is_some()),
        ("emptyDir", vol.empty_dir),
        ("csiDriver", vol.csi_driver.is_some()),
    ]
    .into_iter()
    .filter_map(|(n, set)| set.then_some(n))
    .collect();
    if sources.len() > 1 {
        v.push(FieldError::new(
            path,
            format!(
                "has several sources ({}); a volume has one",
                sources.join(", ")
            ),
            "keep one of them, or split it into several volumes",
        ));
    }
    if !vol.items.is_empty() && vol.config_map_name.is_none() && vol.secret_name.is_none() {
        v.push(FieldError::new(
            format!("{path}.items"),
            "are set but the volume is not a ConfigMap or Secret",
            "set configMapName, or remove items",
        ));
    }
    if (vol.empty_dir_medium.is_some() || vol.empty_dir_size_limit.is_some()) && !vol.empty_dir {
        v.push(FieldError::new(
            format!("{path}.emptyDir"),
            "is false but emptyDirMedium/emptyDirSizeLimit are set",
            "set emptyDir: true",
        ));
    }
    if let Some(m) = vol.kubernetes_medium()
        && m != "Memory"
        && !m.starts_with("HugePages")
    {
        v.push(FieldError::new(
            format!("{path}.emptyDirMedium"),
            format!("{m:?} is not an emptyDir medium"),
            "use memory (RAM-backed, as MPI's /dev/shm wants), HugePages, or remove it for the node's disk",
        ));
    }
    if let Some(limit) = &vol.empty_dir_size_limit
        && let Some(p) = quantity_problem(limit)
    {
        v.push(FieldError::new(
            format!("{path}.emptyDirSizeLimit"),
            p,
            "use a quantity such as 1Gi",
        ));
    }
    if let Some(hp) = &vol.host_path
        && !hp.starts_with('/')
    {
        v.push(FieldError::new(
            format!("{path}.hostPath"),
            format!("{hp:?} is not absolute"),
            "use an absolute host path",
        ));
    }
}

fn validate_flux(flux: &FluxSpec, v: &mut Vec<FieldError>) {
    if parse_fsd(&flux.connect_timeout).is_none() {
        v.push(FieldError::new(
            "spec.flux.connectTimeout",
            format!("{:?} is not a Flux Standard Duration", flux.connect_timeout),
            "use a duration such as 5s, 1m or 0.5h",
        ));
    }
    if !(0..=7).contains(&flux.log_level) {
        v.push(FieldError::new(
            "spec.flux.logLevel",
            format!("is {}", flux.log_level),
            "use a syslog level from 0 (emergencies only) to 7 (debug)",
        ));
    }
    if let Some(t) = &flux.topology
        && !valid_topology(t)
    {
        v.push(FieldError::new(
            "spec.flux.topology",
            format!("{t:?} is not a TBON topology"),
            "use kary:K, binomial, mincrit, mincrit:K or custom",
        ));
    }
    if let Some(p) = flux
        .scheduler
        .as_ref()
        .and_then(|s| s.queue_policy.as_deref())
        && !QUEUE_POLICIES.contains(&p)
    {
        v.push(FieldError::new(
            "spec.flux.scheduler.queuePolicy",
            format!("{p:?} is not a Fluxion queue policy"),
            format!("use one of {}", QUEUE_POLICIES.join(", ")),
        ));
    }
    if let Some(cert) = &flux.curve_cert
        && let Err(e) = CurveCert::parse(cert)
    {
        v.push(FieldError::new(
            "spec.flux.curveCert",
            e.to_string(),
            "paste the whole file `flux keygen` writes, or remove curveCert to have one generated",
        ));
    }
    if let Some(cfg) = &flux.broker_config
        && let Err(e) = cfg.parse::<toml::Table>()
    {
        let first = e.to_string().lines().next().unwrap_or_default().to_string();
        v.push(FieldError::new(
            "spec.flux.brokerConfig",
            format!("is not valid TOML: {first}"),
            "fix the TOML, or remove brokerConfig to have it generated",
        ));
    }
    if let Some(c) = &flux.container
        && !c.mount_path.starts_with('/')
    {
        v.push(FieldError::new(
            "spec.flux.container.mountPath",
            format!("{:?} is not absolute", c.mount_path),
            "use an absolute path such as /mnt/flux",
        ));
    }
    validate_env("spec.flux.environment", &flux.environment, v);
    if let Some(b) = &flux.bursting {
        if let Some(h) = &b.hostlist
            && let Err(e) = Hostlist::parse(h)
        {
            v.push(FieldError::new(
                "spec.flux.bursting.hostlist",
                e.to_string(),
                "use RFC 29 hostlist syntax such as mc-[0-3],burst-[0-7]",
            ));
        }
        if let Some(lead) = &b.lead_broker {
            if !(1..=65535).contains(&lead.port) {
                v.push(FieldError::new(
                    "spec.flux.bursting.leadBroker.port",
                    format!("{} is not a port number", lead.port),
                    "use a port between 1 and 65535",
                ));
            }
            if lead.size < 1 {
                v.push(FieldError::new(
                    "spec.flux.bursting.leadBroker.size",
                    format!("is {}", lead.size),
                    "set the lead cluster's size (1 or more)",
                ));
            }
            if lead.address.is_empty() {
                v.push(FieldError::new(
                    "spec.flux.bursting.leadBroker.address",
                    "is empty",
                    "give the lead broker's IP address or hostname",
                ));
            }
        }
        for (i, c) in b.clusters.iter().enumerate() {
            if let Some(s) = c.size
                && s < 1
            {
                v.push(FieldError::new(
                    format!("spec.flux.bursting.clusters[{i}].size"),
                    format!("is {s}"),
                    "set 1 or more, or remove it to use the local size",
                ));
            }
            if let Some(n) = &c.name
                && let Some(p) = dns_label_problem(n)
            {
                v.push(FieldError::new(
                    format!("spec.flux.bursting.clusters[{i}].name"),
                    format!("{n:?} {p}"),
                    "use a DNS label",
                ));
            }
        }
    }
}

fn valid_topology(t: &str) -> bool {
    let number = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match t.split_once(':') {
        None => matches!(t, "binomial" | "mincrit" | "custom"),
        Some(("kary" | "mincrit", k)) => number(k),
        _ => false,
    }
}

fn validate_pod(pod: &PodSpec, v: &mut Vec<FieldError>) {
    if let Some(p) = &pod.restart_policy
        && !["OnFailure", "Never"].contains(&p.as_str())
    {
        v.push(FieldError::new(
            "spec.pod.restartPolicy",
            format!("{p:?} is not allowed for the pods of a Job"),
            "use OnFailure or Never",
        ));
    }
    if let Some(p) = &pod.dns_policy
        && !["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"].contains(&p.as_str())
    {
        v.push(FieldError::new(
            "spec.pod.dnsPolicy",
            format!("{p:?} is not a DNS policy"),
            "use ClusterFirst, ClusterFirstWithHostNet, Default or None",
        ));
    }
    validate_quantities("spec.pod.resources", &pod.resources, v);
    for (k, val) in &pod.labels {
        validate_label(&format!("spec.pod.labels.{k}"), k, val, v);
    }
    for (i, t) in pod.tolerations.iter().enumerate() {
        if let Some(op) = &t.operator
            && !["Equal", "Exists"].contains(&op.as_str())
        {
            v.push(FieldError::new(
                format!("spec.pod.tolerations[{i}].operator"),
                format!("{op:?} is not a toleration operator"),
                "use Equal or Exists",
            ));
        }
        if let Some(e) = &t.effect
            && !["", "NoSchedule", "PreferNoSchedule", "NoExecute"].contains(&e.as_str())
        {
            v.push(FieldError::new(
                format!("spec.pod.tolerations[{i}].effect"),
                format!("{e:?} is not a taint effect"),
                "use NoSchedule, PreferNoSchedule or NoExecute",
            ));
        }
    }
}

fn validate_env(path: &str, env: &BTreeMap<String, String>, v: &mut Vec<FieldError>) {
    for k in env.keys() {
        if let Some(p) = env_name_problem(k) {
            v.push(FieldError::new(
                format!("{path}.{k}"),
                format!("variable name {p}"),
                "use a name such as MY_VAR",
            ));
        }
    }
}

fn validate_quantities(path: &str, q: &BTreeMap<String, IntOrString>, v: &mut Vec<FieldError>) {
    for (k, val) in q {
        if let IntOrString::String(s) = val
            && let Some(p) = quantity_problem(s)
        {
            v.push(FieldError::new(
                format!("{path}.{k}"),
                p,
                "use a quantity such as 2, 500m or 4Gi",
            ));
        }
    }
}

fn validate_label(path: &str, key: &str, value: &str, v: &mut Vec<FieldError>) {
    let name = key.rsplit('/').next().unwrap_or(key);
    let ok_chars = |s: &str| {
        s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    let ok_ends = |s: &str| {
        s.starts_with(|c: char| c.is_ascii_alphanumeric())
            && s.ends_with(|c: char| c.is_ascii_alphanumeric())
    };
    if name.is_empty() || name.len() > 63 || !ok_chars(name) || !ok_ends(name) {
        v.push(FieldError::new(
            path,
            format!("label key {key:?} is not valid"),
            "use at most 63 letters, digits, '-', '_' or '.', starting and ending alphanumeric",
        ));
    }
    if value.len() > 63 || (!value.is_empty() && (!ok_chars(value) || !ok_ends(value))) {
        v.push(FieldError::new(
            path,
            format!("label value {value:?} is not valid"),
            "use at most 63 letters, digits, '-', '_' or '.', starting and ending alphanumeric",
        ));
    }
}
