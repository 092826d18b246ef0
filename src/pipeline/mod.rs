//! The pipeline (Vector's "transforms"): from an accepted event to the messages it causes.
//!
//! Pure and synchronous: routing picks destinations, rendering turns the event into a
//! [`Message`](crate::message::Message) per destination. No IO happens here; the caller stores
//! the result in the outbox in the same transaction as the event.

pub mod fold;
mod group;
mod lifecycle;
pub mod mute;
mod render;
pub use render::check_template;
mod route;

pub use group::{next_period_boundary, Grouper};
pub use lifecycle::{Due, Lifecycle, Notice};
pub use render::{Renderer, TemplateError};
pub use route::{compile_globs, CompiledRoute, RouteError};

use chrono::{DateTime, Utc};

use crate::config::Config;
use crate::event::Event;
use crate::store::NewDelivery;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Route(#[from] RouteError),
    #[error(transparent)]
    Template(#[from] TemplateError),
}

/// Routes and templates compiled from one configuration.
pub struct Pipeline {
    routes: Vec<CompiledRoute>,
    default_route: Option<CompiledRoute>,
    renderer: Renderer,
    /// Names of the `events:browser` keys: their events (whose `source` is the key name) never
    /// mention anyone in chat.
    browser_sources: std::collections::BTreeSet<String>,
    /// Each notifier's `type`, for messages sent straight to one (`tocsin send --notifier`).
    notifier_types: std::collections::BTreeMap<String, &'static str>,
}

impl Pipeline {
    pub fn new(config: &Config) -> Result<Pipeline, PipelineError> {
        let mut renderer = Renderer::new(&config.templates)?;
        let mut routes = Vec::with_capacity(config.routes.len());
        for (i, route) in config.routes.iter().enumerate() {
            let id = format!("routes[{i}]");
            renderer.add_route_templates(&id, route)?;
            routes.push(CompiledRoute::new(id, route)?.for_notifier(config.notifiers.get(&route.notifier)));
        }
        let default_route = match &config.default_route {
            Some(route) => {
                renderer.add_route_templates("default_route", route)?;
                Some(
                    CompiledRoute::new("default_route".into(), route)?
                        .for_notifier(config.notifiers.get(&route.notifier)),
                )
            }
            None => None,
        };
        let browser_sources = config
            .api_keys
            .iter()
            .filter(|k| k.scopes.contains(&crate::config::Scope::EventsBrowser))
            .map(|k| k.name.clone())
            .collect();
        let notifier_types = config.notifiers.iter().map(|(name, n)| (name.clone(), n.type_name())).collect();
        Ok(Pipeline { routes, default_route, renderer, browser_sources, notifier_types })
    }

    /// The routes an event takes: the first that matches (and any after it while the matched
    /// ones say `continue`), or the default route when none matches.
    pub fn matching_routes<'a>(&'a self, event: &Event) -> Vec<&'a CompiledRoute> {
        let mut matched = Vec::new();
        for route in &self.routes {
            if route.matches(event) {
                matched.push(route);
                if !route.continue_matching {
                    break;
                }
            }
        }
        if matched.is_empty() {
            if let Some(default) = &self.default_route {
                if default.matches(event) {
                    matched.push(default);
                }
            }
        }
        matched
    }

    /// Every message the event causes, one per matched route, each due when its group's
    /// timers (or its digest period) say so.
    pub fn deliveries(&self, event: &Event, grouper: &mut Grouper, now: DateTime<Utc>) -> Vec<NewDelivery> {
        self.matching_routes(event)
            .into_iter()
            .map(|route| {
                let (group_key, solo) = route.grouping(event);
                let destination = route.destination();
                let not_before = match route.digest {
                    Some(period) => next_period_boundary(now, period),
                    None if solo => now,
                    None => grouper.schedule(
                        &format!("{destination}\u{1f}{group_key}"),
                        route.group_wait,
                        route.group_interval,
                        now,
                    ),
                };
                let mut message = self.renderer.render(route, event, group_key.clone());
                message.mention = self.mention(route, event, &message);
                NewDelivery { destination, notifier: route.notifier.clone(), group_key, not_before, message }
            })
            .collect()
    }

    /// The route's mention for this message: none for resolutions and for browser events.
    fn mention(&self, route: &CompiledRoute, event: &Event, message: &crate::message::Message) -> Option<String> {
        if message.status == crate::message::MessageStatus::Resolved || self.browser_sources.contains(&event.source) {
            return None;
        }
        route.mention_for(message.severity).map(str::to_string)
    }

    /// Renders an event for one notifier, bypassing routing (`tocsin send --notifier`).
    pub fn render_direct(&self, notifier: &str, channel: Option<String>, event: &Event) -> NewDelivery {
        let mut route = CompiledRoute::direct(notifier, channel);
        route.notifier_type = self.notifier_types.get(notifier).copied();
        NewDelivery {
            destination: route.destination(),
            notifier: notifier.to_string(),
            group_key: "direct".into(),
            not_before: event.received_at,
            message: self.renderer.render(&route, event, route.group_key(event)),
        }
    }
}

/// The pipeline in force; replaced as a whole when the configuration is reloaded.
pub type SharedPipeline = crate::shared::Shared<Pipeline>;
