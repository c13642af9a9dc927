//! The stand-in's instance on rank 0's local socket: the local connector (one accept byte,
//! then RFC 3 messages in the connector's stream framing, flux-client's codec) answering the
//! few services the control plane's warm MiniClusters use, as flux-core answers them:
//!
//! - `job-ingest.submit` {J, urgency, flags}: the none-signed jobspec's command, once per
//!   task, with exactly the jobspec's environment and cwd, stdout/stderr to the files the
//!   shell options `output.stdout`/`output.stderr` (`type: file`, `path`) name; → {id}.
//! - `job-list.list` {max_entries, attrs, constraint}: RFC 31 constraints `name`, `states`,
//!   `userid`, `and`; one response {jobs}, then ENODATA.
//! - `job-info.lookup` {id, keys: ["eventlog"]}: the job's eventlog (`submit`, `start`,
//!   `exception`, `finish` {status: the worst wait status of its tasks}, `clean`).
//! - `job-manager.raise` {id, type, severity, note}: severity 0 ends the job (SIGTERM to its
//!   tasks, as job-exec signals them).
//!
//! Anything else gets ENOSYS, as a broker answers a service it does not have. It is not Flux:
//! no scheduler (every job starts at once), one node's processes stand for all nodes.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use flux_client::codec::{STREAM_MAGIC, encode_message};
use flux_client::message::{Message, MsgType, flags};
use serde_json::{Value, json};

const ENOENT: u32 = 2;
const EPROTO: u32 = 71;
const EINVAL: u32 = 22;
const ENOSYS: u32 = 38;
const ENODATA: u32 = 61;

struct Job {
    name: String,
    userid: u32,
    /// RFC 21 state bit: 16 RUN, 64 INACTIVE.
    state: u32,
    waitstatus: Option<i32>,
    pgids: Vec<i32>,
    eventlog: Vec<Value>,
    t_submit: f64,
}

#[derive(Default)]
pub struct Instance {
    jobs: Mutex<BTreeMap<u64, Job>>,
    next: Mutex<u64>,
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn event(name: &str, context: Value) -> Value {
    json!({"timestamp": now(), "name": name, "context": context})
}

impl Instance {
    /// Serves the local connector at `path` on threads of its own.
    pub fn serve(self: &Arc<Self>, path: &str) -> std::io::Result<()> {
        let _ = std::fs::remove_file(path);
        let l = UnixListener::bind(path)?;
        let me = Arc::clone(self);
        std::thread::spawn(move || {
            for c in l.incoming().flatten() {
                let me = Arc::clone(&me);
                std::thread::spawn(move || me.connection(c));
            }
        });
        Ok(())
    }

