//! Server errors: the `error` object of `error.*` events, its fingerprint (type + top in-app
//! frame + route, as Sentry groups issues), scrubbing, and which occurrences are notified.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::config::ErrorsConfig;
use super::scrub::Scrubber;
use crate::event::{Event, FieldError};
use crate::store::sources::ErrorIssue;

pub const MAX_FRAMES: usize = 200;
pub const MAX_MESSAGE_BYTES: usize = 8 * 1024;
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// An exception as reported by an application.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorReport {
    /// The exception's type (`ZeroDivisionError`, `TypeError`).
    #[serde(rename = "type")]
    pub error_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Stack frames, innermost (where the error was raised) first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub frames: Vec<Frame>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<RequestInfo>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Frame {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lineno: Option<u32>,
    /// The application's own code (not a library).
    #[serde(default)]
    pub in_app: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The route pattern (`/orders/{id}`), which groups requests to the same handler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub headers: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
}

/// Reads the `error` member of an event (`path` is e.g. `events[2].error.`).
pub fn parse_error(value: &Value, path: &str) -> Result<ErrorReport, FieldError> {
    let report: ErrorReport = serde_path_to_error::deserialize(value).map_err(|e| {
        let inner = e.path().to_string();
        let field = if inner == "." { path.trim_end_matches('.').to_string() } else { format!("{path}{inner}") };
        FieldError { field, message: e.into_inner().to_string() }
    })?;
    let err = |f: &str, m: &str| FieldError { field: format!("{path}{f}"), message: m.to_string() };
    if report.error_type.trim().is_empty() || report.error_type.len() > 256 {
        return Err(err("type", "must be 1 to 256 characters"));
    }
    if report.message.as_ref().is_some_and(|m| m.len() > MAX_MESSAGE_BYTES) {
        return Err(err("message", &format!("must be at most {MAX_MESSAGE_BYTES} bytes")));
    }
    if report.frames.len() > MAX_FRAMES {
        return Err(err("frames", &format!("must hold at most {MAX_FRAMES} frames")));
    }
    if let Some(body) = report.request.as_ref().and_then(|r| r.body.as_ref()) {
        if body.to_string().len() > MAX_BODY_BYTES {
            return Err(err("request.body", &format!("must be at most {MAX_BODY_BYTES} bytes")));
        }
    }
    Ok(report)
}

impl ErrorReport {
    /// The frame that identifies the bug: the innermost frame of the application's own code,
    /// else the innermost frame.
    pub fn top_frame(&self) -> Option<&Frame> {
        self.frames.iter().find(|f| f.in_app).or_else(|| self.frames.first())
    }

