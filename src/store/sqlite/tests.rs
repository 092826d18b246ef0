use super::*;
use crate::event::{parse_event, AlertStatus};
use crate::message::MessageStatus;
use crate::store::NewDelivery;
use serde_json::json;

async fn store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let store = SqliteStore::open_store(path.to_str().unwrap()).await.unwrap();
    (dir, store)
}

fn event(body: serde_json::Value, at: &str) -> Event {
    parse_event(&body, "", "test", at.parse().unwrap()).unwrap()
}

fn delivery(destination: &str, e: &Event) -> NewDelivery {
    NewDelivery {
        destination: destination.into(),
        notifier: destination.into(),
        group_key: e.id.to_string(),
        not_before: e.received_at,
        message: Message {
            title: e.kind.clone(),
            text: String::new(),
            severity: e.severity,
            status: MessageStatus::Event,
            fields: vec![],
            link: None,
            channel: None,
            group_key: e.id.to_string(),
            group_labels: Default::default(),
            events: vec![e.clone()],
            truncated: 0,
            mention: None,
        },
    }
}

#[tokio::test]
async fn search_filters_and_pages_newest_first() {
    let (_dir, store) = store().await;
    let mut batch = Vec::new();
    for i in 0..25 {
        let user = if i % 2 == 0 { "alice@example.com" } else { "bob@example.com" };
        let kind = if i % 5 == 0 { "user.login_failed" } else { "user.registered" };
        let e = event(
            json!({"kind": kind, "user": user, "title": format!("event number {i}"), "fields": {"plan": if i == 7 {"enterprise"} else {"free"}}}),
            &format!("2026-11-21T10:{i:02}:00Z"),
        );
        batch.push(NewEvent::plain(e, vec![]));
    }
    store.insert_events(batch).await.unwrap();

    let q = |f: fn(&mut EventQuery)| {
        let mut q = EventQuery { limit: 100, ..Default::default() };
        f(&mut q);
        q
    };
    let alice = store.search_events(&q(|q| q.user = Some("alice@example.com".into()))).await.unwrap();
    assert_eq!(alice.items.len(), 13);
    assert!(alice.items.windows(2).all(|w| w[0].timestamp > w[1].timestamp), "newest first");

    let failed = store.search_events(&q(|q| q.kind = Some("user.login_*".into()))).await.unwrap();
    assert_eq!(failed.items.len(), 5);

    let text = store.search_events(&q(|q| q.q = Some("enterprise".into()))).await.unwrap();
    assert_eq!(text.items.len(), 1);
    assert_eq!(text.items[0].title.as_deref(), Some("event number 7"));

    let window = store
        .search_events(&q(|q| {
            q.since = Some("2026-11-21T10:10:00Z".parse().unwrap());
            q.until = Some("2026-11-21T10:20:00Z".parse().unwrap());
        }))
        .await
        .unwrap();
    assert_eq!(window.items.len(), 10);

    // Paging visits every event exactly once.
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page =
            store.search_events(&EventQuery { limit: 7, cursor: cursor.clone(), ..Default::default() }).await.unwrap();
        seen.extend(page.items.iter().map(|e| e.id));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen.len(), 25);
    seen.dedup();
    assert_eq!(seen.len(), 25);

    assert!(matches!(
        store.search_events(&EventQuery { limit: 5, cursor: Some("garbage!".into()), ..Default::default() }).await,
        Err(StoreError::InvalidCursor)
    ));
    // FTS syntax characters in user input are not errors.
    store.search_events(&q(|q| q.q = Some("\"unbalanced AND ( OR".into()))).await.unwrap();
}

