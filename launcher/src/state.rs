//! What a launch leaves on disk so that `status`, `logs` and `down` work from any later
//! command — also after the CLI that launched it was killed.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, io};

/// `$MINICLUSTER_STATE_DIR`, else `$XDG_STATE_HOME/minicluster`, else
/// `~/.local/state/minicluster`.
pub fn root() -> PathBuf {
    if let Some(d) = std::env::var_os("MINICLUSTER_STATE_DIR") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_STATE_HOME") {
        return PathBuf::from(d).join("minicluster");
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
    home.join(".local/state/minicluster")
}

/// One launched MiniCluster.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Record {
    pub name: String,
    /// `process`, `docker` or `kubernetes`.
    pub launcher: String,
    pub size: u32,
    pub persistent: bool,
    /// Unix seconds.
    pub created: u64,
    /// Process launcher: the process (group) of each rank.
    #[serde(default)]
    pub pids: Vec<i32>,
    /// How to reach rank 0 (`FLUX_URI` for the process launcher).
    #[serde(default)]
    pub flux_uri: Option<String>,
    /// Docker: the network and container ids; Kubernetes: the namespace.
    #[serde(default)]
    pub resources: Vec<String>,
}

pub fn dir(root: &Path, name: &str) -> PathBuf {
    root.join(name)
}

const RECORD: &str = "launch.json";

impl Record {
    pub fn load(root: &Path, name: &str) -> Result<Record> {
        let p = dir(root, name).join(RECORD);
        let text = std::fs::read_to_string(&p).map_err(|_| Error::NotFound(name.into()))?;
        serde_json::from_str(&text).map_err(|e| Error::Setup {
            what: p.display().to_string(),
            reason: format!("is not a launch record: {e}"),
            fix: format!("remove {} by hand", dir(root, name).display()),
        })
    }

    /// Writes the record (atomically) into the MiniCluster's private directory.
    pub fn save(&self, root: &Path) -> Result<()> {
        let d = dir(root, &self.name);
        let tmp = d.join(".launch.json.tmp");
        let text = serde_json::to_string_pretty(self).expect("a record serialises");
        std::fs::write(&tmp, text).map_err(io("write", &tmp))?;
        std::fs::rename(&tmp, d.join(RECORD)).map_err(io("write", &d))
    }

    /// Every recorded MiniCluster, by name.
    pub fn list(root: &Path) -> Vec<Record> {
        let mut out: Vec<Record> = std::fs::read_dir(root)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| Record::load(root, &e.file_name().to_string_lossy()).ok())
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }
}

/// Creates the MiniCluster's directory, owner-only (it holds the CURVE certificate).
pub fn create_dir(root: &Path, name: &str) -> Result<PathBuf> {
    std::fs::create_dir_all(root).map_err(io("create", root))?;
    let d = dir(root, name);
    std::fs::create_dir(&d).map_err(io("create", &d))?;
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700))
        .map_err(io("chmod", &d))?;
    Ok(d)
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
