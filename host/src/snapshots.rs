//! Plugin snapshots on disk, so that a plugin's state survives a restart of
//! the host and an upgrade (issue #14): one file per plugin,
//! `snapshot-<plugin>.sealed` in the data directory, sealed with AES-256-GCM
//! under the device key, written atomically (a crash leaves the old file or
//! the new one, never a mix).
//!
//! Layout: `edgewise-snapshot-v1\n`, the schema (u32, big endian), the
//! 12-byte nonce, the ciphertext with its tag. The associated data binds it
//! to its plugin and schema: a file copied to another plugin's name, or its
//! schema edited, does not open.
//!
//! A file that does not open (damaged, truncated, another device's key, from
//! the future) is moved aside under a dated name by the caller and reported;
//! it never stops the plugin, which then starts afresh.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use ring::aead::NONCE_LEN;
use ring::rand::SystemRandom;

use crate::files::{self, Access, Existing};
use crate::outbox::OutboxKey;
use crate::runtime::Snapshot;

/// The first bytes of every snapshot file.
const MAGIC: &[u8] = b"edgewise-snapshot-v1\n";
/// Domain separation of the associated data.
const AAD_DOMAIN: &[u8] = b"edgewise-snapshot-file-v1";

/// Why a snapshot file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotFileError {
    /// Reading or writing the file failed.
    #[error("snapshot file {}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a snapshot of this plugin under this device's key.
    #[error("snapshot file {}: {reason}", path.display())]
    Unusable {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// The snapshot files of a data directory.
#[derive(Clone)]
pub struct SnapshotFiles {
    dir: PathBuf,
    key: OutboxKey,
    rng: SystemRandom,
}

impl std::fmt::Debug for SnapshotFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotFiles")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl SnapshotFiles {
    /// The snapshot files under `dir`, sealed with `key` (the device key).
    pub fn new(dir: &Path, key: OutboxKey) -> SnapshotFiles {
        SnapshotFiles {
            dir: dir.to_owned(),
            key,
            rng: SystemRandom::new(),
        }
    }

    /// The file of `plugin`.
    pub fn path(&self, plugin: &str) -> PathBuf {
        self.dir.join(format!("snapshot-{plugin}.sealed"))
    }

    /// Seal and write `snapshot` as `plugin`'s, replacing the last one.
    pub fn save(&self, plugin: &str, snapshot: &Snapshot) -> Result<(), SnapshotFileError> {
        let path = self.path(plugin);
        let aad = aad(plugin, snapshot.schema);
        let (nonce, sealed) =
            self.key
                .seal(&self.rng, &aad, snapshot.data.clone())
                .map_err(|()| SnapshotFileError::Unusable {
                    path: path.clone(),
                    reason: "cannot seal it",
                })?;
        let mut bytes = Vec::with_capacity(MAGIC.len() + 4 + NONCE_LEN + sealed.len());
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&snapshot.schema.to_be_bytes());
        bytes.extend_from_slice(&nonce);
        bytes.extend_from_slice(&sealed);
        files::write_atomic(&path, &bytes, Access::Private, Existing::Replace)
            .map_err(|source| SnapshotFileError::Io { path, source })
    }

    /// `plugin`'s last snapshot, if it has one.
    pub fn load(&self, plugin: &str) -> Result<Option<Snapshot>, SnapshotFileError> {
        let path = self.path(plugin);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(SnapshotFileError::Io { path, source }),
        };
        let unusable = |reason| SnapshotFileError::Unusable {
            path: path.clone(),
            reason,
        };
        let rest = bytes
            .strip_prefix(MAGIC)
            .ok_or_else(|| unusable("not a snapshot file of this host's format"))?;
        let (schema, rest) = rest.split_first_chunk::<4>().ok_or_else(|| unusable("truncated"))?;
        let schema = u32::from_be_bytes(*schema);
        let (nonce, sealed) = rest
            .split_first_chunk::<NONCE_LEN>()
            .ok_or_else(|| unusable("truncated"))?;
        let data = self
            .key
            .open(nonce, &aad(plugin, schema), sealed.to_vec())
            .ok_or_else(|| unusable("does not open with this device's key (damaged, or not this plugin's)"))?;
        Ok(Some(Snapshot { schema, data }))
    }

    /// Move `plugin`'s unusable file aside under a dated name; returns it.
    pub fn move_aside(&self, plugin: &str) -> Result<PathBuf, SnapshotFileError> {
        let path = self.path(plugin);
        let mut aside = self
            .dir
            .join(format!("snapshot-{plugin}.sealed.{}.aside", files::aside_stamp()));
        if aside.exists() {
            aside = self.dir.join(format!(
                "snapshot-{plugin}.sealed.{}-{}.aside",
                files::aside_stamp(),
                std::process::id()
            ));
        }
        std::fs::rename(&path, &aside)
            .and_then(|()| files::sync_dir(&self.dir))
            .map_err(|source| SnapshotFileError::Io { path, source })?;
        Ok(aside)
    }
}

