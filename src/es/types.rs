//! Typed response bodies. Only the fields the checks read; unknown fields are ignored so
//! newer versions keep working.

use std::collections::HashMap;

use serde::Deserialize;

/// Which product answers, from `GET /`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Elasticsearch,
    OpenSearch,
}

impl Engine {
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Elasticsearch => "elasticsearch",
            Engine::OpenSearch => "opensearch",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct RootResponse {
    #[serde(default)]
    pub cluster_name: String,
    pub version: RootVersion,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RootVersion {
    pub number: String,
    #[serde(default)]
    pub distribution: Option<String>,
}

/// Engine and version of one cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    pub engine: Engine,
    pub version: String,
    pub major: u32,
    pub minor: u32,
    pub cluster_name: String,
}

impl ServerInfo {
    pub fn from_root(root: RootResponse) -> ServerInfo {
        // OpenSearch puts `distribution: "opensearch"` in `version`; Elasticsearch has none.
        let engine = match root.version.distribution.as_deref() {
            Some(d) if d.eq_ignore_ascii_case("opensearch") => Engine::OpenSearch,
            _ => Engine::Elasticsearch,
        };
        let mut parts = root.version.number.split(|c: char| !c.is_ascii_digit());
        let major = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        let minor = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        ServerInfo { engine, version: root.version.number, major, minor, cluster_name: root.cluster_name }
    }

    /// `_resolve/index` exists from Elasticsearch 7.9 and in every OpenSearch.
    pub fn has_resolve_index(&self) -> bool {
        match self.engine {
            Engine::OpenSearch => true,
            Engine::Elasticsearch => self.major > 7 || (self.major == 7 && self.minor >= 9),
        }
    }
}

/// Elasticsearch and OpenSearch always send all three lists (empty when nothing matched): a body
/// without them is not an answer, and must not read as "none of these exist".
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ResolveResponse {
    pub indices: Vec<ResolvedIndex>,
    pub aliases: Vec<ResolvedName>,
    pub data_streams: Vec<ResolvedName>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ResolvedIndex {
    pub name: String,
    #[serde(default)]
    pub attributes: Vec<String>,
}

impl ResolvedIndex {
    pub fn has(&self, attribute: &str) -> bool {
        self.attributes.iter().any(|a| a == attribute)
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct ResolvedName {
    pub name: String,
}

/// `_cat/indices?format=json` row: every value is a string, and `null` for closed indices.
#[derive(Debug, Clone, Deserialize)]
pub struct CatIndexRow {
    pub index: String,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub health: Option<String>,
    #[serde(default, rename = "pri.store.size")]
    pub pri_store_size: Option<String>,
    #[serde(default, rename = "docs.count")]
    pub docs_count: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CatAliasRow {
    pub alias: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct StatsResponse {
    #[serde(default)]
    pub indices: HashMap<String, IndexStats>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct IndexStats {
    #[serde(default)]
    pub primaries: Option<PrimaryStats>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct PrimaryStats {
    #[serde(default)]
    pub store: Option<StoreStats>,
    #[serde(default)]
    pub docs: Option<DocStats>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct StoreStats {
    pub size_in_bytes: u64,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct DocStats {
    pub count: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct HealthResponse {
    pub status: String,
    #[serde(default)]
    pub indices: HashMap<String, IndexHealth>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct IndexHealth {
    pub status: String,
}

/// `{"error": {"type", "reason"}, "status"}`; `error` is a plain string for unknown routes.
#[derive(Debug, Clone, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ErrorDetail {
    Structured {
        #[serde(rename = "type")]
        kind: String,
        #[serde(default)]
        reason: Option<String>,
    },
    Text(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engines_are_told_apart() {
        let es: RootResponse = serde_json::from_str(r#"{"cluster_name":"c","version":{"number":"8.12.1","build_flavor":"default"},"tagline":"You Know, for Search"}"#).unwrap();
        let info = ServerInfo::from_root(es);
        assert_eq!((info.engine, info.major, info.minor), (Engine::Elasticsearch, 8, 12));
        let os: RootResponse =
            serde_json::from_str(r#"{"cluster_name":"c","version":{"distribution":"opensearch","number":"2.11.0"}}"#)
                .unwrap();
        assert_eq!(ServerInfo::from_root(os).engine, Engine::OpenSearch);
        let old: RootResponse = serde_json::from_str(r#"{"version":{"number":"7.4.2"}}"#).unwrap();
        assert!(!ServerInfo::from_root(old).has_resolve_index());
    }

    #[test]
    fn a_resolve_answer_without_its_lists_is_not_read_as_nothing_found() {
        assert!(serde_json::from_str::<ResolveResponse>("{}").is_err());
        assert!(serde_json::from_str::<ResolveResponse>(r#"{"indices":[]}"#).is_err());
        let found: ResolveResponse =
            serde_json::from_str(r#"{"indices":[{"name":"a","attributes":["open"]}],"aliases":[],"data_streams":[]}"#)
                .unwrap();
        assert_eq!(found.indices[0].name, "a");
    }

    #[test]
    fn cat_rows_take_strings_and_nulls() {
        let rows: Vec<CatIndexRow> = serde_json::from_str(
            r#"[{"index":"a","status":"open","health":"green","pri.store.size":"1024","docs.count":"3"},{"index":"b","status":"close","health":null,"pri.store.size":null,"docs.count":null}]"#,
        )
        .unwrap();
        assert_eq!(rows[0].pri_store_size.as_deref(), Some("1024"));
        assert!(rows[1].docs_count.is_none());
    }
}
