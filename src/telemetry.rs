//! Logging with `tracing`.
//!
//! - One-shot commands (`simulate`, `bench`, `check-config`, `backup`...) log
//!   to stderr: their stdout carries their output.
//! - The service (`serve`, `demo`) logs to stdout, in the configuration's
//!   `log.format` (`text`, or `json`: one object per line with the fields of
//!   the current spans: request id, route, device...), and also to
//!   `log.file` when set, rotated daily, keeping `log.keep_files` files.
//!   Writes go through a background writer so that a slow terminal or disk
//!   never stalls a request.
//!
//! The filter comes from `--log-level`, else `RUST_LOG`, else `log.level`.

use std::io::IsTerminal;

use tracing_appender::non_blocking::WorkerGuard;
use tracing_appender::rolling::{RollingFileAppender, Rotation};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogConfig, LogFormat};
use crate::CommandError;

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

type BoxedLayer = Box<dyn Layer<tracing_subscriber::Registry> + Send + Sync>;

fn layer<W>(format: LogFormat, writer: W, ansi: bool) -> BoxedLayer
where
    W: for<'a> tracing_subscriber::fmt::MakeWriter<'a> + Send + Sync + 'static,
{
    let base = tracing_subscriber::fmt::layer().with_writer(writer);
    match format {
        LogFormat::Text => base.with_ansi(ansi).boxed(),
        LogFormat::Json => base.json().flatten_event(true).with_current_span(true).with_span_list(true).boxed(),
    }
}

/// Keeps the background log writers running; drop it last.
pub struct LogGuards(#[allow(dead_code)] Vec<WorkerGuard>);

/// For the service: stdout, and the rotated file when configured.
pub fn init_service(level: Option<&str>, log: &LogConfig) -> Result<LogGuards, CommandError> {
    let mut guards = Vec::new();
    let (stdout, g) = tracing_appender::non_blocking(std::io::stdout());
    guards.push(g);
    let mut layers = vec![layer(log.format, stdout, std::io::stdout().is_terminal())];
    if let Some(path) = &log.file {
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or_else(|| std::path::Path::new("."));
        let prefix = path.file_stem().and_then(|s| s.to_str()).unwrap_or("plantwatch");
        let mut builder = RollingFileAppender::builder().rotation(Rotation::DAILY).filename_prefix(prefix);
        if let Some(ext) = path.extension().and_then(|s| s.to_str()) {
            builder = builder.filename_suffix(ext);
        }
        let appender = builder
            .max_log_files(log.keep_files.max(1) as usize)
            .build(dir)
            .map_err(|e| CommandError::Failed(format!("log.file {}: {e}", path.display())))?;
        let (file, g) = tracing_appender::non_blocking(appender);
        guards.push(g);
        layers.push(layer(log.format, file, false));
    }
    // A second init (tests) is harmless.
    let _ = tracing_subscriber::registry().with(layers).with(filter(level, &log.level)).try_init();
    std::panic::set_hook(Box::new(log_panic));
    Ok(LogGuards(guards))
}

/// A panic (a device actor's, caught by its supervisor, or a decoder's,
/// caught by the transport) as one ERROR event in the service's log: in its
/// format (one JSON object per line, not the default hook's lines of plain
/// text on stderr), with the spans of the request or device it happened in.
/// The backtrace is in it only when `RUST_BACKTRACE` asks for one: resolving
/// the first one loads the binary's debug information, about 130 MB of
/// memory kept for the life of the process (docs/operations.md, "Fault
/// soak").
fn log_panic(info: &std::panic::PanicHookInfo<'_>) {
    let payload = info.payload();
    let message = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)");
    let location = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
    let thread = std::thread::current().name().unwrap_or("unnamed").to_string();
    let backtrace = std::backtrace::Backtrace::capture();
    if backtrace.status() == std::backtrace::BacktraceStatus::Captured {
        tracing::error!(target: "plantwatch::panic", %thread, %location, %backtrace, "panicked at {location}: {message}");
    } else {
        tracing::error!(target: "plantwatch::panic", %thread, %location, "panicked at {location}: {message}");
    }
}
