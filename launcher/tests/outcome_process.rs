//! A control plane that lost its launch handle (it was killed) re-attaches through
//! `ProcessLauncher::outcome` and learns, from the files alone, whether the work ran and with
//! what exit code; a second launch of the same name never runs the work again.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::bin;
use minicluster_launcher::Error;
use minicluster_launcher::outcome::{Outcome, exit_file, started_file};
use minicluster_launcher::process::ProcessLauncher;
use minicluster_launcher::request::Request;
use minicluster_launcher::state::{self, Record};

fn launcher(root: &Path) -> ProcessLauncher {
    ProcessLauncher {
        launched: Default::default(),
        root: root.to_path_buf(),
        entrypoint: bin("entrypoint"),
        flux: Some(bin("flux-standin")),
        port: None,
        grace: Duration::from_secs(5),
        mode: None,
    }
}

fn one_broker(name: &str, command: &str) -> minicluster_core::MiniCluster {
    Request {
        name: Some(name.into()),
        size: Some(1),
        command: shell_words::split(command).unwrap(),
        ..Request::default()
    }
    .minicluster()
    .unwrap()
}

/// Polls `outcome` until `done` holds (at most 30 s); every outcome seen on the way.
fn poll(l: &ProcessLauncher, name: &str, done: impl Fn(&Outcome) -> bool) -> Vec<Outcome> {
    let until = Instant::now() + Duration::from_secs(30);
    let mut seen: Vec<Outcome> = Vec::new();
    loop {
        let o = l.outcome(name).unwrap();
        if seen.last() != Some(&o) {
            seen.push(o.clone());
        }
        if done(&o) {
            return seen;
        }
        assert!(
            Instant::now() < until,
            "no final outcome after 30 s: {seen:?}\nrank 0's log:\n{}",
            std::fs::read_to_string(state::dir(&l.root, name).join("rank-0.log"))
                .unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_dropped_launch_finishes_once_and_is_not_launched_again() {
    let state = tempfile::tempdir().unwrap();
    let l = launcher(state.path());
    let mc = one_broker("once", "sh -c 'exit 7'");
    assert_eq!(l.outcome("once").unwrap(), Outcome::NotLaunched);

    let running = l.launch(&mc, false, false).unwrap();
    let dir = running.dir.clone();
    // As if the control plane had been killed: the handle goes without a wait. Dropping it
    // kills nothing (Running has no Drop; std's Child does not kill on drop).
    drop(running);

    let seen = poll(&l, "once", |o| matches!(o, Outcome::Finished { .. }));
    assert_eq!(seen.last(), Some(&Outcome::Finished { exit_code: 7 }));
    assert!(
        seen.iter()
            .all(|o| matches!(o, Outcome::Running { .. } | Outcome::Finished { .. })),
        "only running, then finished: {seen:?}"
    );
    assert_eq!(std::fs::read_to_string(exit_file(&dir)).unwrap(), "7\n");

    // The same name again: refused, and what the first launch left is kept.
    let e = l
        .launch(&mc, false, false)
        .err()
        .expect("a second launch is refused");
    assert!(matches!(e, Error::AlreadyStarted { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("exit code 7") && msg.contains("second time") && msg.contains("fix:"),
        "{msg}"
    );
    assert_eq!(
        l.outcome("once").unwrap(),
        Outcome::Finished { exit_code: 7 }
    );

    // Once the outcome is kept elsewhere, the launch is forgotten and the name is free.
    assert_eq!(
        l.forget("once").unwrap(),
        Outcome::Finished { exit_code: 7 }
    );
    assert_eq!(l.outcome("once").unwrap(), Outcome::NotLaunched);
    assert!(!dir.exists());
    assert_eq!(l.forget("once").unwrap(), Outcome::NotLaunched);
    let again = l.launch(&mc, false, false).unwrap();
    assert_eq!(again.wait_keep_logs().unwrap(), 7);
}

#[test]
fn a_killed_rank0_entrypoint_is_lost_and_not_launched_again() {
    let state = tempfile::tempdir().unwrap();
    let l = launcher(state.path());
    let mc = one_broker("killed", "sleep 60");
    let running = l.launch(&mc, false, false).unwrap();
    let (dir, pid) = (running.dir.clone(), running.record.pids[0]);
    drop(running);

    let until = Instant::now() + Duration::from_secs(30);
    while !started_file(&dir).exists() {
        assert!(Instant::now() < until, "rank 0 never claimed its exit file");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(l.outcome("killed").unwrap(), Outcome::Running { pid });
    assert!(
        matches!(
            l.forget("killed"),
            Err(e) if e.to_string().contains("still running")
        ),
        "running work is never forgotten"
    );

    // SIGKILL to rank 0's entrypoint alone: it records nothing. (Its broker is told to stop
    // by the parent-death signal.) Not reaped here, so it stays a zombie of ours.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let seen = poll(&l, "killed", |o| matches!(o, Outcome::Lost { .. }));
    assert_eq!(
        seen.last(),
        Some(&Outcome::Lost {
            reason: format!("rank 0 (pid {pid}) ended without recording an exit code: killed?")
        })
    );
    let e = l
        .launch(&mc, false, false)
        .err()
        .expect("a second launch is refused");
    assert!(
        matches!(&e, Error::AlreadyStarted { detail, .. } if detail.contains("killed?")),
        "{e}"
    );
    assert!(started_file(&dir).exists(), "the claim is kept");
    // What the killed entrypoint left of its session (the stand-in's job, whose broker did
    // stop) is ours to end here: the record only knows the entrypoint's own process group.
    kill_session(pid);
    l.forget("killed").unwrap();
    assert!(!dir.exists());
}

/// SIGKILL to every live process of session `sid`, until none is left.
fn kill_session(sid: i32) {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let left: Vec<i32> = std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|p| {
                let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
                // After the command name: state, ppid, pgrp, session.
                let f: Vec<&str> = stat
                    .rsplit(')')
                    .next()
                    .unwrap_or("")
                    .split_whitespace()
                    .collect();
                f.len() > 3 && f[0] != "Z" && f[3] == sid.to_string()
            })
            .collect();
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < until, "session {sid} still has {left:?}");
        for p in left {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(p),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_recorded_claim_whose_pid_is_dead_is_lost_and_refused() {
    let state = tempfile::tempdir().unwrap();
    let l = launcher(state.path());
    let mut child = std::process::Command::new("true").spawn().unwrap();
    child.wait().unwrap();
    let pid = child.id() as i32;
    let dir = state::create_dir(state.path(), "gone").unwrap();
    Record {
        name: "gone".into(),
        launcher: "process".into(),
        size: 1,
        persistent: false,
        created: state::now(),
        pids: vec![pid],
        flux_uri: None,
        resources: vec![],
    }
    .save(state.path())
    .unwrap();
    std::fs::write(started_file(&dir), format!("{pid}\n")).unwrap();
    assert_eq!(
        l.outcome("gone").unwrap(),
        Outcome::Lost {
            reason: format!("rank 0 (pid {pid}) ended without recording an exit code: killed?")
        }
    );
    let e = l
        .launch(&one_broker("gone", "true"), false, false)
        .err()
        .expect("refused");
    assert!(matches!(e, Error::AlreadyStarted { .. }), "{e}");
    assert!(started_file(&dir).exists(), "nothing was deleted");

    // Without the claim, the work never began: the stale record is cleared and launched.
    std::fs::remove_file(started_file(&dir)).unwrap();
    assert!(matches!(l.outcome("gone").unwrap(), Outcome::Lost { .. }));
    let r = l.launch(&one_broker("gone", "true"), false, false).unwrap();
    assert_eq!(r.wait_keep_logs().unwrap(), 0);
}