/// Saves one plugin's snapshots on a thread of its own, so that the fsyncs
/// of a save never delay the plugin's next reading (an alert with it). Only
/// the latest snapshot waiting counts: a newer one replaces it.
pub struct SnapshotSaver {
    shared: Arc<(Mutex<Pending>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct Pending {
    latest: Option<Snapshot>,
    stop: bool,
}

impl SnapshotSaver {
    /// A saver of `plugin`'s snapshots into `files`; `failed` hears of each
    /// save that failed.
    pub fn start(
        files: SnapshotFiles,
        plugin: String,
        failed: impl Fn(&SnapshotFileError) + Send + 'static,
    ) -> std::io::Result<SnapshotSaver> {
        let shared = Arc::new((Mutex::new(Pending::default()), Condvar::new()));
        let watched = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("save-{plugin}"))
            .spawn(move || {
                let (lock, wake) = &*watched;
                loop {
                    let (snapshot, stop) = {
                        let Ok(mut pending) = lock.lock() else { return };
                        while pending.latest.is_none() && !pending.stop {
                            pending = match wake.wait(pending) {
                                Ok(pending) => pending,
                                Err(_) => return,
                            };
                        }
                        (pending.latest.take(), pending.stop)
                    };
                    if let Some(snapshot) = snapshot
                        && let Err(error) = files.save(&plugin, &snapshot)
                    {
                        failed(&error);
                    }
                    if stop {
                        return;
                    }
                }
            })?;
        Ok(SnapshotSaver {
            shared,
            thread: Some(thread),
        })
    }

    /// Save `snapshot` soon (replacing one still waiting).
    pub fn save(&self, snapshot: Snapshot) {
        let (lock, wake) = &*self.shared;
        if let Ok(mut pending) = lock.lock() {
            pending.latest = Some(snapshot);
            wake.notify_one();
        }
    }

    /// Save `last` (if any, else what is waiting) and return once it is on
    /// disk: at shutdown.
    pub fn finish(mut self, last: Option<Snapshot>) {
        let (lock, wake) = &*self.shared;
        if let Ok(mut pending) = lock.lock() {
            if last.is_some() {
                pending.latest = last;
            }
            pending.stop = true;
            wake.notify_one();
        }
        if let Some(thread) = self.thread.take() {
            // The thread only saves files: it cannot panic but on a bug.
            let _ = thread.join();
        }
    }
}

impl Drop for SnapshotSaver {
    fn drop(&mut self) {
        let (lock, wake) = &*self.shared;
        if let Ok(mut pending) = lock.lock() {
            pending.stop = true;
            wake.notify_one();
        }
    }
}

/// The associated data of `plugin`'s snapshot in `schema`.
fn aad(plugin: &str, schema: u32) -> Vec<u8> {
    let mut aad = Vec::with_capacity(AAD_DOMAIN.len() + 8 + plugin.len() + 4);
    aad.extend_from_slice(AAD_DOMAIN);
    aad.extend_from_slice(&(plugin.len() as u64).to_be_bytes());
    aad.extend_from_slice(plugin.as_bytes());
    aad.extend_from_slice(&schema.to_be_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path, key: u8) -> SnapshotFiles {
        SnapshotFiles::new(dir, OutboxKey::from_bytes(&[key; 32]).unwrap())
    }

    #[test]
    fn a_snapshot_comes_back_only_for_its_plugin_under_its_key_and_undamaged() {
        let dir = tempfile::tempdir().unwrap();
        let store = files(dir.path(), 7);
        assert!(store.load("p").unwrap().is_none());
        let snapshot = Snapshot {
            schema: 3,
            data: b"state".to_vec(),
        };
        store.save("p", &snapshot).unwrap();
        assert_eq!(store.load("p").unwrap(), Some(snapshot.clone()));
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(store.path("p")).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o600);

        let unusable =
            |store: &SnapshotFiles, plugin| matches!(store.load(plugin), Err(SnapshotFileError::Unusable { .. }));
        assert!(unusable(&files(dir.path(), 8), "p"), "another key");
        std::fs::copy(store.path("p"), store.path("q")).unwrap();
        assert!(unusable(&store, "q"), "another plugin's file");
        let bytes = std::fs::read(store.path("p")).unwrap();
        let mut schema_edited = bytes.clone();
        schema_edited[MAGIC.len() + 3] ^= 1;
        for damaged in [
            schema_edited,
            bytes[..bytes.len() - 1].to_vec(),
            bytes[..MAGIC.len() + 2].to_vec(),
            b"garbage".to_vec(),
            Vec::new(),
        ] {
            std::fs::write(store.path("p"), &damaged).unwrap();
            assert!(unusable(&store, "p"), "{damaged:?}");
        }
        let aside = store.move_aside("p").unwrap();
        assert!(aside.exists() && !store.path("p").exists());
        assert!(store.load("p").unwrap().is_none());
    }
}
