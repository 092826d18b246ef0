//! Stripe webhooks: `Stripe-Signature` verification (v1, HMAC-SHA256 over
//! `timestamp.payload`, with a tolerance, several signatures and secrets during rotation) and
//! readable messages for the payment events a team cares about.

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde_json::{json, Map, Value};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::config::Secret;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the Stripe-Signature header is missing")]
    Missing,
    #[error("the Stripe-Signature header is malformed (expected t=…,v1=…)")]
    Malformed,
    #[error("no v1 signature matches a configured signing secret")]
    NoMatch,
    #[error("the signature's timestamp is outside the tolerance (a replay, or a clock far off)")]
    Stale,
}

/// The hex v1 signature of `payload` signed at `timestamp` with `secret` (as Stripe computes it).
pub fn sign(secret: &str, timestamp: i64, payload: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(payload);
    hex::encode(mac.finalize().into_bytes())
}

/// Checks a `Stripe-Signature` header: any `v1` signature made with any of `secrets` counts,
/// then the timestamp must be within `tolerance` of `now`.
pub fn verify(
    header: Option<&str>,
    payload: &[u8],
    secrets: &[Secret],
    tolerance: std::time::Duration,
    now: DateTime<Utc>,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        let Some((k, v)) = part.trim().split_once('=') else { continue };
        match k {
            "t" => timestamp = Some(v.parse::<i64>().map_err(|_| SignatureError::Malformed)?),
            "v1" => signatures.push(hex::decode(v).unwrap_or_default()),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    let matched = secrets.iter().any(|secret| {
        let expected = hex::decode(sign(secret.expose(), timestamp, payload)).expect("hex we made");
        signatures.iter().any(|sig| sig.len() == expected.len() && bool::from(sig.ct_eq(&expected)))
    });
    if !matched {
        return Err(SignatureError::NoMatch);
    }
    if (now.timestamp() - timestamp).unsigned_abs() > tolerance.as_secs() {
        return Err(SignatureError::Stale);
    }
    Ok(())
}

/// Currencies whose amounts Stripe gives in whole units.
const ZERO_DECIMAL: &[&str] =
    &["bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf"];
/// Currencies with three decimals.
const THREE_DECIMAL: &[&str] = &["bhd", "jod", "kwd", "omr", "tnd"];

fn group_thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `4900, "usd"` → `$49.00`; `1500, "jpy"` → `¥1,500`; `1000, "chf"` → `10.00 CHF`.
pub fn format_amount(minor: i64, currency: &str) -> String {
    let cur = currency.to_ascii_lowercase();
    let decimals = if ZERO_DECIMAL.contains(&cur.as_str()) {
        0
    } else if THREE_DECIMAL.contains(&cur.as_str()) {
        3
    } else {
        2
    };
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    let scale = 10u64.pow(decimals);
    let number = if decimals == 0 {
        group_thousands(abs)
    } else {
        format!("{}.{:0width$}", group_thousands(abs / scale), abs % scale, width = decimals as usize)
    };
    let symbol = match cur.as_str() {
        "usd" => Some("$"),
        "eur" => Some("€"),
        "gbp" => Some("£"),
        "jpy" => Some("¥"),
        _ => None,
    };
    match symbol {
        Some(s) => format!("{sign}{s}{number}"),
        None => format!("{sign}{number} {}", cur.to_ascii_uppercase()),
    }
}

fn s<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_str()
}

fn i(v: &Value, path: &[&str]) -> Option<i64> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_i64()
}

fn money(v: &Value, key: &str) -> Option<String> {
    Some(format_amount(i(v, &[key])?, s(v, &["currency"])?))
}

/// A subscription's price: nickname or product, amount per interval.
fn price_text(price: &Value) -> Option<(String, i64)> {
    let amount = price.get("unit_amount").and_then(Value::as_i64)?;
    let currency = s(price, &["currency"]).unwrap_or("usd");
    let interval = s(price, &["recurring", "interval"]).unwrap_or("period");
    let count = i(price, &["recurring", "interval_count"]).unwrap_or(1);
    let per = if count > 1 { format!("{count} {interval}s") } else { interval.to_string() };
    let name =
        s(price, &["nickname"]).or_else(|| s(price, &["product"])).or_else(|| s(price, &["id"])).unwrap_or("plan");
    Some((format!("{name} ({}/{per})", format_amount(amount, currency)), amount))
}

fn sub_price(sub: &Value) -> Option<&Value> {
    sub.get("items")?.get("data")?.get(0)?.get("price").or_else(|| sub.get("plan"))
}

