//! AWS SigV4 for Amazon OpenSearch Service (`es`) and OpenSearch Serverless (`aoss`).
//!
//! Credentials come from `aws-config`'s default chain and are cached here until shortly before
//! they expire, because the chain itself may do network calls (IMDS, STS) on every ask.

use std::time::{Duration, SystemTime};

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use tokio::sync::Mutex;

/// Refresh credentials this long before they expire.
const REFRESH_MARGIN: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    /// The chain's message names the providers tried, never key material.
    #[error("no AWS credentials: {0}")]
    Credentials(String),
    #[error("cannot sign the request: {0}")]
    Sign(String),
}

pub struct Signer {
    region: String,
    service: String,
    profile: Option<String>,
    provider: Mutex<Option<SharedCredentialsProvider>>,
    cached: Mutex<Option<Credentials>>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").field("region", &self.region).field("service", &self.service).finish()
    }
}

impl Signer {
    pub fn new(region: String, service: String, profile: Option<String>) -> Signer {
        Signer { region, service, profile, provider: Mutex::new(None), cached: Mutex::new(None) }
    }

    /// A signer with fixed credentials (tests, benchmarks).
    pub fn with_credentials(region: String, service: String, credentials: Credentials) -> Signer {
        Signer {
            region,
            service,
            profile: None,
            provider: Mutex::new(Some(SharedCredentialsProvider::new(credentials))),
            cached: Mutex::new(None),
        }
    }

    fn provider_config(&self) -> aws_config::provider_config::ProviderConfig {
        // Our own rustls+ring HTTP client for IMDS/ECS/STS keeps aws-lc out of the build.
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        aws_config::provider_config::ProviderConfig::default()
            .with_http_client(http)
            .with_region(Some(aws_config::Region::new(self.region.clone())))
    }

    async fn provider(&self) -> SharedCredentialsProvider {
        let mut guard = self.provider.lock().await;
        if let Some(p) = guard.as_ref() {
            return p.clone();
        }
        let conf = self.provider_config();
        let mut builder = aws_config::default_provider::credentials::DefaultCredentialsChain::builder()
            .configure(conf)
            .region(aws_config::Region::new(self.region.clone()));
        if let Some(profile) = &self.profile {
            builder = builder.profile_name(profile);
        }
        let provider = SharedCredentialsProvider::new(builder.build().await);
        *guard = Some(provider.clone());
        provider
    }

    async fn credentials(&self) -> Result<Credentials, SigningError> {
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref() {
            let fresh = c.expiry().map(|e| e > SystemTime::now() + REFRESH_MARGIN).unwrap_or(true);
            if fresh {
                return Ok(c.clone());
            }
        }
        let provider = self.provider().await;
        let creds = match provider.provide_credentials().await {
            Ok(creds) => creds,
            Err(e) => {
                let chain = error_chain(&e);
                return Err(SigningError::Credentials(self.explain(chain).await));
            }
        };
        *cached = Some(creds.clone());
        Ok(creds)
    }

    /// The chain's error names every provider it tried; when the config named a profile, the
    /// profile's own reason (not defined, no keys in it) is what the user needs first.
    async fn explain(&self, chain: String) -> String {
        let Some(profile) = &self.profile else { return chain };
        let alone = aws_config::profile::ProfileFileCredentialsProvider::builder()
            .configure(&self.provider_config())
            .profile_name(profile)
            .build();
        match alone.provide_credentials().await {
            Err(e) => {
                let reason = error_chain(&e);
                // The provider's bare wording when the profile exists but holds nothing it can use.
                let hint = if std::error::Error::source(&e).is_none() {
                    ": it has no aws_access_key_id, role_arn, sso_session or credential_process"
                } else {
                    ""
                };
                format!("profile `{profile}`: {reason}{hint}")
            }
            Ok(_) => chain,
        }
    }

    /// The headers to add to a request: `authorization`, `x-amz-date`,
    /// `x-amz-content-sha256` and, with temporary credentials, `x-amz-security-token`.
    /// `path_and_query` must be exactly what is sent (already percent-encoded).
    pub async fn sign(
        &self,
        method: &str,
        host: &str,
        path_and_query: &str,
        body: &[u8],
    ) -> Result<Vec<(String, String)>, SigningError> {
        let creds = self.credentials().await?;
        sign_headers(method, host, path_and_query, body, &creds, &self.region, &self.service, SystemTime::now())
    }
}

/// Signs one request; also used by the fake server to recompute a signature.
#[allow(clippy::too_many_arguments)]
pub fn sign_headers(
    method: &str,
    host: &str,
    path_and_query: &str,
    body: &[u8],
    creds: &Credentials,
    region: &str,
    service: &str,
    time: SystemTime,
) -> Result<Vec<(String, String)>, SigningError> {
    let identity = creds.clone().into();
    let mut settings = SigningSettings::default();
    // Serverless requires it and managed domains accept it, so always send it.
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(time)
        .settings(settings)
        .build()
        .map_err(|e| SigningError::Sign(e.to_string()))?
        .into();
    let uri = format!("https://{host}{path_and_query}");
    let request = SignableRequest::new(method, uri, [("host", host)].into_iter(), SignableBody::Bytes(body))
        .map_err(|e| SigningError::Sign(e.to_string()))?;
    let (instructions, _signature) =
        sign(request, &params).map_err(|e| SigningError::Sign(e.to_string()))?.into_parts();
    let (headers, _) = instructions.into_parts();
    Ok(headers.into_iter().map(|h| (h.name().to_string(), h.value().to_string())).collect())
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_with_session_token_and_payload_hash() {
        let creds = Credentials::new("AKIDEXAMPLE", "secret", Some("tok".into()), None, "test");
        let headers = sign_headers(
            "GET",
            "h.example",
            "/%2A/_stats",
            b"",
            &creds,
            "us-east-1",
            "es",
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        )
        .unwrap();
        let names: Vec<_> = headers.iter().map(|(n, _)| n.as_str()).collect();
        assert!(
            names.contains(&"authorization")
                && names.contains(&"x-amz-security-token")
                && names.contains(&"x-amz-content-sha256")
        );
        let auth = &headers.iter().find(|(n, _)| n == "authorization").unwrap().1;
        assert!(auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20231114/us-east-1/es/aws4_request"));
        assert!(!auth.contains("secret"));
    }
}
