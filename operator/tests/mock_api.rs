//! Reconcile against a mock API server (the controller-rs `ApiServerVerifier` pattern): every
//! call is checked in order — method, path, field manager — with the key fields of its body.

use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use kube::runtime::events::{Recorder, Reporter};
use minicluster_core::MiniCluster;
use minicluster_operator::build::{self, BuildOptions};
use minicluster_operator::metrics::Metrics;
use minicluster_operator::reconcile::{Context, reconcile};
use serde_json::{Value, json};

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

const NS: &str = "hpc";
const MANAGER_QUERY: &str = "fieldManager=minicluster-operator";

/// One expected call and the answer the mock gives.
struct Call {
    method: Method,
    path: String,
    reply: Reply,
}

enum Reply {
    /// Answer with the request body itself (what an apply returns, near enough).
    Echo,
    Json(Value),
    NotFound,
    /// The status subresource: the object given, with the status sent.
    StatusOf(Value),
}

fn call(method: Method, path: &str, reply: Reply) -> Call {
    Call {
        method,
        path: path.to_string(),
        reply,
    }
}

/// What the mock saw: full URI and body (the method was checked on the way).
#[derive(Debug)]
struct Seen {
    uri: String,
    body: Value,
}

async fn verify(mut handle: Handle, calls: Vec<Call>) -> Vec<Seen> {
    let mut seen = Vec::new();
    for (i, c) in calls.into_iter().enumerate() {
        let (req, send) = tokio::time::timeout(Duration::from_secs(5), handle.next_request())
            .await
            .unwrap_or_else(|_| panic!("call {i} ({} {}) never came", c.method, c.path))
            .expect("the client went away");
        let uri = req.uri().to_string();
        assert_eq!(req.method(), &c.method, "call {i}: {uri}");
        assert_eq!(req.uri().path(), c.path, "call {i}");
        if c.method == Method::PATCH {
            assert!(
                uri.contains(MANAGER_QUERY),
                "call {i} has no field manager: {uri}"
            );
            // Server-side apply, forced; merged only: a shared object's owners, a Job's size,
            // suspension or spec hash (a Job's template cannot be applied again).
            let kind = req
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            if kind.contains("merge-patch") {
                assert!(!uri.contains("force"), "call {i}: {uri}");
            } else {
                assert!(kind.contains("apply-patch"), "call {i}: {kind}");
                assert!(uri.contains("force=true"), "call {i}: {uri}");
            }
        }
        let bytes = req.into_body().collect_bytes().await.unwrap();
        let body: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        let (status, out) = match c.reply {
            Reply::Echo => (StatusCode::OK, body.clone()),
            Reply::Json(v) => (StatusCode::OK, v),
            Reply::StatusOf(mut v) => {
                v["status"] = body["status"].clone();
                (StatusCode::OK, v)
            }
            Reply::NotFound => (
                StatusCode::NOT_FOUND,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"}),
            ),
        };
        send.send_response(
            Response::builder()
                .status(status)
                .body(Body::from(serde_json::to_vec(&out).unwrap()))
                .unwrap(),
        );
        seen.push(Seen { uri, body });
    }
    // Nothing more may be asked.
    if let Ok(Some((req, _))) =
        tokio::time::timeout(Duration::from_millis(200), handle.next_request()).await
    {
        panic!("unexpected call: {} {}", req.method(), req.uri());
    }
    seen
}

fn context() -> (Arc<Context>, Handle) {
    context_with(BuildOptions::default())
}

fn context_with(build: BuildOptions) -> (Arc<Context>, Handle) {
    let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(svc, NS);
    let ctx = Context {
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "minicluster-operator".into(),
                instance: None,
            },
        ),
        client,
        build,
        metrics: Metrics::default(),
        applied: Default::default(),
    };
    (Arc::new(ctx), handle)
}

