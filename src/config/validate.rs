//! Semantic checks that serde cannot express: cross-references, patterns, templates.
//! Pure but for one look at the filesystem: an absolute database path's directory must exist
//! (`serve` refuses to create it, so `config check` should say so first).
//!
//! Each check is a [`Validator`] returning `(key path, message)` pairs; `load` turns the key
//! path into `file:line:col`. Key paths are written with [`key_path`] and [`index_path`]
//! (`routes[2].kinds[0]`, `notifiers.team`) so they match the positions `load` recorded.
//! A check that names another entry should quote its name with `{:?}` (`no notifier named
//! "team"`): `load` drops such messages when that entry itself could not be read.

use std::collections::HashMap;

use super::{Config, RouteConfig};

/// One semantic check over the whole configuration.
pub type Validator = fn(&Config) -> Vec<(String, String)>;

/// Every check `validate` runs, in order. Sections validated elsewhere (`[elasticsearch.*]`,
/// `[[checks]]`) add their function here.
pub const VALIDATORS: &[Validator] = &[
    validate_server,
    validate_store,
    validate_delivery,
    validate_templates,
    validate_notifiers,
    validate_routes,
    validate_api_keys,
    crate::pipeline::mute::validate,
    validate_rate_limits,
    crate::source::config::validate_sources,
    crate::check::validate,
];

fn validate_rate_limits(config: &Config) -> Vec<(String, String)> {
    let mut errors = Vec::new();
    for (name, limit) in &config.delivery.rate_limits {
        let path = key_path("delivery.rate_limits", name);
        if !config.notifiers.contains_key(name) {
            errors.push((path.clone(), format!("no notifier named {name:?}")));
        }
        if !(limit.per_second >= 0.0 && limit.per_second.is_finite()) {
            errors.push((key_path(&path, "per_second"), "must be a number ≥ 0 (0 turns the limit off)".into()));
        }
    }
    if config.alerts.flap_threshold < 2 {
        errors.push(("alerts.flap_threshold".into(), "must be at least 2".into()));
    }
    for (i, route) in config.routes.iter().enumerate() {
        if route.digest.is_some_and(|d| d.get().is_zero()) {
            errors.push((key_path(&index_path("routes", i), "digest"), "must be longer than zero".into()));
        }
    }
    errors
}

