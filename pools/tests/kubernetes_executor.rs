//! The kubernetes executor under the real dispatcher and a SQLite store, against a mock API
//! server: every call, in order (method, path, and the query and body fields that matter),
//! with the job's outcome and its launch's timeline.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use http::{Method, Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use minicluster_operator::build::BuildOptions;
use minicluster_pools::dispatch::kubernetes::KubernetesExecutor;
use minicluster_pools::dispatch::process::ProcessExecutor;
use minicluster_pools::dispatch::{Dispatcher, Executor, Executors, Options, Shared, Wake, with};
use minicluster_pools::queue::QueueConfig;
use minicluster_pools::store::{Job, JobState, LaunchState, NewJob, SqliteStore, Store};
use minicluster_pools::{LauncherType, Pool};
use serde_json::{Value, json};

type Mock = tower_test::mock::Mock<Request<Body>, Response<Body>>;
type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

const NS: &str = "hpc";
const MC: &str = "/apis/flux-framework.org/v1alpha2/namespaces/hpc/miniclusters/gpu-j1";
const PODS: &str = "/api/v1/namespaces/hpc/pods";
const LOG: &str = "/api/v1/namespaces/hpc/pods/gpu-j1-0-abcde/log";
const ALL_MCS: &str = "/apis/flux-framework.org/v1alpha2/miniclusters";
const ALL_JOBS: &str = "/apis/batch/v1/jobs";

enum Reply {
    /// The request body (what an apply returns, near enough).
    Echo,
    Json(Value),
    Text(&'static str),
    Status(u16, &'static str),
}

/// One expected call, the answer, and what happens just before the answer goes out.
struct Call {
    method: Method,
    path: String,
    reply: Reply,
    before: Option<Box<dyn FnOnce() + Send>>,
}

fn call(method: Method, path: &str, reply: Reply) -> Call {
    Call {
        method,
        path: path.into(),
        reply,
        before: None,
    }
}

fn get(path: &str, reply: Reply) -> Call {
    call(Method::GET, path, reply)
}

fn deleted(path: &str) -> Call {
    call(
        Method::DELETE,
        path,
        Reply::Json(
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}),
        ),
    )
}

fn not_found() -> Reply {
    Reply::Status(404, "NotFound")
}

#[derive(Debug)]
struct Seen {
    uri: String,
    body: Value,
}

async fn verify(mut handle: Handle, calls: Vec<Call>) -> (Vec<Seen>, Handle) {
    let mut seen = Vec::new();
    for (i, c) in calls.into_iter().enumerate() {
        let (req, send) = tokio::time::timeout(Duration::from_secs(10), handle.next_request())
            .await
            .unwrap_or_else(|_| panic!("call {i} ({} {}) never came", c.method, c.path))
            .expect("the client went away");
        let uri = req.uri().to_string();
        assert_eq!(
            (req.method(), req.uri().path()),
            (&c.method, c.path.as_str()),
            "call {i}: {uri}"
        );
        let bytes = req.into_body().collect_bytes().await.unwrap();
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if let Some(f) = c.before {
            f();
        }
        let (status, out) = match c.reply {
            Reply::Echo => (StatusCode::OK, bytes.to_vec()),
            Reply::Json(v) => (StatusCode::OK, serde_json::to_vec(&v).unwrap()),
            Reply::Text(t) => (StatusCode::OK, t.as_bytes().to_vec()),
            Reply::Status(code, reason) => (
                StatusCode::from_u16(code).unwrap(),
                serde_json::to_vec(
                    &json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                    "status": "Failure", "reason": reason, "code": code, "message": reason}),
                )
                .unwrap(),
            ),
        };
        send.send_response(
            Response::builder()
                .status(status)
                .body(Body::from(out))
                .unwrap(),
        );
        seen.push(Seen { uri, body });
    }
    if let Ok(Some((req, _))) =
        tokio::time::timeout(Duration::from_millis(300), handle.next_request()).await
    {
        panic!("unexpected call: {} {}", req.method(), req.uri());
    }
    (seen, handle)
}

