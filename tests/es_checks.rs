//! End to end: the real binary against the in-repo fake Elasticsearch / OpenSearch.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tocsin::testkit::fake_es::{FakeAuth, FakeEs, Flavor};

struct Env {
    dir: tempfile::TempDir,
    config: PathBuf,
}

fn setup(clusters: &str, checks: &str) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    let text = format!(
        r#"
[store]
url = "sqlite://{}"

[notifiers.out]
type = "console"

[[routes]]
kinds = ["es.*"]
notifier = "out"

{clusters}

{checks}
"#,
        db.display()
    );
    let config = dir.path().join("tocsin.toml");
    std::fs::write(&config, text).unwrap();
    Env { dir, config }
}

fn cluster(name: &str, fake: &FakeEs, extra: &str) -> String {
    format!(
        "[elasticsearch.{name}]\nurl = \"{}\"\nlabels = {{ region = \"us-east-1\", env = \"test\" }}\ntimeout = \"2s\"\n{extra}\n",
        fake.url()
    )
}

fn tocsin(env: &Env, args: &[&str], vars: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tocsin"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", env.dir.path())
        // The AWS chain must never reach for instance metadata in tests.
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", env.dir.path().join("aws-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", env.dir.path().join("aws-credentials"))
        .args(args)
        .arg("--config")
        .arg(&env.config);
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let Output { status, stdout, stderr } = cmd.output().unwrap();
    let (out, err) = (String::from_utf8_lossy(&stdout).into_owned(), String::from_utf8_lossy(&stderr).into_owned());
    (status.code().unwrap_or(-1), out, err)
}

fn run(env: &Env, check: &str, extra: &[&str]) -> (i32, String, String) {
    let mut args = vec!["check", "run", check];
    args.extend_from_slice(extra);
    tocsin(env, &args, &[])
}

fn indices_check(name: &str, clusters: &str, expect: &str, extra: &str) -> String {
    format!("[[checks]]\nname = \"{name}\"\ntype = \"elasticsearch_indices\"\nclusters = [{clusters}]\nexpect = [{expect}]\n{extra}\n")
}

#[test]
fn substring_trap_then_resolution() {
    let fake = FakeEs::start_blocking(Flavor::Es8);
    fake.add_index("users_index_old", 100, 1);
    fake.add_index("accounts_index", 100, 1);
    let env = setup(
        &cluster("prod", &fake, ""),
        &indices_check("missing", "\"prod\"", "\"users_index\", \"accounts_index\"", ""),
    );
    let (code, out, err) = run(&env, "missing", &[]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.contains("users_index: missing"), "{out}");
    assert!(!out.contains("accounts_index: missing"), "{out}");
    assert!(out.contains("env=test, region=us-east-1"), "labels in the message: {out}");
    assert!(out.contains("(firing)"), "sent through the console notifier: {out}");

    fake.add_index("users_index", 100, 1);
    let (code, out, _) = run(&env, "missing", &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("RESOLVED es.index_missing") && out.contains("(resolved)"), "{out}");
    // Once resolved, nothing more is said.
    let (code, out, _) = run(&env, "missing", &[]);
    assert_eq!(code, 0);
    assert!(!out.contains("RESOLVED"), "{out}");
}

