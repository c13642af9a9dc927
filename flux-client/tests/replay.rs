//! Our client against the recorded conversations of a real flux-core 0.88.0 broker: what we
//! send matches what the real clients sent (byte for byte where the real client was a C tool
//! whose JSON we reproduce), and the recorded answers decode to the right typed values.

mod common;

use std::time::Duration;

use common::{Exchange, Replay, Session, fixtures, sessions};
use flux_client::codec::{decode_message, encode_message};
use flux_client::jobspec::unwrap_none;
use flux_client::{
    Client, Error, JobId, JobRequest, JobResult, JobState, ListRequest, OutputEvent, Request,
    SubmitOptions, WatchFlags,
};

fn read(session: &str, file: &str) -> String {
    std::fs::read_to_string(fixtures().join(session).join(file)).unwrap()
}

const JOB: JobId = JobId(43251662848);

#[test]
fn every_recorded_message_decodes_and_re_encodes_byte_for_byte() {
    let mut count = 0;
    for s in sessions() {
        for m in Session::load(&s).messages() {
            let d = &m.decoded;
            if d["hdr"]["magic_ok"] == false {
                // 12/conn1: the RFC byte order, which the broker refuses; so do we.
                let e = decode_message(&m.bytes).unwrap_err();
                assert!(e.to_string().contains("bad stream magic"), "{e}");
                continue;
            }
            let msg = decode_message(&m.bytes).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(
                encode_message(&msg),
                m.bytes,
                "{s} conn {} #{}",
                m.conn,
                d["n"]
            );
            assert_eq!(msg.topic(), d["topic"].as_str().unwrap_or(""), "{s}");
            assert_eq!(
                msg.wire_flags() as u64,
                d["proto"]["flags"].as_u64().unwrap()
            );
            assert_eq!(msg.userid as u64, d["proto"]["userid"].as_u64().unwrap());
            assert_eq!(
                msg.rolemask as u64,
                d["proto"]["rolemask"].as_u64().unwrap()
            );
            assert_eq!(msg.aux1 as u64, d["proto"]["aux1"].as_u64().unwrap());
            assert_eq!(msg.aux2 as u64, d["proto"]["aux2"].as_u64().unwrap());
            let routes: Vec<String> = msg
                .routes
                .iter()
                .flatten()
                .map(|r| String::from_utf8(r.clone()).unwrap())
                .collect();
            let rec_routes: Vec<String> = d["routes"]
                .as_array()
                .map(|a| a.iter().map(|r| r.as_str().unwrap().to_owned()).collect())
                .unwrap_or_default();
            assert_eq!(routes, rec_routes);
            count += 1;
        }
    }
    assert!(count > 150, "only {count} messages in the fixtures");
}

