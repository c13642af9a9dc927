//! The web pages in headless Chromium (Debian `chromium` + `chromium-driver`, driven by
//! selenium from `.venv`): load the jobs page, submit through the form, see the job listed
//! and its state and output follow the job.

mod common;

use std::path::PathBuf;

use common::{Server, run_python};

fn find(names: &[&str]) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    names.iter().find_map(|n| {
        std::env::split_paths(&paths)
            .map(|d| d.join(n))
            .find(|p| p.is_file())
    })
}

#[test]
fn submit_through_the_form_and_see_the_job_listed() {
    // .ci/setup installs both: without them the machine is not set up, and the test says so.
    let (Some(chromium), Some(driver)) = (
        find(&["chromium", "chromium-browser"]),
        find(&["chromedriver"]),
    ) else {
        panic!(
            "chromium and chromedriver are not on PATH: run .ci/setup (Debian: apt-get install chromium chromium-driver)"
        );
    };
    let server = Server::start(&["--backend", "stand-in"], &[]);
    let out = run_python(
        "browser_check.py",
        &[
            &server.url,
            chromium.to_str().unwrap(),
            driver.to_str().unwrap(),
        ],
    );
    for check in [
        "ok jobs page",
        "ok output streamed",
        "ok listed",
        "ok live state",
        "ok table refreshes",
        "ALL OK",
    ] {
        assert!(out.lines().any(|l| l == check), "{check} missing:\n{out}");
    }
}
