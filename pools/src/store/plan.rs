//! Which jobs a batch of claims takes, and on which pools. The decisions are those of
//! [`super::decide`] made one after another, each as if the claims before it were written
//! already; but they are made over waiting jobs loaded as they are needed: the oldest job of
//! each fairness group at the top priority, a group's next job once the one before it is
//! taken, a lower priority once nothing at the top one can run. A batch therefore reads about
//! one job per group and one per claim, however deep the queue. `pools/tests/plan_agrees.rs`
//! holds the batch to the claim-by-claim decisions over the whole queue.
//!
//! A group whose loaded jobs are all taken is not read again at once: it stands in the order
//! as a placeholder keyed by its usage and the lowest `seq` its next job can have, and is read
//! only if the placeholder comes first. With many groups, a batch rarely reads any.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::{Candidate, Result, USAGE_WINDOW_MS, now_ms};
use crate::pool::Pool;
use crate::queue::{Index, QueueConfig, Queued, may_dispatch};
use crate::routing::RouteTable;

/// At most this many of a group's next jobs are read at once: one the first time a group is
/// read on in a batch, twice as many each time after, up to this.
const CHUNK: usize = 16;

/// The id of a placeholder: no job has it (ids start at 1).
const PLACEHOLDER: u64 = 0;

/// Where a batch reads waiting jobs from (a backend, inside the claim's transaction). Jobs
/// come oldest first.
pub trait Waiting {
    /// The highest priority of a waiting job; below `below` when given.
    fn top_priority(&mut self, below: Option<i32>) -> Result<Option<i32>>;
    /// The oldest waiting job of each fairness group at `priority`.
    fn heads(&mut self, priority: i32) -> Result<Vec<Candidate>>;
    /// Up to `limit` waiting jobs of fairness group `group` at `priority`, submitted after
    /// job `after`.
    fn after(
        &mut self,
        priority: i32,
        group: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Candidate>>;
}

/// The rest of what a claim reads of its queue (a backend, in the claim's transaction).
pub trait Claiming: Waiting {
    /// Jobs of the queue claimed and not ended.
    fn running(&mut self) -> Result<u32>;
    /// Every pool.
    fn pools(&mut self) -> Result<Vec<Pool>>;
    /// How many jobs of the queue each user and project had claimed since `since` (Unix ms).
    fn claims_since(&mut self, since: u64) -> Result<Vec<(String, String, f64)>>;
    /// Launches not ended, per pool.
    fn pool_running(&mut self) -> Result<BTreeMap<String, u32>>;
}

/// Up to `max` claims of queue `q`, read through `c`: each job with its pool, in the order
/// they are made. None when the queue is paused or at its `max_running`.
pub fn claims(
    q: &QueueConfig,
    max: usize,
    c: &mut impl Claiming,
) -> Result<Vec<(Candidate, Pool)>> {
    let running = c.running()?;
    if max == 0 || !may_dispatch(q, running) {
        return Ok(Vec::new());
    }
    let pools: Vec<Pool> = c.pools()?.into_iter().filter(|p| p.enabled).collect();
    let mut usage: BTreeMap<String, f64> = BTreeMap::new();
    for (user, project, n) in c.claims_since(now_ms().saturating_sub(USAGE_WINDOW_MS))? {
        *usage
            .entry(q.group(&user, &project).to_string())
            .or_default() += n;
    }
    let pool_running = c.pool_running()?;
    let start = Start {
        queue: q,
        running,
        usage: &usage,
        pools: &pools,
        pool_running: &pool_running,
    };
    Ok(plan(&start, max, c)?
        .into_iter()
        .map(|(job, pool)| (job, pool.clone()))
        .collect())
}

/// What the claims of one queue start from.
pub struct Start<'a> {
    pub queue: &'a QueueConfig,
    /// Jobs of the queue claimed and not ended.
    pub running: u32,
    /// Recent usage per fairness group.
    pub usage: &'a BTreeMap<String, f64>,
    /// The enabled pools.
    pub pools: &'a [Pool],
    /// Launches running per pool.
    pub pool_running: &'a BTreeMap<String, u32>,
}

