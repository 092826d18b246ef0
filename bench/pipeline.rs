//! `tocsin-bench-pipeline`: the issue-4 benchmark of the pipeline without HTTP and store.
//!
//! Target (issue 4): with 100,000 firing alerts in 1,000 groups, routing + grouping + muting
//! handle ≥ 200,000 events/s (excluding HTTP), resident memory ≤ 128 MiB.
//!
//! tocsin mode (default) drives `tocsin::pipeline::Lifecycle::process` in-process, in batches
//! of 1,000 as the HTTP layer hands them over:
//!
//! * `fire`    100,000 distinct alerts (fingerprints) in 1,000 groups, all firing, first time
//! * `steady`  the same 100,000 re-sent as firing updates (no state change)
//! * `mix`     100,000 events, ~5 % of them resolve a firing alert or re-fire a resolved one
//! * `mixed1m` 1,000,000 events in 1,000 batches: random alerts, ~5 % state changes, ~1 %
//!   one-off events without status
//! * `due`     `Lifecycle::due` over the firing alerts: a normal tick, and a tick at which
//!   every announced alert is owed a repeat
//!
//! Parsing (`parse_event`, HTTP-side work) happens batch by batch outside the timed region and
//! is reported separately. Resident memory (VmRSS, VmHWM) is read from /proc/self/status.
//!
//! Alertmanager mode (`--alertmanager URL --am-pid PID`) POSTs the same 100,000 alerts to
//! `/api/v2/alerts` in batches of 1,000 (HTTP included, unlike tocsin mode), twice (first fire,
//! then the steady-state re-send), and reports alerts/s and the server's RSS.
//!
//! Both modes print `RESULT {json}` lines that `scripts/bench-pipeline.sh` tabulates.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use tocsin::event::{parse_event, Event};
use tocsin::pipeline::{Lifecycle, Pipeline};
use tocsin::silence::Silence;

const ALERTS: usize = 100_000;
const GROUPS: usize = 1_000;
const BATCH: usize = 1_000;

const CONFIG: &str = r##"
[notifiers.ops]
type = "webhook"
url = "http://127.0.0.1:9/ops"

[notifiers.team]
type = "webhook"
url = "http://127.0.0.1:9/team"

[notifiers.stdout]
type = "console"

[[routes]]
kinds = ["es.*"]
notifier = "ops"
channel = "#es"
group_by = ["group"]
group_wait = "30s"
group_interval = "5m"
repeat_interval = "4h"

[[routes]]
kinds = ["svc.*"]
labels = { env = "prod" }
notifier = "ops"
channel = "#prod"
group_by = ["group"]
group_wait = "10s"
group_interval = "1m"
continue = true

[[routes]]
kinds = ["svc.*", "disk.*"]
notifier = "team"
group_by = ["group"]
group_wait = "30s"
group_interval = "5m"

[[routes]]
kinds = ["host.*"]
min_severity = "warning"
notifier = "team"
channel = "#hosts"
group_by = ["group"]
title_template = "{{ kind }} on {{ labels.instance }}"

[default_route]
notifier = "stdout"
group_by = ["group"]

[[inhibit_rules]]
source_kinds = ["es.unreachable"]
target_kinds = ["es.index_*"]
equal = ["cluster"]

[[inhibit_rules]]
source_kinds = ["svc.down"]
target_kinds = ["svc.latency"]
equal = ["group", "service"]
"##;

/// Alert `i`: group `i % 1000`, position `j = i / 1000` (0..100) inside its group.
struct Spec {
    kind: &'static str,
    severity: &'static str,
    labels: BTreeMap<String, String>,
}

fn spec(i: usize) -> Spec {
    let g = i % GROUPS;
    let j = i / GROUPS;
    let (kind, severity) = match j {
        0 => ("es.unreachable", "critical"),
        1..=9 => ("es.index_missing", "error"), // inhibited while the cluster is unreachable
        10..=19 => ("svc.down", "error"),
        20..=49 => ("svc.latency", "warning"),
        50..=69 => ("disk.full", "warning"),
        70..=89 => ("host.cpu", "warning"),
        _ => ("app.queue_backlog", "info"), // default route
    };
    let env = if j.is_multiple_of(2) { "prod" } else { "staging" };
    let labels = BTreeMap::from([
        ("group".to_string(), format!("g{g:03}")),
        ("cluster".to_string(), format!("c{g:03}")),
        ("env".to_string(), env.to_string()),
        ("service".to_string(), format!("s{}", j % 10)),
        ("instance".to_string(), format!("h{i:06}")),
    ]);
    Spec { kind, severity, labels }
}

