//! Durable delivery: outages, rate limits, crashes and permanent errors.

use std::time::Duration;

use serde_json::json;
use tocsin::testkit::fake_slack::{FakeSlack, Mode, RateLimit};

use crate::harness::*;

fn two_hooks(slack: &FakeSlack, first: &str, second: &str, max_attempts: u32) -> String {
    format!(
        "{}\n{}\n{}\n{}\n{}",
        fast_delivery(max_attempts),
        slack_notifier(first, &slack.hook_url(first)),
        slack_notifier(second, &slack.hook_url(second)),
        route(first, &format!("kinds = [\"{first}.*\"]")),
        route(second, &format!("kinds = [\"{second}.*\"]")),
    )
}

// Runs WITH the default pacing (1 message/second, burst 1, fold above 20 due): the outage
// leaves a backlog that must still arrive complete and in order, folded or not, without a
// single 429.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_down_then_back_delivers_everything_in_order_without_delaying_others() {
    let slack = FakeSlack::start().await;
    // Slack's own limit, so a send faster than 1/s would show up as a 429.
    slack.set_rate_limit("down", Some(RateLimit { per_second: 1.0, burst: 1 }));
    slack.set_rate_limit("up", Some(RateLimit { per_second: 1.0, burst: 1 }));
    slack.set_mode("down", Mode::ServerError(None));
    let d = Daemon::start(Options::new(two_hooks(&slack, "down", "up", 100))).await;

    // More than `fold_threshold` (20) messages for `down`, so its backlog is folded.
    const DOWN: u64 = 30;
    for i in 0..DOWN {
        d.accept(&seq_event("down.event", i)).await;
        if i % 6 == 0 {
            d.accept(&seq_event("up.event", i / 6)).await;
        }
    }
    // The healthy destination is not held up by the failing one: its five messages go out at
    // its own pace (about 4 s) while `down` still refuses everything.
    assert!(slack.wait_for("up", 5, Duration::from_secs(8)).await, "up got {:?}", texts(&slack.messages("up")));
    assert_eq!(seqs(&slack.messages("up")), [0, 1, 2, 3, 4]);
    assert_eq!(slack.messages("down").len(), 0);
    let pending = d.metric("tocsin_outbox_pending").await.unwrap_or(0.0);
    assert!(pending >= (DOWN - 1) as f64, "the failing destination's messages wait in the outbox: {pending}");

    // Down a little longer, then one round of dropped connections, then back to normal.
    assert!(eventually(Duration::from_secs(5), || async { slack.request_count("down") >= 4 }).await);
    let before = slack.request_count("down");
    slack.set_mode("down", Mode::DropConnections(2));
    assert!(
        eventually(Duration::from_secs(15), || async { seqs(&slack.messages("down")).len() >= DOWN as usize }).await,
        "down got {:?}",
        seqs(&slack.messages("down"))
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let down = slack.messages("down");
    assert_eq!(seqs(&down), (0..DOWN).collect::<Vec<_>>(), "every message, once, in order: {:?}", texts(&down));
    assert!(folded_count(&down) >= 1, "the backlog was folded: {:?}", texts(&down));
    assert!(down.len() < 5, "a backlog is folded, not queued at 1/s: {} messages", down.len());
    assert!(slack.request_count("down") >= before + 2 + down.len() as u64, "the dropped connections were retried");
    assert_eq!(slack.messages("up").len(), 5);
    assert_eq!(slack.rate_limited_count("down"), 0, "pacing never provokes a 429");
    assert_eq!(slack.rate_limited_count("up"), 0, "pacing never provokes a 429");
    let (_, dead, _) = d.get(Some(KEY_RW), "/api/v1/deliveries/dead").await;
    assert_eq!(dead["dead_letters"].as_array().map(Vec::len), Some(0), "{dead}");
}

