//! The compiled-component disk cache (DESIGN "Runtime"): a plugin whose code
//! this host has compiled before starts from the stored machine code instead
//! of running Cranelift again.
//!
//! - **Key**: SHA-256 over a format tag, the host version, the engine's
//!   `precompile_compatibility_hash` (target, compiler flags, tunables, wasm
//!   features, wasmtime version) and the SHA-256 of the code. One entry per
//!   key: `<cache_dir>/<hex>.cwasm`. Another engine configuration, host or
//!   wasmtime version simply looks up another file.
//! - **Only artifacts this host compiled itself are ever deserialized**: an
//!   entry is `tag || header || artifact`; `header` is the format tag and the
//!   entry key, `tag` is HMAC-SHA256 of `header || artifact` under the
//!   cache's secret key (`<cache_dir>/cache.key`, 32 random bytes, created
//!   mode 0600). The tag is checked (constant time) on the bytes in memory,
//!   then the header must be this entry's, and exactly those bytes are
//!   deserialized (never a file mapping that could change after the check).
//!   The header means a genuine artifact of one plugin copied under another
//!   entry's name is refused.
//! - **Permissions**: the cache refuses to work (and says why) when the key
//!   file has any group or other permission bit, or the directory is writable
//!   by group or others: whoever can read the key can forge artifacts, and
//!   whoever can write the directory can swap the key. It does not repair
//!   them: the operator must see the warning. A key file of the wrong length
//!   (e.g. a torn write) is replaced by a new key, which only costs
//!   recompilations.
//! - **Fallback**: a cache problem never stops a plugin. A missing, unreadable,
//!   truncated, forged or incompatible entry is logged, the code is compiled,
//!   and the entry is rewritten with [`files::write_atomic`] (like the key:
//!   mode 0600, synced, renamed, directory synced). A torn entry could only
//!   fail its tag and be recompiled, but the one way of writing files keeps
//!   the reasoning short.
//!
//! Old entries (previous plugin versions) are not evicted.

use std::fs::File;
use std::hash::{Hash, Hasher};
use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ring::digest::{self, SHA256};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use wasmtime::Engine;
use wasmtime::component::Component;

use super::engine::{CompiledPlugin, Pre, Runtime};
use super::error::{LoadError, WasmtimeError};
use crate::files::{self, Access, Existing};

/// The secret key file inside the cache directory.
pub const CACHE_KEY_FILE: &str = "cache.key";
/// Extension of the entries.
const EXTENSION: &str = "cwasm";
/// Versions the entry layout and the authenticated data.
const FORMAT: &[u8] = b"edgewise-cwasm-v1";
/// Length of the HMAC-SHA256 tag at the start of each entry.
const TAG_LEN: usize = 32;
/// Length of the cache key.
const KEY_LEN: usize = 32;

/// Whether [`Runtime::compile_cached`] used a stored artifact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// A valid entry was found and deserialized: no compilation.
    Hit,
    /// The code was compiled (no entry, an unusable one, or no usable cache);
    /// the reason an entry or the cache was ignored is logged.
    Miss,
}

impl Runtime {
    /// Like [`Runtime::compile`], through the compiled-component cache in
    /// `cache_dir` (created if needed). Errors are those of compiling `code`;
    /// a cache problem only costs a compilation and a log line.
    pub fn compile_cached(
        &self,
        name: &str,
        code: &[u8],
        cache_dir: &Path,
    ) -> Result<(CompiledPlugin, CacheOutcome), LoadError> {
        let entry = Entry::new(self.engine(), code, cache_dir);
        let key = match CacheKey::load_or_create(cache_dir) {
            Ok(key) => Some(key),
            Err(error) => {
                tracing::warn!(plugin = name, %error, "Compiled-component cache unusable; compiling without it");
                None
            }
        };
        if let Some(key) = &key {
            match load(self, name, key, &entry) {
                Ok(plugin) => {
                    tracing::debug!(plugin = name, entry = %entry.path.display(), "Compiled component loaded from the cache");
                    return Ok((plugin, CacheOutcome::Hit));
                }
                Err(Lookup::Absent) => {
                    tracing::debug!(plugin = name, entry = %entry.path.display(), "Compiled component not cached yet");
                }
                Err(Lookup::Refused(error)) => {
                    tracing::warn!(plugin = name, %error, "Ignoring a cached compiled component; recompiling");
                }
            }
        }
        let plugin = self.compile(name, code)?;
        if let Some(key) = &key {
            match store(&plugin, key, &entry) {
                Ok(()) => tracing::debug!(plugin = name, entry = %entry.path.display(), "Compiled component cached"),
                Err(error) => tracing::warn!(plugin = name, %error, "Cannot cache the compiled component"),
            }
        }
        Ok((plugin, CacheOutcome::Miss))
    }
}

