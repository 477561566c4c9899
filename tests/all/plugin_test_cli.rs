//! `edgewise test`: a plugin folder's recordings against their golden
//! files, as a plugin author's CI runs it. The folder is made by each test
//! (threshold's built component, the generated cold-chain recording and the
//! golden file the repository keeps for it).

use std::path::{Path, PathBuf};

use edgewise_tests::{Run, edgewise, edgewise_bin, golden_file, plugin_wasm, run};

use crate::replay_golden::cold_chain_recording;
use crate::support::assert_contains;

/// A plugin folder with `tests/replay/cold-chain.jsonl` and its golden file.
struct PluginFolder {
    dir: tempfile::TempDir,
}

impl PluginFolder {
    fn new() -> PluginFolder {
        let folder = PluginFolder {
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::create_dir_all(folder.replay_dir()).unwrap();
        std::fs::write(folder.replay_dir().join("cold-chain.jsonl"), cold_chain_recording()).unwrap();
        std::fs::copy(golden_file("threshold.cold-chain.jsonl"), folder.golden()).unwrap();
        folder
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn replay_dir(&self) -> PathBuf {
        self.path().join("tests/replay")
    }

    fn golden(&self) -> PathBuf {
        self.replay_dir().join("cold-chain.golden.jsonl")
    }

    fn golden_lines(&self) -> Vec<String> {
        std::fs::read_to_string(self.golden())
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn write_golden(&self, lines: &[String]) {
        std::fs::write(self.golden(), lines.join("\n") + "\n").unwrap();
    }

    /// `edgewise test DIR --plugin <threshold's component> EXTRA...`.
    fn test(&self, extra: &[&str]) -> Run {
        let plugin = plugin_wasm("threshold");
        let mut args = vec![
            "test".to_owned(),
            self.path().display().to_string(),
            "--plugin".to_owned(),
            plugin.display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        edgewise(&args)
    }
}

fn assert_exit(run: &Run, code: i32) {
    assert_eq!(run.code, Some(code), "stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
}

/// The lines of `text` that start with `prefix`.
fn lines_starting<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
    text.lines().filter(|line| line.starts_with(prefix)).collect()
}

#[test]
fn a_matching_folder_passes_with_exit_0() {
    let folder = PluginFolder::new();
    let run = folder.test(&[]);
    assert_exit(&run, 0);
    assert_contains(&run.stdout, "replay cold-chain ... ok (");
    assert_contains(&run.stdout, "test result: ok. 1 passed; 0 failed; 0 missing");
}

#[test]
fn a_changed_golden_fails_with_the_aligned_diff_naming_the_field() {
    let folder = PluginFolder::new();
    let mut lines = folder.golden_lines();
    // Golden line 5 a summary: its maximum changed, its members written in
    // another order (which does not count).
    let mut line: serde_json::Value = serde_json::from_str(&lines[4]).unwrap();
    let max = line["metrics"]["max"].clone();
    line["metrics"]["max"] = serde_json::json!(99.5);
    lines[4] = line.to_string();
    folder.write_golden(&lines);
    let run = folder.test(&[]);
    assert_exit(&run, 1);
    assert_contains(&run.stdout, "replay cold-chain ... FAILED");
    assert_contains(
        &run.stdout,
        "version and digest not compared): 1 difference(s), aligned:",
    );
    assert_contains(
        &run.stdout,
        &format!("line 5: field `metrics.max`: expected 99.5, actual {max}\n  expected: "),
    );
    assert_contains(&run.stdout, "test result: FAILED. 0 passed; 1 failed");
}

#[test]
fn an_output_missing_or_added_is_one_line_and_the_rest_still_match() {
    let folder = PluginFolder::new();
    let original = folder.golden_lines();
    // An output the plugin no longer makes: a golden line the output lacks
    // (every output after it is numbered one lower than in the golden file).
    let mut lines = original.clone();
    let mut extra: serde_json::Value = serde_json::from_str(&lines[3]).unwrap();
    extra["sensor"] = serde_json::json!("fridge-z");
    let extra = extra.to_string();
    lines.insert(3, extra.clone());
    folder.write_golden(&lines);
    let run = folder.test(&[]);
    assert_exit(&run, 1);
    assert_contains(&run.stdout, "1 difference(s), aligned:");
    assert_eq!(
        lines_starting(&run.stdout, "- golden line"),
        vec![format!("- golden line 4: {extra}")]
    );
    assert!(lines_starting(&run.stdout, "line ").is_empty(), "{}", run.stdout);

    // A new output: an output line the golden file lacks.
    let mut lines = original.clone();
    let removed = lines.remove(3);
    folder.write_golden(&lines);
    let run = folder.test(&[]);
    assert_exit(&run, 1);
    assert_contains(&run.stdout, "1 difference(s), aligned:");
    let added = lines_starting(&run.stdout, "+ output line");
    assert_eq!(added.len(), 1, "{}", run.stdout);
    assert!(added[0].starts_with("+ output line 4: "), "{}", added[0]);
    // The same output, whatever its digest (a rebuild's).
    let without_digest = |line: &str| {
        let mut value: serde_json::Value = serde_json::from_str(line).unwrap();
        value.as_object_mut().unwrap().remove("digest");
        value
    };
    assert_eq!(
        without_digest(&added[0]["+ output line 4: ".len()..]),
        without_digest(&removed)
    );
}

#[test]
fn a_missing_golden_suggests_update_which_writes_it_then_it_passes() {
    let folder = PluginFolder::new();
    std::fs::remove_file(folder.golden()).unwrap();
    let run = folder.test(&[]);
    assert_exit(&run, 1);
    assert_contains(&run.stdout, "replay cold-chain ... missing golden: no golden file");
    assert_contains(&run.stdout, "run again with --update");
    assert_contains(&run.stdout, "0 passed; 0 failed; 1 missing");

    let update = folder.test(&["--update"]);
    assert_exit(&update, 0);
    assert_contains(&update.stdout, "replay cold-chain ... updated");
    let kept = std::fs::read_to_string(golden_file("threshold.cold-chain.jsonl")).unwrap();
    assert_eq!(folder.golden_lines().len(), kept.lines().count());
    assert_exit(&folder.test(&[]), 0);
}

#[test]
fn replay_update_creates_the_golden_folder_and_a_missing_golden_suggests_update() {
    let folder = PluginFolder::new();
    let golden = folder.path().join("new/folder/cold-chain.golden.jsonl");
    let replay = |extra: &[&str]| {
        let mut args = vec![
            "replay".to_owned(),
            "--plugin".to_owned(),
            plugin_wasm("threshold").display().to_string(),
            "--input".to_owned(),
            folder.replay_dir().join("cold-chain.jsonl").display().to_string(),
            "--expect".to_owned(),
            golden.display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        edgewise(&args)
    };
    let missing = replay(&[]);
    assert_exit(&missing, 2);
    assert_contains(&missing.stderr, "no golden file");
    assert_contains(&missing.stderr, "run again with --update");
    assert_exit(&replay(&["--update"]), 0);
    let written = std::fs::read_to_string(&golden).unwrap();
    assert_eq!(written.lines().count(), folder.golden_lines().len());
    assert_contains(&replay(&[]).stderr, "output matches");
}

#[test]
fn usage_and_unreadable_input_exit_2() {
    let empty = tempfile::tempdir().unwrap();
    let run = edgewise([
        "test".as_ref(),
        empty.path().as_os_str(),
        "--plugin".as_ref(),
        plugin_wasm("threshold").as_os_str(),
    ]);
    assert_exit(&run, 2);
    assert_contains(&run.stderr, "tests/replay");
    assert_contains(&run.stderr, "NAME.csv or NAME.jsonl");

    // A second recording that cannot be read: the first still runs.
    let folder = PluginFolder::new();
    std::fs::write(folder.replay_dir().join("zz-broken.csv"), "when,what\n1,2\n").unwrap();
    let run = folder.test(&[]);
    assert_exit(&run, 2);
    assert_contains(&run.stdout, "replay cold-chain ... ok");
    assert_contains(&run.stdout, "replay zz-broken ... error: ");
    assert_contains(&run.stdout, "wrong header");

    // Options the replay does not know.
    std::fs::remove_file(folder.replay_dir().join("zz-broken.csv")).unwrap();
    std::fs::write(folder.replay_dir().join("cold-chain.toml"), "tik = \"1m\"\n").unwrap();
    let run = folder.test(&[]);
    assert_exit(&run, 2);
    assert_contains(&run.stdout, "cold-chain.toml: not replay options");

    // No plugin, no crate to find one in.
    let run = edgewise(["test".as_ref(), folder.path().as_os_str()]);
    assert_exit(&run, 2);
    assert_contains(&run.stderr, "has no Cargo.toml: give the plugin with --plugin FILE");

    // NAME.csv and NAME.jsonl would share NAME.golden.jsonl: refused, and
    // `--update` writes nothing over the golden the first one has.
    std::fs::remove_file(folder.replay_dir().join("cold-chain.toml")).unwrap();
    let golden = folder.replay_dir().join("cold-chain.golden.jsonl");
    let before = std::fs::read(&golden).unwrap();
    std::fs::write(folder.replay_dir().join("cold-chain.csv"), "").unwrap();
    for flags in [&[][..], &["--update"][..]] {
        let run = folder.test(flags);
        assert_exit(&run, 2);
        assert_contains(&run.stderr, "would share the golden file");
        assert_contains(&run.stderr, "cold-chain.golden.jsonl: rename one");
    }
    assert_eq!(std::fs::read(&golden).unwrap(), before, "the golden file untouched");
}

#[test]
fn per_recording_options_configure_the_replay() {
    let folder = PluginFolder::new();
    // A fridge allowed up to 30 degC never alerts: the golden's alerts go.
    std::fs::write(
        folder.replay_dir().join("cold-chain.toml"),
        "config = { high = 30.0 }\n",
    )
    .unwrap();
    let run = folder.test(&[]);
    assert_exit(&run, 1);
    assert_contains(&run.stdout, "- golden line");
    assert_contains(&run.stdout, "\"type\":\"alert\"");
}

#[test]
fn the_folder_manifest_subscriptions_apply_to_a_plain_component() {
    let folder = PluginFolder::new();
    let manifest =
        |filter: &str| format!("name = \"threshold\"\nversion = \"0.2.0\"\nsubscriptions = [\"{filter}\"]\n");
    // The recording's subjects are sensors.fridge-a and sensors.fridge-b.
    std::fs::write(folder.path().join("edgewise.toml"), manifest("sensors.temperature.>")).unwrap();
    let run = folder.test(&[]);
    assert_exit(&run, 2);
    assert_contains(
        &run.stdout,
        "none of its 720 readings is on a subject the plugin subscribes to (sensors.temperature.>)",
    );
    std::fs::write(folder.path().join("edgewise.toml"), manifest("sensors.>")).unwrap();
    assert_exit(&folder.test(&[]), 0);
}

/// The folder's manifest makes the bundle: its `[config]` defaults apply to
/// the plain build too (a plugin keeping a default there is tested as it
/// will run), and a recording's options still go over them.
#[test]
fn the_folder_manifest_config_defaults_apply_to_a_plain_component() {
    let folder = PluginFolder::new();
    let manifest =
        "name = \"threshold\"\nversion = \"0.2.0\"\nsubscriptions = [\"sensors.>\"]\n[config]\nhigh = 30.0\n";
    std::fs::write(folder.path().join("edgewise.toml"), manifest).unwrap();
    let run = folder.test(&[]);
    assert_exit(&run, 1);
    assert_contains(&run.stdout, "- golden line");
    assert_contains(&run.stdout, "\"type\":\"alert\"");
    // The golden's own setting, by the recording's options, over the manifest's.
    std::fs::write(folder.replay_dir().join("cold-chain.toml"), "config = { high = 8.0 }\n").unwrap();
    assert_exit(&folder.test(&[]), 0);
}

#[test]
fn without_plugin_the_crate_build_is_found_with_cargo_metadata() {
    let folder = PluginFolder::new();
    let root = folder.path();
    std::fs::write(
        root.join("Cargo.toml"),
        "[package]\nname = \"cold-chain-check\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n\
         [lib]\nname = \"threshold\"\ncrate-type = [\"cdylib\"]\n\n[workspace]\n",
    )
    .unwrap();
    std::fs::create_dir_all(root.join("src")).unwrap();
    std::fs::write(root.join("src/lib.rs"), "").unwrap();
    let test = || {
        let mut command = std::process::Command::new(edgewise_bin());
        command
            .args(["test".as_ref(), root.as_os_str()])
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("RUST_LOG");
        run(command)
    };
    let unbuilt = test();
    assert_exit(&unbuilt, 2);
    assert_contains(
        &unbuilt.stderr,
        "is not built: run `cargo build --release --target wasm32-wasip2`",
    );
    let built = root.join("target/wasm32-wasip2/release/threshold.wasm");
    std::fs::create_dir_all(built.parent().unwrap()).unwrap();
    std::fs::copy(plugin_wasm("threshold"), &built).unwrap();
    let run = test();
    assert_exit(&run, 0);
    assert_contains(&run.stdout, "replay cold-chain ... ok");
    assert_contains(&run.stdout, &built.display().to_string());
    // The crate's build runs with the folder's manifest as well.
    std::fs::write(
        root.join("edgewise.toml"),
        "name = \"threshold\"\nversion = \"0.2.0\"\nsubscriptions = [\"sensors.>\"]\n[config]\nhigh = 30.0\n",
    )
    .unwrap();
    let run = test();
    assert_exit(&run, 1);
    assert_contains(&run.stdout, "- golden line");
}
