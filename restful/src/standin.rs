//! A stand-in for Flux, in memory, for tests of the HTTP layer (`--backend stand-in`).
//!
//! Jobs go SCHED → RUN → INACTIVE on a clock. A few commands behave like the real ones so that
//! output and state can be checked: `echo`, `seq N` (one line every 100 ms), `sleep N`,
//! `printenv NAME`, `pwd`, `hostname` (one line per task), `true`, `false`; any other command
//! fails with exit code 127 and a message on stderr.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use flux_client::{JobId, Jobspec};
use serde_json::{Map, Value, json};

use crate::backend::{FluxBackend, OutputStream, RawJob, Resources};
use crate::error::{RestError, Result};

const SCHED_DELAY: f64 = 0.02;

#[derive(Debug, Clone)]
struct Job {
    id: u64,
    spec: Value,
    name: String,
    cwd: String,
    ntasks: u64,
    ncores: u64,
    nnodes: u64,
    t_submit: f64,
    /// Run length if nothing stops it.
    run_len: f64,
    exit: i64,
    /// (seconds after start, chunk)
    output: Vec<(f64, String)>,
    canceled_at: Option<f64>,
    duration: f64,
}

enum Phase {
    Sched,
    Run,
    Done {
        t_run: Option<f64>,
        end: f64,
        result: u64,
        waitstatus: Option<i64>,
        exception: Option<&'static str>,
    },
}

impl Job {
    fn start(&self) -> f64 {
        self.t_submit + SCHED_DELAY
    }

    fn phase(&self, now: f64) -> Phase {
        let start = self.start();
        if let Some(c) = self.canceled_at
            && c < start
        {
            return Phase::Done {
                t_run: None,
                end: c,
                result: 4,
                waitstatus: None,
                exception: Some("cancel"),
            };
        }
        if now < start {
            return Phase::Sched;
        }
        let natural = start + self.run_len;
        let timeout = (self.duration > 0.0).then_some(start + self.duration);
        let mut end = natural;
        let mut result = if self.exit == 0 { 1 } else { 2 };
        let mut waitstatus = Some((self.exit & 0xff) << 8);
        let mut exception = None;
        if let Some(t) = timeout
            && t < end
        {
            end = t;
            result = 8;
            waitstatus = Some(36608);
            exception = Some("timeout");
        }
        if let Some(c) = self.canceled_at
            && c < end
        {
            end = c;
            result = 4;
            waitstatus = Some(36608);
            exception = Some("cancel");
        }
        if now < end {
            Phase::Run
        } else {
            Phase::Done {
                t_run: Some(start),
                end,
                result,
                waitstatus,
                exception,
            }
        }
    }

    fn end(&self, now: f64) -> Option<f64> {
        match self.phase(now) {
            Phase::Done { end, .. } => Some(end),
            _ => None,
        }
    }

    fn raw(&self, now: f64, nodes: &[String]) -> RawJob {
        let mut m = Map::new();
        m.insert("id".into(), json!(self.id));
        m.insert("userid".into(), json!(0));
        m.insert("urgency".into(), json!(16));
        m.insert("priority".into(), json!(16));
        m.insert("t_submit".into(), json!(self.t_submit));
        m.insert("t_depend".into(), json!(self.t_submit + 0.005));
        m.insert("name".into(), json!(self.name));
        m.insert("cwd".into(), json!(self.cwd));
        m.insert("ntasks".into(), json!(self.ntasks));
        m.insert("ncores".into(), json!(self.ncores));
        m.insert("duration".into(), json!(self.duration));
        let used: Vec<&String> = nodes.iter().take(self.nnodes as usize).collect();
        let alloc = |m: &mut Map<String, Value>| {
            m.insert("nnodes".into(), json!(self.nnodes));
            m.insert(
                "ranks".into(),
                json!(if self.nnodes > 1 {
                    format!("[0-{}]", self.nnodes - 1)
                } else {
                    "0".into()
                }),
            );
            m.insert(
                "nodelist".into(),
                json!(
                    used.iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                ),
            );
            m.insert("expiration".into(), json!(0.0));
        };
        match self.phase(now) {
            Phase::Sched => {
                m.insert("state".into(), json!(8));
            }
            Phase::Run => {
                m.insert("state".into(), json!(16));
                m.insert("t_run".into(), json!(self.start()));
                alloc(&mut m);
            }
            Phase::Done {
                t_run,
                end,
                result,
                waitstatus,
                exception,
            } => {
                m.insert("state".into(), json!(64));
                if let Some(t) = t_run {
                    m.insert("t_run".into(), json!(t));
                    alloc(&mut m);
                }
                m.insert("t_cleanup".into(), json!(end));
                m.insert("t_inactive".into(), json!(end + 0.01));
                m.insert("success".into(), json!(result == 1));
                m.insert("result".into(), json!(result));
                if let Some(ws) = waitstatus {
                    m.insert("waitstatus".into(), json!(ws));
                }
                m.insert("exception_occurred".into(), json!(exception.is_some()));
                if let Some(kind) = exception {
                    m.insert("exception_type".into(), json!(kind));
                    m.insert("exception_severity".into(), json!(0));
                    m.insert("exception_note".into(), json!(""));
                }
            }
        }
        m
    }

