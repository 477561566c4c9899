//! What the SVG charts share: the frame (size and margins), linear scales,
//! the glucose axis with its target band, paths that break at gaps, and the
//! time axis with day ticks. Every number drawn is clamped into the frame,
//! so a hostile value moves a mark to an edge, never out of the picture.

use std::fmt::Write as _;

use maud::{Markup, html};

use super::calendar::{DAY_MS, short_label};

/// The glucose axis starts at 40 mg/dL and ends at 300 to 400 (the range
/// CGM sensors report); values beyond are drawn at the edge.
const GLUCOSE_AXIS: (f64, f64) = (40.0, 400.0);
/// The least top of the glucose axis: room above the 250 line.
const GLUCOSE_TOP_MIN: f64 = 300.0;
/// The target range, 70..=180 mg/dL, and the lines of the low and high bands.
pub(super) const TARGET: (f64, f64) = (70.0, 180.0);
const GLUCOSE_LINES: [f64; 4] = [54.0, 70.0, 180.0, 250.0];

/// The size of a chart and the margins around its plot area (SVG units).
#[derive(Debug, Clone, Copy)]
pub(super) struct Frame {
    pub width: f64,
    pub height: f64,
    pub left: f64,
    pub right: f64,
    pub top: f64,
    pub bottom: f64,
}

impl Frame {
    /// The charts' usual frame: `width` by `height`, room for labels left
    /// and below.
    pub fn new(width: f64, height: f64) -> Frame {
        Frame {
            width,
            height,
            left: 48.0,
            right: 36.0,
            top: 16.0,
            bottom: 28.0,
        }
    }

    /// Left edge of the plot area.
    pub fn x0(&self) -> f64 {
        self.left
    }

    /// Right edge of the plot area.
    pub fn x1(&self) -> f64 {
        self.width - self.right
    }

    /// Top edge of the plot area.
    pub fn y0(&self) -> f64 {
        self.top
    }

    /// Bottom edge of the plot area.
    pub fn y1(&self) -> f64 {
        self.height - self.bottom
    }

    /// The `viewBox` attribute.
    pub fn view_box(&self) -> String {
        format!("0 0 {} {}", self.width, self.height)
    }

    /// The glucose scale of this frame (bottom = low), up to `top`.
    pub fn glucose(&self, top: f64) -> Scale {
        Scale::new((GLUCOSE_AXIS.0, top), (self.y1(), self.y0()))
    }
}

/// The top of a glucose axis that shows `highest`: the next multiple of
/// 50 mg/dL, at least 300 and at most 400.
pub(super) fn glucose_top(highest: f64) -> f64 {
    if !highest.is_finite() {
        return GLUCOSE_TOP_MIN;
    }
    ((highest / 50.0).ceil() * 50.0).clamp(GLUCOSE_TOP_MIN, GLUCOSE_AXIS.1)
}

/// A linear map from data to SVG units, clamped to its domain.
#[derive(Debug, Clone, Copy)]
pub(super) struct Scale {
    domain: (f64, f64),
    range: (f64, f64),
}

impl Scale {
    /// Maps `domain` onto `range`.
    pub fn new(domain: (f64, f64), range: (f64, f64)) -> Scale {
        Scale { domain, range }
    }

    /// Whether `value` is in the domain.
    pub fn contains(&self, value: f64) -> bool {
        (self.domain.0..=self.domain.1).contains(&value)
    }

    /// Where `value` goes: clamped to the range; the middle of the range for
    /// an empty domain or a value that is not a number.
    pub fn at(&self, value: f64) -> f64 {
        let (d0, d1) = self.domain;
        let (r0, r1) = self.range;
        let span = d1 - d0;
        if !(span.is_finite() && span > 0.0) || value.is_nan() {
            return (r0 + r1) / 2.0;
        }
        let t = ((value - d0) / span).clamp(0.0, 1.0);
        r0 + t * (r1 - r0)
    }
}

/// SVG path data for a line through `points`, broken wherever a point is
/// `None` (a gap is never bridged). A point alone between gaps becomes a
/// zero-length segment, which round caps draw as a dot.
pub(super) fn line_path(points: &[Option<(f64, f64)>]) -> String {
    let mut path = String::new();
    let mut previous_was_point = false;
    for (index, point) in points.iter().enumerate() {
        let Some((x, y)) = point else {
            previous_was_point = false;
            continue;
        };
        let command = if previous_was_point { 'L' } else { 'M' };
        let _ = write!(path, "{command}{x:.1} {y:.1}");
        let next_is_point = points.get(index + 1).is_some_and(Option::is_some);
        if !previous_was_point && !next_is_point {
            path.push_str("l0 0");
        }
        previous_was_point = true;
    }
    path
}

/// SVG path data for a band (`x`, `low`, `high` per point), one closed shape
/// per run of points without a gap.
pub(super) fn band_path(points: &[Option<(f64, f64, f64)>]) -> String {
    let mut path = String::new();
    for run in points.split(Option::is_none) {
        let run: Vec<(f64, f64, f64)> = run.iter().flatten().copied().collect();
        for (index, (x, _, high)) in run.iter().enumerate() {
            let command = if index == 0 { 'M' } else { 'L' };
            let _ = write!(path, "{command}{x:.1} {high:.1}");
        }
        for (x, low, _) in run.iter().rev() {
            let _ = write!(path, "L{x:.1} {low:.1}");
        }
        if !run.is_empty() {
            path.push('Z');
        }
    }
    path
}

