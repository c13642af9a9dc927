//! What the user asked for (`-f FILE`, or `--size/--image/-- CMD`), as a valid MiniCluster.

use std::path::PathBuf;

use minicluster_core::MiniCluster;

use crate::error::{Error, Result};

#[derive(Clone, Debug, Default)]
pub struct Request {
    /// A MiniCluster YAML; the flags below override its fields.
    pub file: Option<PathBuf>,
    pub name: Option<String>,
    pub size: Option<u32>,
    pub image: Option<String>,
    /// The command (`-- CMD ARGS…`), run across the cluster (`flux submit`).
    pub command: Vec<String>,
    /// Persistent: brokers stay up and take jobs (`up`).
    pub persistent: bool,
}

pub const DEFAULT_NAME: &str = "minicluster";

impl Request {
    /// The MiniCluster to launch, validated: every problem at once, with its fix.
    pub fn minicluster(&self) -> Result<MiniCluster> {
        let mut mc = match &self.file {
            Some(f) => {
                let loaded = minicluster_core::spec::load_file(f)?;
                let n = loaded.clusters.len();
                let mut clusters = loaded.clusters.into_iter();
                match (clusters.next(), n) {
                    (Some(c), 1) => c.cluster,
                    _ => {
                        return Err(Error::Setup {
                            what: f.display().to_string(),
                            reason: format!("holds {n} MiniClusters; a launch takes one"),
                            fix: "split the file, one MiniCluster each".into(),
                        });
                    }
                }
            }
            None => serde_norway::from_str(&format!(
                "apiVersion: flux-framework.org/v1alpha2\nkind: MiniCluster\nmetadata: {{name: {DEFAULT_NAME}}}\nspec:\n  size: 1\n  containers:\n    - image: {}\n",
                minicluster_core::spec::DEFAULT_CONTAINER_IMAGE
            ))
            .expect("the built-in MiniCluster parses"),
        };
        if let Some(n) = &self.name {
            mc.metadata.name = Some(n.clone());
        }
        if let Some(s) = self.size {
            mc.spec.size = i32::try_from(s).unwrap_or(i32::MAX);
            mc.spec.tasks = mc.spec.tasks.max(mc.spec.size);
        }
        let idx = mc.spec.flux_container_index().unwrap_or(0);
        if let Some(c) = mc.spec.containers.get_mut(idx) {
            if let Some(img) = &self.image {
                c.image = img.clone();
            }
            if !self.command.is_empty() {
                c.command = Some(shell_words::join(&self.command));
            }
        }
        if self.persistent {
            mc.spec.interactive = true;
        }
        if self.file.is_none() && mc.spec.logging.is_none() {
            // From flags: only the command's output (and errors) by default.
            mc.spec.logging = Some(minicluster_core::spec::LoggingSpec {
                quiet: true,
                ..Default::default()
            });
        }
        let problems = minicluster_core::spec::validate(&mc);
        if !problems.is_empty() {
            return Err(Error::Core(minicluster_core::Error::Invalid(problems)));
        }
        Ok(mc)
    }
}
