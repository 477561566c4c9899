//! What the dashboard knows about the fleet ([`Fleet`]): every device's
//! latest telemetry and deployment report, every sensor's summaries and
//! alerts, and the recent alerts of the whole fleet for the live feed. Built
//! only from messages (`feed` folds them in); everything is bounded, because
//! everything comes from devices and a device may be hostile or broken.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::clinical::{SensorAlert, SensorRecord, Window};
use crate::deploy::Reported;
use crate::telemetry::Telemetry;

/// Devices kept; a message from one more is counted and dropped.
pub const MAX_DEVICES: usize = 10_000;
/// Sensors kept (all devices together); likewise.
pub const MAX_SENSORS: usize = 10_000;
/// Hourly windows kept per sensor: 92 days, the span of the longest CGM
/// report people read (90 days); older ones go first.
pub const MAX_HOURLY: usize = 92 * 24;
/// Daily windows kept per sensor.
pub const MAX_DAILY: usize = 92;
/// Alerts kept per sensor, the newest.
pub const MAX_SENSOR_ALERTS: usize = 1_000;
/// Alerts kept for the fleet's live feed, the newest.
pub const MAX_FEED_ALERTS: usize = 500;
/// Metrics kept per window; a window with more is refused.
pub const MAX_METRICS: usize = 64;
/// Longest text kept from a device (sensor ids, codes, messages), in bytes.
pub const MAX_TEXT: usize = 512;

/// One alert of the live feed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeedAlert {
    /// Arrival number at this dashboard, from 1: the server-sent event id, so
    /// a page that reconnects gets exactly what it missed.
    pub id: u64,
    /// The device, from the subject it came on.
    pub device: String,
    /// The plugin, from the subject.
    pub plugin: String,
    /// The sensor.
    pub sensor: String,
    /// When, ms since the epoch.
    pub ts: i64,
    /// `critical`, `warning` or `info`.
    pub severity: String,
    /// Code.
    pub code: String,
    /// Text for people.
    pub message: String,
    /// Value.
    pub value: Option<f64>,
}

impl FeedAlert {
    /// Sort rank of the severity: critical first.
    pub fn rank(&self) -> u8 {
        severity_rank(&self.severity)
    }
}

/// Sort rank of a severity: `critical` 0, `warning` 1, anything else 2.
pub fn severity_rank(severity: &str) -> u8 {
    match severity {
        "critical" => 0,
        "warning" => 1,
        _ => 2,
    }
}

/// One device.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Device {
    /// Its latest telemetry.
    pub telemetry: Option<Telemetry>,
    /// Its latest deployment report (the reported bucket).
    pub report: Option<Reported>,
    /// When the dashboard last heard of it (any message, or a newer report),
    /// by the device's own clock (telemetry `ts`, report `last_seen_ms`) or,
    /// for alerts and summaries, the time they arrived here; ms since the epoch.
    pub last_seen_ms: i64,
    /// Its sensors with data.
    pub sensors: Vec<String>,
}

/// Messages the dashboard did not take, by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Refused {
    /// Not JSON of the expected form.
    pub malformed: u64,
    /// The payload's `device` is not the one of its subject.
    pub wrong_device: u64,
    /// Over [`MAX_DEVICES`] or [`MAX_SENSORS`].
    pub over_limits: u64,
    /// Reports in the reported bucket that do not parse, at the last read.
    pub unreadable_reports: u64,
}

/// The fleet as the dashboard sees it.
#[derive(Debug, Default)]
pub struct Fleet {
    devices: BTreeMap<String, Device>,
    sensors: BTreeMap<(String, String), SensorRecord>,
    feed: VecDeque<FeedAlert>,
    next_alert_id: u64,
    /// What was refused.
    pub refused: Refused,
}

/// An output as it travels upstream (the envelope, `envelope.rs`).
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Envelope {
    Alert {
        device: String,
        sensor: String,
        ts: i64,
        severity: String,
        code: String,
        message: String,
        value: Option<f64>,
    },
    Summary {
        device: String,
        sensor: String,
        window_start: i64,
        window_end: i64,
        metrics: BTreeMap<String, Option<f64>>,
    },
}

/// What an upstream subject says a message is:
/// `edgewise.<device>.up.alerts.<plugin>`, `…up.summaries.<plugin>`,
/// `…up.telemetry`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upstream<'a> {
    /// An alert of `plugin` on `device`.
    Alert {
        /// Device.
        device: &'a str,
        /// Plugin.
        plugin: &'a str,
    },
    /// A summary.
    Summary {
        /// Device.
        device: &'a str,
        /// Plugin.
        plugin: &'a str,
    },
    /// Telemetry.
    Telemetry {
        /// Device.
        device: &'a str,
    },
}

