//! 401 for no or unknown key, 403 for a key without the scope.

use serde_json::json;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_and_unauthorized_requests_are_refused() {
    let d = Daemon::start(Options::new("")).await;
    let event = json!({"kind": "auth.test"}).to_string();

    let (status, body, _) = d.post_raw(None, event.clone()).await;
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("unauthorized")), "{body}");
    let (status, body, _) = d.post_raw(Some("it-key-nobody-has-this"), event.clone()).await;
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("unauthorized")), "{body}");
    let (status, body, _) = d.get(None, "/api/v1/events").await;
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("unauthorized")), "{body}");
    let r = d.http.get(d.url("/api/v1/events")).send().await.unwrap();
    assert_eq!(r.headers().get("www-authenticate").and_then(|v| v.to_str().ok()), Some("Bearer realm=\"tocsin\""));
    let (status, body, _) = d.get(Some("it-key-nobody-has-this"), "/api/v1/events").await;
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("unauthorized")), "{body}");

    // events:read only cannot post.
    let (status, body, _) = d.post_raw(Some(KEY_R), event.clone()).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("forbidden")), "{body}");
    // events:write only cannot search, nor list dead letters.
    let (status, body, _) = d.get(Some(KEY_W), "/api/v1/events").await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("forbidden")), "{body}");
    let (status, body, _) = d.get(Some(KEY_W), "/api/v1/deliveries/dead").await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("forbidden")), "{body}");

    // Nothing was stored by the refused requests; the right keys work.
    let (status, body, _) = d.post_raw(Some(KEY_W), event).await;
    assert_eq!(status, 202, "{body}");
    let (status, body, _) = d.get(Some(KEY_R), "/api/v1/events").await;
    assert_eq!(status, 200);
    assert_eq!(body["events"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!(body["events"][0]["source"], "writer");
}

// Regression test (found by the issue-2 suite, fixed since): a wrong method on a known path
// is answered 405 in the contract's `{"error": {"code", "message"}}` shape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_keep_the_error_shape_for_unknown_paths_and_methods() {
    let d = Daemon::start(Options::new("")).await;
    let (status, body, text) = d.get(Some(KEY_RW), "/api/v1/nope").await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")), "{text}");
    let (status, body, text) = d.get(None, "/").await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")), "{text}");

    for (method, path) in [
        (reqwest::Method::PUT, "/api/v1/events"),
        (reqwest::Method::DELETE, "/api/v1/events"),
        (reqwest::Method::POST, "/metrics"),
    ] {
        let r = d.http.request(method.clone(), d.url(path)).bearer_auth(KEY_RW).body("{}").send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        let body: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        assert_eq!(status, 405, "{method} {path}: {text}");
        assert!(
            body["error"]["code"].is_string() && body["error"]["message"].is_string(),
            "{method} {path}: 405 body is not the error shape: {text:?}"
        );
    }
}
