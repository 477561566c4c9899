//! What a replay of `glucose-forecast` with `emit_forecasts = true` wrote
//! (JSON lines, `host/src/envelope.rs`): its forecasts and its predicted-low
//! alerts, per sensor. Everything else (other summaries, other alerts) is
//! skipped.

use std::collections::BTreeMap;
use std::io::{BufRead, Read};

use serde::Deserialize;

/// The alert codes that predict a low: raised, or repeated while it holds.
pub const LOW_ALERT_CODES: [&str; 2] = ["predicted-low", "predicted-urgent-low"];
/// The longest line read (a forecast line is about 300 bytes).
const MAX_LINE_BYTES: usize = 64 * 1024;

/// Why a replay's output could not be read.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// Reading failed.
    #[error("cannot read the replay output")]
    Io(#[from] std::io::Error),
    /// A line is not an output envelope.
    #[error("line {line}: not an output of the plugin")]
    Json {
        /// 1-based line number.
        line: usize,
        /// What serde_json said.
        #[source]
        source: serde_json::Error,
    },
    /// A line is longer than any output.
    #[error("line {line}: over {MAX_LINE_BYTES} bytes")]
    TooLong {
        /// 1-based line number.
        line: usize,
    },
    /// A forecast summary that breaks the plugin's contract.
    #[error("line {line}: {problem}")]
    Forecast {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        problem: &'static str,
    },
}

/// Which plugin wrote the output: the envelope's provenance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plugin {
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// `sha256:<hex>` of its code.
    pub digest: String,
}

/// One forecast: made at a reading, for `horizon_min` later.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Forecast {
    /// The reading's timestamp (the window start).
    pub made_ms: i64,
    /// The forecast (mg/dL).
    pub value: f64,
}

/// A replay's forecasts and predicted-low alerts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Replayed {
    /// The plugin of the first line (`None` for an empty output).
    pub plugin: Option<Plugin>,
    /// Per (sensor, horizon in minutes): forecasts in time order.
    pub forecasts: BTreeMap<(String, u32), Vec<Forecast>>,
    /// Per sensor: the times of its predicted-low alerts.
    pub low_alerts: BTreeMap<String, Vec<i64>>,
}

impl Replayed {
    /// `sensor`'s forecasts `horizon_min` ahead (empty if none).
    pub fn forecasts(&self, sensor: &str, horizon_min: u32) -> &[Forecast] {
        self.forecasts
            .get(&(sensor.to_owned(), horizon_min))
            .map_or(&[], Vec::as_slice)
    }

    /// `sensor`'s predicted-low alert times (empty if none).
    pub fn low_alerts(&self, sensor: &str) -> &[i64] {
        self.low_alerts.get(sensor).map_or(&[], Vec::as_slice)
    }
}

#[derive(Deserialize)]
struct Line {
    #[serde(rename = "type")]
    kind: Kind,
    plugin: String,
    version: String,
    digest: String,
    sensor: String,
    ts: Option<i64>,
    code: Option<String>,
    window_start: Option<i64>,
    window_end: Option<i64>,
    #[serde(default)]
    metrics: BTreeMap<String, Option<f64>>,
}

#[derive(Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
enum Kind {
    Alert,
    Summary,
}

/// Read a replay's output.
pub fn read(mut input: impl BufRead) -> Result<Replayed, OutputError> {
    let mut replayed = Replayed::default();
    let mut buffer = Vec::new();
    let mut number = 0;
    loop {
        buffer.clear();
        number += 1;
        // At most one byte over the limit: a longer line is refused unread.
        let read = (&mut input)
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut buffer)?;
        if read == 0 {
            break;
        }
        if buffer.len() > MAX_LINE_BYTES {
            return Err(OutputError::TooLong { line: number });
        }
        if buffer.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let line: Line =
            serde_json::from_slice(&buffer).map_err(|source| OutputError::Json { line: number, source })?;
        take(&mut replayed, line).map_err(|problem| OutputError::Forecast { line: number, problem })?;
    }
    // The plugin forecasts each reading as it comes, so this is its order
    // already; sorted all the same, since lookups search by time.
    for forecasts in replayed.forecasts.values_mut() {
        forecasts.sort_by_key(|f| f.made_ms);
    }
    Ok(replayed)
}

