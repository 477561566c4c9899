//! The native baseline: a plugin (glucose-monitor, glucose-forecast) linked
//! as a Rust library and driven the way the host drives its component, so
//! that both sides make the same calls and produce the same outputs. The component's export glue runs the
//! plugin through the SDK's [`Driver`]; so does this. The host tells a 0.2
//! plugin its clock with every batch (its virtual clock in replay: the latest
//! reading or tick so far) and ticks it at the wake it answered, never sooner
//! than [`MIN_WAKE_INTERVAL_MS`] after its last tick; so does this.

use anyhow::anyhow;
use edgewise_host::runtime::{MIN_WAKE_INTERVAL_MS, Wake};
use edgewise_sdk::{Config, Driver, Outputs, Plugin, Reading};
use glucose_monitor::GlucoseMonitor;

/// glucose-monitor natively.
pub type NativeGlucose = Native<GlucoseMonitor>;

impl NativeGlucose {
    /// Start glucose-monitor with `config`, the host clock standing at
    /// `clock_ms` (a replay's: the first reading).
    pub fn start(config: &[(String, String)], clock_ms: i64) -> anyhow::Result<NativeGlucose> {
        Native::new("glucose-monitor", config, clock_ms)
    }
}

/// A plugin natively, with the host's clock and wake rules.
pub struct Native<P> {
    /// The plugin's name, for errors.
    name: &'static str,
    driver: Driver<P>,
    out: Outputs,
    /// The host's virtual clock: the latest reading or tick so far.
    now_ms: i64,
    /// The time of the last tick, from which the wake floor counts.
    last_tick_ms: Option<i64>,
    /// Alerts and summaries taken so far.
    outputs: u64,
}

impl<P: Plugin> Native<P> {
    /// Start the plugin `name` with `config`, the host clock standing at
    /// `clock_ms` (a replay's: the first reading). A plugin that reads
    /// assets finds those provided on this thread (`edgewise_sdk::asset::provide`).
    pub fn new(name: &'static str, config: &[(String, String)], clock_ms: i64) -> anyhow::Result<Native<P>> {
        let driver = Driver::start(Config::new(config.iter().cloned()), None)
            .map_err(|e| anyhow!("{name} refused its configuration: {e}"))?;
        Ok(Native {
            name,
            driver,
            out: Outputs::default(),
            now_ms: clock_ms,
            last_tick_ms: None,
            outputs: 0,
        })
    }

    /// One `on-readings` call: the clock moves to the batch's latest reading
    /// (never back), the outputs are taken after it.
    pub fn on_readings(&mut self, readings: &[Reading<'_>]) -> anyhow::Result<()> {
        if let Some(latest) = readings.iter().map(|r| r.timestamp_ms).max() {
            self.now_ms = self.now_ms.max(latest);
        }
        let result = self.driver.on_readings(self.now_ms, readings, &mut self.out);
        self.take_outputs();
        result.map_err(|e| anyhow!("{} failed natively: {e}", self.name))
    }

    /// One `on-tick` call at `now_ms`, the outputs taken after it.
    pub fn on_tick(&mut self, now_ms: i64) -> anyhow::Result<()> {
        self.now_ms = self.now_ms.max(now_ms);
        self.last_tick_ms = Some(now_ms);
        let result = self.driver.on_tick(now_ms, &mut self.out);
        self.take_outputs();
        result.map_err(|e| anyhow!("{} failed natively: {e}", self.name))
    }

    /// When to tick it next, as the host's `PluginInstance::wake` says for
    /// the component.
    pub fn wake(&self) -> Wake {
        let floor = self
            .last_tick_ms
            .map_or(i64::MIN, |tick| tick.saturating_add(MIN_WAKE_INTERVAL_MS));
        match self.driver.wake() {
            None => Wake::Idle,
            Some(at) => Wake::At(at.max(floor)),
        }
    }

    /// Alerts and summaries produced so far.
    pub fn outputs(&self) -> u64 {
        self.outputs
    }

    /// Take the outputs as the host does after each call, counting alerts
    /// and summaries (the component's log lines go to the host's log, not
    /// to its outputs).
    fn take_outputs(&mut self) {
        let (alerts, summaries, logs) = self.out.take();
        self.outputs += (alerts.len() + summaries.len()) as u64;
        std::hint::black_box((alerts, summaries, logs));
    }
}
