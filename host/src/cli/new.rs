//! `edgewise new NAME`: write a new plugin crate (`scaffold.rs` renders it).
//!
//! The crate is written whole or not at all: into a hidden folder next to
//! the destination, then renamed into place, so an interrupted run leaves no
//! half crate behind. An existing destination is never touched.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use clap::{ArgGroup, Args};

use edgewise_host::scaffold::{Scaffold, SdkSource};

use super::{Failure, to_stdout};

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("sdk").args(["sdk_path", "sdk_git", "sdk_version"])))]
pub struct NewArgs {
    /// The plugin's name: lowercase letters, digits and `-`, starting with a
    /// letter. It names the crate, the manifest's plugin and the folder.
    #[arg(value_name = "NAME")]
    name: String,

    /// Write the crate into this folder, which must not exist [default: ./NAME].
    #[arg(long, value_name = "DIR")]
    path: Option<PathBuf>,

    /// Depend on the SDK in this folder (the `sdk/` of an Edgewise checkout).
    #[arg(long, value_name = "DIR")]
    sdk_path: Option<PathBuf>,

    /// Depend on the SDK from this git repository (the Edgewise repository).
    #[arg(long, value_name = "URL")]
    sdk_git: Option<String>,

    /// With --sdk-git: the commit, tag or branch to use.
    #[arg(long, value_name = "REV", requires = "sdk_git")]
    sdk_rev: Option<String>,

    /// Depend on this version of the SDK from crates.io (once it is
    /// published there; it is not yet).
    ///
    /// Without any `--sdk-*`: the `sdk/` of the checkout this edgewise was
    /// built from, when it is on this machine.
    #[arg(long, value_name = "VERSION")]
    sdk_version: Option<String>,
}

/// The SDK of the checkout this binary was built from, if it is still on
/// this machine.
fn built_from_sdk() -> Option<PathBuf> {
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk");
    sdk.join("Cargo.toml")
        .is_file()
        .then(|| sdk.canonicalize().ok())
        .flatten()
}

pub fn run(args: NewArgs) -> Result<(), Failure> {
    let sdk = if let Some(path) = args.sdk_path {
        SdkSource::Path(path)
    } else if let Some(url) = args.sdk_git {
        SdkSource::Git { url, rev: args.sdk_rev }
    } else if let Some(version) = args.sdk_version {
        SdkSource::Version(version)
    } else {
        // The SDK is not on crates.io (the workspace does not publish): a
        // default version there would give a crate that cannot build.
        match built_from_sdk() {
            Some(sdk) => SdkSource::Path(sdk),
            None => {
                return Err(Failure::usage(anyhow!(
                    "say where the SDK is: --sdk-path DIR (the `sdk/` of an Edgewise checkout) or --sdk-git URL \
                     (the SDK is not on crates.io yet, and the checkout this edgewise was built from is not on this machine)"
                )));
            }
        }
    };
    let scaffold = Scaffold::new(&args.name, sdk).map_err(Failure::usage)?;
    let destination = args.path.unwrap_or_else(|| PathBuf::from(&args.name));
    write_crate(&scaffold, &destination).map_err(Failure::usage)?;
    let dir = destination.display();
    to_stdout(|out| {
        writeln!(out, "created plugin `{}` in {dir}", scaffold.name())?;
        if scaffold.sdk_is_local() {
            writeln!(
                out,
                "note: the SDK is a folder of this machine; for CI elsewhere, depend on it by git or version"
            )?;
        }
        writeln!(out, "next, in {dir} (README.md has the rest):")?;
        writeln!(out, "    cargo build --release --target wasm32-wasip2")?;
        writeln!(out, "    cargo test")?;
        writeln!(out, "    edgewise test")
    })
}

/// Write every file of the crate into `destination`, which must not exist.
fn write_crate(scaffold: &Scaffold, destination: &Path) -> anyhow::Result<()> {
    if destination.exists() {
        return Err(anyhow!(
            "{} already exists: refusing to overwrite it",
            destination.display()
        ));
    }
    let parent = match destination.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    // Next to the destination, so that the rename stays on one file system.
    let staging = tempfile::Builder::new()
        .prefix(&format!(".{}.", scaffold.name()))
        .tempdir_in(parent)
        .with_context(|| format!("cannot create a folder in {}", parent.display()))?;
    for file in scaffold.files() {
        let path = staging.path().join(file.path);
        if let Some(folder) = path.parent() {
            std::fs::create_dir_all(folder).with_context(|| format!("cannot create {}", folder.display()))?;
        }
        std::fs::write(&path, &file.contents).with_context(|| format!("cannot write {}", path.display()))?;
    }
    // `rename` replaces an empty folder made since the check above: refuse
    // that too rather than merge into someone else's folder.
    if destination.exists() {
        return Err(anyhow!(
            "{} already exists: refusing to overwrite it",
            destination.display()
        ));
    }
    // tempfile makes the folder private (0700); a crate is an ordinary folder.
    std::fs::set_permissions(staging.path(), std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("cannot set the mode of {}", staging.path().display()))?;
    let staged = staging.keep();
    std::fs::rename(&staged, destination).map_err(|e| {
        let _ = std::fs::remove_dir_all(&staged);
        anyhow!("cannot move the new crate to {}: {e}", destination.display())
    })
}