#[test]
fn todays_dated_index_in_the_check_time_zone() {
    let fake = FakeEs::start_blocking(Flavor::OpenSearch2);
    fake.add_index("logs-2026.11.20", 100, 1);
    // 02:00 UTC on the 22nd is still the 21st in New York.
    let check = indices_check(
        "daily",
        "\"os\"",
        "\"logs-{now:%Y.%m.%d}\", \"logs-{now-1d:%Y.%m.%d}\"",
        "timezone = \"America/New_York\"",
    );
    let env = setup(&cluster("os", &fake, ""), &check);
    let (code, out, _) = run(&env, "daily", &["--at", "2026-11-22T02:00:00Z", "--dry-run"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("logs-2026.11.21: missing (from logs-{now:%Y.%m.%d})"), "{out}");
    assert!(!out.contains("logs-2026.11.20: missing"), "{out}");
    assert!(out.contains("dry run") && !out.contains("(firing)"), "a dry run sends nothing: {out}");
    fake.add_index("logs-2026.11.21", 100, 1);
    let (code, out, _) = run(&env, "daily", &["--at", "2026-11-22T02:00:00Z"]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn closed_and_red_indices_aliases_and_data_streams() {
    let fake = FakeEs::start_blocking(Flavor::Es7);
    fake.add_index("accounts_index", 100, 1);
    fake.close_index("accounts_index");
    fake.add_index("payments", 100, 1);
    fake.set_red("payments", true);
    fake.add_index("employees_v2", 100, 1);
    fake.add_alias("employees_index", "employees_v2");
    fake.add_data_stream("logs-app");
    fake.add_index("app-1", 1, 1);
    fake.add_index("archive-2019", 1, 1);
    fake.close_index("archive-2019");
    let env = setup(
        &cluster("es7", &fake, ""),
        &indices_check(
            "idx",
            "\"es7\"",
            "\"accounts_index\", \"payments\", \"employees_index\", \"logs-app\", \"app-*\", \"gone-*\", \"archive-*\"",
            "",
        ),
    );
    let (code, out, _) = run(&env, "idx", &[]);
    assert_eq!(code, 1, "{out}");
    // A pattern whose only match is closed counts with the closed ones, not the missing.
    assert!(out.contains("1 expected index(es) missing and 3 closed or red on es7"), "{out}");
    assert!(out.contains("archive-*: matches only 1 closed index(es)"), "{out}");
    assert!(out.contains("accounts_index: exists but is closed"), "{out}");
    assert!(out.contains("payments: exists but is red"), "{out}");
    assert!(out.contains("gone-*: no index matches"), "{out}");
    for present in ["employees_index:", "logs-app:", "app-*:"] {
        assert!(!out.contains(present), "{present} is present: {out}");
    }
}

#[test]
fn legacy_cluster_without_resolve_uses_cat_json() {
    let fake = FakeEs::start_blocking(Flavor::Es7Legacy);
    fake.add_index("users_index_old", 1, 1);
    fake.add_index("accounts_index", 1, 1);
    fake.close_index("accounts_index");
    fake.add_index("employees_v1", 1, 1);
    fake.add_alias("employees_index", "employees_v1");
    let env = setup(
        &cluster("old", &fake, ""),
        &indices_check("idx", "\"old\"", "\"users_index\", \"accounts_index\", \"employees_index\"", ""),
    );
    let (code, out, _) = run(&env, "idx", &["--dry-run"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("users_index: missing") && out.contains("accounts_index: exists but is closed"), "{out}");
    assert!(!out.contains("employees_index:"), "{out}");
    assert!(fake.requests().iter().any(|r| r.starts_with("/_cat/indices?format=json")), "{:?}", fake.requests());
}

fn size_check(extra: &str) -> String {
    format!(
        "[[checks]]\nname = \"size\"\ntype = \"elasticsearch_index_size\"\nclusters = [\"c\"]\nindices = [\"*\"]\nbaseline = \"30d\"\nthreshold_percent = 20\n{extra}\n"
    )
}

#[test]
fn thirty_days_then_a_drop_then_growth() {
    let fake = FakeEs::start_blocking(Flavor::Es8);
    fake.add_index("orders", 1_000_000, 1000);
    fake.add_index("steady", 5_000, 50);
    let env = setup(&cluster("c", &fake, ""), &size_check("min_samples = 7"));
    for day in 1..=30 {
        let at = format!("2026-10-{day:02}T16:00:00Z");
        let (code, out, err) = run(&env, "size", &["--at", &at]);
        assert_eq!(code, 0, "day {day}: {out}\n{err}");
    }
    let stats_requests = fake.requests().iter().filter(|r| r.contains("/_stats")).count();
    assert_eq!(stats_requests, 30, "one _stats request per cluster and run");

    fake.set_size("orders", 500_000, 500);
    let (code, out, _) = run(&env, "size", &["--at", "2026-10-31T16:00:00Z"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("orders shrank 50% on c") && out.contains("shrank by 50.0%"), "{out}");
    assert!(
        out.contains("Likely cause: partial deletion") && out.contains("mean of 30 samples over the last 30 days"),
        "{out}"
    );
    assert!(!out.contains("steady"), "{out}");

    fake.set_size("orders", 1_600_000, 1600);
    let (code, out, _) = run(&env, "size", &["--at", "2026-11-01T16:00:00Z"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("orders grew 6"), "{out}");
    assert!(out.contains("duplicated load"), "{out}");

    // A vanished index is the missing-index check's business, not a -100% shrink.
    fake.remove_index("orders");
    let (code, out, _) = run(&env, "size", &["--at", "2026-11-02T16:00:00Z"]);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("100"), "{out}");
    // Its size alert ends, without claiming a size that was not measured.
    assert!(out.contains("orders has no current size on c"), "{out}");
    assert!(!out.contains("back within its usual size"), "{out}");
}

#[test]
fn docs_metric_and_min_samples() {
    let fake = FakeEs::start_blocking(Flavor::OpenSearch2);
    fake.add_index("orders", 1_000, 1000);
    let env = setup(&cluster("c", &fake, ""), &size_check("min_samples = 3\nmetric = \"docs\""));
    for day in 1..=2 {
        run(&env, "size", &["--at", &format!("2026-10-{day:02}T16:00:00Z")]);
    }
    fake.set_size("orders", 1_000, 100);
    let (code, out, _) = run(&env, "size", &["--at", "2026-10-03T16:00:00Z"]);
    assert_eq!(code, 0, "two samples are fewer than min_samples: {out}");
    let (code, out, _) = run(&env, "size", &["--at", "2026-10-04T16:00:00Z"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("shrank") && out.contains("docs"), "{out}");
}

#[test]
fn daily_family_newest_is_three_times_its_predecessors() {
    let fake = FakeEs::start_blocking(Flavor::Es8);
    for d in 10..=20 {
        fake.add_index(&format!("logs-2026.11.{d}"), 1_000_000, 100);
    }
    fake.add_index("logs-2026.11.21", 3_000_000, 300);
    let env = setup(&cluster("c", &fake, ""), &size_check("min_samples = 7"));
    // No stored history at all: the family is its own baseline.
    let (code, out, _) = run(&env, "size", &["--at", "2026-11-21T16:00:00Z"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("logs-2026.11.21 grew 200% on c") && out.contains("grew by 200.0%"), "{out}");
    assert!(out.contains("previous daily indices of logs-{date}"), "{out}");
    assert!(!out.contains("logs-2026.11.20 grew"), "{out}");
}

#[test]
fn blind_is_not_missing() {
    let fake = FakeEs::start_blocking(Flavor::Es8);
    fake.add_index("users_index", 1, 1);
    let checks = format!(
        "{}{}",
        indices_check("idx", "\"c\", \"nowhere\"", "\"users_index\"", ""),
        size_check("min_samples = 1")
    );
    let nowhere = "[elasticsearch.nowhere]\nurl = \"http://127.0.0.1:9\"\ntimeout = \"1s\"\n";
    let env = setup(&format!("{}{nowhere}", cluster("c", &fake, "")), &checks);
    let (code, out, _) = run(&env, "idx", &[]);
    assert_eq!(code, 2, "{out}");
    assert_eq!(out.matches("FIRING es.unreachable").count(), 1, "{out}");
    assert!(!out.contains("es.index_missing"), "{out}");

    run(&env, "size", &["--at", "2026-10-01T00:00:00Z"]);
    fake.set_down(true);
    let (code, out, _) = run(&env, "size", &["--at", "2026-10-02T00:00:00Z"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("FIRING es.unreachable") && out.contains("master_not_discovered_exception"), "{out}");
    assert!(!out.contains("es.index_size_change") && !out.contains("shrank"), "{out}");
    let (code, out, _) = run(&env, "idx", &[]);
    assert_eq!(code, 2, "{out}");
    assert_eq!(out.matches("FIRING es.unreachable").count(), 2, "one per cluster: {out}");
    assert!(!out.contains("es.index_missing"), "{out}");

    fake.set_down(false);
    let (code, out, _) = run(&env, "size", &["--at", "2026-10-03T00:00:00Z"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("RESOLVED es.unreachable"), "{out}");
}

#[test]
fn slow_cluster_times_out_as_unreachable() {
    let fake = FakeEs::start_blocking(Flavor::Es8);
    fake.add_index("users_index", 1, 1);
    fake.set_delay(std::time::Duration::from_secs(3));
    let env = setup(
        &cluster("slow", &fake, "").replace("timeout = \"2s\"", "timeout = \"500ms\""),
        &indices_check("idx", "\"slow\"", "\"users_index\"", ""),
    );
    let (code, out, _) = run(&env, "idx", &["--dry-run"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("no answer within 500ms") && out.contains("FIRING es.unreachable"), "{out}");
    assert!(!out.contains("es.index_missing"), "{out}");
}

#[test]
fn basic_auth_and_security_exception() {
    let fake = FakeEs::start_blocking(Flavor::Es8);
    fake.add_index("users_index", 1, 1);
    fake.set_auth(FakeAuth::Basic { username: "elastic".into(), password: "s3cret-pw".into() });
    let check = indices_check("idx", "\"c\"", "\"users_index\"", "");
    let wrong = "auth = { type = \"basic\", username = \"elastic\", password = \"wrong-pw\" }";
    let env = setup(&cluster("c", &fake, wrong), &check);
    let (code, out, err) = tocsin(&env, &["check", "run", "idx"], &[]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(out.contains("security_exception") && out.contains("unable to authenticate user [elastic]"), "{out}");
    assert!(!out.contains("wrong-pw") && !err.contains("wrong-pw"), "no password in messages");
    let right = "auth = { type = \"basic\", username = \"elastic\", password = \"s3cret-pw\" }";
    let env = setup(&cluster("c", &fake, right), &check);
    let (code, out, err) = tocsin(&env, &["check", "run", "idx"], &[]);
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn api_key_auth_and_opensearch_1() {
    let fake = FakeEs::start_blocking(Flavor::Es8);
    fake.add_index("users_index", 1, 1);
    fake.set_auth(FakeAuth::ApiKey { encoded: "VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw==".into() });
    let check = indices_check("idx", "\"c\"", "\"users_index\"", "");
    let wrong = "auth = { type = \"api_key\", key = \"d3Jvbmc6a2V5\" }";
    let env = setup(&cluster("c", &fake, wrong), &check);
    let (code, out, err) = tocsin(&env, &["check", "run", "idx"], &[]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(out.contains("security_exception"), "{out}");
    assert!(!out.contains("d3Jvbmc6a2V5") && !err.contains("d3Jvbmc6a2V5"), "no key in messages");
    let right = "auth = { type = \"api_key\", key = \"VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw==\" }";
    let env = setup(&cluster("c", &fake, right), &check);
    let (code, out, err) = tocsin(&env, &["check", "run", "idx"], &[]);
    assert_eq!(code, 0, "{out}{err}");

    // OpenSearch 1.x answers like 2.x for everything the checks use.
    let os1 = FakeEs::start_blocking(Flavor::OpenSearch1);
    os1.add_index("users_index_old", 1, 1);
    let env = setup(&cluster("c", &os1, ""), &indices_check("idx", "\"c\"", "\"users_index\"", ""));
    let (code, out, err) = tocsin(&env, &["check", "run", "idx"], &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("users_index"), "{out}");
}

#[test]
fn sigv4_with_session_token() {
    let fake = FakeEs::start_blocking(Flavor::OpenSearch2);
    fake.add_index("users_index", 1, 1);
    fake.set_auth(FakeAuth::Sigv4 {
        access_key: "AKIDTESTTESTTEST".into(),
        secret_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
        session_token: Some("FwoGZXIvYXdzEXAMPLETOKEN".into()),
        region: "us-east-1".into(),
        service: "es".into(),
    });
    let auth = "auth = { type = \"aws_sigv4\", region = \"us-east-1\" }";
    let env = setup(
        &cluster("aws", &fake, auth),
        &format!("{}{}", indices_check("idx", "\"aws\"", "\"users_index\", \"logs-*\"", ""), ""),
    );
    let good = [
        ("AWS_ACCESS_KEY_ID", "AKIDTESTTESTTEST"),
        ("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
        ("AWS_SESSION_TOKEN", "FwoGZXIvYXdzEXAMPLETOKEN"),
    ];
    let (code, out, err) = tocsin(&env, &["check", "run", "idx"], &good);
    assert_eq!(code, 1, "signed requests pass (logs-* matches nothing): {out}{err}");
    assert!(out.contains("logs-*: no index matches"), "{out}");
    assert!(
        fake.requests().iter().any(|r| r.starts_with("/_resolve/index/users_index,logs-*")),
        "{:?}",
        fake.requests()
    );

    let bad_token = [good[0], good[1], ("AWS_SESSION_TOKEN", "stale")];
    let (code, out, _) = tocsin(&env, &["check", "run", "idx"], &bad_token);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("security token included in the request is invalid"), "{out}");

    let bad_secret = [good[0], ("AWS_SECRET_ACCESS_KEY", "not-the-secret"), good[2]];
    let (code, out, err) = tocsin(&env, &["check", "run", "idx"], &bad_secret);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("signature we calculated does not match"), "{out}");
    assert!(!out.contains("not-the-secret") && !err.contains("not-the-secret"));
}

#[test]
fn a_named_aws_profile_that_cannot_sign_says_why() {
    let fake = FakeEs::start_blocking(Flavor::OpenSearch2);
    fake.add_index("users_index", 1, 1);
    let auth =
        |profile: &str| format!("auth = {{ type = \"aws_sigv4\", region = \"us-east-1\", profile = \"{profile}\" }}");
    for (profile, reason) in [
        ("nope", "profile `nope` was not defined"),
        ("empty", "it has no aws_access_key_id, role_arn, sso_session or credential_process"),
    ] {
        let env =
            setup(&cluster("aws", &fake, &auth(profile)), &indices_check("idx", "\"aws\"", "\"users_index\"", ""));
        std::fs::write(env.dir.path().join("aws-config"), "[profile empty]\nregion = us-east-1\n").unwrap();
        let (code, out, _) = tocsin(&env, &["check", "run", "idx"], &[]);
        assert_eq!(code, 2, "{out}");
        assert!(out.contains(&format!("no AWS credentials: profile `{profile}`")), "{out}");
        assert!(out.contains(reason), "{out}");
    }
    assert!(fake.requests().is_empty(), "nothing unsigned was sent: {:?}", fake.requests());
}

#[test]
fn list_shows_schedule_next_run_and_last_result() {
    let fake = FakeEs::start_blocking(Flavor::Es8);
    fake.add_index("users_index", 1, 1);
    let env = setup(
        &cluster("c", &fake, ""),
        &indices_check("idx", "\"c\"", "\"users_index\"", "schedule = \"0 16 * * *\"\ntimezone = \"America/New_York\""),
    );
    let (code, out, _) = tocsin(&env, &["check", "list"], &[]);
    assert_eq!(code, 0);
    assert!(
        out.contains("0 16 * * * (America/New_York)") && out.contains("16:00:00 E") && out.contains("never ran"),
        "{out}"
    );
    run(&env, "idx", &["--at", "2026-11-21T21:00:00Z"]);
    let (_, out, _) = tocsin(&env, &["check", "list"], &[]);
    assert!(out.contains("healthy at 2026-11-21 16:00 EST"), "{out}");
}

#[test]
fn bad_names_and_config_exit_2() {
    let fake = FakeEs::start_blocking(Flavor::Es8);
    let env =
        setup(&cluster("c", &fake, ""), &indices_check("idx", "\"c\", \"typo\"", "\"x\"", "schedule = \"0 99 * * *\""));
    let (code, _, err) = run(&env, "idx", &[]);
    assert_eq!(code, 2);
    assert!(err.contains("checks[0].clusters") && err.contains("checks[0].schedule"), "{err}");
    let env = setup(&cluster("c", &fake, ""), &indices_check("idx", "\"c\"", "\"x\"", ""));
    let (code, _, err) = run(&env, "nope", &[]);
    assert_eq!(code, 2);
    assert!(err.contains("no check named \"nope\""), "{err}");
    let env = setup(&cluster("c", &fake, ""), &indices_check("idx", "\"c\", \"c\"", "\"x\"", ""));
    let (code, _, err) = run(&env, "idx", &[]);
    assert_eq!(code, 2);
    assert!(err.contains("checks[0].clusters") && err.contains("listed twice"), "{err}");
    let _ = Path::new("");
}

mod scheduler {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use tocsin::check::{start_with, Sink};
    use tocsin::event::Event;
    use tocsin::store::samples::CheckRunRecord;
    use tocsin::testkit::fake_es::{FakeEs, Flavor};
    use tokio_util::sync::CancellationToken;

    fn collector() -> (Sink, Arc<Mutex<Vec<Event>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let sink: Sink = Arc::new(move |events: Vec<Event>| {
            s.lock().unwrap().extend(events);
            Box::pin(async { Ok(()) })
        });
        (sink, seen)
    }

    fn config(fake: &FakeEs, dir: &std::path::Path, schedule: &str) -> tocsin::config::Config {
        let text = format!(
            "[store]\nurl = \"sqlite://{}\"\n[elasticsearch.c]\nurl = \"{}\"\n[[checks]]\nname = \"idx\"\ntype = \"elasticsearch_indices\"\nclusters = [\"c\"]\nexpect = [\"users_index\"]\nschedule = \"{schedule}\"\n",
            dir.join("s.db").display(),
            fake.url()
        );
        tocsin::config::load_str(&text, &dir.join("t.toml")).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn runs_never_overlap() {
        let fake = FakeEs::start(Flavor::Es8).await;
        fake.set_delay(Duration::from_millis(1500));
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(&fake, dir.path(), "* * * * * *");
        let store = tocsin::store::open(&cfg.store.url).await.unwrap();
        let (sink, seen) = collector();
        let stop = CancellationToken::new();
        let handle = start_with(&cfg, store, sink, stop.clone()).unwrap();
        tokio::time::sleep(Duration::from_millis(4200)).await;
        stop.cancel();
        handle.await.unwrap();
        // Every-second schedule, 1.5 s per request (GET / then _resolve): at most 2 runs, back to back.
        let roots = fake.requests().iter().filter(|r| r.as_str() == "/").count();
        assert!((1..=2).contains(&roots), "{roots} runs: {:?}", fake.requests());
        assert!(seen.lock().unwrap().iter().all(|e| e.kind == "es.index_missing"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_catch_up_after_downtime() {
        let fake = FakeEs::start(Flavor::Es8).await;
        let dir = tempfile::tempdir().unwrap();
        // Yearly: the next regular run is far away, so any run now is the catch-up.
        let cfg = config(&fake, dir.path(), "0 0 1 1 *");
        let store = tocsin::store::open(&cfg.store.url).await.unwrap();
        let old = CheckRunRecord {
            check: "idx".into(),
            at: "2020-06-01T00:00:00Z".parse().unwrap(),
            outcome: "healthy".into(),
            summary: String::new(),
        };
        store.record_check_run(&old).await.unwrap();
        let (sink, seen) = collector();
        let stop = CancellationToken::new();
        let handle = start_with(&cfg, store.clone(), sink, stop.clone()).unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        stop.cancel();
        handle.await.unwrap();
        let roots = fake.requests().iter().filter(|r| r.as_str() == "/").count();
        assert_eq!(roots, 1, "several missed runs, one catch-up");
        assert_eq!(seen.lock().unwrap().len(), 1);
        let last = store.last_check_runs().await.unwrap();
        assert_eq!(last[0].outcome, "alerting");
    }
}

#[test]
fn sigv4_for_opensearch_serverless_signs_as_aoss() {
    let fake = FakeEs::start_blocking(Flavor::OpenSearch2);
    fake.add_index("users_index", 1, 1);
    fake.set_auth(FakeAuth::Sigv4 {
        access_key: "AKIDTESTTESTTEST".into(),
        secret_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
        session_token: None,
        region: "eu-west-1".into(),
        service: "aoss".into(),
    });
    let creds = [
        ("AWS_ACCESS_KEY_ID", "AKIDTESTTESTTEST"),
        ("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
    ];
    let check = indices_check("idx", "\"aws\"", "\"users_index\"", "");
    let serverless = "auth = { type = \"aws_sigv4\", region = \"eu-west-1\", service = \"aoss\" }";
    let env = setup(&cluster("aws", &fake, serverless), &check);
    let (code, out, err) = tocsin(&env, &["check", "run", "idx"], &creds);
    assert_eq!(code, 0, "{out}{err}");
    // Signed for the wrong service, the same request is refused.
    let managed = "auth = { type = \"aws_sigv4\", region = \"eu-west-1\" }";
    let env = setup(&cluster("aws", &fake, managed), &check);
    let (code, out, err) = tocsin(&env, &["check", "run", "idx"], &creds);
    assert_eq!(code, 2, "{out}{err}");
}

// `tocsin check run … | head -1`: the reader leaves early; the check still runs to the end and
// exits with its own code, without a panic.
#[test]
fn a_reader_that_goes_away_does_not_crash_the_run() {
    let fake = FakeEs::start_blocking(Flavor::Es8);
    let env = setup(&cluster("c", &fake, ""), &indices_check("idx", "\"c\"", "\"users\", \"orders\"", ""));
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let output = Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .args(["check", "run", "idx", "--config"])
        .arg(&env.config)
        .stdout(writer)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(output.status.code(), Some(1), "both indices are missing: {stderr}");
}
