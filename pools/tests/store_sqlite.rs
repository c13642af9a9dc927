//! The store suite against SQLite: a fresh file per test.

mod suite;

use minicluster_pools::store::{SqliteStore, Store};

fn fresh(test: impl FnOnce(suite::Open)) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mc.db");
    let open = move || -> Box<dyn Store> { Box::new(SqliteStore::open(&path).unwrap()) };
    test(&open);
}

store_suite!(fresh);
