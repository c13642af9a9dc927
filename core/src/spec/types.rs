//! The MiniCluster resource, `flux-framework.org/v1alpha2`, field for field as the
//! flux-operator CRD defines it (names, types and defaults), so existing YAML applies unchanged.
//!
//! Optional fields without a CRD default are `Option`s or empty collections that are skipped
//! when serialising, so a round trip does not invent fields the user never wrote.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Default image of an application container, as in the flux-operator CRD.
pub const DEFAULT_CONTAINER_IMAGE: &str = "ghcr.io/rse-ops/accounting:app-latest";
/// Default image of the Flux view (the image that carries `flux`), as in the flux-operator CRD.
pub const DEFAULT_FLUX_VIEW_IMAGE: &str = "ghcr.io/converged-computing/flux-view-ubuntu:tag-noble";
/// Where the Flux view is mounted in every container.
pub const DEFAULT_FLUX_MOUNT_PATH: &str = "/mnt/flux";
/// Port every broker binds and connects to unless told otherwise.
pub const DEFAULT_BROKER_PORT: u16 = 8050;
/// Name of the headless Service when `network.headlessName` is not given.
pub const DEFAULT_HEADLESS_NAME: &str = "flux-service";

fn is_false(b: &bool) -> bool {
    !*b
}
fn default_size() -> i32 {
    1
}
fn default_deadline() -> i64 {
    31_500_000
}
fn default_image() -> String {
    DEFAULT_CONTAINER_IMAGE.into()
}
fn default_view_image() -> String {
    DEFAULT_FLUX_VIEW_IMAGE.into()
}
fn default_mount_path() -> String {
    DEFAULT_FLUX_MOUNT_PATH.into()
}
fn default_view_name() -> String {
    "flux-view".into()
}
fn default_connect_timeout() -> String {
    "5s".into()
}
fn default_log_level() -> i32 {
    6
}
fn default_lead_port() -> i32 {
    i32::from(DEFAULT_BROKER_PORT)
}

/// MiniCluster is an HPC cluster in Kubernetes: N Flux brokers forming one Flux instance.
// Several `printcolumn(...)` entries repeat `type_ = "string"`, which clippy mistakes for a
// duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "flux-framework.org",
    version = "v1alpha2",
    kind = "MiniCluster",
    plural = "miniclusters",
    singular = "minicluster",
    shortname = "mc",
    namespaced,
    status = "MiniClusterStatus",
    scale(
        spec_replicas_path = ".spec.size",
        status_replicas_path = ".status.size",
        label_selector_path = ".status.selector"
    ),
    printcolumn(name = "Size", type_ = "integer", json_path = ".spec.size"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.ready"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct MiniClusterSpec {
    /// Containers to run in every pod; exactly one runs Flux (`runFlux`).
    pub containers: Vec<Container>,
    /// Service containers brought up alongside the MiniCluster (a separate pod).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<Container>,
    /// Archive to load or save.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive: Option<Archive>,
    /// Retries of the Job before it fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_limit: Option<i32>,
    /// Delete the MiniCluster when the rank 0 broker completes.
    #[serde(default, skip_serializing_if = "is_false")]
    #[schemars(extend("default" = false))]
    pub cleanup: bool,
    /// Limit of the Job's run time, in seconds.
    #[serde(default = "default_deadline")]
    pub deadline_seconds: i64,
    /// Flux options shared by every broker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flux: Option<FluxSpec>,
    /// A single-user, interactive (persistent) MiniCluster.
    #[serde(default, skip_serializing_if = "is_false")]
    #[schemars(extend("default" = false))]
    pub interactive: bool,
    /// Labels for the Job.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub job_labels: BTreeMap<String, String>,
    /// What the job log shows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logging: Option<LoggingSpec>,
    /// The largest size the MiniCluster may be scaled to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_size: Option<i32>,
    /// Brokers that must be online before Flux starts work (the quorum).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_size: Option<i32>,
    /// The headless Service that gives brokers their names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkSpec>,
    /// Pod fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<PodSpec>,
    /// Share the process namespace between the containers of a pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share_process_namespace: Option<bool>,
    /// Number of brokers (pods).
    #[serde(default = "default_size")]
    pub size: i32,
    /// Total number of tasks across the cluster.
    #[serde(default = "default_size")]
    pub tasks: i32,
}

