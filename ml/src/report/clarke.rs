//! The Clarke error grid (Clarke, Cox, Gonder-Frederick, Carter, Pohl:
//! "Evaluating clinical accuracy of systems for self-monitoring of blood
//! glucose", Diabetes Care 10(5), 1987): each pair of a reference value and a
//! predicted one falls into a zone by what a patient would do on the
//! prediction.
//!
//! - A: within 20% of the reference, or both in the hypoglycaemic range (< 70).
//! - B: off by more than 20%, but leading to benign or no treatment.
//! - C: overcorrecting acceptable glucose levels.
//! - D: failing to detect hypo- or hyperglycaemia.
//! - E: confusing treatment of hypoglycaemia for hyperglycaemia and vice versa.
//!
//! The regions are the paper's, as commonly implemented (values in mg/dL,
//! boundaries inclusive in the order A, E, C, D, else B).

/// A zone of the grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zone {
    /// Clinically accurate.
    A,
    /// Benign errors.
    B,
    /// Overcorrection.
    C,
    /// Dangerous failure to detect.
    D,
    /// Erroneous treatment.
    E,
}

impl Zone {
    /// Every zone, in order.
    pub const ALL: [Zone; 5] = [Zone::A, Zone::B, Zone::C, Zone::D, Zone::E];

    /// The zone's letter.
    pub fn letter(self) -> &'static str {
        match self {
            Zone::A => "A",
            Zone::B => "B",
            Zone::C => "C",
            Zone::D => "D",
            Zone::E => "E",
        }
    }
}

/// The zone of a prediction of `predicted` when the reference is `reference` (mg/dL).
pub fn zone(reference: f64, predicted: f64) -> Zone {
    let (r, p) = (reference, predicted);
    if (r <= 70.0 && p <= 70.0) || (p <= 1.2 * r && p >= 0.8 * r) {
        Zone::A
    } else if (r >= 180.0 && p <= 70.0) || (r <= 70.0 && p >= 180.0) {
        Zone::E
    } else if ((70.0..=290.0).contains(&r) && p >= r + 110.0) || ((130.0..=180.0).contains(&r) && p <= 1.4 * r - 182.0)
    {
        Zone::C
    } else if (r >= 240.0 && (70.0..=180.0).contains(&p))
        || (r <= 175.0 / 3.0 && (70.0..=180.0).contains(&p))
        || ((175.0 / 3.0..=70.0).contains(&r) && p >= 1.2 * r)
    {
        Zone::D
    } else {
        Zone::B
    }
}

/// How many pairs fell into each zone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ZoneCounts([u64; 5]);

impl ZoneCounts {
    /// Count one pair.
    pub fn add(&mut self, reference: f64, predicted: f64) {
        let index = zone(reference, predicted) as usize;
        self.0[index] += 1;
    }

    /// Pairs counted.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// The share of pairs in `zone`, in percent (0 with no pair).
    pub fn percent(&self, zone: Zone) -> f64 {
        percent(self.0[zone as usize], self.total())
    }

    /// The share of pairs in zones A and B, in percent.
    pub fn percent_a_plus_b(&self) -> f64 {
        percent(self.0[Zone::A as usize] + self.0[Zone::B as usize], self.total())
    }
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}

/// The largest value the plotted grid shows (mg/dL), on both axes.
pub const GRID_MAX: f64 = 400.0;

/// The zone boundaries as line segments `((reference, predicted), (reference,
/// predicted))` over `0..=GRID_MAX`, for drawing the grid.
pub const BOUNDARIES: [((f64, f64), (f64, f64)); 12] = [
    // A: the hypoglycaemic corner and the ±20% lines.
    ((0.0, 70.0), (175.0 / 3.0, 70.0)),
    ((175.0 / 3.0, 70.0), (GRID_MAX / 1.2, GRID_MAX)),
    ((70.0, 84.0), (70.0, GRID_MAX)),
    ((70.0, 0.0), (70.0, 56.0)),
    ((70.0, 56.0), (GRID_MAX, 0.8 * GRID_MAX)),
    // C above, E and D at the upper left.
    ((0.0, 180.0), (70.0, 180.0)),
    ((70.0, 180.0), (290.0, GRID_MAX)),
    // E and D at the lower right, C below.
    ((180.0, 0.0), (180.0, 70.0)),
    ((180.0, 70.0), (GRID_MAX, 70.0)),
    ((240.0, 70.0), (240.0, 180.0)),
    ((240.0, 180.0), (GRID_MAX, 180.0)),
    ((130.0, 0.0), (180.0, 70.0)),
];

