//! `tocsin silence add|list|expire`: silences through the daemon's HTTP API.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::ConfigArg;

/// Where the daemon is and which key to use.
#[derive(Debug, Args, Clone)]
pub struct Remote {
    /// The daemon's base URL [default: $TOCSIN_URL, then http:// + server.listen from the config]
    #[arg(long, env = "TOCSIN_URL")]
    pub url: Option<String>,
    /// An API key with the needed scope
    #[arg(long, env = "TOCSIN_KEY", hide_env_values = true)]
    pub key: Option<String>,
    #[command(flatten)]
    pub config: ConfigArg,
}

impl Remote {
    fn base(&self) -> Result<String, String> {
        if let Some(url) = &self.url {
            return Ok(url.trim_end_matches('/').to_string());
        }
        let path = self.config.path();
        let config = crate::config::load(&path).map_err(|e| format!("give --url, or a valid config:\n{e}"))?;
        Ok(format!("http://{}", config.server.listen))
    }

    fn key(&self) -> Result<&str, String> {
        self.key.as_deref().ok_or_else(|| "give an API key with --key or $TOCSIN_KEY".to_string())
    }
}

#[derive(Debug, Subcommand)]
pub enum SilenceCommand {
    /// Silence alerts and events that match every --matcher
    Add {
        /// NAME=GLOB, where NAME is `kind` or a label name (repeatable)
        #[arg(long = "matcher", short = 'm', required = true, value_parser = parse_matcher)]
        matchers: Vec<(String, String)>,
        /// How long, e.g. 2h (or give --ends-at)
        #[arg(long, conflicts_with = "ends_at", required_unless_present = "ends_at")]
        duration: Option<String>,
        /// Until when (RFC 3339)
        #[arg(long)]
        ends_at: Option<String>,
        #[arg(long, default_value = "")]
        comment: String,
        /// Who creates it [default: the API key's name]
        #[arg(long)]
        author: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
    /// List current, pending and recently expired silences
    List {
        #[command(flatten)]
        remote: Remote,
    },
    /// End a silence now
    Expire {
        id: String,
        #[command(flatten)]
        remote: Remote,
    },
}

fn parse_matcher(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .filter(|(k, v)| !k.is_empty() && !v.is_empty())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected NAME=GLOB, got {s:?}"))
}

async fn call(remote: &Remote, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value, String> {
    let base = remote.base()?;
    let mut request = reqwest::Client::new().request(method, format!("{base}{path}")).bearer_auth(remote.key()?);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response =
        request.send().await.map_err(|e| format!("cannot reach the daemon at {base}: {}", e.without_url()))?;
    let status = response.status();
    let value: Value = response.json().await.unwrap_or(Value::Null);
    if status.is_success() {
        Ok(value)
    } else {
        let message = value.pointer("/error/message").and_then(Value::as_str).unwrap_or("no details");
        Err(format!("the daemon answered {status}: {message}"))
    }
}

pub async fn run(command: SilenceCommand) -> ExitCode {
    let result = match command {
        SilenceCommand::Add { matchers, duration, ends_at, comment, author, remote } => {
            let mut names = std::collections::BTreeSet::new();
            if let Some((name, _)) = matchers.iter().find(|(name, _)| !names.insert(name.as_str())) {
                eprintln!(
                    "error: --matcher {name}=… is given twice; each name takes one glob (e.g. {name}='svc.*'), and all must match"
                );
                return ExitCode::from(2);
            }
            let mut body = json!({"matchers": matchers.into_iter().map(|(k, v)| (k, Value::String(v))).collect::<serde_json::Map<_, _>>(), "comment": comment});
            if let Some(d) = duration {
                body["duration"] = json!(d);
            }
            if let Some(e) = ends_at {
                body["ends_at"] = json!(e);
            }
            if let Some(a) = author {
                body["created_by"] = json!(a);
            }
            call(&remote, reqwest::Method::POST, "/api/v1/silences", Some(body)).await.map(|v| {
                out!("{}", v["id"].as_str().unwrap_or(""));
            })
        }
        SilenceCommand::List { remote } => {
            call(&remote, reqwest::Method::GET, "/api/v1/silences", None).await.map(|v| {
                let silences = v["silences"].as_array().map(Vec::as_slice).unwrap_or_default();
                if silences.is_empty() {
                    eprintln!("no silences");
                }
                for s in silences {
                    let matchers = s["matchers"]
                        .as_object()
                        .map(|m| {
                            m.iter()
                                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                                .collect::<Vec<_>>()
                                .join(",")
                        })
                        .unwrap_or_default();
                    out!(
                        "{}  {:<8} {}  until {}  by {}  {}",
                        s["id"].as_str().unwrap_or(""),
                        s["state"].as_str().unwrap_or(""),
                        matchers,
                        s["ends_at"].as_str().unwrap_or(""),
                        s["created_by"].as_str().unwrap_or(""),
                        s["comment"].as_str().unwrap_or("")
                    );
                }
            })
        }
        SilenceCommand::Expire { id, remote } => {
            call(&remote, reqwest::Method::DELETE, &format!("/api/v1/silences/{id}"), None)
                .await
                .map(|_| out!("expired {id}"))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}
