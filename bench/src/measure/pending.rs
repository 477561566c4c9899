//! Rows whose feature has not landed yet: they keep their place in the
//! table (a DESIGN target without a row would go unnoticed) and say so.
//! When the feature lands, replace the row with a measurement module.

use crate::suite::{Ctx, Outcome};
use crate::table::{Row, Target, Verdict};

/// The measurement.
pub fn run(_ctx: &mut Ctx) -> anyhow::Result<Outcome> {
    Ok(Outcome {
        rows: vec![
            Row::missing(
                "hot swap: readings lost during a plugin swap",
                "readings",
                Target::AtMost(0.0),
                Verdict::NotMeasured("hot swap has not landed (deployment work)".to_owned()),
            ),
            Row::missing(
                "hot swap: pause of the plugin's readings",
                "ms",
                Target::None,
                Verdict::NotMeasured("hot swap has not landed (deployment work)".to_owned()),
            ),
        ],
        details: Vec::new(),
    })
}
