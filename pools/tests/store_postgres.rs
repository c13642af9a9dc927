//! The store suite against PostgreSQL: a fresh database per test on the server
//! `$MC_TEST_POSTGRES` names (`.ci/setup` starts one on loopback and `.ci/run` exports it).
//! Without it every test fails, saying how to get one: a missing server never passes.

mod suite;

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use minicluster_pools::store::postgres::on_database;
use minicluster_pools::store::{PostgresStore, Store};

/// The server's URL; without one the test fails.
fn server() -> String {
    match std::env::var("MC_TEST_POSTGRES") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "MC_TEST_POSTGRES is not set, and these tests need a PostgreSQL server (fix: run \
             .ci/setup, which starts one on 127.0.0.1:54329 and writes its URL to \
             .ci/postgres.env, then `set -a; . .ci/postgres.env; set +a`; CI always has it)"
        ),
    }
}

fn unique_name() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u64(N.fetch_add(1, Ordering::Relaxed));
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    format!("mc_test_{:016x}", h.finish())
}

/// A database created for one test and dropped when the test ends, passed or not.
struct TestDatabase {
    server: String,
    name: String,
    url: String,
}

impl TestDatabase {
    fn create(server: &str) -> TestDatabase {
        let name = unique_name();
        let mut admin = postgres::Client::connect(server, postgres::NoTls).unwrap_or_else(|e| {
            panic!(
                "cannot connect to MC_TEST_POSTGRES ({}): {}",
                minicluster_pools::store::postgres::redact(server),
                minicluster_pools::store::StoreError::from(e)
            )
        });
        admin
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .unwrap();
        TestDatabase {
            server: server.into(),
            url: on_database(server, &name),
            name,
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Never panic here (this also runs while a failed test unwinds); FORCE ends
        // connections a failed test left open.
        let dropped = postgres::Client::connect(&self.server, postgres::NoTls).and_then(|mut c| {
            c.batch_execute(&format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.name
            ))
        });
        if let Err(e) = dropped {
            eprintln!("could not drop test database {}: {e}", self.name);
        }
    }
}

fn fresh(test: impl FnOnce(suite::Open)) {
    let db = TestDatabase::create(&server());
    let url = db.url.clone();
    let open = move || -> Box<dyn Store> { Box::new(PostgresStore::connect(&url).unwrap()) };
    test(&open);
}

store_suite!(fresh);

#[test]
fn open_takes_postgres_urls() {
    let db = TestDatabase::create(&server());
    for url in [
        db.url.clone(),
        db.url.replacen("postgres://", "postgresql://", 1),
    ] {
        let mut s = minicluster_pools::store::open(&url).unwrap();
        assert_eq!(s.pools_revision().unwrap(), 0);
    }
}
