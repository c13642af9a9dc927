//! flux-restful 1.1.0's HTTP behaviour, one check per behaviour (status code and JSON shape),
//! as its source has it: `routers/api.py` and `routers/views.py` (routes and messages),
//! `library/flux.py` and `library/launcher.py` (cancel, output, launcher messages),
//! `core/config.py` (no submission rate limit) and the FastAPI/pydantic 2 it pins (the 422
//! shapes and which spellings parse).
//!
//! The same checks run against our binary with its defaults: with the Flux stand-in in every
//! run, and inside a real Flux instance (`flux start --test-size=1 minicluster-rest`).

mod common;

use std::time::Duration;

use common::{Server, flux_or_fail};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// A job id no instance has handed out yet (in decimal, as clients send it).
const UNKNOWN: &str = "123456789";

struct Api {
    url: String,
    http: reqwest::Client,
}

impl Api {
    fn new(url: &str) -> Api {
        Api {
            url: url.to_string(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
        }
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, String) {
        let url = format!("{}{path}", self.url);
        let mut req = match method {
            "GET" => self.http.get(url),
            _ => self.http.post(url),
        };
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        (status, resp.text().await.unwrap())
    }

    async fn json(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let (status, text) = self.call(method, path, body).await;
        let v = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("{method} {path}: not JSON ({status}): {text}"));
        (status, v)
    }

    /// Assert the answer to `method path`: its status and its whole JSON body.
    async fn expect(&self, method: &str, path: &str, body: Option<Value>, want: (u16, Value)) {
        let (status, got) = self.json(method, path, body).await;
        assert_eq!((status.as_u16(), got), want, "{method} {path}");
    }

