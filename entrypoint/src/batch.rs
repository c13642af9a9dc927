//! `entrypoint batch FILE`: rank 0's initial program in batch mode. Each line of FILE is
//! submitted as its own job (`flux submit --flags waitable`); then each job's output is
//! shown in line order as it runs (`flux job attach`, which also gives its exit code), and
//! all are reaped with `flux job wait --all`. Our exit code is non-zero when any job failed.
//! With `--raw`, lines run one after another as given.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::commands;
use crate::error::{Error, Result};

pub fn run(flux: &Path, file: &Path, raw: bool, cwd: Option<&str>) -> Result<i32> {
    let text = std::fs::read_to_string(file).map_err(Error::io(
        "read",
        file,
        "run the batch runner through the entrypoint, which writes this file",
    ))?;
    let lines = commands::batch_lines(&text);
    if raw {
        let mut worst = 0;
        for (i, line) in lines.iter().enumerate() {
            let argv = commands::words("command", line)?;
            let mut cmd = Command::new(&argv[0]);
            cmd.args(&argv[1..]);
            if let Some(d) = cwd {
                cmd.current_dir(d);
            }
            let code = status_code(cmd.status(), &argv[0])?;
            if code != 0 {
                eprintln!("batch line {}: exit code {code}: {line}", i + 1);
                worst = worst.max(code);
            }
        }
        return Ok(worst);
    }
    let mut failed_submits = 0;
    let mut jobs = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let mut cmd = Command::new(flux);
        cmd.args(["submit", "--flags=waitable"]);
        cmd.arg(format!("--job-name=batch-{}", i + 1));
        if let Some(d) = cwd {
            cmd.arg(format!("--cwd={d}"));
        }
        cmd.args(commands::words("command", line)?);
        let out = cmd
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| Error::Program {
                what: format!("{} submit", flux.display()),
                reason: e.to_string(),
            })?;
        if out.status.success() {
            let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
            println!("batch line {}: job {id}", i + 1);
            jobs.push((i + 1, id));
        } else {
            eprintln!("batch line {}: submit failed: {line}", i + 1);
            failed_submits += 1;
        }
    }
    // Each job's output, in line order; a job still running streams until it ends.
    for (line, id) in &jobs {
        println!("batch line {line}: output of job {id}:");
        let code = status_code(
            Command::new(flux).args(["job", "attach", id]).status(),
            &format!("{} job attach", flux.display()),
        )?;
        if code != 0 {
            println!("batch line {line}: job {id} exited with code {code}");
        }
    }
    let code = status_code(
        Command::new(flux).args(["job", "wait", "--all"]).status(),
        &flux.display().to_string(),
    )?;
    Ok(if failed_submits > 0 {
        code.max(1)
    } else {
        code
    })
}

fn status_code(s: std::io::Result<std::process::ExitStatus>, what: &str) -> Result<i32> {
    let s = s.map_err(|e| Error::Program {
        what: what.into(),
        reason: e.to_string(),
    })?;
    Ok(s.code()
        .unwrap_or_else(|| 128 + std::os::unix::process::ExitStatusExt::signal(&s).unwrap_or(0)))
}
