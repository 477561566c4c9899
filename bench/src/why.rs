//! "Targets not met, and why": for each DESIGN target that a run does not
//! meet, what limits it, pointing at the rows of the same run that show it
//! (issue #6: fix the top cause, or show with evidence why the limit is
//! where it is). Only targets not met in this run get a paragraph; every
//! number quoted comes from this run's rows.

use crate::table::{Row, Verdict, number};

/// One target family: the rows it covers, and why it is out of reach.
struct Why {
    /// Rows whose name starts with this are the target's.
    rows: &'static str,
    /// The paragraph; `{name}` placeholders are filled from the rows named.
    text: fn(&[Row]) -> String,
}

const WHYS: &[Why] = &[
    Why {
        rows: "glucose-monitor per reading, wasm",
        text: |rows| {
            format!(
                "**wasm vs native per reading.** The WIT contract alone takes the margin. A plugin that does \
                 nothing costs {} (batch 1), {} (batch 16) and {} (batch 256) of native glucose-monitor's time \
                 per reading (the \"contract floor\" rows): the call, and the two strings of every reading \
                 (sensor and unit) lifted into the guest and allocated there. The target leaves 0.3 for all \
                 of that plus the plugin's own code in wasm, which Cranelift compiles to slower code than \
                 LLVM's native build (a `perf` profile with `EDGEWISE_PERFMAP=1` shows the plugin's own \
                 functions, the trend fit first, each slower than their native counterparts). The host \
                 side of a call is wasmtime's. Reaching 1.3x needs a new contract version (sensor and \
                 unit names once per batch, readings as plain records), not host work.",
                ratio(
                    rows,
                    "contract floor: a plugin that does nothing, per reading, wasm, batch 1"
                ),
                ratio(
                    rows,
                    "contract floor: a plugin that does nothing, per reading, wasm, batch 16"
                ),
                ratio(
                    rows,
                    "contract floor: a plugin that does nothing, per reading, wasm, batch 256"
                ),
            )
        },
    },
    Why {
        rows: "replay throughput",
        text: |rows| {
            format!(
                "**Replay throughput.** No plugin can reach it under this contract and clock: the same \
                 `edgewise replay` through a plugin that does nothing makes {} readings/s (\"contract \
                 floor\" row). The clock calls `on-tick` every 5 virtual minutes across the whole span of \
                 the recording, several times as many calls as readings (the counts are in the notes), and \
                 one empty call costs {} ns, so the ticks alone take longer than the target allows for \
                 the whole replay. Reaching it needs a new contract version in which a call returns when \
                 the plugin next needs a tick (glucose-monitor already computes that time).",
                figure(rows, "contract floor: `edgewise replay`"),
                figure(rows, "contract floor: one empty `on-tick` call"),
            )
        },
    },
    Why {
        rows: "live ingest, highest sustained rate with no loss (`edgewise run`",
        text: |rows| {
            format!(
                "**Live ingest.** At these rates the two cores are full, and each process's CPU time per \
                 reading decides the rate (the \"CPU per reading\" rows and the CPU budget in the notes): \
                 `edgewise run` spends {} µs per reading, {} the bare subscriber's CPU, across the ingest \
                 thread (async-nats, decoding), the plugin's thread (mostly the wasm plugin itself, see \
                 the per-reading rows) and the outbox writer (encryption, SQLite, one fsync per group). \
                 The notes give the budget: what the 0.6x target would leave the host per reading.",
                figure(rows, "CPU per reading at"),
                ratio(rows, "CPU per reading at"),
            )
        },
    },
    Why {
        rows: "reading-to-local-alert p",
        text: |rows| {
            format!(
                "**Alert latency.** DESIGN puts each plugin on a thread of its own, fed by a bounded \
                 queue, so a reading crosses from the async runtime to the plugin's thread and its alert \
                 back. That hop alone, with no plugin and no outbox (the \"threading floor\" rows: an echo \
                 that hops the same way), costs {} of the bare echo at p50 at 1,000/s and {} at \
                 10,000/s. What the host adds beyond it is the plugin call and the outbox: its writer thread \
                 commits (SQLite, encryption, an fsync through the virtual disk) on the same two cores \
                 as nats-server, the publisher and the alert path, and the tails follow when each thread \
                 gets a core, which this harness does not control.",
                ratio(rows, "reading-to-local-alert p50 at 1,000/s, threading floor"),
                ratio(rows, "reading-to-local-alert p50 at 10,000/s, threading floor"),
            )
        },
    },
];

/// The section, or nothing when every target is met.
pub fn section(rows: &[Row]) -> String {
    let paragraphs: Vec<String> = WHYS
        .iter()
        .filter(|why| {
            rows.iter()
                .any(|r| r.name.starts_with(why.rows) && r.verdict == Verdict::NotMet)
        })
        .map(|why| (why.text)(rows))
        .collect();
    if paragraphs.is_empty() {
        return String::new();
    }
    format!("## Targets not met, and why\n\n{}\n", paragraphs.join("\n\n"))
}

/// The ratio of the first row named `prefix...`, e.g. `0.581x`.
fn ratio(rows: &[Row], prefix: &str) -> String {
    find(rows, prefix)
        .and_then(|r| r.ratio)
        .map_or("(not measured)".to_owned(), |r| format!("{}x", number(r)))
}

/// The figure of the first row named `prefix...`.
fn figure(rows: &[Row], prefix: &str) -> String {
    find(rows, prefix)
        .and_then(|r| r.figure)
        .map_or("(not measured)".to_owned(), number)
}

fn find<'a>(rows: &'a [Row], prefix: &str) -> Option<&'a Row> {
    rows.iter().find(|r| r.name.starts_with(prefix))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::Target;

    fn row(name: &str, figure: f64, baseline: f64, target: Target) -> Row {
        Row::measured(name, "baseline", Some(baseline), figure, "x", target)
    }

    #[test]
    fn only_targets_not_met_get_a_paragraph_with_this_runs_numbers() {
        let mut rows = vec![
            row(
                "replay throughput, Hall2018",
                500_000.0,
                3_000_000.0,
                Target::AtLeast(3_000_000.0),
            ),
            row(
                "contract floor: `edgewise replay` of Hall2018",
                1_150_000.0,
                1.0,
                Target::None,
            ),
            row("contract floor: one empty `on-tick` call", 147.0, 1.0, Target::None),
            row(
                "reading-to-local-alert p50 at 1,000/s",
                0.2,
                0.2,
                Target::RatioAtMost(1.5),
            ),
        ];
        let text = section(&rows);
        assert!(text.contains("**Replay throughput.**"), "{text}");
        assert!(
            text.contains("1,150,000 readings/s") && text.contains("147 ns"),
            "{text}"
        );
        assert!(!text.contains("**Alert latency.**"), "{text}");
        rows.remove(0);
        assert_eq!(section(&rows), "");
    }
}
