//! Browser events: what a publishable key may send from a web page — allowed kinds, capped
//! severity, no chat mentions — and the token buckets that limit it per IP and per key.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use serde_json::Value;

use crate::event::{Event, Severity};

/// `https://App.example.com/` → `https://app.example.com`.
pub fn normalize_origin(origin: &str) -> String {
    origin.trim().trim_end_matches('/').to_ascii_lowercase()
}

/// Whether `origin` is in `allowed` (`*` allows any origin).
pub fn origin_allowed<'a>(allowed: impl IntoIterator<Item = &'a String>, origin: &str) -> bool {
    let origin = normalize_origin(origin);
    allowed.into_iter().any(|a| a == "*" || normalize_origin(a) == origin)
}

/// Removes what would page people in a chat: `<!here>`, `<!channel>`, `<!everyone>`,
/// `<!subteam^…>`, `<@U…>` user mentions, and the plain `@here` / `@channel` / `@everyone`.
pub fn strip_mentions(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('<') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos..];
        if after.starts_with("<!") || after.starts_with("<@") || after.starts_with("<#") {
            if let Some(end) = after.find('>') {
                rest = &after[end + 1..];
                continue;
            }
        }
        out.push('<');
        rest = &after[1..];
    }
    out.push_str(rest);
    let mut result = out;
    for word in ["here", "channel", "everyone"] {
        let mut cleaned = String::with_capacity(result.len());
        let mut rest = result.as_str();
        let pattern = format!("@{word}");
        while let Some(pos) = rest.to_ascii_lowercase().find(&pattern) {
            cleaned.push_str(&rest[..pos]);
            cleaned.push_str(&rest[pos + 1..pos + pattern.len()]);
            rest = &rest[pos + pattern.len()..];
        }
        cleaned.push_str(rest);
        result = cleaned;
    }
    result
}

fn strip_value(v: &mut Value) {
    match v {
        Value::String(s) => *s = strip_mentions(s),
        Value::Array(items) => items.iter_mut().for_each(strip_value),
        Value::Object(map) => map.values_mut().for_each(strip_value),
        _ => {}
    }
}

/// Makes an event from a web page safe to relay: severity capped, mentions stripped.
/// Returns whether the severity was lowered.
pub fn sanitize(event: &mut Event, max: Severity) -> bool {
    let capped = event.severity > max;
    if capped {
        event.severity = max;
    }
    for s in [&mut event.title, &mut event.text, &mut event.user].into_iter().flatten() {
        *s = strip_mentions(s);
    }
    for v in event.labels.values_mut() {
        *v = strip_mentions(v);
    }
    event.fields.values_mut().for_each(strip_value);
    capped
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets by name (`ip:1.2.3.4`, `key:web`).
#[derive(Default)]
pub struct Limiter {
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl Limiter {
    /// Takes one token; `Err(seconds)` to wait when the bucket is empty.
    pub fn take(&self, name: &str, per_minute: u32, burst: u32) -> Result<(), u64> {
        let rate = per_minute.max(1) as f64 / 60.0;
        let burst = burst.max(1) as f64;
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let b = buckets.entry(name.to_string()).or_insert(Bucket { tokens: burst, at: now });
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * rate).min(burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - b.tokens) / rate).ceil().max(1.0) as u64)
        }
    }

    /// Forgets buckets idle long enough to be full again.
    pub fn sweep(&self) {
        let now = Instant::now();
        self.buckets.lock().unwrap_or_else(|e| e.into_inner()).retain(|_, b| now.duration_since(b.at).as_secs() < 3600);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_are_removed() {
        assert_eq!(
            strip_mentions("hey <!here> and <@U123|bob> <!subteam^S1> @channel @Here!"),
            "hey  and   channel Here!"
        );
        assert_eq!(strip_mentions("a < b"), "a < b");
    }

    #[test]
    fn bucket() {
        let l = Limiter::default();
        assert!(l.take("k", 60, 2).is_ok());
        assert!(l.take("k", 60, 2).is_ok());
        assert_eq!(l.take("k", 60, 2), Err(1));
    }
}