#[tokio::test]
async fn s01_handshake_accept_reject_and_silent_open() {
    // conn0: accepted, and opening a handle sends nothing.
    let replay = Replay::start("01-handshake", 1, &[]).await;
    let client = replay.client().await;
    drop(client);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(replay.matched().is_empty());

    // conn2: the connector answers 0x01 (EPERM) and closes, as `flux getattr` saw.
    let replay = Replay::start("01-handshake", 2, &[]).await;
    let err = Client::connect(&replay.uri).await.unwrap_err();
    assert!(matches!(err, Error::Rejected { errno: 1 }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "the broker refused the connection: Operation not permitted (EPERM)"
    );
    assert!(read("01-handshake", "cmd2.stderr.txt").contains("Operation not permitted"));
}

#[tokio::test]
async fn s02_attr_getenv_state_machine() {
    let replay = Replay::start("02-rpc-attr-getenv-statemachine", 0, &[]).await;
    assert_eq!(replay.client().await.attr_get("size").await.unwrap(), "1");
    assert!(
        replay.exchange("attr.get").byte_exact(),
        "same bytes as `flux getattr size`"
    );

    let replay = Replay::start("02-rpc-attr-getenv-statemachine", 2, &[]).await;
    let env = replay
        .client()
        .await
        .broker_getenv(&["HOME", "NO_SUCH_VAR"])
        .await
        .unwrap();
    assert_eq!(env.get("HOME").map(String::as_str), Some("/home/flux"));
    assert!(!env.contains_key("NO_SUCH_VAR"));

    let replay = Replay::start("02-rpc-attr-getenv-statemachine", 3, &[]).await;
    let state = replay.client().await.broker_state().await.unwrap();
    assert_eq!(state.state, "run");
    assert!(state.duration > 0.0);

    let replay = Replay::start("02-rpc-attr-getenv-statemachine", 4, &[]).await;
    replay
        .client()
        .await
        .wait_until_running(Duration::from_secs(5))
        .await
        .unwrap();
    assert!(replay.exchange("state-machine.wait").byte_exact());
}

#[tokio::test]
async fn s03_submit_signs_with_none_and_returns_the_id() {
    let replay = Replay::start("03-submit", 0, &["job-ingest.submit"]).await;
    let mut job = JobRequest::new(["hostname"]);
    job.cwd = Some("/tmp".into());
    job.environment.insert("HOME".into(), "/home/flux".into());
    let id = replay
        .client()
        .await
        .submit(&job, SubmitOptions::default())
        .await
        .unwrap();
    assert_eq!(id, JOB);
    assert_eq!(format!("{id}\n"), read("03-submit", "cmd0.stdout.txt"));

    let ex = replay.exchange("job-ingest.submit");
    let ours = Exchange::payload_json(&ex.ours).unwrap();
    let theirs = Exchange::payload_json(&ex.recorded).unwrap();
    assert_eq!(ours["urgency"], theirs["urgency"]);
    assert_eq!(ours["flags"], theirs["flags"]);
    let (uid, spec) = unwrap_none(ours["J"].as_str().unwrap()).unwrap();
    assert_eq!(uid, rustix::process::geteuid().as_raw());
    let (_, their_spec) = unwrap_none(theirs["J"].as_str().unwrap()).unwrap();
    let ours: serde_json::Value = serde_json::from_slice(&spec).unwrap();
    let theirs: serde_json::Value = serde_json::from_slice(&their_spec).unwrap();
    // Same resources, tasks and version as `flux submit hostname`; attributes carry the
    // submitter's environment, which differs by design.
    for key in ["resources", "tasks", "version"] {
        assert_eq!(ours[key], theirs[key], "{key}");
    }
    assert_eq!(
        ours["attributes"]["system"]["cwd"],
        theirs["attributes"]["system"]["cwd"]
    );
    assert_eq!(ours["attributes"]["system"]["duration"], 0);

    // conn2 sent a hand-made J verbatim; so can we, and the J is the recorded one.
    let replay = Replay::start("03-submit", 2, &[]).await;
    let recorded = Session::load("03-submit").exchanges(2).remove(0).0;
    let j = Exchange::payload_json(&recorded).unwrap()["J"]
        .as_str()
        .unwrap()
        .to_owned();
    let id = replay
        .client()
        .await
        .submit_signed(&j, SubmitOptions::default())
        .await
        .unwrap();
    assert_eq!(
        read("03-submit", "cmd2.stdout.txt").trim_end(),
        format!("J={j}\nid={}", id.0)
    );
}

#[tokio::test]
async fn s04_job_list_streams_every_job() {
    let replay = Replay::start("04-list", 2, &[]).await;
    let req = ListRequest {
        max_entries: 3,
        attrs: vec!["state".into(), "result".into(), "name".into()],
        since: None,
        constraint: None,
    };
    let jobs = replay.client().await.job_list(&req).await.unwrap();
    let states: Vec<_> = jobs.iter().map(|j| (j.id.0, j.state, j.result)).collect();
    assert_eq!(
        states,
        vec![
            (130157641728, Some(JobState::Sched), None),
            (119034347520, Some(JobState::Run), None),
            (
                122423345152,
                Some(JobState::Inactive),
                Some(JobResult::Canceled)
            ),
        ]
    );
    // The recorded client (Python) spaces its JSON, so only the meaning is compared here.
    replay.exchange("job-list.list");

    // What `flux jobs -a --json` asks for: every state of one user, many attributes.
    let recorded = Session::load("04-list").exchanges(0).remove(0).0;
    let asked = Exchange::payload_json(&recorded).unwrap();
    let replay = Replay::start("04-list", 0, &[]).await;
    let req = ListRequest {
        max_entries: 1001,
        attrs: serde_json::from_value(asked["attrs"].clone()).unwrap(),
        since: Some(0.0),
        constraint: None,
    }
    .user(0)
    .states(126);
    let jobs = replay.client().await.job_list(&req).await.unwrap();
    assert_eq!(jobs.len(), 7);
    let json: serde_json::Value =
        serde_json::from_str(&read("04-list", "cmd0.stdout.txt")).unwrap();
    let cli = json["jobs"].as_array().unwrap();
    for (ours, theirs) in jobs.iter().zip(cli) {
        assert_eq!(ours.id.0, theirs["id"].as_u64().unwrap());
        assert_eq!(
            ours.state.unwrap().name(),
            theirs["state"].as_str().unwrap()
        );
        if let Some(r) = theirs["result"].as_str() {
            assert_eq!(ours.result.unwrap().name(), r);
        }
    }
    let canceled = jobs
        .iter()
        .find(|j| j.result == Some(JobResult::Canceled))
        .unwrap();
    assert_eq!(canceled.exception_type.as_deref(), Some("cancel"));
    assert_eq!(canceled.exit_code(), Some(143));

    let replay = Replay::start("04-list", 4, &[]).await;
    let job = replay
        .client()
        .await
        .job_list_id(JobId(119034347520), &["all"])
        .await
        .unwrap();
    assert_eq!(job.state, Some(JobState::Run));
    assert_eq!(job.nodelist.as_deref(), Some("vm"));
}

#[tokio::test]
async fn s05_cancel_and_wait() {
    let id: JobId = "ƒ4DX8eMD".parse().unwrap();
    let replay = Replay::start("05-cancel", 0, &[]).await;
    replay.client().await.job_cancel(id, None).await.unwrap();
    assert!(
        replay.exchange("job-manager.raise").byte_exact(),
        "same bytes as `flux cancel`"
    );

    let replay = Replay::start("05-cancel", 1, &[]).await;
    let r = replay
        .client()
        .await
        .job_wait(id, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(!r.success);
    assert_eq!(r.errstr.as_deref(), Some("Fatal exception type=cancel "));
    assert!(
        replay.exchange("job-manager.wait").byte_exact(),
        "same bytes as `flux job wait`"
    );
}

#[tokio::test]
async fn s06_attach_runs_concurrent_streams_and_reads_output() {
    // What `flux job attach` does: two eventlog watches, a list-id and an output watch at once.
    let replay = Replay::start("06-output", 0, &[]).await;
    let flux = replay.client().await;
    let main = flux
        .job_eventlog_watch(JOB, "eventlog", WatchFlags::default())
        .unwrap();
    let exec = flux
        .job_eventlog_watch(JOB, "guest.exec.eventlog", WatchFlags::default())
        .unwrap();
    let queue = flux.job_list_id(JOB, &["queue"]).await.unwrap();
    assert_eq!(queue.id, JOB);
    let main_events = main.collect().await.unwrap();
    let names: Vec<&str> = main_events.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "submit", "validate", "depend", "priority", "alloc", "start", "finish", "release",
            "free", "clean"
        ]
    );
    let exec_events = exec.collect().await.unwrap();
    let service = exec_events
        .iter()
        .find(|e| e.name == "shell.init")
        .and_then(|e| {
            e.context
                .as_ref()?
                .get("service")?
                .as_str()
                .map(str::to_owned)
        })
        .unwrap();
    assert_eq!(service, format!("0-shell-{}", JOB.f58_ascii()));
    assert_eq!(exec_events.last().unwrap().name, "done");

    let mut output = flux
        .job_eventlog_watch(JOB, "guest.output", WatchFlags::default())
        .unwrap();
    let mut stdout = String::new();
    let mut eofs = 0;
    while let Some(ev) = output.next_output().await {
        match ev.unwrap() {
            OutputEvent::Data { stream, data, .. } if stream == "stdout" => stdout.push_str(&data),
            OutputEvent::Eof { .. } => eofs += 1,
            _ => {}
        }
    }
    assert_eq!(stdout, read("06-output", "cmd0.stdout.txt"));
    assert_eq!(eofs, 2);

    // The shell had already exited: its stdin service is gone.
    let err = flux
        .rpc(Request {
            payload: Some(br#"{"stream":"stdin","rank":"all","eof":true}"#.iter().chain(b"\0").copied().collect()),
            ..Request::new(format!("{service}.stdin")).rank(0)
        })
        .await
        .unwrap_err();
    assert_eq!(err.errnum(), Some(38));
    for ex in replay.matched() {
        assert!(
            ex.byte_exact(),
            "{} differs from `flux job attach`",
            ex.ours.topic()
        );
    }
}

#[tokio::test]
async fn s06_live_output_of_a_running_job() {
    let replay = Replay::start("06-output", 2, &[]).await;
    let flux = replay.client().await;
    let id = JobId(68887248896);
    let mut out = flux
        .job_eventlog_watch(id, "guest.output", WatchFlags::default())
        .unwrap();
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
    assert_eq!(stdout, "one\nthree\n");
    assert_eq!(stderr, "two\n");
    // `flux job attach` cancels its watch after the end; the cancel names the watch's matchtag.
    out.cancel().unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        replay
            .exchange("job-info.eventlog-watch-cancel")
            .byte_exact()
    );
}

