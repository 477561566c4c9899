//! Admission: which decoded readings may reach a plugin (issue #11, item 1).
//!
//! A reading is refused, and dead-lettered with the reason, when
//! - the payload names a sensor other than its subject's, on a subject the
//!   operator did not list in the plugin's `payload_sensors` (someone on
//!   patient 1's subject must not speak for patient 2);
//! - its time is more than `[ingest] max_future` ahead of the host clock (one
//!   such reading would make every real reading of its sensor "late" for a
//!   plugin), or more than `max_age` behind it;
//! - it is the first reading of a sensor beyond the plugin's `max_sensors`
//!   (a plugin keeps state per sensor: a flood of new ids would exhaust its
//!   memory and restart it, dropping the readings of real patients).
//!
//! A sensor keeps its place among `max_sensors` while the plugin may keep
//! state for it: for ever, unless the plugin declares that it forgets a
//! sensor silent for `forgets_sensors_after_h`. Then a place whose sensor has
//! been silent that long, plus `[ingest] max_future` (a reading the plugin
//! took may be that far ahead of the host clock that admitted it) and
//! [`FORGET_GRACE`] (for the tick that makes the plugin forget it), is freed
//! for a new sensor: patients discharged and CGMs replaced do not fill the
//! cap, and the plugin never holds more than `max_sensors` sensors.
//!
//! Each reading is judged alone: the good readings of a message go on when
//! another reading of the same message is refused (a CGM backfill array with
//! one reading past the horizon still delivers the current one).

use std::collections::HashMap;
use std::time::Duration;

use super::config::Plausibility;
use crate::bus::{filter, payload};
use crate::clock::ClockConfig;
use crate::model::Reading;

/// Real time allowed for a reading to travel from its sensor to the host, on
/// top of the margins. On a simulated clock every real millisecond of bus
/// latency is `speed` clock milliseconds, so the allowance scales with it: a
/// publisher that paces readings on the host clock (the demo, the live-vs-
/// replay test) is never refused for its latency.
pub const TRANSIT_ALLOWANCE: Duration = Duration::from_secs(1);

/// Clock time allowed, on top of a plugin's `forgets_sensors_after_h` and
/// `max_future`, for the tick that makes the plugin forget a silent sensor
/// to reach it before its place is freed: that tick comes at the host's next
/// tick after the plugin's wake, behind the inputs queued before it (on a
/// simulated clock the transit allowance, real time scaled, covers the
/// ticks' lag too). An hour is nothing beside the days a place waits.
pub const FORGET_GRACE: Duration = Duration::from_secs(3600);

/// Why a reading or message was dead-lettered: the key of
/// `deadletters_by_reason` in the status and the `kind` of a dead letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DeadLetterKind {
    /// The payload could not be decoded (the whole message).
    Malformed,
    /// Ahead of the host clock by more than `max_future`.
    Future,
    /// Behind the host clock by more than `max_age`.
    TooOld,
    /// The payload names a sensor other than its subject's.
    SensorMismatch,
    /// A new sensor beyond the plugin's `max_sensors`.
    TooManySensors,
}

impl DeadLetterKind {
    /// Every kind, in the order letters of one message are published.
    pub const ALL: [DeadLetterKind; 5] = [
        DeadLetterKind::Malformed,
        DeadLetterKind::Future,
        DeadLetterKind::TooOld,
        DeadLetterKind::SensorMismatch,
        DeadLetterKind::TooManySensors,
    ];

    /// The name in dead letters and the status.
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterKind::Malformed => "malformed",
            DeadLetterKind::Future => "future",
            DeadLetterKind::TooOld => "too-old",
            DeadLetterKind::SensorMismatch => "sensor-mismatch",
            DeadLetterKind::TooManySensors => "too-many-sensors",
        }
    }

    /// Position in [`DeadLetterKind::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// A refused reading: the kind and a sentence naming the reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Why, as counted.
    pub kind: DeadLetterKind,
    /// Why, for a person.
    pub reason: String,
}

/// A sensor's place among a plugin's `max_sensors`.
#[derive(Debug, Clone, Copy)]
struct Place {
    /// The host time its latest reading was admitted.
    latest_ms: i64,
    /// When it was last heard from, in readings admitted
    /// ([`Admission::admitted`] then).
    heard: u64,
}

