//! Interop with libzmq itself (pyzmq from PyPI, installed by `.ci/setup` into `.venv`):
//! libzmq reads our certificate, derives the same public key, and completes a CURVE handshake
//! with it; we read a certificate libzmq wrote and find a matching pair.

use std::path::PathBuf;
use std::process::Command;

use minicluster_core::CurveCert;

/// `$MC_TEST_PYTHON`, else the workspace venv. Missing means the machine is not set up: fail.
fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("MC_TEST_PYTHON") {
        return p.into();
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    assert!(
        venv.exists(),
        "{} is missing: run .ci/setup (it installs pyzmq into .venv) or set MC_TEST_PYTHON",
        venv.display()
    );
    venv
}

#[test]
fn libzmq_accepts_our_certificate_and_we_accept_its() {
    let dir = tempfile::tempdir().unwrap();
    let cert_path = dir.path().join("curve.cert");
    let ours = CurveCert::generate("mc-0").unwrap();
    ours.write(&cert_path).unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/zmq_interop.py");
    let out = Command::new(python())
        .arg(&script)
        .arg(&cert_path)
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "pyzmq check failed (is pyzmq installed? run .ci/setup): {stderr}"
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");

    // The reverse: a certificate libzmq generated parses, and its keys form a pair for us too.
    let theirs = CurveCert::read(&dir.path().join("libzmq.key_secret")).unwrap();
    let public_only = std::fs::read_to_string(dir.path().join("libzmq.key")).unwrap();
    assert!(public_only.contains(&theirs.public_key()));
}