/// Returns every problem as `(key path, message)`.
pub fn validate(config: &Config) -> Result<(), Vec<(String, String)>> {
    let errors: Vec<(String, String)> = VALIDATORS.iter().flat_map(|check| check(config)).collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// `parent.key`, quoting keys that are not bare TOML keys so paths split unambiguously.
pub fn key_path(parent: &str, key: &str) -> String {
    let bare = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let segment = if bare { key.to_string() } else { format!("{key:?}") };
    if parent.is_empty() {
        segment
    } else {
        format!("{parent}.{segment}")
    }
}

/// `parent[index]`.
pub fn index_path(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

/// The proper prefixes of a key path, shortest first: `a.b[1].c` → `a`, `a.b`, `a.b[1]`.
pub fn path_prefixes(path: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, c) in path.char_indices() {
        if in_quotes {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_quotes = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_quotes = true,
            '.' | '[' if i > 0 => out.push(&path[..i]),
            _ => {}
        }
    }
    out
}

fn validate_server(config: &Config) -> Vec<(String, String)> {
    let mut errors = Vec::new();
    if let Err(e) = crate::telemetry::log_filter(&config.log.level) {
        errors.push(("log.level".into(), e));
    }
    if config.server.max_body_bytes == 0 {
        errors.push(("server.max_body_bytes".into(), "must be greater than 0".into()));
    }
    errors
}

fn validate_store(config: &Config) -> Vec<(String, String)> {
    let url = config.store.url.as_str();
    let mut errors = if let Some(path) = url.strip_prefix("sqlite://") {
        let path = std::path::Path::new(path.split('?').next().unwrap_or(path));
        match path.parent() {
            Some(dir) if path.is_absolute() && !dir.is_dir() => {
                vec![("store.url".into(), format!("the directory {} for the database does not exist", dir.display()))]
            }
            _ => Vec::new(),
        }
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        vec![("store.url".into(), "postgres is not yet supported in this release; use \"sqlite://PATH\"".into())]
    } else {
        // The value itself is not repeated: a database URL may carry a password.
        vec![("store.url".into(), "must start with \"sqlite://\" (or, later, \"postgres://\")".into())]
    };
    if config.store.retention.get().is_zero() {
        errors.push((
            "store.retention".into(),
            "must be greater than 0: events older than this are deleted, so 0 would delete the whole history".into(),
        ));
    }
    errors
}

fn validate_delivery(config: &Config) -> Vec<(String, String)> {
    let d = &config.delivery;
    let mut errors = Vec::new();
    if d.max_attempts < 1 {
        errors.push(("delivery.max_attempts".into(), "must be at least 1".into()));
    }
    if d.backoff_initial > d.backoff_max {
        errors.push((
            "delivery.backoff_initial".into(),
            format!("must not exceed delivery.backoff_max ({} > {})", d.backoff_initial, d.backoff_max),
        ));
    }
    if d.timeout.get().is_zero() {
        errors.push(("delivery.timeout".into(), "must be greater than 0".into()));
    }
    errors
}

fn check_template(errors: &mut Vec<(String, String)>, path: String, source: Option<&str>) {
    let Some(source) = source else { return };
    if let Err(e) = crate::pipeline::check_template(source) {
        errors.push((path, e));
    }
}

fn validate_templates(config: &Config) -> Vec<(String, String)> {
    let mut errors = Vec::new();
    check_template(&mut errors, "templates.title".into(), config.templates.title.as_deref());
    check_template(&mut errors, "templates.text".into(), config.templates.text.as_deref());
    for (kind, t) in &config.templates.types {
        let path = key_path("templates.types", kind);
        if !crate::notify::NotifierConfig::TYPE_NAMES.contains(&kind.as_str()) {
            errors.push((
                path.clone(),
                format!(
                    "no notifier type {kind:?}; expected one of {}",
                    crate::notify::NotifierConfig::TYPE_NAMES.join(", ")
                ),
            ));
        }
        check_template(&mut errors, key_path(&path, "title"), t.title.as_deref());
        check_template(&mut errors, key_path(&path, "text"), t.text.as_deref());
    }
    errors
}

fn validate_notifiers(config: &Config) -> Vec<(String, String)> {
    let mut errors: Vec<(String, String)> = config
        .notifiers
        .keys()
        .filter(|name| name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        .map(|name| (key_path("notifiers", name), "notifier names may contain only A-Z, a-z, 0-9, '_' and '-'".into()))
        .collect();
    for (name, notifier) in &config.notifiers {
        for (key, url) in notifier.urls() {
            // The value may hold a token: the message says what is wrong, never what it is.
            let problem = match url::Url::parse(url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => None,
                Ok(_) => Some("must be an http:// or https:// URL"),
                Err(_) => Some("is not an absolute URL (expected https://…)"),
            };
            if let Some(problem) = problem {
                errors.push((key_path(&key_path("notifiers", name), key), problem.into()));
            }
        }
        for (key, problem) in notifier.problems() {
            errors.push((key_path(&key_path("notifiers", name), key), problem.into()));
        }
        for (key, value) in notifier.keys() {
            if value.trim().is_empty() {
                let problem = "must not be empty (an empty key signs or authenticates nothing; leave it out instead)";
                errors.push((key_path(&key_path("notifiers", name), key), problem.into()));
            }
        }
    }
    errors
}

/// Kind patterns must compile, and must be able to match a kind at all: kinds are lowercase,
/// so `User.*` would silently never match.
fn check_kind_globs(errors: &mut Vec<(String, String)>, path: &str, patterns: &[String]) {
    for (i, pattern) in patterns.iter().enumerate() {
        let at = index_path(path, i);
        if let Err(e) = globset::Glob::new(pattern) {
            errors.push((at, format!("invalid pattern: {}", e.kind())));
        } else if pattern.is_empty() {
            errors.push((at, "must not be empty".into()));
        } else if let Some(c) = pattern
            .chars()
            .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '_' | '.' | '-' | '*' | '?' | '[' | ']' | '{' | '}' | ',' | '!' | '^'))
        {
            errors.push((
                at,
                format!("can never match: event kinds contain only a-z, 0-9, '_', '.' and '-' (found {c:?})"),
            ));
        }
    }
}

