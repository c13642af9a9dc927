//! The control plane's HTTP API under `/v1`: pools, queues, jobs. JSON in and out; an error
//! is `{"error": "…"}` with the status the store's error maps to (404 unknown, 409 conflict,
//! 429 full queue, 400 bad input).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use crate::dispatch::{minicluster, with};
use crate::pool::{Pool, name_problem, validate};
use crate::queue::{QueueConfig, QueueState};
use crate::store::{Job, JobFilter, JobState, Launch, NewJob, StoreError};

/// An error answer.
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let status =
            StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            tracing::error!("store: {e}");
        }
        ApiError(status, e.to_string())
    }
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

type ApiResult<T> = Result<T, ApiError>;

/// Runs a store call off the async threads.
async fn store<T: Send + 'static>(
    st: &AppState,
    f: impl FnOnce(&mut dyn crate::store::Store) -> Result<T, StoreError> + Send + 'static,
) -> ApiResult<T> {
    let shared = st.store.clone();
    tokio::task::spawn_blocking(move || with(&shared, f))
        .await
        .map_err(|e| {
            ApiError(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("store task: {e}"),
            )
        })?
        .map_err(ApiError::from)
}

/// A pool is checked whole, its template included (as the MiniCluster a job would get).
fn check_pool(p: &Pool) -> ApiResult<()> {
    validate(p).map_err(|e| bad(e.to_string()))?;
    if p.template.is_some() {
        let probe = Job::waiting(
            0,
            NewJob {
                command: vec!["true".into()],
                ..NewJob::default()
            },
        );
        minicluster::for_job(&probe, p, &format!("{}-j0", p.name))
            .map_err(|e| bad(format!("pool is not valid:\n  - template: {e}")))?;
    }
    Ok(())
}

#[derive(Serialize, ToSchema)]
pub struct PoolList {
    /// Changes with every pool change; `import` sends it back to refuse a stale diff.
    pub revision: u64,
    #[schema(value_type = Vec<Object>)]
    pub pools: Vec<Pool>,
}

#[utoipa::path(get, path = "/v1/pools", tag = "pools", responses((status = 200, body = PoolList)))]
pub async fn list_pools(State(st): State<AppState>) -> ApiResult<Json<PoolList>> {
    let (revision, pools) = store(&st, |s| Ok((s.pools_revision()?, s.pools()?))).await?;
    Ok(Json(PoolList { revision, pools }))
}

#[utoipa::path(post, path = "/v1/pools", tag = "pools", request_body(content = Object, description = "a pool"),
    responses((status = 201, description = "created"), (status = 400, description = "invalid, with every problem"), (status = 409, description = "exists")))]
pub async fn create_pool(
    State(st): State<AppState>,
    Json(p): Json<Pool>,
) -> ApiResult<(StatusCode, Json<Pool>)> {
    check_pool(&p)?;
    let body = p.clone();
    store(&st, move |s| s.create_pool(&body)).await?;
    st.wake.notify();
    Ok((StatusCode::CREATED, Json(p)))
}

async fn find_pool(st: &AppState, name: String) -> ApiResult<Pool> {
    store(st, move |s| {
        s.pools()?
            .into_iter()
            .find(|p| p.name == name)
            .ok_or(StoreError::NotFound { kind: "pool", name })
    })
    .await
}

#[utoipa::path(get, path = "/v1/pools/{name}", tag = "pools", responses((status = 200, description = "the pool"), (status = 404, description = "no such pool")))]
pub async fn get_pool(
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<Pool>> {
    Ok(Json(find_pool(&st, name).await?))
}

#[utoipa::path(put, path = "/v1/pools/{name}", tag = "pools", request_body(content = Object, description = "the whole pool"),
    responses((status = 200, description = "updated"), (status = 400, description = "invalid"), (status = 404, description = "no such pool")))]
