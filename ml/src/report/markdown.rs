//! `docs/forecast.md`: the figures as text. Only what the inputs say goes in
//! (no time of the run, no temporary path, fixed float formatting), so the
//! same inputs give the same bytes.

use std::fmt::Write;

use forecast_model::{Model, ModelKind};

use super::accuracy::LAG_STEP_MIN;
use super::clarke::Zone;
use super::evaluate::{ACTUAL_TOLERANCE_MS, DataSetFigures, HorizonFigures};
use super::lows::{LOW_MGDL, WINDOW_MS};
use super::output::{LOW_ALERT_CODES, Plugin};

/// The acceptance: the model's 30-minute RMSE at most this times the
/// better baseline's.
pub const RMSE_RATIO_MAX: f64 = 0.85;
/// The acceptance: Clarke zones A and B together at least this (%).
pub const A_PLUS_B_MIN: f64 = 99.0;
/// The horizon the acceptance is about (minutes).
pub const ACCEPTANCE_HORIZON_MIN: u32 = 30;

/// How an operator retrains, signs and rolls out a model: static text.
const RETRAINING: &str = include_str!("retraining.md");

/// Everything the document says.
#[derive(Debug, Clone, Copy)]
pub struct Report<'a> {
    /// The model file, as a path to show (relative to the repository).
    pub model_path: &'a str,
    /// SHA-256 of the model file's bytes.
    pub model_sha256: &'a str,
    /// The model under test.
    pub model: &'a Model,
    /// Its held-out subjects ([`forecast_model::Training::held_out`] names
    /// them by digest only).
    pub held_out: &'a HeldOut,
    /// The plugin replayed (from its output).
    pub plugin: Option<&'a Plugin>,
    /// The models replayed, in the order of every per-model list; the first
    /// is the model under test.
    pub kinds: &'a [ModelKind],
    /// Per data set.
    pub data_sets: &'a [DataSetFigures],
    /// The forecast plot: its path relative to the document, and what it shows.
    pub forecast_plot: (&'a str, &'a str),
    /// The Clarke grid plot: its path relative to the document, and what it shows.
    pub clarke_plot: (&'a str, &'a str),
}

/// The held-out subjects of the model file, as far as the recordings given
/// to the report name them: the model file has only digests of their ids.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HeldOut {
    /// The ids of those found in the recordings.
    pub named: Vec<String>,
    /// How many are in none of them.
    pub unnamed: usize,
}

/// The name of a model in tables.
pub fn name(kind: ModelKind) -> &'static str {
    match kind {
        ModelKind::Ridge => "model (ridge)",
        ModelKind::LastValue => "last value",
        ModelKind::LinearExtrapolation => "linear extrapolation",
    }
}

/// The acceptance criteria applied to one data set at one horizon.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// The model's RMSE.
    pub rmse: f64,
    /// The better baseline (the lower RMSE).
    pub baseline: ModelKind,
    /// Its RMSE.
    pub baseline_rmse: f64,
    /// The model's RMSE over the baseline's.
    pub ratio: f64,
    /// Whether `ratio <= RMSE_RATIO_MAX`.
    pub rmse_holds: bool,
    /// The model's Clarke A+B (%).
    pub a_plus_b: f64,
    /// Whether `a_plus_b >= A_PLUS_B_MIN`.
    pub zones_hold: bool,
}

impl Verdict {
    /// Both criteria hold.
    pub fn holds(&self) -> bool {
        self.rmse_holds && self.zones_hold
    }
}

/// The verdict on `figures`, whose first model is under test and the others
/// baselines (`None` without a baseline).
pub fn verdict(figures: &HorizonFigures, kinds: &[ModelKind]) -> Option<Verdict> {
    let model = figures.models.first()?;
    let (baseline, baseline_rmse) = kinds
        .iter()
        .zip(&figures.models)
        .skip(1)
        .map(|(kind, accuracy)| (*kind, accuracy.rmse))
        .min_by(|a, b| a.1.total_cmp(&b.1))?;
    let ratio = model.rmse / baseline_rmse;
    // No share of nothing (not 0%): shown as "–", and not met.
    let a_plus_b = if figures.forecasts == 0 {
        f64::NAN
    } else {
        model.zones.percent_a_plus_b()
    };
    Some(Verdict {
        rmse: model.rmse,
        baseline,
        baseline_rmse,
        ratio,
        rmse_holds: ratio <= RMSE_RATIO_MAX,
        a_plus_b,
        zones_hold: a_plus_b >= A_PLUS_B_MIN,
    })
}

