//! Glucose over time: the hourly means as a line, the hourly lowest and
//! highest readings as a band around it, on the glucose grid, with a tick at
//! each midnight. A missing hour breaks the line and the band: nothing is
//! drawn that was not measured.

use maud::{Markup, html};

use super::Hour;
use super::calendar::day_of;
use super::chart::{Frame, Scale, band_path, day_axis, glucose_grid, glucose_top, line_path};

/// Hours in chart order, `None` between two hours that do not touch.
fn with_gaps(hours: &[Hour]) -> Vec<Option<Hour>> {
    let mut points = Vec::with_capacity(hours.len() * 2);
    for (index, hour) in hours.iter().enumerate() {
        if index > 0 && hour.start_ms > hours[index - 1].end_ms {
            points.push(None);
        }
        points.push(Some(*hour));
    }
    points
}

/// The chart (`svg#glucose-chart`) of `hours` (sorted by start).
pub(super) fn chart(hours: &[Hour]) -> Markup {
    let frame = Frame::new(1100.0, 320.0);
    let (Some(first), Some(last)) = (hours.first(), hours.last()) else {
        return html! { p.muted { "No hourly summaries yet." } };
    };
    let x = Scale::new((first.start_ms as f64, last.end_ms as f64), (frame.x0(), frame.x1()));
    let top = glucose_top(hours.iter().map(|hour| hour.high).fold(f64::NEG_INFINITY, f64::max));
    let y = frame.glucose(top);
    let middle = |hour: &Hour| x.at((hour.start_ms as f64 + hour.end_ms as f64) / 2.0);
    let points = with_gaps(hours);
    let line: Vec<Option<(f64, f64)>> = points
        .iter()
        .map(|p| p.map(|hour| (middle(&hour), y.at(hour.mean))))
        .collect();
    let band: Vec<Option<(f64, f64, f64)>> = points
        .iter()
        .map(|p| p.map(|hour| (middle(&hour), y.at(hour.low), y.at(hour.high))))
        .collect();
    html! {
        svg #glucose-chart.chart viewBox=(frame.view_box()) role="img"
            aria-label="Hourly mean glucose over time, with the hourly range" {
            (glucose_grid(&frame, top))
            (day_axis(&frame, &x, day_of(first.start_ms), day_of(last.end_ms - 1)))
            path.range d=(band_path(&band)) {}
            path.mean d=(line_path(&line)) {}
        }
        p.caption {
            "Line: hourly mean; shaded: lowest to highest reading of the hour; green band: "
            "target 70–180 mg/dL. Times in UTC; a missing hour leaves a gap."
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dashboard::clinical::calendar::HOUR_MS;

    fn hour(index: i64, mean: f64) -> Hour {
        Hour {
            start_ms: index * HOUR_MS,
            end_ms: (index + 1) * HOUR_MS,
            mean,
            low: mean - 10.0,
            high: mean + 10.0,
        }
    }

    /// The `d` of the path of class `class` in `svg`.
    fn path_data<'a>(svg: &'a str, class: &str) -> &'a str {
        let after = svg.split(&format!("class=\"{class}\" d=\"")).nth(1).unwrap();
        &after[..after.find('"').unwrap()]
    }

    #[test]
    fn a_missing_hour_breaks_the_line() {
        let hours = [hour(0, 100.0), hour(1, 110.0), hour(3, 120.0), hour(4, 130.0)];
        let gaps: Vec<bool> = with_gaps(&hours).iter().map(Option::is_none).collect();
        assert_eq!(gaps, [false, false, true, false, false]);
        let svg = chart(&hours).into_string();
        let line = path_data(&svg, "mean");
        // Two runs, each starting with a move: hours 0-1 and 3-4.
        assert_eq!(line.matches('M').count(), 2, "{line}");
        assert_eq!(line.matches('L').count(), 2, "{line}");
        let band = path_data(&svg, "range");
        assert_eq!(band.matches('Z').count(), 2, "{band}");
    }

    #[test]
    fn contiguous_hours_make_one_line() {
        let hours: Vec<Hour> = (0..30).map(|i| hour(i, 100.0 + i as f64)).collect();
        let svg = chart(&hours).into_string();
        let line = path_data(&svg, "mean");
        assert_eq!(line.matches('M').count(), 1, "{line}");
        assert!(svg.contains("id=\"glucose-chart\""));
    }
}
