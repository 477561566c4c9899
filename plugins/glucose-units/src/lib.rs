//! Glucose units, shared by the glucose plugins (glucose-monitor,
//! glucose-forecast), whose rules are all in mg/dL: a sensor that reports in
//! mmol/L (most of Europe's) must be watched by the same rules, not dropped
//! as out of range (2.8 mmol/L, a dangerous low, is no valid mg/dL value).
//! The SDK stays unit-agnostic; the plugins know glucose.

use edgewise_sdk::Reading;

/// mg/dL per mmol/L of glucose: its molar mass, 180.156 g/mol, over 10.
pub const MG_DL_PER_MMOL_L: f64 = 18.0156;

/// `reading` in mg/dL: a reading in mmol/L (`mmol/L` in any case, spaces
/// around it ignored) converted; any other unit, or none, taken as mg/dL.
pub fn in_mg_dl<'a>(reading: &Reading<'a>) -> Reading<'a> {
    if reading.unit.trim().eq_ignore_ascii_case("mmol/l") {
        Reading {
            value: reading.value * MG_DL_PER_MMOL_L,
            unit: "mg/dL",
            ..*reading
        }
    } else {
        *reading
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mmol_per_litre_in_any_case_is_converted_and_anything_else_is_taken_as_mg_dl() {
        for unit in ["mmol/L", "MMOL/L", " mmol/l "] {
            let reading = Reading::new("cgm", 1, 2.8, unit);
            let converted = in_mg_dl(&reading);
            assert_eq!(converted.value, 2.8 * MG_DL_PER_MMOL_L, "{unit}");
            assert_eq!(converted.unit, "mg/dL");
            assert_eq!((converted.sensor, converted.timestamp_ms), ("cgm", 1));
        }
        for unit in ["mg/dL", "", "mmol", "mmol/dL"] {
            let reading = Reading::new("cgm", 1, 120.0, unit);
            assert_eq!(in_mg_dl(&reading), reading, "{unit}");
        }
    }
}
