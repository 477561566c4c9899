//! The model, read from the bundle's signed asset, and the forecasts of a
//! sensor's newest reading: the trainer's own code (`forecast-model`),
//! adapting to each sensor where the model says so.

use edgewise_sdk::asset;
use forecast_model::{FeatureSpec, Model, Pushed, SensorModel};

/// The asset holding the model file (`[assets]` of `edgewise.toml`).
pub const MODEL_ASSET: &str = "model.json";
/// The horizon the alerts look at (minutes): the model must forecast it.
pub const ALERT_HORIZON_MIN: u32 = 30;

/// The model and room for the numbers of one forecast (not state: rebuilt by
/// `init` from the same asset).
#[derive(Debug, Clone)]
pub struct Forecaster {
    model: Model,
    /// The model's horizons, in minutes, in its (increasing) order.
    minutes: Vec<u32>,
    /// Position of [`ALERT_HORIZON_MIN`] in `minutes`.
    alert_horizon: usize,
    /// The features of the newest reading (reused: no allocation per reading).
    features: Vec<f64>,
    /// One forecast per horizon (reused).
    forecasts: Vec<f64>,
}

impl Forecaster {
    /// Read and check the model asset; refuse a bundle without it, a
    /// malformed model, or one without a 30-minute horizon.
    pub fn load() -> Result<Forecaster, String> {
        let bytes = asset::read(MODEL_ASSET).ok_or_else(|| {
            format!("the bundle has no asset `{MODEL_ASSET}`: glucose-forecast cannot run without its model")
        })?;
        Forecaster::from_bytes(&bytes)
    }

    /// [`Forecaster::load`] of these bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Forecaster, String> {
        let model = Model::parse(bytes).map_err(|e| format!("asset `{MODEL_ASSET}`: {e}"))?;
        let minutes: Vec<u32> = model.horizons.iter().map(|h| h.minutes).collect();
        let alert_horizon = minutes.iter().position(|&m| m == ALERT_HORIZON_MIN).ok_or_else(|| {
            format!(
                "asset `{MODEL_ASSET}`: the model forecasts {minutes:?} minutes ahead, not {ALERT_HORIZON_MIN} \
                     (the alerts need it)"
            )
        })?;
        Ok(Forecaster {
            features: Vec::with_capacity(model.features.len()),
            forecasts: Vec::with_capacity(minutes.len()),
            model,
            minutes,
            alert_horizon,
        })
    }

    /// What the model's features are made of.
    pub fn spec(&self) -> &FeatureSpec {
        &self.model.features
    }

    /// The horizons, in minutes, in the order of [`Forecaster::forecast`].
    pub fn minutes(&self) -> &[u32] {
        &self.minutes
    }

    /// Take a valid reading `(timestamp ms, mg/dL)` of the sensor whose
    /// model state is `sensor`: if it is the sensor's newest, the sensor
    /// learns from the forecasts it judges and the reading's forecasts come
    /// back, one per horizon; `None` for a reading not after the newest.
    pub fn observe(&mut self, sensor: &mut SensorModel, reading: (i64, f64)) -> Option<Forecasts<'_>> {
        if sensor.observe(&self.model, reading, &mut self.features, &mut self.forecasts) != Pushed::Taken {
            return None;
        }
        Some(Forecasts {
            values: &self.forecasts,
            minutes: &self.minutes,
            alert_horizon: self.alert_horizon,
        })
    }
}

/// The forecasts made for one reading.
#[derive(Debug, Clone, Copy)]
pub struct Forecasts<'a> {
    /// mg/dL, one per horizon.
    pub values: &'a [f64],
    /// The horizons, in minutes.
    pub minutes: &'a [u32],
    /// Position of the 30-minute horizon.
    pub alert_horizon: usize,
}

impl Forecasts<'_> {
    /// `(mg/dL, minutes ahead)` per horizon.
    pub fn iter(&self) -> impl Iterator<Item = (f64, u32)> + '_ {
        self.values.iter().copied().zip(self.minutes.iter().copied())
    }
}
