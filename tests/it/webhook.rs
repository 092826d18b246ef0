//! The generic webhook notifier: the contract's body and a valid signature.

use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;
use tocsin::testkit::fake_receiver::{FakeReceiver, Reply};

use crate::harness::*;

const SECRET: &str = "it-signing-secret-7d3f9a";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_gets_the_contract_body_signed() {
    let receiver = FakeReceiver::start().await;
    let body = format!(
        "{}\n[notifiers.ops]\ntype = \"webhook\"\nurl = \"{}\"\nsecret = \"{SECRET}\"\n\n\
         [[routes]]\nnotifier = \"ops\"\nchannel = \"#ops\"\ngroup_by = [\"service\"]\ngroup_interval = \"1s\"\n",
        fast_delivery(5),
        receiver.url()
    );
    // `group_interval = "1s"`: the `resolved` of an announced alert waits for the group's
    // interval after its last notification (default 1 min) since issue 4.
    let d = Daemon::start(Options::new(body)).await;
    let accepted = d
        .accept(&json!({"kind": "api.latency", "severity": "warning", "title": "API slow", "text": "p99 2s",
                        "labels": {"service": "api", "env": "prod"}, "fields": {"p99": "2s"}, "fingerprint": "fp-1",
                        "status": "firing"}))
        .await;
    let id = accepted["ids"][0].as_str().unwrap().to_string();
    d.accept(&json!({"kind": "deploy.done", "title": "Deployed"})).await;
    d.accept(
        &json!({"kind": "api.latency", "severity": "critical", "labels": {"service": "api"}, "fingerprint": "fp-1",
                     "status": "resolved"}),
    )
    .await;
    assert!(receiver.wait_for(3, Duration::from_secs(10)).await);

    let requests = receiver.requests();
    assert_eq!(requests.len(), 3);
    for r in &requests {
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/hook");
        assert!(r.header("content-type").is_some_and(|c| c.starts_with("application/json")));
        let ts = r.header("x-tocsin-timestamp").expect("timestamp header");
        let ts_num: i64 = ts.parse().expect("unix seconds");
        assert!((chrono::Utc::now().timestamp() - ts_num).abs() < 60);
        let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(format!("{ts}.").as_bytes());
        mac.update(&r.body);
        let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        assert_eq!(r.header("x-tocsin-signature"), Some(expected.as_str()));
    }

    let first = requests[0].json().expect("JSON body");
    assert_eq!(first["version"], 1);
    assert_eq!(first["notifier"], "ops");
    assert_eq!(first["channel"], "#ops");
    assert_eq!(first["status"], "firing");
    assert!(first["group_key"].as_str().is_some_and(|k| !k.is_empty()), "{first}");
    assert_eq!(first["group_labels"], json!({"service": "api"}));
    assert_eq!(first["title"], "API slow");
    assert_eq!(first["text"], "p99 2s");
    assert_eq!(first["truncated"], 0);
    let event = &first["events"][0];
    assert_eq!(first["events"].as_array().unwrap().len(), 1);
    assert_eq!(event["id"], id);
    assert_eq!(event["kind"], "api.latency");
    assert_eq!(event["severity"], "warning");
    assert_eq!(event["labels"], json!({"service": "api", "env": "prod"}));
    assert_eq!(event["fingerprint"], "fp-1");

    let second = requests[1].json().expect("JSON body");
    assert_eq!(second["status"], "event");
    assert_eq!(second["title"], "Deployed");
    assert!(second["events"][0]["fingerprint"].as_str().is_some_and(|f| !f.is_empty()));
    assert_ne!(second["group_key"], first["group_key"]);
    let third = requests[2].json().expect("JSON body");
    assert_eq!(third["status"], "resolved");
    assert_eq!(third["group_key"], first["group_key"], "stable for one group of one route");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_failures_are_retried_or_dead_lettered_by_status() {
    let flaky = FakeReceiver::start().await;
    flaky.set_replies([Reply::with_body(503, "busy"), Reply::rate_limited("1"), Reply::Drop]);
    let refusing = FakeReceiver::start().await;
    refusing.set_replies([Reply::with_body(400, "bad request")]);
    let body = format!(
        "{}\n[notifiers.flaky]\ntype = \"webhook\"\nurl = \"{}\"\n\n[notifiers.refusing]\ntype = \"webhook\"\nurl = \"{}\"\n\n{}{}",
        fast_delivery(5),
        flaky.url(),
        refusing.url(),
        route("flaky", "kinds = [\"flaky.*\"]"),
        route("refusing", "kinds = [\"refusing.*\"]"),
    );
    let d = Daemon::start(Options::new(body)).await;
    d.accept(&json!({"kind": "flaky.event", "title": "eventually"})).await;
    d.accept(&json!({"kind": "refusing.event", "title": "never"})).await;

    // 503, 429 (Retry-After: 1), dropped connection, then 200.
    assert!(flaky.wait_for(4, Duration::from_secs(10)).await, "{} requests", flaky.requests().len());
    let requests = flaky.requests();
    let gap = requests[2].at.duration_since(requests[1].at);
    assert!(gap >= Duration::from_millis(950), "Retry-After honoured: {gap:?}");
    let (_, dead) = d.dead_letters_until(KEY_RW, 1, Duration::from_secs(5)).await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["notifier"], "refusing");
    assert_eq!(dead[0]["attempts"], 1);
    assert!(dead[0]["last_error"].as_str().unwrap().contains("400"), "{}", dead[0]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(refusing.requests().len(), 1, "a 4xx is not retried");
    assert_eq!(flaky.requests().len(), 4, "delivered once, then no more");
}
