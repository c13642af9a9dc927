//! The Indexed Job: one pod per broker, named `<name>-<index>` in the headless Service's
//! subdomain, running our entrypoint from a shared volume filled by init containers.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Affinity, CSIVolumeSource, ConfigMapProjection, ConfigMapVolumeSource, Container,
    EmptyDirVolumeSource, EnvVar, EnvVarSource, ExecAction, HostPathVolumeSource, KeyToPath,
    Lifecycle, LifecycleHandler, LocalObjectReference, NodeAffinity, NodeSelector,
    NodeSelectorRequirement, NodeSelectorTerm, PersistentVolumeClaimVolumeSource, PodAffinityTerm,
    PodAntiAffinity, PodSpec, PodTemplateSpec, Probe, ProjectedVolumeSource, ResourceRequirements,
    SecretKeySelector, SecretProjection, SecretVolumeSource, Volume, VolumeMount, VolumeProjection,
    WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use minicluster_core::spec;
use minicluster_core::{ClusterDescription, MiniCluster};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use super::config::{CERT_KEY, DESCRIPTION_KEY};
use super::{BuildOptions, lifecycle};
use crate::labels;

/// Where the description and certificate are mounted (the entrypoint's defaults).
pub const CONFIG_MOUNT: &str = "/etc/minicluster";
/// Directory of the entrypoint binary inside the Flux volume.
pub const ENTRYPOINT_DIR: &str = "bin";
/// Where the runner image keeps the entrypoint.
pub const RUNNER_ENTRYPOINT: &str = "/usr/local/bin/entrypoint";
const FLUX_VOLUME: &str = "flux-view";
const CONFIG_VOLUME: &str = "minicluster-config";