#[tokio::test]
async fn outbox_lifecycle_and_durability() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let path = path.to_str().unwrap();
    {
        let store = SqliteStore::open_store(path).await.unwrap();
        let mut batch = Vec::new();
        for i in 0..3 {
            let e = event(json!({"kind": "a", "title": format!("m{i}")}), "2026-11-21T10:00:00Z");
            let d = vec![delivery("slack", &e), delivery("ops", &e)];
            batch.push(NewEvent::plain(e, d));
        }
        store.insert_events(batch).await.unwrap();
        store.close().await;
    }
    // Reopened: everything committed before is there.
    let store = SqliteStore::open_store(path).await.unwrap();
    let mut dests = store.pending_destinations().await.unwrap();
    dests.sort();
    assert_eq!(dests, ["ops", "slack"]);
    let now = Utc::now();
    let pending = store.due_deliveries("slack", now, 10).await.unwrap();
    let titles: Vec<_> = pending.iter().map(|p| p.message.events[0].title.clone().unwrap()).collect();
    assert_eq!(titles, ["m0", "m1", "m2"], "in order");
    let one = |e: &OutboxEntry| Batch {
        destination: "slack".into(),
        group_key: Some(e.group_key.clone()),
        due_by: now,
        up_to_id: e.id,
    };

    store.mark_delivered(&one(&pending[0]), Utc::now()).await.unwrap();
    store.record_attempt(pending[1].id, 1, "slack answered 500").await.unwrap();
    store.dead_letter(&one(&pending[2]), 3, "slack answered 410 channel_is_archived", Utc::now()).await.unwrap();

    let left = store.due_deliveries("slack", now, 10).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].attempts, 1);
    let dead = store.dead_letters(10, None).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].last_error.as_deref(), Some("slack answered 410 channel_is_archived"));
    assert_eq!(store.outbox_counts().await.unwrap(), OutboxCounts { pending: 4, dead: 1 });
}

#[tokio::test]
async fn concurrent_writers_share_commits() {
    let (_dir, store) = store().await;
    let store = std::sync::Arc::new(store);
    let mut tasks = Vec::new();
    for i in 0..200 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let e = event(json!({"kind": "c", "user": format!("u{i}")}), "2026-11-21T10:00:00Z");
            store.insert_events(vec![NewEvent::plain(e, vec![])]).await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let all = store.search_events(&EventQuery { limit: 1000, ..Default::default() }).await.unwrap();
    assert_eq!(all.items.len(), 200);
}

#[tokio::test]
async fn prune_removes_old_events_and_their_search_entries() {
    let (_dir, store) = store().await;
    let old = parse_event(&json!({"kind": "a", "title": "ancient"}), "", "t", "2026-01-01T00:00:00Z".parse().unwrap())
        .unwrap();
    let new = parse_event(&json!({"kind": "a", "title": "recent"}), "", "t", "2026-11-21T00:00:00Z".parse().unwrap())
        .unwrap();
    store.insert_events(vec![NewEvent::plain(old, vec![]), NewEvent::plain(new, vec![])]).await.unwrap();
    let pruned = store.prune("2026-06-01T00:00:00Z".parse().unwrap()).await.unwrap();
    assert_eq!(pruned.events, 1);
    let all = store.search_events(&EventQuery { limit: 10, ..Default::default() }).await.unwrap();
    assert_eq!(all.items.len(), 1);
    let hits =
        store.search_events(&EventQuery { limit: 10, q: Some("ancient".into()), ..Default::default() }).await.unwrap();
    assert!(hits.items.is_empty());
}

#[tokio::test]
async fn events_after_retention_emptied_the_store_are_searchable() {
    let (_dir, store) = store().await;
    let at = |s: &str| -> DateTime<Utc> { s.parse().unwrap() };
    let old: Vec<NewEvent> = ["alpha", "bravo", "charlie"]
        .iter()
        .map(|t| {
            NewEvent::plain(
                parse_event(&json!({"kind": "a", "title": t}), "", "t", at("2026-01-01T00:00:00Z")).unwrap(),
                vec![],
            )
        })
        .collect();
    store.insert_events(old).await.unwrap();
    let search = |q: &str| EventQuery { limit: 10, q: Some(q.into()), ..Default::default() };
    assert_eq!(store.search_events(&search("bravo")).await.unwrap().items.len(), 1, "indexed");
    assert_eq!(store.prune(at("2026-06-01T00:00:00Z")).await.unwrap().events, 3);

    for title in ["delta", "echo", "foxtrot", "golf"] {
        let e = parse_event(&json!({"kind": "a", "title": title}), "", "t", at("2026-11-21T00:00:00Z")).unwrap();
        store.insert_events(vec![NewEvent::plain(e, vec![])]).await.unwrap();
    }
    for title in ["delta", "echo", "foxtrot", "golf"] {
        let hits = store.search_events(&search(title)).await.unwrap();
        assert_eq!(hits.items.len(), 1, "{title} is found");
        assert_eq!(hits.items[0].title.as_deref(), Some(title));
    }
    assert!(store.search_events(&search("bravo")).await.unwrap().items.is_empty());
}