/// A store with a kubernetes pool `gpu` and the queue `default`, and the executor on a mock
/// API server.
struct Rig {
    dir: tempfile::TempDir,
    logs: PathBuf,
    store: Shared,
    exec: Arc<KubernetesExecutor>,
    stop: Arc<AtomicBool>,
    wake: Arc<Wake>,
    dispatcher: Option<JoinHandle<()>>,
}

impl Rig {
    fn new(sets: &[(&str, &str)]) -> (Rig, Handle) {
        let dir = tempfile::tempdir().unwrap();
        let mut s = SqliteStore::open(&dir.path().join("mc.db")).unwrap();
        let mut pool = Pool::new("gpu", LauncherType::Kubernetes);
        pool.set.insert("namespace".into(), NS.into());
        pool.set.insert("size".into(), "2".into());
        for (k, v) in sets {
            pool.set.insert((*k).into(), (*v).into());
        }
        minicluster_pools::pool::validate(&pool).unwrap();
        s.create_pool(&pool).unwrap();
        s.create_queue(&QueueConfig::new("default")).unwrap();
        let (mock, handle): (Mock, Handle) = tower_test::mock::pair();
        let logs = dir.path().join("logs");
        let exec = Arc::new(KubernetesExecutor {
            connect: Arc::new(move || Ok(Client::new(mock.clone(), "default"))),
            namespace: "default".into(),
            build: BuildOptions::default(),
            logs: logs.clone(),
            poll: Duration::from_millis(10),
            patience: Duration::from_secs(5),
        });
        let store: Shared = Arc::new(Mutex::new(Box::new(s)));
        (
            Rig {
                dir,
                logs,
                store,
                exec,
                stop: Arc::new(AtomicBool::new(false)),
                wake: Arc::new(Wake::default()),
                dispatcher: None,
            },
            handle,
        )
    }

    fn submit(&self) -> u64 {
        with(&self.store, |s| {
            s.submit(&NewJob {
                queue: "default".into(),
                user: "alice".into(),
                command: vec!["hostname".into()],
                ..NewJob::default()
            })
        })
        .unwrap()
    }

    /// What an earlier control plane did before it was killed: claimed the job and applied
    /// its MiniCluster.
    fn claimed_and_started(&self) -> u64 {
        let id = self.submit();
        with(&self.store, |s| {
            let c = s.claim("default")?.expect("the job is claimed");
            s.launch_event(c.launch.id, LaunchState::Started, Some("2 brokers"))
        })
        .unwrap();
        id
    }

    fn start(&mut self) {
        self.stop.store(false, Ordering::SeqCst);
        let d = Dispatcher {
            store: Arc::clone(&self.store),
            executors: Arc::new(Executors {
                process: Arc::new(ProcessExecutor {
                    root: self.dir.path().join("launches"),
                    entrypoint: "/nonexistent/entrypoint".into(),
                    flux: None,
                    logs: self.logs.clone(),
                    poll: Duration::from_millis(10),
                    warm: Default::default(),
                }),
                docker: Err("no docker here".into()),
                kubernetes: Ok(Arc::clone(&self.exec) as Arc<dyn Executor>),
            }),
            wake: Arc::clone(&self.wake),
            stop: Arc::clone(&self.stop),
            options: Options {
                tick: Duration::from_millis(20),
            },
        };
        self.dispatcher = Some(std::thread::spawn(move || d.run().unwrap()));
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.wake.notify();
        if let Some(d) = self.dispatcher.take() {
            d.join().unwrap();
        }
    }

    fn job(&self, id: u64) -> Job {
        with(&self.store, |s| s.job(id)).unwrap()
    }

