//! The commands a broker runs, per mode: pure functions of the cluster description.
//!
//! Commands from the spec are strings. They are split into words as a shell would (quotes
//! honoured) and run directly; only a command that needs a shell (variables, pipes,
//! redirections, `;`, `&&`, globs) is run with `sh -c`, so an image needs no shell otherwise.

use std::path::{Path, PathBuf};

use minicluster_core::description::id_range;
use minicluster_core::spec::{SCRIPT_FILE_NAME, SCRIPT_SHELL};
use minicluster_core::{ClusterDescription, Mode};

use crate::error::{Error, Result};

/// Program run as rank 0's initial program in `restful` mode when the spec gives no command.
pub const DEFAULT_REST_SERVER: &str = "minicluster-rest";

/// Characters that only a shell gives meaning to.
const SHELL_SYNTAX: &[char] = &[
    '$', '`', '|', '&', ';', '<', '>', '(', ')', '*', '?', '[', '~', '\n', '#', '{', '}',
];

/// Whether `command` means something only a shell can do.
pub fn needs_shell(command: &str) -> bool {
    command.contains(SHELL_SYNTAX)
}

/// Words of a command from the spec; `field` names it in errors.
pub fn words(field: &'static str, command: &str) -> Result<Vec<String>> {
    let command = command.trim();
    if command.is_empty() {
        return Err(Error::Command {
            field,
            reason: "is empty".into(),
            fix: "give a command".into(),
        });
    }
    if needs_shell(command) {
        return Ok(vec!["sh".into(), "-c".into(), command.into()]);
    }
    shell_words::split(command).map_err(|e| Error::Command {
        field,
        reason: format!("cannot be split into words ({e})"),
        fix: "close the quote".into(),
    })
}

/// Rank 0's initial program for the description's mode, or `None` when the broker runs
/// without one (interactive, and every worker).
pub fn initial_program(
    d: &ClusterDescription,
    rank: u32,
    flux: &Path,
    self_exe: &Path,
    batch_file: &Path,
) -> Result<Option<Vec<String>>> {
    if rank != 0 {
        return Ok(None);
    }
    let flux = flux.display().to_string();
    let command = || {
        d.command.as_deref().ok_or_else(|| Error::Command {
            field: "command",
            reason: format!("is missing, and {} mode runs it", mode_name(d.mode)),
            fix: "set containers[].command (or commands.script) in the MiniCluster, or spec.interactive: true".into(),
        })
    };
    // The user's work: the script file run by bash, else the command's words.
    let work = || match &d.hooks.script {
        Some(_) => Ok(vec![
            SCRIPT_SHELL.into(),
            script_path(d).display().to_string(),
        ]),
        None => words("command", command()?),
    };
    Ok(match d.mode {
        Mode::Interactive => None,
        Mode::Launcher => {
            let mut argv = work()?;
            // `flux run …` as the initial program runs the broker's own flux, wherever PATH
            // points.
            if argv[0] == "flux" {
                argv[0] = flux;
            }
            Some(argv)
        }
        Mode::Restful => Some(match &d.command {
            Some(c) => words("command", c)?,
            None => vec![DEFAULT_REST_SERVER.into()],
        }),
        Mode::Submit => {
            let mut argv = match &d.flux.submit_command {
                Some(c) => words("flux.submitCommand", c)?,
                None => vec![flux, "submit".into()],
            };
            argv.extend([
                "-N".into(),
                d.size.to_string(),
                "-n".into(),
                d.tasks.to_string(),
            ]);
            if let Some(wd) = &d.working_dir {
                argv.push(format!("--cwd={wd}"));
            }
            if let Some(flags) = &d.flux.option_flags {
                argv.extend(option_flags(flags)?);
            }
            argv.extend(["--quiet".into(), "--watch".into()]);
            argv.extend(work()?);
            Some(argv)
        }
        Mode::Batch => {
            if d.hooks.script.is_some() {
                return Err(Error::Command {
                    field: "commands.script",
                    reason: "is given in batch mode, which submits the lines of command instead"
                        .into(),
                    fix: "put the lines in command, or run the script in submit or launcher mode"
                        .into(),
                });
            }
            command()?;
            let mut argv = vec![
                self_exe.display().to_string(),
                "batch".into(),
                "--flux".into(),
                flux,
            ];
            if d.flux.batch_raw {
                argv.push("--raw".into());
            }
            if let Some(wd) = &d.working_dir {
                argv.push(format!("--cwd={wd}"));
            }
            argv.push(batch_file.display().to_string());
            Some(argv)
        }
    })
}

