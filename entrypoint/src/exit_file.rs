//! `--exit-file PATH`: a start that can happen only once, and its exit code on disk.
//!
//! Before any user work runs, the entrypoint claims `PATH.started` by creating it exclusively
//! and writing its pid into it; a second start with the same PATH finds the claim and refuses,
//! so the work cannot run twice. When the broker ends (or the start fails after the claim),
//! the exit code goes to PATH through a temporary file and a rename, so a reader sees no code
//! or the whole one. Whoever launched the entrypoint can then tell, also after it was killed
//! itself: no claim (nothing ran), a claim whose pid runs (running), an exit code (finished),
//! or a claim whose pid is gone without a code (the entrypoint was killed).

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::files;

/// Exit code when the entrypoint itself could not start the broker.
pub const SETUP_FAILED: u8 = 125;

/// The exit code the entrypoint leaves with for `result`: the broker's (0..=255), or
/// [`SETUP_FAILED`] when the start failed.
pub fn exit_code(result: &Result<i32>) -> u8 {
    match result {
        Ok(code) => u8::try_from((*code).clamp(0, 255)).unwrap_or(1),
        Err(_) => SETUP_FAILED,
    }
}

/// `PATH.started`, the claim beside the exit file.
pub fn started_path(exit_file: &Path) -> PathBuf {
    let mut p = exit_file.as_os_str().to_owned();
    p.push(".started");
    PathBuf::from(p)
}

/// A claimed exit file: this process may run the work, and records how it ended.
#[derive(Debug)]
pub struct Claim {
    path: PathBuf,
}

/// Claims `exit_file` for this process (pid `pid`): creates `exit_file.started` exclusively
/// with the pid in it. Refused when the claim exists (an earlier start, live or not), or when
/// an exit code is already there (its claim was removed but the code was not).
pub fn claim(exit_file: &Path, pid: u32) -> Result<Claim> {
    let started = started_path(exit_file);
    let fix = |what: &Path| {
        format!(
            "make {} writable for this user",
            what.parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."))
                .display()
        )
    };
    let mut f = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&started)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let pid = std::fs::read_to_string(&started)
                .ok()
                .and_then(|t| t.trim().parse::<i32>().ok());
            return Err(Error::AlreadyStarted {
                exit_file: exit_file.into(),
                started,
                by: pid.map_or_else(
                    || "an earlier start (no pid in it)".into(),
                    |p| format!("pid {p}"),
                ),
            });
        }
        Err(e) => return Err(Error::io("create", &started, fix(&started))(e)),
    };
    f.write_all(format!("{pid}\n").as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(Error::io("write", &started, fix(&started)))?;
    if exit_file.exists() {
        // A code from an earlier run whose claim was removed: running now would run the work
        // a second time, and the new code would replace the old one. Leave things as found.
        let _ = std::fs::remove_file(&started);
        return Err(Error::AlreadyStarted {
            exit_file: exit_file.into(),
            started,
            by: "an earlier start (its exit code is there)".into(),
        });
    }
    Ok(Claim {
        path: exit_file.into(),
    })
}

impl Claim {
    /// Writes `code` (decimal and a newline) to the exit file, atomically.
    pub fn record(&self, code: u8) -> Result<()> {
        files::write_atomic(&self.path, format!("{code}\n").as_bytes(), 0o644)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_claim_holds_the_pid_and_a_second_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let exit = dir.path().join("rank-0.exit");
        let c = claim(&exit, 4242).unwrap();
        assert_eq!(c.path(), exit);
        let started = dir.path().join("rank-0.exit.started");
        assert_eq!(std::fs::read_to_string(&started).unwrap(), "4242\n");
        let e = claim(&exit, 4343).unwrap_err().to_string();
        assert!(
            e.contains("claimed by pid 4242") && e.contains("second time") && e.contains("fix:"),
            "{e}"
        );
        assert_eq!(std::fs::read_to_string(&started).unwrap(), "4242\n");
        assert!(!exit.exists(), "a refused start records nothing");
    }

    #[test]
    fn a_claim_without_a_pid_is_still_a_claim() {
        let dir = tempfile::tempdir().unwrap();
        let exit = dir.path().join("x");
        std::fs::write(started_path(&exit), "").unwrap();
        let e = claim(&exit, 1).unwrap_err().to_string();
        assert!(e.contains("claimed by an earlier start"), "{e}");
    }

    #[test]
    fn an_exit_code_without_its_claim_is_refused_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let exit = dir.path().join("x");
        std::fs::write(&exit, "3\n").unwrap();
        let e = claim(&exit, 1).unwrap_err().to_string();
        assert!(e.contains("second time"), "{e}");
        assert_eq!(std::fs::read_to_string(&exit).unwrap(), "3\n");
        assert!(!started_path(&exit).exists(), "the refused claim is undone");
    }

    #[test]
    fn the_exit_code_is_written_whole_and_alone() {
        let dir = tempfile::tempdir().unwrap();
        let exit = dir.path().join("rank-0.exit");
        let c = claim(&exit, 1).unwrap();
        c.record(7).unwrap();
        assert_eq!(std::fs::read_to_string(&exit).unwrap(), "7\n");
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["rank-0.exit", "rank-0.exit.started"],
            "no temporary left"
        );
    }

    #[test]
    fn an_unwritable_place_names_the_fix() {
        let e = claim(Path::new("/proc/entrypoint-test/x"), 1)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/proc/entrypoint-test") && e.contains("fix:"),
            "{e}"
        );
    }

    #[test]
    fn exit_codes_as_the_process_leaves() {
        assert_eq!(exit_code(&Ok(7)), 7);
        assert_eq!(exit_code(&Ok(300)), 255);
        assert_eq!(exit_code(&Ok(-1)), 0);
        assert_eq!(exit_code(&Err(Error::Stopped("SIGTERM"))), SETUP_FAILED);
    }
}
