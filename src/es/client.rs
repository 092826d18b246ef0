//! The HTTP client for one cluster.

use std::time::Duration;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::de::DeserializeOwned;

use super::sigv4::{Signer, SigningError};
use super::types::{
    CatAliasRow, CatIndexRow, ErrorBody, ErrorDetail, HealthResponse, ResolveResponse, RootResponse, ServerInfo,
    StatsResponse,
};
use super::{AuthConfig, ClusterConfig};

/// Keep request lines under Elasticsearch's 4 KB `http.max_initial_line_length`.
const MAX_PATH: usize = 3000;

/// Characters sent raw in index expressions; everything else is percent-encoded, so the
/// bytes sent are the bytes signed.
const NAME_SET: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'*');
const QUERY_SET: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// Why a request failed. Messages never contain credentials.
#[derive(Debug, thiserror::Error)]
pub enum EsError {
    #[error("invalid cluster configuration: {0}")]
    Config(String),
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("HTTP {status}{}", describe(.kind, .reason))]
    Status { status: u16, kind: Option<String>, reason: Option<String> },
    #[error("unexpected response body: {0}")]
    Decode(String),
    #[error(transparent)]
    Signing(#[from] SigningError),
}

fn describe(kind: &Option<String>, reason: &Option<String>) -> String {
    match (kind, reason) {
        (Some(k), Some(r)) => format!(" {k}: {r}"),
        (Some(k), None) => format!(" {k}"),
        (None, Some(r)) => format!(": {r}"),
        (None, None) => String::new(),
    }
}

impl EsError {
    pub fn is_index_not_found(&self) -> bool {
        matches!(self, EsError::Status { status: 404, kind: Some(k), .. } if k == "index_not_found_exception")
    }

    /// A route this version does not have (old Elasticsearch without `_resolve/index`).
    pub fn is_unsupported_route(&self) -> bool {
        match self {
            EsError::Status { status: 400 | 404 | 405, kind: None, reason: Some(r) } => {
                r.contains("no handler found") || r.contains("Incorrect HTTP method")
            }
            EsError::Status { status: 400, kind: Some(k), .. } => k == "illegal_argument_exception",
            _ => false,
        }
    }
}

pub struct Client {
    base: String,
    host: String,
    http: reqwest::Client,
    timeout: Duration,
    authorization: Option<String>,
    signer: Option<Signer>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("base", &self.base).finish()
    }
}

impl Client {
    pub fn new(config: &ClusterConfig) -> Result<Client, EsError> {
        Self::with_signer(config, None)
    }

