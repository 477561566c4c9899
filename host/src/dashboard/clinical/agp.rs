//! The daily pattern (AGP-style): for each hour of the UTC day, the 5th to
//! 95th and 25th to 75th percentile bands and the median, taken across days.
//! The page has only hourly summaries, not readings, so these are the
//! percentiles of hourly means (narrower than an AGP of raw readings); the
//! caption says so.

use maud::{Markup, html};

use super::Hour;
use super::calendar::hour_of_day;
use super::chart::{Frame, Scale, band_path, glucose_grid, glucose_top, line_path};

/// An hour of day needs this many hourly means to have percentiles.
const MIN_VALUES: usize = 2;

/// The `p`th percentile (`p` in 0..=100, clamped) of `sorted` (ascending,
/// finite values) by linear interpolation between order statistics: the
/// rank is `h = (n - 1) p / 100` and the value `x[⌊h⌋] + (h - ⌊h⌋)
/// (x[⌊h⌋ + 1] - x[⌊h⌋])`. This is numpy's default (`method="linear"`,
/// Hyndman and Fan's type 7). `None` for no values.
pub(super) fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    let p = if p.is_nan() { 50.0 } else { p.clamp(0.0, 100.0) };
    let rank = last as f64 * p / 100.0;
    let below = (rank.floor() as usize).min(last);
    let above = (below + 1).min(last);
    let fraction = rank - below as f64;
    Some(sorted[below] + fraction * (sorted[above] - sorted[below]))
}

/// The percentiles of one hour of day.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Profile {
    /// 5th, 25th, 50th, 75th, 95th.
    p: [f64; 5],
}

/// The profile of each hour of day (0..=23) that has at least
/// [`MIN_VALUES`] hourly means.
fn profiles(hours: &[Hour]) -> [Option<Profile>; 24] {
    let mut by_hour: [Vec<f64>; 24] = std::array::from_fn(|_| Vec::new());
    for hour in hours {
        by_hour[hour_of_day(hour.start_ms)].push(hour.mean);
    }
    by_hour.map(|mut means| {
        if means.len() < MIN_VALUES {
            return None;
        }
        means.sort_by(f64::total_cmp);
        let at = |p: f64| percentile(&means, p).unwrap_or(f64::NAN);
        Some(Profile {
            p: [at(5.0), at(25.0), at(50.0), at(75.0), at(95.0)],
        })
    })
}

/// The chart (`svg#agp-chart`) of `hours`, with its caption.
pub(super) fn chart(hours: &[Hour]) -> Markup {
    let profiles = profiles(hours);
    if profiles.iter().all(Option::is_none) {
        return html! {
            p.muted { "Not enough data yet: each hour of the day needs hourly means from two days." }
        };
    }
    let frame = Frame::new(1100.0, 320.0);
    let x = Scale::new((0.0, 24.0), (frame.x0(), frame.x1()));
    let highest = profiles.iter().flatten().map(|profile| profile.p[4]);
    let top = glucose_top(highest.fold(f64::NEG_INFINITY, f64::max));
    let y = frame.glucose(top);
    let at = |hour: usize| x.at(hour as f64 + 0.5);
    let band = |low: usize, high: usize| {
        let points: Vec<_> = profiles
            .iter()
            .enumerate()
            .map(|(hour, profile)| profile.map(|pr| (at(hour), y.at(pr.p[low]), y.at(pr.p[high]))))
            .collect();
        band_path(&points)
    };
    let median: Vec<_> = profiles
        .iter()
        .enumerate()
        .map(|(hour, profile)| profile.map(|pr| (at(hour), y.at(pr.p[2]))))
        .collect();
    html! {
        svg #agp-chart.chart viewBox=(frame.view_box()) role="img"
            aria-label="Daily glucose pattern: percentiles of hourly means by hour of day" {
            (glucose_grid(&frame, top))
            @for tick in (0..=24).step_by(3) {
                @let tick_x = x.at(f64::from(tick));
                line.tick x1=(tick_x) x2=(tick_x) y1=(frame.y0()) y2=(frame.y1() + 4.0) {}
                text x=(tick_x) y=(frame.y1() + 16.0) text-anchor="middle" { (format!("{tick:02}:00")) }
            }
            path.outer d=(band(0, 4)) {}
            path.inner d=(band(1, 3)) {}
            path.median d=(line_path(&median)) {}
        }
        p.caption {
            "Percentiles of hourly means by hour of day (UTC), across days: "
            "light band 5th–95th, dark band 25th–75th, line the median. "
            "Built from hourly summaries, not from raw readings; an hour with fewer than "
            (MIN_VALUES) " values is left out."
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dashboard::clinical::calendar::{DAY_MS, HOUR_MS};

    #[test]
    fn percentiles_interpolate_like_numpy() {
        // Reference values: numpy.percentile(values, p) (method="linear").
        let cases: [(&[f64], f64, f64); 9] = [
            (&[1.0, 2.0, 3.0, 4.0], 25.0, 1.75),
            (&[1.0, 2.0, 3.0, 4.0], 50.0, 2.5),
            (&[1.0, 2.0, 3.0, 4.0, 5.0], 50.0, 3.0),
            (&[10.0, 20.0], 5.0, 10.5),
            (&[10.0, 20.0], 95.0, 19.5),
            (&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0], 95.0, 9.55),
            (&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0], 5.0, 1.45),
            (&[7.0], 75.0, 7.0),
            (&[2.0, 4.0, 8.0], 100.0, 8.0),
        ];
        for (values, p, expected) in cases {
            let got = percentile(values, p).unwrap();
            assert!((got - expected).abs() < 1e-9, "{values:?} p{p}: {got} != {expected}");
        }
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[1.0, 3.0], f64::NAN), Some(2.0));
        assert_eq!(percentile(&[1.0, 3.0], 400.0), Some(3.0));
    }

    fn hour(day: i64, hour_of_day: i64, mean: f64) -> Hour {
        let start_ms = day * DAY_MS + hour_of_day * HOUR_MS;
        Hour {
            start_ms,
            end_ms: start_ms + HOUR_MS,
            mean,
            low: mean,
            high: mean,
        }
    }

    #[test]
    fn hours_with_too_few_values_are_left_out() {
        let hours = [
            hour(0, 8, 100.0),
            hour(1, 8, 200.0),
            hour(2, 8, 150.0),
            hour(0, 9, 90.0),
        ];
        let profiles = profiles(&hours);
        assert_eq!(profiles[8].unwrap().p[2], 150.0);
        assert_eq!(profiles[8].unwrap().p[0], 105.0);
        assert!(profiles[9].is_none(), "one value is not a distribution");
        assert!(profiles[10].is_none());
        let svg = chart(&hours).into_string();
        assert!(svg.contains("id=\"agp-chart\""));
        assert!(svg.contains("Percentiles of hourly means"));
    }
}
