//! The Kubernetes launcher against a mock API server: every call, in order.

use std::time::Duration;

use http::{Method, Request, Response};
use kube::Client;
use kube::client::Body;
use minicluster_core::MiniCluster;
use minicluster_launcher::kubernetes::KubernetesLauncher;
use minicluster_operator::build::BuildOptions;
use serde_json::{Value, json};

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

struct Call {
    method: Method,
    path: String,
    /// The response body; `None` echoes the request.
    reply: Option<Vec<u8>>,
}

fn call(method: Method, path: &str, reply: Option<Value>) -> Call {
    Call {
        method,
        path: path.into(),
        reply: reply.map(|v| serde_json::to_vec(&v).unwrap()),
    }
}

async fn verify(mut handle: Handle, calls: Vec<Call>) -> Vec<(String, Value)> {
    let mut seen = Vec::new();
    for (i, c) in calls.into_iter().enumerate() {
        let (req, send) = tokio::time::timeout(Duration::from_secs(5), handle.next_request())
            .await
            .unwrap_or_else(|_| panic!("call {i} ({} {}) never came", c.method, c.path))
            .unwrap();
        let uri = req.uri().to_string();
        assert_eq!(
            (req.method(), req.uri().path()),
            (&c.method, c.path.as_str()),
            "call {i}: {uri}"
        );
        let bytes = req.into_body().collect_bytes().await.unwrap();
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let out = c.reply.unwrap_or_else(|| bytes.to_vec());
        send.send_response(Response::builder().body(Body::from(out)).unwrap());
        seen.push((uri, body));
    }
    if let Ok(Some((req, _))) =
        tokio::time::timeout(Duration::from_millis(200), handle.next_request()).await
    {
        panic!("unexpected call: {} {}", req.method(), req.uri());
    }
    seen
}

fn launcher(no_operator: bool) -> (KubernetesLauncher, Handle) {
    let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (
        KubernetesLauncher {
            client: Client::new(svc, "hpc"),
            namespace: "hpc".into(),
            no_operator,
            build: BuildOptions::default(),
            poll: Duration::from_millis(10),
        },
        handle,
    )
}

fn mc() -> MiniCluster {
    serde_norway::from_str(
        "apiVersion: flux-framework.org/v1alpha2\nkind: MiniCluster\nmetadata: {name: mc}\nspec:\n  size: 2\n  containers:\n    - {image: ghcr.io/flux-framework/flux-restful:latest, command: hostname}\n",
    )
    .unwrap()
}

fn pod(phase: &str, exit: Option<i32>) -> Value {
    let mut status = json!({"phase": phase});
    if let Some(code) = exit {
        status["containerStatuses"] = json!([{"name": "sidecar", "image": "y", "imageID": "", "ready": true,
            "restartCount": 0, "state": {"running": {}}}, {"name": "mc", "image": "x", "imageID": "", "ready": false,
            "restartCount": 0, "state": {"terminated": {"exitCode": code}}}]);
    }
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "mc-0-abcde", "namespace": "hpc",
            "annotations": {"kubectl.kubernetes.io/default-container": "mc",
                "batch.kubernetes.io/job-completion-index": "0"}},
        // A sidecar first: the Flux container is found by the operator's mark, not by place.
        "spec": {"containers": [{"name": "sidecar", "image": "y"}, {"name": "mc", "image": "x"}]},
        "status": status})
}

