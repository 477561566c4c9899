//! Point accuracy of forecasts against the readings that followed: RMSE,
//! MAE, and the time lag.

/// Root mean square of `errors` (`None` without any).
pub fn rmse(errors: impl IntoIterator<Item = f64>) -> Option<f64> {
    let (sum, count) = errors
        .into_iter()
        .fold((0.0, 0u64), |(sum, count), e| (sum + e * e, count + 1));
    (count > 0).then(|| (sum / count as f64).sqrt())
}

/// Mean absolute value of `errors` (`None` without any).
pub fn mae(errors: impl IntoIterator<Item = f64>) -> Option<f64> {
    let (sum, count) = errors
        .into_iter()
        .fold((0.0, 0u64), |(sum, count), e| (sum + e.abs(), count + 1));
    (count > 0).then(|| sum / count as f64)
}

/// The step of the time lag, in minutes.
pub const LAG_STEP_MIN: u32 = 5;

/// One forecast for time `t + h`, with the readings at `t + h - τ` for every
/// shift `τ = 0, LAG_STEP_MIN, …, h`.
#[derive(Debug, Clone, PartialEq)]
pub struct Shifted {
    /// The forecast (mg/dL).
    pub forecast: f64,
    /// The reading at `t + h - k · LAG_STEP_MIN` minutes, for `k = 0..=h / LAG_STEP_MIN`.
    pub actual: Vec<f64>,
}

/// The time lag of a set of forecasts (minutes): the shift `τ` (a multiple of
/// [`LAG_STEP_MIN`], `0..=h`) that minimises the RMSE between each forecast
/// for `t + h` and the reading at `t + h - τ`, the smallest on a tie. A
/// forecast that merely repeats the last value has the lag `h`; a perfect one,
/// 0. `None` without forecasts. Every [`Shifted`] has the same number of
/// shifts.
pub fn time_lag(forecasts: &[Shifted]) -> Option<u32> {
    let shifts = forecasts.first()?.actual.len();
    let mut best: Option<(usize, f64)> = None;
    for k in 0..shifts {
        let errors = forecasts.iter().filter_map(|f| f.actual.get(k).map(|a| f.forecast - a));
        let Some(error) = rmse(errors) else { continue };
        if best.is_none_or(|(_, lowest)| error < lowest) {
            best = Some((k, error));
        }
    }
    best.and_then(|(k, _)| u32::try_from(k).ok()).map(|k| k * LAG_STEP_MIN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rmse_and_mae_of_hand_made_errors() {
        assert_eq!(rmse([3.0, -4.0]), Some((12.5f64).sqrt()));
        assert_eq!(mae([3.0, -4.0]), Some(3.5));
        assert_eq!(rmse([-2.0]), Some(2.0));
        assert_eq!(rmse(std::iter::empty()), None);
        assert_eq!(mae(std::iter::empty()), None);
    }

    /// A glucose curve sampled every 5 minutes, the k-th point at minute 5k.
    fn curve(k: i64) -> f64 {
        120.0 + 40.0 * (k as f64 / 7.0).sin() + 3.0 * (k % 3) as f64
    }

    /// Forecasts for 30 minutes ahead made at 5k, each equal to the curve
    /// `delay` minutes before its target time.
    fn forecasts_delayed_by(delay_min: i64) -> Vec<Shifted> {
        (20..200)
            .map(|k| {
                let target = k + 6;
                Shifted {
                    forecast: curve(target - delay_min / 5),
                    actual: (0..=6).map(|shift| curve(target - shift)).collect(),
                }
            })
            .collect()
    }

    #[test]
    fn the_lag_is_the_shift_that_fits_best() {
        assert_eq!(time_lag(&forecasts_delayed_by(0)), Some(0));
        assert_eq!(time_lag(&forecasts_delayed_by(10)), Some(10));
        // The last value: the curve at the time the forecast was made.
        assert_eq!(time_lag(&forecasts_delayed_by(30)), Some(30));
        assert_eq!(time_lag(&[]), None);
    }

    #[test]
    fn a_tie_goes_to_the_smaller_lag() {
        let flat = vec![
            Shifted {
                forecast: 100.0,
                actual: vec![100.0; 7],
            };
            3
        ];
        assert_eq!(time_lag(&flat), Some(0));
    }
}
