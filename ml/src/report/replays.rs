//! The replays the report is made of: the plugin signed once per model (the
//! model under test and the baselines, each as its `model.json` asset) with
//! a key made for the run, and `edgewise replay` of each bundle over a
//! recording.

use std::fs::File;
use std::io::BufReader;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use edgewise_host::bundle::ManifestSource;
use edgewise_host::replay::Format;
use edgewise_procs::SigningKey;
use edgewise_procs::workspace::run_edgewise;
use forecast_model::ModelKind;

use super::output::{self, Replayed};

/// The asset name the plugin reads its model from.
pub const MODEL_ASSET: &str = "model.json";

/// Bundles of one component with different model files, signed by one key.
#[derive(Debug)]
pub struct Bundles {
    key: SigningKey,
    /// Per model, in the order given to [`Bundles::sign`].
    bundles: Vec<PathBuf>,
}

impl Bundles {
    /// Sign `component` once per model file, each time with `manifest`
    /// (copied into `work` beside the model file, at the path its `[assets]`
    /// gives `model.json`), by a key made in `work`.
    pub fn sign(
        work: &Path,
        manifest: &Path,
        component: &Path,
        models: &[(ModelKind, Vec<u8>)],
    ) -> anyhow::Result<Bundles> {
        let text = std::fs::read_to_string(manifest).with_context(|| format!("cannot read {}", manifest.display()))?;
        let source = ManifestSource::from_toml(&text).with_context(|| format!("{}", manifest.display()))?;
        let asset = source
            .assets
            .get(MODEL_ASSET)
            .ok_or_else(|| anyhow!("{}: no `{MODEL_ASSET}` in [assets]", manifest.display()))?;
        // Written under `work`: a path that leaves it (absolute, `..`) is refused.
        if !asset.components().all(|c| matches!(c, Component::Normal(_))) {
            bail!(
                "{}: the `{MODEL_ASSET}` asset path `{}` is not a plain relative path",
                manifest.display(),
                asset.display()
            );
        }
        let key = SigningKey::generate(work, "report")?;
        let mut bundles = Vec::new();
        for (index, (kind, bytes)) in models.iter().enumerate() {
            let dir = work.join(format!("{index}-{}", dir_name(*kind)));
            let model_file = dir.join(asset);
            if let Some(parent) = model_file.parent() {
                std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
            }
            std::fs::write(&model_file, bytes).with_context(|| format!("cannot write {}", model_file.display()))?;
            let copy = dir.join("edgewise.toml");
            std::fs::write(&copy, &text).with_context(|| format!("cannot write {}", copy.display()))?;
            bundles.push(key.bundle(&copy, component)?);
        }
        Ok(Bundles { key, bundles })
    }

    /// `edgewise replay` of the `index`-th bundle (verified against the
    /// key's trust directory) over `input` read as `format` (given, so that
    /// the replay reads the file as the report did whatever its name),
    /// with `emit_forecasts = true`, into `out`; then its output read.
    pub fn replay(&self, index: usize, input: &Path, format: Format, out: &Path) -> anyhow::Result<Replayed> {
        let bundle = self.bundles.get(index).context("no such bundle")?;
        let trust = self.key.trust_dir();
        let format = match format {
            Format::IgluCsv => "iglu-csv",
            Format::Jsonl => "jsonl",
        };
        run_edgewise(&[
            "replay".as_ref(),
            "--trust".as_ref(),
            trust.as_os_str(),
            "--plugin".as_ref(),
            bundle.as_os_str(),
            "--input".as_ref(),
            input.as_os_str(),
            "--format".as_ref(),
            format.as_ref(),
            "--config".as_ref(),
            "emit_forecasts=true".as_ref(),
            "--out".as_ref(),
            out.as_os_str(),
        ])?;
        let file = File::open(out).with_context(|| format!("cannot open {}", out.display()))?;
        let replayed = output::read(BufReader::new(file)).with_context(|| format!("{}", out.display()))?;
        if replayed.forecasts.is_empty() {
            bail!(
                "the replay of {} wrote no forecast: does the plugin take `emit_forecasts = true`?",
                input.display()
            );
        }
        Ok(replayed)
    }
}

fn dir_name(kind: ModelKind) -> &'static str {
    match kind {
        ModelKind::Ridge => "ridge",
        ModelKind::LastValue => "last-value",
        ModelKind::LinearExtrapolation => "linear-extrapolation",
    }
}