#[tokio::test]
async fn run_applies_the_minicluster_follows_rank0_and_deletes_it() {
    let (l, handle) = launcher(false);
    let mc_path = "/apis/flux-framework.org/v1alpha2/namespaces/hpc/miniclusters/mc";
    let verifier = tokio::spawn(verify(
        handle,
        vec![
            call(Method::PATCH, mc_path, None),
            call(
                Method::GET,
                "/api/v1/namespaces/hpc/pods",
                Some(json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": []})),
            ),
            // No pods yet: has the operator refused it, or is there none?
            call(
                Method::GET,
                mc_path,
                Some(serde_json::to_value(mc()).unwrap()),
            ),
            call(
                Method::GET,
                "/api/v1/namespaces/hpc/pods",
                Some(
                    json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": [pod("Running", None)]}),
                ),
            ),
            Call {
                method: Method::GET,
                path: "/api/v1/namespaces/hpc/pods/mc-0-abcde/log".into(),
                reply: Some(b"mc-0\nmc-1\n".to_vec()),
            },
            call(
                Method::GET,
                "/api/v1/namespaces/hpc/pods/mc-0-abcde",
                Some(pod("Failed", Some(3))),
            ),
            call(
                Method::DELETE,
                mc_path,
                Some(serde_json::to_value(mc()).unwrap()),
            ),
            // Down waits for the pods to go.
            call(
                Method::GET,
                "/api/v1/namespaces/hpc/pods",
                Some(json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": []})),
            ),
        ],
    ));
    l.launch(&mc()).await.unwrap();
    let code = l
        .follow_rank0("mc", Duration::from_secs(5), &|_| {})
        .await
        .unwrap();
    l.down("mc", Duration::from_secs(5)).await.unwrap();
    let seen = verifier.await.unwrap();
    assert_eq!(code, 3);
    assert!(
        seen[0].0.contains("fieldManager=minicluster-cli") && seen[0].0.contains("force=true"),
        "{}",
        seen[0].0
    );
    assert_eq!(seen[0].1["kind"], "MiniCluster");
    assert_eq!(seen[0].1["metadata"]["namespace"], "hpc");
    // Pods by the MiniCluster's selector; rank 0 by its index, which servers before 1.28
    // set only as an annotation (so it cannot be in the selector).
    assert!(
        seen[1].0.contains("app.kubernetes.io%2Finstance%3Dmc")
            && !seen[1].0.contains("job-completion-index"),
        "{}",
        seen[1].0
    );
    assert!(
        seen[4].0.contains("follow=true") && seen[4].0.contains("container=mc"),
        "{}",
        seen[4].0
    );
    // Deleted in the foreground: the call returns once its children are marked.
    assert_eq!(
        seen[6].1["propagationPolicy"], "Foreground",
        "{:?}",
        seen[6]
    );
}

#[tokio::test]
async fn without_an_operator_the_job_is_applied_first_and_owns_the_rest() {
    let (l, handle) = launcher(true);
    let job_reply = json!({"apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "mc", "namespace": "hpc", "uid": "job-uid"}});
    let verifier = tokio::spawn(verify(
        handle,
        vec![
            // The Job is built for what this server can do.
            call(
                Method::GET,
                "/version",
                Some(
                    json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0", "gitCommit": "",
                    "gitTreeState": "", "buildDate": "", "goVersion": "", "compiler": "", "platform": ""}),
                ),
            ),
            call(
                Method::PATCH,
                "/apis/batch/v1/namespaces/hpc/jobs/mc",
                Some(job_reply),
            ),
            call(
                Method::PATCH,
                "/api/v1/namespaces/hpc/secrets/mc-curve-cert",
                None,
            ),
            call(
                Method::PATCH,
                "/api/v1/namespaces/hpc/configmaps/mc-description",
                None,
            ),
            call(
                Method::PATCH,
                "/api/v1/namespaces/hpc/services/flux-service",
                None,
            ),
            // The Service may be shared: the Job is added to its owners by a merge.
            call(
                Method::PATCH,
                "/api/v1/namespaces/hpc/services/flux-service",
                None,
            ),
        ],
    ));
    l.launch(&mc()).await.unwrap();
    let seen = verifier.await.unwrap();
    assert!(
        seen[1..]
            .iter()
            .all(|(uri, _)| uri.contains("fieldManager=minicluster-cli"))
    );
    assert_eq!(
        seen[1].1["spec"]["successPolicy"]["rules"][0]["succeededIndexes"],
        "0"
    );
    assert_eq!(seen[1].1["spec"]["completionMode"], "Indexed");
    assert_eq!(seen[1].1["spec"]["parallelism"], 2);
    for owned in [&seen[2].1, &seen[3].1] {
        assert_eq!(
            owned["metadata"]["ownerReferences"][0]["uid"], "job-uid",
            "{owned}"
        );
        assert_eq!(
            owned["metadata"]["ownerReferences"][0]["kind"], "Job",
            "{owned}"
        );
    }
    assert!(
        seen[4].1["metadata"].get("ownerReferences").is_none(),
        "{}",
        seen[4].1
    );
    assert!(
        !seen[5].0.contains("force"),
        "a merge, not an apply: {}",
        seen[5].0
    );
    assert_eq!(
        seen[5].1["metadata"]["ownerReferences"][0]["uid"],
        "job-uid"
    );
}

#[tokio::test]
async fn an_image_that_cannot_be_pulled_ends_the_wait_with_the_reason() {
    let (l, handle) = launcher(false);
    let stuck = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "mc-1-abcde", "namespace": "hpc",
            "annotations": {"batch.kubernetes.io/job-completion-index": "1"}},
        "spec": {"containers": [{"name": "mc", "image": "x"}]},
        "status": {"phase": "Pending", "initContainerStatuses": [{"name": "minicluster-entrypoint",
            "image": "ghcr.io/minicluster/runner:latest", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}}}]}});
    let verifier = tokio::spawn(verify(
        handle,
        vec![call(
            Method::GET,
            "/api/v1/namespaces/hpc/pods",
            Some(json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": [stuck]})),
        )],
    ));
    let e = l
        .follow_rank0("mc", Duration::from_secs(60), &|_| {})
        .await
        .unwrap_err()
        .to_string();
    verifier.await.unwrap();
    assert!(e.contains("ImagePullBackOff"), "{e}");
    assert!(e.contains("ghcr.io/minicluster/runner:latest"), "{e}");
    assert!(e.contains("--runner-image"), "{e}");
}
