//! What the dashboard knows about the fleet ([`Fleet`]): every device's
//! latest telemetry and deployment report, every sensor's summaries and
//! alerts, and the recent alerts of the whole fleet for the live feed. Built
//! only from messages (`feed` folds them in); everything is bounded, because
//! everything comes from devices and a device may be hostile or broken.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::clinical::{SensorAlert, SensorRecord, Window};
use crate::deploy::Reported;
use crate::outbox::wall_ms;
use crate::telemetry::Telemetry;

/// Devices kept; a message from one more is counted and not kept (an alert
/// still reaches the live feed).
pub const MAX_DEVICES: usize = 10_000;
/// Sensors kept (all devices together); a new one beyond takes the place of
/// the one least recently heard of.
pub const MAX_SENSORS: usize = 10_000;
/// Sensors kept per device; a new one beyond takes the place of the
/// device's own least recently heard of, so that one device (a plugin
/// making up sensor ids) cannot push out the sensors of all the others.
pub const MAX_SENSORS_PER_DEVICE: usize = MAX_SENSORS / 10;
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

/// The id of an alert of the live feed (its server-sent event id), written
/// `<epoch>-<seq>`: the start of the dashboard that took it
/// ([`Fleet::epoch`]) and its arrival number since, from 1. Arrival numbers
/// alone start again at 1 after a restart, and would name alerts a page
/// open across it already shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AlertId {
    /// The dashboard's start.
    pub epoch: u64,
    /// Arrival number in that start, from 1.
    pub seq: u64,
}

/// A text that is not an [`AlertId`].
#[derive(Debug, thiserror::Error)]
#[error("not an alert id (`<epoch>-<number>`)")]
pub struct NotAnAlertId;

impl fmt::Display for AlertId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.epoch, self.seq)
    }
}

impl FromStr for AlertId {
    type Err = NotAnAlertId;

    fn from_str(text: &str) -> Result<AlertId, NotAnAlertId> {
        let (epoch, seq) = text.split_once('-').ok_or(NotAnAlertId)?;
        Ok(AlertId {
            epoch: epoch.parse().map_err(|_| NotAnAlertId)?,
            seq: seq.parse().map_err(|_| NotAnAlertId)?,
        })
    }
}

impl Serialize for AlertId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for AlertId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<AlertId, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// One alert of the live feed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeedAlert {
    /// Its id, so a page that reconnects gets exactly what it missed.
    pub id: AlertId,
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
    /// Its sensors with data, by name.
    pub sensors: Vec<String>,
    /// The same by when last heard of (arrival number): the least recently
    /// heard of first.
    sensors_seen: BTreeMap<u64, String>,
}

/// Messages the dashboard did not take, by reason, and what it let go.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Refused {
    /// Not JSON of the expected form.
    pub malformed: u64,
    /// The payload's `device` is not the one of its subject.
    pub wrong_device: u64,
    /// From a device beyond [`MAX_DEVICES`] (its alerts still reach the
    /// live feed).
    pub over_limits: u64,
    /// Reports in the reported bucket that do not parse, at the last read.
    pub unreadable_reports: u64,
    /// Sensors whose record (summaries and alerts) was let go for a new
    /// sensor, beyond [`MAX_SENSORS`] or [`MAX_SENSORS_PER_DEVICE`].
    pub evicted_sensors: u64,
}

/// A device and a sensor.
type SensorKey = (String, String);

/// A sensor's record, and when it was last heard of.
#[derive(Debug)]
struct Kept {
    record: SensorRecord,
    /// Arrival number of its latest output.
    seen: u64,
}

/// The fleet as the dashboard sees it.
#[derive(Debug)]
pub struct Fleet {
    devices: BTreeMap<String, Device>,
    sensors: BTreeMap<SensorKey, Kept>,
    /// The sensors by when last heard of: the least recently heard of first.
    sensors_seen: BTreeMap<u64, SensorKey>,
    /// Outputs taken (an arrival number): when each sensor was last heard of,
    /// by arrival here, never by a plugin's clock.
    outputs: u64,
    feed: VecDeque<FeedAlert>,
    epoch: u64,
    next_alert_id: u64,
    /// What was refused.
    pub refused: Refused,
}

