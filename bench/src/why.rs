//! "Targets not met, and why": for each DESIGN target that a run does not
//! meet, what limits it, pointing at the rows of the same run that show it
//! (issue #6: fix the top cause, or show with evidence why the limit is
//! where it is). Only targets not met in this run get a paragraph; every
//! number quoted comes from this run's rows.

use crate::measure::{glucose, input_log, recovery, recovery_large, replay};
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
            let at_256 = |prefix: &str| figure_of(rows, &format!("{prefix}, batch 256"));
            let (wasm, floor, native) = (
                at_256(glucose::WASM_ROW),
                at_256(glucose::FLOOR_V02_ROW),
                find(rows, &format!("{}, batch 256", glucose::WASM_ROW)).and_then(|r| r.baseline),
            );
            let own = wasm.zip(floor).map(|(wasm, floor)| wasm - floor);
            format!(
                "**wasm vs native per reading.** Contract 0.2 took the boundary out of the way; what is left \
                 is glucose-monitor's own code running as wasm. A plugin that does nothing now costs {} of \
                 native glucose-monitor per reading at batch 256 ({} on contract 0.1) and {} at batch 16 ({} on \
                 0.1): at batch 256, {} ns of the {} ns the wasm side takes. The other {} ns are the plugin's \
                 code and its outputs, against {} ns natively for the same calls: {} on their own. A `perf` \
                 profile of the wasm side alone at batch 256 (`EDGEWISE_PERFMAP=1` names the JIT code; \
                 2026-11-28, twenty of these runs in a loop, on glibc's malloc; shares of its samples) shows \
                 where: glucose-monitor's own functions 40% of the time \
                 (the trend fit `Recent::fit` and `on_readings` first) and the SDK's helpers 8%, each about \
                 1.9x and 1.6x the samples of their native counterparts in a profile of the native side \
                 (Cranelift's code against LLVM's); the guest's allocator (dlmalloc) 11%, against the native \
                 side's malloc at about the same cost; and about 30% on the host's side of the calls: \
                 wasmtime lifting the outputs (every summary is a list of metrics, each name a string, lifted \
                 into host `String`s, then collected again by `emit_summary` and `push_summary`), the host's \
                 allocator doing it, and (in that profile) the batch's sensor table, whose linear search is a \
                 map since 2026-11-29 (`encode_batch`: 49 ns a reading instead of 183 for 256 readings of 50 \
                 interleaved sensors, 110 instead of 8,301 for 65,536 of 10,000, in a unit timing; the rows \
                 above moved within their noise). Reaching 1.3x needs both halves: outputs \
                 that cross cheaply (summary metrics by index or as a fixed record in a later contract; one \
                 collect instead of two in the host), and faster guest code, where \
                 the host's only lever is the compiler's settings: the code Cranelift makes of the plugin's \
                 hot loops is the largest single part.",
                ratio(rows, &format!("{}, batch 256", glucose::FLOOR_V02_ROW)),
                ratio(rows, &format!("{}, batch 256", glucose::FLOOR_V01_ROW)),
                ratio(rows, &format!("{}, batch 16", glucose::FLOOR_V02_ROW)),
                ratio(rows, &format!("{}, batch 16", glucose::FLOOR_V01_ROW)),
                shown(floor),
                shown(wasm),
                shown(own),
                shown(native),
                own.zip(native)
                    .map_or("(not measured)".to_owned(), |(own, native)| format!(
                        "{}x",
                        number(own / native)
                    )),
            )
        },
    },
    Why {
        rows: "replay throughput, Hall2018, glucose-monitor (`edgewise replay`)",
        text: |rows| {
            // Nanoseconds per reading of a readings/s row.
            let ns = |prefix: &str| figure_of(rows, prefix).map(|rate| 1e9 / rate.max(1e-9));
            let cli = ns(replay::CLI_ROW);
            let in_process = ns(replay::IN_PROCESS_ROW);
            let calls = ns(replay::SAME_CALLS_ROW);
            let native = find(rows, replay::CLI_ROW)
                .and_then(|r| r.baseline)
                .map(|rate| 1e9 / rate.max(1e-9));
            let budget = native.map(|n| n / 0.6);
            format!(
                "**Replay throughput.** The ticks are gone: glucose-monitor 0.2 is ticked only at its wakes (the \
                 notes give the counts) and a 0.2 plugin that does nothing replays at {} readings/s. What \
                 `edgewise replay` of glucose-monitor spends, per reading: {} ns in all, against {} ns natively \
                 for the same calls; the 0.6x target allows {} ns. The JSON output lines take about {} ns \
                 (`edgewise replay` less the same loop in-process without them, {} ns). The calls themselves, \
                 made to a plugin that does nothing, take {} ns: glucose-monitor's wakes cut the readings into \
                 small batches (a wake falls due every few readings while the recording's subjects interleave, \
                 and `replay::drive` ends a batch at each), so there are about as many ticks as batches and a \
                 call for every few readings. The remaining {} ns are glucose-monitor's code and outputs in \
                 wasm (see the per-reading paragraph: Cranelift's code and the outputs' lifting). To reach \
                 0.6x, all three must shrink: fewer, larger calls (the SDK's driver already ticks a plugin at \
                 a wake that falls inside a batch, so a replay of an SDK plugin would not need to cut its \
                 batches there), cheaper output lines, and the per-reading work above.",
                figure(rows, replay::FLOOR_V02_ROW),
                shown(cli),
                shown(native),
                shown(budget),
                shown(cli.zip(in_process).map(|(cli, in_process)| cli - in_process)),
                shown(in_process),
                shown(calls),
                shown(in_process.zip(calls).map(|(in_process, calls)| in_process - calls)),
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
    Why {
        rows: input_log::ROW,
        text: input_log_paragraph,
    },
    Why {
        rows: input_log::CORE_ROW,
        text: input_log_paragraph,
    },
    Why {
        rows: recovery::ROW,
        text: |rows| {
            format!(
                "**Recovery after kill -9.** A recovery restores the plugin's last saved state (glucose-monitor's \
                 small state is saved every 256 inputs) and gives it the inputs logged since again before it takes a new reading; the notes \
                 give how many. It took {} ms from the start of the process, against {} ms for the same start \
                 with an empty journal: the recovery itself adds {} ms, the rest is the host's start (the notes \
                 give its log's times).",
                figure(rows, recovery::ROW),
                shown(find(rows, recovery::ROW).and_then(|r| r.baseline)),
                figure(rows, recovery::ADDED_ROW),
            )
        },
    },
    Why {
        rows: recovery_large::ROW,
        text: |rows| {
            format!(
                "**Recovery at the snapshot cadence's worst.** A state of 9 MB written every 256 inputs would \
                 write about 35 KB of flash per reading; the host saves a large state once the inputs since \
                 hold a quarter of its bytes instead, so a recovery may give thousands of inputs again (the \
                 notes give how many). Killed just before its next save, glucose-forecast at its busiest \
                 resumed {} ms after the start of the process, against {} ms for the same start with an empty \
                 journal.",
                figure(rows, recovery_large::ROW),
                shown(find(rows, recovery_large::ROW).and_then(|r| r.baseline)),
            )
        },
    },
];

/// The input log's cost on live ingest, on either source.
fn input_log_paragraph(rows: &[Row]) -> String {
    let baseline = |name: &str| shown(find(rows, name).and_then(|r| r.baseline));
    format!(
        "**The input log on live ingest.** Every batch a plugin is given is sealed (AES-256-GCM) and committed to \
         the outbox file by its writer thread, with the outputs it made. Through the JetStream source, where a \
         sensor message is acknowledged only once that commit is done, the host took {} readings/s with the log \
         and {} without ({}); on core NATS, where the commit is off the ingest path but takes CPU from the same \
         two cores as nats-server, the publisher and the plugin, {} and {} ({}).",
        figure(rows, input_log::ROW),
        baseline(input_log::ROW),
        ratio(rows, input_log::ROW),
        figure(rows, input_log::CORE_ROW),
        baseline(input_log::CORE_ROW),
        ratio(rows, input_log::CORE_ROW),
    )
}

/// The section, or nothing when every target is met.
pub fn section(rows: &[Row]) -> String {
    let mut paragraphs: Vec<String> = WHYS
        .iter()
        .filter(|why| {
            rows.iter()
                .any(|r| r.name.starts_with(why.rows) && r.verdict == Verdict::NotMet)
        })
        .map(|why| (why.text)(rows))
        .collect();
    // Rows that share a paragraph (entries one after the other) get it once.
    paragraphs.dedup();
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

/// The figure of the first row named `prefix...`, as a number.
fn figure_of(rows: &[Row], prefix: &str) -> Option<f64> {
    find(rows, prefix).and_then(|r| r.figure)
}

/// A number as the table shows it, or "(not measured)".
fn shown(value: Option<f64>) -> String {
    value.map_or("(not measured)".to_owned(), number)
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

    /// Fail unless `text` holds every one of `numbers`.
    fn assert_says(text: &str, numbers: &[&str]) {
        for number in numbers {
            assert!(text.contains(number), "{number}: {text}");
        }
    }

    #[test]
    fn only_targets_not_met_get_a_paragraph_with_this_runs_numbers() {
        let mut rows = vec![
            // Native 4,000,000 readings/s: 250 ns a reading; the target allows 416.7.
            row(replay::CLI_ROW, 1_000_000.0, 4_000_000.0, Target::RatioAtLeast(0.6)),
            row(replay::IN_PROCESS_ROW, 1_250_000.0, 4_000_000.0, Target::None),
            row(replay::SAME_CALLS_ROW, 5_000_000.0, 4_000_000.0, Target::None),
            row(replay::FLOOR_V02_ROW, 36_000_000.0, 4_000_000.0, Target::None),
            row(
                "reading-to-local-alert p50 at 1,000/s",
                0.2,
                0.2,
                Target::RatioAtMost(1.5),
            ),
        ];
        let text = section(&rows);
        assert!(text.contains("**Replay throughput.**"), "{text}");
        // 1,000 ns in all, 250 natively, 417 allowed; JSON 1,000 - 800 = 200;
        // the calls 200; the plugin's code and outputs 800 - 200 = 600.
        assert_says(
            &text,
            &[
                "36,000,000 readings/s",
                "1,000 ns in all",
                "250 ns natively",
                "allows 417 ns",
                "about 200 ns",
                "take 200 ns",
                "remaining 600 ns",
            ],
        );
        assert!(!text.contains("**Alert latency.**"), "{text}");
        rows.remove(0);
        assert_eq!(section(&rows), "");
    }

    #[test]
    fn the_input_log_and_recovery_paragraphs_quote_this_runs_rows() {
        let rows = vec![
            row(input_log::ROW, 30_000.0, 40_000.0, Target::RatioAtLeast(0.8)),
            row(input_log::CORE_ROW, 400_000.0, 600_000.0, Target::RatioAtLeast(0.8)),
            row(recovery::ROW, 1_500.0, 300.0, Target::AtMost(1_000.0)),
            Row::measured(recovery::ADDED_ROW, "-", None, 1_200.0, "ms", Target::None),
        ];
        let text = section(&rows);
        assert_says(
            &text,
            &[
                "**The input log on live ingest.**",
                "30,000 readings/s with the log and 40,000 without (0.750x)",
                "400,000 and 600,000 (0.667x)",
                "**Recovery after kill -9.**",
                "It took 1,500 ms",
                "against 300 ms",
                "adds 1,200 ms",
            ],
        );
        // One paragraph for the two input-log rows, even when both miss.
        assert_eq!(text.matches("**The input log on live ingest.**").count(), 1, "{text}");
    }

    #[test]
    fn the_per_reading_paragraph_splits_the_wasm_time_at_the_floor() {
        let batch = |prefix: &str, n: u32| format!("{prefix}, batch {n}");
        let rows = vec![
            row(&batch(glucose::WASM_ROW, 256), 550.0, 200.0, Target::RatioAtMost(1.3)),
            row(&batch(glucose::FLOOR_V02_ROW, 16), 60.0, 250.0, Target::None),
            row(&batch(glucose::FLOOR_V02_ROW, 256), 30.0, 200.0, Target::None),
            row(&batch(glucose::FLOOR_V01_ROW, 256), 140.0, 200.0, Target::None),
        ];
        let text = section(&rows);
        assert!(text.contains("**wasm vs native per reading.**"), "{text}");
        // 550 - 30 = 520 ns of the plugin's own, 2.6x the native 200.
        assert_says(
            &text,
            &[
                "0.150x of",
                "(0.700x on contract 0.1)",
                "30.0 ns of the 550 ns",
                "other 520 ns",
                "against 200 ns",
                "2.60x on their own",
            ],
        );
        // No 0.1 floor at batch 16 in these rows: said so, not made up.
        assert!(text.contains("((not measured) on 0.1)"), "{text}");
    }
}
