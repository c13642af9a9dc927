//! Jobs: submit, list, info, cancel, wait, eventlogs and output.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::client::{Client, Request, ResponseStream};
use crate::error::{Error, Result};
use crate::jobid::JobId;
use crate::jobspec::{JobRequest, Jobspec, sign_none};

/// Job states (RFC 21) as job-list reports them: one bit each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub enum JobState {
    New,
    Depend,
    Priority,
    Sched,
    Run,
    Cleanup,
    Inactive,
}

/// State masks for filters.
pub mod state_mask {
    pub const PENDING: u32 = 14;
    pub const RUNNING: u32 = 48;
    pub const ACTIVE: u32 = 62;
    pub const INACTIVE: u32 = 64;
    /// Every state but NEW, as `flux jobs -a` asks for.
    pub const ALL: u32 = 126;
}

impl JobState {
    pub fn bit(self) -> u32 {
        match self {
            JobState::New => 1,
            JobState::Depend => 2,
            JobState::Priority => 4,
            JobState::Sched => 8,
            JobState::Run => 16,
            JobState::Cleanup => 32,
            JobState::Inactive => 64,
        }
    }

    /// The name `flux jobs` prints.
    pub fn name(self) -> &'static str {
        match self {
            JobState::New => "NEW",
            JobState::Depend => "DEPEND",
            JobState::Priority => "PRIORITY",
            JobState::Sched => "SCHED",
            JobState::Run => "RUN",
            JobState::Cleanup => "CLEANUP",
            JobState::Inactive => "INACTIVE",
        }
    }

    pub fn is_pending(self) -> bool {
        self.bit() & state_mask::PENDING != 0
    }
    pub fn is_running(self) -> bool {
        self.bit() & state_mask::RUNNING != 0
    }
}

impl TryFrom<u32> for JobState {
    type Error = String;
    fn try_from(v: u32) -> std::result::Result<Self, String> {
        Ok(match v {
            1 => JobState::New,
            2 => JobState::Depend,
            4 => JobState::Priority,
            8 => JobState::Sched,
            16 => JobState::Run,
            32 => JobState::Cleanup,
            64 => JobState::Inactive,
            _ => return Err(format!("unknown job state {v}")),
        })
    }
}

impl From<JobState> for u32 {
    fn from(s: JobState) -> u32 {
        s.bit()
    }
}

/// How an inactive job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub enum JobResult {
    Completed,
    Failed,
    Canceled,
    Timeout,
}

impl JobResult {
    pub fn name(self) -> &'static str {
        match self {
            JobResult::Completed => "COMPLETED",
            JobResult::Failed => "FAILED",
            JobResult::Canceled => "CANCELED",
            JobResult::Timeout => "TIMEOUT",
        }
    }
}

impl TryFrom<u32> for JobResult {
    type Error = String;
    fn try_from(v: u32) -> std::result::Result<Self, String> {
        Ok(match v {
            1 => JobResult::Completed,
            2 => JobResult::Failed,
            4 => JobResult::Canceled,
            8 => JobResult::Timeout,
            _ => return Err(format!("unknown job result {v}")),
        })
    }
}

impl From<JobResult> for u32 {
    fn from(r: JobResult) -> u32 {
        match r {
            JobResult::Completed => 1,
            JobResult::Failed => 2,
            JobResult::Canceled => 4,
            JobResult::Timeout => 8,
        }
    }
}

/// A job as job-list describes it. Only the attributes asked for are present.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobInfo {
    pub id: JobId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub userid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<JobState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<JobResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urgency: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ntasks: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ncores: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nnodes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ranks: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodelist: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub t_submit: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub t_run: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub t_cleanup: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub t_inactive: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waitstatus: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exception_occurred: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exception_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exception_note: Option<String>,
    /// Every other attribute, as sent.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl JobInfo {
    /// The exit code of the job's tasks, from the wait status, when it exited normally.
    pub fn exit_code(&self) -> Option<i32> {
        let ws = self.waitstatus?;
        (ws & 0x7f == 0).then_some((ws >> 8) & 0xff)
    }
}

/// A `job-list.list` request.
#[derive(Debug, Clone, Serialize)]
pub struct ListRequest {
    /// At most this many jobs (0: no limit).
    pub max_entries: u32,
    pub attrs: Vec<String>,
    /// Only jobs that changed after this time (seconds since the epoch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<f64>,
    /// An RFC 31 constraint object.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub constraint: Option<Value>,
}

