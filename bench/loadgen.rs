//! `tocsin-loadgen`: the load generator behind `scripts/bench.sh` and `docs/benchmarks.md`.
//!
//! Sends unique events to tocsin (`POST /api/v1/events`) or unique alerts to Prometheus
//! Alertmanager (`POST /api/v2/alerts`) over N keep-alive HTTP/1.1 connections, either as fast
//! as the server answers (closed loop) or at a fixed rate (open loop, `--rate`), and reports
//! requests/s, events/s, latency percentiles and errors by status.
//!
//! With `--receiver ADDR` it also runs a webhook receiver and measures the time from sending an
//! event to the notifier's request arriving: each event carries its send time in nanoseconds
//! since the epoch (tocsin: `fields.sent_at_ns`; Alertmanager: `annotations.sent_at_ns`).
//!
//! With `--server-pid PID` it reports the server's CPU use during the run and its resident
//! memory (VmRSS, VmHWM) at the end.
//!
//! `--mode health` sends `GET` to the server's health endpoint instead of events: the latency
//! floor of the generator, the loopback and the server's HTTP layer at a given rate, with
//! nothing stored. `--stall-probe 5s` measures the machine itself: one thread per core
//! spins reading the clock, and every gap over 0.5 ms is time that core was taken away (by
//! the hypervisor or the kernel): latency that any server measured here carries.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use clap::{Parser, ValueEnum};
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Target {
    Tocsin,
    Alertmanager,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    Single,
    Batch,
    /// `GET` the health endpoint: nothing stored, the floor under the other modes.
    Health,
}

#[derive(Debug, Parser)]
#[command(name = "tocsin-loadgen", about = "Load generator for tocsin and Alertmanager")]
struct Args {
    /// Which server's API to speak.
    #[arg(long, value_enum, default_value = "tocsin")]
    target: Target,
    /// Base URL of the server, e.g. http://127.0.0.1:9750 (tocsin) or http://127.0.0.1:9093.
    #[arg(long, required_unless_present = "stall_probe", default_value = "")]
    url: String,
    /// Only measure how often the machine stalls a spinning thread, for this long; no server.
    #[arg(long, value_parser = humantime::parse_duration)]
    stall_probe: Option<Duration>,
    /// API key (tocsin only), sent as `Authorization: Bearer KEY`.
    #[arg(long, default_value = "bench-key")]
    key: String,
    /// One event per request, or `--batch` events per request.
    #[arg(long, value_enum, default_value = "single")]
    mode: Mode,
    /// Events per request in batch mode.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// How long to send, e.g. 10s.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Concurrent keep-alive connections (one request in flight on each, each its own task).
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Open loop: this many requests per second in total; without it, closed loop (max).
    #[arg(long)]
    rate: Option<f64>,
    /// Stop after this many events (rounded up to whole requests), or at --duration.
    #[arg(long)]
    total: Option<u64>,
    /// The event kind (tocsin) or `kind` label (Alertmanager).
    #[arg(long, default_value = "bench.load")]
    kind: String,
    /// Run a webhook receiver here and report send→receive latency.
    #[arg(long)]
    receiver: Option<SocketAddr>,
    /// How long to keep waiting for notifier requests after sending stops.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    drain: Duration,
    /// Server process to report CPU and memory for.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Worker threads of the generator's own runtime.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Name of this scenario in the RESULT line.
    #[arg(long, default_value = "run")]
    label: String,
    /// Makes labels unique across runs against the same server; default: time-based.
    #[arg(long)]
    run_id: Option<String>,
}

fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

/// Builds the body of one request holding events `first..first + n`.
struct Bodies {
    target: Target,
    mode: Mode,
    kind: String,
    run: String,
}

