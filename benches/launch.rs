//! A MiniCluster of N local brokers against Flux's own single-machine test instance of the
//! same size, `flux start --test-size=N`, measured in the same run, in turn (ours, reference,
//! ours, …) so that load from elsewhere falls on both alike. Both run `hostname`: it costs
//! what `true` costs and prints at once, so each run gives the time to the first output line
//! (read from the pipe, as a user sees it) and the whole run. The process launcher's brokers
//! run the real `flux` (`$FLUX_BIN`, else `flux` on PATH; without one the bench fails).
//!
//! ```text
//! cargo build --release -p minicluster-entrypoint           # the binaries it launches
//! cargo bench -p minicluster --bench launch                 # bring-up and run -- CMD, N = 1, 4, 16, 64
//! cargo bench -p minicluster --bench launch -- memory       # N = 64, 128: time and peak memory
//! cargo bench -p minicluster --bench launch -- docker       # docker launcher, N = 1, 4, 16
//! ```
//!
//! RUNS (default 5) rounds; SIZES=1,4 picks the sizes of the first. Medians are printed, and
//! the ratio of our median to the reference's; for bring-up also the median of the ratios of
//! each round's two runs with its 95% interval (from 6 rounds on), since one run differs
//! from the next by more than the two sides do.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::io::{Read, Seek};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::image::Image;

/// One timed run: to the first byte on stdout, the whole run, and (when sampled) the peak of
/// the summed resident memory of the process and all its descendants.
#[derive(Clone, Copy)]
struct Sample {
    first: Option<Duration>,
    total: Duration,
    peak_pss: Option<u64>,
}

/// Runs `cmd`, timing it; `sample_memory` walks /proc every 250 ms.
fn timed(cmd: &mut Command, sample_memory: bool) -> Sample {
    // Its errors go to a file, read only when it fails.
    let mut errors = tempfile::tempfile().unwrap();
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(errors.try_clone().unwrap());
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
    let mut out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        let mut first = None;
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 {
                break;
            }
            first.get_or_insert_with(|| started.elapsed());
        }
        first
    });
    let done = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = sample_memory.then(|| {
        let (done, peak, root) = (Arc::clone(&done), Arc::clone(&peak), child.id() as i32);
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                peak.fetch_max(tree_pss(root), Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(250));
            }
        })
    });
    let status = child.wait().unwrap();
    let total = started.elapsed();
    done.store(true, Ordering::SeqCst);
    if let Some(s) = sampler {
        s.join().unwrap();
    }
    let first = reader.join().unwrap();
    if !status.success() {
        let mut stderr = String::new();
        let _ = errors.seek(std::io::SeekFrom::Start(0));
        let _ = errors.read_to_string(&mut stderr);
        panic!("{cmd:?}: {status}\n{stderr}");
    }
    Sample {
        first,
        total,
        peak_pss: sample_memory.then(|| peak.load(Ordering::SeqCst)),
    }
}

/// Memory of `root` and every process below it: the sum of their proportional set sizes
/// (PSS: private pages, and each shared page divided among the processes sharing it), so
/// that N copies of one program count its text once, not N times as summed RSS would.
fn tree_pss(root: i32) -> u64 {
    let mut parent: HashMap<i32, i32> = HashMap::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // After the command's closing parenthesis: state, then the parent's pid.
        if let Some(ppid) = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
        {
            parent.insert(pid, ppid.parse().unwrap_or(0));
        }
    }
    let in_tree = |mut pid: i32| {
        while pid > 1 {
            if pid == root {
                return true;
            }
            pid = parent.get(&pid).copied().unwrap_or(0);
        }
        false
    };
    let pss_kib = |pid: i32| {
        let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
        let line = rollup.lines().find(|l| l.starts_with("Pss:"))?;
        line.split_whitespace().nth(1)?.parse::<u64>().ok()
    };
    parent
        .keys()
        .filter(|pid| in_tree(**pid))
        .filter_map(|pid| pss_kib(*pid))
        .sum::<u64>()
        * 1024
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// The ratio of each round's two runs (they ran back to back, so a slow moment of the
/// machine falls on both), as "median [low, high]": the median and a distribution-free
/// interval that holds the true median ratio with at least 95% probability (order
/// statistics of the binomial, no assumption about the spread). With fewer than 6 rounds
/// no such interval exists and only the median is given.
fn paired_ratio(ours: &[Sample], reference: &[Sample]) -> String {
    let mut r: Vec<f64> = ours
        .iter()
        .zip(reference)
        .map(|(o, r)| o.total.as_secs_f64() / r.total.as_secs_f64())
        .collect();
    r.sort_by(f64::total_cmp);
    let n = r.len();
    let mid = if n % 2 == 1 {
        r[n / 2]
    } else {
        (r[n / 2 - 1] + r[n / 2]) / 2.0
    };
    // The largest k with P(Binomial(n, 1/2) < k) <= 2.5%: [r(k), r(n+1-k)] covers the median.
    let below = |k: usize| -> f64 { (0..k).map(|i| binomial(n, i) / 2f64.powi(n as i32)).sum() };
    match (1..=n / 2).take_while(|&k| below(k) <= 0.025).last() {
        Some(k) => format!("{mid:.3}× [{:.3}, {:.3}]", r[k - 1], r[n - k]),
        None => format!("{mid:.3}×"),
    }
}

