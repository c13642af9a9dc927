//! Against a real Flux broker (`flux` on PATH or `$FLUX_BIN`). These tests are ignored unless
//! asked for (`tests/run` runs them when flux is found) and fail when there is no flux; the
//! recorded-conversation tests (replay.rs) cover the protocol in every run.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use flux_client::{
    Client, JobId, JobRequest, JobResult, JobState, ListRequest, OutputEvent, SubmitOptions,
    state_mask,
};
use tokio::process::{Child, Command};

/// A single-broker instance in a temporary directory, stopped on drop.
struct TestBroker {
    child: Child,
    uri: String,
    bin: PathBuf,
    _dir: tempfile::TempDir,
}

impl TestBroker {
    async fn start() -> TestBroker {
        let bin = minicluster_testkit::require::flux();
        let dir = tempfile::tempdir().unwrap();
        let uri = format!("local://{}/local", dir.path().display());
        let child = Command::new(&bin)
            .arg("broker")
            .arg(format!("-Srundir={}/run", dir.path().display()))
            .arg(format!("-Slocal-uri={uri}"))
            .arg("-Sbroker.rc2_none")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start flux broker");
        let broker = TestBroker {
            child,
            uri,
            bin,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(c) = Client::connect(&broker.uri).await
                && c.wait_until_running(Duration::from_secs(30)).await.is_ok()
            {
                return broker;
            }
            assert!(
                Instant::now() < deadline,
                "broker did not come up at {}",
                broker.uri
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn client(&self) -> Client {
        Client::connect(&self.uri).await.unwrap()
    }

    /// Run a `flux` subcommand against this broker and return its stdout.
    async fn cli(&self, args: &[&str]) -> String {
        let out = Command::new(&self.bin)
            .args(args)
            .env("FLUX_URI", &self.uri)
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "flux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

const LONG: Duration = Duration::from_secs(60);

#[tokio::test]
#[ignore = "needs a real flux: FLUX_BIN or flux on PATH (tests/run runs these when found)"]
async fn real_flux_submit_watch_output_wait_and_list() {
    let broker = TestBroker::start().await;
    let flux = broker.client().await;
    assert_eq!(flux.attr_get("size").await.unwrap(), "1");
    assert_eq!(flux.broker_state().await.unwrap().state, "run");

    let job = JobRequest::new(["sh", "-c", "echo hello; echo oops >&2"]).inherit_env();
    let opts = SubmitOptions {
        waitable: true,
        ..Default::default()
    };
    let id = flux.submit(&job, opts).await.unwrap();

    let mut out = flux.job_output(id).unwrap().idle_timeout(LONG);
    let (mut stdout, mut stderr) = (String::new(), String::new());
    while let Some(ev) = out.next_output().await {
        if let OutputEvent::Data { stream, data, .. } = ev.unwrap() {
            if stream == "stdout" {
                stdout.push_str(&data)
            } else {
                stderr.push_str(&data)
            }
        }
    }
    assert_eq!((stdout.as_str(), stderr.as_str()), ("hello\n", "oops\n"));

    let done = flux.job_wait(id, LONG).await.unwrap();
    assert!(done.success, "{done:?}");
    let info = flux
        .job_wait_state(id, state_mask::INACTIVE, &["all"], LONG)
        .await
        .unwrap();
    assert_eq!(info.result, Some(JobResult::Completed));
    assert_eq!(info.exit_code(), Some(0));
    // The watch follows the log to its end; a lookup reads what the KVS has committed so far.
    let watched = flux
        .job_eventlog_watch(id, "eventlog", Default::default())
        .unwrap();
    let names: Vec<String> = watched
        .collect()
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert!(names.iter().any(|n| n == "finish"), "{names:?}");
    assert_eq!(names.last().map(String::as_str), Some("clean"));
    let logged = flux.job_eventlog(id).await.unwrap();
    assert_eq!(logged.first().map(|e| e.name.as_str()), Some("submit"));

    let listed = flux.job_list(&ListRequest::all(0)).await.unwrap();
    assert!(
        listed
            .iter()
            .any(|j| j.id == id && j.state == Some(JobState::Inactive))
    );
    // The CLI agrees on the id and its state.
    let cli = broker.cli(&["jobs", "-a", "-no", "{id.f58} {state}"]).await;
    assert!(cli.contains(&format!("{} INACTIVE", id.f58())), "{cli}");
}

#[tokio::test]
#[ignore = "needs a real flux: FLUX_BIN or flux on PATH (tests/run runs these when found)"]
async fn real_flux_cancel_a_running_job() {
    let broker = TestBroker::start().await;
    let flux = broker.client().await;
    let job = JobRequest::new(["sleep", "300"]).inherit_env();
    let id = flux
        .submit(
            &job,
            SubmitOptions {
                waitable: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let running = flux
        .job_wait_state(id, state_mask::RUNNING, &["state"], LONG)
        .await
        .unwrap();
    assert_eq!(running.state, Some(JobState::Run));
    flux.job_cancel(id, Some("test")).await.unwrap();
    let done = flux.job_wait(id, LONG).await.unwrap();
    assert!(!done.success);
    assert!(done.errstr.unwrap_or_default().contains("cancel"));
    let info = flux.job_list_id(id, &["result"]).await.unwrap();
    assert_eq!(info.result, Some(JobResult::Canceled));
    let err = flux.job_cancel(JobId(1), None).await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
}

#[tokio::test]
#[ignore = "needs a real flux: FLUX_BIN or flux on PATH (tests/run runs these when found)"]
async fn real_flux_job_id_forms_match_flux_job_id() {
    let broker = TestBroker::start().await;
    let flux = broker.client().await;
    let id = flux
        .submit(
            &JobRequest::new(["true"]).inherit_env(),
            SubmitOptions::default(),
        )
        .await
        .unwrap();
    for (form, ours) in [
        ("dec", id.0.to_string()),
        ("hex", id.hex()),
        ("dothex", id.dothex()),
        ("kvs", id.kvs()),
        ("f58", id.f58()),
    ] {
        let theirs = broker
            .cli(&["job", "id", &format!("--to={form}"), &id.0.to_string()])
            .await;
        assert_eq!(theirs.trim(), ours, "{form}");
        assert_eq!(JobId::parse(&theirs).unwrap(), id, "{form}");
    }
}

#[tokio::test]
#[ignore = "needs a real flux: FLUX_BIN or flux on PATH (tests/run runs these when found)"]
async fn real_flux_resources_overlay_and_events() {
    let broker = TestBroker::start().await;
    let flux = broker.client().await;
    assert_eq!(
        flux.resource_status()
            .await
            .unwrap()
            .online_ranks()
            .unwrap(),
        vec![0]
    );
    assert_eq!(flux.overlay_topology(0).await.unwrap().ranks(), vec![0]);
    assert_eq!(flux.overlay_health(0).await.unwrap().status, "full");

    let mut sub = flux.subscribe("minicluster.test").await.unwrap();
    let other = broker.client().await;
    let seq = other
        .event_publish("minicluster.test.one", Some(&serde_json::json!({"n": 1})))
        .await
        .unwrap();
    let ev = sub.next_within(Duration::from_secs(10)).await.unwrap();
    assert_eq!((ev.topic(), ev.seq()), ("minicluster.test.one", seq));
    assert_eq!(ev.payload_str(), Some(r#"{"n":1}"#));
    sub.unsubscribe().await.unwrap();
}