fn check_route(errors: &mut Vec<(String, String)>, config: &Config, path: &str, route: &RouteConfig) {
    if !config.notifiers.contains_key(&route.notifier) {
        let known: Vec<&str> = config.notifiers.keys().map(String::as_str).collect();
        let hint = if known.is_empty() {
            "none are configured".to_string()
        } else {
            format!("configured: {}", known.join(", "))
        };
        errors.push((key_path(path, "notifier"), format!("no notifier named {:?} ({hint})", route.notifier)));
    }
    check_kind_globs(errors, &key_path(path, "kinds"), &route.kinds);
    if route.channel.as_ref().is_some_and(|c| c.trim().is_empty()) {
        errors.push((key_path(path, "channel"), "must not be empty (leave it out for the notifier's own)".into()));
    }
    let slack = config.notifiers.get(&route.notifier).is_some_and(|n| n.type_name().starts_with("slack"));
    for (severity, mention) in &route.mentions {
        let mention = mention.trim();
        let at = key_path(&key_path(path, "mentions"), severity.as_str());
        if mention.is_empty() {
            errors.push((at, "must not be empty".into()));
        } else if slack && !(mention.starts_with('<') && mention.ends_with('>')) {
            let problem = "Slack mentions are written <!here>, <!channel>, <@U0123ABC> or <!subteam^S0123ABC>; \
                           a bare word is posted as text";
            errors.push((at, problem.into()));
        }
    }
    if route.labels.keys().any(String::is_empty) {
        errors.push((key_path(&key_path(path, "labels"), ""), "label names must not be empty".into()));
    }
    if let Some(i) = route.group_by.iter().position(String::is_empty) {
        errors.push((index_path(&key_path(path, "group_by"), i), "label names must not be empty".into()));
    }
    for (key, d) in [("group_interval", route.group_interval), ("repeat_interval", route.repeat_interval)] {
        if d.is_some_and(|d| d.get().is_zero()) {
            errors.push((key_path(path, key), "must be greater than 0".into()));
        }
    }
    check_template(errors, key_path(path, "title_template"), route.title_template.as_deref());
    check_template(errors, key_path(path, "text_template"), route.text_template.as_deref());
}

fn validate_routes(config: &Config) -> Vec<(String, String)> {
    let mut errors = Vec::new();
    for (i, route) in config.routes.iter().enumerate() {
        check_route(&mut errors, config, &index_path("routes", i), route);
    }
    if let Some(route) = &config.default_route {
        check_route(&mut errors, config, "default_route", route);
    }
    errors
}

