//! Start-up's compilations: every plugin's code is compiled at once, each on
//! a thread of its own (and, through the runtime, in a compiler process of
//! its own). Start-up waits for them up to `[compile] start_wait`; a plugin
//! still compiling then does not hold the others: the device serves without
//! it, its status says `compiling`, and it joins the running device once
//! compiled, or is refused then (log, status, a critical `plugin-degraded`
//! alert), as a deployment would be. A plugin that compiles for minutes
//! (CPython in wasm on a small device, or a hostile component) so no longer
//! keeps glucose-monitor's alerts from starting.
//!
//! A plugin whose name an earlier one has (a deployed version before the
//! configuration file's, or twice in the file) is compiled only if that one
//! is refused: it runs in its place. Once the earlier one compiles, it gives
//! way (quietly behind a deployed version; otherwise it is refused as a
//! duplicate).

use std::collections::{BTreeMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use super::plugins::Deployed;
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

/// What the status knows of a plugin that is compiling, and what refuses it
/// if its compilation cannot run to an end.
pub(super) struct Pending {
    pub(super) name: String,
    pub(super) version: String,
    pub(super) digest: String,
    bundle: String,
}

impl Pending {
    /// Its compilation could not run to an end, for `reason`.
    fn refused(&self, reason: String) -> Refused {
        Refused {
            name: self.name.clone(),
            version: self.version.clone(),
            bundle: self.bundle.clone(),
            reason: Arc::new(RefusalReason::Compilation(reason)),
        }
    }
}

/// The names of the plugins compiling, each with the deployed bundle and
/// configuration it will run if deployed: what deployment sees of the
/// compilations (it does not compile one of them a second time).
#[derive(Clone, Default)]
pub(super) struct CompilingNames(Arc<Mutex<BTreeMap<String, Option<Deployed>>>>);

impl CompilingNames {
    /// If `plugin` is compiling: the deployed bundle and configuration it
    /// will run, if deployed.
    pub(super) fn get(&self, plugin: &str) -> Option<Option<Deployed>> {
        self.0.lock().ok()?.get(plugin).cloned()
    }

    fn insert(&self, plugin: &str, deployed: Option<Deployed>) {
        if let Ok(mut names) = self.0.lock() {
            names.insert(plugin.to_owned(), deployed);
        }
    }

    fn remove(&self, plugin: &str) {
        if let Ok(mut names) = self.0.lock() {
            names.remove(plugin);
        }
    }
}

/// What a compilation's thread reports: its result, or the panic that
/// ended it.
struct Done {
    order: usize,
    outcome: std::thread::Result<Result<Prepared, Refused>>,
}

/// A plugin behind another of its name.
struct Behind {
    order: usize,
    plugin: Checked,
    /// A plugin of the configuration file behind a deployed version: it
    /// gives way without a refusal.
    quietly: bool,
}

/// The compilations of start-up that have not ended.
pub(super) struct Compilations {
    results: mpsc::UnboundedReceiver<Done>,
    sender: mpsc::UnboundedSender<Done>,
    runtime: Arc<Runtime>,
    cache_dir: PathBuf,
    pending: BTreeMap<usize, Pending>,
    /// The names of `pending`, shared with deployment.
    names: CompilingNames,
    /// By name, the plugins behind the one compiling, in order.
    behind: BTreeMap<String, VecDeque<Behind>>,
    /// Ended, not yet handed out.
    ended: VecDeque<Compiled>,
}

impl Compilations {
    /// No compilation yet; each will use `runtime` and the code cache in
    /// `cache_dir`.
    pub(super) fn new(runtime: &Arc<Runtime>, cache_dir: &Path) -> Compilations {
        let (sender, results) = mpsc::unbounded_channel();
        Compilations {
            results,
            sender,
            runtime: runtime.clone(),
            cache_dir: cache_dir.to_owned(),
            pending: BTreeMap::new(),
            names: CompilingNames::default(),
            behind: BTreeMap::new(),
            ended: VecDeque::new(),
        }
    }

    /// Whether a plugin named `name` is compiling.
    pub(super) fn has(&self, name: &str) -> bool {
        self.pending.values().any(|pending| pending.name == name)
    }

    /// The names of the plugins compiling, as they change.
    pub(super) fn names(&self) -> CompilingNames {
        self.names.clone()
    }

    /// Queue `plugin` behind the one of its name that is compiling (see
    /// [`Compilations::has`]); `quietly`: see [`Behind`].
    pub(super) fn behind(&mut self, order: usize, plugin: Checked, quietly: bool) {
        self.behind
            .entry(plugin.name.clone())
            .or_default()
            .push_back(Behind { order, plugin, quietly });
    }

    /// Compile `plugin` on a thread of its own.
    pub(super) fn compile(&mut self, order: usize, plugin: Checked) {
        let pending = Pending {
            name: plugin.name.clone(),
            version: plugin.version.clone(),
            digest: plugin.digest.clone(),
            bundle: plugin.bundle.clone(),
        };
        self.names.insert(&plugin.name, plugin.deployed.clone());
        let (runtime, cache_dir, results) = (self.runtime.clone(), self.cache_dir.clone(), self.sender.clone());
        let compile = move || {
            // A panic in the compiler must not leave the plugin `compiling`
            // for ever: it is reported like a result.
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| plugin.compile(&runtime, &cache_dir)));
            let _ = results.send(Done { order, outcome });
        };
        if let Err(error) = std::thread::Builder::new()
            .name(format!("compile-{order}"))
            .spawn(compile)
        {
            let outcome = Ok(Err(pending.refused(format!("no thread for it: {error}"))));
            let _ = self.sender.send(Done { order, outcome });
        }
        self.pending.insert(order, pending);
    }

    /// Wait for the compilations until every one has ended, or until `wait`
    /// has passed and the device has something to serve (a plugin compiled,
    /// or `deploy`: deployment may bring plugins); those that ended.
    pub(super) async fn gather(&mut self, wait: Duration, deploy: bool) -> Vec<Compiled> {
        // No deadline if `wait` goes past what an `Instant` holds: waiting
        // for every compilation (the configuration bounds it far below).
        let deadline = tokio::time::Instant::now().checked_add(wait);
        let mut gathered: Vec<Compiled> = Vec::new();
        loop {
            gathered.extend(self.ended.drain(..));
            if self.pending.is_empty() {
                break;
            }
            let Some(deadline) = deadline else {
                let received = self.results.recv().await;
                self.settle(received);
                continue;
            };
            let received = if tokio::time::Instant::now() >= deadline {
                if deploy || gathered.iter().any(|compiled| compiled.result.is_ok()) {
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
            self.settle(received);
        }
        gathered
    }

    /// The next compilation to end, once the device serves; `None` once
    /// none is left.
    pub(super) async fn next(&mut self) -> Option<Compiled> {
        while self.ended.is_empty() && !self.pending.is_empty() {
            let received = self.results.recv().await;
            self.settle(received);
        }
        self.ended.pop_front()
    }

    /// A compilation ended (`None`: none can, every thread has ended): the
    /// plugins behind it give way if it compiled, or the first of them is
    /// compiled in its place.
    fn settle(&mut self, received: Option<Done>) {
        let Some(Done { order, outcome }) = received else {
            // Every thread sends before it ends; none is left.
            self.pending.clear();
            return;
        };
        let Some(pending) = self.pending.remove(&order) else {
            return;
        };
        self.names.remove(&pending.name);
        let result = outcome.unwrap_or_else(|panic| {
            let message = super::serve::panic_message(panic.as_ref());
            Err(pending.refused(format!("it panicked: {message}")))
        });
        let behind = self.behind.get_mut(&pending.name);
        let mut instead = None;
        match (&result, behind) {
            (Ok(_), Some(behind)) => {
                for Behind { order, plugin, quietly } in std::mem::take(behind) {
                    if quietly {
                        tracing::warn!(bundle = %plugin.bundle, "A deployed version of this plugin runs instead");
                    } else {
                        let bundle = plugin.bundle.clone();
                        let result = Err(plugin.refused(RefusalReason::Duplicate(plugin.name.clone())));
                        self.ended.push_back(Compiled { order, bundle, result });
                    }
                }
            }
            (Err(_), Some(behind)) => instead = behind.pop_front(),
            (_, None) => {}
        }
        if let Some(next) = instead {
            tracing::warn!(bundle = %next.plugin.bundle, "Runs in place of a plugin of its name that was refused");
            self.compile(next.order, next.plugin);
        }
        let bundle = pending.bundle;
        self.ended.push_back(Compiled { order, bundle, result });
    }

    /// The plugins still compiling.
    pub(super) fn pending(&self) -> impl Iterator<Item = &Pending> {
        self.pending.values()
    }

    /// Whether every compilation has ended and been handed out.
    pub(super) fn is_empty(&self) -> bool {
        self.pending.is_empty() && self.ended.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::RuntimeOptions;

    #[tokio::test]
    async fn a_start_wait_past_the_end_of_time_is_no_deadline_not_a_panic() {
        // The configuration bounds `start_wait`; this must not panic
        // whatever it is given (it once ended start-up with exit 101).
        let runtime = Arc::new(Runtime::new(RuntimeOptions::default()).unwrap());
        let dir = tempfile::tempdir().unwrap();
        let mut compilations = Compilations::new(&runtime, dir.path());
        assert!(compilations.gather(Duration::MAX, false).await.is_empty());
    }
}