/// The admission rules of one plugin's ingest, and the sensors it has let in.
#[derive(Debug, Clone)]
pub struct Admission {
    plugin: String,
    plausibility: Plausibility,
    /// Clock milliseconds of [`TRANSIT_ALLOWANCE`].
    transit_ms: i64,
    payload_sensors: Vec<String>,
    max_sensors: usize,
    /// Every sensor holding a place, never more than `max_sensors` (each id
    /// at most [`payload::MAX_SENSOR_BYTES`]).
    sensors: HashMap<String, Place>,
    /// Readings admitted so far: orders the sensors by when they were last
    /// heard from, where milliseconds tie.
    admitted: u64,
    /// Host milliseconds of silence after which a sensor's place may be
    /// freed; `None`: never (the plugin forgets no sensor).
    freed_after_ms: Option<i64>,
    /// No place can be freed before this host time (the oldest admission
    /// seen by the last look, plus `freed_after_ms`): a flood of new sensors
    /// at the cap is refused without a look at every place.
    next_free_ms: i64,
}

impl Admission {
    /// The rules for `plugin`: the `[ingest]` margins on `clock`, the subject
    /// filters whose payloads may name sensors, the sensor cap, and how long
    /// the plugin keeps a silent sensor, if it forgets them
    /// ([`crate::bundle::manifest::sensors_forgotten_after`]).
    pub fn new(
        plugin: &str,
        plausibility: Plausibility,
        clock: &ClockConfig,
        payload_sensors: Vec<String>,
        max_sensors: usize,
        forgotten_after: Option<Duration>,
    ) -> Admission {
        let speed = match clock {
            ClockConfig::Wall => 1.0,
            ClockConfig::Simulated { speed, .. } => *speed,
        };
        let transit_ms = (TRANSIT_ALLOWANCE.as_secs_f64() * 1000.0 * speed) as i64;
        let ms = |duration: Duration| i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
        let freed_after_ms = forgotten_after.map(|after| {
            ms(after)
                .saturating_add(ms(plausibility.max_future))
                .saturating_add(ms(FORGET_GRACE))
                .saturating_add(transit_ms)
        });
        Admission {
            plugin: plugin.to_owned(),
            plausibility,
            transit_ms,
            payload_sensors,
            max_sensors,
            sensors: HashMap::new(),
            admitted: 0,
            freed_after_ms,
            next_free_ms: i64::MIN,
        }
    }

    /// Whether a silent sensor's place is freed after a while (the plugin
    /// forgets silent sensors).
    pub fn frees_places(&self) -> bool {
        self.freed_after_ms.is_some()
    }

    /// The plugin these rules are for.
    pub fn plugin(&self) -> &str {
        &self.plugin
    }

    /// The most sensors the plugin takes.
    pub fn max_sensors(&self) -> usize {
        self.max_sensors
    }

    /// Whether messages on `subject` may name their sensors in the payload.
    pub fn trusts_payload_sensors(&self, subject: &str) -> bool {
        self.payload_sensors.iter().any(|f| filter::matches(f, subject))
    }

    /// Judge reading `index` of a message on `subject` (whose payload may name
    /// sensors when `trusted`) at host time `now_ms`. An admitted reading of a
    /// new sensor takes one of the plugin's `max_sensors` places.
    pub fn check(
        &mut self,
        subject: &str,
        trusted: bool,
        index: usize,
        reading: &Reading,
        now_ms: i64,
    ) -> Result<(), Refusal> {
        if !trusted {
            self.check_sensor(subject, index, reading)?;
        }
        self.check_time(index, reading, now_ms)?;
        self.admitted += 1;
        if let Some(place) = self.sensors.get_mut(&reading.sensor) {
            place.latest_ms = place.latest_ms.max(now_ms);
            place.heard = self.admitted;
        } else {
            if self.sensors.len() >= self.max_sensors && !self.free_places(now_ms) {
                return Err(Refusal {
                    kind: DeadLetterKind::TooManySensors,
                    reason: format!(
                        "reading {index}: sensor `{}` is new, and plugin `{}` already has its \
                         `max_sensors` of {} sensors",
                        reading.sensor, self.plugin, self.max_sensors
                    ),
                });
            }
            let place = Place {
                latest_ms: now_ms,
                heard: self.admitted,
            };
            self.sensors.insert(reading.sensor.clone(), place);
        }
        Ok(())
    }

