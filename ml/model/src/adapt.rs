//! What a model keeps per sensor: its recent readings and, for a horizon
//! that adapts ([`Adaptation`]), the sensor's own coefficients.
//!
//! Adaptation is recursive least squares, started from the cloud's
//! coefficients with a prior covariance `prior_variance · I`: each forecast
//! waits for the first reading within half a grid step of its target, and
//! that reading's change from the forecast's reading updates the
//! coefficients (no forgetting: a sensor's fit settles as its readings
//! accumulate). Before its first update a sensor forecasts exactly what the
//! cloud's coefficients do, to the bit.
//!
//! Bounded: at most [`waiting_capacity`] forecasts wait per horizon, one per
//! half grid step at most, so a sensor reading every second costs no more
//! than one reading every two and a half minutes. A numerical breakdown (a
//! non-finite number, a covariance no longer positive) starts the sensor
//! over from the cloud's coefficients. So does a state made under another
//! model (a snapshot restored into a new version of the model).

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::history::{History, Pushed};
use crate::model::{Adaptation, HorizonModel, Model};
use crate::spec::MINUTE_MS;

/// The state of one sensor under one model: its [`History`] and, per
/// horizon of the model (in its order), the sensor's own coefficients when
/// that horizon adapts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SensorModel {
    history: History,
    /// One per horizon of the model the last reading was forecast with;
    /// `None` for a horizon that does not adapt.
    learners: Vec<Option<Learner>>,
}

/// A sensor's own coefficients for one horizon, and the forecasts waiting
/// for the reading that will judge them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Learner {
    /// What this started from: a fingerprint of the cloud's coefficients,
    /// intercept and prior variance ([`fingerprint`]). Another model's
    /// learner starts over.
    cloud: u64,
    /// Per scaled feature, then the intercept.
    coef: Vec<f64>,
    /// The coefficients' covariance relative to the error's variance: its
    /// upper triangle, row by row (`n (n + 1) / 2` numbers for `n`
    /// coefficients; a symmetric matrix needs no more).
    covariance: Vec<f64>,
    /// Forecasts waiting for their reading, in increasing target time.
    waiting: VecDeque<Waiting>,
}

/// A forecast waiting for the reading at its target time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Waiting {
    target_ms: i64,
    /// The value of the reading it was made for.
    now: f64,
    /// Its scaled features.
    z: Vec<f64>,
}

/// Where entry `(i, j)` of a symmetric `n × n` matrix is in its packed upper
/// triangle.
fn packed(n: usize, i: usize, j: usize) -> usize {
    let (i, j) = if i <= j { (i, j) } else { (j, i) };
    i * (2 * n - i - 1) / 2 + j
}

/// A fingerprint of what a learner of `horizon` starts from: the bits of its
/// coefficients, intercept and prior variance, mixed a number at a time (the
/// same on every machine; checked on every reading, so cheap).
fn fingerprint(horizon: &HorizonModel, adaptation: &Adaptation) -> u64 {
    let numbers = horizon
        .coef
        .iter()
        .chain([&horizon.intercept, &adaptation.prior_variance]);
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for x in numbers {
        hash = (hash ^ x.to_bits()).wrapping_mul(0x0000_0100_0000_01b3);
        hash ^= hash >> 29;
    }
    hash
}

/// Most forecasts of one horizon waiting to be learnt from: one per half
/// grid step over the horizon and the tolerance.
fn waiting_capacity(horizon_min: u32, step_min: u32) -> usize {
    2 * (horizon_min / step_min.max(1)) as usize + 2
}

impl SensorModel {
    /// A sensor continuing from readings kept before adaptation existed (a
    /// snapshot of an older layout): its history, nothing learnt.
    pub fn resume(history: History) -> SensorModel {
        SensorModel {
            history,
            learners: Vec::new(),
        }
    }