#[tokio::test]
async fn a_text_search_that_cannot_wait_for_the_index_says_what_it_could_not_see() {
    let (_dir, mut store) = store().await;
    let n = 900;
    let batch = (0..n)
        .map(|i| {
            NewEvent::plain(event(json!({"kind": "k", "title": format!("needle {i}")}), "2026-11-21T10:00:00Z"), vec![])
        })
        .collect();
    store.insert_events(batch).await.unwrap();
    let q = EventQuery { limit: 1000, q: Some("needle".into()), ..Default::default() };

    // No wait at all: whatever is indexed is found, the rest is counted as not yet searchable.
    store.text_search_wait = Duration::ZERO;
    let hurried = store.search_events(&q).await.unwrap();
    let found = hurried.items.len() as u64;
    assert!(found <= n && found + hurried.index_lag >= n, "found {found}, lag {}", hurried.index_lag);

    // Waiting as long as it takes: every event, nothing left out.
    store.text_search_wait = TEXT_SEARCH_WAIT;
    let mut seen = 0;
    let mut page = store.search_events(&q).await.unwrap();
    loop {
        assert_eq!(page.index_lag, 0);
        seen += page.items.len() as u64;
        let Some(cursor) = page.next_cursor.clone() else { break };
        page = store.search_events(&EventQuery { cursor: Some(cursor), ..q.clone() }).await.unwrap();
    }
    assert_eq!(seen, n);
}

#[tokio::test]
async fn batches_count_and_settle_a_whole_group() {
    let (_dir, store) = store().await;
    let t0: DateTime<Utc> = "2026-11-21T10:00:00Z".parse().unwrap();
    let mut batch = Vec::new();
    for i in 0..30 {
        let kind = if i < 20 { "api.error" } else { "api.timeout" };
        let e = event(json!({"kind": kind, "user": format!("u{}", i % 3)}), "2026-11-21T10:00:00Z");
        let mut d = delivery("slack", &e);
        d.group_key = if i % 2 == 0 { "even".into() } else { "odd".into() };
        d.not_before = if i < 25 { t0 } else { t0 + chrono::Duration::minutes(5) };
        batch.push(NewEvent::plain(e, vec![d]));
    }
    store.insert_events(batch).await.unwrap();
    let all = Batch { destination: "slack".into(), group_key: None, due_by: t0, up_to_id: i64::MAX };
    let s = store.batch_summary(&all).await.unwrap();
    assert_eq!(s.count, 25);
    assert_eq!(s.by_kind, [("api.error".to_string(), 20), ("api.timeout".to_string(), 5)]);
    assert_eq!(s.top_users.len(), 3);
    assert_eq!(store.next_due("slack").await.unwrap(), Some(t0));

    let even = Batch { group_key: Some("even".into()), up_to_id: s.max_id, ..all.clone() };
    assert_eq!(store.batch_summary(&even).await.unwrap().count, 13);
    assert_eq!(store.batch_entries(&even, 5).await.unwrap().len(), 5);
    store.mark_delivered(&even, Utc::now()).await.unwrap();
    assert_eq!(store.batch_summary(&all).await.unwrap().count, 12);
    // Not yet due rows are untouched and tell when to look again.
    store.mark_delivered(&Batch { up_to_id: i64::MAX, ..all.clone() }, Utc::now()).await.unwrap();
    assert_eq!(store.next_due("slack").await.unwrap(), Some(t0 + chrono::Duration::minutes(5)));
}

