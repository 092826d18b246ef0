//! `tocsin check list|run`.

use std::process::ExitCode;

use anyhow::{anyhow, Context};
use chrono::{DateTime, Utc};
use clap::Subcommand;

use super::ConfigArg;
use crate::check::schedule::{parse_tz, Schedule};
use crate::check::{run_check, Clusters, Outcome, RunOptions};
use crate::config::Config;
use crate::event::AlertStatus;
use crate::notify::delivery::{send_with_retries, RetryPolicy};
use crate::notify::{build_all, NotifierContext};
use crate::store::{DynStore, NewEvent};

#[derive(Debug, Subcommand)]
pub enum CheckCommand {
    /// List checks with their schedule, next run and last result
    List {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Run one check once and print its findings (exit 0 healthy, 1 alerting, 2 could not check)
    Run {
        name: String,
        #[command(flatten)]
        config: ConfigArg,
        /// Print findings without sending alerts or storing anything
        #[arg(long)]
        dry_run: bool,
        /// Evaluate as if now were this instant (RFC 3339); samples are stored under it
        #[arg(long)]
        at: Option<String>,
    },
}

pub async fn run(command: CheckCommand) -> ExitCode {
    match command {
        CheckCommand::List { config } => match list(&config).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(1)
            }
        },
        CheckCommand::Run { name, config, dry_run, at } => {
            match run_one(&config, &name, dry_run, at.as_deref()).await {
                Ok(outcome) => ExitCode::from(outcome.exit_code()),
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
    }
}

fn load(config: &ConfigArg) -> anyhow::Result<Config> {
    let path = config.path();
    let config = super::load_config_or_report(&path).ok_or_else(|| anyhow!("{} is not valid", path.display()))?;
    let errors = crate::check::validate(&config);
    if !errors.is_empty() {
        for (key, message) in &errors {
            eprintln!("{}: {key}: {message}", path.display());
        }
        return Err(anyhow!("{} is not valid", path.display()));
    }
    Ok(config)
}

async fn list(config: &ConfigArg) -> anyhow::Result<()> {
    let config = load(config)?;
    let runs = match crate::store::open(&config.store.url).await {
        Ok(store) => store.last_check_runs().await.unwrap_or_default(),
        Err(e) => {
            eprintln!("warning: cannot open the store ({e}); last results unknown");
            Vec::new()
        }
    };
    if config.checks.is_empty() {
        out!("no checks configured");
        return Ok(());
    }
    let now = Utc::now();
    out!("{:<24} {:<26} {:<28} {:<27} LAST RESULT", "NAME", "TYPE", "SCHEDULE", "NEXT RUN");
    for check in &config.checks {
        let c = check.common();
        let tz = parse_tz(c.timezone).unwrap_or(chrono_tz::UTC);
        let (schedule, next) = match c.schedule {
            Some(expr) => {
                let next = Schedule::parse(expr, tz)
                    .ok()
                    .and_then(|s| s.next_after(now))
                    .map(|t| t.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S %Z").to_string())
                    .unwrap_or_else(|| "-".into());
                (format!("{expr} ({})", c.timezone), next)
            }
            None => ("manual (tocsin check run)".to_string(), "-".to_string()),
        };
        let last = runs
            .iter()
            .find(|r| r.check == c.name)
            .map(|r| {
                format!("{} at {} ({})", r.outcome, r.at.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z"), r.summary)
            })
            .unwrap_or_else(|| "never ran".into());
        out!("{:<24} {:<26} {:<28} {:<27} {}", c.name, check.type_name(), schedule, next, last);
    }
    Ok(())
}

async fn run_one(config_arg: &ConfigArg, name: &str, dry_run: bool, at: Option<&str>) -> anyhow::Result<Outcome> {
    let config = load(config_arg)?;
    let check = config.checks.iter().find(|c| c.name() == name).ok_or_else(|| {
        let names: Vec<&str> = config.checks.iter().map(|c| c.name()).collect();
        anyhow!(
            "no check named {name:?} (configured: {})",
            if names.is_empty() { "none".into() } else { names.join(", ") }
        )
    })?;
    let at: DateTime<Utc> = match at {
        Some(s) => DateTime::parse_from_rfc3339(s)
            .with_context(|| format!("--at {s:?} is not an RFC 3339 time such as 2026-11-21T16:00:00Z"))?
            .with_timezone(&Utc),
        None => Utc::now(),
    };
    let store: Option<DynStore> = match crate::store::open(&config.store.url).await {
        Ok(s) => Some(s),
        Err(e) if dry_run => {
            eprintln!("warning: cannot open the store ({e}); running without history");
            None
        }
        Err(e) => return Err(anyhow!("cannot open the store: {e}")),
    };
    let clusters = Clusters::from_config(&config);
    let report = run_check(check, &clusters, &RunOptions { at, store: store.clone() }).await;

    out!("check {} at {}: {}", report.check, report.at.to_rfc3339(), report.outcome.as_str());
    for line in &report.lines {
        out!("  {line}");
    }
    for event in &report.events {
        let status = match event.status {
            Some(AlertStatus::Resolved) => "RESOLVED",
            _ => "FIRING",
        };
        out!("{status} {} [{}]: {}", event.kind, event.severity, event.title.as_deref().unwrap_or(""));
        for line in event.text.as_deref().unwrap_or("").lines() {
            out!("    {line}");
        }
    }
    for e in &report.store_errors {
        eprintln!("warning: {e}");
    }
    if dry_run {
        out!("(dry run: nothing sent or stored)");
        return Ok(report.outcome);
    }
    if let Some(store) = &store {
        for e in report.commit(store).await {
            eprintln!("warning: {e}");
        }
        if !report.events.is_empty() {
            let batch = report.events.iter().map(|e| NewEvent::plain(e.clone(), vec![])).collect();
            if let Err(e) = store.insert_events(batch).await {
                eprintln!("warning: findings not added to the event history: {e}");
            }
        }
    }
    send(&config, &report.events).await;
    if let Some(store) = store {
        store.close().await;
    }
    Ok(report.outcome)
}

/// Routes and sends now: the command line has no outbox to leave work in.
async fn send(config: &Config, events: &[crate::event::Event]) {
    if events.is_empty() {
        return;
    }
    let pipeline = match crate::pipeline::Pipeline::new(config) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("warning: alerts not sent: {e}");
            return;
        }
    };
    let notifiers = build_all(&config.notifiers, &NotifierContext::new(config.delivery.timeout.get()));
    let mut policy = RetryPolicy::from(&config.delivery);
    // A command waits for its answer: a few quick retries, not the daemon's long schedule.
    policy.max_attempts = policy.max_attempts.min(3);
    policy.max = policy.max.min(std::time::Duration::from_secs(5));
    for event in events {
        let deliveries = pipeline.deliveries(event, &mut crate::pipeline::Grouper::default(), chrono::Utc::now());
        if deliveries.is_empty() {
            eprintln!("note: no route matches {} ({}); not sent", event.kind, event.fingerprint);
        }
        for d in deliveries {
            let Some(notifier) = notifiers.get(&d.notifier) else {
                eprintln!("warning: notifier {:?} is not configured", d.notifier);
                continue;
            };
            if let Err(e) = send_with_retries(notifier.as_ref(), &d.message, &policy).await {
                eprintln!("warning: could not send to {}: {e}", d.destination);
            }
        }
    }
}
