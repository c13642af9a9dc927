//! Locating the real components: `flux` (from `$FLUX_BIN` or PATH), a Docker Engine, and the
//! test venv's Python (libzmq through pyzmq, and other test-only tools).

use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The real `flux` command: `$FLUX_BIN`, which must be a file, else `flux` on PATH.
/// `None` when there is neither.
pub fn find_flux() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("FLUX_BIN") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "FLUX_BIN={} is not a file (fix: point FLUX_BIN at flux-core's `flux` command, or unset it)",
            p.display()
        );
        return Some(p);
    }
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join("flux"))
        .find(|p| p.is_file())
}

/// The real `flux` command for a `real_flux_…` test; fails the test when there is none.
pub fn flux() -> PathBuf {
    find_flux().unwrap_or_else(|| {
        panic!(
            "this test needs a real flux and none was found (fix: set FLUX_BIN to flux-core's `flux`, or put it on PATH; tests/run runs these tests only when one is there)"
        )
    })
}

/// `$MC_TEST_PYTHON`, else the workspace's `.venv` (made by `.ci/setup`); fails the test when
/// neither is there: CI always runs `.ci/setup`, so a missing venv is a set-up error.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("MC_TEST_PYTHON") {
        return p.into();
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    assert!(
        venv.exists(),
        "{} is missing (fix: run .ci/setup, which installs the test tools into .venv, or set MC_TEST_PYTHON)",
        venv.display()
    );
    venv
}

/// Fails the test unless a Docker Engine answers (`docker version`). The machines the suite
/// runs on have one; its absence is a set-up error, not a reason to pass.
pub fn docker_engine() {
    let answered = Command::new("docker")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        answered,
        "this test needs a Docker Engine and `docker version` got no answer (fix: install Docker and start its daemon, or point DOCKER_HOST at one)"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    // Both cases in one test: the environment is per process, and tests run in threads.
    #[test]
    fn flux_bin_must_name_a_file() {
        let dir = std::env::temp_dir().join(format!("testkit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fake = dir.join("flux");
        std::fs::write(&fake, "").unwrap();
        // SAFETY: no other thread of this test binary reads the environment.
        unsafe { std::env::set_var("FLUX_BIN", &fake) };
        assert_eq!(find_flux(), Some(fake.clone()));
        unsafe { std::env::set_var("FLUX_BIN", dir.join("missing")) };
        let refused = std::panic::catch_unwind(find_flux).unwrap_err();
        let msg = refused
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_default();
        assert!(msg.contains("is not a file"), "{msg}");
        unsafe { std::env::remove_var("FLUX_BIN") };
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
