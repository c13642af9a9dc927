//! Pools and queues for batch work on MiniClusters. This crate holds the parts every other
//! piece agrees on: tags ([`tags`]) and which pool may run which job ([`routing`]).

pub mod dispatch;
pub mod pool;
pub mod queue;
pub mod routing;
pub mod server;
pub mod store;
pub mod sync;
pub mod tags;

pub use pool::{LauncherType, Pool, PoolError};
pub use routing::{Route, eligible};
pub use tags::{TagError, TagValue, Tags};
