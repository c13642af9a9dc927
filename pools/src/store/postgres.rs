//! The PostgreSQL store (a shared deployment): the same tables and transactions as
//! [`super::sqlite`].

use super::{Result, StoreError};

pub struct PostgresStore {
    _client: ::postgres::Client,
}

impl PostgresStore {
    pub fn connect(url: &str) -> Result<Self> {
        let client = ::postgres::Client::connect(url, ::postgres::NoTls)?;
        let _ = StoreError::Url(String::new());
        Ok(PostgresStore { _client: client })
    }
}