impl Default for Fleet {
    /// A fleet with nothing yet, its alert ids in the epoch of now (ms since
    /// 1970): a restarted dashboard starts a millisecond later at least.
    fn default() -> Fleet {
        Fleet::with_epoch(u64::try_from(wall_ms()).unwrap_or_default())
    }
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
    /// A fleet with nothing yet, its alert ids in `epoch` (see [`AlertId`]):
    /// a number no other start of the dashboard used.
    pub fn with_epoch(epoch: u64) -> Fleet {
        Fleet {
            devices: BTreeMap::new(),
            sensors: BTreeMap::new(),
            sensors_seen: BTreeMap::new(),
            outputs: 0,
            feed: VecDeque::new(),
            epoch,
            next_alert_id: 0,
            refused: Refused::default(),
        }
    }

    /// The epoch of this start's alert ids.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

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
        let plugin = bounded(plugin.to_owned());
        match envelope {
            Envelope::Summary {
                window_start,
                window_end,
                metrics,
                ..
            } => {
                // Refused before anything is kept: it makes no room.
                if metrics.len() > MAX_METRICS {
                    self.refused.malformed += 1;
                    return None;
                }
                let window = Window {
                    plugin,
                    start_ms: window_start,
                    end_ms: window_end,
                    metrics: metrics
                        .into_iter()
                        .filter_map(|(name, value)| Some((bounded(name), value.filter(|v| v.is_finite())?)))
                        .collect(),
                };
                let record = self.record(device, &sensor, now_ms)?;
                match window_end.saturating_sub(window_start) {
                    crate::dashboard::HOUR_MS => insert_window(&mut record.hourly, window, MAX_HOURLY, now_ms),
                    crate::dashboard::DAY_MS => insert_window(&mut record.daily, window, MAX_DAILY, now_ms),
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
                self.next_alert_id += 1;
                let alert = SensorAlert {
                    plugin,
                    ts,
                    severity: bounded(severity),
                    code: bounded(code),
                    message: bounded(message),
                    value: value.filter(|v| v.is_finite()),
                    arrival: self.next_alert_id,
                };
                let feed = FeedAlert {
                    id: AlertId {
                        epoch: self.epoch,
                        seq: self.next_alert_id,
                    },
                    device: device.to_owned(),
                    plugin: alert.plugin.clone(),
                    sensor: sensor.clone(),
                    ts,
                    severity: alert.severity.clone(),
                    code: alert.code.clone(),
                    message: alert.message.clone(),
                    value: alert.value,
                };
                // The live feed whatever else: a clinician sees the alert even
                // when its sensor's record cannot be kept.
                self.feed.push_back(feed.clone());
                if self.feed.len() > MAX_FEED_ALERTS {
                    self.feed.pop_front();
                }
                if let Some(record) = self.record(device, &sensor, now_ms) {
                    insert_alert(&mut record.alerts, alert);
                }
                Some(feed)
            }
        }
    }

    /// The record of `sensor` of `device`, heard of now (at `now_ms`): made if
    /// new, in the place of the least recently heard of sensor of the device
    /// (at [`MAX_SENSORS_PER_DEVICE`]) or else of the fleet (at
    /// [`MAX_SENSORS`]). `None` if the device cannot be kept.
    fn record(&mut self, device: &str, sensor: &str, now_ms: i64) -> Option<&mut SensorRecord> {
        let entry = self.device(device)?;
        entry.last_seen_ms = entry.last_seen_ms.max(now_ms);
        self.outputs += 1;
        let seen = self.outputs;
        let key = (device.to_owned(), sensor.to_owned());
        if let Some(kept) = self.sensors.get_mut(&key) {
            self.sensors_seen.remove(&kept.seen);
            self.sensors_seen.insert(seen, key.clone());
            if let Some(entry) = self.devices.get_mut(device) {
                entry.sensors_seen.remove(&kept.seen);
                entry.sensors_seen.insert(seen, sensor.to_owned());
            }
            kept.seen = seen;
        } else {
            let own = self.devices.get(device);
            let evicted = if own.is_some_and(|entry| entry.sensors.len() >= MAX_SENSORS_PER_DEVICE) {
                own.and_then(|entry| entry.sensors_seen.first_key_value())
                    .map(|(_, oldest)| (device.to_owned(), oldest.clone()))
            } else if self.sensors.len() >= MAX_SENSORS {
                self.sensors_seen.first_key_value().map(|(_, oldest)| oldest.clone())
            } else {
                None
            };
            if let Some(evicted) = evicted {
                self.forget(&evicted);
            }
            if let Some(entry) = self.devices.get_mut(device) {
                if let Err(at) = entry.sensors.binary_search_by(|name| name.as_str().cmp(sensor)) {
                    entry.sensors.insert(at, sensor.to_owned());
                }
                entry.sensors_seen.insert(seen, sensor.to_owned());
            }
            self.sensors_seen.insert(seen, key.clone());
            let record = SensorRecord {
                device: device.to_owned(),
                sensor: sensor.to_owned(),
                ..SensorRecord::default()
            };
            self.sensors.insert(key.clone(), Kept { record, seen });
        }
        self.sensors.get_mut(&key).map(|kept| &mut kept.record)
    }

