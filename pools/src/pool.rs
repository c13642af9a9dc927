//! A pool: a named launcher configuration, the MiniCluster template it launches, its tags and
//! its limits. [`validate`] checks one as a whole and names every bad field with its fix.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::tags::Tags;

/// Where a pool launches its MiniClusters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LauncherType {
    /// Local processes on the control plane's machine.
    #[default]
    Process,
    Docker,
    Kubernetes,
}

impl std::fmt::Display for LauncherType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            LauncherType::Process => "process",
            LauncherType::Docker => "docker",
            LauncherType::Kubernetes => "kubernetes",
        })
    }
}

impl std::str::FromStr for LauncherType {
    type Err = PoolError;
    fn from_str(s: &str) -> Result<Self, PoolError> {
        match s {
            "process" => Ok(LauncherType::Process),
            "docker" => Ok(LauncherType::Docker),
            "kubernetes" | "k8s" => Ok(LauncherType::Kubernetes),
            other => Err(PoolError(vec![format!(
                "type: {other:?} is not a launcher type (fix: process, docker or kubernetes)"
            )])),
        }
    }
}

/// A pool, as stored, listed, exported and imported.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    pub name: String,
    #[serde(default, rename = "type")]
    pub launcher: LauncherType,
    /// Launcher fields (`--set key=value`): see [`FIELDS`].
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub set: BTreeMap<String, String>,
    /// The MiniCluster YAML it launches; without one, a MiniCluster of `size` brokers
    /// running the job's command (the `size` and `image` fields of `set`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    #[serde(default, skip_serializing_if = "Tags::is_empty")]
    pub provides: Tags,
    #[serde(default, skip_serializing_if = "Tags::is_empty")]
    pub accepts: Tags,
    /// MiniClusters of this pool running at once.
    #[serde(default = "default_max_launches")]
    pub max_launches: u32,
    /// Seconds a warm MiniCluster with no work is kept before it is torn down; 0 (the
    /// default): no warm reuse, every job gets a fresh MiniCluster.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: u64,
    /// Disabled pools (draining) get no new work; running work finishes.
    #[serde(default = "yes")]
    pub enabled: bool,
}

pub const DEFAULT_MAX_LAUNCHES: u32 = 4;
pub const DEFAULT_IDLE_TIMEOUT: u64 = 0;

fn default_max_launches() -> u32 {
    DEFAULT_MAX_LAUNCHES
}
fn default_idle_timeout() -> u64 {
    DEFAULT_IDLE_TIMEOUT
}
fn yes() -> bool {
    true
}

impl Pool {
    /// A pool with the defaults of `pools create`.
    pub fn new(name: impl Into<String>, launcher: LauncherType) -> Pool {
        Pool {
            name: name.into(),
            launcher,
            max_launches: DEFAULT_MAX_LAUNCHES,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            enabled: true,
            ..Pool::default()
        }
    }
}

/// Every problem of a pool, one line each, naming the field and the fix.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("pool is not valid:\n  - {}", .0.join("\n  - "))]
pub struct PoolError(pub Vec<String>);

/// The kind of value a launcher field takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldKind {
    Text,
    /// A whole number of at least 1.
    Count,
    /// A JSON value (lists and maps: tolerations, resources, volumes, labels…).
    Json,
    OneOf(&'static [&'static str]),
}

/// The launcher fields each type takes (`--set key=value`), with what they mean. Fields of
/// every type are in `COMMON`.
/// Fields of a launcher type: name, kind, what it means.
pub type FieldTable = &'static [(&'static str, FieldKind, &'static str)];

pub const COMMON: FieldTable = &[
    (
        "size",
        FieldKind::Count,
        "brokers of each MiniCluster (default: the job's --size, else 1)",
    ),
    (
        "image",
        FieldKind::Text,
        "container image (docker, kubernetes)",
    ),
    (
        "serverHost",
        FieldKind::Text,
        "address the launched MiniClusters reach the control plane at (stored; not used yet)",
    ),
    (
        "concurrency",
        FieldKind::Count,
        "jobs a warm MiniCluster runs at once (stored; one at a time for now)",
    ),
];