/// Archive to load or save.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Archive {
    /// Save or load from this directory path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// A container of the MiniCluster pods (or of the services pod).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    /// Write the command to a batch script of `flux submit` lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<bool>,
    /// Do not wrap batch lines in `flux submit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_raw: Option<bool>,
    /// The command given to Flux.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Hooks and wrappers around the command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commands: Option<Commands>,
    /// Environment variables.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub environment: BTreeMap<String, String>,
    /// Container image.
    #[serde(default = "default_image")]
    pub image: String,
    /// Image pull policy (Always, IfNotPresent, Never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<String>,
    /// Name of a Secret for pulling the image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_secret: Option<String>,
    /// The command asks for its own jobs (`flux start CMD` instead of `flux submit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launcher: Option<bool>,
    /// Lifecycle hooks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub life_cycle: Option<LifeCycle>,
    /// Log output directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs: Option<String>,
    /// Container name; required for containers that do not run Flux.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Run the image's own entrypoint instead of the broker wrapper.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_wrap_entrypoint: Option<bool>,
    /// Ports exposed to the other containers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<i32>,
    /// Always pull the image.
    #[serde(default, skip_serializing_if = "is_false")]
    #[schemars(extend("default" = false))]
    pub pull_always: bool,
    /// Resource limits and requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ContainerResources>,
    /// This container runs the Flux broker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_flux: Option<bool>,
    /// Secrets added to the environment, by variable name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, Secret>,
    /// Container security context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<SecurityContext>,
    /// Existing volumes to mount, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub volumes: BTreeMap<String, ContainerVolume>,
    /// Working directory of the command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
}

impl Default for Container {
    fn default() -> Self {
        Container {
            batch: None,
            batch_raw: None,
            command: None,
            commands: None,
            environment: BTreeMap::new(),
            image: default_image(),
            image_pull_policy: None,
            image_pull_secret: None,
            launcher: None,
            life_cycle: None,
            logs: None,
            name: None,
            no_wrap_entrypoint: None,
            ports: Vec::new(),
            pull_always: false,
            resources: None,
            run_flux: None,
            secrets: BTreeMap::new(),
            security_context: None,
            volumes: BTreeMap::new(),
            working_dir: None,
        }
    }
}

/// Hooks and wrappers around the command.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Commands {
    /// Only the lead broker (rank 0) runs this before starting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker_pre: Option<String>,
    /// Runs before anything else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<String>,
    /// Runs when the broker exits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post: Option<String>,
    /// Runs on every rank before the broker starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre: Option<String>,
    /// Prefix of `flux start` / `flux submit` / `flux broker` (a wrapper command).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Custom script for submit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script: Option<String>,
    /// Runs only in a services container before its command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_pre: Option<String>,
    /// Only workers (rank > 0) run this before starting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_pre: Option<String>,
}

/// Lifecycle hooks of a container.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LifeCycle {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_start_exec: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_stop_exec: Option<String>,
}

/// Limits and requests of a container, as Kubernetes quantities.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContainerResources {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub limits: BTreeMap<String, IntOrString>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub requests: BTreeMap<String, IntOrString>,
}

/// A key of a Kubernetes Secret exposed as an environment variable.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Secret {
    /// Key in the Secret.
    pub key: String,
    /// Name of the Secret.
    pub name: String,
}

/// Security context of a container (the Kubernetes fields the flux-operator CRD exposes).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecurityContext {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_privilege_escalation: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Capabilities>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privileged: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proc_mount: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only_root_filesystem: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as_group: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as_non_root: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as_user: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub se_linux_options: Option<SeLinuxOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seccomp_profile: Option<SeccompProfile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub windows_options: Option<WindowsOptions>,
}

/// Capabilities to add and drop.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Capabilities {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drop: Vec<String>,
}

/// SELinux labels.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SeLinuxOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "type")]
    pub type_: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// Seccomp profile.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SeccompProfile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub localhost_profile: Option<String>,
    #[serde(rename = "type")]
    pub type_: String,
}

/// Windows options.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WindowsOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gmsa_credential_spec: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gmsa_credential_spec_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_process: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as_user_name: Option<String>,
}

