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
