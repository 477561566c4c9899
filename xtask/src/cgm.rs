//! The recorded CGM files under `tests/data/cgm/` (iglu's CSV: a header
//! `"id","time","gl"`, time as UTC `YYYY-MM-DD HH:MM:SS`, `NA` for no value),
//! read row by row in file order; the demo and the soak each take what they
//! play from it.

use std::path::Path;

use anyhow::{Context, bail};
use time::PrimitiveDateTime;
use time::macros::format_description;

/// One row with a value.
#[derive(Debug, Clone)]
pub struct Row {
    /// The subject (`Subject 4`, `1636-69-001`): one sensor.
    pub id: String,
    /// Time, ms since the epoch.
    pub ts_ms: i64,
    /// Glucose, mg/dL.
    pub value: f64,
}

/// Every row of `path` with a value (`NA` rows left out), in file order.
pub fn rows(path: &Path) -> anyhow::Result<Vec<Row>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut lines = text.lines().enumerate();
    let header = lines.next().map(|(_, l)| l.replace('"', "")).unwrap_or_default();
    if header.trim() != "id,time,gl" {
        bail!("{}: the header is `{header}`, expected `id,time,gl`", path.display());
    }
    let time_format = format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    let mut rows = Vec::new();
    for (index, line) in lines {
        let fields: Vec<&str> = line.split(',').map(|f| f.trim().trim_matches('"')).collect();
        let [id, time, gl] = fields.as_slice() else {
            bail!("{}:{}: expected 3 fields: {line}", path.display(), index + 1);
        };
        if gl.eq_ignore_ascii_case("NA") {
            continue;
        }
        let at = PrimitiveDateTime::parse(time, &time_format)
            .with_context(|| format!("{}:{}: bad time `{time}`", path.display(), index + 1))?
            .assume_utc();
        let value: f64 = gl
            .parse()
            .with_context(|| format!("{}:{}: bad glucose `{gl}`", path.display(), index + 1))?;
        let ts_ms = i64::try_from(at.unix_timestamp_nanos() / 1_000_000)
            .with_context(|| format!("{}:{}: time out of range", path.display(), index + 1))?;
        rows.push(Row {
            id: (*id).to_owned(),
            ts_ms,
            value,
        });
    }
    Ok(rows)
}