fn tocsin_json(i: usize, firing: bool, n: u64) -> Value {
    let s = spec(i);
    json!({
        "kind": s.kind,
        "severity": s.severity,
        "title": format!("{} on {}", s.kind, s.labels["instance"]),
        "labels": s.labels,
        "fields": {"value": n},
        "fingerprint": format!("a{i:06}"),
        "status": if firing { "firing" } else { "resolved" },
    })
}

fn one_off_json(n: u64) -> Value {
    json!({
        "kind": "deploy.finished",
        "title": "deploy finished",
        "labels": {"group": format!("g{:03}", n % GROUPS as u64), "env": "prod"},
        "fields": {"build": n},
    })
}

fn am_json(i: usize) -> Value {
    let s = spec(i);
    let mut labels: BTreeMap<String, String> = s.labels.clone();
    labels.insert("alertname".into(), s.kind.into());
    labels.insert("severity".into(), s.severity.into());
    json!({
        "labels": labels,
        "annotations": {"title": format!("{} on {}", s.kind, s.labels["instance"]), "value": "1"},
    })
}

/// xorshift64*: deterministic, no dependency on `rand`'s algorithm choice.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn proc_status_kib(pid: &str, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn silences(now: DateTime<Utc>) -> Vec<Silence> {
    let silence = |matchers: &[(&str, &str)], start: i64, end: i64| Silence {
        id: uuid::Uuid::now_v7(),
        matchers: matchers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        starts_at: now + chrono::Duration::hours(start),
        ends_at: now + chrono::Duration::hours(end),
        comment: "bench".into(),
        created_by: "bench".into(),
        created_at: now,
    };
    vec![
        silence(&[("kind", "disk.*"), ("env", "staging")], -1, 24),
        silence(&[("group", "g99*")], -1, 24),
        silence(&[("kind", "host.cpu"), ("service", "s3")], -1, 24),
        silence(&[("kind", "app.*")], -48, -24), // expired
        silence(&[("kind", "svc.*")], 48, 72),   // pending
    ]
}

#[derive(Default)]
struct Pass {
    events: u64,
    parse: Duration,
    process: Duration,
    drop: Duration,
    deliveries: u64,
    muted: u64,
    fired: u64,
}

impl Pass {
    fn run_batch(&mut self, lifecycle: &Lifecycle, pipeline: &Pipeline, json: Vec<Value>, now: DateTime<Utc>) {
        let t = Instant::now();
        let events: Vec<Event> =
            json.iter().map(|v| parse_event(v, "", "bench", now).expect("bench event is valid")).collect();
        self.parse += t.elapsed();
        drop(json);
        self.events += events.len() as u64;
        let t = Instant::now();
        let out = lifecycle.process(pipeline, events, now);
        self.process += t.elapsed();
        for n in &out {
            self.deliveries += n.deliveries.len() as u64;
            if let Some(a) = &n.alert {
                if a.muted_by.is_some() {
                    self.muted += 1;
                }
                if a.is_firing() {
                    self.fired += 1;
                }
            }
        }
        let t = Instant::now();
        drop(out);
        self.drop += t.elapsed();
    }

    fn report(&self, label: &str) {
        let secs = self.process.as_secs_f64();
        let rate = self.events as f64 / secs;
        let parse_rate = self.events as f64 / self.parse.as_secs_f64();
        let rss = proc_status_kib("self", "VmRSS:");
        let hwm = proc_status_kib("self", "VmHWM:");
        eprintln!(
            "{label:>8}: {:>9} events in {:>8.3} s = {:>10.0} events/s (parse {:>9.0}/s, drop of results {:.3} s), \
             {} deliveries, {} alerts muted, RSS {:.1} MiB, HWM {:.1} MiB",
            self.events,
            secs,
            rate,
            parse_rate,
            self.drop.as_secs_f64(),
            self.deliveries,
            self.muted,
            mib(rss),
            mib(hwm)
        );
        println!(
            "RESULT {}",
            json!({
                "system": "tocsin", "pass": label, "events": self.events,
                "process_s": secs, "events_per_s": rate,
                "parse_s": self.parse.as_secs_f64(), "parse_per_s": parse_rate,
                "process_and_parse_per_s": self.events as f64 / (secs + self.parse.as_secs_f64()),
                "drop_s": self.drop.as_secs_f64(),
                "deliveries": self.deliveries, "muted": self.muted,
                "rss_mib": mib(rss), "hwm_mib": mib(hwm),
            })
        );
    }
}

