//! The evaluation report, `docs/forecast.md`: the plugin replayed over the
//! held-out subjects with the trained model and the two baselines.
//!
//! - [`replays`]: sign the plugin once per model, replay each bundle.
//! - [`output`]: read a replay's forecasts and predicted-low alerts.
//! - [`evaluate`]: the figures of a data set, from [`accuracy`] (RMSE, MAE,
//!   time lag), [`clarke`] (the error grid) and [`lows`] (episodes, alerts).
//! - [`markdown`], [`plots`]: the document and its two SVG figures;
//!   [`window`]: which two days the forecast plot shows.
//!
//! Everything but [`replays`] is a pure function of the replays' output and
//! the recordings, tested on hand-made data.

pub mod accuracy;
pub mod clarke;
pub mod evaluate;
pub mod lows;
pub mod markdown;
pub mod output;
pub mod plots;
pub mod replays;
pub mod window;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use edgewise_procs::workspace::{self, WASM_TARGET};
use forecast_model::{MINUTE_MS, Model, ModelKind};

use crate::data::DataSet;
use evaluate::DataSetFigures;
use markdown::Report;
use output::Replayed;
use plots::ForecastPlot;
use replays::Bundles;
use window::Window;

/// The plugin judged.
const PLUGIN: &str = "glucose-forecast";
const DEFAULT_MODEL: &str = "plugins/glucose-forecast/model/forecast.json";
const DEFAULT_MANIFEST: &str = "plugins/glucose-forecast/edgewise.toml";
const DEFAULT_DATA: [&str; 2] = [
    "tests/data/cgm/ExampleData5Subjects.csv",
    "tests/data/cgm/Hall2018_processed.csv",
];
const DEFAULT_OUT: &str = "docs/forecast.md";
const FORECAST_PLOT: &str = "forecast-vs-actual.svg";
const CLARKE_PLOT: &str = "clarke-grid.svg";

/// `edgewise-ml report`: replay the plugin with the model and the baselines,
/// write the evaluation report and its plots.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ReportArgs {
    /// The model file to judge [default: plugins/glucose-forecast/model/forecast.json].
    #[arg(long, value_name = "FILE.json")]
    pub model: Option<PathBuf>,
    /// A recording to replay (iglu CSV, or JSON lines for `*.jsonl`), repeatable: the subjects the
    /// model was not trained on are judged [default: the shipped ExampleData5Subjects and Hall2018].
    #[arg(long = "data", value_name = "FILE")]
    pub data: Vec<PathBuf>,
    /// The plugin's manifest source [default: plugins/glucose-forecast/edgewise.toml].
    #[arg(long, value_name = "edgewise.toml")]
    pub manifest: Option<PathBuf>,
    /// The plugin's component [default: target/wasm32-wasip2/release/glucose_forecast.wasm, built first].
    #[arg(long, value_name = "COMPONENT.wasm")]
    pub component: Option<PathBuf>,
    /// The report to write; its plots go into the folder of the same name
    /// without `.md` [default: docs/forecast.md].
    #[arg(long, value_name = "FILE.md")]
    pub out: Option<PathBuf>,
    /// The subject of the forecast plot [default: the judged subject with the most readings below
    /// 70 mg/dL in two days].
    #[arg(long, value_name = "ID")]
    pub plot_subject: Option<String>,
}