    /// Let the record of a sensor go (counted).
    fn forget(&mut self, key: &SensorKey) {
        let Some(kept) = self.sensors.remove(key) else {
            return;
        };
        self.refused.evicted_sensors += 1;
        tracing::debug!(device = %key.0, sensor = %key.1, "a sensor's record let go for a new sensor");
        self.sensors_seen.remove(&kept.seen);
        if let Some(entry) = self.devices.get_mut(&key.0) {
            entry.sensors_seen.remove(&kept.seen);
            if let Ok(at) = entry.sensors.binary_search(&key.1) {
                entry.sensors.remove(at);
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
        self.sensors
            .get(&(device.to_owned(), sensor.to_owned()))
            .map(|kept| &kept.record)
    }

    /// The recent alerts of the fleet, oldest first.
    pub fn feed(&self) -> impl DoubleEndedIterator<Item = &FeedAlert> {
        self.feed.iter()
    }

    /// The arrival number after which a page that says it has `last` (its
    /// `Last-Event-ID`, or `?after=`) is sent alerts: 0, all of them, when
    /// it says nothing readable or an id of another start (after a restart
    /// the feed is another one, numbered again).
    pub fn resume_after(&self, last: Option<&str>) -> u64 {
        match last.map(str::parse::<AlertId>) {
            Some(Ok(last)) if last.epoch == self.epoch => last.seq,
            _ => 0,
        }
    }
}

/// Put `window` in `windows` (ascending by start, one per plugin and start:
/// a window sent again replaces the first), keeping at most `max`: beyond,
/// the one dated farthest from `now_ms` goes, the oldest of real ones, but
/// first any dated far ahead (a plugin's clock gone wrong would otherwise
/// push out every real window, as the oldest).
fn insert_window(windows: &mut Vec<Window>, window: Window, max: usize, now_ms: i64) {
    let at = windows.partition_point(|w| (w.start_ms, &w.plugin) < (window.start_ms, &window.plugin));
    match windows.get_mut(at) {
        Some(same) if same.start_ms == window.start_ms && same.plugin == window.plugin => *same = window,
        _ => windows.insert(at, window),
    }
    if windows.len() > max
        && let (Some(first), Some(last)) = (windows.first(), windows.last())
    {
        // Sorted by start: the farthest from now is at one end.
        let behind = now_ms.saturating_sub(first.start_ms);
        let ahead = last.start_ms.saturating_sub(now_ms);
        if ahead > behind {
            windows.pop();
        } else {
            windows.remove(0);
        }
    }
}

/// Put `alert` in `alerts` (ascending by time), keeping at most
/// [`MAX_SENSOR_ALERTS`]: beyond, the one that arrived first goes, never the
/// earliest dated (alerts dated far ahead would push out every real one).
fn insert_alert(alerts: &mut Vec<SensorAlert>, alert: SensorAlert) {
    let at = alerts.partition_point(|a| a.ts <= alert.ts);
    alerts.insert(at, alert);
    if alerts.len() > MAX_SENSOR_ALERTS
        && let Some((first, _)) = alerts.iter().enumerate().min_by_key(|(_, a)| a.arrival)
    {
        alerts.remove(first);
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
        let now = (MAX_DAILY as i64 + 10) * day;
        for n in (0..MAX_DAILY as i64 + 10).rev() {
            fleet.take("edgewise.d.up.summaries.p", &summary("d", "s", n * day, day, 50.0), now);
        }
        // Sent again with another figure: replaces, never doubles.
        fleet.take(
            "edgewise.d.up.summaries.p",
            &summary("d", "s", 20 * day, day, 75.0),
            now,
        );
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

    /// Windows dated far ahead (a plugin's clock gone wrong, or a hostile
    /// one) or far back never push out the real ones: beyond the bound, the
    /// window dated farthest from its arrival goes.
    #[test]
    fn windows_dated_far_from_now_never_push_out_the_real_ones() {
        let mut fleet = Fleet::default();
        let day = crate::dashboard::DAY_MS;
        let now = 20_000 * day;
        for n in 0..30 {
            fleet.take(
                "edgewise.d.up.summaries.p",
                &summary("d", "s", now - (30 - n) * day, day, 50.0),
                now,
            );
        }
        // Year 9999, then 1970.
        for far in (0..MAX_DAILY as i64).map(|n| (2_900_000 + n) * day).chain([0, day]) {
            fleet.take("edgewise.d.up.summaries.p", &summary("d", "s", far, day, 0.0), now);
        }
        let record = fleet.sensor("d", "s").unwrap();
        assert_eq!(record.daily.len(), MAX_DAILY);
        let real = record.daily.iter().filter(|w| w.metrics["tir_70_180"] == 50.0).count();
        assert_eq!(real, 30, "every real day kept");
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
            fleet.feed().next_back().map(|a| a.id.seq),
            Some(MAX_SENSOR_ALERTS as u64 + 5)
        );
        let long = "é".repeat(MAX_TEXT);
        fleet.take("edgewise.d.up.alerts.p", &alert("d", &long, 1, "critical"), 0);
        let shown = fleet.feed().next_back().unwrap();
        assert!(shown.sensor.len() <= MAX_TEXT && shown.sensor.chars().all(|c| c == 'é'));
        // Two sensors so far; one device has a share of the table.
        for n in 0..MAX_SENSORS_PER_DEVICE + 3 {
            fleet.take("edgewise.d.up.alerts.p", &alert("d", &format!("x{n}"), 1, "info"), 0);
        }
        assert_eq!(fleet.sensors.len(), MAX_SENSORS_PER_DEVICE);
        assert_eq!(fleet.devices()["d"].sensors.len(), MAX_SENSORS_PER_DEVICE);
        assert_eq!(fleet.refused.evicted_sensors, 5);
        assert_eq!(fleet.refused.over_limits, 0);
    }

    /// A new patient's alert reaches the live feed, and is kept, however many
    /// sensors another device has made up.
    #[test]
    fn a_new_patients_alert_reaches_the_feed_whatever_another_device_sent() {
        let mut fleet = Fleet::default();
        for n in 0..MAX_SENSORS + 5 {
            fleet.take(
                "edgewise.rogue.up.alerts.p",
                &alert("rogue", &format!("x{n}"), 1, "info"),
                0,
            );
        }
        let pushed = fleet.take("edgewise.ward.up.alerts.p", &alert("ward", "new", 2, "critical"), 0);
        assert_eq!(pushed.as_ref().map(|a| a.sensor.as_str()), Some("new"), "broadcast");
        assert_eq!(fleet.feed().next_back(), pushed.as_ref(), "in the feed list");
        assert_eq!(fleet.sensor("ward", "new").map(|r| r.alerts.len()), Some(1), "kept");
        // The rogue device made room among its own sensors only, the
        // least recently heard of first.
        assert_eq!(fleet.devices()["rogue"].sensors.len(), MAX_SENSORS_PER_DEVICE);
        assert!(fleet.sensor("rogue", "x0").is_none());
        assert!(fleet.sensor("rogue", &format!("x{}", MAX_SENSORS + 4)).is_some());
        assert_eq!(
            fleet.refused.evicted_sensors,
            (MAX_SENSORS + 5 - MAX_SENSORS_PER_DEVICE) as u64
        );
    }

    /// A device beyond the devices kept is not shown on the fleet page, but
    /// its alerts still reach the live feed.
    #[test]
    fn an_alert_from_a_device_beyond_the_bound_still_reaches_the_feed() {
        let mut fleet = Fleet::default();
        for n in 0..MAX_DEVICES {
            fleet.take_report(Reported {
                device: format!("d{n}"),
                ..Reported::default()
            });
        }
        let pushed = fleet.take("edgewise.late.up.alerts.p", &alert("late", "s", 2, "critical"), 0);
        assert_eq!(pushed.as_ref().map(|a| a.device.as_str()), Some("late"));
        assert_eq!(fleet.feed().next_back(), pushed.as_ref());
        assert!(!fleet.devices().contains_key("late") && fleet.sensor("late", "s").is_none());
        assert_eq!(fleet.refused.over_limits, 1);
    }

    /// When the table is full, the sensor least recently heard of (by
    /// arrival here, never by the plugin's clock) makes room.
    #[test]
    fn the_least_recently_seen_sensor_makes_room_for_a_new_one() {
        let mut fleet = Fleet::default();
        let year_9999 = 253_402_300_799_000;
        let devices = 10;
        for n in 0..MAX_SENSORS {
            let device = format!("d{}", n % devices);
            // The first sensors' outputs claim the latest times.
            let ts = if n < devices { year_9999 } else { 1 };
            fleet.take(
                &format!("edgewise.{device}.up.summaries.p"),
                &summary(&device, &format!("s{n}"), ts, crate::dashboard::HOUR_MS, 50.0),
                0,
            );
        }
        // s0 is heard of again: s1 is now the least recently seen.
        fleet.take("edgewise.d0.up.alerts.p", &alert("d0", "s0", 5, "warning"), 0);
        let pushed = fleet.take("edgewise.ward.up.alerts.p", &alert("ward", "new", 2, "critical"), 0);
        assert!(pushed.is_some());
        assert!(fleet.sensor("ward", "new").is_some());
        assert!(fleet.sensor("d0", "s0").is_some(), "seen again, kept");
        assert!(fleet.sensor("d1", "s1").is_none(), "the least recently seen went");
        assert!(!fleet.devices()["d1"].sensors.contains(&"s1".to_owned()));
        assert!(fleet.sensor("d2", "s2").is_some());
        assert_eq!(fleet.sensors.len(), MAX_SENSORS);
        assert_eq!(fleet.refused.evicted_sensors, 1);
        assert_eq!(fleet.refused.over_limits, 0);
    }

    /// Alert ids of two runs of the dashboard never meet: a page open across a
    /// restart is sent every alert of the new run, and no new alert has an id
    /// the page already shows.
    #[test]
    fn alert_ids_never_repeat_across_a_restart() {
        let mut before = Fleet::with_epoch(1_700_000_000_000);
        let shown: Vec<String> = (0..3)
            .map(|n| {
                let alert = before.take("edgewise.d.up.alerts.p", &alert("d", "s", n, "warning"), 0);
                alert.unwrap().id.to_string()
            })
            .collect();
        // Restarted: the stream kept only the last alert (retention), then a new one.
        let mut after = Fleet::with_epoch(1_700_000_060_000);
        after.take("edgewise.d.up.alerts.p", &alert("d", "s", 2, "warning"), 0);
        let new = after.take("edgewise.d.up.alerts.p", &alert("d", "s", 3, "critical"), 0);
        let new = new.unwrap().id.to_string();
        assert!(!shown.contains(&new), "{new} is already on the page: {shown:?}");
        let resume = after.resume_after(shown.last().map(String::as_str));
        let sent: Vec<i64> = after.feed().filter(|a| a.id.seq > resume).map(|a| a.ts).collect();
        assert_eq!(sent, [2, 3], "the whole feed of the new run");
        // Within one run, a page gets what it missed, and nothing twice.
        let first = after.feed().next().unwrap().id.to_string();
        assert_eq!(first, "1700000060000-1");
        let resume = after.resume_after(Some(&first));
        let sent: Vec<i64> = after.feed().filter(|a| a.id.seq > resume).map(|a| a.ts).collect();
        assert_eq!(sent, [3]);
        // A page of an older dashboard (a bare number) or one saying
        // nothing readable: the whole feed.
        for last in [Some("1"), Some("x-1"), Some(""), None] {
            assert_eq!(after.resume_after(last), 0, "{last:?}");
        }
        let id: AlertId =
            serde_json::from_str(&serde_json::to_string(&after.feed().next().unwrap().id).unwrap()).unwrap();
        assert_eq!(id.to_string(), first, "sent as its text");
    }

    /// A sensor's alerts beyond its bound go oldest arrived first: alerts
    /// dated far ahead do not push out every real one as it comes.
    #[test]
    fn a_sensors_alerts_go_oldest_arrived_first() {
        let mut fleet = Fleet::default();
        let year_9999 = 253_402_300_799_000;
        for n in 0..MAX_SENSOR_ALERTS as i64 {
            fleet.take("edgewise.d.up.alerts.p", &alert("d", "s", year_9999 + n, "info"), 0);
        }
        let now = 1_700_000_000_000;
        fleet.take("edgewise.d.up.alerts.p", &alert("d", "s", now, "critical"), 0);
        let alerts = &fleet.sensor("d", "s").unwrap().alerts;
        assert_eq!(alerts.len(), MAX_SENSOR_ALERTS);
        assert_eq!(alerts[0].ts, now, "kept, and shown in time order");
        assert!(alerts.iter().all(|a| a.ts != year_9999), "the first arrived went");
        assert!(alerts.windows(2).all(|w| w[0].ts <= w[1].ts));
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