/// The glucose grid of `frame` up to `top`: the shaded target band, the
/// lines at 54, 70, 180 and 250 mg/dL with their labels, and the border.
pub(super) fn glucose_grid(frame: &Frame, top: f64) -> Markup {
    let y = frame.glucose(top);
    let (x0, x1) = (frame.x0(), frame.x1());
    let (target_top, target_bottom) = (y.at(TARGET.1), y.at(TARGET.0));
    html! {
        rect.plot x=(x0) y=(frame.y0()) width=(x1 - x0) height=(frame.y1() - frame.y0()) {}
        rect.target x=(x0) y=(target_top) width=(x1 - x0) height=(target_bottom - target_top) {}
        @for level in GLUCOSE_LINES {
            @let at = y.at(level);
            line class=(if level == TARGET.0 || level == TARGET.1 { "limit" } else { "grid" })
                x1=(x0) x2=(x1) y1=(at) y2=(at) {}
            // The limits of the target left, those of the "very" bands right:
            // 54 and 70 are too close to share a side.
            @if level == TARGET.0 || level == TARGET.1 {
                text x=(x0 - 6.0) y=(at + 4.0) text-anchor="end" { (level) }
            } @else {
                text x=(x1 + 6.0) y=(at + 4.0) { (level) }
            }
        }
        text x=(x0 - 6.0) y=(frame.y0() + 4.0) text-anchor="end" { (top) }
        text.unit x=(x0 - 6.0) y=(frame.y0() - 6.0) text-anchor="end" { "mg/dL" }
    }
}

/// Day ticks along a time axis `x` (ms) from `first_day` to `last_day`:
/// a line at each midnight and the day's short name in the middle of it,
/// thinned to one tick every few days so that names never overlap.
pub(super) fn day_axis(frame: &Frame, x: &Scale, first_day: i64, last_day: i64) -> Markup {
    // A label needs about 44 SVG units.
    let room = ((frame.x1() - frame.x0()) / 44.0).max(1.0) as i64;
    let days = last_day.saturating_sub(first_day).saturating_add(1).max(1);
    let step = (days / room + i64::from(days % room != 0)).max(1);
    let ticks = (0..=room).filter_map(|tick| {
        let day = first_day.checked_add(tick.checked_mul(step)?)?;
        (day <= last_day).then_some(day)
    });
    html! {
        @for day in ticks {
            // A tick outside the data would sit on the edge: left out. The
            // name goes in the middle of the part of the day shown, if wide
            // enough.
            @let midnight = day as f64 * DAY_MS as f64;
            @if x.contains(midnight) {
                line.tick x1=(x.at(midnight)) x2=(x.at(midnight)) y1=(frame.y0()) y2=(frame.y1() + 4.0) {}
            }
            @let (from, to) = (x.at(midnight), x.at(midnight + DAY_MS as f64));
            @if to - from >= 36.0 {
                text x=((from + to) / 2.0) y=(frame.y1() + 16.0) text-anchor="middle" { (short_label(day)) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_clamp_and_survive_empty_domains() {
        let scale = Scale::new((40.0, 400.0), (200.0, 20.0));
        assert_eq!(scale.at(40.0), 200.0);
        assert_eq!(scale.at(400.0), 20.0);
        assert_eq!(scale.at(1e9), 20.0);
        assert_eq!(scale.at(f64::NEG_INFINITY), 200.0);
        assert_eq!(scale.at(f64::NAN), 110.0);
        assert_eq!(Scale::new((5.0, 5.0), (0.0, 10.0)).at(5.0), 5.0);
        assert_eq!(glucose_top(180.0), 300.0);
        assert_eq!(glucose_top(301.0), 350.0);
        assert_eq!(glucose_top(1e300), 400.0);
        assert_eq!(glucose_top(f64::NAN), 300.0);
    }

    #[test]
    fn gaps_break_the_line() {
        let points = [
            Some((0.0, 1.0)),
            Some((1.0, 2.0)),
            None,
            Some((3.0, 4.0)),
            Some((4.0, 5.0)),
        ];
        assert_eq!(line_path(&points), "M0.0 1.0L1.0 2.0M3.0 4.0L4.0 5.0");
        // A lone point is a dot, not a line to its far neighbours.
        let points = [Some((0.0, 1.0)), None, Some((2.0, 2.0)), None];
        assert_eq!(line_path(&points), "M0.0 1.0l0 0M2.0 2.0l0 0");
        let band = [
            Some((0.0, 1.0, 2.0)),
            Some((1.0, 1.0, 3.0)),
            None,
            Some((5.0, 0.0, 1.0)),
        ];
        assert_eq!(band_path(&band), "M0.0 2.0L1.0 3.0L1.0 1.0L0.0 1.0ZM5.0 1.0L5.0 0.0Z");
    }
}
