//! A fake Elasticsearch / OpenSearch cluster on loopback, answering like the real ones for
//! the few read-only APIs tocsin uses: `GET /`, `_cluster/health`, `_resolve/index`,
//! `_stats`, `_cat/indices` and `_cat/aliases` (JSON, every value a string), with the real
//! error bodies (404 `index_not_found_exception`, 401 `security_exception`, 503) and AWS
//! SigV4 verification (403 with AWS's own message when the signature does not match).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Map, Value};
use tokio_util::sync::CancellationToken;

use crate::check::names::wildcard_match;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// Elasticsearch 7.4: before `_resolve/index` (answers 400 "no handler found").
    Es7Legacy,
    Es7,
    Es8,
    OpenSearch1,
    OpenSearch2,
}

impl Flavor {
    fn is_opensearch(self) -> bool {
        matches!(self, Flavor::OpenSearch1 | Flavor::OpenSearch2)
    }
}

#[derive(Debug, Clone)]
pub struct FakeIndex {
    pub closed: bool,
    pub hidden: bool,
    pub red: bool,
    pub bytes: u64,
    pub docs: u64,
}

#[derive(Debug, Clone)]
pub enum FakeAuth {
    None,
    Basic {
        username: String,
        password: String,
    },
    /// `Authorization: ApiKey <encoded>`, as Elasticsearch's API keys are sent.
    ApiKey {
        encoded: String,
    },
    Sigv4 {
        access_key: String,
        secret_key: String,
        session_token: Option<String>,
        region: String,
        service: String,
    },
}

#[derive(Debug)]
struct Inner {
    flavor: Flavor,
    indices: BTreeMap<String, FakeIndex>,
    aliases: BTreeMap<String, BTreeSet<String>>,
    data_streams: BTreeSet<String>,
    auth: FakeAuth,
    down: bool,
    delay: Duration,
    requests: Vec<String>,
}

/// A running fake; stops when dropped.
pub struct FakeEs {
    pub addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    stop: CancellationToken,
}

impl Drop for FakeEs {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl FakeEs {
    pub async fn start(flavor: Flavor) -> FakeEs {
        let inner = Arc::new(Mutex::new(Inner {
            flavor,
            indices: BTreeMap::new(),
            aliases: BTreeMap::new(),
            data_streams: BTreeSet::new(),
            auth: FakeAuth::None,
            down: false,
            delay: Duration::ZERO,
            requests: Vec::new(),
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let app = Router::new().fallback(handle).with_state(inner.clone());
        let stop = CancellationToken::new();
        let s = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).with_graceful_shutdown(async move { s.cancelled().await }).await;
        });
        FakeEs { addr, inner, stop }
    }

    /// Starts on its own thread and runtime, for synchronous tests driving the binary.
    pub fn start_blocking(flavor: Flavor) -> FakeEs {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async move {
                let fake = FakeEs::start(flavor).await;
                let stop = fake.stop.clone();
                tx.send(fake).expect("send");
                stop.cancelled().await;
            });
        });
        rx.recv().expect("fake started")
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        f(&mut self.inner.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn add_index(&self, name: &str, bytes: u64, docs: u64) {
        self.with(|i| {
            i.indices.insert(
                name.into(),
                FakeIndex { closed: false, hidden: name.starts_with('.'), red: false, bytes, docs },
            )
        });
    }

    pub fn set_size(&self, name: &str, bytes: u64, docs: u64) {
        self.with(|i| {
            if let Some(ix) = i.indices.get_mut(name) {
                ix.bytes = bytes;
                ix.docs = docs;
            }
        });
    }

    pub fn remove_index(&self, name: &str) {
        self.with(|i| i.indices.remove(name));
    }

    pub fn close_index(&self, name: &str) {
        self.with(|i| i.indices.get_mut(name).map(|ix| ix.closed = true));
    }

    pub fn set_red(&self, name: &str, red: bool) {
        self.with(|i| i.indices.get_mut(name).map(|ix| ix.red = red));
    }

    pub fn add_alias(&self, alias: &str, index: &str) {
        self.with(|i| i.aliases.entry(alias.into()).or_default().insert(index.into()));
    }

    pub fn add_data_stream(&self, name: &str) {
        self.with(|i| {
            i.data_streams.insert(name.into());
            let backing = format!(".ds-{name}-2026.01.01-000001");
            i.indices.insert(backing, FakeIndex { closed: false, hidden: true, red: false, bytes: 1, docs: 1 });
        });
    }

    pub fn set_auth(&self, auth: FakeAuth) {
        self.with(|i| i.auth = auth);
    }

    /// Answer every request with 503 (master not discovered).
    pub fn set_down(&self, down: bool) {
        self.with(|i| i.down = down);
    }

    pub fn set_delay(&self, delay: Duration) {
        self.with(|i| i.delay = delay);
    }

    /// Paths (with query) of the requests received so far.
    pub fn requests(&self) -> Vec<String> {
        self.with(|i| i.requests.clone())
    }
}