fn validate_api_keys(config: &Config) -> Vec<(String, String)> {
    let mut errors = Vec::new();
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut keys: HashMap<&str, usize> = HashMap::new();
    for (i, api_key) in config.api_keys.iter().enumerate() {
        let path = index_path("api_keys", i);
        if api_key.name.trim().is_empty() {
            errors.push((key_path(&path, "name"), "must not be empty".into()));
        } else if let Some(first) = names.insert(&api_key.name, i) {
            names.insert(&api_key.name, first);
            errors.push((
                key_path(&path, "name"),
                format!("duplicate name {:?}: api_keys[{first}] already has it", api_key.name),
            ));
        }
        // Messages about keys never include them: they are secrets.
        let key = api_key.key.expose();
        if key.is_empty() {
            errors.push((key_path(&path, "key"), "must not be empty".into()));
        } else if let Some(first) = keys.insert(key, i) {
            keys.insert(key, first);
            errors.push((
                key_path(&path, "key"),
                format!("the same key as api_keys[{first}]; each key must identify one client"),
            ));
        }
        if api_key.scopes.is_empty() {
            errors.push((key_path(&path, "scopes"), "at least one scope is required".into()));
        }
        check_kind_globs(&mut errors, &key_path(&path, "allowed_kinds"), &api_key.allowed_kinds);
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ApiKeyConfig, Dur, Scope, Secret};
    use crate::notify::{console::ConsoleConfig, NotifierConfig};

    fn base() -> Config {
        let mut config = crate::config::load_str("", std::path::Path::new("t.toml")).unwrap();
        config.notifiers.insert("stdout".into(), NotifierConfig::Console(ConsoleConfig::default()));
        config
    }

    fn route(notifier: &str) -> RouteConfig {
        RouteConfig { notifier: notifier.into(), ..Default::default() }
    }

    fn api_key(name: &str, key: &str) -> ApiKeyConfig {
        ApiKeyConfig {
            name: name.into(),
            key: Secret::new(key),
            scopes: vec![Scope::EventsWrite],
            allowed_kinds: vec![],
            allowed_origins: vec![],
        }
    }

    fn paths(config: &Config) -> Vec<String> {
        validate(config).err().unwrap_or_default().into_iter().map(|(p, _)| p).collect()
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(validate(&base()), Ok(()));
    }

    #[test]
    fn paths_split_at_segment_boundaries() {
        assert_eq!(path_prefixes("a.b[1].c"), vec!["a", "a.b", "a.b[1]"]);
        assert_eq!(path_prefixes("x.\"a.b[\".c"), vec!["x", "x.\"a.b[\""]);
        assert_eq!(key_path("labels", ""), "labels.\"\"");
        assert_eq!(key_path("", "prod-us-1"), "prod-us-1");
    }

    #[test]
    fn slack_values_slack_would_ignore_or_print_are_refused() {
        let text = r#"
[notifiers.slack]
type = "slack_webhook"
url = "https://hooks.slack.com/services/T0/B0/x"
icon_emoji = "rotating_light"
icon_url = "notaurl"
channel = ""
[notifiers.fine]
type = "slack_webhook"
url = "https://hooks.slack.com/services/T0/B0/y"
icon_emoji = ":rotating_light:"
icon_url = "https://example.com/i.png"
[[routes]]
notifier = "slack"
channel = " "
mentions = { error = "here", critical = "<!here>" }
[[routes]]
notifier = "fine"
"#;
        let c = crate::config::load_str(text, std::path::Path::new("t.toml"));
        let errors: Vec<String> = c.err().unwrap().0.iter().filter_map(|e| e.key.clone()).collect();
        assert_eq!(
            errors,
            [
                "notifiers.slack.icon_emoji",
                "notifiers.slack.icon_url",
                "notifiers.slack.channel",
                "routes[0].channel",
                "routes[0].mentions.error"
            ]
        );
    }

    #[test]
    fn routes_must_name_known_notifiers_and_valid_patterns() {
        let mut c = base();
        let mut r = route("nope");
        r.kinds = vec!["es.*".into(), "a[".into(), "User.*".into()];
        r.labels.insert(String::new(), "x".into());
        r.title_template = Some("{{ oops".into());
        c.routes.push(route("stdout"));
        c.routes.push(r);
        c.default_route = Some(route("gone"));
        assert_eq!(
            paths(&c),
            vec![
                "routes[1].notifier",
                "routes[1].kinds[1]",
                "routes[1].kinds[2]",
                "routes[1].labels.\"\"",
                "routes[1].title_template",
                "default_route.notifier",
            ]
        );
    }

    #[test]
    fn the_database_directory_must_exist() {
        let mut c = base();
        c.store.url = "sqlite:///nonexistent-tocsin-dir/tocsin.db".into();
        let errors = validate(&c).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].0, "store.url");
        assert!(errors[0].1.contains("/nonexistent-tocsin-dir for the database does not exist"), "{errors:?}");
        c.store.url = format!("sqlite://{}/tocsin.db", std::env::temp_dir().display());
        assert_eq!(validate(&c), Ok(()));
    }

    #[test]
    fn notifier_keys_must_not_be_empty() {
        let mut c = base();
        let hook: NotifierConfig =
            toml::from_str("type = \"webhook\"\nurl = \"https://hooks.example/x\"\nsecret = \" \"").unwrap();
        c.notifiers.insert("hook".into(), hook);
        let signed: NotifierConfig =
            toml::from_str("type = \"webhook\"\nurl = \"https://hooks.example/x\"\nsecret = \"s3cret\"").unwrap();
        c.notifiers.insert("signed".into(), signed);
        assert_eq!(paths(&c), vec!["notifiers.hook.secret"]);
    }

    #[test]
    fn api_keys_are_unique_and_complete() {
        let mut c = base();
        c.api_keys.push(api_key("a", "k1"));
        c.api_keys.push(api_key("a", "k1"));
        let mut empty = api_key("b", "");
        empty.scopes.clear();
        empty.allowed_kinds = vec!["{".into()];
        c.api_keys.push(empty);
        let errors = validate(&c).unwrap_err();
        let got: Vec<&str> = errors.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            got,
            vec![
                "api_keys[1].name",
                "api_keys[1].key",
                "api_keys[2].key",
                "api_keys[2].scopes",
                "api_keys[2].allowed_kinds[0]"
            ]
        );
        assert!(errors.iter().all(|(_, m)| !m.contains("k1")));
    }

    #[test]
    fn numbers_and_store() {
        let mut c = base();
        c.server.max_body_bytes = 0;
        c.delivery.max_attempts = 0;
        c.delivery.backoff_initial = Dur::secs(10);
        c.delivery.backoff_max = Dur::secs(5);
        c.store.url = "postgres://u:pw@db/tocsin".into();
        c.store.retention = Dur::secs(0);
        c.templates.text = Some("{% if %}".into());
        c.notifiers.insert("bad name".into(), NotifierConfig::Console(ConsoleConfig::default()));
        let errors = validate(&c).unwrap_err();
        let got: Vec<&str> = errors.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            got,
            vec![
                "server.max_body_bytes",
                "store.url",
                "store.retention",
                "delivery.max_attempts",
                "delivery.backoff_initial",
                "templates.text",
                "notifiers.\"bad name\"",
            ]
        );
        assert!(errors[1].1.contains("not yet supported"));
        assert!(!errors[1].1.contains("pw"));
    }
}
