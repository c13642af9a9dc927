//! Every route over HTTP (in process), with the Flux stand-in behind the backend boundary.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use minicluster_rest::auth::{Auth, BackendKind, Secret, encode_handshake};
use minicluster_rest::limits::RateLimiter;
use minicluster_rest::{AppState, ServerConfig, StandIn, router};
use serde_json::{Value, json};
use tower::ServiceExt;

fn state_with(auth: Auth, limiter: RateLimiter) -> AppState {
    AppState::new(
        Arc::new(StandIn::new(2)),
        auth,
        limiter,
        ServerConfig {
            default_cwd: "/tmp".into(),
            ..Default::default()
        },
    )
}

fn open_app() -> (Router, AppState) {
    let s = state_with(Auth::none(), RateLimiter::unlimited());
    (router(s.clone()), s)
}

/// With `--strict`: our stricter answers instead of flux-restful's.
fn strict_app() -> Router {
    let s = AppState::new(
        Arc::new(StandIn::new(2)),
        Auth::none(),
        RateLimiter::unlimited(),
        ServerConfig {
            default_cwd: "/tmp".into(),
            strict: true,
            ..Default::default()
        },
    );
    router(s)
}

const SHARED: &[u8] = b"shared secret";

fn secured_app() -> (Router, AppState) {
    let mut a = Auth::new(
        BackendKind::SharedSecret,
        Secret::new(b"signing key".to_vec()),
        Duration::from_secs(600),
    )
    .unwrap();
    a.set_shared_secret(Secret::new(SHARED.to_vec()));
    a.add_user_password("admin", "adminpw", true).unwrap();
    a.add_user_password("alice", "alicepw", false).unwrap();
    a.add_user_password("bob", "bobpw", false).unwrap();
    let s = state_with(a, RateLimiter::unlimited());
    (router(s.clone()), s)
}

struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|_| {
            panic!(
                "not JSON ({}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

async fn send(app: &Router, req: Request<Body>) -> Resp {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    Resp {
        status,
        headers,
        body,
    }
}

/// `method uri` with no body and no credentials.
async fn call(app: &Router, method: &str, uri: &str) -> Resp {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::empty())
        .unwrap();
    send(app, req).await
}

async fn get(app: &Router, uri: &str, token: Option<&str>) -> Resp {
    let mut b = Request::get(uri);
    if let Some(t) = token {
        b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    send(app, b.body(Body::empty()).unwrap()).await
}

async fn post(app: &Router, uri: &str, token: Option<&str>, body: Option<Value>) -> Resp {
    let mut b = Request::post(uri);
    if let Some(t) = token {
        b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let body = match body {
        Some(v) => {
            b = b.header(header::CONTENT_TYPE, "application/json");
            Body::from(v.to_string())
        }
        None => Body::empty(),
    };
    send(app, b.body(body).unwrap()).await
}

/// The status and JSON answer to a bare POST (no body, no credentials).
async fn post_answer(app: &Router, uri: &str) -> (StatusCode, Value) {
    let r = post(app, uri, None, None).await;
    (r.status, r.json())
}

async fn submit(app: &Router, query: &str, token: Option<&str>) -> u64 {
    let r = post(app, &format!("/v1/jobs/submit?{query}"), token, None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["Message"], "Job submit.");
    r.json()["id"].as_u64().unwrap()
}

async fn wait_state(app: &Router, id: u64, state: &str, token: Option<&str>) -> Value {
    for _ in 0..200 {
        let j = get(app, &format!("/v1/jobs/{id}"), token).await.json();
        if j["state"] == state {
            return j;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("job {id} never reached {state}");
}

#[tokio::test]
async fn auth_info_and_nodes() {
    let (app, _) = open_app();
    let r = get(&app, "/v1/auth", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json(),
        json!({"backend": "none", "password_login": false, "shared_secret_handshake": false})
    );
    let r = get(&app, "/v1/nodes", None).await;
    assert_eq!(r.json(), json!({"nodes": ["standin-0", "standin-1"]}));
}

#[tokio::test]
async fn submit_with_options_and_job_info() {
    let (app, _) = open_app();
    let id = submit(
        &app,
        "command=hostname&num_tasks=3&cores_per_task=1&num_nodes=2&exclusive=true&runtime=60&workdir=%2Fwork&option_flags=cpu-affinity%3Dper-task",
        None,
    )
    .await;
    let j = wait_state(&app, id, "INACTIVE", None).await;
    assert_eq!(j["id"], id);
    assert_eq!(j["name"], "hostname");
    assert_eq!(j["ntasks"], 3);
    assert_eq!(j["nnodes"], 2);
    assert_eq!(j["cwd"], "/work");
    assert_eq!(j["duration"], 60.0);
    assert_eq!(j["result"], "COMPLETED");
    assert_eq!(j["returncode"], 0);
    assert_eq!(j["exception"]["occurred"], false);
    for key in ["runtime", "priority", "waitstatus", "nodelist", "t_submit"] {
        assert!(j.get(key).is_some(), "{key} missing in {j}");
    }
    let out = get(&app, &format!("/v1/jobs/{id}/output"), None).await;
    assert_eq!(
        out.json(),
        json!({"Output": ["standin-0\n", "standin-1\n", "standin-0\n"]})
    );
    // Any id form Flux prints works.
    let f58 = flux_client::JobId(id).f58();
    let r = get(&app, &format!("/v1/jobs/{f58}"), None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["id"], id);
}

#[tokio::test]
async fn environment_comes_from_the_body_or_the_query() {
    let (app, _) = open_app();
    // flux-restful 1.1.0: parameters in the query, the JSON body is the environment.
    let r = post(
        &app,
        "/v1/jobs/submit?command=printenv+GREETING",
        None,
        Some(json!({"GREETING": "hello"})),
    )
    .await;
    let id = r.json()["id"].as_u64().unwrap();
    wait_state(&app, id, "INACTIVE", None).await;
    let out = get(&app, &format!("/v1/jobs/{id}/output"), None)
        .await
        .json();
    assert_eq!(out["Output"], json!(["hello\n"]));
    // flux-restful-client puts a dict's repr in the query.
    let id = submit(
        &app,
        "command=printenv+X&envars=%7B%27X%27%3A+%27from-query%27%7D",
        None,
    )
    .await;
    wait_state(&app, id, "INACTIVE", None).await;
    let out = get(&app, &format!("/v1/jobs/{id}/output"), None)
        .await
        .json();
    assert_eq!(out["Output"], json!(["from-query\n"]));
    // The server's secrets never reach a job.
    // SAFETY: only this test reads or writes this variable.
    unsafe { std::env::set_var("FLUX_SECRET_KEY", "do-not-leak") };
    let id = submit(&app, "command=printenv+FLUX_SECRET_KEY", None).await;
    let j = wait_state(&app, id, "INACTIVE", None).await;
    assert_eq!(j["returncode"], 1);
}

#[tokio::test]
async fn legacy_whole_body_submit() {
    let (app, _) = open_app();
    let r = post(
        &app,
        "/v1/jobs/submit",
        None,
        Some(json!({"command": ["echo", "legacy", 1], "num_tasks": 1, "envars": {"A": "b"}, "exclusive": false})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let id = r.json()["id"].as_u64().unwrap();
    wait_state(&app, id, "INACTIVE", None).await;
    let out = get(&app, &format!("/v1/jobs/{id}/output"), None)
        .await
        .json();
    assert_eq!(out["Output"], json!(["legacy 1\n"]));
}

#[tokio::test]
async fn bad_submissions_answer_as_flux_restful() {
    let (app, _) = open_app();
    let r = post(&app, "/v1/jobs/submit", None, None).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json(),
        json!({"Message": "A 'command' is minimally required."})
    );

    // Types first (422), then the request's checks (400, every one), then the jobspec's.
    let r = post(
        &app,
        "/v1/jobs/submit?command=x&num_tasks=-2&num_nodes=9&gpus_per_task=1&runtime=-1&cores_per_task=zero",
        None,
        None,
    )
    .await;
    assert_eq!(r.status, 422);
    assert_eq!(
        r.json()["detail"][0]["loc"],
        json!(["query", "cores_per_task"])
    );
    assert_eq!(
        post_answer(
            &app,
            "/v1/jobs/submit?command=x&num_tasks=-2&num_nodes=9&gpus_per_task=1&runtime=-1"
        )
        .await,
        (
            StatusCode::BAD_REQUEST,
            json!({"Message": "Invalid submit request", "Errors": [
                "The server only has 2 nodes, you requested 9",
                "This server does not support gpus: gpus_per_task cannot be set.",
                "Runtime must be >= 0, found -1",
            ]})
        )
    );
    let r = post(&app, "/v1/jobs/submit?command=x&num_tasks=-2", None, None).await;
    assert_eq!(
        r.json(),
        json!({"Message": "There was an issue submitting that job.",
            "Error": "task count must be a integer >= 1"})
    );
    // Parameters flux-restful does not know are ignored, as are flags without '='.
    submit(&app, "command=true&bogus=1&option_flags=junk", None).await;

    // A huge command.
    let huge = "a".repeat(70_000);
    let r = post(
        &app,
        "/v1/jobs/submit",
        None,
        Some(json!({ "command": huge })),
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(
        r.json()["Errors"][0]
            .as_str()
            .unwrap()
            .contains("limit is 65536")
    );

    // Invalid UTF-8 in the query.
    let r = post(&app, "/v1/jobs/submit?command=%ff%fe", None, None).await;
    assert_eq!(r.status, 400);
    assert!(
        r.json()["detail"]
            .as_str()
            .unwrap()
            .contains("not valid UTF-8")
    );

    // A body that is not JSON, and one that is not declared JSON.
    let req = Request::post("/v1/jobs/submit?command=true")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{\n  bad"))
        .unwrap();
    let r = send(&app, req).await;
    assert_eq!(r.status, 422);
    let e = &r.json()["detail"][0];
    assert_eq!(e["type"], "json_invalid");
    assert_eq!(e["loc"], json!(["body", 4]));
    assert_eq!(e["msg"], "JSON decode error");
    let req = Request::post("/v1/jobs/submit?command=true")
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from("{\"A\": \"b\"}"))
        .unwrap();
    let r = send(&app, req).await;
    assert_eq!(r.status, 422);
    assert_eq!(r.json()["detail"][0]["input"], "{\"A\": \"b\"}");

    // Flux's refusal of the jobspec has flux-restful's "issue submitting" shape.
    assert_eq!(
        post_answer(&app, "/v1/jobs/submit?command=true&num_nodes=2&num_tasks=1").await,
        (
            StatusCode::BAD_REQUEST,
            json!({"Message": "There was an issue submitting that job.",
            "Error": "node count must not be greater than task count"})
        )
    );
}

#[tokio::test]
async fn strict_reports_every_problem_as_one_400() {
    let app = strict_app();
    let r = post(
        &app,
        "/v1/jobs/submit?command=x&num_tasks=-2&num_nodes=9&gpus_per_task=1&runtime=-1&cores_per_task=zero&exclusive=maybe&bogus=1",
        None,
        None,
    )
    .await;
    assert_eq!(r.status, 400);
    let j = r.json();
    assert_eq!(j["Message"], "Invalid submit request");
    let errors: Vec<String> = serde_json::from_value(j["Errors"].clone()).unwrap();
    for e in [
        "Parameter cores_per_task must be an integer, found \"zero\"",
        "Parameter exclusive must be true or false, found \"maybe\"",
        "Parameter num_tasks must be >= 1",
        "The server only has 2 nodes, you requested 9",
        "This server does not support gpus: gpus_per_task cannot be set.",
        "Runtime must be >= 0, found -1",
    ] {
        assert!(errors.contains(&e.to_string()), "{e} missing in {errors:?}");
    }
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("Unknown parameter \"bogus\""))
    );
    assert_eq!(errors.len(), 7, "{errors:?}");

    // A body that is not JSON.
    let req = Request::post("/v1/jobs/submit?command=true")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(vec![0xff, 0xfe, b'{']))
        .unwrap();
    let r = send(&app, req).await;
    assert_eq!(r.status, 400);
    assert!(
        r.json()["detail"]
            .as_str()
            .unwrap()
            .contains("not valid JSON")
    );

    // Exclusive without nodes, and an unknown launcher, are refused with the reason.
    let r = post(
        &app,
        "/v1/jobs/submit?command=true&exclusive=true",
        None,
        None,
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(
        r.json()["Errors"][0]
            .as_str()
            .unwrap()
            .contains("exclusive needs num_nodes")
    );
    let r = post(
        &app,
        "/v1/jobs/submit?command=rm+-rf+%2F&is_launcher=true",
        None,
        None,
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["Errors"][0],
        "rm is not a known launcher; known are: nextflow, snakemake"
    );
}

#[tokio::test]
async fn body_limit_is_413() {
    let (app, _) = open_app();
    let big = json!({ "X": "y".repeat(2 * 1024 * 1024) });
    let r = post(&app, "/v1/jobs/submit?command=true", None, Some(big)).await;
    assert_eq!(r.status, 413);
    assert!(
        r.json()["detail"]
            .as_str()
            .unwrap()
            .contains("1048576-byte limit")
    );
}

#[tokio::test]
async fn submissions_are_rate_limited_per_user() {
    let s = state_with(Auth::none(), RateLimiter::new(0.5, 2));
    let app = router(s);
    submit(&app, "command=true", None).await;
    submit(&app, "command=true", None).await;
    let r = post(&app, "/v1/jobs/submit?command=true", None, None).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.headers[header::RETRY_AFTER], "2");
    assert!(
        r.json()["detail"]
            .as_str()
            .unwrap()
            .contains("too many submissions")
    );
}

#[tokio::test]
async fn job_listings_in_all_three_forms_and_search() {
    let (app, _) = open_app();
    let a = submit(&app, "command=echo+alpha", None).await;
    let b = submit(&app, "command=sleep+30", None).await;
    let r = get(&app, "/v1/jobs", None).await.json();
    let ids: Vec<u64> = r["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, vec![b, a], "newest first");
    // job-list entries: numeric states.
    assert!(r["jobs"][0]["state"].is_u64());

    let r = get(&app, "/v1/jobs?details=true", None).await.json();
    let map = r.as_object().unwrap();
    assert_eq!(map.len(), 2);
    assert_eq!(map[&a.to_string()]["name"], "echo");
    assert!(map[&b.to_string()]["state"].is_string());
    // flux-restful-client sends `detail`: flux-restful ignores it, --strict takes it.
    let r2 = get(&app, "/v1/jobs?detail=true", None).await.json();
    assert_eq!(r2["jobs"].as_array().unwrap().len(), 2);
    let strict = strict_app();
    submit(&strict, "command=sleep+30", None).await;
    let r2 = get(&strict, "/v1/jobs?detail=true", None).await.json();
    assert_eq!(r2.as_object().unwrap().len(), 1);
    assert!(r2.get("jobs").is_none());

    let r = get(&app, "/v1/jobs?details=true&listing=true&limit=1", None)
        .await
        .json();
    let list = r.as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["id"], b);
    assert_eq!(list[0]["ranks"], list[0]["ranks"]); // present
    assert!(list[0].get("expiration").is_some());

    let r = get(&app, "/v1/jobs/search?search=echo&draw=7", None)
        .await
        .json();
    assert_eq!(r["draw"], "7", "echoed as it came, as flux-restful does");
    assert_eq!(r["recordsTotal"], 2);
    assert_eq!(r["recordsFiltered"], 1);
    assert_eq!(r["data"][0]["id"], a);
    let r = get(&app, "/v1/jobs/search?start=1&length=5", None)
        .await
        .json();
    assert_eq!(r["data"].as_array().unwrap().len(), 1);
    assert_eq!(r["draw"], 1);
    // `query`, the client's spelling, likewise.
    let r = get(&app, "/v1/jobs/search?query=sleep", None).await.json();
    assert_eq!(r["recordsFiltered"], 2);
    let r = get(&strict, "/v1/jobs/search?query=nothing&draw=7", None)
        .await
        .json();
    assert_eq!(r["recordsFiltered"], 0);
    assert_eq!(r["draw"], 7);
    // Plain listings ignore `limit` (flux-restful reads it only with details).
    let r = get(&app, "/v1/jobs?limit=1", None).await.json();
    assert_eq!(r["jobs"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn unknown_and_malformed_job_ids() {
    let (app, _) = open_app();
    let r = get(&app, "/v1/jobs/123456789", None).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json(), json!({"detail": "Job 123456789 not found"}));
    let r = get(&app, "/v1/jobs/not-a-job", None).await;
    assert_eq!(r.status, 400);
    assert!(
        r.json()["detail"]
            .as_str()
            .unwrap()
            .contains("not a valid job id")
    );
    // flux-restful answers these for an unknown job.
    let r = get(&app, "/v1/jobs/123456789/output", None).await;
    assert_eq!(r.status, 200);
    let r = get(&app, "/v1/jobs/123456789/output/stream", None).await;
    assert_eq!((r.status, r.text().as_str()), (StatusCode::OK, ""));
    let r = post(&app, "/v1/jobs/123456789/cancel", None, None).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json(),
        json!({"Message": "Job cannot be cancelled: [Errno 2] unknown job id.", "id": "123456789"})
    );
    let r = post(&app, "/v1/jobs/%ff/cancel", None, None).await;
    assert_eq!(r.status, 400);
    // --strict: 404 on every job route.
    let strict = strict_app();
    for (m, uri) in [
        ("GET", "/v1/jobs/123456789/output"),
        ("GET", "/v1/jobs/123456789/output/stream"),
        ("POST", "/v1/jobs/123456789/cancel"),
    ] {
        assert_eq!(call(&strict, m, uri).await.status, 404, "{m} {uri}");
    }
}

#[tokio::test]
async fn cancel_a_running_job() {
    let (app, _) = open_app();
    let id = submit(&app, "command=sleep+60", None).await;
    wait_state(&app, id, "RUN", None).await;
    let r = post(&app, &format!("/v1/jobs/{id}/cancel"), None, None).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json(),
        json!({"Message": "Job is requested to cancel.", "id": id.to_string()})
    );
    let j = wait_state(&app, id, "INACTIVE", None).await;
    assert_eq!(j["result"], "CANCELED");
    assert_eq!(j["exception"]["type"], "cancel");
    // Again: Flux refuses, 400.
    let r = post(&app, &format!("/v1/jobs/{id}/cancel"), None, None).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["Message"],
        "Job cannot be cancelled: [Errno 2] job is inactive."
    );
}

#[tokio::test]
async fn output_snapshot_and_stream() {
    let (app, _) = open_app();
    let id = submit(&app, "command=seq+5", None).await;
    // Before the job starts: the Message, never a wait.
    let r = get(&app, &format!("/v1/jobs/{id}/output"), None).await;
    assert_eq!(r.status, 200);
    assert!(
        r.json().get("Message").is_some() || r.json().get("Output").is_some(),
        "{}",
        r.text()
    );
    let started = std::time::Instant::now();
    let resp = app
        .clone()
        .oneshot(
            Request::get(format!("/v1/jobs/{id}/output/stream"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let mut body = resp.into_body();
    let mut chunks = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            chunks.push((started.elapsed(), String::from_utf8(data.to_vec()).unwrap()));
        }
    }
    let text: String = chunks.iter().map(|(_, c)| c.as_str()).collect();
    assert_eq!(text, "1\n2\n3\n4\n5\n");
    // Lines arrive as produced (100 ms apart), not all at the end.
    assert!(chunks.len() >= 5);
    assert!(chunks[4].0 - chunks[0].0 >= Duration::from_millis(300));
    let r = get(&app, &format!("/v1/jobs/{id}/output"), None)
        .await
        .json();
    assert_eq!(r["Output"].as_array().unwrap().len(), 5);
}

#[tokio::test]
async fn service_stop_needs_a_superuser() {
    let (app, state) = open_app();
    let r = post(&app, "/v1/service/stop", None, None).await;
    assert_eq!(r.status, 403);
    assert!(
        r.json()["detail"]
            .as_str()
            .unwrap()
            .contains("requires a superuser")
    );
    assert!(!*state.shutdown.borrow());
}

async fn login(app: &Router, user: &str, pass: &str) -> Resp {
    let req = Request::builder()
        .method(Method::POST)
        .uri("/v1/login/access-token")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!("username={user}&password={pass}")))
        .unwrap();
    send(app, req).await
}

async fn handshake(app: &Router, user: &str, pass: &str, secret: &[u8]) -> Resp {
    let jwt = encode_handshake(user, pass, secret);
    let req = Request::post("/v1/token")
        .header(header::AUTHORIZATION, format!("Bearer {jwt}"))
        .body(Body::empty())
        .unwrap();
    send(app, req).await
}

#[tokio::test]
async fn shared_secret_auth() {
    let (app, state) = secured_app();
    let r = get(&app, "/v1/auth", None).await.json();
    assert_eq!(
        r,
        json!({"backend": "shared-secret", "password_login": true, "shared_secret_handshake": true})
    );
    // Every protected route answers 401 with WWW-Authenticate: Bearer without a token.
    for (m, uri) in [
        ("GET", "/v1/jobs"),
        ("GET", "/v1/jobs/search"),
        ("GET", "/v1/nodes"),
        ("POST", "/v1/jobs/submit?command=true"),
        ("GET", "/v1/jobs/1"),
        ("POST", "/v1/jobs/1/cancel"),
        ("GET", "/v1/jobs/1/output"),
        ("GET", "/v1/jobs/1/output/stream"),
        ("POST", "/v1/service/stop"),
    ] {
        let r = call(&app, m, uri).await;
        assert_eq!(r.status, 401, "{m} {uri}");
        assert_eq!(r.headers[header::WWW_AUTHENTICATE], "Bearer", "{m} {uri}");
        assert_eq!(r.json(), json!({"detail": "Not authenticated"}));
    }

    // The handshake.
    let r = handshake(&app, "alice", "alicepw", SHARED).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["token_type"], "Bearer");
    let alice = r.json()["access_token"].as_str().unwrap().to_string();
    assert_eq!(get(&app, "/v1/nodes", Some(&alice)).await.status, 200);

    // Wrong password, forged secret, garbage: 400 with a reason, never 401.
    let r = handshake(&app, "alice", "wrong", SHARED).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json(), json!({"detail": "Incorrect user or password"}));
    let r = handshake(&app, "alice", "alicepw", b"guessed").await;
    assert_eq!(r.json(), json!({"detail": "Could not decode credentials"}));
    let r = send(
        &app,
        Request::post("/v1/token").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(r.json(), json!({"detail": "Missing Authorization header"}));

    // A forged or expired access token is 401.
    let r = get(&app, "/v1/jobs", Some("eyJhbGciOiJIUzI1NiJ9.e30.AAAA")).await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.json(),
        json!({"detail": "Could not validate credentials"})
    );
    let expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": "alice", "backend": "shared-secret", "iat": 1, "exp": 2}),
        &jsonwebtoken::EncodingKey::from_secret(b"signing key"),
    )
    .unwrap();
    let r = get(&app, "/v1/jobs", Some(&expired)).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.headers[header::WWW_AUTHENTICATE], "Bearer");

    // OAuth2 password login.
    let r = login(&app, "bob", "bobpw").await;
    assert_eq!(r.status, 200);
    let bob = r.json()["access_token"].as_str().unwrap().to_string();
    let r = login(&app, "bob", "nope").await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json(), json!({"detail": "Incorrect user or password"}));

    // Jobs belong to who submitted them; superusers see all.
    let id = submit(&app, "command=sleep+30", Some(&alice)).await;
    assert_eq!(
        get(&app, &format!("/v1/jobs/{id}"), Some(&alice))
            .await
            .status,
        200
    );
    let r = get(&app, &format!("/v1/jobs/{id}"), Some(&bob)).await;
    assert_eq!(r.status, 403);
    assert!(
        r.json()["detail"]
            .as_str()
            .unwrap()
            .contains("bob does not own job")
    );
    assert_eq!(
        post(&app, &format!("/v1/jobs/{id}/cancel"), Some(&bob), None)
            .await
            .status,
        403
    );
    let r = post(&app, "/v1/service/stop", Some(&bob), None).await;
    assert_eq!(r.status, 403);

    let r = handshake(&app, "admin", "adminpw", SHARED).await;
    let admin = r.json()["access_token"].as_str().unwrap().to_string();
    assert_eq!(
        get(&app, &format!("/v1/jobs/{id}"), Some(&admin))
            .await
            .status,
        200
    );
    assert_eq!(
        post(&app, &format!("/v1/jobs/{id}/cancel"), Some(&admin), None)
            .await
            .status,
        200
    );
    let r = post(&app, "/v1/service/stop", Some(&admin), None).await;
    assert_eq!(r.status, 200);
    assert!(*state.shutdown.borrow(), "stop asked for");
}

