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
    results: mpsc::UnboundedReceiver<Compiled>,
    sender: mpsc::UnboundedSender<Compiled>,
    runtime: Arc<Runtime>,
    cache_dir: PathBuf,
    pending: BTreeMap<usize, Pending>,
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
            behind: BTreeMap::new(),
            ended: VecDeque::new(),
        }
    }

    /// Whether a plugin named `name` is compiling.
    pub(super) fn has(&self, name: &str) -> bool {
        self.pending.values().any(|pending| pending.name == name)
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
        self.pending.insert(
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
        let (runtime, cache_dir, results) = (self.runtime.clone(), self.cache_dir.clone(), self.sender.clone());
        let (thread_who, bundle) = (who.clone(), who.bundle.clone());
        let compile = move || {
            // A panic in the compiler must not leave the plugin `compiling`
            // for ever.
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
            let _ = self.sender.send(Compiled { order, bundle, result });
        }
    }

    /// Wait for the compilations until every one has ended, or until `wait`
    /// has passed and the device has something to serve (a plugin compiled,
    /// or `deploy`: deployment may bring plugins); those that ended.
    pub(super) async fn gather(&mut self, wait: Duration, deploy: bool) -> Vec<Compiled> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut gathered: Vec<Compiled> = Vec::new();
        loop {
            gathered.extend(self.ended.drain(..));
            if self.pending.is_empty() {
                break;
            }
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
    fn settle(&mut self, received: Option<Compiled>) {
        let Some(compiled) = received else {
            // Every thread sends before it ends; none is left.
            self.pending.clear();
            return;
        };
        let name = self.pending.remove(&compiled.order).map(|pending| pending.name);
        let behind = name.as_ref().and_then(|name| self.behind.get_mut(name));
        match (&compiled.result, behind) {
            (Ok(_), Some(behind)) => {
                for behind in std::mem::take(behind) {
                    let Behind { order, plugin, quietly } = behind;
                    if quietly {
                        tracing::warn!(bundle = %plugin.bundle, "A deployed version of this plugin runs instead");
                    } else {
                        let bundle = plugin.bundle.clone();
                        let result = Err(plugin.refused(RefusalReason::Duplicate(plugin.name.clone())));
                        self.ended.push_back(Compiled { order, bundle, result });
                    }
                }
            }
            (Err(_), Some(behind)) => {
                if let Some(next) = behind.pop_front() {
                    tracing::warn!(bundle = %next.plugin.bundle, "Runs in place of a plugin of its name that was refused");
                    self.compile(next.order, next.plugin);
                }
            }
            (_, None) => {}
        }
        self.ended.push_back(compiled);
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
