//! The flux-restful-api shapes of jobs, and turning a submit request into a jobspec.

use std::collections::BTreeMap;

use flux_client::{JobRequest, Jobspec};
use serde_json::{Map, Value, json};

use crate::backend::RawJob;
use crate::error::{RestError, Result};

/// Longest command we take (bytes). Flux would take more; nobody types more.
pub const MAX_COMMAND_BYTES: usize = 64 * 1024;
/// Largest count of tasks, nodes, cores or GPUs we pass on.
pub const MAX_COUNT: i64 = 1 << 31;

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

/// A parsed, validated submission.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Submission {
    pub command: Vec<String>,
    pub num_tasks: Option<u64>,
    pub cores_per_task: Option<u64>,
    pub gpus_per_task: Option<u64>,
    pub num_nodes: Option<u64>,
    pub exclusive: bool,
    pub option_flags: BTreeMap<String, String>,
    pub envars: BTreeMap<String, String>,
    pub workdir: Option<String>,
    pub runtime: u64,
    pub is_launcher: bool,
}

/// What the server offers, for validation.
#[derive(Debug, Clone, Copy)]
pub struct Capacity {
    pub nodes: u64,
    pub gpus: u64,
}

/// The names flux-restful-api knows; anything else is reported.
const KNOWN: &[&str] = &[
    "command",
    "num_tasks",
    "cores_per_task",
    "gpus_per_task",
    "num_nodes",
    "exclusive",
    "option_flags",
    "envars",
    "workdir",
    "runtime",
    "is_launcher",
];

/// Whether a parameter map holds a command at all (the first check flux-restful makes).
pub fn has_command(params: &Map<String, Value>) -> bool {
    match params.get("command") {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) => !s.trim().is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(_) => true,
    }
}

fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn parse_int(key: &str, v: &Value, errors: &mut Vec<String>) -> Option<i64> {
    let n = match v {
        Value::Null => return None,
        Value::String(s) if s.trim().is_empty() => return None,
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9e15)
                .map(|f| f as i64)
        }),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    if n.is_none() {
        errors.push(format!(
            "Parameter {key} must be an integer, found {:?}",
            text_of(v)
        ));
    }
    n
}

fn parse_bool(key: &str, v: &Value, errors: &mut Vec<String>) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) if n.as_i64() == Some(1) => true,
        Value::Number(n) if n.as_i64() == Some(0) => false,
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" | "t" | "y" => true,
            "false" | "0" | "no" | "off" | "f" | "n" | "" => false,
            _ => {
                errors.push(format!(
                    "Parameter {key} must be true or false, found {s:?}"
                ));
                false
            }
        },
        other => {
            errors.push(format!(
                "Parameter {key} must be true or false, found {}",
                text_of(other)
            ));
            false
        }
    }
}

/// A string-to-string map from a JSON object, a JSON text of one, or the Python `repr` of a
/// dict of strings (what flux-restful-client puts in the query string).
fn parse_map(key: &str, v: &Value, errors: &mut Vec<String>) -> BTreeMap<String, String> {
    let obj = match v {
        Value::Null => return BTreeMap::new(),
        Value::Object(m) => Some(m.clone()),
        Value::String(s) if s.trim().is_empty() => return BTreeMap::new(),
        Value::String(s) => match serde_json::from_str::<Value>(s) {
            Ok(Value::Object(m)) => Some(m),
            _ => python_dict(s),
        },
        _ => None,
    };
    let Some(obj) = obj else {
        errors.push(if key == "envars" {
            "Environment variables must be key/value pairs (dict)".to_string()
        } else {
            format!("Parameter {key} must be key/value pairs")
        });
        return BTreeMap::new();
    };
    let mut out = BTreeMap::new();
    for (k, v) in obj {
        if v.is_object() || v.is_array() {
            errors.push(format!(
                "Parameter {key}: the value of {k} must be a string"
            ));
            continue;
        }
        out.insert(k, text_of(&v));
    }
    out
}

