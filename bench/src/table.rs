//! The results table: one [`Row`] per figure, each against the baseline
//! measured next to it, with the ratio and the verdict on its target.

use std::fmt::Write as _;

/// What a figure is held to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    /// No target in DESIGN: the row is informative.
    None,
    /// `figure / baseline <= limit`.
    RatioAtMost(f64),
    /// `figure / baseline >= limit`.
    RatioAtLeast(f64),
    /// `figure <= limit` (in the row's unit).
    AtMost(f64),
    /// `figure >= limit` (in the row's unit).
    AtLeast(f64),
}

impl Target {
    /// The target as the table shows it.
    pub fn text(self, unit: &str) -> String {
        match self {
            Target::None => "-".to_owned(),
            Target::RatioAtMost(limit) => format!("≤ {}x", number(limit)),
            Target::RatioAtLeast(limit) => format!("≥ {}x", number(limit)),
            Target::AtMost(limit) => format!("≤ {} {unit}", number(limit)),
            Target::AtLeast(limit) => format!("≥ {} {unit}", number(limit)),
        }
    }
}

/// Whether a row meets its target.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// The target is met.
    Met,
    /// The target is not met; the ratio (or figure) shows by how much.
    NotMet,
    /// The row has no target.
    NoTarget,
    /// Not measured (yet); the reason.
    NotMeasured(String),
    /// The measurement failed; the error.
    Error(String),
}

impl Verdict {
    /// The verdict as the table shows it.
    pub fn text(&self) -> String {
        match self {
            Verdict::Met => "met".to_owned(),
            Verdict::NotMet => "**not met**".to_owned(),
            Verdict::NoTarget => "no target".to_owned(),
            Verdict::NotMeasured(reason) => format!("not measured: {reason}"),
            Verdict::Error(error) => format!("**error**: {error}"),
        }
    }
}

/// One line of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// What is measured, e.g. `glucose-monitor per reading, batch 16`.
    pub name: String,
    /// What the baseline is, e.g. `same logic, native`.
    pub baseline_label: String,
    /// The baseline, in `unit`.
    pub baseline: Option<f64>,
    /// The figure, in `unit`.
    pub figure: Option<f64>,
    /// Unit of `baseline` and `figure`.
    pub unit: String,
    /// `figure / baseline`.
    pub ratio: Option<f64>,
    /// What the figure is held to.
    pub target: Target,
    /// Met or not.
    pub verdict: Verdict,
}

impl Row {
    /// A measured row: the ratio and the verdict follow from the numbers.
    pub fn measured(
        name: impl Into<String>,
        baseline_label: impl Into<String>,
        baseline: Option<f64>,
        figure: f64,
        unit: impl Into<String>,
        target: Target,
    ) -> Row {
        let ratio = baseline.filter(|b| *b > 0.0).map(|b| figure / b);
        let met = match target {
            Target::None => None,
            Target::RatioAtMost(limit) => ratio.map(|r| r <= limit),
            Target::RatioAtLeast(limit) => ratio.map(|r| r >= limit),
            Target::AtMost(limit) => Some(figure <= limit),
            Target::AtLeast(limit) => Some(figure >= limit),
        };
        let verdict = match (target, met) {
            (Target::None, _) => Verdict::NoTarget,
            (_, Some(true)) => Verdict::Met,
            (_, Some(false)) => Verdict::NotMet,
            (_, None) => Verdict::Error("no baseline to compare with".to_owned()),
        };
        Row {
            name: name.into(),
            baseline_label: baseline_label.into(),
            baseline,
            figure: Some(figure),
            unit: unit.into(),
            ratio,
            target,
            verdict,
        }
    }

    /// A row that could not be measured: `verdict` says why.
    pub fn missing(name: impl Into<String>, unit: impl Into<String>, target: Target, verdict: Verdict) -> Row {
        Row {
            name: name.into(),
            baseline_label: "-".to_owned(),
            baseline: None,
            figure: None,
            unit: unit.into(),
            ratio: None,
            target,
            verdict,
        }
    }
}

