//! The resource set R of brokers that share this machine, read from `/proc` and `/sys`
//! instead of an hwloc scan (`flux R encode --local`, 30 ms that every broker would wait
//! for before its start).
//!
//! Only where the answer is certain to be hwloc's: the cores this process may run on, counted
//! as hwloc counts them (a core is in when one of its hardware threads is, numbered 0..n in
//! order), and no device hwloc could report as a GPU. Anything else (a GPU device node,
//! `FLUX_HWLOC_XMLFILE`, an unreadable file) gives `None`, and the brokers encode R as before.

use std::collections::BTreeSet;
use std::path::Path;

use minicluster_core::description::id_range;

/// R version 1 (Flux RFC 20) of `hostlist`'s `size` brokers, each with every core this process
/// may run on; `None` when only hwloc can tell.
pub fn local_r(hostlist: &str, size: u32) -> Option<String> {
    if std::env::var_os("FLUX_HWLOC_XMLFILE").is_some() || gpu_devices(Path::new("/dev")) {
        return None;
    }
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let allowed = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))?;
    let cores = count_cores(allowed.trim(), |cpu| {
        std::fs::read_to_string(format!(
            "/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list"
        ))
        .ok()
    })?;
    Some(r_json(hostlist, size, cores))
}

/// Device nodes through which hwloc finds GPUs (CUDA/NVML, ROCm, OpenCL or Level Zero).
fn gpu_devices(dev: &Path) -> bool {
    let named = |prefix: &str, dir: &Path| {
        std::fs::read_dir(dir).is_ok_and(|entries| {
            entries.flatten().any(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_prefix(prefix))
                    .is_some_and(|rest| rest.chars().next().is_some_and(|c| c.is_ascii_digit()))
            })
        })
    };
    named("nvidia", dev) || dev.join("kfd").exists() || named("renderD", &dev.join("dri"))
}

/// Cores among the CPUs of `allowed` (a Linux CPU list such as `0-3,8`): distinct sets of
/// hardware threads sharing a core, as `siblings(cpu)` gives them.
fn count_cores(allowed: &str, siblings: impl Fn(u32) -> Option<String>) -> Option<u32> {
    let mut cores = BTreeSet::new();
    for cpu in cpu_list(allowed)? {
        cores.insert(siblings(cpu)?.trim().to_string());
    }
    u32::try_from(cores.len()).ok().filter(|&n| n > 0)
}

/// The CPUs of a Linux CPU list (`0-3,8`).
fn cpu_list(list: &str) -> Option<Vec<u32>> {
    let mut cpus = Vec::new();
    for part in list.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => cpus.extend(a.parse::<u32>().ok()?..=b.parse::<u32>().ok()?),
            None => cpus.push(part.parse().ok()?),
        }
    }
    Some(cpus)
}

/// R as `flux R encode --hosts=HOSTLIST --cores=0-(cores-1)` writes it.
fn r_json(hostlist: &str, size: u32, cores: u32) -> String {
    serde_json::json!({
        "version": 1,
        "execution": {
            "R_lite": [{"rank": id_range(size), "children": {"core": id_range(cores)}}],
            "starttime": 0.0,
            "expiration": 0.0,
            "nodelist": [hostlist],
        }
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hardware_threads_of_one_core_count_once() {
        // Two cores with two threads each (0,2 and 1,3), all allowed.
        let siblings = |cpu: u32| Some(["0,2", "1,3", "0,2", "1,3"][cpu as usize].to_string());
        assert_eq!(count_cores("0-3", siblings), Some(2));
        // One thread of each core allowed: both cores, as hwloc restricts to the binding.
        assert_eq!(count_cores("0-1", siblings), Some(2));
        assert_eq!(count_cores("2", siblings), Some(1));
    }

    #[test]
    fn anything_unreadable_leaves_it_to_hwloc() {
        assert_eq!(count_cores("0-1", |_| None), None);
        assert_eq!(count_cores("0-x", |_| Some("0".into())), None);
        assert_eq!(count_cores("", |_| Some("0".into())), None);
    }

    #[test]
    fn cpu_lists_read_as_linux_writes_them() {
        assert_eq!(cpu_list("0-3,8,10-11"), Some(vec![0, 1, 2, 3, 8, 10, 11]));
        assert_eq!(cpu_list("5"), Some(vec![5]));
    }

    #[test]
    fn r_is_what_flux_r_encode_writes() {
        let r: serde_json::Value = serde_json::from_str(&r_json("mc-[0-3]", 4, 2)).unwrap();
        assert_eq!(
            r,
            serde_json::json!({"version": 1, "execution": {"R_lite": [{"rank": "0-3", "children": {"core": "0-1"}}],
                "starttime": 0.0, "expiration": 0.0, "nodelist": ["mc-[0-3]"]}})
        );
        let one: serde_json::Value = serde_json::from_str(&r_json("mc-0", 1, 1)).unwrap();
        assert_eq!(one["execution"]["R_lite"][0]["rank"], "0");
        assert_eq!(one["execution"]["R_lite"][0]["children"]["core"], "0");
    }

    #[test]
    fn gpu_device_nodes_are_recognised() {
        let dev = tempfile::tempdir().unwrap();
        assert!(!gpu_devices(dev.path()));
        std::fs::write(dev.path().join("nvidiactl"), "").unwrap();
        assert!(!gpu_devices(dev.path()), "the control node alone is no GPU");
        std::fs::create_dir(dev.path().join("dri")).unwrap();
        std::fs::write(dev.path().join("dri/card0"), "").unwrap();
        assert!(!gpu_devices(dev.path()));
        std::fs::write(dev.path().join("dri/renderD128"), "").unwrap();
        assert!(gpu_devices(dev.path()));
        let dev = tempfile::tempdir().unwrap();
        std::fs::write(dev.path().join("nvidia0"), "").unwrap();
        assert!(gpu_devices(dev.path()));
    }

    #[test]
    #[ignore = "needs a real flux: FLUX_BIN or flux on PATH (tests/run runs these when found)"]
    fn real_flux_local_r_is_what_flux_r_encode_local_finds() {
        let flux = minicluster_testkit::require::flux();
        let out = std::process::Command::new(&flux)
            .args(["R", "encode", "--hosts=mc-[0-3]", "--local"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let theirs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        match local_r("mc-[0-3]", 4) {
            Some(ours) => {
                let ours: serde_json::Value = serde_json::from_str(&ours).unwrap();
                assert_eq!(ours, theirs);
            }
            // Left to hwloc only where it may find a GPU, or is told to read a file.
            None => assert!(
                gpu_devices(Path::new("/dev")) || std::env::var_os("FLUX_HWLOC_XMLFILE").is_some(),
                "local_r gave up on a machine without GPU devices; flux found {theirs}"
            ),
        }
    }
}