    /// Take a reading of this sensor. If it is the sensor's newest
    /// ([`Pushed::Taken`]), learn from the forecasts it judges, then write
    /// its forecasts into `forecasts`, one per horizon of `model` (in its
    /// order); otherwise leave `forecasts` as it was. `features` is room for
    /// the features (cleared first).
    pub fn observe(
        &mut self,
        model: &Model,
        (timestamp_ms, value): (i64, f64),
        features: &mut Vec<f64>,
        forecasts: &mut Vec<f64>,
    ) -> Pushed {
        let spec = &model.features;
        let pushed = self.history.push(spec, timestamp_ms, value);
        if pushed != Pushed::Taken {
            return pushed;
        }
        self.fit_to(model);
        let tolerance_ms = spec.tolerance_ms();
        for (horizon, learner) in model.horizons.iter().zip(&mut self.learners) {
            if let (Some(learner), Some(adaptation)) = (learner, &horizon.adaptation) {
                learner.learn(horizon, adaptation, (timestamp_ms, value), tolerance_ms);
            }
        }
        let Some(now) = self.history.features(spec, features) else {
            return Pushed::NotNewer;
        };
        forecasts.clear();
        for (horizon, learner) in model.horizons.iter().zip(&mut self.learners) {
            let Some(learner) = learner else {
                forecasts.push(horizon.predict(now, features));
                continue;
            };
            let z: Vec<f64> = features
                .iter()
                .zip(&horizon.mean)
                .zip(&horizon.scale)
                .map(|((x, mean), scale)| (x - mean) / scale)
                .collect();
            forecasts.push(now + learner.change(&z));
            learner.remember(timestamp_ms, now, z, horizon.minutes, spec.step_min);
        }
        Pushed::Taken
    }

    /// The sensor's recent readings.
    pub fn history(&self) -> &History {
        &self.history
    }

    /// Make the learners those of `model`: a horizon that adapts keeps its
    /// learner only if it started from this model's coefficients and is
    /// whole; anything else starts over from the cloud's.
    fn fit_to(&mut self, model: &Model) {
        let width = model.features.len();
        self.learners.resize(model.horizons.len(), None);
        for (horizon, learner) in model.horizons.iter().zip(&mut self.learners) {
            match &horizon.adaptation {
                None => *learner = None,
                Some(adaptation) => {
                    if !learner
                        .as_ref()
                        .is_some_and(|l| l.belongs_to(horizon, adaptation, width))
                    {
                        *learner = Some(Learner::new(horizon, adaptation));
                    }
                }
            }
        }
    }
}

impl Learner {
    /// The cloud's coefficients, and the prior around them.
    fn new(horizon: &HorizonModel, adaptation: &Adaptation) -> Learner {
        let n = horizon.coef.len() + 1;
        let mut learner = Learner {
            cloud: fingerprint(horizon, adaptation),
            coef: vec![0.0; n],
            covariance: vec![0.0; n * (n + 1) / 2],
            waiting: VecDeque::new(),
        };
        learner.start_over(horizon, adaptation);
        learner
    }

    /// Whether this learner started from `horizon`'s coefficients and has
    /// the shape it needs (a snapshot is not trusted to).
    fn belongs_to(&self, horizon: &HorizonModel, adaptation: &Adaptation, width: usize) -> bool {
        let n = width + 1;
        self.cloud == fingerprint(horizon, adaptation)
            && self.coef.len() == n
            && self.covariance.len() == n * (n + 1) / 2
            && self.waiting.iter().all(|w| w.z.len() == width)
    }

    /// The forecast change (mg/dL) for scaled features `z`: in the order of
    /// [`HorizonModel::predict`], so an untouched learner gives its bits.
    fn change(&self, z: &[f64]) -> f64 {
        let width = z.len();
        let mut change = self.coef[width];
        for (coef, z) in self.coef.iter().zip(z) {
            change += coef * z;
        }
        change
    }

    /// A reading at `timestamp_ms`: learn from the forecasts waiting for
    /// it (the first reading within the tolerance of their target); drop
    /// those it has passed without one.
    fn learn(
        &mut self,
        horizon: &HorizonModel,
        adaptation: &Adaptation,
        (timestamp_ms, value): (i64, f64),
        tolerance_ms: i64,
    ) {
        while let Some(front) = self.waiting.front() {
            if timestamp_ms < front.target_ms.saturating_sub(tolerance_ms) {
                break;
            }
            let judged = timestamp_ms <= front.target_ms.saturating_add(tolerance_ms);
            if let Some(waiting) = self.waiting.pop_front()
                && judged
            {
                let weight = horizon.loss.weight(value);
                self.update(&waiting.z, value - waiting.now, weight, horizon, adaptation);
            }
        }
    }

