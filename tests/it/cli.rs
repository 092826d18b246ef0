//! The command line: `tocsin config check` and `tocsin send`.

use std::path::Path;
use std::time::Duration;

use tocsin::testkit::fake_slack::{FakeSlack, Mode};

async fn tocsin(args: &[&str], config: Option<&Path>) -> (Option<i32>, String, String) {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_tocsin"));
    cmd.args(args).env_remove("RUST_LOG").env_remove("TOCSIN_CONFIG");
    if let Some(config) = config {
        cmd.arg("--config").arg(config);
    }
    let out = tokio::time::timeout(Duration::from_secs(20), cmd.output())
        .await
        .expect("tocsin finishes")
        .expect("run tocsin");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_check_on_the_example_and_on_a_broken_file() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/tocsin.toml");
    let (code, stdout, stderr) = tocsin(&["config", "check"], Some(&example)).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout.lines().count(), 1, "one line: {stdout:?}");
    assert!(stdout.contains("ok"), "{stdout}");

    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.toml");
    std::fs::write(
        &broken,
        "[server]\nlisten = \"127.0.0.1:9750\"\nlisen = \"x\"\n\n[delivery]\nmax_attempts = \"many\"\n\n[[routes]]\nnotifier = \"nobody\"\n",
    )
    .unwrap();
    let (code, stdout, stderr) = tocsin(&["config", "check"], Some(&broken)).await;
    assert_eq!(code, Some(1), "stdout: {stdout} stderr: {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() >= 2, "every error is reported: {stderr}");
    let prefix = format!("{}:", broken.display());
    for line in &lines {
        let rest = line.strip_prefix(&prefix).unwrap_or_else(|| panic!("{line:?} does not start with the path"));
        let mut parts = rest.splitn(3, ':');
        let line_no: u32 = parts.next().unwrap().parse().unwrap_or_else(|_| panic!("no line number in {line:?}"));
        let col: u32 = parts.next().unwrap_or("").parse().unwrap_or_else(|_| panic!("no column in {line:?}"));
        let message = parts.next().unwrap_or("");
        assert!(line_no >= 1 && col >= 1 && message.starts_with(' ') && message.trim().len() > 3, "{line:?}");
    }
    assert!(stderr.contains("lisen"), "{stderr}");
    assert!(lines.iter().any(|l| l.starts_with(&format!("{prefix}3:"))), "the unknown key is on line 3: {stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_delivers_through_routing_or_to_a_notifier_and_reports_failure() {
    let slack = FakeSlack::start().await;
    slack.set_mode("archived", Mode::Archived);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tocsin.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\nurl = \"sqlite://{db}\"\n\n{delivery}\n{team}\n{other}\n{archived}\n\
             [[routes]]\nkinds = [\"deploy.*\"]\nnotifier = \"other\"\n\n\
             [[routes]]\nkinds = [\"tocsin.*\"]\nnotifier = \"team\"\n",
            db = dir.path().join("cli.db").display(),
            delivery = crate::harness::fast_delivery(3),
            team = crate::harness::slack_notifier("team", &slack.hook_url("team")),
            other = crate::harness::slack_notifier("other", &slack.hook_url("other")),
            archived = crate::harness::slack_notifier("archived", &slack.hook_url("archived")),
        ),
    )
    .unwrap();

    // Through routing (the default kind is tocsin.message).
    let (code, _, stderr) = tocsin(&["send", "--severity", "warning", "Deploy of api finished"], Some(&config)).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(slack.wait_for("team", 1, Duration::from_secs(2)).await);
    let sent = &slack.messages("team")[0];
    assert_eq!(sent["text"], ":warning: Deploy of api finished", "a one-line message is shown once");

    let (code, _, stderr) = tocsin(&["send", "--route-as", "deploy.done", "v2 is live"], Some(&config)).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(slack.wait_for("other", 1, Duration::from_secs(2)).await);
    assert!(slack.messages("other")[0]["text"].as_str().unwrap().contains("v2 is live"));

    // Straight to a notifier, bypassing routing.
    let (code, _, stderr) =
        tocsin(&["send", "--notifier", "other", "--channel", "#ops", "direct hello"], Some(&config)).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(slack.wait_for("other", 2, Duration::from_secs(2)).await);
    let direct = &slack.messages("other")[1];
    assert!(direct["text"].as_str().unwrap().contains("direct hello"), "{direct}");
    assert_eq!(direct["channel"], "#ops");
    assert_eq!(slack.messages("team").len(), 1);

    // An archived hook: not delivered, said so, one attempt only.
    let (code, _, stderr) = tocsin(&["send", "--notifier", "archived", "into the void"], Some(&config)).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("channel_is_archived"), "{stderr}");
    assert_eq!(slack.request_count("archived"), 1);

    // Nothing routes this kind: not delivered.
    let (code, _, stderr) = tocsin(&["send", "--route-as", "nothing.here", "lost"], Some(&config)).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(!stderr.trim().is_empty());
    assert!(!stderr.contains(&slack.hook_url("archived")));
}

// Regression test (found by the issue-2 suite, fixed since): `tocsin config check` rejects
// notifier URLs that can never work, without echoing the (secret) value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_check_rejects_notifier_urls_that_cannot_work() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("urls.toml");
    std::fs::write(
        &path,
        "[notifiers.a]\ntype = \"slack_webhook\"\nurl = \"${env:IT_BAD_URL}\"\n\n\
         [notifiers.b]\ntype = \"webhook\"\nurl = \"hooks.example.com/it-secret-path-Kd82\"\n\n\
         [[routes]]\nnotifier = \"a\"\n\n[[routes]]\nnotifier = \"b\"\n",
    )
    .unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .args(["config", "check", "--config"])
        .arg(&path)
        .env("IT_BAD_URL", "ftp://it-secret-token-Pq71")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("it-secret") && !stdout.contains("it-secret"), "{stdout}{stderr}");
    assert_eq!(out.status.code(), Some(1), "stdout: {stdout} stderr: {stderr}");
    for name in ["notifiers.a.url", "notifiers.b.url"] {
        assert!(
            stderr.lines().any(|l| l.starts_with(&format!("{}:", path.display())) && l.contains(name)),
            "{name} reported: {stderr}"
        );
    }
}
