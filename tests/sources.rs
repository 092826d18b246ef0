//! Application event sources (issue 5), through the real server: Stripe, browser events,
//! heartbeats, run-task, error scrubbing and grouping, inbound webhooks and rate rules.

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use tocsin::app::Running;
use tocsin::testkit::fake_receiver::FakeReceiver;
use tocsin::testkit::fake_slack::FakeSlack;

const KEY: &str = "test-key-all";
const BROWSER_KEY: &str = "pk-browser";
const ORIGIN: &str = "https://app.example.com";

struct Server {
    running: Running,
    base: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Server {
    async fn start(extra: &str, hook_url: Option<&str>) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("t.db");
        let notifier = match hook_url {
            Some(url) => format!(
                "[notifiers.hook]\ntype = \"webhook\"\nurl = \"{url}\"\n\n[[routes]]\nnotifier = \"hook\"\ngroup_wait = \"0s\"\ncontinue = true\n"
            ),
            None => String::new(),
        };
        let toml = format!(
            r#"
[server]
listen = "127.0.0.1:0"

[store]
url = "sqlite://{db}"

[[api_keys]]
name = "backend"
key = "{KEY}"
scopes = ["events:write", "events:read", "heartbeats:write"]

[[api_keys]]
name = "web"
key = "{BROWSER_KEY}"
scopes = ["events:browser"]
allowed_kinds = ["ui.*", "error.js"]
allowed_origins = ["{ORIGIN}"]

{notifier}
{extra}
"#,
            db = db.display()
        );
        let config = tocsin::config::load_str(&toml, Path::new("sources.toml")).unwrap_or_else(|e| panic!("{e}"));
        let running = tocsin::app::start(config).await.expect("server starts");
        let base = format!("http://{}", running.addr);
        Server { running, base, http: reqwest::Client::new(), _dir: dir }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn search(&self, query: &str) -> Vec<Value> {
        let r = self.http.get(self.url(&format!("/api/v1/events?{query}"))).bearer_auth(KEY).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.unwrap();
        body["events"].as_array().cloned().unwrap_or_default()
    }

    async fn post_event(&self, body: Value) -> reqwest::Response {
        self.http.post(self.url("/api/v1/events")).bearer_auth(KEY).json(&body).send().await.unwrap()
    }

    async fn stop(self) {
        self.running.shutdown.cancel();
        let _ = self.running.wait().await;
    }
}

// ---------------------------------------------------------------- Stripe

const WHSEC_OLD: &str = "whsec_old_secret";
const WHSEC_NEW: &str = "whsec_new_secret";

fn stripe_config() -> String {
    format!("[stripe]\nsigning_secrets = [\"{WHSEC_OLD}\", \"{WHSEC_NEW}\"]\ntolerance = \"5m\"\n")
}

fn stripe_sig(secret: &str, t: i64, payload: &str) -> String {
    tocsin::source::stripe::sign(secret, t, payload.as_bytes())
}

fn invoice_paid(id: &str) -> String {
    json!({
        "id": id, "object": "event", "type": "invoice.paid", "livemode": false, "created": 1763740800,
        "data": {"object": {"id": "in_1", "object": "invoice", "amount_paid": 150000, "currency": "jpy",
                            "customer": "cus_9", "customer_email": "yuki@example.jp", "number": "INV-7"}}
    })
    .to_string()
}

async fn post_stripe(s: &Server, payload: &str, header: &str) -> reqwest::Response {
    s.http
        .post(s.url("/hooks/stripe"))
        .header("stripe-signature", header)
        .header("content-type", "application/json")
        .body(payload.to_string())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn stripe_signatures_valid_tampered_stale_rotated() {
    let hook = FakeReceiver::start().await;
    let s = Server::start(&stripe_config(), Some(&hook.url())).await;
    let now = Utc::now().timestamp();

    // Valid, signed with the current secret.
    let p1 = invoice_paid("evt_valid");
    let r = post_stripe(&s, &p1, &format!("t={now},v1={}", stripe_sig(WHSEC_NEW, now, &p1))).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());

    // Tampered: the body changed after signing.
    let p2 = invoice_paid("evt_tampered");
    let tampered = p2.replace("150000", "1");
    let r = post_stripe(&s, &tampered, &format!("t={now},v1={}", stripe_sig(WHSEC_NEW, now, &p2))).await;
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_signature");

    // Signed with a secret tocsin does not know.
    let p3 = invoice_paid("evt_unknown_secret");
    let r = post_stripe(&s, &p3, &format!("t={now},v1={}", stripe_sig("whsec_other", now, &p3))).await;
    assert_eq!(r.status(), 400);

    // Stale: a correct signature, six minutes old (a replay).
    let p4 = invoice_paid("evt_stale");
    let old = now - 360;
    let r = post_stripe(&s, &p4, &format!("t={old},v1={}", stripe_sig(WHSEC_NEW, old, &p4))).await;
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "stale_signature");