    /// The job once it has ended (the dispatcher records it before cleaning up, so it has
    /// when the last call has been answered; this waits a little all the same).
    fn ended(&self, id: u64) -> Job {
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            let j = self.job(id);
            if !matches!(j.state, JobState::Waiting | JobState::Claimed) {
                return j;
            }
            assert!(Instant::now() < until, "job {id} did not end: {j:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The launch's timeline: (state, detail).
    fn timeline(&self) -> Vec<(LaunchState, String)> {
        let launches = with(&self.store, |s| s.launches(Some("gpu"), 10)).unwrap();
        launches[0]
            .events
            .iter()
            .map(|e| (e.state, e.detail.clone().unwrap_or_default()))
            .collect()
    }

    fn cancel(&self, id: u64) -> impl FnOnce() + Send + 'static {
        let store = Arc::clone(&self.store);
        move || {
            with(&store, |s| s.cancel(id)).unwrap();
        }
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.stop();
    }
}

fn sweep_finds_nothing() -> Vec<Call> {
    vec![
        get(
            ALL_MCS,
            Reply::Json(
                json!({"apiVersion": "flux-framework.org/v1alpha2", "kind": "MiniClusterList", "metadata": {}, "items": []}),
            ),
        ),
        get(
            ALL_JOBS,
            Reply::Json(
                json!({"apiVersion": "batch/v1", "kind": "JobList", "metadata": {}, "items": []}),
            ),
        ),
    ]
}

fn minicluster(name: &str, ns: &str, status: Value) -> Value {
    json!({"apiVersion": "flux-framework.org/v1alpha2", "kind": "MiniCluster",
        "metadata": {"name": name, "namespace": ns,
            "labels": {"flux-framework.org/pool": "gpu", "flux-framework.org/job": name.rsplit_once("-j").map_or("x", |(_, j)| j)}},
        "spec": {"size": 2, "containers": [{"image": "img"}]},
        "status": status})
}

fn mc_now(status: Value) -> Reply {
    Reply::Json(minicluster("gpu-j1", NS, status))
}

fn pod(index: &str, status: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("gpu-j1-{index}-abcde"), "namespace": NS,
            // As Kubernetes 1.26 makes them: the index as an annotation only.
            "labels": {"app.kubernetes.io/instance": "gpu-j1", "app.kubernetes.io/component": "broker"},
            "annotations": {"kubectl.kubernetes.io/default-container": "gpu-j1",
                "batch.kubernetes.io/job-completion-index": index}},
        // A sidecar first: the Flux container is found by the operator's mark, not by place.
        "spec": {"containers": [{"name": "sidecar"}, {"name": "gpu-j1"}]},
        "status": status})
}

fn pods(items: Vec<Value>) -> Reply {
    Reply::Json(json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items}))
}

fn running() -> Value {
    json!({"phase": "Running"})
}

fn terminated(code: i32, reason: &str) -> Value {
    json!({"phase": if code == 0 { "Succeeded" } else { "Failed" }, "containerStatuses": [
        {"name": "sidecar", "image": "y", "imageID": "", "ready": true, "restartCount": 0, "state": {"running": {}}},
        {"name": "gpu-j1", "image": "img", "imageID": "", "ready": false, "restartCount": 0,
         "state": {"terminated": {"exitCode": code, "reason": reason}}}]})
}

fn states(t: &[(LaunchState, String)]) -> Vec<LaunchState> {
    t.iter().map(|(s, _)| *s).collect()
}

