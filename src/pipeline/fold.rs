//! Folding: many due messages for one destination become one message.
//!
//! Three shapes: a **group** (Alertmanager's grouping, and repeats of one fingerprint shown
//! as "×37 in the last 5 min"), a **digest** (one summary per period), and a **backlog**
//! (more due than the destination's rate limit allows: one summary instead of a queue).
//! Counts come from the store's summary of the whole batch, so a fold of 10,000 rows lists the
//! first few and counts the rest.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use crate::event::Severity;
use crate::message::{Field, Message, MessageStatus};
use crate::store::{BatchSummary, OutboxEntry};

/// Items listed in a folded message before "and N more".
pub const LISTED: usize = 10;
/// A backlog folded to respect a rate limit lists more, in order: it stands in for messages
/// that would each have been sent.
pub const BACKLOG_LISTED: usize = 50;

pub enum Fold {
    Group,
    Digest,
    Backlog,
}

/// `9990` → `9,990`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn span_text(summary: &BatchSummary) -> String {
    let minutes = match (summary.first_at, summary.last_at) {
        (Some(first), Some(last)) => ((last - first).num_seconds() as f64 / 60.0).ceil().max(1.0) as i64,
        _ => 1,
    };
    if minutes >= 120 {
        format!("{} h", (minutes + 59) / 60)
    } else {
        format!("{minutes} min")
    }
}

fn kinds_line(summary: &BatchSummary) -> String {
    summary.by_kind.iter().map(|(k, n)| format!("{k} ×{}", thousands(*n))).collect::<Vec<_>>().join(", ")
}

fn base(entries: &[OutboxEntry], summary: &BatchSummary) -> Message {
    let first = &entries[0].message;
    let events: Vec<_> = entries.iter().flat_map(|e| e.message.events.iter().cloned()).take(LISTED).collect();
    Message {
        title: String::new(),
        text: String::new(),
        severity: entries.iter().map(|e| e.message.severity).max().unwrap_or(Severity::Info),
        status: MessageStatus::Event,
        fields: Vec::new(),
        link: None,
        // A backlog may fold messages of routes naming different channels: then it names none
        // rather than one of them for all.
        channel: entries.iter().all(|e| e.message.channel == first.channel).then(|| first.channel.clone()).flatten(),
        group_key: first.group_key.clone(),
        group_labels: first.group_labels.clone(),
        truncated: summary.count.saturating_sub(events.len() as u64),
        mention: first.mention.clone(),
        events,
    }
}

/// One line per message: its title, and the first line of its text when it has one.
fn item(message: &Message) -> String {
    let first_line = message.text.lines().next().unwrap_or("").trim();
    if first_line.is_empty() || first_line == message.title {
        message.title.clone()
    } else {
        let short: String = first_line.chars().take(120).collect();
        format!("{}: {short}", message.title)
    }
}

fn list(entries: &[OutboxEntry], total: u64, max: usize) -> String {
    let mut text = String::new();
    for e in entries.iter().take(max) {
        let _ = writeln!(text, "• {}", item(&e.message));
    }
    let listed = entries.len().min(max) as u64;
    if total > listed {
        let _ = writeln!(text, "and {} more", thousands(total - listed));
    }
    text.trim_end().to_string()
}

/// One message for a batch. `entries` are the first rows of the batch (oldest first), never
/// empty; `summary` counts all of it. `None` when there is nothing to tell: every alert in it
/// fired and resolved before its firing was sent (as Alertmanager, no "resolved" for a firing
/// nobody saw).
pub fn fold(shape: Fold, entries: &[OutboxEntry], summary: &BatchSummary) -> Option<Message> {
    assert!(!entries.is_empty(), "a fold needs at least one message");
    if summary.count <= 1 && entries.len() == 1 {
        return Some(entries[0].message.clone());
    }
    match shape {
        Fold::Group => fold_group(entries, summary),
        Fold::Digest => Some(digest(entries, summary)),
        Fold::Backlog => Some(backlog(entries, summary)),
    }
}

