//! Lows, and how well `predicted-low` alerts foresaw them: sensitivity,
//! false alerts, lead time.
//!
//! A low is a level-1 hypoglycaemia episode as glucose-monitor counts them
//! (International Consensus 2023; `plugins/glucose-monitor/src/episodes.rs`,
//! with its default settings): it starts when readings below 70 mg/dL have
//! lasted 15 minutes (readings × the sensor's interval, so 3 readings 5
//! minutes apart), its onset being the first of them; it ends when readings
//! of 70 or more have lasted 15 minutes, at the first of those, or at its
//! last reading before a gap of more than 45 minutes (a gap ends any episode
//! and any run in progress).

/// The hypoglycaemia threshold (mg/dL): a reading below it is low.
pub const LOW_MGDL: f64 = 70.0;
/// How long readings must stay below (or, to end an episode, at or above)
/// the threshold.
const EPISODE_DURATION_MS: i64 = 15 * MINUTE_MS;
/// A gap between two readings longer than this ends any episode.
const EPISODE_GAP_MS: i64 = 45 * MINUTE_MS;
/// An alert this long before an onset foresaw it.
pub const WINDOW_MS: i64 = 60 * MINUTE_MS;
const MINUTE_MS: i64 = 60_000;
const DAY_MS: f64 = 86_400_000.0;

/// One hypoglycaemia episode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Episode {
    /// Its first low reading.
    pub onset_ms: i64,
    /// The first reading of the 15 minutes of recovery that ended it, or its
    /// last reading before a gap or the end of the recording.
    pub end_ms: i64,
}

impl Episode {
    fn contains(&self, ms: i64) -> bool {
        (self.onset_ms..=self.end_ms).contains(&ms)
    }
}

/// The sensor's interval: the median spacing between its readings, in whole
/// minutes (at least one), as glucose-monitor estimates it; 5 minutes for a
/// sensor with fewer than two readings.
pub fn interval_ms(readings: &[(i64, f64)]) -> i64 {
    let mut minutes: Vec<i64> = readings
        .windows(2)
        .map(|w| (w[1].0.saturating_sub(w[0].0).saturating_add(MINUTE_MS / 2)) / MINUTE_MS)
        .collect();
    if minutes.is_empty() {
        return 5 * MINUTE_MS;
    }
    minutes.sort_unstable();
    let (lower, upper) = (minutes[(minutes.len() - 1) / 2], minutes[minutes.len() / 2]);
    ((lower + upper + 1) / 2).max(1) * MINUTE_MS
}

/// A run of consecutive readings on one side of the threshold.
#[derive(Debug, Clone, Copy)]
struct Run {
    start_ms: i64,
    readings: i64,
}

impl Run {
    /// Extend `run` (starting it if needed) by the reading at `ms`; whether it
    /// now lasts the episode duration.
    fn extend(run: &mut Option<Run>, ms: i64, interval_ms: i64) -> Option<Run> {
        let run = run.get_or_insert(Run {
            start_ms: ms,
            readings: 0,
        });
        run.readings = run.readings.saturating_add(1);
        (run.readings.saturating_mul(interval_ms) >= EPISODE_DURATION_MS).then_some(*run)
    }
}

/// The level-1 hypoglycaemia episodes of one sensor's readings (valid, in
/// time order).
pub fn episodes(readings: &[(i64, f64)]) -> Vec<Episode> {
    let interval_ms = interval_ms(readings);
    let mut episodes = Vec::new();
    // Idle: `run` is the candidate low run; open: `onset` is set and `run`
    // is the recovery run.
    let mut onset: Option<i64> = None;
    let mut run: Option<Run> = None;
    let mut last_ms: Option<i64> = None;
    for &(ms, value) in readings {
        if let Some(last) = last_ms
            && ms.saturating_sub(last) > EPISODE_GAP_MS
        {
            if let Some(onset_ms) = onset.take() {
                episodes.push(Episode { onset_ms, end_ms: last });
            }
            run = None;
        }
        last_ms = Some(ms);
        let low = value < LOW_MGDL;
        match onset {
            None if low => {
                if let Some(done) = Run::extend(&mut run, ms, interval_ms) {
                    onset = Some(done.start_ms);
                    run = None;
                }
            }
            None => run = None,
            Some(_) if low => run = None,
            Some(onset_ms) => {
                if let Some(recovery) = Run::extend(&mut run, ms, interval_ms) {
                    episodes.push(Episode {
                        onset_ms,
                        end_ms: recovery.start_ms,
                    });
                    onset = None;
                    run = None;
                }
            }
        }
    }
    if let (Some(onset_ms), Some(end_ms)) = (onset, last_ms) {
        episodes.push(Episode { onset_ms, end_ms });
    }
    episodes
}