// Was `rate_limit_is_honoured_for_that_hook_only`, which expected tocsin to run into the fake's
// 1/s limit. Since issue 4 tocsin paces every Slack webhook at 1/s itself: at Slack's limit it
// must not provoke a single 429.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pacing_keeps_each_hook_under_slacks_limit_without_a_429() {
    let slack = FakeSlack::start().await;
    slack.set_rate_limit("rl", Some(RateLimit { per_second: 1.0, burst: 1 }));
    slack.set_rate_limit("other", Some(RateLimit { per_second: 1.0, burst: 1 }));
    let d = Daemon::start(Options::new(two_hooks(&slack, "rl", "other", 20))).await;

    for i in 0..4u64 {
        d.accept(&seq_event("rl.event", i)).await;
    }
    for i in 0..3u64 {
        d.accept(&seq_event("other.event", i)).await;
    }
    assert!(
        slack.wait_for("other", 3, Duration::from_secs(6)).await,
        "other got {:?}",
        texts(&slack.messages("other"))
    );
    assert!(slack.wait_for("rl", 4, Duration::from_secs(8)).await, "rl got {:?}", texts(&slack.messages("rl")));
    assert_eq!(seqs(&slack.messages("rl")), [0, 1, 2, 3]);
    assert_eq!(seqs(&slack.messages("other")), [0, 1, 2]);
    for name in ["rl", "other"] {
        assert_eq!(slack.rate_limited_count(name), 0, "{name}: {:?}", slack.rejections(name));
        let received = slack.received(name);
        for pair in received.windows(2) {
            let gap = pair[1].at.duration_since(pair[0].at);
            assert!(gap >= Duration::from_millis(950), "{name}: two messages {gap:?} apart");
        }
    }
    // The hooks are paced independently: `other` did not queue behind `rl`.
    let (rl, other) = (slack.received("rl"), slack.received("other"));
    assert!(other[2].at < rl[3].at, "other waited for rl");
}