fn run_tocsin(only: Option<&str>) {
    let config = tocsin::config::load_str(CONFIG, Path::new("bench.toml")).expect("bench config is valid");
    let pipeline = Pipeline::new(&config).expect("pipeline");
    let t0: DateTime<Utc> = DateTime::parse_from_rfc3339("2026-11-22T12:00:00Z").unwrap().with_timezone(&Utc);
    let lifecycle = Lifecycle::new(&config, Vec::new(), Vec::new()).expect("lifecycle");
    lifecycle.set_silences(silences(t0));
    let base_rss = proc_status_kib("self", "VmRSS:");
    eprintln!("baseline: RSS {:.1} MiB (config, pipeline, no alerts)", mib(base_rss));
    println!("RESULT {}", json!({"system": "tocsin", "pass": "baseline", "rss_mib": mib(base_rss)}));
    let want = |p: &str| only.is_none_or(|o| o.split(',').any(|x| x == p));

    // Simulated clock: 5 ms per batch of 1,000, i.e. the target rate of 200,000 events/s.
    let tick = chrono::Duration::milliseconds(5);
    let mut now = t0;
    let mut firing = vec![true; ALERTS];
    let mut n = 0u64;

    // 1. fire: every alert for the first time.
    let mut pass = Pass::default();
    for start in (0..ALERTS).step_by(BATCH) {
        let json = (start..start + BATCH).map(|i| tocsin_json(i, true, start as u64)).collect();
        pass.run_batch(&lifecycle, &pipeline, json, now);
        now += tick;
    }
    pass.report("fire");
    let (rss, hwm) = (proc_status_kib("self", "VmRSS:"), proc_status_kib("self", "VmHWM:"));
    eprintln!(
        "holding {} firing alerts: VmRSS {:.1} MiB, VmHWM {:.1} MiB",
        lifecycle.firing_count(),
        mib(rss),
        mib(hwm)
    );
    println!(
        "RESULT {}",
        json!({"system": "tocsin", "pass": "hold100k", "firing": lifecycle.firing_count(),
               "rss_mib": mib(rss), "hwm_mib": mib(hwm)})
    );

    // 2a. steady: the same alerts again, still firing, 60 s later.
    now += chrono::Duration::seconds(60);
    if want("steady") {
        let mut pass = Pass::default();
        for start in (0..ALERTS).step_by(BATCH) {
            let json = (start..start + BATCH).map(|i| tocsin_json(i, true, 1 + start as u64)).collect();
            pass.run_batch(&lifecycle, &pipeline, json, now);
            now += tick;
        }
        pass.report("steady");
    }

    // 2b. mix: every alert once more, ~5 % of them change state.
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    now += chrono::Duration::seconds(60);
    if want("mix") {
        let mut pass = Pass::default();
        for start in (0..ALERTS).step_by(BATCH) {
            let json = (start..start + BATCH)
                .map(|i| {
                    if rng.next().is_multiple_of(20) {
                        firing[i] = !firing[i];
                    }
                    tocsin_json(i, firing[i], 2)
                })
                .collect();
            pass.run_batch(&lifecycle, &pipeline, json, now);
            now += tick;
        }
        pass.report("mix");
    }

    // 3. 1,000,000 events: random alerts, ~5 % state changes, ~1 % one-off events.
    now += chrono::Duration::seconds(60);
    if want("mixed1m") {
        let mut pass = Pass::default();
        for _ in 0..1_000 {
            let json = (0..BATCH)
                .map(|_| {
                    n += 1;
                    let r = rng.next();
                    if r.is_multiple_of(100) {
                        return one_off_json(n);
                    }
                    let i = (r >> 8) as usize % ALERTS;
                    if (r >> 40).is_multiple_of(20) {
                        firing[i] = !firing[i];
                    }
                    tocsin_json(i, firing[i], n)
                })
                .collect();
            pass.run_batch(&lifecycle, &pipeline, json, now);
            now += tick;
        }
        pass.report("mixed1m");
    }

    // Bring every alert back to firing so `due` runs over 100,000 firing alerts.
    let back: Vec<usize> = (0..ALERTS).filter(|&i| !firing[i]).collect();
    for chunk in back.chunks(BATCH) {
        let json = chunk.iter().map(|&i| tocsin_json(i, true, 3)).collect();
        Pass::default().run_batch(&lifecycle, &pipeline, json, now);
    }
    let count = lifecycle.firing_count();

    // 4. due: a normal tick (nothing owed but mute bookkeeping), then one 5 h later at which
    // every announced alert is owed a repeat (repeat_interval 4 h).
    for (label, at) in [("due", now + chrono::Duration::seconds(30)), ("due+5h", now + chrono::Duration::hours(5))] {
        let t = Instant::now();
        let (due, changed) = lifecycle.due(&pipeline, at);
        let secs = t.elapsed().as_secs_f64();
        eprintln!(
            "{label:>8}: over {count} firing alerts in {:.1} ms: {} due, {} changed",
            secs * 1e3,
            due.len(),
            changed.len()
        );
        println!(
            "RESULT {}",
            json!({"system": "tocsin", "pass": label, "alerts": count, "ms": secs * 1e3,
                   "due": due.len(), "changed": changed.len()})
        );
    }
    let (rss, hwm) = (proc_status_kib("self", "VmRSS:"), proc_status_kib("self", "VmHWM:"));
    eprintln!("end: VmRSS {:.1} MiB, VmHWM {:.1} MiB", mib(rss), mib(hwm));
    println!("RESULT {}", json!({"system": "tocsin", "pass": "end", "rss_mib": mib(rss), "hwm_mib": mib(hwm)}));
}

