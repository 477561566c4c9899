//! Bundles signed before a contract change, kept byte for byte under
//! `tests/fixtures/bundles/`: every later host must verify them and run them
//! with unchanged outputs (issue #13: a fleet keeps old bundles for years).

use std::path::PathBuf;

use edgewise_tests::{data_file, edgewise, golden_file, workspace_root};

use crate::support::verified;

/// The directory of the frozen 0.1 bundle and its trust store.
fn frozen_v01() -> PathBuf {
    workspace_root().join("tests/fixtures/bundles/v0.1")
}

/// The frozen glucose-monitor 0.1.0 bundle (contract 0.1) and the trust
/// store that verifies it.
pub fn frozen_glucose_v01() -> (PathBuf, PathBuf) {
    let dir = frozen_v01();
    (dir.join("glucose-monitor-0.1.0.wasm"), dir.join("trust"))
}

/// The lines of a replay output as JSON objects without the fields that
/// name the build (`digest`) and the bundle (`version`: the golden file was
/// made from the unsigned component): what the golden test compares.
fn behaviour(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|line| {
            let mut value: serde_json::Value = serde_json::from_str(line).unwrap();
            let object = value.as_object_mut().unwrap();
            object.remove("digest");
            object.remove("version");
            value
        })
        .collect()
}

#[test]
fn a_bundle_signed_on_contract_0_1_verifies_and_replays_the_golden_output() {
    let (bundle, trust) = frozen_glucose_v01();
    let stdout = verified(&trust, &bundle);
    assert!(
        stdout.contains("OK glucose-monitor 0.1.0") && stdout.contains("edgewise:plugin/sensor-plugin@0.1.0"),
        "{stdout}"
    );

    let out = tempfile::tempdir().unwrap();
    let output = out.path().join("out.jsonl");
    let replay = edgewise([
        "replay".as_ref(),
        "--trust".as_ref(),
        trust.as_os_str(),
        "--plugin".as_ref(),
        bundle.as_os_str(),
        "--input".as_ref(),
        data_file("cgm/ExampleData5Subjects.csv").as_os_str(),
        "--out".as_ref(),
        output.as_os_str(),
    ]);
    assert_eq!(replay.code, Some(0), "{}", replay.stderr);
    let actual = std::fs::read_to_string(&output).unwrap();
    let golden = std::fs::read_to_string(golden_file("v0.1/glucose-monitor.ExampleData5Subjects.jsonl")).unwrap();
    assert!(actual.lines().all(|line| line.contains(r#""version":"0.1.0""#)));
    let (actual, golden) = (behaviour(&actual), behaviour(&golden));
    assert_eq!(actual.len(), golden.len(), "not as many outputs as the golden file");
    if let Some(index) = (0..golden.len()).find(|i| actual[*i] != golden[*i]) {
        panic!(
            "output line {} differs from the golden file:\n  expected {}\n  actual   {}",
            index + 1,
            golden[index],
            actual[index]
        );
    }
}

/// Contract 0.2 changed no output of glucose-monitor, only the order of
/// outputs that one 0.1 call made: the 0.1 SDK sent a call's alerts before
/// its summaries, the 0.2 SDK sends every output in the order the plugin
/// made it (whatever the host's batches). The two golden files hold the same
/// outputs (sequence numbers aside), and those at another position are
/// neighbours that swapped.
#[test]
fn contract_0_2_changes_only_the_order_within_one_0_1_call() {
    let lines = |name: &str| {
        let mut lines = behaviour(&std::fs::read_to_string(golden_file(name)).unwrap());
        for line in &mut lines {
            line.as_object_mut().unwrap().remove("seq");
        }
        lines
    };
    let (v01, v02) = (
        lines("v0.1/glucose-monitor.ExampleData5Subjects.jsonl"),
        lines("glucose-monitor.ExampleData5Subjects.jsonl"),
    );
    assert_eq!(v01.len(), v02.len());
    let moved: Vec<usize> = (0..v01.len()).filter(|&i| v01[i] != v02[i]).collect();
    assert!(moved.len() <= 8, "{} outputs moved: {moved:?}", moved.len());
    for pair in moved.chunks(2) {
        let &[i, j] = pair else {
            panic!("output {} moved alone", pair[0] + 1)
        };
        assert_eq!(j, i + 1, "outputs {} and {} are not neighbours", i + 1, j + 1);
        assert_eq!(
            (&v01[i], &v01[j]),
            (&v02[j], &v02[i]),
            "outputs {} and {} did not swap",
            i + 1,
            j + 1
        );
        assert_eq!(v01[i]["type"], "alert", "0.1 sent the alert of a call first");
        assert_eq!(v01[j]["type"], "summary");
    }
}
