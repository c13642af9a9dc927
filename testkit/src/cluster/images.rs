//! The images the test cluster runs, built here (no registry is reachable) and imported into
//! its containerd:
//!
//! - `minicluster.test/pause:dev` — the pod sandbox: this program's `pause`;
//! - `minicluster.test/runner:dev` — our binaries (entrypoint, minicluster, minicluster-rest)
//!   and the libraries they load: what the operator's init containers and Deployment run;
//! - `minicluster.test/flux:VERSION` — Debian bookworm (debootstrap) with the runtime
//!   libraries of the given flux-core, that installation at its own prefix, and our
//!   binaries; `PATH` in the image config names the prefix's `bin`.
//!
//! Each image is a Docker image archive (manifest.json, config, layer tars) that `ctr images
//! import` takes. The debootstrap root file system is cached (`/var/cache/minicluster-testkit`)
//! and rebuilt when the package list changes.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;
use sha2::{Digest, Sha256};

use super::{Inputs, Layout, config::PAUSE_IMAGE, procs};
use crate::error::{Error, Result, io};

pub const RUNNER_IMAGE: &str = "minicluster.test/runner:dev";
/// Our binaries that go into the images.
const OUR_BINARIES: &[&str] = &["entrypoint", "minicluster", "minicluster-rest"];
/// What Flux needs at run time that no ELF file names: its Python commands and their modules.
const FLUX_EXTRA_PACKAGES: &[&str] = &[
    "python3",
    "python3-cffi-backend",
    "python3-yaml",
    "python3-ply",
    "lua-posix",
    "procps",
];

/// The Flux image's tag for a flux-core installation (`flux version`'s libflux-core).
pub fn flux_image(version: &str) -> String {
    format!("minicluster.test/flux:{version}")
}

pub async fn build_and_import(
    layout: &Layout,
    inputs: &Inputs,
    progress: &dyn Fn(&str),
) -> Result<()> {
    let work = layout.path("images");
    std::fs::create_dir_all(&work).map_err(io("creating the image directory"))?;
    let me = std::env::current_exe().map_err(io("finding this program"))?;

    let pause = stage(&work.join("pause"), std::slice::from_ref(&me))?;
    let archived = archive(
        &work,
        PAUSE_IMAGE,
        &[layer(&work, "pause", &pause, &["."])?],
        &["/usr/local/bin/minicluster-testkit", "pause"],
        "/usr/local/bin:/usr/bin:/bin",
    )?;
    import(layout, &archived)?;

    let ours: Vec<PathBuf> = OUR_BINARIES
        .iter()
        .map(|b| inputs.our_bin.join(b))
        .collect();
    for b in &ours {
        if !b.is_file() {
            return Err(Error::Missing {
                what: b.display().to_string(),
                fix: "cargo build --workspace --bins".into(),
            });
        }
    }
    let runner = stage(&work.join("runner"), &ours)?;
    let archived = archive(
        &work,
        RUNNER_IMAGE,
        &[layer(&work, "runner", &runner, &["."])?],
        &["/usr/local/bin/entrypoint"],
        "/usr/local/bin:/usr/bin:/bin",
    )?;
    import(layout, &archived)?;
    progress(&format!("imported {PAUSE_IMAGE} and {RUNNER_IMAGE}"));

    let prefix = flux_prefix(&inputs.flux)?;
    let version = flux_version(&inputs.flux)?;
    let packages = flux_packages(&prefix)?;
    let base = base_rootfs(&packages, progress)?;
    // Flux at its own prefix (its paths are compiled in), our binaries in /usr/local/bin.
    let top = work.join("flux-top");
    let _ = std::fs::remove_dir_all(&top);
    let bins = top.join("usr/local/bin");
    std::fs::create_dir_all(&bins).map_err(io("staging the Flux image"))?;
    for b in &ours {
        copy(b, &bins.join(b.file_name().expect("a file name")))?;
    }
    let rel_prefix = prefix.strip_prefix("/").unwrap_or(&prefix).to_path_buf();
    let top_layer = layer_from(
        &work,
        "flux-top",
        &[
            ("/", vec![rel_prefix.display().to_string()]),
            (top.to_str().unwrap_or("."), vec!["usr".into()]),
        ],
    )?;
    let tag = flux_image(&version);
    let path = format!(
        "{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        prefix.join("bin").display()
    );
    let archived = archive(
        &work,
        &tag,
        &[Layer::cached(&base)?, top_layer],
        &["/usr/local/bin/entrypoint"],
        &path,
    )?;
    import(layout, &archived)?;
    std::fs::write(layout.path("flux-image"), &tag).map_err(io("recording the Flux image"))?;
    let _ = std::fs::remove_dir_all(&work);
    progress(&format!(
        "imported {tag} (flux-core {version} from {})",
        prefix.display()
    ));
    Ok(())
}

/// The Flux image `up` imported.
pub fn imported_flux_image(layout: &Layout) -> Option<String> {
    std::fs::read_to_string(layout.path("flux-image")).ok()
}

