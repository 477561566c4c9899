//! Where a plugin writes what it produces during one call.

use crate::{Alert, LogLevel, Summary};

/// The alerts, summaries and log lines a plugin produced during one call.
///
/// In a component, the export glue forwards them to the host when the call
/// returns (also when it returns `Err`). In native unit tests, inspect them
/// with [`Outputs::alerts`] and [`Outputs::summaries`].
#[derive(Debug, Default)]
pub struct Outputs {
    alerts: Vec<Alert>,
    summaries: Vec<Summary>,
    logs: Vec<(LogLevel, String)>,
}

impl Outputs {
    /// Raise an alert.
    pub fn alert(&mut self, alert: Alert) {
        self.alerts.push(alert);
    }

    /// Emit the summary of a closed window.
    pub fn summary(&mut self, summary: Summary) {
        self.summaries.push(summary);
    }

    /// Write a line to the host log.
    pub fn log(&mut self, level: LogLevel, message: impl Into<String>) {
        self.logs.push((level, message.into()));
    }

    /// The alerts raised so far, in order.
    pub fn alerts(&self) -> &[Alert] {
        &self.alerts
    }

    /// The summaries emitted so far, in order.
    pub fn summaries(&self) -> &[Summary] {
        &self.summaries
    }

    /// The log lines written so far, in order.
    pub fn logs(&self) -> &[(LogLevel, String)] {
        &self.logs
    }

    /// Take everything out, leaving this value empty.
    pub fn take(&mut self) -> (Vec<Alert>, Vec<Summary>, Vec<(LogLevel, String)>) {
        (
            std::mem::take(&mut self.alerts),
            std::mem::take(&mut self.summaries),
            std::mem::take(&mut self.logs),
        )
    }
}
