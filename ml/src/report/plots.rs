//! The two figures of the report, as SVG text: a subject's forecasts against
//! its readings, and the Clarke error grid.
//!
//! Drawn with `plotters` (SVG backend only: no system fonts, text is left to
//! the viewer; four small crates). Coordinates are whole pixels and numbers
//! are printed by Rust's formatting, so the same data gives the same bytes.

use std::collections::BTreeSet;
use std::ops::Range;

use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use super::clarke::{BOUNDARIES, GRID_MAX, LABELS};

/// Why a plot could not be drawn.
#[derive(Debug, thiserror::Error)]
#[error("cannot draw the plot")]
pub struct PlotError(#[from] DrawingAreaErrorKind<std::io::Error>);

/// A chart of the report: `f64` on both axes, drawn as SVG text.
type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

const HOUR_MS: f64 = 3_600_000.0;
/// Readings further apart than this are not joined by a line.
const LINE_GAP_MS: i64 = 15 * 60_000;
/// Clarke grid points are drawn as the cells of this size (mg/dL) they fall
/// in, a row's adjacent cells as one rectangle: at the plot's scale (under
/// 3 pixels a cell) that is the scatter itself, where tens of thousands of
/// points would make the file megabytes.
const CELL_MGDL: f64 = 2.0;
const FONT: &str = "sans-serif";
const FORECAST_COLOUR: RGBColor = RGBColor(31, 119, 180);
const ALERT_COLOUR: RGBColor = RGBColor(214, 39, 40);
/// One colour per data set of the Clarke grid.
const SET_COLOURS: [RGBColor; 3] = [RGBColor(31, 119, 180), RGBColor(255, 127, 14), RGBColor(44, 160, 44)];

/// What the forecast plot shows: one sensor over a window of time.
#[derive(Debug, Clone, Copy)]
pub struct ForecastPlot<'a> {
    /// Title.
    pub title: &'a str,
    /// What hour 0 on the x axis is, in words.
    pub start_label: &'a str,
    /// `(start, end)` ms.
    pub window_ms: (i64, i64),
    /// The sensor's readings `(ms, mg/dL)`.
    pub readings: &'a [(i64, f64)],
    /// Forecasts `(target time ms, mg/dL)`.
    pub forecasts: &'a [(i64, f64)],
    /// How far ahead the forecasts are (minutes), for the legend.
    pub horizon_min: u32,
    /// Times of predicted-low alerts.
    pub alerts: &'a [i64],
}

/// The readings and the forecasts in the window (both as lines broken at
/// gaps), the 70 mg/dL line, and the predicted-low alerts as marks.
pub fn forecast_vs_actual(plot: &ForecastPlot) -> Result<String, PlotError> {
    let (start, end) = plot.window_ms;
    let inside = |ms: i64| (start..end).contains(&ms);
    let hours = |ms: i64| (ms - start) as f64 / HOUR_MS;
    let readings: Vec<(i64, f64)> = plot.readings.iter().copied().filter(|r| inside(r.0)).collect();
    let forecasts: Vec<(i64, f64)> = plot.forecasts.iter().copied().filter(|f| inside(f.0)).collect();
    let highest = readings.iter().chain(&forecasts).map(|r| r.1).fold(250.0, f64::max);
    let y_max = ((highest / 50.0).ceil() * 50.0).min(450.0);
    let span_hours = hours(end);

    let legend = SeriesLabelPosition::UpperRight;
    draw(
        (960, 420),
        plot.title,
        (0.0..span_hours, 30.0..y_max),
        legend,
        |chart| {
            let hour_label = |h: &f64| format!("{h:.0}");
            chart
                .configure_mesh()
                .x_labels(((span_hours / 6.0).round() as usize).max(2) + 1)
                .x_label_formatter(&hour_label)
                .y_label_formatter(&|v: &f64| format!("{v:.0}"))
                .x_desc(format!("hours from {}", plot.start_label))
                .y_desc("glucose (mg/dL)")
                .light_line_style(WHITE)
                .draw()?;
            chart.draw_series(LineSeries::new(
                [(0.0, 70.0), (span_hours, 70.0)],
                ALERT_COLOUR.mix(0.5),
            ))?;
            for (index, segment) in segments(&readings).enumerate() {
                let series = chart.draw_series(LineSeries::new(segment.iter().map(|r| (hours(r.0), r.1)), &BLACK))?;
                if index == 0 {
                    series
                        .label("reading")
                        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLACK));
                }
            }
            for (index, segment) in segments(&forecasts).enumerate() {
                let style = FORECAST_COLOUR.stroke_width(1);
                let series = chart.draw_series(LineSeries::new(segment.iter().map(|f| (hours(f.0), f.1)), style))?;
                if index == 0 {
                    series
                        .label(format!("forecast made {} min earlier", plot.horizon_min))
                        .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], style));
                }
            }
            let marks = plot
                .alerts
                .iter()
                .filter(|&&ms| inside(ms))
                .map(|&ms| (hours(ms), 40.0));
            chart
                .draw_series(marks.map(|at| TriangleMarker::new(at, 4, ALERT_COLOUR.filled())))?
                .label("predicted-low alert")
                .legend(|(x, y)| TriangleMarker::new((x + 10, y), 4, ALERT_COLOUR.filled()));
            Ok(())
        },
    )
}

