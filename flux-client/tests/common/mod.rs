//! Recorded broker conversations (`../shared/flux-fixtures/0.88.0`) and a server that replays
//! them: it answers each request with what the real broker answered the matching recorded one.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use flux_client::codec::{MessageCodec, decode_message, encode_message};
use flux_client::message::{MsgType, flags};
use flux_client::{Client, Message};
use futures_util::StreamExt;
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::UnixListener;
use tokio_util::codec::FramedRead;

pub fn fixtures() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/flux-fixtures/0.88.0");
    assert!(
        dir.is_dir(),
        "the Flux wire fixtures are missing at {}: check out ../shared beside the repository",
        dir.display()
    );
    dir
}

/// Every session directory (01-handshake … 12-raw-client).
pub fn sessions() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(fixtures())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("session.jsonl").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// One recorded message with its exact bytes and the recorder's independent decoding.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub conn: u64,
    pub c2s: bool,
    pub bytes: Vec<u8>,
    pub decoded: Value,
}

pub struct Session {
    pub records: Vec<Value>,
}

impl Session {
    pub fn load(name: &str) -> Session {
        let text = std::fs::read_to_string(fixtures().join(name).join("session.jsonl")).unwrap();
        Session {
            records: text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| serde_json::from_str(l).unwrap())
                .collect(),
        }
    }

    pub fn messages(&self) -> Vec<Recorded> {
        self.records
            .iter()
            .filter(|r| r["kind"] == "msg")
            .map(|r| Recorded {
                conn: r["conn"].as_u64().unwrap(),
                c2s: r["dir"] == "c2s",
                bytes: BASE64.decode(r["b64"].as_str().unwrap()).unwrap(),
                decoded: r.clone(),
            })
            .collect()
    }

    pub fn auth_byte(&self, conn: u64) -> Option<u8> {
        self.records
            .iter()
            .find(|r| r["kind"] == "auth" && r["conn"] == conn)
            .map(|r| r["byte"].as_u64().unwrap() as u8)
    }

    /// The requests (and events) the client sent on `conn`, each with every message the broker
    /// sent back for it: responses by matchtag, and unsolicited events after the latest request.
    pub fn exchanges(&self, conn: u64) -> Vec<(Message, Vec<u8>, Vec<Message>)> {
        let mut out: Vec<(Message, Vec<u8>, Vec<Message>)> = Vec::new();
        let mut active: HashMap<u32, usize> = HashMap::new();
        for m in self.messages().into_iter().filter(|m| m.conn == conn) {
            let Ok(msg) = decode_message(&m.bytes) else {
                continue;
            };
            if m.c2s {
                if msg.kind == MsgType::Request && msg.flags & flags::NORESPONSE == 0 {
                    active.insert(msg.matchtag(), out.len());
                }
                out.push((msg, m.bytes, Vec::new()));
            } else if msg.kind == MsgType::Response {
                let idx = active[&msg.matchtag()];
                let last = !msg.is_streaming() || msg.errnum() != 0;
                out[idx].2.push(msg.clone());
                if last {
                    active.remove(&msg.matchtag());
                }
            } else if let Some(last) = out.last_mut() {
                last.2.push(msg);
            }
        }
        out
    }
}

/// What our client sent, next to what the real client sent in its place.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub ours: Message,
    pub our_bytes: Vec<u8>,
    pub recorded: Message,
    /// The recorded bytes with the matchtag our client chose, so tags do not spoil the
    /// comparison when our allocation order differs from the recorded client's.
    pub recorded_bytes: Vec<u8>,
}

impl Exchange {
    pub fn byte_exact(&self) -> bool {
        self.our_bytes == self.recorded_bytes
    }

    pub fn payload_json(m: &Message) -> Option<Value> {
        m.payload_bytes()
            .and_then(|p| serde_json::from_slice(p).ok())
    }
}