#[tokio::test]
async fn password_login_is_refused_without_a_password_backend() {
    let (app, _) = open_app();
    let r = login(&app, "a", "b").await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json(),
        json!({"detail": "The none auth backend does not support password login."})
    );
    let r = handshake(&app, "a", "b", SHARED).await;
    assert_eq!(r.status, 400);
    assert!(r.json()["detail"].as_str().unwrap().contains("not enabled"));
}

#[tokio::test]
async fn openapi_document_and_docs_page() {
    let (app, _) = open_app();
    let doc = get(&app, "/openapi.json", None).await.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/v1/auth",
        "/v1/token",
        "/v1/login/access-token",
        "/v1/service/stop",
        "/v1/jobs",
        "/v1/jobs/search",
        "/v1/nodes",
        "/v1/jobs/submit",
        "/v1/jobs/{jobid}",
        "/v1/jobs/{jobid}/cancel",
        "/v1/jobs/{jobid}/output",
        "/v1/jobs/{jobid}/output/stream",
    ] {
        assert!(
            paths.contains_key(p),
            "{p} missing from the OpenAPI document"
        );
    }
    let submit_params: Vec<&str> = doc["paths"]["/v1/jobs/submit"]["post"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(submit_params.contains(&"num_tasks") && submit_params.contains(&"option_flags"));
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    let docs = get(&app, "/docs", None).await;
    assert_eq!(docs.status, 200);
    let html = docs.text();
    assert!(html.contains("/v1/jobs/{jobid}/output/stream"));
    assert!(html.contains("num_tasks"));
}

