//! Log lines on stderr, and the fatal error a process ends with, in one format: text or JSON
//! (`log.format`, `--log-format`). When stderr is the journal (`JOURNAL_STREAM` names it), each line
//! starts with its syslog priority (`<3>` error, `<4>` warning, `<6>` info, `<7>` debug) so that
//! `journalctl -p warning` selects by it, and carries no timestamp of its own (the journal's is
//! the one). The filter is `log.level`, or `SWIPEBOT_LOG` when set; a filter that does not parse
//! is an error, never silently replaced.

use std::fmt::Display;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// The environment variable that overrides `log.level`.
pub const LOG_ENV: &str = "SWIPEBOT_LOG";

/// Logging could not be set up as asked.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LoggingError {
    /// `SWIPEBOT_LOG` holds something that is not a filter.
    #[error("{LOG_ENV}=`{value}` is not a valid log filter ({message}); use e.g. `info` or `swipebot=debug,onnxruntime=warn`, or unset it")]
    BadFilter {
        /// What the variable holds.
        value: String,
        /// What the parser said.
        message: String,
    },
    /// `SWIPEBOT_LOG` is not valid UTF-8.
    #[error("{LOG_ENV} is not valid UTF-8; use e.g. `info`, or unset it")]
    NotUnicode,
}

/// The filter: `SWIPEBOT_LOG` when set (and not empty), else `level` (validated with the config).
pub fn filter(level: &str) -> Result<EnvFilter, LoggingError> {
    match std::env::var(LOG_ENV) {
        Ok(value) if !value.trim().is_empty() => EnvFilter::try_new(&value).map_err(|e| LoggingError::BadFilter {
            message: e.to_string(),
            value,
        }),
        Ok(_) | Err(std::env::VarError::NotPresent) => Ok(EnvFilter::new(level)),
        Err(std::env::VarError::NotUnicode(_)) => Err(LoggingError::NotUnicode),
    }
}

/// Sets up tracing: `format` lines at `level` (or `SWIPEBOT_LOG`) on stderr, with priorities and
/// without timestamps when stderr is the journal. A second call keeps the first set-up.
pub fn init(format: LogFormat, level: &str) -> Result<(), LoggingError> {
    use std::io::IsTerminal;
    let filter = filter(level)?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let text = || tracing_subscriber::fmt::format().with_ansi(false).without_time();
    let json = || {
        tracing_subscriber::fmt::format()
            .json()
            .flatten_event(true)
            .without_time()
    };
    let _ = match (format, stderr_is_journal()) {
        (LogFormat::Text, false) => builder.with_ansi(std::io::stderr().is_terminal()).try_init(),
        (LogFormat::Json, false) => builder.json().flatten_event(true).try_init(),
        (LogFormat::Text, true) => builder.with_ansi(false).event_format(Prioritized(text())).try_init(),
        (LogFormat::Json, true) => builder.json().event_format(Prioritized(json())).try_init(),
    };
    Ok(())
}

/// Whether stderr is a stream to the journal: systemd sets `JOURNAL_STREAM=DEVICE:INODE` for the
/// stream it connects, and a child whose stderr was redirected elsewhere inherits the variable, so
/// the numbers must be stderr's own.
pub fn stderr_is_journal() -> bool {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let Some(value) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = value.to_str().and_then(|v| v.split_once(':')) else {
        return false;
    };
    let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() else {
        return false;
    };
    let Ok(meta) = std::fs::File::from(fd).metadata() else {
        return false;
    };
    dev.parse() == Ok(meta.dev()) && ino.parse() == Ok(meta.ino())
}

/// The syslog priority of a tracing level: error 3, warning 4, info 6, debug and trace 7.
pub fn priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}

/// An event format that starts each line with the event's syslog priority, `<N>`, every line of a
/// message of several lines included.
struct Prioritized<F>(F);

impl<S, N, F> FormatEvent<S, N> for Prioritized<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> std::fmt::Result {
        let mut text = String::new();
        self.0.format_event(ctx, Writer::new(&mut text), event)?;
        // The journal splits what it reads at newlines: a message of several lines becomes as many
        // entries, each of which must carry the priority.
        let priority = priority(event.metadata().level());
        for line in text.lines() {
            writeln!(writer, "<{priority}>{line}")?;
        }
        Ok(())
    }
}

/// Prints the error a process ends with on stderr, as a log line of `format` would be: `error: …`
/// or a JSON object with `level` ERROR; with the error priority and no timestamp under the journal.
pub fn fatal(format: LogFormat, message: &dyn Display) {
    eprintln!("{}", fatal_line(format, stderr_is_journal(), &message.to_string()));
}

/// The line [`fatal`] prints.
fn fatal_line(format: LogFormat, journal: bool, message: &str) -> String {
    let prefix = if journal { "<3>" } else { "" };
    match format {
        LogFormat::Text => format!("{prefix}error: {message}"),
        LogFormat::Json => {
            let mut line = serde_json::json!({"level": "ERROR", "message": message, "target": "swipebot"});
            if !journal {
                line["timestamp"] = chrono::Utc::now()
                    .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                    .into();
            }
            format!("{prefix}{line}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fatal_line_follows_the_format_and_the_journal() {
        assert_eq!(fatal_line(LogFormat::Text, false, "boom"), "error: boom");
        assert_eq!(fatal_line(LogFormat::Text, true, "boom"), "<3>error: boom");
        let json: serde_json::Value = serde_json::from_str(&fatal_line(LogFormat::Json, false, "boom")).unwrap();
        assert_eq!(json["level"], "ERROR");
        assert_eq!(json["message"], "boom");
        assert!(json["timestamp"].is_string());
        let journal = fatal_line(LogFormat::Json, true, "boom");
        let json: serde_json::Value = serde_json::from_str(journal.strip_prefix("<3>").unwrap()).unwrap();
        assert!(json.get("timestamp").is_none(), "{journal}");
    }

    #[test]
    fn priorities_are_syslog_levels() {
        let got: Vec<u8> = [Level::ERROR, Level::WARN, Level::INFO, Level::DEBUG, Level::TRACE]
            .iter()
            .map(priority)
            .collect();
        assert_eq!(got, [3, 4, 6, 7, 7]);
    }
}
