//! Time in range per day: a stacked bar per daily summary in the five
//! glucose bands (`svg#tir-chart`, one `g.day[data-day]` per day), and the
//! table of the daily figures (`table#days`, one `tr.day[data-day][data-tir]`
//! per day; `data-tir` is the summary's `tir_70_180` exactly as Rust's `{}`
//! prints it, for tests that compare the page with the summaries).

use maud::{Markup, html};

use super::Day;
use super::calendar::short_label;
use super::chart::{Frame, Scale};
use super::number;

/// The five bands, bottom to top: the metric, the CSS class (its colour is
/// the `--<class>` variable of the style sheet) and the label.
pub(super) const BANDS: [(&str, &str, &str); 5] = [
    ("tbr_below_54", "very-low", "Very low (<54)"),
    ("tbr_54_69", "low", "Low (54–69)"),
    ("tir_70_180", "in-range", "In range (70–180)"),
    ("tar_181_250", "high", "High (181–250)"),
    ("tar_above_250", "very-high", "Very high (>250)"),
];

/// The heights of the five bands of `day` in a bar `height` tall: each band's
/// share of the bands' sum (a band that is not a finite non-negative number
/// counts as 0), so a day's segments fill the bar exactly; all 0 when the
/// sum is 0.
fn segments(day: &Day, height: f64) -> [f64; 5] {
    let values = BANDS.map(|(metric, _, _)| {
        let value = day.metric(metric);
        if value.is_finite() && value > 0.0 { value } else { 0.0 }
    });
    let sum: f64 = values.iter().sum();
    if !(sum.is_finite() && sum > 0.0) {
        return [0.0; 5];
    }
    values.map(|value| value / sum * height)
}

/// The stacked bars of `days` (sorted by day), with their legend.
pub(super) fn chart(days: &[Day]) -> Markup {
    let (Some(first), Some(last)) = (days.first(), days.last()) else {
        return html! { p.muted { "No daily summaries yet (a day's summary arrives when the UTC day ends)." } };
    };
    let frame = Frame::new(1100.0, 260.0);
    // One slot per calendar day from the first to the last, so that a day
    // without a summary shows as a gap.
    let slots = (last.day as f64 - first.day as f64 + 1.0).max(1.0);
    let slot = (frame.x1() - frame.x0()) / slots;
    let bar = (slot * 0.7).min(48.0);
    let label_every = (44.0 / slot).ceil().max(1.0) as i64;
    let y = Scale::new((0.0, 100.0), (frame.y1(), frame.y0()));
    html! {
        svg #tir-chart.chart viewBox=(frame.view_box()) role="img"
            aria-label="Time in glucose ranges per day, stacked" {
            rect.plot x=(frame.x0()) y=(frame.y0()) width=(frame.x1() - frame.x0())
                height=(frame.y1() - frame.y0()) {}
            @for percent in [0.0, 25.0, 50.0, 75.0, 100.0] {
                line.grid x1=(frame.x0()) x2=(frame.x1()) y1=(y.at(percent)) y2=(y.at(percent)) {}
                text x=(frame.x0() - 6.0) y=(y.at(percent) + 4.0) text-anchor="end" { (percent) "%" }
            }
            @for day in days {
                @let offset = (day.day - first.day) as f64;
                @let center = frame.x0() + (offset + 0.5) * slot;
                @let tir = day.metric("tir_70_180");
                a href={ "?day=" (day.label) } {
                    g.day data-day=(day.label) {
                        title { (day.label) ": " (number(tir, 1)) " % in range" }
                        (bar_segments(day, center - bar / 2.0, bar, &frame))
                        @if bar >= 26.0 {
                            text.bar-label x=(center) y=(frame.y0() - 2.0) text-anchor="middle" {
                                (number(tir, 0))
                            }
                        }
                    }
                }
                @if (day.day - first.day) % label_every == 0 {
                    text x=(center) y=(frame.y1() + 16.0) text-anchor="middle" { (short_label(day.day)) }
                }
            }
        }
        div.legend {
            @for (_, class, label) in BANDS.iter().rev() {
                span { i class={ "swatch " (class) } {} (label) }
            }
        }
    }
}

