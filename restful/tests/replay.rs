//! The REST routes on the real Flux backend, answered by a real flux-core 0.88.0 broker's
//! recorded answers (`../shared/flux-fixtures/0.88.0`): a small server on a Unix socket
//! answers each request of ours with what the broker answered the matching recorded request.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine;
use flux_client::codec::{MessageCodec, decode_message, encode_message};
use flux_client::message::MsgType;
use flux_client::{Client, Message};
use futures_util::StreamExt;
use http_body_util::BodyExt;
use minicluster_rest::auth::Auth;
use minicluster_rest::limits::RateLimiter;
use minicluster_rest::{AppState, FluxClientBackend, ServerConfig, router};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::UnixListener;
use tokio_util::codec::FramedRead;
use tower::ServiceExt;

fn fixtures() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/flux-fixtures/0.88.0");
    assert!(
        dir.is_dir(),
        "the Flux wire fixtures are missing at {}: check out ../shared beside the repository",
        dir.display()
    );
    dir
}

/// A recorded request and everything the broker sent back for it.
struct Recorded {
    session: String,
    request: Message,
    replies: Vec<Message>,
}

fn load(session: &str) -> Vec<Recorded> {
    let text = std::fs::read_to_string(fixtures().join(session).join("session.jsonl")).unwrap();
    let mut out: Vec<Recorded> = Vec::new();
    // (conn, matchtag) -> index of the open request
    let mut open: std::collections::HashMap<(u64, u32), usize> = Default::default();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let r: Value = serde_json::from_str(line).unwrap();
        if r["kind"] != "msg" {
            continue;
        }
        let conn = r["conn"].as_u64().unwrap();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(r["b64"].as_str().unwrap())
            .unwrap();
        let Ok(msg) = decode_message(&bytes) else {
            continue;
        };
        match (r["dir"].as_str(), msg.kind) {
            (Some("c2s"), MsgType::Request) => {
                open.insert((conn, msg.matchtag()), out.len());
                out.push(Recorded {
                    session: session.into(),
                    request: msg,
                    replies: Vec::new(),
                });
            }
            (Some("s2c"), MsgType::Response) => {
                if let Some(&i) = open.get(&(conn, msg.matchtag())) {
                    out[i].replies.push(msg);
                }
            }
            _ => {}
        }
    }
    out
}

/// Which payload keys not to compare, per topic (they hold what differs between our request
/// and the recorded tool's: a signature, a flag, the attribute list).
type Ignore = Vec<(&'static str, Vec<&'static str>)>;

fn payload(m: &Message) -> Option<Value> {
    m.payload_bytes()
        .and_then(|p| serde_json::from_slice(p).ok())
}

fn same(ours: &Message, rec: &Message, ignore: &Ignore) -> bool {
    if ours.topic() != rec.topic() {
        return false;
    }
    let skip: Vec<&str> = ignore
        .iter()
        .filter(|(t, _)| *t == ours.topic())
        .flat_map(|(_, k)| k.iter().copied())
        .collect();
    if skip.contains(&"*") {
        return true;
    }
    let strip = |v: Option<Value>| {
        v.map(|mut v| {
            if let Some(m) = v.as_object_mut() {
                for k in &skip {
                    m.remove(*k);
                }
            }
            v
        })
    };
    strip(payload(ours)) == strip(payload(rec))
}

struct Replay {
    uri: String,
    unmatched: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

async fn replay(sessions: &[&str], ignore: Ignore) -> Replay {
    let pool: Vec<Recorded> = sessions.iter().flat_map(|s| load(s)).collect();
    let pool = Arc::new(Mutex::new(pool));
    let ignore = Arc::new(ignore);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("local");
    let listener = UnixListener::bind(&path).unwrap();
    let unmatched = Arc::new(Mutex::new(Vec::new()));
    let log = unmatched.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let pool = pool.clone();
            let ignore = ignore.clone();
            let log = log.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                if write.write_all(&[0]).await.is_err() {
                    return;
                }
                let mut frames = FramedRead::new(read, MessageCodec::default());
                while let Some(Ok(ours)) = frames.next().await {
                    if ours.kind != MsgType::Request {
                        continue;
                    }
                    let found = {
                        let mut pool = pool.lock().unwrap();
                        pool.iter()
                            .position(|r| same(&ours, &r.request, &ignore))
                            .map(|i| pool.remove(i))
                    };
                    let noresponse = ours.flags & flux_client::message::flags::NORESPONSE != 0;
                    let replies = match found {
                        Some(rec) => rec.replies,
                        None => {
                            log.lock().unwrap().push(format!(
                                "{} {}",
                                ours.topic(),
                                ours.payload_str().unwrap_or("")
                            ));
                            let mut err = ours.clone();
                            err.kind = MsgType::Response;
                            err.aux1 = 71;
                            err.payload = Some(b"replay: no such request was recorded\0".to_vec());
                            vec![err]
                        }
                    };
                    if noresponse {
                        continue;
                    }
                    for mut r in replies {
                        r.aux2 = ours.matchtag();
                        if write.write_all(&encode_message(&r)).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    Replay {
        uri: format!("local://{}", path.display()),
        unmatched,
        _dir: dir,
    }
}

impl Replay {
    async fn app(&self) -> axum::Router {
        let client = Client::connect(&self.uri).await.unwrap();
        // The recordings ran as root (uid 0), the jobs' owner.
        let backend = FluxClientBackend::with_uid(client, 0);
        router(AppState::new(
            Arc::new(backend),
            Auth::none(),
            RateLimiter::unlimited(),
            ServerConfig::default(),
        ))
    }

    fn assert_all_matched(&self) {
        let u = self.unmatched.lock().unwrap();
        assert!(u.is_empty(), "requests with no recorded match: {u:#?}");
    }
}

async fn call(app: &axum::Router, method: &str, uri: &str) -> (StatusCode, Vec<u8>) {
    let resp = app
        .clone()
        .oneshot(
            Request::builder()
                .method(method)
                .uri(uri)
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let status = resp.status();
    (
        status,
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
}

async fn json_call(app: &axum::Router, method: &str, uri: &str) -> (StatusCode, Value) {
    let (s, b) = call(app, method, uri).await;
    (
        s,
        serde_json::from_slice(&b)
            .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&b))),
    )
}

#[tokio::test]
async fn nodes_from_the_recorded_sched_status() {
    let r = replay(&["07-resource-overlay"], vec![]).await;
    let app = r.app().await;
    let (status, body) = json_call(&app, "GET", "/v1/nodes").await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"nodes": ["vm"]}));
    r.assert_all_matched();
}

