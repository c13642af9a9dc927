//! Which pools may run a job: the exact semantics of DESIGN.md.
//!
//! - `requires` is AND across keys, OR within a key; `true` is any value of the key.
//! - A pool provides its `provides` and, as well, its `accepts` values.
//! - A pool's `provides: KEY: true` says it has the key without naming a value: it meets a
//!   requirement of `true`, never a requirement of named values.
//! - A pool with `accepts` takes a job only if every accepts key is in the job's requires with
//!   an overlapping value (`true` on either side overlaps everything), so untagged work never
//!   lands on a specialised pool.

use std::collections::HashMap;

pub use crate::pool::Pool;
use crate::tags::{TagValue, Tags};

/// Whether a pool may run a job, and if not, the first reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    Eligible,
    /// The pool lacks a required key.
    Missing {
        key: String,
    },
    /// The pool has the key, but none of the required values.
    NoValue {
        key: String,
        required: String,
        provided: String,
    },
    /// The pool accepts only jobs that ask for this key (with an overlapping value).
    NotAccepted {
        key: String,
        accepts: String,
    },
    Disabled,
}

impl std::fmt::Display for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Route::Eligible => f.write_str("eligible"),
            Route::Missing { key } => write!(f, "does not provide {key}"),
            Route::NoValue {
                key,
                required,
                provided,
            } => {
                write!(
                    f,
                    "provides {key}:{provided}, the job requires {key}:{required}"
                )
            }
            Route::NotAccepted { key, accepts } => {
                write!(f, "accepts only jobs that require {key}:{accepts}")
            }
            Route::Disabled => f.write_str("is disabled (draining)"),
        }
    }
}

/// What the pool offers for `key`: its provides and accepts together. `None` when neither
/// names the key; `(any, values)` otherwise, `any` when a side says `true` with no value.
fn offered<'a>(pool: &'a Pool, key: &str) -> Option<(bool, Vec<&'a String>)> {
    let sides: Vec<&TagValue> = [pool.provides.get(key), pool.accepts.get(key)]
        .into_iter()
        .flatten()
        .collect();
    if sides.is_empty() {
        return None;
    }
    let mut any = false;
    let mut values = Vec::new();
    for s in sides {
        match s {
            TagValue::Any => any = true,
            TagValue::OneOf(v) => values.extend(v.iter()),
        }
    }
    Some((any, values))
}

/// Decides whether `pool` may run a job that `requires` these tags.
pub fn route(requires: &Tags, pool: &Pool) -> Route {
    if !pool.enabled {
        return Route::Disabled;
    }
    for (key, wanted) in requires {
        let Some((any, values)) = offered(pool, key) else {
            return Route::Missing { key: key.clone() };
        };
        let met = match wanted {
            TagValue::Any => true,
            TagValue::OneOf(w) => values.iter().any(|v| w.contains(*v)),
        };
        if !met {
            let provided = if values.is_empty() && any {
                "true".to_string()
            } else {
                values
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            };
            return Route::NoValue {
                key: key.clone(),
                required: wanted.to_string(),
                provided,
            };
        }
    }
    for (key, accepted) in &pool.accepts {
        let asked = requires.get(key);
        if !asked.is_some_and(|r| r.overlaps(accepted)) {
            return Route::NotAccepted {
                key: key.clone(),
                accepts: accepted.to_string(),
            };
        }
    }
    Route::Eligible
}

/// Whether `pool` may run a job that `requires` these tags.
pub fn eligible(requires: &Tags, pool: &Pool) -> bool {
    route(requires, pool) == Route::Eligible
}

/// Which of a list of pools may run a job, worked out once per distinct `requires`: the jobs
/// of a queue share a handful of requirement sets, so each decision after the first of a set
/// is a lookup instead of matching tags against every pool.
#[derive(Debug)]
pub struct RouteTable<'p> {
    pools: Vec<&'p Pool>,
    /// Per requirement set, the positions in `pools` of those eligible, in order.
    known: HashMap<Tags, Vec<usize>>,
}

impl<'p> RouteTable<'p> {
    pub fn new(pools: impl IntoIterator<Item = &'p Pool>) -> RouteTable<'p> {
        RouteTable {
            pools: pools.into_iter().collect(),
            known: HashMap::new(),
        }
    }

    pub fn pools(&self) -> &[&'p Pool] {
        &self.pools
    }

    /// The positions (in [`RouteTable::pools`]) of the pools eligible for `requires`, in
    /// order.
    pub fn eligible(&mut self, requires: &Tags) -> &[usize] {
        if !self.known.contains_key(requires) {
            let fit = (0..self.pools.len())
                .filter(|&i| eligible(requires, self.pools[i]))
                .collect();
            self.known.insert(requires.clone(), fit);
        }
        &self.known[requires]
    }
}
