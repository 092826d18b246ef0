//! Graceful shutdown: SIGTERM drains accepted work, exits 0.

use std::time::Duration;

use serde_json::json;
use tocsin::testkit::fake_slack::{FakeSlack, Mode};

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_delivers_everything_accepted_then_exits_zero() {
    let slack = FakeSlack::start().await;
    slack.set_latency("slow", Duration::from_millis(300));
    let body =
        format!("{}\n{}\n{}", fast_delivery(5), slack_notifier("slow", &slack.hook_url("slow")), route("slow", ""));
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
    let body =
        format!("{}\n{}\n{}", fast_delivery(5), slack_notifier("slow", &slack.hook_url("slow")), route("slow", ""));
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