impl ListRequest {
    /// Every attribute of every job (up to `max_entries`).
    pub fn all(max_entries: u32) -> Self {
        ListRequest {
            max_entries,
            attrs: vec!["all".into()],
            since: None,
            constraint: None,
        }
    }

    /// Only jobs whose state is in `mask` (see [`state_mask`]).
    pub fn states(mut self, mask: u32) -> Self {
        self.add_constraint(serde_json::json!({ "states": [mask] }));
        self
    }

    /// Only jobs of this user.
    pub fn user(mut self, uid: u32) -> Self {
        self.add_constraint(serde_json::json!({ "userid": [uid] }));
        self
    }

    fn add_constraint(&mut self, c: Value) {
        self.constraint = Some(match self.constraint.take() {
            None => c,
            Some(Value::Object(mut m)) if m.contains_key("and") => {
                if let Some(Value::Array(a)) = m.get_mut("and") {
                    a.push(c);
                }
                Value::Object(m)
            }
            Some(prev) => serde_json::json!({ "and": [prev, c] }),
        });
    }
}

/// Options of a submission.
#[derive(Debug, Clone, Copy)]
pub struct SubmitOptions {
    /// 0..=31; 16 is the default, above 16 needs the instance owner.
    pub urgency: u8,
    /// Let `wait` collect the job's result (owner only).
    pub waitable: bool,
}

impl Default for SubmitOptions {
    fn default() -> Self {
        SubmitOptions {
            urgency: 16,
            waitable: false,
        }
    }
}

const SUBMIT_FLAG_WAITABLE: u32 = 4;

#[derive(Serialize)]
struct SubmitBody<'a> {
    #[serde(rename = "J")]
    j: &'a str,
    urgency: u8,
    flags: u32,
}

#[derive(Deserialize)]
struct Submitted {
    id: JobId,
}

#[derive(Serialize)]
struct IdAttrs<'a> {
    id: JobId,
    attrs: &'a [&'a str],
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<u32>,
}

#[derive(Serialize)]
struct Raise<'a> {
    id: JobId,
    #[serde(rename = "type")]
    kind: &'a str,
    severity: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<&'a str>,
}

#[derive(Serialize)]
struct Lookup<'a> {
    id: JobId,
    keys: &'a [&'a str],
    flags: u32,
}

#[derive(Serialize)]
struct Watch<'a> {
    id: JobId,
    path: &'a str,
    flags: u32,
}

#[derive(Serialize)]
struct IdOnly {
    id: JobId,
}

/// `job-manager.wait`: how a waitable job ended.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct WaitResult {
    pub id: JobId,
    pub success: bool,
    #[serde(default)]
    pub errstr: Option<String>,
}

/// One RFC 18 eventlog entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventlogEntry {
    pub timestamp: f64,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Map<String, Value>>,
}

impl EventlogEntry {
    /// Parse one eventlog line.
    pub fn parse(line: &str) -> Result<EventlogEntry> {
        serde_json::from_str(line.trim_end()).map_err(|e| Error::Payload {
            topic: "eventlog".into(),
            reason: format!("bad eventlog entry: {e}"),
        })
    }

    /// Parse a whole eventlog (newline-separated entries).
    pub fn parse_log(log: &str) -> Result<Vec<EventlogEntry>> {
        log.lines()
            .filter(|l| !l.trim().is_empty())
            .map(EventlogEntry::parse)
            .collect()
    }
}

/// Flags of `job-info.eventlog-watch`.
#[derive(Debug, Clone, Copy, Default)]
pub struct WatchFlags {
    /// Wait for the eventlog to be created (e.g. `guest.output` before the job starts).
    pub wait_create: bool,
}

/// Output of a job (RFC 24), one event at a time.
#[derive(Debug, Clone, PartialEq)]
pub enum OutputEvent {
    Header(Map<String, Value>),
    Data {
        stream: String,
        rank: String,
        data: String,
    },
    Eof {
        stream: String,
        rank: String,
    },
    /// Other entries (`redirect`, …), as logged.
    Other(EventlogEntry),
}

