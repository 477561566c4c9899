//! Golden files for `edgewise replay --expect` and `edgewise test`: reading
//! one and comparing a replay's output with it ([`golden::diff`]: what the
//! plugin computed, not `version` and `digest`), showing the aligned
//! differences, and writing one (`--update`, its folder created).

use std::io::{self, Write};
use std::path::Path;

use anyhow::{Context, anyhow};

use edgewise_host::files::{Access, Existing, write_atomic};
use edgewise_host::replay::golden::{self, Change, LineDiff};

/// Differences shown for one golden file; the rest are counted.
pub const MAX_DIFFS_SHOWN: usize = 5;

/// What a golden file says about an output.
#[derive(Debug)]
pub enum Verdict {
    /// The output is the golden file's (of this many lines).
    Matches(usize),
    /// It differs.
    Differs {
        /// Lines of the golden file.
        expected: usize,
        /// Lines of the output.
        actual: usize,
        /// Every difference, aligned.
        diffs: Vec<LineDiff>,
    },
    /// There is no golden file yet.
    Missing,
}

/// Compare `lines` with the golden file at `path`. A file that exists but
/// cannot be read is an error.
pub fn check(path: &Path, lines: &[String]) -> anyhow::Result<Verdict> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Verdict::Missing),
        Err(e) => return Err(anyhow!(e).context(format!("cannot read golden file {}", path.display()))),
    };
    let expected: Vec<&str> = text.lines().collect();
    let actual: Vec<&str> = lines.iter().map(String::as_str).collect();
    let diffs = golden::diff(&expected, &actual);
    Ok(match diffs.is_empty() {
        true => Verdict::Matches(lines.len()),
        false => Verdict::Differs {
            expected: expected.len(),
            actual: actual.len(),
            diffs,
        },
    })
}

/// Write `lines` as the golden file at `path`, creating its folder.
pub fn update(path: &Path, lines: &[String]) -> anyhow::Result<()> {
    let mut text = lines.join("\n");
    if !lines.is_empty() {
        text.push('\n');
    }
    if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(folder).with_context(|| format!("cannot create {}", folder.display()))?;
    }
    write_atomic(path, text.as_bytes(), Access::Shared, Existing::Replace)
        .with_context(|| format!("cannot write golden file {}", path.display()))
}

/// The message for a missing golden file.
pub fn missing(path: &Path) -> String {
    format!(
        "no golden file {}: run again with --update to write it from this output",
        path.display()
    )
}

/// How the two sides of a difference are named.
#[derive(Debug, Clone, Copy)]
pub struct Labels {
    /// The expected side's file (`golden`).
    pub expected_file: &'static str,
    /// The expected line's label (`expected`).
    pub expected: &'static str,
    /// The actual side's file (`output`).
    pub actual_file: &'static str,
    /// The actual line's label (`actual`).
    pub actual: &'static str,
}

/// A golden file against a replay's output.
pub const GOLDEN: Labels = Labels {
    expected_file: "golden",
    expected: "expected",
    actual_file: "output",
    actual: "actual",
};

/// The heading of a golden mismatch: the counts and the rule.
pub fn write_mismatch(
    out: &mut dyn Write,
    path: &Path,
    expected: usize,
    actual: usize,
    diffs: &[LineDiff],
) -> io::Result<()> {
    writeln!(
        out,
        "output differs from {} (golden: {expected} lines, output: {actual} lines; {} not compared): \
         {} difference(s), aligned:",
        path.display(),
        golden::IGNORED.join(" and "),
        diffs.len()
    )?;
    for diff in diffs.iter().take(MAX_DIFFS_SHOWN) {
        write_diff(out, None, diff, GOLDEN)?;
    }
    if diffs.len() > MAX_DIFFS_SHOWN {
        writeln!(out, "... and {} more", diffs.len() - MAX_DIFFS_SHOWN)?;
    }
    Ok(())
}

/// One difference: a `-` or `+` line, or for a changed line its heading
/// (`heading`, else `line N`) with the fields that differ, then both lines.
pub fn write_diff(out: &mut dyn Write, heading: Option<&str>, diff: &LineDiff, labels: Labels) -> io::Result<()> {
    let (expected, actual) = (diff.expected.as_ref(), diff.actual.as_ref());
    if let Some(heading) = heading {
        write!(out, "{heading}: ")?;
    }
    let fields = match (&diff.change, expected, actual) {
        (Change::Changed(fields), Some(expected), Some(actual)) => (fields, expected, actual),
        (_, Some(line), None) => return writeln!(out, "- {} line {}: {}", labels.expected_file, line.line, line.text),
        (_, _, Some(line)) => return writeln!(out, "+ {} line {}: {}", labels.actual_file, line.line, line.text),
        (_, None, None) => return Ok(()),
    };
    let (fields, expected, actual) = fields;
    if heading.is_none() {
        write!(out, "line {}", actual.line)?;
        if expected.line != actual.line {
            write!(out, " ({} line {})", labels.expected_file, expected.line)?;
        }
        write!(out, ": ")?;
    }
    match fields.split_first() {
        Some((first, rest)) => {
            write!(
                out,
                "field `{}`: {} {}, {} {}",
                first.field, labels.expected, first.expected, labels.actual, first.actual
            )?;
            if !rest.is_empty() {
                let names: Vec<String> = rest.iter().map(|f| format!("`{}`", f.field)).collect();
                write!(out, "; also {}", names.join(", "))?;
            }
            writeln!(out)?;
        }
        None => writeln!(out, "differs")?,
    }
    let width = labels.expected.len().max(labels.actual.len()) + 1;
    let expected_label = format!("{}:", labels.expected);
    let actual_label = format!("{}:", labels.actual);
    writeln!(out, "  {expected_label:width$} {}", expected.text)?;
    writeln!(out, "  {actual_label:width$} {}", actual.text)
}
