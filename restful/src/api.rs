//! The flux-restful-api routes under `/v1`.

use std::collections::BTreeMap;

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use flux_client::JobId;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Principal;
use crate::error::{RestError, Result};
use crate::jobs;
use crate::params::{self, FieldError, Loc, ValidationErrors};
use crate::server::{ApiUser, AppState};
use crate::submit::{self, Capacity, Rules};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/auth", get(auth_info))
        .route("/v1/token", post(token))
        .route("/v1/login/access-token", post(login_access_token))
        .route("/v1/service/stop", post(service_stop))
        .route("/v1/jobs", get(list_jobs))
        .route("/v1/jobs/search", get(search_jobs))
        .route("/v1/nodes", get(list_nodes))
        .route("/v1/jobs/submit", post(submit_job))
        .route("/v1/jobs/{jobid}", get(get_job))
        .route("/v1/jobs/{jobid}/cancel", post(cancel_job))
        .route("/v1/jobs/{jobid}/output", get(job_output))
        .route("/v1/jobs/{jobid}/output/stream", get(job_output_stream))
}

// ---------------------------------------------------------------------------------------------
// Shapes (also the OpenAPI schemas)

/// An error or refusal: `{"detail": "..."}`.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct Detail {
    pub detail: String,
}

/// How to authenticate against this server.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct AuthInfo {
    /// `none`, `database` or `shared-secret`.
    pub backend: String,
    pub password_login: bool,
    pub shared_secret_handshake: bool,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
}

/// OAuth2 password form.
#[derive(Deserialize, ToSchema)]
pub struct LoginForm {
    pub username: String,
    pub password: String,
    #[serde(default)]
    pub grant_type: Option<String>,
    #[serde(default)]
    pub scope: Option<String>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct NodesResponse {
    /// Hostnames of the nodes that are up.
    pub nodes: Vec<String>,
}

/// A job submitted: `{"Message": "Job submit.", "id": 123}`; launchers answer `"id": "MANY"`.
#[derive(Serialize, Deserialize, ToSchema)]
#[allow(non_snake_case)]
pub struct SubmitResponse {
    pub Message: String,
    #[schema(value_type = Object)]
    pub id: Value,
}

/// A refused submission, with every problem.
#[derive(Serialize, Deserialize, ToSchema)]
#[allow(non_snake_case)]
pub struct InvalidSubmit {
    pub Message: String,
    #[serde(default)]
    pub Errors: Vec<String>,
    #[serde(default)]
    pub Error: Option<String>,
}

/// The answer to a cancel request.
#[derive(Serialize, Deserialize, ToSchema)]
#[allow(non_snake_case)]
pub struct CancelResponse {
    pub Message: String,
    pub id: String,
}

/// Output so far: `{"Output": [...]}`, or `{"Message": ...}` when there is none yet.
#[derive(Serialize, Deserialize, ToSchema)]
#[allow(non_snake_case)]
pub struct OutputResponse {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub Output: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub Message: Option<String>,
}

/// A job's details: job-list's attributes, with `state` and `result` as names and
/// `returncode`, `runtime` and `exception` derived.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct JobDetails {
    pub id: u64,
    pub state: String,
    #[schema(value_type = Object)]
    pub result: Value,
    #[schema(value_type = Object)]
    pub returncode: Value,
    pub runtime: f64,
    #[schema(value_type = Object)]
    pub exception: Value,
    /// Every other job-list attribute (name, userid, ntasks, nodelist, t_submit, …).
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub other: Map<String, Value>,
}

/// `GET /v1/jobs`: `{"jobs": [...]}` (job-list entries); with `details` a map of id to
/// [`JobDetails`], with `details` and `listing` a list of them.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct JobsResponse {
    #[schema(value_type = Vec<Object>)]
    pub jobs: Vec<Value>,
}

/// The jobs table's data (DataTables server-side protocol).
#[derive(Serialize, Deserialize, ToSchema)]
#[allow(non_snake_case)]
pub struct SearchResponse {
    #[schema(value_type = Vec<Object>)]
    pub data: Vec<Value>,
    /// The request's `draw`, echoed (1 when absent).
    #[schema(value_type = Object)]
    pub draw: Value,
    pub recordsTotal: usize,
    pub recordsFiltered: usize,
}

