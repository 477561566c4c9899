//! Deterministic text for alert messages.

/// `" degC"` for a unit, `""` when there is none: appended to numbers.
pub(crate) fn unit_suffix(unit: &str) -> String {
    if unit.is_empty() {
        String::new()
    } else {
        format!(" {unit}")
    }
}

/// A rate of change with an explicit sign and at most three decimals,
/// trailing zeros trimmed: `+0.6`, `-1.25`, `0`.
///
/// Least-squares slopes carry floating-point noise (`0.6000000000000001`);
/// three decimals keep the message readable and identical across platforms.
pub(crate) fn rate(per_minute: f64) -> String {
    let fixed = format!("{per_minute:.3}");
    let trimmed = if fixed.contains('.') {
        fixed.trim_end_matches('0').trim_end_matches('.')
    } else {
        fixed.as_str()
    };
    match trimmed {
        "0" | "-0" => "0".to_string(),
        text if text.starts_with('-') || !per_minute.is_finite() => text.to_string(),
        text => format!("+{text}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_signed_and_trimmed() {
        assert_eq!(rate(0.6000000000000001), "+0.6");
        assert_eq!(rate(-1.25), "-1.25");
        assert_eq!(rate(2.0), "+2");
        assert_eq!(rate(-0.0001), "0");
        assert_eq!(rate(0.0), "0");
        assert_eq!(rate(12.3456), "+12.346");
    }

    #[test]
    fn units_get_a_leading_space() {
        assert_eq!(unit_suffix(""), "");
        assert_eq!(unit_suffix("degC"), " degC");
    }
}