fn take(replayed: &mut Replayed, line: Line) -> Result<(), &'static str> {
    replayed.plugin.get_or_insert_with(|| Plugin {
        name: line.plugin.clone(),
        version: line.version.clone(),
        digest: line.digest.clone(),
    });
    match line.kind {
        Kind::Alert => {
            let code = line.code.as_deref().unwrap_or_default();
            if LOW_ALERT_CODES.contains(&code) {
                let ts = line.ts.ok_or("a predicted-low alert without `ts`")?;
                replayed.low_alerts.entry(line.sensor).or_default().push(ts);
            }
        }
        Kind::Summary => {
            let Some(&forecast) = line.metrics.get("forecast") else {
                return Ok(());
            };
            let value = forecast.ok_or("a forecast that is not a number")?;
            let horizon = line
                .metrics
                .get("horizon_min")
                .copied()
                .flatten()
                .filter(|h| h.fract() == 0.0 && (1.0..=720.0).contains(h))
                .ok_or("a forecast without a horizon_min of 1 to 720")?;
            let (Some(start), Some(end)) = (line.window_start, line.window_end) else {
                return Err("a forecast without its window");
            };
            // Checked to be a whole number of minutes from 1 to 720 above.
            let horizon_min = horizon as u32;
            if end.checked_sub(start) != Some(i64::from(horizon_min) * 60_000) {
                return Err("a forecast whose window is not its horizon");
            }
            replayed
                .forecasts
                .entry((line.sensor, horizon_min))
                .or_default()
                .push(Forecast { made_ms: start, value });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str =
        r#""device":"replay","plugin":"glucose-forecast","version":"0.1.0","digest":"sha256:ab","seq":1"#;

    fn forecast(sensor: &str, start: i64, horizon: u32, value: &str) -> String {
        let end = start + i64::from(horizon) * 60_000;
        format!(
            r#"{{"type":"summary",{HEAD},"sensor":"{sensor}","window_start":{start},"window_end":{end},"metrics":{{"forecast":{value},"horizon_min":{horizon}.0}}}}"#
        )
    }

    fn alert(sensor: &str, ts: i64, code: &str) -> String {
        format!(
            r#"{{"type":"alert",{HEAD},"sensor":"{sensor}","ts":{ts},"severity":"warning","code":"{code}","message":"m","value":60.0}}"#
        )
    }

    #[test]
    fn forecasts_and_predicted_lows_are_kept_the_rest_skipped() {
        let lines = [
            forecast("s1", 0, 30, "101.5"),
            forecast("s1", 0, 60, "99.0"),
            r#"{"type":"summary","device":"replay","plugin":"glucose-forecast","version":"0.1.0","digest":"sha256:ab","seq":3,"sensor":"s1","window_start":0,"window_end":3600000,"metrics":{"rmse_30":12.0,"n":3.0}}"#.to_owned(),
            forecast("s2", 600_000, 30, "81.0"),
            forecast("s2", 300_000, 30, "80.0"),
            alert("s2", 300_000, "predicted-low"),
            alert("s2", 300_000, "predicted-urgent-low"),
            alert("s2", 900_000, "predicted-low-resolved"),
            alert("s1", 900_000, "low"),
            String::new(),
        ];
        let replayed = read(lines.join("\n").as_bytes()).unwrap();
        assert_eq!(
            replayed.plugin,
            Some(Plugin {
                name: "glucose-forecast".into(),
                version: "0.1.0".into(),
                digest: "sha256:ab".into()
            })
        );
        assert_eq!(
            replayed.forecasts("s1", 30),
            [Forecast {
                made_ms: 0,
                value: 101.5
            }]
        );
        assert_eq!(replayed.forecasts("s1", 60)[0].value, 99.0);
        let s2: Vec<i64> = replayed.forecasts("s2", 30).iter().map(|f| f.made_ms).collect();
        assert_eq!(s2, [300_000, 600_000], "in time order");
        assert!(replayed.forecasts("s2", 60).is_empty());
        assert_eq!(replayed.low_alerts("s2"), [300_000, 300_000]);
        assert!(replayed.low_alerts("s1").is_empty());
        assert_eq!(read(&b""[..]).unwrap(), Replayed::default());
    }

    #[test]
    fn a_malformed_output_is_refused_with_its_line() {
        let refused = |text: String, expected: &str| {
            let error = read(text.as_bytes()).unwrap_err();
            let shown = format!(
                "{error}: {}",
                std::error::Error::source(&error)
                    .map(|s| s.to_string())
                    .unwrap_or_default()
            );
            assert!(shown.contains(expected), "{shown}");
        };
        let good = forecast("s", 0, 30, "100.0");
        refused(format!("{good}\n{{"), "line 2: not an output");
        refused(
            format!("{good}\n{}", forecast("s", 0, 30, "null")),
            "line 2: a forecast that is not a number",
        );
        refused(forecast("s", 0, 30, "1").replace("30.0", "30.5"), "horizon_min");
        refused(
            forecast("s", 0, 30, "1").replace("1800000", "1800001"),
            "not its horizon",
        );
        refused(
            forecast("s", 0, 30, "1").replace(r#","window_end":1800000"#, ""),
            "without its window",
        );
        refused(format!("{good}\n{}", " ".repeat(MAX_LINE_BYTES + 1)), "line 2: over");
        refused(r#"{"type":"tick"}"#.to_owned(), "line 1");
    }
}
