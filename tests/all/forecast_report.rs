//! The forecast evaluation (issue #16, item 5): `docs/forecast.md` and its
//! plots are what `edgewise-ml report` writes from replays of the plugin as
//! it is, with the model as it is, byte for byte. A change to the plugin, the
//! model or the evaluation that is not followed by a new report fails here.

use std::path::Path;

use edgewise_ml::report::{self, ReportArgs};
use edgewise_tests::workspace_root;

/// The files of the report: the document and its plots.
const FILES: [&str; 3] = [
    "forecast.md",
    "forecast/forecast-vs-actual.svg",
    "forecast/clarke-grid.svg",
];

#[test]
fn the_committed_forecast_report_is_what_the_report_command_writes() {
    // The fixtures build the plugin and the host unless `cargo xtask test` has.
    edgewise_tests::plugin_wasm("glucose-forecast");
    let out = tempfile::tempdir().unwrap();
    report::run(ReportArgs {
        out: Some(out.path().join("forecast.md")),
        ..ReportArgs::default()
    })
    .unwrap();
    let docs = workspace_root().join("docs");
    for file in FILES {
        let written = std::fs::read(out.path().join(file)).unwrap();
        let committed = std::fs::read(docs.join(file)).unwrap_or_default();
        assert!(
            written == committed,
            "docs/{file} is not what the report command writes now: run \
             `cargo run --release -p edgewise-ml -- report`, review the difference, and commit it"
        );
    }
    let document = String::from_utf8(std::fs::read(Path::new(&docs).join("forecast.md")).unwrap()).unwrap();
    // The acceptance line is stated, whichever way it went.
    assert!(document.contains("## Acceptance"), "{document}");
}

/// The report's lows are glucose-monitor's level-1 hypoglycaemia episodes:
/// for every subject of both shipped recordings, as many as glucose-monitor
/// counts in its daily summaries when it replays the recording.
#[test]
fn the_reports_lows_are_the_episodes_glucose_monitor_counts() {
    use std::collections::BTreeMap;

    use edgewise_ml::data::DataSet;
    use edgewise_ml::report::lows;

    for recording in ["cgm/ExampleData5Subjects.csv", "cgm/Hall2018_processed.csv"] {
        let path = edgewise_tests::data_file(recording);
        let run = edgewise_tests::edgewise([
            "replay".as_ref(),
            "--plugin".as_ref(),
            edgewise_tests::plugin_wasm("glucose-monitor").as_os_str(),
            "--input".as_ref(),
            path.as_os_str(),
        ]);
        assert_eq!(run.code, Some(0), "{}", run.stderr);
        let mut counted: BTreeMap<String, u64> = BTreeMap::new();
        for line in run.stdout.lines() {
            let output: serde_json::Value = serde_json::from_str(line).unwrap();
            let daily = output["window_end"]
                .as_i64()
                .zip(output["window_start"].as_i64())
                .is_some_and(|(end, start)| end - start == 86_400_000);
            if output["type"] == "summary" && daily {
                let episodes = output["metrics"]["hypo_l1_episodes"].as_f64().unwrap() as u64;
                *counted
                    .entry(output["sensor"].as_str().unwrap().to_owned())
                    .or_default() += episodes;
            }
        }
        let set = DataSet::load(&path).unwrap();
        let mut found: BTreeMap<String, u64> = BTreeMap::new();
        for subject in &set.subjects {
            found.insert(subject.id.clone(), lows::episodes(&subject.readings).len() as u64);
        }
        counted.retain(|_, n| *n > 0);
        found.retain(|_, n| *n > 0);
        assert!(found.len() >= 4, "{recording}: subjects with lows: {found:?}");
        assert_eq!(
            found, counted,
            "{recording}: the report's lows (left) and glucose-monitor's (right)"
        );
    }
}
