//! The feature specification a model file carries.

use serde::{Deserialize, Serialize};

/// One minute in milliseconds.
pub const MINUTE_MS: i64 = 60_000;

/// Most grid points a model may look back (a day of 5-minute readings).
const MAX_LAGS: u32 = 288;
/// Most moving averages a model may use.
const MAX_AVERAGES: usize = 8;

/// What the features are made of: the sensor's sampling grid, how many grid
/// points back, and the time constants of the moving averages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureSpec {
    /// The sampling grid, in minutes (5 for the CGMs of the shipped data).
    pub step_min: u32,
    /// Grid points before now that features look at (`lags · step_min`
    /// minutes of history).
    pub lags: u32,
    /// Time constants (minutes) of the exponential moving averages whose
    /// distance from now is a feature.
    pub averages_min: Vec<u32>,
}

impl FeatureSpec {
    /// The specification of the shipped model: a 5-minute grid, the last
    /// hour, and averages over 1, 4 and 12 hours.
    pub fn standard() -> FeatureSpec {
        FeatureSpec {
            step_min: 5,
            lags: 12,
            averages_min: vec![60, 240, 720],
        }
    }

    /// The grid step in milliseconds.
    pub fn step_ms(&self) -> i64 {
        i64::from(self.step_min) * MINUTE_MS
    }

    /// How far (ms) the reading that judges a forecast may be from its
    /// target time: half the grid step, so it is the reading of that grid
    /// point.
    pub fn tolerance_ms(&self) -> i64 {
        self.step_ms() / 2
    }

    /// How many features a [`crate::History`] gives: one per lag, one per average.
    pub fn len(&self) -> usize {
        self.lags as usize + self.averages_min.len()
    }

    /// Whether there are no features at all (the last-value model).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Names of the features, in order, for people reading a model file.
    pub fn names(&self) -> Vec<String> {
        let lags = (1..=self.lags).map(|k| format!("change_since_{}min", k * self.step_min));
        let averages = self.averages_min.iter().map(|m| format!("above_average_{m}min"));
        lags.chain(averages).collect()
    }

    /// Refuse a specification no plugin could afford or make sense of.
    pub fn check(&self) -> Result<(), String> {
        if !(1..=60).contains(&self.step_min) {
            return Err(format!("step_min {} is not 1 to 60", self.step_min));
        }
        if self.lags > MAX_LAGS {
            return Err(format!("lags {} is over {MAX_LAGS}", self.lags));
        }
        if self.averages_min.len() > MAX_AVERAGES {
            return Err(format!("{} averages, at most {MAX_AVERAGES}", self.averages_min.len()));
        }
        if let Some(bad) = self.averages_min.iter().find(|m| !(1..=10_080).contains(*m)) {
            return Err(format!("an average of {bad} min is not 1 min to a week"));
        }
        Ok(())
    }
}