#[tokio::test]
async fn a_new_job_is_applied_followed_to_rank0s_end_and_deleted() {
    let (mut rig, handle) = Rig::new(&[
        ("nodeSelector", r#"{"disktype": "ssd"}"#),
        ("activeDeadlineSeconds", "600"),
        ("labels", r#"{"team": "a"}"#),
    ]);
    let id = rig.submit();
    rig.start();
    let mut calls = sweep_finds_nothing();
    calls.extend([
        get(MC, not_found()),
        call(Method::PATCH, MC, Reply::Echo),
        get(MC, mc_now(json!({}))),
        get(PODS, pods(vec![pod("0", json!({"phase": "Pending"}))])),
        get(MC, mc_now(json!({}))),
        get(PODS, pods(vec![pod("0", running()), pod("1", running())])),
        get(MC, mc_now(json!({}))),
        get(
            PODS,
            pods(vec![
                pod("0", terminated(0, "Completed")),
                pod("1", running()),
            ]),
        ),
        get(PODS, pods(vec![pod("0", terminated(0, "Completed"))])),
        get(LOG, Reply::Text("gpu-j1-0\ngpu-j1-1\n")),
        deleted(MC),
    ]);
    let (seen, _handle) = verify(handle, calls).await;
    let job = rig.ended(id);
    assert_eq!(
        (job.state, job.exit_code),
        (JobState::Done, Some(0)),
        "{job:?}"
    );

    assert!(
        seen[0]
            .uri
            .contains("labelSelector=flux-framework.org%2Fpool"),
        "{}",
        seen[0].uri
    );
    let apply = &seen[3];
    assert!(
        apply.uri.contains("fieldManager=minicluster-cli") && apply.uri.contains("force=true"),
        "{}",
        apply.uri
    );
    let (meta, spec) = (&apply.body["metadata"], &apply.body["spec"]);
    assert_eq!(apply.body["kind"], "MiniCluster");
    assert_eq!(meta["namespace"], NS);
    assert_eq!(meta["labels"]["flux-framework.org/pool"], "gpu");
    assert_eq!(meta["labels"]["flux-framework.org/job"], id.to_string());
    assert_eq!(meta["labels"]["team"], "a");
    assert_eq!(spec["jobLabels"], meta["labels"]);
    assert_eq!(spec["size"], 2);
    assert_eq!(spec["deadlineSeconds"], 600);
    assert_eq!(spec["backoffLimit"], 0);
    assert_eq!(spec["pod"]["restartPolicy"], "Never");
    assert_eq!(spec["pod"]["nodeSelector"]["disktype"], "ssd");
    assert_eq!(spec["network"]["headlessName"], "gpu-j1");
    assert_eq!(spec["containers"][0]["command"], "hostname");
    assert!(spec.get("cleanup").is_none(), "{spec}");
    assert!(
        seen[5]
            .uri
            .contains("app.kubernetes.io%2Finstance%3Dgpu-j1"),
        "{}",
        seen[5].uri
    );
    assert!(
        seen[10]
            .uri
            .contains("app.kubernetes.io%2Finstance%3Dgpu-j1")
            && !seen[10].uri.contains("job-completion-index"),
        "{}",
        seen[10].uri
    );
    let log = &seen[11].uri;
    assert!(
        log.contains("container=gpu-j1")
            && log.contains("limitBytes=1048576")
            && !log.contains("follow"),
        "{log}"
    );
    assert_eq!(seen[12].body["propagationPolicy"], "Background");

    let t = rig.timeline();
    assert_eq!(
        states(&t),
        [
            LaunchState::Requested,
            LaunchState::Starting,
            LaunchState::Started,
            LaunchState::Connected,
            LaunchState::Stopped
        ],
        "{t:?}"
    );
    assert_eq!(
        t[2].1,
        "2 brokers in namespace hpc, a MiniCluster for the operator"
    );
    assert_eq!(t[3].1, "2/2 broker pods running");
    assert_eq!(
        std::fs::read_to_string(rig.logs.join(format!("job-{id}.log"))).unwrap(),
        "gpu-j1-0\ngpu-j1-1\n"
    );
    let pool = Pool::new("gpu", LauncherType::Kubernetes);
    assert_eq!(
        rig.exec.log(&pool, id, "gpu-j1", 9).as_deref(),
        Some(&b"gpu-j1-1\n"[..]),
        "the kept log, from the offset, without asking the API server"
    );
    rig.stop();
}

#[tokio::test]
async fn rank0_oom_killed_fails_the_job_and_without_an_operator_every_object_goes() {
    let (mut rig, handle) = Rig::new(&[("noOperator", "true")]);
    let id = rig.submit();
    rig.start();
    let job_path = "/apis/batch/v1/namespaces/hpc/jobs/gpu-j1";
    let mut calls = sweep_finds_nothing();
    calls.extend([
        get(job_path, not_found()),
        // The Job is built for what this server can do.
        get("/version", Reply::Json(json!({"major": "1", "minor": "26", "gitVersion": "v1.26.5",
            "gitCommit": "", "gitTreeState": "", "buildDate": "", "goVersion": "", "compiler": "", "platform": ""}))),
        // The Job first, then what it owns; the Service, which may be shared, gains it as
        // an owner by a merge.
        call(
            Method::PATCH,
            job_path,
            Reply::Json(json!({"apiVersion": "batch/v1", "kind": "Job",
                "metadata": {"name": "gpu-j1", "namespace": NS, "uid": "job-uid"}})),
        ),
        call(Method::PATCH, "/api/v1/namespaces/hpc/secrets/gpu-j1-curve-cert", Reply::Echo),
        call(Method::PATCH, "/api/v1/namespaces/hpc/configmaps/gpu-j1-description", Reply::Echo),
        call(Method::PATCH, "/api/v1/namespaces/hpc/services/gpu-j1", Reply::Echo),
        call(Method::PATCH, "/api/v1/namespaces/hpc/services/gpu-j1", Reply::Echo),
        get(
            job_path,
            Reply::Json(json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "gpu-j1", "namespace": NS},
                "spec": {"parallelism": 2, "template": {}}})),
        ),
        get(
            PODS,
            pods(vec![pod("0", terminated(137, "OOMKilled")), pod("1", running())]),
        ),
        get(PODS, pods(vec![pod("0", terminated(137, "OOMKilled"))])),
        get(LOG, Reply::Text("allocating\n")),
        deleted(job_path),
        deleted("/api/v1/namespaces/hpc/configmaps/gpu-j1-description"),
        deleted("/api/v1/namespaces/hpc/secrets/gpu-j1-curve-cert"),
        deleted("/api/v1/namespaces/hpc/services/gpu-j1"),
    ]);
    let (seen, _handle) = verify(handle, calls).await;
    let job = rig.ended(id);
    assert_eq!(
        (job.state, job.exit_code, job.reason.as_deref()),
        (
            JobState::Failed,
            Some(137),
            Some("OOM killed: rank 0 (exit code 137)")
        )
    );
    let applied_job = &seen[4].body;
    assert_eq!(applied_job["spec"]["completionMode"], "Indexed");
    assert_eq!(applied_job["spec"]["backoffLimit"], 0);
    assert_eq!(
        applied_job["spec"]["template"]["spec"]["restartPolicy"],
        "Never"
    );
    // Kubernetes 1.26: rank 0 decides through the pod failure policy; no success policy.
    assert_eq!(
        applied_job["spec"]["podFailurePolicy"]["rules"][1]["action"],
        "FailJob"
    );
    assert!(applied_job["spec"].get("successPolicy").is_none());
    assert_eq!(
        applied_job["spec"]["template"]["spec"]["subdomain"],
        "gpu-j1"
    );
    assert_eq!(
        applied_job["metadata"]["labels"]["flux-framework.org/pool"],
        "gpu"
    );
    assert!(
        seen[4..9]
            .iter()
            .all(|s| s.uri.contains("fieldManager=minicluster-cli"))
    );
    for owned in [&seen[5].body, &seen[6].body] {
        assert_eq!(
            owned["metadata"]["ownerReferences"][0]["uid"], "job-uid",
            "{owned}"
        );
    }
    assert_eq!(
        seen[8].body["metadata"]["ownerReferences"][0]["uid"],
        "job-uid"
    );
    let t = rig.timeline();
    assert_eq!(
        t[2].1,
        "2 brokers in namespace hpc, its objects applied directly"
    );
    assert_eq!(
        std::fs::read_to_string(rig.logs.join(format!("job-{id}.log"))).unwrap(),
        "allocating\n"
    );
    rig.stop();
}