/// The alert `e` starts, in `status`, last changed at `at`.
fn alert_of(e: &Event, status: AlertStatus, at: DateTime<Utc>) -> crate::alert::Alert {
    crate::alert::Alert {
        fingerprint: e.fingerprint.clone(),
        kind: e.kind.clone(),
        severity: e.severity,
        labels: (&e.labels).into(),
        status,
        started_at: at,
        updated_at: at,
        resolved_at: None,
        title: None,
        last_event_id: e.id,
        transitions: vec![],
        flapping: false,
        notified: Default::default(),
        announced: true,
        muted_by: None,
        acknowledged_by: None,
    }
}

#[tokio::test]
async fn alerts_and_silences_round_trip() {
    let (_dir, store) = store().await;
    let e = event(
        json!({"kind": "es.unreachable", "status": "firing", "labels": {"cluster": "a"}}),
        "2026-11-21T10:00:00Z",
    );
    let alert = alert_of(&e, AlertStatus::Firing, e.timestamp);
    store.insert_events(vec![NewEvent::new(e.clone(), vec![], Some(alert.clone()))]).await.unwrap();
    let page = store.firing_alerts(10, None).await.unwrap();
    assert_eq!((page.total, page.alerts.len()), (1, 1));
    assert_eq!(store.alert_event(&alert.fingerprint).await.unwrap().unwrap().id, e.id);
    let mut resolved = alert.clone();
    resolved.status = AlertStatus::Resolved;
    store.enqueue(vec![], vec![resolved]).await.unwrap();
    assert_eq!(store.firing_alerts(10, None).await.unwrap().total, 0);
    // The event saved with the alert survives a state-only save.
    assert!(store.alert_event(&alert.fingerprint).await.unwrap().is_some());

    let now = Utc::now();
    let silence = Silence {
        id: uuid::Uuid::now_v7(),
        matchers: [("kind".to_string(), "es.*".to_string())].into(),
        starts_at: now,
        ends_at: now + chrono::Duration::hours(2),
        comment: "maintenance".into(),
        created_by: "ops".into(),
        created_at: now,
    };
    store.insert_silence(&silence).await.unwrap();
    assert_eq!(store.silences(now).await.unwrap().len(), 1);
    let expired = store.expire_silence(silence.id, now + chrono::Duration::minutes(1)).await.unwrap();
    assert!(!expired.is_active(now + chrono::Duration::minutes(2)));
    assert!(store.silences(now + chrono::Duration::minutes(2)).await.unwrap().is_empty());
    assert!(matches!(store.expire_silence(uuid::Uuid::nil(), now).await, Err(StoreError::NotFound)));
}