    // Rotation: Stripe sends one v1 per active secret; the old one alone also verifies.
    let p5 = invoice_paid("evt_rotated");
    let header = format!("t={now},v1={},v1={}", stripe_sig("whsec_retired", now, &p5), stripe_sig(WHSEC_OLD, now, &p5));
    let r = post_stripe(&s, &p5, &header).await;
    assert_eq!(r.status(), 200);

    // Missing header.
    let r = s.http.post(s.url("/hooks/stripe")).body(invoice_paid("evt_nohdr")).send().await.unwrap();
    assert_eq!(r.status(), 400);

    let events = s.search("kind=stripe.*").await;
    let ids: Vec<&str> = events.iter().filter_map(|e| e["labels"]["stripe_event"].as_str()).collect();
    assert_eq!(ids.len(), 2, "{events:#?}");
    assert!(ids.contains(&"evt_valid") && ids.contains(&"evt_rotated"));
    // Zero-decimal currency: 150000 JPY is ¥150,000, not ¥1,500.00.
    assert_eq!(events[0]["title"], "Invoice paid: ¥150,000 from yuki@example.jp");
    assert!(hook.wait_for(2, Duration::from_secs(10)).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(hook.requests().len(), 2, "nothing is posted for refused deliveries");
    s.stop().await;
}

#[tokio::test]
async fn stripe_retried_delivery_posts_once() {
    let hook = FakeReceiver::start().await;
    let s = Server::start(&stripe_config(), Some(&hook.url())).await;
    let payload = json!({
        "id": "evt_retry", "type": "customer.subscription.updated", "livemode": true,
        "data": {
            "object": {"id": "sub_1", "customer": "cus_1", "status": "active",
                       "items": {"data": [{"price": {"nickname": "Pro", "unit_amount": 4900, "currency": "usd",
                                                     "recurring": {"interval": "month"}}}]}},
            "previous_attributes": {"items": {"data": [{"price": {"nickname": "Starter", "unit_amount": 900,
                                                     "currency": "usd", "recurring": {"interval": "month"}}}]}}
        }
    })
    .to_string();
    for attempt in 0..3 {
        // Each retry is signed afresh, as Stripe does.
        let t = Utc::now().timestamp() + attempt;
        let r = post_stripe(&s, &payload, &format!("t={t},v1={}", stripe_sig(WHSEC_NEW, t, &payload))).await;
        assert_eq!(r.status(), 200);
    }
    assert!(hook.wait_for(1, Duration::from_secs(10)).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(hook.requests().len(), 1);
    let events = s.search("kind=stripe.customer.subscription.updated").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["title"], "Upgrade: Starter ($9.00/month) → Pro ($49.00/month) for cus_1");
    s.stop().await;
}

// ---------------------------------------------------------------- Browser

#[tokio::test]
async fn browser_cors_preflight_allowed_and_foreign_origin() {
    let s = Server::start("", None).await;
    let preflight = |origin: &'static str| {
        s.http
            .request(reqwest::Method::OPTIONS, s.url("/api/v1/browser/events"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type, x-tocsin-key")
            .send()
    };
    let r = preflight(ORIGIN).await.unwrap();
    assert_eq!(r.status(), 204);
    let h = r.headers();
    assert_eq!(h["access-control-allow-origin"], ORIGIN);
    assert_eq!(h["access-control-allow-methods"], "POST");
    let allowed = h["access-control-allow-headers"].to_str().unwrap();
    for name in ["authorization", "content-type", "x-tocsin-key"] {
        assert!(allowed.contains(name), "{allowed}");
    }
    assert!(h.contains_key("access-control-max-age"));
    assert_eq!(h["vary"], "Origin");

    let r = preflight("https://evil.example.net").await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(!r.headers().contains_key("access-control-allow-origin"));

    // The real request: allowed origin gets the CORS header; a foreign one is refused without it.
    let send = |origin: &'static str| {
        s.http
            .post(s.url("/api/v1/browser/events"))
            .header("origin", origin)
            .header("x-tocsin-key", BROWSER_KEY)
            .json(&json!({"kind": "ui.click", "title": "clicked"}))
            .send()
    };
    let r = send(ORIGIN).await.unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(r.headers()["access-control-allow-origin"], ORIGIN);
    let r = send("https://evil.example.net").await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(!r.headers().contains_key("access-control-allow-origin"));
    s.stop().await;
}

#[tokio::test]
async fn browser_key_limits_kind_severity_mentions_size_and_rate() {
    let s = Server::start("[browser]\nip_rate_per_minute = 60\nip_burst = 6\nmax_body_bytes = 2048\n", None).await;
    let post = |body: Value| {
        s.http
            .post(s.url("/api/v1/browser/events"))
            .header("origin", ORIGIN)
            .bearer_auth(BROWSER_KEY)
            .json(&body)
            .send()
    };
    // A kind outside allowed_kinds.
    let r = post(json!({"kind": "billing.refund", "title": "x"})).await.unwrap();
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "kind_not_allowed");
    assert_eq!(body["error"]["field"], "kind");

