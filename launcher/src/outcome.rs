//! What became of a process launch, read from disk alone — so a control plane that was
//! killed (even with SIGKILL) can re-attach and learn, exactly once, whether the work ran and
//! with what exit code.
//!
//! Rank 0's entrypoint runs with `--exit-file <dir>/rank-0.exit`: before any user work it
//! creates `rank-0.exit.started` exclusively with its pid, and when the broker ends it writes
//! the exit code to `rank-0.exit` (write + rename) before it exits. The launch record is
//! saved before anything is spawned. Together they tell every state apart.

use std::path::{Path, PathBuf};

use nix::sys::signal::kill;
use nix::unistd::Pid;
use serde::Serialize;

use crate::error::{Error, Result, io};
use crate::process::alive_ranks;
use crate::state::{self, Record};

/// Rank 0's exit file, in the launch directory.
pub const RANK0_EXIT: &str = "rank-0.exit";

/// What became of a launch's work (rank 0's initial program and broker).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum Outcome {
    /// Nothing was spawned: no launch directory, no record, or a record without pids.
    NotLaunched,
    /// Still running (rank 0, or before its claim any recorded rank).
    Running { pid: i32 },
    /// Rank 0 ended and recorded its exit code (125: the entrypoint's start failed).
    Finished { exit_code: i32 },
    /// It ended without an exit code; the reason says what is known.
    Lost { reason: String },
}

/// `<dir>/rank-0.exit`.
pub fn exit_file(dir: &Path) -> PathBuf {
    dir.join(RANK0_EXIT)
}

/// `<dir>/rank-0.exit.started`, the claim rank 0 makes before any user work.
pub fn started_file(dir: &Path) -> PathBuf {
    dir.join(format!("{RANK0_EXIT}.started"))
}

/// The outcome of launch `name` under `root`. Reads files and looks at processes; changes
/// nothing. The order of the reads makes every answer true of some moment: a process is
/// seen dead before the files that it would have written are read.
pub fn read(root: &Path, name: &str) -> Result<Outcome> {
    let record = match Record::load(root, name) {
        Ok(r) => r,
        Err(Error::NotFound(_)) => return Ok(Outcome::NotLaunched),
        Err(e) => return Err(e),
    };
    let dir = state::dir(root, name);
    // Before the files: a rank seen dead here wrote nothing after.
    let live = alive_ranks(&record, root).into_iter().find(|r| r.running);
    if let Some(o) = finished(&dir)? {
        return Ok(o);
    }
    let Some(claim) = read_claim(&dir)? else {
        return Ok(match (live, record.pids.first()) {
            (Some(r), _) => Outcome::Running { pid: r.pid },
            (None, None) => Outcome::NotLaunched,
            (None, Some(pid)) => Outcome::Lost {
                reason: format!(
                    "rank 0 (pid {pid}) ended before it claimed {RANK0_EXIT}: its start was refused or it was killed before the work began (see {})",
                    dir.join("rank-0.log").display()
                ),
            },
        });
    };
    // The claim's pid; without one (the claim is being written) the recorded rank 0.
    let pid = claim.or(record.pids.first().copied());
    if let Some(pid) = pid
        && runs(pid, &exit_file(&dir))
    {
        return Ok(Outcome::Running { pid });
    }
    // Dead now: whatever it wrote before it died is there to read.
    if let Some(o) = finished(&dir)? {
        return Ok(o);
    }
    Ok(Outcome::Lost {
        reason: match pid {
            Some(pid) => {
                format!("rank 0 (pid {pid}) ended without recording an exit code: killed?")
            }
            None => {
                "rank 0 claimed its exit file, recorded no pid and no exit code: killed?".into()
            }
        },
    })
}

/// Finished (or Lost, for an exit file that holds no exit code) when rank 0's exit file is
/// there.
fn finished(dir: &Path) -> Result<Option<Outcome>> {
    let path = exit_file(dir);
    let Some(text) = read_if_there(&path)? else {
        return Ok(None);
    };
    Ok(Some(match text.trim().parse() {
        Ok(exit_code) => Outcome::Finished { exit_code },
        Err(_) => Outcome::Lost {
            reason: format!(
                "{} holds {:?}, not an exit code",
                path.display(),
                text.trim()
            ),
        },
    }))
}

