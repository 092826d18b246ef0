//! Timeline tests: the lifecycle driven with a controlled clock.

use super::*;
use crate::config::load_str;
use crate::event::parse_event;
use crate::message::MessageStatus;
use serde_json::json;

const BASE: &str = r#"
[notifiers.team]
type = "console"
[[routes]]
kinds = ["es.*", "svc.*"]
notifier = "team"
group_wait = "0s"
group_interval = "1m"
repeat_interval = "4h"
[alerts]
flap_threshold = 4
flap_window = "10m"
[[inhibit_rules]]
source_kinds = ["es.unreachable"]
target_kinds = ["es.index_missing"]
equal = ["cluster"]
"#;

struct Timeline {
    config: Config,
    pipeline: Pipeline,
    life: Lifecycle,
    t0: DateTime<Utc>,
}

impl Timeline {
    fn new(extra: &str) -> Timeline {
        let config = load_str(&format!("{BASE}{extra}"), std::path::Path::new("t.toml")).unwrap();
        let pipeline = Pipeline::new(&config).unwrap();
        let life = Lifecycle::new(&config, vec![], vec![]).unwrap();
        Timeline { config, pipeline, life, t0: "2026-11-21T16:00:00Z".parse().unwrap() }
    }

    fn at(&self, secs: i64) -> DateTime<Utc> {
        self.t0 + chrono::Duration::seconds(secs)
    }

    fn send(&self, secs: i64, body: serde_json::Value) -> NewEvent {
        let now = self.at(secs);
        let event = parse_event(&body, "", "test", now).unwrap();
        self.life.process(&self.pipeline, vec![event], now).pop().unwrap()
    }

    fn due(&self, secs: i64) -> Vec<Due> {
        self.life.due(&self.pipeline, self.at(secs)).0
    }
}

fn alert(kind: &str, cluster: &str, status: &str) -> serde_json::Value {
    json!({"kind": kind, "status": status, "severity": "error", "labels": {"cluster": cluster}, "title": format!("{kind} on {cluster}")})
}

#[test]
fn fire_hold_resolve() {
    let tl = Timeline::new("");
    let fired = tl.send(0, alert("es.unreachable", "a", "firing"));
    assert_eq!(fired.deliveries.len(), 1);
    assert_eq!(fired.deliveries[0].not_before, tl.at(0), "no grouping delay by default");
    assert_eq!(fired.deliveries[0].message.status, MessageStatus::Firing);
    assert!(fired.alert.as_ref().unwrap().announced);

    // Still firing: no new ding.
    assert!(tl.send(10, alert("es.unreachable", "a", "firing")).deliveries.is_empty());

    // Resolved: told, after the group interval since the last notification.
    let resolved = tl.send(20, alert("es.unreachable", "a", "resolved"));
    assert_eq!(resolved.deliveries.len(), 1);
    assert_eq!(resolved.deliveries[0].message.status, MessageStatus::Resolved);
    assert_eq!(resolved.deliveries[0].not_before, tl.at(60));
    assert_eq!(resolved.deliveries[0].group_key, fired.deliveries[0].group_key);

    // A resolve for something never announced says nothing.
    assert!(tl.send(30, alert("es.unreachable", "zzz", "resolved")).deliveries.is_empty());
}

#[test]
fn repeats_while_firing() {
    let tl = Timeline::new("");
    tl.send(0, alert("svc.down", "a", "firing"));
    assert!(tl.due(4 * 3600 - 1).is_empty());
    let due = tl.due(4 * 3600);
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].notice, Notice::Repeat);
    assert_eq!(due[0].destinations.as_deref(), Some(&["team".to_string()][..]));
    // Rendering it records the repeat, so the next one is 4h later.
    let event = parse_event(&alert("svc.down", "a", "firing"), "", "t", tl.at(0)).unwrap();
    let (deliveries, _) = tl.life.render_due(&tl.pipeline, vec![(due[0].clone(), event)], tl.at(4 * 3600));
    assert_eq!(deliveries.len(), 1);
    assert!(deliveries[0].message.text.contains("Still firing"));
    assert!(tl.due(4 * 3600 + 60).is_empty());
    assert_eq!(tl.due(8 * 3600).len(), 1);
}

