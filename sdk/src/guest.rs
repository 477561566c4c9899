//! The glue between a [`Plugin`] and the component model: used by
//! [`export_plugin!`](crate::export_plugin), not by plugin authors directly.
//! Only this module of the SDK runs the bindings generator over `wit/`.

use std::cell::RefCell;
use std::thread::LocalKey;

use crate::outputs::Output;
use crate::{Alert, Config, Driver, LogLevel, Outputs, Plugin, Reading, Severity, Summary};

#[allow(missing_docs, unsafe_code, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit/v0.2",
        world: "edgewise:plugin/sensor-plugin@0.2.0",
        pub_export_macro: true,
        default_bindings_module: "edgewise_sdk::guest::bindings",
    });
}

use bindings::edgewise::plugin::{host, types as wit};

/// The plugin instance and its clock, created by `init`.
pub type Cell<P> = RefCell<Option<Driver<P>>>;

/// The thread-local holding the [`Cell`].
pub type Slot<P> = LocalKey<Cell<P>>;

/// What every call answers: when the plugin next needs a tick.
pub type Answer = Result<Option<i64>, String>;

const NOT_INITIALISED: &str = "the host called the plugin before `init` succeeded";

/// `init` export: build the plugin from its configuration and snapshot.
pub fn init<P: Plugin>(slot: &'static Slot<P>, config: Vec<(String, String)>, resume: Option<wit::Snapshot>) -> Answer {
    let resume = resume.as_ref().map(|s| (s.schema, s.data.as_slice()));
    let driver = Driver::<P>::start(Config::new(config), resume)?;
    let wake = driver.wake();
    slot.with(|cell| *cell.borrow_mut() = Some(driver));
    Ok(wake)
}

/// `on-readings` export: each sample becomes a [`Reading`] borrowing its
/// sensor's id and unit from the batch (no allocation per reading).
pub fn on_readings<P: Plugin>(slot: &'static Slot<P>, batch: wit::Batch) -> Answer {
    with_driver(slot, |driver, out| {
        driver.on_clock(batch.now_ms);
        for sample in &batch.samples {
            let Some(sensor) = batch.sensors.get(sample.sensor as usize) else {
                return Err(format!(
                    "a sample refers to sensor {} of a batch of {} sensors",
                    sample.sensor,
                    batch.sensors.len()
                ));
            };
            let reading = Reading {
                sensor: &sensor.id,
                timestamp_ms: sample.timestamp_ms,
                value: sample.value,
                unit: &sensor.unit,
            };
            driver.on_reading(&reading, out)?;
        }
        Ok(())
    })
}

/// `on-tick` export.
pub fn on_tick<P: Plugin>(slot: &'static Slot<P>, now_ms: i64) -> Answer {
    with_driver(slot, |driver, out| driver.on_tick(now_ms, out))
}

/// `snapshot` export: outputs are not expected (a snapshot is not an input).
pub fn snapshot<P: Plugin>(slot: &'static Slot<P>) -> Result<wit::Snapshot, String> {
    slot.with(|cell| match cell.borrow().as_ref() {
        Some(driver) => driver.snapshot().map(|(schema, data)| wit::Snapshot { schema, data }),
        None => Err(NOT_INITIALISED.to_owned()),
    })
}

fn with_driver<P: Plugin>(
    slot: &'static Slot<P>,
    call: impl FnOnce(&mut Driver<P>, &mut Outputs) -> Result<(), String>,
) -> Answer {
    let mut out = Outputs::default();
    let result = slot.with(|cell| match cell.borrow_mut().as_mut() {
        Some(driver) => call(driver, &mut out).map(|()| driver.wake()),
        None => Err(NOT_INITIALISED.to_owned()),
    });
    flush(&mut out);
    result
}

/// Forward what the plugin produced to the host, in the order produced.
fn flush(out: &mut Outputs) {
    if out.is_empty() {
        return;
    }
    out.drain(|output| match output {
        Output::Alert(alert) => host::emit_alert(&to_wit_alert(alert)),
        Output::Summary(summary) => host::emit_summary(&to_wit_summary(summary)),
        Output::Log(level, message) => host::log(to_wit_level(level), &message),
    });
}

fn to_wit_alert(alert: Alert) -> wit::Alert {
    wit::Alert {
        sensor: alert.sensor,
        timestamp_ms: alert.timestamp_ms,
        severity: match alert.severity {
            Severity::Info => wit::Severity::Info,
            Severity::Warning => wit::Severity::Warning,
            Severity::Critical => wit::Severity::Critical,
        },
        code: alert.code,
        message: alert.message,
        value: alert.value,
    }
}

fn to_wit_summary(summary: Summary) -> wit::Summary {
    wit::Summary {
        sensor: summary.sensor,
        window_start_ms: summary.window_start_ms,
        window_end_ms: summary.window_end_ms,
        metrics: summary
            .metrics
            .into_iter()
            .map(|m| wit::Metric {
                name: m.name,
                value: m.value,
            })
            .collect(),
    }
}

fn to_wit_level(level: LogLevel) -> wit::LogLevel {
    match level {
        LogLevel::Trace => wit::LogLevel::Trace,
        LogLevel::Debug => wit::LogLevel::Debug,
        LogLevel::Info => wit::LogLevel::Info,
        LogLevel::Warn => wit::LogLevel::Warn,
        LogLevel::Error => wit::LogLevel::Error,
    }
}
