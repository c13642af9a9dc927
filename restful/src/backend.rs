//! The boundary to Flux: everything the HTTP layer asks of Flux goes through [`FluxBackend`].
//!
//! [`FluxClientBackend`] is the real one, on the native client (`flux-client`); tests put the
//! in-memory [`StandIn`](crate::standin::StandIn) in its place.

use std::time::Duration;

use async_trait::async_trait;
use flux_client::{Client, JobId, Jobspec, ListRequest, OutputEvent, SubmitOptions};
use futures_util::stream::BoxStream;
use serde_json::{Map, Value};

use crate::error::{RestError, Result};

/// A job as job-list reports it (attributes by name, values as Flux sends them).
pub type RawJob = Map<String, Value>;

/// What the instance has, for `/v1/nodes` and for checking submissions.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Resources {
    /// Hostnames of the nodes that are up, in rank order.
    pub nodes: Vec<String>,
    /// GPUs in the whole instance.
    pub gpus: u64,
}

/// One chunk of job output as it is produced.
pub type OutputStream = BoxStream<'static, String>;

#[async_trait]
pub trait FluxBackend: Send + Sync + 'static {
    /// Short name for logs (`flux`, `stand-in`).
    fn name(&self) -> &'static str;

    /// The instance's up nodes and GPUs.
    async fn resources(&self) -> Result<Resources>;

    /// Submit a jobspec (signed for the server's user); returns the job id.
    async fn submit(&self, jobspec: &Jobspec) -> Result<JobId>;

    /// Up to `max` jobs of the server's user (0: all), newest first, every attribute.
    async fn list(&self, max: usize) -> Result<Vec<RawJob>>;

    /// One job, every attribute; `None` when Flux does not know it.
    async fn job(&self, id: JobId) -> Result<Option<RawJob>>;

    /// The job's jobspec (for who submitted it); `None` when Flux does not know the job.
    async fn jobspec(&self, id: JobId) -> Result<Option<Value>>;

    /// The output the job has produced so far (stdout and stderr chunks, in order); empty
    /// when it has not started. Never waits for the job.
    async fn output(&self, id: JobId) -> Result<Vec<String>>;

    /// Output chunks as they are produced, ending when the job's output ends.
    async fn output_stream(&self, id: JobId) -> Result<OutputStream>;

    /// Cancel the job. Flux's refusal (an unknown job, one that has ended) is
    /// [`RestError::Refused`] with Flux's errno and message.
    async fn cancel(&self, id: JobId) -> Result<()>;
}

/// The real backend: one multiplexed connection to the broker's local socket.
pub struct FluxClientBackend {
    client: Client,
    uid: u32,
}

impl FluxClientBackend {
    /// Connect to `$FLUX_URI`.
    pub async fn connect_env() -> Result<Self> {
        let client = Client::connect_env()
            .await
            .map_err(|e| RestError::Config(format!("cannot reach Flux: {e}")))?;
        Ok(Self::new(client))
    }

    pub fn new(client: Client) -> Self {
        let uid = current_uid();
        FluxClientBackend { client, uid }
    }

    /// The same, with the uid whose jobs are listed given (replay tests: the recorded owner).
    pub fn with_uid(client: Client, uid: u32) -> Self {
        FluxClientBackend { client, uid }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }
}

fn current_uid() -> u32 {
    // /proc/self is the portable way without libc here.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2))
                .and_then(|u| u.parse().ok())
        })
        .unwrap_or(0)
}

fn flux_err(e: flux_client::Error, id: JobId) -> RestError {
    RestError::from_flux(e, id.f58())
}

/// Hostnames of the nodes of an Rv1 resource set, by rank.
fn nodes_of(r: &Value) -> Result<Vec<(u32, String)>> {
    let exec = &r["execution"];
    let mut hosts = Vec::new();
    for entry in exec["nodelist"].as_array().into_iter().flatten() {
        let text = entry.as_str().unwrap_or_default();
        let list = minicluster_core::hostlist::Hostlist::parse(text)
            .map_err(|e| RestError::FluxUnavailable(format!("bad nodelist {text:?}: {e}")))?;
        hosts.extend(list.hosts().iter().cloned());
    }
    let mut ranks = Vec::new();
    for entry in exec["R_lite"].as_array().into_iter().flatten() {
        let ids = flux_client::parse_idset(entry["rank"].as_str().unwrap_or_default())
            .map_err(|e| RestError::FluxUnavailable(e.to_string()))?;
        ranks.extend(ids);
    }
    ranks.sort_unstable();
    ranks.dedup();
    Ok(ranks.into_iter().zip(hosts).collect())
}

fn gpus_of(r: &Value) -> u64 {
    let mut n = 0;
    for entry in r["execution"]["R_lite"].as_array().into_iter().flatten() {
        let ranks = flux_client::parse_idset(entry["rank"].as_str().unwrap_or_default())
            .map(|v| v.len() as u64)
            .unwrap_or(0);
        if let Some(g) = entry["children"]["gpu"].as_str() {
            n += ranks
                * flux_client::parse_idset(g)
                    .map(|v| v.len() as u64)
                    .unwrap_or(0);
        }
    }
    n
}

/// Ranks of an Rv1 resource set.
fn ranks_of(r: &Value) -> Vec<u32> {
    r["execution"]["R_lite"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| flux_client::parse_idset(e["rank"].as_str()?).ok())
        .flatten()
        .collect()
}