#[test]
fn repeats_come_oldest_first_whatever_the_maps_order() {
    let tl = Timeline::new("");
    let clusters: Vec<String> = (0..40).map(|i| format!("c{i:02}")).collect();
    // Fired in reverse name order, so neither names nor insertion order give the answer.
    for (i, cluster) in clusters.iter().rev().enumerate() {
        tl.send(i as i64, alert("svc.down", cluster, "firing"));
    }
    let due = tl.due(5 * 3600);
    assert_eq!(due.len(), 40);
    let expected: Vec<String> = clusters.iter().rev().map(|c| fingerprint_of(&tl, c)).collect();
    let got: Vec<String> = due.iter().map(|d| d.fingerprint.clone()).collect();
    assert_eq!(got, expected, "oldest firing first");
}

fn fingerprint_of(tl: &Timeline, cluster: &str) -> String {
    parse_event(&alert("svc.down", cluster, "firing"), "", "t", tl.at(0)).unwrap().fingerprint
}

#[test]
fn silence_mutes_then_releases() {
    let tl = Timeline::new("");
    let silence = Silence {
        id: uuid::Uuid::now_v7(),
        matchers: [("kind".to_string(), "svc.*".to_string())].into(),
        starts_at: tl.at(0),
        ends_at: tl.at(600),
        comment: "deploy".into(),
        created_by: "ops".into(),
        created_at: tl.at(0),
    };
    tl.life.set_silences(vec![silence]);
    let muted = tl.send(10, alert("svc.down", "a", "firing"));
    assert!(muted.deliveries.is_empty());
    assert!(muted.alert.unwrap().muted_by.unwrap().starts_with("silence"));
    assert!(tl.due(300).is_empty(), "still silenced");
    // The silence ends while it still fires: now it is told.
    let due = tl.due(601);
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].notice, Notice::Fired);
}

#[test]
fn announced_resolve_is_delivered_even_when_silenced_meanwhile() {
    let tl = Timeline::new("");
    assert_eq!(tl.send(0, alert("svc.down", "a", "firing")).deliveries.len(), 1);
    tl.life.set_silences(vec![Silence {
        id: uuid::Uuid::now_v7(),
        matchers: [("kind".to_string(), "svc.*".to_string())].into(),
        starts_at: tl.at(0),
        ends_at: tl.at(3600),
        comment: String::new(),
        created_by: String::new(),
        created_at: tl.at(0),
    }]);
    let resolved = tl.send(100, alert("svc.down", "a", "resolved"));
    assert_eq!(resolved.deliveries.len(), 1);
    assert_eq!(resolved.deliveries[0].message.status, MessageStatus::Resolved);
}

#[test]
fn flapping_is_told_once_then_settles() {
    let tl = Timeline::new("");
    let mut dings = 0;
    for (i, status) in ["firing", "resolved", "firing", "resolved", "firing", "resolved", "firing"].iter().enumerate() {
        let out = tl.send(i as i64 * 10, alert("svc.down", "a", status));
        dings += out.deliveries.len();
        if i == 3 {
            assert!(out.alert.as_ref().unwrap().flapping, "4 changes within the window");
            assert!(out.deliveries[0].message.title.starts_with("Flapping:"));
            // Set off by a resolve, yet not a "resolved": that would close incidents.
            assert_eq!(out.deliveries[0].message.status, MessageStatus::Firing);
        }
    }
    // fired, resolved, fired, flapping — then quiet.
    assert_eq!(dings, 4);
    assert!(tl.due(300).is_empty(), "still within the window");
    let settled = tl.due(60 + 600);
    assert_eq!(settled.len(), 1, "one settling notice, not a repeat beside it");
    assert_eq!(settled[0].notice, Notice::Fired, "settled while firing");
}