fn es_error(status: StatusCode, kind: &str, reason: &str, extra: Map<String, Value>) -> Response {
    let mut cause = Map::new();
    cause.insert("type".into(), json!(kind));
    cause.insert("reason".into(), json!(reason));
    cause.extend(extra);
    let body = json!({"error": {"root_cause": [Value::Object(cause.clone())], "type": kind, "reason": reason, "header": cause.get("header").cloned().unwrap_or(Value::Null)}, "status": status.as_u16()});
    let mut body = body;
    if body["error"]["header"].is_null() {
        body["error"].as_object_mut().map(|o| o.remove("header"));
    }
    (status, [("content-type", "application/json; charset=UTF-8")], body.to_string()).into_response()
}

fn json_ok(flavor: Flavor, v: Value) -> Response {
    let mut r = (StatusCode::OK, [("content-type", "application/json; charset=UTF-8")], v.to_string()).into_response();
    if !flavor.is_opensearch() {
        r.headers_mut().insert("x-elastic-product", "Elasticsearch".parse().expect("header"));
    }
    r
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

async fn handle(
    State(inner): State<Arc<Mutex<Inner>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path_and_query = uri.path_and_query().map(|p| p.as_str().to_string()).unwrap_or_else(|| "/".into());
    let delay = {
        let mut g = inner.lock().unwrap_or_else(|e| e.into_inner());
        g.requests.push(path_and_query.clone());
        g.delay
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let g = inner.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(denied) = check_auth(&g, &method, &path_and_query, &headers, &body) {
        return denied;
    }
    if g.down {
        let kind = if g.flavor.is_opensearch() {
            "cluster_manager_not_discovered_exception"
        } else {
            "master_not_discovered_exception"
        };
        let body = json!({"error": {"root_cause": [{"type": kind, "reason": null}], "type": kind, "reason": null}, "status": 503});
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [("content-type", "application/json; charset=UTF-8")],
            body.to_string(),
        )
            .into_response();
    }
    let query: BTreeMap<String, String> = uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect();
    let segments: Vec<String> = uri.path().trim_matches('/').split('/').filter(|s| !s.is_empty()).map(decode).collect();
    let seg: Vec<&str> = segments.iter().map(String::as_str).collect();
    if method != Method::GET && method != Method::HEAD {
        let body = json!({"error": format!("Incorrect HTTP method for uri [{}] and method [{}], allowed: [GET]", uri, method), "status": 405});
        return (StatusCode::METHOD_NOT_ALLOWED, body.to_string()).into_response();
    }
    match seg.as_slice() {
        [] => root(g.flavor),
        ["_cluster", "health"] => health(&g, query.get("level").map(String::as_str) == Some("indices")),
        ["_resolve", "index", exprs] if g.flavor != Flavor::Es7Legacy => resolve(&g, exprs),
        ["_cat", "indices"] => cat_indices(&g, &query),
        ["_cat", "aliases"] => {
            let rows: Vec<Value> = g
                .aliases
                .iter()
                .flat_map(|(a, ixs)| ixs.iter().map(move |i| json!({"alias": a, "index": i, "filter": "-", "routing.index": "-", "routing.search": "-", "is_write_index": "-"})))
                .collect();
            json_ok(g.flavor, Value::Array(rows))
        }
        [targets, "_stats", ..] => stats(&g, targets, &query),
        ["_stats", ..] => stats(&g, "_all", &query),
        _ => {
            let body =
                json!({"error": format!("no handler found for uri [{}] and method [{}]", uri, method), "status": 400});
            (StatusCode::BAD_REQUEST, [("content-type", "application/json; charset=UTF-8")], body.to_string())
                .into_response()
        }
    }
}

fn check_auth(g: &Inner, method: &Method, path_and_query: &str, headers: &HeaderMap, body: &[u8]) -> Option<Response> {
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
    match &g.auth {
        FakeAuth::None => None,
        FakeAuth::Basic { username, password } => {
            use base64::Engine as _;
            let expected =
                format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}")));
            if header("authorization").as_deref() == Some(expected.as_str()) {
                return None;
            }
            let challenge = match g.flavor {
                Flavor::Es7 | Flavor::Es7Legacy => {
                    json!("Basic realm=\"security\" charset=\"UTF-8\"")
                }
                _ => json!(["Basic realm=\"security\", charset=\"UTF-8\"", "Bearer realm=\"security\"", "ApiKey"]),
            };
            if g.flavor.is_opensearch() {
                return Some(
                    (StatusCode::UNAUTHORIZED, [("www-authenticate", "Basic realm=\"OpenSearch Security\"")], "")
                        .into_response(),
                );
            }
            let reason = match header("authorization") {
                None => format!("missing authentication credentials for REST request [{path_and_query}]"),
                Some(_) => format!("unable to authenticate user [{username}] for REST request [{path_and_query}]"),
            };
            let mut extra = Map::new();
            extra.insert("header".into(), json!({"WWW-Authenticate": challenge}));
            let mut r = es_error(StatusCode::UNAUTHORIZED, "security_exception", &reason, extra);
            r.headers_mut()
                .insert("www-authenticate", "Basic realm=\"security\", charset=\"UTF-8\"".parse().expect("header"));
            Some(r)
        }
        FakeAuth::ApiKey { encoded } => {
            if header("authorization").as_deref() == Some(format!("ApiKey {encoded}").as_str()) {
                return None;
            }
            let reason = match header("authorization") {
                None => format!("missing authentication credentials for REST request [{path_and_query}]"),
                Some(_) => "unable to authenticate with provided credentials and anonymous access is not allowed for this request".to_string(),
            };
            let mut extra = Map::new();
            extra.insert(
                "header".into(),
                json!({"WWW-Authenticate": ["Basic realm=\"security\", charset=\"UTF-8\"", "ApiKey"]}),
            );
            Some(es_error(StatusCode::UNAUTHORIZED, "security_exception", &reason, extra))
        }
        FakeAuth::Sigv4 { access_key, secret_key, session_token, region, service } => {
            let deny = |msg: &str, capital: bool| {
                let key = if capital { "Message" } else { "message" };
                Some(
                    (StatusCode::FORBIDDEN, [("content-type", "application/json")], json!({ key: msg }).to_string())
                        .into_response(),
                )
            };
            let Some(auth) = header("authorization") else {
                return deny(&format!("User: anonymous is not authorized to perform: es:ESHttp{} because no resource-based policy allows the es:ESHttp{} action", title_case(method.as_str()), title_case(method.as_str())), true);
            };
            if header("x-amz-security-token") != *session_token {
                return deny("The security token included in the request is invalid.", false);
            }
            let Some(date) = header("x-amz-date") else {
                return deny(
                    "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
                    false,
                );
            };
            let Ok(t) = chrono::NaiveDateTime::parse_from_str(&date, "%Y%m%dT%H%M%SZ") else {
                return deny("Invalid X-Amz-Date", false);
            };
            let time = SystemTime::UNIX_EPOCH + Duration::from_secs(t.and_utc().timestamp().max(0) as u64);
            if !auth.contains(&format!("Credential={access_key}/")) {
                return deny("The security token included in the request is invalid.", false);
            }
            let creds =
                aws_credential_types::Credentials::new(access_key, secret_key, session_token.clone(), None, "fake");
            let host = header("host").unwrap_or_default();
            let expected = crate::es::sigv4::sign_headers(
                method.as_str(),
                &host,
                path_and_query,
                body,
                &creds,
                region,
                service,
                time,
            )
            .ok()?;
            let want = expected.iter().find(|(n, _)| n == "authorization").map(|(_, v)| v.clone()).unwrap_or_default();
            if want != auth {
                return deny("The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.", false);
            }
            None
        }
    }
}

