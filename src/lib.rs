//! The `plantwatch` binary's library: command-line interface, commands and
//! telemetry. `main.rs` only parses the command line and calls [`run`].
//!
//! # Layout
//!
//! - [`cli`]: the command line (clap).
//! - [`config`]: the configuration: typed settings, layered from
//!   `config/default.toml`, `--config` files and `PLANTWATCH__*` variables, checked at load.
//! - [`bench`]: `plantwatch bench`, the transport benchmark.
//! - [`check_config`]: `plantwatch check-config`, the configuration checked and summarized.
//! - [`service`]: `plantwatch serve`: store, supervision tree, persistence, API, drain.
//! - [`demo`]: `plantwatch demo`, the embedded default: a simulated plant and the service.
//! - [`store_commands`]: `plantwatch keys`, `backup` and `restore`.
//! - [`api`]: the HTTP API.
//! - [`simulate`]: `plantwatch simulate`, the device simulator's front end.
//! - [`telemetry`]: logging setup.

pub mod api;
pub mod bench;
pub mod check_config;
pub mod cli;
pub mod config;
pub mod demo;
pub mod metrics;
pub mod service;
pub mod simulate;
pub mod store_commands;
pub mod telemetry;

use std::process::ExitCode;

/// Exit code for bad command-line input or configuration (EX_USAGE).
pub const EXIT_USAGE: u8 = 64;

/// Runs one command to completion.
pub fn run(cli: cli::Cli) -> ExitCode {
    let command = cli.command.unwrap_or_default();
    let level = cli.log_level.as_deref();
    let env = config::process_env();
    let result = match command {
        cli::Command::Simulate(args) => {
            telemetry::init(level);
            simulate::run(args)
        }
        cli::Command::Bench(args) => {
            telemetry::init(level);
            bench::run(args)
        }
        cli::Command::CheckConfig(args) => {
            telemetry::init(level);
            check_config::run(&args, &env)
        }
        cli::Command::Serve(args) => service::serve(&args, &env, level),
        cli::Command::Demo(args) => demo::run(&args, &env, level),
        cli::Command::Keys(cmd) => {
            telemetry::init(level);
            store_commands::keys(&cmd, &env)
        }
        cli::Command::Backup(args) => {
            telemetry::init(level);
            store_commands::backup(&args, &env)
        }
        cli::Command::Restore(args) => {
            telemetry::init(level);
            store_commands::restore(&args, &env)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("plantwatch: {e:#}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// A command's failure: a message for the terminal and an exit code.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Failed(String),
}

impl CommandError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CommandError::Usage(_) => EXIT_USAGE,
            CommandError::Failed(_) => 1,
        }
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM. The handlers are installed when
/// this is called (inside a runtime), not when the future is first polled, so
/// a signal that arrives while the service is still starting is not lost to
/// the default action.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate()).ok();
        let int = signal(SignalKind::interrupt()).ok();
        async move {
            let wait = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = wait(term) => {}
                () = wait(int) => {}
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}
