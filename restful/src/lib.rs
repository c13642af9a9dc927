//! A flux-restful-api compatible REST server on the native Flux client.
//!
//! The routes under `/v1` answer with the same JSON shapes, status codes and messages as
//! flux-restful (1.1.0), so flux-restful-client works unchanged; `--strict` turns on our
//! stricter answers instead ([`ServerConfig::strict`]). Flux is reached through the
//! [`FluxBackend`] trait: [`FluxClientBackend`] on a broker's local socket, or the in-memory
//! [`StandIn`] for tests.

pub mod api;
pub mod auth;
pub mod backend;
pub mod config;
pub mod error;
pub mod jobs;
pub mod limits;
pub mod openapi;
pub mod params;
pub mod server;
pub mod standin;
pub mod submit;
pub mod web;

pub use backend::{FluxBackend, FluxClientBackend};
pub use error::{RestError, Result};
pub use server::{AppState, ServerConfig, router, serve};
pub use standin::StandIn;
