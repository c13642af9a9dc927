//! Per-user submission rate limit: a token bucket per user name.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use crate::error::{RestError, Result};

pub struct RateLimiter {
    /// Submissions per second (0: no limit).
    rate: f64,
    burst: u32,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    pub fn new(rate: f64, burst: u32) -> Self {
        RateLimiter {
            rate,
            burst: burst.max(1),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    pub fn unlimited() -> Self {
        RateLimiter::new(0.0, 1)
    }

    /// Take one submission for `user`, or say when to come back.
    pub fn check(&self, user: &str) -> Result<()> {
        if self.rate <= 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() > 100_000 {
            // Forget idle users rather than grow without bound.
            let rate = self.rate;
            let burst = self.burst as f64;
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * rate < burst
            });
        }
        let (tokens, at) = buckets
            .entry(user.to_string())
            .or_insert((self.burst as f64, now));
        *tokens =
            (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(self.burst as f64);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            let wait = ((1.0 - *tokens) / self.rate).ceil().max(1.0) as u64;
            Err(RestError::RateLimited {
                user: user.to_string(),
                rate: self.rate,
                burst: self.burst,
                retry_after: wait,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refuse_per_user() {
        let l = RateLimiter::new(1.0, 3);
        for _ in 0..3 {
            l.check("a").unwrap();
        }
        let e = l.check("a").unwrap_err();
        assert!(matches!(e, RestError::RateLimited { retry_after: 1, .. }));
        assert!(e.to_string().contains("too many submissions from a"));
        l.check("b").unwrap();
        assert!(RateLimiter::unlimited().check("a").is_ok());
    }
}
