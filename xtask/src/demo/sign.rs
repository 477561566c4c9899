//! The operator's side: a fresh demo key, a trust store holding its public
//! half, the plugins signed with it, and each bundle verified as a device would.

use std::path::{Path, PathBuf};

use anyhow::Context;
use edgewise_procs::SigningKey;
use edgewise_procs::workspace::{component_path, run_edgewise};

/// The plugins the demo signs (each has an `edgewise.toml` in its crate).
const PLUGINS: &[&str] = &["glucose-monitor", "threshold"];

/// What the operator made: the trust store and the signed bundles.
pub struct Signed {
    /// The trust directory holding the demo key.
    pub trust: PathBuf,
    /// The bundle of each of [`PLUGINS`], in order.
    pub bundles: Vec<PathBuf>,
}

/// Make a fresh demo key and trust store under `out_dir/keys`, and sign
/// every plugin with it, as an operator would.
pub fn sign_plugins(root: &Path, out_dir: &Path) -> anyhow::Result<Signed> {
    let keys = out_dir.join("keys");
    // A new key per demo run: keygen refuses to overwrite, so clear the old one.
    if keys.exists() {
        std::fs::remove_dir_all(&keys).with_context(|| format!("cannot remove {}", keys.display()))?;
    }
    std::fs::create_dir_all(&keys).with_context(|| format!("cannot create {}", keys.display()))?;
    println!("\nMaking a demo signing key (edgewise keygen)...");
    let key = SigningKey::generate(&keys, "demo")?;
    println!("  {}", key.public_key().display());
    println!("\nSigning the plugins (edgewise sign)...");
    let mut bundles = Vec::new();
    for plugin in PLUGINS {
        let manifest = root.join("plugins").join(plugin).join("edgewise.toml");
        let bundle = key.bundle(&manifest, &component_path(plugin))?;
        println!("  {plugin}: {}", bundle.display());
        bundles.push(bundle);
    }
    Ok(Signed {
        trust: key.trust_dir(),
        bundles,
    })
}

/// `edgewise verify --trust TRUST BUNDLE` for every signed plugin (one line each).
pub fn verify_bundles(signed: &Signed) -> anyhow::Result<()> {
    println!(
        "\nVerifying the bundles as a device would (edgewise verify --trust {})...",
        signed.trust.display()
    );
    for bundle in &signed.bundles {
        let output = run_edgewise(&[
            "verify".as_ref(),
            "--trust".as_ref(),
            signed.trust.as_os_str(),
            bundle.as_os_str(),
        ])?;
        print!("{}", String::from_utf8_lossy(&output.stdout));
    }
    Ok(())
}
