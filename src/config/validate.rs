//! Semantic checks that serde cannot express: cross-references, patterns, templates.
//! Pure: no IO.

use super::Config;

/// Returns every problem as `(key path, message)`.
pub fn validate(config: &Config) -> Result<(), Vec<(String, String)>> {
    let mut errors = Vec::new();
    for (i, route) in config.routes.iter().enumerate() {
        if !config.notifiers.contains_key(&route.notifier) {
            errors.push((format!("routes[{i}].notifier"), format!("no notifier named {:?}", route.notifier)));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}