    /// Output produced by `now`.
    fn output_until(&self, now: f64) -> Vec<String> {
        let start = self.start();
        let end = self.end(now).unwrap_or(f64::INFINITY).min(now);
        self.output
            .iter()
            .filter(|(t, _)| start + t <= end)
            .map(|(_, c)| c.clone())
            .collect()
    }
}

struct State {
    next_id: u64,
    jobs: BTreeMap<u64, Job>,
}

/// The in-memory Flux.
pub struct StandIn {
    nodes: Vec<String>,
    gpus: u64,
    state: Arc<Mutex<State>>,
}

impl StandIn {
    /// An instance of `nodes` nodes (`standin-0` …) with 4 cores each and no GPUs.
    pub fn new(nodes: usize) -> Self {
        StandIn {
            nodes: (0..nodes).map(|i| format!("standin-{i}")).collect(),
            gpus: 0,
            state: Arc::new(Mutex::new(State {
                next_id: 1 << 30,
                jobs: BTreeMap::new(),
            })),
        }
    }

    pub fn with_gpus(mut self, gpus: u64) -> Self {
        self.gpus = gpus;
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, id: JobId) -> Option<Job> {
        self.lock().jobs.get(&id.as_u64()).cloned()
    }
}

fn now() -> f64 {
    crate::jobs::now()
}

/// How a command behaves: run length, exit code, output chunks with their times.
fn simulate(
    command: &[String],
    env: &Map<String, Value>,
    cwd: &str,
    ntasks: u64,
    nodes: &[String],
) -> (f64, i64, Vec<(f64, String)>) {
    let args = &command[1..];
    let prog = command[0].rsplit('/').next().unwrap_or_default();
    match prog {
        "echo" => (0.05, 0, vec![(0.0, format!("{}\n", args.join(" ")))]),
        "true" => (0.05, 0, vec![]),
        "false" => (0.05, 1, vec![]),
        "pwd" => (0.05, 0, vec![(0.0, format!("{cwd}\n"))]),
        "hostname" => (
            0.05,
            0,
            (0..ntasks)
                .map(|t| {
                    let node = &nodes[(t as usize) % nodes.len().max(1)];
                    (0.0, format!("{node}\n"))
                })
                .collect(),
        ),
        "sleep" => {
            let secs = args
                .first()
                .and_then(|a| a.parse::<f64>().ok())
                .unwrap_or(1.0);
            (secs.clamp(0.0, 1e6), 0, vec![])
        }
        "seq" => {
            let n = args
                .first()
                .and_then(|a| a.parse::<u64>().ok())
                .unwrap_or(1)
                .min(10_000);
            let lines = (1..=n)
                .map(|i| ((i - 1) as f64 * 0.1, format!("{i}\n")))
                .collect();
            (n as f64 * 0.1, 0, lines)
        }
        "printenv" => match args
            .first()
            .and_then(|k| env.get(k))
            .and_then(Value::as_str)
        {
            Some(v) => (0.05, 0, vec![(0.0, format!("{v}\n"))]),
            None => (0.05, 1, vec![]),
        },
        _ => (
            0.05,
            127,
            vec![(
                0.0,
                format!(
                    "flux-shell[0]: FATAL: task 0: start failed: {}: No such file or directory\n",
                    command[0]
                ),
            )],
        ),
    }
}

fn counts(spec: &Value) -> (u64, u64, u64) {
    let res = &spec["resources"][0];
    let (nnodes, slot) = if res["type"] == "node" {
        (res["count"].as_u64().unwrap_or(1), &res["with"][0])
    } else {
        (1, res)
    };
    let slots = slot["count"].as_u64().unwrap_or(1) * nnodes;
    let cores_per_slot: u64 = slot["with"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["type"] == "core")
        .filter_map(|r| r["count"].as_u64())
        .sum::<u64>()
        .max(1);
    let count = &spec["tasks"][0]["count"];
    let ntasks = count["total"].as_u64().unwrap_or(slots);
    (ntasks, slots * cores_per_slot, nnodes)
}