    /// One step of recursive least squares towards `change` for `z`, the
    /// error weighing `weight` ([`crate::Loss`]): as `weight` copies of the
    /// same forecast would.
    fn update(&mut self, z: &[f64], change: f64, weight: f64, horizon: &HorizonModel, adaptation: &Adaptation) {
        let n = self.coef.len();
        let x: Vec<f64> = z.iter().copied().chain([1.0]).collect();
        // P x, through the packed triangle: row i gives P(i, j) x_j to px[i]
        // and P(j, i) x_i to px[j], so each px[i] still adds its terms in
        // the order of j. Then 1 + xᵀ P x (at least 1 while P is positive
        // semidefinite); with a weight, 1/weight + xᵀ P x.
        let mut px = vec![0.0; n];
        let mut entries = self.covariance.iter();
        for i in 0..n {
            let mut row = px[i];
            for (j, p) in (i..n).zip(entries.by_ref()) {
                row += p * x[j];
                if j != i {
                    px[j] += p * x[i];
                }
            }
            px[i] = row;
        }
        let floor = 1.0 / weight;
        let denominator = floor + x.iter().zip(&px).map(|(x, p)| x * p).sum::<f64>();
        let error = change - self.change(z);
        if !(denominator >= floor && denominator.is_finite() && error.is_finite()) {
            self.start_over(horizon, adaptation);
            return;
        }
        // The gain P x / (1/weight + xᵀ P x): the coefficients move along it by the
        // error, and P loses gain · (P x)ᵀ.
        let gain: Vec<f64> = px.iter().map(|p| p / denominator).collect();
        for (coef, g) in self.coef.iter_mut().zip(&gain) {
            *coef += g * error;
        }
        let mut entries = self.covariance.iter_mut();
        for (i, g) in gain.iter().enumerate() {
            for (px_j, p) in px[i..].iter().zip(entries.by_ref()) {
                *p -= g * px_j;
            }
        }
        if !self.coef.iter().chain(&self.covariance).all(|v| v.is_finite()) {
            self.start_over(horizon, adaptation);
        }
    }

    /// Back to the cloud's coefficients and the prior (nothing learnt).
    fn start_over(&mut self, horizon: &HorizonModel, adaptation: &Adaptation) {
        let n = self.coef.len();
        self.coef[..n - 1].copy_from_slice(&horizon.coef);
        self.coef[n - 1] = horizon.intercept;
        self.covariance.iter_mut().for_each(|v| *v = 0.0);
        for i in 0..n {
            self.covariance[packed(n, i, i)] = adaptation.prior_variance;
        }
        self.waiting.clear();
    }

