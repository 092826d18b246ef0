//! What the scheduled checks keep: index size samples, firing alerts and the last run of
//! each check.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreError;

/// One measurement of one index (primaries only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexSample {
    pub index: String,
    pub bytes: u64,
    pub docs: u64,
}

/// Mean of the earlier samples of one index within a window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Baseline {
    pub samples: u32,
    pub mean_bytes: f64,
    pub mean_docs: f64,
}

/// An alert a check has raised and not yet resolved, kept so the resolution can be told.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRecord {
    pub fingerprint: String,
    pub cluster: String,
    pub kind: String,
    pub title: String,
    pub labels: BTreeMap<String, String>,
    pub since: DateTime<Utc>,
}

/// The outcome of a check's latest run, for `tocsin check list` and catch-up decisions.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckRunRecord {
    pub check: String,
    pub at: DateTime<Utc>,
    /// `healthy`, `alerting` or `failed`.
    pub outcome: String,
    pub summary: String,
}

/// Storage for checks; part of every [`Store`](super::Store).
#[async_trait]
pub trait SampleStore: Send + Sync {
    /// Stores one run's samples of one cluster, all taken at `at`. A second run at the same
    /// instant replaces the first's values.
    async fn insert_index_samples(
        &self,
        cluster: &str,
        at: DateTime<Utc>,
        samples: &[IndexSample],
    ) -> Result<(), StoreError>;

    /// Per index of `cluster`: count and mean of the samples taken in `[since, before)`.
    /// One grouped query, whatever the number of indices.
    async fn index_baselines(
        &self,
        cluster: &str,
        since: DateTime<Utc>,
        before: DateTime<Utc>,
    ) -> Result<HashMap<String, Baseline>, StoreError>;

    /// Deletes the samples taken before `before`; returns how many.
    async fn prune_index_samples(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;

    /// The alerts of `check` that are firing now.
    async fn check_firing_alerts(&self, check: &str) -> Result<Vec<AlertRecord>, StoreError>;

    /// Records new or still firing alerts and forgets resolved ones, in one transaction.
    async fn update_check_alerts(
        &self,
        check: &str,
        firing: &[AlertRecord],
        resolved: &[String],
    ) -> Result<(), StoreError>;

    async fn record_check_run(&self, run: &CheckRunRecord) -> Result<(), StoreError>;

    /// The latest run of every check that ran at least once.
    async fn last_check_runs(&self) -> Result<Vec<CheckRunRecord>, StoreError>;
}