pub const FIELDS: &[(LauncherType, FieldTable)] = &[
    (
        LauncherType::Process,
        &[
            (
                "directory",
                FieldKind::Text,
                "where launches keep their state (default: the control plane's state directory)",
            ),
            (
                "flux",
                FieldKind::Text,
                "the flux the brokers run (default: flux on PATH)",
            ),
            (
                "entrypoint",
                FieldKind::Text,
                "the entrypoint binary (default: beside minicluster)",
            ),
        ],
    ),
    (
        LauncherType::Docker,
        &[(
            "dockerHost",
            FieldKind::Text,
            "the Docker Engine (default: $DOCKER_HOST, else the local socket)",
        )],
    ),
    (
        LauncherType::Kubernetes,
        &[
            (
                "namespace",
                FieldKind::Text,
                "namespace of the MiniClusters",
            ),
            (
                "serviceAccount",
                FieldKind::Text,
                "service account of the broker pods",
            ),
            ("nodeSelector", FieldKind::Json, "node selector, a JSON map"),
            ("tolerations", FieldKind::Json, "tolerations, a JSON list"),
            (
                "resources",
                FieldKind::Json,
                "container resources, a JSON map",
            ),
            (
                "imagePullPolicy",
                FieldKind::OneOf(&["Always", "IfNotPresent", "Never"]),
                "image pull policy",
            ),
            (
                "labels",
                FieldKind::Json,
                "labels of the MiniCluster, a JSON map",
            ),
            (
                "annotations",
                FieldKind::Json,
                "annotations of the MiniCluster, a JSON map",
            ),
            (
                "activeDeadlineSeconds",
                FieldKind::Count,
                "deadline of each MiniCluster's Job",
            ),
            (
                "volumes",
                FieldKind::Json,
                "volumes of the MiniCluster, a JSON map",
            ),
            (
                "noOperator",
                FieldKind::OneOf(&["true", "false"]),
                "apply the objects directly instead of a MiniCluster",
            ),
        ],
    ),
];

fn fields_of(t: LauncherType) -> FieldTable {
    FIELDS
        .iter()
        .find(|(k, _)| *k == t)
        .map_or(&[], |(_, f)| *f)
}

/// The kind of a field for a launcher type, if the type takes it.
pub fn field_kind(t: LauncherType, key: &str) -> Option<FieldKind> {
    if let Some(var) = key.strip_prefix("env.") {
        return (!var.is_empty()).then_some(FieldKind::Text);
    }
    COMMON
        .iter()
        .chain(fields_of(t))
        .find(|(k, _, _)| *k == key)
        .map(|(_, kind, _)| *kind)
}

/// Whether a name is usable for a pool or queue: a DNS label (it becomes part of the names of
/// MiniClusters, containers and Kubernetes objects).
pub fn valid_name(name: &str) -> bool {
    // It starts MiniCluster names (`<pool>-j<job>`), which must start with a letter.
    name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.len() <= 40
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-')
}

pub fn name_problem(what: &str, name: &str) -> Option<String> {
    (!valid_name(name)).then(|| {
        format!(
            "name: {name:?} is not a valid {what} name (fix: 1-40 lowercase letters, digits and '-', starting with a letter and not ending with '-', e.g. gpu-a100)"
        )
    })
}