#[test]
fn unreachable_cluster_inhibits_missing_indices_of_that_cluster() {
    let tl = Timeline::new("");
    tl.send(0, alert("es.unreachable", "a", "firing"));
    let muted = tl.send(1, alert("es.index_missing", "a", "firing"));
    assert!(muted.deliveries.is_empty());
    assert!(muted.alert.unwrap().muted_by.unwrap().starts_with("inhibited by"));
    assert_eq!(tl.send(2, alert("es.index_missing", "b", "firing")).deliveries.len(), 1);
    // Once the cluster is back, the still-missing index is told.
    tl.send(3, alert("es.unreachable", "a", "resolved"));
    let due = tl.due(4);
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].notice, Notice::Fired);
}

#[test]
fn group_wait_gathers_a_group() {
    let tl = Timeline::new(
        "[[routes]]\nkinds = [\"db.*\"]\nnotifier = \"team\"\ngroup_by = [\"cluster\"]\ngroup_wait = \"30s\"\ngroup_interval = \"5m\"\n",
    );
    let a = tl.send(0, alert("db.slow", "a", "firing"));
    let b = tl.send(5, json!({"kind": "db.full", "status": "firing", "labels": {"cluster": "a"}}));
    let c = tl.send(10, alert("db.slow", "b", "firing"));
    assert_eq!(a.deliveries[0].not_before, tl.at(30));
    assert_eq!(b.deliveries[0].not_before, tl.at(30));
    assert_eq!(a.deliveries[0].group_key, b.deliveries[0].group_key);
    assert_ne!(a.deliveries[0].group_key, c.deliveries[0].group_key);
    assert_eq!(c.deliveries[0].not_before, tl.at(40));
    // News for group a after its first notification waits for the group interval.
    let d = tl.send(60, json!({"kind": "db.down", "status": "firing", "labels": {"cluster": "a"}}));
    assert_eq!(d.deliveries[0].not_before, tl.at(330));
}

#[test]
fn one_off_repeats_fold_and_digests_wait_for_the_period() {
    let tl = Timeline::new(
        "[notifiers.stats]\ntype = \"console\"\n[[routes]]\nkinds = [\"stats.*\"]\nnotifier = \"stats\"\ndigest = \"1h\"\n",
    );
    let first = tl.send(0, json!({"kind": "svc.payment_failed", "text": "card declined", "fingerprint": "declined"}));
    let again = tl.send(5, json!({"kind": "svc.payment_failed", "text": "card declined", "fingerprint": "declined"}));
    let other = tl.send(6, json!({"kind": "svc.payment_failed", "text": "card declined"}));
    assert_eq!(first.deliveries[0].not_before, tl.at(0));
    assert_eq!(again.deliveries[0].not_before, tl.at(60), "the same event again waits to be counted");
    assert_eq!(again.deliveries[0].group_key, first.deliveries[0].group_key);
    assert_eq!(other.deliveries[0].not_before, tl.at(6), "without a fingerprint each event is told");
    let same_again = tl.send(8, json!({"kind": "svc.payment_failed", "text": "card declined"}));
    assert_eq!(same_again.deliveries[0].not_before, tl.at(8));
    let digest = tl.send(7, json!({"kind": "stats.signup"}));
    assert_eq!(digest.deliveries[0].not_before, "2026-11-21T17:00:00Z".parse::<DateTime<Utc>>().unwrap());
    assert!(digest.deliveries[0].group_key.ends_with("|digest"));
    let _ = &tl.config;
}

