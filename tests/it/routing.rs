//! Routing to the right webhook with the right content.

use std::time::Duration;

use serde_json::{json, Value};
use tocsin::testkit::fake_slack::FakeSlack;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_events_to_the_right_hooks_with_the_right_content() {
    let slack = FakeSlack::start().await;
    let body = format!(
        "{delivery}\n{a}\n{b}\n\
         [[routes]]\nkinds = [\"db.*\"]\nmin_severity = \"error\"\nnotifier = \"a\"\n\n\
         [[routes]]\nkinds = [\"db.*\"]\nnotifier = \"b\"\nchannel = \"#db\"\n\n\
         [[routes]]\nlabels = {{ team = \"pay\" }}\nnotifier = \"a\"\ncontinue = true\n\n\
         [[routes]]\nkinds = [\"pay.*\"]\nnotifier = \"b\"\n\n\
         [default_route]\nkinds = [\"user.*\"]\nnotifier = \"a\"\n",
        delivery = fast_delivery(5),
        a = slack_notifier("a", &slack.hook_url("a")) + "username = \"tocsin-bot\"\nicon_emoji = \":bell:\"\n",
        b = slack_notifier("b", &slack.hook_url("b")),
    );
    let d = Daemon::start(Options::new(body)).await;

    let events = [
        // routes[0]: db.* at error or above → a only (first match wins).
        json!({"kind": "db.down", "severity": "critical", "title": "DB down", "text": "primary <gone> & replica lagging",
               "fields": {"seq": "1", "host": "db-1"}, "link": "https://status.example.com/db"}),
        // routes[1]: db.* below error → b.
        json!({"kind": "db.slow", "severity": "warning", "title": "DB slow", "text": "p99 at 2s", "fields": {"seq": "2"}}),
        // routes[2] (continue) → a, then routes[3] → b.
        json!({"kind": "pay.failed", "severity": "error", "title": "Payment failed", "labels": {"team": "pay"},
               "user": "carol@example.com", "fields": {"seq": "3", "amount": "42.00"}}),
        // routes[2] (continue) → a; nothing after it matches; no default since one matched.
        json!({"kind": "app.crash", "title": "App crashed", "labels": {"team": "pay"}, "fields": {"seq": "4"}}),
        // No route matches → default_route → a.
        json!({"kind": "user.registered", "title": "New user", "user": "alice@example.com", "fields": {"seq": "5", "plan": "pro"}}),
        // Nothing matches, not even the default route: stored, not sent.
        json!({"kind": "other.thing", "title": "Unrouted", "fields": {"seq": "6"}}),
        // db.* below the first route's floor, labels irrelevant → b.
        json!({"kind": "db.vacuum", "severity": "info", "labels": {"team": "pay"}, "fields": {"seq": "7"}}),
    ];
    for e in &events {
        d.accept(e).await;
    }

    assert!(slack.wait_for("a", 4, Duration::from_secs(10)).await, "a got {:?}", texts(&slack.messages("a")));
    assert!(slack.wait_for("b", 3, Duration::from_secs(10)).await, "b got {:?}", texts(&slack.messages("b")));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let a = slack.messages("a");
    let b = slack.messages("b");
    assert_eq!(seqs(&a), [1, 3, 4, 5], "hook a: {:?}", texts(&a));
    assert_eq!(seqs(&b), [2, 3, 7], "hook b: {:?}", texts(&b));

    // Content: severity marker, escaped title and text in the fallback and in the blocks.
    let db_down = &a[0];
    assert_eq!(
        db_down["text"].as_str().unwrap(),
        ":rotating_light: DB down\nprimary &lt;gone&gt; &amp; replica lagging"
    );
    let header = &db_down["blocks"][0];
    assert_eq!(header["type"], "header");
    assert_eq!(header["text"]["text"], ":rotating_light: DB down");
    let visible = block_text(db_down);
    for needle in [
        "primary &lt;gone&gt; &amp; replica lagging",
        "*host*\ndb-1",
        "*seq*\n1",
        "db.down",
        "https://status.example.com/db",
    ] {
        assert!(visible.contains(needle), "{needle:?} not in {visible}");
    }
    assert!(a[1]["text"].as_str().unwrap().starts_with(":red_circle: Payment failed"), "{}", a[1]);
    let pay = block_text(&a[1]);
    assert!(pay.contains("*user*\ncarol@example.com") && pay.contains("*amount*\n42.00"), "{pay}");
    assert_eq!(b[0]["text"].as_str().unwrap(), ":warning: DB slow\np99 at 2s");
    // Legacy overrides: the notifier's username and icon, the route's channel.
    assert_eq!((a[0]["username"].as_str(), a[0]["icon_emoji"].as_str()), (Some("tocsin-bot"), Some(":bell:")));
    assert_eq!(b[0]["channel"], "#db");
    assert!(b[0].get("username").is_none() && a[0].get("channel").is_none(), "{} {}", a[0], b[0]);
    assert_eq!(a[3]["text"].as_str().unwrap(), ":large_blue_circle: New user");
    // An event without a title is titled by its kind.
    assert!(b[2]["text"].as_str().unwrap().contains("db.vacuum"), "{}", b[2]);
    assert!(block_text(&b[0]).contains("p99 at 2s"));

    // The unrouted event is stored and searchable.
    let (status, found, _) = d.get(Some(KEY_RW), "/api/v1/events?kind=other.thing").await;
    assert_eq!(status, 200);
    let found: Vec<Value> = found["events"].as_array().unwrap().clone();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["title"], "Unrouted");
    let (_, all, _) = d.get(Some(KEY_RW), "/api/v1/events?limit=100").await;
    assert_eq!(all["events"].as_array().unwrap().len(), events.len());
    assert_eq!(slack.total_accepted(), 7);
    let metrics = d.metrics().await;
    for (notifier, n) in [("a", 4.0), ("b", 3.0)] {
        let delivered = format!("tocsin_deliveries_total{{notifier=\"{notifier}\",outcome=\"delivered\"}}");
        assert_eq!(metric_value(&metrics, &delivered), Some(n), "{delivered} in\n{metrics}");
        let latency = format!("tocsin_delivery_latency_seconds_count{{notifier=\"{notifier}\"}}");
        assert_eq!(metric_value(&metrics, &latency), Some(n), "{latency} in\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_at_every_limit_fits_slack_with_visible_truncation() {
    let slack = FakeSlack::start().await;
    // `group_interval = "1s"`: a `resolved` waits for its group's interval after the alert's
    // last notification (default 1 min).
    let body = format!(
        "{}\n{}\n{}",
        fast_delivery(3),
        slack_notifier("big", &slack.hook_url("big")),
        route("big", "group_interval = \"1s\"")
    );
    let d = Daemon::start(Options::new(body)).await;
    let fields: serde_json::Map<String, Value> =
        (0..64).map(|i| (format!("field_{i:02}"), json!("v".repeat(3000)))).collect();
    let labels: serde_json::Map<String, Value> = (0..64).map(|i| (format!("l{i}"), json!("x"))).collect();
    d.accept(&json!({
        "kind": "k".repeat(128),
        "severity": "critical",
        "title": "é".repeat(256),
        "text": "<&>".repeat(16 * 1024 / 3),
        "user": "u@example.com",
        "labels": labels,
        "fields": fields,
        "link": "https://example.com/a|b>c",
    }))
    .await;
    assert!(slack.wait_for("big", 1, Duration::from_secs(5)).await, "refused by Slack: {:?}", slack.rejections("big"));
    assert!(slack.rejections("big").is_empty());
    let m = &slack.messages("big")[0];
    let header = m["blocks"][0]["text"]["text"].as_str().unwrap();
    assert!(header.chars().count() <= 150 && header.ends_with('…'), "{header}");
    let visible = block_text(m);
    assert!(visible.contains("(truncated)"), "a visible marker where text was cut");
    assert!(m["text"].as_str().unwrap().chars().count() <= 4000);
    assert!(!visible.contains("<&>"), "mrkdwn control characters are escaped");

    // Since issue 4 only the resolution of an announced alert is sent: fire it first.
    d.accept(&json!({"kind": "cpu.high", "severity": "critical", "title": "CPU high", "status": "firing"})).await;
    assert!(slack.wait_for("big", 2, Duration::from_secs(5)).await);
    d.accept(&json!({"kind": "cpu.high", "severity": "critical", "title": "CPU high", "status": "resolved"})).await;
    assert!(slack.wait_for("big", 3, Duration::from_secs(5)).await, "{:?}", texts(&slack.messages("big")));
    let resolved = &slack.messages("big")[2];
    assert_eq!(resolved["blocks"][0]["text"]["text"], ":white_check_mark: [RESOLVED] CPU high");
    assert_eq!(resolved["text"], ":white_check_mark: [RESOLVED] CPU high");
}

/// The README's first command: the daemon on the shipped example (SQLite, console notifier).
// Regression: a one-off event is a group of its own and must not wait for `group_wait`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_config_runs_and_prints_to_the_console() {
    let example = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/tocsin.toml")).unwrap();
    assert!(example.contains("listen = \"127.0.0.1:9750\""));
    let mut opts = Options::new("");
    opts.raw = Some(example);
    let mut d = Daemon::start(opts).await;
    let (status, body) = d
        .post(
            "dev-key-change-me",
            &json!({"kind": "user.registered", "severity": "warning", "title": "New user registration",
                    "text": "alice@example.com signed up", "user": "alice@example.com", "fields": {"plan": "pro"}}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert!(
        eventually(Duration::from_secs(5), || async { d.stdout().contains("New user registration") }).await,
        "stdout: {}",
        d.stdout()
    );
    let stdout = d.stdout();
    assert!(stdout.contains("[WARNING] New user registration"), "{stdout}");
    assert!(stdout.contains("  alice@example.com signed up") && stdout.contains("  plan: pro"), "{stdout}");
    assert!(d.dir.path().join("tocsin.db").exists(), "the store is sqlite://tocsin.db in the working directory");
    assert!(d.terminate(Duration::from_secs(10)).await.success());
}
