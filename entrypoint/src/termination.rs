//! How a broker's container ends, as its watchers read it: the exit code the Job's pod
//! failure policy acts on ([`minicluster_core::exit_codes`]) and the termination message
//! Kubernetes shows in the pod's status.

use std::path::Path;

use minicluster_core::exit_codes::{WORKER_LEFT, rank0_container_code};

/// Where Kubernetes reads a container's termination message (`terminationMessagePath`).
pub const KUBERNETES_MESSAGE: &str = "/dev/termination-log";

/// The container's exit code for a broker that ended with `code`: rank 0's is its command's
/// (never [`WORKER_LEFT`]), and never success when a signal from outside stopped it (a
/// persistent instance shut down by its pod's deletion has not succeeded); a worker stopped
/// that way says it left, so that it is replaced and rejoins.
pub fn container_code(rank: u32, stopped_by: Option<i32>, code: i32) -> i32 {
    match (rank, stopped_by) {
        (0, Some(signal)) if code == 0 => 128 + signal,
        (0, _) => rank0_container_code(code),
        (_, Some(_)) => WORKER_LEFT,
        (_, None) => code,
    }
}

/// What rank 0 tells of a failure: that a signal from outside stopped it, or the exact code
/// (also where the container's differs); workers and successes say nothing.
pub fn message(rank: u32, stopped_by: Option<i32>, code: i32, reported: i32) -> Option<String> {
    match (rank, stopped_by, code) {
        (0, Some(signal), _) => Some(format!(
            "stopped by signal {signal} from outside (the pod was deleted or evicted, or its node drained)"
        )),
        (0, None, 0) => None,
        (0, None, _) if reported != code => Some(format!(
            "the command exited with code {code} (reported as {reported})"
        )),
        (0, None, _) => Some(format!("the command exited with code {code}")),
        _ => None,
    }
}

/// Writes `text` as the termination message when the runtime gave us one to write (the
/// file exists, as Kubernetes creates it); elsewhere it does nothing. Best effort: the
/// message only explains an exit that happens anyway.
pub fn report(path: &Path, text: &str) {
    if path.exists()
        && let Err(e) = std::fs::write(path, text)
    {
        tracing::debug!("termination message {}: {e}", path.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_workers_stopped_from_outside_say_they_left() {
        assert_eq!(container_code(0, None, 3), 3);
        assert_eq!(
            container_code(0, Some(15), 143),
            143,
            "rank 0 stopped: its code"
        );
        assert_eq!(
            container_code(0, Some(15), 0),
            143,
            "stopped is not success"
        );
        assert_eq!(container_code(0, None, WORKER_LEFT), 1);
        assert_eq!(container_code(2, Some(15), 0), WORKER_LEFT);
        assert_eq!(container_code(2, None, 0), 0, "instance ended: done");
        assert_eq!(container_code(2, None, 125), 125);
    }

    #[test]
    fn rank0_tells_its_code() {
        assert_eq!(message(0, None, 0, 0), None);
        assert_eq!(
            message(0, None, 3, 3).unwrap(),
            "the command exited with code 3"
        );
        assert!(message(0, None, 249, 1).unwrap().contains("reported as 1"));
        assert!(
            message(0, Some(15), 0, 143)
                .unwrap()
                .contains("signal 15 from outside")
        );
        assert_eq!(message(1, Some(15), 0, 249), None);
    }

    #[test]
    fn a_message_is_written_only_where_the_runtime_made_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let absent = dir.path().join("absent");
        report(&absent, "x");
        assert!(!absent.exists());
        let present = dir.path().join("termination-log");
        std::fs::write(&present, "").unwrap();
        report(&present, "entrypoint: error: y");
        assert_eq!(
            std::fs::read_to_string(&present).unwrap(),
            "entrypoint: error: y"
        );
    }
}