pub async fn update_pool(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Json(p): Json<Pool>,
) -> ApiResult<Json<Pool>> {
    if p.name != name {
        return Err(bad(format!(
            "name: the body names pool {:?}, the path {name:?} (fix: rename by export, edit, import)",
            p.name
        )));
    }
    check_pool(&p)?;
    let body = p.clone();
    store(&st, move |s| s.update_pool(&body)).await?;
    st.wake.notify();
    Ok(Json(p))
}

#[utoipa::path(delete, path = "/v1/pools/{name}", tag = "pools", responses((status = 204, description = "deleted"), (status = 404, description = "no such pool"), (status = 409, description = "has running launches")))]
pub async fn delete_pool(
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    store(&st, move |s| s.delete_pool(&name)).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn set_enabled(st: &AppState, name: String, enabled: bool) -> ApiResult<Json<Pool>> {
    let mut p = find_pool(st, name).await?;
    p.enabled = enabled;
    let body = p.clone();
    store(st, move |s| s.update_pool(&body)).await?;
    st.wake.notify();
    Ok(Json(p))
}

#[utoipa::path(post, path = "/v1/pools/{name}/disable", tag = "pools", responses((status = 200, description = "disabled: no new work; running work finishes")))]
pub async fn disable_pool(
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<Pool>> {
    set_enabled(&st, name, false).await
}

#[utoipa::path(post, path = "/v1/pools/{name}/enable", tag = "pools", responses((status = 200, description = "enabled")))]
pub async fn enable_pool(
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<Pool>> {
    set_enabled(&st, name, true).await
}

#[derive(Deserialize, IntoParams)]
pub struct LaunchesQuery {
    /// At most this many, newest first (default 50).
    pub limit: Option<u32>,
}

#[utoipa::path(get, path = "/v1/pools/{name}/launches", tag = "pools", params(LaunchesQuery),
    responses((status = 200, description = "launches with their timelines, newest first")))]
pub async fn pool_launches(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<LaunchesQuery>,
) -> ApiResult<Json<Vec<Launch>>> {
    find_pool(&st, name.clone()).await?;
    let limit = q.limit.unwrap_or(50).min(10_000);
    Ok(Json(
        store(&st, move |s| s.launches(Some(&name), limit)).await?,
    ))
}

#[derive(Deserialize, ToSchema)]
pub struct ImportRequest {
    #[schema(value_type = Vec<Object>)]
    pub upserts: Vec<Pool>,
    pub deletes: Vec<String>,
    /// The revision the diff was computed against.
    pub revision: u64,
}

#[utoipa::path(post, path = "/v1/pools/import", tag = "pools", request_body = ImportRequest,
    responses((status = 200, description = "applied, the new revision"), (status = 409, description = "the pools changed since the diff")))]
pub async fn import_pools(
    State(st): State<AppState>,
    Json(r): Json<ImportRequest>,
) -> ApiResult<Json<Value>> {
    for p in &r.upserts {
        check_pool(p).map_err(|ApiError(s, m)| ApiError(s, format!("pool {}: {m}", p.name)))?;
    }
    let revision = store(&st, move |s| {
        s.import_pools(&r.upserts, &r.deletes, r.revision)?;
        s.pools_revision()
    })
    .await?;
    st.wake.notify();
    Ok(Json(json!({ "revision": revision })))
}