/// One layer: its tar file and the digest of its contents.
struct Layer {
    tar: PathBuf,
    diff_id: String,
}

impl Layer {
    fn cached(tar: &Path) -> Result<Layer> {
        Ok(Layer {
            tar: tar.to_path_buf(),
            diff_id: sha256_file(tar)?,
        })
    }
}

/// A root file system with `binaries` in /usr/local/bin and the libraries they load.
fn stage(root: &Path, binaries: &[PathBuf]) -> Result<PathBuf> {
    let _ = std::fs::remove_dir_all(root);
    let bins = root.join("usr/local/bin");
    std::fs::create_dir_all(&bins).map_err(io("staging an image"))?;
    for b in binaries {
        copy(b, &bins.join(b.file_name().expect("a file name")))?;
        for lib in libraries(b)? {
            copy(&lib, &root.join(lib.strip_prefix("/").unwrap_or(&lib)))?;
        }
    }
    std::fs::create_dir_all(root.join("tmp")).map_err(io("staging an image"))?;
    Ok(root.to_path_buf())
}

fn copy(from: &Path, to: &Path) -> Result<()> {
    if let Some(p) = to.parent() {
        std::fs::create_dir_all(p).map_err(io(format!("creating {}", p.display())))?;
    }
    std::fs::copy(from, to).map_err(io(format!("copying {}", from.display())))?;
    Ok(())
}

/// The shared libraries (and the loader) `binary` needs, from `ldd`.
fn libraries(binary: &Path) -> Result<Vec<PathBuf>> {
    let out = procs::output(Command::new("ldd").arg(binary))?;
    Ok(out
        .split_whitespace()
        .filter(|w| w.starts_with('/'))
        .map(PathBuf::from)
        .collect())
}

fn layer(work: &Path, name: &str, root: &Path, entries: &[&str]) -> Result<Layer> {
    layer_from(
        work,
        name,
        &[(
            root.to_str().unwrap_or("."),
            entries.iter().map(|e| e.to_string()).collect(),
        )],
    )
}

/// A layer tar of `entries` relative to each directory (GNU tar keeps owners, modes, links).
fn layer_from(work: &Path, name: &str, parts: &[(&str, Vec<String>)]) -> Result<Layer> {
    let tar = work.join(format!("{name}.layer.tar"));
    let mut cmd = Command::new("tar");
    cmd.arg("--numeric-owner").arg("-cf").arg(&tar);
    for (dir, entries) in parts {
        cmd.arg("-C").arg(dir).args(entries);
    }
    procs::output(&mut cmd)?;
    Layer::cached(&tar)
}

fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).map_err(io(format!("reading {}", path.display())))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(io(format!("reading {}", path.display())))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(format!("sha256:{}", hex::encode(h.finalize())))
}

/// A Docker image archive of `layers` named `tag`.
fn archive(
    work: &Path,
    tag: &str,
    layers: &[Layer],
    entrypoint: &[&str],
    path: &str,
) -> Result<PathBuf> {
    let dir = work.join(format!("archive-{}", tag.replace(['/', ':'], "_")));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(io("staging an image archive"))?;
    let config = json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Env": [format!("PATH={path}")],
            "Entrypoint": entrypoint,
            "WorkingDir": "/",
        },
        "rootfs": {
            "type": "layers",
            "diff_ids": layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>(),
        },
    });
    let config_bytes = serde_json::to_vec(&config).expect("json");
    let config_name = format!("{}.json", hex::encode(Sha256::digest(&config_bytes)));
    std::fs::write(dir.join(&config_name), &config_bytes).map_err(io("writing an image config"))?;
    let mut names = Vec::new();
    for (i, l) in layers.iter().enumerate() {
        let name = format!("layer{i}.tar");
        // A hard link where possible: layers are large.
        if std::fs::hard_link(&l.tar, dir.join(&name)).is_err() {
            copy(&l.tar, &dir.join(&name))?;
        }
        names.push(name);
    }
    let manifest = json!([{ "Config": config_name, "RepoTags": [tag], "Layers": names }]);
    std::fs::write(
        dir.join("manifest.json"),
        serde_json::to_vec(&manifest).expect("json"),
    )
    .map_err(io("writing an image manifest"))?;
    let out = work.join(format!("{}.tar", tag.replace(['/', ':'], "_")));
    procs::output(
        Command::new("tar")
            .arg("-cf")
            .arg(&out)
            .arg("-C")
            .arg(&dir)
            .arg("."),
    )?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(out)
}

fn import(layout: &Layout, archive: &Path) -> Result<()> {
    procs::output(
        Command::new("ctr")
            .arg("--address")
            .arg(layout.containerd_socket())
            .args(["--namespace", "k8s.io", "images", "import"])
            .arg(archive),
    )?;
    let _ = std::fs::remove_file(archive);
    Ok(())
}

