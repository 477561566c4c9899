//! The glucose forecasting model, in one place for the trainer (`ml/`, native)
//! and the plugin (`plugins/glucose-forecast`, wasm): what a sensor's recent
//! readings become as features ([`History`]), the model file ([`Model`]) and
//! inference ([`Model::predict`]).
//!
//! Training and inference run this same code, so a forecast on the device is
//! the trainer's own prediction for the same readings. Every operation is
//! deterministic: fixed summation order, and `exp` from `libm` (the same bits
//! natively and in wasm, on any libc).
//!
//! The model is linear in features that do not depend on the glucose level
//! itself (only on its changes): the change from each grid point of the last
//! hour to now, and the distance of now from moving averages. Forecast =
//! last value + intercept + Σ coef · (feature − mean) / scale. The two
//! baselines of the evaluation (last value, linear extrapolation of the last
//! 15 minutes) are models of the same form ([`Model::last_value`],
//! [`Model::linear_extrapolation`]).
//!
//! A horizon may adapt ([`Adaptation`]): each sensor then refines the
//! cloud's coefficients to its own readings on the device
//! ([`SensorModel`]), by the same code in the trainer's evaluation.

#![deny(missing_docs)]

mod adapt;
mod history;
mod model;
mod spec;

pub use adapt::SensorModel;
pub use history::{History, Pushed, actual_at};
pub use model::{
    Adaptation, Evaluation, FORMAT, Fit, HorizonModel, Loss, MAX_LOW_WEIGHT, MAX_MODEL_BYTES, MAX_PRIOR_VARIANCE,
    Model, ModelError, ModelKind, SUBJECT_DIGEST_PREFIX, Training,
};
pub use spec::{FeatureSpec, MINUTE_MS};
