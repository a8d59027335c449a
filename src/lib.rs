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
//! - [`discover`]: `plantwatch discover`: Who-Is on the configured networks, a table of what answered.
//! - [`service`]: `plantwatch serve`: store, supervision tree, persistence, API, drain.
//! - [`demo`]: `plantwatch demo`, the embedded default: a simulated plant and the service.
//! - [`store_commands`]: `plantwatch keys`, `backup` and `restore`.
//! - [`api`]: the HTTP API.
//! - [`lease`]: lease writes: the slots plantwatch relinquishes itself when their lease runs out.
//! - [`simulate`]: `plantwatch simulate`, the device simulator's front end.
//! - [`telemetry`]: logging setup.

pub mod api;
pub mod bench;
pub mod check_config;
pub mod cli;
pub mod config;
pub mod demo;
pub mod discover;
#[doc(hidden)]
pub mod fuzzing;
pub mod lease;
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
        cli::Command::Discover(args) => {
            telemetry::init(level);
            discover::run(&args, &env)
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

/// A command line that clap refused, or `--help`/`--version`: help and the
/// version go to stdout with exit code 0; an error is one line on stderr,
/// `plantwatch: <what>; <tip>; usage: <usage>`, with exit code 64 as for a
/// bad configuration.
pub fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            ExitCode::SUCCESS
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            ExitCode::from(EXIT_USAGE)
        }
        _ => {
            eprintln!("plantwatch: {}", cli::one_line(&e));
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// Why an address cannot be listened on, in one line with the fix; `fix`
/// says how to choose another address (a setting or a flag), given one to
/// suggest.
pub fn listen_error(
    addr: std::net::SocketAddr,
    e: &std::io::Error,
    fix: impl Fn(std::net::SocketAddr) -> String,
) -> CommandError {
    use std::io::ErrorKind;
    let mut other = addr;
    other.set_port(if addr.port() < 1024 { 8080 } else { addr.port().wrapping_add(1) });
    let fix = fix(other);
    CommandError::Failed(match e.kind() {
        ErrorKind::AddrInUse => {
            format!("cannot listen on {addr}: address in use (another plantwatch running?); stop it, or {fix}")
        }
        ErrorKind::PermissionDenied => format!(
            "cannot listen on {addr}: permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE); {fix}"
        ),
        ErrorKind::AddrNotAvailable => format!("cannot listen on {addr}: not an address of this machine; {fix}"),
        _ => format!("cannot listen on {addr}: {e}; {fix}"),
    })
}

/// A store that cannot be opened, in one line with the fix. The store's own
/// messages name the path and the fix (locked, damaged, another schema);
/// a directory that cannot be made or written gets the fix added here.
pub fn store_error(e: plantwatch_actors::store::StoreError) -> CommandError {
    use plantwatch_actors::store::StoreError;
    let fix = "set store.path (or PLANTWATCH__STORE__PATH) to a directory this user can write, or give this user the \
               directory (chown/chmod)";
    match &e {
        StoreError::CreateDir { .. } => CommandError::Failed(format!("{e}; {fix}")),
        StoreError::Open { path, reason } if unwritable(path) => {
            CommandError::Failed(format!("cannot open the store at {}: {reason}; {fix}", path.display()))
        }
        _ => CommandError::Failed(e.to_string()),
    }
}

/// Whether `dir` exists but this process cannot write in it.
fn unwritable(dir: &std::path::Path) -> bool {
    if !dir.is_dir() {
        return false;
    }
    let probe = dir.join(format!(".plantwatch-write-test-{}", std::process::id()));
    match std::fs::OpenOptions::new().write(true).create_new(true).open(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            false
        }
        Err(e) => matches!(e.kind(), std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem),
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
