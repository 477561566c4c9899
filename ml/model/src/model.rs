//! The model file: what it carries, how it is checked, and inference.

use serde::{Deserialize, Serialize};

use crate::spec::FeatureSpec;

/// The `format` of a model file this crate reads and writes. Format 2 names
/// subjects by digest ([`Training`]); format 1 named them by id.
pub const FORMAT: &str = "edgewise-forecast/2";
/// How a subject's digest in [`Training`] begins; 64 lowercase hex digits of
/// the SHA-256 of the subject's id follow.
pub const SUBJECT_DIGEST_PREFIX: &str = "sha256:";
/// The largest model file taken (a model of the largest specification is a
/// few hundred KiB).
pub const MAX_MODEL_BYTES: usize = 1 << 20;
/// Most horizons one model forecasts.
const MAX_HORIZONS: usize = 8;
/// The largest [`Adaptation::prior_variance`] taken: beyond it one reading
/// could swing the coefficients far from the cloud's.
pub const MAX_PRIOR_VARIANCE: f64 = 1.0;
/// The largest [`Loss::low_weight`] taken: beyond it a single low reading
/// could outweigh a day of readings in a sensor's adaptation.
pub const MAX_LOW_WEIGHT: f64 = 100.0;

/// Why a model file was refused.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelError(String);

impl std::fmt::Display for ModelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "model file: {}", self.0)
    }
}

impl std::error::Error for ModelError {}

/// What made the coefficients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    /// Ridge regression fitted by the trainer (`ml/`).
    Ridge,
    /// Baseline: glucose stays where it is.
    LastValue,
    /// Baseline: the least-squares line through the last 15 minutes, extended.
    LinearExtrapolation,
}

/// A forecasting model: per horizon, a linear function of the features of
/// [`crate::History`], with where it came from and how well it did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Model {
    /// Always [`FORMAT`].
    pub format: String,
    /// What made the coefficients.
    pub kind: ModelKind,
    /// The features the coefficients apply to.
    pub features: FeatureSpec,
    /// [`FeatureSpec::names`], for people reading the file (checked).
    pub feature_names: Vec<String>,
    /// One linear function per horizon, in increasing horizon.
    pub horizons: Vec<HorizonModel>,
    /// The data the model was fitted on (none for a baseline).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training: Option<Training>,
    /// How it did on subjects it never saw, per data set and horizon.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evaluation: Vec<Evaluation>,
}

/// The forecast for one horizon: `last value + intercept + Σ coef · (x − mean) / scale`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HorizonModel {
    /// Minutes ahead.
    pub minutes: u32,
    /// The mean change over the horizon the features do not explain (mg/dL).
    pub intercept: f64,
    /// Per feature: its mean over the training data (the scaling).
    pub mean: Vec<f64>,
    /// Per feature: its standard deviation over the training data (the scaling).
    pub scale: Vec<f64>,
    /// Per feature: the coefficient of the scaled feature (mg/dL).
    pub coef: Vec<f64>,
    /// How the coefficients were chosen (none for a baseline).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fit: Option<Fit>,
    /// Whether, and how far, each sensor refines the coefficients to its own
    /// readings ([`crate::SensorModel`]); none: the coefficients are used as
    /// they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adaptation: Option<Adaptation>,
    /// What the coefficients minimise, in the cloud's fit and in each
    /// sensor's adaptation alike; absent: plain squared errors.
    #[serde(default, skip_serializing_if = "Loss::is_squared")]
    pub loss: Loss,
}

/// What a horizon's coefficients minimise: squared forecast errors, each
/// weighing `low_weight` when the reading it forecast is below
/// `low_below_mg_dl`, and 1 otherwise.
///
/// A forecast that misses a low is the error that harms a patient (Clarke
/// zone D: a hypoglycaemia not detected), and lows are a few percent of the
/// readings, so plain squared errors fit the many readings in range at the
/// cost of the few below it. Weighing those more is the common remedy in
/// glucose forecasting (Del Favero et al., "A glucose-specific metric to
/// assess predictors", 2012, penalise the same asymmetry).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Loss {
    /// Readings below this weigh `low_weight` (mg/dL).
    pub low_below_mg_dl: f64,
    /// The weight of an error on a reading below `low_below_mg_dl`: at least
    /// 1, at most [`MAX_LOW_WEIGHT`].
    pub low_weight: f64,
}