#[tokio::test]
async fn s07_resources_and_overlay() {
    let replay = Replay::start("07-resource-overlay", 2, &[]).await;
    let flux = replay.client().await;
    let status = flux.resource_status().await.unwrap();
    assert_eq!(status.online_ranks().unwrap(), vec![0]);
    assert!(status.offline_ranks().unwrap().is_empty());
    let stats = flux.job_manager_stats().await.unwrap();
    assert_eq!(stats["active_jobs"], 2);
    let sched = flux.sched_status().await.unwrap();
    assert_eq!(
        sched.all["execution"]["R_lite"][0]["children"]["core"],
        "0-1"
    );
    for ex in replay.matched() {
        assert!(
            ex.byte_exact(),
            "{} differs from `flux resource status`",
            ex.ours.topic()
        );
    }

    let replay = Replay::start("07-resource-overlay", 1, &[]).await;
    let flux = replay.client().await;
    assert_eq!(flux.attr_get("size").await.unwrap(), "1");
    let health = flux.overlay_health(0).await.unwrap();
    assert_eq!((health.rank, health.status.as_str()), (0, "full"));
    assert_eq!(flux.overlay_topology(0).await.unwrap().ranks(), vec![0]);
    assert_eq!(flux.attr_get("hostlist").await.unwrap(), "vm");
}

