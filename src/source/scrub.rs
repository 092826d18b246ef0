//! Scrubbing: secrets and card numbers are replaced by `[Filtered]` before an event is stored
//! or sent (as Sentry's data scrubbing does).

use serde_json::{Map, Value};

use super::config::ScrubConfig;

pub const FILTERED: &str = "[Filtered]";

/// Header names (lower-case) whose values are always removed.
const HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "api-key",
    "apikey",
    "x-auth-token",
    "x-tocsin-key",
    "x-csrf-token",
    "x-xsrf-token",
    "x-amz-security-token",
    "stripe-signature",
    "x-hub-signature",
    "x-hub-signature-256",
];

/// Substrings of field (and header, query parameter) names whose values are removed;
/// compared lower-case with `-` and `_` ignored.
const FIELDS: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "token",
    "apikey",
    "authorization",
    "cookie",
    "session",
    "csrf",
    "xsrf",
    "privatekey",
    "credential",
    "cardnumber",
    "creditcard",
    "cvv",
    "cvc",
    "ssn",
];

#[derive(Debug, Clone)]
pub struct Scrubber {
    headers: Vec<String>,
    fields: Vec<String>,
    cards: bool,
}

fn normalize(name: &str) -> String {
    name.chars().filter(|c| *c != '-' && *c != '_' && *c != ' ').flat_map(char::to_lowercase).collect()
}

impl Default for Scrubber {
    fn default() -> Self {
        Scrubber::new(&ScrubConfig::default())
    }
}

impl Scrubber {
    pub fn new(config: &ScrubConfig) -> Scrubber {
        Scrubber {
            headers: HEADERS
                .iter()
                .map(|h| h.to_string())
                .chain(config.headers.iter().map(|h| h.trim().to_ascii_lowercase()))
                .collect(),
            fields: FIELDS.iter().map(|f| f.to_string()).chain(config.fields.iter().map(|f| normalize(f))).collect(),
            cards: config.card_numbers,
        }
    }

    /// Whether a field (or query parameter) of this name holds a secret.
    pub fn sensitive_field(&self, name: &str) -> bool {
        let n = normalize(name);
        self.fields.iter().any(|f| n.contains(f.as_str()))
    }

    pub fn sensitive_header(&self, name: &str) -> bool {
        let lower = name.trim().to_ascii_lowercase();
        self.headers.contains(&lower) || self.sensitive_field(&lower)
    }

    /// Card numbers in free text.
    pub fn text(&self, s: &str) -> String {
        if self.cards {
            scrub_cards(s)
        } else {
            s.to_string()
        }
    }

    /// A JSON value: object members with sensitive names lose their values, strings lose
    /// card numbers (and strings that hold JSON are scrubbed inside).
    pub fn value(&self, v: &mut Value) {
        match v {
            Value::Object(map) => self.map(map),
            Value::Array(items) => items.iter_mut().for_each(|i| self.value(i)),
            Value::String(s) => {
                let next = self.text(s);
                if next != *s {
                    *s = next;
                }
            }
            Value::Number(n) if self.cards => {
                let digits = n.to_string();
                if (13..=19).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) && luhn(&digits) {
                    *v = Value::String(FILTERED.into());
                }
            }
            _ => {}
        }
    }

    pub fn map(&self, map: &mut Map<String, Value>) {
        for (k, v) in map.iter_mut() {
            if self.sensitive_field(k) && !v.is_null() {
                *v = Value::String(FILTERED.into());
            } else {
                self.value(v);
            }
        }
    }

    /// A header map given as a JSON object (`{"Name": "value"}` or `{"Name": ["v1", "v2"]}`).
    pub fn headers(&self, headers: &mut Map<String, Value>) {
        for (k, v) in headers.iter_mut() {
            if self.sensitive_header(k) {
                *v = Value::String(FILTERED.into());
            } else {
                self.value(v);
            }
        }
    }

    /// A URL: sensitive query parameters and user info are removed, card numbers too.
    pub fn url(&self, raw: &str) -> String {
        let Ok(mut url) = url::Url::parse(raw) else {
            return self.text(raw);
        };
        if !url.username().is_empty() || url.password().is_some() {
            let _ = url.set_username("");
            let _ = url.set_password(None);
        }
        if url.query().is_some() {
            let pairs: Vec<(String, String)> = url
                .query_pairs()
                .map(|(k, v)| {
                    let v = if self.sensitive_field(&k) { FILTERED.to_string() } else { self.text(&v) };
                    (k.into_owned(), v)
                })
                .collect();
            url.query_pairs_mut().clear().extend_pairs(pairs);
        }
        self.text(url.as_str())
    }
}

/// Replaces runs of 13–19 digits (spaces or dashes allowed between them) that pass the Luhn
/// check.
pub fn scrub_cards(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_ascii_digit() && (i == 0 || !chars[i - 1].is_ascii_alphanumeric()) {
            // The longest candidate starting here.
            let mut j = i;
            let mut digits = String::new();
            let mut last_digit_end = i;
            while j < chars.len() && digits.len() < 19 {
                let c = chars[j];
                if c.is_ascii_digit() {
                    digits.push(c);
                    last_digit_end = j + 1;
                } else if (c == ' ' || c == '-') && j + 1 < chars.len() && chars[j + 1].is_ascii_digit() {
                } else {
                    break;
                }
                j += 1;
            }
            let followed_by_alnum = chars.get(last_digit_end).is_some_and(|c| c.is_ascii_alphanumeric());
            if (13..=19).contains(&digits.len()) && !followed_by_alnum && luhn(&digits) {
                out.push_str(FILTERED);
                i = last_digit_end;
                continue;
            }
            // Not a card: copy the digit run as is.
            while i < chars.len() && chars[i].is_ascii_digit() {
                out.push(chars[i]);
                i += 1;
            }
            continue;
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

pub fn luhn(digits: &str) -> bool {
    let mut sum = 0;
    for (i, b) in digits.bytes().rev().enumerate() {
        let mut d = (b - b'0') as u32;
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    sum % 10 == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cards_and_names() {
        assert!(luhn("4242424242424242"));
        assert_eq!(scrub_cards("paid with 4242 4242 4242 4242 today"), "paid with [Filtered] today");
        assert_eq!(scrub_cards("order 4242424242424241"), "order 4242424242424241");
        assert_eq!(scrub_cards("id 1234"), "id 1234");
        let s = Scrubber::default();
        let mut v = json!({"user": {"Password": "hunter2", "name": "al"}, "api_token": "x", "n": 4111111111111111u64});
        s.value(&mut v);
        assert_eq!(v, json!({"user": {"Password": FILTERED, "name": "al"}, "api_token": FILTERED, "n": FILTERED}));
        assert_eq!(s.url("https://u:p@x.com/a?token=abc&page=2"), "https://x.com/a?token=%5BFiltered%5D&page=2");
        assert!(s.sensitive_header("X-Api-Key") && s.sensitive_header("Cookie") && !s.sensitive_header("Accept"));
    }
}