pub fn job(
    mut meta: ObjectMeta,
    mc: &MiniCluster,
    d: &ClusterDescription,
    opts: &BuildOptions,
) -> Job {
    let s = &mc.spec;
    let name = d.name.clone();
    let pod = s.pod.clone().unwrap_or_default();
    let flux = s.flux.clone().unwrap_or_default();
    let view = flux.container.clone().unwrap_or_default();
    let mount = d.paths.config_dir.trim_end_matches("/config").to_string();
    let flux_index = s.flux_container_index().unwrap_or(0);

    let mut pod_labels = labels::common(&name, "broker");
    pod_labels.extend(labels::broker_selector(&name));
    pod_labels.insert(labels::HEADLESS.into(), d.network.service.clone());
    pod_labels.extend(pod.labels.clone());

    let mut containers = Vec::new();
    for (i, c) in s.containers.iter().enumerate() {
        if i == flux_index {
            containers.push(flux_container(c, &name, &mount, &view));
        } else {
            containers.push(app_container(c, &format!("{name}-{i}"), Vec::new()));
        }
    }

    let mut init = vec![Container {
        name: "minicluster-entrypoint".into(),
        image: Some(opts.runner_image.clone()),
        image_pull_policy: Some(opts.runner_pull_policy.clone()),
        command: Some(vec![
            RUNNER_ENTRYPOINT.into(),
            "install".into(),
            format!("{mount}/{ENTRYPOINT_DIR}"),
        ]),
        volume_mounts: Some(vec![mount_of(FLUX_VOLUME, &mount, false)]),
        ..Container::default()
    }];
    if !view.disable {
        // The flux-view image contract: a Flux install under /opt/view (and /opt/software).
        let copy = format!(
            "mkdir -p {mount}/view && cp -a /opt/view/. {mount}/view/ && if [ -d /opt/software ]; then cp -a /opt/software {mount}/; fi"
        );
        init.push(Container {
            name: if view.name.is_empty() {
                FLUX_VOLUME.into()
            } else {
                view.name.clone()
            },
            image: Some(view.image.clone()),
            image_pull_policy: view.pull_always.then(|| "Always".to_string()),
            command: Some(vec!["sh".into(), "-c".into(), copy]),
            resources: resources(view.resources.as_ref()),
            security_context: convert(&view.security_context),
            working_dir: view.working_dir.clone(),
            volume_mounts: Some(vec![mount_of(FLUX_VOLUME, &mount, false)]),
            ..Container::default()
        });
    }

    let mut volumes = vec![
        Volume {
            name: FLUX_VOLUME.into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        },
        Volume {
            name: CONFIG_VOLUME.into(),
            projected: Some(ProjectedVolumeSource {
                sources: Some(vec![
                    VolumeProjection {
                        config_map: Some(ConfigMapProjection {
                            name: labels::config_map(&name),
                            items: Some(vec![key_to_path(DESCRIPTION_KEY, 0o444)]),
                            ..ConfigMapProjection::default()
                        }),
                        ..VolumeProjection::default()
                    },
                    VolumeProjection {
                        secret: Some(SecretProjection {
                            name: labels::cert_secret(&name),
                            items: Some(vec![key_to_path(CERT_KEY, 0o400)]),
                            ..SecretProjection::default()
                        }),
                        ..VolumeProjection::default()
                    },
                ]),
                ..ProjectedVolumeSource::default()
            }),
            ..Volume::default()
        },
    ];
    volumes.extend(user_volumes(&s.containers).unwrap_or_default());

    let pull_secrets: Vec<LocalObjectReference> = s
        .containers
        .iter()
        .filter_map(|c| c.image_pull_secret.clone())
        .chain(view.image_pull_secret.clone().filter(|_| !view.disable))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .map(|n| LocalObjectReference { name: n })
        .collect();

    let affinity = affinity(
        &name,
        s.network.as_ref().and_then(|n| n.disable_affinity) == Some(true),
        &pod.node_affinity,
    );

    let mut annotations = pod.annotations.clone();
    annotations.insert(
        labels::DEFAULT_CONTAINER.into(),
        containers[flux_index].name.clone(),
    );
    let template = PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(pod_labels),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            subdomain: Some(d.network.service.clone()),
            set_hostname_as_fqdn: Some(false),
            // Never: a container that ended is not started again in place; the Job decides
            // (see `lifecycle`). A restart policy in the spec is the user's choice.
            restart_policy: Some(pod.restart_policy.clone().unwrap_or_else(|| NEVER.into())),
            share_process_namespace: s.share_process_namespace,
            service_account_name: pod.service_account_name.clone(),
            automount_service_account_token: pod.automount_service_account_token,
            node_selector: (!pod.node_selector.is_empty()).then(|| pod.node_selector.clone()),
            tolerations: (!pod.tolerations.is_empty())
                .then(|| convert(&pod.tolerations))
                .flatten(),
            runtime_class_name: pod.runtime_class_name.clone(),
            scheduler_name: pod.scheduler_name.clone(),
            security_context: convert(&pod.security_context),
            dns_policy: pod.dns_policy.clone(),
            host_ipc: pod.host_ipc,
            host_pid: pod.host_pid,
            affinity,
            image_pull_secrets: (!pull_secrets.is_empty()).then_some(pull_secrets),
            init_containers: Some(init),
            containers,
            volumes: Some(volumes),
            ..PodSpec::default()
        }),
    };
    let never = pod.restart_policy.as_deref().unwrap_or(NEVER) == NEVER;
    let flux_name = containers_name(&template, flux_index);
    let mut job_labels = labels::common(&name, "broker");
    job_labels.extend(s.job_labels.clone());
    meta.labels = Some(job_labels);
    meta.annotations = Some(BTreeMap::from([(labels::SPEC_HASH.into(), spec_hash(mc))]));
    Job {
        metadata: meta,
        spec: Some(JobSpec {
            completion_mode: Some("Indexed".into()),
            completions: Some(s.size),
            parallelism: Some(s.size),
            backoff_limit: s.backoff_limit,
            active_deadline_seconds: Some(s.deadline_seconds),
            pod_failure_policy: (never && opts.server.pod_failure_policy())
                .then(|| lifecycle::pod_failure_policy(&flux_name)),
            success_policy: opts.server.success_policy().then(lifecycle::success_policy),
            template,
            ..JobSpec::default()
        }),
        ..Job::default()
    }
}

const NEVER: &str = "Never";

fn containers_name(t: &PodTemplateSpec, i: usize) -> String {
    t.spec
        .as_ref()
        .and_then(|s| s.containers.get(i))
        .map(|c| c.name.clone())
        .unwrap_or_default()
}

/// A short hash of what the user asked for: the Job is replaced when it changes (Kubernetes
/// refuses edits to a Job's template) — and only then, so an operator upgrade that builds
/// pods differently never restarts a running MiniCluster. The size is left out: it is
/// changed in place.
pub fn spec_hash(mc: &MiniCluster) -> String {
    let mut spec = mc.spec.clone();
    spec.size = 0;
    let bytes = serde_json::to_vec(&spec).expect("a spec serialises");
    hex::encode(&Sha256::digest(&bytes)[..8])
}