/// The event's readable form: kind, severity, title, text, user, fields, link.
pub fn describe(event: &Value) -> Option<Value> {
    let kind = s(event, &["type"])?;
    let obj = event.get("data")?.get("object")?;
    let prev = event.get("data").and_then(|d| d.get("previous_attributes"));
    let live = event.get("livemode").and_then(Value::as_bool).unwrap_or(false);
    let dashboard = if live { "https://dashboard.stripe.com" } else { "https://dashboard.stripe.com/test" };
    let customer = s(obj, &["customer"]);
    let mut fields = Map::new();
    if let Some(c) = customer {
        fields.insert("customer".into(), json!(c));
    }
    let (severity, title, user, link): (&str, String, Option<&str>, Option<String>) = match kind {
        "checkout.session.completed" => {
            let email = s(obj, &["customer_details", "email"]).or_else(|| s(obj, &["customer_email"]));
            let amount = money(obj, "amount_total").unwrap_or_else(|| "an order".into());
            let who = email.map(|e| format!(" from {e}")).unwrap_or_default();
            fields.insert("amount".into(), json!(amount));
            if let Some(mode) = s(obj, &["mode"]) {
                fields.insert("mode".into(), json!(mode));
            }
            ("info", format!("Checkout completed: {amount}{who}"), email, None)
        }
        "invoice.paid" => {
            let email = s(obj, &["customer_email"]);
            let amount = money(obj, "amount_paid").unwrap_or_default();
            let who = email.map(|e| format!(" from {e}")).unwrap_or_default();
            fields.insert("amount".into(), json!(amount));
            if let Some(n) = s(obj, &["number"]) {
                fields.insert("invoice".into(), json!(n));
            }
            let link = s(obj, &["id"]).map(|id| format!("{dashboard}/invoices/{id}"));
            ("info", format!("Invoice paid: {amount}{who}"), email, link)
        }
        "invoice.payment_failed" => {
            let email = s(obj, &["customer_email"]);
            let amount = money(obj, "amount_due").unwrap_or_default();
            let who = email.map(|e| format!(" for {e}")).unwrap_or_default();
            fields.insert("amount".into(), json!(amount));
            if let Some(n) = i(obj, &["attempt_count"]) {
                fields.insert("attempt".into(), json!(n));
            }
            if let Some(t) = i(obj, &["next_payment_attempt"]).and_then(|t| DateTime::from_timestamp(t, 0)) {
                fields.insert("next_attempt".into(), json!(t.to_rfc3339()));
            }
            let link = s(obj, &["id"]).map(|id| format!("{dashboard}/invoices/{id}"));
            ("warning", format!("Payment failed: {amount}{who}"), email, link)
        }
        "customer.subscription.created" | "customer.subscription.deleted" => {
            let plan = sub_price(obj).and_then(price_text).map(|(t, _)| t).unwrap_or_else(|| "a plan".into());
            fields.insert("plan".into(), json!(plan));
            if let Some(st) = s(obj, &["status"]) {
                fields.insert("status".into(), json!(st));
            }
            let link = s(obj, &["id"]).map(|id| format!("{dashboard}/subscriptions/{id}"));
            let who = customer.map(|c| format!(" for {c}")).unwrap_or_default();
            if kind.ends_with("created") {
                ("info", format!("New subscription: {plan}{who}"), None, link)
            } else {
                ("warning", format!("Subscription canceled: {plan}{who}"), None, link)
            }
        }
        "customer.subscription.updated" => {
            let now = sub_price(obj).and_then(price_text);
            let before = prev.and_then(sub_price).and_then(price_text);
            let who = customer.map(|c| format!(" for {c}")).unwrap_or_default();
            let link = s(obj, &["id"]).map(|id| format!("{dashboard}/subscriptions/{id}"));
            let title = match (&before, &now) {
                (Some((b, ba)), Some((n, na))) => {
                    let change = if na > ba {
                        "Upgrade"
                    } else if na < ba {
                        "Downgrade"
                    } else {
                        "Plan change"
                    };
                    fields.insert("from".into(), json!(b));
                    fields.insert("to".into(), json!(n));
                    format!("{change}: {b} → {n}{who}")
                }
                _ => {
                    let mut changes = Vec::new();
                    if let Some(p) = prev.and_then(Value::as_object) {
                        if let (Some(old), Some(new)) = (p.get("status").and_then(Value::as_str), s(obj, &["status"])) {
                            changes.push(format!("status {old} → {new}"));
                        }
                        if p.contains_key("cancel_at_period_end") {
                            if obj.get("cancel_at_period_end").and_then(Value::as_bool) == Some(true) {
                                changes.push("will cancel at the end of the period".to_string());
                            } else {
                                changes.push("cancellation withdrawn".to_string());
                            }
                        }
                        if p.contains_key("quantity") {
                            if let (Some(o), Some(n)) = (i(p.get("quantity")?, &[]), i(obj, &["quantity"])) {
                                changes.push(format!("quantity {o} → {n}"));
                            }
                        }
                    }
                    if changes.is_empty() {
                        changes.push("updated".to_string());
                    }
                    if let Some((n, _)) = &now {
                        fields.insert("plan".into(), json!(n));
                    }
                    format!("Subscription{who}: {}", changes.join(", "))
                }
            };
            ("info", title, None, link)
        }
        "charge.refunded" => {
            let email = s(obj, &["billing_details", "email"]).or_else(|| s(obj, &["receipt_email"]));
            let refunded = money(obj, "amount_refunded").unwrap_or_default();
            let total = money(obj, "amount").unwrap_or_default();
            let who = email.map(|e| format!(" to {e}")).unwrap_or_default();
            fields.insert("refunded".into(), json!(refunded));
            fields.insert("charged".into(), json!(total));
            let link = s(obj, &["id"]).map(|id| format!("{dashboard}/payments/{id}"));
            ("warning", format!("Refund: {refunded} of {total}{who}"), email, link)
        }
        "charge.dispute.created" => {
            let amount = money(obj, "amount").unwrap_or_default();
            let reason = s(obj, &["reason"]).unwrap_or("unknown").replace('_', " ");
            fields.insert("amount".into(), json!(amount));
            fields.insert("reason".into(), json!(reason));
            if let Some(t) = i(obj, &["evidence_details", "due_by"]).and_then(|t| DateTime::from_timestamp(t, 0)) {
                fields.insert("evidence_due_by".into(), json!(t.to_rfc3339()));
            }
            let link = s(obj, &["id"]).map(|id| format!("{dashboard}/disputes/{id}"));
            ("error", format!("Dispute opened: {amount} (reason: {reason})"), None, link)
        }
        _ => return None,
    };
    let mut out = json!({"kind": format!("stripe.{kind}"), "severity": severity, "title": title, "fields": fields});
    if let Some(u) = user {
        out["user"] = json!(u);
    }
    if let Some(l) = link {
        out["link"] = json!(l);
    }
    Some(out)
}

