//! Every bad-input case answered with the right status, code and field; nothing lost.

use serde_json::{json, Map, Value};

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_input_is_refused_precisely_and_nothing_is_lost() {
    let mut opts = Options::new("");
    opts.server_extra = "max_body_bytes = 65536".into();
    let d = Daemon::start(opts).await;

    for i in 0..3 {
        d.accept(&json!({"kind": "good.before", "user": "kept@example.com", "fields": {"i": i}})).await;
    }

    let many_labels: Map<String, Value> = (0..65).map(|i| (format!("l{i}"), json!("v"))).collect();
    let too_many: Vec<Value> = (0..1001).map(|_| json!({"kind": "batch.item"})).collect();
    let cases: Vec<(&str, String, &str, &str)> = vec![
        ("invalid JSON", "{\"kind\": ".into(), "invalid_json", "body"),
        ("missing kind", json!({"title": "t"}).to_string(), "invalid_event", "kind"),
        ("kind not a string", json!({"kind": 7}).to_string(), "invalid_event", "kind"),
        ("bad kind chars", json!({"kind": "Disk Full!"}).to_string(), "invalid_event", "kind"),
        ("kind > 128", json!({"kind": "k".repeat(129)}).to_string(), "invalid_event", "kind"),
        ("bad severity", json!({"kind": "a", "severity": "fatal"}).to_string(), "invalid_event", "severity"),
        ("label not a string", json!({"kind": "a", "labels": {"env": 1}}).to_string(), "invalid_event", "labels.env"),
        ("labels not an object", json!({"kind": "a", "labels": ["x"]}).to_string(), "invalid_event", "labels"),
        ("> 64 labels", json!({"kind": "a", "labels": many_labels}).to_string(), "invalid_event", "labels"),
        ("title > 256", json!({"kind": "a", "title": "t".repeat(257)}).to_string(), "invalid_event", "title"),
        ("text > 16 KiB", json!({"kind": "a", "text": "x".repeat(16 * 1024 + 1)}).to_string(), "invalid_event", "text"),
        ("bad timestamp", json!({"kind": "a", "timestamp": "yesterday"}).to_string(), "invalid_event", "timestamp"),
        ("unknown field", json!({"kind": "a", "colour": "red"}).to_string(), "invalid_event", "colour"),
        ("batch > 1000", json!({ "events": too_many }).to_string(), "invalid_event", "events"),
        ("empty batch", json!({"events": []}).to_string(), "invalid_event", "events"),
        (
            "one bad event in a batch",
            json!({"events": [
                {"kind": "batch.good", "user": "lost@example.com"},
                {"kind": "batch.good", "user": "lost@example.com"},
                {"kind": "batch.good", "severity": "loud", "user": "lost@example.com"},
            ]})
            .to_string(),
            "invalid_event",
            "events[2].severity",
        ),
        ("not an object", "[1, 2]".into(), "invalid_event", ""),
        ("batch item not an object", json!({"events": [{"kind": "a"}, "b"]}).to_string(), "invalid_event", "events[1]"),
        ("user > 256", json!({"kind": "a", "user": "u".repeat(257)}).to_string(), "invalid_event", "user"),
        (
            "label value > 1024",
            json!({"kind": "a", "labels": {"k": "v".repeat(1025)}}).to_string(),
            "invalid_event",
            "labels.k",
        ),
        ("fields not an object", json!({"kind": "a", "fields": "x"}).to_string(), "invalid_event", "fields"),
        ("> 64 fields", json!({"kind": "a", "fields": many_labels}).to_string(), "invalid_event", "fields"),
        ("bad status", json!({"kind": "a", "status": "open"}).to_string(), "invalid_event", "status"),
        ("bad link", json!({"kind": "a", "link": "javascript:alert(1)"}).to_string(), "invalid_event", "link"),
        ("empty fingerprint", json!({"kind": "a", "fingerprint": ""}).to_string(), "invalid_event", "fingerprint"),
        (
            "timestamp without zone",
            json!({"kind": "a", "timestamp": "2026-11-21T16:00:00"}).to_string(),
            "invalid_event",
            "timestamp",
        ),
        ("title not a string", json!({"kind": "a", "title": 5}).to_string(), "invalid_event", "title"),
        ("empty kind", json!({"kind": ""}).to_string(), "invalid_event", "kind"),
        ("events not an array", json!({"events": {"kind": "a"}}).to_string(), "invalid_event", "events"),
        (
            "bad field in a batch",
            json!({"events": [{"kind": "a"}, {"kind": "a", "labels": {"x": 1}}]}).to_string(),
            "invalid_event",
            "events[1].labels.x",
        ),
        ("a key twice", r#"{"kind": "a", "kind": "b"}"#.into(), "invalid_event", "body"),
        (
            "events twice",
            r#"{"events": [{"kind": "a"}, {"kind": "a", "link": "x"}], "events": [{"kind": "a"}]}"#.into(),
            "invalid_event",
            "body",
        ),
        (
            "a key twice in a batch",
            r#"{"events": [{"kind": "a", "title": "x", "title": "y"}]}"#.into(),
            "invalid_event",
            "body",
        ),
    ];
    for (what, body, code, field) in &cases {
        let (status, json, text) = d.post_raw(Some(KEY_RW), body.clone()).await;
        assert_eq!(status, 400, "{what}: {text}");
        assert_eq!(json["error"]["code"], *code, "{what}: {text}");
        if !field.is_empty() {
            assert_eq!(json["error"]["field"], *field, "{what}: {text}");
        }
        assert!(json["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: {text}");
    }

    // Over server.max_body_bytes: 413, with or without a declared length.
    let big = json!({"kind": "a", "text": "x".repeat(70_000)}).to_string();
    expect_413(&d, &big).await;
    // The limit itself is allowed: whitespace pads a valid event to exactly 65536 bytes.
    let event = json!({"kind": "size.edge", "user": "kept@example.com"}).to_string();
    let padded = format!("{event}{}", " ".repeat(65536 - event.len()));
    let (status, _, text) = d.post_raw(Some(KEY_RW), padded.clone()).await;
    assert_eq!(status, 202, "exactly max_body_bytes: {text}");
    expect_413(&d, &format!("{padded} ")).await;
    let status = chunked_post(&d, &big).await;
    assert_eq!(status, 413, "chunked body over the limit");

    // Bad search parameters.
    for (query, field) in [
        ("since=yesterday", "since"),
        ("until=2026-13-45", "until"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=ten", "limit"),
        ("cursor=not-a-cursor", "cursor"),
    ] {
        let (status, json, text) = d.get(Some(KEY_RW), &format!("/api/v1/events?{query}")).await;
        assert_eq!(status, 400, "{query}: {text}");
        assert_eq!(json["error"]["field"], field, "{query}: {text}");
        assert!(json["error"]["code"].as_str().is_some_and(|c| c.starts_with("invalid_")), "{query}: {text}");
    }

    // Exactly at the limits: accepted.
    let labels64: Map<String, Value> = (0..64).map(|i| (format!("l{i}"), json!("v"))).collect();
    let at_limits = json!({"kind": "k".repeat(128), "title": "é".repeat(256), "text": "x".repeat(16 * 1024),
                           "labels": labels64, "user": "edge@example.com", "timestamp": "2026-11-21T16:00:00+02:00"});
    let (status, json) = d.post(KEY_RW, &at_limits).await;
    assert_eq!(status, 202, "{json}");
    let batch1000: Vec<Value> = (0..1000).map(|_| json!({"kind": "b.f", "user": "e@x.io"})).collect();
    let (status, json) = d.post(KEY_RW, &json!({ "events": batch1000 })).await;
    assert_eq!((status, json["accepted"].as_u64()), (202, Some(1000)), "{json}");
    assert_eq!(json["ids"].as_array().map(Vec::len), Some(1000));

    // Still accepting, and nothing else was stored or lost.
    d.accept(&json!({"kind": "good.after", "user": "kept@example.com"})).await;
    let (status, all, _) = d.get(Some(KEY_RW), "/api/v1/events?limit=1000&kind=good.*").await;
    assert_eq!(status, 200);
    let kinds: Vec<&str> = all["events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["good.after", "good.before", "good.before", "good.before"]);
    let (_, sized, _) = d.get(Some(KEY_RW), "/api/v1/events?kind=size.edge").await;
    assert_eq!(sized["events"].as_array().unwrap().len(), 1);
    let (_, lost, _) = d.get(Some(KEY_RW), "/api/v1/events?user=lost@example.com").await;
    assert_eq!(lost["events"].as_array().unwrap().len(), 0, "the refused batch stored nothing: {lost}");
    let (_, edge, _) = d.get(Some(KEY_RW), "/api/v1/events?limit=1000&user=e@x.io").await;
    assert_eq!(edge["events"].as_array().unwrap().len(), 1000, "the whole batch was stored");
    assert!(edge["next_cursor"].is_null(), "a full last page has no next page: {}", edge["next_cursor"]);
    let metrics = d.metrics().await;
    assert_eq!(metric_value(&metrics, "tocsin_events_accepted_total"), Some(1006.0), "{metrics}");
    assert_eq!(metric_value(&metrics, "tocsin_events_rejected_total{reason=\"invalid_json\"}"), Some(1.0), "{metrics}");
    // At least: a retried 413 (see `expect_413`) counts once per try.
    let too_large = metric_value(&metrics, "tocsin_events_rejected_total{reason=\"too_large\"}").unwrap_or(0.0);
    assert!(too_large >= 3.0, "{metrics}");
    let invalid = metric_value(&metrics, "tocsin_events_rejected_total{reason=\"invalid_event\"}").unwrap_or(0.0);
    assert!(invalid >= (cases.len() - 1) as f64, "{metrics}");

    // A compressed body is named for what it is, not called bad JSON.
    let r = d
        .http
        .post(d.url("/api/v1/events"))
        .bearer_auth(KEY_RW)
        .header("content-encoding", "gzip")
        .body(vec![0x1f, 0x8b, 0x08, 0x00])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 415);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unsupported_encoding", "{body}");

    // A refused batch counts its events, as the accepted counter does.
    let four = json!({"events": [{"kind": "a"}, {"kind": "a"}, {"kind": "a", "severity": "loud"}, {"kind": "a"}]});
    let (status, _, text) = d.post_raw(Some(KEY_RW), four.to_string()).await;
    assert_eq!(status, 400, "{text}");
    let after = metric_value(&d.metrics().await, "tocsin_events_rejected_total{reason=\"invalid_event\"}").unwrap();
    assert_eq!(after - invalid, 4.0);
}

/// POSTs `body` with `Transfer-Encoding: chunked` (no declared length) over a raw socket.
async fn chunked_post(d: &Daemon, body: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", d.port)).await.expect("connect");
    let head = format!(
        "POST /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {KEY_RW}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("write head");
    for chunk in body.as_bytes().chunks(8192) {
        // The server may answer and close before reading everything.
        if stream.write_all(format!("{:x}\r\n", chunk.len()).as_bytes()).await.is_err()
            || stream.write_all(chunk).await.is_err()
            || stream.write_all(b"\r\n").await.is_err()
        {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    answer.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no status in {answer:?}"))
}

/// The server answers 413 from the declared length without reading the body and closes the
/// connection, so the client, still writing, may see a reset instead of the answer (hyper does
/// no lingering close). A refused body must never be accepted; the 413 must be seen.
async fn expect_413(d: &Daemon, body: &str) {
    // A client of its own without pooling: the server closes the connection after a 413 (see
    // `a_413_closes_the_connection_and_says_so`), which must not break this test's next request.
    let http = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    for _ in 0..5 {
        let sent = http
            .post(d.url("/api/v1/events"))
            .bearer_auth(KEY_RW)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await;
        match sent {
            Ok(r) => {
                let status = r.status().as_u16();
                let text = r.text().await.unwrap_or_default();
                let json: Value = serde_json::from_str(&text).unwrap_or_default();
                assert_eq!((status, json["error"]["code"].as_str()), (413, Some("body_too_large")), "{text}");
                return;
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
        }
    }
    panic!("never saw the 413: the connection was reset every time");
}

// Regression test (found by the issue-2 suite, fixed since): a 413 says `Connection: close`,
// so a keep-alive client does not lose its next request on the connection the server closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_413_closes_the_connection_and_says_so() {
    let mut opts = Options::new("");
    opts.server_extra = "max_body_bytes = 4096".into();
    let d = Daemon::start(opts).await;
    let http = reqwest::Client::builder().pool_max_idle_per_host(1).build().unwrap();
    let big = json!({"kind": "a", "text": "x".repeat(20_000)}).to_string();
    let mut failures = Vec::new();
    let mut without_close = 0;
    for i in 0..20 {
        if let Ok(r) = http.post(d.url("/api/v1/events")).bearer_auth(KEY_RW).body(big.clone()).send().await {
            assert_eq!(r.status().as_u16(), 413);
            let close = r.headers().get("connection").and_then(|v| v.to_str().ok()).map(str::to_ascii_lowercase);
            if close.as_deref() != Some("close") {
                without_close += 1;
            }
            let _ = r.text().await;
        }
        let sent =
            http.post(d.url("/api/v1/events")).bearer_auth(KEY_RW).json(&json!({"kind": "after.413"})).send().await;
        match sent {
            Ok(r) => assert_eq!(r.status().as_u16(), 202, "round {i}"),
            Err(e) => failures.push(format!("round {i}: {e:?}")),
        }
    }
    assert!(failures.is_empty(), "valid requests after a 413 failed: {failures:#?}");
    assert_eq!(without_close, 0, "413 answers without `Connection: close`");
}