fn check_queue(q: &QueueConfig, pools: &[Pool]) -> ApiResult<()> {
    let mut problems: Vec<String> = name_problem("queue", &q.name).into_iter().collect();
    if q.max_running == 0 {
        problems.push("max_running: is 0, so nothing would ever run (fix: 1 or more; `queues pause` stops dispatch)".into());
    }
    if q.max_depth == 0 {
        problems.push("max_depth: is 0, so every submission would be refused (fix: 1 or more; `queues drain` stops submissions)".into());
    }
    for p in &q.pools {
        if !pools.iter().any(|x| &x.name == p) {
            problems.push(format!(
                "pools: there is no pool {p} (fix: create it first, or leave it out)"
            ));
        }
    }
    for (who, w) in &q.weights {
        if !(w.is_finite() && *w > 0.0) {
            problems.push(format!(
                "weights.{who}: {w} is not a positive number (fix: e.g. {who}=2)"
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(bad(format!(
            "queue is not valid:\n  - {}",
            problems.join("\n  - ")
        )))
    }
}

#[utoipa::path(get, path = "/v1/queues", tag = "queues", responses((status = 200, description = "queues with their job counts")))]
pub async fn list_queues(State(st): State<AppState>) -> ApiResult<Json<Vec<Value>>> {
    let out = store(&st, |s| {
        let queues = s.queues()?;
        let mut out = Vec::new();
        for q in queues {
            let counts: BTreeMap<&str, u32> = s
                .counts(&q.name)?
                .into_iter()
                .map(|(state, n)| (state.as_str(), n))
                .collect();
            let mut v = serde_json::to_value(&q).expect("a queue serialises");
            v["jobs"] = json!(counts);
            out.push(v);
        }
        Ok(out)
    })
    .await?;
    Ok(Json(out))
}

#[utoipa::path(post, path = "/v1/queues", tag = "queues", request_body(content = Object, description = "a queue"),
    responses((status = 201, description = "created"), (status = 400, description = "invalid"), (status = 409, description = "exists")))]
pub async fn create_queue(
    State(st): State<AppState>,
    Json(q): Json<QueueConfig>,
) -> ApiResult<(StatusCode, Json<QueueConfig>)> {
    let pools = store(&st, |s| s.pools()).await?;
    check_queue(&q, &pools)?;
    let body = q.clone();
    store(&st, move |s| s.create_queue(&body)).await?;
    Ok((StatusCode::CREATED, Json(q)))
}

#[utoipa::path(post, path = "/v1/queues/{name}/{action}", tag = "queues",
    params(("action" = String, Path, description = "pause (no dispatch), resume, or drain (no new submissions)")),
    responses((status = 200, description = "the queue"), (status = 404, description = "no such queue")))]
pub async fn queue_action(
    State(st): State<AppState>,
    Path((name, action)): Path<(String, String)>,
) -> ApiResult<Json<QueueConfig>> {
    let state = match action.as_str() {
        "pause" => QueueState::Paused,
        "resume" => QueueState::Open,
        "drain" => QueueState::Draining,
        other => {
            return Err(ApiError(
                StatusCode::NOT_FOUND,
                format!("no queue action {other:?} (fix: pause, resume or drain)"),
            ));
        }
    };
    let q = store(&st, move |s| {
        let mut q =
            s.queues()?
                .into_iter()
                .find(|q| q.name == name)
                .ok_or(StoreError::NotFound {
                    kind: "queue",
                    name,
                })?;
        q.state = state;
        s.update_queue(&q)?;
        Ok(q)
    })
    .await?;
    st.wake.notify();
    Ok(Json(q))
}

fn check_job(j: &NewJob) -> ApiResult<()> {
    let mut problems = Vec::new();
    if j.command.is_empty() || j.command[0].trim().is_empty() {
        problems.push("command: is empty (fix: minicluster submit -- CMD ARGS…)".to_string());
    }
    if j.command.iter().map(String::len).sum::<usize>() > 64 * 1024 {
        problems.push("command: is longer than 64 KiB (fix: put it in a script)".into());
    }
    if j.user.trim().is_empty() {
        problems.push("user: is empty (fix: --user NAME)".into());
    }
    if j.size == Some(0) {
        problems.push("size: is 0 (fix: 1 or more brokers)".into());
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(bad(format!(
            "job is not valid:\n  - {}",
            problems.join("\n  - ")
        )))
    }
}

#[utoipa::path(post, path = "/v1/jobs", tag = "jobs", request_body(content = Object, description = "queue, user, project, priority, command, requires, size"),
    responses((status = 201, description = "queued"), (status = 400, description = "invalid, or no pool could run it"), (status = 404, description = "no such queue"),
        (status = 409, description = "the queue is draining"), (status = 429, description = "the queue is full")))]