/// The document.
pub fn render(report: &Report) -> String {
    let mut doc = String::new();
    // Writing into a String cannot fail.
    let _ = write_doc(&mut doc, report);
    doc
}

fn write_doc(doc: &mut String, report: &Report) -> std::fmt::Result {
    writeln!(doc, "# Glucose forecasting: evaluation")?;
    writeln!(doc)?;
    writeln!(
        doc,
        "<!-- Written by `cargo run --release -p edgewise-ml -- report` from `edgewise replay` output; do not edit, run it again. -->"
    )?;
    writeln!(doc)?;
    writeln!(
        doc,
        "The forecasting model of the `glucose-forecast` plugin (issue #16), judged the way a device runs it: \
         the plugin, signed with the model file as its asset `model.json`, is replayed by `edgewise replay` \
         (with `emit_forecasts = true`) over recordings of subjects the model was never trained on, and every \
         forecast and `predicted-low` alert it wrote is compared with the readings that followed. \
         The two baselines are the same plugin signed with a baseline model file instead (the last value; \
         the least-squares line through the last 15 minutes, extended), judged on the same forecasts."
    )?;
    writeln!(doc)?;
    write_acceptance(doc, report)?;
    write_model(doc, report)?;
    for set in report.data_sets {
        write_data_set(doc, report, set)?;
    }
    write_trainer_check(doc, report)?;
    write_plots(doc, report)?;
    write_definitions(doc)?;
    writeln!(doc, "{}", RETRAINING.trim_end())?;
    Ok(())
}

fn write_acceptance(doc: &mut String, report: &Report) -> std::fmt::Result {
    writeln!(doc, "## Acceptance")?;
    writeln!(doc)?;
    writeln!(
        doc,
        "The issue's criteria: at {ACCEPTANCE_HORIZON_MIN} minutes, on the held-out subjects, RMSE at most \
         {RMSE_RATIO_MAX}× the better of the two baselines, and Clarke zones A+B at least {A_PLUS_B_MIN}%. \
         The other horizons are held to the same thresholds below, for comparison."
    )?;
    writeln!(doc)?;
    writeln!(
        doc,
        "| data set | horizon | model RMSE | better baseline | its RMSE | ratio | ratio ≤ {RMSE_RATIO_MAX} | Clarke A+B | A+B ≥ {A_PLUS_B_MIN}% |"
    )?;
    writeln!(doc, "| --- | --- | --- | --- | --- | --- | --- | --- | --- |")?;
    let horizons = horizons(report);
    for &minutes in &horizons {
        for set in report.data_sets {
            let Some(v) = set
                .horizons
                .iter()
                .find(|h| h.minutes == minutes)
                .and_then(|h| verdict(h, report.kinds))
            else {
                continue;
            };
            writeln!(
                doc,
                "| {} | {minutes} min | {} | {} | {} | {} | {} | {} | {} |",
                set.name,
                fixed(v.rmse, 2),
                name(v.baseline),
                fixed(v.baseline_rmse, 2),
                fixed(v.ratio, 3),
                yes_no(v.rmse_holds),
                percent(v.a_plus_b),
                yes_no(v.zones_hold)
            )?;
        }
    }
    writeln!(doc)?;
    for &minutes in &horizons {
        let verdicts: Vec<(&str, Verdict)> = report
            .data_sets
            .iter()
            .filter_map(|set| {
                let h = set.horizons.iter().find(|h| h.minutes == minutes)?;
                Some((set.name.as_str(), verdict(h, report.kinds)?))
            })
            .collect();
        if verdicts.is_empty() {
            continue;
        }
        let all = verdicts.iter().all(|(_, v)| v.holds());
        let what = if minutes == ACCEPTANCE_HORIZON_MIN {
            "The acceptance criteria"
        } else {
            "The same thresholds"
        };
        write!(
            doc,
            "**{what} at {minutes} minutes {}.**",
            if all { "are met" } else { "are not met" }
        )?;
        for (set, v) in &verdicts {
            write!(
                doc,
                " {set}: RMSE {}× the {}'s ({}), Clarke A+B {} ({}).",
                fixed(v.ratio, 3),
                name(v.baseline),
                if v.rmse_holds { "met" } else { "not met" },
                percent(v.a_plus_b),
                if v.zones_hold { "met" } else { "not met" }
            )?;
        }
        writeln!(doc)?;
        writeln!(doc)?;
    }
    Ok(())
}

