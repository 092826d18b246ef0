//! Index size samples for the Elasticsearch size checks. (to be completed)

use async_trait::async_trait;

/// Storage for check samples; part of every [`Store`](super::Store).
#[async_trait]
pub trait SampleStore: Send + Sync {}