impl Loss {
    /// Plain squared errors: every reading weighs 1.
    pub const SQUARED: Loss = Loss {
        low_below_mg_dl: 70.0,
        low_weight: 1.0,
    };

    /// Squared errors with readings below 70 mg/dL (level-1 hypoglycaemia,
    /// the `predicted-low` threshold) weighing `low_weight`.
    pub fn lows_weigh(low_weight: f64) -> Loss {
        Loss {
            low_weight,
            ..Loss::SQUARED
        }
    }

    /// The weight of an error on a forecast of the reading `actual`.
    pub fn weight(&self, actual: f64) -> f64 {
        if actual < self.low_below_mg_dl {
            self.low_weight
        } else {
            1.0
        }
    }

    /// Whether every reading weighs 1.
    pub fn is_squared(&self) -> bool {
        self.low_weight == 1.0
    }
}

impl Default for Loss {
    fn default() -> Loss {
        Loss::SQUARED
    }
}

/// On-device adaptation of one horizon: each sensor refines the cloud's
/// coefficients (and intercept) by recursive least squares on its own
/// forecasts and the readings that followed them, starting from the cloud's
/// values as a prior ([`crate::SensorModel`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Adaptation {
    /// The prior variance of each coefficient around the cloud's value,
    /// relative to the variance of a forecast's error: the smaller, the
    /// longer a sensor trusts the cloud (at 0.001, the prior weighs like a
    /// thousand judged forecasts, three and a half days of 5-minute
    /// readings, along each direction of the scaled features).
    pub prior_variance: f64,
    /// Its RMSE in leave-subjects-out cross-validation on the training
    /// subjects, adapting from the start of each subject's readings (mg/dL).
    pub cv_rmse: f64,
}

/// How a horizon's coefficients were chosen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fit {
    /// The ridge penalty, per training sample, on the scaled features.
    pub lambda: f64,
    /// Training samples: readings with a reading at the horizon.
    pub samples: u64,
    /// The RMSE of the penalty and [`HorizonModel::loss`] in
    /// leave-subjects-out cross-validation on the training subjects (mg/dL).
    pub cv_rmse: f64,
    /// The share of those cross-validated forecasts in Clarke zones A and B
    /// (percent); absent in a model file of before the loss was chosen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cv_clarke_a_plus_b: Option<f64>,
}

/// The data a model was fitted on.
///
/// Subjects are named by digest only ([`SUBJECT_DIGEST_PREFIX`] and the hex
/// SHA-256 of the id), never by id: the model file is signed into the
/// plugin's bundle, which goes to every device of a fleet, and a subject's id
/// is a patient's sensor id. Whoever holds a recording can tell its subjects
/// apart by digesting their ids (the report does); [`Model::parse`] refuses a
/// name that is not a digest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Training {
    /// Per recording: its file name and the SHA-256 of its bytes.
    pub recordings: Vec<(String, String)>,
    /// Which subjects were kept out of training, as a rule.
    pub held_out_rule: String,
    /// The digests of the subjects trained on, sorted.
    pub subjects: Vec<String>,
    /// The digests of the subjects held out (never trained on), evaluated in
    /// `evaluation`, sorted.
    pub held_out: Vec<String>,
}

/// A model's accuracy on one data set of held-out subjects at one horizon,
/// next to the baselines' on the same forecasts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evaluation {
    /// The recording's file name.
    pub data_set: String,
    /// Held-out subjects in it.
    pub subjects: u32,
    /// Minutes ahead.
    pub horizon_min: u32,
    /// Forecasts with a reading at their target time.
    pub forecasts: u64,
    /// Root mean square error (mg/dL).
    pub rmse: f64,
    /// Mean absolute error (mg/dL).
    pub mae: f64,
    /// The last-value baseline's RMSE on the same forecasts.
    pub rmse_last_value: f64,
    /// The linear-extrapolation baseline's RMSE on the same forecasts.
    pub rmse_linear_extrapolation: f64,
}