/// Where each zone's letter goes on the plotted grid `(reference, predicted)`.
pub const LABELS: [(Zone, (f64, f64)); 10] = [
    (Zone::A, (30.0, 20.0)),
    (Zone::A, (350.0, 330.0)),
    (Zone::B, (330.0, 380.0)),
    (Zone::B, (370.0, 250.0)),
    (Zone::C, (150.0, 380.0)),
    (Zone::C, (160.0, 20.0)),
    (Zone::D, (30.0, 140.0)),
    (Zone::D, (370.0, 120.0)),
    (Zone::E, (30.0, 380.0)),
    (Zone::E, (370.0, 20.0)),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_points_fall_into_their_zones() {
        let cases = [
            // A: within 20%, on both edges, and the hypoglycaemic corner.
            ((100.0, 100.0), Zone::A),
            ((100.0, 120.0), Zone::A),
            ((100.0, 80.0), Zone::A),
            ((250.0, 210.0), Zone::A),
            ((50.0, 65.0), Zone::A),
            ((65.0, 40.0), Zone::A),
            ((65.0, 75.0), Zone::A),
            // B: more than 20% off, benign.
            ((100.0, 125.0), Zone::B),
            ((100.0, 75.0), Zone::B),
            ((200.0, 300.0), Zone::B),
            ((300.0, 200.0), Zone::B),
            ((120.0, 60.0), Zone::B),
            ((80.0, 180.0), Zone::B),
            // C: overcorrection, above (p >= r + 110) and below (p <= 1.4 r - 182).
            ((100.0, 215.0), Zone::C),
            ((80.0, 195.0), Zone::C),
            ((150.0, 20.0), Zone::C),
            ((175.0, 60.0), Zone::C),
            // D: a hypo or hyper missed.
            ((50.0, 100.0), Zone::D),
            ((55.0, 100.0), Zone::D),
            ((60.0, 100.0), Zone::D),
            ((40.0, 170.0), Zone::D),
            ((65.0, 80.0), Zone::D),
            ((300.0, 100.0), Zone::D),
            ((260.0, 175.0), Zone::D),
            // E: hypo taken for hyper and the other way round.
            ((50.0, 200.0), Zone::E),
            ((65.0, 350.0), Zone::E),
            ((200.0, 50.0), Zone::E),
            ((350.0, 65.0), Zone::E),
        ];
        for ((reference, predicted), expected) in cases {
            assert_eq!(zone(reference, predicted), expected, "({reference}, {predicted})");
        }
    }

    #[test]
    fn every_boundary_segment_separates_two_zones() {
        // Just either side of the middle of each segment the zones differ:
        // the drawn grid is the classification's.
        for ((x0, y0), (x1, y1)) in BOUNDARIES {
            let (x, y) = ((x0 + x1) / 2.0, (y0 + y1) / 2.0);
            let (dx, dy) = (y1 - y0, x0 - x1);
            let length = (dx * dx + dy * dy).sqrt();
            let (nx, ny) = (dx / length * 0.5, dy / length * 0.5);
            let one = zone(x + nx, y + ny);
            let other = zone(x - nx, y - ny);
            assert_ne!(one, other, "segment ({x0}, {y0})-({x1}, {y1})");
        }
    }

    #[test]
    fn counts_give_percentages_and_a_plus_b() {
        let mut counts = ZoneCounts::default();
        assert_eq!(counts.percent_a_plus_b(), 0.0);
        for (reference, predicted) in [(100.0, 100.0), (100.0, 130.0), (100.0, 215.0), (200.0, 50.0)] {
            counts.add(reference, predicted);
        }
        assert_eq!(counts.total(), 4);
        assert_eq!(counts.percent(Zone::A), 25.0);
        assert_eq!(counts.percent(Zone::D), 0.0);
        assert_eq!(counts.percent_a_plus_b(), 50.0);
    }
}
