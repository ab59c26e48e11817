//! Logging for every command: structured lines on stderr (stdout belongs to
//! the logging tracer and to `report`), set up once from the configuration.

use crate::config::{CommonArgs, FileConfig, LogFormat, UsageError, log_level};
use std::io::IsTerminal;

/// The configuration file and the log level every command that reads the
/// store takes, checked (bad ones are usage errors), with logging set up.
pub fn load_and_log(common: &CommonArgs) -> anyhow::Result<FileConfig> {
    let file = FileConfig::load(common.config.as_deref()).map_err(UsageError::from_config)?;
    let level = log_level(file.log_level.as_deref()).map_err(UsageError::from_config)?;
    init_logging(LogFormat::Text, &level);
    Ok(file)
}

/// Sets up structured logs on stderr (stdout belongs to the logging tracer);
/// when nothing reads stderr any more, log lines are lost, the service goes on.
/// Text logs are coloured only when stderr is a terminal (and `NO_COLOR` is unset).
pub fn init_logging(format: LogFormat, level: &str) {
    let filter = tracing_subscriber::EnvFilter::new(format!("warn,valuestream={level},valuestream_core={level}"));
    // A line that cannot be written (stderr closed) is dropped: the fallback
    // of reporting it with eprintln! would panic and end the service.
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).log_internal_errors(false);
    let _ = match format {
        LogFormat::Json => builder.json().with_ansi(false).try_init(),
        LogFormat::Text => {
            builder.with_ansi(colour(std::io::stderr().is_terminal(), std::env::var_os("NO_COLOR"))).try_init()
        }
    };
}

/// Whether text logs carry ANSI colours: only on a terminal, and never when
/// `NO_COLOR` is set to anything but the empty string (no-color.org).
fn colour(terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    terminal && no_color.is_none_or(|value| value.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_logs_are_coloured_only_on_a_terminal_without_no_color() {
        assert!(colour(true, None));
        assert!(colour(true, Some("".into())));
        assert!(!colour(true, Some("1".into())));
        assert!(!colour(false, None));
    }
}
