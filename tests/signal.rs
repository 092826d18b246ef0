//! Signal over noise, end to end: the real server (in-process, on loopback), the fake Slack,
//! a real SQLite file.

use std::time::Duration;

use serde_json::{json, Value};
use tocsin::testkit::fake_slack::{FakeSlack, RateLimit};

struct Daemon {
    base: String,
    running: Option<tocsin::app::Running>,
    _dir: tempfile::TempDir,
}

impl Daemon {
    async fn start(config: &str) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("tocsin.db");
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[store]\nurl = \"sqlite://{}\"\n[log]\nlevel = \"warn\"\n\
             [[api_keys]]\nname = \"test\"\nkey = \"test-key\"\nscopes = [\"admin\"]\n{config}",
            db.display()
        );
        let path = dir.path().join("tocsin.toml");
        std::fs::write(&path, &text).unwrap();
        let config = tocsin::config::load(&path).unwrap();
        let running = tocsin::app::start(config).await.unwrap();
        Daemon { base: format!("http://{}", running.addr), running: Some(running), _dir: dir }
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = reqwest::Client::new()
            .post(format!("{}{path}", self.base))
            .bearer_auth("test-key")
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> Value {
        reqwest::Client::new()
            .get(format!("{}{path}", self.base))
            .bearer_auth("test-key")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn delete(&self, path: &str) -> u16 {
        reqwest::Client::new()
            .delete(format!("{}{path}", self.base))
            .bearer_auth("test-key")
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    async fn stop(mut self) {
        let running = self.running.take().unwrap();
        running.shutdown.cancel();
        running.wait().await.unwrap();
    }
}

fn slack_config(url: &str, route: &str) -> String {
    format!("[notifiers.team]\ntype = \"slack_webhook\"\nurl = \"{url}\"\n[[routes]]\nnotifier = \"team\"\n{route}\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_becomes_a_few_messages_without_a_single_429() {
    let slack = FakeSlack::start().await;
    let url = slack.hook_url("storm");
    slack.set_rate_limit("storm", Some(RateLimit { per_second: 1.0, burst: 1 }));
    let daemon = Daemon::start(&slack_config(&url, "kinds = [\"api.*\"]")).await;

    // 10,000 distinct events within about a second, in 100 concurrent batches.
    let started = std::time::Instant::now();
    let mut posts = Vec::new();
    for b in 0..100 {
        let events: Vec<Value> = (0..100)
            .map(|i| json!({"kind": if i % 10 == 0 { "api.timeout" } else { "api.error" }, "text": format!("request {b}-{i} failed"), "user": format!("user{}", i % 7)}))
            .collect();
        let base = daemon.base.clone();
        posts.push(tokio::spawn(async move {
            reqwest::Client::new()
                .post(format!("{base}/api/v1/events"))
                .bearer_auth("test-key")
                .json(&json!({ "events": events }))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    for p in posts {
        assert_eq!(p.await.unwrap(), 202);
    }
    assert!(started.elapsed() < Duration::from_secs(5), "the storm took {:?}", started.elapsed());

    // Let the pacing play out: every event must be accounted for in what Slack received.
    let mut covered = 0u64;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        covered = slack.messages("storm").iter().map(events_in).sum();
        if covered >= 10_000 {
            break;
        }
    }
    let messages = slack.messages("storm");
    assert_eq!(covered, 10_000, "every event is in some message: {messages:#?}");
    assert!(messages.len() <= 6, "a storm must not become a flood: {} messages", messages.len());
    assert_eq!(slack.rate_limited_count("storm"), 0, "the pipeline must not provoke 429s");
    let summary = messages.iter().map(|m| m["text"].as_str().unwrap_or("")).find(|t| t.contains("folded")).unwrap();
    assert!(summary.contains("api.error ×") && summary.contains("more"), "{summary}");

    // All 10,000 are in the searchable history.
    let mut cursor: Option<String> = None;
    let mut stored = 0;
    loop {
        let q = match &cursor {
            Some(c) => format!("/api/v1/events?kind=api.*&limit=1000&cursor={c}"),
            None => "/api/v1/events?kind=api.*&limit=1000".to_string(),
        };
        let page = daemon.get(&q).await;
        stored += page["events"].as_array().unwrap().len();
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(stored, 10_000);
    daemon.stop().await;
}

/// How many events a Slack message speaks for: a folded summary says so in its title.
fn events_in(message: &Value) -> u64 {
    let text = message["text"].as_str().unwrap_or("");
    let first = text.lines().next().unwrap_or("");
    for word in ["notifications folded", "events:"] {
        if let Some(pos) = first.find(word) {
            let number: String = first[..pos].chars().filter(|c| c.is_ascii_digit()).collect();
            return number.parse().unwrap_or(1);
        }
    }
    1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silence_created_over_the_api_mutes_then_releases() {
    let slack = FakeSlack::start().await;
    let url = slack.hook_url("ops");
    let daemon = Daemon::start(&slack_config(&url, "kinds = [\"svc.*\"]")).await;

    let (status, created) = daemon
        .post("/api/v1/silences", json!({"matchers": {"kind": "svc.*", "service": "billing"}, "duration": "1h", "comment": "deploy", "created_by": "alice"}))
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_string();

    let alert = |status: &str| json!({"kind": "svc.down", "status": status, "severity": "critical", "labels": {"service": "billing"}, "title": "billing is down"});
    assert_eq!(daemon.post("/api/v1/events", alert("firing")).await.0, 202);
    // Another service is not silenced.
    assert_eq!(daemon.post("/api/v1/events", json!({"kind": "svc.down", "status": "firing", "labels": {"service": "search"}, "title": "search is down"})).await.0, 202);
    assert!(slack.wait_for("ops", 1, Duration::from_secs(5)).await);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let titles = |slack: &FakeSlack| {
        slack.messages("ops").iter().map(|m| m["text"].as_str().unwrap_or("").to_string()).collect::<Vec<_>>()
    };
    assert_eq!(slack.messages("ops").len(), 1, "only the unsilenced alert: {:?}", titles(&slack));
    assert!(titles(&slack)[0].contains("search is down"));

    // Stored and visible as silenced.
    let alerts = daemon.get("/api/v1/alerts").await;
    assert_eq!(alerts["total"], 2);
    let billing = alerts["alerts"].as_array().unwrap().iter().find(|a| a["labels"]["service"] == "billing").unwrap();
    assert_eq!(billing["silenced"], true);
    let listed = daemon.get("/api/v1/silences").await;
    assert_eq!(listed["silences"][0]["state"], "active");
    assert_eq!(listed["silences"][0]["created_by"], "alice");

    // Expiring the silence while it still fires: now it is told.
    assert_eq!(daemon.delete(&format!("/api/v1/silences/{id}")).await, 200);
    assert!(slack.wait_for("ops", 2, Duration::from_secs(5)).await, "released: {:?}", titles(&slack));
    assert!(titles(&slack)[1].contains("billing is down"));
    let alerts = daemon.get("/api/v1/alerts").await;
    assert!(alerts["alerts"].as_array().unwrap().iter().all(|a| a["silenced"] == false));
    assert_eq!(daemon.delete("/api/v1/silences/00000000-0000-0000-0000-000000000000").await, 404);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silences_take_json_whatever_its_content_type_and_refuse_unknown_parameters() {
    let daemon = Daemon::start("").await;
    let http = reqwest::Client::new();
    // `curl -d` sends application/x-www-form-urlencoded; the body is JSON all the same.
    let r = http
        .post(format!("{}/api/v1/silences", daemon.base))
        .bearer_auth("test-key")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(r#"{"matchers": {"kind": "svc.*"}, "duration": "1h"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201, "{}", r.text().await.unwrap());
    let r = http
        .post(format!("{}/api/v1/silences", daemon.base))
        .bearer_auth("test-key")
        .body("matchers=kind")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!((body["error"]["code"].as_str(), body["error"]["field"].as_str()), (Some("invalid_json"), Some("body")));

    for path in ["/api/v1/silences?state=active", "/api/v1/heartbeats?limit=5"] {
        let r = http.get(format!("{}{path}", daemon.base)).bearer_auth("test-key").send().await.unwrap();
        assert_eq!(r.status().as_u16(), 400, "{path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_parameter", "{path}: {body}");
    }
    daemon.stop().await;
}

// As Alertmanager: a "resolved" for a firing nobody was told of is noise, not news.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_resolved_within_its_group_wait_is_never_told() {
    let slack = FakeSlack::start().await;
    let url = slack.hook_url("ops");
    let daemon =
        Daemon::start(&slack_config(&url, "kinds = [\"svc.*\"]\ngroup_by = [\"service\"]\ngroup_wait = \"1s\"")).await;
    let alert = |service: &str, status: &str| json!({"kind": "svc.down", "status": status, "labels": {"service": service}, "title": format!("{service} is down")});
    assert_eq!(daemon.post("/api/v1/events", alert("billing", "firing")).await.0, 202);
    assert_eq!(daemon.post("/api/v1/events", alert("billing", "resolved")).await.0, 202);
    // A control in another group, told as usual.
    assert_eq!(daemon.post("/api/v1/events", alert("search", "firing")).await.0, 202);
    assert!(slack.wait_for("ops", 1, Duration::from_secs(5)).await);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let texts: Vec<String> =
        slack.messages("ops").iter().map(|m| m["text"].as_str().unwrap_or("").to_string()).collect();
    assert_eq!(texts.len(), 1, "only the search alert: {texts:?}");
    assert!(texts[0].contains("search is down"), "{texts:?}");
    // Settled, not left pending nor dead-lettered.
    let metrics = reqwest::get(format!("{}/metrics", daemon.base)).await.unwrap().text().await.unwrap();
    assert!(metrics.lines().any(|l| l == "tocsin_outbox_pending 0"), "{metrics}");
    assert!(metrics.lines().any(|l| l == "tocsin_dead_letters 0"), "{metrics}");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_event_again_is_one_message_with_a_count() {
    let slack = FakeSlack::start().await;
    let url = slack.hook_url("pay");
    let daemon = Daemon::start(&slack_config(&url, "kinds = [\"payment.*\"]\ngroup_interval = \"2s\"")).await;
    for _ in 0..37 {
        assert_eq!(
            daemon
                .post(
                    "/api/v1/events",
                    json!({"kind": "payment.failed", "text": "card declined", "fingerprint": "card-declined"})
                )
                .await
                .0,
            202
        );
    }
    assert!(slack.wait_for("pay", 2, Duration::from_secs(6)).await);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let messages = slack.messages("pay");
    assert_eq!(messages.len(), 2, "the first at once, the rest as one count: {messages:#?}");
    let second = messages[1]["text"].as_str().unwrap();
    assert!(second.contains("×36"), "{second}");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_state_survives_a_restart() {
    let slack = FakeSlack::start().await;
    let url = slack.hook_url("ops");
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tocsin.db");
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[store]\nurl = \"sqlite://{}\"\n[log]\nlevel = \"warn\"\n\
         [[api_keys]]\nname = \"test\"\nkey = \"test-key\"\nscopes = [\"admin\"]\n{}",
        db.display(),
        slack_config(&url, "kinds = [\"svc.*\"]\ngroup_interval = \"1s\"")
    );
    let path = dir.path().join("tocsin.toml");
    std::fs::write(&path, &text).unwrap();
    let start = || async { tocsin::app::start(tocsin::config::load(&path).unwrap()).await.unwrap() };
    let post = |addr: std::net::SocketAddr, status: &'static str| async move {
        reqwest::Client::new()
            .post(format!("http://{addr}/api/v1/events"))
            .bearer_auth("test-key")
            .json(&json!({"kind": "svc.down", "status": status, "labels": {"service": "api"}, "title": "api down"}))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };

    let first = start().await;
    assert_eq!(post(first.addr, "firing").await, 202);
    assert!(slack.wait_for("ops", 1, Duration::from_secs(5)).await);
    first.shutdown.cancel();
    first.wait().await.unwrap();

    // After the restart tocsin still knows the alert fires and was announced: a second
    // "firing" is not news, the resolve is owed and sent.
    let second = start().await;
    let alerts: Value = reqwest::Client::new()
        .get(format!("http://{}/api/v1/alerts", second.addr))
        .bearer_auth("test-key")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(alerts["total"], 1, "{alerts}");
    assert_eq!(post(second.addr, "firing").await, 202);
    assert_eq!(post(second.addr, "resolved").await, 202);
    assert!(slack.wait_for("ops", 2, Duration::from_secs(6)).await);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let messages = slack.messages("ops");
    assert_eq!(messages.len(), 2, "{messages:#?}");
    assert!(messages[1]["text"].as_str().unwrap().contains("RESOLVED"), "{}", messages[1]["text"]);
    second.shutdown.cancel();
    second.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_silence_command_line_talks_to_the_daemon() {
    let slack = FakeSlack::start().await;
    let url = slack.hook_url("cli");
    let daemon = Daemon::start(&slack_config(&url, "kinds = [\"svc.*\"]")).await;
    let tocsin = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tocsin"))
            .args(args)
            .env("TOCSIN_URL", &daemon.base)
            .env("TOCSIN_KEY", "test-key")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, id, err) = tocsin(&["silence", "add", "-m", "kind=svc.*", "--duration", "1h", "--comment", "deploy"]);
    assert_eq!(code, Some(0), "{err}");
    let id = id.trim().to_string();
    let (code, list, _) = tocsin(&["silence", "list"]);
    assert_eq!(code, Some(0));
    assert!(list.contains(&id) && list.contains("active") && list.contains("kind=svc.*"), "{list}");

    assert_eq!(
        daemon.post("/api/v1/events", json!({"kind": "svc.down", "status": "firing", "title": "down"})).await.0,
        202
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(slack.messages("cli").is_empty(), "silenced");

    let (code, _, err) = tocsin(&["silence", "expire", &id]);
    assert_eq!(code, Some(0), "{err}");
    assert!(slack.wait_for("cli", 1, Duration::from_secs(5)).await, "released after expiry");
    let (code, _, err) = tocsin(&["silence", "add", "-m", "kind", "--duration", "1h"]);
    assert_eq!(code, Some(2), "a bad matcher is a usage error: {err}");
    let (code, _, err) = tocsin(&["silence", "add", "-m", "kind=a.*", "-m", "kind=b.*", "--duration", "1h"]);
    assert_eq!(code, Some(2), "one glob per name, not one silently dropped: {err}");
    assert!(err.contains("given twice"), "{err}");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_batches_what_queues_for_the_same_recipients() {
    use tocsin::testkit::fake_smtp::FakeSmtp;
    let smtp = FakeSmtp::start().await;
    // One email per second instead of the default one a minute, to keep the test short.
    let config = format!(
        "[notifiers.mail]\ntype = \"email\"\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n\
         from = \"tocsin@example.com\"\nto = [\"ops@example.com\"]\n\
         [delivery.rate_limits]\nmail = {{ per_second = 1.0 }}\n\
         [[routes]]\nkinds = [\"job.*\"]\nnotifier = \"mail\"\n",
        smtp.port()
    );
    let daemon = Daemon::start(&config).await;
    for i in 0..5 {
        let body = json!({"kind": "job.failed", "title": format!("job {i} failed"), "text": format!("exit code {i}")});
        assert_eq!(daemon.post("/api/v1/events", body).await.0, 202);
    }
    let mut mails = Vec::new();
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        mails = smtp.mails();
        if mails.len() >= 2 {
            break;
        }
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mails = if smtp.mails().len() > mails.len() { smtp.mails() } else { mails };
    assert_eq!(mails.len(), 2, "the first at once, the rest batched into one: {mails:#?}");
    assert_eq!(mails[1].to, ["ops@example.com"]);
    let digest: String = mails[1].parts().iter().map(|p| p.body.clone()).collect();
    for i in 1..5 {
        assert!(digest.contains(&format!("job {i} failed")), "job {i} missing from {digest}");
    }
    daemon.stop().await;
}
