//! A Docker image built here from scratch (no registry): the `flux` stand-in as `flux`, our
//! entrypoint's libraries, `hostname`, optionally a shell, imported with `docker import`.
//! Removed on drop.

use std::path::Path;
use std::process::{Command, Output};

use super::{bin, text};

pub fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("the docker command")
}

pub struct Image {
    pub tag: String,
}

impl Image {
    /// `name` tells images of different tests apart; `shell` adds this machine's `/bin/sh`.
    pub fn build(name: &str, shell: bool) -> Image {
        Image::build_with(
            name,
            shell,
            "/usr/local/bin",
            "/usr/local/bin:/usr/bin:/bin",
        )
    }

    /// With `flux` in `flux_dir` and `path` as the image's `PATH` (which need not name it).
    pub fn build_with(name: &str, shell: bool, flux_dir: &str, path: &str) -> Image {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let bins = root.join(flux_dir.trim_start_matches('/'));
        std::fs::create_dir_all(&bins).unwrap();
        std::fs::copy(bin("flux-standin"), bins.join("flux-standin")).unwrap();
        std::os::unix::fs::symlink("flux-standin", bins.join("flux")).unwrap();
        let mut with_libs = vec![bin("entrypoint"), bin("flux-standin")];
        // `hostname`, the command users try first.
        std::fs::create_dir_all(root.join("bin")).unwrap();
        let hostname = std::fs::canonicalize("/bin/hostname").unwrap();
        std::fs::copy(&hostname, root.join("bin/hostname")).unwrap();
        with_libs.push(hostname);
        if shell {
            std::fs::create_dir_all(root.join("bin")).unwrap();
            let sh = std::fs::canonicalize("/bin/sh").unwrap();
            std::fs::copy(&sh, root.join("bin/sh")).unwrap();
            with_libs.push(sh);
        }
        for b in with_libs {
            copy_libraries(&b, root);
        }
        Image::import(
            &format!("{name}-{}:standin", std::process::id()),
            root,
            path,
        )
    }

    /// The tree at `root` as image `minicluster-test-<tag>`, with `path` as its `PATH`.
    pub fn import(tag: &str, root: &Path, path: &str) -> Image {
        let tag = format!("minicluster-test-{tag}");
        let archive = root.with_extension("tar");
        let tar = Command::new("tar")
            .arg("-C")
            .arg(root)
            .arg("-cf")
            .arg(&archive)
            .arg(".")
            .status()
            .unwrap();
        assert!(tar.success());
        let out = Command::new("docker")
            .args(["import", "--change", &format!("ENV PATH={path}")])
            .arg(&archive)
            .arg(&tag)
            .output()
            .unwrap();
        let _ = std::fs::remove_file(&archive);
        assert!(out.status.success(), "docker import: {}", text(&out.stderr));
        Image { tag }
    }
}

/// The shared libraries `binary` loads, at their paths under `root`.
pub fn copy_libraries(binary: &Path, root: &Path) {
    let ldd = Command::new("ldd").arg(binary).output().unwrap();
    for lib in text(&ldd.stdout)
        .split_whitespace()
        .filter(|w| w.starts_with('/'))
    {
        let dest = root.join(lib.trim_start_matches('/'));
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(lib, &dest).unwrap();
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        let _ = docker(&["rmi", "-f", &self.tag]);
    }
}