fn title_case(m: &str) -> String {
    let lower = m.to_ascii_lowercase();
    let mut c = lower.chars();
    c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
}

fn root(flavor: Flavor) -> Response {
    let v = match flavor {
        Flavor::Es7Legacy => {
            json!({"name": "node-1", "cluster_name": "fake", "cluster_uuid": "5QaxoN0pRZuOmWSxstBBwQ",
            "version": {"number": "7.4.2", "build_flavor": "default", "build_type": "docker", "lucene_version": "8.2.0",
                "minimum_wire_compatibility_version": "6.8.0", "minimum_index_compatibility_version": "6.0.0-beta1"},
            "tagline": "You Know, for Search"})
        }
        Flavor::Es7 => {
            json!({"name": "node-1", "cluster_name": "fake", "cluster_uuid": "5QaxoN0pRZuOmWSxstBBwQ",
            "version": {"number": "7.17.18", "build_flavor": "default", "build_type": "docker", "lucene_version": "8.11.3",
                "minimum_wire_compatibility_version": "6.8.0", "minimum_index_compatibility_version": "6.0.0-beta1"},
            "tagline": "You Know, for Search"})
        }
        Flavor::Es8 => {
            json!({"name": "instance-0000000000", "cluster_name": "fake", "cluster_uuid": "5QaxoN0pRZuOmWSxstBBwQ",
            "version": {"number": "8.12.1", "build_flavor": "default", "build_type": "docker", "lucene_version": "9.9.2",
                "minimum_wire_compatibility_version": "7.17.0", "minimum_index_compatibility_version": "7.0.0"},
            "tagline": "You Know, for Search"})
        }
        Flavor::OpenSearch1 => {
            json!({"name": "opensearch-node1", "cluster_name": "fake", "cluster_uuid": "5QaxoN0pRZuOmWSxstBBwQ",
            "version": {"distribution": "opensearch", "number": "1.3.14", "build_type": "tar", "lucene_version": "8.10.1",
                "minimum_wire_compatibility_version": "6.8.0", "minimum_index_compatibility_version": "6.0.0-beta1"},
            "tagline": "The OpenSearch Project: https://opensearch.org/"})
        }
        Flavor::OpenSearch2 => {
            json!({"name": "opensearch-node1", "cluster_name": "fake", "cluster_uuid": "5QaxoN0pRZuOmWSxstBBwQ",
            "version": {"distribution": "opensearch", "number": "2.11.0", "build_type": "tar", "lucene_version": "9.7.0",
                "minimum_wire_compatibility_version": "7.10.0", "minimum_index_compatibility_version": "7.0.0"},
            "tagline": "The OpenSearch Project: https://opensearch.org/"})
        }
    };
    json_ok(flavor, v)
}

