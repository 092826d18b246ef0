//! `SampleStore` for SQLite. (to be completed)

use async_trait::async_trait;

use super::samples::SampleStore;
use super::sqlite::SqliteStore;

#[async_trait]
impl SampleStore for SqliteStore {}
