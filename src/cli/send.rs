//! `tocsin send`: the messenger. Delivers one message now, through routing or straight to a
//! notifier; no daemon and no store needed.

use std::process::ExitCode;

use crate::event::{parse_event, Severity};
use crate::notify::delivery::{send_with_retries, RetryPolicy};
use crate::notify::{build_all, NotifierContext};
use crate::pipeline::Pipeline;

#[derive(Debug, clap::Args)]
pub struct SendArgs {
    #[command(flatten)]
    pub config: super::ConfigArg,
    /// Route the message as if it were an event of this kind
    #[arg(long, default_value = "tocsin.message")]
    pub route_as: String,
    /// info, warning, error or critical
    #[arg(long, default_value = "info")]
    pub severity: String,
    /// Send straight to this notifier instead of routing
    #[arg(long)]
    pub notifier: Option<String>,
    /// The channel, for notifiers that honour one
    #[arg(long)]
    pub channel: Option<String>,
    /// The message text
    pub text: String,
}

pub async fn run(args: SendArgs) -> ExitCode {
    let Some(config) = super::load_config_or_report(&args.config.path()) else {
        return ExitCode::from(1);
    };
    crate::telemetry::init(&config.log);
    if Severity::parse(&args.severity).is_none() {
        eprintln!("error: --severity must be one of info, warning, error, critical");
        return ExitCode::from(1);
    }
    if args.text.trim().is_empty() {
        eprintln!("error: the message text is empty");
        return ExitCode::from(1);
    }
    let (title, text) = split_message(&args.text);
    let text = text.map(|t| {
        let clamped = clamp_text(&t);
        if clamped.len() < t.len() {
            eprintln!("note: the text is {} bytes; sending its first {} bytes", t.len(), clamped.len());
        }
        clamped
    });
    let body = serde_json::json!({
        "kind": args.route_as,
        "severity": args.severity,
        "title": title,
        "text": text,
    });
    let event = match parse_event(&body, "", "cli", chrono::Utc::now()) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let pipeline = match Pipeline::new(&config) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let deliveries = match &args.notifier {
        Some(name) if !config.notifiers.contains_key(name) => {
            eprintln!("error: no notifier named {name:?} in {}", config.path.display());
            return ExitCode::from(1);
        }
        Some(name) => vec![pipeline.render_direct(name, args.channel.clone(), &event)],
        None => {
            let mut deliveries =
                pipeline.deliveries(&event, &mut crate::pipeline::Grouper::default(), event.received_at);
            if let Some(channel) = &args.channel {
                deliveries.iter_mut().for_each(|d| d.message.channel = Some(channel.clone()));
            }
            deliveries
        }
    };
    if deliveries.is_empty() {
        eprintln!("not delivered: no route matches kind {:?} at severity {}", event.kind, event.severity);
        return ExitCode::from(1);
    }

    let notifiers = build_all(&config.notifiers, &NotifierContext::new(config.delivery.timeout.get()));
    // A person is waiting at the terminal: a few quick retries, not the daemon's long schedule.
    let policy =
        RetryPolicy { max_attempts: config.delivery.max_attempts.min(3), ..RetryPolicy::from(&config.delivery) };
    let mut failed = false;
    for d in deliveries {
        let Some(notifier) = notifiers.get(&d.notifier) else { continue };
        match send_with_retries(notifier.as_ref(), &d.message, &policy).await {
            Ok(()) => eprintln!("delivered to {}", d.destination),
            Err(e) => {
                eprintln!("not delivered to {}: {e}", d.destination);
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// The first non-blank line is the title; what follows it, if anything, is the text (so the
/// title is not shown twice). A first line too long for a title is cut with "…" and given
/// whole at the top of the text, so nothing of it is lost.
fn split_message(message: &str) -> (String, Option<std::borrow::Cow<'_, str>>) {
    let message = message.trim_start();
    let (first, rest) = message.split_once('\n').unwrap_or((message, ""));
    let first = first.trim();
    let rest = rest.trim_start_matches(['\n', '\r']).trim_end();
    if first.chars().count() <= crate::event::MAX_TITLE_LEN {
        return (first.to_string(), (!rest.is_empty()).then_some(rest.into()));
    }
    let mut title: String = first.chars().take(crate::event::MAX_TITLE_LEN - 1).collect();
    title.push('…');
    let text = if rest.is_empty() { first.to_string() } else { format!("{first}\n{rest}") };
    (title, Some(text.into()))
}

const TRUNCATION_MARKER: &str = "\n… (truncated)";

/// A text longer than an event may hold is cut, with a visible marker: a log tail piped into
/// the messenger should arrive, shortened, rather than not at all.
fn clamp_text(text: &str) -> String {
    let max = crate::event::MAX_TEXT_BYTES;
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max - TRUNCATION_MARKER.len();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{TRUNCATION_MARKER}", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_line_is_the_title_and_is_not_repeated() {
        assert_eq!(split_message("disk full"), ("disk full".to_string(), None));
        assert_eq!(
            split_message("es warn line1\nline2 & more\n"),
            ("es warn line1".to_string(), Some("line2 & more".into()))
        );
        assert_eq!(
            split_message("\n\n  second line only\nthird"),
            ("second line only".to_string(), Some("third".into()))
        );
        assert_eq!(split_message("title\r\n\r\nbody"), ("title".to_string(), Some("body".into())));
        let long = "x".repeat(300);
        let (title, text) = split_message(&long);
        assert_eq!(title.chars().count(), crate::event::MAX_TITLE_LEN);
        assert!(title.ends_with('…'));
        assert_eq!(text.as_deref(), Some(long.as_str()), "the whole line is in the text");
    }

    #[test]
    fn a_long_text_is_cut_with_a_marker() {
        let text = "é".repeat(10_000);
        let clamped = clamp_text(&text);
        assert!(clamped.len() <= crate::event::MAX_TEXT_BYTES);
        assert!(clamped.ends_with("… (truncated)"));
        assert_eq!(clamp_text("short"), "short");
    }
}