pub async fn submit(
    State(st): State<AppState>,
    Json(j): Json<NewJob>,
) -> ApiResult<(StatusCode, Json<Job>)> {
    check_job(&j)?;
    let job = store(&st, move |s| {
        let id = s.submit(&j)?;
        s.job(id)
    })
    .await?;
    st.wake.notify();
    Ok((StatusCode::CREATED, Json(job)))
}

#[derive(Deserialize, IntoParams)]
pub struct JobsQuery {
    pub queue: Option<String>,
    /// waiting, claimed, done, failed or cancelled.
    pub state: Option<String>,
    pub user: Option<String>,
    /// Newest first, at most this many (default 100).
    pub limit: Option<u32>,
}

#[utoipa::path(get, path = "/v1/jobs", tag = "jobs", params(JobsQuery), responses((status = 200, description = "jobs, newest first")))]
pub async fn list_jobs(
    State(st): State<AppState>,
    Query(q): Query<JobsQuery>,
) -> ApiResult<Json<Vec<Job>>> {
    let state = q
        .state
        .as_deref()
        .map(JobState::parse)
        .transpose()
        .map_err(|_| bad("state: is not one of waiting, claimed, done, failed, cancelled"))?;
    let filter = JobFilter {
        queue: q.queue,
        state,
        user: q.user,
        limit: Some(q.limit.unwrap_or(100).min(100_000)),
    };
    Ok(Json(store(&st, move |s| s.jobs(&filter)).await?))
}

#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs", responses((status = 200, description = "the job and its launch"), (status = 404, description = "no such job")))]
pub async fn get_job(State(st): State<AppState>, Path(id): Path<u64>) -> ApiResult<Json<Value>> {
    let (job, launch) = store(&st, move |s| {
        let job = s.job(id)?;
        let launch = s.launch_of(id)?;
        Ok((job, launch))
    })
    .await?;
    Ok(Json(json!({ "job": job, "launch": launch })))
}

#[utoipa::path(post, path = "/v1/jobs/{id}/cancel", tag = "jobs", responses((status = 200, description = "cancelled, or marked for the dispatcher to stop"), (status = 404, description = "no such job"), (status = 409, description = "already ended")))]
pub async fn cancel(State(st): State<AppState>, Path(id): Path<u64>) -> ApiResult<Json<Job>> {
    let job = store(&st, move |s| s.cancel(id)).await?;
    st.wake.notify();
    Ok(Json(job))
}

#[derive(Deserialize, IntoParams)]
pub struct LogQuery {
    /// Bytes already read; the answer starts there.
    pub offset: Option<u64>,
}

#[utoipa::path(get, path = "/v1/jobs/{id}/logs", tag = "jobs", params(LogQuery),
    responses((status = 200, description = "rank 0's output from offset (a snapshot; X-Job-State says whether more may come)", content_type = "text/plain"), (status = 404, description = "no such job")))]
pub async fn job_logs(
    State(st): State<AppState>,
    Path(id): Path<u64>,
    Query(q): Query<LogQuery>,
) -> ApiResult<Response> {
    let (job, pool) = store(&st, move |s| {
        let job = s.job(id)?;
        let pool = match &job.pool {
            Some(name) => s.pools()?.into_iter().find(|p| &p.name == name),
            None => None,
        };
        Ok((job, pool))
    })
    .await?;
    let bytes = match (&pool, job.launch) {
        (Some(p), Some(_)) => {
            let exec = st.executors.for_type(p.launcher).ok();
            let name = crate::store::launch_name(&p.name, id);
            let p = p.clone();
            let offset = q.offset.unwrap_or(0);
            tokio::task::spawn_blocking(move || exec.and_then(|e| e.log(&p, id, &name, offset)))
                .await
                .ok()
                .flatten()
                .unwrap_or_default()
        }
        _ => Vec::new(),
    };
    let mut headers = HeaderMap::new();
    headers.insert(
        "content-type",
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert("x-job-state", HeaderValue::from_static(job.state.as_str()));
    Ok((headers, bytes).into_response())
}