#[tokio::test]
async fn an_image_that_cannot_be_pulled_fails_the_job_with_that_reason() {
    let (mut rig, handle) = Rig::new(&[]);
    let id = rig.submit();
    rig.start();
    let pulling = json!({"phase": "Pending", "initContainerStatuses": [
        {"name": "flux-view", "image": "ghcr.io/nope/view:x", "imageID": "", "ready": false, "restartCount": 0,
         "state": {"waiting": {"reason": "ErrImagePull", "message": "pull access denied"}}}]});
    let mut calls = sweep_finds_nothing();
    calls.extend([
        get(MC, not_found()),
        call(Method::PATCH, MC, Reply::Echo),
        get(MC, mc_now(json!({}))),
        get(
            PODS,
            pods(vec![
                pod("0", pulling.clone()),
                pod("1", json!({"phase": "Pending"})),
            ]),
        ),
        get(PODS, pods(vec![pod("0", pulling)])),
        get(LOG, Reply::Status(400, "BadRequest")),
        deleted(MC),
    ]);
    verify(handle, calls).await;
    let job = rig.ended(id);
    assert_eq!(
        (job.state, job.exit_code, job.reason.as_deref()),
        (
            JobState::Failed,
            None,
            Some(
                "image pull: ErrImagePull of container flux-view (ghcr.io/nope/view:x): pull access denied"
            )
        )
    );
    assert_eq!(states(&rig.timeline()).last(), Some(&LaunchState::Failed));
    assert!(
        !rig.logs.join(format!("job-{id}.log")).exists(),
        "no log to keep: none is written"
    );
    rig.stop();
}