/// The table in Markdown, as printed and as written to `BENCHMARKS.md`.
pub fn markdown(rows: &[Row]) -> String {
    let mut text =
        String::from("| measurement | baseline | baseline value | figure | unit | ratio | target | verdict |\n");
    text.push_str("| --- | --- | ---: | ---: | --- | ---: | --- | --- |\n");
    for row in rows {
        let value = |v: Option<f64>| v.map_or("-".to_owned(), number);
        let ratio = row.ratio.map_or("-".to_owned(), |r| format!("{}x", number(r)));
        // A `|` inside a cell would split it.
        let cell = |s: &str| s.replace('|', "\\|");
        let _ = writeln!(
            text,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            cell(&row.name),
            cell(&row.baseline_label),
            value(row.baseline),
            value(row.figure),
            cell(&row.unit),
            ratio,
            cell(&row.target.text(&row.unit)),
            cell(&row.verdict.text()),
        );
    }
    text
}

/// A number with three significant digits (at least), thousands separated:
/// `1,234,567`, `12.3`, `0.0123`.
pub fn number(value: f64) -> String {
    if !value.is_finite() {
        return value.to_string();
    }
    let magnitude = value.abs();
    if magnitude >= 1000.0 {
        let rounded = value.round() as i64;
        let digits = rounded.unsigned_abs().to_string();
        let mut grouped = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                grouped.push(',');
            }
            grouped.push(c);
        }
        if rounded < 0 { format!("-{grouped}") } else { grouped }
    } else if magnitude >= 100.0 {
        format!("{value:.0}")
    } else if magnitude >= 10.0 {
        format!("{value:.1}")
    } else if magnitude >= 1.0 {
        format!("{value:.2}")
    } else if magnitude == 0.0 {
        "0".to_owned()
    } else {
        // Three significant digits below one.
        let decimals = (2 - magnitude.log10().floor() as i32).clamp(2, 9) as usize;
        format!("{value:.decimals$}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_keep_three_significant_digits() {
        assert_eq!(number(1_234_567.4), "1,234,567");
        assert_eq!(number(123.4), "123");
        assert_eq!(number(12.34), "12.3");
        assert_eq!(number(1.234), "1.23");
        assert_eq!(number(0.01234), "0.0123");
        assert_eq!(number(0.0), "0");
    }

    #[test]
    fn the_verdict_follows_the_ratio() {
        let row = Row::measured("x", "b", Some(2.0), 3.0, "ms", Target::RatioAtMost(1.3));
        assert_eq!(row.ratio, Some(1.5));
        assert_eq!(row.verdict, Verdict::NotMet);
        let row = Row::measured("x", "b", Some(2.0), 2.4, "ms", Target::RatioAtMost(1.3));
        assert_eq!(row.verdict, Verdict::Met);
        let row = Row::measured("x", "-", None, 4.0, "ms", Target::AtMost(5.0));
        assert_eq!(row.verdict, Verdict::Met);
        let row = Row::measured("x", "b", Some(10.0), 5.0, "1/s", Target::RatioAtLeast(0.6));
        assert_eq!(row.verdict, Verdict::NotMet);
    }

    #[test]
    fn the_table_has_one_line_per_row() {
        let rows = vec![
            Row::measured("a", "b", Some(1.0), 1.1, "µs", Target::RatioAtMost(1.3)),
            Row::missing(
                "hot swap",
                "readings",
                Target::AtMost(0.0),
                Verdict::NotMeasured("later".into()),
            ),
        ];
        let table = markdown(&rows);
        assert_eq!(table.lines().count(), 4);
        assert!(
            table.contains("| a | b | 1.00 | 1.10 | µs | 1.10x | ≤ 1.30x | met |"),
            "{table}"
        );
    }
}