impl Model {
    /// Read and check a model file.
    pub fn parse(bytes: &[u8]) -> Result<Model, ModelError> {
        if bytes.len() > MAX_MODEL_BYTES {
            return Err(ModelError(format!(
                "{} bytes, over the {MAX_MODEL_BYTES}-byte limit",
                bytes.len()
            )));
        }
        let model: Model = serde_json::from_slice(bytes).map_err(|e| ModelError(e.to_string()))?;
        model.check().map_err(ModelError)?;
        Ok(model)
    }

    /// The file's bytes: pretty JSON, the same bytes for the same model. A
    /// model serde cannot write is an error, never an empty file.
    pub fn to_bytes(&self) -> Result<Vec<u8>, ModelError> {
        let mut bytes = serde_json::to_vec_pretty(self).map_err(|e| ModelError(e.to_string()))?;
        bytes.push(b'\n');
        Ok(bytes)
    }

    fn check(&self) -> Result<(), String> {
        if self.format != FORMAT {
            return Err(format!("format `{}`, expected `{FORMAT}`", self.format));
        }
        self.features.check()?;
        if self.feature_names != self.features.names() {
            return Err("feature_names do not match the feature specification".into());
        }
        if self.horizons.is_empty() || self.horizons.len() > MAX_HORIZONS {
            return Err(format!(
                "{} horizons, expected 1 to {MAX_HORIZONS}",
                self.horizons.len()
            ));
        }
        if let Some(training) = &self.training
            && let Some(name) = training
                .subjects
                .iter()
                .chain(&training.held_out)
                .find(|name| !is_subject_digest(name))
        {
            // Not echoed: it may be a patient's sensor id.
            return Err(format!(
                "training names a subject by something other than its digest ({SUBJECT_DIGEST_PREFIX} and 64 \
                 hex digits), {} characters long",
                name.chars().count()
            ));
        }
        let width = self.features.len();
        let mut previous = 0;
        for horizon in &self.horizons {
            let minutes = horizon.minutes;
            if minutes <= previous || minutes > 720 {
                return Err(format!("horizon {minutes} min: horizons go up, 1 to 720 min"));
            }
            previous = minutes;
            if [&horizon.mean, &horizon.scale, &horizon.coef]
                .iter()
                .any(|v| v.len() != width)
            {
                return Err(format!(
                    "horizon {minutes} min: mean, scale and coef need {width} values each"
                ));
            }
            if let Some(adaptation) = &horizon.adaptation {
                let variance = adaptation.prior_variance;
                if !(variance > 0.0 && variance <= MAX_PRIOR_VARIANCE && adaptation.cv_rmse.is_finite()) {
                    return Err(format!(
                        "horizon {minutes} min: adaptation prior_variance {variance} is not in (0, \
                         {MAX_PRIOR_VARIANCE}], or its cv_rmse not finite"
                    ));
                }
            }
            let loss = horizon.loss;
            if !((1.0..=MAX_LOW_WEIGHT).contains(&loss.low_weight) && (0.0..=1000.0).contains(&loss.low_below_mg_dl)) {
                return Err(format!(
                    "horizon {minutes} min: loss low_weight {} is not in [1, {MAX_LOW_WEIGHT}], or \
                     low_below_mg_dl {} not in [0, 1000]",
                    loss.low_weight, loss.low_below_mg_dl
                ));
            }
            let numbers = horizon.mean.iter().chain(&horizon.coef).chain([&horizon.intercept]);
            if numbers.clone().any(|x| !x.is_finite()) || horizon.scale.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
                return Err(format!(
                    "horizon {minutes} min: a number is not finite, or a scale not positive"
                ));
            }
        }
        Ok(())
    }

    /// The horizon of `minutes`, if the model forecasts it.
    pub fn horizon(&self, minutes: u32) -> Option<&HorizonModel> {
        self.horizons.iter().find(|h| h.minutes == minutes)
    }

    /// The last-value baseline: every forecast is the newest reading.
    pub fn last_value(horizons_min: &[u32]) -> Model {
        let features = FeatureSpec {
            step_min: 5,
            lags: 0,
            averages_min: Vec::new(),
        };
        Model::baseline(ModelKind::LastValue, features, horizons_min, |_| Vec::new())
    }

    /// The linear-extrapolation baseline: the least-squares line through the
    /// grid points of the last 15 minutes (now, -5, -10, -15), extended to
    /// the horizon.
    pub fn linear_extrapolation(horizons_min: &[u32]) -> Model {
        let features = FeatureSpec {
            step_min: 5,
            lags: 3,
            averages_min: Vec::new(),
        };
        // Points at x_k = -5k min; with v_k = now - change_k the slope is
        // -Σ (x_k - mean x) change_k / Σ (x_k - mean x)², k ≥ 1.
        let xs: Vec<f64> = (0..=3).map(|k| -5.0 * f64::from(k)).collect();
        let mean_x = xs.iter().sum::<f64>() / xs.len() as f64;
        let sxx: f64 = xs.iter().map(|x| (x - mean_x) * (x - mean_x)).sum();
        let slope_per_change: Vec<f64> = xs[1..].iter().map(|x| -(x - mean_x) / sxx).collect();
        Model::baseline(ModelKind::LinearExtrapolation, features, horizons_min, |minutes| {
            slope_per_change.iter().map(|c| c * f64::from(minutes)).collect()
        })
    }

    fn baseline(kind: ModelKind, features: FeatureSpec, horizons_min: &[u32], coef: impl Fn(u32) -> Vec<f64>) -> Model {
        let width = features.len();
        Model {
            format: FORMAT.to_owned(),
            kind,
            feature_names: features.names(),
            features,
            horizons: horizons_min
                .iter()
                .map(|&minutes| HorizonModel {
                    minutes,
                    intercept: 0.0,
                    mean: vec![0.0; width],
                    scale: vec![1.0; width],
                    coef: coef(minutes),
                    fit: None,
                    adaptation: None,
                    loss: Loss::SQUARED,
                })
                .collect(),
            training: None,
            evaluation: Vec::new(),
        }
    }
}