fn binomial(n: usize, k: usize) -> f64 {
    (0..k).fold(1.0, |acc, i| acc * (n - i) as f64 / (i + 1) as f64)
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// Medians of one side's samples: (to first output, whole run, peak PSS).
fn medians(s: &[Sample]) -> (Option<Duration>, Duration, Option<u64>) {
    let firsts: Vec<Duration> = s.iter().filter_map(|x| x.first).collect();
    let first = (firsts.len() == s.len()).then(|| median(firsts));
    let total = median(s.iter().map(|x| x.total).collect());
    let mut peaks: Vec<u64> = s.iter().filter_map(|x| x.peak_pss).collect();
    peaks.sort();
    (first, total, peaks.get(peaks.len() / 2).copied())
}

struct Bench {
    flux: PathBuf,
    runs: usize,
    state: tempfile::TempDir,
    /// A MiniCluster whose rank 0 runs the command itself as its initial program (launcher
    /// mode), as `flux start` does.
    launcher_mode: PathBuf,
}

impl Bench {
    /// `minicluster run --size N ARGS -- hostname`; the process launcher's brokers run the
    /// real flux, the docker launcher's the image's.
    fn ours(&self, size: u32, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_minicluster"));
        cmd.args(["run", "--size", &size.to_string()])
            .args(args)
            .args(["--", "hostname"])
            .env("MINICLUSTER_STATE_DIR", self.state.path())
            .env("MINICLUSTER_ENTRYPOINT", common::bin("entrypoint"))
            .env_remove("FLUX_BIN");
        if !args.contains(&"--launcher") {
            cmd.env("FLUX_BIN", &self.flux);
        }
        cmd
    }

    /// `flux start --test-size=N ARGS hostname`.
    fn reference(&self, size: u32, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.flux);
        // flux start kills brokers still running 20 s after the first exits; 128 brokers
        // finishing rc3 on two cores take longer, and `run` waits for them too.
        cmd.args([
            "start",
            &format!("--test-size={size}"),
            "--test-exit-timeout=10m",
        ])
        .args(args)
        .arg("hostname");
        cmd
    }

    /// RUNS rounds of every command in turn; each command's samples.
    fn rounds(&self, commands: &[&dyn Fn() -> Command], memory: bool) -> Vec<Vec<Sample>> {
        let mut samples = vec![Vec::new(); commands.len()];
        for _ in 0..self.runs {
            for (c, s) in commands.iter().zip(&mut samples) {
                s.push(timed(&mut c(), memory));
            }
        }
        samples
    }
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn ratio(a: Duration, b: Duration) -> String {
    format!("{:.2}×", a.as_secs_f64() / b.as_secs_f64())
}

fn opt(d: Option<Duration>) -> String {
    d.map_or("—".into(), secs)
}

fn main() {
    let mode = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .unwrap_or_else(|| "time".into());
    let Some(flux) = minicluster_testkit::require::find_flux() else {
        eprintln!(
            "launch bench: no real flux (fix: set FLUX_BIN to flux-core's `flux`, or put it on PATH)"
        );
        std::process::exit(1);
    };
    let runs = std::env::var("RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    let state = tempfile::tempdir().unwrap();
    let launcher_mode = state.path().join("launcher-mode.yaml");
    std::fs::write(
        &launcher_mode,
        "apiVersion: flux-framework.org/v1alpha2\nkind: MiniCluster\nmetadata: {name: bringup}\nspec:\n  size: 1\n  logging: {quiet: true}\n  flux: {container: {disable: true}}\n  containers:\n    - {image: x, launcher: true, command: hostname}\n",
    )
    .unwrap();
    let bench = Bench {
        flux,
        runs,
        state,
        launcher_mode,
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let version = Command::new(&bench.flux)
        .arg("version")
        .output()
        .map(|o| common::text(&o.stdout))
        .unwrap_or_default();
    let version = version
        .lines()
        .find(|l| l.starts_with("libflux-core"))
        .unwrap_or("flux ?")
        .split_whitespace()
        .last()
        .unwrap_or("?")
        .to_string();
    println!(
        "{cores} cores, load {} at the start; flux-core {version}; {runs} runs of each, interleaved; medians",
        load()
    );
    match mode.as_str() {
        "memory" => memory(&bench),
        "docker" => docker(&bench),
        _ => time(&bench),
    }
    println!("load {} at the end", load());
}

/// The process launcher against the reference, N = SIZES (1, 4, 16, 64): bring-up (rank 0
/// runs `hostname` as its initial program on both sides) and `run -- hostname` (a job of N
/// tasks, `flux submit -N N -n N --watch`), the latter against the same job in the test
/// instance and against the bare test instance.
fn time(b: &Bench) {
    let sizes: Vec<u32> = std::env::var("SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 4, 16, 64]);
    let file = b.launcher_mode.to_str().unwrap();
    let mut bringup = Vec::new();
    let mut job = Vec::new();
    for size in sizes {
        let n = size.to_string();
        let submit = ["flux", "submit", "-N", &n, "-n", &n, "--quiet", "--watch"];
        let s = b.rounds(
            &[
                &|| b.ours(size, &["-q", "-f", file]),
                &|| b.reference(size, &[]),
                &|| b.ours(size, &["-q"]),
                &|| b.reference(size, &submit),
            ],
            false,
        );
        let [ol, r, os, rs] = [&s[0], &s[1], &s[2], &s[3]].map(|x| medians(x));
        bringup.push(format!(
            "| {size} | {} | {} | {} | {} | {} | {} |",
            opt(ol.0),
            secs(ol.1),
            opt(r.0),
            secs(r.1),
            ratio(ol.1, r.1),
            paired_ratio(&s[0], &s[1])
        ));
        job.push(format!(
            "| {size} | {} | {} | {} | {} | {} | {} |",
            opt(os.0),
            secs(os.1),
            opt(rs.0),
            secs(rs.1),
            ratio(os.1, rs.1),
            ratio(os.1, r.1)
        ));
    }
    println!(
        "\nBring-up: rank 0 runs `hostname` as its initial program (`run -f launcher-mode.yaml`)"
    );
    println!(
        "| brokers | `minicluster run` first output | whole run | `flux start --test-size=N hostname` first output | whole run | ratio of medians | ratio per round: median [95% interval] |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    bringup.iter().for_each(|l| println!("{l}"));
    println!(
        "\n`minicluster run --size N -- hostname`: a job of N tasks (`flux submit -N N -n N --watch`)"
    );
    println!(
        "| brokers | `minicluster run` first output | whole run | `flux start --test-size=N flux submit …` first output | whole run | ratio | ratio to bare `flux start --test-size=N hostname` |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    job.iter().for_each(|l| println!("{l}"));
}

/// Time and peak memory (all processes summed) at N = 64 and 128, bring-up as in [`time`].
fn memory(b: &Bench) {
    println!();
    println!(
        "| brokers | `minicluster run` whole run | peak memory (PSS) | `flux start --test-size=N hostname` whole run | peak memory (PSS) | ratio (time) | ratio (memory) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    let file = b.launcher_mode.to_str().unwrap();
    for size in [64u32, 128] {
        let s = b.rounds(
            &[&|| b.ours(size, &["-q", "-f", file]), &|| {
                b.reference(size, &[])
            }],
            true,
        );
        let (_, ot, om) = medians(&s[0]);
        let (_, rt, rm) = medians(&s[1]);
        let (om, rm) = (om.unwrap_or(0), rm.unwrap_or(1));
        println!(
            "| {size} | {} | {} MiB | {} | {} MiB | {} | {:.2}× |",
            secs(ot),
            om >> 20,
            secs(rt),
            rm >> 20,
            ratio(ot, rt),
            om as f64 / rm as f64
        );
    }
}

/// The docker launcher, with the tests' from-scratch stand-in image (our launcher's and
/// Docker's own cost) and with an image of this machine's real Flux, next to the reference.
fn docker(b: &Bench) {
    minicluster_testkit::require::docker_engine();
    let standin = Image::build("bench", false);
    let real = real_flux_image(&b.flux);
    println!();
    println!(
        "| image | brokers | docker launcher first output | whole run | `flux start --test-size=N hostname` first output | whole run | ratio |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (label, image) in [("stand-in", &standin), ("flux", &real)] {
        for size in [1u32, 4, 16] {
            let args = [
                "--launcher",
                "docker",
                "--image",
                image.tag.as_str(),
                "-q",
                "-f",
            ];
            let file = b.launcher_mode.to_str().unwrap();
            let ours = [&args[..], &[file]].concat();
            let s = b.rounds(
                &[&|| b.ours(size, &ours), &|| b.reference(size, &[])],
                false,
            );
            let (of, ot, _) = medians(&s[0]);
            let (rf, rt, _) = medians(&s[1]);
            println!(
                "| {label} | {size} | {} | {} | {} | {} | {} |",
                opt(of),
                secs(ot),
                opt(rf),
                secs(rt),
                ratio(ot, rt)
            );
        }
    }
}

/// An image of this machine's Flux, built from scratch: its install prefix, the Python it
/// runs with that Python's module directories, the programs its scripts call, and every
/// library all of these load. The launcher copies our entrypoint in; `flux` is on PATH.
fn real_flux_image(flux: &Path) -> Image {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let flux = std::fs::canonicalize(flux).unwrap();
    let prefix = flux.ancestors().nth(2).unwrap();
    let python = Command::new(&flux)
        .args([
            "python",
            "-c",
            "import sys; print(sys.executable); print(*sys.path, sep='\\n')",
        ])
        .output()
        .unwrap();
    let python = common::text(&python.stdout);
    let mut copies: Vec<PathBuf> = vec![prefix.into()];
    copies.extend(
        python
            .lines()
            .map(PathBuf::from)
            .filter(|p| p.is_absolute() && p.exists()),
    );
    for program in [
        "/bin/sh",
        "/bin/bash",
        "/bin/hostname",
        "/bin/true",
        "/usr/bin/env",
        "/sbin/ldconfig",
    ] {
        copies.push(program.into());
    }
    copies.extend(["/etc/ld.so.cache", "/etc/passwd", "/etc/group"].map(PathBuf::from));
    // Programs as their links name them and as the files the links lead to.
    let targets: Vec<PathBuf> = copies
        .iter()
        .filter_map(|p| std::fs::canonicalize(p).ok())
        .collect();
    copies.extend(targets);
    // One tar out of / and into the root keeps links as links and makes the parents.
    let mut pack = Command::new("tar")
        .arg("-C")
        .arg("/")
        .arg("-cf")
        .arg("-")
        .args(copies.iter().map(|p| p.strip_prefix("/").unwrap()))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let unpack = Command::new("tar")
        .arg("-C")
        .arg(root)
        .arg("-xf")
        .arg("-")
        .stdin(pack.stdout.take().unwrap())
        .status()
        .unwrap();
    assert!(
        pack.wait().unwrap().success() && unpack.success(),
        "copying Flux"
    );
    for d in ["tmp", "var/tmp"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
        std::fs::set_permissions(
            root.join(d),
            std::os::unix::fs::PermissionsExt::from_mode(0o1777),
        )
        .unwrap();
    }
    for elf in elf_files(root) {
        common::image::copy_libraries(&elf, root);
    }
    let path = format!(
        "{}:/usr/local/bin:/usr/bin:/bin",
        prefix.join("bin").display()
    );
    Image::import(&format!("bench-{}:flux", std::process::id()), root, &path)
}

/// Executables and libraries (ELF files) under `dir`.
fn elf_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let (path, kind) = (e.path(), e.file_type().unwrap());
        if kind.is_dir() {
            found.extend(elf_files(&path));
        } else if kind.is_file() {
            let mut magic = [0u8; 4];
            let elf = std::fs::File::open(&path)
                .and_then(|mut f| f.read_exact(&mut magic))
                .is_ok()
                && &magic == b"\x7fELF";
            if elf {
                found.push(path);
            }
        }
    }
    found
}
