//! Process-wide logging: `tracing` events formatted as text or JSON lines on stderr.
//!
//! The filter comes from `log.level`; a `RUST_LOG` environment variable, when set
//! and valid, overrides it, so an operator can turn on `debug` for one module
//! without editing the file.
//!
//! Lines go through a bounded queue to a dedicated writer thread: a media worker that
//! logs never waits for stderr (a slow terminal, a full pipe to a log collector). When
//! the queue is full the line is dropped and counted (`sluice_log_lines_dropped_total`),
//! which is the right trade for a real-time forwarder.

use std::io::IsTerminal;
use std::sync::OnceLock;

use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

/// Lines queued for the writer thread before new ones are dropped.
pub const LOG_QUEUE_LINES: usize = 16_384;

static DROPPED: OnceLock<ErrorCounter> = OnceLock::new();

/// Log lines dropped so far because the writer's queue was full.
pub fn dropped_lines() -> u64 {
    DROPPED
        .get()
        .map_or(0, |counter| counter.dropped_lines() as u64)
}

/// Keeps the writer thread alive; dropping it flushes the queued lines (at exit).
#[must_use = "dropping the guard stops the log writer"]
pub struct LogGuard(#[allow(dead_code)] WorkerGuard);

use crate::config::{LogConfig, LogFormat};

/// Why logging could not start.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    #[error("log.level: {level:?} is not a valid log filter: {source}")]
    InvalidFilter {
        level: String,
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },
    #[error("a global logger is already installed")]
    AlreadyInstalled,
}

/// The filter to use: `RUST_LOG` if set to a valid filter, else `config.level`.
pub fn filter_for(config: &LogConfig, rust_log: Option<&str>) -> Result<EnvFilter, LoggingError> {
    if let Some(directives) = rust_log.filter(|text| !text.trim().is_empty()) {
        if let Ok(filter) = EnvFilter::try_new(directives) {
            return Ok(filter);
        }
        // An invalid RUST_LOG falls back to the file's level; init() warns about it.
    }
    EnvFilter::try_new(&config.level).map_err(|source| LoggingError::InvalidFilter {
        level: config.level.clone(),
        source,
    })
}

/// Installs the global subscriber. Call once, early in `main`, and keep the guard until
/// the process ends.
pub fn init(config: &LogConfig) -> Result<LogGuard, LoggingError> {
    let rust_log = std::env::var("RUST_LOG").ok();
    let filter = filter_for(config, rust_log.as_deref())?;
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(LOG_QUEUE_LINES)
        .thread_name("sluice-log")
        .finish(std::io::stderr());
    let _ = DROPPED.set(writer.error_counter());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        // Colours only for a person at a terminal, not in files or log collectors.
        .with_ansi(std::io::stderr().is_terminal());
    let installed = match config.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    installed.map_err(|_| LoggingError::AlreadyInstalled)?;
    if let Some(text) = rust_log.filter(|text| EnvFilter::try_new(text).is_err()) {
        tracing::warn!(rust_log = %text, level = %config.level, "RUST_LOG is not a valid filter; using log.level");
    }
    Ok(LogGuard(guard))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(level: &str) -> LogConfig {
        LogConfig {
            format: LogFormat::Text,
            level: level.to_owned(),
        }
    }

    #[test]
    fn config_level_is_used_without_rust_log() {
        let filter = filter_for(&config("warn"), None).unwrap();
        assert_eq!(filter.to_string(), "warn");
    }

    #[test]
    fn rust_log_overrides_config_level() {
        let filter = filter_for(&config("warn"), Some("sluice=trace")).unwrap();
        assert_eq!(filter.to_string(), "sluice=trace");
    }

    #[test]
    fn invalid_rust_log_falls_back_to_config_level() {
        let filter = filter_for(&config("error"), Some("=[")).unwrap();
        assert_eq!(filter.to_string(), "error");
    }

    #[test]
    fn blank_rust_log_is_ignored() {
        let filter = filter_for(&config("debug"), Some("  ")).unwrap();
        assert_eq!(filter.to_string(), "debug");
    }

    #[test]
    fn invalid_config_level_is_an_error() {
        let err = filter_for(&config("=["), None).unwrap_err();
        assert!(err.to_string().starts_with("log.level: \"=[\""), "{err}");
    }
}
