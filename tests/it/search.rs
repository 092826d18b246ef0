//! History and search: user, full text, kind glob, time range, cursor pagination.

use std::collections::HashSet;

use serde_json::{json, Value};

use crate::harness::*;

fn titles(body: &Value) -> Vec<String> {
    body["events"].as_array().unwrap().iter().map(|e| e["title"].as_str().unwrap_or("").to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_by_user_text_kind_time_and_pages() {
    let d = Daemon::start(Options::new("")).await;
    let events = [
        (
            "db.disk_full",
            "alice@example.com",
            "Disk full on db-1",
            "the volume /var is at 100 percent",
            "2026-11-01T10:00:00Z",
        ),
        ("db.slow_query", "bob@example.com", "Slow query", "orders scan took 9s", "2026-11-02T10:00:00Z"),
        ("user.registered", "alice@example.com", "Signup", "alice joined the pro plan", "2026-11-03T10:00:00Z"),
        (
            "app.disk_warning",
            "carol@example.com",
            "Disk almost full",
            "web-3 disk at 91 percent",
            "2026-11-04T10:00:00Z",
        ),
        ("user.deleted", "bob@example.com", "Account deleted", "bob left", "2026-11-05T10:00:00Z"),
    ];
    let batch: Vec<Value> = events
        .iter()
        .map(|(kind, user, title, text, ts)| json!({"kind": kind, "user": user, "title": title, "text": text, "timestamp": ts}))
        .collect();
    let (status, body) = d.post(KEY_W, &json!({ "events": batch })).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["accepted"], 5);

    let search = |q: &str| {
        let d = &d;
        let q = q.to_string();
        async move {
            let (status, body, text) = d.get(Some(KEY_R), &format!("/api/v1/events?{q}")).await;
            assert_eq!(status, 200, "{q}: {text}");
            body
        }
    };

    assert_eq!(titles(&search("user=alice@example.com").await), ["Signup", "Disk full on db-1"]);
    assert_eq!(titles(&search("user=bob@example.com").await), ["Account deleted", "Slow query"]);
    assert_eq!(titles(&search("q=disk").await), ["Disk almost full", "Disk full on db-1"]);
    assert_eq!(titles(&search("q=pro%20plan").await), ["Signup"]);
    assert_eq!(titles(&search("kind=db.*").await), ["Slow query", "Disk full on db-1"]);
    assert_eq!(titles(&search("kind=user.registered").await), ["Signup"]);
    assert_eq!(
        titles(&search("since=2026-11-02T00:00:00Z&until=2026-11-04T10:00:00Z").await),
        ["Signup", "Slow query"]
    );
    assert_eq!(titles(&search("user=alice@example.com&q=disk").await), ["Disk full on db-1"]);
    assert_eq!(titles(&search("user=nobody@example.com").await), Vec::<String>::new());

    // Pages of 2, newest first, no overlap, the last page says there is no more.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for page in 0..3 {
        let q = match &cursor {
            Some(c) => format!("limit=2&cursor={}", enc(c)),
            None => "limit=2".to_string(),
        };
        let body = search(&q).await;
        let got = titles(&body);
        assert_eq!(got.len(), if page < 2 { 2 } else { 1 }, "page {page}: {body}");
        seen.extend(got);
        cursor = body["next_cursor"].as_str().map(str::to_string);
        if page < 2 {
            assert!(cursor.is_some(), "page {page} has a next cursor: {body}");
        } else {
            assert!(body["next_cursor"].is_null(), "last page: {body}");
        }
    }
    assert_eq!(seen, ["Account deleted", "Disk almost full", "Signup", "Slow query", "Disk full on db-1"]);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 5);

    // A cursor keeps its filter's meaning across pages.
    let first = search("kind=*.*&q=disk&limit=1").await;
    assert_eq!(titles(&first), ["Disk almost full"]);
    let c = enc(first["next_cursor"].as_str().expect("more"));
    assert_eq!(titles(&search(&format!("kind=*.*&q=disk&limit=1&cursor={c}")).await), ["Disk full on db-1"]);

    // Odd full-text queries are words, not FTS syntax: no error.
    for q in ["%22unbalanced", "title:disk", "NEAR(disk", "*", "-disk", "disk%20OR", "%28%29%5E"] {
        search(&format!("q={q}")).await;
    }
    assert_eq!(titles(&search("q=title:disk").await), Vec::<String>::new());

    // Events with the same timestamp (one batch, no timestamps) page without loss or repeat.
    let same: Vec<Value> = (0..7).map(|i| json!({"kind": "tie.event", "title": format!("tie {i}")})).collect();
    let (status, _) = d.post(KEY_W, &json!({ "events": same })).await;
    assert_eq!(status, 202);
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = match &cursor {
            Some(c) => format!("kind=tie.*&limit=3&cursor={}", enc(c)),
            None => "kind=tie.*&limit=3".to_string(),
        };
        let body = search(&q).await;
        seen.extend(titles(&body));
        match body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
        assert!(seen.len() <= 7, "{seen:?}");
    }
    assert_eq!(seen, (0..7).rev().map(|i| format!("tie {i}")).collect::<Vec<_>>());
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_query_parameter_is_named_not_ignored() {
    let d = Daemon::start(Options::new("")).await;
    let cases = [
        ("/api/v1/events?users=alice@example.com", "users"),
        ("/api/v1/events?severity=critical", "severity"),
        ("/api/v1/events?kind=A[", "kind"),
        ("/api/v1/events?user=a&user=b", "user"),
        ("/api/v1/deliveries/dead?limit=abc", "limit"),
        ("/api/v1/deliveries/dead?limit=5000", "limit"),
        ("/api/v1/deliveries/dead?cursor=-5", "cursor"),
        ("/api/v1/alerts?limt=5", "limt"),
        ("/api/v1/events?q=same%00ts", "q"),
    ];
    for (path, field) in cases {
        let (status, body, text) = d.get(Some(KEY_R), path).await;
        assert_eq!(status, 400, "{path}: {text}");
        assert_eq!(body["error"]["field"], field, "{path}: {text}");
        assert!(["invalid_parameter", "invalid_cursor"].contains(&body["error"]["code"].as_str().unwrap()), "{text}");
    }
    let (status, _, text) = d.get(Some(KEY_R), "/api/v1/deliveries/dead?limit=10&cursor=").await;
    assert_eq!(status, 200, "{text}");
}