#[derive(Default)]
pub struct Log {
    pub matched: Vec<Exchange>,
    pub unexpected: Vec<Message>,
}

/// A replay of one recorded connection on a fresh Unix socket.
pub struct Replay {
    pub uri: String,
    pub log: Arc<Mutex<Log>>,
    _dir: tempfile::TempDir,
}

impl Replay {
    /// Serve connection `conn` of `session`. Requests whose topic is in `loose` match on topic
    /// alone (their payload holds things that differ by run, e.g. a signed jobspec).
    pub async fn start(session: &str, conn: u64, loose: &[&str]) -> Replay {
        let s = Session::load(session);
        let auth = s
            .auth_byte(conn)
            .expect("recorded connection has an auth byte");
        let mut pending = s.exchanges(conn);
        let loose: Vec<String> = loose.iter().map(|s| s.to_string()).collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("local");
        let listener = UnixListener::bind(&path).unwrap();
        let log = Arc::new(Mutex::new(Log::default()));
        let server_log = log.clone();
        tokio::spawn(async move {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (read, mut write) = stream.into_split();
            write.write_all(&[auth]).await.unwrap();
            if auth != 0 {
                return;
            }
            let mut frames = FramedRead::new(read, MessageCodec::default());
            while let Some(Ok(ours)) = frames.next().await {
                let found = pending
                    .iter()
                    .position(|(rec, _, _)| matches(&ours, rec, &loose));
                let Some(i) = found else {
                    server_log.lock().unwrap().unexpected.push(ours.clone());
                    if ours.kind == MsgType::Request && ours.flags & flags::NORESPONSE == 0 {
                        let mut err = ours.clone();
                        err.kind = MsgType::Response;
                        err.aux1 = 71;
                        err.payload = Some(b"replay: no such request was recorded\0".to_vec());
                        let _ = write.write_all(&encode_message(&err)).await;
                    }
                    continue;
                };
                let (mut recorded, _, replies) = pending.remove(i);
                let tag = ours.matchtag();
                recorded.aux2 = if recorded.kind == MsgType::Request {
                    tag
                } else {
                    recorded.aux2
                };
                server_log.lock().unwrap().matched.push(Exchange {
                    our_bytes: encode_message(&ours),
                    recorded_bytes: encode_message(&recorded),
                    ours,
                    recorded,
                });
                for mut r in replies {
                    if r.kind == MsgType::Response {
                        r.aux2 = tag;
                    }
                    if write.write_all(&encode_message(&r)).await.is_err() {
                        return;
                    }
                }
            }
        });
        Replay {
            uri: format!("local://{}", path.display()),
            log,
            _dir: dir,
        }
    }

    pub async fn client(&self) -> Client {
        Client::connect(&self.uri).await.expect("connect to replay")
    }

    /// The exchanges so far; panics if the client sent anything that was never recorded.
    pub fn matched(&self) -> Vec<Exchange> {
        let log = self.log.lock().unwrap();
        assert!(
            log.unexpected.is_empty(),
            "requests that match no recorded request: {:#?}",
            log.unexpected
        );
        log.matched.clone()
    }

    /// The exchange for `topic`, asserting there was exactly one.
    pub fn exchange(&self, topic: &str) -> Exchange {
        let all: Vec<Exchange> = self
            .matched()
            .into_iter()
            .filter(|e| e.ours.topic() == topic)
            .collect();
        assert_eq!(all.len(), 1, "exchanges for {topic}");
        all[0].clone()
    }
}

fn matches(ours: &Message, rec: &Message, loose: &[String]) -> bool {
    if ours.kind != rec.kind
        || ours.topic() != rec.topic()
        || ours.wire_flags() != rec.wire_flags()
        || (ours.kind == MsgType::Request && ours.nodeid() != rec.nodeid())
    {
        return false;
    }
    if loose.iter().any(|t| t == ours.topic()) {
        return true;
    }
    Exchange::payload_json(ours) == Exchange::payload_json(rec)
}