impl OutputEvent {
    fn from_entry(e: EventlogEntry) -> OutputEvent {
        let ctx = e.context.clone().unwrap_or_default();
        let s = |k: &str| ctx.get(k).and_then(Value::as_str).map(str::to_owned);
        match e.name.as_str() {
            "header" => OutputEvent::Header(ctx),
            "data" => match (s("stream"), s("rank")) {
                (Some(stream), Some(rank)) => match s("data") {
                    Some(data) => OutputEvent::Data { stream, rank, data },
                    None if ctx.get("eof") == Some(&Value::Bool(true)) => {
                        OutputEvent::Eof { stream, rank }
                    }
                    None => OutputEvent::Other(e),
                },
                _ => OutputEvent::Other(e),
            },
            _ => OutputEvent::Other(e),
        }
    }
}

/// A running `job-info.eventlog-watch`.
pub struct EventlogWatch {
    stream: ResponseStream,
    client: Client,
}

#[derive(Deserialize)]
struct WatchEvent {
    event: String,
}

impl EventlogWatch {
    /// The next entry; `None` at the end of the log (ENODATA).
    pub async fn next(&mut self) -> Option<Result<EventlogEntry>> {
        let resp = self.stream.next().await?;
        Some(resp.and_then(|r| EventlogEntry::parse(&r.json::<WatchEvent>()?.event)))
    }

    /// The next output event (for a watch of `guest.output`).
    pub async fn next_output(&mut self) -> Option<Result<OutputEvent>> {
        Some(self.next().await?.map(OutputEvent::from_entry))
    }

    /// Fail when nothing arrives for `after`.
    pub fn idle_timeout(mut self, after: Duration) -> Self {
        self.stream = self.stream.idle_timeout(after);
        self
    }

    /// Ask the broker to end the watch; the stream then ends with ENODATA.
    pub fn cancel(&self) -> Result<()> {
        let req = Request::new("job-info.eventlog-watch-cancel")
            .json(&serde_json::json!({ "matchtag": self.stream.matchtag() }))?;
        self.client.send_noresponse(req)
    }

    /// Every remaining entry until the end of the log.
    pub async fn collect(mut self) -> Result<Vec<EventlogEntry>> {
        let mut all = Vec::new();
        while let Some(e) = self.next().await {
            all.push(e?);
        }
        Ok(all)
    }
}

impl Client {
    /// Submit a job built from a command line; returns its id.
    pub async fn submit(&self, job: &JobRequest, opts: SubmitOptions) -> Result<JobId> {
        self.submit_jobspec(&job.jobspec()?, opts).await
    }

    /// Submit a jobspec, signed for this process's user with the `none` mechanism.
    pub async fn submit_jobspec(&self, jobspec: &Jobspec, opts: SubmitOptions) -> Result<JobId> {
        let bytes = serde_json::to_vec(jobspec).map_err(|e| Error::Encode(e.to_string()))?;
        let j = sign_none(&bytes, rustix::process::geteuid().as_raw());
        self.submit_signed(&j, opts).await
    }

    /// Submit an already signed J.
    pub async fn submit_signed(&self, j: &str, opts: SubmitOptions) -> Result<JobId> {
        if opts.urgency > 31 {
            return Err(Error::Jobspec(format!(
                "urgency {} is out of range 0..=31",
                opts.urgency
            )));
        }
        let body = SubmitBody {
            j,
            urgency: opts.urgency,
            flags: if opts.waitable {
                SUBMIT_FLAG_WAITABLE
            } else {
                0
            },
        };
        let req = Request::new("job-ingest.submit").json(&body)?;
        Ok(self.rpc(req).await?.json::<Submitted>()?.id)
    }

    /// List jobs (newest first), reading job-list's whole stream.
    pub async fn job_list(&self, req: &ListRequest) -> Result<Vec<JobInfo>> {
        #[derive(Deserialize)]
        struct Jobs {
            jobs: Vec<JobInfo>,
        }
        let responses = self
            .rpc_stream(Request::new("job-list.list").json(req)?)?
            .idle_timeout(self.options().timeout)
            .collect()
            .await?;
        let mut jobs = Vec::new();
        for r in responses {
            jobs.extend(r.json::<Jobs>()?.jobs);
        }
        Ok(jobs)
    }

