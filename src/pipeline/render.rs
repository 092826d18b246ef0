//! Rendering: an event becomes a message through minijinja templates.
//!
//! Templates see the event's fields at the top level (`kind`, `title`, `text`, `user`,
//! `labels`, `fields`, `severity`, `source`, `timestamp`) and the whole event as `event`.
//! A value the event does not have (`{{ user }}` of an anonymous event, `{{ labels.env }}`
//! without that label) is undefined: it renders as nothing and takes `default(…)`. A
//! template that fails at render time falls back to the next one in the precedence (route,
//! type, global, built-in), so a typo in a template never loses an event.

use minijinja::{Environment, UndefinedBehavior};

use super::route::CompiledRoute;
use crate::config::{RouteConfig, TemplatesConfig};
use crate::event::{AlertStatus, Event};
use crate::message::{Field, Message, MessageStatus};

const DEFAULT_TITLE: &str = "{{ title if title else kind }}";
const DEFAULT_TEXT: &str = "{{ text if text else '' }}";

#[derive(Debug, thiserror::Error)]
#[error("{key}: {source}")]
pub struct TemplateError {
    pub key: String,
    #[source]
    pub source: minijinja::Error,
}

/// The names a template sees besides minijinja's own globals.
pub const CONTEXT_NAMES: &[&str] = &[
    "event",
    "kind",
    "severity",
    "title",
    "text",
    "user",
    "labels",
    "fields",
    "source",
    "link",
    "fingerprint",
    "timestamp",
];

pub struct Renderer {
    env: Environment<'static>,
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    // `{{ event.labels.env }}` of an event without labels is nothing, not an error that would
    // drop the whole template.
    env.set_undefined_behavior(UndefinedBehavior::Chainable);
    env.set_formatter(|out, state, value| {
        if value.is_none() {
            return Ok(());
        }
        minijinja::escape_formatter(out, state, value)
    });
    env
}

/// What a template sees. Absent values are left out rather than `none`, so they are
/// undefined: `{{ user | default('anon') }}` works and `{{ text | upper }}` is empty.
fn context(event: &Event) -> minijinja::Value {
    use minijinja::Value;
    let mut ctx: Vec<(&str, Value)> = vec![
        ("event", Value::from_serialize(event)),
        ("kind", Value::from(event.kind.as_str())),
        ("severity", Value::from(event.severity.as_str())),
        ("labels", Value::from_serialize(&event.labels)),
        ("fields", Value::from_serialize(&event.fields)),
        ("source", Value::from(event.source.as_str())),
        ("fingerprint", Value::from(event.fingerprint.as_str())),
        ("timestamp", Value::from(event.timestamp.to_rfc3339())),
    ];
    for (name, value) in [("title", &event.title), ("text", &event.text), ("user", &event.user), ("link", &event.link)]
    {
        if let Some(v) = value {
            ctx.push((name, Value::from(v.as_str())));
        }
    }
    ctx.into_iter().collect()
}

/// Checks a template as `config check` should: syntax, names it does not know (a typo such as
/// `{{ tittle }}` would render as nothing), and filters, tests or functions that do not exist
/// (minijinja only finds those when rendering). `Err` is the message for the config key.
pub fn check_template(source: &str) -> Result<(), String> {
    let env = environment();
    let template = env.template_from_str(source).map_err(|e| format!("invalid template: {e}"))?;
    let globals: Vec<&str> = env.globals().map(|(name, _)| name).collect();
    let mut unknown: Vec<String> = template
        .undeclared_variables(false)
        .into_iter()
        .filter(|v| !CONTEXT_NAMES.contains(&v.as_str()) && !globals.contains(&v.as_str()))
        .collect();
    unknown.sort();
    if let Some(name) = unknown.first() {
        return Err(format!("unknown variable `{name}`; templates see {}", CONTEXT_NAMES.join(", ")));
    }
    let sample = serde_json::json!({
        "kind": "sample.kind", "severity": "error", "title": "t", "text": "x", "user": "u@example.com",
        "labels": {"env": "prod"}, "fields": {"n": 1}, "link": "https://example.com", "status": "firing",
    });
    let event = crate::event::parse_event(&sample, "", "check", chrono::Utc::now()).expect("the sample event is valid");
    match template.render(context(&event)) {
        Err(e)
            if matches!(
                e.kind(),
                minijinja::ErrorKind::UnknownFilter
                    | minijinja::ErrorKind::UnknownTest
                    | minijinja::ErrorKind::UnknownFunction
                    | minijinja::ErrorKind::UnknownMethod
            ) =>
        {
            Err(format!("invalid template: {e}"))
        }
        _ => Ok(()),
    }
}