impl Bodies {
    fn event(&self, out: &mut String, n: u64, sent_at: u64) {
        match self.target {
            Target::Tocsin => {
                let _ = write!(
                    out,
                    r#"{{"kind":"{kind}","severity":"warning","title":"bench event {n} on host-{h}","text":"disk usage high on host-{h} volume data-{v}","labels":{{"run":"{run}","seq":"{n}","host":"host-{h}"}},"fields":{{"sent_at_ns":{sent_at},"usage":{u}}}}}"#,
                    kind = self.kind,
                    run = self.run,
                    h = n % 997,
                    v = n % 13,
                    u = n % 100,
                );
            }
            Target::Alertmanager => {
                let _ = write!(
                    out,
                    r#"{{"labels":{{"alertname":"BenchEvent","kind":"{kind}","severity":"warning","run":"{run}","seq":"{n}","host":"host-{h}"}},"annotations":{{"summary":"bench event {n} on host-{h}","description":"disk usage high on host-{h} volume data-{v}","sent_at_ns":"{sent_at}"}}}}"#,
                    kind = self.kind,
                    run = self.run,
                    h = n % 997,
                    v = n % 13,
                );
            }
        }
    }

    fn body(&self, first: u64, n: usize) -> String {
        let mut out = String::with_capacity(64 + n * 300);
        let sent_at = now_ns();
        match (self.target, self.mode) {
            (_, Mode::Health) => {}
            (Target::Tocsin, Mode::Single) => self.event(&mut out, first, sent_at),
            (Target::Tocsin, Mode::Batch) => {
                out.push_str(r#"{"events":["#);
                for i in 0..n as u64 {
                    if i > 0 {
                        out.push(',');
                    }
                    self.event(&mut out, first + i, sent_at);
                }
                out.push_str("]}");
            }
            (Target::Alertmanager, _) => {
                out.push('[');
                for i in 0..n as u64 {
                    if i > 0 {
                        out.push(',');
                    }
                    self.event(&mut out, first + i, sent_at);
                }
                out.push(']');
            }
        }
        out
    }
}

/// One keep-alive connection's requests. The sending task owns its connection and polls it
/// itself: no pool and no connection task between the two (the generator's CPU per request
/// measured within 1–3 % of hyper's pooled client, as the kernel's TCP is most of it).
struct Sender {
    addr: SocketAddr,
    host: String,
    path: String,
    auth: Option<String>,
    bodies: Arc<Bodies>,
    per_request: usize,
    method: hyper::Method,
}

type Conn = (
    hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    std::pin::Pin<Box<hyper::client::conn::http1::Connection<TokioIo<tokio::net::TcpStream>, Full<Bytes>>>>,
);

impl Sender {
    /// Sends request `i` and reads the whole response; the status, or 0 when the connection
    /// failed (it is then dropped and the next request opens a new one).
    async fn send(&self, conn: &mut Option<Conn>, i: u64) -> u16 {
        if conn.is_none() {
            *conn = self.connect().await;
        }
        let Some((sender, connection)) = conn.as_mut() else { return 0 };
        let body = self.bodies.body(i * self.per_request as u64, self.per_request);
        let mut req =
            Request::builder().method(self.method.clone()).uri(self.path.as_str()).header("host", self.host.as_str());
        if !body.is_empty() {
            req = req.header("content-type", "application/json");
        }
        if let Some(auth) = &self.auth {
            req = req.header("authorization", auth.as_str());
        }
        let req = req.body(Full::new(Bytes::from(body))).expect("valid request");
        let exchange = async {
            let resp = sender.send_request(req).await.ok()?;
            let status = resp.status().as_u16();
            resp.into_body().collect().await.ok()?;
            Some(status)
        };
        let status = tokio::select! {
            biased;
            status = exchange => status,
            // The connection ended (closed by the server, or failed) before the response.
            _ = connection.as_mut() => None,
        };
        status.unwrap_or_else(|| {
            *conn = None;
            0
        })
    }

