//! What the launcher's process tests share.
#![allow(dead_code)] // each test file uses its own part

use std::path::PathBuf;

/// The workspace's binaries (built with the workspace's tests).
pub fn bin(name: &str) -> PathBuf {
    let dir = std::env::current_exe().unwrap();
    let p = dir.parent().unwrap().parent().unwrap().join(name);
    assert!(
        p.exists(),
        "{} is missing: build the workspace (cargo build --workspace)",
        p.display()
    );
    p
}
