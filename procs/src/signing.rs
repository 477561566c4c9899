//! An operator's signing key (`edgewise keygen`), the trust directory that
//! accepts it, and bundles signed with it (`edgewise sign`), each signed once.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, PoisonError};

use anyhow::Context;

use crate::workspace::{checked_output, edgewise, run_edgewise};

/// A key pair `DIR/NAME.key` and `DIR/NAME.pub`, a trust directory
/// `DIR/trust` holding the public half, and the bundles signed with it.
#[derive(Debug)]
pub struct SigningKey {
    dir: PathBuf,
    name: String,
    /// Bundles signed so far, by (manifest, component).
    signed: Mutex<HashMap<(PathBuf, PathBuf), PathBuf>>,
}

impl SigningKey {
    /// `edgewise keygen --out DIR/NAME` (into an existing `dir`), and
    /// `DIR/trust/NAME.pub`.
    pub fn generate(dir: &Path, name: &str) -> anyhow::Result<SigningKey> {
        let key = SigningKey {
            dir: dir.to_owned(),
            name: name.to_owned(),
            signed: Mutex::default(),
        };
        run_edgewise(&["keygen".as_ref(), "--out".as_ref(), dir.join(name).as_os_str()])?;
        key.trust(&key.trust_dir())?;
        Ok(key)
    }

    /// The private key file.
    pub fn private_key(&self) -> PathBuf {
        self.dir.join(format!("{}.key", self.name))
    }

    /// The public key file.
    pub fn public_key(&self) -> PathBuf {
        self.dir.join(format!("{}.pub", self.name))
    }

    /// `DIR/trust`: a trust directory holding only this key.
    pub fn trust_dir(&self) -> PathBuf {
        self.dir.join("trust")
    }

    /// Make `trust_dir` (created if missing) trust this key.
    pub fn trust(&self, trust_dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(trust_dir).with_context(|| format!("cannot create {}", trust_dir.display()))?;
        let public = self.public_key();
        let target = trust_dir.join(format!("{}.pub", self.name));
        std::fs::copy(&public, &target)
            .with_context(|| format!("cannot copy {} to {}", public.display(), target.display()))?;
        Ok(())
    }

    /// `edgewise sign` of `component` with `manifest` by this key, into `out`
    /// (to run as the caller wants, e.g. to see it fail).
    pub fn sign_command(&self, manifest: &Path, component: &Path, out: &Path) -> Command {
        edgewise(&[
            "sign".as_ref(),
            "--key".as_ref(),
            self.private_key().as_os_str(),
            "--manifest".as_ref(),
            manifest.as_os_str(),
            "--out".as_ref(),
            out.as_os_str(),
            component.as_os_str(),
        ])
    }

    /// Sign `component` with `manifest` into `out`; fail with the reason.
    pub fn sign(&self, manifest: &Path, component: &Path, out: &Path) -> anyhow::Result<()> {
        checked_output(self.sign_command(manifest, component, out)).map(drop)
    }

    /// `component` signed with `manifest` by this key, signed on the first
    /// call (into `DIR/bundles/`) and the same file after that: the plugin's
    /// name and version are the manifest's, so one bundle serves every caller.
    pub fn bundle(&self, manifest: &Path, component: &Path) -> anyhow::Result<PathBuf> {
        let mut signed = self.signed.lock().unwrap_or_else(PoisonError::into_inner);
        let wanted = (manifest.to_owned(), component.to_owned());
        if let Some(bundle) = signed.get(&wanted) {
            return Ok(bundle.clone());
        }
        let bundles = self.dir.join("bundles");
        std::fs::create_dir_all(&bundles).with_context(|| format!("cannot create {}", bundles.display()))?;
        // Named after the component (`glucose_monitor.wasm`); the same
        // component with another manifest gets a numbered name.
        let stem = component.file_stem().unwrap_or(OsStr::new("bundle")).to_string_lossy();
        let mut out = bundles.join(format!("{stem}.wasm"));
        if signed.values().any(|taken| *taken == out) {
            out = bundles.join(format!("{stem}-{}.wasm", signed.len()));
        }
        self.sign(manifest, component, &out)?;
        signed.insert(wanted, out.clone());
        Ok(out)
    }
}
