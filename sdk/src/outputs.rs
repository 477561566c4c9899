//! Where a plugin writes what it produces.

use crate::{Alert, LogLevel, Summary};

/// The kind of one output, in the order of [`Outputs::order`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An alert: the next of [`Outputs::alerts`].
    Alert,
    /// A summary: the next of [`Outputs::summaries`].
    Summary,
    /// A log line: the next of [`Outputs::logs`].
    Log,
}

/// The alerts, summaries and log lines a plugin produced, in the order it
/// produced them.
///
/// In a component, the export glue forwards them to the host in that order
/// (also when the call returns `Err`): so the order of a plugin's outputs
/// depends only on its inputs, never on how the host batched them. In native
/// unit tests, inspect them with [`Outputs::alerts`] and [`Outputs::summaries`].
///
/// ```
/// use edgewise_sdk::{Alert, LogLevel, Outputs, Severity, Summary};
///
/// let mut out = Outputs::default();
/// out.summary(Summary::new("fridge-1", 0, 3_600_000).metric("mean", 5.0));
/// out.alert(Alert::at("fridge-1", 3_600_000, Severity::Info, "hour-closed", "Hour summarised"));
/// out.log(LogLevel::Debug, "closed the hour at 01:00");
/// assert_eq!(out.summaries()[0].get("mean"), Some(5.0));
/// assert_eq!(out.alerts()[0].code, "hour-closed");
/// assert_eq!(out.logs()[0], (LogLevel::Debug, "closed the hour at 01:00".to_owned()));
/// ```
#[derive(Debug, Default)]
pub struct Outputs {
    alerts: Vec<Alert>,
    summaries: Vec<Summary>,
    logs: Vec<(LogLevel, String)>,
    order: Vec<Kind>,
}

impl Outputs {
    /// Raise an alert (see [`Outputs`]).
    pub fn alert(&mut self, alert: Alert) {
        self.alerts.push(alert);
        self.order.push(Kind::Alert);
    }

    /// Emit the summary of a closed window (see [`Outputs`]).
    pub fn summary(&mut self, summary: Summary) {
        self.summaries.push(summary);
        self.order.push(Kind::Summary);
    }

    /// Write a line to the host log (see [`Outputs`]): the host logs it under
    /// the plugin's name, at most `log_bytes_per_second` (the manifest's
    /// `[limits]`), and drops and counts the rest.
    pub fn log(&mut self, level: LogLevel, message: impl Into<String>) {
        self.logs.push((level, message.into()));
        self.order.push(Kind::Log);
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

    /// The kind of every output so far, in the order they were produced.
    pub fn order(&self) -> &[Kind] {
        &self.order
    }

    /// Whether nothing was produced.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Take everything out, by kind (the order across kinds is lost: see
    /// [`Outputs::drain`]), leaving this value empty.
    pub fn take(&mut self) -> (Vec<Alert>, Vec<Summary>, Vec<(LogLevel, String)>) {
        self.order.clear();
        (
            std::mem::take(&mut self.alerts),
            std::mem::take(&mut self.summaries),
            std::mem::take(&mut self.logs),
        )
    }

    /// Hand every output to `sink` in the order produced, leaving this value
    /// empty (its buffers kept for reuse).
    pub fn drain(&mut self, mut sink: impl FnMut(Output)) {
        let (mut alerts, mut summaries, mut logs) =
            (self.alerts.drain(..), self.summaries.drain(..), self.logs.drain(..));
        for kind in self.order.drain(..) {
            let output = match kind {
                Kind::Alert => alerts.next().map(Output::Alert),
                Kind::Summary => summaries.next().map(Output::Summary),
                Kind::Log => logs.next().map(|(level, message)| Output::Log(level, message)),
            };
            if let Some(output) = output {
                sink(output);
            }
        }
    }
}

/// One output, as [`Outputs::drain`] hands it over.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// An alert.
    Alert(Alert),
    /// A summary.
    Summary(Summary),
    /// A log line.
    Log(LogLevel, String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Reading, Severity};

    #[test]
    fn drain_keeps_the_order_across_kinds_and_empties() {
        let mut out = Outputs::default();
        let reading = Reading::new("s", 1, 2.0, "");
        out.summary(Summary::new("s", 0, 1));
        out.alert(Alert::new(&reading, Severity::Info, "a", "m"));
        out.log(LogLevel::Info, "l");
        out.summary(Summary::new("s", 1, 2));
        let mut kinds = Vec::new();
        out.drain(|o| {
            kinds.push(match o {
                Output::Alert(_) => "alert",
                Output::Summary(_) => "summary",
                Output::Log(..) => "log",
            })
        });
        assert_eq!(kinds, ["summary", "alert", "log", "summary"]);
        assert!(out.is_empty() && out.alerts().is_empty() && out.summaries().is_empty());
    }
}