    // Critical is capped at warning, mentions are stripped, the source is the key.
    let r = post(json!({"kind": "ui.crash", "severity": "critical", "source": "backend",
                        "title": "<!channel> page broke @here", "text": "ping <@U024BE7LH> and <!here>"}))
    .await
    .unwrap();
    assert_eq!(r.status(), 202);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["severity_capped"], 1);

    // The events key may not be used on the browser endpoint, nor the browser key on /events.
    let r = s
        .http
        .post(s.url("/api/v1/browser/events"))
        .bearer_auth(KEY)
        .json(&json!({"kind": "ui.x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = s
        .http
        .post(s.url("/api/v1/events"))
        .bearer_auth(BROWSER_KEY)
        .json(&json!({"kind": "ui.x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // A big body.
    let r = post(json!({"kind": "ui.big", "text": "x".repeat(4000)})).await.unwrap();
    assert_eq!(r.status(), 413);

    let stored = s.search("kind=ui.crash").await;
    assert_eq!(stored.len(), 1);
    let e = &stored[0];
    assert_eq!(e["severity"], "warning");
    assert_eq!(e["source"], "web");
    let shown = format!("{} {}", e["title"], e["text"]);
    for mention in ["<!channel>", "<!here>", "<@U024BE7LH>", "@here"] {
        assert!(!shown.contains(mention), "{shown}");
    }

    // The per-IP bucket (burst 6) is empty by now: 429 with Retry-After.
    let mut limited = None;
    for _ in 0..10 {
        let r = post(json!({"kind": "ui.click"})).await.unwrap();
        if r.status() == 429 {
            limited = Some(r);
            break;
        }
    }
    let r = limited.expect("rate limited");
    let wait: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(wait >= 1);
    s.stop().await;
}

// ---------------------------------------------------------------- Heartbeats

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

#[tokio::test]
async fn heartbeat_late_failed_and_recovered_with_a_controlled_clock() {
    let extra = r#"
[[heartbeats]]
name = "nightly-emails"
schedule = "0 2 * * *"
timezone = "UTC"
grace = "15m"
max_duration = "1h"
"#;
    let s = Server::start(extra, None).await;
    let clock = s.running.sources.clock().clone();
    let ping = |suffix: &'static str, body: &'static str| {
        s.http.post(s.url(&format!("/api/v1/heartbeats/nightly-emails{suffix}"))).bearer_auth(KEY).body(body).send()
    };

    // A run at 02:00 that takes five minutes.
    clock.set(t("2026-11-20T02:00:00Z"));
    assert_eq!(ping("/start", "").await.unwrap().status(), 200);
    clock.set(t("2026-11-20T02:05:00Z"));
    let r = ping("", "sent 120 emails").await.unwrap();
    assert_eq!(r.status(), 200);
    let succeeded = s.search("kind=heartbeat.succeeded").await;
    assert_eq!(succeeded.len(), 1);
    assert_eq!(succeeded[0]["fields"]["duration_ms"], 300_000);

    // Next night: nothing by 02:15 (grace) is fine, by 02:16 it is late.
    s.running.sources.heartbeat_tick(t("2026-11-21T02:14:00Z")).await.unwrap();
    assert!(s.search("kind=heartbeat.late").await.is_empty());
    s.running.sources.heartbeat_tick(t("2026-11-21T02:16:00Z")).await.unwrap();
    s.running.sources.heartbeat_tick(t("2026-11-21T02:20:00Z")).await.unwrap();
    let late = s.search("kind=heartbeat.late").await;
    assert_eq!(late.len(), 1, "one alert, not one per tick");
    assert_eq!(late[0]["status"], "firing");
    assert_eq!(late[0]["fingerprint"], "heartbeat:nightly-emails");

    // It finally runs: the alert resolves.
    clock.set(t("2026-11-21T02:30:00Z"));
    ping("", "").await.unwrap();
    let late = s.search("kind=heartbeat.late").await;
    assert_eq!(late.len(), 2);
    assert_eq!(late[0]["status"], "resolved");

    // A failure, with the output tail.
    clock.set(t("2026-11-22T02:01:00Z"));
    let r = s
        .http
        .post(s.url("/api/v1/heartbeats/nightly-emails/fail?exit_code=2"))
        .bearer_auth(KEY)
        .body("SMTP connection refused")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let failed = s.search("kind=heartbeat.failed").await;
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["status"], "firing");
    assert!(failed[0]["text"].as_str().unwrap().contains("SMTP connection refused"));
    assert_eq!(failed[0]["fields"]["exit_code"], 2);

    // Recovered.
    clock.set(t("2026-11-22T02:40:00Z"));
    ping("", "").await.unwrap();
    let failed = s.search("kind=heartbeat.failed").await;
    assert_eq!(failed[0]["status"], "resolved");

    // A run that goes on too long.
    clock.set(t("2026-11-23T02:00:00Z"));
    ping("/start", "").await.unwrap();
    s.running.sources.heartbeat_tick(t("2026-11-23T03:01:00Z")).await.unwrap();
    let long = s.search("kind=heartbeat.running_long").await;
    assert_eq!(long.len(), 1);

    // Unknown names and keys without the scope.
    let r = s.http.post(s.url("/api/v1/heartbeats/nope")).bearer_auth(KEY).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let r = s.http.post(s.url("/api/v1/heartbeats/nightly-emails")).bearer_auth(BROWSER_KEY).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let r = s.http.get(s.url("/api/v1/heartbeats")).bearer_auth(KEY).send().await.unwrap();
    let list: Value = r.json().await.unwrap();
    assert_eq!(list["heartbeats"][0]["status"], "running_long");
    s.stop().await;
}

#[tokio::test]
async fn run_task_propagates_a_failing_exit_code_and_reports_the_tail() {
    let extra = "[[heartbeats]]\nname = \"backup\"\nperiod = \"1d\"\n";
    let s = Server::start(extra, None).await;
    let base = s.base.clone();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_tocsin"))
            .args(["run-task", "backup", "--url", &base, "--key", KEY, "--"])
            .args(["sh", "-c", "echo starting backup; echo 'disk full' >&2; exit 3"])
            .env_remove("TOCSIN_CONFIG")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(output.status.code(), Some(3), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).contains("starting backup"));
    let failed = s.search("kind=heartbeat.failed").await;
    assert_eq!(failed.len(), 1);
    let text = failed[0]["text"].as_str().unwrap();
    assert!(text.contains("disk full") && text.contains("starting backup"), "{text}");
    assert_eq!(failed[0]["fields"]["exit_code"], 3);
    assert!(failed[0]["fields"]["duration"].is_string(), "the start ping arrived: {:?}", failed[0]["fields"]);

    // A successful command exits 0 and resolves the alert.
    let base = s.base.clone();
    let status = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_tocsin"))
            .args(["run-task", "backup", "--url", &base, "--key", KEY, "--", "true"])
            .status()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(status.code(), Some(0));
    let failed = s.search("kind=heartbeat.failed").await;
    assert_eq!(failed[0]["status"], "resolved");

    // URL and key from the configuration file's [client] section.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("client.toml");
    std::fs::write(&file, format!("[client]\nurl = \"{}\"\nkey = \"{KEY}\"\n", s.base)).unwrap();
    let status = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_tocsin"))
            .args(["run-task", "backup", "--config"])
            .arg(&file)
            .args(["--", "sh", "-c", "exit 0"])
            .env_remove("TOCSIN_URL")
            .env_remove("TOCSIN_KEY")
            .status()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(status.code(), Some(0));
    assert_eq!(s.search("kind=heartbeat.succeeded").await.len(), 2);
    s.stop().await;
}

// ---------------------------------------------------------------- Server errors

fn error_event(route: &str, message: &str) -> Value {
    json!({
        "kind": "error.server",
        "severity": "error",
        "error": {
            "type": "ZeroDivisionError",
            "message": message,
            "frames": [
                {"function": "divide", "module": "decimal", "filename": "decimal.py", "lineno": 10},
                {"function": "checkout", "module": "shop.views", "filename": "shop/views.py", "lineno": 42, "in_app": true}
            ],
            "request": {
                "method": "POST",
                "url": "https://shop.example.com/cart/7/checkout?session_token=abc123secret&page=2",
                "route": route,
                "headers": {
                    "Authorization": "Bearer sk_live_SUPERSECRET",
                    "Cookie": "sessionid=COOKIESECRET",
                    "Set-Cookie": "sid=SETCOOKIESECRET",
                    "X-Api-Key": "APIKEYSECRET",
                    "Accept": "application/json"
                },
                "body": {"card": "4242 4242 4242 4242", "password": "hunter2PASSWORD", "quantity": 2}
            }
        }
    })
}

#[tokio::test]
async fn scrubbed_headers_never_reach_the_store_or_the_notifier() {
    let hook = FakeReceiver::start().await;
    let slack = FakeSlack::start().await;
    let extra = format!(
        "[scrub]\nheaders = [\"X-Internal\"]\n\n[notifiers.slack]\ntype = \"slack_webhook\"\nurl = \"{}\"\n\n\
         [[routes]]\nnotifier = \"slack\"\ngroup_wait = \"0s\"\n",
        slack.hook_url("alerts")
    );
    let s = Server::start(&extra, Some(&hook.url())).await;
    let mut event = error_event("/cart/{id}/checkout", "division by zero");
    event["error"]["request"]["headers"]["X-Internal"] = json!("INTERNALSECRET");
    let r = s.post_event(event).await;
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    assert!(hook.wait_for(1, Duration::from_secs(10)).await);
    assert!(slack.wait_for("alerts", 1, Duration::from_secs(10)).await);

    let stored = s.search("kind=error.server").await;
    assert_eq!(stored.len(), 1);
    let sent = String::from_utf8_lossy(&hook.requests()[0].body).into_owned();
    let slack_sent = serde_json::to_string(&slack.messages("alerts")).unwrap();
    assert!(slack_sent.contains("ZeroDivisionError"), "{slack_sent}");
    let kept = serde_json::to_string(&stored).unwrap();
    for secret in [
        "SUPERSECRET",
        "COOKIESECRET",
        "SETCOOKIESECRET",
        "APIKEYSECRET",
        "INTERNALSECRET",
        "hunter2PASSWORD",
        "4242 4242 4242 4242",
        "abc123secret",
    ] {
        assert!(!kept.contains(secret), "{secret} reached the store: {kept}");
        assert!(!sent.contains(secret), "{secret} reached the notifier: {sent}");
        assert!(!slack_sent.contains(secret), "{secret} reached Slack: {slack_sent}");
    }
    let headers = &stored[0]["error"]["request"]["headers"];
    assert_eq!(headers["Authorization"], "[Filtered]");
    assert_eq!(headers["Accept"], "application/json");
    assert_eq!(stored[0]["error"]["request"]["body"]["quantity"], 2);
    assert!(stored[0]["title"].as_str().unwrap().starts_with("New error: ZeroDivisionError: division by zero"));
    s.stop().await;
}

#[tokio::test]
async fn one_bug_is_one_alert_with_a_count_and_regressions_are_notified() {
    let hook = FakeReceiver::start().await;
    let s = Server::start("[errors]\nspike_threshold = 5\n", Some(&hook.url())).await;
    for i in 0..3 {
        // Different messages and line numbers, same type, in-app frame and route: one issue.
        let mut e = error_event("/cart/{id}/checkout", &format!("division by zero #{i}"));
        e["error"]["frames"][1]["lineno"] = json!(40 + i);
        assert_eq!(s.post_event(e).await.status(), 202);
    }
    assert!(hook.wait_for(1, Duration::from_secs(10)).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(hook.requests().len(), 1, "only the first occurrence is sent");
    let stored = s.search("kind=error.server").await;
    assert_eq!(stored.len(), 3, "every occurrence is stored");
    assert_eq!(stored[0]["fields"]["occurrences"], 3);
    let fingerprint = stored[0]["fingerprint"].as_str().unwrap().to_string();
    assert!(stored.iter().all(|e| e["fingerprint"] == fingerprint.as_str()));

    // Another route is another issue.
    s.post_event(error_event("/refund/{id}", "x")).await;
    assert!(hook.wait_for(2, Duration::from_secs(10)).await);

    // Spike: the fifth occurrence within the window.
    s.post_event(error_event("/cart/{id}/checkout", "again")).await;
    s.post_event(error_event("/cart/{id}/checkout", "again")).await;
    assert!(hook.wait_for(3, Duration::from_secs(10)).await);
    let spike = hook.requests()[2].json().unwrap();
    assert!(spike["title"].as_str().unwrap().starts_with("Spike"), "{spike}");

    // Resolved, then seen again: a regression.
    let r = s.http.post(s.url(&format!("/api/v1/errors/{fingerprint}/resolve"))).bearer_auth(KEY).send().await.unwrap();
    assert_eq!(r.status(), 200);
    s.post_event(error_event("/cart/{id}/checkout", "back")).await;
    assert!(hook.wait_for(4, Duration::from_secs(10)).await);
    let regression = hook.requests()[3].json().unwrap();
    assert!(regression["title"].as_str().unwrap().starts_with("Regression"), "{regression}");
    s.stop().await;
}

// ---------------------------------------------------------------- Inbound webhooks

#[tokio::test]
async fn inbound_webhook_with_hmac_and_templates() {
    let extra = r#"
[[webhooks]]
name = "github"
when = "payload.workflow_run.conclusion == 'failure'"
kind = "github.workflow_failed"
severity = "error"
title = "{{ payload.repository.full_name }}: {{ payload.workflow_run.name }} failed"
text = "on {{ payload.workflow_run.head_branch }}"
link = "{{ payload.workflow_run.html_url }}"
labels = { repo = "{{ payload.repository.full_name }}" }
fields = { event = "{{ headers['x-github-event'] }}" }
[webhooks.hmac]
header = "X-Hub-Signature-256"
secret = "gh-secret"
prefix = "sha256="
"#;
    let s = Server::start(extra, None).await;
    let body = json!({"action": "completed", "repository": {"full_name": "acme/shop"},
        "workflow_run": {"name": "CI", "conclusion": "failure", "head_branch": "main",
                         "html_url": "https://github.com/acme/shop/actions/runs/1"}})
    .to_string();
    let sign = |secret: &str, body: &str| {
        use hmac::Mac;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(body.as_bytes());
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    };
    let post = |sig: String, body: String| {
        s.http
            .post(s.url("/hooks/in/github"))
            .header("x-github-event", "workflow_run")
            .header("x-hub-signature-256", sig)
            .body(body)
            .send()
    };
    let r = post(sign("wrong", &body), body.clone()).await.unwrap();
    assert_eq!(r.status(), 401);
    let r = post(sign("gh-secret", &body), body.clone()).await.unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    let ok = body.replace("failure", "success");
    let r = post(sign("gh-secret", &ok), ok).await.unwrap();
    assert_eq!(r.status(), 202);
    let events = s.search("kind=github.workflow_failed").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["title"], "acme/shop: CI failed");
    assert_eq!(events[0]["labels"]["repo"], "acme/shop");
    assert_eq!(events[0]["fields"]["event"], "workflow_run");
    assert_eq!(events[0]["severity"], "error");
    let r = s.http.post(s.url("/hooks/in/nope")).body("{}").send().await.unwrap();
    assert_eq!(r.status(), 404);
    s.stop().await;
}

#[tokio::test]
async fn the_shipped_airflow_example_turns_a_callback_into_an_event() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/webhooks/airflow.toml");
    let text = std::fs::read_to_string(path).unwrap().replace("${env:AIRFLOW_HOOK_SECRET}", "af-secret");
    let s = Server::start(&text, None).await;
    let body = json!({"dag_id": "billing", "task_id": "charge_cards", "run_id": "scheduled__2026-11-21",
                      "try_number": 3, "max_tries": 3, "logical_date": "2026-11-21T00:00:00+00:00",
                      "exception": "ConnectionError: db down", "log_url": "https://airflow.example.com/log?x=1"})
    .to_string();
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"af-secret").unwrap();
    mac.update(body.as_bytes());
    let sig = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    let r = s.http.post(s.url("/hooks/in/airflow")).header("x-tocsin-signature", sig).body(body).send().await.unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    let events = s.search("kind=airflow.task_failed").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["title"], "Airflow: billing.charge_cards failed");
    assert_eq!(events[0]["fingerprint"], "airflow:billing:charge_cards");
    assert_eq!(events[0]["link"], "https://airflow.example.com/log?x=1");
    s.stop().await;
}

