//! The figures of one data set: each model's replayed forecasts judged on
//! the same forecasts against the readings that followed, and its
//! predicted-low alerts against the lows.

use forecast_model::actual_at;

use super::accuracy::{self, LAG_STEP_MIN, Shifted};
use super::clarke::ZoneCounts;
use super::lows::{self, AlertScore};
use super::output::Replayed;
use crate::data::DataSet;

/// How far (ms) the reading that judges a forecast may be from the target
/// time: half the 5-minute grid step, as in training.
pub const ACTUAL_TOLERANCE_MS: i64 = 150_000;
const MINUTE_MS: i64 = 60_000;

/// One model's accuracy at one horizon.
#[derive(Debug, Clone, PartialEq)]
pub struct Accuracy {
    /// Root mean square error (mg/dL).
    pub rmse: f64,
    /// Mean absolute error (mg/dL).
    pub mae: f64,
    /// Clarke error grid zones of `(reading, forecast)`.
    pub zones: ZoneCounts,
    /// The time lag (minutes, [`accuracy::time_lag`]).
    pub lag_min: Option<u32>,
}

/// Every model at one horizon.
#[derive(Debug, Clone, PartialEq)]
pub struct HorizonFigures {
    /// Minutes ahead.
    pub minutes: u32,
    /// The forecasts judged: made by every model, with a reading at the target time.
    pub forecasts: u64,
    /// Those of them with a reading at every shift of the time lag.
    pub lag_forecasts: u64,
    /// Per model, in the order of the runs given to [`evaluate`].
    pub models: Vec<Accuracy>,
}

/// The figures of one data set.
#[derive(Debug, Clone, PartialEq)]
pub struct DataSetFigures {
    /// The recording's file name.
    pub name: String,
    /// SHA-256 of its bytes.
    pub sha256: String,
    /// The subjects judged (held out of training), in the recording's order.
    pub subjects: Vec<String>,
    /// Per horizon.
    pub horizons: Vec<HorizonFigures>,
    /// Per model: its predicted-low alerts against the lows.
    pub lows: Vec<AlertScore>,
    /// The first model's `(reading, forecast)` pairs at the first horizon,
    /// for the Clarke grid.
    pub clarke_pairs: Vec<(f64, f64)>,
}

/// A forecast every model made, with the reading at its target time.
struct Paired {
    actual: f64,
    /// Per model.
    forecasts: Vec<f64>,
    /// The readings at `target - k · LAG_STEP_MIN` for every shift, if all exist.
    shifted: Option<Vec<f64>>,
}

/// Judge the `runs` (replays of the same data set, one per model; the first
/// is the model under test) on the subjects of `set` that `judged` selects.
pub fn evaluate(
    set: &DataSet,
    judged: impl Fn(&str) -> bool,
    runs: &[&Replayed],
    horizons_min: &[u32],
) -> DataSetFigures {
    let subjects: Vec<_> = set.subjects.iter().filter(|s| judged(&s.id)).collect();
    let mut horizons = Vec::new();
    let mut clarke_pairs = Vec::new();
    for (h, &minutes) in horizons_min.iter().enumerate() {
        let paired: Vec<Paired> = subjects
            .iter()
            .flat_map(|s| pair(&s.id, &s.readings, runs, minutes))
            .collect();
        if h == 0 {
            clarke_pairs = paired.iter().map(|p| (p.actual, p.forecasts[0])).collect();
        }
        let lagged: Vec<&Paired> = paired.iter().filter(|p| p.shifted.is_some()).collect();
        let models = (0..runs.len())
            .map(|m| {
                let errors = || paired.iter().map(|p| p.forecasts[m] - p.actual);
                let mut zones = ZoneCounts::default();
                for p in &paired {
                    zones.add(p.actual, p.forecasts[m]);
                }
                let shifted: Vec<Shifted> = lagged
                    .iter()
                    .filter_map(|p| {
                        p.shifted.as_ref().map(|actual| Shifted {
                            forecast: p.forecasts[m],
                            actual: actual.clone(),
                        })
                    })
                    .collect();
                Accuracy {
                    rmse: accuracy::rmse(errors()).unwrap_or(f64::NAN),
                    mae: accuracy::mae(errors()).unwrap_or(f64::NAN),
                    zones,
                    lag_min: accuracy::time_lag(&shifted),
                }
            })
            .collect();
        horizons.push(HorizonFigures {
            minutes,
            forecasts: paired.len() as u64,
            lag_forecasts: lagged.len() as u64,
            models,
        });
    }
    let lows = runs
        .iter()
        .map(|run| {
            let mut total = AlertScore::default();
            for s in &subjects {
                let episodes = lows::episodes(&s.readings);
                total.add(AlertScore::sensor(&s.readings, &episodes, run.low_alerts(&s.id)));
            }
            total
        })
        .collect();
    DataSetFigures {
        name: set.name.clone(),
        sha256: set.sha256.clone(),
        subjects: subjects.iter().map(|s| s.id.clone()).collect(),
        horizons,
        lows,
        clarke_pairs,
    }
}

