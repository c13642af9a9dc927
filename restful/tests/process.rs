//! The binary itself: refusing unsafe configurations, hashing passwords, graceful shutdown.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Server;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_minicluster-rest"));
    for k in [
        "FLUX_USER",
        "FLUX_TOKEN",
        "FLUX_SECRET_KEY",
        "FLUX_REQUIRE_AUTH",
        "FLUX_AUTH_BACKEND",
    ] {
        c.env_remove(k);
    }
    c
}

#[test]
fn no_auth_is_refused_off_loopback() {
    let out = bin()
        .args(["--host", "0.0.0.0", "--port", "0", "--backend", "stand-in"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refusing to serve without authentication on 0.0.0.0"),
        "{err}"
    );
    assert!(
        err.contains("FLUX_USER"),
        "the message names the fix: {err}"
    );
}

#[test]
fn shared_secret_without_a_secret_is_refused() {
    let out = bin()
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--backend",
            "stand-in",
            "--auth",
            "shared-secret",
        ])
        .env("FLUX_USER", "u")
        .env("FLUX_TOKEN", "the-password")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("needs FLUX_SECRET_KEY"), "{err}");
    assert!(!err.contains("the-password"));
}

#[test]
fn hash_password_makes_a_users_file_line() {
    let mut child = bin()
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"s3cret\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let hash = String::from_utf8(out.stdout).unwrap();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users");
    std::fs::write(&users, format!("alice:{}", hash.trim())).unwrap();
    let mut a = minicluster_rest::auth::Auth::new(
        minicluster_rest::auth::BackendKind::Database,
        minicluster_rest::auth::Secret::new(b"k".to_vec()),
        Duration::from_secs(60),
    )
    .unwrap();
    a.load_users_file(&users).unwrap();
    assert!(a.authenticate("alice", "s3cret").is_some());
}

#[test]
fn sigterm_ends_open_streams_and_exits_cleanly() {
    let mut server = Server::start(&["--backend", "stand-in", "--grace-seconds", "5"], &[]);
    let url = server.url.clone();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let resp = rt.block_on(async {
        let c = reqwest::Client::new();
        let r: serde_json::Value = c
            .post(format!("{url}/v1/jobs/submit?command=sleep+300"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = r["id"].as_u64().unwrap();
        let resp = c
            .get(format!("{url}/v1/jobs/{id}/output/stream"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp
    });
    // The stream stays open while the job runs.
    let stream_done = rt.spawn(async move { resp.bytes().await.map(|b| b.len()) });
    std::thread::sleep(Duration::from_millis(300));
    assert!(!stream_done.is_finished(), "the stream ended early");
    let start = Instant::now();
    let status = server
        .terminate(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("still running 10 s after SIGTERM:\n{}", server.logs()));
    assert!(status.success(), "{status}:\n{}", server.logs());
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "took {:?}",
        start.elapsed()
    );
    let got = rt.block_on(stream_done).unwrap();
    assert!(got.is_ok(), "the stream ended cleanly: {got:?}");
    assert!(server.logs().contains("stopped"));
}