#[test]
fn acknowledge_marks_a_firing_alert_until_it_fires_anew() {
    let t = Timeline::new("");
    let fired = t.send(0, alert("svc.down", "a", "firing"));
    let fp = fired.alert.as_ref().map(|a| a.fingerprint.clone()).unwrap_or_default();
    assert_eq!(t.life.acknowledge("nope", "alice"), None);
    let acked = t.life.acknowledge(&fp, "alice").expect("firing");
    assert_eq!(acked.acknowledged_by.as_deref(), Some("alice"));
    assert_eq!(t.life.alert(&fp).and_then(|a| a.acknowledged_by), Some("alice".to_string()));
    // Still firing: the acknowledgement stays.
    t.send(10, alert("svc.down", "a", "firing"));
    assert_eq!(t.life.alert(&fp).and_then(|a| a.acknowledged_by), Some("alice".to_string()));
    t.send(20, alert("svc.down", "a", "resolved"));
    assert_eq!(t.life.acknowledge(&fp, "bob"), None, "a resolved alert is not acknowledged");
    t.send(30, alert("svc.down", "a", "firing"));
    assert_eq!(t.life.alert(&fp).and_then(|a| a.acknowledged_by), None, "a new firing needs a new acknowledgement");
}

#[test]
fn routes_mention_by_severity_but_not_for_browser_keys_or_resolutions() {
    let extra = r#"
[[api_keys]]
name = "web"
key = "pk"
scopes = ["events:browser"]
[[routes]]
kinds = ["app.*"]
notifier = "team"
mentions = { critical = "<!here>", error = "<!subteam^S1>" }
"#;
    let t = Timeline::new(extra);
    let mention = |body: serde_json::Value, source: &str| {
        let event = parse_event(&body, "", source, t.at(0)).unwrap();
        let d = t.pipeline.deliveries(&event, &mut crate::pipeline::Grouper::default(), t.at(0));
        d.first().and_then(|d| d.message.mention.clone())
    };
    assert_eq!(mention(json!({"kind": "app.x", "severity": "critical"}), "backend").as_deref(), Some("<!here>"));
    assert_eq!(mention(json!({"kind": "app.x", "severity": "error"}), "backend").as_deref(), Some("<!subteam^S1>"));
    assert_eq!(mention(json!({"kind": "app.x", "severity": "warning"}), "backend"), None);
    assert_eq!(mention(json!({"kind": "app.x", "severity": "critical"}), "web"), None, "browser key");
    assert_eq!(mention(json!({"kind": "app.x", "severity": "critical", "status": "resolved"}), "backend"), None);
}

#[test]
fn templates_per_notifier_type() {
    let config = load_str(
        r#"
[notifiers.chat]
type = "console"
[notifiers.ops]
type = "webhook"
url = "https://ops.example.com/hook"
[templates]
title = "{{ kind }}"
[templates.types.webhook]
title = "[{{ severity }}] {{ kind }} for {{ user }}"
[[routes]]
notifier = "chat"
continue = true
[[routes]]
notifier = "ops"
"#,
        std::path::Path::new("t.toml"),
    )
    .unwrap();
    let pipeline = Pipeline::new(&config).unwrap();
    let event = parse_event(&json!({"kind": "user.registered", "user": "alice"}), "", "t", Utc::now()).unwrap();
    let out = pipeline.deliveries(&event, &mut super::Grouper::default(), Utc::now());
    let titles: Vec<_> = out.iter().map(|d| (d.notifier.as_str(), d.message.title.as_str())).collect();
    assert_eq!(titles, [("chat", "user.registered"), ("ops", "[info] user.registered for alice")]);
    let direct = pipeline.render_direct("ops", None, &event);
    assert_eq!(direct.message.title, "[info] user.registered for alice");

    let bad = "[templates.types.carrier_pigeon]\ntitle = \"x\"\n";
    let errors = load_str(bad, std::path::Path::new("t.toml")).unwrap_err();
    assert!(errors.to_string().contains("templates.types.carrier_pigeon"), "{errors}");
}

