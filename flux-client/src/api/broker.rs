//! Broker attributes, environment and state machine.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;

use crate::client::{Client, Request};
use crate::error::Result;

/// `state-machine.get`: the broker's state (`run` once the instance is up) and how long it
/// has been in it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BrokerState {
    pub state: String,
    pub duration: f64,
}

#[derive(Deserialize)]
struct AttrValue {
    value: String,
}

#[derive(Deserialize)]
struct Env {
    env: BTreeMap<String, String>,
}

impl Client {
    /// A broker attribute (`size`, `rank`, `hostlist`, `rundir`, …).
    pub async fn attr_get(&self, name: &str) -> Result<String> {
        let req = Request::new("attr.get").json(&json!({ "name": name }))?;
        Ok(self.rpc(req).await?.json::<AttrValue>()?.value)
    }

    /// A broker attribute as seen by one rank.
    pub async fn attr_get_on(&self, rank: u32, name: &str) -> Result<String> {
        let req = Request::new("attr.get")
            .rank(rank)
            .json(&json!({ "name": name }))?;
        Ok(self.rpc(req).await?.json::<AttrValue>()?.value)
    }

    /// The broker's environment variables among `names` (unset names are left out).
    pub async fn broker_getenv(&self, names: &[&str]) -> Result<BTreeMap<String, String>> {
        let req = Request::new("broker.getenv").json(&json!({ "names": names }))?;
        Ok(self.rpc(req).await?.json::<Env>()?.env)
    }

    pub async fn broker_state(&self) -> Result<BrokerState> {
        let req = Request::new("state-machine.get").json(&json!({}))?;
        self.rpc(req).await?.json()
    }

    /// Wait until the broker reaches RUN (the instance is up), at most `timeout`.
    pub async fn wait_until_running(&self, timeout: Duration) -> Result<()> {
        self.rpc_within(Request::new("state-machine.wait"), timeout)
            .await
            .map(|_| ())
    }

    /// The instance's configuration as the broker parsed it.
    pub async fn config_get(&self) -> Result<serde_json::Value> {
        self.rpc(Request::new("config.get")).await?.json()
    }
}
