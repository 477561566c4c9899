//! A child process held by a guard that kills and reaps it when dropped.

use std::process::{Child, ChildStderr, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// How often [`ChildGuard::wait_timeout`] looks whether the process exited.
const POLL: Duration = Duration::from_millis(10);

/// A child process, killed and reaped when the guard is dropped.
#[derive(Debug)]
pub struct ChildGuard {
    what: String,
    child: Option<Child>,
    /// The process group the child leads, killed with it (see
    /// [`ChildGuard::new_group`]); `None` once signalled.
    group: Option<u32>,
}

impl ChildGuard {
    /// Guard `child`, described as `what` in messages.
    pub fn new(what: impl Into<String>, child: Child) -> ChildGuard {
        ChildGuard {
            what: what.into(),
            child: Some(child),
            group: None,
        }
    }

    /// Guard `child`, spawned as the leader of a new process group
    /// (`CommandExt::process_group(0)`): killing it kills the whole group
    /// first, so the helper processes it started (a browser's renderers)
    /// go with it, whatever they do on their parent's death.
    #[cfg(unix)]
    pub fn new_group(what: impl Into<String>, child: Child) -> ChildGuard {
        let group = child.id();
        let mut guard = ChildGuard::new(what, child);
        guard.group = Some(group);
        guard
    }

    /// What the process is, for messages.
    pub fn what(&self) -> &str {
        &self.what
    }

    /// The process id, while the process has not been reaped.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Its exit status if it has exited (it is then reaped and the guard
    /// empty); `None` while it runs.
    pub fn try_wait(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        let Some(child) = self.child.as_mut() else {
            bail!("{} was already reaped", self.what);
        };
        let status = child
            .try_wait()
            .with_context(|| format!("cannot check whether {} is running", self.what))?;
        if status.is_some() {
            self.child = None;
        }
        Ok(status)
    }

    /// Wait up to `timeout` for the process to exit (blocking the thread:
    /// from async code, call it in `spawn_blocking`). `None` if it still runs.
    pub fn wait_timeout(&mut self, timeout: Duration) -> anyhow::Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(POLL);
        }
    }

    /// Send SIGTERM.
    pub fn terminate(&self) -> anyhow::Result<()> {
        let pid = self.pid().with_context(|| format!("{} is not running", self.what))?;
        sigterm(pid).with_context(|| format!("cannot stop {}", self.what))
    }

    /// Kill the process (and its group, for [`ChildGuard::new_group`]) with
    /// SIGKILL (if it still runs) and reap it.
    pub fn kill(&mut self) {
        if let Some(group) = self.group.take() {
            // Even if the leader is gone: the group lives on while a member
            // runs (and its id is not reused meanwhile). `kill` fails if
            // none does.
            let _ = kill_command(&["-KILL", "--", &format!("-{group}")]);
        }
        if let Some(mut child) = self.child.take() {
            // `kill` fails only if it has exited already; `wait` reaps it either way.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Its piped stderr, once.
    pub fn take_stderr(&mut self) -> Option<ChildStderr> {
        self.child.as_mut().and_then(|c| c.stderr.take())
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Send SIGTERM to the process `pid` with `kill -TERM PID` (no libc).
pub fn sigterm(pid: u32) -> anyhow::Result<()> {
    kill_command(&["-TERM", &pid.to_string()])
}

/// Send SIGKILL to the process `pid` with `kill -KILL PID` (no libc): what
/// the kernel's OOM killer does.
pub fn sigkill(pid: u32) -> anyhow::Result<()> {
    kill_command(&["-KILL", &pid.to_string()])
}

/// Send SIGSTOP to the process `pid`: it holds where it is until
/// [`sigcont`] (a process the scheduler never runs, deterministically).
pub fn sigstop(pid: u32) -> anyhow::Result<()> {
    kill_command(&["-STOP", &pid.to_string()])
}

/// Send SIGCONT to the process `pid`: it goes on after [`sigstop`].
pub fn sigcont(pid: u32) -> anyhow::Result<()> {
    kill_command(&["-CONT", &pid.to_string()])
}

/// Run `kill ARGS` (the command, no libc).
fn kill_command(args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new("kill")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("cannot run `kill`")?;
    if !status.success() {
        bail!("`kill {}` failed ({status})", args.join(" "));
    }
    Ok(())
}