/// The forecasts of `sensor` at `minutes` that every run made and that have
/// a reading at their target time.
fn pair(sensor: &str, readings: &[(i64, f64)], runs: &[&Replayed], minutes: u32) -> Vec<Paired> {
    let Some((first, others)) = runs.split_first() else {
        return Vec::new();
    };
    let horizon_ms = i64::from(minutes) * MINUTE_MS;
    let shifts = i64::from(minutes / LAG_STEP_MIN);
    let mut paired = Vec::new();
    for forecast in first.forecasts(sensor, minutes) {
        let target = forecast.made_ms.saturating_add(horizon_ms);
        let Some(actual) = actual_at(readings, target, ACTUAL_TOLERANCE_MS) else {
            continue;
        };
        let mut forecasts = vec![forecast.value];
        for run in others {
            let theirs = run.forecasts(sensor, minutes);
            match theirs.binary_search_by_key(&forecast.made_ms, |f| f.made_ms) {
                Ok(index) => forecasts.push(theirs[index].value),
                Err(_) => break,
            }
        }
        if forecasts.len() != runs.len() {
            continue;
        }
        let shifted = (0..=shifts)
            .map(|k| {
                let at = target.saturating_sub(k * i64::from(LAG_STEP_MIN) * MINUTE_MS);
                actual_at(readings, at, ACTUAL_TOLERANCE_MS)
            })
            .collect();
        paired.push(Paired {
            actual,
            forecasts,
            shifted,
        });
    }
    paired
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Subject;
    use crate::report::output::Forecast;

    const MIN: i64 = MINUTE_MS;

    fn set(subjects: Vec<(&str, Vec<(i64, f64)>)>) -> DataSet {
        DataSet {
            name: "set.csv".into(),
            sha256: "ab".into(),
            subjects: subjects
                .into_iter()
                .map(|(id, readings)| Subject {
                    id: id.into(),
                    readings,
                })
                .collect(),
        }
    }

    /// A replay forecasting `f(made, value)` for every reading, 30 minutes ahead.
    fn replay(set: &DataSet, f: impl Fn(usize, &[(i64, f64)]) -> f64, alerts: &[(&str, i64)]) -> Replayed {
        let mut replayed = Replayed::default();
        for subject in &set.subjects {
            let forecasts = (0..subject.readings.len())
                .map(|k| Forecast {
                    made_ms: subject.readings[k].0,
                    value: f(k, &subject.readings),
                })
                .collect();
            replayed.forecasts.insert((subject.id.clone(), 30), forecasts);
        }
        for &(sensor, ms) in alerts {
            replayed.low_alerts.entry(sensor.into()).or_default().push(ms);
        }
        replayed
    }

    #[test]
    fn models_are_judged_on_the_same_forecasts_of_the_judged_subjects() {
        // A steady rise of 1 mg/dL a minute; a gap from 60 to 120 minutes.
        let rise: Vec<(i64, f64)> = (0..40)
            .map(|k| k * 5)
            .filter(|m| !(61..120).contains(m))
            .map(|m| (m * MIN, 100.0 + m as f64))
            .collect();
        let data = set(vec![("held-out", rise.clone()), ("trained", rise)]);
        // The model is exact; the last value is 30 mg/dL low; a third model
        // forecasts only from the reading at 20 minutes on.
        let exact = replay(&data, |k, r| r[k].1 + 30.0, &[]);
        let last = replay(&data, |k, r| r[k].1, &[("held-out", 100 * MIN), ("trained", 0)]);
        let mut late = replay(&data, |k, r| r[k].1 + 40.0, &[]);
        for forecasts in late.forecasts.values_mut() {
            forecasts.retain(|f| f.made_ms >= 20 * MIN);
        }
        let figures = evaluate(&data, |id| id == "held-out", &[&exact, &last, &late], &[30]);
        assert_eq!(figures.subjects, vec!["held-out".to_owned()]);
        let h = &figures.horizons[0];
        // Readings at 0..=60 and 120..=195: forecasts made at 20..=30 and
        // 120..=165 have a reading 30 minutes on, and every model made them.
        assert_eq!(h.forecasts, 3 + 10);
        // The time lag also needs every reading on the way: 20 to 30 (to
        // 50..60) and 120 to 165.
        assert_eq!(h.lag_forecasts, 3 + 10);
        let [exact, last, late] = [&h.models[0], &h.models[1], &h.models[2]];
        assert_eq!((exact.rmse, exact.mae, exact.lag_min), (0.0, 0.0, Some(0)));
        assert_eq!((last.rmse, last.mae, last.lag_min), (30.0, 30.0, Some(30)));
        assert_eq!((late.rmse, late.mae, late.lag_min), (10.0, 10.0, Some(0)));
        assert_eq!(exact.zones.percent_a_plus_b(), 100.0);
        assert_eq!(figures.clarke_pairs.len(), 13);
        assert!(figures.clarke_pairs.iter().all(|(actual, forecast)| actual == forecast));
        // No low, so every alert of the judged subject is false.
        assert_eq!((figures.lows[1].alerts, figures.lows[1].false_alerts), (1, 1));
        assert_eq!(figures.lows[0].alerts, 0);
    }
}
