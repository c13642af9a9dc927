//! A submit request → a checked [`Submission`], in flux-restful 1.1.0's three stages:
//!
//! 1. the parameters' types (FastAPI): a value that does not parse is a 422;
//! 2. its checks of the request: `{"Message": "Invalid submit request", "Errors": [...]}` (400);
//! 3. the jobspec's refusals (Flux's `JobspecV1.from_command`), first one only:
//!    `{"Message": "There was an issue submitting that job.", "Error": ...}` (400).
//!
//! With `strict` (`--strict`), every problem of all three stages is one `Invalid submit
//! request`, with our own checks added: unknown parameters, counts below 1, option flags
//! without `=`, `envars` that do not parse.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::error::{RestError, Result};
use crate::params::{self, FieldError, Loc};

/// Longest command we take (bytes). Flux would take more; nobody types more.
pub const MAX_COMMAND_BYTES: usize = 64 * 1024;
/// Largest count of tasks, nodes, cores or GPUs we pass on.
pub const MAX_COUNT: i64 = 1 << 31;

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

/// The parameters flux-restful-api knows.
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

/// The integer parameters, in the order flux-restful declares them (its 422 lists them so).
const COUNTS: &[&str] = &["num_tasks", "cores_per_task", "gpus_per_task", "num_nodes"];

/// How to read a submission.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    pub capacity: Capacity,
    /// Report every problem as one 400 (`--strict`).
    pub strict: bool,
    /// Values came from a JSON body (the legacy whole-body submit), not the query string.
    pub from_body: bool,
}

/// The values as typed, before any check of what they mean.
#[derive(Default)]
struct Typed {
    counts: BTreeMap<&'static str, i64>,
    exclusive: bool,
    is_launcher: bool,
    runtime: i64,
    option_flags: Option<Value>,
    workdir: Option<String>,
}

fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Whether a parameter map holds a command at all (flux-restful's `if not command`).
fn has_command(params: &Map<String, Value>) -> bool {
    match params.get("command") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => false,
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(_) => true,
    }
}

/// Stage 1: every value as its declared type, in flux-restful's declaration order; what does
/// not parse is a [`FieldError`].
fn typed(params: &Map<String, Value>, loc: Loc, errors: &mut Vec<FieldError>) -> Typed {
    let given = |key: &str| params.get(key).filter(|v| !v.is_null());
    let int = |key: &str, errors: &mut Vec<FieldError>| {
        let v = given(key)?;
        let n = params::int_value(v);
        if n.is_none() {
            errors.push(FieldError::int(loc, key, v));
        }
        n
    };
    let boolean = |key: &str, errors: &mut Vec<FieldError>| {
        let v = given(key)?;
        let b = params::bool_value(v);
        if b.is_none() {
            errors.push(FieldError::bool(loc, key, v));
        }
        b
    };
    let mut t = Typed::default();
    for key in COUNTS {
        if let Some(n) = int(key, errors) {
            t.counts.insert(key, n);
        }
    }
    t.exclusive = boolean("exclusive", errors).unwrap_or(false);
    // A map of flags is only possible in a JSON body (older clients sent one).
    t.option_flags = given("option_flags").cloned();
    match given("workdir") {
        Some(Value::String(s)) => t.workdir = (!s.is_empty()).then(|| s.clone()),
        Some(other) => errors.push(FieldError::string(loc, "workdir", other)),
        None => {}
    }
    t.runtime = int("runtime", errors).unwrap_or(0);
    t.is_launcher = boolean("is_launcher", errors).unwrap_or(false);
    t
}

/// The command's words: a shell-like split of a string, or a JSON list (legacy body).
fn command_words(v: &Value) -> std::result::Result<Vec<String>, String> {
    match v {
        Value::Array(words) => words
            .iter()
            .map(|w| match w {
                Value::String(s) => Ok(s.clone()),
                Value::Number(n) => Ok(n.to_string()),
                _ => Err("'command' as a list holds only strings and numbers".to_string()),
            })
            .collect(),
        // Python's shlex says this of an unclosed quote, and flux-restful passes it on.
        other => shlex::split(&text_of(other)).ok_or_else(|| "No closing quotation".to_string()),
    }
}