fn health(g: &Inner, level_indices: bool) -> Response {
    let mut indices = Map::new();
    let mut status = "green";
    for (name, ix) in &g.indices {
        if ix.closed {
            continue;
        }
        let s = if ix.red { "red" } else { "green" };
        if ix.red {
            status = "red";
        }
        if level_indices {
            indices.insert(name.clone(), json!({"status": s, "number_of_shards": 1, "number_of_replicas": 0, "active_primary_shards": if ix.red {0} else {1}}));
        }
    }
    let mut body = json!({"cluster_name": "fake", "status": status, "timed_out": false, "number_of_nodes": 1});
    if level_indices {
        body["indices"] = Value::Object(indices);
    }
    json_ok(g.flavor, body)
}

/// Wildcards expand over hidden indices only when the pattern starts with a dot
/// (as with `expand_wildcards=open` without `hidden`).
fn matches(expr: &str, name: &str, hidden: bool, include_hidden: bool) -> bool {
    if expr == "_all" || expr == "*" && !hidden {
        return true;
    }
    if expr.contains('*') {
        return (include_hidden || !hidden || expr.starts_with('.')) && wildcard_match(expr, name);
    }
    expr == name
}

fn resolve(g: &Inner, exprs: &str) -> Response {
    let exprs: Vec<&str> = exprs.split(',').collect();
    // Exact names are looked up; only patterns scan every index.
    let exact: BTreeSet<&str> = exprs.iter().copied().filter(|e| !e.contains('*') && *e != "_all").collect();
    let patterns: Vec<&str> = exprs.iter().copied().filter(|e| e.contains('*') || *e == "_all").collect();
    let mut indices = Vec::new();
    for (name, ix) in &g.indices {
        if exact.contains(name.as_str()) || patterns.iter().any(|e| matches(e, name, ix.hidden, true)) {
            let mut attrs = vec![if ix.closed { "closed" } else { "open" }];
            if ix.hidden {
                attrs.push("hidden");
            }
            let aliases: Vec<&String> = g.aliases.iter().filter(|(_, v)| v.contains(name)).map(|(a, _)| a).collect();
            let mut entry = json!({"name": name, "attributes": attrs});
            if !aliases.is_empty() {
                entry["aliases"] = json!(aliases);
            }
            if let Some(ds) =
                name.strip_prefix(".ds-").and_then(|r| g.data_streams.iter().find(|d| r.starts_with(d.as_str())))
            {
                entry["data_stream"] = json!(ds);
            }
            indices.push(entry);
        }
    }
    let aliases: Vec<Value> = g
        .aliases
        .iter()
        .filter(|(a, _)| exprs.iter().any(|e| matches(e, a, false, true)))
        .map(|(a, ixs)| json!({"name": a, "indices": ixs}))
        .collect();
    let data_streams: Vec<Value> = g
        .data_streams
        .iter()
        .filter(|d| exprs.iter().any(|e| matches(e, d, false, true)))
        .map(|d| json!({"name": d, "backing_indices": [format!(".ds-{d}-2026.01.01-000001")], "timestamp_field": "@timestamp"}))
        .collect();
    json_ok(g.flavor, json!({"indices": indices, "aliases": aliases, "data_streams": data_streams}))
}

