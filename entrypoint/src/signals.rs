//! SIGTERM/SIGINT before the broker runs: every wait and sleep is cut short by them.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use signal_hook::consts::{SIGINT, SIGTERM};

use crate::error::{Error, Result};

/// Set by SIGTERM/SIGINT; checked by waits and sleeps.
#[derive(Clone, Debug)]
pub struct Stop {
    signal: Arc<AtomicUsize>,
}

impl Stop {
    /// Starts recording SIGTERM and SIGINT.
    pub fn install() -> std::io::Result<Stop> {
        let signal = Arc::new(AtomicUsize::new(0));
        for sig in [SIGTERM, SIGINT] {
            signal_hook::flag::register_usize(sig, Arc::clone(&signal), sig as usize)?;
        }
        Ok(Stop { signal })
    }

    /// A `Stop` no signal ever sets (tests).
    pub fn none() -> Stop {
        Stop {
            signal: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The signal that asked us to stop, if any.
    pub fn requested(&self) -> Option<i32> {
        match self.signal.load(Ordering::SeqCst) {
            0 => None,
            s => Some(s as i32),
        }
    }

    /// Fails with [`Error::Stopped`] when a stop was requested.
    pub fn check(&self) -> Result<()> {
        match self.requested() {
            None => Ok(()),
            Some(SIGINT) => Err(Error::Stopped("SIGINT")),
            Some(_) => Err(Error::Stopped("SIGTERM")),
        }
    }

    /// Sleeps, waking early (with an error) when a stop is requested.
    pub fn sleep(&self, d: Duration) -> Result<()> {
        let until = Instant::now() + d;
        loop {
            self.check()?;
            let now = Instant::now();
            if now >= until {
                return Ok(());
            }
            std::thread::sleep((until - now).min(Duration::from_millis(50)));
        }
    }
}