/// `name=value,name2=value2` (what flux-restful takes), or a JSON object (legacy body).
/// Flags without `=` are skipped as flux-restful does, or reported when `strict`.
fn option_flags(v: &Value, strict: bool, errors: &mut Vec<String>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                out.insert(k.clone(), text_of(v));
            }
        }
        other => {
            for flag in text_of(other).split(',').filter(|f| !f.is_empty()) {
                match flag.split_once('=') {
                    Some((k, v)) => {
                        out.insert(k.to_string(), v.to_string());
                    }
                    None if strict => errors.push(format!(
                        "Option flag {flag:?} has no '=': give option flags as name=value pairs separated by commas"
                    )),
                    None => {}
                }
            }
        }
    }
    out
}

/// A string-to-string map from a JSON object, a JSON text of one, or the Python `repr` of a
/// dict (what the published clients put in the query string); `None` when it is none of them.
fn string_map(v: &Value) -> Option<std::result::Result<BTreeMap<String, String>, String>> {
    let obj = match v {
        Value::Object(m) => m.clone(),
        Value::String(s) if s.trim().is_empty() => Map::new(),
        Value::String(s) => match serde_json::from_str::<Value>(s) {
            Ok(Value::Object(m)) => m,
            _ => python_dict(s)?,
        },
        _ => return None,
    };
    let mut out = BTreeMap::new();
    for (k, v) in obj {
        if v.is_object() || v.is_array() {
            return Some(Err(format!(
                "Environment variable {k}: the value must be a string"
            )));
        }
        out.insert(k, text_of(&v));
    }
    Some(Ok(out))
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

/// Stage 3: what Flux's jobspec builder refuses, in its order, with its words.
fn jobspec_refusal(
    t: &Typed,
    command: &std::result::Result<Vec<String>, String>,
) -> Option<String> {
    if let Err(e) = command {
        return Some(e.clone());
    }
    let tasks = t.counts.get("num_tasks").copied().unwrap_or(1);
    if tasks < 1 {
        return Some("task count must be a integer >= 1".into());
    }
    if t.counts.get("cores_per_task").is_some_and(|c| *c < 1) {
        return Some("cores per task must be an integer >= 1".into());
    }
    match t.counts.get("num_nodes") {
        Some(n) if *n < 1 => Some("node count must be an integer >= 1 (if set)".into()),
        Some(n) if *n > tasks => Some("node count must not be greater than task count".into()),
        Some(_) => None,
        None if t.exclusive => Some("exclusive can only be set with a node count".into()),
        None => None,
    }
}

/// Parse and check the submit parameters (see the module documentation for the order).
pub fn parse_submission(params: &Map<String, Value>, rules: Rules) -> Result<Submission> {
    let loc = if rules.from_body {
        Loc::Body
    } else {
        Loc::Query
    };
    let mut type_errors = Vec::new();
    let t = typed(params, loc, &mut type_errors);
    if !rules.strict && !type_errors.is_empty() {
        return Err(RestError::Unprocessable(type_errors));
    }
    if !has_command(params) {
        return Err(RestError::MissingCommand);
    }
    let mut errors: Vec<String> = type_errors.iter().map(FieldError::describe).collect();
    if rules.strict {
        for key in params.keys().filter(|k| !KNOWN.contains(&k.as_str())) {
            errors.push(format!(
                "Unknown parameter {key:?}; known are: {}",
                KNOWN.join(", ")
            ));
        }
    }
    let command = params
        .get("command")
        .map(command_words)
        .unwrap_or(Ok(Vec::new()));
    let mut sub = Submission {
        exclusive: t.exclusive,
        is_launcher: t.is_launcher,
        workdir: t.workdir.clone(),
        ..Default::default()
    };
    match &command {
        Ok(words) => {
            let total: usize = words.iter().map(|w| w.len() + 1).sum();
            if total > MAX_COMMAND_BYTES {
                errors.push(format!(
                    "'command' is {total} bytes long; the limit is {MAX_COMMAND_BYTES} bytes"
                ));
            } else if words.is_empty() {
                errors.push("'command' is required.".into());
            } else if words.iter().any(|w| w.contains('\0')) {
                errors.push("'command' must not contain NUL characters".into());
            } else {
                sub.command = words.clone();
            }
        }
        Err(e) if rules.strict => errors.push(format!(
            "'command' could not be split into words ({e}): close every quote (shell quoting rules)"
        )),
        Err(_) => {}
    }

    // Stage 2, in flux-restful's order.
    let nodes = t.counts.get("num_nodes").copied();
    if let Some(n) = nodes
        && n > 0
        && n as u64 > rules.capacity.nodes
    {
        errors.push(format!(
            "The server only has {} nodes, you requested {n}",
            rules.capacity.nodes
        ));
    }
    if let Some(v) = &t.option_flags {
        sub.option_flags = option_flags(v, rules.strict, &mut errors);
        for option in sub.option_flags.keys().filter(|o| o.contains("-o")) {
            errors.push(format!(
                "Please provide keys without -o, {option} is invalid."
            ));
        }
    }
    let gpus = t.counts.get("gpus_per_task").copied();
    if gpus.is_some() && rules.capacity.gpus == 0 {
        errors.push("This server does not support gpus: gpus_per_task cannot be set.".into());
    }
    if t.runtime < 0 {
        errors.push(format!("Runtime must be >= 0, found {}", t.runtime));
    }
    sub.runtime = t.runtime.max(0) as u64;
    for key in COUNTS {
        let Some(n) = t.counts.get(key).copied() else {
            continue;
        };
        // flux-restful checks gpus here; the other counts are left to the jobspec builder.
        if n < 1 && (*key == "gpus_per_task" || rules.strict) {
            errors.push(format!("Parameter {key} must be >= 1"));
        } else if n > MAX_COUNT {
            errors.push(format!("Parameter {key} must be <= {MAX_COUNT}"));
        }
    }
    if let Some(v) = params.get("envars").filter(|v| !v.is_null()) {
        match string_map(v) {
            Some(Ok(env)) => sub.envars = env,
            Some(Err(e)) => errors.push(e),
            // flux-restful ignores an `envars` it cannot read (it only reads the body's).
            None if rules.strict || rules.from_body => {
                errors.push("Environment variables must be key/value pairs (dict)".into())
            }
            None => {}
        }
        for k in sub.envars.keys() {
            if k.is_empty() || k.contains('=') || k.contains('\0') {
                errors.push(format!(
                    "Environment variable name {k:?} is not valid (no '=', not empty)"
                ));
            }
        }
    }
    if rules.strict && t.exclusive && nodes.is_none() {
        errors.push("exclusive needs num_nodes: give the node count to hold exclusively".into());
    }
    if !errors.is_empty() {
        return Err(RestError::InvalidSubmit(errors));
    }

    // Stage 3: a launcher is started before any jobspec is built.
    if !sub.is_launcher
        && let Some(refusal) = jobspec_refusal(&t, &command)
    {
        return Err(RestError::SubmitFailed(refusal));
    }
    let count = |key: &str| t.counts.get(key).map(|n| *n as u64);
    sub.num_tasks = count("num_tasks");
    sub.cores_per_task = count("cores_per_task");
    sub.gpus_per_task = count("gpus_per_task");
    sub.num_nodes = count("num_nodes");
    Ok(sub)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const CAP: Capacity = Capacity { nodes: 2, gpus: 0 };

    fn rules(strict: bool) -> Rules {
        Rules {
            capacity: CAP,
            strict,
            from_body: false,
        }
    }

    fn params(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn query_strings_parse_like_flux_restful() {
        let s = parse_submission(
            &params(json!({"command": "echo 'hello world'", "num_tasks": "2",
                "exclusive": "true", "option_flags": "cpu-affinity=per-task,verbose=1,junk",
                "envars": "{'FOO': 'bar', 'N': 3}", "runtime": "10", "num_nodes": "1",
                "bogus": "ignored"})),
            rules(false),
        )
        .unwrap();
        assert_eq!(s.command, vec!["echo", "hello world"]);
        assert_eq!(s.num_tasks, Some(2));
        assert!(s.exclusive);
        assert_eq!(s.option_flags.len(), 2, "a flag without '=' is skipped");
        assert_eq!(s.option_flags["cpu-affinity"], "per-task");
        assert_eq!(s.envars["FOO"], "bar");
        assert_eq!(s.envars["N"], "3");
        assert_eq!(s.runtime, 10);
    }

    #[test]
    fn each_stage_answers_in_its_own_shape() {
        // Types first: every one that does not parse, before the command is even looked at.
        let Err(RestError::Unprocessable(e)) = parse_submission(
            &params(json!({"num_tasks": "abc", "exclusive": "maybe"})),
            rules(false),
        ) else {
            panic!("not a 422")
        };
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].kind, "int_parsing");
        assert_eq!(e[1].kind, "bool_parsing");
        // Then the request's checks.
        let Err(RestError::InvalidSubmit(errors)) = parse_submission(
            &params(json!({"command": "x", "num_nodes": "5", "runtime": "-3"})),
            rules(false),
        ) else {
            panic!("not an invalid submit")
        };
        assert_eq!(
            errors,
            vec![
                "The server only has 2 nodes, you requested 5",
                "Runtime must be >= 0, found -3"
            ]
        );
        // Then the jobspec's first refusal.
        for (p, refusal) in [
            (
                json!({"command": "x", "num_tasks": "-2"}),
                "task count must be a integer >= 1",
            ),
            (
                json!({"command": "x", "exclusive": "yes"}),
                "exclusive can only be set with a node count",
            ),
            (
                json!({"command": "x", "num_nodes": "2"}),
                "node count must not be greater than task count",
            ),
            (json!({"command": "echo 'oops"}), "No closing quotation"),
        ] {
            match parse_submission(&params(p.clone()), rules(false)) {
                Err(RestError::SubmitFailed(m)) => assert_eq!(m, refusal, "{p}"),
                other => panic!("{p}: {other:?}"),
            }
        }
        // A launcher never reaches the jobspec builder.
        assert!(
            parse_submission(
                &params(json!({"command": "nextflow", "exclusive": "true", "is_launcher": "1"})),
                rules(false)
            )
            .is_ok()
        );
    }

    #[test]
    fn strict_reports_every_problem_at_once() {
        let Err(RestError::InvalidSubmit(errors)) = parse_submission(
            &params(
                json!({"command": "x", "num_tasks": "-1", "cores_per_task": "abc",
                "num_nodes": 5, "gpus_per_task": 1, "runtime": -3, "exclusive": "maybe",
                "option_flags": {"-ompi": "x"}, "envars": [1], "bogus": 1}),
            ),
            rules(true),
        ) else {
            panic!("accepted")
        };
        let all = errors.join("\n");
        for needle in [
            "num_tasks must be >= 1",
            "cores_per_task must be an integer, found \"abc\"",
            "exclusive must be true or false, found \"maybe\"",
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
        for strict in [false, true] {
            assert!(matches!(
                parse_submission(&params(json!({ "command": huge })), rules(strict)),
                Err(RestError::InvalidSubmit(_))
            ));
        }
        assert!(matches!(
            parse_submission(&params(json!({"command": "echo 'oops"})), rules(true)),
            Err(RestError::InvalidSubmit(_))
        ));
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
}
