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
    // A one-line message is all title: repeating it as the text showed it twice.
    let title = first_line(&args.text);
    let text = (args.text.trim() != title).then_some(args.text.as_str());
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

fn first_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or("").trim();
    line.chars().take(crate::event::MAX_TITLE_LEN).collect()
}