/// An event for a Stripe event type tocsin has no message for: stored, not sent.
pub fn generic(event: &Value) -> Value {
    let kind = s(event, &["type"]).unwrap_or("unknown");
    let kind: String =
        kind.chars().map(|c| if matches!(c, 'a'..='z' | '0'..='9' | '_' | '.' | '-') { c } else { '_' }).collect();
    json!({"kind": format!("stripe.{kind}"), "severity": "info", "title": format!("Stripe event {kind}")})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts() {
        assert_eq!(format_amount(4900, "usd"), "$49.00");
        assert_eq!(format_amount(1500, "JPY"), "¥1,500");
        assert_eq!(format_amount(123456789, "eur"), "€1,234,567.89");
        assert_eq!(format_amount(1000, "kwd"), "1.000 KWD");
        assert_eq!(format_amount(5, "chf"), "0.05 CHF");
    }

    #[test]
    fn signatures() {
        let now = Utc::now();
        let t = now.timestamp();
        let secrets = [Secret::new("whsec_old"), Secret::new("whsec_new")];
        let good = format!("t={t},v1={},v1={}", "00".repeat(32), sign("whsec_new", t, b"{}"));
        assert_eq!(verify(Some(&good), b"{}", &secrets, std::time::Duration::from_secs(300), now), Ok(()));
        assert_eq!(
            verify(Some(&good), b"{ }", &secrets, std::time::Duration::from_secs(300), now),
            Err(SignatureError::NoMatch)
        );
        let old = t - 301;
        let stale = format!("t={old},v1={}", sign("whsec_old", old, b"{}"));
        assert_eq!(
            verify(Some(&stale), b"{}", &secrets, std::time::Duration::from_secs(300), now),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify(Some("garbage"), b"{}", &secrets, std::time::Duration::from_secs(300), now),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn upgrade() {
        let ev = json!({"type": "customer.subscription.updated", "data": {
            "object": {"customer": "cus_1", "items": {"data": [{"price": {"nickname": "Pro", "unit_amount": 4900, "currency": "usd", "recurring": {"interval": "month"}}}]}},
            "previous_attributes": {"items": {"data": [{"price": {"nickname": "Basic", "unit_amount": 900, "currency": "usd", "recurring": {"interval": "month"}}}]}}}});
        let d = describe(&ev).unwrap();
        assert_eq!(d["title"], "Upgrade: Basic ($9.00/month) → Pro ($49.00/month) for cus_1");
    }
}
