//! Claims through the PostgreSQL store at 100,000 queued jobs (1,000 users with weighted fair
//! share, three priorities, 20 pools) by several dispatchers at once, each on its own
//! connection as separate control planes are: batches of `dispatch::CLAIM_BATCH` claims per
//! transaction, against the reference measured in the same run, one claim per transaction.
//! Each runs on its own copy of the same database; every commit is durable (the server's
//! defaults: fsync, synchronous_commit) before the claim returns, and no job may be claimed
//! twice.
//!
//! `cargo bench -p minicluster-pools --bench store_claim_postgres` on the server
//! `$MC_TEST_POSTGRES` names (DISPATCHERS, JOBS, CLAIMS and BATCH change the sizes)

mod common;

use std::time::Instant;

use common::{Run, cores, env_or, fill};
use minicluster_pools::dispatch::CLAIM_BATCH;
use minicluster_pools::store::PostgresStore;
use minicluster_pools::store::postgres::{on_database, redact};

fn main() {
    let server = std::env::var("MC_TEST_POSTGRES")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| {
            panic!(
                "MC_TEST_POSTGRES is not set, and this benchmark needs a PostgreSQL server (fix: \
                 run .ci/setup, which starts one on 127.0.0.1:54329 and writes its URL to \
                 .ci/postgres.env, then `set -a; . .ci/postgres.env; set +a`)"
            )
        });
    let dispatchers = env_or("DISPATCHERS", 4);
    let jobs = env_or("JOBS", 100_000);
    let claims = env_or("CLAIMS", 4_000);
    let batch = env_or("BATCH", CLAIM_BATCH);

    let filled = Scratch::create(&server, "filled", None);
    let t = Instant::now();
    fill(&mut PostgresStore::connect(&filled.url).unwrap(), jobs);
    eprintln!("{jobs} jobs queued in {:.1?}", t.elapsed());
    let one = Scratch::create(&server, "one", Some(&filled));
    let many = Scratch::create(&server, "many", Some(&filled));
    let mut reference = claim_at_once(&one.url, dispatchers, (claims / 10).max(100), 1);
    let mut ours = claim_at_once(&many.url, dispatchers, claims, batch);
    println!(
        "claims through PostgreSQL ({}) at {jobs} queued jobs, 1,000 users, 20 pools, {dispatchers} dispatchers ({} cores):",
        redact(&server),
        cores()
    );
    println!("  ours, {batch} per transaction:  {}", ours.report());
    println!("  reference, 1 per transaction: {}", reference.report());
    println!("  ratio: {:.1}x", ours.rate() / reference.rate());
}

/// `dispatchers` connections claiming `total` jobs between them at once.
fn claim_at_once(url: &str, dispatchers: usize, total: usize, batch: usize) -> Run {
    let stores: Vec<PostgresStore> = (0..dispatchers)
        .map(|_| PostgresStore::connect(url).unwrap())
        .collect();
    let began = Instant::now();
    let runs = std::thread::scope(|scope| {
        let each: Vec<_> = stores
            .into_iter()
            .map(|mut s| scope.spawn(move || Run::claim(&mut s, total / dispatchers, batch)))
            .collect();
        each.into_iter()
            .map(|h| h.join().unwrap())
            .collect::<Vec<Run>>()
    });
    let mut all = Run {
        elapsed: began.elapsed(),
        ..Run::default()
    };
    for r in runs {
        all.claims += r.claims;
        all.transactions.extend(r.transactions);
        all.jobs.extend(r.jobs);
    }
    all
}

/// A database of this run, dropped when it ends.
struct Scratch {
    server: String,
    name: String,
    url: String,
}

impl Scratch {
    /// An empty database, or a copy of `from`.
    fn create(server: &str, what: &str, from: Option<&Scratch>) -> Scratch {
        let name = format!("mc_bench_{}_{what}", std::process::id());
        let template = from.map_or(String::new(), |f| format!(" TEMPLATE \"{}\"", f.name));
        admin(server)
            .batch_execute(&format!("CREATE DATABASE \"{name}\"{template}"))
            .unwrap();
        Scratch {
            server: server.into(),
            url: on_database(server, &name),
            name,
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        if let Err(e) = admin(&self.server).batch_execute(&sql) {
            eprintln!("could not drop database {}: {e}", self.name);
        }
    }
}

fn admin(server: &str) -> postgres::Client {
    postgres::Client::connect(server, postgres::NoTls).unwrap_or_else(|e| {
        panic!(
            "cannot connect to MC_TEST_POSTGRES ({}): {e}",
            redact(server)
        )
    })
}
