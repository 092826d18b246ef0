//! The command line: the binary's edge, where typed errors become words and exit codes.

/// `println!` that cannot panic: when the reader went away (`tocsin check run … | head`), the
/// output stops and the command still finishes its work (sending, recording, its exit code).
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

mod check;
mod run_task;
mod send;
mod silence;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "tocsin", version, about = "Tells your team, in its chat, what it must know")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Args, Clone)]
pub struct ConfigArg {
    /// The configuration file [default: $TOCSIN_CONFIG, then ./tocsin.toml]
    #[arg(long, short = 'c', global = true)]
    pub config: Option<PathBuf>,
}

impl ConfigArg {
    pub fn path(&self) -> PathBuf {
        self.config
            .clone()
            .or_else(|| std::env::var_os("TOCSIN_CONFIG").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("tocsin.toml"))
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon: HTTP API, scheduler, pipeline, delivery
    Serve {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Validate the configuration file
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Deliver one message now, through routing or straight to a notifier
    Send(send::SendArgs),
    /// Add, list or expire silences (through the running daemon)
    Silence {
        #[command(subcommand)]
        command: silence::SilenceCommand,
    },
    /// List or run scheduled checks
    Check {
        #[command(subcommand)]
        command: check::CheckCommand,
    },
    /// Run a scheduled task, reporting start, exit code and output tail as heartbeat NAME
    RunTask(run_task::RunTaskArgs),
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print a one-line summary, or every error as PATH:LINE:COL: message
    Check {
        #[command(flatten)]
        config: ConfigArg,
    },
}

pub fn main() -> ExitCode {
    main_with_idle_hook(|| {})
}

/// `main`, with `on_idle` run by threads that go idle (`crate::idle`): the binary hands the
/// allocator's "return what is free" here.
pub fn main_with_idle_hook(on_idle: fn()) -> ExitCode {
    crate::idle::set_hook(on_idle);
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_park(crate::idle::going_idle)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = runtime.block_on(run(cli));
    // Dropping a runtime waits for its blocking tasks without limit; everything that matters
    // was finished inside `run`, so a straggler must not keep the process from exiting.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    code
}

async fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Serve { config } => match crate::app::serve(&config.path()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(1)
            }
        },
        Command::Config { command: ConfigCommand::Check { config } } => config_check(&config.path()),
        Command::Send(args) => send::run(args).await,
        Command::Check { command } => check::run(command).await,
        Command::Silence { command } => silence::run(command).await,
        Command::RunTask(args) => run_task::run(args).await,
    }
}

fn config_check(path: &std::path::Path) -> ExitCode {
    match crate::config::load(path) {
        Ok(config) => {
            out!(
                "{}: ok ({} notifiers, {} routes, {} api keys, {} clusters, {} checks)",
                path.display(),
                config.notifiers.len(),
                config.routes.len(),
                config.api_keys.len(),
                config.elasticsearch.len(),
                config.checks.len()
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("{e}");
            }
            ExitCode::from(1)
        }
    }
}

/// Loads the configuration or prints every error; for subcommands that need a valid file.
pub(crate) fn load_config_or_report(path: &std::path::Path) -> Option<crate::config::Config> {
    match crate::config::load(path) {
        Ok(c) => Some(c),
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("{e}");
            }
            None
        }
    }
}
