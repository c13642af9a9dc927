//! The flux-restful-api shapes of jobs, and a checked submission's environment and jobspec.

use std::collections::BTreeMap;

use flux_client::{JobRequest, Jobspec};
use serde_json::{Map, Value, json};

use crate::backend::RawJob;
use crate::error::{RestError, Result};
use crate::submit::Submission;

/// The jobspec user attribute naming the API user who submitted a job.
pub const OWNER_ATTRIBUTE: &str = "restful_user";

pub fn state_name(bit: u64) -> &'static str {
    match bit {
        1 => "NEW",
        2 => "DEPEND",
        4 => "PRIORITY",
        8 => "SCHED",
        16 => "RUN",
        32 => "CLEANUP",
        64 => "INACTIVE",
        _ => "UNKNOWN",
    }
}

pub fn result_name(bit: u64) -> &'static str {
    match bit {
        1 => "COMPLETED",
        2 => "FAILED",
        4 => "CANCELED",
        8 => "TIMEOUT",
        _ => "",
    }
}

fn num(v: Option<&Value>) -> Option<f64> {
    v.and_then(Value::as_f64)
}

/// A job's details as `GET /v1/jobs/{id}` answers them: job-list's attributes with the state
/// and result as names, and the derived `returncode`, `runtime` and `exception`.
pub fn job_details(raw: &RawJob, now: f64) -> Map<String, Value> {
    let mut j = raw.clone();
    let state = raw.get("state").and_then(Value::as_u64).unwrap_or(0);
    j.insert("state".into(), json!(state_name(state)));
    let result = raw.get("result").and_then(Value::as_u64);
    j.insert(
        "result".into(),
        json!(result.map(result_name).unwrap_or_default()),
    );
    let waitstatus = raw.get("waitstatus").and_then(Value::as_i64);
    let returncode = match waitstatus {
        Some(ws) if ws & 0x7f != 0 => json!(-(ws & 0x7f)),
        Some(ws) => json!((ws >> 8) & 0xff),
        None if result == Some(4) => json!(-128),
        None => json!(""),
    };
    j.insert("returncode".into(), returncode);
    let t_run = num(raw.get("t_run")).unwrap_or(0.0);
    let runtime = if t_run > 0.0 {
        let end = num(raw.get("t_cleanup"))
            .filter(|t| *t > 0.0)
            .unwrap_or(now);
        (end - t_run).max(0.0)
    } else {
        0.0
    };
    j.insert("runtime".into(), json!(runtime));
    for key in ["nnodes", "priority", "waitstatus", "nodelist", "duration"] {
        j.entry(key).or_insert(json!(""));
    }
    let s = |k: &str| raw.get(k).cloned().unwrap_or(json!(""));
    j.insert(
        "exception".into(),
        json!({
            "occurred": raw.get("exception_occurred").cloned().unwrap_or(json!(false)),
            "severity": s("exception_severity"),
            "type": s("exception_type"),
            "note": s("exception_note"),
        }),
    );
    j
}

/// The details with the two keys the jobs table needs filled in.
pub fn job_row(raw: &RawJob, now: f64) -> Map<String, Value> {
    let mut j = job_details(raw, now);
    for key in ["ranks", "expiration"] {
        j.entry(key).or_insert(json!(""));
    }
    j
}

pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Whether a job's details match a search text (case-insensitive, over every value).
pub fn matches_search(job: &Map<String, Value>, query: &str) -> bool {
    let q = query.to_lowercase();
    job.values().any(|v| {
        let text = match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        text.to_lowercase().contains(&q)
    })
}

/// Server variables a job gets (besides those it asks for); never the server's secrets.
const JOB_ENV_ALLOWLIST: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "LANG",
    "LANGUAGE",
    "LC_*",
    "TERM",
    "TZ",
    "TMPDIR",
    "PYTHONPATH",
    "LD_LIBRARY_PATH",
    "MANPATH",
    "LUA_PATH",
    "LUA_CPATH",
    "FLUX_EXEC_PATH",
    "FLUX_MODULE_PATH",
    "FLUX_CONNECTOR_PATH",
    "FLUX_PMI_LIBRARY_PATH",
];

