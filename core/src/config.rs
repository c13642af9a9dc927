//! Rendering the broker config (flux-config-bootstrap(5)) from the cluster description.
//!
//! Templates are embedded in the binary; a directory given at run time overrides them file by
//! file. Values reach templates already encoded as TOML literals, so a name or path can never
//! break the syntax of the rendered file.

use std::path::Path;

use serde::Serialize;

use crate::Error;
use crate::description::ClusterDescription;

/// Name of the broker config template.
pub const BROKER_TEMPLATE: &str = "broker.toml.tera";

const EMBEDDED: &[(&str, &str)] = &[(
    BROKER_TEMPLATE,
    include_str!("../../templates/broker.toml.tera"),
)];

/// The templates used to render files.
#[derive(Clone)]
pub struct Templates {
    tera: tera::Tera,
}

fn template_err(name: &str, e: impl std::fmt::Display) -> Error {
    Error::Template {
        name: name.into(),
        reason: e.to_string(),
    }
}

impl Templates {
    /// The templates built into this binary.
    pub fn embedded() -> Self {
        let mut tera = tera::Tera::new();
        for (name, text) in EMBEDDED {
            tera.add_raw_template(name, text)
                .expect("embedded templates parse (checked by tests)");
        }
        Templates { tera }
    }

    /// The embedded templates, with any file of the same name in `dir` taking its place.
    pub fn with_overrides(dir: &Path) -> Result<Self, Error> {
        let mut t = Templates::embedded();
        if !dir.is_dir() {
            return Err(template_err(
                &dir.display().to_string(),
                "is not a directory of templates",
            ));
        }
        for (name, _) in EMBEDDED {
            let path = dir.join(name);
            if path.exists() {
                let text = std::fs::read_to_string(&path).map_err(|e| Error::Io {
                    path: path.display().to_string(),
                    io: e,
                })?;
                t.tera
                    .add_raw_template(name, &text)
                    .map_err(|e| template_err(&path.display().to_string(), e))?;
            }
        }
        Ok(t)
    }

    /// The broker config: the spec's own `flux.brokerConfig` when given, else the rendered one.
    pub fn broker_config(&self, d: &ClusterDescription) -> Result<String, Error> {
        if let Some(own) = &d.flux.broker_config {
            return Ok(own.clone());
        }
        let ctx = tera::Context::from_serialize(&BrokerContext::new(d))
            .map_err(|e| template_err(BROKER_TEMPLATE, e))?;
        let text = self
            .tera
            .render(BROKER_TEMPLATE, &ctx)
            .map_err(|e| template_err(BROKER_TEMPLATE, e))?;
        // An override template could produce anything; refuse to hand Flux invalid TOML.
        text.parse::<toml::Table>()
            .map_err(|e| template_err(BROKER_TEMPLATE, format!("rendered invalid TOML: {e}")))?;
        Ok(text)
    }
}

/// Template variables: strings are TOML literals (quoted and escaped), numbers are plain.
#[derive(Serialize)]
struct BrokerContext {
    name: String,
    max_size: u32,
    port: u16,
    bind: String,
    connect: String,
    hostlist: String,
    /// Per-broker `hosts` entries as TOML inline tables; empty when one hostlist entry does.
    endpoints: Vec<String>,
    /// Brokers share one machine, so R's hostnames cannot match the hardware's.
    noverify: bool,
    curve_cert: String,
    resource_path: String,
    archive_db: String,
    simple_scheduler: bool,
    queue_policy: String,
}

fn lit(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

impl BrokerContext {
    fn new(d: &ClusterDescription) -> Self {
        BrokerContext {
            name: d.name.clone(),
            max_size: d.max_size,
            port: d.network.port,
            bind: lit(&d.network.bind),
            connect: lit(&d.network.connect),
            hostlist: lit(&d.hostlist),
            endpoints: d
                .network
                .endpoints
                .iter()
                .map(|e| {
                    format!(
                        "{{ host = {}, bind = {}, connect = {} }}",
                        lit(&e.host),
                        lit(&e.bind),
                        lit(&e.connect)
                    )
                })
                .collect(),
            noverify: !d.network.endpoints.is_empty(),
            curve_cert: lit(&d.paths.curve_cert),
            resource_path: lit(&d.paths.resource),
            archive_db: lit(&format!("{}/job-archive.sqlite", d.paths.statedir)),
            simple_scheduler: d.flux.simple_scheduler,
            queue_policy: lit(&d.flux.queue_policy),
        }
    }
}
