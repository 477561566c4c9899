//! Start-up's compilations: every plugin's code is compiled at once, each on
//! a thread of its own (and, through the runtime, in a compiler process of
//! its own). Start-up waits for them up to `[compile] start_wait`; a plugin
//! still compiling then does not hold the others: the device serves without
//! it, its status says `compiling`, and it joins the running device once
//! compiled, or is refused then (log, status, a critical `plugin-degraded`
//! alert), as a deployment would be. A plugin that compiles for minutes
//! (CPython in wasm on a small device, or a hostile component) so no longer
//! keeps glucose-monitor's alerts from starting.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::start::{Checked, Prepared, RefusalReason, Refused};
use crate::runtime::Runtime;

/// One plugin's compilation, ended.
pub(super) struct Compiled {
    /// Its place in the start-up order (deployed plugins, then the
    /// configuration file's).
    pub(super) order: usize,
    /// The bundle file.
    pub(super) bundle: String,
    /// The plugin, ready for its worker, or why it cannot run.
    pub(super) result: Result<Prepared, Refused>,
}

/// What the status (and deployment) know of a plugin that is compiling.
pub(super) struct Pending {
    pub(super) name: String,
    pub(super) version: String,
    pub(super) digest: String,
    /// The deployed bundle (object name) and configuration, if deployed.
    pub(super) deployed: Option<(String, BTreeMap<String, String>)>,
}

/// Whose compilation it is, to refuse it by.
#[derive(Clone)]
struct Who {
    name: String,
    version: String,
    bundle: String,
}

impl Who {
    /// Its compilation could not run to an end, for `reason`.
    fn refused(self, reason: String) -> Refused {
        Refused {
            name: self.name,
            version: self.version,
            bundle: self.bundle,
            reason: Arc::new(RefusalReason::Compilation(reason)),
        }
    }
}

/// The compilations of start-up that have not ended.
pub(super) struct Compilations {
    results: mpsc::UnboundedReceiver<Compiled>,
    pending: BTreeMap<usize, Pending>,
}

impl Compilations {
    /// Compile every plugin of `checked` at once, each on a thread of its
    /// own, with the code cache in `cache_dir`.
    pub(super) fn spawn(checked: Vec<(usize, Checked)>, runtime: &Arc<Runtime>, cache_dir: &Path) -> Compilations {
        let (sender, results) = mpsc::unbounded_channel();
        let mut pending = BTreeMap::new();
        for (order, plugin) in checked {
            pending.insert(
                order,
                Pending {
                    name: plugin.name.clone(),
                    version: plugin.version.clone(),
                    digest: plugin.digest.clone(),
                    deployed: plugin.deployed.clone(),
                },
            );
            let who = Who {
                name: plugin.name.clone(),
                version: plugin.version.clone(),
                bundle: plugin.bundle.clone(),
            };
            let (runtime, cache_dir, results) = (runtime.clone(), cache_dir.to_owned(), sender.clone());
            let (thread_who, bundle) = (who.clone(), who.bundle.clone());
            let compile = move || {
                // A panic in the compiler must not leave the plugin
                // `compiling` for ever.
                let result = std::panic::catch_unwind(AssertUnwindSafe(|| plugin.compile(&runtime, &cache_dir)))
                    .unwrap_or_else(|panic| {
                        let message = super::serve::panic_message(panic.as_ref());
                        Err(thread_who.refused(format!("it panicked: {message}")))
                    });
                let _ = results.send(Compiled { order, bundle, result });
            };
            if let Err(error) = std::thread::Builder::new()
                .name(format!("compile-{order}"))
                .spawn(compile)
            {
                let bundle = who.bundle.clone();
                let result = Err(who.refused(format!("no thread for it: {error}")));
                let _ = sender.send(Compiled { order, bundle, result });
            }
        }
        Compilations { results, pending }
    }

    /// Wait for the compilations until every one has ended, or until `wait`
    /// has passed and the device has something to serve (a plugin compiled,
    /// or `deploy`: deployment may bring plugins); those that ended.
    pub(super) async fn gather(&mut self, wait: Duration, deploy: bool) -> Vec<Compiled> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut ended: Vec<Compiled> = Vec::new();
        while !self.pending.is_empty() {
            let received = if tokio::time::Instant::now() >= deadline {
                if deploy || ended.iter().any(|compiled| compiled.result.is_ok()) {
                    break;
                }
                // Nothing to serve yet: a device with no plugin has no
                // alerts to hold back, so it waits for one.
                self.results.recv().await
            } else {
                match tokio::time::timeout_at(deadline, self.results.recv()).await {
                    Ok(received) => received,
                    Err(_) => continue,
                }
            };
            match received {
                Some(compiled) => {
                    self.pending.remove(&compiled.order);
                    ended.push(compiled);
                }
                // Every thread sends before it ends; none is left.
                None => self.pending.clear(),
            }
        }
        ended
    }

    /// The next compilation to end, once the device serves; `None` once
    /// none is left.
    pub(super) async fn next(&mut self) -> Option<Compiled> {
        if self.pending.is_empty() {
            return None;
        }
        let compiled = self.results.recv().await;
        match &compiled {
            Some(compiled) => {
                self.pending.remove(&compiled.order);
            }
            None => self.pending.clear(),
        }
        compiled
    }

    /// The plugins still compiling.
    pub(super) fn pending(&self) -> impl Iterator<Item = &Pending> {
        self.pending.values()
    }

    /// Whether every compilation has ended.
    pub(super) fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}
