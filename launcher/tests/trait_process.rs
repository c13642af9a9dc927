//! The `Launcher` interface over the process transport, with the `flux` stand-in: launch,
//! per-rank state, rank 0's exit code, and a teardown that leaves nothing.

mod common;

use std::path::Path;
use std::time::Duration;

use common::bin;
use minicluster_launcher::Launcher;
use minicluster_launcher::process::ProcessLauncher;
use minicluster_launcher::request::Request;

async fn scenario<L: Launcher>(l: &L, state: &Path) {
    let mc = Request {
        name: Some("via-trait".into()),
        size: Some(3),
        command: vec!["sh".into(), "-c".into(), "exit 7".into()],
        ..Request::default()
    }
    .minicluster()
    .unwrap();
    let record = l.launch(&mc).await.unwrap();
    assert_eq!((record.launcher.as_str(), record.size), (l.kind(), 3));
    let ranks = l.ranks("via-trait").await.unwrap();
    assert_eq!(ranks.iter().map(|r| r.rank).collect::<Vec<_>>(), [0, 1, 2]);
    assert_eq!(l.follow_rank0("via-trait").await.unwrap(), 7);
    // After the exit code, nothing of the launch remains.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        std::fs::read_dir(state).unwrap().next().is_none(),
        "state left behind"
    );
    assert!(l.down("via-trait").await.is_err(), "already gone");
}

#[tokio::test(flavor = "multi_thread")]
async fn process_launcher_through_the_interface() {
    let state = tempfile::tempdir().unwrap();
    let l = ProcessLauncher {
        launched: Default::default(),
        root: state.path().to_path_buf(),
        entrypoint: bin("entrypoint"),
        flux: Some(bin("flux-standin")),
        port: None,
        grace: Duration::from_secs(10),
        mode: None,
    };
    scenario(&l, state.path()).await;
}