/// Up to `max` claims in the order they are made, each a job and the pool it goes to.
pub fn plan<'p>(
    s: &Start<'p>,
    max: usize,
    waiting: &mut impl Waiting,
) -> Result<Vec<(Candidate, &'p Pool)>> {
    let q = s.queue;
    let mut f = Frontier {
        routes: RouteTable::new(
            s.pools
                .iter()
                .filter(|p| q.pools.is_empty() || q.pools.contains(&p.name)),
        ),
        index: Index::new(q),
        held: HashMap::new(),
        last: HashMap::new(),
        exhausted: HashSet::new(),
        chunk: HashMap::new(),
        level: None,
    };
    for (group, usage) in s.usage {
        f.index.set_usage(group, *usage);
    }
    let mut room: Vec<u32> = f
        .routes
        .pools()
        .iter()
        .map(|p| {
            p.max_launches
                .saturating_sub(s.pool_running.get(&p.name).copied().unwrap_or(0))
        })
        .collect();
    let mut running = s.running;
    let mut out = Vec::new();
    while out.len() < max && may_dispatch(q, running) {
        let left = max - out.len();
        let Some(next) = f.index.peek() else {
            if f.descend(waiting)? {
                continue;
            }
            break;
        };
        let Some(held) = f.held.get(&next.id) else {
            // A placeholder first: read what its group really has next.
            let placeholder = f.index.pop().expect("peeked above");
            let group = f.index.group_of(&placeholder).to_string();
            f.read_on(waiting, &group, left)?;
            continue;
        };
        let requires = &held.requires;
        // The job the queue's order picks holds its place while every pool that could run
        // it is full: nothing behind it overtakes.
        let Some(&at) = f.routes.eligible(requires).iter().find(|&&i| room[i] > 0) else {
            break;
        };
        let j = f.index.pop().expect("peeked above");
        let group = f.index.group_of(&j).to_string();
        f.index.charge(&group, 1.0);
        room[at] -= 1;
        running += 1;
        if !f.index.holds(j.priority, &group) {
            f.stand_in(&j.user, &j.project, &group);
        }
        let c = f
            .held
            .remove(&j.id)
            .expect("every indexed job but placeholders is held");
        out.push((c, f.routes.pools()[at]));
    }
    Ok(out)
}

/// The waiting jobs loaded so far, at one priority.
struct Frontier<'p> {
    /// The enabled pools of the queue.
    routes: RouteTable<'p>,
    /// The loaded jobs some pool can run, in the queue's order.
    index: Index,
    held: HashMap<u64, Candidate>,
    /// Per group, the last job loaded (run or not).
    last: HashMap<String, u64>,
    /// Groups with nothing more to load at this priority.
    exhausted: HashSet<String>,
    /// How many jobs the next read of a group asks for.
    chunk: HashMap<String, usize>,
    level: Option<i32>,
}

impl Frontier<'_> {
    /// Loads the next priority down; false when no job waits below.
    fn descend(&mut self, waiting: &mut impl Waiting) -> Result<bool> {
        let Some(p) = waiting.top_priority(self.level)? else {
            return Ok(false);
        };
        self.level = Some(p);
        self.last.clear();
        self.exhausted.clear();
        self.chunk.clear();
        for c in waiting.heads(p)? {
            let group = self.index.group_of(&c.queued).to_string();
            self.last.insert(group.clone(), c.queued.id);
            let (user, project) = (c.queued.user.clone(), c.queued.project.clone());
            // A group whose oldest job no pool can run is represented by its oldest one some
            // pool can run, once it is needed.
            if !self.admit(c) {
                self.stand_in(&user, &project, &group);
            }
        }
        Ok(true)
    }

    /// Indexes a job if some enabled pool of the queue can run it; jobs none can run are
    /// passed over (they wait for a pool).
    fn admit(&mut self, c: Candidate) -> bool {
        if self.routes.eligible(&c.requires).is_empty() {
            return false;
        }
        self.index.push(c.queued.clone());
        self.held.insert(c.queued.id, c);
        true
    }

    /// Puts a placeholder for a group with nothing loaded but maybe more to read: its key is
    /// the group's, with the lowest `seq` the group's next job can have, so it comes no later
    /// than that job would.
    fn stand_in(&mut self, user: &str, project: &str, group: &str) {
        if self.exhausted.contains(group) {
            return;
        }
        let after = self.last[group];
        self.index.push(Queued {
            id: PLACEHOLDER,
            user: user.to_string(),
            project: project.to_string(),
            priority: self.level.expect("a priority is loaded"),
            seq: after + 1,
        });
    }

    /// Reads a group's next jobs until one of them can run or the group has no more.
    fn read_on(&mut self, waiting: &mut impl Waiting, group: &str, left: usize) -> Result<()> {
        let p = self.level.expect("a priority is loaded");
        while !self.exhausted.contains(group) {
            let chunk = self.chunk.entry(group.to_string()).or_insert(1);
            let limit = (*chunk).min(left);
            *chunk = (*chunk * 2).min(CHUNK);
            let after = self.last[group];
            let more = waiting.after(p, group, after, limit)?;
            if more.len() < limit {
                self.exhausted.insert(group.to_string());
            }
            let mut admitted = false;
            let mut last = None;
            for c in more {
                self.last.insert(group.to_string(), c.queued.id);
                last = Some((c.queued.user.clone(), c.queued.project.clone()));
                admitted |= self.admit(c);
            }
            if admitted {
                break;
            }
            if let Some((user, project)) = last {
                // Nothing here can run: stand in again rather than read on now.
                self.stand_in(&user, &project, group);
                break;
            }
        }
        Ok(())
    }
}