/// Why the cache could not be used, or an entry was ignored.
#[derive(Debug, thiserror::Error)]
enum CacheError {
    /// A file or directory operation failed.
    #[error("compiled-component cache {path}: cannot {operation}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the cache was doing.
        operation: &'static str,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The key file or the directory is open to other users.
    #[error("compiled-component cache {path}: mode {mode:o} gives other users access; it must be {wanted}")]
    Permissions {
        /// The file or directory.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
        /// What is required.
        wanted: &'static str,
    },
    /// Not a regular file or not a directory where one is needed.
    #[error("compiled-component cache {path}: not a {wanted}")]
    NotA {
        /// The path.
        path: PathBuf,
        /// "directory" or "regular file".
        wanted: &'static str,
    },
    /// The system random generator failed.
    #[error("compiled-component cache: no random numbers for a new key")]
    Random,
    /// An entry shorter than its tag.
    #[error("compiled-component cache {path}: truncated ({len} bytes)")]
    Truncated {
        /// The entry.
        path: PathBuf,
        /// Its length.
        len: usize,
    },
    /// An entry whose tag does not match: modified, truncated, written under
    /// another key, or copied from another entry.
    #[error(
        "compiled-component cache {path}: authentication failed (modified, truncated or not written by this cache)"
    )]
    BadTag {
        /// The entry.
        path: PathBuf,
    },
    /// An authentic entry of other code or another engine, under this name.
    #[error("compiled-component cache {path}: authentic, but stored under another entry's name")]
    OtherEntry {
        /// The entry.
        path: PathBuf,
    },
    /// An authentic entry this engine refuses (should not happen: the key
    /// covers the engine configuration).
    #[error("compiled-component cache {path}: does not load in this engine: {source}")]
    Incompatible {
        /// The entry.
        path: PathBuf,
        /// wasmtime's explanation.
        #[source]
        source: WasmtimeError,
    },
    /// An authentic entry that does not link against the host imports.
    #[error("compiled-component cache {path}: does not link: {source}")]
    Link {
        /// The entry.
        path: PathBuf,
        /// wasmtime's explanation.
        #[source]
        source: WasmtimeError,
    },
    /// wasmtime could not serialize a compiled component.
    #[error("compiled-component cache: cannot serialize the component: {0}")]
    Serialize(#[source] WasmtimeError),
}

/// Shorthand for an I/O error with its path and operation.
fn io(path: &Path, operation: &'static str) -> impl FnOnce(std::io::Error) -> CacheError {
    let path = path.to_owned();
    move |source| CacheError::Io {
        path,
        operation,
        source,
    }
}

/// The outcome of looking an entry up.
#[derive(Debug)]
enum Lookup {
    /// No entry: the normal first start.
    Absent,
    /// An entry exists but cannot be used.
    Refused(CacheError),
}

impl From<CacheError> for Lookup {
    fn from(error: CacheError) -> Lookup {
        Lookup::Refused(error)
    }
}

/// Where the artifact of some code for some engine lives, and the header that
/// starts it (the format and the digest that names the file).
struct Entry {
    header: Vec<u8>,
    path: PathBuf,
}