#[tokio::test]
async fn a_restarted_control_plane_re_attaches_without_applying_again() {
    let (mut rig, handle) = Rig::new(&[]);
    let id = rig.claimed_and_started();
    rig.start();
    let ready = json!({"conditions": [{"type": "BrokersReady", "status": "True", "reason": "AllRunning",
        "message": "2/2 brokers running", "lastTransitionTime": "2025-01-01T00:00:00Z"}]});
    let mut calls = sweep_finds_nothing();
    calls.extend([
        get(MC, mc_now(ready.clone())),
        get(PODS, pods(vec![pod("0", running()), pod("1", running())])),
        get(MC, mc_now(ready)),
        get(
            PODS,
            pods(vec![pod("0", terminated(3, "Error")), pod("1", running())]),
        ),
        get(PODS, pods(vec![pod("0", terminated(3, "Error"))])),
        get(LOG, Reply::Text("oops\n")),
        deleted(MC),
    ]);
    verify(handle, calls).await;
    let job = rig.ended(id);
    assert_eq!(
        (job.state, job.exit_code, job.reason.as_deref()),
        (JobState::Failed, Some(3), Some("exit code 3"))
    );
    let t = rig.timeline();
    assert_eq!(
        t[2..],
        [
            (
                LaunchState::Started,
                "re-attached after a control plane restart".into()
            ),
            (LaunchState::Connected, "2/2 brokers running".into()),
            (LaunchState::Stopped, "exit code 3".into()),
        ],
        "{t:?}"
    );
    rig.stop();
}

#[tokio::test]
async fn a_started_launch_whose_minicluster_is_gone_is_never_applied_again() {
    let (mut rig, handle) = Rig::new(&[]);
    let id = rig.claimed_and_started();
    rig.start();
    let mut calls = sweep_finds_nothing();
    calls.extend([
        get(MC, not_found()),
        get(PODS, pods(vec![])),
        call(Method::DELETE, MC, not_found()),
    ]);
    verify(handle, calls).await;
    let job = rig.ended(id);
    assert_eq!(job.state, JobState::Failed);
    assert!(
        job.reason
            .as_deref()
            .unwrap()
            .contains("deleted before its work ended (not launched again"),
        "{job:?}"
    );
    rig.stop();
}

#[tokio::test]
async fn cancel_deletes_the_minicluster_in_the_foreground() {
    let (mut rig, handle) = Rig::new(&[]);
    let id = rig.submit();
    rig.start();
    let mut calls = sweep_finds_nothing();
    calls.extend([
        get(MC, not_found()),
        call(Method::PATCH, MC, Reply::Echo),
        get(MC, mc_now(json!({}))),
        Call {
            before: Some(Box::new(rig.cancel(id))),
            ..get(PODS, pods(vec![pod("0", running()), pod("1", running())]))
        },
        deleted(MC),
        get(PODS, pods(vec![pod("0", running())])),
        get(LOG, Reply::Text("partial\n")),
        call(Method::DELETE, MC, not_found()),
    ]);
    let (seen, _handle) = verify(handle, calls).await;
    let job = rig.ended(id);
    assert_eq!(
        (job.state, job.reason.as_deref()),
        (JobState::Cancelled, Some("cancelled while running"))
    );
    assert_eq!(seen[6].body["propagationPolicy"], "Foreground");
    let t = rig.timeline();
    assert!(
        t.contains(&(LaunchState::Stopping, "cancel requested".into())),
        "{t:?}"
    );
    assert_eq!(
        std::fs::read_to_string(rig.logs.join(format!("job-{id}.log"))).unwrap(),
        "partial\n"
    );
    rig.stop();
}