    /// `GET path` as an HTML page (200 itself, not a redirect to one); its text.
    async fn html(&self, path: &str) -> String {
        let r = self
            .http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "GET {path}");
        let kind = r.headers()["content-type"].to_str().unwrap().to_string();
        assert!(kind.starts_with("text/html"), "GET {path}: {kind}");
        r.text().await.unwrap()
    }

    /// Submit `command` (query-encoded), expecting flux-restful's success shape.
    async fn submit(&self, command: &str) -> u64 {
        let (status, body) = self
            .json("POST", &format!("/v1/jobs/submit?command={command}"), None)
            .await;
        assert_eq!(status, 200, "submit {command}: {body}");
        assert_eq!(body["Message"], "Job submit.", "{body}");
        body["id"].as_u64().unwrap()
    }

    async fn wait_inactive(&self, id: u64) {
        for _ in 0..600 {
            let (_, j) = self.json("GET", &format!("/v1/jobs/{id}"), None).await;
            if j["state"] == "INACTIVE" {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("job {id} never became INACTIVE");
    }
}

/// FastAPI's 422 for one value: `{"detail": [{"type", "loc", "msg", "input"}]}`.
fn one_error(kind: &str, name: &str, msg: &str, input: &str) -> Value {
    json!({"detail": [{"type": kind, "loc": ["query", name], "msg": msg, "input": input}]})
}

const INT_MSG: &str = "Input should be a valid integer, unable to parse string as an integer";
const BOOL_MSG: &str = "Input should be a valid boolean, unable to interpret input";

/// Every check, in order; each prints `ok NAME` once it holds.
async fn check_all(api: &Api) {
    let ok = |name: &str| println!("ok {name}");

    api.expect(
        "POST",
        "/v1/jobs/submit?command=true&num_tasks=abc",
        None,
        (422, one_error("int_parsing", "num_tasks", INT_MSG, "abc")),
    )
    .await;
    ok("num_tasks=abc is a 422 int_parsing");

    api.expect(
        "POST",
        "/v1/jobs/submit?command=true&exclusive=maybe",
        None,
        (
            422,
            one_error("bool_parsing", "exclusive", BOOL_MSG, "maybe"),
        ),
    )
    .await;
    ok("exclusive=maybe is a 422 bool_parsing");

    api.expect(
        "GET",
        "/v1/jobs?details=notabool",
        None,
        (
            422,
            one_error("bool_parsing", "details", BOOL_MSG, "notabool"),
        ),
    )
    .await;
    ok("details=notabool is a 422 bool_parsing");

    // Every value that does not parse is listed, in the order the route declares them, and
    // before the missing command is noticed.
    let (s, b) = api
        .json(
            "POST",
            "/v1/jobs/submit?is_launcher=2&runtime=1.5&exclusive=maybe&num_tasks=abc",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    let locs: Vec<&str> = b["detail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["loc"][1].as_str().unwrap())
        .collect();
    assert_eq!(
        locs,
        ["num_tasks", "exclusive", "runtime", "is_launcher"],
        "{b}"
    );
    ok("all 422 errors at once, in declaration order");

    // pydantic's words, in any case; nothing else (not even with a space).
    for word in ["1", "true", "TRUE", "yes", "Yes", "on", "t", "y", "Y", "On"] {
        let (s, b) = api
            .json("GET", &format!("/v1/jobs?details={word}"), None)
            .await;
        assert_eq!(s, 200, "details={word}: {b}");
        assert!(
            b.is_object() && b.get("jobs").is_none(),
            "details={word}: {b}"
        );
    }
    for word in ["0", "false", "False", "no", "off", "f", "n", "N"] {
        let (s, b) = api
            .json("GET", &format!("/v1/jobs?details={word}"), None)
            .await;
        assert_eq!(s, 200, "details={word}: {b}");
        assert!(b["jobs"].is_array(), "details={word}: {b}");
    }
    for word in ["%20true", "true%20", "2", "1.0", ""] {
        let (s, b) = api
            .json("GET", &format!("/v1/jobs?details={word}"), None)
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "details={word}: {b}");
        assert_eq!(b["detail"][0]["type"], "bool_parsing");
    }
    ok("booleans parse as pydantic's twelve words, in any case");

    api.expect("POST", "/v1/jobs/submit?command=true", Some(json!([1])), (422, json!({"detail": [{"type": "dict_type", "loc": ["body"], "msg": "Input should be a valid dictionary", "input": [1]}]})))
        .await;
    ok("a body that is not a dict is a 422 dict_type");

    api.expect("POST", "/v1/jobs/submit?command=true&exclusive=true", None, (400, json!({"Message": "There was an issue submitting that job.", "Error": "exclusive can only be set with a node count"})))
        .await;
    ok("exclusive without num_nodes is a 400 issue submitting");

    api.expect(
        "POST",
        "/v1/jobs/submit?command=notalauncher+run&is_launcher=true",
        None,
        (
            200,
            json!({"Message": "notalauncher is not a known launcher. ", "id": "MANY"}),
        ),
    )
    .await;
    ok("an unknown launcher is a 200 with id MANY");

    let done = api.submit("true").await;
    api.wait_inactive(done).await;
    api.expect(
        "GET",
        "/v1/jobs?details=true&limit=0",
        None,
        (200, json!({})),
    )
    .await;
    api.expect(
        "GET",
        "/v1/jobs?details=true&listing=true&limit=0",
        None,
        (200, json!([])),
    )
    .await;
    ok("details with limit=0 lists no jobs");

    let (s, b) = api.json("GET", "/v1/jobs?detail=true", None).await;
    assert_eq!(s, 200);
    let ids: Vec<u64> = b["jobs"]
        .as_array()
        .unwrap_or_else(|| panic!("not the plain listing: {b}"))
        .iter()
        .map(|j| j["id"].as_u64().unwrap())
        .collect();
    assert!(ids.contains(&done), "{b}");
    ok("detail (the client's spelling) is ignored: the plain listing");

    let (s, b) = api
        .json("GET", "/v1/jobs/search?query=no-job-has-this", None)
        .await;
    assert_eq!(s, 200);
    assert!(b["recordsFiltered"].as_u64().unwrap() >= 1, "{b}");
    assert_eq!(b["recordsFiltered"], b["recordsTotal"], "{b}");
    ok("query (the client's spelling) is ignored by search");

    api.expect(
        "GET",
        &format!("/v1/jobs/{UNKNOWN}/output"),
        None,
        (
            200,
            json!({"Message": "The output does not exist yet, or the jobid is incorrect."}),
        ),
    )
    .await;
    ok("output of an unknown job is a 200 message");

    let (s, text) = api
        .call("GET", &format!("/v1/jobs/{UNKNOWN}/output/stream"), None)
        .await;
    assert_eq!((s, text.as_str()), (StatusCode::OK, ""));
    ok("the output stream of an unknown job is an empty 200");

    api.expect(
        "POST",
        &format!("/v1/jobs/{UNKNOWN}/cancel"),
        None,
        (
            400,
            json!({"Message": "Job cannot be cancelled: [Errno 2] unknown job id.", "id": UNKNOWN}),
        ),
    )
    .await;
    ok("cancel of an unknown job is a 400");

    api.expect("POST", &format!("/v1/jobs/{done}/cancel"), None, (400, json!({"Message": "Job cannot be cancelled: [Errno 2] job is inactive.", "id": done.to_string()})))
        .await;
    ok("cancel of an inactive job is a 400");

    assert!(api.html("/").await.contains("<html"));
    ok("GET / is an HTML page");

    assert!(api.html("/page/about").await.contains("<html"));
    api.expect(
        "GET",
        "/page/no-such-page",
        None,
        (404, json!({"detail": "Page not found"})),
    )
    .await;
    ok("/page/about is an HTML page; other pages are 404");

    // No submission rate limit: a CI burst well past the old 100 all goes through.
    let mut tasks = tokio::task::JoinSet::new();
    for lane in 0..10 {
        let (http, url) = (api.http.clone(), api.url.clone());
        tasks.spawn(async move {
            let mut statuses = Vec::new();
            for _ in 0..15 {
                let r = http
                    .post(format!("{url}/v1/jobs/submit?command=true&num_tasks=1"))
                    .send()
                    .await
                    .unwrap();
                statuses.push((lane, r.status().as_u16()));
            }
            statuses
        });
    }
    let statuses: Vec<(i32, u16)> = tasks.join_all().await.into_iter().flatten().collect();
    assert_eq!(statuses.len(), 150);
    let refused: Vec<_> = statuses.iter().filter(|(_, s)| *s != 200).collect();
    assert!(refused.is_empty(), "refused submissions: {refused:?}");
    ok("150 submissions at once: no 429");
}

#[tokio::test]
async fn stand_in_answers_as_flux_restful_1_1_0() {
    let server = Server::start(&["--backend", "stand-in"], &[]);
    check_all(&Api::new(&server.url)).await;
    assert!(!server.logs().contains("panicked"), "{}", server.logs());
}

#[tokio::test]
#[ignore = "needs a real flux: FLUX_BIN or flux on PATH (tests/run runs these when found)"]
async fn real_flux_answers_as_flux_restful_1_1_0() {
    let mut server = Server::start_in_flux(&flux_or_fail(), &["--grace-seconds", "3"], &[]);
    check_all(&Api::new(&server.url)).await;
    let status = server.terminate(Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "flux start did not end cleanly ({status:?}):\n{}",
        server.logs()
    );
}
