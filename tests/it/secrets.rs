//! No secret (webhook URL or its token, signing secret, API key) in any log line, error or
//! API response, whatever goes wrong.

use std::net::TcpListener;
use std::time::Duration;

use serde_json::json;
use tocsin::testkit::fake_receiver::{FakeReceiver, Reply};
use tocsin::testkit::fake_slack::{FakeSlack, Mode};

use crate::harness::*;

const API_KEY: &str = "it-secret-api-key-Qm8vR2xW";
const SIGNING_SECRET: &str = "it-secret-signing-Zt4pL9cK";
const OPS_TOKEN: &str = "it-secret-opspath-Hy6nB3dF";
const CLOSED_TOKEN: &str = "it-secret-closedtok-Vw1sJ7eA";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_leak_with_text_logs() {
    secrets_never_leak("text").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_leak_with_json_logs() {
    secrets_never_leak("json").await;
}

async fn secrets_never_leak(format: &'static str) {
    let slack = FakeSlack::start().await;
    slack.set_mode("s500", Mode::ServerError(None));
    slack.set_mode("s410", Mode::Archived);
    slack.set_mode("sdrop", Mode::DropConnections(1000));
    slack.set_latency("sslow", Duration::from_millis(1500));
    let receiver = FakeReceiver::start().await;
    receiver.set_replies((0..20).map(|_| Reply::with_body(500, "receiver broke")));
    let closed_port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();

    let mut env = vec![
        ("IT_API_KEY".to_string(), API_KEY.to_string()),
        ("IT_SIGNING_SECRET".to_string(), SIGNING_SECRET.to_string()),
        ("IT_OPS_URL".to_string(), format!("{}/hooks/{OPS_TOKEN}", receiver.base_url())),
        ("IT_CLOSED_URL".to_string(), format!("http://127.0.0.1:{closed_port}/services/T1/B1/{CLOSED_TOKEN}")),
    ];
    let mut secrets =
        vec![API_KEY.to_string(), SIGNING_SECRET.to_string(), OPS_TOKEN.to_string(), CLOSED_TOKEN.to_string()];
    let mut body =
        "[delivery]\nmax_attempts = 2\nbackoff_initial = \"50ms\"\nbackoff_max = \"100ms\"\ntimeout = \"400ms\"\n\n"
            .to_string();
    for name in ["s500", "s410", "sdrop", "sslow"] {
        let url = slack.hook_url(name);
        let token = url.rsplit('/').next().unwrap().to_string();
        let var = format!("IT_{}_URL", name.to_uppercase());
        env.push((var.clone(), url.clone()));
        secrets.push(token);
        body.push_str(&format!("[notifiers.{name}]\ntype = \"slack_webhook\"\nurl = \"${{env:{var}}}\"\n\n"));
    }
    body.push_str("[notifiers.closed]\ntype = \"slack_webhook\"\nurl = \"${env:IT_CLOSED_URL}\"\n\n");
    body.push_str(
        "[notifiers.ops]\ntype = \"webhook\"\nurl = \"${env:IT_OPS_URL}\"\nsecret = \"${env:IT_SIGNING_SECRET}\"\n\n",
    );
    let notifiers = ["s500", "s410", "sdrop", "sslow", "closed", "ops"];
    for n in notifiers {
        body.push_str(&route(n, "continue = true"));
    }
    let mut opts = Options::new(body);
    opts.log_format = format;
    opts.log_level = "debug";
    opts.env = env;
    opts.keys =
        "[[api_keys]]\nname = \"env-key\"\nkey = \"${env:IT_API_KEY}\"\nscopes = [\"events:write\", \"events:read\"]\n"
            .into();
    let mut d = Daemon::start(opts.clone()).await;

    let mut responses: Vec<String> = Vec::new();
    let event = json!({"kind": "leak.test", "title": "will fail everywhere", "user": "u@example.com"});
    let (status, _, text) = d.post_raw(Some(API_KEY), event.to_string()).await;
    assert_eq!(status, 202, "{text}");
    responses.push(text);
    for (key, body) in [
        (Some(API_KEY), "{not json".to_string()),
        (Some(API_KEY), json!({"kind": "Bad Kind"}).to_string()),
        (Some(API_KEY), json!({"kind": "a", "colour": "red"}).to_string()),
        (None, event.to_string()),
        (Some("wrong-key"), event.to_string()),
        (Some(&format!("{API_KEY}x")), event.to_string()),
    ] {
        responses.push(d.post_raw(key, body).await.2);
    }
    for (key, path) in [
        (Some(API_KEY), "/api/v1/events"),
        (Some(API_KEY), "/api/v1/events?since=bad"),
        (Some(API_KEY), "/api/v1/events?cursor=bad"),
        (None, "/api/v1/events"),
        (None, "/healthz"),
        (None, "/readyz"),
        (None, "/nope"),
        (Some(API_KEY), "/api/v1/deliveries/dead?limit=abc"),
    ] {
        responses.push(d.get(key, path).await.2);
    }

    // Every destination fails: 500, 410, dropped connection, timeout, connection refused, webhook 500.
    // The gone destination (410) also raises an alarm, which fails everywhere too: wait for
    // each notifier's own dead letter rather than for a count.
    let named = |dead: &str| notifiers.iter().all(|n| dead.contains(&format!("\"notifier\":\"{n}\"")));
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let dead = loop {
        let (_, _, dead) = d.get(Some(API_KEY), "/api/v1/deliveries/dead?limit=100").await;
        if named(&dead) || std::time::Instant::now() > deadline {
            break dead;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    responses.push(dead.clone());
    for n in notifiers {
        assert!(dead.contains(&format!("\"notifier\":\"{n}\"")), "{n} not dead-lettered: {dead}");
    }
    responses.push(d.metrics().await);

    // An invalid file whose bad values are the secrets themselves.
    let mut bad = opts.clone();
    bad.body = format!(
        "[delivery]\nmax_attempts = \"${{env:IT_API_KEY}}\"\n\n[notifiers.x]\ntype = \"slack_webhook\"\nurl = \"${{env:IT_SIGNING_SECRET}}\"\n\
         unknown = \"${{env:IT_S500_URL}}\"\n\n[notifiers.y]\ntype = \"webhook\"\nurl = 5\nsecret = \"${{env:IT_OPS_URL}}\"\n\n{}",
        route("nowhere", "")
    );
    d.write_config(&bad);
    d.signal("HUP");
    assert!(
        eventually(Duration::from_secs(5), || async {
            d.metric("tocsin_config_reloads_total{result=\"failure\"}").await == Some(1.0)
        })
        .await
    );
    responses.push(d.metrics().await);
    let status = d.terminate(Duration::from_secs(15)).await;
    assert!(status.success());

    // `tocsin config check` on the broken file does not print them either.
    let check = std::process::Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .args(["config", "check", "--config"])
        .arg(d.config_path())
        .envs(opts.env.iter().cloned())
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(1));
    let check_out = format!("{}{}", String::from_utf8_lossy(&check.stdout), String::from_utf8_lossy(&check.stderr));

    // Nor does `tocsin send` when it fails, on the last valid file.
    d.write_config(&opts);
    let mut send_out = String::new();
    for notifier in ["s500", "sdrop", "closed", "ops", "s410"] {
        let send = std::process::Command::new(env!("CARGO_BIN_EXE_tocsin"))
            .args(["send", "--notifier", notifier, "--config"])
            .arg(d.config_path())
            .arg("hello")
            .envs(opts.env.iter().cloned())
            .env("RUST_LOG", "debug")
            .output()
            .unwrap();
        assert_eq!(send.status.code(), Some(1), "send to {notifier}");
        send_out.push_str(&String::from_utf8_lossy(&send.stdout));
        send_out.push_str(&String::from_utf8_lossy(&send.stderr));
    }
    assert!(send_out.contains("channel_is_archived"), "{send_out}");

    let stdout = d.stdout();
    let stderr = d.stderr();
    assert!(stderr.contains("dead-lettered") || stderr.contains("dead"), "logs are at debug level: {stderr}");
    if format == "json" {
        let first = stderr.lines().next().unwrap_or_default();
        assert!(serde_json::from_str::<serde_json::Value>(first).is_ok(), "JSON logs: {first}");
    }
    let mut haystacks = vec![("stdout", stdout), ("stderr", stderr), ("config check", check_out), ("send", send_out)];
    haystacks.extend(responses.into_iter().map(|r| ("response", r)));
    for (where_, text) in &haystacks {
        for secret in &secrets {
            assert!(!text.contains(secret.as_str()), "{secret:?} leaked in {where_}:\n{text}");
        }
    }
}