// ---------------------------------------------------------------- Rate rules

#[tokio::test]
async fn rate_rules_fire_on_silence_and_on_a_spike_then_resolve() {
    let extra = r#"
[[rate_rules]]
name = "registrations-stopped"
kinds = ["user.registered"]
window = "1h"
min = 1

[[rate_rules]]
name = "failed-logins"
kinds = ["auth.login_failed"]
window = "5m"
max = 5

[[rate_rules]]
name = "checkout-baseline"
kinds = ["shop.checkout"]
window = "1h"
baseline = "10h"
deviation_percent = 200
"#;
    let s = Server::start(extra, None).await;
    let now = Utc::now();
    // Ten hours of steady checkouts (2 an hour) as the baseline, then a burst of 10 in the last hour.
    let mut batch = Vec::new();
    for h in 1..=10 {
        for m in [10, 40] {
            let at = now - chrono::Duration::hours(h) - chrono::Duration::minutes(m);
            batch.push(json!({"kind": "shop.checkout", "timestamp": at.to_rfc3339()}));
        }
    }
    for m in 0..10 {
        batch
            .push(json!({"kind": "shop.checkout", "timestamp": (now - chrono::Duration::minutes(m + 1)).to_rfc3339()}));
    }
    batch.push(json!({"kind": "user.registered", "timestamp": (now - chrono::Duration::minutes(5)).to_rfc3339()}));
    for _ in 0..8 {
        batch.push(json!({"kind": "auth.login_failed"}));
    }
    assert_eq!(s.post_event(json!({ "events": batch })).await.status(), 202);

    let sources = &s.running.sources;
    sources.evaluate_rate_rules(Utc::now()).await.unwrap();
    let high = s.search("kind=rate.high").await;
    let rules: Vec<&str> = high.iter().filter_map(|e| e["labels"]["rule"].as_str()).collect();
    assert!(rules.contains(&"failed-logins"), "{high:#?}");
    assert!(rules.contains(&"checkout-baseline"), "{high:#?}");
    assert!(s.search("kind=rate.low").await.is_empty(), "a registration came in the last hour");
    let logins = high.iter().find(|e| e["labels"]["rule"] == "failed-logins").unwrap();
    assert_eq!(logins["status"], "firing");
    assert_eq!(logins["fields"]["count"], 8);

    // Two hours later: no registration for an hour (silence), and the login spike is over.
    sources.evaluate_rate_rules(Utc::now() + chrono::Duration::hours(2)).await.unwrap();
    let low = s.search("kind=rate.low").await;
    assert!(low.iter().any(|e| e["labels"]["rule"] == "registrations-stopped" && e["status"] == "firing"), "{low:#?}");
    let high = s.search("kind=rate.high").await;
    assert!(high.iter().any(|e| e["labels"]["rule"] == "failed-logins" && e["status"] == "resolved"), "{high:#?}");

    // Evaluating again changes nothing: alerts are state changes, not repeats.
    let before = s.search("kind=rate.*").await.len();
    sources.evaluate_rate_rules(Utc::now() + chrono::Duration::hours(2)).await.unwrap();
    assert_eq!(s.search("kind=rate.*").await.len(), before);
    s.stop().await;
}

// ---------------------------------------------------------------- Shipped examples

#[test]
fn the_webhook_examples_load_and_the_sources_keys_are_validated() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/webhooks");
    let env = |name: &str| Some(format!("value-of-{name}"));
    for file in ["github.toml", "airflow.toml"] {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        let config = tocsin::config::load_str_with_env(&text, &dir.join(file), &env).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.webhooks.len(), 1);
    }
    let bad = r#"
[stripe]
signing_secrets = []

[[heartbeats]]
name = "x"
schedule = "0 2 * *"

[[heartbeats]]
name = "y"

[[rate_rules]]
name = "r"
kinds = ["a.*"]
window = "1h"
baseline = "7d"
"#;
    let errors = match tocsin::config::load_str(bad, Path::new("bad.toml")) {
        Ok(_) => panic!("expected errors"),
        Err(e) => e.0,
    };
    let keys: Vec<String> = errors.iter().filter_map(|e| e.key.clone()).collect();
    for key in ["stripe.signing_secrets", "heartbeats[0].schedule", "heartbeats[1]", "rate_rules[0].deviation_percent"]
    {
        assert!(keys.iter().any(|k| k == key), "{key} not reported: {keys:?}");
    }
}
