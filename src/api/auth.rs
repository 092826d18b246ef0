//! API keys: who is calling and what they may do.
//!
//! Keys are kept only as SHA-256 digests, so a lookup's timing reveals nothing about the key
//! and a memory dump shows no key.

use std::collections::HashMap;

use axum::http::HeaderMap;
use sha2::{Digest, Sha256};

use super::error::ApiError;
use crate::config::{ApiKeyConfig, Scope};

#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub scopes: Vec<Scope>,
    /// When set, the only event kinds this key may send.
    pub allowed_kinds: Option<globset::GlobSet>,
    /// Web origins a publishable (events:browser) key may be used from.
    pub allowed_origins: Vec<String>,
}

impl Caller {
    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope) || self.scopes.contains(&Scope::Admin)
    }

    pub fn may_send(&self, kind: &str) -> bool {
        self.allowed_kinds.as_ref().is_none_or(|set| set.is_match(kind))
    }

    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.has(scope) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!("the key {:?} lacks the scope {}", self.name, scope.as_str())))
        }
    }
}

#[derive(Default)]
pub struct KeyRing {
    by_digest: HashMap<[u8; 32], Caller>,
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

impl KeyRing {
    pub fn new(keys: &[ApiKeyConfig]) -> KeyRing {
        let by_digest = keys
            .iter()
            .map(|k| {
                let caller = Caller {
                    name: k.name.clone(),
                    scopes: k.scopes.clone(),
                    // Validation already refused bad patterns; a failure here means "no limit".
                    allowed_kinds: crate::pipeline::compile_globs(&k.allowed_kinds).ok().flatten(),
                    allowed_origins: k.allowed_origins.clone(),
                };
                (digest(k.key.expose()), caller)
            })
            .collect();
        KeyRing { by_digest }
    }

    /// Finds the caller from `Authorization: Bearer KEY` (or `X-Tocsin-Key`).
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<&Caller, ApiError> {
        let presented = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .or_else(|| headers.get("x-tocsin-key").and_then(|v| v.to_str().ok()))
            .map(str::trim)
            .ok_or_else(|| ApiError::unauthorized("send an API key as `Authorization: Bearer KEY`"))?;
        self.by_digest.get(&digest(presented)).ok_or_else(|| ApiError::unauthorized("unknown API key"))
    }
}
