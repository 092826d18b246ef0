//! The embedded default store. (to be completed)

use super::StoreError;

pub struct SqliteStore;

impl SqliteStore {
    pub async fn open(_path: &str) -> Result<super::DynStore, StoreError> {
        Err(StoreError::Unavailable("todo".into()))
    }
}