    /// These rules in place of `old` (a version with other sensor rules swapped
    /// in): the sensors holding places under `old` keep them, those heard
    /// from last first when the new cap is smaller. Started empty instead, a
    /// plugin at its cap would let newcomers take the places of patients it
    /// monitors.
    pub fn take_places_of(&mut self, old: Admission) {
        let mut sensors: Vec<(String, Place)> = old.sensors.into_iter().collect();
        if sensors.len() > self.max_sensors {
            sensors.sort_unstable_by_key(|(_, place)| std::cmp::Reverse(place.heard));
            sensors.truncate(self.max_sensors);
        }
        self.sensors = sensors.into_iter().collect();
        self.admitted = old.admitted;
        self.next_free_ms = i64::MIN;
    }

    /// Free the places of the sensors silent for `freed_after_ms` at host
    /// time `now_ms`; whether there is a place now.
    fn free_places(&mut self, now_ms: i64) -> bool {
        let Some(after) = self.freed_after_ms else {
            return false;
        };
        if now_ms < self.next_free_ms {
            return false;
        }
        let before = self.sensors.len();
        self.sensors
            .retain(|_, place| now_ms.saturating_sub(place.latest_ms) <= after);
        // Admissions only move later: none of those kept is silent long
        // enough before this.
        self.next_free_ms = self
            .sensors
            .values()
            .map(|place| place.latest_ms)
            .min()
            .map_or(i64::MIN, |oldest| oldest.saturating_add(after).saturating_add(1));
        let freed = before - self.sensors.len();
        if freed > 0 {
            tracing::info!(
                plugin = %self.plugin,
                freed,
                "Places among max_sensors freed: their sensors were silent longer than the plugin keeps them"
            );
        }
        self.sensors.len() < self.max_sensors
    }

    /// The sensor is the subject's (decoding took the payload's `sensor` if any).
    fn check_sensor(&self, subject: &str, index: usize, reading: &Reading) -> Result<(), Refusal> {
        match payload::subject_sensor(subject) {
            Some(own) if own == reading.sensor => Ok(()),
            own => Err(Refusal {
                kind: DeadLetterKind::SensorMismatch,
                reason: format!(
                    "reading {index}: the payload names sensor `{}` but subject `{subject}` {}; only \
                     subjects in the plugin's `payload_sensors` may name their sensors",
                    reading.sensor,
                    own.map_or("names no sensor".to_owned(), |own| format!("is sensor `{own}`")),
                ),
            }),
        }
    }

    /// Why `reading` (at `index` of its message) is refused as from the
    /// future at host time `now_ms`, if it is: what a host clock behind the
    /// sensors' looks like (JetStream ingest holds such messages in the
    /// stream for a while, see `ingest/consumer.rs`).
    pub fn from_the_future(&self, index: usize, reading: &Reading, now_ms: i64) -> Option<Refusal> {
        self.check_time(index, reading, now_ms)
            .err()
            .filter(|refusal| refusal.kind == DeadLetterKind::Future)
    }

