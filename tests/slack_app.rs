//! The `slack_app` notifier end to end (issue 6), through the real server and a fake Slack Web
//! API: post, thread replies, update on resolve, buttons signed correctly and wrongly, a stale
//! timestamp, the `/tocsin` slash command, mentions, and `not_in_channel` dead-lettered.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use tocsin::api::slack::sign;
use tocsin::app::Running;
use tocsin::testkit::fake_slack_api::{FakeSlackApi, Post};

const KEY: &str = "test-key-all";
const BROWSER_KEY: &str = "pk-browser";
const TOKEN: &str = "xoxb-1111-2222-test-bot-token";
const SIGNING: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const WAIT: Duration = Duration::from_secs(10);

struct Server {
    running: Running,
    base: String,
    http: reqwest::Client,
    fake: FakeSlackApi,
    _dir: tempfile::TempDir,
}

impl Server {
    /// A server whose only route goes to the `slack` notifier (channel `#alerts` by default).
    async fn start(route_extra: &str) -> Server {
        let fake = FakeSlackApi::start(TOKEN).await;
        fake.add_channel("alerts", true);
        fake.add_channel("private", false);
        let dir = tempfile::tempdir().expect("a temp dir");
        let db = dir.path().join("t.db");
        let toml = format!(
            r##"
[server]
listen = "127.0.0.1:0"

[store]
url = "sqlite://{db}"

[delivery]
max_attempts = 3
backoff_initial = "100ms"
backoff_max = "200ms"

[[api_keys]]
name = "backend"
key = "{KEY}"
scopes = ["events:write", "events:read", "silences:write"]

[[api_keys]]
name = "web"
key = "{BROWSER_KEY}"
scopes = ["events:browser"]
allowed_kinds = ["ui.*"]
allowed_origins = ["https://app.example.com"]

[notifiers.slack]
type = "slack_app"
token = "{TOKEN}"
signing_secret = "{SIGNING}"
api_url = "{api}"
channel = "#alerts"

[[routes]]
notifier = "slack"
group_wait = "0s"
group_interval = "1s"
mentions = {{ critical = "<!here>", error = "<!subteam^S0123>" }}
{route_extra}
"##,
            db = db.display(),
            api = fake.api_url(),
        );
        let config = tocsin::config::load_str(&toml, Path::new("slack.toml")).unwrap_or_else(|e| panic!("{e}"));
        let running = tocsin::app::start(config).await.expect("server starts");
        let base = format!("http://{}", running.addr);
        Server { running, base, http: reqwest::Client::new(), fake, _dir: dir }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn event(&self, body: Value) {
        let r = self.http.post(self.url("/api/v1/events")).bearer_auth(KEY).json(&body).send().await.expect("post");
        assert_eq!(r.status(), 202, "{}", r.text().await.unwrap_or_default());
    }

    async fn get(&self, path: &str) -> Value {
        let r = self.http.get(self.url(path)).bearer_auth(KEY).send().await.expect("get");
        assert_eq!(r.status(), 200);
        r.json().await.expect("json")
    }

    /// POSTs a form body to `/hooks/slack`, signed with `secret` at `timestamp`.
    async fn slack(&self, body: &str, secret: &str, timestamp: i64) -> reqwest::Response {
        let ts = timestamp.to_string();
        self.http
            .post(self.url("/hooks/slack"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-slack-request-timestamp", &ts)
            .header("x-slack-signature", sign(secret, &ts, body.as_bytes()))
            .body(body.to_string())
            .send()
            .await
            .expect("post")
    }

    async fn stop(self) {
        self.running.shutdown.cancel();
        let _ = self.running.wait().await;
        self.fake.shutdown().await;
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn alert(fingerprint: &str, severity: &str, status: &str) -> Value {
    json!({
        "kind": "disk.full",
        "severity": severity,
        "title": "Disk almost full",
        "text": "/var is at 97%",
        "labels": {"host": "db-1"},
        "fingerprint": fingerprint,
        "status": status,
    })
}

/// The form body Slack sends when someone clicks `action_id` on `post`.
fn click(post: &Post, action_id: &str) -> String {
    let fingerprint = post.body["blocks"]
        .as_array()
        .and_then(|b| b.iter().find(|x| x["type"] == "actions"))
        .and_then(|a| a["elements"].as_array())
        .and_then(|e| e.iter().find(|x| x["action_id"] == action_id))
        .and_then(|x| x["value"].as_str())
        .unwrap_or_else(|| panic!("no {action_id} button in {}", post.body))
        .to_string();
    let payload = json!({
        "type": "block_actions",
        "user": {"id": "U0ALICE", "username": "alice", "name": "alice", "team_id": "T111"},
        "api_app_id": "A111",
        "container": {"type": "message", "message_ts": post.ts, "channel_id": post.channel, "is_ephemeral": false},
        "trigger_id": "111.222.valid",
        "team": {"id": "T111", "domain": "example"},
        "channel": {"id": post.channel, "name": "alerts"},
        "message": {"type": "message", "ts": post.ts, "text": post.body["text"], "blocks": post.body["blocks"]},
        "response_url": "https://hooks.slack.com/actions/T111/111/random-value",
        "actions": [{"action_id": action_id, "block_id": "tocsin_actions", "value": fingerprint,
                     "type": "button", "action_ts": "1596530385.194939",
                     "text": {"type": "plain_text", "text": "x", "emoji": true}}],
    });
    url::form_urlencoded::Serializer::new(String::new()).append_pair("payload", &payload.to_string()).finish()
}

fn slash(text: &str) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .append_pair("token", "verification_token")
        .append_pair("team_id", "T111")
        .append_pair("channel_id", "C111")
        .append_pair("user_id", "U0BOB")
        .append_pair("user_name", "bob")
        .append_pair("command", "/tocsin")
        .append_pair("text", text)
        .append_pair("response_url", "https://hooks.slack.com/commands/T111/111/xxxxx")
        .append_pair("trigger_id", "111.111.xxx")
        .finish()
}

#[tokio::test]
async fn posts_threads_follow_ups_and_updates_the_original_on_resolve() {
    let s = Server::start("").await;
    s.event(alert("disk-db1", "warning", "firing")).await;
    assert!(s.fake.wait_for_posts(1, WAIT).await, "the alert is posted");
    let parent = s.fake.posts()[0].clone();
    assert!(parent.thread_ts.is_none());
    assert!(parent.channel.starts_with('C'), "{}", parent.channel);
    assert!(parent.header().contains("Disk almost full"), "{}", parent.header());
    assert!(parent.has_buttons(), "an alert carries buttons");
    assert!(!parent.body["text"].as_str().unwrap_or("").contains("<!"), "no mention for a warning");

    // Worse than before: said again, in the thread, with the route's critical mention.
    s.event(alert("disk-db1", "critical", "firing")).await;
    assert!(s.fake.wait_for_posts(2, WAIT).await, "the follow-up is posted");
    let reply = s.fake.posts()[1].clone();
    assert_eq!(reply.thread_ts.as_deref(), Some(parent.ts.as_str()), "in the parent's thread");
    assert_eq!(reply.channel, parent.channel);
    assert!(!reply.has_buttons());
    assert!(reply.body["text"].as_str().unwrap_or("").starts_with("<!here>"), "{}", reply.body["text"]);

    s.event(alert("disk-db1", "critical", "resolved")).await;
    assert!(s.fake.wait_for_updates(1, WAIT).await, "the original is updated");
    assert!(s.fake.wait_for_posts(3, WAIT).await, "the resolution is posted in the thread");
    let update = s.fake.updates()[0].clone();
    assert_eq!((update.channel.as_str(), update.ts.as_str()), (parent.channel.as_str(), parent.ts.as_str()));
    assert!(
        update.header().contains("RESOLVED") && update.header().contains(":white_check_mark:"),
        "{}",
        update.header()
    );
    assert!(!update.has_buttons(), "buttons are removed once resolved");
    let resolution = s.fake.posts()[2].clone();
    assert_eq!(resolution.thread_ts.as_deref(), Some(parent.ts.as_str()));
    assert!(!resolution.body["text"].as_str().unwrap_or("").contains("<!here>"), "resolutions page nobody");

    // Firing again after the resolution starts a new message.
    s.event(alert("disk-db1", "warning", "firing")).await;
    assert!(s.fake.wait_for_posts(4, WAIT).await);
    assert_eq!(s.fake.parents().len(), 2);
    assert_eq!(s.fake.thread_replies().len(), 2);
    // Paced: never over Slack's one message per second per channel.
    assert!(s.fake.rejections().is_empty(), "{:?}", s.fake.rejections());
    s.stop().await;
}

#[tokio::test]
async fn buttons_acknowledge_and_silence_signed_correctly_and_wrongly() {
    let s = Server::start("").await;
    s.event(alert("disk-db1", "error", "firing")).await;
    assert!(s.fake.wait_for_posts(1, WAIT).await);
    let parent = s.fake.posts()[0].clone();
    assert!(parent.body["text"].as_str().unwrap_or("").starts_with("<!subteam^S0123>"), "{}", parent.body["text"]);

    // Signed with another secret, or too old: refused, nothing changes.
    let body = click(&parent, "tocsin_acknowledge");
    assert_eq!(s.slack(&body, "not-the-secret", now()).await.status(), 401);
    assert_eq!(s.slack(&body, SIGNING, now() - 6 * 60).await.status(), 401, "stale timestamp");
    let unsigned = s.http.post(s.url("/hooks/slack")).body(body.clone()).send().await.expect("post");
    assert_eq!(unsigned.status(), 401);
    let alerts = s.get("/api/v1/alerts").await;
    assert!(alerts["alerts"][0].get("acknowledged_by").is_none(), "{alerts}");

    // Acknowledge, signed correctly: answered at once, alert and message updated.
    let started = std::time::Instant::now();
    let r = s.slack(&body, SIGNING, now()).await;
    assert_eq!(r.status(), 200);
    assert!(started.elapsed() < Duration::from_secs(3), "Slack's 3 seconds");
    let answer: Value = r.json().await.expect("json");
    assert_eq!(answer["replace_original"], true, "{answer}");
    assert!(answer.to_string().contains("Acknowledged by <@U0ALICE>"), "{answer}");
    let alerts = s.get("/api/v1/alerts").await;
    assert_eq!(alerts["alerts"][0]["acknowledged_by"], "alice", "{alerts}");
    assert!(s.fake.wait_for_updates(1, WAIT).await, "the message is updated");
    let update = s.fake.updates()[0].clone();
    assert_eq!(update.ts, parent.ts);
    assert!(update.all_text().contains("Acknowledged by <@U0ALICE>"), "{}", update.body);
    let buttons: Vec<String> = update.body["blocks"]
        .as_array()
        .and_then(|b| b.iter().find(|x| x["type"] == "actions"))
        .and_then(|a| a["elements"].as_array())
        .map(|e| e.iter().filter_map(|x| x["action_id"].as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    assert_eq!(buttons, ["tocsin_silence_1h", "tocsin_silence_24h", "tocsin_resolve"]);

    // Silence 1h: a silence on exactly this alert's kind and labels.
    let r = s.slack(&click(&parent, "tocsin_silence_1h"), SIGNING, now()).await;
    assert_eq!(r.status(), 200);
    let silences = s.get("/api/v1/silences").await;
    let silence = &silences["silences"][0];
    assert_eq!(silence["matchers"], json!({"kind": "disk.full", "host": "db-1"}), "{silences}");
    assert_eq!(silence["created_by"], "slack:alice");
    assert!(s.fake.wait_for_updates(2, WAIT).await);
    assert!(s.fake.updates()[1].all_text().contains("Silenced for 1h by <@U0ALICE>"));

    // The resolve that was announced is still owed; the next firing is muted.
    s.event(alert("disk-db1", "error", "resolved")).await;
    assert!(s.fake.wait_for_posts(2, WAIT).await, "the resolution is still told");
    s.event(alert("disk-db1", "error", "firing")).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(s.fake.parents().len(), 1, "the silenced alert fired again without a message");
    let alerts = s.get("/api/v1/alerts").await;
    assert_eq!(alerts["alerts"][0]["silenced"], true, "{alerts}");
    s.stop().await;
}

#[tokio::test]
async fn resolve_button_resolves_the_alert() {
    let s = Server::start("").await;
    s.event(alert("disk-db2", "warning", "firing")).await;
    assert!(s.fake.wait_for_posts(1, WAIT).await);
    let parent = s.fake.posts()[0].clone();
    let r = s.slack(&click(&parent, "tocsin_resolve"), SIGNING, now()).await;
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().await.expect("json");
    assert_eq!(answer["response_type"], "ephemeral", "{answer}");
    assert!(s.fake.wait_for_updates(1, WAIT).await, "the original is marked resolved");
    assert!(s.fake.updates()[0].header().contains("RESOLVED"));
    assert!(!s.fake.updates()[0].has_buttons());
    assert!(s.fake.wait_for_posts(2, WAIT).await);
    assert_eq!(s.fake.posts()[1].thread_ts.as_deref(), Some(parent.ts.as_str()));
    assert_eq!(s.get("/api/v1/alerts").await["total"], 0);
    s.stop().await;
}

#[tokio::test]
async fn slash_command_status_silence_and_search() {
    let s = Server::start("").await;
    s.event(alert("disk-db1", "critical", "firing")).await;
    s.event(json!({"kind": "user.registered", "title": "New user", "user": "carol@example.com"})).await;
    assert!(s.fake.wait_for_posts(2, WAIT).await);

    let r = s.slack(&slash("status"), SIGNING, now()).await;
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().await.expect("json");
    assert_eq!(answer["response_type"], "ephemeral");
    let text = answer["text"].as_str().unwrap_or_default();
    assert!(text.contains("1 alert firing") && text.contains("Disk almost full"), "{text}");

    let answer: Value = s.slack(&slash("search carol@example.com"), SIGNING, now()).await.json().await.expect("json");
    let text = answer["text"].as_str().unwrap_or_default();
    assert!(text.contains("user.registered") && text.contains("New user"), "{text}");

    let answer: Value = s.slack(&slash("silence es.* 2h upgrade"), SIGNING, now()).await.json().await.expect("json");
    assert!(answer["text"].as_str().unwrap_or_default().contains("Silenced `es.*`"), "{answer}");
    let silences = s.get("/api/v1/silences").await;
    assert_eq!(silences["silences"][0]["matchers"], json!({"kind": "es.*"}));
    assert_eq!(silences["silences"][0]["comment"], "upgrade");

    let answer: Value = s.slack(&slash("silence es.* forever"), SIGNING, now()).await.json().await.expect("json");
    assert!(answer["text"].as_str().unwrap_or_default().starts_with("Not silenced"), "{answer}");
    let answer: Value = s.slack(&slash("help"), SIGNING, now()).await.json().await.expect("json");
    assert!(answer["text"].as_str().unwrap_or_default().contains("Usage"), "{answer}");

    assert_eq!(s.slack(&slash("status"), "wrong", now()).await.status(), 401);
    assert_eq!(s.slack(&slash("status"), SIGNING, now() + 400).await.status(), 401);
    s.stop().await;
}

#[tokio::test]
async fn not_in_channel_is_dead_lettered_with_a_clear_error() {
    let s = Server::start("channel = \"#private\"").await;
    s.event(alert("disk-db1", "warning", "firing")).await;
    let mut dead = Value::Null;
    for _ in 0..100 {
        dead = s.get("/api/v1/deliveries/dead").await;
        if dead["dead_letters"].as_array().is_some_and(|d| !d.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let error = dead["dead_letters"][0]["last_error"].as_str().unwrap_or_default().to_string();
    assert!(error.contains("not_in_channel") && error.contains("invite the bot"), "{dead}");
    assert!(!error.contains(TOKEN));
    assert!(s.fake.posts().is_empty());
    // Permanent: tried once, not retried.
    assert_eq!(s.fake.rejections().len(), 1, "{:?}", s.fake.rejections());
    s.stop().await;
}

#[tokio::test]
async fn browser_events_never_mention() {
    let s = Server::start("\n[browser]\nmax_severity = \"critical\"\n").await;
    let r = s
        .http
        .post(s.url("/api/v1/browser/events"))
        .header("x-tocsin-key", BROWSER_KEY)
        .header("origin", "https://app.example.com")
        .json(&json!({"kind": "ui.crash", "severity": "error", "title": "Checkout broke"}))
        .send()
        .await
        .expect("post");
    assert!(r.status().is_success(), "{}", r.text().await.unwrap_or_default());
    assert!(s.fake.wait_for_posts(1, WAIT).await);
    let post = s.fake.posts()[0].clone();
    assert!(!post.body.to_string().contains("<!subteam"), "{}", post.body);
    assert!(!post.has_buttons(), "a one-off event has no alert buttons");
    s.stop().await;
}
