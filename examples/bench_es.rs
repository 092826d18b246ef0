//! Benchmark for the Elasticsearch checks (issue 3):
//!
//!     cargo run --release --example bench_es [-- INDICES DAYS]
//!
//! Seeds the in-repo fake cluster with 20,000 indices and the SQLite store with a year of
//! daily samples for them (7.3M rows), then runs each check once in a child process (so the
//! fake server and the seeding do not count) and prints the wall time and peak RSS (VmHWM).

use std::time::Instant;

use tocsin::check::{run_check, Clusters, RunOptions};
use tocsin::store::samples::IndexSample;
use tocsin::testkit::fake_es::{FakeEs, Flavor};

const START: &str = "2025-11-21T16:00:00Z";

fn config_text(url: &str, db: &str, indices: usize) -> String {
    // The indices check expects every 20th index by exact name, plus a pattern and a date.
    let expect: Vec<String> = (0..indices).step_by(20).map(|i| format!("\"idx-{i:05}\"")).collect();
    format!(
        r#"
[store]
url = "sqlite://{db}"

[elasticsearch.bench]
url = "{url}"
timeout = "30s"

[[checks]]
name = "indices"
type = "elasticsearch_indices"
clusters = ["bench"]
expect = [{}, "idx-*", "missing-{{now:%Y.%m.%d}}"]

[[checks]]
name = "size"
type = "elasticsearch_index_size"
clusters = ["bench"]
indices = ["*"]
baseline = "30d"
threshold_percent = 20
min_samples = 7
"#,
        expect.join(", ")
    )
}

fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Child: run one check once, like a scheduled run, and report.
async fn child(check: &str, config_path: &str, at: &str) {
    let config = tocsin::config::load(std::path::Path::new(config_path)).expect("config");
    let store = tocsin::store::open(&config.store.url).await.expect("store");
    let clusters = Clusters::from_config(&config);
    let check = config.checks.iter().find(|c| c.name() == check).expect("check");
    let at: chrono::DateTime<chrono::Utc> = at.parse().expect("time");
    if std::env::var_os("BENCH_DETAIL").is_some() {
        let client = tocsin::es::Client::new(&config.elasticsearch["bench"]).expect("client");
        let t = Instant::now();
        let h = client.health().await.expect("health");
        let th = t.elapsed();
        let s = client.stats(&["*".to_string()]).await.expect("stats");
        let ts = t.elapsed() - th;
        let b = store.index_baselines("bench", at - chrono::Duration::days(30), at).await.expect("baselines");
        let tb = t.elapsed() - th - ts;
        println!(
            "detail: health {th:?} ({} idx), stats {ts:?} ({} idx), baselines {tb:?} ({} idx)",
            h.indices.len(),
            s.indices.len(),
            b.len()
        );
    }
    let t = Instant::now();
    let report = run_check(check, &clusters, &RunOptions { at, store: Some(store.clone()) }).await;
    let evaluated = t.elapsed();
    let errors = report.commit(&store).await;
    let total = t.elapsed();
    println!(
        "{:<8} evaluate {:>7.1} ms, with commit {:>7.1} ms, outcome {}, {} events, peak RSS {:.1} MiB {}",
        check.name(),
        evaluated.as_secs_f64() * 1000.0,
        total.as_secs_f64() * 1000.0,
        report.outcome.as_str(),
        report.events.len(),
        vm_hwm_kib() as f64 / 1024.0,
        if errors.is_empty() { String::new() } else { format!("{errors:?}") }
    );
    for l in &report.lines {
        println!("         {l}");
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child") {
        child(&args[2], &args[3], &args[4]).await;
        return;
    }
    let indices: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(20_000);
    let days: i64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(365);

    let fake = FakeEs::start(Flavor::Es8).await;
    for i in 0..indices {
        fake.add_index(&format!("idx-{i:05}"), 1_000_000 + (i as u64 % 1000), 1000);
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("bench.db");
    let config_path = dir.path().join("tocsin.toml");
    std::fs::write(&config_path, config_text(&fake.url(), &db.display().to_string(), indices)).expect("config");

    let t = Instant::now();
    let store = tocsin::store::open(&format!("sqlite://{}", db.display())).await.expect("store");
    let start: chrono::DateTime<chrono::Utc> = START.parse().expect("start");
    // Names first (through the store), then a year of rows in one INSERT … SELECT.
    let names: Vec<IndexSample> =
        (0..indices).map(|i| IndexSample { index: format!("idx-{i:05}"), bytes: 0, docs: 0 }).collect();
    store.insert_index_samples("bench", start - chrono::Duration::days(1), &names).await.expect("names");
    store.close().await;
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display())).await.expect("pool");
    sqlx::query(
        "WITH RECURSIVE d(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM d WHERE n < ?)
         INSERT OR REPLACE INTO es_index_samples (ts, index_id, bytes, docs)
         SELECT ? + d.n * 86400000000, i.id, 1000000 + (i.id * 7 + d.n) % 1000, 1000
         FROM es_indices i, d WHERE i.cluster = 'bench' ORDER BY d.n, i.id",
    )
    .bind(days - 2)
    .bind(start.timestamp_micros())
    .execute(&pool)
    .await
    .expect("seed");
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM es_index_samples").fetch_one(&pool).await.expect("count");
    pool.close().await;
    println!("seeded {indices} indices and {rows} samples in {:.1} s", t.elapsed().as_secs_f64());

    let at = (start + chrono::Duration::days(days - 1)).to_rfc3339();
    let exe = std::env::current_exe().expect("exe");
    for check in ["indices", "size", "size"] {
        let status = std::process::Command::new(&exe)
            .args(["--child", check, &config_path.display().to_string(), &at])
            .status()
            .expect("child");
        assert!(status.success() || status.code() == Some(0));
    }
    let requests = fake.requests();
    println!("fake cluster answered {} requests", requests.len());
}