fn minicluster(extra: &str) -> MiniCluster {
    let yaml = format!(
        "apiVersion: flux-framework.org/v1alpha2\nkind: MiniCluster\nmetadata:\n  name: mc\n  namespace: {NS}\n  uid: 0b5c1a4e-1111-2222-3333-444455556666\n  generation: 1\nspec:\n  size: 4\n{extra}  containers:\n    - image: ghcr.io/flux-framework/flux-restful:latest\n      command: lmp -in in.reaxc\n"
    );
    serde_norway::from_str(&yaml).unwrap()
}

fn core(kind: &str, name: &str) -> String {
    format!("/api/v1/namespaces/{NS}/{kind}/{name}")
}
fn jobs(name: &str) -> String {
    format!("/apis/batch/v1/namespaces/{NS}/jobs/{name}")
}
fn events() -> String {
    format!("/apis/events.k8s.io/v1/namespaces/{NS}/events")
}
fn status() -> String {
    format!("/apis/flux-framework.org/v1alpha2/namespaces/{NS}/miniclusters/mc/status")
}
/// The two reads every reconcile starts with: the Job (answered with `job`) and the broker
/// pods (answered with `pods`).
fn reads(job: Reply, pods: Value) -> Vec<Call> {
    vec![
        call(Method::GET, &jobs("mc"), job),
        call(Method::GET, &pods_path(), Reply::Json(pods)),
    ]
}

/// What a MiniCluster that still runs gets applied: read the Secret (answered with
/// `secret`), apply the Secret, ConfigMap and headless Service, and join the Service's
/// owners.
fn children(secret: Reply) -> Vec<Call> {
    vec![
        call(Method::GET, &core("secrets", "mc-curve-cert"), secret),
        call(
            Method::PATCH,
            &core("secrets", "mc-curve-cert"),
            Reply::Echo,
        ),
        call(
            Method::PATCH,
            &core("configmaps", "mc-description"),
            Reply::Echo,
        ),
        call(
            Method::PATCH,
            &core("services", "flux-service"),
            Reply::Echo,
        ),
        // The Service may be shared: this MiniCluster joins its owners by a merge patch.
        call(
            Method::PATCH,
            &core("services", "flux-service"),
            Reply::Echo,
        ),
    ]
}

fn calls(parts: Vec<Vec<Call>>) -> Vec<Call> {
    parts.into_iter().flatten().collect()
}

fn status_reply() -> Reply {
    Reply::StatusOf(serde_json::to_value(minicluster("")).unwrap())
}
fn pods_path() -> String {
    format!("/api/v1/namespaces/{NS}/pods")
}

/// A broker pod of index `i` of the Job [`existing`] returns, as the API server shows it.
fn pod(i: usize, status: Value) -> Value {
    json!({"metadata": {"name": format!("mc-{i}-x"), "namespace": NS,
        "creationTimestamp": "2026-01-01T00:00:00Z",
        "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "mc",
            "uid": JOB_UID, "controller": true}],
        "annotations": {"batch.kubernetes.io/job-completion-index": i.to_string(),
            "kubectl.kubernetes.io/default-container": "mc"}},
        "spec": {"containers": [{"name": "mc", "image": "x"}]},
        "status": status})
}

fn ready() -> Value {
    json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]})
}

fn ended(code: i32) -> Value {
    json!({"phase": if code == 0 { "Succeeded" } else { "Failed" }, "containerStatuses": [
        {"name": "mc", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
         "state": {"terminated": {"exitCode": code, "reason": "Error",
            "finishedAt": "2026-01-01T00:01:00Z"}}}]})
}

fn pod_list(items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items})
}

fn all_ready(n: usize) -> Value {
    pod_list((0..n).map(|i| pod(i, ready())).collect())
}

const JOB_UID: &str = "1d2e3f40-aaaa-bbbb-cccc-ddddeeeeffff";

/// The Job and Secret the operator made for `mc` with `cert`, as the API server returns them.
fn existing(mc: &MiniCluster, cert: &str) -> (Value, Value) {
    let children = build::build(mc, cert, &BuildOptions::default()).unwrap();
    let mut job = serde_json::to_value(&children.job).unwrap();
    job["metadata"]["uid"] = JOB_UID.into();
    (job, serde_json::to_value(&children.secret).unwrap())
}