/// Where the script (`hooks.script`) is written: the config directory, on every broker, as
/// the job submit mode makes of it runs on all of them.
pub fn script_path(d: &ClusterDescription) -> PathBuf {
    Path::new(&d.paths.config_dir).join(SCRIPT_FILE_NAME)
}

/// Whether the mode runs the script (submit and launcher; batch refuses it, the others have
/// no user work).
pub fn runs_script(d: &ClusterDescription) -> bool {
    d.hooks.script.is_some() && matches!(d.mode, Mode::Submit | Mode::Launcher)
}

/// The lines of a batch command that are work: not blank, not comments.
pub fn batch_lines(command: &str) -> Vec<String> {
    command
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect()
}

/// `flux.optionFlags` (e.g. `-ompi=openmpi@5 --setattr=x=y`) as arguments of `flux submit`.
pub fn option_flags(flags: &str) -> Result<Vec<String>> {
    shell_words::split(flags).map_err(|e| Error::Command {
        field: "flux.optionFlags",
        reason: format!("cannot be split into words ({e})"),
        fix: "close the quote".into(),
    })
}

/// `flux R encode` for the resource set of every broker: the local hardware, or explicit cores
/// and GPUs when the spec asks for GPUs (hwloc in a container often cannot see them, and
/// `--local` cannot be combined with `--gpus`).
pub fn resource_command(d: &ClusterDescription, flux: &Path, cores: usize) -> Vec<String> {
    let mut argv = vec![
        flux.display().to_string(),
        "R".into(),
        "encode".into(),
        format!("--hosts={}", d.hostlist),
    ];
    if d.gpus == 0 {
        argv.push("--local".into());
    } else {
        argv.push(format!("--cores={}", id_range(cores.max(1) as u32)));
        argv.push(format!("--gpus={}", id_range(d.gpus)));
    }
    argv
}

