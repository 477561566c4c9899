//! The glue between a [`Plugin`] and the component model: used by
//! [`export_plugin!`](crate::export_plugin), not by plugin authors directly.
//! Only this module of the SDK runs the bindings generator over `wit/`.

use std::cell::RefCell;
use std::thread::LocalKey;

use crate::{Alert, Config, LogLevel, Outputs, Plugin, Reading, Severity, Summary};

#[allow(missing_docs, unsafe_code, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit/v0.1",
        world: "edgewise:plugin/sensor-plugin",
        pub_export_macro: true,
        default_bindings_module: "edgewise_sdk::guest::bindings",
    });
}

use bindings::edgewise::plugin::{host, types as wit};

/// The plugin instance, created by `init`.
pub type Slot<P> = LocalKey<RefCell<Option<P>>>;

const NOT_INITIALISED: &str = "the host called the plugin before `init` succeeded";

/// `init` export: build the plugin from its configuration.
pub fn init<P: Plugin>(slot: &'static Slot<P>, config: Vec<(String, String)>) -> Result<(), String> {
    let plugin = P::init(Config::new(config))?;
    slot.with(|cell| *cell.borrow_mut() = Some(plugin));
    Ok(())
}

/// `on-readings` export.
pub fn on_readings<P: Plugin>(slot: &'static Slot<P>, readings: Vec<wit::Reading>) -> Result<(), String> {
    let readings: Vec<Reading> = readings
        .into_iter()
        .map(|r| Reading {
            sensor: r.sensor,
            timestamp_ms: r.timestamp_ms,
            value: r.value,
            unit: r.unit,
        })
        .collect();
    with_plugin(slot, |plugin, out| plugin.on_readings(&readings, out))
}

/// `on-tick` export.
pub fn on_tick<P: Plugin>(slot: &'static Slot<P>, now_ms: i64) -> Result<(), String> {
    with_plugin(slot, |plugin, out| plugin.on_tick(now_ms, out))
}

fn with_plugin<P: Plugin>(
    slot: &'static Slot<P>,
    call: impl FnOnce(&mut P, &mut Outputs) -> Result<(), String>,
) -> Result<(), String> {
    let mut out = Outputs::default();
    let result = slot.with(|cell| match cell.borrow_mut().as_mut() {
        Some(plugin) => call(plugin, &mut out),
        None => Err(NOT_INITIALISED.to_owned()),
    });
    flush(out);
    result
}

/// Forward what the plugin produced to the host, in order.
fn flush(mut out: Outputs) {
    // Most calls (ticks especially) produce nothing: skip the iterators.
    if out.alerts().is_empty() && out.summaries().is_empty() && out.logs().is_empty() {
        return;
    }
    let (alerts, summaries, logs) = out.take();
    for (level, message) in logs {
        host::log(to_wit_level(level), &message);
    }
    for alert in alerts {
        host::emit_alert(&to_wit_alert(alert));
    }
    for summary in summaries {
        host::emit_summary(&to_wit_summary(summary));
    }
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
