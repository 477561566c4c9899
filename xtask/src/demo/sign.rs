//! The operator's side: a fresh demo key, a trust store holding its public
//! half, the plugins signed with it, and each bundle verified as a device would.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use crate::plugins;

/// The plugins the demo signs (each has an `edgewise.toml` in its crate).
const PLUGINS: &[&str] = &["glucose-monitor", "threshold"];

/// Make a fresh demo key and trust store under `out_dir`, and sign every
/// plugin with it, as an operator would. Returns the bundle directory.
pub fn sign_plugins(root: &Path, edgewise: &Path, out_dir: &Path) -> anyhow::Result<PathBuf> {
    let keys = out_dir.join("keys");
    let trust = out_dir.join("trust");
    let bundles = out_dir.join("bundles");
    // A new key per demo run: keygen refuses to overwrite, so clear the old one.
    for dir in [&keys, &trust, &bundles] {
        if dir.exists() {
            std::fs::remove_dir_all(dir).with_context(|| format!("cannot remove {}", dir.display()))?;
        }
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let prefix = keys.join("demo");
    println!("\nMaking a demo signing key (edgewise keygen)...");
    run_edgewise(
        edgewise,
        root,
        &["keygen".as_ref(), "--out".as_ref(), prefix.as_os_str()],
    )?;
    std::fs::copy(keys.join("demo.pub"), trust.join("demo.pub")).context("cannot fill the trust store")?;
    println!("\nSigning the plugins (edgewise sign)...");
    for plugin in PLUGINS {
        let manifest = root.join("plugins").join(plugin).join("edgewise.toml");
        let bundle = bundles.join(format!("{plugin}.wasm"));
        run_edgewise(
            edgewise,
            root,
            &[
                "sign".as_ref(),
                "--key".as_ref(),
                keys.join("demo.key").as_os_str(),
                "--manifest".as_ref(),
                manifest.as_os_str(),
                "--out".as_ref(),
                bundle.as_os_str(),
                plugins::component_path(root, plugin).as_os_str(),
            ],
        )?;
    }
    Ok(bundles)
}

/// `edgewise verify --trust TRUST BUNDLE` for every signed plugin (one line each).
pub fn verify_bundles(root: &Path, edgewise: &Path, trust: &Path, bundles: &Path) -> anyhow::Result<()> {
    println!(
        "\nVerifying the bundles as a device would (edgewise verify --trust {})...",
        trust.display()
    );
    for plugin in PLUGINS {
        let bundle = bundles.join(format!("{plugin}.wasm"));
        run_edgewise(
            edgewise,
            root,
            &[
                "verify".as_ref(),
                "--trust".as_ref(),
                trust.as_os_str(),
                bundle.as_os_str(),
            ],
        )?;
    }
    Ok(())
}

/// Run `edgewise ARGS` with inherited output; fail if it fails.
fn run_edgewise(edgewise: &Path, root: &Path, args: &[&OsStr]) -> anyhow::Result<()> {
    let status = Command::new(edgewise)
        .args(args)
        .current_dir(root)
        .status()
        .with_context(|| format!("cannot run {}", edgewise.display()))?;
    if !status.success() {
        bail!(
            "`edgewise {}` failed ({status})",
            args.first().map(|a| a.to_string_lossy()).unwrap_or_default()
        );
    }
    Ok(())
}