impl Entry {
    fn new(engine: &Engine, code: &[u8], cache_dir: &Path) -> Entry {
        let mut compatibility = DigestHasher(digest::Context::new(&SHA256));
        engine.precompile_compatibility_hash().hash(&mut compatibility);
        let compatibility = compatibility.0.finish();
        let code_digest = digest::digest(&SHA256, code);
        let mut key = digest::Context::new(&SHA256);
        // Both strings are free of NUL bytes: the separators keep the input unambiguous.
        key.update(FORMAT);
        key.update(&[0]);
        key.update(env!("CARGO_PKG_VERSION").as_bytes());
        key.update(&[0]);
        key.update(compatibility.as_ref());
        key.update(code_digest.as_ref());
        let digest = key.finish();
        let path = cache_dir.join(format!("{}.{EXTENSION}", hex::encode(digest.as_ref())));
        let mut header = Vec::with_capacity(FORMAT.len() + 1 + digest.as_ref().len());
        header.extend_from_slice(FORMAT);
        header.push(0);
        header.extend_from_slice(digest.as_ref());
        Entry { header, path }
    }
}

/// Feeds whatever `Hash` writes into SHA-256: a stable digest of the engine's
/// compatibility hash (std's `DefaultHasher` is not promised to be stable).
struct DigestHasher(digest::Context);

impl Hasher for DigestHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// Not used for the entry key (which takes the whole digest); required by the trait.
    fn finish(&self) -> u64 {
        let digest = self.0.clone().finish();
        digest
            .as_ref()
            .iter()
            .take(8)
            .fold(0, |acc, b| acc << 8 | u64::from(*b))
    }
}

/// What the cache requires of its directory or of its key file before it
/// trusts them: whoever else can write the directory can swap the key, and
/// whoever else can read the key can forge entries.
struct Required {
    /// A directory (else a regular file).
    directory: bool,
    /// Mode bits that must all be clear.
    forbidden: u32,
    /// The requirement, for the error.
    wanted: &'static str,
}

const DIRECTORY: Required = Required {
    directory: true,
    forbidden: 0o022,
    wanted: "writable by its owner only (e.g. 0700)",
};

const KEY_FILE: Required = Required {
    directory: false,
    forbidden: 0o077,
    wanted: "readable by its owner only (0600)",
};

impl Required {
    /// Refuse `path` (with metadata `meta`) if it is the wrong kind of file
    /// or others have access that the cache forbids.
    fn check(&self, path: &Path, meta: &std::fs::Metadata) -> Result<(), CacheError> {
        let (right_kind, kind) = if self.directory {
            (meta.is_dir(), "directory")
        } else {
            (meta.is_file(), "regular file")
        };
        if !right_kind {
            return Err(CacheError::NotA {
                path: path.to_owned(),
                wanted: kind,
            });
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & self.forbidden != 0 {
            return Err(CacheError::Permissions {
                path: path.to_owned(),
                mode,
                wanted: self.wanted,
            });
        }
        Ok(())
    }
}

/// The secret that authenticates entries.
struct CacheKey(hmac::Key);

impl CacheKey {
    /// Create `dir` (mode 0700) if needed and check it; read its key file or
    /// create one.
    fn load_or_create(dir: &Path) -> Result<CacheKey, CacheError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io(dir, "create the cache directory"))?;
        let meta = std::fs::metadata(dir).map_err(io(dir, "inspect the cache directory"))?;
        DIRECTORY.check(dir, &meta)?;
        let path = dir.join(CACHE_KEY_FILE);
        match File::open(&path) {
            Ok(file) => match Self::read(&path, file)? {
                Some(key) => Ok(key),
                None => {
                    tracing::warn!(path = %path.display(), "Compiled-component cache key has the wrong length; replacing it");
                    Self::create(&path, Existing::Replace)
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self::create(&path, Existing::Keep),
            Err(source) => Err(io(&path, "open the cache key")(source)),
        }
    }

    /// The key in an open key file; `None` if it is not exactly [`KEY_LEN`] bytes.
    fn read(path: &Path, file: File) -> Result<Option<CacheKey>, CacheError> {
        let meta = file.metadata().map_err(io(path, "inspect the cache key"))?;
        KEY_FILE.check(path, &meta)?;
        let mut bytes = Vec::with_capacity(KEY_LEN + 1);
        (&file)
            .take(KEY_LEN as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(io(path, "read the cache key"))?;
        if bytes.len() != KEY_LEN {
            return Ok(None);
        }
        Ok(Some(CacheKey(hmac::Key::new(hmac::HMAC_SHA256, &bytes))))
    }

    /// Write a new random key, mode 0600, complete or not at all. With
    /// [`Existing::Replace`], over an existing (unusable) key file; with
    /// [`Existing::Keep`] only if there is still none (a racing process's key wins).
    fn create(path: &Path, existing: Existing) -> Result<CacheKey, CacheError> {
        let mut bytes = [0u8; KEY_LEN];
        SystemRandom::new().fill(&mut bytes).map_err(|_| CacheError::Random)?;
        match files::write_atomic(path, &bytes, Access::Private, existing) {
            Ok(()) => Ok(CacheKey(hmac::Key::new(hmac::HMAC_SHA256, &bytes))),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let existing = File::open(path).map_err(io(path, "open the cache key"))?;
                Self::read(path, existing)?.ok_or_else(|| CacheError::Io {
                    path: path.to_owned(),
                    operation: "read the cache key",
                    source: std::io::Error::new(std::io::ErrorKind::InvalidData, "wrong length"),
                })
            }
            Err(e) => Err(io(path, "write the cache key")(e)),
        }
    }

    /// The tag of an entry: HMAC over its header and the artifact.
    fn sign(&self, header: &[u8], artifact: &[u8]) -> hmac::Tag {
        let mut context = hmac::Context::with_key(&self.0);
        context.update(header);
        context.update(artifact);
        context.sign()
    }

    /// The artifact in `body` (an entry without its tag) if `tag` is the tag
    /// of `body` (checked in constant time) and `body` starts with the header
    /// of `entry`.
    fn verify<'a>(&self, entry: &Entry, body: &'a [u8], tag: &[u8]) -> Result<Authentic<'a>, CacheError> {
        hmac::verify(&self.0, body, tag).map_err(|_| CacheError::BadTag {
            path: entry.path.clone(),
        })?;
        // Genuine, but possibly another entry's file copied under this name.
        match body.strip_prefix(entry.header.as_slice()) {
            Some(artifact) => Ok(Authentic(artifact)),
            None => Err(CacheError::OtherEntry {
                path: entry.path.clone(),
            }),
        }
    }
}

