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
        ],
    ));
    l.launch(&mc()).await.unwrap();
    let code = l.follow_rank0("mc", Duration::from_secs(5)).await.unwrap();
    l.down("mc").await.unwrap();
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
        seen[3].0.contains("follow=true") && seen[3].0.contains("container=mc"),
        "{}",
        seen[3].0
    );
}

#[tokio::test]
async fn without_an_operator_the_objects_are_applied_directly() {
    let (l, handle) = launcher(true);
    let verifier = tokio::spawn(verify(
        handle,
        vec![
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
            call(Method::PATCH, "/apis/batch/v1/namespaces/hpc/jobs/mc", None),
        ],
    ));
    l.launch(&mc()).await.unwrap();
    let seen = verifier.await.unwrap();
    assert!(
        seen.iter()
            .all(|(uri, _)| uri.contains("fieldManager=minicluster-cli"))
    );
    assert_eq!(seen[3].1["spec"]["completionMode"], "Indexed");
    assert_eq!(seen[3].1["spec"]["parallelism"], 2);
}
