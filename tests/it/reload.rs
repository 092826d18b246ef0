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
    std::fs::write(d.config_path(), "[server]\nlisten = \n[[routes]]\nnotifier = 3\n").unwrap();
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
    assert!(slack.wait_for("new", 2, Duration::from_secs(5)).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(seqs(&slack.messages("old")), [1]);
    let new_seqs: Vec<u64> = slack.messages("new").iter().filter_map(seq_of).collect();
    assert_eq!(new_seqs, [2, 3]);
    assert_eq!(slack.messages("new").len(), 3, "seq 2, the reload.keys event, seq 3");
    assert_eq!(d.post(NEW_KEY, &event).await.0, 202, "the keys of the running config stay");
    assert!(d.stderr().contains("reload failed"), "the failure is logged");
    let status = d.terminate(Duration::from_secs(10)).await;
    assert!(status.success());
}
