//! Logging: `tracing` to stderr (stdout carries command output). The filter
//! comes from `--log-level`, else `RUST_LOG`, else the configuration's
//! `log.level` (`warn` for commands without one); `log.format` picks text or
//! JSON lines.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

fn filter(level: Option<&str>, fallback: &str) -> EnvFilter {
    match level {
        Some(l) => EnvFilter::try_new(l).unwrap_or_else(|_| EnvFilter::new("info")),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(fallback)),
    }
}

/// For commands without a configuration.
pub fn init(level: Option<&str>) {
    // A second init (tests) is harmless.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter(level, "warn"))
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

/// For the service: level and format from the configuration.
pub fn init_service(level: Option<&str>, log: &LogConfig) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter(level, &log.level))
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = match log.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).with_span_list(false).try_init(),
    };
}
