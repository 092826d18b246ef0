//! Logging: `tracing` to standard error, as text for people or JSON for collectors.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

const LEVELS: &[&str] = &["trace", "debug", "info", "warn", "error", "off"];

/// `log.level` as a `tracing` filter: comma-separated `LEVEL` or `TARGET=LEVEL`, `warning`
/// taken as `warn`. A bare word that is no level would be read by `tracing` as a target and
/// silence every other log line, so it is refused.
pub fn log_filter(level: &str) -> Result<String, String> {
    let mut out = Vec::new();
    for directive in level.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let (target, lvl) = match directive.rsplit_once('=') {
            Some((target, lvl)) if !target.trim().is_empty() => (Some(target.trim()), lvl.trim()),
            _ => (None, directive),
        };
        let lvl = lvl.to_ascii_lowercase();
        let lvl = if lvl == "warning" { "warn".to_string() } else { lvl };
        if !LEVELS.contains(&lvl.as_str()) {
            return Err(format!(
                "{directive:?} is not a level; write one of {} or TARGET=LEVEL (e.g. \"info,tocsin=debug\")",
                LEVELS.join(", ")
            ));
        }
        out.push(match target {
            Some(t) => format!("{t}={lvl}"),
            None => lvl,
        });
    }
    if out.is_empty() {
        return Err(format!("is empty; write one of {}", LEVELS.join(", ")));
    }
    Ok(out.join(","))
}

/// Installs the global subscriber once; later calls (tests, reloads) are no-ops.
pub fn init(config: &LogConfig) {
    let level = log_filter(&config.level).unwrap_or_else(|_| "info".to_string());
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let installed = match config.format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).try_init(),
        LogFormat::Text => builder.try_init(),
    };
    if installed.is_ok() && config.format == LogFormat::Json {
        // A collector reading JSON lines would drop the default hook's plain text.
        std::panic::set_hook(Box::new(|info| {
            let thread = std::thread::current();
            tracing::error!(thread = thread.name().unwrap_or("unnamed"), panic = %info, "panicked");
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::log_filter;

    #[test]
    fn levels_and_targets_are_checked() {
        assert_eq!(log_filter("info").unwrap(), "info");
        assert_eq!(log_filter("Warning").unwrap(), "warn");
        assert_eq!(log_filter("info, tocsin=debug").unwrap(), "info,tocsin=debug");
        assert_eq!(log_filter("tocsin::store=warning").unwrap(), "tocsin::store=warn");
        assert!(log_filter("verbose").unwrap_err().starts_with("\"verbose\" is not a level"));
        assert!(log_filter("tocsin=bogus").is_err());
        assert!(log_filter(" ").is_err());
    }
}
