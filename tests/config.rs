//! The configuration file as users meet it: the shipped example, and the errors they see.

use std::path::{Path, PathBuf};

use tocsin::config::{load, load_str, load_str_with_env, ConfigError, Dur};
use tocsin::notify::NotifierConfig;

fn example_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/tocsin.toml")
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn errors_with(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Vec<ConfigError> {
    match load_str_with_env(text, Path::new("conf/tocsin.toml"), env) {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(e) => e.0,
    }
}

fn errors(text: &str) -> Vec<ConfigError> {
    errors_with(text, &no_env)
}

fn at(e: &ConfigError) -> (usize, usize) {
    (e.line, e.column)
}

#[test]
fn the_example_loads_without_any_environment() {
    let config = load(&example_path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.store.url, "sqlite://tocsin.db");
    assert!(matches!(config.notifiers.get("stdout"), Some(NotifierConfig::Console(_))));
    assert_eq!(config.routes.len(), 1);
    assert_eq!(config.routes[0].notifier, "stdout");
    assert_eq!(config.api_keys.len(), 1);
    assert_eq!(config.api_keys[0].key.expose(), "dev-key-change-me");
    assert_eq!(config.routes[0].repeat_interval, Some(Dur::secs(4 * 3600)));
    assert_eq!(config.path, example_path());
}

#[test]
fn the_example_documents_the_contract_s_keys() {
    let text = std::fs::read_to_string(example_path()).unwrap();
    for key in [
        "listen",
        "max_body_bytes",
        "shutdown_grace",
        "url",
        "retention",
        "format",
        "level",
        "max_attempts",
        "backoff_initial",
        "backoff_max",
        "timeout",
        "title",
        "text",
        "name",
        "key",
        "scopes",
        "allowed_kinds",
        "allowed_origins",
        "type",
        "username",
        "icon_emoji",
        "icon_url",
        "channel",
        "secret",
        "kinds",
        "min_severity",
        "labels",
        "notifier",
        "group_by",
        "group_wait",
        "group_interval",
        "repeat_interval",
        "continue",
        "title_template",
        "text_template",
        "[default_route]",
    ] {
        let documented = text.contains(key)
            && (key.starts_with('[')
                || text.lines().any(|l| l.trim_start_matches(['#', ' ']).starts_with(&format!("{key} ="))));
        assert!(documented, "{key} is not documented");
    }
}

#[test]
fn an_unknown_key_points_at_the_key() {
    let text = "[server]\nlisten = \"127.0.0.1:9750\"\n  listn = \"0.0.0.0:1\"\n";
    let e = errors(text);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(at(&e[0]), (3, 3));
    assert_eq!(e[0].key.as_deref(), Some("server.listn"));
    let shown = e[0].to_string();
    assert!(shown.starts_with("conf/tocsin.toml:3:3: "), "{shown}");
    assert!(shown.contains("listn"), "{shown}");
}

#[test]
fn an_unknown_key_in_a_notifier_is_an_error() {
    let text = "[notifiers.stdout]\ntype = \"console\"\ncolor = true\n";
    let e = errors(text);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(at(&e[0]), (3, 1));
    assert_eq!(e[0].key.as_deref(), Some("notifiers.stdout.color"));
}

#[test]
fn independent_errors_are_all_reported_in_file_order() {
    let text = r#"
[[routes]]
notifier = "nowhere"

[server]
lisen = "127.0.0.1:9750"

[notifiers.stdout]
type = "console"

[delivery]
max_attempts = 0
"#;
    let e = errors(text);
    let shown: Vec<String> = e.iter().map(|e| e.to_string()).collect();
    assert_eq!(e.len(), 3, "{shown:#?}");
    assert_eq!(at(&e[0]), (3, 12), "{shown:#?}");
    assert!(shown[0].contains("no notifier named \"nowhere\""), "{shown:#?}");
    assert_eq!(at(&e[1]), (6, 1), "{shown:#?}");
    assert!(shown[1].contains("unknown field `lisen`"), "{shown:#?}");
    assert_eq!(at(&e[2]), (12, 16), "{shown:#?}");
    assert_eq!(e[2].key.as_deref(), Some("delivery.max_attempts"));
}

#[test]
fn a_bad_duration_points_at_its_value() {
    let text =
        "[notifiers.stdout]\ntype = \"console\"\n\n[[routes]]\nnotifier = \"stdout\"\ngroup_wait =   \"5 parsecs\"\n";
    let e = errors(text);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(at(&e[0]), (6, 16));
    assert_eq!(e[0].key.as_deref(), Some("routes[0].group_wait"));
    assert!(e[0].message.contains("invalid duration"), "{}", e[0]);
}

#[test]
fn a_syntax_error_is_one_positioned_error() {
    let e = errors("[server]\nlisten = \"127.0.0.1:9750\n");
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].line, 2);
    assert!(e[0].to_string().starts_with("conf/tocsin.toml:2:"));
}