    /// Ends every running job (the instance is shutting down).
    pub fn kill_all(&self) {
        let jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        for j in jobs.values().filter(|j| j.state != 64) {
            for &g in &j.pgids {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(g),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }

    fn connection(self: Arc<Self>, mut s: UnixStream) {
        // The connector accepts: one zero byte.
        if s.write_all(&[0]).is_err() {
            return;
        }
        loop {
            let mut header = [0u8; 8];
            if s.read_exact(&mut header).is_err() {
                return;
            }
            if header[..4] != STREAM_MAGIC {
                return;
            }
            let len = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
            let mut body = vec![0u8; len];
            if s.read_exact(&mut body).is_err() {
                return;
            }
            let Ok(req) = Message::decode_body(&body) else {
                return;
            };
            if req.kind != MsgType::Request {
                continue;
            }
            for (errnum, payload) in self.answer(&req) {
                let mut r = req.clone();
                r.kind = MsgType::Response;
                r.flags = req.flags & flags::STREAMING;
                r.aux1 = errnum;
                r.topic = req.topic.clone();
                r.payload = payload.map(|p| {
                    let mut b = p.into_bytes();
                    b.push(0);
                    b
                });
                if req.flags & flags::NORESPONSE != 0 {
                    continue;
                }
                if s.write_all(&encode_message(&r)).is_err() {
                    return;
                }
            }
        }
    }

    fn answer(self: &Arc<Self>, req: &Message) -> Vec<(u32, Option<String>)> {
        let body: Value = req
            .payload_str()
            .and_then(|p| serde_json::from_str(p).ok())
            .unwrap_or(Value::Null);
        let r = match req.topic() {
            "job-ingest.submit" => self.submit(&body).map(|id| vec![json!({"id": id})]),
            "job-list.list" => self.list(&body).map(|jobs| vec![json!({"jobs": jobs})]),
            "job-info.lookup" => self.lookup(&body).map(|v| vec![v]),
            "job-manager.raise" => self.raise(&body).map(|()| vec![json!({})]),
            t => Err((ENOSYS, format!("Unknown service method '{t}'"))),
        };
        match r {
            Ok(vs) => {
                let mut out: Vec<(u32, Option<String>)> =
                    vs.into_iter().map(|v| (0, Some(v.to_string()))).collect();
                if req.topic() == "job-list.list" {
                    out.push((ENODATA, None));
                }
                out
            }
            Err((errnum, msg)) => vec![(errnum, Some(msg))],
        }
    }

    fn submit(self: &Arc<Self>, body: &Value) -> Result<u64, (u32, String)> {
        let j = body["J"].as_str().ok_or((EPROTO, "no J".to_string()))?;
        let (userid, bytes) =
            flux_client::jobspec::unwrap_none(j).map_err(|e| (EINVAL, e.to_string()))?;
        let spec: Value =
            serde_json::from_slice(&bytes).map_err(|e| (EINVAL, format!("jobspec: {e}")))?;
        let command: Vec<String> = spec["tasks"][0]["command"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        if command.is_empty() {
            return Err((EINVAL, "jobspec: tasks[0].command is empty".into()));
        }
        let tasks = ntasks(&spec);
        let sys = &spec["attributes"]["system"];
        let name = sys["job"]["name"]
            .as_str()
            .map(String::from)
            .unwrap_or_else(|| {
                std::path::Path::new(&command[0])
                    .file_name()
                    .map_or_else(|| command[0].clone(), |n| n.to_string_lossy().into_owned())
            });
        let output = &sys["shell"]["options"]["output"];
        let file_of = |stream: &str| -> Option<String> {
            let o = &output[stream];
            (o["type"].as_str() == Some("file"))
                .then(|| o["path"].as_str().map(String::from))
                .flatten()
        };
        let (out_path, err_path) = (file_of("stdout"), file_of("stderr"));
        let open =
            |p: &str| std::fs::File::create(p).map_err(|e| (EINVAL, format!("output {p}: {e}")));
        let out = out_path.as_deref().map(open).transpose()?;
        let err = match (&err_path, &out_path, &out) {
            (Some(e), Some(o), Some(f)) if e == o => {
                Some(f.try_clone().map_err(|e| (EINVAL, e.to_string()))?)
            }
            (Some(e), _, _) => Some(open(e)?),
            _ => None,
        };
        let id = {
            let mut n = self.next.lock().unwrap_or_else(|p| p.into_inner());
            *n += 1;
            // A FLUID-shaped id: milliseconds since the epoch in the top bits.
            ((now() * 1000.0) as u64) << 24 | *n
        };
        let mut children: Vec<Child> = Vec::new();
        let mut spawn_error = None;
        for rank in 0..tasks {
            let mut c = Command::new(&command[0]);
            c.args(&command[1..]).env_clear().stdin(Stdio::null());
            if let Some(env) = sys["environment"].as_object() {
                for (k, v) in env {
                    if let Some(v) = v.as_str() {
                        c.env(k, v);
                    }
                }
            }
            c.env("FLUX_TASK_RANK", rank.to_string())
                .env("FLUX_JOB_ID", id.to_string())
                .env("FLUX_JOB_SIZE", tasks.to_string());
            if let Some(d) = sys["cwd"].as_str() {
                c.current_dir(d);
            }
            if let Some(f) = &out {
                c.stdout(f.try_clone().map_err(|e| (EINVAL, e.to_string()))?);
            }
            if let Some(f) = &err {
                c.stderr(f.try_clone().map_err(|e| (EINVAL, e.to_string()))?);
            }
            c.process_group(0);
            match c.spawn() {
                Ok(ch) => children.push(ch),
                Err(e) => {
                    spawn_error = Some(format!("{}: {e}", command[0]));
                    break;
                }
            }
        }
        let mut eventlog = vec![
            event(
                "submit",
                json!({"userid": userid, "urgency": body["urgency"], "flags": body["flags"], "version": 1}),
            ),
            event("start", json!({})),
        ];
        if let Some(e) = &spawn_error {
            eventlog.push(event(
                "exception",
                json!({"type": "exec", "severity": 0, "note": e, "userid": userid}),
            ));
        }
        self.jobs.lock().unwrap_or_else(|p| p.into_inner()).insert(
            id,
            Job {
                name,
                userid,
                state: 16,
                waitstatus: None,
                pgids: children.iter().map(|c| c.id() as i32).collect(),
                eventlog,
                t_submit: now(),
            },
        );
        let failed_to_start = spawn_error.is_some();
        let me = Arc::clone(self);
        std::thread::spawn(move || {
            let mut worst = if failed_to_start { 1 << 8 } else { 0 };
            for mut c in children {
                let ws = c.wait().map_or(1 << 8, |s| s.into_raw());
                if ws > worst || (worst & 0x7f == 0 && ws & 0x7f != 0) {
                    worst = ws;
                }
            }
            let mut all = me.jobs.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(j) = all.get_mut(&id) {
                j.waitstatus = Some(worst);
                j.eventlog.push(event("finish", json!({"status": worst})));
                j.eventlog.push(event("clean", json!({})));
                j.state = 64;
            }
        });
        Ok(id)
    }

    fn list(&self, body: &Value) -> Result<Vec<Value>, (u32, String)> {
        let jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        let max = body["max_entries"].as_u64().unwrap_or(0) as usize;
        let mut out = Vec::new();
        // Newest first, as job-list orders them.
        for (id, j) in jobs.iter().rev() {
            if !matches(&body["constraint"], j)? {
                continue;
            }
            let mut v = json!({"id": id, "name": j.name, "userid": j.userid, "state": j.state, "t_submit": j.t_submit});
            if let Some(ws) = j.waitstatus {
                v["waitstatus"] = json!(ws);
                v["result"] = json!(if ws == 0 { 1 } else { 2 });
                v["success"] = json!(ws == 0);
            }
            out.push(v);
            if max > 0 && out.len() >= max {
                break;
            }
        }
        Ok(out)
    }

    fn lookup(&self, body: &Value) -> Result<Value, (u32, String)> {
        let id = body["id"].as_u64().ok_or((EPROTO, "no id".to_string()))?;
        let jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        let j = jobs
            .get(&id)
            .ok_or((ENOENT, format!("job {id} not found")))?;
        let mut out = json!({"id": id});
        for k in body["keys"].as_array().into_iter().flatten() {
            match k.as_str() {
                Some("eventlog") => {
                    let text: String = j.eventlog.iter().map(|e| format!("{e}\n")).collect();
                    out["eventlog"] = json!(text);
                }
                Some(k) => return Err((ENOENT, format!("key {k} not found"))),
                None => return Err((EPROTO, "keys must be strings".into())),
            }
        }
        Ok(out)
    }

    fn raise(&self, body: &Value) -> Result<(), (u32, String)> {
        let id = body["id"].as_u64().ok_or((EPROTO, "no id".to_string()))?;
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        let j = jobs
            .get_mut(&id)
            .ok_or((ENOENT, format!("unknown job id {id}")))?;
        if j.state == 64 {
            return Err((EINVAL, "job is inactive".into()));
        }
        let severity = body["severity"].as_u64().unwrap_or(0);
        j.eventlog.push(event(
            "exception",
            json!({"type": body["type"], "severity": severity, "note": body["note"].as_str().unwrap_or(""), "userid": j.userid}),
        ));
        if severity == 0 {
            for &g in &j.pgids {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(g),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
        }
        Ok(())
    }
}

/// The number of tasks of a jobspec: `per_slot` × the slots (× nodes), or `total`.
fn ntasks(spec: &Value) -> u64 {
    let count = &spec["tasks"][0]["count"];
    if let Some(t) = count["total"].as_u64() {
        return t.max(1);
    }
    let per_slot = count["per_slot"].as_u64().unwrap_or(1);
    let top = &spec["resources"][0];
    let slots = match top["type"].as_str() {
        Some("node") => {
            top["count"].as_u64().unwrap_or(1) * top["with"][0]["count"].as_u64().unwrap_or(1)
        }
        _ => top["count"].as_u64().unwrap_or(1),
    };
    (per_slot * slots).max(1)
}

/// RFC 31: the operators used here; others are refused, as job-list refuses what it does not
/// know.
fn matches(c: &Value, j: &Job) -> Result<bool, (u32, String)> {
    let Some(obj) = c.as_object() else {
        return Ok(true);
    };
    for (op, vals) in obj {
        let vals = vals
            .as_array()
            .ok_or((EPROTO, format!("constraint {op}: values must be an array")))?;
        let ok = match op.as_str() {
            "and" => {
                let mut all = true;
                for v in vals {
                    all &= matches(v, j)?;
                }
                all
            }
            "or" => {
                let mut any = false;
                for v in vals {
                    any |= matches(v, j)?;
                }
                any
            }
            "name" => vals.iter().any(|v| v.as_str() == Some(j.name.as_str())),
            "userid" => vals.iter().any(|v| v.as_u64() == Some(u64::from(j.userid))),
            "states" => vals
                .iter()
                .any(|v| v.as_u64().is_some_and(|m| m as u32 & j.state != 0)),
            other => return Err((EINVAL, format!("unknown constraint operator {other}"))),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}