fn write_model(doc: &mut String, report: &Report) -> std::fmt::Result {
    let model = report.model;
    let spec = &model.features;
    writeln!(doc, "## The model")?;
    writeln!(doc)?;
    writeln!(
        doc,
        "From the model file `{}` (SHA-256 `{}`), kind `{}`.",
        report.model_path,
        report.model_sha256,
        kind_text(model.kind)
    )?;
    if let Some(plugin) = report.plugin {
        writeln!(
            doc,
            "Replayed in the plugin `{}` {} (code `{}`).",
            plugin.name, plugin.version, plugin.digest
        )?;
    }
    writeln!(doc)?;
    writeln!(
        doc,
        "Per horizon, forecast = last reading + intercept + Σ coef · (feature − mean) / scale: \
         a linear function of {} features of the sensor's recent readings on its {}-minute grid \
         (changes, never the glucose level itself):",
        spec.len(),
        spec.step_min
    )?;
    writeln!(doc)?;
    writeln!(
        doc,
        "- `change_since_Kmin`, K = {}, {}, …, {}: the newest reading minus the glucose K minutes \
         earlier (a reading, or a straight line between the two readings either side of a gap, \
         never into the future; the oldest reading kept when the history is shorter);",
        spec.step_min,
        2 * spec.step_min,
        spec.lags * spec.step_min
    )?;
    let averages: Vec<String> = spec.averages_min.iter().map(|m| format!("{m}")).collect();
    writeln!(
        doc,
        "- `above_average_Tmin`, T = {}: the newest reading minus an exponential moving average \
         with time constant T minutes.",
        averages.join(", ")
    )?;
    writeln!(doc)?;
    if model.horizons.iter().any(|h| h.adaptation.is_some()) {
        writeln!(
            doc,
            "**On-device adaptation.** Where the table gives a prior variance, each sensor refines \
             that horizon's coefficients and intercept to its own readings, on the device: \
             recursive least squares started from the cloud's coefficients with a prior covariance \
             of the prior variance times the identity (relative to the forecast error's variance), \
             updated by each forecast when the first reading within {} minutes of its target \
             arrives. Until then a sensor forecasts exactly what the cloud's coefficients do. The \
             prior variance is chosen by the same leave-subjects-out cross-validation, each fold's \
             model adapting over each of its held-out subjects from their first reading, and only \
             if it saves at least {}% of the fixed coefficients' cross-validated error (adaptation \
             costs every device memory and state); the evaluation below forecasts the same way, \
             every subject starting from the cloud's coefficients.",
            f64::from(spec.step_min) / 2.0,
            100.0 * crate::train::ADAPTATION_MIN_GAIN
        )?;
        writeln!(doc)?;
    }
    if model.horizons.iter().any(|h| !h.loss.is_squared()) {
        writeln!(
            doc,
            "**Lows weigh more.** Where the table gives a weight above 1, the coefficients minimise \
             squared errors in which a forecast of a reading below {} mg/dL weighs that much (in the \
             cloud's fit and in each sensor's adaptation alike): a forecast that misses a low is the \
             error that harms a patient (Clarke zone D), and lows are few among the readings. The \
             weight is chosen by the same leave-subjects-out cross-validation, from {}: the lightest \
             whose cross-validated forecasts reach {}% in Clarke zones A and B, and 1 when none does. \
             It costs RMSE: the table gives the cross-validated RMSE and Clarke A+B of the weight \
             chosen.",
            model
                .horizons
                .iter()
                .find(|h| !h.loss.is_squared())
                .map_or(70.0, |h| h.loss.low_below_mg_dl),
            crate::train::LOW_WEIGHTS.map(|w| w.to_string()).join(", "),
            crate::train::CLARKE_TARGET_PERCENT
        )?;
        writeln!(doc)?;
    }
    writeln!(
        doc,
        "| horizon | ridge penalty λ | weight of lows | training samples | cross-validated RMSE (mg/dL) | \
         cross-validated Clarke A+B | adaptation: prior variance | adapting: cross-validated RMSE (mg/dL) |"
    )?;
    writeln!(doc, "| --- | --- | --- | --- | --- | --- | --- | --- |")?;
    for horizon in &model.horizons {
        let fit = match &horizon.fit {
            Some(fit) => format!(
                "{} | {} | {} | {:.2} | {}",
                fit.lambda,
                horizon.loss.low_weight,
                fit.samples,
                fit.cv_rmse,
                fit.cv_clarke_a_plus_b.map_or("–".to_owned(), |p| format!("{p:.2}%"))
            ),
            None => "– | – | – | – | –".to_owned(),
        };
        let adaptation = match &horizon.adaptation {
            Some(a) => format!("{} | {:.2}", a.prior_variance, a.cv_rmse),
            None => "none | –".to_owned(),
        };
        writeln!(doc, "| {} min | {fit} | {adaptation} |", horizon.minutes)?;
    }
    writeln!(doc)?;
    if let Some(training) = &model.training {
        writeln!(doc, "Trained on:")?;
        writeln!(doc)?;
        for (file, sha256) in &training.recordings {
            writeln!(doc, "- `{file}` (SHA-256 `{sha256}`)")?;
        }
        writeln!(doc)?;
        let mut held_out = code_list(&report.held_out.named);
        if report.held_out.unnamed > 0 {
            if !held_out.is_empty() {
                held_out.push_str(", and ");
            }
            write!(
                held_out,
                "{} in none of the recordings replayed here",
                report.held_out.unnamed
            )?;
        }
        writeln!(
            doc,
            "{} subjects trained on; {} held out ({}): {held_out}.",
            training.subjects.len(),
            training.held_out.len(),
            training.held_out_rule,
        )?;
        writeln!(doc)?;
    }
    Ok(())
}