/// How a set of alerts did against the episodes of the same sensors.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertScore {
    /// Episodes.
    pub episodes: u64,
    /// Episodes with an alert in the [`WINDOW_MS`] before their onset.
    pub detected: u64,
    /// Alert instants (alerts at the same time count once).
    pub alerts: u64,
    /// Alerts outside every episode with no onset in the [`WINDOW_MS`] after them.
    pub false_alerts: u64,
    /// Per detected episode: its onset minus its first alert in the window (minutes).
    pub lead_times_min: Vec<f64>,
    /// Recorded days: per sensor, its first to its last reading.
    pub days: f64,
}

impl AlertScore {
    /// Score the `alerts` (times, ms) of one sensor against its `episodes`;
    /// `readings` give its recorded time.
    pub fn sensor(readings: &[(i64, f64)], episodes: &[Episode], alerts: &[i64]) -> AlertScore {
        let mut alerts = alerts.to_vec();
        alerts.sort_unstable();
        alerts.dedup();
        let mut score = AlertScore {
            episodes: episodes.len() as u64,
            alerts: alerts.len() as u64,
            days: match (readings.first(), readings.last()) {
                (Some(first), Some(last)) => last.0.saturating_sub(first.0) as f64 / DAY_MS,
                _ => 0.0,
            },
            ..AlertScore::default()
        };
        for episode in episodes {
            let window_start = episode.onset_ms.saturating_sub(WINDOW_MS);
            let first = alerts.partition_point(|&ms| ms < window_start);
            if let Some(&alert) = alerts.get(first).filter(|&&ms| ms < episode.onset_ms) {
                score.detected += 1;
                score
                    .lead_times_min
                    .push((episode.onset_ms - alert) as f64 / MINUTE_MS as f64);
            }
        }
        score.false_alerts = alerts
            .iter()
            .filter(|&&ms| {
                let during = episodes.iter().any(|e| e.contains(ms));
                let foresaw = episodes
                    .iter()
                    .any(|e| e.onset_ms > ms && e.onset_ms <= ms.saturating_add(WINDOW_MS));
                !during && !foresaw
            })
            .count() as u64;
        score
    }

    /// Add another sensor's score.
    pub fn add(&mut self, other: AlertScore) {
        self.episodes += other.episodes;
        self.detected += other.detected;
        self.alerts += other.alerts;
        self.false_alerts += other.false_alerts;
        self.lead_times_min.extend(other.lead_times_min);
        self.days += other.days;
    }

    /// Detected episodes over all episodes, in percent (`None` without episodes).
    pub fn sensitivity_percent(&self) -> Option<f64> {
        (self.episodes > 0).then(|| 100.0 * self.detected as f64 / self.episodes as f64)
    }

    /// False alerts per recorded day (`None` without recorded time).
    pub fn false_alerts_per_day(&self) -> Option<f64> {
        (self.days > 0.0).then(|| self.false_alerts as f64 / self.days)
    }