/// Query of `GET /v1/jobs`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct JobsQuery {
    /// Every job's details instead of the job-list entries (with `--strict`, `detail` too).
    details: Option<bool>,
    /// With details: at most this many jobs (0 or less: none).
    limit: Option<i64>,
    /// With details: a list instead of a map by id.
    listing: Option<bool>,
}

/// Query of `GET /v1/jobs/search`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct SearchQuery {
    /// Skip this many matching jobs.
    start: Option<u64>,
    /// Return at most this many.
    length: Option<u64>,
    /// Echoed back (DataTables request counter).
    draw: Option<i64>,
    /// Only jobs with a value containing this text (`search[value]` too; with `--strict`,
    /// `query` as well).
    search: Option<String>,
}

/// Query of `POST /v1/jobs/submit`. The JSON body, when given, is the `envars` map; a body
/// holding `command` is the whole request (clients before flux-restful 0.2.1).
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct SubmitQuery {
    /// The command, split like a shell would (or a JSON list of words in the body form).
    command: String,
    #[param(minimum = 1)]
    num_tasks: Option<i64>,
    #[param(minimum = 1)]
    cores_per_task: Option<i64>,
    #[param(minimum = 1)]
    gpus_per_task: Option<i64>,
    #[param(minimum = 1)]
    num_nodes: Option<i64>,
    exclusive: Option<bool>,
    /// Shell options as `name=value,name2=value2` (no `-o`).
    option_flags: Option<String>,
    /// Working directory of the job.
    workdir: Option<String>,
    /// Time limit in seconds (0: none).
    #[param(minimum = 0)]
    runtime: Option<i64>,
    /// Start the command (nextflow or snakemake) on the server instead of as a job.
    is_launcher: Option<bool>,
    /// The job's environment as the Python `repr` or JSON text of a dict (what the published
    /// clients send); the JSON body is the usual place.
    envars: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Helpers

/// Decode a query string strictly: invalid percent-encoded UTF-8 is refused, not replaced.
pub fn parse_query(raw: Option<&str>) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for pair in raw.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.push((decode_component(k)?, decode_component(v)?));
    }
    Ok(out)
}

fn decode_component(s: &str) -> Result<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| {
        RestError::BadRequest(
            "The query string is not valid UTF-8: percent-encode UTF-8 text only".into(),
        )
    })
}

/// The last value of the first of `names` present (Starlette keeps the last of repeats).
fn last<'a>(q: &'a [(String, String)], names: &[&str]) -> Option<&'a str> {
    names.iter().find_map(|n| {
        q.iter()
            .rev()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
    })
}

/// A boolean query parameter as flux-restful's FastAPI reads it; a 422 when it does not parse.
fn bool_arg(q: &[(String, String)], names: &[&str], errors: &mut Vec<FieldError>) -> bool {
    let Some(v) = last(q, names) else {
        return false;
    };
    params::parse_bool(v).unwrap_or_else(|| {
        errors.push(FieldError::bool(Loc::Query, names[0], &json!(v)));
        false
    })
}

/// A positive integer query parameter; what does not parse is ignored, as flux-restful does.
fn int_arg(q: &[(String, String)], names: &[&str]) -> Option<u64> {
    last(q, names)
        .and_then(params::python_int)
        .and_then(|n| u64::try_from(n).ok())
        .filter(|n| *n > 0)
}

pub fn parse_jobid(s: &str) -> Result<JobId> {
    JobId::parse(s).map_err(|_| RestError::InvalidJobId(s.to_string()))
}

/// Refuse a caller who may not act on this job: anonymous callers (auth `none`) and
/// superusers may act on every job, others only on the jobs they submitted through us.
/// A job the user may see: its id and record; 400 for a malformed id, 403 for another
/// user's job, 404 for an unknown one.
pub async fn accessible_job(
    state: &AppState,
    user: &Option<Principal>,
    jobid: &str,
) -> Result<(JobId, Map<String, Value>)> {
    let id = parse_jobid(jobid)?;
    ensure_access(state, user, id).await?;
    let raw = state
        .backend
        .job(id)
        .await?
        .ok_or_else(|| RestError::JobNotFound(jobid.to_string()))?;
    Ok((id, raw))
}