fn bar_segments(day: &Day, x: f64, width: f64, frame: &Frame) -> Markup {
    let heights = segments(day, frame.y1() - frame.y0());
    let mut bottom = frame.y1();
    let mut rects = Vec::with_capacity(BANDS.len());
    for ((_, class, _), height) in BANDS.iter().zip(heights) {
        bottom -= height;
        if height > 0.0 {
            rects.push((*class, bottom, height));
        }
    }
    html! {
        @for (class, top, height) in rects {
            rect class=(class) x=(x) y=(top) width=(width) height=(height) {}
        }
    }
}

/// The table of the daily figures; `selected` (a day index) is marked.
pub(super) fn table(days: &[Day], selected: Option<i64>) -> Markup {
    if days.is_empty() {
        return html! {};
    }
    html! {
        table #days {
            thead {
                tr {
                    th { "Day (UTC)" } th.num { "Readings" } th.num { "Mean mg/dL" }
                    th.num { "In range %" } th.num { "<54 %" } th.num { "54–69 %" }
                    th.num { "181–250 %" } th.num { ">250 %" } th.num { "CV %" }
                }
            }
            tbody {
                @for day in days {
                    @let tir = day.metric("tir_70_180");
                    tr.day data-day=(day.label) data-tir=(tir.to_string())
                        aria-current=[(selected == Some(day.day)).then_some("date")] {
                        td { a href={ "?day=" (day.label) } { (day.label) } }
                        td.num { (number(day.metric("n"), 0)) }
                        td.num { (number(day.metric("mean"), 0)) }
                        td.num.tir { (number(tir, 1)) }
                        td.num { (number(day.metric("tbr_below_54"), 1)) }
                        td.num { (number(day.metric("tbr_54_69"), 1)) }
                        td.num { (number(day.metric("tar_181_250"), 1)) }
                        td.num { (number(day.metric("tar_above_250"), 1)) }
                        td.num { (number(day.metric("cv"), 1)) }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::dashboard::clinical::Window;

    fn window(bands: [f64; 5]) -> Window {
        let metrics = BANDS
            .iter()
            .zip(bands)
            .map(|((metric, _, _), v)| ((*metric).to_owned(), v));
        Window {
            plugin: "glucose-monitor".into(),
            start_ms: 0,
            end_ms: 86_400_000,
            metrics: metrics.collect::<BTreeMap<_, _>>(),
        }
    }

    /// The `height` attributes of the rects of the chart of `window`.
    fn rect_heights(window: &Window) -> Vec<f64> {
        let day = Day {
            day: 0,
            label: "1970-01-01".into(),
            window,
        };
        let svg = chart(&[day]).into_string();
        svg.split("<rect class=\"")
            .skip(1)
            .filter(|rect| {
                BANDS
                    .iter()
                    .any(|(_, class, _)| rect.starts_with(&format!("{class}\"")))
            })
            .map(|rect| {
                let height = rect.split(" height=\"").nth(1).unwrap();
                height[..height.find('"').unwrap()].parse().unwrap()
            })
            .collect()
    }

    #[test]
    fn a_days_bars_fill_its_height() {
        let frame = Frame::new(1100.0, 260.0);
        let full = frame.y1() - frame.y0();
        for bands in [
            [1.5, 2.5, 70.0, 20.0, 6.0],
            [0.0, 0.0, 100.0, 0.0, 0.0],
            [0.0, 2.127659574468085, 97.34042553191489, 0.5319148936170213, 0.0],
        ] {
            let heights = rect_heights(&window(bands));
            let sum: f64 = heights.iter().sum();
            assert!(
                (sum - full).abs() < 1e-6,
                "{bands:?}: {heights:?} sum to {sum}, not {full}"
            );
            // Each band keeps its share.
            let shown: Vec<f64> = bands.iter().copied().filter(|v| *v > 0.0).collect();
            for (height, value) in heights.iter().zip(shown) {
                assert!((height / full * 100.0 - value).abs() < 1e-9);
            }
        }
        // Bands that do not sum to 100 are shares of their sum; a band that
        // is no number counts as 0; no band at all draws no bar.
        let sum: f64 = rect_heights(&window([f64::NAN, -5.0, 30.0, 30.0, f64::INFINITY]))
            .iter()
            .sum();
        assert!((sum - full).abs() < 1e-6);
        assert!(rect_heights(&window([0.0; 5])).is_empty());
    }
}
