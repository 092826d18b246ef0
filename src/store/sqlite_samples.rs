//! `SampleStore` for SQLite: writes through the single writer connection, reads from the
//! reader pool.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool};

use super::samples::{AlertRecord, Baseline, CheckRunRecord, IndexSample, SampleStore};
use super::sqlite::{micros, SqliteStore};
use super::StoreError;

/// Rows per multi-row INSERT: 4 parameters each stays far below SQLite's 32,766 limit.
const CHUNK: usize = 2000;

#[async_trait]
impl SampleStore for SqliteStore {
    async fn insert_index_samples(
        &self,
        cluster: &str,
        at: DateTime<Utc>,
        samples: &[IndexSample],
    ) -> Result<(), StoreError> {
        insert_index_samples(&self.writer_pool, cluster, at, samples).await
    }

    async fn index_baselines(
        &self,
        cluster: &str,
        since: DateTime<Utc>,
        before: DateTime<Utc>,
    ) -> Result<HashMap<String, Baseline>, StoreError> {
        index_baselines(&self.reader, cluster, since, before).await
    }

    async fn prune_index_samples(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let cutoff = micros(before);
        let mut total = 0;
        // A year of daily samples of 20,000 indices is 7.3M rows: delete in slices, so the
        // event path's writer never waits long for the lock.
        loop {
            let done = sqlx::query(
                "DELETE FROM es_index_samples WHERE (ts, index_id) IN \
                 (SELECT ts, index_id FROM es_index_samples WHERE ts < ? ORDER BY ts LIMIT 20000)",
            )
            .bind(cutoff)
            .execute(&self.writer_pool)
            .await?;
            total += done.rows_affected();
            if done.rows_affected() < 20000 {
                return Ok(total);
            }
        }
    }

    async fn check_firing_alerts(&self, check: &str) -> Result<Vec<AlertRecord>, StoreError> {
        check_firing_alerts(&self.reader, check).await
    }

    async fn update_check_alerts(
        &self,
        check: &str,
        firing: &[AlertRecord],
        resolved: &[String],
    ) -> Result<(), StoreError> {
        update_check_alerts(&self.writer_pool, check, firing, resolved).await
    }

    async fn record_check_run(&self, run: &CheckRunRecord) -> Result<(), StoreError> {
        record_check_run(&self.writer_pool, run).await
    }

    async fn last_check_runs(&self) -> Result<Vec<CheckRunRecord>, StoreError> {
        last_check_runs(&self.reader).await
    }
}

fn from_micros(us: i64) -> DateTime<Utc> {
    Utc.timestamp_micros(us).single().unwrap_or_default()
}

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(crate) async fn insert_index_samples(
    writer: &SqlitePool,
    cluster: &str,
    at: DateTime<Utc>,
    samples: &[IndexSample],
) -> Result<(), StoreError> {
    if samples.is_empty() {
        return Ok(());
    }
    let mut tx = writer.begin().await?;
    for chunk in samples.chunks(CHUNK) {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new("INSERT INTO es_indices (cluster, index_name) ");
        q.push_values(chunk, |mut b, s| {
            b.push_bind(cluster).push_bind(&s.index);
        });
        q.push(" ON CONFLICT (cluster, index_name) DO NOTHING");
        q.build().execute(&mut *tx).await?;
    }
    let ids: HashMap<String, i64> = sqlx::query("SELECT id, index_name FROM es_indices WHERE cluster = ?")
        .bind(cluster)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .map(|r| (r.get::<String, _>(1), r.get::<i64, _>(0)))
        .collect();
    let ts = at.timestamp_micros();
    for chunk in samples.chunks(CHUNK) {
        let mut q: QueryBuilder<Sqlite> =
            QueryBuilder::new("INSERT INTO es_index_samples (ts, index_id, bytes, docs) ");
        q.push_values(chunk.iter().filter_map(|s| ids.get(&s.index).map(|id| (*id, s))), |mut b, (id, s)| {
            b.push_bind(ts).push_bind(id).push_bind(clamp(s.bytes)).push_bind(clamp(s.docs));
        });
        q.push(" ON CONFLICT (ts, index_id) DO UPDATE SET bytes = excluded.bytes, docs = excluded.docs");
        q.build().execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(())
}

pub(crate) async fn index_baselines(
    reader: &SqlitePool,
    cluster: &str,
    since: DateTime<Utc>,
    before: DateTime<Utc>,
) -> Result<HashMap<String, Baseline>, StoreError> {
    let rows = sqlx::query(
        "SELECT i.index_name, s.n, s.mean_bytes, s.mean_docs
         FROM (SELECT index_id, COUNT(*) AS n, AVG(bytes) AS mean_bytes, AVG(docs) AS mean_docs
               FROM es_index_samples WHERE ts >= ? AND ts < ? GROUP BY index_id) s
         JOIN es_indices i ON i.id = s.index_id
         WHERE i.cluster = ?",
    )
    .bind(since.timestamp_micros())
    .bind(before.timestamp_micros())
    .bind(cluster)
    .fetch_all(reader)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let b = Baseline {
                samples: r.get::<i64, _>(1) as u32,
                mean_bytes: r.get::<f64, _>(2),
                mean_docs: r.get::<f64, _>(3),
            };
            (r.get::<String, _>(0), b)
        })
        .collect())
}