fn write_data_set(doc: &mut String, report: &Report, set: &DataSetFigures) -> std::fmt::Result {
    writeln!(doc, "## {}", set.name)?;
    writeln!(doc)?;
    let days = set.lows.first().map_or(0.0, |l| l.days);
    writeln!(
        doc,
        "SHA-256 `{}`. {} subjects judged (never trained on), {:.1} recorded days: {}.",
        set.sha256,
        set.subjects.len(),
        days,
        code_list(&set.subjects)
    )?;
    writeln!(doc)?;
    for horizon in &set.horizons {
        writeln!(
            doc,
            "**{} minutes ahead**: {} forecasts judged; the time lag on the {} of them with a reading at every shift.",
            horizon.minutes, horizon.forecasts, horizon.lag_forecasts
        )?;
        writeln!(doc)?;
        writeln!(
            doc,
            "| model | RMSE (mg/dL) | MAE (mg/dL) | A | B | C | D | E | A+B | time lag |"
        )?;
        writeln!(doc, "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")?;
        for (kind, accuracy) in report.kinds.iter().zip(&horizon.models) {
            write!(
                doc,
                "| {} | {} | {} |",
                name(*kind),
                fixed(accuracy.rmse, 2),
                fixed(accuracy.mae, 2)
            )?;
            // No share of nothing (not 0%).
            let share = |value: f64| if horizon.forecasts == 0 { f64::NAN } else { value };
            for zone in Zone::ALL {
                write!(doc, " {} |", percent(share(accuracy.zones.percent(zone))))?;
            }
            writeln!(
                doc,
                " {} | {} |",
                percent(share(accuracy.zones.percent_a_plus_b())),
                accuracy.lag_min.map_or("–".to_owned(), |m| format!("{m} min"))
            )?;
        }
        writeln!(doc)?;
    }
    let episodes = set.lows.first().map_or(0, |l| l.episodes);
    writeln!(doc, "**Predicted lows** ({episodes} lows in the judged subjects):")?;
    writeln!(doc)?;
    writeln!(
        doc,
        "| model | detected | sensitivity | alerts | false alerts | false alerts per day | median lead time |"
    )?;
    writeln!(doc, "| --- | --- | --- | --- | --- | --- | --- |")?;
    for (kind, score) in report.kinds.iter().zip(&set.lows) {
        writeln!(
            doc,
            "| {} | {} of {} | {} | {} | {} | {} | {} |",
            name(*kind),
            score.detected,
            score.episodes,
            score
                .sensitivity_percent()
                .map_or("–".to_owned(), |s| format!("{s:.1}%")),
            score.alerts,
            score.false_alerts,
            score
                .false_alerts_per_day()
                .map_or("–".to_owned(), |f| format!("{f:.2}")),
            score
                .median_lead_time_min()
                .map_or("–".to_owned(), |m| format!("{m:.1} min"))
        )?;
    }
    writeln!(doc)?;
    Ok(())
}