#[tokio::test]
async fn prune_removes_quiet_alerts_ended_silences_stale_issues_and_old_samples() {
    use crate::store::samples::{IndexSample, SampleStore};
    use crate::store::sources::{ErrorIssue, SourceStore};
    let (_dir, store) = store().await;
    let cutoff: DateTime<Utc> = "2026-06-01T00:00:00Z".parse().unwrap();
    let old: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
    let recent: DateTime<Utc> = "2026-11-01T00:00:00Z".parse().unwrap();

    // Alerts: firing since long ago (kept), resolved long ago (pruned), resolved lately (kept).
    let alert = |name: &str, status: AlertStatus, at: DateTime<Utc>| {
        let e = event(json!({"kind": name, "status": "firing"}), &at.to_rfc3339());
        let alert = alert_of(&e, status, at);
        NewEvent::new(e, vec![], Some(alert))
    };
    store
        .insert_events(vec![
            alert("still.firing", AlertStatus::Firing, old),
            alert("long.resolved", AlertStatus::Resolved, old),
            alert("lately.resolved", AlertStatus::Resolved, recent),
        ])
        .await
        .unwrap();

    let silence = |ends_at: DateTime<Utc>| Silence {
        id: uuid::Uuid::now_v7(),
        matchers: [("kind".to_string(), "x".to_string())].into(),
        starts_at: old,
        ends_at,
        comment: String::new(),
        created_by: "ops".into(),
        created_at: old,
    };
    store.insert_silence(&silence(old + chrono::Duration::hours(1))).await.unwrap();
    let lasting = silence(recent);
    store.insert_silence(&lasting).await.unwrap();

    for (fingerprint, seen) in [("stale", old), ("lively", recent)] {
        let issue = ErrorIssue {
            fingerprint: fingerprint.into(),
            first_seen: old,
            last_seen: seen,
            count: 1,
            resolved_at: None,
            window_start: seen,
            window_count: 1,
            spike_notified: false,
        };
        store.update_error_issue(fingerprint, Box::new(move |_| issue)).await.unwrap();
    }

    let sample = IndexSample { index: "logs".into(), bytes: 100, docs: 1 };
    for day in 0..40 {
        let at = recent - chrono::Duration::days(day);
        store.insert_index_samples("prod", at, std::slice::from_ref(&sample)).await.unwrap();
    }

    let pruned = store.prune(cutoff).await.unwrap();
    assert_eq!(pruned, Pruned { events: 2, alerts: 1, silences: 1, error_issues: 1 });
    let firing = store.firing_alerts(10, None).await.unwrap();
    assert_eq!(firing.alerts.len(), 1, "a firing alert is kept however old");
    let kept = store.load_alerts(old).await.unwrap();
    let mut kinds: Vec<_> = kept.iter().map(|a| a.kind.as_str()).collect();
    kinds.sort();
    assert_eq!(kinds, ["lately.resolved", "still.firing"]);
    let silences = store.silences(old).await.unwrap();
    assert_eq!(silences.iter().map(|s| s.id).collect::<Vec<_>>(), [lasting.id]);
    assert!(store.error_issue("stale").await.unwrap().is_none());
    assert!(store.error_issue("lively").await.unwrap().is_some());

    let removed = store.prune_index_samples(recent - chrono::Duration::days(30)).await.unwrap();
    assert_eq!(removed, 9, "samples of days 31..=39 before the last one");
    let baselines = store
        .index_baselines("prod", recent - chrono::Duration::days(60), recent + chrono::Duration::days(1))
        .await
        .unwrap();
    assert_eq!(baselines["logs"].samples, 31);
}

fn all_events() -> EventQuery {
    EventQuery { limit: 1000, ..Default::default() }
}

#[tokio::test]
async fn what_the_log_acknowledged_but_sqlite_never_saw_is_applied_at_the_next_open() {
    use crate::store::journal::{Entry, Journal, JournalDir};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    // A run that made a write durable and died before applying it.
    SqliteStore::open_store(path.to_str().unwrap()).await.unwrap().close().await;
    let journal_dir = JournalDir::open(&path).unwrap().expect("the closed store released the log");
    let next = journal_dir.next_segment(Default::default()).unwrap();
    let journal = Journal::start(journal_dir, next, |_| true).unwrap();
    let e = event(json!({"kind": "user.registered", "title": "never applied"}), "2026-11-21T10:00:00Z");
    let owed = delivery("hook", &e);
    journal.append(Entry::Events(vec![NewEvent::plain(e, vec![owed])])).await.unwrap();
    journal.close().await;

    let store = SqliteStore::open_store(path.to_str().unwrap()).await.unwrap();
    let found = store.search_events(&all_events()).await.unwrap();
    assert_eq!(found.items.iter().map(|e| e.title.as_deref()).collect::<Vec<_>>(), [Some("never applied")]);
    assert_eq!(store.pending_destinations().await.unwrap(), ["hook"]);
    store.close().await;

    // Applied once: a third open finds one event, not two.
    let store = SqliteStore::open_store(path.to_str().unwrap()).await.unwrap();
    assert_eq!(store.search_events(&all_events()).await.unwrap().items.len(), 1);
    store.close().await;
}