#[tokio::test]
async fn s08_errors_are_typed() {
    let replay = Replay::start("08-errors", 0, &[]).await;
    let err = replay
        .client()
        .await
        .attr_get("nonexistent-attr")
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    assert_eq!(
        err.to_string(),
        "attr.get: No such file or directory (ENOENT)"
    );

    let replay = Replay::start("08-errors", 2, &[]).await;
    let err = replay
        .client()
        .await
        .job_list_id(JobId(123456789), &["all"])
        .await
        .unwrap_err();
    assert!(err.is_not_found());

    let replay = Replay::start("08-errors", 3, &[]).await;
    let err = replay
        .client()
        .await
        .rpc(
            Request::new("no-such-service.method")
                .json(&serde_json::json!({}))
                .unwrap(),
        )
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "no-such-service.method: No service matching no-such-service.method is registered (ENOSYS)"
    );

    let replay = Replay::start("08-errors", 4, &[]).await;
    let err = replay
        .client()
        .await
        .job_cancel(JobId(123456789), None)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "job-manager.raise: unknown job id (ENOENT)"
    );

    let replay = Replay::start("08-errors", 5, &[]).await;
    let mut watch = replay
        .client()
        .await
        .job_eventlog_watch(JobId(123456789), "eventlog", WatchFlags::default())
        .unwrap();
    assert!(watch.next().await.unwrap().unwrap_err().is_not_found());
    assert!(
        watch.next().await.is_none(),
        "a stream ends after its error"
    );

    let replay = Replay::start("08-errors", 6, &[]).await;
    let err = replay
        .client()
        .await
        .rpc(
            Request::new("job-info.eventlog-watch")
                .json(&serde_json::json!({"id": JOB, "path": "eventlog", "flags": 0}))
                .unwrap(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.errnum(), Some(71));

    let replay = Replay::start("08-errors", 7, &[]).await;
    let j = flux_client::jobspec::sign_none(b"{}\n", 0);
    let err = replay
        .client()
        .await
        .submit_signed(&j, SubmitOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.errnum(), Some(1));
    assert!(err.to_string().contains("Missing key"), "{err}");
    assert!(
        replay.exchange("job-ingest.submit").byte_exact(),
        "same bytes as `flux job submit`"
    );

    let replay = Replay::start("08-errors", 8, &["job-ingest.submit"]).await;
    let err = replay
        .client()
        .await
        .submit(&JobRequest::new(["hostname"]), SubmitOptions::default())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("signer=4242 != requestor=0"),
        "{err}"
    );
}