/// Whether `name` is a subject digest: [`SUBJECT_DIGEST_PREFIX`] and 64
/// lowercase hex digits.
fn is_subject_digest(name: &str) -> bool {
    name.strip_prefix(SUBJECT_DIGEST_PREFIX)
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
}

impl HorizonModel {
    /// The forecast (mg/dL) from the newest value and its features
    /// ([`crate::History::features`]).
    pub fn predict(&self, now: f64, features: &[f64]) -> f64 {
        let mut change = self.intercept;
        for (((x, mean), scale), coef) in features.iter().zip(&self.mean).zip(&self.scale).zip(&self.coef) {
            change += coef * ((x - mean) / scale);
        }
        now + change
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::History;
    use crate::spec::MINUTE_MS;

    fn forecasts(model: &Model, readings: &[(i64, f64)]) -> Vec<f64> {
        let mut history = History::default();
        for &(ms, value) in readings {
            history.push(&model.features, ms, value);
        }
        let mut features = Vec::new();
        let now = history.features(&model.features, &mut features).unwrap();
        model.horizons.iter().map(|h| h.predict(now, &features)).collect()
    }

    #[test]
    fn the_baselines_are_the_last_value_and_the_line_through_the_last_15_minutes() {
        let rising: Vec<(i64, f64)> = (0..6).map(|k| (k * 5 * MINUTE_MS, 100.0 + 2.0 * k as f64)).collect();
        assert_eq!(forecasts(&Model::last_value(&[30, 60]), &rising), vec![110.0, 110.0]);
        let line = forecasts(&Model::linear_extrapolation(&[30, 60]), &rising);
        // 2 mg/dL per 5 minutes: +12 in 30 minutes, +24 in 60.
        assert!(
            (line[0] - 122.0).abs() < 1e-9 && (line[1] - 134.0).abs() < 1e-9,
            "{line:?}"
        );
    }

    #[test]
    fn a_model_file_round_trips_to_the_same_bytes() {
        let model = Model::linear_extrapolation(&[30, 60]);
        let bytes = model.to_bytes().unwrap();
        let parsed = Model::parse(&bytes).unwrap();
        assert_eq!(parsed, model);
        assert_eq!(parsed.to_bytes().unwrap(), bytes);
        // Plain squared errors are not written (a file of before the loss
        // reads as it did); a weight on lows is.
        assert!(!String::from_utf8(bytes).unwrap().contains("loss"));
        let mut weighing = model.clone();
        weighing.horizons[0].loss = Loss::lows_weigh(8.0);
        let bytes = weighing.to_bytes().unwrap();
        assert!(
            String::from_utf8(bytes.clone())
                .unwrap()
                .contains("\"low_weight\": 8.0")
        );
        assert_eq!(Model::parse(&bytes).unwrap(), weighing);
    }

    #[test]
    fn malformed_models_are_refused_with_the_reason() {
        let good = Model::linear_extrapolation(&[30, 60]);
        let refused = |edit: &dyn Fn(&mut Model), expected: &str| {
            let mut model = good.clone();
            edit(&mut model);
            let error = Model::parse(&model.to_bytes().unwrap()).unwrap_err().to_string();
            assert!(error.contains(expected), "{error}");
        };
        refused(&|m| m.format = "edgewise-forecast/1".into(), "format");
        refused(&|m| m.horizons[0].coef.pop().map(drop).unwrap_or(()), "need 3 values");
        refused(&|m| m.horizons[1].scale[0] = 0.0, "scale not positive");
        refused(&|m| m.horizons.reverse(), "horizons go up");
        refused(&|m| m.features.lags = 100_000, "lags");
        refused(&|m| m.feature_names.clear(), "feature_names");
        for variance in [0.0, -1.0, 2.0] {
            refused(
                &|m| {
                    m.horizons[0].adaptation = Some(Adaptation {
                        prior_variance: variance,
                        cv_rmse: 1.0,
                    })
                },
                "prior_variance",
            );
        }
        for (low_weight, low_below_mg_dl) in [(0.5, 70.0), (MAX_LOW_WEIGHT * 2.0, 70.0), (2.0, -1.0)] {
            refused(
                &|m| {
                    m.horizons[1].loss = Loss {
                        low_below_mg_dl,
                        low_weight,
                    }
                },
                "low_weight",
            );
        }
        assert!(Model::parse(b"{").is_err());
        assert!(
            Model::parse(&vec![b' '; MAX_MODEL_BYTES + 1])
                .unwrap_err()
                .to_string()
                .contains("limit")
        );
        let nan = String::from_utf8(good.to_bytes().unwrap()).unwrap().replacen(
            "\"intercept\": 0.0",
            "\"intercept\": 1e999",
            1,
        );
        assert!(Model::parse(nan.as_bytes()).is_err());
    }

    #[test]
    fn a_model_file_naming_a_subject_otherwise_than_by_digest_is_refused() {
        let good = Model::linear_extrapolation(&[30, 60]);
        let digest = format!("sha256:{}", "0a".repeat(32));
        let training = |subjects: Vec<String>, held_out: Vec<String>| Training {
            recordings: Vec::new(),
            held_out_rule: String::new(),
            subjects,
            held_out,
        };
        let mut named = good;
        named.training = Some(training(vec![digest.clone()], vec![digest.clone()]));
        assert!(Model::parse(&named.to_bytes().unwrap()).is_ok());
        // A subject named by its id (a patient's sensor id) is refused, and
        // the message does not repeat it.
        for (subjects, held_out) in [
            (vec!["ward-1".to_owned()], vec![]),
            (vec![digest.clone()], vec!["ward-1".to_owned()]),
            (vec![digest.to_uppercase()], vec![]),
            (vec![format!("{digest}0")], vec![]),
        ] {
            named.training = Some(training(subjects, held_out));
            let error = Model::parse(&named.to_bytes().unwrap()).unwrap_err().to_string();
            assert!(error.contains("digest") && !error.contains("ward-1"), "{error}");
        }
    }
}