impl<'a> Upstream<'a> {
    /// What `subject` carries, if it is an upstream subject.
    pub fn of(subject: &'a str) -> Option<Upstream<'a>> {
        let mut parts = subject.split('.');
        let (Some("edgewise"), Some(device), Some("up"), Some(kind)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        let plugin = parts.next();
        if parts.next().is_some() {
            return None;
        }
        match (kind, plugin) {
            ("alerts", Some(plugin)) => Some(Upstream::Alert { device, plugin }),
            ("summaries", Some(plugin)) => Some(Upstream::Summary { device, plugin }),
            ("telemetry", None) => Some(Upstream::Telemetry { device }),
            _ => None,
        }
    }
}

/// `text` cut to [`MAX_TEXT`] bytes at a character boundary.
fn bounded(mut text: String) -> String {
    if text.len() > MAX_TEXT {
        let mut end = MAX_TEXT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

impl Fleet {
    /// Take one upstream message; `now_ms` is when it arrived. Returns the
    /// alert for the live feed, if it was one.
    pub fn take(&mut self, subject: &str, payload: &[u8], now_ms: i64) -> Option<FeedAlert> {
        let Some(kind) = Upstream::of(subject) else {
            self.refused.malformed += 1;
            return None;
        };
        match kind {
            Upstream::Telemetry { device } => {
                let Ok(telemetry) = serde_json::from_slice::<Telemetry>(payload) else {
                    self.refused.malformed += 1;
                    return None;
                };
                if telemetry.device != device {
                    self.refused.wrong_device += 1;
                    return None;
                }
                let ts = telemetry.ts;
                let entry = self.device(device)?;
                // Telemetry arriving late (after an offline period, oldest
                // first) never replaces a newer one.
                if entry.telemetry.as_ref().is_none_or(|old| old.ts <= ts) {
                    entry.telemetry = Some(telemetry);
                }
                entry.last_seen_ms = entry.last_seen_ms.max(ts);
                None
            }
            Upstream::Alert { device, plugin } | Upstream::Summary { device, plugin } => {
                let Ok(envelope) = serde_json::from_slice::<Envelope>(payload) else {
                    self.refused.malformed += 1;
                    return None;
                };
                self.take_output(device, plugin, envelope, now_ms)
            }
        }
    }

    fn take_output(&mut self, device: &str, plugin: &str, envelope: Envelope, now_ms: i64) -> Option<FeedAlert> {
        let (claimed, sensor) = match &envelope {
            Envelope::Alert { device, sensor, .. } | Envelope::Summary { device, sensor, .. } => (device, sensor),
        };
        if claimed != device {
            self.refused.wrong_device += 1;
            return None;
        }
        let sensor = bounded(sensor.clone());
        let key = (device.to_owned(), sensor.clone());
        if !self.sensors.contains_key(&key) && self.sensors.len() >= MAX_SENSORS {
            self.refused.over_limits += 1;
            return None;
        }
        let entry = self.device(device)?;
        entry.last_seen_ms = entry.last_seen_ms.max(now_ms);
        if let Err(at) = entry.sensors.binary_search(&sensor) {
            entry.sensors.insert(at, sensor.clone());
        }
        let record = self.sensors.entry(key).or_insert_with(|| SensorRecord {
            device: device.to_owned(),
            sensor: sensor.clone(),
            ..SensorRecord::default()
        });
        match envelope {
            Envelope::Summary {
                window_start,
                window_end,
                metrics,
                ..
            } => {
                if metrics.len() > MAX_METRICS {
                    self.refused.malformed += 1;
                    return None;
                }
                let window = Window {
                    plugin: bounded(plugin.to_owned()),
                    start_ms: window_start,
                    end_ms: window_end,
                    metrics: metrics
                        .into_iter()
                        .filter_map(|(name, value)| Some((bounded(name), value.filter(|v| v.is_finite())?)))
                        .collect(),
                };
                match window_end.saturating_sub(window_start) {
                    crate::dashboard::HOUR_MS => insert_window(&mut record.hourly, window, MAX_HOURLY),
                    crate::dashboard::DAY_MS => insert_window(&mut record.daily, window, MAX_DAILY),
                    // Other window lengths are not shown (yet): kept nowhere.
                    _ => {}
                }
                None
            }
            Envelope::Alert {
                ts,
                severity,
                code,
                message,
                value,
                ..
            } => {
                let alert = SensorAlert {
                    plugin: bounded(plugin.to_owned()),
                    ts,
                    severity: bounded(severity),
                    code: bounded(code),
                    message: bounded(message),
                    value: value.filter(|v| v.is_finite()),
                };
                let at = record.alerts.partition_point(|a| a.ts <= ts);
                record.alerts.insert(at, alert.clone());
                if record.alerts.len() > MAX_SENSOR_ALERTS {
                    record.alerts.remove(0);
                }
                self.next_alert_id += 1;
                let feed = FeedAlert {
                    id: self.next_alert_id,
                    device: device.to_owned(),
                    plugin: alert.plugin,
                    sensor,
                    ts,
                    severity: alert.severity,
                    code: alert.code,
                    message: alert.message,
                    value: alert.value,
                };
                self.feed.push_back(feed.clone());
                if self.feed.len() > MAX_FEED_ALERTS {
                    self.feed.pop_front();
                }
                Some(feed)
            }
        }
    }

    /// Take a device's deployment report.
    pub fn take_report(&mut self, report: Reported) {
        let device = report.device.clone();
        if !crate::deploy::model::valid_name(&device) {
            self.refused.malformed += 1;
            return;
        }
        if let Some(entry) = self.device(&device) {
            entry.last_seen_ms = entry.last_seen_ms.max(report.last_seen_ms);
            entry.report = Some(report);
        }
    }

    /// The device `name`, added if there is room.
    fn device(&mut self, name: &str) -> Option<&mut Device> {
        if !self.devices.contains_key(name) {
            if self.devices.len() >= MAX_DEVICES {
                self.refused.over_limits += 1;
                return None;
            }
            self.devices.insert(name.to_owned(), Device::default());
        }
        self.devices.get_mut(name)
    }

    /// Every device, by name.
    pub fn devices(&self) -> &BTreeMap<String, Device> {
        &self.devices
    }

    /// The record of one sensor.
    pub fn sensor(&self, device: &str, sensor: &str) -> Option<&SensorRecord> {
        self.sensors.get(&(device.to_owned(), sensor.to_owned()))
    }

    /// The recent alerts of the fleet, oldest first.
    pub fn feed(&self) -> impl DoubleEndedIterator<Item = &FeedAlert> {
        self.feed.iter()
    }
}

/// Put `window` in `windows` (ascending by start, one per plugin and start:
/// a window sent again replaces the first), keeping at most `max`, the newest.
fn insert_window(windows: &mut Vec<Window>, window: Window, max: usize) {
    let at = windows.partition_point(|w| (w.start_ms, &w.plugin) < (window.start_ms, &window.plugin));
    match windows.get_mut(at) {
        Some(same) if same.start_ms == window.start_ms && same.plugin == window.plugin => *same = window,
        _ => windows.insert(at, window),
    }
    if windows.len() > max {
        windows.remove(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(device: &str, sensor: &str, ts: i64, severity: &str) -> Vec<u8> {
        serde_json::json!({"type":"alert","device":device,"plugin":"glucose-monitor","version":"1","digest":"d","seq":1,
            "sensor":sensor,"ts":ts,"severity":severity,"code":"low","message":"low","value":65.0})
        .to_string()
        .into_bytes()
    }

    fn summary(device: &str, sensor: &str, start: i64, length: i64, tir: f64) -> Vec<u8> {
        serde_json::json!({"type":"summary","device":device,"plugin":"glucose-monitor","version":"1","digest":"d","seq":1,
            "sensor":sensor,"window_start":start,"window_end":start + length,"metrics":{"mean":120.0,"tir_70_180":tir}})
        .to_string()
        .into_bytes()
    }

    #[test]
    fn subjects_say_what_a_message_is_and_nothing_else_is_taken() {
        assert_eq!(
            Upstream::of("edgewise.d1.up.alerts.p"),
            Some(Upstream::Alert {
                device: "d1",
                plugin: "p"
            })
        );
        assert_eq!(
            Upstream::of("edgewise.d1.up.telemetry"),
            Some(Upstream::Telemetry { device: "d1" })
        );
        for subject in [
            "edgewise.d1.alerts.p",
            "edgewise.d1.up.alerts",
            "edgewise.d1.up.alerts.p.q",
            "edgewise.d1.up.telemetry.x",
            "other.d1.up.alerts.p",
            "",
        ] {
            assert_eq!(Upstream::of(subject), None, "{subject}");
        }
    }

    #[test]
    fn a_device_cannot_speak_for_another_and_malformed_messages_are_counted() {
        let mut fleet = Fleet::default();
        assert!(
            fleet
                .take("edgewise.d1.up.alerts.p", &alert("d2", "s", 1, "critical"), 0)
                .is_none()
        );
        assert!(fleet.take("edgewise.d1.up.alerts.p", b"{not json", 0).is_none());
        assert!(fleet.take("edgewise.d1.up.summaries.p", b"[]", 0).is_none());
        assert!(fleet.take("edgewise.d1.up.telemetry", b"{}", 0).is_none());
        assert_eq!(fleet.refused.wrong_device, 1);
        assert_eq!(fleet.refused.malformed, 3);
        assert!(fleet.devices().is_empty());
        assert!(fleet.feed().next().is_none());
    }

    #[test]
    fn windows_are_kept_in_order_once_each_and_bounded() {
        let mut fleet = Fleet::default();
        let day = crate::dashboard::DAY_MS;
        for n in (0..MAX_DAILY as i64 + 10).rev() {
            fleet.take("edgewise.d.up.summaries.p", &summary("d", "s", n * day, day, 50.0), 0);
        }
        // Sent again with another figure: replaces, never doubles.
        fleet.take("edgewise.d.up.summaries.p", &summary("d", "s", 20 * day, day, 75.0), 0);
        let record = fleet.sensor("d", "s").unwrap();
        assert_eq!(record.daily.len(), MAX_DAILY);
        assert_eq!(record.daily[0].start_ms, 10 * day, "the oldest went first");
        assert!(record.daily.windows(2).all(|w| w[0].start_ms < w[1].start_ms));
        let twentieth = record.daily.iter().find(|w| w.start_ms == 20 * day).unwrap();
        assert_eq!(twentieth.metrics["tir_70_180"], 75.0);
        // A window of another length is not shown anywhere.
        fleet.take("edgewise.d.up.summaries.p", &summary("d", "s", 0, 7, 1.0), 0);
        assert_eq!(fleet.sensor("d", "s").unwrap().hourly.len(), 0);
    }

    #[test]
    fn sensors_alerts_and_texts_are_bounded() {
        let mut fleet = Fleet::default();
        for n in 0..MAX_SENSOR_ALERTS + 5 {
            fleet.take("edgewise.d.up.alerts.p", &alert("d", "s", n as i64, "warning"), 0);
        }
        assert_eq!(fleet.sensor("d", "s").unwrap().alerts.len(), MAX_SENSOR_ALERTS);
        assert_eq!(fleet.feed().count(), MAX_FEED_ALERTS);
        assert_eq!(
            fleet.feed().next_back().map(|a| a.id),
            Some(MAX_SENSOR_ALERTS as u64 + 5)
        );
        let long = "é".repeat(MAX_TEXT);
        fleet.take("edgewise.d.up.alerts.p", &alert("d", &long, 1, "critical"), 0);
        let shown = fleet.feed().next_back().unwrap();
        assert!(shown.sensor.len() <= MAX_TEXT && shown.sensor.chars().all(|c| c == 'é'));
        for n in 0..MAX_SENSORS + 3 {
            fleet.take("edgewise.d.up.alerts.p", &alert("d", &format!("x{n}"), 1, "info"), 0);
        }
        assert_eq!(fleet.sensors.len(), MAX_SENSORS);
        assert!(fleet.refused.over_limits >= 3);
    }

    #[test]
    fn late_telemetry_never_replaces_newer() {
        let mut fleet = Fleet::default();
        let telemetry = |ts: i64| {
            serde_json::json!({"type":"telemetry","device":"d","ts":ts,"host_version":"0.1.0","uptime_s":1.0,
                "upstream_connected":true,"outbox":{"alerts":0,"summaries":0,"telemetry":0,"dropped":0},
                "ingest":{"messages":0,"deadlettered":0},"plugins":[]})
            .to_string()
            .into_bytes()
        };
        fleet.take("edgewise.d.up.telemetry", &telemetry(2_000), 0);
        fleet.take("edgewise.d.up.telemetry", &telemetry(1_000), 0);
        let device = &fleet.devices()["d"];
        assert_eq!(device.telemetry.as_ref().map(|t| t.ts), Some(2_000));
        assert_eq!(device.last_seen_ms, 2_000);
    }
}