/// An existing volume mounted into a container at `path`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContainerVolume {
    /// A PersistentVolumeClaim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim_name: Option<String>,
    /// A ConfigMap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_name: Option<String>,
    /// A CSI driver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csi_driver: Option<String>,
    /// Attributes for the CSI driver.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub csi_driver_attributes: BTreeMap<String, String>,
    /// An emptyDir.
    #[serde(default, skip_serializing_if = "is_false")]
    #[schemars(extend("default" = false))]
    pub empty_dir: bool,
    /// Medium of the emptyDir (e.g. Memory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub empty_dir_medium: Option<String>,
    /// Size limit of the emptyDir.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub empty_dir_size_limit: Option<String>,
    /// A hostPath.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_path: Option<String>,
    /// Keys and paths of the ConfigMap.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub items: BTreeMap<String, String>,
    /// Where the volume is mounted in the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Mount read-only.
    #[serde(default, skip_serializing_if = "is_false")]
    #[schemars(extend("default" = false))]
    pub read_only: bool,
    /// A Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
}

/// Flux options shared by every broker.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FluxSpec {
    /// Architecture of the Flux view binaries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    /// A broker config (TOML) that replaces the generated one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker_config: Option<String>,
    /// External clusters to burst to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bursting: Option<Bursting>,
    /// Workers exit instead of restarting when their broker fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub complete_workers: Option<bool>,
    /// TBON connect timeout (Flux Standard Duration).
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: String,
    /// The container that provides the Flux view.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<FluxContainer>,
    /// A CURVE certificate (the text `flux keygen` writes) that replaces the generated one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub curve_cert: Option<String>,
    /// Do not set the socket path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_socket: Option<bool>,
    /// Environment of the Flux view.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub environment: BTreeMap<String, String>,
    /// Broker log level (0-7).
    #[serde(default = "default_log_level")]
    pub log_level: i32,
    /// Only the lead broker gets a DNS name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimal_service: Option<bool>,
    /// Name of a Secret with a munge key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub munge_secret: Option<String>,
    /// Do not wait for the broker socket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_wait_socket: Option<bool>,
    /// Option flags for `flux submit` (`-o ...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub option_flags: Option<String>,
    /// Scheduler settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduler: Option<Scheduler>,
    /// Replace `flux submit` with this command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submit_command: Option<String>,
    /// TBON topology (`kary:K`, `binomial`, `mincrit[:K]`, `custom`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology: Option<String>,
    /// Arguments of `flux start --wrap`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wrap: Option<String>,
}

impl Default for FluxSpec {
    fn default() -> Self {
        FluxSpec {
            arch: None,
            broker_config: None,
            bursting: None,
            complete_workers: None,
            connect_timeout: default_connect_timeout(),
            container: None,
            curve_cert: None,
            disable_socket: None,
            environment: BTreeMap::new(),
            log_level: default_log_level(),
            minimal_service: None,
            munge_secret: None,
            no_wait_socket: None,
            option_flags: None,
            scheduler: None,
            submit_command: None,
            topology: None,
            wrap: None,
        }
    }
}

/// Bursting to external clusters.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Bursting {
    /// External clusters; each shares the lead broker's cert.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clusters: Vec<BurstedCluster>,
    /// Custom hostlist for the broker config, including the local cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostlist: Option<String>,
    /// The lead broker that external clusters join.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lead_broker: Option<LeadBroker>,
}

/// An external cluster.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BurstedCluster {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<i32>,
}

/// The lead broker of a burst.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LeadBroker {
    pub address: String,
    pub name: String,
    #[serde(default = "default_lead_port")]
    pub port: i32,
    pub size: i32,
}

/// The container that provides the Flux view (an image with Flux installed under `mountPath`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FluxContainer {
    /// The application image already has Flux: do not add the view.
    #[serde(default, skip_serializing_if = "is_false")]
    #[schemars(extend("default" = false))]
    pub disable: bool,
    #[serde(default = "default_view_image")]
    pub image: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_secret: Option<String>,
    #[serde(default = "default_mount_path")]
    pub mount_path: String,
    #[serde(default = "default_view_name")]
    pub name: String,
    #[serde(default, skip_serializing_if = "is_false")]
    #[schemars(extend("default" = false))]
    pub pull_always: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ContainerResources>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<SecurityContext>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
}

impl Default for FluxContainer {
    fn default() -> Self {
        FluxContainer {
            disable: false,
            image: default_view_image(),
            image_pull_secret: None,
            mount_path: default_mount_path(),
            name: default_view_name(),
            pull_always: false,
            python_path: None,
            resources: None,
            security_context: None,
            working_dir: None,
        }
    }
}

/// Scheduler settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Scheduler {
    /// Fluxion queue policy: fcfs (default), easy, conservative or hybrid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_policy: Option<String>,
    /// Use sched-simple instead of Fluxion (no GPU support).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub simple: Option<bool>,
}