    /// Type + top in-app frame (module/file and function, not the line: lines move with every
    /// edit) + route.
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(self.error_type.as_bytes());
        h.update([0xff]);
        if let Some(f) = self.top_frame() {
            h.update(f.module.as_deref().or(f.filename.as_deref()).unwrap_or("").as_bytes());
            h.update([0xfe]);
            h.update(f.function.as_deref().unwrap_or("").as_bytes());
        }
        h.update([0xff]);
        if let Some(route) = self.request.as_ref().and_then(|r| r.route.as_deref()) {
            h.update(route.as_bytes());
        }
        format!("error:{}", hex::encode(&h.finalize()[..10]))
    }

    pub fn scrub(&mut self, s: &Scrubber) {
        if let Some(m) = &mut self.message {
            *m = s.text(m);
        }
        if let Some(r) = &mut self.request {
            s.headers(&mut r.headers);
            if let Some(url) = &mut r.url {
                *url = s.url(url);
            }
            if let Some(body) = &mut r.body {
                // A body sent as a string may be JSON or a form.
                if let Value::String(text) = body {
                    if let Ok(mut parsed) = serde_json::from_str::<Value>(text) {
                        s.value(&mut parsed);
                        *body = Value::String(parsed.to_string());
                    } else if text.contains('=') && !text.contains(' ') {
                        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(text.as_bytes())
                            .map(|(k, v)| {
                                let v = if s.sensitive_field(&k) { super::scrub::FILTERED.into() } else { s.text(&v) };
                                (k.into_owned(), v)
                            })
                            .collect();
                        *body = Value::String(
                            url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish(),
                        );
                    } else {
                        s.value(body);
                    }
                } else {
                    s.value(body);
                }
            }
        }
    }

    fn headline(&self) -> String {
        match &self.message {
            Some(m) if !m.is_empty() => format!("{}: {}", self.error_type, m.lines().next().unwrap_or("")),
            _ => self.error_type.clone(),
        }
    }

    /// The message text: the exception, up to five frames, the request line.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        out.push_str(&self.headline());
        let frames: Vec<&Frame> = {
            let in_app: Vec<&Frame> = self.frames.iter().filter(|f| f.in_app).collect();
            if in_app.is_empty() {
                self.frames.iter().take(5).collect()
            } else {
                in_app.into_iter().take(5).collect()
            }
        };
        for f in frames {
            let place = match (&f.filename, f.lineno) {
                (Some(file), Some(line)) => format!("{file}:{line}"),
                (Some(file), None) => file.clone(),
                (None, _) => f.module.clone().unwrap_or_else(|| "?".into()),
            };
            out.push_str(&format!("\n  at {} ({place})", f.function.as_deref().unwrap_or("?")));
        }
        if let Some(r) = &self.request {
            let line = [r.method.as_deref(), r.url.as_deref().or(r.route.as_deref())]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" ");
            if !line.is_empty() {
                out.push_str(&format!("\n{line}"));
            }
        }
        out
    }
}

/// Scrubs an event of any source: free text, labels and fields (and the error, if any).
pub fn scrub_event(event: &mut Event, s: &Scrubber) {
    if let Some(t) = &mut event.title {
        *t = s.text(t);
    }
    if let Some(t) = &mut event.text {
        *t = s.text(t);
    }
    for (k, v) in event.labels.iter_mut() {
        *v = if s.sensitive_field(k) { super::scrub::FILTERED.into() } else { s.text(v) };
    }
    s.map(&mut event.fields);
    if let Some(link) = &mut event.link {
        *link = s.url(link);
    }
    if let Some(e) = &mut event.error {
        e.scrub(s);
    }
}

/// Fills title, text and fields from the error report where the sender gave none.
pub fn decorate(event: &mut Event) {
    let Some(report) = &event.error else { return };
    if event.title.is_none() {
        let headline = report.headline();
        event.title = Some(headline.chars().take(crate::event::MAX_TITLE_LEN).collect());
    }
    if event.text.is_none() {
        let mut text = report.render_text();
        if text.len() > crate::event::MAX_TEXT_BYTES {
            let mut cut = crate::event::MAX_TEXT_BYTES;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
        }
        event.text = Some(text);
    }
    if let Some(r) = &report.request {
        if let Some(route) = &r.route {
            event.fields.entry("route").or_insert_with(|| Value::String(route.clone()));
        }
        if let (Some(m), Some(u)) = (&r.method, &r.url) {
            event.fields.entry("request").or_insert_with(|| Value::String(format!("{m} {u}")));
        }
    }
    event.fields.entry("exception").or_insert_with(|| Value::String(report.error_type.clone()));
}

/// Why an occurrence is (or is not) notified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// The first occurrence of this fingerprint.
    First,
    /// An occurrence after the issue was resolved.
    Regression,
    /// The issue's occurrences in the spike window reached the threshold.
    Spike(u64),
    /// Counted and stored, not sent.
    Quiet,
}