fn cert() -> String {
    minicluster_core::CurveCert::generate("mc-0")
        .unwrap()
        .to_text()
}

fn condition<'a>(status_body: &'a Value, type_: &str) -> &'a Value {
    status_body["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap_or_else(|| panic!("no {type_} condition"))
}

#[tokio::test]
async fn a_new_minicluster_gets_its_children_and_status() {
    let (ctx, handle) = context();
    let verifier = tokio::spawn(verify(
        handle,
        calls(vec![
            reads(Reply::NotFound, pod_list(vec![])),
            children(Reply::NotFound),
            vec![
                call(Method::PATCH, &jobs("mc"), Reply::Echo),
                call(Method::POST, &events(), Reply::Echo),
                call(Method::PATCH, &status(), status_reply()),
            ],
        ]),
    ));
    reconcile(Arc::new(minicluster("")), ctx).await.unwrap();
    let seen = verifier.await.unwrap();
    assert!(seen[1].uri.contains("labelSelector="), "{}", seen[1].uri);

    let secret = &seen[3].body;
    assert!(secret["data"]["curve.cert"].is_string());
    assert_eq!(
        secret["metadata"]["ownerReferences"][0]["kind"],
        "MiniCluster"
    );
    assert_eq!(secret["metadata"]["ownerReferences"][0]["controller"], true);
    let svc = &seen[5].body;
    assert_eq!(svc["spec"]["clusterIP"], "None");
    assert_eq!(svc["spec"]["publishNotReadyAddresses"], true);
    // The headless Service may be shared: it selects every pod naming it, belongs to no
    // MiniCluster alone, and this one joins its owners by a merge.
    assert_eq!(
        svc["spec"]["selector"],
        json!({"flux-framework.org/headless-service": "flux-service"})
    );
    assert!(svc["metadata"].get("ownerReferences").is_none());
    assert!(
        svc["metadata"]["labels"]
            .get("app.kubernetes.io/instance")
            .is_none()
    );
    let owner = &seen[6].body["metadata"]["ownerReferences"][0];
    assert_eq!(owner["kind"], "MiniCluster");
    assert_eq!(owner["uid"], "0b5c1a4e-1111-2222-3333-444455556666");
    assert!(owner.get("controller").is_none(), "{owner}");

    let job = &seen[7].body;
    assert_eq!(job["spec"]["completionMode"], "Indexed");
    assert_eq!(job["spec"]["parallelism"], 4);
    assert_eq!(job["spec"]["completions"], 4);
    assert!(job["metadata"]["annotations"]["flux-framework.org/spec-hash"].is_string());
    // Rank 0 decides: its code ends the Job, a worker that left is replaced, index 0's
    // success is the Job's.
    let rules = &job["spec"]["podFailurePolicy"]["rules"];
    assert_eq!(rules[0]["action"], "Ignore");
    assert_eq!(rules[0]["onExitCodes"]["values"], json!([249]));
    assert_eq!(rules[1]["action"], "FailJob");
    assert_eq!(rules[1]["onExitCodes"]["operator"], "NotIn");
    assert_eq!(rules[1]["onExitCodes"]["containerName"], "mc");
    assert_eq!(
        job["spec"]["successPolicy"]["rules"][0]["succeededIndexes"],
        "0"
    );
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "Never");
    assert_eq!(pod["subdomain"], "flux-service");
    assert_eq!(pod["setHostnameAsFQDN"], false);
    let flux = &pod["containers"][0];
    assert_eq!(flux["command"][0], "/mnt/flux/bin/entrypoint");
    assert_eq!(
        flux["readinessProbe"]["exec"]["command"],
        json!(["/mnt/flux/bin/entrypoint", "ready"])
    );
    assert_eq!(flux["terminationMessagePolicy"], "FallbackToLogsOnError");
    assert_eq!(pod["initContainers"][0]["command"][1], "install");
    assert_eq!(pod["initContainers"][0]["imagePullPolicy"], "IfNotPresent");
    assert_eq!(
        job["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/default-container"],
        "mc"
    );
    assert_eq!(
        job["spec"]["template"]["metadata"]["labels"]["flux-framework.org/headless-service"],
        "flux-service"
    );
    assert_eq!(seen[8].body["reason"], "Created");
    let st = &seen[9].body;
    assert_eq!(st["status"]["size"], 4);
    assert_eq!(st["status"]["ready"], "0/4");
    assert_eq!(condition(st, "Validated")["status"], "True");
    assert_eq!(condition(st, "Created")["status"], "True");
    assert_eq!(
        condition(st, "BrokersReady")["message"],
        "0/4 brokers ready"
    );
}

