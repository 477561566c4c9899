//! The "kill -9" rule: every entry whose id `append` returned survives SIGKILL.
//!
//! The test re-executes its own binary as a child running just this test,
//! with an environment variable telling it to act as the child: it appends
//! entries as fast as it can, printing each id once `append` has returned it.
//! The parent reads some ids, kills the child with SIGKILL mid-stream, reopens
//! the outbox and finds every printed id with its payload.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::*;

/// Set (to the data directory) in the child's environment.
const CHILD_ENV: &str = "EDGEWISE_OUTBOX_CRASH_CHILD";
const TEST_NAME: &str = "kill_9_loses_no_entry_that_append_returned";
/// Ids the parent waits for before it kills the child.
const KILL_AFTER: usize = 40;

fn crash_entry(seq: u64) -> NewEntry {
    let kind = if seq.is_multiple_of(3) {
        Kind::Summary
    } else {
        Kind::Alert
    };
    entry(kind, "crash", seq, format!("payload of output {seq}").as_bytes())
}

/// The test's name as the harness knows it (module path without the crate).
fn test_name() -> String {
    let module = module_path!();
    let module = module.split_once("::").map_or(module, |(_, rest)| rest);
    format!("{module}::{TEST_NAME}")
}

#[test]
fn kill_9_loses_no_entry_that_append_returned() {
    match std::env::var_os(CHILD_ENV) {
        Some(dir) => child(Path::new(&dir)),
        None => parent(),
    }
}

fn child(dir: &Path) {
    let mut outbox = open(dir);
    let mut out = std::io::stdout().lock();
    for seq in 0..100_000 {
        let id = append(&mut outbox, crash_entry(seq));
        writeln!(out, "appended {seq} {id}").unwrap();
        out.flush().unwrap();
    }
    // Never reached in practice: the parent kills the child long before.
    std::thread::sleep(Duration::from_secs(60));
}

/// Kills the child if the parent fails before it does.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `(seq, id)` from a complete output line of the child. (The harness's
/// `test … ...` may precede the first one on its line.)
fn parse(line: &str) -> Option<(u64, u64)> {
    let (_, rest) = line.strip_suffix('\n')?.split_once("appended ")?;
    let (seq, id) = rest.split_once(' ')?;
    Some((seq.parse().ok()?, id.parse().ok()?))
}

fn parent() {
    let dir = tempfile::tempdir().unwrap();
    // The key and the schema exist before the child starts.
    drop(open(dir.path()));
    let exe = std::env::current_exe().unwrap();
    let mut child = KillOnDrop(
        Command::new(exe)
            .args(["--exact", &test_name(), "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut stdout = BufReader::new(child.0.stdout.take().unwrap());
    let mut acknowledged = Vec::new();
    let mut line = String::new();
    while acknowledged.len() < KILL_AFTER {
        line.clear();
        if stdout.read_line(&mut line).unwrap() == 0 {
            let status = child.0.wait().unwrap();
            let mut stderr = String::new();
            child.0.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
            panic!("the child ended early ({status}):\n{stderr}");
        }
        acknowledged.extend(parse(&line));
    }
    // SIGKILL, mid-append.
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    // Whatever the child printed before it died counts as acknowledged too
    // (a torn last line, without its newline, does not).
    loop {
        line.clear();
        if stdout.read_line(&mut line).unwrap() == 0 {
            break;
        }
        acknowledged.extend(parse(&line));
    }

    assert_eq!(acknowledged.first().map(|&(seq, _)| seq), Some(0), "every line is read");
    let outbox = open(dir.path());
    for &(seq, id) in &acknowledged {
        let stored = outbox.get(id).unwrap();
        let stored = stored.unwrap_or_else(|| panic!("id {id} (output {seq}) was acknowledged, then lost"));
        let expect = crash_entry(seq);
        assert_eq!((stored.kind, &stored.msg_id), (expect.kind, &expect.msg_id));
        assert_eq!(stored.payload, expect.payload);
    }
    assert!(acknowledged.windows(2).all(|w| w[0].1 < w[1].1));
    let depth = outbox.depth().unwrap();
    assert!(depth.alerts + depth.summaries >= acknowledged.len() as u64);
    assert_eq!(depth, outbox.recount().unwrap());
}