/// The issue after one more occurrence at `at`, and whether to notify.
pub fn advance(
    current: Option<ErrorIssue>,
    fingerprint: &str,
    at: chrono::DateTime<chrono::Utc>,
    cfg: &ErrorsConfig,
) -> (ErrorIssue, Notice) {
    let window = chrono::Duration::from_std(cfg.spike_window.get()).unwrap_or(chrono::Duration::hours(1));
    let Some(mut issue) = current else {
        return (
            ErrorIssue {
                fingerprint: fingerprint.to_string(),
                first_seen: at,
                last_seen: at,
                count: 1,
                resolved_at: None,
                window_start: at,
                window_count: 1,
                spike_notified: false,
            },
            Notice::First,
        );
    };
    let auto_resolved = cfg
        .resolve_after
        .and_then(|d| chrono::Duration::from_std(d.get()).ok())
        .is_some_and(|quiet| at - issue.last_seen >= quiet);
    let regression = issue.resolved_at.is_some_and(|r| at >= r) || auto_resolved;
    issue.count += 1;
    issue.last_seen = issue.last_seen.max(at);
    if at - issue.window_start >= window || regression {
        issue.window_start = at;
        issue.window_count = 1;
        issue.spike_notified = false;
    } else {
        issue.window_count += 1;
    }
    if regression {
        issue.resolved_at = None;
        return (issue, Notice::Regression);
    }
    if issue.window_count >= cfg.spike_threshold && !issue.spike_notified {
        issue.spike_notified = true;
        let n = issue.window_count;
        return (issue, Notice::Spike(n));
    }
    (issue, Notice::Quiet)
}

/// Marks the event with its issue's numbers and, when notified, why.
pub fn annotate(event: &mut Event, issue: &ErrorIssue, notice: Notice, cfg: &ErrorsConfig) {
    event.fields.insert("occurrences".into(), Value::from(issue.count));
    event.fields.insert("first_seen".into(), Value::String(issue.first_seen.to_rfc3339()));
    let prefix = match notice {
        Notice::First => "New error",
        Notice::Regression => "Regression",
        Notice::Spike(_) => "Spike",
        Notice::Quiet => return,
    };
    if let Notice::Spike(n) = notice {
        event.fields.insert("spike".into(), Value::String(format!("{n} in {}", cfg.spike_window)));
    }
    let title = format!("{prefix}: {}", event.title.as_deref().unwrap_or(&event.kind));
    event.title = Some(title.chars().take(crate::event::MAX_TITLE_LEN).collect());
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn report(v: Value) -> ErrorReport {
        parse_error(&v, "error.").unwrap()
    }

    #[test]
    fn fingerprint_ignores_lines_and_library_frames() {
        let a = report(json!({"type": "KeyError", "message": "a", "frames": [
            {"function": "get", "module": "dict", "lineno": 1},
            {"function": "checkout", "module": "shop.views", "lineno": 10, "in_app": true}],
            "request": {"route": "/cart/{id}"}}));
        let b = report(json!({"type": "KeyError", "message": "b", "frames": [
            {"function": "checkout", "module": "shop.views", "lineno": 99, "in_app": true}],
            "request": {"route": "/cart/{id}", "url": "https://x/cart/2"}}));
        assert_eq!(a.fingerprint(), b.fingerprint());
        let c = report(json!({"type": "KeyError", "request": {"route": "/other"}}));
        assert_ne!(a.fingerprint(), c.fingerprint());
        let e = parse_error(&json!({"type": "X", "frames": [{"lineno": "x"}]}), "error.").unwrap_err();
        assert_eq!(e.field, "error.frames[0].lineno");
    }

    #[test]
    fn first_quiet_spike_regression() {
        let cfg = ErrorsConfig { spike_threshold: 3, ..ErrorsConfig::default() };
        let t0: chrono::DateTime<chrono::Utc> = "2026-11-21T16:00:00Z".parse().unwrap();
        let (i, n) = advance(None, "f", t0, &cfg);
        assert_eq!(n, Notice::First);
        let (i, n) = advance(Some(i), "f", t0, &cfg);
        assert_eq!(n, Notice::Quiet);
        let (mut i, n) = advance(Some(i), "f", t0, &cfg);
        assert_eq!(n, Notice::Spike(3));
        i.resolved_at = Some(t0);
        let (i, n) = advance(Some(i), "f", t0 + chrono::Duration::minutes(1), &cfg);
        assert_eq!((n, i.count), (Notice::Regression, 4));
    }
}
