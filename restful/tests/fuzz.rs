//! schemathesis (PyPI, in `.venv`) fuzzes every operation of our OpenAPI document against the
//! server with the Flux stand-in: no 5xx, only documented status codes and content types.

mod common;

use std::process::Command;

use common::{Server, python_or_fail};

#[test]
fn schemathesis_finds_no_server_errors() {
    let server = Server::start(&["--backend", "stand-in", "--submit-rate", "0"], &[]);
    let st = python_or_fail().with_file_name("schemathesis");
    assert!(
        st.exists(),
        "{} is missing: run .ci/setup (it installs schemathesis into .venv)",
        st.display()
    );
    let report = tempfile::tempdir().unwrap();
    let out = Command::new(&st)
        .args([
            "run",
            &format!("{}/openapi.json", server.url),
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance",
            "--max-examples",
            "40",
            "--seed",
            "20261129",
        ])
        .current_dir(report.path())
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{stdout}\n{}\n--- server log\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.logs()
    );
    assert!(stdout.contains("Tested: 12"), "{stdout}");
    assert!(!server.logs().contains("panicked"), "{}", server.logs());
    let summary = stdout
        .lines()
        .find(|l| l.contains(" generated, "))
        .unwrap_or("");
    println!("schemathesis: {summary}");
}