/// `{'A': 'b', "C": 'd'}`: a dict of string keys and string, number or bool values.
fn python_dict(s: &str) -> Option<Map<String, Value>> {
    let mut chars = s.trim().chars().peekable();
    let mut out = Map::new();
    let skip_ws = |c: &mut std::iter::Peekable<std::str::Chars>| {
        while c.peek().is_some_and(|c| c.is_whitespace()) {
            c.next();
        }
    };
    fn string(c: &mut std::iter::Peekable<std::str::Chars>) -> Option<String> {
        let quote = c.next().filter(|q| *q == '\'' || *q == '"')?;
        let mut s = String::new();
        loop {
            match c.next()? {
                '\\' => match c.next()? {
                    'n' => s.push('\n'),
                    't' => s.push('\t'),
                    other => s.push(other),
                },
                ch if ch == quote => return Some(s),
                ch => s.push(ch),
            }
        }
    }
    if chars.next()? != '{' {
        return None;
    }
    skip_ws(&mut chars);
    if chars.peek() == Some(&'}') {
        chars.next();
        return chars.next().is_none().then_some(out);
    }
    loop {
        skip_ws(&mut chars);
        let k = string(&mut chars)?;
        skip_ws(&mut chars);
        if chars.next()? != ':' {
            return None;
        }
        skip_ws(&mut chars);
        let v = if matches!(chars.peek(), Some('\'') | Some('"')) {
            Value::String(string(&mut chars)?)
        } else {
            let mut lit = String::new();
            while chars.peek().is_some_and(|c| *c != ',' && *c != '}') {
                lit.push(chars.next()?);
            }
            let lit = lit.trim();
            match lit {
                "True" => Value::Bool(true),
                "False" => Value::Bool(false),
                _ if lit.parse::<f64>().is_ok() => Value::String(lit.to_string()),
                _ => return None,
            }
        };
        out.insert(k, v);
        skip_ws(&mut chars);
        match chars.next()? {
            ',' => continue,
            '}' => break,
            _ => return None,
        }
    }
    skip_ws(&mut chars);
    chars.next().is_none().then_some(out)
}

fn parse_flags(v: &Value, errors: &mut Vec<String>) -> BTreeMap<String, String> {
    match v {
        Value::String(s) => {
            let mut out = BTreeMap::new();
            for flag in s.split(',').map(str::trim).filter(|f| !f.is_empty()) {
                match flag.split_once('=') {
                    Some((k, v)) => {
                        out.insert(k.trim().to_string(), v.to_string());
                    }
                    None => errors.push(format!(
                        "Option flag {flag:?} has no '=': give option flags as name=value pairs separated by commas"
                    )),
                }
            }
            out
        }
        other => parse_map("option_flags", other, errors),
    }
}

