//! What the launch tests share: the workspace's binaries and output as text.
#![allow(dead_code)] // each test file uses its own part

pub mod image;
pub mod process;

use std::path::{Path, PathBuf};

/// A binary of the workspace; they live beside this package's.
pub fn bin(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_BIN_EXE_minicluster")).with_file_name(name);
    assert!(
        p.exists(),
        "{} is missing: build the workspace (cargo build --workspace)",
        p.display()
    );
    p
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}
