//! The sensor traffic the live measurements publish: the same messages,
//! on the same subjects, to the bare baseline and to `edgewise run`.

use async_nats::Subject;
use bytes::Bytes;
use edgewise_host::replay::Recording;

/// Five minutes, the spacing of CGM readings.
pub const FIVE_MINUTES_MS: i64 = 5 * 60_000;
const DAY_MS: i64 = 86_400_000;

/// An endless sequence of sensor messages, numbered from 0.
pub trait Traffic: Send + Sync {
    /// Message number `k`: its subject and payload.
    fn message(&self, k: u64) -> (Subject, Bytes);
}

/// The payload of one reading, as sensors publish it.
pub fn payload(ts: i64, value: f64) -> Bytes {
    Bytes::from(format!(r#"{{"ts":{ts},"value":{value},"unit":"mg/dL"}}"#))
}

/// Real CGM traces: the Hall2018 recording, each patient on their own
/// subject (`sensors.cgm.<id>`), played over and over. Each pass is shifted
/// by the recording's span plus a day, so every sensor's readings stay in
/// order and five minutes apart, and the first pass starts at `base_ms`
/// (now: the readings lie ahead of the host's clock, so ticks close no
/// window early).
pub struct CgmTraffic {
    /// (sensor index, offset from the first reading, value), in recording order.
    readings: Vec<(usize, i64, f64)>,
    subjects: Vec<Subject>,
    period_ms: i64,
    base_ms: i64,
}

impl CgmTraffic {
    /// Traffic from `recording`, starting at `base_ms`.
    pub fn new(recording: &Recording, base_ms: i64) -> CgmTraffic {
        let first = recording.readings.first().map_or(0, |r| r.timestamp_ms);
        let last = recording.readings.last().map_or(0, |r| r.timestamp_ms);
        let mut names: Vec<String> = Vec::new();
        let mut readings = Vec::with_capacity(recording.readings.len());
        for reading in &recording.readings {
            let token: String = reading
                .sensor
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '-' })
                .collect();
            let index = match names.iter().position(|n| *n == token) {
                Some(index) => index,
                None => {
                    names.push(token);
                    names.len() - 1
                }
            };
            readings.push((index, reading.timestamp_ms - first, reading.value));
        }
        CgmTraffic {
            readings,
            subjects: names
                .iter()
                .map(|n| Subject::from(format!("sensors.cgm.{n}")))
                .collect(),
            period_ms: last - first + DAY_MS,
            base_ms,
        }
    }
}

impl Traffic for CgmTraffic {
    fn message(&self, k: u64) -> (Subject, Bytes) {
        let n = self.readings.len().max(1) as u64;
        let pass = (k / n) as i64;
        let (sensor, offset, value) = self.readings.get((k % n) as usize).copied().unwrap_or((0, 0, 100.0));
        let subject = self
            .subjects
            .get(sensor)
            .cloned()
            .unwrap_or_else(|| Subject::from("sensors.cgm.unknown"));
        (subject, payload(self.base_ms + pass * self.period_ms + offset, value))
    }
}

/// Traffic in which one reading in `alert_every` per sensor raises an
/// alert: `sensors` sensors in turn, each reading five minutes after its
/// sensor's previous one, 120 mg/dL except every `alert_every`-th reading of
/// a sensor at 45 mg/dL (`urgent-low`; the next reading resolves it, so the
/// next 45 raises it again). Reading `k` can be found again from an alert's
/// sensor and timestamp ([`AlarmTraffic::number_of`]).
pub struct AlarmTraffic {
    sensors: u64,
    alert_every: u64,
    subjects: Vec<Subject>,
    base_ms: i64,
}

impl AlarmTraffic {
    /// Traffic over `sensors` sensors (`sensors.cgm.lat-<i>`), from `base_ms`.
    pub fn new(sensors: u64, alert_every: u64, base_ms: i64) -> AlarmTraffic {
        let sensors = sensors.max(1);
        AlarmTraffic {
            sensors,
            alert_every: alert_every.max(1),
            subjects: (0..sensors)
                .map(|i| Subject::from(format!("sensors.cgm.lat-{i}")))
                .collect(),
            base_ms,
        }
    }

    /// Whether reading `k` is one that raises an alert (45 mg/dL).
    pub fn alerts(&self, k: u64) -> bool {
        (k / self.sensors).is_multiple_of(self.alert_every)
    }

    /// The message number of the reading of `sensor` (`cgm.lat-<i>` or
    /// `lat-<i>`) at `ts`, if it is one of this traffic's.
    pub fn number_of(&self, sensor: &str, ts: i64) -> Option<u64> {
        let index: u64 = sensor.rsplit("lat-").next()?.parse().ok()?;
        let step = ts.checked_sub(self.base_ms)?;
        if index >= self.sensors || step % FIVE_MINUTES_MS != 0 {
            return None;
        }
        Some((step / FIVE_MINUTES_MS) as u64 * self.sensors + index)
    }
}

impl Traffic for AlarmTraffic {
    fn message(&self, k: u64) -> (Subject, Bytes) {
        let round = k / self.sensors;
        let subject = self
            .subjects
            .get((k % self.sensors) as usize)
            .cloned()
            .unwrap_or_else(|| Subject::from("sensors.cgm.lat-0"));
        let value = if self.alerts(k) { 45.0 } else { 120.0 };
        (subject, payload(self.base_ms + round as i64 * FIVE_MINUTES_MS, value))
    }
}

/// Now, in milliseconds since the Unix epoch, rounded down to five minutes.
pub fn now_ms() -> i64 {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    ms - ms.rem_euclid(FIVE_MINUTES_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alarm_readings_are_found_again_from_sensor_and_time() {
        let traffic = AlarmTraffic::new(50, 10, 1_000_000_000_000);
        for k in [0, 1, 49, 50, 12_345] {
            let (subject, payload) = traffic.message(k);
            let sensor = subject.as_str().trim_start_matches("sensors.");
            let json: serde_json::Value = serde_json::from_slice(&payload).unwrap();
            let ts = json["ts"].as_i64().unwrap();
            assert_eq!(traffic.number_of(sensor, ts), Some(k));
        }
        assert_eq!(traffic.number_of("cgm.other", 1_000_000_000_000), None);
    }

    #[test]
    fn one_reading_in_alert_every_per_sensor_is_low() {
        let traffic = AlarmTraffic::new(2, 3, 0);
        let value = |k| {
            let json: serde_json::Value = serde_json::from_slice(&traffic.message(k).1).unwrap();
            json["value"].as_f64().unwrap()
        };
        let values: Vec<f64> = (0..8).map(value).collect();
        assert_eq!(values, [45.0, 45.0, 120.0, 120.0, 120.0, 120.0, 45.0, 45.0]);
        assert!(traffic.alerts(6) && !traffic.alerts(5));
    }
}
