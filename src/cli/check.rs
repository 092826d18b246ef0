//! `tocsin check list|run`. (to be completed)

use std::process::ExitCode;

use clap::Subcommand;

use super::ConfigArg;

#[derive(Debug, Subcommand)]
pub enum CheckCommand {
    /// List checks with their schedule, next run and last result
    List {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Run one check once and print its findings
    Run {
        name: String,
        #[command(flatten)]
        config: ConfigArg,
        /// Print findings without sending alerts
        #[arg(long)]
        dry_run: bool,
        /// Evaluate as if now were this instant (RFC 3339)
        #[arg(long)]
        at: Option<String>,
    },
}

pub async fn run(command: CheckCommand) -> ExitCode {
    match command {
        CheckCommand::List { .. } | CheckCommand::Run { .. } => {
            eprintln!("error: no checks are supported yet");
            ExitCode::from(2)
        }
    }
}