    /// The median lead time (minutes; the mean of the middle two for an even
    /// count), `None` without a detected episode.
    pub fn median_lead_time_min(&self) -> Option<f64> {
        let mut sorted = self.lead_times_min.clone();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        (n > 0).then(|| (sorted[(n - 1) / 2] + sorted[n / 2]) / 2.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = MINUTE_MS;

    /// Readings every 5 minutes from minute 0, the given values.
    fn every_5_min(values: &[f64]) -> Vec<(i64, f64)> {
        values
            .iter()
            .enumerate()
            .map(|(k, &v)| (k as i64 * 5 * MIN, v))
            .collect()
    }

    #[test]
    fn an_episode_needs_15_minutes_below_70_and_15_minutes_back_to_end() {
        // Two low readings are not enough; three are, from the first of them.
        let readings = every_5_min(&[
            100.0, 65.0, 60.0, 90.0, 68.0, 60.0, 55.0, 72.0, 75.0, 65.0, 80.0, 85.0, 90.0, 100.0,
        ]);
        // Onset at 20 min (68, 60, 55); 72 and 75 do not last 15 minutes, 65
        // keeps it open; 80, 85, 90 end it at 50 min.
        assert_eq!(
            episodes(&readings),
            vec![Episode {
                onset_ms: 20 * MIN,
                end_ms: 50 * MIN
            }]
        );
    }

    #[test]
    fn a_gap_ends_an_episode_and_breaks_a_run() {
        let mut readings = every_5_min(&[60.0, 60.0, 60.0, 60.0]);
        // 46 minutes later: the episode ended at its last reading; two lows
        // before the gap and one after are no episode.
        readings.extend([(61 * MIN, 60.0), (66 * MIN, 60.0)]);
        readings.extend([(200 * MIN, 60.0), (205 * MIN, 100.0)]);
        assert_eq!(
            episodes(&readings),
            vec![Episode {
                onset_ms: 0,
                end_ms: 15 * MIN
            }]
        );
        // Still open at the end of the recording: it ends at the last reading.
        let open = every_5_min(&[100.0, 60.0, 60.0, 60.0, 61.0]);
        assert_eq!(
            episodes(&open),
            vec![Episode {
                onset_ms: 5 * MIN,
                end_ms: 20 * MIN
            }]
        );
    }

    #[test]
    fn the_duration_counts_in_the_sensors_interval() {
        // A sensor read every 15 minutes: one low reading lasts 15 minutes.
        let readings: Vec<(i64, f64)> = [100.0, 60.0, 100.0, 100.0]
            .iter()
            .enumerate()
            .map(|(k, &v)| (k as i64 * 15 * MIN, v))
            .collect();
        assert_eq!(interval_ms(&readings), 15 * MIN);
        assert_eq!(
            episodes(&readings),
            vec![Episode {
                onset_ms: 15 * MIN,
                end_ms: 30 * MIN
            }]
        );
        assert_eq!(interval_ms(&[]), 5 * MIN);
    }

    #[test]
    fn alerts_are_scored_against_the_onsets_that_followed() {
        // A day of readings; episodes with onsets at 300 and 900 minutes (the
        // second lasting to 960), and two that nothing foresaw.
        let readings = vec![(0, 100.0), (1440 * MIN, 100.0)];
        let episodes = [
            Episode {
                onset_ms: 300 * MIN,
                end_ms: 330 * MIN,
            },
            Episode {
                onset_ms: 900 * MIN,
                end_ms: 960 * MIN,
            },
            Episode {
                onset_ms: 1200 * MIN,
                end_ms: 1230 * MIN,
            },
            // Alerted only at its onset: not foreseen.
            Episode {
                onset_ms: 1380 * MIN,
                end_ms: 1400 * MIN,
            },
        ];
        let alerts = [
            // Foresees the first by 45 minutes, then repeats (and a duplicate).
            255 * MIN,
            285 * MIN,
            285 * MIN,
            // At the onset: during the episode, neither a detection nor false.
            300 * MIN,
            // 61 minutes before the second: false; 30 minutes before: detected.
            839 * MIN,
            870 * MIN,
            // During the second: not false.
            930 * MIN,
            // Nothing follows: false.
            600 * MIN,
            1300 * MIN,
            1380 * MIN,
        ];
        let score = AlertScore::sensor(&readings, &episodes, &alerts);
        assert_eq!(
            score,
            AlertScore {
                episodes: 4,
                detected: 2,
                alerts: 9,
                false_alerts: 3,
                lead_times_min: vec![45.0, 30.0],
                days: 1.0,
            }
        );
        assert_eq!(score.sensitivity_percent(), Some(50.0));
        assert_eq!(score.false_alerts_per_day(), Some(3.0));
        assert_eq!(score.median_lead_time_min(), Some(37.5));
    }

    #[test]
    fn scores_add_up_over_sensors() {
        let mut total = AlertScore::default();
        assert_eq!(total.sensitivity_percent(), None);
        assert_eq!(total.false_alerts_per_day(), None);
        assert_eq!(total.median_lead_time_min(), None);
        let day = vec![(0, 100.0), (1440 * MIN, 100.0)];
        let episode = [Episode {
            onset_ms: 600 * MIN,
            end_ms: 630 * MIN,
        }];
        total.add(AlertScore::sensor(&day, &episode, &[590 * MIN]));
        total.add(AlertScore::sensor(&day, &episode, &[540 * MIN, 100 * MIN]));
        total.add(AlertScore::sensor(&day, &episode, &[]));
        assert_eq!((total.episodes, total.detected, total.false_alerts), (3, 2, 1));
        assert_eq!(total.days, 3.0);
        assert_eq!(total.median_lead_time_min(), Some(35.0));
        assert_eq!(total.false_alerts_per_day(), Some(1.0 / 3.0));
    }
}