/// An artifact whose entry verified under the cache key and whose header is
/// the expected one: what `store` wrote, i.e. the output of
/// `Component::serialize` for this code and engine. Only [`CacheKey::verify`]
/// makes one.
struct Authentic<'a>(&'a [u8]);

/// Deserialize an authenticated artifact.
#[allow(unsafe_code)]
fn deserialize(engine: &Engine, artifact: Authentic<'_>) -> wasmtime::Result<Component> {
    // SAFETY: `Component::deserialize` must only see unmodified output of
    // `Component::serialize`. `Authentic` bytes carry a valid HMAC-SHA256 tag
    // under the cache's secret key, which only `store` computes, over exactly
    // what `Component::serialize` returned. These are the verified bytes in
    // memory, not a file that could change after the check. An artifact of
    // another wasmtime version or configuration is refused by wasmtime with
    // an error, safely.
    unsafe { Component::deserialize(engine, artifact.0) }
}

/// The plugin stored under `entry`, authenticated, deserialized and linked.
fn load(runtime: &Runtime, name: &str, key: &CacheKey, entry: &Entry) -> Result<CompiledPlugin, Lookup> {
    let bytes = match std::fs::read(&entry.path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Lookup::Absent),
        Err(source) => return Err(io(&entry.path, "read the entry")(source).into()),
    };
    let (tag, body) = bytes.split_at_checked(TAG_LEN).ok_or_else(|| CacheError::Truncated {
        path: entry.path.clone(),
        len: bytes.len(),
    })?;
    let authentic = key.verify(entry, body, tag)?;
    let component = deserialize(runtime.engine(), authentic).map_err(|e| CacheError::Incompatible {
        path: entry.path.clone(),
        source: e.into(),
    })?;
    let pre = Pre::link(runtime.linker(), &component).map_err(|(_, e)| CacheError::Link {
        path: entry.path.clone(),
        source: e.into(),
    })?;
    Ok(CompiledPlugin {
        name: name.to_owned(),
        pre,
        assets: super::world::Assets::default(),
        snapshot_schemas: super::world::SnapshotSchemas::Unchecked,
    })
}