    /// Like [`Client::new`], with a given signer for `aws_sigv4` clusters (tests, benchmarks).
    pub fn with_signer(config: &ClusterConfig, signer: Option<Signer>) -> Result<Client, EsError> {
        let url = url::Url::parse(&config.url).map_err(|e| EsError::Config(format!("url: {e}")))?;
        let host = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            (None, _) => return Err(EsError::Config("url has no host".into())),
        };
        let timeout = config.timeout.get();
        let connect = config.connect_timeout.map(|d| d.get()).unwrap_or_else(|| timeout.min(Duration::from_secs(5)));
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(connect)
            .user_agent(concat!("tocsin/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &config.ca_bundle {
            let pem = std::fs::read(path).map_err(|e| EsError::Config(format!("ca_bundle {}: {e}", path.display())))?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| EsError::Config(format!("ca_bundle {}: {e}", path.display())))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        if config.tls_insecure {
            builder = builder.danger_accept_invalid_certs(true);
        }
        let http = builder.build().map_err(|e| EsError::Config(e.to_string()))?;
        let (authorization, signer) = match &config.auth {
            AuthConfig::None => (None, None),
            AuthConfig::Basic { username, password } => {
                use base64::Engine as _;
                let raw = format!("{username}:{}", password.expose());
                (Some(format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(raw))), None)
            }
            AuthConfig::ApiKey { key } => (Some(format!("ApiKey {}", key.expose())), None),
            AuthConfig::AwsSigv4 { region, service, profile } => {
                let s = signer.unwrap_or_else(|| Signer::new(region.clone(), service.clone(), profile.clone()));
                (None, Some(s))
            }
        };
        Ok(Client { base: config.url.trim_end_matches('/').to_string(), host, http, timeout, authorization, signer })
    }

    /// `GET path_and_query`, decoded as `T`; non-2xx answers become [`EsError::Status`].
    pub async fn get<T: DeserializeOwned>(&self, path_and_query: &str) -> Result<T, EsError> {
        let mut request =
            self.http.get(format!("{}{}", self.base, path_and_query)).header("accept", "application/json");
        if let Some(auth) = &self.authorization {
            request = request.header("authorization", auth);
        }
        if let Some(signer) = &self.signer {
            for (name, value) in signer.sign("GET", &self.host, path_and_query, b"").await? {
                request = request.header(name, value);
            }
        }
        let response = request.send().await.map_err(|e| self.transport_error(e))?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| self.transport_error(e))?;
        if !status.is_success() {
            return Err(status_error(status.as_u16(), &body));
        }
        serde_json::from_slice(&body).map_err(|e| EsError::Decode(e.to_string()))
    }

    fn transport_error(&self, e: reqwest::Error) -> EsError {
        if e.is_timeout() {
            EsError::Timeout(self.timeout)
        } else {
            // Without the URL: it may carry user info.
            let mut causes = Vec::new();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                causes.push(s.to_string());
                src = s.source();
            }
            let mut msg = e.without_url().to_string();
            for c in causes {
                msg.push_str(": ");
                msg.push_str(&c);
            }
            EsError::Connect(msg)
        }
    }

    pub async fn info(&self) -> Result<ServerInfo, EsError> {
        let root: RootResponse = self.get("/").await?;
        Ok(ServerInfo::from_root(root))
    }

    /// `_resolve/index` for the given names and patterns, batched to keep request lines
    /// short; names that do not exist are simply absent from the answer.
    pub async fn resolve(&self, expressions: &[String]) -> Result<ResolveResponse, EsError> {
        let mut out = ResolveResponse::default();
        for batch in batches(expressions) {
            let path = format!("/_resolve/index/{batch}?expand_wildcards=all&ignore_unavailable=true");
            let part: ResolveResponse = match self.get(&path).await {
                Ok(r) => r,
                // Some versions answer 404 when every name of a batch is absent.
                Err(e) if e.is_index_not_found() => ResolveResponse::default(),
                Err(e) => return Err(e),
            };
            out.indices.extend(part.indices);
            out.aliases.extend(part.aliases);
            out.data_streams.extend(part.data_streams);
        }
        Ok(out)
    }

    /// Every index with status and health (the fallback for clusters without `_resolve`).
    pub async fn cat_indices(&self) -> Result<Vec<CatIndexRow>, EsError> {
        self.get(
            "/_cat/indices?format=json&bytes=b&h=index,health,status,pri.store.size,docs.count&expand_wildcards=all",
        )
        .await
    }

    pub async fn cat_aliases(&self) -> Result<Vec<CatAliasRow>, EsError> {
        self.get("/_cat/aliases?format=json&h=alias").await
    }

    /// Primary store bytes and document counts for every open index matching `targets`.
    pub async fn stats(&self, targets: &[String]) -> Result<StatsResponse, EsError> {
        let mut out = StatsResponse::default();
        let filter = encode_query("indices.*.primaries.store.size_in_bytes,indices.*.primaries.docs.count");
        for batch in batches(targets) {
            let path = format!(
                "/{batch}/_stats/store,docs?level=indices&expand_wildcards=open&ignore_unavailable=true&allow_no_indices=true&filter_path={filter}"
            );
            let part: StatsResponse = match self.get(&path).await {
                Ok(r) => r,
                Err(e) if e.is_index_not_found() => StatsResponse::default(),
                Err(e) => return Err(e),
            };
            out.indices.extend(part.indices);
        }
        Ok(out)
    }

    /// Cluster status only (`green`, `yellow`, `red`).
    pub async fn cluster_status(&self) -> Result<String, EsError> {
        let h: HealthResponse = self.get("/_cluster/health?filter_path=status").await?;
        Ok(h.status)
    }

    /// Cluster status and the status of every index.
    pub async fn health(&self) -> Result<HealthResponse, EsError> {
        let filter = encode_query("status,indices.*.status");
        self.get(&format!("/_cluster/health?level=indices&filter_path={filter}")).await
    }
}

fn status_error(status: u16, body: &[u8]) -> EsError {
    let parsed: Option<ErrorBody> = serde_json::from_slice(body).ok();
    let (kind, reason) = match parsed.map(|b| b.error) {
        Some(ErrorDetail::Structured { kind, reason }) => (Some(kind), reason),
        Some(ErrorDetail::Text(t)) => (None, Some(t)),
        None => {
            // AWS answers `{"message": …}` or `{"Message": …}`; keep it short.
            let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
            let m = v.get("message").or_else(|| v.get("Message")).and_then(|m| m.as_str()).map(|m| {
                let cut: String = m.chars().take(200).collect();
                cut
            });
            (None, m)
        }
    };
    EsError::Status { status, kind, reason }
}

pub fn encode_name(name: &str) -> String {
    utf8_percent_encode(name, NAME_SET).to_string()
}

fn encode_query(value: &str) -> String {
    utf8_percent_encode(value, QUERY_SET).to_string()
}

/// Comma-joined, encoded expressions, each joined string at most `MAX_PATH` long.
fn batches(expressions: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for e in expressions {
        let enc = encode_name(e);
        if !current.is_empty() && current.len() + enc.len() + 1 > MAX_PATH {
            out.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push(',');
        }
        current.push_str(&enc);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_stay_short_and_encode() {
        let names: Vec<String> = (0..1000).map(|i| format!("index-{i:05}")).collect();
        let b = batches(&names);
        assert!(b.len() > 1 && b.iter().all(|s| s.len() <= MAX_PATH));
        assert_eq!(batches(&["logs-*".into(), "a b".into()]), ["logs-*,a%20b"]);
    }

    #[test]
    fn errors_are_classified() {
        let e = status_error(404, br#"{"error":{"root_cause":[],"type":"index_not_found_exception","reason":"no such index [x]"},"status":404}"#);
        assert!(e.is_index_not_found());
        let e = status_error(
            400,
            br#"{"error":"no handler found for uri [/_resolve/index/x] and method [GET]","status":400}"#,
        );
        assert!(e.is_unsupported_route());
        let e = status_error(403, br#"{"message":"The request signature we calculated does not match"}"#);
        assert!(e.to_string().contains("signature"));
    }
}