fn fold_group(entries: &[OutboxEntry], summary: &BatchSummary) -> Option<Message> {
    let is_alert = |m: &Message| m.status != MessageStatus::Event;
    if entries.iter().all(|e| is_alert(&e.message)) {
        return fold_alerts(entries, summary);
    }
    let fingerprint = |e: &OutboxEntry| e.message.events.first().map(|ev| ev.fingerprint.clone());
    let one_fingerprint = entries.iter().all(|e| fingerprint(e) == fingerprint(&entries[0]));
    // A fingerprint derived from kind and labels alone is shared by different one-off events
    // (each signup of the day): they are repeats only when they also read the same.
    let chosen = entries[0].message.events.first().is_some_and(|ev| !ev.fingerprint_is_derived());
    let reads_the_same =
        |e: &OutboxEntry| e.message.title == entries[0].message.title && e.message.text == entries[0].message.text;
    let repeats = one_fingerprint && (chosen || entries.iter().all(reads_the_same));
    let mut msg = base(entries, summary);
    if repeats && (summary.count as usize == entries.len() || summary.by_kind.len() == 1) {
        // The same thing, again and again: one message with a count instead of N dings.
        let first = &entries[0].message;
        let count = thousands(summary.count.max(entries.len() as u64));
        msg.title = format!("{} (×{count})", first.title);
        msg.text = format!(
            "{}{}×{count} in the last {}",
            first.text,
            if first.text.is_empty() { "" } else { "\n" },
            span_text(summary)
        );
        msg.fields = first.fields.clone();
        msg.link = first.link.clone();
        msg.events.truncate(1);
        msg.truncated = summary.count.saturating_sub(1);
        return Some(msg);
    }
    msg.title = format!("{} events: {}", thousands(summary.count), kinds_line(summary));
    msg.text = list(entries, summary.count, LISTED);
    Some(msg)
}

fn fold_alerts(entries: &[OutboxEntry], summary: &BatchSummary) -> Option<Message> {
    // The latest word on each alert wins; an alert that fired and resolved within the batch was
    // never told, so its "resolved" says nothing anyone saw and is left out.
    let mut latest: BTreeMap<String, (usize, &Message)> = BTreeMap::new();
    let mut fired_here: BTreeSet<&str> = BTreeSet::new();
    for (i, e) in entries.iter().enumerate() {
        if let Some(ev) = e.message.events.first() {
            if e.message.status == MessageStatus::Firing {
                fired_here.insert(&ev.fingerprint);
            }
            latest.insert(ev.fingerprint.clone(), (i, &e.message));
        }
    }
    latest.retain(|fingerprint, (_, m)| {
        !(m.status == MessageStatus::Resolved && fired_here.contains(fingerprint.as_str()))
    });
    let unseen = summary.count.saturating_sub(entries.len() as u64);
    if latest.is_empty() && unseen == 0 {
        return None;
    }
    let mut current: Vec<(usize, &Message)> = latest.into_values().collect();
    current.sort_by_key(|(i, _)| *i);
    if current.len() == 1 && unseen == 0 {
        return Some(current[0].1.clone());
    }
    let firing: Vec<&Message> = current.iter().map(|(_, m)| *m).filter(|m| m.status == MessageStatus::Firing).collect();
    let resolved: Vec<&Message> =
        current.iter().map(|(_, m)| *m).filter(|m| m.status == MessageStatus::Resolved).collect();
    let mut msg = base(entries, summary);
    msg.status = if firing.is_empty() { MessageStatus::Resolved } else { MessageStatus::Firing };
    msg.severity = firing.iter().chain(&resolved).map(|m| m.severity).max().unwrap_or(msg.severity);
    let labels = msg.group_labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ");
    let unseen = summary.count.saturating_sub(entries.len() as u64);
    msg.title = format!(
        "[FIRING:{}{}] {}",
        firing.len() as u64 + if firing.is_empty() { 0 } else { unseen },
        if resolved.is_empty() { String::new() } else { format!(", RESOLVED:{}", resolved.len()) },
        if labels.is_empty() { kinds_line(summary) } else { labels }
    );
    let mut text = String::new();
    for m in firing.iter().take(LISTED) {
        let _ = writeln!(text, "🔥 {}", m.title);
    }
    for m in resolved.iter().take(LISTED.saturating_sub(firing.len().min(LISTED))) {
        let _ = writeln!(text, "✅ {}", m.title);
    }
    let listed = (firing.len() + resolved.len()).min(LISTED) as u64;
    let total = (firing.len() + resolved.len()) as u64 + unseen;
    if total > listed {
        let _ = writeln!(text, "and {} more", thousands(total - listed));
    }
    msg.text = text.trim_end().to_string();
    msg.fields = summary.by_kind.iter().map(|(k, n)| Field { name: k.clone(), value: thousands(*n) }).collect();
    Some(msg)
}