#[tokio::test]
async fn s09_events_subscribe_publish() {
    let replay = Replay::start("09-events", 0, &[]).await;
    let flux = replay.client().await;
    let mut sub = flux.subscribe("fixtures.test").await.unwrap();
    let ev = sub.next_within(Duration::from_secs(5)).await.unwrap();
    assert_eq!(ev.topic(), "fixtures.test");
    assert_eq!(ev.seq(), 125);
    assert_eq!(
        ev.routes.as_ref().unwrap().len(),
        2,
        "hop identities are parsed and kept"
    );
    assert_eq!(ev.payload_str(), Some(r#"{"hello":"world"}"#));
    sub.unsubscribe().await.unwrap();
    for ex in replay.matched() {
        assert!(
            ex.byte_exact(),
            "{} differs from `flux event sub`",
            ex.ours.topic()
        );
    }

    let replay = Replay::start("09-events", 1, &[]).await;
    let flux = replay.client().await;
    flux.send_event(
        "fixtures.test",
        Some(&serde_json::json!({"hello": "world"})),
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        replay.exchange("fixtures.test").byte_exact(),
        "same bytes as `flux event pub`"
    );

    let replay = Replay::start("09-events", 2, &[]).await;
    let seq = replay
        .client()
        .await
        .event_publish("fixtures.sync", Some(&serde_json::json!({"n": 1})))
        .await
        .unwrap();
    assert_eq!(seq, 126);
}

#[tokio::test]
async fn s10_three_broker_overlay() {
    let replay = Replay::start("10-overlay-3brokers", 0, &[]).await;
    let flux = replay.client().await;
    assert_eq!(flux.attr_get("size").await.unwrap(), "3");
    let health = flux.overlay_health(0).await.unwrap();
    assert_eq!(
        health.children.iter().map(|c| c.rank).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert!(health.children.iter().all(|c| c.status == "full"));
    assert_eq!(
        flux.overlay_topology(0).await.unwrap().ranks(),
        vec![0, 1, 2]
    );
    assert_eq!(flux.attr_get("hostlist").await.unwrap(), "vm,vm,vm");
    for ex in replay.matched() {
        assert!(
            ex.byte_exact(),
            "{} differs from `flux overlay status`",
            ex.ours.topic()
        );
    }

    let replay = Replay::start("10-overlay-3brokers", 1, &[]).await;
    let flux = replay.client().await;
    assert!(
        flux.config_get()
            .await
            .unwrap()
            .as_object()
            .unwrap()
            .is_empty()
    );
    let sched = flux.sched_status().await.unwrap();
    assert_eq!(sched.all["execution"]["R_lite"][0]["rank"], "0-2");

    let replay = Replay::start("10-overlay-3brokers", 3, &[]).await;
    assert_eq!(
        replay.client().await.attr_get_on(2, "rank").await.unwrap(),
        "2"
    );
}

#[tokio::test]
async fn s11_job_info_lookup() {
    let replay = Replay::start("11-job-info", 0, &[]).await;
    let spec = replay.client().await.job_jobspec(JOB).await.unwrap();
    assert_eq!(spec["tasks"][0]["command"][0], "hostname");
    assert!(
        replay.exchange("job-info.lookup").byte_exact(),
        "same bytes as `flux job info`"
    );

    let replay = Replay::start("11-job-info", 1, &[]).await;
    let r = replay.client().await.job_resources(JOB).await.unwrap();
    assert_eq!(r["execution"]["R_lite"][0]["rank"], "0");

    let replay = Replay::start("11-job-info", 2, &[]).await;
    let log = replay.client().await.job_eventlog(JOB).await.unwrap();
    assert_eq!(log.first().unwrap().name, "submit");
    assert_eq!(log.last().unwrap().name, "clean");
    assert!(
        replay.exchange("job-info.lookup").byte_exact(),
        "same bytes as `flux job eventlog`"
    );

    let replay = Replay::start("11-job-info", 4, &[]).await;
    let all = replay
        .client()
        .await
        .job_lookup(JOB, &["jobspec", "R", "eventlog"], false)
        .await
        .unwrap();
    assert!(
        ["jobspec", "R", "eventlog"]
            .iter()
            .all(|k| all[*k].is_string())
    );
}

#[tokio::test]
async fn s12_hand_encoded_request_is_ours_byte_for_byte() {
    let replay = Replay::start("12-raw-client", 0, &[]).await;
    assert_eq!(replay.client().await.attr_get("size").await.unwrap(), "1");
    assert!(replay.exchange("attr.get").byte_exact());
}
