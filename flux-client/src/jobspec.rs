//! Version 1 jobspecs (RFC 25) built from a command line, shaped as `flux submit` shapes them,
//! and the `none` signature (a J) that job-ingest accepts from the instance owner.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// A resource vertex: `slot`, `node`, `core` or `gpu`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resource {
    #[serde(rename = "type")]
    pub kind: String,
    pub count: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub with: Vec<Resource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclusive: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub command: Vec<String>,
    pub slot: String,
    /// `{"per_slot": 1}` or `{"total": N}`.
    pub count: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Jobspec {
    pub resources: Vec<Resource>,
    pub tasks: Vec<Task>,
    pub attributes: Attributes,
    pub version: u32,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Attributes {
    pub system: System,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub user: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct System {
    /// Seconds; 0 means unlimited.
    pub duration: Value,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub environment: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub shell: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<JobMeta>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobMeta {
    pub name: String,
}

/// What to run and on what, as the `flux submit` options say it.
#[derive(Debug, Clone, Default)]
pub struct JobRequest {
    pub command: Vec<String>,
    /// `-n`: number of tasks (default 1).
    pub tasks: Option<u64>,
    /// `-N`: number of nodes to spread the tasks over.
    pub nodes: Option<u64>,
    /// `-c`: cores per task (default 1).
    pub cores_per_task: Option<u64>,
    /// `-g`: GPUs per task.
    pub gpus_per_task: Option<u64>,
    /// `-x`: whole nodes (needs `nodes`).
    pub exclusive: bool,
    pub cwd: Option<String>,
    pub environment: BTreeMap<String, String>,
    /// `-t`: time limit in seconds.
    pub duration: Option<f64>,
    /// `-o`: shell options (`{"cpu-affinity": "per-task"}` …).
    pub shell_options: Map<String, Value>,
    pub name: Option<String>,
    pub queue: Option<String>,
}

impl JobRequest {
    pub fn new<I, S>(command: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        JobRequest {
            command: command.into_iter().map(Into::into).collect(),
            ..Default::default()
        }
    }

    /// Pass this process's environment to the job, as `flux submit` does.
    pub fn inherit_env(mut self) -> Self {
        self.environment.extend(std::env::vars());
        self
    }

    /// Build the jobspec, refusing requests Flux would refuse, with the reason.
    pub fn jobspec(&self) -> Result<Jobspec> {
        let bad = |m: &str| Err(Error::Jobspec(m.to_owned()));
        if self.command.is_empty() || self.command[0].is_empty() {
            return bad("the command is empty");
        }
        let tasks = self.tasks.unwrap_or(1);
        let cores = self.cores_per_task.unwrap_or(1);
        if tasks == 0 {
            return bad("tasks must be at least 1");
        }
        if cores == 0 {
            return bad("cores per task must be at least 1");
        }
        if self.gpus_per_task == Some(0) {
            return bad("gpus per task must be at least 1 when given");
        }
        if self.exclusive && self.nodes.is_none() {
            return bad("exclusive needs a node count (nodes)");
        }
        if let Some(d) = self.duration
            && !(d.is_finite() && d >= 0.0)
        {
            return bad("duration must be a non-negative number of seconds");
        }
        let mut per_slot = vec![Resource::leaf("core", cores)];
        if let Some(g) = self.gpus_per_task {
            per_slot.push(Resource::leaf("gpu", g));
        }
        let (resources, count) = match self.nodes {
            None => (
                Resource::slot(tasks, per_slot),
                BTreeMap::from([("per_slot".to_owned(), 1)]),
            ),
            Some(0) => return bad("nodes must be at least 1 when given"),
            Some(n) if n > tasks => {
                return bad("more nodes than tasks: every node needs at least one task");
            }
            Some(n) => {
                // Tasks that do not divide evenly over the nodes are given as a total.
                let count = if tasks.is_multiple_of(n) {
                    BTreeMap::from([("per_slot".to_owned(), 1)])
                } else {
                    BTreeMap::from([("total".to_owned(), tasks)])
                };
                let node = Resource {
                    kind: "node".into(),
                    count: n,
                    with: vec![Resource::slot(tasks.div_ceil(n), per_slot)],
                    label: None,
                    exclusive: self.exclusive.then_some(true),
                };
                (node, count)
            }
        };
        let mut shell = Map::new();
        if !self.shell_options.is_empty() {
            shell.insert("options".into(), Value::Object(self.shell_options.clone()));
        }
        Ok(Jobspec {
            resources: vec![resources],
            tasks: vec![Task {
                command: self.command.clone(),
                slot: "task".into(),
                count,
            }],
            attributes: Attributes {
                system: System {
                    duration: match self.duration {
                        Some(d) if d > 0.0 => serde_json::json!(d),
                        _ => Value::from(0),
                    },
                    environment: self.environment.clone(),
                    cwd: self.cwd.clone(),
                    shell,
                    job: self.name.clone().map(|name| JobMeta { name }),
                    queue: self.queue.clone(),
                },
                user: Map::new(),
            },
            version: 1,
        })
    }
}

impl Resource {
    fn leaf(kind: &str, count: u64) -> Self {
        Resource {
            kind: kind.into(),
            count,
            with: Vec::new(),
            label: None,
            exclusive: None,
        }
    }

    fn slot(count: u64, with: Vec<Resource>) -> Self {
        Resource {
            kind: "slot".into(),
            count,
            with,
            label: Some("task".into()),
            exclusive: None,
        }
    }
}

/// Wrap jobspec bytes in the `none` signature: `base64(header).base64(jobspec).none`, where
/// the header is the NUL-separated list `version i1 userid i<uid> mechanism snone`.
pub fn sign_none(jobspec: &[u8], userid: u32) -> String {
    let header = format!("version\0i1\0userid\0i{userid}\0mechanism\0snone\0");
    format!(
        "{}.{}.none",
        BASE64.encode(header.as_bytes()),
        BASE64.encode(jobspec)
    )
}

/// Split a `none`-signed J back into its signer and jobspec bytes.
pub fn unwrap_none(j: &str) -> Result<(u32, Vec<u8>)> {
    let bad = |m: &str| Error::Jobspec(format!("not a none-signed J: {m}"));
    let rest = j
        .strip_suffix(".none")
        .ok_or_else(|| bad("no .none suffix"))?;
    let (header, payload) = rest.split_once('.').ok_or_else(|| bad("no header"))?;
    let header = BASE64
        .decode(header)
        .map_err(|_| bad("header is not base64"))?;
    let payload = BASE64
        .decode(payload)
        .map_err(|_| bad("payload is not base64"))?;
    let header = String::from_utf8(header).map_err(|_| bad("header is not text"))?;
    let items: Vec<&str> = header
        .strip_suffix('\0')
        .unwrap_or(&header)
        .split('\0')
        .collect();
    match items.as_slice() {
        ["version", "i1", "userid", uid, "mechanism", "snone"] => {
            let uid = uid
                .strip_prefix('i')
                .and_then(|d| d.parse().ok())
                .ok_or_else(|| bad("userid is not i<digits>"))?;
            Ok((uid, payload))
        }
        _ => Err(bad("header keys are not version, userid, mechanism")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_for_root_is_the_recorded_one() {
        let j = sign_none(b"{}\n", 0);
        assert_eq!(
            j,
            "dmVyc2lvbgBpMQB1c2VyaWQAaTAAbWVjaGFuaXNtAHNub25lAA==.e30K.none"
        );
        assert_eq!(unwrap_none(&j).unwrap(), (0, b"{}\n".to_vec()));
    }

    #[test]
    fn single_task_matches_flux_submit() {
        let spec = JobRequest::new(["hostname"]).jobspec().unwrap();
        let v = serde_json::to_value(&spec).unwrap();
        assert_eq!(
            v["resources"],
            serde_json::json!([{"type":"slot","count":1,"with":[{"type":"core","count":1}],"label":"task"}])
        );
        assert_eq!(
            v["tasks"],
            serde_json::json!([{"command":["hostname"],"slot":"task","count":{"per_slot":1}}])
        );
        assert_eq!(v["attributes"]["system"]["duration"], 0);
        assert_eq!(v["version"], 1);
    }

    #[test]
    fn nodes_tasks_gpus_exclusive() {
        let mut r = JobRequest::new(["mpi_app"]);
        r.tasks = Some(5);
        r.nodes = Some(2);
        r.cores_per_task = Some(2);
        r.gpus_per_task = Some(1);
        r.exclusive = true;
        r.duration = Some(60.0);
        let v = serde_json::to_value(r.jobspec().unwrap()).unwrap();
        assert_eq!(
            v["resources"],
            serde_json::json!([{"type":"node","count":2,"exclusive":true,"with":[
                {"type":"slot","count":3,"label":"task","with":[{"type":"core","count":2},{"type":"gpu","count":1}]}]}])
        );
        assert_eq!(v["tasks"][0]["count"], serde_json::json!({"total":5}));
        assert_eq!(v["attributes"]["system"]["duration"], 60.0);
    }

    #[test]
    fn impossible_requests_are_refused() {
        let mut r = JobRequest::new(["x"]);
        r.nodes = Some(3);
        r.tasks = Some(2);
        assert!(
            r.jobspec()
                .unwrap_err()
                .to_string()
                .contains("more nodes than tasks")
        );
        let mut r = JobRequest::new(["x"]);
        r.exclusive = true;
        assert!(
            r.jobspec()
                .unwrap_err()
                .to_string()
                .contains("exclusive needs")
        );
        assert!(JobRequest::new(Vec::<String>::new()).jobspec().is_err());
    }
}
