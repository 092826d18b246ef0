//! Scheduled checks. (to be completed)

use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::ingest::Ingest;

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CheckConfig {}

/// Starts the scheduler for the configured checks; it stops when `shutdown` is cancelled.
/// Findings enter the system through `ingest` like any other event.
pub fn start(config: &Config, ingest: Ingest, shutdown: CancellationToken) -> Option<tokio::task::JoinHandle<()>> {
    let _ = (config, ingest, shutdown);
    None
}
