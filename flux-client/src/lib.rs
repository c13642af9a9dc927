//! A native client of the Flux broker's local connector.
//!
//! It speaks the wire protocol itself (RFC 3 messages, RFC 6 RPCs), so programs need neither
//! libflux nor Python nor a `flux` subprocess to talk to a broker:
//!
//! ```no_run
//! # async fn demo() -> flux_client::Result<()> {
//! use flux_client::{Client, JobRequest, SubmitOptions};
//! let flux = Client::connect_env().await?; // $FLUX_URI, e.g. local:///run/flux/local
//! println!("instance of {} brokers", flux.attr_get("size").await?);
//! let id = flux.submit(&JobRequest::new(["hostname"]), SubmitOptions::default()).await?;
//! let mut out = flux.job_output(id)?;
//! while let Some(event) = out.next_output().await {
//!     println!("{:?}", event?);
//! }
//! # Ok(()) }
//! ```
//!
//! Layers: [`message`] (frames of one message), [`codec`] (the stream header), [`client`]
//! (connection, matchtags, streams, events), [`api`] (typed calls), [`jobid`], [`jobspec`].

pub mod api;
pub mod client;
pub mod codec;
pub mod error;
pub mod jobid;
pub mod jobspec;
pub mod message;

pub use api::*;
pub use client::{
    Client, ClientOptions, EventStream, Request, Response, ResponseStream, local_path,
};
pub use error::{Error, Result};
pub use jobid::JobId;
pub use jobspec::{JobRequest, Jobspec};
pub use message::{Message, MsgType};
