//! `tocsin send`: the messenger. (to be completed)

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct SendArgs {
    #[command(flatten)]
    pub config: super::ConfigArg,
    /// Route the message as if it were an event of this kind
    #[arg(long, default_value = "tocsin.message")]
    pub route_as: String,
    #[arg(long, default_value = "info")]
    pub severity: String,
    /// Send straight to this notifier instead of routing
    #[arg(long)]
    pub notifier: Option<String>,
    #[arg(long)]
    pub channel: Option<String>,
    pub text: String,
}

pub async fn run(_args: SendArgs) -> ExitCode {
    ExitCode::from(1)
}