#[tokio::test]
async fn an_unchanged_minicluster_never_writes_its_job() {
    let mc = minicluster("");
    let cert = cert();
    let (job, secret) = existing(&mc, &cert);
    let (ctx, handle) = context();
    let verifier = tokio::spawn(verify(
        handle,
        calls(vec![
            reads(Reply::Json(job), all_ready(4)),
            children(Reply::Json(secret)),
            // No Job write, no event: nothing changed.
            vec![call(Method::PATCH, &status(), status_reply())],
        ]),
    ));
    reconcile(Arc::new(mc), ctx).await.unwrap();
    let seen = verifier.await.unwrap();
    // The certificate is kept.
    let kept: k8s_openapi::ByteString =
        serde_json::from_value(seen[3].body["data"]["curve.cert"].clone()).unwrap();
    assert_eq!(String::from_utf8(kept.0).unwrap(), cert);
    let st = &seen[7].body;
    assert_eq!(condition(st, "BrokersReady")["status"], "True");
    assert_eq!(st["status"]["phase"], "Running");
    assert_eq!(st["status"]["ready"], "4/4");
}

#[tokio::test]
async fn an_operator_upgrade_never_replaces_a_running_job() {
    // The Job was built by an operator with another runner image; the spec is the same.
    let mc = minicluster("");
    let (job, secret) = existing(&mc, &cert());
    let (ctx, handle) = context_with(BuildOptions {
        runner_image: "registry.example/minicluster/runner:2.0".into(),
        ..BuildOptions::default()
    });
    let verifier = tokio::spawn(verify(
        handle,
        calls(vec![
            reads(Reply::Json(job), all_ready(4)),
            children(Reply::Json(secret)),
            vec![call(Method::PATCH, &status(), status_reply())],
        ]),
    ));
    reconcile(Arc::new(mc), ctx).await.unwrap();
    verifier.await.unwrap();
}

#[tokio::test]
async fn a_job_from_an_earlier_operator_is_adopted_not_replaced() {
    let mc = minicluster("");
    let (mut job, secret) = existing(&mc, &cert());
    job["metadata"]["annotations"] =
        json!({"flux-framework.org/template-hash": "0123456789abcdef"});
    let (ctx, handle) = context();
    let verifier = tokio::spawn(verify(
        handle,
        calls(vec![
            reads(Reply::Json(job), all_ready(4)),
            children(Reply::Json(secret)),
            vec![
                call(Method::PATCH, &jobs("mc"), Reply::Echo),
                call(Method::PATCH, &status(), status_reply()),
            ],
        ]),
    ));
    reconcile(Arc::new(mc), ctx).await.unwrap();
    let seen = verifier.await.unwrap();
    let patch = &seen[7].body;
    assert!(patch["metadata"]["annotations"]["flux-framework.org/spec-hash"].is_string());
    assert!(patch.get("spec").is_none(), "only the annotation: {patch}");
}