pub async fn ensure_access(state: &AppState, user: &Option<Principal>, id: JobId) -> Result<()> {
    let Some(who) = user else { return Ok(()) };
    if who.superuser {
        return Ok(());
    }
    let Some(spec) = state.backend.jobspec(id).await? else {
        return Ok(());
    };
    if jobs::owner_of(&spec) == Some(who.name.as_str()) {
        Ok(())
    } else {
        Err(RestError::Forbidden(format!(
            "{} does not own job {}",
            who.name,
            id.f58()
        )))
    }
}

pub async fn read_body(body: Body, limit: usize) -> Result<Bytes> {
    axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| RestError::TooLarge { limit })
}

/// The jobs of the instance as details, newest first; at most `limit` (all when `None`).
pub async fn detailed_jobs(
    state: &AppState,
    limit: Option<u64>,
) -> Result<Vec<Map<String, Value>>> {
    if limit == Some(0) {
        return Ok(Vec::new());
    }
    let raw = state
        .backend
        .list(limit.unwrap_or(0).min(1 << 20) as usize)
        .await?;
    let now = jobs::now();
    Ok(raw.iter().map(|j| jobs::job_row(j, now)).collect())
}

async fn capacity(state: &AppState) -> Result<Capacity> {
    let r = state.backend.resources().await?;
    Ok(Capacity {
        nodes: r.nodes.len() as u64,
        gpus: if state.config.assume_gpus {
            r.gpus.max(1)
        } else {
            r.gpus
        },
    })
}

/// Parse, check and submit (or launch) a request; shared by the API and the web form.
/// `from_body`: the parameters came as a JSON body (the legacy whole-body submit).
pub async fn submit_params(
    state: &AppState,
    user: &Option<Principal>,
    params: Map<String, Value>,
    from_body: bool,
) -> Result<SubmitResponse> {
    let key = user
        .as_ref()
        .map(|p| p.name.as_str())
        .unwrap_or("anonymous");
    let rules = Rules {
        capacity: capacity(state).await?,
        strict: state.config.strict,
        from_body,
    };
    let sub = submit::parse_submission(&params, rules)?;
    state.limiter.check(key)?;
    let env = jobs::job_environment(std::env::vars(), &state.config.env_passthrough, &sub.envars);
    if sub.is_launcher {
        return launch(state, &sub, env);
    }
    let spec = jobs::jobspec(
        &sub,
        env,
        user.as_ref().map(|p| p.name.as_str()),
        &state.config.default_cwd,
    )?;
    let id = state.backend.submit(&spec).await?;
    tracing::info!(job = %id.f58(), user = key, "submitted");
    Ok(SubmitResponse {
        Message: "Job submit.".into(),
        id: json!(id.as_u64()),
    })
}

/// Start a launcher (nextflow, snakemake) on the server. flux-restful answers 200 with `"id":
/// "MANY"` even when it starts nothing, the reason in the Message; `--strict` answers 400.
fn launch(
    state: &AppState,
    sub: &submit::Submission,
    mut env: BTreeMap<String, String>,
) -> Result<SubmitResponse> {
    let not_started = |message: String, strict_error: RestError| {
        if state.config.strict {
            Err(strict_error)
        } else {
            Ok(SubmitResponse {
                Message: message,
                id: json!("MANY"),
            })
        }
    };
    let prog = &sub.command[0];
    if !state.config.launchers.iter().any(|l| l == prog) {
        return not_started(
            format!("{prog} is not a known launcher. "),
            RestError::InvalidSubmit(vec![format!(
                "{prog} is not a known launcher; known are: {}",
                state.config.launchers.join(", ")
            )]),
        );
    }
    if let Ok(uri) = std::env::var("FLUX_URI") {
        env.insert("FLUX_URI".into(), uri);
    }
    let mut cmd = tokio::process::Command::new(prog);
    cmd.args(&sub.command[1..])
        .env_clear()
        .envs(env)
        .stdin(std::process::Stdio::null());
    if let Some(w) = &sub.workdir {
        cmd.current_dir(w);
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let why = format!("cannot start launcher {prog}: {e}");
            return not_started(why.clone(), RestError::SubmitFailed(why));
        }
    };
    tokio::spawn(async move {
        let _ = child.wait().await;
    });
    Ok(SubmitResponse {
        Message: "Job submit, see jobs table for spawned jobs.".into(),
        id: json!("MANY"),
    })
}

/// The answer to a cancel Flux refused, as flux-restful words it.
pub fn cancel_refused(e: &RestError) -> String {
    format!("Job cannot be cancelled: {e}.")
}