/// The trainer's own figures (in the model file) next to the replay's: the
/// plugin forecasts what the trainer does.
fn write_trainer_check(doc: &mut String, report: &Report) -> std::fmt::Result {
    if report.model.evaluation.is_empty() {
        return Ok(());
    }
    writeln!(doc, "## The trainer's own figures")?;
    writeln!(doc)?;
    writeln!(
        doc,
        "The model file carries the trainer's evaluation, computed in the trainer on the same subjects \
         without the plugin; the replay's RMSE beside it (model, last value, linear extrapolation):"
    )?;
    writeln!(doc)?;
    writeln!(
        doc,
        "| data set | horizon | trainer: forecasts | trainer: RMSE | replay: forecasts | replay: RMSE |"
    )?;
    writeln!(doc, "| --- | --- | --- | --- | --- | --- |")?;
    for e in &report.model.evaluation {
        let replayed = report
            .data_sets
            .iter()
            .find(|set| set.name == e.data_set)
            .and_then(|set| set.horizons.iter().find(|h| h.minutes == e.horizon_min));
        let (forecasts, rmse) = match replayed {
            Some(h) => (
                h.forecasts.to_string(),
                h.models
                    .iter()
                    .map(|m| fixed(m.rmse, 2))
                    .collect::<Vec<_>>()
                    .join(" / "),
            ),
            None => ("–".to_owned(), "–".to_owned()),
        };
        writeln!(
            doc,
            "| {} | {} min | {} | {} / {} / {} | {forecasts} | {rmse} |",
            e.data_set,
            e.horizon_min,
            e.forecasts,
            fixed(e.rmse, 2),
            fixed(e.rmse_last_value, 2),
            fixed(e.rmse_linear_extrapolation, 2)
        )?;
    }
    writeln!(doc)?;
    Ok(())
}

fn write_plots(doc: &mut String, report: &Report) -> std::fmt::Result {
    writeln!(doc, "## Plots")?;
    writeln!(doc)?;
    for (path, caption) in [report.forecast_plot, report.clarke_plot] {
        writeln!(doc, "![{caption}]({path})")?;
        writeln!(doc)?;
        writeln!(doc, "{caption}")?;
        writeln!(doc)?;
    }
    Ok(())
}

