//! The evaluation report, `docs/forecast.md`: the plugin replayed over the
//! held-out subjects with the trained model and the two baselines.
//!
//! - [`replays`]: sign the plugin once per model, replay each bundle.
//! - [`output`]: read a replay's forecasts and predicted-low alerts.
//! - [`evaluate`]: the figures of a data set, from [`accuracy`] (RMSE, MAE,
//!   time lag), [`clarke`] (the error grid) and [`lows`] (episodes, alerts).
//! - [`markdown`], [`plots`]: the document and its two SVG figures.
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
/// The span of the forecast plot.
const PLOT_SPAN_MS: i64 = 2 * DAY_MS;
const DAY_MS: i64 = 24 * 60 * MINUTE_MS;

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
    /// The subject of the forecast plot [default: the first judged subject of the first recording].
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
        (ModelKind::LastValue, Model::last_value(&horizons).to_bytes()),
        (
            ModelKind::LinearExtrapolation,
            Model::linear_extrapolation(&horizons).to_bytes(),
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
        if plot.is_none() {
            let wanted = args
                .plot_subject
                .as_deref()
                .or(set_figures.subjects.first().map(String::as_str));
            if let Some(subject) = set.subjects.iter().find(|s| Some(s.id.as_str()) == wanted) {
                plot = Some(forecast_svg(&subject.id, &subject.readings, &runs[0], horizons[0])?);
            }
        }
        figures.push(set_figures);
    }
    let Some((forecast_svg, forecast_caption)) = plot else {
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
/// at `horizon_min` over [`plot_window`], and its caption.
fn forecast_svg(
    subject: &str,
    readings: &[(i64, f64)],
    run: &Replayed,
    horizon_min: u32,
) -> anyhow::Result<(String, String)> {
    let window = plot_window(readings).context("the subject to plot has no reading")?;
    let horizon_ms = i64::from(horizon_min) * MINUTE_MS;
    let forecasts: Vec<(i64, f64)> = run
        .forecasts(subject, horizon_min)
        .iter()
        .map(|f| (f.made_ms.saturating_add(horizon_ms), f.value))
        .collect();
    let start = utc_day(window.0)?;
    let title = format!("{subject}: {horizon_min}-minute forecasts and readings");
    let svg = plots::forecast_vs_actual(&ForecastPlot {
        title: &title,
        start_label: &format!("{start} 00:00 UTC"),
        window_ms: window,
        readings,
        forecasts: &forecasts,
        horizon_min,
        alerts: run.low_alerts(subject),
    })?;
    let caption = format!(
        "Subject `{subject}` (held out), two days from {start}: the readings, the model's forecasts drawn \
         at the time they were for ({horizon_min} minutes after they were made), the 70 mg/dL line and the \
         `predicted-low` alerts; the two days with the most readings below 70 mg/dL."
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

/// The two days to plot: starting at a UTC midnight, with the most readings
/// below 70 mg/dL (the earliest on a tie); `None` without readings.
pub fn plot_window(readings: &[(i64, f64)]) -> Option<(i64, i64)> {
    let first_day = readings.first()?.0.div_euclid(DAY_MS);
    let last_day = readings.last()?.0.div_euclid(DAY_MS);
    let lows = |start: i64| {
        readings
            .iter()
            .filter(|&&(ms, value)| (start..start + PLOT_SPAN_MS).contains(&ms) && value < lows::LOW_MGDL)
            .count()
    };
    let start = (first_day..=last_day)
        .map(|day| day * DAY_MS)
        .rev()
        .max_by_key(|&start| lows(start))?;
    Some((start, start + PLOT_SPAN_MS))
}

/// The UTC date of `ms`, `YYYY-MM-DD`.
fn utc_day(ms: i64) -> anyhow::Result<String> {
    let time = time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000)).context("a time out of range")?;
    let date = time.date();
    Ok(format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    ))
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

    const MIN: i64 = MINUTE_MS;

    #[test]
    fn the_plot_shows_the_two_days_with_the_most_lows() {
        // Four days of readings every hour; lows on day 2 only.
        let readings: Vec<(i64, f64)> = (0..96)
            .map(|h| {
                let ms = 1000 * DAY_MS + h * 60 * MIN + 7 * MIN;
                (ms, if (48..52).contains(&h) { 60.0 } else { 120.0 })
            })
            .collect();
        // Day 1 and day 2 both cover the lows: the earlier wins.
        assert_eq!(plot_window(&readings), Some((1001 * DAY_MS, 1003 * DAY_MS)));
        let no_lows: Vec<(i64, f64)> = readings.iter().map(|&(ms, _)| (ms, 100.0)).collect();
        assert_eq!(plot_window(&no_lows), Some((1000 * DAY_MS, 1002 * DAY_MS)));
        assert_eq!(plot_window(&[]), None);
    }

    #[test]
    fn dates_are_utc() {
        assert_eq!(utc_day(1_434_300_000_000).unwrap(), "2015-06-14");
        assert_eq!(utc_day(0).unwrap(), "1970-01-01");
    }
}