#[tokio::test]
async fn a_second_process_writes_directly_and_the_first_reads_it() {
    let (dir, owner) = store().await;
    let path = dir.path().join("t.db");
    let other = SqliteStore::open_store(path.to_str().unwrap()).await.unwrap();
    assert!(owner.journal.is_some() && other.journal.is_none(), "one owner of the log at a time");
    let e = event(json!({"kind": "check.ok", "title": "from the command line"}), "2026-11-21T10:00:00Z");
    other.insert_events(vec![NewEvent::plain(e, vec![])]).await.unwrap();
    let e = event(json!({"kind": "check.ok", "title": "from the daemon"}), "2026-11-21T10:01:00Z");
    owner.insert_events(vec![NewEvent::plain(e, vec![])]).await.unwrap();
    let seen = owner.search_events(&all_events()).await.unwrap();
    assert_eq!(seen.items.len(), 2);
    other.close().await;
    owner.close().await;
}

#[tokio::test]
async fn applied_segments_are_removed_and_nothing_is_lost_across_them() {
    let (dir, store) = store().await;
    let path = dir.path().join("t.db");
    // A few megabytes of log: several segments at the test segment size.
    for round in 0..40 {
        let batch = (0..100)
            .map(|i| {
                let e = event(
                    json!({"kind": "bulk.load", "title": format!("r{round} e{i}"), "text": "x".repeat(400)}),
                    "2026-11-21T10:00:00Z",
                );
                NewEvent::plain(e, vec![])
            })
            .collect();
        store.insert_events(batch).await.unwrap();
    }
    assert_eq!(store.outbox_counts().await.unwrap().pending, 0);
    let segments = || {
        std::fs::read_dir(dir.path().join("t.db.journal"))
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".log"))
            .filter(|e| e.as_ref().unwrap().file_name() != "spare.log")
            .count()
    };
    let newest = std::fs::read_dir(dir.path().join("t.db.journal"))
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().to_string_lossy().strip_suffix(".log")?.parse::<u64>().ok())
        .max()
        .unwrap();
    assert!(newest >= 3, "the log moved through several segments (now at {newest})");
    assert!(segments() <= 2, "applied segments are removed, {} left", segments());
    store.close().await;
    let store = SqliteStore::open_store(path.to_str().unwrap()).await.unwrap();
    let q = EventQuery { limit: 1, kind: Some("bulk.load".into()), ..Default::default() };
    let mut seen = 0;
    let mut page = store.search_events(&q).await.unwrap();
    loop {
        seen += page.items.len();
        let Some(cursor) = page.next_cursor.clone() else { break };
        page = store.search_events(&EventQuery { cursor: Some(cursor), limit: 1000, ..q.clone() }).await.unwrap();
    }
    assert_eq!(seen, 4000);
    store.close().await;
}

#[tokio::test]
async fn counting_events_sees_every_accepted_one() {
    use crate::store::sources::SourceStore;
    let (_dir, store) = store().await;
    let at = "2026-11-21T10:00:00Z";
    for round in 0..20 {
        let batch = (0..200)
            .map(|i| {
                NewEvent::plain(event(json!({"kind": "rate.counted", "title": format!("{round}/{i}")}), at), vec![])
            })
            .collect();
        store.insert_events(batch).await.unwrap();
        let since = at.parse::<DateTime<Utc>>().unwrap() - chrono::Duration::hours(1);
        let until = since + chrono::Duration::hours(2);
        let counted = store.count_events(&["rate.*".to_string()], since, until).await.unwrap();
        assert_eq!(counted, 200 * (round + 1), "right after the 202 of round {round}");
    }
    store.close().await;
}

#[test]
fn an_oversized_wal_is_cut_only_when_quiet_and_all_copied() {
    let big = WAL_CUT_ABOVE + 1;
    assert!(wal_worth_cutting(0, 500, 500, true, big));
    assert!(!wal_worth_cutting(0, 500, 500, true, WAL_CUT_ABOVE), "small enough");
    assert!(!wal_worth_cutting(0, 500, 500, false, big), "still being written");
    assert!(!wal_worth_cutting(0, 500, 480, true, big), "not all copied yet");
    assert!(!wal_worth_cutting(1, 500, 500, true, big), "a reader or writer in the way");
}