#[tokio::test]
async fn web_pages_and_form_submit() {
    let (app, _) = open_app();
    let r = get(&app, "/", None).await;
    assert_eq!(r.status, 200);
    assert!(r.text().contains("href=\"/page/about\""));
    assert_eq!(get(&app, "/page/about", None).await.status, 200);
    let r = get(&app, "/page/secret", None).await;
    assert_eq!(
        (r.status, r.json()),
        (StatusCode::NOT_FOUND, json!({"detail": "Page not found"}))
    );
    let r = get(&app, "/jobs/submit", None).await;
    assert_eq!(r.status, 200);
    let cookie = r.headers[header::SET_COOKIE].to_str().unwrap().to_string();
    assert!(cookie.contains("SameSite=Strict"));
    let token = cookie
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches("csrf=")
        .to_string();
    assert!(r.text().contains(&format!("value=\"{token}\"")));

    let form = |csrf: &str| {
        Request::post("/jobs/submit")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::COOKIE, format!("csrf={token}"))
            .body(Body::from(format!(
                "csrf={csrf}&command=echo+from+the+form&num_tasks=1&envars=A%3D1"
            )))
            .unwrap()
    };
    let r = send(&app, form("0123456789abcdef0123456789abcdef")).await;
    assert_eq!(r.status, 403, "a wrong CSRF token is refused");
    let r = send(&app, form(&token)).await;
    assert!(r.status.is_redirection(), "{} {}", r.status, r.text());
    let loc = r.headers[header::LOCATION].to_str().unwrap().to_string();
    assert!(loc.starts_with("/job/"));
    let id: u64 = loc.trim_start_matches("/job/").parse().unwrap();

    let page = get(&app, "/jobs", None).await;
    assert_eq!(page.status, 200);
    assert!(page.text().contains(&flux_client::JobId(id).f58()));
    let rows = get(&app, "/web/jobs.json", None).await.json();
    assert_eq!(rows[0]["id"], id);
    assert_eq!(rows[0]["name"], "echo");

    wait_state(&app, id, "INACTIVE", None).await;
    let page = get(&app, &loc, None).await;
    assert!(page.text().contains("from the form"), "{}", page.text());

    // Form errors come back on the form.
    for (fields, error) in [
        (
            "command=x&num_tasks=0",
            "task count must be a integer &gt;= 1",
        ),
        (
            "command=x&num_tasks=many",
            "Parameter num_tasks must be an integer, found &quot;many&quot;",
        ),
    ] {
        let bad = Request::post("/jobs/submit")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::COOKIE, format!("csrf={token}"))
            .body(Body::from(format!("csrf={token}&{fields}")))
            .unwrap();
        let r = send(&app, bad).await;
        assert_eq!(r.status, 400);
        assert!(r.text().contains(error), "{error} missing:\n{}", r.text());
    }
}

#[tokio::test]
async fn web_pages_ask_browsers_for_basic_auth() {
    let (app, _) = secured_app();
    // The home page is public (it shows no jobs); the others ask.
    assert_eq!(get(&app, "/", None).await.status, 200);
    assert_eq!(get(&app, "/page/about", None).await.status, 401);
    let r = get(&app, "/jobs", None).await;
    assert_eq!(r.status, 401);
    assert!(
        r.headers[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode("alice:alicepw");
    let req = Request::get("/jobs")
        .header(header::AUTHORIZATION, format!("Basic {basic}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, req).await.status, 200);
}