// ---------------------------------------------------------------------------------------------
// Handlers

/// How to authenticate against this server (public).
#[utoipa::path(get, path = "/v1/auth", tag = "auth",
    responses((status = 200, description = "The auth backend and which logins it offers", body = AuthInfo)))]
pub async fn auth_info(State(state): State<AppState>) -> Json<AuthInfo> {
    Json(AuthInfo {
        backend: state.auth.kind.name().into(),
        password_login: state.auth.supports_password(),
        shared_secret_handshake: state.auth.handshake_enabled(),
    })
}

/// The shared-secret handshake: the Authorization header carries a HS256 JWT with `user`,
/// `pass` and `scope: "token"`, signed with the shared secret key.
#[utoipa::path(post, path = "/v1/token", tag = "auth",
    params(("Authorization" = Option<String>, Header, description = "Bearer <JWT signed with the shared secret>")),
    responses(
        (status = 200, description = "An access token", body = TokenResponse),
        (status = 400, description = "Refused: bad credentials, or no handshake on this server", body = Detail)))]
pub async fn token(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<TokenResponse>> {
    let header = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned);
    let auth = state.auth.clone();
    let who = tokio::task::spawn_blocking(move || auth.handshake(header.as_deref()))
        .await
        .map_err(|e| RestError::Config(format!("login task failed: {e}")))??;
    tracing::info!(user = %who.name, "token issued (handshake)");
    Ok(Json(TokenResponse {
        access_token: state.auth.issue_token(&who)?,
        token_type: "Bearer".into(),
    }))
}

/// OAuth2 password login: post `username` and `password` as a form.
#[utoipa::path(post, path = "/v1/login/access-token", tag = "auth",
    request_body(content = LoginForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "An access token", body = TokenResponse),
        (status = 400, description = "Wrong user or password, or no password login here", body = Detail),
        (status = 413, description = "Body too large", body = Detail)))]
pub async fn login_access_token(
    State(state): State<AppState>,
    body: Body,
) -> Result<Json<TokenResponse>> {
    if !state.auth.supports_password() {
        return Err(RestError::LoginRefused(format!(
            "The {} auth backend does not support password login.",
            state.auth.kind.name()
        )));
    }
    let bytes = read_body(body, state.config.max_body).await?;
    let form: LoginForm = serde_urlencoded::from_bytes(&bytes).map_err(|_| {
        RestError::BadRequest(
            "Post the login as a form (application/x-www-form-urlencoded) with username and password"
                .into(),
        )
    })?;
    let who = state
        .authenticate(form.username, form.password)
        .await
        .ok_or_else(|| RestError::LoginRefused("Incorrect user or password".into()))?;
    tracing::info!(user = %who.name, "token issued (password login)");
    Ok(Json(TokenResponse {
        access_token: state.auth.issue_token(&who)?,
        token_type: "Bearer".into(),
    }))
}

/// Stop the server (superusers only); with it, the MiniCluster's instance ends.
#[utoipa::path(post, path = "/v1/service/stop", tag = "service",
    responses(
        (status = 200, description = "Stopping", body = Detail),
        (status = 401, description = "Not authenticated", body = Detail),
        (status = 403, description = "Not a superuser", body = Detail)),
    security(("bearer" = [])))]
pub async fn service_stop(State(state): State<AppState>, user: ApiUser) -> Result<Json<Detail>> {
    let Some(who) = user.0 else {
        return Err(RestError::Forbidden(
            "This action requires a superuser, but the auth backend is 'none'.".into(),
        ));
    };
    if !who.superuser {
        return Err(RestError::Forbidden(
            "The user doesn't have enough privileges".into(),
        ));
    }
    tracing::info!(user = %who.name, "service stop requested");
    state.request_shutdown();
    Ok(Json(Detail {
        detail: "Service stopping.".into(),
    }))
}

/// List jobs.
#[utoipa::path(get, path = "/v1/jobs", tag = "jobs", params(JobsQuery),
    responses(
        (status = 200, description = "`{\"jobs\": [...]}`, or with details a map (or list) of job details", body = JobsResponse),
        (status = 400, description = "Bad query", body = Detail),
        (status = 401, description = "Not authenticated", body = Detail),
        (status = 422, description = "`details` or `listing` is not a boolean", body = ValidationErrors)),
    security(("bearer" = [])))]
