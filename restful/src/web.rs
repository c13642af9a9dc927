//! The web pages: a jobs table with live state, a submit form, and a job page whose output
//! follows the job. Server-rendered from the templates in `restful/templates` (embedded); the
//! little JavaScript there is plain, with no build step.
//!
//! Browsers authenticate with HTTP Basic (password backends), a bearer header, or an
//! `access_token` cookie. Forms carry a CSRF token that must equal the `csrf` cookie.

use axum::Router;
use axum::body::Body;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use base64::Engine;
use serde::Serialize;
use serde_json::{Map, Value};
use subtle::ConstantTimeEq;

use crate::api::{self, ensure_access, parse_jobid, read_body};
use crate::auth::Principal;
use crate::error::{RestError, Result};
use crate::jobs;
use crate::server::{AppState, bearer};

const TEMPLATES: &[(&str, &str)] = &[
    (
        "base.html",
        include_str!("../../templates/restful/base.html"),
    ),
    (
        "jobs.html",
        include_str!("../../templates/restful/jobs.html"),
    ),
    (
        "submit.html",
        include_str!("../../templates/restful/submit.html"),
    ),
    ("job.html", include_str!("../../templates/restful/job.html")),
    (
        "index.html",
        include_str!("../../templates/restful/index.html"),
    ),
    (
        "about.html",
        include_str!("../../templates/restful/about.html"),
    ),
];

/// The informational pages under `/page/{name}`, as flux-restful has them.
const PAGES: &[&str] = &["index", "about"];

pub struct Pages {
    tera: tera::Tera,
}

impl std::fmt::Debug for Pages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pages")
    }
}

impl Default for Pages {
    fn default() -> Self {
        Self::new()
    }
}

impl Pages {
    pub fn new() -> Pages {
        let mut tera = tera::Tera::new();
        tera.add_raw_templates(TEMPLATES.iter().copied())
            .expect("embedded templates parse (checked by tests)");
        Pages { tera }
    }

    /// The embedded pages, with any file of the same name in `dir/restful/` taking its place
    /// (`--templates DIR`, the same directory the other commands take).
    pub fn with_overrides(dir: &std::path::Path) -> Result<Pages> {
        let mut pages = Pages::new();
        for (name, _) in TEMPLATES {
            let path = dir.join("restful").join(name);
            if path.exists() {
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| RestError::Config(format!("{}: {e}", path.display())))?;
                pages
                    .tera
                    .add_raw_template(name, &text)
                    .map_err(|e| RestError::Config(format!("{}: {e}", path.display())))?;
            }
        }
        Ok(pages)
    }

    pub fn render(&self, name: &str, ctx: &impl Serialize) -> Result<String> {
        let ctx = tera::Context::from_serialize(ctx)
            .map_err(|e| RestError::Config(format!("template context for {name}: {e}")))?;
        self.tera
            .render(name, &ctx)
            .map_err(|e| RestError::Config(format!("rendering {name}: {e}")))
    }
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route("/page/{name}", get(page))
        .route("/jobs", get(jobs_page))
        .route("/jobs/submit", get(submit_page).post(submit_form))
        .route("/job/{jobid}", get(job_page))
        .route("/job/{jobid}/cancel", post(cancel_form))
        .route("/job/{jobid}/output/stream", get(stream))
        .route("/web/jobs.json", get(jobs_json))
}

/// A browser's user: `None` with the `none` backend.
pub struct WebUser(pub Option<Principal>);

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

impl FromRequestParts<AppState> for WebUser {
    type Rejection = RestError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        if !state.auth.requires_auth() {
            return Ok(WebUser(None));
        }
        if let Some(t) = bearer(parts).or_else(|| cookie(&parts.headers, "access_token")) {
            return state.auth.verify_token(t).map(|p| WebUser(Some(p)));
        }
        let basic = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.strip_prefix("Basic "))
            .and_then(|b| {
                base64::engine::general_purpose::STANDARD
                    .decode(b.trim())
                    .ok()
            })
            .and_then(|b| String::from_utf8(b).ok());
        let Some((user, pass)) = basic.as_deref().and_then(|b| b.split_once(':')) else {
            return Err(RestError::NeedBasic("Not authenticated".into()));
        };
        state
            .authenticate(user.to_string(), pass.to_string())
            .await
            .map(|p| WebUser(Some(p)))
            .ok_or_else(|| RestError::NeedBasic("Incorrect user or password".into()))
    }
}

