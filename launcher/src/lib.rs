//! Launching MiniClusters: as local processes ([`process`]), and the state every launch keeps
//! on disk ([`state`]) so any later command can find, watch and tear it down.

pub mod docker;
pub mod error;
pub mod kubernetes;
pub mod process;
pub mod request;
pub mod state;

pub use error::{Error, Result};