pub async fn list_jobs(
    State(state): State<AppState>,
    _user: ApiUser,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    let q = parse_query(q.as_deref())?;
    let strict = state.config.strict;
    let mut errors = Vec::new();
    // flux-restful-client sends `detail`, which flux-restful ignores.
    let details_names: &[&str] = if strict {
        &["details", "detail"]
    } else {
        &["details"]
    };
    let details = bool_arg(&q, details_names, &mut errors);
    let listing = bool_arg(&q, &["listing"], &mut errors);
    if !errors.is_empty() {
        return Err(RestError::Unprocessable(errors));
    }
    // flux-restful reads `limit` only with details; 0 or less there means no jobs.
    let limit = last(&q, &["limit"]).and_then(params::python_int);
    if !details {
        let max = match limit {
            Some(n) if strict && n > 0 => n as u64,
            _ => 1000,
        };
        let raw = state.backend.list(max.min(1 << 20) as usize).await?;
        return Ok(Json(json!({ "jobs": raw })).into_response());
    }
    let jobs = detailed_jobs(&state, limit.map(|n| n.max(0) as u64)).await?;
    if listing {
        return Ok(
            Json(Value::Array(jobs.into_iter().map(Value::Object).collect())).into_response(),
        );
    }
    let map: Map<String, Value> = jobs
        .into_iter()
        .map(|j| (j["id"].to_string(), Value::Object(j)))
        .collect();
    Ok(Json(Value::Object(map)).into_response())
}

/// Jobs for a table: filtered by a search text, then a window of them.
#[utoipa::path(get, path = "/v1/jobs/search", tag = "jobs", params(SearchQuery),
    responses(
        (status = 200, description = "The window of matching jobs", body = SearchResponse),
        (status = 400, description = "Bad query", body = Detail),
        (status = 401, description = "Not authenticated", body = Detail)),
    security(("bearer" = [])))]
pub async fn search_jobs(
    State(state): State<AppState>,
    _user: ApiUser,
    RawQuery(q): RawQuery,
) -> Result<Json<SearchResponse>> {
    let q = parse_query(q.as_deref())?;
    let get = |names: &[&str]| last(&q, names).map(str::to_owned);
    let all = detailed_jobs(&state, None).await?;
    let total = all.len();
    // flux-restful-client sends `query`, which flux-restful ignores.
    let names: &[&str] = if state.config.strict {
        &["search[value]", "search", "query"]
    } else {
        &["search[value]", "search"]
    };
    let mut jobs: Vec<_> = match get(names).filter(|s| !s.is_empty()) {
        Some(text) => all
            .into_iter()
            .filter(|j| jobs::matches_search(j, &text))
            .collect(),
        None => all,
    };
    if let Some(start) = int_arg(&q, &["start"]) {
        jobs = jobs.into_iter().skip(start as usize).collect();
    }
    if let Some(length) = int_arg(&q, &["length"]) {
        jobs.truncate(length as usize);
    }
    // flux-restful echoes `draw` as it came (a string), 1 when absent; --strict as a number.
    let draw = match get(&["draw"]).filter(|d| !d.is_empty()) {
        Some(d) if state.config.strict => json!(d.trim().parse::<i64>().unwrap_or(1)),
        Some(d) => json!(d),
        None => json!(1),
    };
    Ok(Json(SearchResponse {
        recordsFiltered: jobs.len(),
        data: jobs.into_iter().map(Value::Object).collect(),
        draw,
        recordsTotal: total,
    }))
}

/// The nodes of the instance that are up.
#[utoipa::path(get, path = "/v1/nodes", tag = "jobs",
    responses(
        (status = 200, description = "Hostnames", body = NodesResponse),
        (status = 401, description = "Not authenticated", body = Detail)),
    security(("bearer" = [])))]
pub async fn list_nodes(
    State(state): State<AppState>,
    _user: ApiUser,
) -> Result<Json<NodesResponse>> {
    Ok(Json(NodesResponse {
        nodes: state.backend.resources().await?.nodes,
    }))
}

