//! SIGHUP: a valid new file takes effect; an invalid one keeps the old configuration.

use std::time::Duration;

use serde_json::json;
use tocsin::testkit::fake_slack::FakeSlack;

use crate::harness::*;

const NEW_KEY: &str = "it-key-new-after-reload-93ab";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_and_an_invalid_file_keeps_the_old_config() {
    let slack = FakeSlack::start().await;
    let old_body =
        format!("{}\n{}\n{}", fast_delivery(5), slack_notifier("old", &slack.hook_url("old")), route("old", ""));
    let mut d = Daemon::start(Options::new(old_body)).await;
    d.accept(&json!({"kind": "reload.test", "fields": {"seq": "1"}})).await;
    assert!(slack.wait_for("old", 1, Duration::from_secs(5)).await);
    assert_eq!(d.metric("tocsin_config_last_reload_successful").await, Some(1.0));

    // A new notifier and a route to it; the writer key is replaced by a new one.
    d.opts.keys = format!(
        "[[api_keys]]\nname = \"rw\"\nkey = \"{KEY_RW}\"\nscopes = [\"events:write\", \"events:read\"]\n\n\
         [[api_keys]]\nname = \"newcomer\"\nkey = \"{NEW_KEY}\"\nscopes = [\"events:write\"]\n"
    );
    d.opts.body = format!(
        "{}\n{}\n{}\n{}",
        fast_delivery(5),
        slack_notifier("old", &slack.hook_url("old")),
        slack_notifier("new", &slack.hook_url("new")),
        route("new", "")
    );
    let opts = d.opts.clone();
    d.write_config(&opts);
    d.signal("HUP");
    assert!(
        eventually(Duration::from_secs(5), || async {
            d.metric("tocsin_config_reloads_total{result=\"success\"}").await == Some(1.0)
        })
        .await,
        "{}",
        d.metrics().await
    );
    d.accept(&json!({"kind": "reload.test", "fields": {"seq": "2"}})).await;
    assert!(slack.wait_for("new", 1, Duration::from_secs(5)).await);
    let event = json!({"kind": "reload.keys"});
    assert_eq!(d.post(KEY_W, &event).await.0, 401, "a removed key no longer works");
    let (status, body) = d.post(NEW_KEY, &event).await;
    assert_eq!(status, 202, "an added key works: {body}");

    // An invalid file: the running configuration stays.
    std::fs::write(d.config_path(), "[server]\nlisten = \"nowhere\"\n[[routes]]\nnotifier = 3\n").unwrap();
    d.signal("HUP");
    assert!(
        eventually(Duration::from_secs(5), || async {
            d.metric("tocsin_config_reloads_total{result=\"failure\"}").await == Some(1.0)
        })
        .await,
        "{}",
        d.metrics().await
    );
    assert_eq!(d.metric("tocsin_config_last_reload_successful").await, Some(0.0));
    assert_eq!(d.metric("tocsin_config_reloads_total{result=\"success\"}").await, Some(1.0));
    d.accept(&json!({"kind": "reload.test", "fields": {"seq": "3"}})).await;
    // Three messages for `new` (seq 2, the reload.keys event, seq 3), paced at 1/s.
    assert!(slack.wait_for("new", 3, Duration::from_secs(8)).await, "new got {:?}", texts(&slack.messages("new")));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(seqs(&slack.messages("old")), [1]);
    let new_seqs: Vec<u64> = slack.messages("new").iter().filter_map(seq_of).collect();
    assert_eq!(new_seqs, [2, 3]);
    assert_eq!(slack.messages("new").len(), 3, "seq 2, the reload.keys event, seq 3");
    assert_eq!(d.post(NEW_KEY, &event).await.0, 202, "the keys of the running config stay");
    assert!(d.stderr().contains("reload failed"), "the failure is logged");
    for problem in ["server.listen", "routes[0].notifier"] {
        assert!(d.stderr().contains(problem), "every problem is logged, {problem} too: {}", d.stderr());
    }
    let status = d.terminate(Duration::from_secs(10)).await;
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixing_a_notifier_by_reload_delivers_what_was_stuck() {
    let slack = FakeSlack::start().await;
    slack.set_mode("broken", tocsin::testkit::fake_slack::Mode::ServerError(None));
    slack.set_mode("doomed", tocsin::testkit::fake_slack::Mode::ServerError(None));
    let body = |team_hook: &str, with_doomed: bool| {
        let mut b = format!(
            "{}\n{}\n{}",
            fast_delivery(1000),
            slack_notifier("team", &slack.hook_url(team_hook)),
            route("team", "kinds = [\"team.*\"]")
        );
        if with_doomed {
            b.push_str(&slack_notifier("doomed", &slack.hook_url("doomed")));
            b.push_str(&route("doomed", "kinds = [\"doomed.*\"]"));
        }
        b
    };
    let mut d = Daemon::start(Options::new(body("broken", true))).await;
    for i in 0..3u32 {
        d.accept(&json!({"kind": "team.event", "fields": {"seq": i.to_string()}})).await;
    }
    d.accept(&json!({"kind": "doomed.event", "fields": {"seq": "9"}})).await;
    assert!(eventually(Duration::from_secs(5), || async { slack.request_count("broken") >= 2 }).await);

    // The webhook URL is fixed and `doomed` is removed from the file.
    d.opts.body = body("fixed", false);
    let opts = d.opts.clone();
    d.write_config(&opts);
    d.signal("HUP");
    assert!(slack.wait_for("fixed", 3, Duration::from_secs(5)).await, "{}", d.stderr());
    assert_eq!(seqs(&slack.messages("fixed")), [0, 1, 2]);
    assert_eq!(slack.messages("broken").len(), 0);

    // The removed notifier's message is not silently dropped: still pending, or dead-lettered.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, dead) = d.dead_letters_until(KEY_RW, 0, Duration::ZERO).await;
    let pending = d.metric("tocsin_outbox_pending").await.unwrap_or(0.0);
    let dead_doomed = dead.iter().any(|e| e["notifier"] == "doomed");
    assert!(dead_doomed || pending == 1.0, "dead: {dead:?}, pending: {pending}");
}