pub fn mode_name(m: Mode) -> &'static str {
    match m {
        Mode::Submit => "submit",
        Mode::Launcher => "launcher",
        Mode::Batch => "batch",
        Mode::Interactive => "interactive",
        Mode::Restful => "restful",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::description;

    const FLUX: &str = "/mnt/flux/view/bin/flux";
    const EXE: &str = "/mnt/flux/entrypoint";
    const BATCH: &str = "/mnt/flux/config/batch";

    fn program(d: &ClusterDescription, rank: u32) -> Option<Vec<String>> {
        initial_program(d, rank, Path::new(FLUX), Path::new(EXE), Path::new(BATCH)).unwrap()
    }

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn submit_mode_runs_the_command_across_the_cluster() {
        let mut d = description(4, 8);
        d.tasks = 8;
        d.command = Some("lmp -v x 2 -in 'in file.reaxc'".into());
        d.working_dir = Some("/opt/lammps".into());
        d.flux.option_flags = Some("-ompi=openmpi@5 --setattr=x=y".into());
        assert_eq!(
            program(&d, 0).unwrap(),
            v(&[
                FLUX,
                "submit",
                "-N",
                "4",
                "-n",
                "8",
                "--cwd=/opt/lammps",
                "-ompi=openmpi@5",
                "--setattr=x=y",
                "--quiet",
                "--watch",
                "lmp",
                "-v",
                "x",
                "2",
                "-in",
                "in file.reaxc"
            ])
        );
        assert_eq!(program(&d, 1), None, "workers run no initial program");
    }

    #[test]
    fn submit_command_replaces_flux_submit() {
        let mut d = description(2, 2);
        d.flux.submit_command = Some("flux alloc".into());
        let argv = program(&d, 0).unwrap();
        assert_eq!(&argv[..2], &v(&["flux", "alloc"])[..]);
    }

    #[test]
    fn launcher_mode_runs_the_command_itself() {
        let mut d = description(2, 2);
        d.mode = Mode::Launcher;
        d.command = Some("./driver --jobs 2".into());
        assert_eq!(program(&d, 0).unwrap(), v(&["./driver", "--jobs", "2"]));
    }

    #[test]
    fn shell_syntax_gets_a_shell_and_nothing_else_does() {
        assert_eq!(
            words("command", "echo $HOME | wc").unwrap(),
            v(&["sh", "-c", "echo $HOME | wc"])
        );
        assert_eq!(words("command", "a && b").unwrap()[0], "sh");
        assert_eq!(words("command", "hostname").unwrap(), v(&["hostname"]));
        assert_eq!(
            words("command", "echo 'a b' c=d").unwrap(),
            v(&["echo", "a b", "c=d"])
        );
        assert!(
            words("command", "echo 'open")
                .unwrap_err()
                .to_string()
                .contains("close the quote")
        );
        assert!(
            words("command", "  ")
                .unwrap_err()
                .to_string()
                .contains("is empty")
        );
    }

    #[test]
    fn batch_mode_runs_our_batch_runner() {
        let mut d = description(2, 2);
        d.mode = Mode::Batch;
        d.command = Some("echo one\n\n# note\necho two\n".into());
        d.flux.batch_raw = true;
        assert_eq!(
            program(&d, 0).unwrap(),
            v(&[EXE, "batch", "--flux", FLUX, "--raw", BATCH])
        );
        assert_eq!(
            batch_lines(d.command.as_deref().unwrap()),
            v(&["echo one", "echo two"])
        );
    }

    #[test]
    fn interactive_and_restful() {
        let mut d = description(2, 2);
        d.mode = Mode::Interactive;
        assert_eq!(program(&d, 0), None);
        d.mode = Mode::Restful;
        d.command = None;
        assert_eq!(program(&d, 0).unwrap(), v(&[DEFAULT_REST_SERVER]));
        d.command = Some("my-server --port 5000".into());
        assert_eq!(program(&d, 0).unwrap(), v(&["my-server", "--port", "5000"]));
    }

    #[test]
    fn the_script_runs_with_bash_in_place_of_the_command() {
        let mut d = description(2, 4);
        d.command = None;
        d.hooks.script = Some("flux getattr size\necho ${FLUX_TASK_RANK}\n".into());
        let script = "/mnt/flux/config/custom-entrypoint.sh";
        assert_eq!(script_path(&d), Path::new(script));
        let submit = program(&d, 0).unwrap();
        let watch = submit.iter().position(|a| a == "--watch").unwrap();
        assert_eq!(&submit[..2], &v(&[FLUX, "submit"])[..]);
        assert_eq!(&submit[watch + 1..], &v(&["/bin/bash", script])[..]);
        assert!(runs_script(&d));
        d.mode = Mode::Launcher;
        assert_eq!(program(&d, 0).unwrap(), v(&["/bin/bash", script]));
        assert_eq!(program(&d, 1), None, "workers run no initial program");
        d.mode = Mode::Interactive;
        assert_eq!(program(&d, 0), None);
        assert!(!runs_script(&d));
        d.mode = Mode::Batch;
        let e = initial_program(&d, 0, Path::new(FLUX), Path::new(EXE), Path::new(BATCH))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("commands.script") && e.contains("batch mode"),
            "{e}"
        );
    }

    #[test]
    fn a_flux_command_as_initial_program_runs_the_brokers_flux() {
        let mut d = description(2, 2);
        d.mode = Mode::Launcher;
        d.command = Some("flux run -N2 hostname".into());
        assert_eq!(
            program(&d, 0).unwrap(),
            v(&[FLUX, "run", "-N2", "hostname"])
        );
        d.command = Some("/opt/other/flux run -N2 hostname".into());
        assert_eq!(program(&d, 0).unwrap()[0], "/opt/other/flux");
    }

    #[test]
    fn missing_command_names_the_field() {
        let mut d = description(2, 2);
        d.command = None;
        let e = initial_program(&d, 0, Path::new(FLUX), Path::new(EXE), Path::new(BATCH))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("command: is missing, and submit mode runs it"),
            "{e}"
        );
    }

    #[test]
    fn resource_set_local_or_with_gpus() {
        let mut d = description(4, 4);
        assert_eq!(
            resource_command(&d, Path::new("flux"), 8),
            v(&["flux", "R", "encode", "--hosts=mc-[0-3]", "--local"])
        );
        d.gpus = 2;
        assert_eq!(
            resource_command(&d, Path::new("flux"), 8),
            v(&[
                "flux",
                "R",
                "encode",
                "--hosts=mc-[0-3]",
                "--cores=0-7",
                "--gpus=0-1"
            ])
        );
    }
}