/// Submit a job.
#[utoipa::path(post, path = "/v1/jobs/submit", tag = "jobs", params(SubmitQuery),
    request_body(content = Option<BTreeMap<String, String>>, description = "The job's environment variables (envars)", content_type = "application/json"),
    responses(
        (status = 200, description = "Submitted (a launcher: `\"id\": \"MANY\"`, with the reason in the Message when nothing started)", body = SubmitResponse),
        (status = 400, description = "Invalid submission: `{\"Message\": \"Invalid submit request\", \"Errors\": [...]}`, or the jobspec refused: `{\"Message\": \"There was an issue submitting that job.\", \"Error\": ...}`", body = InvalidSubmit),
        (status = 401, description = "Not authenticated", body = Detail),
        (status = 413, description = "Body too large", body = Detail),
        (status = 422, description = "A parameter that does not parse as its type, or a body that is not a JSON object", body = ValidationErrors),
        (status = 429, description = "Too many submissions from this user (only with --submit-rate)", body = Detail)),
    security(("bearer" = [])))]
pub async fn submit_job(
    State(state): State<AppState>,
    user: ApiUser,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Body,
) -> Result<Json<SubmitResponse>> {
    let mut params: Map<String, Value> = parse_query(q.as_deref())?
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    let bytes = read_body(body, state.config.max_body).await?;
    let mut from_body = false;
    if !bytes.iter().all(u8::is_ascii_whitespace) {
        match body_json(&headers, &bytes, state.config.strict)? {
            Value::Object(m) if m.contains_key("command") && !params.contains_key("command") => {
                // The whole request as a body (clients before 0.2.1, and 0.2.1's retry).
                from_body = true;
                for (k, v) in m {
                    params.insert(k, v);
                }
            }
            Value::Null if state.config.strict => {}
            env @ Value::Object(_) => {
                params.insert("envars".into(), env);
            }
            other if state.config.strict => {
                params.insert("envars".into(), other);
            }
            other => {
                return Err(RestError::Unprocessable(vec![FieldError::body_not_a_dict(
                    other,
                )]));
            }
        }
    }
    Ok(Json(
        submit_params(&state, &user.0, params, from_body).await?,
    ))
}

/// The submit body as JSON. flux-restful reads it only when it is declared JSON (or, in older
/// FastAPI, undeclared) and answers 422 otherwise; `--strict` reads any body and answers 400.
fn body_json(headers: &HeaderMap, bytes: &[u8], strict: bool) -> Result<Value> {
    let declared = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        });
    let text = String::from_utf8_lossy(bytes);
    if !strict
        && let Some(ct) = &declared
        && ct != "application/json"
        && !(ct.starts_with("application/") && ct.ends_with("+json"))
    {
        return Err(RestError::Unprocessable(vec![FieldError::body_not_a_dict(
            Value::String(text.into_owned()),
        )]));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        if strict {
            RestError::BadRequest(format!(
                "The request body is not valid JSON ({e}): send the environment as a JSON object, or the whole request as one"
            ))
        } else {
            let offset = params::json_error_offset(&text, &e);
            RestError::Unprocessable(vec![FieldError::body_not_json(offset, e.to_string())])
        }
    })
}

/// A job's details.
#[utoipa::path(get, path = "/v1/jobs/{jobid}", tag = "jobs",
    params(("jobid" = String, Path, description = "Job id in any form Flux prints (ƒ…, f…, decimal, 0x…)")),
    responses(
        (status = 200, description = "The job", body = JobDetails),
        (status = 400, description = "Not a job id", body = Detail),
        (status = 401, description = "Not authenticated", body = Detail),
        (status = 403, description = "Another user's job", body = Detail),
        (status = 404, description = "No such job", body = Detail)),
    security(("bearer" = [])))]
pub async fn get_job(
    State(state): State<AppState>,
    user: ApiUser,
    Path(jobid): Path<String>,
) -> Result<Json<Map<String, Value>>> {
    let (_, raw) = accessible_job(&state, &user.0, &jobid).await?;
    Ok(Json(jobs::job_details(&raw, jobs::now())))
}

/// Cancel a job.
#[utoipa::path(post, path = "/v1/jobs/{jobid}/cancel", tag = "jobs",
    params(("jobid" = String, Path, description = "Job id")),
    responses(
        (status = 200, description = "Cancel requested", body = CancelResponse),
        (status = 400, description = "Not a job id, or Flux refused (an unknown job, or one that has ended): `Job cannot be cancelled: [Errno 2] …`", body = CancelResponse),
        (status = 401, description = "Not authenticated", body = Detail),
        (status = 403, description = "Another user's job", body = Detail),
        (status = 404, description = "No such job (only with --strict)", body = CancelResponse)),
    security(("bearer" = [])))]