#[test]
fn a_firing_alert_whose_labels_change_is_told_again_and_its_title_alone_is_not() {
    let tl = Timeline::new("");
    let body = |indices: &str, title: &str| {
        json!({"kind": "es.index_missing", "status": "firing", "fingerprint": "prod", "severity": "error",
               "labels": {"cluster": "prod", "indices": indices}, "title": title})
    };
    assert_eq!(tl.send(0, body("a missing, b missing", "2 missing")).deliveries.len(), 1);
    // The same condition again: a repeat, quiet.
    assert!(tl.send(60, body("a missing, b missing", "2 missing")).deliveries.is_empty());
    // A changing number in the title is not a new condition (no cry-wolf on every reading).
    assert!(tl.send(120, body("a missing, b missing", "2 missing (still)")).deliveries.is_empty());
    // Another set of indices: news.
    let changed = tl.send(180, body("b missing, c missing", "2 missing"));
    assert_eq!(changed.deliveries.len(), 1);
    assert_eq!(changed.deliveries[0].message.status, MessageStatus::Firing);
}

#[test]
fn settling_after_flapping_is_one_notice_even_when_a_repeat_would_be_due() {
    let tl = Timeline::new(
        "[[routes]]\nkinds = [\"app.*\"]\nnotifier = \"team\"\ngroup_wait = \"0s\"\nrepeat_interval = \"1m\"\n",
    );
    for (i, status) in ["firing", "resolved", "firing", "resolved", "firing"].iter().enumerate() {
        tl.send(i as i64 * 10, alert("app.flap", "a", status));
    }
    // Settled 10 minutes after the last change; the last notification is far past 1 minute.
    let settled = tl.due(40 + 600);
    assert_eq!(settled.len(), 1, "{:?}", settled.iter().map(|d| d.notice).collect::<Vec<_>>());
    assert_eq!(settled[0].notice, Notice::Fired);
}

#[test]
fn a_bare_resolve_reaches_the_route_that_heard_the_firing() {
    let tl = Timeline::new(
        "[notifiers.prod]\ntype = \"console\"\n[[routes]]\nkinds = [\"app.*\"]\nmin_severity = \"warning\"\nlabels = { env = \"prod\" }\nnotifier = \"prod\"\ngroup_wait = \"0s\"\ngroup_interval = \"1m\"\n",
    );
    let fired = tl.send(
        0,
        json!({"kind": "app.disk", "severity": "error", "fingerprint": "disk-h1", "labels": {"env": "prod", "host": "h1"}, "status": "firing", "title": "disk full"}),
    );
    assert_eq!(fired.deliveries.len(), 1);
    assert_eq!(fired.deliveries[0].destination, "prod");

    // No severity (so info) and no labels: still the alert the prod route was told about.
    let resolved = tl.send(120, json!({"kind": "app.disk", "fingerprint": "disk-h1", "status": "resolved"}));
    assert_eq!(resolved.deliveries.len(), 1, "{:?}", resolved.deliveries);
    assert_eq!(resolved.deliveries[0].destination, "prod");
    assert_eq!(resolved.deliveries[0].message.status, MessageStatus::Resolved);
    let alert = resolved.alert.unwrap();
    assert_eq!(alert.severity, crate::event::Severity::Error, "a resolve does not rewrite the severity");
    assert_eq!(alert.labels.get("host").map(String::as_str), Some("h1"), "nor drop the labels");
}

#[test]
fn a_resolution_goes_only_where_the_firing_was_told() {
    let tl = Timeline::new(
        "[notifiers.pager]\ntype = \"console\"\n[[routes]]\nkinds = [\"app.*\"]\nmin_severity = \"critical\"\nnotifier = \"pager\"\ngroup_wait = \"0s\"\n",
    );
    // Fired as an error: the pager route (critical and up) never heard of it.
    tl.send(
        0,
        json!({"kind": "app.db", "severity": "error", "fingerprint": "db", "status": "firing", "title": "db slow"}),
    );
    // A resolve posted as critical must not page about something the pager was never told.
    let resolved =
        tl.send(120, json!({"kind": "app.db", "severity": "critical", "fingerprint": "db", "status": "resolved"}));
    assert!(resolved.deliveries.iter().all(|d| d.destination != "pager"), "{:?}", resolved.deliveries);
}