/// A chart of `size` pixels with `title` over `x` × `y`, drawn by `body`,
/// with the legend of its labelled series at `legend`: the SVG text.
fn draw(
    size: (u32, u32),
    title: &str,
    (x, y): (Range<f64>, Range<f64>),
    legend: SeriesLabelPosition,
    body: impl FnOnce(&mut Chart) -> Result<(), PlotError>,
) -> Result<String, PlotError> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT, 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(x, y)?;
        body(&mut chart)?;
        chart
            .configure_series_labels()
            .position(legend)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .label_font((FONT, 12))
            .draw()?;
        root.present()?;
    }
    Ok(svg)
}

/// Runs of consecutive points no more than [`LINE_GAP_MS`] apart.
fn segments(points: &[(i64, f64)]) -> impl Iterator<Item = &[(i64, f64)]> {
    points.chunk_by(|a, b| b.0 - a.0 <= LINE_GAP_MS)
}

/// The Clarke error grid: per data set (a label and its `(reference,
/// forecast)` pairs), its points, with the zone boundaries and letters.
pub fn clarke_grid(title: &str, sets: &[(&str, &[(f64, f64)])]) -> Result<String, PlotError> {
    let legend = SeriesLabelPosition::Coordinate(70, 12);
    draw((620, 600), title, (0.0..GRID_MAX, 0.0..GRID_MAX), legend, |chart| {
        chart
            .configure_mesh()
            .x_labels(9)
            .y_labels(9)
            .x_label_formatter(&|v: &f64| format!("{v:.0}"))
            .y_label_formatter(&|v: &f64| format!("{v:.0}"))
            .x_desc("reading (mg/dL)")
            .y_desc("forecast (mg/dL)")
            .light_line_style(WHITE)
            .draw()?;
        for (index, (label, pairs)) in sets.iter().enumerate() {
            let colour = SET_COLOURS[index % SET_COLOURS.len()];
            chart
                .draw_series(cell_runs(pairs).map(|corners| Rectangle::new(corners, colour.mix(0.7).filled())))?
                .label(*label)
                .legend(move |(x, y)| Rectangle::new([(x + 6, y - 3), (x + 12, y + 3)], colour.mix(0.7).filled()));
        }
        for (from, to) in BOUNDARIES {
            chart.draw_series(std::iter::once(PathElement::new([from, to], BLACK.stroke_width(1))))?;
        }
        chart.draw_series(
            LABELS
                .iter()
                .map(|(zone, at)| Text::new(zone.letter(), *at, (FONT, 20).into_font().color(&BLACK))),
        )?;
        Ok(())
    })
}