async fn run_alertmanager(url: &str, pid: &str, conns: usize) {
    let client = reqwest::Client::builder().pool_max_idle_per_host(conns).build().expect("client");
    let endpoint = format!("{}/api/v2/alerts", url.trim_end_matches('/'));
    let base = proc_status_kib(pid, "VmRSS:");
    println!("RESULT {}", json!({"system": "alertmanager", "pass": "baseline", "rss_mib": mib(base)}));
    // Bodies serialized before timing, as tocsin's events are parsed before timing.
    let bodies: Vec<bytes::Bytes> = (0..ALERTS)
        .step_by(BATCH)
        .map(|s| serde_json::to_vec(&(s..s + BATCH).map(am_json).collect::<Vec<_>>()).unwrap().into())
        .collect();
    for label in ["fire", "steady"] {
        let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let bodies = std::sync::Arc::new(bodies.clone());
        let t = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..conns {
            let (client, endpoint, next, bodies) = (client.clone(), endpoint.clone(), next.clone(), bodies.clone());
            tasks.push(tokio::spawn(async move {
                let mut errors = 0u64;
                loop {
                    let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(body) = bodies.get(k) else { break };
                    let ok = client
                        .post(&endpoint)
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await
                        .is_ok_and(|r| r.status().is_success());
                    if !ok {
                        errors += 1;
                    }
                }
                errors
            }));
        }
        let mut errors = 0;
        for task in tasks {
            errors += task.await.unwrap_or(1);
        }
        let secs = t.elapsed().as_secs_f64();
        // Give the dispatcher a moment to aggregate, then read memory.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (rss, hwm) = (proc_status_kib(pid, "VmRSS:"), proc_status_kib(pid, "VmHWM:"));
        let rate = ALERTS as f64 / secs;
        eprintln!(
            "alertmanager {label:>6}: {ALERTS} alerts in {secs:.3} s = {rate:.0} alerts/s over HTTP ({conns} connections, \
             {errors} failed batches), RSS {:.1} MiB, HWM {:.1} MiB",
            mib(rss),
            mib(hwm)
        );
        println!(
            "RESULT {}",
            json!({"system": "alertmanager", "pass": label, "events": ALERTS, "process_s": secs,
                   "events_per_s": rate, "errors": errors, "conns": conns,
                   "rss_mib": mib(rss), "hwm_mib": mib(hwm)})
        );
    }
}

// The same allocator as the daemon (src/main.rs), so the figures are the product's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    match arg("--alertmanager") {
        Some(url) => {
            let pid = arg("--am-pid").expect("--am-pid PID");
            let conns = arg("--conns").map_or(4, |c| c.parse().expect("--conns N"));
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(run_alertmanager(&url, &pid, conns));
        }
        None => run_tocsin(arg("--only").as_deref()),
    }
}