/// Run `edgewise-ml report`.
pub fn run(args: ReportArgs) -> anyhow::Result<()> {
    let root = workspace::root();
    let model_path = args.model.unwrap_or_else(|| root.join(DEFAULT_MODEL));
    let manifest = args.manifest.unwrap_or_else(|| root.join(DEFAULT_MANIFEST));
    let data = if args.data.is_empty() {
        DEFAULT_DATA.iter().map(|path| root.join(path)).collect()
    } else {
        args.data
    };
    let out = args.out.unwrap_or_else(|| root.join(DEFAULT_OUT));

    let model_bytes = std::fs::read(&model_path).with_context(|| format!("cannot read {}", model_path.display()))?;
    let model = Model::parse(&model_bytes).with_context(|| format!("{}", model_path.display()))?;
    let trained: BTreeSet<&str> = model
        .training
        .as_ref()
        .with_context(|| {
            format!(
                "{}: the model file names no training subjects, so no subject can be judged held out",
                model_path.display()
            )
        })?
        .subjects
        .iter()
        .map(String::as_str)
        .collect();
    let horizons: Vec<u32> = model.horizons.iter().map(|h| h.minutes).collect();
    let sets = data
        .iter()
        .map(|path| DataSet::load(path))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let component = built(args.component)?;

    let models = [
        (model.kind, model_bytes.clone()),
        (ModelKind::LastValue, Model::last_value(&horizons).to_bytes()?),
        (
            ModelKind::LinearExtrapolation,
            Model::linear_extrapolation(&horizons).to_bytes()?,
        ),
    ];
    let kinds: Vec<ModelKind> = models.iter().map(|(kind, _)| *kind).collect();
    let work = tempfile::tempdir().context("cannot make a temporary directory")?;
    let bundles = Bundles::sign(work.path(), &manifest, &component, &models)?;

    let mut figures = Vec::new();
    let mut plugin = None;
    let mut plot = None;
    for (set, path) in sets.iter().zip(&data) {
        let mut runs: Vec<Replayed> = Vec::new();
        for (index, (kind, _)) in models.iter().enumerate() {
            eprintln!("replaying {} with {}", set.name, markdown::name(*kind));
            let out = work.path().join(format!("replay-{index}.jsonl"));
            let replayed = bundles.replay(index, path, &out)?;
            // Tens of megabytes each: only what was read out is kept.
            std::fs::remove_file(&out).with_context(|| format!("cannot remove {}", out.display()))?;
            runs.push(replayed);
        }
        for run in &runs {
            match (&plugin, &run.plugin) {
                (None, Some(p)) => plugin = Some(p.clone()),
                (Some(first), Some(p)) if first != p => {
                    bail!("the replays ran different plugins: {first:?} and {p:?}")
                }
                _ => {}
            }
        }
        let refs: Vec<&Replayed> = runs.iter().collect();
        let set_figures = evaluate::evaluate(set, |id| !trained.contains(id), &refs, &horizons);
        // A judged subject: the one asked for, or each in turn.
        let candidates = set.subjects.iter().filter(|s| {
            set_figures.subjects.contains(&s.id) && args.plot_subject.as_ref().is_none_or(|wanted| s.id == *wanted)
        });
        for subject in candidates {
            let Some(window) = window::best(&subject.readings) else {
                continue;
            };
            if plot
                .as_ref()
                .is_none_or(|(best, _): &(Window, _)| window.score() > best.score())
            {
                let svg = forecast_svg(
                    &subject.id,
                    &subject.readings,
                    &runs[0],
                    horizons[0],
                    &window,
                    args.plot_subject.is_some(),
                )?;
                plot = Some((window, svg));
            }
        }
        figures.push(set_figures);
    }
    let Some((_, (forecast_svg, forecast_caption))) = plot else {
        bail!("no judged subject (or no subject `--plot-subject` names) in the recordings to plot");
    };
    let clarke_svg = clarke_svg(&figures, horizons[0])?;

    let plot_dir = out.with_extension("");
    let plot_dir_name = plot_dir
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let forecast_link = format!("{plot_dir_name}/{FORECAST_PLOT}");
    let clarke_link = format!("{plot_dir_name}/{CLARKE_PLOT}");
    let clarke_caption = format!(
        "The Clarke error grid of the model's {}-minute forecasts against the readings that followed, \
         judged subjects of every recording (one point per 2 mg/dL cell).",
        horizons[0]
    );
    let model_shown = shown_path(&model_path, &root);
    let model_sha256 = hex::encode(ring::digest::digest(&ring::digest::SHA256, &model_bytes));
    let doc = markdown::render(&Report {
        model_path: &model_shown,
        model_sha256: &model_sha256,
        model: &model,
        plugin: plugin.as_ref(),
        kinds: &kinds,
        data_sets: &figures,
        forecast_plot: (&forecast_link, &forecast_caption),
        clarke_plot: (&clarke_link, &clarke_caption),
    });
    std::fs::create_dir_all(&plot_dir).with_context(|| format!("cannot create {}", plot_dir.display()))?;
    for (file, text) in [(FORECAST_PLOT, &forecast_svg), (CLARKE_PLOT, &clarke_svg)] {
        let path = plot_dir.join(file);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    std::fs::write(&out, doc).with_context(|| format!("cannot write {}", out.display()))?;
    for set in &figures {
        for horizon in &set.horizons {
            let rmse: Vec<String> = horizon.models.iter().map(|m| format!("{:.2}", m.rmse)).collect();
            eprintln!(
                "{} {} min: RMSE {} (model / last value / linear), {} forecasts",
                set.name,
                horizon.minutes,
                rmse.join(" / "),
                horizon.forecasts
            );
        }
    }
    eprintln!("wrote {} and {}/", out.display(), plot_dir.display());
    Ok(())
}

/// The host binary and the plugin's component, built first (unless
/// `EDGEWISE_BUILT` says they are) when no component is given.
fn built(component: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let building = std::env::var_os(workspace::BUILT_VARIABLE).is_none();
    if building {
        workspace::build_host()?;
    }
    let component = match component {
        Some(path) => path,
        None => {
            if building {
                workspace::run_cargo(&["build", "--release", "--target", WASM_TARGET, "-p", PLUGIN], &[])?;
            }
            workspace::component_path(PLUGIN)
        }
    };
    for path in [workspace::edgewise_path(), component.clone()] {
        if !path.is_file() {
            bail!("{} is missing", path.display());
        }
    }
    Ok(component)
}

/// The forecast plot of one subject: its readings and the model's forecasts
/// at `horizon_min` over `window`, and its caption.
fn forecast_svg(
    subject: &str,
    readings: &[(i64, f64)],
    run: &Replayed,
    horizon_min: u32,
    window: &Window,
    asked_for: bool,
) -> anyhow::Result<(String, String)> {
    let horizon_ms = i64::from(horizon_min) * MINUTE_MS;
    let forecasts: Vec<(i64, f64)> = run
        .forecasts(subject, horizon_min)
        .iter()
        .map(|f| (f.made_ms.saturating_add(horizon_ms), f.value))
        .collect();
    let start = window::utc_hour(window.start_ms).context("a time out of range")?;
    let title = format!("{subject}: {horizon_min}-minute forecasts and readings");
    let svg = plots::forecast_vs_actual(&ForecastPlot {
        title: &title,
        start_label: &start,
        window_ms: (window.start_ms, window.end_ms),
        readings,
        forecasts: &forecasts,
        horizon_min,
        alerts: run.low_alerts(subject),
    })?;
    let caption = format!(
        "Subject `{subject}` (held out), two days from {start}: the readings, the model's forecasts drawn \
         at the time they were for ({horizon_min} minutes after they were made), the 70 mg/dL line and the \
         `predicted-low` alerts. The two days with the most readings below 70 mg/dL ({}) {}.",
        window.lows,
        if asked_for {
            "of this subject"
        } else {
            "of any judged subject"
        }
    );
    Ok((svg, caption))
}

/// The Clarke grid of every data set's first-horizon pairs.
fn clarke_svg(figures: &[DataSetFigures], horizon_min: u32) -> anyhow::Result<String> {
    let sets: Vec<(&str, &[(f64, f64)])> = figures
        .iter()
        .map(|set| (set.name.as_str(), set.clarke_pairs.as_slice()))
        .collect();
    let title = format!("Clarke error grid, {horizon_min} minutes ahead");
    Ok(plots::clarke_grid(&title, &sets)?)
}

/// `path` relative to the repository when inside it, else its file name: the
/// same on every machine.
fn shown_path(path: &Path, root: &Path) -> String {
    let absolute = path.canonicalize().unwrap_or_else(|_| path.to_owned());
    let root = root.canonicalize().unwrap_or_else(|_| root.to_owned());
    match absolute.strip_prefix(&root) {
        Ok(relative) => relative.to_string_lossy().into_owned(),
        Err(_) => path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default(),
    }
}
