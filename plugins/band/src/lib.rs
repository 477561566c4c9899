//! `band`: the smallest useful plugin, and the Rust twin of the Python sample
//! `plugins/band-py` (they must give byte-identical outputs).
//!
//! For each sensor it raises a warning when a reading leaves the band
//! `[low, high]` (`below-low`, `above-high`), an info alert when the readings
//! come back into it (`in-band`), and summarises each UTC hour (count, mean,
//! min, max) once a later reading or a tick at its end has closed it. A
//! reading older than the open hour is ignored. Configuration: `low`
//! (default 70) and `high` (default 180), in the sensor's unit.

use std::collections::BTreeMap;

use edgewise_sdk::time::HOUR_MS;
use edgewise_sdk::{Alert, Config, Outputs, Plugin, Reading, Severity, Summary, Wake};
use serde::{Deserialize, Serialize};

/// `low` when the configuration does not set it.
pub const DEFAULT_LOW: f64 = 70.0;
/// `high` when the configuration does not set it.
pub const DEFAULT_HIGH: f64 = 180.0;

/// The plugin: its band and the state of every sensor seen so far.
#[derive(Debug, Clone)]
pub struct Band {
    low: f64,
    high: f64,
    sensors: BTreeMap<String, SensorState>,
}

/// One sensor: where its last reading stood and its open hour.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct SensorState {
    /// The alert code of the condition the last reading was in; `None`: in band.
    outside: Option<String>,
    hour: Option<Hour>,
}

/// The figures of the open UTC hour `[start, start + 1 h)`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Hour {
    start: i64,
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
}

impl Hour {
    fn end(&self) -> i64 {
        self.start.saturating_add(HOUR_MS)
    }

    fn summary(&self, sensor: &str) -> Summary {
        Summary::new(sensor, self.start, self.end())
            .metric("count", self.count as f64)
            .metric("mean", self.sum / self.count as f64)
            .metric("min", self.min)
            .metric("max", self.max)
    }
}

/// The start of the UTC hour holding `timestamp_ms` (clamped at the start of time).
fn hour_start(timestamp_ms: i64) -> i64 {
    timestamp_ms.saturating_sub(timestamp_ms.rem_euclid(HOUR_MS))
}

/// `" mg/dL"` for a unit, `""` for none.
fn unit_suffix(unit: &str) -> String {
    if unit.is_empty() {
        String::new()
    } else {
        format!(" {unit}")
    }
}

impl Band {
    fn observe(&mut self, reading: &Reading<'_>, out: &mut Outputs) {
        let (low, high) = (self.low, self.high);
        let state = self.sensors.entry(reading.sensor.to_owned()).or_default();
        let start = hour_start(reading.timestamp_ms);
        match &mut state.hour {
            Some(hour) if start < hour.start => return,
            Some(hour) if start == hour.start => {
                hour.count += 1;
                hour.sum += reading.value;
                hour.min = hour.min.min(reading.value);
                hour.max = hour.max.max(reading.value);
            }
            open => {
                if let Some(closed) = open.take() {
                    out.summary(closed.summary(reading.sensor));
                }
                *open = Some(Hour {
                    start,
                    count: 1,
                    sum: reading.value,
                    min: reading.value,
                    max: reading.value,
                });
            }
        }
        let unit = unit_suffix(reading.unit);
        let (outside, message) = if reading.value < low {
            (Some("below-low"), format!("{}{unit} below {low}{unit}", reading.value))
        } else if reading.value > high {
            (
                Some("above-high"),
                format!("{}{unit} above {high}{unit}", reading.value),
            )
        } else {
            (None, format!("back in band at {}{unit}", reading.value))
        };
        if state.outside.as_deref() == outside {
            return;
        }
        state.outside = outside.map(str::to_owned);
        match outside {
            Some(code) => out.alert(Alert::new(reading, Severity::Warning, code, &message)),
            None => out.alert(Alert::new(reading, Severity::Info, "in-band", &message)),
        }
    }
}

impl Plugin for Band {
    edgewise_sdk::snapshot_state!(sensors);

    fn init(mut config: Config) -> Result<Self, String> {
        let low = config.f64("low", DEFAULT_LOW)?;
        let high = config.f64("high", DEFAULT_HIGH)?;
        config.finish()?;
        if low >= high {
            return Err(format!("config: low ({low}) must be below high ({high})"));
        }
        Ok(Band {
            low,
            high,
            sensors: BTreeMap::new(),
        })
    }

    fn on_readings(&mut self, readings: &[Reading<'_>], out: &mut Outputs) -> Result<(), String> {
        for reading in readings {
            self.observe(reading, out);
        }
        Ok(())
    }

    /// Close every hour that has ended by `now_ms`, sensors in sorted order.
    fn on_tick(&mut self, now_ms: i64, out: &mut Outputs) -> Result<(), String> {
        for (sensor, state) in &mut self.sensors {
            if state.hour.as_ref().is_some_and(|hour| hour.end() <= now_ms)
                && let Some(closed) = state.hour.take()
            {
                out.summary(closed.summary(sensor));
            }
        }
        Ok(())
    }

    /// At the end of the earliest open hour; idle when none is open.
    fn next_wake(&self) -> Wake {
        match self
            .sensors
            .values()
            .filter_map(|s| s.hour.as_ref().map(Hour::end))
            .min()
        {
            Some(end) => Wake::At(end),
            None => Wake::Idle,
        }
    }
}

edgewise_sdk::export_plugin!(Band);

#[cfg(test)]
mod tests {
    use super::*;

    fn run(readings: &[(i64, f64)]) -> Outputs {
        let mut band = Band::init(Config::default()).unwrap();
        let mut out = Outputs::default();
        for &(ts, value) in readings {
            band.on_readings(&[Reading::new("s", ts, value, "mg/dL")], &mut out)
                .unwrap();
        }
        out
    }

    #[test]
    fn alerts_once_per_excursion_and_on_return() {
        let out = run(&[(0, 100.0), (1, 60.5), (2, 55.0), (3, 90.0), (4, 200.0)]);
        let codes: Vec<_> = out.alerts().iter().map(|a| a.code.as_str()).collect();
        assert_eq!(codes, ["below-low", "in-band", "above-high"]);
        assert_eq!(out.alerts()[0].message, "60.5 mg/dL below 70 mg/dL");
    }

    #[test]
    fn a_later_hour_closes_the_open_one_and_late_readings_are_ignored() {
        let out = run(&[(10, 100.0), (20, 120.0), (HOUR_MS, 80.0), (30, 500.0)]);
        let summary = &out.summaries()[0];
        assert_eq!((summary.window_start_ms, summary.window_end_ms), (0, HOUR_MS));
        assert_eq!(summary.get("mean"), Some(110.0));
        assert_eq!(out.summaries().len(), 1);
        assert!(out.alerts().is_empty());
    }

    #[test]
    fn refuses_an_empty_band_and_unknown_keys() {
        assert!(Band::init(Config::from_pairs(&[("low", "200")])).is_err());
        assert!(Band::init(Config::from_pairs(&[("hgih", "200")])).is_err());
    }
}