#[tokio::test]
async fn job_details_and_unknown_jobs() {
    let r = replay(&["04-list", "08-errors"], vec![]).await;
    let app = r.app().await;
    let (status, j) = json_call(&app, "GET", "/v1/jobs/119034347520").await;
    assert_eq!(status, 200);
    assert_eq!(j["id"], 119034347520u64);
    assert_eq!(j["state"], "RUN");
    assert_eq!(j["name"], "sleep");
    assert_eq!(j["nodelist"], "vm");
    assert_eq!(j["result"], "");
    assert_eq!(j["returncode"], "");
    assert!(j["runtime"].as_f64().unwrap() > 0.0);
    assert_eq!(j["exception"]["occurred"], false);
    // The same id in F58, as `flux jobs` prints it.
    let (status, _) = json_call(&app, "GET", "/v1/jobs/123456789").await;
    assert_eq!(status, 404, "ENOENT from job-list is a 404");
    r.assert_all_matched();
}

#[tokio::test]
async fn listings_from_the_recorded_job_list() {
    let r = replay(&["04-list"], vec![("job-list.list", vec!["*"])]).await;
    let app = r.app().await;
    let (status, body) = json_call(&app, "GET", "/v1/jobs").await;
    assert_eq!(status, 200);
    let ids: Vec<u64> = body["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_u64().unwrap())
        .collect();
    assert!(
        ids.contains(&119034347520) && ids.contains(&130157641728),
        "{ids:?}"
    );
    let (_, rows) = json_call(&app, "GET", "/v1/jobs?details=true&listing=true").await;
    let rows = rows.as_array().unwrap();
    let run = rows.iter().find(|j| j["id"] == 119034347520u64).unwrap();
    assert_eq!(run["state"], "RUN");
    let canceled = rows.iter().find(|j| j["id"] == 122423345152u64);
    if let Some(c) = canceled {
        assert_eq!(c["state"], "INACTIVE");
        assert_eq!(c["result"], "CANCELED");
        // 143 from the wait status (SIGTERM'd shell) when the listing holds it; a canceled
        // job without one reads -128, as flux-restful reports it.
        let expected = if c["waitstatus"] == 36608 { 143 } else { -128 };
        assert_eq!(c["returncode"], expected);
    }
}

#[tokio::test]
async fn submit_through_the_recorded_ingest() {
    let r = replay(
        &["03-submit", "07-resource-overlay"],
        vec![("job-ingest.submit", vec!["*"])],
    )
    .await;
    let app = r.app().await;
    let (status, body) = json_call(&app, "POST", "/v1/jobs/submit?command=hostname").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["Message"], "Job submit.");
    // The id the broker gave `flux submit hostname`.
    let recorded = load("03-submit")
        .into_iter()
        .find(|r| r.request.topic() == "job-ingest.submit")
        .unwrap();
    let id = payload(&recorded.replies[0]).unwrap()["id"].clone();
    assert_eq!(body["id"], id);
    r.assert_all_matched();
}

#[tokio::test]
async fn cancel_known_and_unknown_jobs() {
    let r = replay(
        &["05-cancel", "08-errors"],
        vec![("job-manager.raise", vec!["note"])],
    )
    .await;
    let app = r.app().await;
    let (status, body) = json_call(&app, "POST", "/v1/jobs/ƒ4DX8eMD/cancel").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"Message": "Job is requested to cancel.", "id": "ƒ4DX8eMD"})
    );
    // The recorded refusal (ENOENT, "unknown job id") in flux-restful's words.
    let (status, body) = json_call(&app, "POST", "/v1/jobs/123456789/cancel").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body,
        json!({"Message": "Job cannot be cancelled: [Errno 2] unknown job id.", "id": "123456789"})
    );
    r.assert_all_matched();
}

#[tokio::test]
async fn output_stream_from_the_recorded_watch() {
    let r = replay(
        &["06-output"],
        vec![
            ("job-list.list-id", vec!["attrs"]),
            ("job-info.eventlog-watch", vec!["flags"]),
        ],
    )
    .await;
    let app = r.app().await;
    let (status, body) = call(&app, "GET", "/v1/jobs/ƒ28u15Vy/output/stream").await;
    assert_eq!(status, 200);
    assert_eq!(
        String::from_utf8(body).unwrap(),
        "vm\n",
        "`hostname` printed vm"
    );
    r.assert_all_matched();
    let sessions: Vec<String> = load("06-output").into_iter().map(|r| r.session).collect();
    assert!(!sessions.is_empty());
}