#[test]
fn a_file_that_cannot_be_read_is_named_without_a_position() {
    let e = load(Path::new("conf/surely-not-here.toml")).unwrap_err().0;
    assert_eq!(e.len(), 1, "{e:?}");
    let text = e[0].to_string();
    assert!(text.starts_with("conf/surely-not-here.toml: cannot read the file: "), "{text}");
}

#[test]
fn a_missing_environment_variable_is_named() {
    let text =
        "[[api_keys]]\nname = \"backend\"\nkey = \"${env:TOCSIN_TEST_SURELY_UNSET_1}\"\nscopes = [\"events:write\"]\n";
    let e = match load_str(text, Path::new("t.toml")) {
        Ok(_) => panic!("TOCSIN_TEST_SURELY_UNSET_1 is set?"),
        Err(e) => e.0,
    };
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(at(&e[0]), (3, 7));
    assert!(e[0].message.contains("TOCSIN_TEST_SURELY_UNSET_1"), "{}", e[0]);
}

#[test]
fn environment_references_may_be_embedded() {
    let text =
        "[notifiers.ops]\ntype = \"webhook\"\nurl = \"https://ops.example.com/${env:HOOK_PATH}?a=$${literal}\"\n";
    let env = |name: &str| (name == "HOOK_PATH").then(|| "hooks/tocsin".to_string());
    let config = load_str_with_env(text, Path::new("t.toml"), &env).unwrap();
    let Some(NotifierConfig::Webhook(hook)) = config.notifiers.get("ops") else { panic!("not a webhook") };
    assert_eq!(hook.url.expose(), "https://ops.example.com/hooks/tocsin?a=${literal}");
}

#[test]
fn file_references_are_read_relative_to_the_config() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("secrets")).unwrap();
    std::fs::write(dir.path().join("secrets/hook"), "https://hooks.example.com/T0/B0/xyz\n").unwrap();
    let path = dir.path().join("tocsin.toml");
    std::fs::write(
        &path,
        "[notifiers.ops]\ntype = \"webhook\"\nurl = \"${file:secrets/hook}\"\nsecret = \"${file:secrets/absent}\"\n",
    )
    .unwrap();
    let e = load(&path).unwrap_err().0;
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(at(&e[0]), (4, 10));
    assert!(e[0].message.contains("secrets/absent"), "{}", e[0]);

    std::fs::write(&path, "[notifiers.ops]\ntype = \"webhook\"\nurl = \"${file:secrets/hook}\"\n").unwrap();
    let config = load(&path).unwrap_or_else(|e| panic!("{e}"));
    let Some(NotifierConfig::Webhook(hook)) = config.notifiers.get("ops") else { panic!("not a webhook") };
    assert_eq!(hook.url.expose(), "https://hooks.example.com/T0/B0/xyz");
}

#[test]
fn error_messages_never_contain_interpolated_values() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("grace"), "hunter2-from-file\n").unwrap();
    let path = dir.path().join("tocsin.toml");
    let text = r#"
[server]
listen = "${env:LISTEN}"
shutdown_grace = "${file:grace}"

[store]
url = "${env:DB_URL}"

[[api_keys]]
name = "a"
key = "${env:KEY}"
scopes = ["events:write"]

[[api_keys]]
name = "b"
key = "${env:KEY}"
scopes = ["events:read"]

[[api_keys]]
name = "c"
key = "${env:OTHER}"
scopes = ["${env:SCOPE}"]

[[routes]]
notifier = "Bearer ${env:KEY}"
"#;
    std::fs::write(&path, text).unwrap();
    let env = |name: &str| {
        Some(
            match name {
                "LISTEN" => "hunter2-listen",
                "DB_URL" => "mysql://root:hunter2-db@db/tocsin",
                "KEY" => "hunter2-key",
                "SCOPE" => "hunter2-scope",
                "OTHER" => "hunter2-other",
                _ => return None,
            }
            .to_string(),
        )
    };
    let text = std::fs::read_to_string(&path).unwrap();
    let e = load_str_with_env(&text, &path, &env).unwrap_err();
    let shown = e.to_string();
    let keys: Vec<&str> = e.0.iter().filter_map(|e| e.key.as_deref()).collect();
    assert_eq!(
        keys,
        vec![
            "server.listen",
            "server.shutdown_grace",
            "store.url",
            "api_keys[1].key",
            "api_keys[2].scopes[0]",
            "routes[0].notifier"
        ],
        "{shown}"
    );
    assert!(!shown.contains("hunter2"), "{shown}");
}

#[test]
fn a_bad_cluster_url_is_pointed_at_without_repeating_its_password() {
    let errs = errors("[elasticsearch.c1]\nurl = \"htp:/ops:Hunter2Secret@es.internal:9200\"\n");
    let e = errs.iter().find(|e| e.to_string().contains("elasticsearch.c1.url")).expect("the url is refused");
    assert_eq!(at(e), (2, 7));
    assert!(!e.to_string().contains("Hunter2Secret"), "{e}");
}