pub(crate) async fn check_firing_alerts(reader: &SqlitePool, check: &str) -> Result<Vec<AlertRecord>, StoreError> {
    let rows = sqlx::query(
        "SELECT fingerprint, cluster, kind, title, labels, since FROM check_alerts WHERE check_name = ? ORDER BY fingerprint",
    )
    .bind(check)
    .fetch_all(reader)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| AlertRecord {
            fingerprint: r.get(0),
            cluster: r.get(1),
            kind: r.get(2),
            title: r.get(3),
            labels: serde_json::from_str::<BTreeMap<String, String>>(r.get::<&str, _>(4)).unwrap_or_default(),
            since: from_micros(r.get(5)),
        })
        .collect())
}

pub(crate) async fn update_check_alerts(
    writer: &SqlitePool,
    check: &str,
    firing: &[AlertRecord],
    resolved: &[String],
) -> Result<(), StoreError> {
    let mut tx = writer.begin().await?;
    for a in firing {
        // `since` keeps the first firing time.
        sqlx::query(
            "INSERT INTO check_alerts (check_name, fingerprint, cluster, kind, title, labels, since)
             VALUES (?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (check_name, fingerprint) DO UPDATE SET title = excluded.title, labels = excluded.labels",
        )
        .bind(check)
        .bind(&a.fingerprint)
        .bind(&a.cluster)
        .bind(&a.kind)
        .bind(&a.title)
        .bind(serde_json::to_string(&a.labels).unwrap_or_else(|_| "{}".into()))
        .bind(a.since.timestamp_micros())
        .execute(&mut *tx)
        .await?;
    }
    for fp in resolved {
        sqlx::query("DELETE FROM check_alerts WHERE check_name = ? AND fingerprint = ?")
            .bind(check)
            .bind(fp)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

pub(crate) async fn record_check_run(writer: &SqlitePool, run: &CheckRunRecord) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO check_runs (check_name, at, outcome, summary) VALUES (?, ?, ?, ?)
         ON CONFLICT (check_name) DO UPDATE SET at = excluded.at, outcome = excluded.outcome, summary = excluded.summary",
    )
    .bind(&run.check)
    .bind(run.at.timestamp_micros())
    .bind(&run.outcome)
    .bind(&run.summary)
    .execute(writer)
    .await?;
    Ok(())
}

pub(crate) async fn last_check_runs(reader: &SqlitePool) -> Result<Vec<CheckRunRecord>, StoreError> {
    let rows = sqlx::query("SELECT check_name, at, outcome, summary FROM check_runs ORDER BY check_name")
        .fetch_all(reader)
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| CheckRunRecord { check: r.get(0), at: from_micros(r.get(1)), outcome: r.get(2), summary: r.get(3) })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::sqlite::SqlitePoolOptions;

    async fn pool() -> SqlitePool {
        let pool = SqlitePoolOptions::new().max_connections(1).connect("sqlite::memory:").await.unwrap();
        sqlx::raw_sql(include_str!("../../migrations/sqlite/0002_checks.sql")).execute(&pool).await.unwrap();
        pool
    }

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[tokio::test]
    async fn baselines_average_the_window_only() {
        let p = pool().await;
        for (day, bytes) in [(1, 100u64), (2, 200), (3, 300), (4, 1000)] {
            let s = vec![
                IndexSample { index: "a".into(), bytes, docs: bytes / 10 },
                IndexSample { index: "b".into(), bytes: 5, docs: 1 },
            ];
            insert_index_samples(&p, "c1", at(&format!("2026-01-0{day}T00:00:00Z")), &s).await.unwrap();
        }
        insert_index_samples(
            &p,
            "c2",
            at("2026-01-02T00:00:00Z"),
            &[IndexSample { index: "a".into(), bytes: 9, docs: 9 }],
        )
        .await
        .unwrap();
        let b = index_baselines(&p, "c1", at("2026-01-02T00:00:00Z"), at("2026-01-04T00:00:00Z")).await.unwrap();
        assert_eq!(b["a"], Baseline { samples: 2, mean_bytes: 250.0, mean_docs: 25.0 });
        assert_eq!(b["b"].samples, 2);
        assert_eq!(b.len(), 2);
        // Same instant again replaces.
        insert_index_samples(
            &p,
            "c1",
            at("2026-01-02T00:00:00Z"),
            &[IndexSample { index: "a".into(), bytes: 400, docs: 0 }],
        )
        .await
        .unwrap();
        let b = index_baselines(&p, "c1", at("2026-01-02T00:00:00Z"), at("2026-01-04T00:00:00Z")).await.unwrap();
        assert_eq!(b["a"].mean_bytes, 350.0);
    }

    #[tokio::test]
    async fn alerts_and_runs_round_trip() {
        let p = pool().await;
        let rec = AlertRecord {
            fingerprint: "f1".into(),
            cluster: "c".into(),
            kind: "es.index_missing".into(),
            title: "t".into(),
            labels: [("cluster".to_string(), "c".to_string())].into(),
            since: at("2026-01-01T00:00:00Z"),
        };
        update_check_alerts(&p, "chk", std::slice::from_ref(&rec), &[]).await.unwrap();
        let mut later = rec.clone();
        later.since = at("2026-01-02T00:00:00Z");
        update_check_alerts(&p, "chk", &[later], &[]).await.unwrap();
        assert_eq!(check_firing_alerts(&p, "chk").await.unwrap(), vec![rec]);
        update_check_alerts(&p, "chk", &[], &["f1".into()]).await.unwrap();
        assert!(check_firing_alerts(&p, "chk").await.unwrap().is_empty());
        let run = CheckRunRecord {
            check: "chk".into(),
            at: at("2026-01-01T00:00:00Z"),
            outcome: "healthy".into(),
            summary: "ok".into(),
        };
        record_check_run(&p, &run).await.unwrap();
        assert_eq!(last_check_runs(&p).await.unwrap(), vec![run]);
    }
}
