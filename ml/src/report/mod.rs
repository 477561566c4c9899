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

use crate::data::{DataSet, format_of, refuse_same_names, subject_digest};
use evaluate::DataSetFigures;
use markdown::{HeldOut, Report};
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
    let training = model.training.as_ref().with_context(|| {
        format!(
            "{}: the model file names no training subjects, so no subject can be judged held out",
            model_path.display()
        )
    })?;
    // The model file names subjects by digest only (data::subject_digest).
    let trained: BTreeSet<&str> = training.subjects.iter().map(String::as_str).collect();
    let judged = |id: &str| !trained.contains(subject_digest(id).as_str());
    let horizons: Vec<u32> = model.horizons.iter().map(|h| h.minutes).collect();
    let sets = data
        .iter()
        .map(|path| DataSet::load(path))
        .collect::<anyhow::Result<Vec<_>>>()?;
    refuse_same_names(&sets)?;
    // Before the minutes of replays: a recording with nothing to judge.
    for (set, path) in sets.iter().zip(&data) {
        if !set.subjects.iter().any(|s| judged(&s.id)) {
            bail!(
                "{}: every subject of it was trained on (or it has no valid reading), so there is nothing to \
                 judge the model on: leave the recording out",
                path.display()
            );
        }
    }
    let held_out = held_out_names(&training.held_out, &sets);
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
            let replayed = bundles.replay(index, path, format_of(path), &out)?;
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
        let set_figures = evaluate::evaluate(set, judged, &refs, &horizons);
        if let Some(horizon) = set_figures.horizons.iter().find(|h| h.forecasts == 0) {
            bail!(
                "{}: none of its {} judged subjects (never trained on) has a forecast with a reading {} minutes \
                 later, so the model cannot be judged on it: give the recording more readings of them, or leave \
                 it out",
                path.display(),
                set_figures.subjects.len(),
                horizon.minutes
            );
        }
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
        held_out: &held_out,
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
        "Subject `{subject}` (never trained on), two days from {start}: the readings, the model's forecasts drawn \
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

/// The held-out subjects of the model file (digests), by the ids of those
/// in `sets`: the report names only the subjects of the recordings it is
/// given.
fn held_out_names(digests: &[String], sets: &[DataSet]) -> HeldOut {
    let ids: std::collections::BTreeMap<String, &str> = sets
        .iter()
        .flat_map(|set| &set.subjects)
        .map(|s| (subject_digest(&s.id), s.id.as_str()))
        .collect();
    let named: Vec<String> = digests
        .iter()
        .filter_map(|digest| ids.get(digest).map(|id| (*id).to_owned()))
        .collect();
    HeldOut {
        unnamed: digests.len() - named.len(),
        named,
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::is_held_out;

    /// `run` over `data`, with a component that is not there: anything it
    /// refuses before replaying is refused without a build.
    fn run_over(data: Vec<PathBuf>) -> anyhow::Error {
        let out = tempfile::tempdir().unwrap();
        run(ReportArgs {
            data,
            component: Some(out.path().join("missing.wasm")),
            out: Some(out.path().join("forecast.md")),
            ..ReportArgs::default()
        })
        .unwrap_err()
    }

    fn shipped(name: &str) -> PathBuf {
        workspace::root().join("tests/data/cgm").join(name)
    }

    #[test]
    fn two_recordings_of_one_file_name_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut data = Vec::new();
        for (folder, id) in [("a", "ward-1"), ("b", "ward-2")] {
            let path = dir.path().join(folder).join("export.csv");
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, format!("id,time,gl\n{id},2020-01-01 00:00:00,100\n")).unwrap();
            data.push(path);
        }
        let error = run_over(data).to_string();
        assert!(
            error.contains("two recordings are named `export.csv`") && error.contains("rename one"),
            "{error}"
        );
    }

    #[test]
    fn a_recording_of_subjects_trained_on_only_is_refused_before_replaying() {
        // Some of Hall2018's subjects the model was trained on: the model
        // file names them by digest, and the report knows them by it.
        let hall = DataSet::load(&shipped("Hall2018_processed.csv")).unwrap();
        let mut csv = String::from("id,time,gl\n");
        for subject in hall.subjects.iter().filter(|s| !is_held_out(&s.id)).take(3) {
            csv.push_str(&format!("{},2020-01-01 00:00:00,100\n", subject.id));
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trained.csv");
        std::fs::write(&path, csv).unwrap();
        let error = run_over(vec![shipped("ExampleData5Subjects.csv"), path]).to_string();
        assert!(
            error.contains("trained.csv: every subject of it was trained on"),
            "{error}"
        );
    }

    #[test]
    fn the_forecast_plot_caption_says_never_trained_on() {
        let readings: Vec<(i64, f64)> = (0..600).map(|k| (k * 5 * MINUTE_MS, 100.0)).collect();
        let window = Window {
            start_ms: 0,
            end_ms: 48 * 60 * MINUTE_MS,
            lows: 0,
            readings: 576,
        };
        let (_, caption) = forecast_svg("Subject 1", &readings, &Replayed::default(), 30, &window, false).unwrap();
        assert!(
            caption.starts_with("Subject `Subject 1` (never trained on), two days from"),
            "{caption}"
        );
    }
}