/// Parse and check the submit parameters, reporting every problem at once.
pub fn parse_submission(params: &Map<String, Value>, cap: Capacity) -> Result<Submission> {
    let mut errors = Vec::new();
    let mut sub = Submission::default();
    for key in params.keys() {
        if !KNOWN.contains(&key.as_str()) {
            errors.push(format!(
                "Unknown parameter {key:?}; known are: {}",
                KNOWN.join(", ")
            ));
        }
    }
    match params.get("command") {
        None | Some(Value::Null) => errors.push("'command' is required.".into()),
        Some(Value::Array(words)) => {
            let mut out = Vec::new();
            for w in words {
                match w {
                    Value::String(s) => out.push(s.clone()),
                    Value::Number(n) => out.push(n.to_string()),
                    _ => errors.push("'command' as a list holds only strings and numbers".into()),
                }
            }
            sub.command = out;
        }
        Some(Value::String(s)) => match shlex::split(s) {
            Some(words) => sub.command = words,
            None => errors.push(
                "'command' could not be split into words: close every quote (shell quoting rules)"
                    .into(),
            ),
        },
        Some(other) => errors.push(format!(
            "'command' must be a string or a list, found {}",
            text_of(other)
        )),
    }
    let total: usize = sub.command.iter().map(|w| w.len() + 1).sum();
    if total > MAX_COMMAND_BYTES {
        errors.push(format!(
            "'command' is {total} bytes long; the limit is {MAX_COMMAND_BYTES} bytes"
        ));
        sub.command.clear();
    } else if sub.command.is_empty() && params.get("command").is_some_and(|v| !v.is_null()) {
        errors.push("'command' is required.".into());
    } else if sub.command.iter().any(|w| w.contains('\0')) {
        errors.push("'command' must not contain NUL characters".into());
    }

    let mut count = |key: &str, out: &mut Option<u64>| {
        if let Some(v) = params.get(key)
            && let Some(n) = parse_int(key, v, &mut errors)
        {
            if n < 1 {
                errors.push(format!("Parameter {key} must be >= 1"));
            } else if n > MAX_COUNT {
                errors.push(format!("Parameter {key} must be <= {MAX_COUNT}"));
            } else {
                *out = Some(n as u64);
            }
        }
    };
    count("num_tasks", &mut sub.num_tasks);
    count("cores_per_task", &mut sub.cores_per_task);
    count("gpus_per_task", &mut sub.gpus_per_task);
    count("num_nodes", &mut sub.num_nodes);

    if let Some(n) = sub.num_nodes
        && n > cap.nodes
    {
        errors.push(format!(
            "The server only has {} nodes, you requested {n}",
            cap.nodes
        ));
    }
    if sub.gpus_per_task.is_some() && cap.gpus == 0 {
        errors.push("This server does not support gpus: gpus_per_task cannot be set.".into());
    }
    if let Some(v) = params.get("runtime")
        && let Some(n) = parse_int("runtime", v, &mut errors)
    {
        if n < 0 {
            errors.push(format!("Runtime must be >= 0, found {n}"));
        } else {
            sub.runtime = n as u64;
        }
    }
    if let Some(v) = params.get("exclusive") {
        sub.exclusive = parse_bool("exclusive", v, &mut errors);
    }
    if let Some(v) = params.get("is_launcher") {
        sub.is_launcher = parse_bool("is_launcher", v, &mut errors);
    }
    if let Some(v) = params.get("option_flags") {
        sub.option_flags = parse_flags(v, &mut errors);
        for option in sub.option_flags.keys() {
            if option.contains("-o") {
                errors.push(format!(
                    "Please provide keys without -o, {option} is invalid."
                ));
            }
        }
    }
    if let Some(v) = params.get("envars") {
        sub.envars = parse_map("envars", v, &mut errors);
        for k in sub.envars.keys() {
            if k.is_empty() || k.contains('=') || k.contains('\0') {
                errors.push(format!(
                    "Environment variable name {k:?} is not valid (no '=', not empty)"
                ));
            }
        }
    }
    match params.get("workdir") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if s.is_empty() => {}
        Some(Value::String(s)) => sub.workdir = Some(s.clone()),
        Some(other) => errors.push(format!(
            "Parameter workdir must be a path, found {}",
            text_of(other)
        )),
    }
    if errors.is_empty() {
        Ok(sub)
    } else {
        Err(RestError::InvalidSubmit(errors))
    }
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
    if sub.exclusive && sub.num_nodes.is_none() {
        // flux-restful passes exclusive only with nodes; a bare exclusive means nothing.
        req.exclusive = false;
    }
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

    const CAP: Capacity = Capacity { nodes: 2, gpus: 0 };

    fn params(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn query_strings_parse_like_flux_restful() {
        let s = parse_submission(
            &params(json!({"command": "echo 'hello world'", "num_tasks": "2",
                "exclusive": "true", "option_flags": "cpu-affinity=per-task,verbose=1",
                "envars": "{'FOO': 'bar', 'N': 3}", "runtime": "10", "num_nodes": "1"})),
            CAP,
        )
        .unwrap();
        assert_eq!(s.command, vec!["echo", "hello world"]);
        assert_eq!(s.num_tasks, Some(2));
        assert!(s.exclusive);
        assert_eq!(s.option_flags["cpu-affinity"], "per-task");
        assert_eq!(s.envars["FOO"], "bar");
        assert_eq!(s.envars["N"], "3");
        assert_eq!(s.runtime, 10);
    }

    #[test]
    fn every_problem_is_reported() {
        let Err(RestError::InvalidSubmit(errors)) = parse_submission(
            &params(
                json!({"command": "x", "num_tasks": "-1", "cores_per_task": "abc",
                "num_nodes": 5, "gpus_per_task": 1, "runtime": -3,
                "option_flags": {"-ompi": "x"}, "envars": [1], "bogus": 1}),
            ),
            CAP,
        ) else {
            panic!("accepted")
        };
        let all = errors.join("\n");
        for needle in [
            "num_tasks must be >= 1",
            "cores_per_task must be an integer",
            "only has 2 nodes, you requested 5",
            "does not support gpus",
            "Runtime must be >= 0, found -3",
            "keys without -o",
            "Environment variables must be key/value pairs",
            "Unknown parameter \"bogus\"",
        ] {
            assert!(all.contains(needle), "{needle} missing in {all}");
        }
    }

    #[test]
    fn huge_and_unbalanced_commands_are_refused() {
        let huge = "a".repeat(MAX_COMMAND_BYTES + 10);
        assert!(parse_submission(&params(json!({ "command": huge })), CAP).is_err());
        assert!(parse_submission(&params(json!({"command": "echo 'oops"})), CAP).is_err());
    }

    #[test]
    fn python_dicts() {
        assert_eq!(
            python_dict("{'A': 'b', \"C\": True}").unwrap(),
            params(json!({"A": "b", "C": true}))
        );
        assert_eq!(python_dict("{}").unwrap(), Map::new());
        assert!(python_dict("{'A': x}").is_none());
        assert!(python_dict("{'A': 'b'} trailing").is_none());
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
        let s = parse_submission(
            &params(json!({"command": "hostname", "workdir": "/w"})),
            CAP,
        )
        .unwrap();
        let spec = jobspec(&s, BTreeMap::new(), Some("alice"), "/tmp").unwrap();
        let v = serde_json::to_value(&spec).unwrap();
        assert_eq!(owner_of(&v), Some("alice"));
        assert_eq!(v["attributes"]["system"]["cwd"], "/w");
    }
}