#[tokio::test]
async fn shutting_down_leaves_the_minicluster_running_and_the_next_start_re_attaches() {
    let (mut rig, handle) = Rig::new(&[]);
    let id = rig.submit();
    rig.start();
    let stop = Arc::clone(&rig.stop);
    let mut calls = sweep_finds_nothing();
    calls.extend([
        get(MC, not_found()),
        call(Method::PATCH, MC, Reply::Echo),
        get(MC, mc_now(json!({}))),
        Call {
            before: Some(Box::new(move || stop.store(true, Ordering::SeqCst))),
            ..get(PODS, pods(vec![pod("0", running())]))
        },
    ]);
    let (_, handle) = verify(handle, calls).await;
    rig.stop();
    assert_eq!(
        rig.job(id).state,
        JobState::Claimed,
        "left running, still claimed"
    );

    rig.start();
    let mut calls = sweep_finds_nothing();
    calls.extend([
        get(MC, mc_now(json!({}))),
        get(PODS, pods(vec![pod("0", terminated(0, "Completed"))])),
        get(PODS, pods(vec![pod("0", terminated(0, "Completed"))])),
        get(LOG, Reply::Text("done\n")),
        deleted(MC),
    ]);
    verify(handle, calls).await;
    let job = rig.ended(id);
    assert_eq!((job.state, job.exit_code), (JobState::Done, Some(0)));
    let t = rig.timeline();
    assert_eq!(
        states(&t),
        [
            LaunchState::Requested,
            LaunchState::Starting,
            LaunchState::Started,
            LaunchState::Started,
            LaunchState::Stopped
        ],
        "{t:?}"
    );
    assert_eq!(t[3].1, "re-attached after a control plane restart");
    rig.stop();
}

#[tokio::test]
async fn the_sweep_removes_only_finished_launches_of_ours() {
    let (mut rig, handle) = Rig::new(&[]);
    let id = rig.claimed_and_started();
    // Ours and active, ours and finished, a name that is not a launch's; a Job left without an
    // operator (another pool's) and a Job its MiniCluster owns.
    let mut stranger = minicluster("tuned", NS, json!({}));
    stranger["metadata"]["labels"]["flux-framework.org/job"] = json!("3");
    let leftover_job = json!({"apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "cpu-j8", "namespace": "batch",
            "labels": {"flux-framework.org/pool": "cpu", "flux-framework.org/job": "8"}},
        "spec": {"template": {}}});
    let owned_job = json!({"apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "gpu-j9", "namespace": NS,
            "labels": {"flux-framework.org/pool": "gpu", "flux-framework.org/job": "9"},
            "ownerReferences": [{"apiVersion": "flux-framework.org/v1alpha2", "kind": "MiniCluster",
                "name": "gpu-j9", "uid": "u"}]},
        "spec": {"template": {}}});
    rig.start();
    let calls = vec![
        get(
            ALL_MCS,
            Reply::Json(
                json!({"apiVersion": "flux-framework.org/v1alpha2", "kind": "MiniClusterList", "metadata": {},
                "items": [minicluster("gpu-j1", NS, json!({})), minicluster("gpu-j9", NS, json!({})), stranger]}),
            ),
        ),
        get(
            ALL_JOBS,
            Reply::Json(
                json!({"apiVersion": "batch/v1", "kind": "JobList", "metadata": {},
                "items": [leftover_job, owned_job]}),
            ),
        ),
        deleted("/apis/flux-framework.org/v1alpha2/namespaces/hpc/miniclusters/gpu-j9"),
        deleted("/apis/batch/v1/namespaces/batch/jobs/cpu-j8"),
        deleted("/api/v1/namespaces/batch/configmaps/cpu-j8-description"),
        deleted("/api/v1/namespaces/batch/secrets/cpu-j8-curve-cert"),
        call(
            Method::DELETE,
            "/api/v1/namespaces/batch/services/cpu-j8",
            not_found(),
        ),
        // Then the active job, re-attached.
        get(MC, mc_now(json!({}))),
        get(PODS, pods(vec![pod("0", terminated(0, "Completed"))])),
        get(PODS, pods(vec![])),
        deleted(MC),
    ];
    verify(handle, calls).await;
    assert_eq!(rig.ended(id).state, JobState::Done);
    rig.stop();
}
