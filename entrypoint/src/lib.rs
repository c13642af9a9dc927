//! The entrypoint of a MiniCluster broker: decides (pure [`plan`]) and then does
//! ([`run`]) everything between a container start and a running Flux broker.

pub mod batch;
pub mod broker_env;
pub mod cert;
pub mod cli;
pub mod commands;
pub mod curve_check;
pub mod curve_handshake;
pub mod error;
pub mod exit_file;
pub mod facts;
pub mod files;
pub mod identity;
pub mod plan;
pub mod ready;
pub mod run;
pub mod signals;
pub mod supervise;
pub mod termination;
pub mod wait;

#[cfg(test)]
mod testing;

pub use error::{Error, Result};