fn write_definitions(doc: &mut String) -> std::fmt::Result {
    let tolerance_s = ACTUAL_TOLERANCE_MS / 1000;
    let window_min = WINDOW_MS / 60_000;
    let codes: Vec<String> = LOW_ALERT_CODES.iter().map(|c| format!("`{c}`")).collect();
    writeln!(doc, "## Definitions")?;
    writeln!(doc)?;
    let lines = [
        "**Judged subjects**: those of a data set the model was never trained on (the SHA-256 of whose \
             id is not in the model file's `training.subjects`, which names subjects by digest only): every \
             subject of a recording the trainer did not train on, and the held-out subjects of one it did."
            .to_owned(),
        format!(
            "**Judged forecasts**: the forecasts of the judged subjects that all three models made (one per \
             valid reading and horizon) and that have a reading within {tolerance_s} s of their target time \
             (the reading's time plus the horizon; never interpolated). Every figure of a horizon is over \
             the same forecasts."
        ),
        "**RMSE**, **MAE**: root mean square and mean absolute value of forecast − reading (mg/dL).".to_owned(),
        "**Clarke error grid** (Clarke et al., Diabetes Care 1987): the share of (reading, forecast) pairs in \
         each zone. A: within 20% of the reading, or both below 70 mg/dL; B: further off but benign; \
         C: overcorrecting acceptable glucose; D: failing to detect a hypo- or hyperglycaemia; E: treating one \
         for the other."
            .to_owned(),
        format!(
            "**Time lag**: the shift τ (0 to the horizon, in {LAG_STEP_MIN}-minute steps) that minimises the \
             RMSE between each forecast for t + h and the reading at t + h − τ, the smallest on a tie, over the \
             judged forecasts with a reading at every shift. The last value has the lag h by construction; a \
             forecast that anticipates the change well has a lag near 0."
        ),
        format!(
            "**Lows**: level-1 hypoglycaemia episodes as glucose-monitor counts them (International Consensus \
             2023): readings below {LOW_MGDL} mg/dL lasting 15 minutes (readings × the sensor's interval, the \
             median spacing of its readings: 3 readings at 5 minutes); the onset is the first of them. An \
             episode ends at the first of readings at or above {LOW_MGDL} that last 15 minutes, or at its last \
             reading before a gap of more than 45 minutes."
        ),
        format!(
            "**Alerts**: {} alerts (raised or repeated), alerts of one sensor at the same time counted once.",
            codes.join(" and ")
        ),
        format!(
            "**Sensitivity**: the share of lows with an alert in the {window_min} minutes before their onset \
             (at or after onset − {window_min} min, before the onset). **Lead time**: the onset minus the first \
             such alert; its median over the detected lows."
        ),
        format!(
            "**False alert**: an alert outside every low (onset to end) with no onset in the {window_min} \
             minutes after it. **Per day**: over the judged subjects' recorded days (each subject's first to \
             last reading)."
        ),
    ];
    for line in lines {
        writeln!(doc, "- {line}")?;
    }
    writeln!(doc)?;
    Ok(())
}

/// The horizons of the data sets, in increasing order, each once.
fn horizons(report: &Report) -> Vec<u32> {
    let mut minutes: Vec<u32> = report
        .data_sets
        .iter()
        .flat_map(|set| set.horizons.iter().map(|h| h.minutes))
        .collect();
    minutes.sort_unstable();
    minutes.dedup();
    minutes
}

fn kind_text(kind: ModelKind) -> &'static str {
    match kind {
        ModelKind::Ridge => "ridge",
        ModelKind::LastValue => "last-value",
        ModelKind::LinearExtrapolation => "linear-extrapolation",
    }
}

/// `value` with `decimals` decimals; "–" for no number (NaN, an infinity):
/// a figure of nothing is not printed as one.
fn fixed(value: f64, decimals: usize) -> String {
    if value.is_finite() {
        format!("{value:.decimals$}")
    } else {
        "–".to_owned()
    }
}

/// A share in percent, two decimals ([`fixed`]).
fn percent(value: f64) -> String {
    if value.is_finite() {
        format!("{value:.2}%")
    } else {
        "–".to_owned()
    }
}

fn yes_no(holds: bool) -> &'static str {
    if holds { "yes" } else { "**no**" }
}