fn cat_indices(g: &Inner, query: &BTreeMap<String, String>) -> Response {
    if query.get("format").map(String::as_str) != Some("json") {
        let text: String = g
            .indices
            .iter()
            .map(|(n, ix)| {
                format!(
                    "green  {:<6} {n} x 1 0 {} 0 {}b {}b\n",
                    if ix.closed { "close" } else { "open" },
                    ix.docs,
                    ix.bytes,
                    ix.bytes
                )
            })
            .collect();
        return (StatusCode::OK, text).into_response();
    }
    let rows: Vec<Value> = g
        .indices
        .iter()
        .map(|(name, ix)| {
            if ix.closed {
                json!({"health": null, "status": "close", "index": name, "pri.store.size": null, "docs.count": null})
            } else {
                json!({"health": if ix.red {"red"} else {"green"}, "status": "open", "index": name,
                       "pri.store.size": ix.bytes.to_string(), "docs.count": ix.docs.to_string()})
            }
        })
        .collect();
    json_ok(g.flavor, Value::Array(rows))
}

fn stats(g: &Inner, targets: &str, query: &BTreeMap<String, String>) -> Response {
    let exprs: Vec<&str> = targets.split(',').collect();
    let ignore_unavailable = query.get("ignore_unavailable").map(String::as_str) == Some("true");
    if !ignore_unavailable {
        for e in &exprs {
            if !e.contains('*') && *e != "_all" && !g.indices.contains_key(*e) && !g.aliases.contains_key(*e) {
                let mut extra = Map::new();
                extra.insert("resource.type".into(), json!("index_or_alias"));
                extra.insert("resource.id".into(), json!(e));
                extra.insert("index_uuid".into(), json!("_na_"));
                extra.insert("index".into(), json!(e));
                return es_error(
                    StatusCode::NOT_FOUND,
                    "index_not_found_exception",
                    &format!("no such index [{e}]"),
                    extra,
                );
            }
        }
    }
    // Written as text: this answer is 20,000 entries in the benchmark.
    use std::fmt::Write as _;
    let mut out = String::with_capacity(g.indices.len() * 200);
    let (mut total_bytes, mut total_docs, mut n) = (0u64, 0u64, 0usize);
    for (name, ix) in &g.indices {
        if ix.closed {
            continue;
        }
        let via_alias = exprs.iter().any(|e| g.aliases.get(*e).is_some_and(|s| s.contains(name)));
        if !via_alias && !exprs.iter().any(|e| matches(e, name, ix.hidden, false)) {
            continue;
        }
        total_bytes += ix.bytes;
        total_docs += ix.docs;
        let prim = format!(
            r#"{{"docs":{{"count":{},"deleted":0}},"store":{{"size_in_bytes":{},"reserved_in_bytes":0}}}}"#,
            ix.docs, ix.bytes
        );
        let head = if matches!(g.flavor, Flavor::Es7 | Flavor::Es7Legacy) {
            String::new()
        } else {
            format!(r#""health":"{}","status":"open","#, if ix.red { "red" } else { "green" })
        };
        if n > 0 {
            out.push(',');
        }
        let _ =
            write!(out, r#"{}:{{"uuid":"x",{head}"primaries":{prim},"total":{prim}}}"#, Value::String(name.clone()));
        n += 1;
    }
    let all = format!(
        r#"{{"docs":{{"count":{total_docs},"deleted":0}},"store":{{"size_in_bytes":{total_bytes},"reserved_in_bytes":0}}}}"#
    );
    let body = format!(
        r#"{{"_shards":{{"total":{n},"successful":{n},"failed":0}},"_all":{{"primaries":{all},"total":{all}}},"indices":{{{out}}}}}"#
    );
    let mut r = (StatusCode::OK, [("content-type", "application/json; charset=UTF-8")], body).into_response();
    if !g.flavor.is_opensearch() {
        r.headers_mut().insert("x-elastic-product", "Elasticsearch".parse().expect("header"));
    }
    r
}
