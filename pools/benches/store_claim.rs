//! Claims through the SQLite store at 100,000 queued jobs (1,000 users with weighted fair
//! share, three priorities, 20 pools), as the dispatcher makes them: batches of
//! `dispatch::CLAIM_BATCH` claims per transaction, against the reference measured in the same
//! run, one claim per transaction. Each runs on its own copy of the same database file, in WAL
//! mode with synchronous=FULL: a claim is on disk (its commit's fsync done) before it returns.
//!
//! `cargo bench -p minicluster-pools --bench store_claim` (JOBS, CLAIMS and BATCH change the
//! sizes)

mod common;

use std::time::Instant;

use common::{Run, cores, env_or, fill};
use minicluster_pools::dispatch::CLAIM_BATCH;
use minicluster_pools::store::SqliteStore;

fn main() {
    let jobs = env_or("JOBS", 100_000);
    let claims = env_or("CLAIMS", 3_000);
    let batch = env_or("BATCH", CLAIM_BATCH);
    let dir = tempfile::tempdir().expect("a temp dir");
    let filled = dir.path().join("filled.db");
    let t = Instant::now();
    // Closing the last connection checkpoints the WAL into the file, so a copy is whole.
    fill(
        &mut SqliteStore::open(&filled).expect("the store opens"),
        jobs,
    );
    eprintln!("{jobs} jobs queued in {:.1?}", t.elapsed());
    let copy = |name: &str| {
        let path = dir.path().join(name);
        std::fs::copy(&filled, &path).expect("the database copies");
        SqliteStore::open(&path).expect("the copy opens")
    };
    let (mut one, mut many) = (copy("one.db"), copy("many.db"));
    let mut reference = Run::claim(&mut one, (claims / 10).max(100), 1);
    let mut ours = Run::claim(&mut many, claims, batch);
    println!(
        "claims through SQLite (WAL, synchronous=FULL) at {jobs} queued jobs, 1,000 users, 20 pools ({} cores):",
        cores()
    );
    println!("  ours, {batch} per transaction:  {}", ours.report());
    println!("  reference, 1 per transaction: {}", reference.report());
    println!("  ratio: {:.1}x", ours.rate() / reference.rate());
}