    /// Keep the forecast made at `timestamp_ms` to learn from when its
    /// reading comes: at most one per half grid step, and at most
    /// [`waiting_capacity`].
    fn remember(&mut self, timestamp_ms: i64, now: f64, z: Vec<f64>, horizon_min: u32, step_min: u32) {
        let horizon_ms = i64::from(horizon_min) * MINUTE_MS;
        let half_step_ms = i64::from(step_min) * MINUTE_MS / 2;
        let too_soon = self
            .waiting
            .back()
            .is_some_and(|last| timestamp_ms < last.target_ms.saturating_sub(horizon_ms).saturating_add(half_step_ms));
        if too_soon || self.waiting.len() >= waiting_capacity(horizon_min, step_min) {
            return;
        }
        self.waiting.push_back(Waiting {
            target_ms: timestamp_ms.saturating_add(horizon_ms),
            now,
            z,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{FORMAT, Loss, ModelKind};
    use crate::spec::FeatureSpec;

    const MIN: i64 = MINUTE_MS;

    /// A model on the last 15 minutes' changes whose coefficients are `coef`
    /// (per horizon of 30 and 60 minutes), adapting with `prior_variance`.
    fn model(coef: [f64; 3], prior_variance: Option<f64>) -> Model {
        let features = FeatureSpec {
            step_min: 5,
            lags: 3,
            averages_min: vec![],
        };
        Model {
            format: FORMAT.to_owned(),
            kind: ModelKind::Ridge,
            feature_names: features.names(),
            features,
            horizons: [30, 60]
                .into_iter()
                .map(|minutes| HorizonModel {
                    minutes,
                    intercept: 0.5,
                    mean: vec![1.0; 3],
                    scale: vec![10.0; 3],
                    coef: coef.to_vec(),
                    fit: None,
                    adaptation: prior_variance.map(|prior_variance| Adaptation {
                        prior_variance,
                        cv_rmse: 0.0,
                    }),
                    loss: Loss::SQUARED,
                })
                .collect(),
            training: None,
            evaluation: Vec::new(),
        }
    }

    /// A glucose wave: 120 ± 50 mg/dL, a period of six hours.
    fn wave(minute: i64) -> f64 {
        120.0 + 50.0 * (std::f64::consts::TAU * minute as f64 / 360.0).sin()
    }

    /// The 30-minute forecasts of `sensor` for readings of `glucose` every 5
    /// minutes over `minutes`, with their errors.
    fn run_on(
        glucose: fn(i64) -> f64,
        sensor: &mut SensorModel,
        model: &Model,
        minutes: std::ops::Range<i64>,
    ) -> Vec<(f64, f64)> {
        let (mut features, mut forecasts) = (Vec::new(), Vec::new());
        minutes
            .step_by(5)
            .map(|m| {
                assert_eq!(
                    sensor.observe(model, (m * MIN, glucose(m)), &mut features, &mut forecasts),
                    Pushed::Taken
                );
                (forecasts[0], forecasts[0] - glucose(m + 30))
            })
            .collect()
    }

    /// [`run_on`] the wave.
    fn run(sensor: &mut SensorModel, model: &Model, minutes: std::ops::Range<i64>) -> Vec<(f64, f64)> {
        run_on(wave, sensor, model, minutes)
    }

    fn rms(errors: &[(f64, f64)]) -> f64 {
        let sum: f64 = errors.iter().map(|(_, e)| e * e).sum();
        (sum / errors.len() as f64).sqrt()
    }

    #[test]
    fn until_a_forecast_is_judged_a_sensor_forecasts_the_clouds_bits() {
        let adapting = model([0.3, -0.2, 0.1], Some(1e-3));
        let fixed = model([0.3, -0.2, 0.1], None);
        let (mut a, mut b) = (SensorModel::default(), SensorModel::default());
        // Up to 25 minutes: no 30-minute forecast has met its reading yet.
        let adapted = run(&mut a, &adapting, 0..30);
        let cloud = run(&mut b, &fixed, 0..30);
        let bits = |v: &[(f64, f64)]| v.iter().map(|(f, _)| f.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&adapted), bits(&cloud));
        // Without adaptation it never moves from the cloud's.
        let later_a = run(&mut a, &adapting, 30..600);
        let later_b = run(&mut b, &fixed, 30..600);
        assert_ne!(bits(&later_a), bits(&later_b));
    }

    #[test]
    fn a_sensor_learns_what_the_cloud_gets_wrong() {
        // A sensor whose glucose climbs 0.1 mg/dL a minute, steadily: +3 in
        // 30 minutes, where the cloud's coefficients say +0.5 minus a little.
        let climb = |minute: i64| 100.0 + 0.1 * minute as f64;
        let adapting = model([0.1, 0.0, 0.0], Some(0.1));
        let mut sensor = SensorModel::default();
        let first_hours = run_on(climb, &mut sensor, &adapting, 0..30);
        let later = run_on(climb, &mut sensor, &adapting, 30..1440);
        let second_day = run_on(climb, &mut sensor, &adapting, 1440..2880);
        let (cloud, learnt) = (rms(&first_hours), rms(&second_day));
        assert!(cloud > 2.0, "{cloud}");
        assert!(
            learnt < cloud / 20.0,
            "still {learnt} mg/dL off after a day (from {cloud})"
        );
        // Closer and closer, never worse, as the judged forecasts accumulate.
        let errors: Vec<f64> = later.iter().chain(&second_day).map(|(_, e)| e.abs()).collect();
        assert!(errors.windows(2).all(|w| w[1] <= w[0] + 1e-12), "{errors:?}");
        // And without adaptation, the cloud's error stays.
        let fixed = model([0.1, 0.0, 0.0], None);
        let still = run_on(climb, &mut SensorModel::default(), &fixed, 0..2880);
        assert!(rms(&still[288..]) > 2.0, "{}", rms(&still[288..]));
    }

    #[test]
    fn a_state_made_under_another_model_starts_over() {
        let first = model([0.0; 3], Some(1e-2));
        let mut sensor = SensorModel::default();
        run(&mut sensor, &first, 0..1440);
        // A new model (new coefficients, or a new prior) is used as the
        // cloud made it: the same bits as a sensor that never adapted.
        for second in [model([0.2, 0.0, 0.0], Some(1e-2)), model([0.0; 3], Some(1e-3))] {
            let mut moved = sensor.clone();
            let mut fresh = SensorModel::resume(sensor.history.clone());
            let next = 1440..1445;
            assert_eq!(run(&mut moved, &second, next.clone()), run(&mut fresh, &second, next));
        }
        // A learner of the wrong shape (a damaged snapshot) too.
        let mut damaged = sensor.clone();
        if let Some(Some(learner)) = damaged.learners.first_mut() {
            learner.covariance.pop();
        }
        let mut fresh = SensorModel::resume(sensor.history.clone());
        assert_eq!(
            run(&mut damaged, &first, 1440..1445),
            run(&mut fresh, &first, 1440..1445)
        );
    }

    #[test]
    fn an_update_that_weighs_k_learns_as_k_copies_of_it() {
        let adapting = model([0.2, -0.1, 0.05], Some(1e-2));
        let (horizon, adaptation) = (&adapting.horizons[0], adapting.horizons[0].adaptation.as_ref().unwrap());
        let examples = [
            ([0.5, -1.0, 2.0], 4.0),
            ([1.5, 0.3, -0.7], -2.0),
            ([-0.2, 0.8, 0.1], 7.0),
        ];
        let (mut weighted, mut copied) = (Learner::new(horizon, adaptation), Learner::new(horizon, adaptation));
        for (z, change) in examples {
            weighted.update(&z, change, 3.0, horizon, adaptation);
            for _ in 0..3 {
                copied.update(&z, change, 1.0, horizon, adaptation);
            }
        }
        let close = |a: &[f64], b: &[f64]| a.iter().zip(b).all(|(a, b)| (a - b).abs() < 1e-9);
        assert!(
            close(&weighted.coef, &copied.coef),
            "{:?} vs {:?}",
            weighted.coef,
            copied.coef
        );
        assert!(close(&weighted.covariance, &copied.covariance));
        let once = {
            let mut once = Learner::new(horizon, adaptation);
            for (z, change) in examples {
                once.update(&z, change, 1.0, horizon, adaptation);
            }
            once
        };
        assert!(!close(&weighted.coef, &once.coef));
    }

    #[test]
    fn a_sensor_weighs_its_lows_as_the_model_says() {
        // The same readings, dipping below 70 every few hours; a model whose
        // loss weighs lows learns a lower intercept than one that does not.
        let dips = |minute: i64| 90.0 - 30.0 * ((minute % 240) as f64 / 240.0);
        let plain = model([0.0; 3], Some(1e-2));
        let mut weighing = plain.clone();
        weighing
            .horizons
            .iter_mut()
            .for_each(|h| h.loss = Loss::lows_weigh(10.0));
        let (mut a, mut b) = (SensorModel::default(), SensorModel::default());
        run_on(dips, &mut a, &plain, 0..2880);
        run_on(dips, &mut b, &weighing, 0..2880);
        let intercept = |s: &SensorModel| *s.learners[0].as_ref().unwrap().coef.last().unwrap();
        assert!(
            intercept(&b) < intercept(&a) - 0.5,
            "{} vs {}",
            intercept(&b),
            intercept(&a)
        );
    }

    #[test]
    fn a_numerical_breakdown_starts_over_from_the_cloud() {
        let adapting = model([0.0; 3], Some(1e-2));
        let mut sensor = SensorModel::default();
        run(&mut sensor, &adapting, 0..600);
        let cloud = [0.0, 0.0, 0.0, 0.5];
        let learner = sensor.learners[0].as_mut().unwrap();
        assert_ne!(learner.coef[..], cloud);
        learner.covariance[0] = f64::NAN;
        // The next judged forecast finds it and starts over.
        run(&mut sensor, &adapting, 600..605);
        let learner = sensor.learners[0].as_ref().unwrap();
        assert_eq!(learner.coef[..], cloud);
        assert_eq!(
            learner.covariance,
            Learner::new(&adapting.horizons[0], &adapting.horizons[0].adaptation.clone().unwrap()).covariance
        );
    }

    #[test]
    fn the_packed_covariance_is_the_full_symmetric_matrix() {
        // Every (i, j) of a 5 × 5 matrix lands in the triangle's 15 entries,
        // (i, j) and (j, i) on the same one, each entry reached.
        let n = 5;
        let mut seen = vec![0; n * (n + 1) / 2];
        for i in 0..n {
            for j in 0..n {
                assert_eq!(packed(n, i, j), packed(n, j, i));
                if i <= j {
                    seen[packed(n, i, j)] += 1;
                }
            }
        }
        assert!(seen.iter().all(|&count| count == 1), "{seen:?}");
    }

    #[test]
    fn a_burst_of_readings_keeps_few_forecasts_waiting() {
        let adapting = model([0.0; 3], Some(1e-3));
        let mut sensor = SensorModel::default();
        let (mut features, mut forecasts) = (Vec::new(), Vec::new());
        for second in 0..20_000 {
            sensor.observe(&adapting, (second * 1000, 100.0), &mut features, &mut forecasts);
            for (learner, minutes) in sensor.learners.iter().flatten().zip([30, 60]) {
                // One per half step: at most 2 per 5 minutes over the horizon.
                assert!(learner.waiting.len() <= waiting_capacity(minutes, 5));
                assert!(learner.waiting.len() <= 2 * (minutes as usize / 5) + 1);
            }
        }
    }
}
