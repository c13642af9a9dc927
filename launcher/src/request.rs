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
    /// The command (`-- CMD ARGS…`), run across the cluster (`flux submit`); one that runs
    /// Flux jobs itself (`flux run …`) is rank 0's initial program instead (launcher mode).
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
        if let (Some(c), Some(img)) = (mc.spec.containers.get_mut(idx), &self.image) {
            c.image = img.clone();
        }
        if self.file.is_none() && self.image.is_some() {
            // From flags, --image names an image with Flux (as Docker needs): no view is
            // added on Kubernetes either. With a file, the file decides.
            mc.spec
                .flux
                .get_or_insert_with(Default::default)
                .container
                .get_or_insert_with(Default::default)
                .disable = true;
        }
        if let Some(c) = mc.spec.containers.get_mut(idx)
            && !self.command.is_empty()
        {
            let command = shell_words::join(&self.command);
            // `run -- flux run -N4 ./app`: wrapped in submit mode's `flux submit`, it
            // would wait for brokers the outer job holds. Unless the file chose a mode,
            // such a command is the initial program and gets the whole instance.
            if c.launcher.is_none()
                && c.batch != Some(true)
                && minicluster_core::spec::nested_flux_command(&command).is_some()
            {
                c.launcher = Some(true);
            }
            c.command = Some(command);
            if let Some(cmds) = c.commands.as_mut() {
                // The command on the command line replaces the file's work, script too.
                cmds.script = None;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn from_flags(command: &[&str]) -> Result<MiniCluster> {
        Request {
            size: Some(2),
            command: command.iter().map(|s| s.to_string()).collect(),
            ..Request::default()
        }
        .minicluster()
    }

    fn launcher_mode(mc: &MiniCluster) -> Option<bool> {
        mc.spec.containers[0].launcher
    }

    #[test]
    fn a_flux_job_command_from_flags_is_the_initial_program() {
        for cmd in [
            &["flux", "run", "-N2", "hostname"][..],
            &["flux", "submit", "--wait", "-N2", "./app"],
            &["sh", "-c", "cd /tmp && flux run -N2 hostname"],
        ] {
            let mc = from_flags(cmd).unwrap();
            assert_eq!(launcher_mode(&mc), Some(true), "{cmd:?}");
        }
        let mc = from_flags(&["hostname"]).unwrap();
        assert_eq!(
            launcher_mode(&mc),
            None,
            "plain commands stay in submit mode"
        );
    }

    #[test]
    fn an_image_from_flags_brings_its_own_flux() {
        let mc = Request {
            size: Some(2),
            image: Some("my/flux:1".into()),
            command: vec!["hostname".into()],
            ..Request::default()
        }
        .minicluster()
        .unwrap();
        assert!(mc.spec.flux.unwrap().container.unwrap().disable);
        let mc = from_flags(&["hostname"]).unwrap();
        assert!(
            !mc.spec
                .flux
                .and_then(|f| f.container)
                .is_some_and(|c| c.disable)
        );
    }

    #[test]
    fn a_file_that_chose_its_mode_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, container: &str| {
            let p = dir.path().join(name);
            std::fs::write(
                &p,
                format!("apiVersion: flux-framework.org/v1alpha2\nkind: MiniCluster\nmetadata: {{name: mc}}\nspec:\n  size: 2\n  containers:\n    - image: a\n{container}"),
            )
            .unwrap();
            p
        };
        let flux_run: Vec<String> = ["flux", "run", "-N2", "hostname"].map(String::from).into();
        let with = |f| Request {
            file: Some(f),
            command: flux_run.clone(),
            ..Request::default()
        };
        // A script in the file gives way to the command line's command.
        let scripted = file("script.yaml", "      commands:\n        script: echo hi\n");
        let mc = with(scripted).minicluster().unwrap();
        assert_eq!(launcher_mode(&mc), Some(true));
        assert_eq!(
            mc.spec.containers[0].commands.as_ref().unwrap().script,
            None
        );
        // launcher: false asks for submit mode: refused, with the fix.
        let submit = file("submit.yaml", "      launcher: false\n      command: x\n");
        let e = with(submit).minicluster().unwrap_err().to_string();
        assert!(e.contains("set launcher: true"), "{e}");
    }
}