/// The installation prefix of `flux` (`PREFIX/bin/flux`).
fn flux_prefix(flux: &Path) -> Result<PathBuf> {
    let real = std::fs::canonicalize(flux).map_err(io(format!("resolving {}", flux.display())))?;
    real.parent()
        .and_then(Path::parent)
        .filter(|p| p.join("lib").is_dir())
        .map(Path::to_path_buf)
        .ok_or_else(|| Error::Missing {
            what: format!("a flux-core installation around {}", real.display()),
            fix: "point FLUX_BIN at PREFIX/bin/flux of an installed flux-core".into(),
        })
}

/// libflux-core's version, from `flux version`.
fn flux_version(flux: &Path) -> Result<String> {
    let out = procs::output(Command::new(flux).arg("version"))?;
    out.lines()
        .find_map(|l| l.strip_prefix("libflux-core:"))
        .map(|v| v.trim().to_string())
        .ok_or_else(|| Error::Command {
            command: format!("{} version", flux.display()),
            detail: format!("no libflux-core line in {out:?}"),
        })
}

/// The Debian packages that hold the libraries Flux's programs and modules load (found with
/// `ldd` and `dpkg -S` on this machine, where that flux-core was built), and the extras.
fn flux_packages(prefix: &Path) -> Result<BTreeSet<String>> {
    let mut libs = BTreeSet::new();
    let mut todo = vec![prefix.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d)
            .map_err(io(format!("reading {}", d.display())))?
            .flatten()
        {
            let p = e.path();
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                todo.push(p);
            } else if ft.is_file() && is_elf(&p) {
                // ldd refuses some modules; what it lists of the rest is what counts.
                if let Ok(found) = libraries(&p) {
                    libs.extend(found.into_iter().filter(|l| !l.starts_with(prefix)));
                }
            }
        }
    }
    let mut packages: BTreeSet<String> =
        FLUX_EXTRA_PACKAGES.iter().map(|s| s.to_string()).collect();
    for lib in libs {
        let usr = Path::new("/usr").join(lib.strip_prefix("/").unwrap_or(&lib));
        let owner = [lib.clone(), usr].iter().find_map(|p| {
            let out = procs::output(Command::new("dpkg").arg("-S").arg(p)).ok()?;
            out.split(':').next().map(|s| s.trim().to_string())
        });
        match owner {
            Some(p) => {
                packages.insert(p);
            }
            None => {
                return Err(Error::Missing {
                    what: format!(
                        "the Debian package of {} (a library Flux loads)",
                        lib.display()
                    ),
                    fix: "build flux-core against Debian's libraries".into(),
                });
            }
        }
    }
    Ok(packages)
}

fn is_elf(p: &Path) -> bool {
    let mut magic = [0u8; 4];
    std::fs::File::open(p)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && &magic == b"\x7fELF"
}

/// A Debian bookworm root file system with `packages`, as a layer tar; cached by package list.
fn base_rootfs(packages: &BTreeSet<String>, progress: &dyn Fn(&str)) -> Result<PathBuf> {
    let list = packages.iter().cloned().collect::<Vec<_>>().join(",");
    let key = &hex::encode(Sha256::digest(list.as_bytes()))[..12];
    let cache = PathBuf::from(
        std::env::var_os("MINICLUSTER_TESTKIT_CACHE")
            .unwrap_or_else(|| "/var/cache/minicluster-testkit".into()),
    );
    let tar = cache.join(format!("bookworm-{key}.tar"));
    if tar.is_file() {
        return Ok(tar);
    }
    std::fs::create_dir_all(&cache).map_err(io(format!("creating {}", cache.display())))?;
    let root = cache.join(format!("bookworm-{key}.rootfs"));
    let _ = std::fs::remove_dir_all(&root);
    let mirror = std::env::var("MINICLUSTER_TESTKIT_MIRROR")
        .unwrap_or_else(|_| "http://deb.debian.org/debian".into());
    progress(&format!(
        "debootstrap bookworm with {} packages from {mirror}",
        packages.len()
    ));
    let built = procs::output(
        Command::new("debootstrap")
            .args([
                "--variant=minbase",
                &format!("--include={list}"),
                "bookworm",
            ])
            .arg(&root)
            .arg(&mirror),
    );
    if let Err(e) = built {
        let _ = std::fs::remove_dir_all(&root);
        return Err(e);
    }
    // Package caches and lists are not needed at run time.
    for d in ["var/cache/apt/archives", "var/lib/apt/lists"] {
        let _ = std::fs::remove_dir_all(root.join(d));
        let _ = std::fs::create_dir_all(root.join(d));
    }
    let partial = tar.with_extension("partial");
    procs::output(
        Command::new("tar")
            .args(["--numeric-owner", "-cf"])
            .arg(&partial)
            .arg("-C")
            .arg(&root)
            .arg("."),
    )?;
    std::fs::rename(&partial, &tar).map_err(io("keeping the root file system"))?;
    let _ = std::fs::remove_dir_all(&root);
    Ok(tar)
}
