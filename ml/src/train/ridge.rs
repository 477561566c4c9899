//! Ridge regression on standardised features, solved by Cholesky.
//!
//! The normal equations are at most a few hundred unknowns (one per
//! feature): a textbook Cholesky of the symmetric positive definite matrix
//! `ZᵀZ + nλI` is exact enough, deterministic, and 30 lines, where a linear
//! algebra crate would be a large dependency for one solve.

use forecast_model::{HorizonModel, Loss};

/// One training example: the features of a reading, its value, and the
/// reading at the horizon.
#[derive(Debug, Clone)]
pub struct Sample {
    /// [`forecast_model::History::features`] of the reading.
    pub features: Vec<f64>,
    /// The reading's value (mg/dL).
    pub now: f64,
    /// The reading at the horizon (mg/dL).
    pub actual: f64,
}

/// Fit `actual − now` on the standardised features with penalty `lambda`
/// per unit of weight, each sample weighing [`Loss::weight`] of its
/// `actual`. Deterministic: the same samples in the same order give the same
/// bits, and with every weight 1 the bits of the unweighted fit.
pub fn fit(samples: &[&Sample], width: usize, lambda: f64, minutes: u32, loss: Loss) -> Option<HorizonModel> {
    if samples.len() < 2 {
        return None;
    }
    let weights: Vec<f64> = samples.iter().map(|s| loss.weight(s.actual)).collect();
    let total: f64 = weights.iter().sum();
    let mut mean = vec![0.0; width];
    for (sample, w) in samples.iter().zip(&weights) {
        for (m, x) in mean.iter_mut().zip(&sample.features) {
            *m += w * x;
        }
    }
    mean.iter_mut().for_each(|m| *m /= total);
    let mut scale = vec![0.0; width];
    for (sample, w) in samples.iter().zip(&weights) {
        for ((s, x), m) in scale.iter_mut().zip(&sample.features).zip(&mean) {
            *s += w * (x - m) * (x - m);
        }
    }
    // A feature that never varies (a constant) keeps scale 1: its
    // standardised value is always 0 and its coefficient stays 0.
    scale
        .iter_mut()
        .for_each(|s| *s = if *s > 0.0 { (*s / total).sqrt() } else { 1.0 });
    let intercept = samples
        .iter()
        .zip(&weights)
        .map(|(s, w)| w * (s.actual - s.now))
        .sum::<f64>()
        / total;

    // Normal equations of the centred problem, each sample weighted:
    // (ZᵀWZ + (Σw)λI) β = ZᵀW(r − r̄).
    let mut gram = vec![0.0; width * width];
    let mut rhs = vec![0.0; width];
    let mut z = vec![0.0; width];
    for (sample, w) in samples.iter().zip(&weights) {
        for (j, zj) in z.iter_mut().enumerate() {
            *zj = (sample.features[j] - mean[j]) / scale[j];
        }
        let residual = sample.actual - sample.now - intercept;
        for i in 0..width {
            rhs[i] += w * z[i] * residual;
            for j in 0..=i {
                gram[i * width + j] += w * z[i] * z[j];
            }
        }
    }
    for i in 0..width {
        gram[i * width + i] += total * lambda;
    }
    let coef = solve_cholesky(&mut gram, &rhs, width)?;
    Some(HorizonModel {
        minutes,
        intercept,
        mean,
        scale,
        coef,
        fit: None,
        adaptation: None,
        loss,
    })
}