fn flux_container(
    c: &spec::Container,
    name: &str,
    mount: &str,
    view: &spec::FluxContainer,
) -> Container {
    let mut k = app_container(
        c,
        name,
        vec![
            mount_of(FLUX_VOLUME, mount, false),
            mount_of(CONFIG_VOLUME, CONFIG_MOUNT, true),
        ],
    );
    // The entrypoint replaces the command: it runs the user's command through Flux.
    let entrypoint = format!("{mount}/{ENTRYPOINT_DIR}/entrypoint");
    k.command = Some(vec![entrypoint.clone()]);
    // Ready once this broker's instance runs: for a worker, once it has joined.
    k.readiness_probe = Some(Probe {
        exec: Some(ExecAction {
            command: Some(vec![entrypoint, "ready".into()]),
        }),
        period_seconds: Some(2),
        timeout_seconds: Some(5),
        ..Probe::default()
    });
    // The entrypoint's error, else the end of the log, shows in the pod's status.
    k.termination_message_policy = Some("FallbackToLogsOnError".into());
    // `kubectl exec POD -- flux …` reaches the broker's instance.
    k.env.get_or_insert_with(Vec::new).push(EnvVar {
        name: "FLUX_URI".into(),
        value: Some(format!("local://{mount}/run/local")),
        ..EnvVar::default()
    });
    k.args = None;
    if let Some(py) = &view.python_path {
        k.env.get_or_insert_with(Vec::new).push(EnvVar {
            name: "PYTHONPATH".into(),
            value: Some(py.clone()),
            ..EnvVar::default()
        });
    }
    k
}

