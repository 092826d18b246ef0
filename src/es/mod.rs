//! Elasticsearch / OpenSearch clusters: configuration and a typed, read-only client.
//!
//! One code path serves Elasticsearch 7/8/9, OpenSearch 1/2 and Amazon OpenSearch Service:
//! plain HTTP with typed serde structs (numbers from `_stats`, optional strings from `_cat`),
//! and AWS SigV4 signing when the cluster asks for it.

mod client;
pub mod sigv4;
pub mod types;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

pub use client::{Client, EsError};
pub use types::{Engine, ServerInfo};

use crate::config::{Dur, Secret};

/// `[elasticsearch.NAME]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// Base URL, e.g. `https://search-x.us-east-1.es.amazonaws.com` (a trailing `/` is ignored).
    pub url: String,
    /// Copied onto every finding from this cluster (region, env, …).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub auth: AuthConfig,
    /// Whole-request timeout (connect included).
    #[serde(default = "default_timeout")]
    pub timeout: Dur,
    /// Connection timeout; defaults to the smaller of `timeout` and 5 s.
    pub connect_timeout: Option<Dur>,
    /// PEM file with the CA certificate(s) to trust, e.g. ES 8's `config/certs/http_ca.crt`.
    pub ca_bundle: Option<PathBuf>,
    /// Disables certificate verification. Only for test clusters; never the default.
    #[serde(default)]
    pub tls_insecure: bool,
}

fn default_timeout() -> Dur {
    Dur::secs(10)
}

/// `auth = { type = … }`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthConfig {
    #[default]
    None,
    Basic {
        username: String,
        password: Secret,
    },
    /// The `encoded` value of the create-API-key response (base64 of `id:api_key`).
    ApiKey {
        key: Secret,
    },
    /// AWS SigV4 with credentials from the standard AWS chain (environment, shared profile,
    /// web identity, ECS container, EC2 instance metadata).
    AwsSigv4 {
        region: String,
        /// `es` for managed domains (both engines), `aoss` for OpenSearch Serverless.
        #[serde(default = "default_service")]
        service: String,
        /// A named profile of the shared config files instead of the default one.
        profile: Option<String>,
    },
}

fn default_service() -> String {
    "es".into()
}

/// Problems with one cluster's configuration, as `(key path, message)`; pure, no IO except
/// checking that a CA bundle file exists.
pub fn validate_cluster(name: &str, cluster: &ClusterConfig) -> Vec<(String, String)> {
    let mut errors = Vec::new();
    let key = |k: &str| format!("elasticsearch.{name}.{k}");
    match url::Url::parse(&cluster.url) {
        Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {
            if u.query().is_some() {
                errors.push((key("url"), "must not contain a query string".into()));
            }
        }
        // The value is not echoed: it may carry a password (`https://user:pass@…`); the error
        // points at its line already.
        _ => errors.push((key("url"), "is not an absolute http(s) URL (expected https://host:9200)".into())),
    }
    if cluster.timeout.get().is_zero() {
        errors.push((key("timeout"), "must be greater than zero".into()));
    }
    if let AuthConfig::AwsSigv4 { region, service, .. } = &cluster.auth {
        if region.is_empty() {
            errors.push((key("auth.region"), "must name an AWS region such as us-east-1".into()));
        }
        if service != "es" && service != "aoss" {
            errors.push((key("auth.service"), format!("must be \"es\" or \"aoss\", not {service:?}")));
        }
    }
    if let Some(path) = &cluster.ca_bundle {
        if !path.exists() {
            errors.push((key("ca_bundle"), format!("{} does not exist", path.display())));
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> ClusterConfig {
        toml::from_str(s).unwrap()
    }

    #[test]
    fn auth_variants_parse_and_hide_secrets() {
        let c = parse("url = \"http://x:9200\"\nauth = { type = \"basic\", username = \"u\", password = \"p4ss\" }");
        assert!(!format!("{c:?}").contains("p4ss"));
        let c = parse("url = \"http://x\"\nauth = { type = \"aws_sigv4\", region = \"eu-west-1\" }");
        assert!(matches!(c.auth, AuthConfig::AwsSigv4 { ref service, .. } if service == "es"));
        let c = parse("url = \"http://x\"");
        assert!(matches!(c.auth, AuthConfig::None));
        assert!(toml::from_str::<ClusterConfig>("url = \"http://x\"\nbogus = 1").is_err());
    }

    #[test]
    fn validation_names_keys() {
        let c = parse("url = \"nope\"\nauth = { type = \"aws_sigv4\", region = \"\", service = \"s3\" }");
        let keys: Vec<_> = validate_cluster("prod", &c).into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            ["elasticsearch.prod.url", "elasticsearch.prod.auth.region", "elasticsearch.prod.auth.service"]
        );
    }
}