/// The data chunks of a `guest.output` eventlog.
pub fn output_chunks(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|l| flux_client::EventlogEntry::parse(l).ok())
        .filter(|e| e.name == "data")
        .filter_map(|e| {
            e.context
                .and_then(|c| c.get("data").and_then(Value::as_str).map(str::to_owned))
        })
        .collect()
}

#[async_trait]
impl FluxBackend for FluxClientBackend {
    fn name(&self) -> &'static str {
        "flux"
    }

    async fn resources(&self) -> Result<Resources> {
        let s = self
            .client
            .sched_status()
            .await
            .map_err(|e| RestError::FluxUnavailable(e.to_string()))?;
        let down = ranks_of(&s.down);
        let nodes = nodes_of(&s.all)?
            .into_iter()
            .filter(|(rank, _)| !down.contains(rank))
            .map(|(_, host)| host)
            .collect();
        Ok(Resources {
            nodes,
            gpus: gpus_of(&s.all),
        })
    }

    async fn submit(&self, jobspec: &Jobspec) -> Result<JobId> {
        self.client
            .submit_jobspec(jobspec, SubmitOptions::default())
            .await
            .map_err(|e| match e {
                flux_client::Error::Remote { message, .. } => {
                    RestError::SubmitFailed(message.unwrap_or_else(|| "refused by Flux".into()))
                }
                flux_client::Error::Jobspec(m) => RestError::SubmitFailed(m),
                other => RestError::FluxUnavailable(other.to_string()),
            })
    }

    async fn list(&self, max: usize) -> Result<Vec<RawJob>> {
        let req = ListRequest::all(max.min(u32::MAX as usize) as u32)
            .states(flux_client::state_mask::ALL)
            .user(self.uid);
        let jobs = self
            .client
            .job_list(&req)
            .await
            .map_err(|e| RestError::FluxUnavailable(e.to_string()))?;
        Ok(jobs.into_iter().map(to_raw).collect())
    }

    async fn job(&self, id: JobId) -> Result<Option<RawJob>> {
        match self.client.job_list_id(id, &["all"]).await {
            Ok(job) => Ok(Some(to_raw(job))),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(flux_err(e, id)),
        }
    }

    async fn jobspec(&self, id: JobId) -> Result<Option<Value>> {
        match self.client.job_jobspec(id).await {
            Ok(j) => Ok(Some(j)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(flux_err(e, id)),
        }
    }

    async fn output(&self, id: JobId) -> Result<Vec<String>> {
        match self.client.job_lookup(id, &["guest.output"], false).await {
            Ok(map) => Ok(output_chunks(
                map.get("guest.output")
                    .and_then(Value::as_str)
                    .unwrap_or_default(),
            )),
            Err(e) if e.is_not_found() => Ok(Vec::new()),
            Err(e) => Err(flux_err(e, id)),
        }
    }

    async fn output_stream(&self, id: JobId) -> Result<OutputStream> {
        let watch = self
            .client
            .job_output(id)
            .map_err(|e| flux_err(e, id))?
            .idle_timeout(Duration::from_secs(24 * 3600));
        let stream = futures_util::stream::unfold(Some(watch), |state| async move {
            let mut watch = state?;
            loop {
                match watch.next_output().await {
                    Some(Ok(OutputEvent::Data { data, .. })) => return Some((data, Some(watch))),
                    Some(Ok(_)) => continue,
                    // ENODATA (the log is complete), ENOENT (the job never ran) and errors
                    // all end the stream.
                    Some(Err(_)) | None => return None,
                }
            }
        });
        Ok(Box::pin(stream))
    }

    async fn cancel(&self, id: JobId) -> Result<()> {
        self.client.job_cancel(id, None).await.map_err(|e| match e {
            flux_client::Error::Remote {
                errnum, message, ..
            } => RestError::Refused {
                errnum,
                message: message.unwrap_or_else(|| "refused by Flux".into()),
            },
            other => flux_err(other, id),
        })
    }
}

fn to_raw(job: flux_client::JobInfo) -> RawJob {
    match serde_json::to_value(job) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nodes_follow_ranks_and_skip_down_ones() {
        let all = json!({"version":1,"execution":{"R_lite":[{"rank":"0-2","children":{"core":"0-1","gpu":"0"}}],"nodelist":["mc-[0-2]"]}});
        let nodes = nodes_of(&all).unwrap();
        assert_eq!(
            nodes,
            vec![(0, "mc-0".into()), (1, "mc-1".into()), (2, "mc-2".into())]
        );
        assert_eq!(gpus_of(&all), 3);
        let down = json!({"version":1,"execution":{"R_lite":[{"rank":"1","children":{"core":"0-1"}}],"nodelist":["mc-1"]}});
        assert_eq!(ranks_of(&down), vec![1]);
    }

    #[test]
    fn output_chunks_keep_data_only() {
        let log = concat!(
            "{\"timestamp\":1.0,\"name\":\"header\",\"context\":{\"version\":1}}\n",
            "{\"timestamp\":1.1,\"name\":\"data\",\"context\":{\"stream\":\"stdout\",\"rank\":\"0\",\"data\":\"one\\n\"}}\n",
            "{\"timestamp\":1.2,\"name\":\"data\",\"context\":{\"stream\":\"stdout\",\"rank\":\"0\",\"eof\":true}}\n",
        );
        assert_eq!(output_chunks(log), vec!["one\n".to_string()]);
    }
}
