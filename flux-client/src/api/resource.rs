//! Resources (which ranks are up, what is allocated) and the overlay network's health.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::client::{Client, Request};
use crate::error::{Error, Result};

/// `resource.status` (rank 0): the instance's resources and which ranks are online.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ResourceStatus {
    #[serde(rename = "R")]
    pub r: Value,
    #[serde(default)]
    pub drain: Map<String, Value>,
    /// Idset of online ranks, e.g. `0-3`.
    pub online: String,
    pub offline: String,
    #[serde(default)]
    pub exclude: String,
    #[serde(default)]
    pub torpid: String,
}

impl ResourceStatus {
    pub fn online_ranks(&self) -> Result<Vec<u32>> {
        parse_idset(&self.online)
    }
    pub fn offline_ranks(&self) -> Result<Vec<u32>> {
        parse_idset(&self.offline)
    }
}

/// `resource.sched-status` (rank 0): all, down and allocated resource sets (Rv1).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SchedStatus {
    pub all: Value,
    pub down: Value,
    pub allocated: Value,
}

/// `overlay.health`: the subtree's state as the rank sees it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct OverlayHealth {
    pub rank: u32,
    /// `full`, `partial`, `degraded`, `lost`, `offline`, …
    pub status: String,
    pub duration: f64,
    #[serde(default)]
    pub children: Vec<ChildHealth>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ChildHealth {
    pub rank: u32,
    pub status: String,
    pub duration: f64,
}

/// `overlay.topology`: the tree below a rank.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Topology {
    pub rank: u32,
    pub size: u32,
    #[serde(default)]
    pub children: Vec<Topology>,
}

impl Topology {
    /// Ranks in the tree, this one first.
    pub fn ranks(&self) -> Vec<u32> {
        let mut out = vec![self.rank];
        for c in &self.children {
            out.extend(c.ranks());
        }
        out
    }
}

impl Client {
    pub async fn resource_status(&self) -> Result<ResourceStatus> {
        self.rpc(Request::new("resource.status").rank(0))
            .await?
            .json()
    }

    pub async fn sched_status(&self) -> Result<SchedStatus> {
        self.rpc(Request::new("resource.sched-status").rank(0))
            .await?
            .json()
    }

    /// The job manager's counters (active/inactive jobs, …).
    pub async fn job_manager_stats(&self) -> Result<Value> {
        self.rpc(Request::new("job-manager.stats-get").rank(0))
            .await?
            .json()
    }

    pub async fn overlay_health(&self, rank: u32) -> Result<OverlayHealth> {
        self.rpc(Request::new("overlay.health").rank(rank))
            .await?
            .json()
    }

    pub async fn overlay_topology(&self, rank: u32) -> Result<Topology> {
        let req = Request::new("overlay.topology")
            .rank(0)
            .json(&json!({ "rank": rank }))?;
        self.rpc(req).await?.json()
    }
}

/// Parse an RFC 22 idset (`0-3,7`, or empty) into its ids.
pub fn parse_idset(s: &str) -> Result<Vec<u32>> {
    let bad = || Error::Payload {
        topic: "idset".into(),
        reason: format!("{s:?} is not an idset"),
    };
    let inner = s.trim();
    let inner = inner
        .strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .unwrap_or(inner);
    let mut ids = Vec::new();
    for part in inner.split(',').filter(|p| !p.is_empty()) {
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (
                a.parse::<u32>().map_err(|_| bad())?,
                b.parse::<u32>().map_err(|_| bad())?,
            ),
            None => {
                let n = part.parse::<u32>().map_err(|_| bad())?;
                (n, n)
            }
        };
        if hi < lo || (hi - lo) > 10_000_000 {
            return Err(bad());
        }
        ids.extend(lo..=hi);
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idsets() {
        assert_eq!(parse_idset("").unwrap(), Vec::<u32>::new());
        assert_eq!(parse_idset("0").unwrap(), vec![0]);
        assert_eq!(parse_idset("0-2,5").unwrap(), vec![0, 1, 2, 5]);
        assert_eq!(parse_idset("[1-2]").unwrap(), vec![1, 2]);
        assert!(parse_idset("2-1").is_err());
        assert!(parse_idset("x").is_err());
    }
}
