//! Graceful shutdown: SIGTERM drains accepted work, exits 0.

use std::time::Duration;

use serde_json::json;
use tocsin::testkit::fake_slack::{FakeSlack, Mode};

use crate::harness::*;

/// Everything routed to the fake Slack's `slow` hook, unpaced, with quick retries.
fn slow_destination(slack: &FakeSlack) -> String {
    format!(
        "{}\n{}\n{}\n{}",
        fast_delivery(5),
        unpaced(&["slow"]),
        slack_notifier("slow", &slack.hook_url("slow")),
        route("slow", "")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_delivers_everything_accepted_then_exits_zero() {
    let slack = FakeSlack::start().await;
    slack.set_latency("slow", Duration::from_millis(300));
    // Pacing off: at 1/s the ten messages alone would take the whole grace period; this test
    // is about SIGTERM draining what was accepted, which the slow (300 ms) hook makes visible.
    let body = slow_destination(&slack);
    let mut d = Daemon::start(Options::new(body)).await;
    for i in 0..10u32 {
        d.accept(&json!({"kind": "drain.test", "fields": {"seq": i.to_string()}})).await;
    }
    let status = d.terminate(Duration::from_secs(15)).await;
    assert_eq!(status.code(), Some(0), "stderr:\n{}", d.stderr());
    // Grace is 10 s and the work takes about 3 s: all delivered before exit.
    assert_eq!(seqs(&slack.messages("slow")), (0..10).collect::<Vec<_>>(), "stderr:\n{}", d.stderr());

    // Nothing left pending: a restart sends nothing again.
    slack.set_latency("slow", Duration::ZERO);
    d.launch().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(slack.messages("slow").len(), 10);
    assert_eq!(d.metric("tocsin_outbox_pending").await, Some(0.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_short_grace_keeps_the_rest_for_the_next_start() {
    let slack = FakeSlack::start().await;
    slack.set_latency("slow", Duration::from_millis(300));
    // Pacing off: the slow hook (300 ms a message) is what must not fit the grace; at 1/s the
    // 19 or so left after the restart would also take 19 s to arrive one by one.
    let body = slow_destination(&slack);
    let mut opts = Options::new(body);
    opts.server_extra = "shutdown_grace = \"1s\"".into();
    let mut d = Daemon::start(opts).await;
    for i in 0..20u32 {
        d.accept(&json!({"kind": "drain.test", "fields": {"seq": i.to_string()}})).await;
    }
    let status = d.terminate(Duration::from_secs(15)).await;
    assert_eq!(status.code(), Some(0), "stderr:\n{}", d.stderr());
    let before = slack.messages("slow").len();
    assert!(before < 20, "20 × 300 ms cannot fit a 1 s grace");

    slack.set_latency("slow", Duration::ZERO);
    d.launch().await;
    assert!(slack.wait_for("slow", 20, Duration::from_secs(10)).await);
    let mut first_seen = Vec::new();
    for s in seqs(&slack.messages("slow")) {
        if !first_seen.contains(&s) {
            first_seen.push(s);
        }
    }
    assert_eq!(first_seen, (0..20).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_an_outage_exits_promptly_and_keeps_the_messages() {
    let slack = FakeSlack::start().await;
    slack.set_mode("out", Mode::ServerError(None));
    let body =
        format!("{}\n{}\n{}", fast_delivery(1000), slack_notifier("out", &slack.hook_url("out")), route("out", ""));
    let mut d = Daemon::start(Options::new(body)).await;
    for i in 0..5u32 {
        d.accept(&json!({"kind": "outage.test", "fields": {"seq": i.to_string()}})).await;
    }
    assert!(eventually(Duration::from_secs(5), || async { slack.request_count("out") >= 2 }).await);
    let asked = std::time::Instant::now();
    let status = d.terminate(Duration::from_secs(15)).await;
    assert_eq!(status.code(), Some(0), "stderr:\n{}", d.stderr());
    assert!(asked.elapsed() < Duration::from_secs(5), "a retry wait does not hold shutdown: {:?}", asked.elapsed());

    slack.set_mode("out", Mode::Normal);
    d.launch().await;
    assert!(slack.wait_for("out", 5, Duration::from_secs(10)).await);
    assert_eq!(seqs(&slack.messages("out")), [0, 1, 2, 3, 4]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_is_a_clean_shutdown_too() {
    let slack = FakeSlack::start().await;
    let body = format!("{}\n{}\n{}", fast_delivery(5), slack_notifier("s", &slack.hook_url("s")), route("s", ""));
    let mut d = Daemon::start(Options::new(body)).await;
    d.accept(&json!({"kind": "int.test", "fields": {"seq": "0"}})).await;
    d.signal("INT");
    let status = d.wait_exit(Duration::from_secs(15)).await.expect("exits on SIGINT");
    assert_eq!(status.code(), Some(0), "stderr:\n{}", d.stderr());
    assert_eq!(seqs(&slack.messages("s")), [0]);
}

/// Sends the head and half the body of a POST, then returns the socket and the rest.
async fn half_sent_post(d: &Daemon, event: &serde_json::Value) -> (tokio::net::TcpStream, Vec<u8>) {
    use tokio::io::AsyncWriteExt;
    let body = event.to_string().into_bytes();
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", d.port)).await.expect("connect");
    let head = format!(
        "POST /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {KEY_RW}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let half = body.len() / 2;
    stream.write_all(&body[..half]).await.unwrap();
    stream.flush().await.unwrap();
    (stream, body[half..].to_vec())
}

async fn finish_post(mut stream: tokio::net::TcpStream, rest: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = stream.write_all(rest).await;
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

// Issue 2 found that these were left pending until the next start; fixed since: SIGTERM
// drains HTTP before delivery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_in_flight_at_sigterm_are_answered_and_delivered_before_exit() {
    let slack = FakeSlack::start().await;
    let body = format!(
        "{}\n{}\n{}\n{}\n{}",
        fast_delivery(5),
        slack_notifier("warm", &slack.hook_url("warm")),
        slack_notifier("cold", &slack.hook_url("cold")),
        route("warm", "kinds = [\"warm.*\"]"),
        route("cold", "kinds = [\"cold.*\"]"),
    );
    let mut d = Daemon::start(Options::new(body)).await;
    // `warm` has a worker already, idle; `cold` has none yet.
    d.accept(&json!({"kind": "warm.event", "fields": {"seq": "0"}})).await;
    assert!(slack.wait_for("warm", 1, Duration::from_secs(5)).await);

    let (warm_stream, warm_rest) = half_sent_post(&d, &json!({"kind": "warm.event", "fields": {"seq": "1"}})).await;
    let (cold_stream, cold_rest) = half_sent_post(&d, &json!({"kind": "cold.event", "fields": {"seq": "1"}})).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    d.signal("TERM");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let warm_answer = finish_post(warm_stream, &warm_rest).await;
    let cold_answer = finish_post(cold_stream, &cold_rest).await;
    assert!(warm_answer.starts_with("HTTP/1.1 202"), "in-flight request drained: {warm_answer:?}");
    assert!(cold_answer.starts_with("HTTP/1.1 202"), "in-flight request drained: {cold_answer:?}");

    let status = d.wait_exit(Duration::from_secs(15)).await.expect("exits");
    assert_eq!(status.code(), Some(0));
    let warm_before_exit = seqs(&slack.messages("warm"));
    let cold_before_exit = seqs(&slack.messages("cold"));

    // Not lost in any case: a restart delivers what was left.
    d.launch().await;
    assert!(slack.wait_for("warm", 2, Duration::from_secs(5)).await);
    assert!(slack.wait_for("cold", 1, Duration::from_secs(5)).await);
    assert!(d.terminate(Duration::from_secs(10)).await.success());

    assert_eq!(warm_before_exit, [0, 1], "accepted before exit, so delivered before exit");
    assert_eq!(cold_before_exit, [1], "accepted before exit, so delivered before exit");
}

// A stop asked for while a reload is under way used to be lost (the process went on running):
// the handlers were made anew for every wait, and a signal between two waits had no listener.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_reload_still_stops_the_daemon() {
    let slack = FakeSlack::start().await;
    let body = format!("{}\n{}", slack_notifier("ops", &slack.hook_url("ops")), route("ops", ""));
    let mut d = Daemon::start(Options::new(body)).await;
    for _ in 0..5 {
        let pid = d.pid().to_string();
        let status = std::process::Command::new("sh")
            .args(["-c", &format!("kill -HUP {pid} && kill -TERM {pid}")])
            .status()
            .expect("run kill");
        assert!(status.success());
        let exit = d.wait_exit(Duration::from_secs(10)).await;
        if exit.is_none() {
            d.kill();
            panic!("SIGTERM right after SIGHUP was ignored; the end of stderr:\n{}", d.stderr_tail());
        }
        assert_eq!(exit.and_then(|s| s.code()), Some(0), "a clean stop: {}", d.stderr_tail());
        d.launch().await;
    }
    assert!(d.terminate(Duration::from_secs(10)).await.success());
}

// `server.shutdown_grace` bounds the whole stop: a request that never finishes and a slow
// destination do not get a grace period each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grace_period_is_one_budget_for_requests_and_deliveries() {
    let slack = FakeSlack::start().await;
    slack.set_latency("slow", Duration::from_millis(300));
    let body = slow_destination(&slack);
    let mut opts = Options::new(body);
    opts.server_extra = "shutdown_grace = \"2s\"".into();
    let mut d = Daemon::start(opts).await;
    for i in 0..30u32 {
        d.accept(&json!({"kind": "budget.test", "fields": {"seq": i.to_string()}})).await;
    }
    // Never finished: it holds the HTTP drain for the whole grace period.
    let (_stuck, _rest) = half_sent_post(&d, &json!({"kind": "budget.test", "fields": {"seq": "99"}})).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    d.signal("TERM");
    let signalled = std::time::Instant::now();
    let status = d.wait_exit(Duration::from_secs(15)).await.expect("exits");
    let took = signalled.elapsed();
    assert_eq!(status.code(), Some(0), "{}", d.stderr_tail());
    // 2 s of grace, plus closing the store; a grace per step would be 4 s and more.
    assert!(took < Duration::from_millis(3500), "stopped after {took:?}: {}", d.stderr_tail());
    assert!(d.stderr().contains("requests still open after the grace period"));

    // What the grace did not cover is delivered after the next start.
    slack.set_latency("slow", Duration::ZERO);
    d.launch().await;
    assert!(slack.wait_for("slow", 30, Duration::from_secs(10)).await);
    let mut seen: Vec<u64> = seqs(&slack.messages("slow"));
    seen.sort();
    seen.dedup();
    assert_eq!(seen, (0..30).collect::<Vec<_>>());
}