impl Renderer {
    pub fn new(templates: &TemplatesConfig) -> Result<Renderer, TemplateError> {
        let mut renderer = Renderer { env: environment() };
        renderer.add("default.title", DEFAULT_TITLE.to_string(), "templates.title")?;
        renderer.add("default.text", DEFAULT_TEXT.to_string(), "templates.text")?;
        if let Some(t) = &templates.title {
            renderer.add("global.title", t.clone(), "templates.title")?;
        }
        if let Some(t) = &templates.text {
            renderer.add("global.text", t.clone(), "templates.text")?;
        }
        for (kind, t) in &templates.types {
            if let Some(title) = &t.title {
                renderer.add(&format!("type.{kind}.title"), title.clone(), &format!("templates.types.{kind}.title"))?;
            }
            if let Some(text) = &t.text {
                renderer.add(&format!("type.{kind}.text"), text.clone(), &format!("templates.types.{kind}.text"))?;
            }
        }
        Ok(renderer)
    }

    fn add(&mut self, name: &str, source: String, key: &str) -> Result<(), TemplateError> {
        self.env
            .add_template_owned(name.to_string(), source)
            .map_err(|source| TemplateError { key: key.to_string(), source })
    }

    pub fn add_route_templates(&mut self, route_id: &str, route: &RouteConfig) -> Result<(), TemplateError> {
        if let Some(t) = &route.title_template {
            self.add(&format!("{route_id}.title"), t.clone(), &format!("{route_id}.title_template"))?;
        }
        if let Some(t) = &route.text_template {
            self.add(&format!("{route_id}.text"), t.clone(), &format!("{route_id}.text_template"))?;
        }
        Ok(())
    }

    fn render_part(&self, route: &CompiledRoute, part: &str, ctx: &minijinja::Value) -> String {
        let by_type = route.notifier_type.map(|t| format!("type.{t}.{part}")).unwrap_or_default();
        for name in [format!("{}.{part}", route.id), by_type, format!("global.{part}")] {
            if let Ok(template) = self.env.get_template(&name) {
                match template.render(ctx) {
                    Ok(s) => return s,
                    Err(err) => {
                        tracing::warn!(template = %name, error = %err, "template failed; using the next one");
                    }
                }
            }
        }
        self.env.get_template(&format!("default.{part}")).and_then(|t| t.render(ctx)).unwrap_or_default()
    }