/// None: no claim; Some(None): a claim without a (readable) pid yet.
fn read_claim(dir: &Path) -> Result<Option<Option<i32>>> {
    Ok(read_if_there(&started_file(dir))?.map(|t| t.trim().parse().ok().filter(|p: &i32| *p > 0)))
}

fn read_if_there(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io("read", path)(e)),
    }
}

/// Whether `pid` is alive and is the entrypoint that claimed `exit`: kill(pid, 0) succeeds
/// and its command line names the exit file (so neither a zombie nor a reused pid counts).
fn runs(pid: i32, exit: &Path) -> bool {
    if pid <= 0 || kill(Pid::from_raw(pid), None).is_err() {
        return false;
    }
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    String::from_utf8_lossy(&cmdline).contains(&exit.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A launch directory with a record of `pids` under a fresh root.
    fn launch(pids: Vec<i32>) -> (tempfile::TempDir, PathBuf) {
        let root = tempfile::tempdir().unwrap();
        let dir = state::create_dir(root.path(), "mc").unwrap();
        Record {
            name: "mc".into(),
            launcher: "process".into(),
            size: 1,
            persistent: false,
            created: 0,
            pids,
            flux_uri: None,
            resources: vec![],
        }
        .save(root.path())
        .unwrap();
        (root, dir)
    }

    /// The pid of a process that has ended and been reaped.
    fn dead_pid() -> i32 {
        let mut c = std::process::Command::new("true").spawn().unwrap();
        c.wait().unwrap();
        c.id() as i32
    }

    #[test]
    fn no_directory_or_no_record_or_no_pid_is_not_launched() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(read(root.path(), "mc").unwrap(), Outcome::NotLaunched);
        std::fs::create_dir(root.path().join("mc")).unwrap();
        assert_eq!(read(root.path(), "mc").unwrap(), Outcome::NotLaunched);
        let (root, _dir) = launch(vec![]);
        assert_eq!(read(root.path(), "mc").unwrap(), Outcome::NotLaunched);
    }

    #[test]
    fn an_exit_code_is_finished() {
        let (root, dir) = launch(vec![dead_pid()]);
        std::fs::write(started_file(&dir), format!("{}\n", dead_pid())).unwrap();
        std::fs::write(exit_file(&dir), "7\n").unwrap();
        assert_eq!(
            read(root.path(), "mc").unwrap(),
            Outcome::Finished { exit_code: 7 }
        );
        std::fs::write(exit_file(&dir), "seven\n").unwrap();
        assert!(
            matches!(read(root.path(), "mc").unwrap(), Outcome::Lost { reason } if reason.contains("not an exit code"))
        );
    }

    #[test]
    fn a_claim_whose_pid_is_gone_without_a_code_is_lost() {
        let pid = dead_pid();
        let (root, dir) = launch(vec![pid]);
        std::fs::write(started_file(&dir), format!("{pid}\n")).unwrap();
        assert_eq!(
            read(root.path(), "mc").unwrap(),
            Outcome::Lost {
                reason: format!("rank 0 (pid {pid}) ended without recording an exit code: killed?")
            }
        );
    }

    #[test]
    fn a_live_pid_that_is_not_the_claimant_does_not_count() {
        // This test process is alive, but its command line does not name the exit file.
        let me = std::process::id() as i32;
        let (root, dir) = launch(vec![me]);
        std::fs::write(started_file(&dir), format!("{me}\n")).unwrap();
        assert!(matches!(
            read(root.path(), "mc").unwrap(),
            Outcome::Lost { .. }
        ));
    }

    #[test]
    fn recorded_ranks_gone_before_a_claim_are_lost() {
        let pid = dead_pid();
        let (root, _dir) = launch(vec![pid]);
        let o = read(root.path(), "mc").unwrap();
        assert!(
            matches!(&o, Outcome::Lost { reason } if reason.contains("before it claimed")),
            "{o:?}"
        );
    }

    #[test]
    fn outcomes_serialise_with_their_state() {
        let j = serde_json::to_value(Outcome::Finished { exit_code: 7 }).unwrap();
        assert_eq!(j, serde_json::json!({"state": "finished", "exit_code": 7}));
        let j = serde_json::to_value(Outcome::NotLaunched).unwrap();
        assert_eq!(j, serde_json::json!({"state": "not-launched"}));
    }
}