/// Write `plugin`'s artifact with its tag to `entry`, atomically.
fn store(plugin: &CompiledPlugin, key: &CacheKey, entry: &Entry) -> Result<(), CacheError> {
    let artifact = plugin
        .pre
        .component()
        .serialize()
        .map_err(|e| CacheError::Serialize(e.into()))?;
    let tag = key.sign(&entry.header, &artifact);
    let mut bytes = Vec::with_capacity(TAG_LEN + entry.header.len() + artifact.len());
    bytes.extend_from_slice(tag.as_ref());
    bytes.extend_from_slice(&entry.header);
    bytes.extend_from_slice(&artifact);
    files::write_atomic(&entry.path, &bytes, Access::Private, Existing::Replace)
        .map_err(io(&entry.path, "write the entry"))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::model::{Output, Reading};
    use crate::runtime::test_plugins::component;
    use crate::runtime::{Limits, PluginInstance, RuntimeOptions};

    fn glucose() -> Vec<u8> {
        component("glucose-monitor")
    }

    fn threshold() -> Vec<u8> {
        component("threshold")
    }

    fn runtime() -> Runtime {
        Runtime::new(RuntimeOptions::default()).unwrap()
    }

    fn entries(dir: &Path) -> Vec<PathBuf> {
        let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == EXTENSION))
            .collect();
        found.sort();
        found
    }

    fn only_entry(dir: &Path) -> PathBuf {
        let found = entries(dir);
        assert_eq!(found.len(), 1, "{found:?}");
        found.into_iter().next().unwrap()
    }

    #[test]
    fn a_cached_component_comes_back_linked_against_its_own_world() {
        use crate::runtime::World;
        let dir = tempfile::tempdir().unwrap();
        let runtime = runtime();
        // faulty-plugin is written against 0.1 (the SDK's plugins are 0.2).
        for (code, world) in [(component("faulty-plugin"), World::V0_1), (glucose(), World::V0_2)] {
            for expected in [CacheOutcome::Miss, CacheOutcome::Hit] {
                let (compiled, outcome) = runtime.compile_cached("p", &code, dir.path()).unwrap();
                assert_eq!((outcome, compiled.world()), (expected, world));
                let mut instance = PluginInstance::new(&runtime, &compiled, Limits::default()).unwrap();
                instance.init(&[]).unwrap();
            }
        }
    }

    /// What the plugin emits for readings that raise (and resolve) alerts, a
    /// late reading, and a tick that closes summary windows.
    fn run(runtime: &Runtime, plugin: &CompiledPlugin) -> Vec<Output> {
        let mut instance = PluginInstance::new(runtime, plugin, Limits::default()).unwrap();
        instance.init(&[]).unwrap();
        let readings: Vec<Reading> = [120.0, 50.0, 65.0, 130.0, 300.0, 140.0]
            .iter()
            .enumerate()
            .map(|(i, v)| Reading {
                sensor: "cgm-1".into(),
                timestamp_ms: 1_700_000_000_000 + i as i64 * 300_000,
                value: *v,
                unit: "mg/dL".into(),
            })
            .collect();
        instance.on_readings(&readings).unwrap();
        instance.on_tick(1_700_000_000_000 + 2 * 86_400_000).unwrap();
        instance.take_outputs()
    }

    /// Why the entry of `code` is refused (looked up without the fallback).
    fn refusal(runtime: &Runtime, code: &[u8], dir: &Path) -> CacheError {
        let key = CacheKey::load_or_create(dir).unwrap();
        match load(runtime, "p", &key, &Entry::new(runtime.engine(), code, dir)) {
            Err(Lookup::Refused(error)) => error,
            Err(Lookup::Absent) => panic!("no entry"),
            Ok(_) => panic!("the entry was accepted"),
        }
    }

    /// Compile `code` through the cache in `dir` and run it: what the cache
    /// did and what the plugin emitted.
    fn compile_and_run(runtime: &Runtime, code: &[u8], dir: &Path) -> (CacheOutcome, Vec<Output>) {
        let (compiled, outcome) = runtime.compile_cached("glucose-monitor", code, dir).unwrap();
        assert_eq!(compiled.name(), "glucose-monitor");
        (outcome, run(runtime, &compiled))
    }

    /// A cache directory that holds the entry of glucose-monitor, with its
    /// code and the runtime that wrote it.
    fn cached_glucose() -> (tempfile::TempDir, Vec<u8>, Runtime) {
        let dir = tempfile::tempdir().unwrap();
        let code = glucose();
        let runtime = runtime();
        assert_eq!(outcome(&runtime, &code, dir.path()), CacheOutcome::Miss);
        (dir, code, runtime)
    }

    /// Compile `code` through the cache in `dir`: what the cache did.
    fn outcome(runtime: &Runtime, code: &[u8], dir: &Path) -> CacheOutcome {
        runtime.compile_cached("p", code, dir).unwrap().1
    }

    #[test]
    fn miss_then_hit_with_the_same_outputs() {
        let dir = tempfile::tempdir().unwrap();
        let code = glucose();
        let runtime = runtime();
        let (outcome, expected) = compile_and_run(&runtime, &code, dir.path());
        assert_eq!(outcome, CacheOutcome::Miss);
        assert!(expected.iter().any(|o| matches!(o, Output::Alert(_))), "{expected:?}");
        assert!(expected.iter().any(|o| matches!(o, Output::Summary(_))), "{expected:?}");
        only_entry(dir.path());

        let hit = (CacheOutcome::Hit, expected);
        assert_eq!(compile_and_run(&runtime, &code, dir.path()), hit);
        // Another process: a new engine with the same configuration.
        let other = Runtime::new(RuntimeOptions::default()).unwrap();
        assert_eq!(compile_and_run(&other, &code, dir.path()), hit);
    }

    #[test]
    fn key_and_entries_are_private_to_the_owner() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("nested/cache");
        runtime().compile_cached("glucose-monitor", &glucose(), &cache).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&cache.join(CACHE_KEY_FILE)), 0o600);
        assert_eq!(mode(&only_entry(&cache)), 0o600);
        assert_eq!(mode(&cache) & 0o077, 0);
        assert_eq!(std::fs::read(cache.join(CACHE_KEY_FILE)).unwrap().len(), KEY_LEN);
    }

    #[test]
    fn a_tampered_artifact_is_refused_and_recompiled() {
        let (dir, code, runtime) = cached_glucose();
        let (_, expected) = compile_and_run(&runtime, &code, dir.path());
        let path = only_entry(dir.path());
        let mut bytes = std::fs::read(&path).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x01;
        std::fs::write(&path, &bytes).unwrap();

        let error = refusal(&runtime, &code, dir.path());
        assert!(matches!(error, CacheError::BadTag { .. }), "{error}");
        let recompiled = compile_and_run(&runtime, &code, dir.path());
        assert_eq!(recompiled, (CacheOutcome::Miss, expected.clone()));
        // Overwritten with a good entry.
        assert_eq!(
            compile_and_run(&runtime, &code, dir.path()),
            (CacheOutcome::Hit, expected)
        );
    }

    #[test]
    fn a_truncated_artifact_is_refused_and_recompiled() {
        let (dir, code, runtime) = cached_glucose();
        let path = only_entry(dir.path());
        let full = std::fs::read(&path).unwrap();

        std::fs::write(&path, &full[..full.len() / 2]).unwrap();
        let error = refusal(&runtime, &code, dir.path());
        assert!(matches!(error, CacheError::BadTag { .. }), "{error}");
        assert_eq!(outcome(&runtime, &code, dir.path()), CacheOutcome::Miss);

        std::fs::write(&path, &full[..TAG_LEN - 1]).unwrap();
        let error = refusal(&runtime, &code, dir.path());
        assert!(matches!(error, CacheError::Truncated { .. }), "{error}");
        assert_eq!(outcome(&runtime, &code, dir.path()), CacheOutcome::Miss);

        assert_eq!(std::fs::read(&path).unwrap().len(), full.len());
        assert_eq!(outcome(&runtime, &code, dir.path()), CacheOutcome::Hit);
    }

    #[test]
    fn different_code_gets_a_different_entry() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = runtime();
        let (_, a) = runtime
            .compile_cached("glucose-monitor", &glucose(), dir.path())
            .unwrap();
        let (_, b) = runtime.compile_cached("threshold", &threshold(), dir.path()).unwrap();
        assert_eq!((a, b), (CacheOutcome::Miss, CacheOutcome::Miss));
        assert_eq!(entries(dir.path()).len(), 2);
        let (_, a) = runtime
            .compile_cached("glucose-monitor", &glucose(), dir.path())
            .unwrap();
        let (_, b) = runtime.compile_cached("threshold", &threshold(), dir.path()).unwrap();
        assert_eq!((a, b), (CacheOutcome::Hit, CacheOutcome::Hit));
    }

    #[test]
    fn another_entrys_genuine_artifact_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = runtime();
        let glucose_code = glucose();
        let threshold_code = threshold();
        runtime
            .compile_cached("threshold", &threshold_code, dir.path())
            .unwrap();
        let threshold_entry = only_entry(dir.path());
        let glucose_entry = Entry::new(runtime.engine(), &glucose_code, dir.path()).path;
        std::fs::copy(&threshold_entry, &glucose_entry).unwrap();

        let error = refusal(&runtime, &glucose_code, dir.path());
        assert!(matches!(error, CacheError::OtherEntry { .. }), "{error}");
        assert_eq!(outcome(&runtime, &glucose_code, dir.path()), CacheOutcome::Miss);
    }

    #[test]
    fn an_artifact_of_another_cache_key_is_refused() {
        let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let runtime = runtime();
        let code = glucose();
        runtime.compile_cached("glucose-monitor", &code, one.path()).unwrap();
        let entry = only_entry(one.path());
        CacheKey::load_or_create(two.path()).unwrap();
        std::fs::copy(&entry, two.path().join(entry.file_name().unwrap())).unwrap();

        let error = refusal(&runtime, &code, two.path());
        assert!(matches!(error, CacheError::BadTag { .. }), "{error}");
        assert_eq!(outcome(&runtime, &code, two.path()), CacheOutcome::Miss);
    }

    #[test]
    fn another_engine_configuration_uses_another_entry() {
        let dir = tempfile::tempdir().unwrap();
        let code = glucose();
        runtime().compile_cached("glucose-monitor", &code, dir.path()).unwrap();
        let fuel = Runtime::new(RuntimeOptions {
            fuel: true,
            ..RuntimeOptions::default()
        })
        .unwrap();
        assert_eq!(outcome(&fuel, &code, dir.path()), CacheOutcome::Miss);
        assert_eq!(entries(dir.path()).len(), 2);
    }

    #[test]
    fn a_key_file_open_to_others_disables_the_cache() {
        let (dir, code, runtime) = cached_glucose();
        let key = dir.path().join(CACHE_KEY_FILE);
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let error = CacheKey::load_or_create(dir.path()).err().unwrap();
        assert!(matches!(error, CacheError::Permissions { .. }), "{error}");
        // Still starts, compiled; the key is left alone for the operator.
        let (outcome, outputs) = compile_and_run(&runtime, &code, dir.path());
        assert_eq!(outcome, CacheOutcome::Miss);
        assert!(!outputs.is_empty());
        assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o644);
    }

    #[test]
    fn a_directory_writable_by_others_disables_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let error = CacheKey::load_or_create(dir.path()).err().unwrap();
        assert!(matches!(error, CacheError::Permissions { .. }), "{error}");
        assert_eq!(outcome(&runtime(), &glucose(), dir.path()), CacheOutcome::Miss);
        assert!(entries(dir.path()).is_empty());
    }

    #[test]
    fn a_key_of_the_wrong_length_is_replaced() {
        let (dir, code, runtime) = cached_glucose();
        let key = dir.path().join(CACHE_KEY_FILE);
        std::fs::write(&key, b"short").unwrap();
        // New key: the old entry no longer authenticates, and is rewritten.
        assert_eq!(outcome(&runtime, &code, dir.path()), CacheOutcome::Miss);
        assert_eq!(std::fs::read(&key).unwrap().len(), KEY_LEN);
        assert_eq!(outcome(&runtime, &code, dir.path()), CacheOutcome::Hit);
    }

    #[test]
    fn code_that_does_not_compile_is_an_error_and_not_cached() {
        let dir = tempfile::tempdir().unwrap();
        let error = runtime().compile_cached("junk", b"not wasm", dir.path()).err().unwrap();
        assert!(matches!(error, LoadError::NotWasm { .. }), "{error}");
        assert!(entries(dir.path()).is_empty());
    }
}
