//! Exit codes with a meaning between the entrypoint and whoever watches it (the operator's
//! Job, the launchers).
//!
//! On Kubernetes a broker pod's exit code decides what the Job does next (its pod failure
//! policy): rank 0's code is the MiniCluster's outcome and ends the Job; a worker that was
//! stopped from outside (its pod deleted, evicted, scaled away) exits with [`WORKER_LEFT`]
//! and is replaced, so it rejoins. Rank 0 never exits with [`WORKER_LEFT`]: a command that
//! does is reported as [`WORKER_LEFT_AS_RANK0`] (the exact code stays in its termination
//! message).

/// A worker stopped from outside: replace it (it rejoins the instance).
pub const WORKER_LEFT: i32 = 249;
/// What rank 0 exits with when its command exited with [`WORKER_LEFT`].
pub const WORKER_LEFT_AS_RANK0: i32 = 1;
/// The entrypoint itself could not start its broker (bad input, no flux, a certificate that
/// does not match rank 0's).
pub const SETUP_FAILED: i32 = 125;

/// The code a broker's container exits with: rank 0's command's code, kept clear of
/// [`WORKER_LEFT`].
pub fn rank0_container_code(command_code: i32) -> i32 {
    if command_code == WORKER_LEFT {
        WORKER_LEFT_AS_RANK0
    } else {
        command_code
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank0_never_says_a_worker_left() {
        assert_eq!(rank0_container_code(0), 0);
        assert_eq!(rank0_container_code(3), 3);
        assert_eq!(rank0_container_code(WORKER_LEFT), WORKER_LEFT_AS_RANK0);
        assert_ne!(WORKER_LEFT_AS_RANK0, WORKER_LEFT);
    }
}