/// Checks a pool: its name, every launcher field against its type, the limits and the
/// template (which must be a MiniCluster YAML document; the caller validates its spec).
pub fn validate(p: &Pool) -> Result<(), PoolError> {
    let mut problems = Vec::new();
    problems.extend(name_problem("pool", &p.name));
    for (key, value) in &p.set {
        let Some(kind) = field_kind(p.launcher, key) else {
            let known: Vec<&str> = COMMON
                .iter()
                .chain(fields_of(p.launcher))
                .map(|(k, _, _)| *k)
                .collect();
            problems.push(format!(
                "set.{key}: a {} pool has no field {key:?} (fix: one of {}, or env.NAME)",
                p.launcher,
                known.join(", ")
            ));
            continue;
        };
        match kind {
            FieldKind::Text if value.trim().is_empty() => {
                problems.push(format!("set.{key}: is empty (fix: give a value or leave it out)"))
            }
            FieldKind::Count if value.parse::<u32>().map_or(true, |n| n == 0) => problems.push(
                format!("set.{key}: {value:?} is not a whole number of at least 1 (fix: e.g. {key}=4)"),
            ),
            FieldKind::Json if serde_json::from_str::<serde_json::Value>(value).is_err() => problems
                .push(format!(
                    "set.{key}: {value:?} is not JSON (fix: e.g. {key}='{{\"disktype\":\"ssd\"}}' or '[…]')"
                )),
            FieldKind::OneOf(allowed) if !allowed.contains(&value.as_str()) => problems.push(
                format!("set.{key}: {value:?} is not one of {} (fix: pick one)", allowed.join(", ")),
            ),
            _ => {}
        }
    }
    if p.launcher == LauncherType::Docker && p.template.is_none() && !p.set.contains_key("image") {
        problems.push(
            "set.image: a docker pool needs an image (fix: --set image=IMAGE, or -f a template with one)"
                .into(),
        );
    }
    if p.max_launches == 0 {
        problems.push(
            "max_launches: is 0, so the pool could never run anything (fix: 1 or more; disable the pool to stop it)"
                .into(),
        );
    }
    if let Some(t) = &p.template {
        match serde_norway::from_str::<serde_json::Value>(t) {
            Ok(v) if v.get("kind").and_then(|k| k.as_str()) == Some("MiniCluster") => {}
            Ok(_) => problems.push(
                "template: is not a MiniCluster (fix: a flux-framework.org/v1alpha2 MiniCluster YAML)".into(),
            ),
            Err(e) => problems.push(format!("template: is not YAML: {e}")),
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(PoolError(problems))
    }
}

/// Parses `--set key=value` flags (several keys may share a flag: `size=2,image=x`).
pub fn parse_sets<S: AsRef<str>>(flags: &[S]) -> Result<BTreeMap<String, String>, PoolError> {
    let mut out = BTreeMap::new();
    let mut problems = Vec::new();
    for flag in flags {
        let flag = flag.as_ref();
        // A JSON value may hold commas; split on commas only when every piece is key=value.
        let pieces: Vec<&str> = if flag.trim_start().contains(['{', '[']) {
            vec![flag]
        } else {
            flag.split(',').collect()
        };
        for piece in pieces {
            match piece.split_once('=') {
                Some((k, v)) if !k.trim().is_empty() => {
                    out.insert(k.trim().to_string(), v.to_string());
                }
                _ => problems.push(format!(
                    "--set {piece:?}: is not key=value (fix: e.g. --set image=flux:latest)"
                )),
            }
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(PoolError(problems))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_round_trip() {
        let p: Pool = serde_json::from_str(r#"{"name": "cpu"}"#).unwrap();
        assert_eq!(p, Pool::new("cpu", LauncherType::Process));
        let text = toml::to_string(&p).unwrap();
        assert_eq!(toml::from_str::<Pool>(&text).unwrap(), p);
        let e = serde_json::from_str::<Pool>(r#"{"name": "cpu", "sizee": 3}"#).unwrap_err();
        assert!(e.to_string().contains("sizee"), "{e}");
    }

    #[test]
    fn every_problem_named_with_its_fix() {
        let mut p = Pool::new("Bad Name", LauncherType::Docker);
        p.set = parse_sets(&["dockerHost=", "directory=/x", "size=0", "env.A=1"]).unwrap();
        p.max_launches = 0;
        p.template = Some("kind: Pod\n".into());
        let e = validate(&p).unwrap_err();
        let text = e.to_string();
        for want in [
            "name: \"Bad Name\" is not a valid pool name",
            "set.dockerHost: is empty",
            "set.directory: a docker pool has no field \"directory\"",
            "set.size: \"0\" is not a whole number",
            "max_launches: is 0",
            "template: is not a MiniCluster",
        ] {
            assert!(text.contains(want), "{want} missing in {text}");
        }
        assert_eq!(e.0.len(), 6, "{text}");
    }

    #[test]
    fn names_start_with_a_letter() {
        for good in ["cpu", "gpu-a100", "a1"] {
            assert!(valid_name(good), "{good}");
        }
        for bad in ["", "1gpu", "-a", "a-", "A", "a b", &"a".repeat(41)] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn kubernetes_fields() {
        let mut p = Pool::new("k", LauncherType::Kubernetes);
        p.set = parse_sets(&[
            "namespace=hpc",
            r#"nodeSelector={"disktype":"ssd","zone":"a"}"#,
            "imagePullPolicy=Never",
        ])
        .unwrap();
        validate(&p).unwrap();
        p.set.insert("imagePullPolicy".into(), "Sometimes".into());
        p.set.insert("tolerations".into(), "[oops".into());
        let text = validate(&p).unwrap_err().to_string();
        assert!(
            text.contains("not one of Always, IfNotPresent, Never"),
            "{text}"
        );
        assert!(text.contains("set.tolerations"), "{text}");
    }

    #[test]
    fn docker_needs_an_image_and_sets_parse() {
        let p = Pool::new("d", LauncherType::Docker);
        assert!(
            validate(&p)
                .unwrap_err()
                .to_string()
                .contains("needs an image")
        );
        assert!(parse_sets(&["novalue"]).is_err());
        let s = parse_sets(&["size=2,image=flux:0.88"]).unwrap();
        assert_eq!(s["size"], "2");
        assert_eq!(s["image"], "flux:0.88");
        assert!("lambda".parse::<LauncherType>().is_err());
    }
}
