//! `edgewise new`: a plugin crate written into a temporary folder outside the
//! repository builds, tests, replays and signs with only the commands its
//! README shows, and its CI job's steps pass in a fresh checkout of it.
//!
//! The crate depends on this repository's SDK by path, as an author with a
//! checkout would. What the test adds around the README's commands is the
//! environment only: the crate's `target/` is a link to one folder under the
//! workspace's target directory (a second run rebuilds only the crate), and
//! cargo runs offline with the workspace's `Cargo.lock` copied in, so that it
//! builds the dependency versions the workspace has fetched and tested.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use edgewise_procs::workspace;
use edgewise_tests::{Run, edgewise, edgewise_bin, run, workspace_root};

use crate::support::assert_contains;

const NAME: &str = "fridge-watch";
const BUNDLE: &str = "fridge-watch-0.1.0.wasm";

/// `edgewise new NAME --sdk-path <this repository's sdk>` in `parent`.
fn new_plugin(parent: &Path, name: &str) -> Run {
    let sdk = workspace_root().join("sdk");
    let mut command = Command::new(edgewise_bin());
    command
        .current_dir(parent)
        .arg("new")
        .arg(name)
        .arg("--sdk-path")
        .arg(&sdk);
    run(command)
}

/// A new crate in a temporary folder, its `target/` linked to
/// `scaffold-test/<build>` of the workspace's target directory (one per test:
/// two builds of the crate never share one).
fn scaffolded(parent: &Path, build: &str) -> PathBuf {
    let made = new_plugin(parent, NAME);
    assert_eq!(made.code, Some(0), "{}", made.stderr);
    assert_contains(&made.stdout, &format!("created plugin `{NAME}`"));
    let dir = parent.join(NAME);
    let shared = workspace::target_dir().join("scaffold-test").join(build);
    std::fs::create_dir_all(&shared).unwrap();
    std::os::unix::fs::symlink(&shared, dir.join("target")).unwrap();
    std::fs::copy(workspace_root().join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
    dir
}

/// The text of every fenced block of `language` in `markdown`, in order.
fn fenced_blocks(markdown: &str, language: &str) -> Vec<String> {
    let opening = format!("```{language}");
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match &mut current {
            None if line.trim_end() == opening => current = Some(String::new()),
            Some(block) if line.starts_with("```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
            None => {}
        }
    }
    blocks
}

/// The `run:` scripts of a GitHub Actions workflow, by step name, in order
/// (the plain `run: COMMAND` and the `run: |` block forms).
fn workflow_steps(workflow: &str) -> Vec<(String, String)> {
    let mut steps = Vec::new();
    let mut name = String::new();
    let mut lines = workflow.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if let Some(step) = trimmed.strip_prefix("- name: ") {
            name = step.to_owned();
        } else if let Some(script) = trimmed.strip_prefix("run: ") {
            let indent = line.len() - trimmed.len();
            let script = if script == "|" {
                let mut block = String::new();
                while let Some(next) = lines.next_if(|l| l.len() - l.trim_start().len() > indent) {
                    block.push_str(next.trim_start());
                    block.push('\n');
                }
                block
            } else {
                format!("{script}\n")
            };
            steps.push((name.clone(), script));
        }
    }
    steps
}

/// Run `script` with bash in `dir`, `edgewise` first on the PATH, cargo
/// offline and building into the crate's own `target/`.
fn shell(dir: &Path, script: &str, env: &BTreeMap<&str, String>) -> Run {
    let bin_dir = edgewise_bin().parent().unwrap().to_owned();
    let path = std::env::join_paths(
        std::iter::once(bin_dir).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
    )
    .unwrap();
    let mut command = Command::new("bash");
    command
        .args(["-euo", "pipefail", "-c", script])
        .current_dir(dir)
        .env("PATH", path)
        .env("CARGO_NET_OFFLINE", "true")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET_DIR")
        .envs(env);
    run(command)
}

fn assert_ran(script: &str, run: &Run) {
    assert_eq!(
        run.code,
        Some(0),
        "{script}\nstdout:\n{}\nstderr:\n{}",
        run.stdout,
        run.stderr
    );
}

#[test]
fn a_new_plugin_builds_tests_replays_and_signs_with_its_readme_commands() {
    let parent = tempfile::tempdir().unwrap();
    assert!(
        !parent.path().starts_with(workspace_root()),
        "the crate must be outside the repository"
    );
    let dir = scaffolded(parent.path(), "readme");
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    let blocks = fenced_blocks(&readme, "sh");
    assert_eq!(blocks.len(), 5, "build, test, replay, keygen, sign:\n{readme}");
    let runs: Vec<Run> = blocks
        .iter()
        .map(|block| {
            let run = shell(&dir, block, &BTreeMap::new());
            assert_ran(block, &run);
            run
        })
        .collect();

    // Build: the component is where the README says.
    assert!(dir.join("target/wasm32-wasip2/release/fridge_watch.wasm").is_file());
    // Test: the native unit tests, then the sample recording against its golden file.
    assert_contains(&runs[1].stderr, "Running unittests");
    assert_contains(&runs[1].stdout, "test result: ok. 3 passed");
    assert_contains(&runs[1].stdout, "replay sample ... ok (29 lines)");
    // Replay with `limit=200`: every alert says so, and the day's one excursion above it is there.
    let lines = runs[2].json_lines();
    let alerts: Vec<_> = lines.iter().filter(|l| l["type"] == "alert").collect();
    assert_eq!(alerts.len(), 2, "{}", runs[2].stdout);
    assert!(
        alerts
            .iter()
            .all(|a| a["message"].as_str().unwrap().ends_with("the limit of 200"))
    );
    assert_eq!(alerts[0]["code"], "above-limit");
    assert!(lines.iter().all(|l| l["plugin"] == NAME));
    // Sign: a bundle that verifies and passes the same golden file.
    assert!(dir.join("keys/release.key").is_file() && dir.join("trust/release.pub").is_file());
    assert_contains(&runs[4].stdout, &format!("{BUNDLE}: OK {NAME} 0.1.0"));
    assert_contains(&runs[4].stdout, "replay sample ... ok (29 lines)");
}

