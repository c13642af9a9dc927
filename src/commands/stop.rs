//! The signals that stop a run as Ctrl-C does: SIGINT, SIGTERM and SIGHUP (a closed terminal,
//! a CI runner cancelling a step, `kill`). They are taken over before anything is launched,
//! so none of them can end the CLI and leave its MiniCluster behind.

use tokio::signal::unix::{Signal, SignalKind, signal};

pub struct StopSignals {
    int: Signal,
    term: Signal,
    hup: Signal,
}

impl StopSignals {
    /// Takes the three signals over (inside a tokio runtime).
    pub fn install() -> std::io::Result<StopSignals> {
        Ok(StopSignals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// The first stop signal to arrive: its name and the exit code it gives (128 + number).
    pub async fn recv(&mut self) -> (&'static str, i32) {
        tokio::select! {
            _ = self.int.recv() => ("SIGINT", 130),
            _ = self.term.recv() => ("SIGTERM", 143),
            _ = self.hup.recv() => ("SIGHUP", 129),
        }
    }
}
