//! Launching MiniClusters: as local processes ([`process`]), and the state every launch keeps
//! on disk ([`state`]) so any later command can find, watch and tear it down.

pub mod docker;
pub mod error;
pub mod kubernetes;
pub mod local_resources;
pub mod outcome;
pub mod process;
pub mod request;
pub mod state;

pub use error::{Error, Result};

use minicluster_core::MiniCluster;
use state::Record;

/// One broker of a launched MiniCluster.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RankState {
    pub rank: u32,
    /// The process (process launcher); 0 elsewhere.
    pub pid: i32,
    pub running: bool,
}

/// What every transport does with a MiniCluster: the interface `run`, `up` and pools build on.
#[allow(async_fn_in_trait)] // used with concrete launchers only; no `dyn` needed
pub trait Launcher {
    /// `process`, `docker` or `kubernetes`.
    fn kind(&self) -> &'static str;
    /// Starts every broker; the launch record.
    async fn launch(&self, mc: &MiniCluster) -> Result<Record>;
    /// The state of each broker.
    async fn ranks(&self, name: &str) -> Result<Vec<RankState>>;
    /// Streams rank 0's output to ours until it ends; its exit code.
    async fn follow_rank0(&self, name: &str) -> Result<i32>;
    /// Stops everything and removes what the launch made; how many brokers were running.
    async fn down(&self, name: &str) -> Result<usize>;
}