/// `items` sorted, each as code, comma-separated.
fn code_list(items: &[String]) -> String {
    let mut sorted: Vec<&String> = items.iter().collect();
    sorted.sort();
    sorted
        .iter()
        .map(|item| format!("`{item}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::clarke::ZoneCounts;
    use crate::report::evaluate::Accuracy;
    use crate::report::lows::AlertScore;

    const KINDS: [ModelKind; 3] = [ModelKind::Ridge, ModelKind::LastValue, ModelKind::LinearExtrapolation];

    fn accuracy(rmse: f64, pairs: &[(f64, f64)]) -> Accuracy {
        let mut zones = ZoneCounts::default();
        for &(reference, forecast) in pairs {
            zones.add(reference, forecast);
        }
        Accuracy {
            rmse,
            mae: rmse * 0.7,
            zones,
            lag_min: Some(10),
        }
    }

    fn horizon(minutes: u32, rmse: [f64; 3]) -> HorizonFigures {
        let good = [(100.0, 105.0); 199];
        let mut with_a_c: Vec<(f64, f64)> = good.to_vec();
        with_a_c.push((100.0, 215.0));
        HorizonFigures {
            minutes,
            forecasts: 200,
            lag_forecasts: 190,
            models: vec![
                accuracy(rmse[0], &with_a_c),
                accuracy(rmse[1], &good),
                accuracy(rmse[2], &good),
            ],
        }
    }

    fn data_set(name: &str, rmse_30: [f64; 3]) -> DataSetFigures {
        let score = AlertScore {
            episodes: 4,
            detected: 3,
            alerts: 10,
            false_alerts: 2,
            lead_times_min: vec![20.0, 25.0, 40.0],
            days: 8.0,
        };
        DataSetFigures {
            name: name.into(),
            sha256: "ab".into(),
            subjects: vec!["s2".into(), "s1".into()],
            horizons: vec![horizon(30, rmse_30), horizon(60, [20.0, 22.0, 40.0])],
            lows: vec![score.clone(), score.clone(), AlertScore::default()],
            clarke_pairs: Vec::new(),
        }
    }

    fn render_with(sets: &[DataSetFigures]) -> String {
        let model = Model::last_value(&[30, 60]);
        let plugin = Plugin {
            name: "glucose-forecast".into(),
            version: "0.1.0".into(),
            digest: "sha256:cd".into(),
        };
        render(&Report {
            model_path: "plugins/glucose-forecast/model/forecast.json",
            model_sha256: "ef",
            model: &model,
            held_out: &HeldOut::default(),
            plugin: Some(&plugin),
            kinds: &KINDS,
            data_sets: sets,
            forecast_plot: ("forecast/forecast-vs-actual.svg", "Forecast vs reading"),
            clarke_plot: ("forecast/clarke-grid.svg", "Clarke grid"),
        })
    }

    #[test]
    fn the_verdict_is_against_the_better_baseline() {
        let v = verdict(&horizon(30, [12.0, 14.0, 20.0]), &KINDS).unwrap();
        assert_eq!((v.baseline, v.baseline_rmse), (ModelKind::LastValue, 14.0));
        assert_eq!(v.ratio, 12.0 / 14.0);
        assert!(!v.rmse_holds);
        // 199 of 200 in A, one in C.
        assert_eq!(v.a_plus_b, 99.5);
        assert!(v.zones_hold && !v.holds());
        let v = verdict(&horizon(30, [10.0, 14.0, 12.0]), &KINDS).unwrap();
        assert_eq!(v.baseline, ModelKind::LinearExtrapolation);
        assert!(v.rmse_holds && v.holds(), "10/12 = 0.833");
        assert_eq!(verdict(&horizon(30, [10.0, 14.0, 12.0]), &KINDS[..1]), None);
    }

    #[test]
    fn the_document_states_the_verdict_plainly_and_is_the_same_bytes_every_time() {
        let sets = [
            data_set("hall.csv", [12.0, 14.0, 20.0]),
            data_set("example.csv", [10.0, 14.0, 12.0]),
        ];
        let doc = render_with(&sets);
        assert_eq!(render_with(&sets), doc);
        assert!(doc.contains("**The acceptance criteria at 30 minutes are not met.** hall.csv: RMSE 0.857× the last value's (not met)"), "{doc}");
        assert!(doc.contains("example.csv: RMSE 0.833× the linear extrapolation's (met), Clarke A+B 99.50% (met)."));
        assert!(doc.contains("| hall.csv | 30 min | 12.00 | last value | 14.00 | 0.857 | **no** | 99.50% | yes |"));
        assert!(
            doc.contains("| model (ridge) | 12.00 | 8.40 | 99.50% | 0.00% | 0.50% | 0.00% | 0.00% | 99.50% | 10 min |")
        );
        assert!(doc.contains("| model (ridge) | 3 of 4 | 75.0% | 10 | 2 | 0.25 | 25.0 min |"));
        assert!(doc.contains("| linear extrapolation | 0 of 0 | – | 0 | 0 | – | – |"));
        assert!(doc.contains("![Clarke grid](forecast/clarke-grid.svg)"));
        assert!(doc.contains("2 subjects judged (never trained on), 8.0 recorded days: `s1`, `s2`."));
        assert!(doc.contains("## Retraining and rollout"));
        let met = render_with(&[data_set("example.csv", [10.0, 14.0, 12.0])]);
        assert!(met.contains("**The acceptance criteria at 30 minutes are met.**"));
        assert!(met.contains("**The same thresholds at 60 minutes are not met.**"));
    }

    #[test]
    fn a_figure_of_nothing_is_a_dash_never_nan() {
        let mut nothing = data_set("one.csv", [f64::NAN; 3]);
        for horizon in &mut nothing.horizons {
            horizon.forecasts = 0;
            for model in &mut horizon.models {
                (model.rmse, model.mae, model.zones) = (f64::NAN, f64::NAN, ZoneCounts::default());
            }
        }
        let doc = render_with(&[nothing]);
        assert!(!doc.contains("NaN") && !doc.contains("inf"), "{doc}");
        assert!(
            doc.contains("| one.csv | 30 min | – | last value | – | – | **no** | – | **no** |"),
            "{doc}"
        );
        assert!(
            doc.contains("| model (ridge) | – | – | – | – | – | – | – | – | 10 min |"),
            "{doc}"
        );
    }

    #[test]
    fn the_retraining_steps_judge_the_new_version_and_say_whom_the_document_names() {
        let bump = RETRAINING.find("give it a new version in").unwrap();
        let report = RETRAINING.find("edgewise-ml -- report").unwrap();
        let sign = RETRAINING.find("edgewise sign").unwrap();
        assert!(
            bump < report && report < sign,
            "bump {bump}, report {report}, sign {sign}"
        );
        assert!(RETRAINING.contains("This document names the subjects (sensor ids) of the recordings it is run on"));
        assert!(RETRAINING.contains("carries only digests of ids"));
    }

    #[test]
    fn the_held_out_subjects_are_named_only_as_the_recordings_given_name_them() {
        let digest = |n: u8| format!("sha256:{}", format!("{n:02x}").repeat(32));
        let mut model = Model::last_value(&[30, 60]);
        model.training = Some(forecast_model::Training {
            recordings: vec![("hall.csv".into(), "ab".into())],
            held_out_rule: "a rule".into(),
            subjects: vec![digest(1), digest(2)],
            held_out: vec![digest(3), digest(4), digest(5)],
        });
        let held_out = HeldOut {
            named: vec!["s2".into(), "s1".into()],
            unnamed: 1,
        };
        let doc = render(&Report {
            model_path: "forecast.json",
            model_sha256: "ef",
            model: &model,
            held_out: &held_out,
            plugin: None,
            kinds: &KINDS,
            data_sets: &[data_set("hall.csv", [10.0, 14.0, 12.0])],
            forecast_plot: ("forecast/forecast-vs-actual.svg", "Forecast vs reading"),
            clarke_plot: ("forecast/clarke-grid.svg", "Clarke grid"),
        });
        assert!(
            doc.contains(
                "2 subjects trained on; 3 held out (a rule): `s1`, `s2`, and 1 in none of the recordings replayed here."
            ),
            "{doc}"
        );
        assert!(!doc.contains("sha256:0"), "{doc}");
    }
}