#[tokio::test]
async fn an_invalid_minicluster_gets_status_and_an_event_only() {
    let mut mc = minicluster("");
    mc.spec.containers[0].command = None;
    mc.spec.size = 0;
    let (ctx, handle) = context();
    let verifier = tokio::spawn(verify(
        handle,
        calls(vec![
            reads(Reply::NotFound, pod_list(vec![])),
            vec![
                call(Method::POST, &events(), Reply::Echo),
                call(Method::PATCH, &status(), status_reply()),
            ],
        ]),
    ));
    reconcile(Arc::new(mc), ctx).await.unwrap();
    let seen = verifier.await.unwrap();
    assert_eq!(seen[2].body["type"], "Warning");
    assert_eq!(seen[2].body["reason"], "InvalidSpec");
    let st = &seen[3].body;
    let v = condition(st, "Validated");
    assert_eq!(v["status"], "False");
    let msg = v["message"].as_str().unwrap();
    assert!(
        msg.contains("spec.size") && msg.contains("spec.containers[0].command"),
        "{msg}"
    );
    assert_eq!(st["status"]["phase"], "Invalid");
    assert_eq!(condition(st, "Created")["status"], "False");
}

#[tokio::test]
async fn an_invalid_edit_of_a_running_minicluster_reports_what_runs() {
    let good = minicluster("");
    let (job, _) = existing(&good, &cert());
    let mut bad = good.clone();
    bad.spec.containers[0].command = None;
    let (ctx, handle) = context();
    let verifier = tokio::spawn(verify(
        handle,
        calls(vec![
            reads(Reply::Json(job), all_ready(4)),
            vec![
                call(Method::POST, &events(), Reply::Echo),
                call(Method::PATCH, &status(), status_reply()),
            ],
        ]),
    ));
    reconcile(Arc::new(bad), ctx).await.unwrap();
    let seen = verifier.await.unwrap();
    let st = &seen[3].body;
    assert_eq!(condition(st, "Validated")["status"], "False");
    assert!(
        condition(st, "Validated")["message"]
            .as_str()
            .unwrap()
            .contains("keeps running as it was")
    );
    assert_eq!(condition(st, "Created")["status"], "True");
    assert_eq!(st["status"]["phase"], "Running");
    assert_eq!(st["status"]["ready"], "4/4");
}

#[tokio::test]
async fn resize_within_max_size_patches_the_job_in_place() {
    let before = minicluster("  maxSize: 8\n");
    let (job, secret) = existing(&before, &cert());
    let mut after = before.clone();
    after.spec.size = 6;
    let (ctx, handle) = context();
    let verifier = tokio::spawn(verify(
        handle,
        calls(vec![
            reads(Reply::Json(job), all_ready(4)),
            children(Reply::Json(secret)),
            vec![
                call(Method::PATCH, &jobs("mc"), Reply::Echo),
                call(Method::POST, &events(), Reply::Echo),
                call(Method::PATCH, &status(), status_reply()),
            ],
        ]),
    ));
    reconcile(Arc::new(after), ctx).await.unwrap();
    let seen = verifier.await.unwrap();
    assert_eq!(
        seen[7].body,
        json!({"spec": {"parallelism": 6, "completions": 6}})
    );
    assert_eq!(seen[8].body["reason"], "Resized");
    assert_eq!(seen[8].body["note"], "from 4 to 6 brokers");
    // The description follows the size; the hostlist does not (it covers maxSize).
    let d: Value =
        serde_json::from_str(seen[4].body["data"]["description.json"].as_str().unwrap()).unwrap();
    assert_eq!(
        (d["size"].as_u64(), d["hostlist"].as_str()),
        (Some(6), Some("mc-[0-7]"))
    );
    assert_eq!(seen[9].body["status"]["ready"], "4/6");
}