/// The page's CSRF token: the cookie's when the browser has one, else a fresh one.
fn csrf_token(headers: &HeaderMap) -> (String, bool) {
    match cookie(headers, "csrf")
        .filter(|c| c.len() == 32 && c.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        Some(c) => (c.to_string(), false),
        None => {
            let mut b = [0u8; 16];
            let _ = getrandom::fill(&mut b);
            (b.iter().map(|x| format!("{x:02x}")).collect(), true)
        }
    }
}

fn with_csrf(html: String, token: &str, fresh: bool) -> Response {
    let mut resp = Html(html).into_response();
    if fresh && let Ok(v) = format!("csrf={token}; Path=/; HttpOnly; SameSite=Strict").parse() {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

fn check_csrf(headers: &HeaderMap, form: &Map<String, Value>) -> Result<()> {
    let sent = form.get("csrf").and_then(Value::as_str).unwrap_or_default();
    let have = cookie(headers, "csrf").unwrap_or_default();
    if !have.is_empty()
        && sent.len() == have.len()
        && bool::from(sent.as_bytes().ct_eq(have.as_bytes()))
    {
        Ok(())
    } else {
        Err(RestError::Forbidden(
            "The form is stale or came from another site (CSRF check failed): reload the page and submit again".into(),
        ))
    }
}

#[derive(Serialize)]
struct Row {
    id: u64,
    f58: String,
    name: String,
    state: String,
    result: String,
    ntasks: String,
    nodelist: String,
    runtime: String,
}

fn text(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

fn row(j: &Map<String, Value>) -> Row {
    let id = j.get("id").and_then(Value::as_u64).unwrap_or(0);
    Row {
        id,
        f58: flux_client::JobId(id).f58(),
        name: text(j.get("name")),
        state: text(j.get("state")),
        result: text(j.get("result")),
        ntasks: text(j.get("ntasks")),
        nodelist: text(j.get("nodelist")),
        runtime: format!(
            "{:.1}",
            j.get("runtime").and_then(Value::as_f64).unwrap_or(0.0)
        ),
    }
}

async fn rows(state: &AppState) -> Result<Vec<Row>> {
    Ok(api::detailed_jobs(state, Some(500))
        .await?
        .iter()
        .map(row)
        .collect())
}

#[derive(Serialize)]
struct PageCtx {
    host: String,
    version: &'static str,
}

fn page_ctx(headers: &HeaderMap) -> PageCtx {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost:5000");
    PageCtx {
        host: format!("http://{host}"),
        version: env!("CARGO_PKG_VERSION"),
    }
}

/// The home page; public, as flux-restful's is (it shows no jobs).
async fn home(State(state): State<AppState>, headers: HeaderMap) -> Result<Response> {
    Ok(Html(state.web.render("index.html", &page_ctx(&headers))?).into_response())
}

/// `/page/about` (and `/page/index`, the home page again).
async fn page(
    State(state): State<AppState>,
    _u: WebUser,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Response> {
    if !PAGES.contains(&name.as_str()) {
        return Err(RestError::PageNotFound);
    }
    let html = state
        .web
        .render(&format!("{name}.html"), &page_ctx(&headers))?;
    Ok(Html(html).into_response())
}

async fn jobs_page(State(state): State<AppState>, _u: WebUser) -> Result<Response> {
    #[derive(Serialize)]
    struct Ctx {
        jobs: Vec<Row>,
    }
    let html = state.web.render(
        "jobs.html",
        &Ctx {
            jobs: rows(&state).await?,
        },
    )?;
    Ok(Html(html).into_response())
}

async fn jobs_json(State(state): State<AppState>, _u: WebUser) -> Result<Response> {
    Ok(axum::Json(rows(&state).await?).into_response())
}

#[derive(Serialize, Default)]
struct FormValues {
    command: String,
    num_tasks: String,
    cores_per_task: String,
    gpus_per_task: String,
    num_nodes: String,
    option_flags: String,
    workdir: String,
    runtime: String,
    envars: String,
}

#[derive(Serialize)]
struct SubmitCtx {
    csrf: String,
    has_gpus: bool,
    errors: Vec<String>,
    form: FormValues,
}

async fn has_gpus(state: &AppState) -> bool {
    state.config.assume_gpus
        || state
            .backend
            .resources()
            .await
            .map(|r| r.gpus > 0)
            .unwrap_or(false)
}

async fn submit_page(
    State(state): State<AppState>,
    _u: WebUser,
    headers: HeaderMap,
) -> Result<Response> {
    let (csrf, fresh) = csrf_token(&headers);
    let ctx = SubmitCtx {
        csrf: csrf.clone(),
        has_gpus: has_gpus(&state).await,
        errors: Vec::new(),
        form: FormValues::default(),
    };
    Ok(with_csrf(
        state.web.render("submit.html", &ctx)?,
        &csrf,
        fresh,
    ))
}

async fn submit_form(
    State(state): State<AppState>,
    user: WebUser,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let bytes = read_body(body, state.config.max_body).await?;
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&bytes)
        .map_err(|_| RestError::BadRequest("The form is not url-encoded".into()))?;
    let form: Map<String, Value> = pairs
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    check_csrf(&headers, &form)?;
    let get = |k: &str| {
        form.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let mut params = Map::new();
    let mut errors = Vec::new();
    for k in [
        "command",
        "num_tasks",
        "cores_per_task",
        "gpus_per_task",
        "num_nodes",
        "option_flags",
        "workdir",
        "runtime",
        "exclusive",
    ] {
        let v = get(k);
        if !v.trim().is_empty() {
            params.insert(k.into(), Value::String(v));
        }
    }
    let mut env = Map::new();
    for line in get("envars")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
    {
        match line.split_once('=') {
            Some((k, v)) => {
                env.insert(k.trim().to_string(), Value::String(v.to_string()));
            }
            None => errors.push(format!("Environment line {line:?} is not NAME=value")),
        }
    }
    if !env.is_empty() {
        params.insert("envars".into(), Value::Object(env));
    }
    let outcome = if errors.is_empty() {
        api::submit_params(&state, &user.0, params, false).await
    } else {
        Err(RestError::InvalidSubmit(errors))
    };
    match outcome {
        Ok(r) => Ok(match r.id.as_u64() {
            Some(id) => Redirect::to(&format!("/job/{id}")).into_response(),
            None => Redirect::to("/jobs").into_response(),
        }),
        Err(
            e @ (RestError::InvalidSubmit(_)
            | RestError::Unprocessable(_)
            | RestError::MissingCommand
            | RestError::SubmitFailed(_)
            | RestError::RateLimited { .. }),
        ) => {
            let errors = match e {
                RestError::InvalidSubmit(v) => v,
                RestError::Unprocessable(v) => v.iter().map(|e| e.describe()).collect(),
                other => vec![other.to_string()],
            };
            let (csrf, _) = csrf_token(&headers);
            let ctx = SubmitCtx {
                csrf,
                has_gpus: has_gpus(&state).await,
                errors,
                form: FormValues {
                    command: get("command"),
                    num_tasks: get("num_tasks"),
                    cores_per_task: get("cores_per_task"),
                    gpus_per_task: get("gpus_per_task"),
                    num_nodes: get("num_nodes"),
                    option_flags: get("option_flags"),
                    workdir: get("workdir"),
                    runtime: get("runtime"),
                    envars: get("envars"),
                },
            };
            Ok((
                StatusCode::BAD_REQUEST,
                Html(state.web.render("submit.html", &ctx)?),
            )
                .into_response())
        }
        Err(other) => Err(other),
    }
}

#[derive(Serialize)]
struct KV {
    key: String,
    value: String,
}

async fn job_page(
    State(state): State<AppState>,
    user: WebUser,
    headers: HeaderMap,
    Path(jobid): Path<String>,
    axum::extract::RawQuery(q): axum::extract::RawQuery,
) -> Result<Response> {
    let (id, raw) = api::accessible_job(&state, &user.0, &jobid).await?;
    let details = jobs::job_details(&raw, jobs::now());
    let output = state.backend.output(id).await?.concat();
    let message = api::parse_query(q.as_deref())?
        .into_iter()
        .find(|(k, _)| k == "msg")
        .map(|(_, v)| v);
    let shown = [
        "state",
        "result",
        "returncode",
        "name",
        "ntasks",
        "nnodes",
        "nodelist",
        "cwd",
        "runtime",
        "t_submit",
    ];
    let rows: Vec<KV> = shown
        .iter()
        .map(|k| KV {
            key: (*k).into(),
            value: text(details.get(*k)),
        })
        .collect();
    #[derive(Serialize)]
    struct Ctx {
        id: u64,
        f58: String,
        rows: Vec<KV>,
        output: String,
        active: bool,
        csrf: String,
        message: Option<String>,
    }
    let (csrf, fresh) = csrf_token(&headers);
    let ctx = Ctx {
        id: id.as_u64(),
        f58: id.f58(),
        rows,
        output,
        active: details.get("state").and_then(Value::as_str) != Some("INACTIVE"),
        csrf: csrf.clone(),
        message,
    };
    Ok(with_csrf(state.web.render("job.html", &ctx)?, &csrf, fresh))
}

async fn cancel_form(
    State(state): State<AppState>,
    user: WebUser,
    headers: HeaderMap,
    Path(jobid): Path<String>,
    body: Body,
) -> Result<Response> {
    let bytes = read_body(body, state.config.max_body).await?;
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&bytes).unwrap_or_default();
    let form: Map<String, Value> = pairs
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    check_csrf(&headers, &form)?;
    let id = parse_jobid(&jobid)?;
    ensure_access(&state, &user.0, id).await?;
    let msg = match state.backend.cancel(id).await {
        Ok(()) => "Job is requested to cancel.".to_string(),
        Err(e) => api::cancel_refused(&e),
    };
    let q = serde_urlencoded::to_string([("msg", msg)]).unwrap_or_default();
    Ok(Redirect::to(&format!("/job/{}?{q}", id.as_u64())).into_response())
}

async fn stream(
    State(state): State<AppState>,
    user: WebUser,
    Path(jobid): Path<String>,
) -> Result<Response> {
    let id = parse_jobid(&jobid)?;
    ensure_access(&state, &user.0, id).await?;
    api::stream_response(&state, id, &jobid, false).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_render_and_escape() {
        let p = Pages::new();
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("restful")).unwrap();
        std::fs::write(
            dir.path().join("restful/base.html"),
            "CUSTOM {% block title %}{% endblock title %}{% block content %}{% endblock content %}",
        )
        .unwrap();
        let custom = Pages::with_overrides(dir.path()).unwrap();
        let html = custom
            .tera
            .render("base.html", &tera::Context::new())
            .unwrap();
        assert!(html.starts_with("CUSTOM"), "{html}");
        std::fs::write(dir.path().join("restful/job.html"), "{% if %}").unwrap();
        assert!(
            Pages::with_overrides(dir.path()).is_err(),
            "a broken override is refused"
        );
        #[derive(Serialize)]
        struct Ctx {
            jobs: Vec<Row>,
        }
        let html = p
            .render(
                "jobs.html",
                &Ctx {
                    jobs: vec![Row {
                        id: 1,
                        f58: "ƒ2".into(),
                        name: "<script>x</script>".into(),
                        state: "RUN".into(),
                        result: String::new(),
                        ntasks: "1".into(),
                        nodelist: "n0".into(),
                        runtime: "0.0".into(),
                    }],
                },
            )
            .unwrap();
        assert!(
            html.contains("&lt;script&gt;x&lt;&#x2F;script&gt;") || html.contains("&lt;script&gt;"),
            "{html}"
        );
        assert!(!html.contains("<script>x</script>"));
        assert!(html.contains("state-RUN"));
    }
}
