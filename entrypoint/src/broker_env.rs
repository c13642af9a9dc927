//! Starting `flux-broker` itself instead of `flux broker`, where brokers share a machine.
//!
//! The `flux` command builds an environment (Flux's exec, module, connector, Python and Lua
//! paths, its own directory in `PATH`), then execs `flux-broker`: about 3 ms of loading and
//! path work for every broker. Brokers sharing a machine and a launch all get the same
//! environment, so the first to start asks `flux env` for it once and leaves it in a cache
//! file; every broker then execs `flux-broker` in exactly that environment, as the brokers
//! of `flux start` inherit it from their one `flux` command.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The broker's argv and complete environment when it is started directly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Direct {
    pub argv: Vec<String>,
    pub environment: BTreeMap<String, String>,
}

/// The command that prints, NUL-separated, the environment `flux` gives the commands it runs.
pub fn env_command(flux: &Path) -> Vec<String> {
    vec![
        flux.display().to_string(),
        "env".into(),
        "env".into(),
        "-0".into(),
    ]
}

/// `NAME=value` entries separated by NUL; `None` when any is not UTF-8 or has no `=`, or
/// when there are none (an empty cache: this `flux` cannot say).
pub fn parse(bytes: &[u8]) -> Option<BTreeMap<String, String>> {
    let mut env = BTreeMap::new();
    for entry in bytes.split(|b| *b == 0).filter(|e| !e.is_empty()) {
        let (k, v) = std::str::from_utf8(entry).ok()?.split_once('=')?;
        env.insert(k.to_string(), v.to_string());
    }
    (!env.is_empty()).then_some(env)
}

/// `flux-broker` in the first directory of `FLUX_EXEC_PATH` that has it, as `flux broker`
/// looks it up.
pub fn find_broker(env: &BTreeMap<String, String>) -> Option<PathBuf> {
    env.get("FLUX_EXEC_PATH")?
        .split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join("flux-broker"))
        .find(|p| p.is_file())
}

/// `broker` (`… flux broker ARGS`, with `flux` at `flux_at`) as `… flux-broker ARGS` in
/// the environment `env`, or `None` when `env` does not lead to a `flux-broker`.
pub fn direct(broker: &[String], flux_at: usize, env: BTreeMap<String, String>) -> Option<Direct> {
    if broker.get(flux_at + 1).map(String::as_str) != Some("broker") {
        return None;
    }
    let exe = find_broker(&env)?;
    let mut argv = broker[..flux_at].to_vec();
    argv.push(exe.display().to_string());
    argv.extend_from_slice(&broker[flux_at + 2..]);
    Some(Direct {
        argv,
        environment: env,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_with_exec_path(dir: &Path) -> BTreeMap<String, String> {
        BTreeMap::from([
            (
                "FLUX_EXEC_PATH".into(),
                format!("/nonexistent:{}", dir.display()),
            ),
            ("PATH".into(), "/opt/flux/bin:/usr/bin".into()),
        ])
    }

    #[test]
    fn nul_separated_entries_parse_and_values_keep_their_equals_signs() {
        let env = parse(b"A=1\0B=x=y\0EMPTY=\0").unwrap();
        assert_eq!(env["A"], "1");
        assert_eq!(env["B"], "x=y");
        assert_eq!(env["EMPTY"], "");
        assert_eq!(parse(b""), None);
        assert_eq!(parse(b"no-equals\0"), None);
        assert_eq!(parse(b"A=\xff\0"), None);
    }

    #[test]
    fn flux_broker_replaces_flux_and_broker_keeping_the_wrap_and_the_arguments() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("flux-broker"), "").unwrap();
        let broker: Vec<String> = [
            "strace",
            "-f",
            "/opt/flux/bin/flux",
            "broker",
            "-Sa=b",
            "cmd",
        ]
        .map(String::from)
        .to_vec();
        let d = direct(&broker, 2, env_with_exec_path(dir.path())).unwrap();
        let exe = dir.path().join("flux-broker").display().to_string();
        assert_eq!(d.argv, ["strace", "-f", exe.as_str(), "-Sa=b", "cmd"]);
        assert_eq!(d.environment["PATH"], "/opt/flux/bin:/usr/bin");
    }

    #[test]
    fn no_flux_broker_on_the_exec_path_or_no_broker_word_means_flux_broker() {
        let dir = tempfile::tempdir().unwrap();
        let broker: Vec<String> = ["flux", "broker"].map(String::from).to_vec();
        assert_eq!(direct(&broker, 0, env_with_exec_path(dir.path())), None);
        std::fs::write(dir.path().join("flux-broker"), "").unwrap();
        assert_eq!(direct(&broker, 1, env_with_exec_path(dir.path())), None);
        assert_eq!(direct(&broker, 0, BTreeMap::new()), None);
    }
}