/// A container as the spec gives it: image, command (through `sh -c`), environment and
/// secrets, resources, security context, lifecycle hooks, ports and volumes.
pub fn app_container(
    c: &spec::Container,
    default_name: &str,
    mut mounts: Vec<VolumeMount>,
) -> Container {
    let mut env: Vec<EnvVar> = c
        .environment
        .iter()
        .map(|(k, v)| EnvVar {
            name: k.clone(),
            value: Some(v.clone()),
            ..EnvVar::default()
        })
        .collect();
    env.extend(c.secrets.iter().map(|(var, s)| EnvVar {
        name: var.clone(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: s.name.clone(),
                key: s.key.clone(),
                ..SecretKeySelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }));
    for (vname, v) in &c.volumes {
        if let Some(path) = v.mount_path() {
            mounts.push(mount_of(vname, path, v.read_only));
        }
    }
    let exec = |cmd: &Option<String>| {
        cmd.as_ref().map(|c| LifecycleHandler {
            exec: Some(ExecAction {
                command: Some(vec!["sh".into(), "-c".into(), c.clone()]),
            }),
            ..LifecycleHandler::default()
        })
    };
    let lifecycle = c.life_cycle.as_ref().map(|l| Lifecycle {
        post_start: exec(&l.post_start_exec),
        pre_stop: exec(&l.pre_stop_exec),
        ..Lifecycle::default()
    });
    Container {
        name: c.name.clone().unwrap_or_else(|| default_name.to_string()),
        image: Some(c.image.clone()),
        image_pull_policy: if c.pull_always {
            Some("Always".into())
        } else {
            c.image_pull_policy.clone()
        },
        command: c
            .command
            .as_ref()
            .filter(|s| !s.trim().is_empty())
            .map(|cmd| vec!["sh".into(), "-c".into(), cmd.clone()]),
        working_dir: c.working_dir.clone(),
        env: (!env.is_empty()).then_some(env),
        resources: resources(c.resources.as_ref()),
        security_context: convert(&c.security_context),
        lifecycle,
        ports: (!c.ports.is_empty()).then(|| {
            c.ports
                .iter()
                .map(|p| k8s_openapi::api::core::v1::ContainerPort {
                    container_port: *p,
                    ..Default::default()
                })
                .collect()
        }),
        volume_mounts: (!mounts.is_empty()).then_some(mounts),
        ..Container::default()
    }
}

/// The volumes named by `containers[].volumes`, each once.
pub fn user_volumes(containers: &[spec::Container]) -> Option<Vec<Volume>> {
    let mut out: BTreeMap<String, Volume> = BTreeMap::new();
    for c in containers {
        for (name, v) in &c.volumes {
            out.entry(name.clone()).or_insert_with(|| volume(name, v));
        }
    }
    (!out.is_empty()).then(|| out.into_values().collect())
}

fn volume(name: &str, v: &spec::ContainerVolume) -> Volume {
    let items = (!v.items.is_empty()).then(|| {
        v.items
            .iter()
            .map(|(k, p)| KeyToPath {
                key: k.clone(),
                path: p.clone(),
                ..KeyToPath::default()
            })
            .collect()
    });
    let mut vol = Volume {
        name: name.into(),
        ..Volume::default()
    };
    if let Some(claim) = &v.claim_name {
        vol.persistent_volume_claim = Some(PersistentVolumeClaimVolumeSource {
            claim_name: claim.clone(),
            read_only: v.read_only.then_some(true),
        });
    } else if let Some(cm) = &v.config_map_name {
        vol.config_map = Some(ConfigMapVolumeSource {
            name: cm.clone(),
            items,
            ..ConfigMapVolumeSource::default()
        });
    } else if let Some(secret) = &v.secret_name {
        vol.secret = Some(SecretVolumeSource {
            secret_name: Some(secret.clone()),
            items,
            ..SecretVolumeSource::default()
        });
    } else if let Some(host) = &v.host_path {
        vol.host_path = Some(HostPathVolumeSource {
            path: host.clone(),
            type_: None,
        });
    } else if let Some(driver) = &v.csi_driver {
        vol.csi = Some(CSIVolumeSource {
            driver: driver.clone(),
            read_only: v.read_only.then_some(true),
            volume_attributes: (!v.csi_driver_attributes.is_empty())
                .then(|| v.csi_driver_attributes.clone()),
            ..CSIVolumeSource::default()
        });
    } else {
        vol.empty_dir = Some(EmptyDirVolumeSource {
            medium: v.kubernetes_medium(),
            size_limit: v.empty_dir_size_limit.clone().map(Quantity),
            ..EmptyDirVolumeSource::default()
        });
    }
    vol
}

fn affinity(
    name: &str,
    disabled: bool,
    node_affinity: &BTreeMap<String, Vec<String>>,
) -> Option<Affinity> {
    let node = (!node_affinity.is_empty()).then(|| NodeAffinity {
        required_during_scheduling_ignored_during_execution: Some(NodeSelector {
            node_selector_terms: vec![NodeSelectorTerm {
                match_expressions: Some(
                    node_affinity
                        .iter()
                        .map(|(k, vals)| NodeSelectorRequirement {
                            key: k.clone(),
                            operator: "In".into(),
                            values: Some(vals.clone()),
                        })
                        .collect(),
                ),
                ..NodeSelectorTerm::default()
            }],
        }),
        ..NodeAffinity::default()
    });
    // One broker per node where possible: brokers on one node share its cores for nothing.
    let anti = (!disabled).then(|| PodAntiAffinity {
        preferred_during_scheduling_ignored_during_execution: Some(vec![WeightedPodAffinityTerm {
            weight: 100,
            pod_affinity_term: PodAffinityTerm {
                topology_key: "kubernetes.io/hostname".into(),
                label_selector: Some(LabelSelector {
                    match_labels: Some(labels::broker_selector(name)),
                    ..LabelSelector::default()
                }),
                ..PodAffinityTerm::default()
            },
        }]),
        ..PodAntiAffinity::default()
    });
    (node.is_some() || anti.is_some()).then(|| Affinity {
        node_affinity: node,
        pod_anti_affinity: anti,
        ..Affinity::default()
    })
}

fn resources(r: Option<&spec::ContainerResources>) -> Option<ResourceRequirements> {
    let r = r?;
    let q = |m: &BTreeMap<String, IntOrString>| {
        (!m.is_empty()).then(|| {
            m.iter()
                .map(|(k, v)| {
                    let s = match v {
                        IntOrString::Int(n) => n.to_string(),
                        IntOrString::String(s) => s.clone(),
                    };
                    (k.clone(), Quantity(s))
                })
                .collect()
        })
    };
    let out = ResourceRequirements {
        limits: q(&r.limits),
        requests: q(&r.requests),
        ..ResourceRequirements::default()
    };
    (out.limits.is_some() || out.requests.is_some()).then_some(out)
}

fn key_to_path(key: &str, mode: i32) -> KeyToPath {
    KeyToPath {
        key: key.into(),
        path: key.into(),
        mode: Some(mode),
        ..KeyToPath::default()
    }
}

fn mount_of(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}

/// Our spec types mirror Kubernetes' field for field (security contexts, tolerations);
/// converting through JSON keeps them in step without copying every field by hand.
fn convert<A: Serialize, B: DeserializeOwned>(a: &A) -> Option<B> {
    serde_json::to_value(a)
        .ok()
        .and_then(|v| serde_json::from_value(v).ok())
}