// A hook stricter than Slack's usual limit (0.5/s) answers tocsin's 1/s with 429 and
// `Retry-After: 1`: that hook waits it out, in order, while another hook keeps flowing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stricter_limit_is_honoured_via_retry_after_for_that_hook_only() {
    let slack = FakeSlack::start().await;
    slack.set_rate_limit("strict", Some(RateLimit { per_second: 0.5, burst: 1 }));
    let mut body = two_hooks(&slack, "strict", "other", 20);
    // `other` unpaced, so that its messages go out at once while `strict` is paused.
    body.push_str(&unpaced(&["other"]));
    let d = Daemon::start(Options::new(body)).await;

    for i in 0..4u64 {
        d.accept(&seq_event("strict.event", i)).await;
    }
    assert!(eventually(Duration::from_secs(5), || async { slack.rate_limited_count("strict") >= 1 }).await);
    let first_429 = slack.rejections("strict")[0].at;
    for i in 0..3u64 {
        d.accept(&seq_event("other.event", i)).await;
    }
    assert!(slack.wait_for("other", 3, Duration::from_secs(3)).await);
    assert!(
        slack.wait_for("strict", 4, Duration::from_secs(15)).await,
        "strict got {:?}",
        texts(&slack.messages("strict"))
    );
    assert_eq!(seqs(&slack.messages("strict")), [0, 1, 2, 3]);
    assert_eq!(seqs(&slack.messages("other")), [0, 1, 2]);

    let rejections = slack.rejections("strict");
    assert!(rejections.iter().all(|r| r.status == 429), "{rejections:?}");
    let received = slack.received("strict");
    // After each 429 with Retry-After: 1, the next request came at least a second later.
    for r in &rejections {
        let next_ok = received.iter().map(|m| m.at).filter(|at| *at > r.at).min();
        let next_429 = rejections.iter().map(|x| x.at).filter(|at| *at > r.at).min();
        if let Some(next) = [next_ok, next_429].into_iter().flatten().min() {
            let gap = next.duration_since(r.at);
            assert!(gap >= Duration::from_millis(950), "retried {gap:?} after a 429, before Retry-After");
        }
    }
    // `other` was not paused by strict's Retry-After: it was done before strict's next success.
    let strict_after_429 = received.iter().map(|m| m.at).filter(|at| *at > first_429).min().unwrap();
    let other = slack.received("other");
    assert!(other[2].at < strict_after_429, "other waited for strict's Retry-After");
    assert_eq!(slack.rate_limited_count("other"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_with_undelivered_events_delivers_all_after_restart() {
    let slack = FakeSlack::start().await;
    slack.set_mode("k", Mode::ServerError(None));
    let body = format!("{}\n{}\n{}", fast_delivery(1000), slack_notifier("k", &slack.hook_url("k")), route("k", ""));
    let mut d = Daemon::start(Options::new(body)).await;

    // Default pacing: after the restart the 50 waiting messages are due at once and go out
    // folded (titles carry the sequence numbers the summary lists).
    for i in 0..50u64 {
        d.accept(&seq_event("crash.test", i)).await;
    }
    d.signal("KILL");
    let status = d.wait_exit(Duration::from_secs(5)).await.expect("killed");
    assert!(!status.success());
    assert_eq!(slack.messages("k").len(), 0);
    slack.set_mode("k", Mode::Normal);

    d.launch().await;
    assert!(
        eventually(Duration::from_secs(15), || async { seqs(&slack.messages("k")).len() >= 50 }).await,
        "got {:?}",
        seqs(&slack.messages("k"))
    );
    assert!(folded_count(&slack.messages("k")) >= 1, "{:?}", texts(&slack.messages("k")));
    // At least once, in order of first appearance.
    let mut first_seen = Vec::new();
    for s in seqs(&slack.messages("k")) {
        if !first_seen.contains(&s) {
            first_seen.push(s);
        }
    }
    assert_eq!(first_seen, (0..50).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_errors_are_dead_lettered_not_retried_forever() {
    let slack = FakeSlack::start().await;
    slack.set_mode("arch", Mode::Archived);
    slack.set_mode("rev", Mode::Revoked);
    slack.set_mode("err", Mode::ServerError(None));
    let mut body = fast_delivery(3);
    // A webhook that was removed: 404 no_service.
    body.push_str(&slack_notifier("gone", &slack.hook_url("gone")));
    body.push_str(&route("gone", "kinds = [\"gone.*\"]"));
    slack.remove_hook("gone");
    for name in ["arch", "rev", "err"] {
        body.push_str(&slack_notifier(name, &slack.hook_url(name)));
        body.push_str(&route(name, &format!("kinds = [\"{name}.*\"]")));
    }
    let d = Daemon::start(Options::new(body)).await;
    for name in ["arch", "rev", "err", "gone"] {
        d.accept(&json!({"kind": format!("{name}.event"), "title": format!("to {name}")})).await;
    }

    let (_, dead) = d.dead_letters_until(KEY_RW, 4, Duration::from_secs(10)).await;
    let found = dead.len() >= 4;
    assert!(found, "dead letters: {dead:?}");
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(slack.request_count("arch"), 1, "archived: exactly one attempt");
    assert_eq!(slack.request_count("rev"), 1, "revoked: exactly one attempt");
    assert_eq!(slack.request_count("err"), 3, "5xx: max_attempts attempts");

    let by_notifier =
        |n: &str| dead.iter().find(|e| e["notifier"] == n).unwrap_or_else(|| panic!("no {n} in {dead:?}")).clone();
    // A destination that is gone says what to do about it.
    for (name, hint) in [("gone", "create a new one"), ("arch", "unarchive it"), ("rev", "create a new one")] {
        let entry = by_notifier(name);
        assert!(entry["last_error"].as_str().is_some_and(|e| e.contains(hint)), "{entry}");
    }
    for (name, attempts, error) in
        [("arch", 1, "channel_is_archived"), ("rev", 1, "invalid_token"), ("err", 3, "rollup_error")]
    {
        let entry = by_notifier(name);
        assert_eq!(entry["attempts"], attempts, "{entry}");
        assert_eq!(entry["destination"], name, "{entry}");
        assert!(entry["last_error"].as_str().is_some_and(|e| e.contains(error)), "{entry}");
        assert!(entry["id"].is_i64() && entry["created_at"].is_string(), "{entry}");
        assert_eq!(entry["message"]["title"], format!("to {name}"), "{entry}");
    }

    // Dead letters page too.
    let mut paged = Vec::new();
    let mut cursor = String::new();
    for _ in 0..4 {
        let (status, body, text) =
            d.get(Some(KEY_RW), &format!("/api/v1/deliveries/dead?limit=2&cursor={cursor}")).await;
        assert_eq!(status, 200, "{text}");
        paged.extend(body["dead_letters"].as_array().unwrap().iter().map(|e| e["id"].as_i64().unwrap()));
        match body["next_cursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => break,
        }
    }
    let mut ids: Vec<i64> = dead.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    ids.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(paged, ids, "newest first, each once");

    let metrics = d.metrics().await;
    for name in ["arch", "rev", "err", "gone"] {
        let line = format!("tocsin_deliveries_total{{notifier=\"{name}\",outcome=\"dead\"}}");
        assert_eq!(metric_value(&metrics, &line), Some(1.0), "{line} in\n{metrics}");
    }
    assert_eq!(
        metric_value(&metrics, "tocsin_deliveries_total{notifier=\"err\",outcome=\"retried\"}"),
        Some(2.0),
        "{metrics}"
    );
    assert_eq!(metric_value(&metrics, "tocsin_dead_letters"), Some(4.0), "{metrics}");
    assert_eq!(metric_value(&metrics, "tocsin_outbox_pending"), Some(0.0), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gone_destination_is_disabled_and_the_operator_is_told_elsewhere() {
    let slack = FakeSlack::start().await;
    slack.set_mode("team", Mode::Revoked);
    let body = format!(
        "{}{}{}{}{}{}",
        fast_delivery(3),
        unpaced(&["team", "ops"]),
        slack_notifier("team", &slack.hook_url("team")),
        slack_notifier("ops", &slack.hook_url("ops")),
        route("team", "kinds = [\"app.*\"]"),
        route("ops", "kinds = [\"tocsin.*\"]\ngroup_interval = \"1s\""),
    );
    let d = Daemon::start(Options::new(body)).await;

    // The first message meets the revoked webhook: dead-lettered, and the operator is told on
    // another notifier.
    d.accept(&json!({"kind": "app.signup", "title": "first"})).await;
    assert!(slack.wait_for("ops", 1, Duration::from_secs(10)).await, "ops was told");
    let told = &slack.messages("ops")[0];
    assert!(block_text(told).contains("Notifier team is disabled"), "{told}");
    assert!(block_text(told).contains("invalid_token"), "{told}");
    assert_eq!(d.metric("tocsin_destinations_disabled").await, Some(1.0));

    // The next one is not sent to a door that is gone, and says why it is dead.
    d.accept(&json!({"kind": "app.signup", "title": "second"})).await;
    let (_, dead) = d.dead_letters_until(KEY_RW, 2, Duration::from_secs(10)).await;
    assert_eq!(slack.request_count("team"), 1, "one knock on the revoked webhook");
    let second = dead.iter().find(|e| e["message"]["title"] == "second").expect("second is dead-lettered");
    assert!(second["last_error"].as_str().is_some_and(|e| e.contains("disabled")), "{second}");
    assert_eq!(slack.messages("ops").len(), 1, "one alarm, not one per message");

    // Fixed and reloaded: it delivers again, and the alarm resolves.
    slack.set_mode("team", Mode::Normal);
    d.signal("HUP");
    assert!(
        eventually(Duration::from_secs(5), || async {
            d.metric("tocsin_config_reloads_total{result=\"success\"}").await == Some(1.0)
        })
        .await
    );
    assert_eq!(d.metric("tocsin_destinations_disabled").await, Some(0.0));
    d.accept(&json!({"kind": "app.signup", "title": "third"})).await;
    assert!(slack.wait_for("team", 1, Duration::from_secs(10)).await, "team delivers again");
    assert!(slack.wait_for("ops", 2, Duration::from_secs(10)).await, "the alarm resolves");
    let resolved = &slack.messages("ops")[1];
    assert!(block_text(resolved).contains("Notifier team delivers again"), "{resolved}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_batches_all_arrive_once_in_order_per_request() {
    let slack = FakeSlack::start().await;
    // Pacing off: 300 messages at 1/s would be folded into summaries that list 50 items, and
    // this test is about each one arriving exactly once, in order per request.
    let body = format!(
        "{}\n{}\n{}\n{}",
        fast_delivery(20),
        unpaced(&["bulk"]),
        slack_notifier("bulk", &slack.hook_url("bulk")),
        route("bulk", "")
    );
    let d = Daemon::start(Options::new(body)).await;
    // A few 500s on the way, to cross batch boundaries while retrying.
    slack.set_mode("bulk", Mode::ServerError(Some(3)));
    let requests = (0..4u64).map(|r| {
        let batch: Vec<_> =
            (0..75u64).map(|i| json!({"kind": "bulk.item", "fields": {"seq": (r * 1000 + i).to_string()}})).collect();
        let d = &d;
        async move {
            let (status, body) = d.post(KEY_W, &json!({ "events": batch })).await;
            assert_eq!(status, 202, "{body}");
        }
    });
    futures_util::future::join_all(requests).await;
    assert!(slack.wait_for("bulk", 300, Duration::from_secs(15)).await, "got {}", slack.messages("bulk").len());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = seqs(&slack.messages("bulk"));
    assert_eq!(got.len(), 300, "each exactly once");
    for r in 0..4u64 {
        let mine: Vec<u64> = got.iter().copied().filter(|s| s / 1000 == r).collect();
        assert_eq!(mine, (0..75).map(|i| r * 1000 + i).collect::<Vec<_>>(), "request {r} in order");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_loses_no_acknowledged_event() {
    let slack = FakeSlack::start().await;
    // Pacing off: hundreds of messages would be folded into summaries listing 50 items each;
    // this test is about every acknowledged event being stored and delivered.
    let body = format!(
        "{}\n{}\n{}\n{}",
        fast_delivery(1000),
        unpaced(&["load"]),
        slack_notifier("load", &slack.hook_url("load")),
        route("load", "")
    );
    let mut d = Daemon::start(Options::new(body)).await;
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u64>::new()));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for t in 0..4u64 {
        let (acked, stop, url, http) = (acked.clone(), stop.clone(), d.url("/api/v1/events"), d.http.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let seq = t * 100_000 + i;
                i += 1;
                let event = json!({"kind": "load.item", "fields": {"seq": seq.to_string()}});
                let sent = http.post(&url).bearer_auth(KEY_W).json(&event).send().await;
                match sent {
                    Ok(r) if r.status().as_u16() == 202 => acked.lock().unwrap().push(seq),
                    Ok(r) => panic!("unexpected {}", r.status()),
                    Err(_) => break, // the daemon died mid-request: not acknowledged
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    d.signal("KILL");
    let _ = d.wait_exit(Duration::from_secs(5)).await.expect("killed");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let acked: Vec<u64> = acked.lock().unwrap().clone();
    assert!(acked.len() >= 20, "some load was acknowledged: {}", acked.len());

    d.launch().await;
    // Every acknowledged event is stored ...
    let mut stored = std::collections::HashSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = match &cursor {
            Some(c) => format!("/api/v1/events?limit=1000&cursor={c}"),
            None => "/api/v1/events?limit=1000".to_string(),
        };
        let (status, body, text) = d.get(Some(KEY_RW), &q).await;
        assert_eq!(status, 200, "{text}");
        for e in body["events"].as_array().unwrap() {
            stored.insert(e["fields"]["seq"].as_str().unwrap().parse::<u64>().unwrap());
        }
        match body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    let missing: Vec<_> = acked.iter().filter(|s| !stored.contains(s)).collect();
    assert!(missing.is_empty(), "acknowledged but not stored: {missing:?}");
    // ... and delivered at least once.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let delivered: std::collections::HashSet<u64> = seqs(&slack.messages("load")).into_iter().collect();
        let undelivered: Vec<_> = stored.iter().filter(|s| !delivered.contains(s)).collect();
        if undelivered.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "stored but not delivered: {} of {}",
            undelivered.len(),
            stored.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