fn digest(entries: &[OutboxEntry], summary: &BatchSummary) -> Message {
    let mut msg = base(entries, summary);
    msg.title = format!("Digest: {} events", thousands(summary.count));
    let mut text = String::from("By kind:\n");
    for (k, n) in &summary.by_kind {
        let _ = writeln!(text, "• {k}: {}", thousands(*n));
    }
    if !summary.top_users.is_empty() {
        text.push_str("Top users:\n");
        for (u, n) in &summary.top_users {
            let _ = writeln!(text, "• {u}: {}", thousands(*n));
        }
    }
    msg.text = text.trim_end().to_string();
    if let (Some(first), Some(last)) = (summary.first_at, summary.last_at) {
        msg.fields.push(Field { name: "first seen".into(), value: first.format("%Y-%m-%d %H:%M:%S UTC").to_string() });
        msg.fields.push(Field { name: "last seen".into(), value: last.format("%Y-%m-%d %H:%M:%S UTC").to_string() });
    }
    msg
}

fn backlog(entries: &[OutboxEntry], summary: &BatchSummary) -> Message {
    let mut msg = base(entries, summary);
    msg.title = format!("{} notifications folded to respect the rate limit", thousands(summary.count));
    msg.text = format!("{}\n{}", kinds_line(summary), list(entries, summary.count, BACKLOG_LISTED));
    msg.events = entries.iter().flat_map(|e| e.message.events.iter().cloned()).take(BACKLOG_LISTED).collect();
    msg.truncated = summary.count.saturating_sub(msg.events.len() as u64);
    msg.group_key = "backlog".into();
    msg
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::parse_event;
    use chrono::Utc;
    use serde_json::json;

    fn entry(id: i64, body: serde_json::Value, status: MessageStatus) -> OutboxEntry {
        let event = parse_event(&body, "", "t", Utc::now()).unwrap();
        OutboxEntry {
            id,
            destination: "d".into(),
            notifier: "n".into(),
            group_key: "g".into(),
            not_before: Utc::now(),
            message: Message {
                title: event.title.clone().unwrap_or(event.kind.clone()),
                text: String::new(),
                severity: event.severity,
                status,
                fields: vec![],
                link: None,
                channel: None,
                group_key: "g".into(),
                group_labels: Default::default(),
                events: vec![event],
                truncated: 0,
                mention: None,
            },
            attempts: 0,
            created_at: Utc::now(),
            last_error: None,
        }
    }

    fn summary(count: u64, kinds: &[(&str, u64)]) -> BatchSummary {
        BatchSummary {
            count,
            max_id: count as i64,
            by_kind: kinds.iter().map(|(k, n)| (k.to_string(), *n)).collect(),
            top_users: vec![],
            first_at: Some(Utc::now() - chrono::Duration::minutes(4)),
            last_at: Some(Utc::now()),
        }
    }

    #[test]
    fn repeats_of_one_fingerprint_become_a_count() {
        let entries: Vec<_> = (0..5)
            .map(|i| entry(i, json!({"kind": "payment.failed", "fingerprint": "f"}), MessageStatus::Event))
            .collect();
        let msg = fold(Fold::Group, &entries, &summary(37, &[("payment.failed", 37)])).unwrap();
        assert_eq!(msg.title, "payment.failed (×37)");
        assert!(msg.text.contains("×37 in the last 4 min"), "{}", msg.text);
    }

    #[test]
    fn different_events_of_one_kind_are_listed_not_counted_as_repeats() {
        // No fingerprint sent: kind and labels derive the same one for every signup.
        let signups: Vec<_> = (0..3)
            .map(|i| {
                let body =
                    json!({"kind": "user.signup", "title": format!("u{i} signed up"), "labels": {"env": "prod"}});
                entry(i, body, MessageStatus::Event)
            })
            .collect();
        let msg = fold(Fold::Group, &signups, &summary(3, &[("user.signup", 3)])).unwrap();
        assert_eq!(msg.title, "3 events: user.signup ×3");
        assert_eq!(msg.text, "• u0 signed up\n• u1 signed up\n• u2 signed up");
        assert_eq!((msg.events.len(), msg.truncated), (3, 0));
        // The same one-off text again and again is still one count.
        let same: Vec<_> = (0..3)
            .map(|i| entry(i, json!({"kind": "disk.full", "title": "disk full on db-1"}), MessageStatus::Event))
            .collect();
        assert_eq!(fold(Fold::Group, &same, &summary(3, &[("disk.full", 3)])).unwrap().title, "disk full on db-1 (×3)");
    }

    #[test]
    fn a_storm_lists_the_first_and_counts_the_rest() {
        let entries: Vec<_> = (0..LISTED as i64 + 5)
            .map(|i| entry(i, json!({"kind": "api.error", "title": format!("error {i}")}), MessageStatus::Event))
            .collect();
        let msg =
            fold(Fold::Group, &entries, &summary(10_000, &[("api.error", 9_000), ("api.timeout", 1_000)])).unwrap();
        assert_eq!(msg.title, "10,000 events: api.error ×9,000, api.timeout ×1,000");
        assert!(msg.text.contains("• error 0") && msg.text.ends_with("and 9,990 more"), "{}", msg.text);
        assert_eq!(msg.truncated, 10_000 - LISTED as u64);
    }

    #[test]
    fn alerts_fold_to_their_latest_state() {
        let fire = entry(
            1,
            json!({"kind": "es.down", "title": "a down", "fingerprint": "a", "status": "firing"}),
            MessageStatus::Firing,
        );
        let resolve = entry(
            2,
            json!({"kind": "es.down", "title": "a back", "fingerprint": "a", "status": "resolved"}),
            MessageStatus::Resolved,
        );
        // Fired and resolved before the firing was sent: nobody saw it, so nothing is said.
        assert!(fold(Fold::Group, &[fire.clone(), resolve.clone()], &summary(2, &[("es.down", 2)])).is_none());
        // Its firing was sent in an earlier message: the resolve alone is told.
        let told = fold(Fold::Group, std::slice::from_ref(&resolve), &summary(1, &[("es.down", 1)])).unwrap();
        assert_eq!((told.status, told.title.as_str()), (MessageStatus::Resolved, "a back"));

        let other = entry(
            3,
            json!({"kind": "es.down", "title": "b down", "fingerprint": "b", "status": "firing"}),
            MessageStatus::Firing,
        );
        let only_b =
            fold(Fold::Group, &[fire, resolve.clone(), other.clone()], &summary(3, &[("es.down", 3)])).unwrap();
        assert_eq!((only_b.status, only_b.title.as_str()), (MessageStatus::Firing, "b down"));
        let both = fold(Fold::Group, &[resolve, other], &summary(2, &[("es.down", 2)])).unwrap();
        assert_eq!(both.status, MessageStatus::Firing);
        assert!(both.title.starts_with("[FIRING:1, RESOLVED:1]"), "{}", both.title);
    }

    #[test]
    fn digest_counts_kinds_and_users() {
        let entries = vec![entry(1, json!({"kind": "user.registered", "user": "a"}), MessageStatus::Event); 2];
        let mut s = summary(120, &[("user.registered", 100), ("user.login", 20)]);
        s.top_users = vec![("alice".into(), 7)];
        let msg = fold(Fold::Digest, &entries, &s).unwrap();
        assert_eq!(msg.title, "Digest: 120 events");
        assert!(msg.text.contains("• user.registered: 100") && msg.text.contains("• alice: 7"));
        assert_eq!(msg.fields.len(), 2);
    }

    #[test]
    fn a_backlog_over_several_channels_names_none_of_them() {
        let in_channel = |id: i64, channel: &str| {
            let mut e = entry(id, json!({"kind": "lab.f", "title": format!("t{id}")}), MessageStatus::Event);
            e.message.channel = Some(channel.to_string());
            e
        };
        let same = fold(Fold::Backlog, &[in_channel(1, "#all"), in_channel(2, "#all")], &summary(2, &[("lab.f", 2)]));
        assert_eq!(same.unwrap().channel.as_deref(), Some("#all"));
        let mixed = fold(Fold::Backlog, &[in_channel(1, "#all"), in_channel(2, "#a")], &summary(2, &[("lab.f", 2)]));
        assert_eq!(mixed.unwrap().channel, None);
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(9_990), "9,990");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