pub async fn cancel_job(
    State(state): State<AppState>,
    user: ApiUser,
    Path(jobid): Path<String>,
) -> Result<Response> {
    let id = parse_jobid(&jobid)?;
    ensure_access(&state, &user.0, id).await?;
    let (status, message) = match state.backend.cancel(id).await {
        Ok(()) => {
            tracing::info!(job = %id.f58(), user = user.key(), "cancel requested");
            (StatusCode::OK, "Job is requested to cancel.".to_string())
        }
        Err(e @ RestError::Refused { .. }) => {
            if state.config.strict && state.backend.job(id).await?.is_none() {
                (
                    StatusCode::NOT_FOUND,
                    "Job cannot be cancelled: unknown job id.".to_string(),
                )
            } else {
                (StatusCode::BAD_REQUEST, cancel_refused(&e))
            }
        }
        Err(other) => return Err(other),
    };
    Ok((
        status,
        Json(CancelResponse {
            Message: message,
            id: jobid,
        }),
    )
        .into_response())
}

/// The output a job has produced so far (never waits for the job).
#[utoipa::path(get, path = "/v1/jobs/{jobid}/output", tag = "jobs",
    params(("jobid" = String, Path, description = "Job id")),
    responses(
        (status = 200, description = "`{\"Output\": [...]}`, or a Message when there is none yet or the job is unknown", body = OutputResponse),
        (status = 400, description = "Not a job id", body = Detail),
        (status = 401, description = "Not authenticated", body = Detail),
        (status = 403, description = "Another user's job", body = Detail),
        (status = 404, description = "No such job (only with --strict)", body = Detail)),
    security(("bearer" = [])))]
pub async fn job_output(
    State(state): State<AppState>,
    user: ApiUser,
    Path(jobid): Path<String>,
) -> Result<Json<OutputResponse>> {
    let id = parse_jobid(&jobid)?;
    ensure_access(&state, &user.0, id).await?;
    let lines = state.backend.output(id).await?;
    if !lines.is_empty() {
        return Ok(Json(OutputResponse {
            Output: Some(lines),
            Message: None,
        }));
    }
    if state.config.strict && state.backend.job(id).await?.is_none() {
        return Err(RestError::JobNotFound(jobid));
    }
    Ok(Json(OutputResponse {
        Output: None,
        Message: Some("The output does not exist yet, or the jobid is incorrect.".into()),
    }))
}

/// Stream the job's output as it is produced, until the job ends or the client leaves.
#[utoipa::path(get, path = "/v1/jobs/{jobid}/output/stream", tag = "jobs",
    params(("jobid" = String, Path, description = "Job id")),
    responses(
        (status = 200, description = "Output chunks, as produced (nothing for an unknown job)", content_type = "text/plain", body = String),
        (status = 400, description = "Not a job id", body = Detail),
        (status = 401, description = "Not authenticated", body = Detail),
        (status = 403, description = "Another user's job", body = Detail),
        (status = 404, description = "No such job (only with --strict)", body = Detail)),
    security(("bearer" = [])))]
pub async fn job_output_stream(
    State(state): State<AppState>,
    user: ApiUser,
    Path(jobid): Path<String>,
) -> Result<Response> {
    let id = parse_jobid(&jobid)?;
    ensure_access(&state, &user.0, id).await?;
    // flux-restful streams nothing, with a 200, for a job Flux does not know.
    stream_response(&state, id, &jobid, !state.config.strict).await
}

/// The streaming body shared by the API and the web page; an unknown job is an empty stream
/// when `unknown_is_empty`, else a 404.
pub async fn stream_response(
    state: &AppState,
    id: JobId,
    jobid: &str,
    unknown_is_empty: bool,
) -> Result<Response> {
    let body = if state.backend.job(id).await?.is_none() {
        if !unknown_is_empty {
            return Err(RestError::JobNotFound(jobid.to_string()));
        }
        Body::empty()
    } else {
        let chunks = state.backend.output_stream(id).await?;
        let stopping = state.stopping();
        Body::from_stream(
            chunks
                .take_until(stopping)
                .map(|c| Ok::<_, std::convert::Infallible>(Bytes::from(c))),
        )
    };
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        body,
    )
        .into_response())
}