#[test]
fn the_new_plugins_ci_job_passes_in_a_fresh_checkout() {
    let parent = tempfile::tempdir().unwrap();
    let dir = scaffolded(parent.path(), "ci");
    // What the author commits (`trust/`) and keeps as a CI secret (the key).
    let keys = tempfile::tempdir().unwrap();
    let keygen = edgewise([
        "keygen".as_ref(),
        "--out".as_ref(),
        keys.path().join("release").as_os_str(),
    ]);
    assert_eq!(keygen.code, Some(0), "{}", keygen.stderr);
    std::fs::create_dir(dir.join("trust")).unwrap();
    std::fs::copy(keys.path().join("release.pub"), dir.join("trust/release.pub")).unwrap();
    let secret = shell(
        &dir,
        "base64 -w0 \"$KEY\"",
        &BTreeMap::from([("KEY", keys.path().join("release.key").display().to_string())]),
    );
    assert_ran("base64", &secret);

    let workflow = std::fs::read_to_string(dir.join(".github/workflows/ci.yml")).unwrap();
    let steps = workflow_steps(&workflow);
    let names: Vec<&str> = steps.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        names,
        [
            "Install edgewise",
            "Build",
            "Native tests",
            "Replay against the golden files",
            "Sign",
            "The signed bundle passes the same golden files"
        ]
    );
    // Installing edgewise needs the network and a published release: the
    // test puts this build's `edgewise` on the PATH instead.
    let env = BTreeMap::from([("EDGEWISE_SIGNING_KEY", secret.stdout.clone())]);
    for (name, script) in &steps[1..] {
        let run = shell(&dir, script, &env);
        assert_ran(name, &run);
    }
    assert!(dir.join(BUNDLE).is_file());
    assert!(
        !dir.join("keys/release.key").exists(),
        "the job removes the key it was given"
    );
    let verified = edgewise([
        "verify".as_ref(),
        "--trust".as_ref(),
        dir.join("trust").as_os_str(),
        dir.join(BUNDLE).as_os_str(),
    ]);
    assert_eq!(verified.code, Some(0), "{}", verified.stderr);
}

#[test]
fn new_refuses_an_existing_folder_and_a_bad_name_and_writes_nothing() {
    let parent = tempfile::tempdir().unwrap();
    let existing = parent.path().join(NAME);
    std::fs::create_dir(&existing).unwrap();
    std::fs::write(existing.join("notes.txt"), "mine").unwrap();
    let refused = new_plugin(parent.path(), NAME);
    assert_eq!(refused.code, Some(2), "{}", refused.stderr);
    assert_contains(&refused.stderr, "already exists: refusing to overwrite it");
    let entries: Vec<_> = std::fs::read_dir(&existing)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(entries, ["notes.txt"]);

    for name in ["Fridge", "fridge_watch", "fn", "../escape"] {
        let refused = new_plugin(parent.path(), name);
        assert_eq!(refused.code, Some(2), "{name}: {}", refused.stderr);
        assert_contains(&refused.stderr, "invalid plugin name");
    }
    // Nothing else was written, not even a staging folder.
    let entries: Vec<_> = std::fs::read_dir(parent.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(entries, [NAME]);

    // `--path` into folders that do not exist yet: they are made.
    let nested = parent.path().join("plugins/cold");
    let made = run({
        let mut command = Command::new(edgewise_bin());
        command
            .args(["new", "cold-chain", "--sdk-path"])
            .arg(workspace_root().join("sdk"))
            .arg("--path")
            .arg(&nested);
        command
    });
    assert_eq!(made.code, Some(0), "{}", made.stderr);
    assert!(nested.join("src/lib.rs").is_file() && nested.join(".gitignore").is_file());
    std::fs::remove_dir_all(parent.path().join("plugins")).unwrap();

    let not_sdk = run({
        let mut command = Command::new(edgewise_bin());
        command
            .current_dir(parent.path())
            .args(["new", "other", "--sdk-path"])
            .arg(workspace_root().join("host"));
        command
    });
    assert_eq!(not_sdk.code, Some(2), "{}", not_sdk.stderr);
    assert_contains(
        &not_sdk.stderr,
        "is not the Edgewise SDK (its package is `edgewise-host`",
    );
    assert!(!parent.path().join("other").exists());

    // No `--sdk-*`: the SDK of the checkout the binary was built from (the
    // SDK is not on crates.io: a version there could not build; before,
    // that was the default).
    let plain = run({
        let mut command = Command::new(edgewise_bin());
        command.current_dir(parent.path()).args(["new", "plain"]);
        command
    });
    assert_eq!(plain.code, Some(0), "{}", plain.stderr);
    assert_contains(&plain.stdout, "note: the SDK is a folder of this machine");
    let manifest = std::fs::read_to_string(parent.path().join("plain/Cargo.toml")).unwrap();
    let sdk = workspace_root().join("sdk").canonicalize().unwrap();
    assert_contains(&manifest, &format!("path = \"{}\"", sdk.display()));
}
