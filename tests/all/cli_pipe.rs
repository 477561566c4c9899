//! The CLI as a Unix tool in a pipeline: when whoever reads its output has
//! gone (`edgewise inspect BUNDLE | head -1`), a command ends quietly and
//! successfully, as ripgrep does, with no panic message.
//!
//! Each command runs with a standard output whose read end is closed before it
//! starts, so its first write meets the broken pipe whatever the timing (a
//! reader that closes after one line would race the command's writes into the
//! pipe buffer). Self-contained: it makes its own keys and bundle.

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Stdio};

use edgewise_tests::{data_file, edgewise_bin, plugin_wasm, workspace_root};

/// Run `edgewise ARGS` with a standard output nobody reads; return its stderr
/// after checking that it ended as a Unix tool should.
fn into_closed_pipe(args: &[&OsStr]) -> String {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let output = Command::new(edgewise_bin())
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let shown = format!("edgewise {args:?}: {:?}\n{stderr}", output.status);
    assert!(!stderr.contains("panicked"), "{shown}");
    assert!(!stderr.contains("Broken pipe"), "{shown}");
    assert!(!stderr.lines().any(|line| line.starts_with("error")), "{shown}");
    assert_eq!(output.status.code(), Some(0), "{shown}");
    stderr
}

fn path(path: &Path) -> &OsStr {
    path.as_os_str()
}

#[test]
fn keygen_sign_verify_and_inspect_end_quietly_when_the_reader_has_gone() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("release");
    let quiet = into_closed_pipe(&["keygen".as_ref(), "--out".as_ref(), path(&prefix)]);
    assert!(quiet.is_empty(), "{quiet}");
    // The work was done before the output failed.
    assert!(dir.path().join("release.key").is_file());
    let trust = dir.path().join("trust");
    std::fs::create_dir(&trust).unwrap();
    std::fs::copy(dir.path().join("release.pub"), trust.join("release.pub")).unwrap();

    let bundle = dir.path().join("glucose-monitor.wasm");
    let manifest = workspace_root().join("plugins/glucose-monitor/edgewise.toml");
    let quiet = into_closed_pipe(&[
        "sign".as_ref(),
        "--key".as_ref(),
        path(&dir.path().join("release.key")),
        "--manifest".as_ref(),
        path(&manifest),
        "--out".as_ref(),
        path(&bundle),
        path(&plugin_wasm("glucose-monitor")),
    ]);
    assert!(quiet.is_empty(), "{quiet}");
    assert!(bundle.is_file());

    let quiet = into_closed_pipe(&["verify".as_ref(), "--trust".as_ref(), path(&trust), path(&bundle)]);
    assert!(quiet.is_empty(), "{quiet}");
    let quiet = into_closed_pipe(&["inspect".as_ref(), path(&bundle)]);
    assert!(quiet.is_empty(), "{quiet}");
}

#[test]
fn replay_ends_quietly_when_the_reader_has_gone() {
    into_closed_pipe(&[
        "replay".as_ref(),
        "--plugin".as_ref(),
        path(&plugin_wasm("glucose-monitor")),
        "--input".as_ref(),
        path(&data_file("cgm/ExampleData5Subjects.csv")),
    ]);
}

#[test]
fn help_and_version_end_quietly_when_the_reader_has_gone() {
    for flag in ["--help", "--version"] {
        let quiet = into_closed_pipe(&[flag.as_ref()]);
        assert!(quiet.is_empty(), "{quiet}");
    }
}