#[async_trait]
impl FluxBackend for StandIn {
    fn name(&self) -> &'static str {
        "stand-in"
    }

    async fn resources(&self) -> Result<Resources> {
        Ok(Resources {
            nodes: self.nodes.clone(),
            gpus: self.gpus,
        })
    }

    async fn submit(&self, jobspec: &Jobspec) -> Result<JobId> {
        let spec = serde_json::to_value(jobspec)
            .map_err(|e| RestError::SubmitFailed(format!("cannot encode jobspec: {e}")))?;
        let command: Vec<String> = spec["tasks"][0]["command"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|w| w.as_str().map(str::to_owned))
            .collect();
        if command.is_empty() {
            return Err(RestError::SubmitFailed("jobspec has no command".into()));
        }
        let (ntasks, ncores, nnodes) = counts(&spec);
        if nnodes > self.nodes.len() as u64 {
            return Err(RestError::SubmitFailed(
                "unsatisfiable request: more nodes than the instance has".into(),
            ));
        }
        let sys = &spec["attributes"]["system"];
        let env = sys["environment"].as_object().cloned().unwrap_or_default();
        let cwd = sys["cwd"].as_str().unwrap_or("/").to_string();
        let (run_len, exit, output) = simulate(&command, &env, &cwd, ntasks, &self.nodes);
        let mut st = self.lock();
        st.next_id += 1 + (st.next_id % 7);
        let id = st.next_id;
        st.jobs.insert(
            id,
            Job {
                id,
                name: command[0]
                    .rsplit('/')
                    .next()
                    .unwrap_or_default()
                    .to_string(),
                cwd,
                ntasks,
                ncores,
                nnodes,
                t_submit: now(),
                run_len,
                exit,
                output,
                canceled_at: None,
                duration: sys["duration"].as_f64().unwrap_or(0.0),
                spec,
            },
        );
        Ok(JobId(id))
    }

    async fn list(&self, max: usize) -> Result<Vec<RawJob>> {
        let t = now();
        let st = self.lock();
        let it = st.jobs.values().rev().map(|j| j.raw(t, &self.nodes));
        Ok(if max == 0 {
            it.collect()
        } else {
            it.take(max).collect()
        })
    }

    async fn job(&self, id: JobId) -> Result<Option<RawJob>> {
        Ok(self.get(id).map(|j| j.raw(now(), &self.nodes)))
    }

    async fn jobspec(&self, id: JobId) -> Result<Option<Value>> {
        Ok(self.get(id).map(|j| j.spec))
    }

    async fn output(&self, id: JobId) -> Result<Vec<String>> {
        Ok(self
            .get(id)
            .map(|j| j.output_until(now()))
            .unwrap_or_default())
    }

    async fn output_stream(&self, id: JobId) -> Result<OutputStream> {
        let job = self
            .get(id)
            .ok_or_else(|| RestError::JobNotFound(id.f58()))?;
        let state = self.state.clone();
        let stream = futures_util::stream::unfold(0usize, move |sent| {
            let state = state.clone();
            let job_id = job.id;
            async move {
                loop {
                    let job = state
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .jobs
                        .get(&job_id)
                        .cloned()?;
                    let t = now();
                    let out = job.output_until(t);
                    if out.len() > sent {
                        return Some((out[sent].clone(), sent + 1));
                    }
                    if job.end(t).is_some() {
                        return None;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        });
        Ok(Box::pin(stream))
    }

    async fn cancel(&self, id: JobId) -> Result<()> {
        let t = now();
        let mut st = self.lock();
        // Flux's job-manager answers both with ENOENT and these words.
        let refused = |message: &str| RestError::Refused {
            errnum: 2,
            message: message.into(),
        };
        let job = st
            .jobs
            .get_mut(&id.as_u64())
            .ok_or_else(|| refused("unknown job id"))?;
        if job.end(t).is_some() {
            return Err(refused("job is inactive"));
        }
        job.canceled_at = Some(t);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flux_client::JobRequest;
    use futures_util::StreamExt;

    #[tokio::test]
    async fn jobs_run_produce_output_and_end() {
        let s = StandIn::new(2);
        let id = s
            .submit(&JobRequest::new(["seq", "3"]).jobspec().unwrap())
            .await
            .unwrap();
        let chunks: Vec<String> = s.output_stream(id).await.unwrap().collect().await;
        assert_eq!(chunks, vec!["1\n", "2\n", "3\n"]);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let raw = s.job(id).await.unwrap().unwrap();
        assert_eq!(raw["state"], 64);
        assert_eq!(raw["result"], 1);
        assert_eq!(s.output(id).await.unwrap().len(), 3);
    }

    #[tokio::test]
    async fn cancel_ends_a_running_job() {
        let s = StandIn::new(1);
        let id = s
            .submit(&JobRequest::new(["sleep", "100"]).jobspec().unwrap())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert_eq!(s.job(id).await.unwrap().unwrap()["state"], 16);
        s.cancel(id).await.unwrap();
        let raw = s.job(id).await.unwrap().unwrap();
        assert_eq!(raw["state"], 64);
        assert_eq!(raw["result"], 4);
        assert_eq!(
            s.cancel(id).await.unwrap_err().to_string(),
            "[Errno 2] job is inactive"
        );
        assert_eq!(
            s.cancel(JobId(7)).await.unwrap_err().to_string(),
            "[Errno 2] unknown job id"
        );
    }
}
