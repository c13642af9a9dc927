//! Reading the facts a plan is built from: environment, hostname, files present, `flux`.

use std::path::{Path, PathBuf};

use minicluster_core::ClusterDescription;

use crate::cert::CertFacts;
use crate::cli::StartArgs;
use crate::error::{Error, Result};
use crate::identity::IdentityFacts;
use crate::plan::Facts;

pub fn gather(d: &ClusterDescription, args: &StartArgs, dry_run: bool) -> Result<Facts> {
    let os_hostname = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    let flux = match find_flux(d, args.flux.as_deref()) {
        Ok(f) => f,
        // A dry run on a machine without Flux still shows the plan.
        Err(e) if dry_run => {
            let shown = d
                .flux
                .view
                .as_ref()
                .map_or(PathBuf::from("flux"), |v| Path::new(v).join("bin/flux"));
            tracing::warn!("{e}; the plan shows {}", shown.display());
            shown
        }
        Err(e) => return Err(e),
    };
    Ok(Facts {
        identity: IdentityFacts {
            completion_index: std::env::var("JOB_COMPLETION_INDEX").ok(),
            os_hostname,
            rank_flag: args.rank,
            hostname_flag: args.hostname.clone(),
        },
        cert: CertFacts {
            mounted: args.cert.clone(),
            mounted_exists: args.cert.exists(),
            shared_dir: args.shared_dir.clone(),
            wait: args.cert_timeout,
        },
        flux,
        self_exe: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("entrypoint")),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        path: std::env::var("PATH").ok(),
        ld_library_path: std::env::var("LD_LIBRARY_PATH").ok(),
        view_python: d.flux.view.as_deref().and_then(view_python),
    })
}

/// `--flux`/`$FLUX_BIN`, else the view's, else `flux` on the spec's `PATH` (its
/// `environment`), else on ours (in a container: the image's `Env`).
fn find_flux(d: &ClusterDescription, given: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = given {
        return if p.is_file() {
            Ok(p.to_path_buf())
        } else {
            Err(Error::FluxNotFound {
                searched: format!("--flux/FLUX_BIN {} is not a file", p.display()),
            })
        };
    }
    let mut searched = Vec::new();
    if let Some(view) = &d.flux.view {
        let p = Path::new(view).join("bin/flux");
        if p.is_file() {
            return Ok(p);
        }
        searched.push(p.display().to_string());
    }
    let spec_path = d.environment.get("PATH").map(std::ffi::OsString::from);
    for (what, path) in [
        ("the spec's PATH", spec_path),
        ("PATH", std::env::var_os("PATH")),
    ] {
        let Some(path) = path else { continue };
        for dir in std::env::split_paths(&path) {
            let p = dir.join("flux");
            if p.is_file() {
                return Ok(p);
            }
        }
        searched.push(format!("{what} ({})", path.to_string_lossy()));
    }
    Err(Error::FluxNotFound {
        searched: format!("looked in {}", searched.join(" and ")),
    })
}

/// The view's Python packages, when it has some (`lib/python3.X/site-packages`).
fn view_python(view: &str) -> Option<String> {
    let lib = Path::new(view).join("lib");
    let mut found: Vec<String> = std::fs::read_dir(&lib)
        .ok()?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("python3"))
        .map(|e| e.path().join("site-packages"))
        .filter(|p| p.is_dir())
        .map(|p| p.display().to_string())
        .collect();
    found.sort();
    found.pop()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::description;

    #[test]
    fn flux_is_found_on_the_spec_path_before_ours() {
        let dir = tempfile::tempdir().unwrap();
        let flux = dir.path().join("flux");
        std::fs::write(&flux, "").unwrap();
        let mut d = description(2, 2);
        d.flux.view = None;
        d.environment.insert(
            "PATH".into(),
            format!("/nonexistent:{}", dir.path().display()),
        );
        assert_eq!(find_flux(&d, None).unwrap(), flux);
        d.environment.insert("PATH".into(), "/nonexistent".into());
        let e = find_flux(&d, Some(Path::new("/nonexistent/flux"))).unwrap_err();
        assert!(
            e.to_string().contains("--flux/FLUX_BIN /nonexistent/flux"),
            "{e}"
        );
    }
}