#[tokio::test]
async fn resize_where_the_server_cannot_says_so_and_changes_nothing() {
    let before = minicluster("  maxSize: 8\n");
    let (job, secret) = existing(&before, &cert());
    let mut after = before.clone();
    after.spec.size = 6;
    let (ctx, handle) = context_with(BuildOptions {
        server: minicluster_operator::features::ServerFeatures { minor: 26 },
        ..BuildOptions::default()
    });
    let verifier = tokio::spawn(verify(
        handle,
        calls(vec![
            reads(Reply::Json(job), all_ready(4)),
            children(Reply::Json(secret)),
            vec![
                call(Method::POST, &events(), Reply::Echo),
                call(Method::PATCH, &status(), status_reply()),
            ],
        ]),
    ));
    reconcile(Arc::new(after), ctx).await.unwrap();
    let seen = verifier.await.unwrap();
    assert_eq!(seen[7].body["reason"], "ResizeRefused");
    assert!(seen[7].body["note"].as_str().unwrap().contains("1.27"));
    let st = &seen[8].body;
    assert_eq!(condition(st, "Resized")["status"], "False");
    assert_eq!(st["status"]["size"], 4, "the size in effect stays");
}

#[tokio::test]
async fn resize_beyond_max_size_is_refused_and_changes_nothing() {
    let before = minicluster("  maxSize: 8\n");
    let (job, _) = existing(&before, &cert());
    let mut mc = before.clone();
    mc.spec.size = 10;
    let (ctx, handle) = context();
    let verifier = tokio::spawn(verify(
        handle,
        calls(vec![
            reads(Reply::Json(job), all_ready(4)),
            vec![
                call(Method::POST, &events(), Reply::Echo),
                call(Method::PATCH, &status(), status_reply()),
            ],
        ]),
    ));
    reconcile(Arc::new(mc), ctx).await.unwrap();
    let seen = verifier.await.unwrap();
    assert_eq!(seen[2].body["reason"], "SizeRefused");
    let st = &seen[3].body;
    assert_eq!(condition(st, "Validated")["reason"], "SizeRefused");
    assert!(
        condition(st, "Validated")["message"]
            .as_str()
            .unwrap()
            .contains("spec.maxSize")
    );
    assert_eq!(st["status"]["size"], 4, "the size in effect stays");
}

#[tokio::test]
async fn rank_zero_failing_fails_the_minicluster_with_its_code() {
    let mc = minicluster("");
    let (job, _) = existing(&mc, &cert());
    let (ctx, handle) = context();
    let verifier = tokio::spawn(verify(
        handle,
        calls(vec![
            reads(
                Reply::Json(job),
                pod_list(vec![
                    pod(0, ended(3)),
                    pod(1, ready()),
                    pod(2, ready()),
                    pod(3, ready()),
                ]),
            ),
            // Nothing is applied to a MiniCluster that has ended.
            vec![
                call(Method::POST, &events(), Reply::Echo),
                call(Method::PATCH, &status(), status_reply()),
            ],
        ]),
    ));
    reconcile(Arc::new(mc), ctx).await.unwrap();
    let seen = verifier.await.unwrap();
    assert_eq!(seen[2].body["type"], "Warning");
    assert_eq!(seen[2].body["reason"], "Failed");
    let st = &seen[3].body;
    assert_eq!(st["status"]["phase"], "Failed");
    assert_eq!(st["status"]["exitCode"], 3);
    assert_eq!(
        condition(st, "Failed")["message"],
        "rank 0 exited with code 3"
    );
}

#[tokio::test]
async fn rank_zero_finished_with_cleanup_deletes_the_minicluster() {
    let mc = minicluster("  cleanup: true\n");
    let (job, _) = existing(&mc, &cert());
    let (ctx, handle) = context();
    let verifier = tokio::spawn(verify(
        handle,
        calls(vec![
            reads(
                Reply::Json(job),
                pod_list(vec![
                    pod(0, ended(0)),
                    pod(1, ready()),
                    pod(2, ready()),
                    pod(3, ready()),
                ]),
            ),
            vec![
                call(Method::POST, &events(), Reply::Echo),
                call(Method::PATCH, &status(), status_reply()),
                call(Method::POST, &events(), Reply::Echo),
                call(
                    Method::DELETE,
                    "/apis/flux-framework.org/v1alpha2/namespaces/hpc/miniclusters/mc",
                    Reply::Json(serde_json::to_value(minicluster("  cleanup: true\n")).unwrap()),
                ),
            ],
        ]),
    ));
    reconcile(Arc::new(mc), ctx).await.unwrap();
    let seen = verifier.await.unwrap();
    assert_eq!(seen[2].body["reason"], "Succeeded");
    assert_eq!(seen[3].body["status"]["phase"], "Succeeded");
    assert_eq!(seen[3].body["status"]["exitCode"], 0);
    assert_eq!(seen[4].body["reason"], "Cleanup");
}