/// The occupied [`CELL_MGDL`] cells, each row's adjacent ones merged, as
/// rectangles `[(reference, forecast), (reference, forecast)]` (opposite
/// corners), row by row; points beyond the grid count on its edge.
fn cell_runs(pairs: &[(f64, f64)]) -> impl Iterator<Item = [(f64, f64); 2]> {
    let last = (GRID_MAX / CELL_MGDL) as i64 - 1;
    let cell = move |v: f64| ((v / CELL_MGDL).floor() as i64).clamp(0, last);
    // (row, column): sorted by row, then column.
    let occupied: BTreeSet<(i64, i64)> = pairs.iter().map(|&(x, y)| (cell(y), cell(x))).collect();
    let mut runs: Vec<(i64, i64, i64)> = Vec::new();
    for (row, column) in occupied {
        match runs.last_mut() {
            Some((r, _, end)) if *r == row && *end + 1 == column => *end = column,
            _ => runs.push((row, column, column)),
        }
    }
    runs.into_iter().map(|(row, first, end)| {
        let edge = |cells: i64| cells as f64 * CELL_MGDL;
        [(edge(first), edge(row)), (edge(end + 1), edge(row + 1))]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn plot<'a>(readings: &'a [(i64, f64)], forecasts: &'a [(i64, f64)], alerts: &'a [i64]) -> ForecastPlot<'a> {
        ForecastPlot {
            title: "Subject 1",
            start_label: "2015-06-06 00:00 UTC",
            window_ms: (0, 48 * 60 * MIN),
            readings,
            forecasts,
            horizon_min: 30,
            alerts,
        }
    }

    #[test]
    fn the_forecast_plot_is_svg_with_its_lines_and_the_same_bytes_twice() {
        let readings: Vec<(i64, f64)> = (0..600).map(|k| (k * 5 * MIN, 100.0 + (k % 40) as f64)).collect();
        let forecasts: Vec<(i64, f64)> = readings.iter().map(|&(ms, v)| (ms + 30 * MIN, v + 1.0)).collect();
        let svg = forecast_vs_actual(&plot(&readings, &forecasts, &[60 * MIN])).unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        for text in [
            "Subject 1",
            "hours from 2015-06-06 00:00 UTC",
            "forecast made 30 min earlier",
            "predicted-low alert",
        ] {
            assert!(svg.contains(text), "{text}");
        }
        assert_eq!(
            forecast_vs_actual(&plot(&readings, &forecasts, &[60 * MIN])).unwrap(),
            svg
        );
        // Nothing in the window still draws the axes.
        assert!(
            forecast_vs_actual(&plot(&[], &[], &[]))
                .unwrap()
                .contains("glucose (mg/dL)")
        );
    }

    #[test]
    fn lines_break_at_gaps() {
        let points = [
            (0, 1.0),
            (5 * MIN, 1.0),
            (25 * MIN, 1.0),
            (30 * MIN, 1.0),
            (35 * MIN, 1.0),
        ];
        let lengths: Vec<usize> = segments(&points).map(<[_]>::len).collect();
        assert_eq!(lengths, vec![2, 3]);
    }

    #[test]
    fn the_clarke_grid_draws_the_occupied_cells_a_run_per_row() {
        // Cells (column, row): (50, 50) and (50, 50) again, (51, 50), (53, 50), (50, 75), beyond: (199, 0).
        let pairs = [
            (100.0, 100.2),
            (100.5, 101.9),
            (102.0, 100.0),
            (106.0, 101.0),
            (100.0, 150.0),
            (500.0, -3.0),
        ];
        let rectangles: Vec<[(f64, f64); 2]> = cell_runs(&pairs).collect();
        assert_eq!(
            rectangles,
            vec![
                [(398.0, 0.0), (400.0, 2.0)],
                [(100.0, 100.0), (104.0, 102.0)],
                [(106.0, 100.0), (108.0, 102.0)],
                [(100.0, 150.0), (102.0, 152.0)],
            ]
        );
        let svg = clarke_grid("Clarke", &[("set", &pairs)]).unwrap();
        assert!(svg.contains("Clarke") && svg.contains("reading (mg/dL)") && svg.contains(">\nset\n<"));
        assert_eq!(clarke_grid("Clarke", &[("set", &pairs)]).unwrap(), svg);
    }
}