    /// One job's attributes (`["all"]` for every one).
    pub async fn job_list_id(&self, id: JobId, attrs: &[&str]) -> Result<JobInfo> {
        let req = Request::new("job-list.list-id").json(&IdAttrs {
            id,
            attrs,
            state: None,
        })?;
        job_of(self.rpc(req).await?)
    }

    /// Wait (at most `timeout`) until the job has reached one of the states in `mask`.
    pub async fn job_wait_state(
        &self,
        id: JobId,
        mask: u32,
        attrs: &[&str],
        timeout: Duration,
    ) -> Result<JobInfo> {
        let req = Request::new("job-list.list-id").json(&IdAttrs {
            id,
            attrs,
            state: Some(mask),
        })?;
        job_of(self.rpc_within(req, timeout).await?)
    }

    /// `job-info.lookup` of raw keys (`jobspec`, `R`, `eventlog`, …), values as stored.
    pub async fn job_lookup(
        &self,
        id: JobId,
        keys: &[&str],
        current: bool,
    ) -> Result<Map<String, Value>> {
        let req = Request::new("job-info.lookup").json(&Lookup {
            id,
            keys,
            flags: if current { 2 } else { 0 },
        })?;
        self.rpc(req).await?.json()
    }

    /// The job's jobspec (with any updates applied).
    pub async fn job_jobspec(&self, id: JobId) -> Result<Value> {
        self.lookup_json(id, "jobspec").await
    }

    /// The job's resource set R.
    pub async fn job_resources(&self, id: JobId) -> Result<Value> {
        self.lookup_json(id, "R").await
    }

    async fn lookup_json(&self, id: JobId, key: &str) -> Result<Value> {
        let map = self.job_lookup(id, &[key], true).await?;
        let text = map
            .get(key)
            .and_then(Value::as_str)
            .ok_or_else(|| Error::Payload {
                topic: "job-info.lookup".into(),
                reason: format!("no {key} in the response"),
            })?;
        serde_json::from_str(text).map_err(|e| Error::Payload {
            topic: "job-info.lookup".into(),
            reason: format!("{key} is not JSON: {e}"),
        })
    }

    /// The job's main eventlog as it is now.
    pub async fn job_eventlog(&self, id: JobId) -> Result<Vec<EventlogEntry>> {
        let map = self.job_lookup(id, &["eventlog"], false).await?;
        let log = map.get("eventlog").and_then(Value::as_str).unwrap_or("");
        EventlogEntry::parse_log(log)
    }

    /// Raise an exception on a job (severity 0 is fatal).
    pub async fn job_raise(
        &self,
        id: JobId,
        kind: &str,
        severity: u8,
        note: Option<&str>,
    ) -> Result<()> {
        let req = Request::new("job-manager.raise").json(&Raise {
            id,
            kind,
            severity,
            note,
        })?;
        self.rpc(req).await.map(|_| ())
    }

    /// Cancel a job, as `flux cancel` does.
    pub async fn job_cancel(&self, id: JobId, note: Option<&str>) -> Result<()> {
        self.job_raise(id, "cancel", 0, note).await
    }

    /// Wait (at most `timeout`) for a waitable job to end.
    pub async fn job_wait(&self, id: JobId, timeout: Duration) -> Result<WaitResult> {
        let req = Request::new("job-manager.wait").json(&IdOnly { id })?;
        self.rpc_within(req, timeout).await?.json()
    }

    /// Watch an eventlog of the job: `eventlog`, `guest.exec.eventlog` or `guest.output`.
    pub fn job_eventlog_watch(
        &self,
        id: JobId,
        path: &str,
        flags: WatchFlags,
    ) -> Result<EventlogWatch> {
        let req = Request::new("job-info.eventlog-watch").json(&Watch {
            id,
            path,
            flags: if flags.wait_create { 1 } else { 0 },
        })?;
        Ok(EventlogWatch {
            stream: self.rpc_stream(req)?,
            client: self.clone(),
        })
    }

    /// Stream the job's output (waits for the output log to exist).
    pub fn job_output(&self, id: JobId) -> Result<EventlogWatch> {
        self.job_eventlog_watch(id, "guest.output", WatchFlags { wait_create: true })
    }
}

fn job_of(resp: crate::client::Response) -> Result<JobInfo> {
    #[derive(Deserialize)]
    struct One {
        job: JobInfo,
    }
    Ok(resp.json::<One>()?.job)
}