/// Logging modes.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoggingSpec {
    #[serde(default, skip_serializing_if = "is_false")]
    #[schemars(extend("default" = false))]
    pub debug: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    #[schemars(extend("default" = false))]
    pub quiet: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    #[schemars(extend("default" = false))]
    pub strict: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    #[schemars(extend("default" = false))]
    pub timed: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    #[schemars(extend("default" = false))]
    pub zeromq: bool,
}

/// The headless Service.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkSpec {
    /// Do not add the affinity rules that place one broker per node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_affinity: Option<bool>,
    /// Name of the headless Service (default `flux-service`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headless_name: Option<String>,
}

/// Pod fields.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub automount_service_account_token: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_policy: Option<String>,
    #[serde(default, rename = "hostIPC", skip_serializing_if = "Option::is_none")]
    pub host_ipc: Option<bool>,
    #[serde(default, rename = "hostPID", skip_serializing_if = "Option::is_none")]
    pub host_pid: Option<bool>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Node label key to the values a node must have one of.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_affinity: BTreeMap<String, Vec<String>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub resources: BTreeMap<String, IntOrString>,
    /// Restart policy of the pods (OnFailure or Never for a Job).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_class_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduler_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<PodSecurityContext>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
}

/// Pod security context (the fields the flux-operator CRD exposes).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodSecurityContext {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fs_group: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fs_group_change_policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as_group: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as_non_root: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as_user: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub se_linux_options: Option<SeLinuxOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seccomp_profile: Option<SeccompProfile>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub supplemental_groups: Vec<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sysctls: Vec<Sysctl>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub windows_options: Option<WindowsOptions>,
}

/// A namespaced kernel parameter.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct Sysctl {
    pub name: String,
    pub value: String,
}

/// A toleration.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Toleration {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// Observed state of a MiniCluster.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MiniClusterStatus {
    /// Conditions of the MiniCluster (Validated, Created, BrokersReady, Resized, Succeeded,
    /// Failed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Identifier of the MiniCluster's Job.
    #[serde(default)]
    pub jobid: String,
    /// The largest size the MiniCluster may reach (its maxSize, else its first size).
    #[serde(default)]
    pub maximum_size: i32,
    /// Label selector of the pods (scale subresource).
    #[serde(default)]
    pub selector: String,
    /// Current size (scale subresource).
    #[serde(default)]
    pub size: i32,
    /// Brokers ready, as `n/N`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<String>,
    /// Pending, Running, Succeeded or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Rank 0's exit code once it has ended: the MiniCluster's outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
}

/// Where an emptyDir without a path is mounted, as flux-operator does (MPI's shared memory).
pub const SHARED_MEMORY_PATH: &str = "/dev/shm";

impl ContainerVolume {
    /// The mount path: `path`, or `/dev/shm` for an emptyDir without one.
    pub fn mount_path(&self) -> Option<&str> {
        match self.path.as_deref() {
            Some(p) if !p.is_empty() => Some(p),
            _ if self.empty_dir => Some(SHARED_MEMORY_PATH),
            _ => None,
        }
    }

    /// The emptyDir's medium as Kubernetes spells it. flux-operator's examples write
    /// `memory`, which the kubelet would refuse, so the case is the user's choice;
    /// `None` is the node's default medium.
    pub fn kubernetes_medium(&self) -> Option<String> {
        let m = self.empty_dir_medium.as_deref()?.trim();
        if m.is_empty() {
            None
        } else if m.eq_ignore_ascii_case("memory") {
            Some("Memory".into())
        } else if let Some(size) = m
            .get(..9)
            .filter(|p| p.eq_ignore_ascii_case("hugepages"))
            .map(|_| &m[9..])
        {
            Some(format!("HugePages{size}"))
        } else {
            Some(m.to_string())
        }
    }
}

impl MiniClusterSpec {
    /// Index of the container that runs Flux: the one with `runFlux: true`, or the only container.
    pub fn flux_container_index(&self) -> Option<usize> {
        let marked: Vec<usize> = self
            .containers
            .iter()
            .enumerate()
            .filter(|(_, c)| c.run_flux == Some(true))
            .map(|(i, _)| i)
            .collect();
        match (marked.as_slice(), self.containers.len()) {
            ([i], _) => Some(*i),
            ([], 1) => Some(0),
            _ => None,
        }
    }

    /// The size the hostlist covers: maxSize when given, else size.
    pub fn effective_max_size(&self) -> i32 {
        self.max_size.unwrap_or(self.size).max(self.size)
    }
}