#[tokio::test]
async fn a_finished_minicluster_is_never_run_again() {
    // Succeeded before; its Job is gone (deleted by hand, or an operator restart found none).
    let mut mc = minicluster("");
    mc.status = Some(minicluster_core::spec::MiniClusterStatus {
        size: 4,
        phase: Some("Succeeded".into()),
        exit_code: Some(0),
        ..Default::default()
    });
    let (ctx, handle) = context();
    let verifier = tokio::spawn(verify(
        handle,
        calls(vec![
            reads(Reply::NotFound, pod_list(vec![])),
            vec![call(Method::PATCH, &status(), status_reply())],
        ]),
    ));
    reconcile(Arc::new(mc), ctx).await.unwrap();
    let seen = verifier.await.unwrap();
    assert_eq!(seen[2].body["status"]["phase"], "Succeeded");
}

#[tokio::test]
async fn pods_of_a_job_being_replaced_do_not_end_the_minicluster() {
    // The spec changed; the old Job is being deleted and its rank 0 ended with SIGTERM.
    let mc = minicluster("");
    let (mut job, secret) = existing(&mc, &cert());
    job["metadata"]["deletionTimestamp"] = "2026-01-01T00:02:00Z".into();
    let (ctx, handle) = context();
    let verifier = tokio::spawn(verify(
        handle,
        calls(vec![
            reads(
                Reply::Json(job),
                pod_list(vec![pod(0, ended(143)), pod(1, ready())]),
            ),
            children(Reply::Json(secret)),
            // Wait for it to go; nothing is decided from its pods.
        ]),
    ));
    reconcile(Arc::new(mc), ctx).await.unwrap();
    verifier.await.unwrap();
}

#[tokio::test]
async fn a_changed_spec_replaces_the_job() {
    let before = minicluster("");
    let (job, secret) = existing(&before, &cert());
    let mut after = before.clone();
    after.spec.containers[0].image = "ghcr.io/flux-framework/flux-restful:v2".into();
    let (ctx, handle) = context();
    let verifier = tokio::spawn(verify(
        handle,
        calls(vec![
            reads(Reply::Json(job.clone()), all_ready(4)),
            children(Reply::Json(secret)),
            vec![
                call(Method::DELETE, &jobs("mc"), Reply::Json(job)),
                call(Method::POST, &events(), Reply::Echo),
            ],
        ]),
    ));
    reconcile(Arc::new(after), ctx).await.unwrap();
    let seen = verifier.await.unwrap();
    assert_eq!(seen[7].body["propagationPolicy"], "Foreground");
    assert_eq!(seen[8].body["reason"], "Replacing");
}

#[tokio::test]
async fn children_are_applied_once_per_generation_while_pods_churn() {
    // Pods changing while they start reconcile the MiniCluster again and again: its Secret,
    // ConfigMap and Service are applied the first time only.
    let mc = minicluster("");
    let (job, secret) = existing(&mc, &cert());
    let (ctx, handle) = context();
    let verifier = tokio::spawn(verify(
        handle,
        calls(vec![
            reads(Reply::Json(job.clone()), all_ready(4)),
            children(Reply::Json(secret)),
            vec![call(Method::PATCH, &status(), status_reply())],
            reads(Reply::Json(job), all_ready(4)),
            vec![call(Method::PATCH, &status(), status_reply())],
        ]),
    ));
    let mc = Arc::new(mc);
    reconcile(mc.clone(), ctx.clone()).await.unwrap();
    reconcile(mc, ctx).await.unwrap();
    verifier.await.unwrap();
}