/// Solve `A x = b` for symmetric positive definite `A` (its lower triangle,
/// row-major, is used and overwritten by the factor). `None` if `A` is not
/// positive definite.
fn solve_cholesky(a: &mut [f64], b: &[f64], n: usize) -> Option<Vec<f64>> {
    for j in 0..n {
        let mut diagonal = a[j * n + j];
        for k in 0..j {
            diagonal -= a[j * n + k] * a[j * n + k];
        }
        if diagonal.is_nan() || diagonal <= 0.0 {
            return None;
        }
        let diagonal = diagonal.sqrt();
        a[j * n + j] = diagonal;
        for i in j + 1..n {
            let mut value = a[i * n + j];
            for k in 0..j {
                value -= a[i * n + k] * a[j * n + k];
            }
            a[i * n + j] = value / diagonal;
        }
    }
    // L y = b, then Lᵀ x = y.
    let mut y = vec![0.0; n];
    for i in 0..n {
        let mut value = b[i];
        for k in 0..i {
            value -= a[i * n + k] * y[k];
        }
        y[i] = value / a[i * n + i];
    }
    let mut x = vec![0.0; n];
    for i in (0..n).rev() {
        let mut value = y[i];
        for k in i + 1..n {
            value -= a[k * n + i] * x[k];
        }
        x[i] = value / a[i * n + i];
    }
    Some(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cholesky_solves_a_known_system() {
        // A = [[4, 2], [2, 3]], x = [1, 2] → b = [8, 8].
        let mut a = vec![4.0, 0.0, 2.0, 3.0];
        let x = solve_cholesky(&mut a, &[8.0, 8.0], 2).unwrap();
        assert!((x[0] - 1.0).abs() < 1e-12 && (x[1] - 2.0).abs() < 1e-12, "{x:?}");
        assert_eq!(solve_cholesky(&mut [0.0], &[1.0], 1), None);
    }

    #[test]
    fn without_a_penalty_an_exact_linear_relation_is_recovered() {
        // actual − now = 3 + 2·x0 − x1, on varied features.
        let samples: Vec<Sample> = (0..50)
            .map(|i| {
                let (x0, x1) = (f64::from(i % 7), f64::from((i * 3) % 11));
                Sample {
                    features: vec![x0, x1],
                    now: 100.0,
                    actual: 100.0 + 3.0 + 2.0 * x0 - x1,
                }
            })
            .collect();
        let refs: Vec<&Sample> = samples.iter().collect();
        let model = fit(&refs, 2, 0.0, 30, Loss::SQUARED).unwrap();
        for sample in &samples {
            let predicted = model.predict(sample.now, &sample.features);
            assert!(
                (predicted - sample.actual).abs() < 1e-9,
                "{predicted} vs {}",
                sample.actual
            );
        }
        // A heavy penalty leaves only the mean change.
        let flat = fit(&refs, 2, 1e12, 30, Loss::SQUARED).unwrap();
        assert!(flat.coef.iter().all(|c| c.abs() < 1e-6), "{:?}", flat.coef);
    }

    #[test]
    fn a_sample_that_weighs_k_fits_as_k_copies_of_it() {
        // Noisy data, so that weights move the fit; a third of the samples
        // end below 70 mg/dL.
        let samples: Vec<Sample> = (0..60)
            .map(|i| {
                let (x0, x1) = (f64::from(i % 7), f64::from((i * 3) % 11));
                let noise = f64::from((i * 37) % 13) - 6.0;
                Sample {
                    features: vec![x0, x1],
                    now: 80.0,
                    actual: if i % 3 == 0 {
                        60.0 + x0
                    } else {
                        80.0 + 2.0 * x0 - x1 + noise
                    },
                }
            })
            .collect();
        let loss = Loss::lows_weigh(3.0);
        let weighted = fit(&samples.iter().collect::<Vec<_>>(), 2, 0.01, 30, loss).unwrap();
        let copies: Vec<&Sample> = samples
            .iter()
            .flat_map(|s| std::iter::repeat_n(s, if s.actual < 70.0 { 3 } else { 1 }))
            .collect();
        let copied = fit(&copies, 2, 0.01, 30, Loss::SQUARED).unwrap();
        let close = |a: &[f64], b: &[f64]| a.iter().zip(b).all(|(a, b)| (a - b).abs() < 1e-9);
        assert!(
            close(&weighted.coef, &copied.coef),
            "{:?} vs {:?}",
            weighted.coef,
            copied.coef
        );
        assert!(close(&weighted.mean, &copied.mean) && close(&weighted.scale, &copied.scale));
        assert!((weighted.intercept - copied.intercept).abs() < 1e-9);
        assert_eq!(weighted.loss, loss);
        // And the weight moved it: lows pull the forecasts down.
        let plain = fit(&samples.iter().collect::<Vec<_>>(), 2, 0.01, 30, Loss::SQUARED).unwrap();
        assert!(
            weighted.intercept < plain.intercept - 1.0,
            "{} vs {}",
            weighted.intercept,
            plain.intercept
        );
    }
}