    fn check_time(&self, index: usize, reading: &Reading, now_ms: i64) -> Result<(), Refusal> {
        let ts = reading.timestamp_ms;
        // In i128: timestamps are any i64.
        let ahead = i128::from(ts) - i128::from(now_ms);
        let limit = |margin: Duration| (margin.as_millis() as i128).saturating_add(i128::from(self.transit_ms));
        let shown = |ms: i128| humantime::format_duration(Duration::from_secs((ms.unsigned_abs() / 1000) as u64));
        if ahead > limit(self.plausibility.max_future) {
            return Err(Refusal {
                kind: DeadLetterKind::Future,
                reason: format!(
                    "reading {index}: its time {ts} ms is {} ahead of the host clock ({now_ms} ms), over \
                     `[ingest] max_future` ({})",
                    shown(ahead),
                    humantime::format_duration(self.plausibility.max_future)
                ),
            });
        }
        if -ahead > limit(self.plausibility.max_age) {
            return Err(Refusal {
                kind: DeadLetterKind::TooOld,
                reason: format!(
                    "reading {index}: its time {ts} ms is {} behind the host clock ({now_ms} ms), over \
                     `[ingest] max_age` ({})",
                    shown(ahead),
                    humantime::format_duration(self.plausibility.max_age)
                ),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_764_300_000_000;
    const MINUTE: i64 = 60_000;

    fn reading(sensor: &str, ts: i64) -> Reading {
        Reading {
            sensor: sensor.to_owned(),
            timestamp_ms: ts,
            value: 100.0,
            unit: "mg/dL".to_owned(),
        }
    }

    fn admission(max_sensors: usize) -> Admission {
        Admission::new(
            "glucose-monitor",
            Plausibility::default(),
            &ClockConfig::Wall,
            vec!["sensors.gateway.>".to_owned()],
            max_sensors,
            None,
        )
    }

    fn kind(result: Result<(), Refusal>) -> Option<&'static str> {
        result.err().map(|r| r.kind.as_str())
    }

    #[test]
    fn new_rules_keep_the_sensors_admitted_those_heard_from_last_first_within_the_new_cap() {
        let mut old = admission(3);
        // In one millisecond: the order they are heard from decides.
        for sensor in ["p3", "p1", "p2", "p3"] {
            assert_eq!(
                kind(old.check(&format!("sensors.{sensor}"), false, 0, &reading(sensor, NOW), NOW)),
                None
            );
        }
        let mut same_cap = admission(3);
        same_cap.take_places_of(old.clone());
        assert_eq!(
            kind(same_cap.check("sensors.p4", false, 0, &reading("p4", NOW), NOW + 4)),
            Some("too-many-sensors"),
            "the places are held still"
        );
        for sensor in ["p1", "p2", "p3"] {
            assert_eq!(
                kind(same_cap.check(&format!("sensors.{sensor}"), false, 0, &reading(sensor, NOW), NOW + 5)),
                None
            );
        }
        let mut smaller = admission(2);
        smaller.take_places_of(old);
        assert_eq!(
            kind(smaller.check("sensors.p1", false, 0, &reading("p1", NOW), NOW + 6)),
            Some("too-many-sensors"),
            "the one heard from longest ago lost its place"
        );
        for sensor in ["p2", "p3"] {
            assert_eq!(
                kind(smaller.check(&format!("sensors.{sensor}"), false, 0, &reading(sensor, NOW), NOW + 6)),
                None
            );
        }
    }

    #[test]
    fn times_within_the_margins_are_taken_and_others_refused() {
        let mut admit = admission(10);
        let mut check = |ts: i64| kind(admit.check("sensors.p1", false, 0, &reading("p1", ts), NOW));
        assert_eq!(check(NOW), None);
        assert_eq!(check(NOW + 5 * MINUTE), None);
        // The transit allowance: one second on a wall clock.
        assert_eq!(check(NOW + 5 * MINUTE + 1000), None);
        assert_eq!(check(NOW + 5 * MINUTE + 1001), Some("future"));
        assert_eq!(check(NOW * 1000), Some("future"), "microseconds");
        assert_eq!(check(i64::MAX), Some("future"));
        assert_eq!(check(NOW - 7 * 24 * 60 * MINUTE), None);
        assert_eq!(check(NOW - 7 * 24 * 60 * MINUTE - 1001), Some("too-old"));
        assert_eq!(check(NOW / 1000), Some("too-old"), "seconds");
        assert_eq!(check(i64::MIN), Some("too-old"));
    }

    #[test]
    fn reasons_name_the_reading_and_the_key() {
        let mut admit = admission(10);
        let refusal = admit
            .check("sensors.p1", false, 2, &reading("p1", NOW + 10 * MINUTE), NOW)
            .unwrap_err();
        assert_eq!(
            refusal.reason,
            format!(
                "reading 2: its time {} ms is 10m ahead of the host clock ({NOW} ms), over `[ingest] max_future` (5m)",
                NOW + 10 * MINUTE
            )
        );
        let refusal = admit
            .check("sensors.p1", false, 0, &reading("p1", NOW - 8 * 24 * 60 * MINUTE), NOW)
            .unwrap_err();
        assert!(
            refusal.reason.contains("is 8days behind the host clock"),
            "{}",
            refusal.reason
        );
        assert!(
            refusal.reason.ends_with("over `[ingest] max_age` (7days)"),
            "{}",
            refusal.reason
        );
    }

    #[test]
    fn a_simulated_clock_scales_the_transit_allowance() {
        let mut admit = Admission::new(
            "p",
            Plausibility::default(),
            &ClockConfig::Simulated {
                start_ms: NOW,
                speed: 36_000.0,
            },
            Vec::new(),
            10,
            None,
        );
        // One real second is ten hours of this clock.
        let ahead = NOW + 5 * MINUTE + 10 * 60 * MINUTE;
        assert_eq!(
            kind(admit.check("sensors.p1", false, 0, &reading("p1", ahead), NOW)),
            None
        );
        assert_eq!(
            kind(admit.check("sensors.p1", false, 0, &reading("p1", ahead + 1), NOW)),
            Some("future")
        );
    }

    #[test]
    fn a_payload_speaks_only_for_its_own_subject_unless_the_subject_is_trusted() {
        let mut admit = admission(10);
        assert!(!admit.trusts_payload_sensors("sensors.cgm.p1"));
        assert!(admit.trusts_payload_sensors("sensors.gateway.ward-3"));
        let refusal = admit
            .check("sensors.cgm.p1", false, 1, &reading("cgm.p2", NOW), NOW)
            .unwrap_err();
        assert_eq!(refusal.kind, DeadLetterKind::SensorMismatch);
        assert!(
            refusal.reason.starts_with(
                "reading 1: the payload names sensor `cgm.p2` but subject `sensors.cgm.p1` is sensor `cgm.p1`"
            ),
            "{}",
            refusal.reason
        );
        assert_eq!(
            kind(admit.check("sensors.cgm.p1", false, 0, &reading("cgm.p1", NOW), NOW)),
            None
        );
        assert_eq!(
            kind(admit.check("sensors.gateway.ward-3", true, 0, &reading("bed-7", NOW), NOW)),
            None
        );
        assert_eq!(
            kind(admit.check("sensors", false, 0, &reading("x", NOW), NOW)),
            Some("sensor-mismatch")
        );
    }

    #[test]
    fn new_sensors_beyond_the_cap_are_refused_and_known_ones_still_taken() {
        let mut admit = admission(2);
        let mut check = |sensor: &str, ts: i64| {
            let subject = format!("sensors.{sensor}");
            kind(admit.check(&subject, false, 0, &reading(sensor, ts), NOW))
        };
        assert_eq!(check("a", NOW), None);
        // A refused reading takes no place.
        assert_eq!(check("b", NOW * 1000), Some("future"));
        assert_eq!(check("b", NOW), None);
        assert_eq!(check("c", NOW), Some("too-many-sensors"));
        assert_eq!(check("a", NOW + 1), None);
        assert_eq!(check("b", NOW + 1), None);
        assert_eq!(check("c", NOW + 1), Some("too-many-sensors"));
        // A plugin that forgets no sensor: no place is ever freed.
        let later = NOW + 1000 * 24 * 60 * MINUTE;
        assert_eq!(
            kind(admit.check("sensors.c", false, 0, &reading("c", later), later)),
            Some("too-many-sensors")
        );
    }

    /// A plugin that forgets a sensor silent for a day: its place is freed
    /// a day plus `max_future`, the grace and the transit allowance after the sensor's
    /// latest admitted reading, not before, and only then; a sensor that
    /// keeps reading keeps its place.
    #[test]
    fn a_place_is_freed_once_its_sensor_was_silent_longer_than_the_plugin_keeps_it() {
        const DAY: i64 = 24 * 60 * MINUTE;
        let mut admit = Admission::new(
            "glucose-monitor",
            Plausibility::default(),
            &ClockConfig::Wall,
            Vec::new(),
            2,
            Some(Duration::from_secs(24 * 3600)),
        );
        assert!(admit.frees_places());
        let mut check = |sensor: &str, now: i64| {
            let subject = format!("sensors.{sensor}");
            kind(admit.check(&subject, false, 0, &reading(sensor, now), now))
        };
        assert_eq!(check("a", NOW), None);
        assert_eq!(check("b", NOW), None);
        // `b` reads on; `a` falls silent.
        assert_eq!(check("b", NOW + DAY), None);
        let freed_at = NOW + DAY + 5 * MINUTE + 60 * MINUTE + 1000;
        assert_eq!(check("c", freed_at), Some("too-many-sensors"), "not yet");
        assert_eq!(check("c", freed_at + 1), None, "a's place");
        assert_eq!(check("a", freed_at + 2), Some("too-many-sensors"), "a is new again");
        assert_eq!(check("b", freed_at + 2), None, "b kept its place");
        // A flood at the cap is refused without a look at every place until
        // one can be free: b (latest NOW + DAY + ...) is the oldest.
        for n in 0..1000 {
            assert_eq!(check(&format!("x{n}"), freed_at + 3), Some("too-many-sensors"));
        }
        assert_eq!(check("d", freed_at + 2 + DAY + 65 * MINUTE + 1001), None, "b's place");
    }
}
