//! The MiniCluster a job runs on: the pool's template (or a plain one of the pool's image),
//! named after the launch, sized for the job, running the job's command, with a kubernetes
//! pool's fields on its spec. A pure function.

use minicluster_core::MiniCluster;

use crate::pool::{LauncherType, Pool};
use crate::store::Job;

/// Builds and validates the MiniCluster for `job` on `pool`; the error says what to fix.
pub fn for_job(job: &Job, pool: &Pool, name: &str) -> Result<MiniCluster, String> {
    let mut mc = unchecked(job, pool, name)?;
    if pool.launcher == LauncherType::Kubernetes {
        super::kubernetes::apply_pool_fields(&mut mc, pool, job.id)?;
    }
    let problems = minicluster_core::spec::validate(&mc);
    if !problems.is_empty() {
        let list: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        return Err(format!(
            "job {} on pool {}: the MiniCluster is not valid: {}",
            job.id,
            pool.name,
            list.join("; ")
        ));
    }
    Ok(mc)
}

/// The MiniCluster before the launcher's own fields and validation.
fn unchecked(job: &Job, pool: &Pool, name: &str) -> Result<MiniCluster, String> {
    let mut mc = match &pool.template {
        Some(t) => {
            let loaded = minicluster_core::spec::load_bytes(
                &format!("pool {} template", pool.name),
                t.as_bytes(),
            )
            .map_err(|e| e.to_string())?;
            let n = loaded.clusters.len();
            match loaded.clusters.into_iter().next() {
                Some(c) if n == 1 => c.cluster,
                _ => {
                    return Err(format!(
                        "pool {}: its template holds {n} MiniClusters; a pool launches one (fix: `minicluster pools update {} -f ONE.yaml`)",
                        pool.name, pool.name
                    ));
                }
            }
        }
        None => {
            let image = pool
                .set
                .get("image")
                .cloned()
                .unwrap_or_else(|| minicluster_core::spec::DEFAULT_CONTAINER_IMAGE.to_string());
            serde_norway::from_str(&format!(
                "apiVersion: flux-framework.org/v1alpha2\nkind: MiniCluster\nmetadata: {{name: x}}\nspec:\n  size: 1\n  logging: {{quiet: true}}\n  containers:\n    - image: {}\n",
                serde_json::to_string(&image).expect("a string serialises")
            ))
            .map_err(|e| format!("pool {}: image {image:?}: {e}", pool.name))?
        }
    };
    mc.metadata.name = Some(name.to_string());
    let size = job
        .spec
        .size
        .or_else(|| pool.set.get("size").and_then(|s| s.parse().ok()))
        .map(|s| i32::try_from(s).unwrap_or(i32::MAX));
    if let Some(s) = size {
        mc.spec.size = s;
    }
    mc.spec.tasks = mc.spec.tasks.max(mc.spec.size);
    let idx = mc.spec.flux_container_index().unwrap_or(0);
    if let Some(c) = mc.spec.containers.get_mut(idx) {
        if pool.template.is_some()
            && let Some(img) = pool.set.get("image")
        {
            c.image = img.clone();
        }
        if !job.spec.command.is_empty() {
            c.command = Some(shell_words::join(&job.spec.command));
        }
        for (k, v) in &pool.set {
            if let Some(var) = k.strip_prefix("env.") {
                c.environment.insert(var.to_string(), v.clone());
            }
        }
        c.environment
            .insert("MINICLUSTER_JOB".into(), job.id.to_string());
    }
    Ok(mc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::LauncherType;
    use crate::store::{JobState, NewJob};

    fn job(size: Option<u32>) -> Job {
        Job {
            state: JobState::Claimed,
            ..Job::waiting(
                7,
                NewJob {
                    queue: "q".into(),
                    user: "u".into(),
                    command: vec!["echo".into(), "a b".into()],
                    size,
                    ..NewJob::default()
                },
            )
        }
    }

    #[test]
    fn plain_pool_sizes_and_commands() {
        let mut p = Pool::new("cpu", LauncherType::Process);
        p.set.insert("size".into(), "2".into());
        p.set.insert("env.OMP_NUM_THREADS".into(), "4".into());
        let mc = for_job(&job(None), &p, "cpu-j7").unwrap();
        assert_eq!(mc.metadata.name.as_deref(), Some("cpu-j7"));
        assert_eq!(mc.spec.size, 2);
        let c = &mc.spec.containers[0];
        assert_eq!(c.command.as_deref(), Some("echo 'a b'"));
        assert_eq!(c.environment["OMP_NUM_THREADS"], "4");
        assert_eq!(c.environment["MINICLUSTER_JOB"], "7");
        assert_eq!(
            for_job(&job(Some(3)), &p, "x").unwrap().spec.size,
            3,
            "the job's size wins"
        );
    }

    #[test]
    fn template_and_its_errors() {
        let mut p = Pool::new("t", LauncherType::Process);
        p.template = Some("apiVersion: flux-framework.org/v1alpha2\nkind: MiniCluster\nmetadata: {name: tpl}\nspec:\n  size: 4\n  maxSize: 8\n  containers:\n    - image: img\n      command: hostname\n".into());
        let mc = for_job(&job(None), &p, "t-j7").unwrap();
        assert_eq!(
            (mc.spec.size, mc.spec.containers[0].image.as_str()),
            (4, "img")
        );
        let e = for_job(&job(Some(0)), &p, "t-j7").unwrap_err();
        assert!(e.contains("spec.size"), "{e}");
        p.template = Some("kind: MiniCluster\n".into());
        assert!(for_job(&job(None), &p, "t-j7").is_err());
    }
}
