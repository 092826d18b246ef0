//! Elasticsearch / OpenSearch clusters: configuration and a typed client. (to be completed)

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    pub url: String,
}