fn glob_match(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((pre, post)) => {
            name.len() >= pre.len() + post.len() && name.starts_with(pre) && name.ends_with(post)
        }
    }
}

/// The job's environment: allowlisted server variables (plus `extra_patterns`), then the
/// variables the request asks for.
pub fn job_environment(
    server: impl Iterator<Item = (String, String)>,
    extra_patterns: &[String],
    requested: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = server
        .filter(|(k, _)| {
            JOB_ENV_ALLOWLIST.iter().any(|p| glob_match(p, k))
                || extra_patterns.iter().any(|p| glob_match(p, k))
        })
        .collect();
    env.extend(requested.clone());
    env
}

/// The jobspec of a submission, as flux-restful builds it (`JobspecV1.from_command`).
pub fn jobspec(
    sub: &Submission,
    environment: BTreeMap<String, String>,
    owner: Option<&str>,
    default_cwd: &str,
) -> Result<Jobspec> {
    let mut req = JobRequest::new(sub.command.clone());
    req.tasks = sub.num_tasks;
    req.nodes = sub.num_nodes;
    req.cores_per_task = sub.cores_per_task;
    req.gpus_per_task = sub.gpus_per_task;
    req.exclusive = sub.exclusive;
    req.cwd = Some(
        sub.workdir
            .clone()
            .unwrap_or_else(|| default_cwd.to_string()),
    );
    req.environment = environment;
    req.duration = (sub.runtime > 0).then_some(sub.runtime as f64);
    req.shell_options = sub
        .option_flags
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let mut spec = req
        .jobspec()
        .map_err(|e| RestError::SubmitFailed(e.to_string().replace("invalid jobspec: ", "")))?;
    if let Some(user) = owner {
        spec.attributes
            .user
            .insert(OWNER_ATTRIBUTE.into(), Value::String(user.into()));
    }
    Ok(spec)
}

/// Who submitted a job through us, from its jobspec.
pub fn owner_of(jobspec: &Value) -> Option<&str> {
    jobspec["attributes"]["user"][OWNER_ATTRIBUTE].as_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn details_name_the_state_and_result() {
        let raw = params(
            json!({"id": 5, "state": 64, "result": 4, "waitstatus": 36608,
            "t_run": 10.0, "t_cleanup": 12.5, "exception_occurred": true,
            "exception_type": "cancel", "exception_severity": 0, "exception_note": ""}),
        );
        let d = job_details(&raw, 100.0);
        assert_eq!(d["state"], "INACTIVE");
        assert_eq!(d["result"], "CANCELED");
        assert_eq!(d["returncode"], 143);
        assert_eq!(d["runtime"], 2.5);
        assert_eq!(d["exception"]["type"], "cancel");
        let running = job_details(&params(json!({"id": 6, "state": 16, "t_run": 99.0})), 100.0);
        assert_eq!(running["result"], "");
        assert_eq!(running["returncode"], "");
        assert_eq!(running["runtime"], 1.0);
        assert_eq!(running["duration"], "");
    }

    #[test]
    fn environment_keeps_only_the_allowlist_and_the_request() {
        let server = vec![
            ("PATH".to_string(), "/bin".to_string()),
            ("FLUX_SECRET_KEY".to_string(), "s3cret".to_string()),
            ("LC_ALL".to_string(), "C".to_string()),
            ("MY_VAR".to_string(), "1".to_string()),
        ];
        let req = BTreeMap::from([("FOO".to_string(), "bar".to_string())]);
        let env = job_environment(server.into_iter(), &["MY_*".to_string()], &req);
        assert_eq!(
            env.keys().collect::<Vec<_>>(),
            vec!["FOO", "LC_ALL", "MY_VAR", "PATH"]
        );
    }

    #[test]
    fn jobspec_records_the_owner() {
        let s = Submission {
            command: vec!["hostname".into()],
            workdir: Some("/w".into()),
            ..Default::default()
        };
        let spec = jobspec(&s, BTreeMap::new(), Some("alice"), "/tmp").unwrap();
        let v = serde_json::to_value(&spec).unwrap();
        assert_eq!(owner_of(&v), Some("alice"));
        assert_eq!(v["attributes"]["system"]["cwd"], "/w");
    }
}