    async fn connect(&self) -> Option<Conn> {
        let stream = tokio::net::TcpStream::connect(self.addr).await.ok()?;
        stream.set_nodelay(true).ok()?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.ok()?;
        Some((sender, Box::pin(connection)))
    }
}

#[derive(Default)]
struct WorkerStats {
    /// Service latency: request written → response read, in µs.
    latency_us: Vec<u32>,
    /// Open loop only: scheduled send time → response read (includes queueing behind the
    /// connection and timer slack), in µs.
    sched_us: Vec<u32>,
    ok_requests: u64,
    ok_events: u64,
    errors: BTreeMap<u16, u64>,
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[idx.min(sorted.len() - 1)] as f64 / 1000.0
}

struct Summary {
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
    n: usize,
}

fn summarize(mut v: Vec<u32>) -> Summary {
    v.sort_unstable();
    Summary {
        p50: percentile(&v, 50.0),
        p90: percentile(&v, 90.0),
        p99: percentile(&v, 99.0),
        max: v.last().map(|m| *m as f64 / 1000.0).unwrap_or(f64::NAN),
        n: v.len(),
    }
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find(|l| l.starts_with(key))?.split_whitespace().nth(1)?.parse().ok()
}

type Received = Arc<Mutex<(Vec<u32>, u64)>>;

/// Accepts notifier requests and records send→receive latency of every event in them.
async fn run_receiver(addr: SocketAddr, received: Received) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let _ = stream.set_nodelay(true);
            let received = received.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let received = received.clone();
                    async move {
                        let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                        let arrived = now_ns();
                        if let Ok(v) = serde_json::from_slice::<Value>(&body) {
                            let items = v.get("events").or_else(|| v.get("alerts")).and_then(Value::as_array);
                            let mut got = received.lock().unwrap();
                            for item in items.into_iter().flatten() {
                                let sent = item
                                    .pointer("/fields/sent_at_ns")
                                    .or_else(|| item.pointer("/annotations/sent_at_ns"))
                                    .and_then(|s| s.as_u64().or_else(|| s.as_str().and_then(|s| s.parse().ok())));
                                match sent {
                                    Some(sent) => {
                                        got.0.push((arrived.saturating_sub(sent) / 1000).min(u32::MAX as u64) as u32)
                                    }
                                    None => got.1 += 1,
                                }
                            }
                        }
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                    }
                });
                let _ =
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(duration) = args.stall_probe {
        stall_probe(duration, &args.label);
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(args.threads.max(1)).enable_all().build()?;
    rt.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let per_request = match args.mode {
        Mode::Single | Mode::Health => 1,
        Mode::Batch => args.batch.max(1),
    };
    let path = match (args.target, args.mode) {
        (Target::Tocsin, Mode::Health) => "/healthz",
        (Target::Alertmanager, Mode::Health) => "/-/healthy",
        (Target::Tocsin, _) => "/api/v1/events",
        (Target::Alertmanager, _) => "/api/v2/alerts",
    };
    let method = if args.mode == Mode::Health { hyper::Method::GET } else { hyper::Method::POST };
    let uri: hyper::Uri = format!("{}{}", args.url.trim_end_matches('/'), path).parse()?;
    let run_id = args.run_id.clone().unwrap_or_else(|| format!("r{}", now_ns() / 1_000_000 % 100_000_000));
    let bodies = Arc::new(Bodies { target: args.target, mode: args.mode, kind: args.kind.clone(), run: run_id });
    let auth = format!("Bearer {}", args.key);
    let max_requests = args.total.map(|t| t.div_ceil(per_request as u64)).unwrap_or(u64::MAX);

    let received: Received = Arc::new(Mutex::new((Vec::new(), 0)));
    if let Some(addr) = args.receiver {
        run_receiver(addr, received.clone()).await?;
    }

    let addr: SocketAddr =
        tokio::net::lookup_host(format!("{}:{}", uri.host().unwrap_or("127.0.0.1"), uri.port_u16().unwrap_or(80)))
            .await?
            .next()
            .ok_or_else(|| anyhow::anyhow!("{} resolves to no address", args.url))?;
    let host = uri.authority().map(|a| a.to_string()).unwrap_or_default();

    let server_cpu0 = args.server_pid.and_then(|p| cpu_seconds(&p.to_string()));
    let self_cpu0 = cpu_seconds("self");
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + args.duration;
    let mut tasks = Vec::new();
    for _ in 0..args.connections {
        let sender = Sender {
            addr,
            host: host.clone(),
            path: path.to_string(),
            auth: (args.target == Target::Tocsin).then(|| auth.clone()),
            bodies: bodies.clone(),
            per_request,
            method: method.clone(),
        };
        let next = next.clone();
        let rate = args.rate;
        tasks.push(tokio::spawn(async move {
            let mut stats = WorkerStats::default();
            let mut conn = None;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= max_requests {
                    break;
                }
                let scheduled = match rate {
                    Some(r) => {
                        let at = start + Duration::from_secs_f64(i as f64 / r);
                        if at >= deadline {
                            break;
                        }
                        tokio::time::sleep_until(at.into()).await;
                        Some(at)
                    }
                    None => None,
                };
                if Instant::now() >= deadline {
                    break;
                }
                let sent = Instant::now();
                let status = sender.send(&mut conn, i).await;
                let done = Instant::now();
                stats.latency_us.push((done - sent).as_micros().min(u32::MAX as u128) as u32);
                if let Some(at) = scheduled {
                    stats.sched_us.push((done - at).as_micros().min(u32::MAX as u128) as u32);
                }
                if StatusCode::from_u16(status).is_ok_and(|s| s.is_success()) {
                    stats.ok_requests += 1;
                    stats.ok_events += per_request as u64;
                } else {
                    *stats.errors.entry(status).or_default() += 1;
                    if status == 0 {
                        // A refused or reset connection: do not spin.
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
            }
            stats
        }));
    }
    let mut all = WorkerStats::default();
    for t in tasks {
        let s = t.await?;
        all.latency_us.extend(s.latency_us);
        all.sched_us.extend(s.sched_us);
        all.ok_requests += s.ok_requests;
        all.ok_events += s.ok_events;
        for (k, v) in s.errors {
            *all.errors.entry(k).or_default() += v;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let self_cpu = self_cpu0.and_then(|c0| cpu_seconds("self").map(|c1| c1 - c0));
    let server_cpu =
        server_cpu0.and_then(|c0| args.server_pid.and_then(|p| cpu_seconds(&p.to_string())).map(|c1| c1 - c0));

    let lat = summarize(std::mem::take(&mut all.latency_us));
    let rps = all.ok_requests as f64 / elapsed;
    let eps = all.ok_events as f64 / elapsed;
    let errors: BTreeMap<String, u64> =
        all.errors.iter().map(|(k, v)| (if *k == 0 { "transport".to_string() } else { k.to_string() }, *v)).collect();
    println!(
        "{} {:?} {:?} x{} conns={} rate={}: {:.1}s, {} ok requests ({:.0} req/s), {:.0} events/s, errors {:?}",
        args.label,
        args.target,
        args.mode,
        per_request,
        args.connections,
        args.rate.map(|r| r.to_string()).unwrap_or_else(|| "max".into()),
        elapsed,
        all.ok_requests,
        rps,
        eps,
        errors
    );
    println!(
        "  request latency ms: p50 {:.3}  p90 {:.3}  p99 {:.3}  max {:.3}  (n={})",
        lat.p50, lat.p90, lat.p99, lat.max, lat.n
    );
    let mut result = serde_json::json!({
        "label": args.label,
        "target": format!("{:?}", args.target).to_lowercase(),
        "mode": format!("{:?}", args.mode).to_lowercase(),
        "batch": per_request,
        "connections": args.connections,
        "rate": args.rate,
        "seconds": elapsed,
        "ok_requests": all.ok_requests,
        "requests_per_s": rps,
        "events_per_s": eps,
        "p50_ms": lat.p50, "p90_ms": lat.p90, "p99_ms": lat.p99, "max_ms": lat.max,
        "errors": errors,
    });
    if !all.sched_us.is_empty() {
        let s = summarize(std::mem::take(&mut all.sched_us));
        println!(
            "  from scheduled time ms: p50 {:.3}  p90 {:.3}  p99 {:.3}  max {:.3}  (incl. tokio 1 ms timer slack)",
            s.p50, s.p90, s.p99, s.max
        );
        result["sched_p50_ms"] = s.p50.into();
        result["sched_p99_ms"] = s.p99.into();
        result["sched_max_ms"] = s.max.into();
    }
    if let Some(c) = self_cpu {
        println!("  generator CPU: {:.0}% of one core", 100.0 * c / elapsed);
        result["loadgen_cpu_pct"] = (100.0 * c / elapsed).round().into();
    }
    if let Some(c) = server_cpu {
        println!("  server CPU: {:.0}% of one core", 100.0 * c / elapsed);
        result["server_cpu_pct"] = (100.0 * c / elapsed).round().into();
    }

    if args.receiver.is_some() {
        let expected = all.ok_events;
        let drain_until = Instant::now() + args.drain;
        while Instant::now() < drain_until && (received.lock().unwrap().0.len() as u64) < expected {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (lat, missing_ts) = {
            let mut got = received.lock().unwrap();
            (std::mem::take(&mut got.0), got.1)
        };
        let s = summarize(lat);
        println!(
            "  send→notifier ms: p50 {:.3}  p90 {:.3}  p99 {:.3}  max {:.3}  (received {} of {} sent, {} without timestamp)",
            s.p50, s.p90, s.p99, s.max, s.n, expected, missing_ts
        );
        result["notify_p50_ms"] = s.p50.into();
        result["notify_p90_ms"] = s.p90.into();
        result["notify_p99_ms"] = s.p99.into();
        result["notify_max_ms"] = s.max.into();
        result["notify_received"] = (s.n as u64).into();
    }
    if let Some(pid) = args.server_pid {
        let rss = status_kib(pid, "VmRSS:");
        let hwm = status_kib(pid, "VmHWM:");
        if let (Some(rss), Some(hwm)) = (rss, hwm) {
            println!("  server memory: VmRSS {:.1} MiB, VmHWM {:.1} MiB", rss as f64 / 1024.0, hwm as f64 / 1024.0);
            result["rss_mib"] = ((rss as f64 / 1024.0 * 10.0).round() / 10.0).into();
            result["hwm_mib"] = ((hwm as f64 / 1024.0 * 10.0).round() / 10.0).into();
        }
    }
    println!("RESULT {result}");
    Ok(())
}

/// Spins one thread per core for `duration`, reading the monotonic clock, and reports the
/// gaps between two readings over 0.5 ms: times the thread was not running although it
/// wanted to. On an otherwise idle machine these are the hypervisor's (or the kernel's) doing.
fn stall_probe(duration: Duration, label: &str) {
    const BOUNDS_US: [u64; 5] = [500, 1_000, 2_000, 5_000, 10_000];
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let spinners: Vec<_> = (0..cores)
        .map(|_| {
            std::thread::spawn(move || {
                let mut counts = [0u64; BOUNDS_US.len()];
                let mut lost = Duration::ZERO;
                let start = Instant::now();
                let mut last = start;
                while last - start < duration {
                    let now = Instant::now();
                    let gap = now - last;
                    last = now;
                    let us = gap.as_micros() as u64;
                    if us >= BOUNDS_US[0] {
                        lost += gap;
                        let bucket = BOUNDS_US.iter().rposition(|b| us >= *b).unwrap_or(0);
                        counts[bucket] += 1;
                    }
                }
                (counts, lost)
            })
        })
        .collect();
    let mut counts = [0u64; BOUNDS_US.len()];
    let mut lost = Duration::ZERO;
    for s in spinners {
        let (c, l) = s.join().expect("spinner");
        counts.iter_mut().zip(c).for_each(|(a, b)| *a += b);
        lost += l;
    }
    let total = duration.as_secs_f64() * cores as f64;
    let lost_pct = 100.0 * lost.as_secs_f64() / total;
    let per_s = |n: u64| n as f64 / total;
    println!(
        "{label} stall probe: {cores} cores x {:.1}s; stalls per core-second: 0.5-1 ms {:.2}, 1-2 ms {:.2}, \
         2-5 ms {:.2}, 5-10 ms {:.2}, >=10 ms {:.2}; {lost_pct:.2}% of the time lost",
        duration.as_secs_f64(),
        per_s(counts[0]),
        per_s(counts[1]),
        per_s(counts[2]),
        per_s(counts[3]),
        per_s(counts[4]),
    );
    let result = serde_json::json!({
        "label": label,
        "stalls_per_core_s_over_1ms": per_s(counts[1..].iter().sum()),
        "stalls_per_core_s_over_2ms": per_s(counts[2..].iter().sum()),
        "stall_lost_pct": lost_pct,
    });
    println!("RESULT {result}");
}