    /// `group_key` is the route's grouping of this event, decided by the caller.
    pub fn render(&self, route: &CompiledRoute, event: &Event, group_key: String) -> Message {
        let ctx = context(event);
        let title = self.render_part(route, "title", &ctx);
        let text = self.render_part(route, "text", &ctx);

        let mut fields = Vec::with_capacity(event.fields.len() + 1);
        if let Some(user) = &event.user {
            fields.push(Field { name: "user".into(), value: user.clone() });
        }
        for (name, value) in &event.fields {
            let value = match value {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            fields.push(Field { name: name.clone(), value });
        }

        let group_labels =
            route.group_by.iter().filter_map(|k| event.labels.get(k).map(|v| (k.clone(), v.clone()))).collect();

        Message {
            title,
            text,
            severity: event.severity,
            status: match event.status {
                None => MessageStatus::Event,
                Some(AlertStatus::Firing) => MessageStatus::Firing,
                Some(AlertStatus::Resolved) => MessageStatus::Resolved,
            },
            fields,
            link: event.link.clone(),
            channel: route.channel.clone(),
            group_key,
            group_labels,
            events: vec![event.clone()],
            truncated: 0,
            mention: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::parse_event;
    use serde_json::json;

    fn route_config(title: Option<&str>) -> RouteConfig {
        RouteConfig {
            notifier: "n".into(),
            channel: Some("#ops".into()),
            group_by: vec!["env".into()],
            title_template: title.map(str::to_string),
            ..Default::default()
        }
    }

    #[test]
    fn defaults_then_overrides() {
        let event = parse_event(
            &json!({"kind": "user.registered", "user": "alice@example.com", "labels": {"env": "prod"},
                    "fields": {"plan": "pro", "seats": 3}}),
            "",
            "backend",
            chrono::Utc::now(),
        )
        .unwrap();
        let mut renderer = Renderer::new(&TemplatesConfig::default()).unwrap();
        let plain = CompiledRoute::new("routes[0]".into(), &route_config(None)).unwrap();
        let msg = renderer.render(&plain, &event, plain.group_key(&event));
        assert_eq!(msg.title, "user.registered");
        assert_eq!(msg.channel.as_deref(), Some("#ops"));
        assert_eq!(msg.group_labels.get("env").map(String::as_str), Some("prod"));
        let names: Vec<_> = msg.fields.iter().map(|f| (f.name.as_str(), f.value.as_str())).collect();
        assert_eq!(names, [("user", "alice@example.com"), ("plan", "pro"), ("seats", "3")]);

        let config = route_config(Some("New signup: {{ user }} on {{ fields.plan }}"));
        renderer.add_route_templates("routes[1]", &config).unwrap();
        let custom = CompiledRoute::new("routes[1]".into(), &config).unwrap();
        assert_eq!(
            renderer.render(&custom, &event, custom.group_key(&event)).title,
            "New signup: alice@example.com on pro"
        );
    }

    #[test]
    fn absent_values_render_as_nothing() {
        let templates =
            TemplatesConfig { text: Some("user: {{ user }}|{{ text }}|{{ link }}".into()), ..Default::default() };
        let mut renderer = Renderer::new(&templates).unwrap();
        let config = route_config(Some("New user: {{ user }}{{ fields.nope }}"));
        renderer.add_route_templates("routes[0]", &config).unwrap();
        let route = CompiledRoute::new("routes[0]".into(), &config).unwrap();
        let event = parse_event(&json!({"kind": "user.anon", "title": "t"}), "", "s", chrono::Utc::now()).unwrap();
        let msg = renderer.render(&route, &event, route.group_key(&event));
        assert_eq!(msg.title, "New user: ");
        assert_eq!(msg.text, "user: ||");
    }

    #[test]
    fn absent_values_are_undefined_so_filters_and_defaults_work() {
        let templates = TemplatesConfig {
            title: Some("{{ user | default('anon') }} {{ event.labels.env }}{{ labels.env.deeper }}".into()),
            text: Some("[{{ text | upper }}]".into()),
            ..Default::default()
        };
        let renderer = Renderer::new(&templates).unwrap();
        let route = CompiledRoute::new("routes[0]".into(), &route_config(None)).unwrap();
        let event = parse_event(&json!({"kind": "user.anon"}), "", "s", chrono::Utc::now()).unwrap();
        let msg = renderer.render(&route, &event, route.group_key(&event));
        assert_eq!(msg.title, "anon ", "the user's template is kept, not replaced by the default");
        assert_eq!(msg.text, "[]");
    }

    #[test]
    fn fields_keep_the_senders_order() {
        let renderer = Renderer::new(&TemplatesConfig::default()).unwrap();
        let route = CompiledRoute::new("routes[0]".into(), &route_config(None)).unwrap();
        let body = r#"{"kind": "order.placed", "fields": {"zeta": "first", "mid": "second", "alpha": "third"}}"#;
        let event = parse_event(&serde_json::from_str(body).unwrap(), "", "s", chrono::Utc::now()).unwrap();
        let msg = renderer.render(&route, &event, route.group_key(&event));
        let names: Vec<&str> = msg.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["zeta", "mid", "alpha"]);
        let stored = serde_json::to_string(&event).unwrap();
        let back: Event = serde_json::from_str(&stored).unwrap();
        assert_eq!(back.fields.keys().collect::<Vec<_>>(), ["zeta", "mid", "alpha"]);
    }

    #[test]
    fn config_check_finds_typos_and_unknown_filters() {
        assert_eq!(
            check_template("{{ title }} by {{ user | default('x') }} {% set n = 1 %}{{ n }}{{ range(2) }}"),
            Ok(())
        );
        assert_eq!(check_template("{% for k, v in labels | items %}{{ k }}{% endfor %}"), Ok(()));
        let typo = check_template("{{ tittle }}").unwrap_err();
        assert!(typo.starts_with("unknown variable `tittle`; templates see event, kind"), "{typo}");
        let filter = check_template("{{ title | nofilter }}").unwrap_err();
        assert!(filter.contains("nofilter"), "{filter}");
        assert!(check_template("{{ title is nosuchtest }}").is_err());
        assert!(check_template("{{ title ").unwrap_err().starts_with("invalid template:"));
    }

    #[test]
    fn a_failing_template_falls_back_in_precedence_order() {
        let templates: TemplatesConfig =
            toml::from_str("title = \"G: {{ title }}\"\n[types.webhook]\ntitle = \"T: {{ title }}\"").unwrap();
        let mut renderer = Renderer::new(&templates).unwrap();
        let config = route_config(Some("{{ fields.x | no_such_filter }}"));
        renderer.add_route_templates("routes[0]", &config).unwrap();
        let mut route = CompiledRoute::new("routes[0]".into(), &config).unwrap();
        let event = parse_event(&json!({"kind": "a.b", "title": "hello"}), "", "s", chrono::Utc::now()).unwrap();
        assert_eq!(renderer.render(&route, &event, route.group_key(&event)).title, "G: hello");
        route.notifier_type = Some("webhook");
        assert_eq!(renderer.render(&route, &event, route.group_key(&event)).title, "T: hello");
    }

    #[test]
    fn failing_template_falls_back() {
        let mut renderer = Renderer::new(&TemplatesConfig::default()).unwrap();
        let config = route_config(Some("{{ kind | no_such_filter }}"));
        // An unknown filter is a render-time error in minijinja.
        if renderer.add_route_templates("routes[0]", &config).is_ok() {
            let route = CompiledRoute::new("routes[0]".into(), &config).unwrap();
            let event = parse_event(&json!({"kind": "a.b"}), "", "s", chrono::Utc::now()).unwrap();
            assert_eq!(renderer.render(&route, &event, route.group_key(&event)).title, "a.b");
        }
    }
}
