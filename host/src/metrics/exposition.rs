//! A scrape rendered in the OpenMetrics text format with the Prometheus
//! project's client (`prometheus-client`): families named by Prometheus's
//! conventions (`edgewise_` prefix, `_total` counters, seconds and bytes).

use std::fmt::Error;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeCounterValue, EncodeGaugeValue, EncodeLabelValue, LabelValueEncoder, MetricEncoder,
    NoLabelSet,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::process::{self, ProcessUsage};
use super::{OldestWaiting, PluginCalls, Scrape};
use crate::bus::admission::DeadLetterKind;
use crate::bus::status::{OutboxDrops, PluginStatus, Status};

/// The `Content-Type` of [`render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// `scrape` and this process's usage as an OpenMetrics exposition.
pub fn render(scrape: Scrape) -> Result<String, Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Families {
        scrape,
        process: process::usage(),
    }));
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry)?;
    Ok(text)
}

/// Every family of one scrape.
#[derive(Debug)]
struct Families {
    scrape: Scrape,
    process: Option<ProcessUsage>,
}

/// A label value escaped as the format asks (`\\`, `\"`, `\n`):
/// `prometheus-client` writes values as they are, and a refused bundle's
/// name is its file's stem, which may hold anything.
#[derive(Debug, Clone, Copy)]
struct Escaped<'a>(&'a str);

impl EncodeLabelValue for Escaped<'_> {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), Error> {
        use std::fmt::Write;
        for c in self.0.chars() {
            match c {
                '\\' => encoder.write_str("\\\\")?,
                '"' => encoder.write_str("\\\"")?,
                '\n' => encoder.write_str("\\n")?,
                c => encoder.write_char(c)?,
            }
        }
        Ok(())
    }
}

/// A plugin's labels: its name and the version that runs.
type PluginLabels<'a> = [(&'static str, Escaped<'a>); 2];

/// A plugin's labels and one more.
type PluginLabelsAnd<'a> = [(&'static str, Escaped<'a>); 3];

fn plugin_labels(plugin: &PluginStatus) -> PluginLabels<'_> {
    [
        ("plugin", Escaped(plugin.name.as_str())),
        ("version", Escaped(plugin.version.as_str())),
    ]
}

/// Write one sample of a counter family.
fn counter(mut metric: MetricEncoder<'_>, value: impl EncodeCounterValue) -> Result<(), Error> {
    metric.encode_counter::<NoLabelSet, _, u64>(&value, None)
}

/// Write a counter family of one sample, without labels: `name`, `help`
/// and its `value`.
fn plain_counter(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: impl EncodeCounterValue,
) -> Result<(), Error> {
    counter(encoder.encode_descriptor(name, help, None, MetricType::Counter)?, value)
}

/// Write one sample of a gauge family.
fn gauge(mut metric: MetricEncoder<'_>, value: impl EncodeGaugeValue) -> Result<(), Error> {
    metric.encode_gauge(&value)
}

impl Collector for Families {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), Error> {
        let status = &self.scrape.status;
        self.encode_plugins(&mut encoder, &status.plugins)?;
        encode_calls(&mut encoder, &status.plugins, &self.scrape.calls)?;
        encode_host(&mut encoder, status, self.scrape.oldest_ms)?;
        let mut metric = encoder.encode_descriptor(
            "edgewise_deployment_generation",
            "The generation of each desired-set key the device follows (device.<id>, group.<name>), as last read; only with [deploy].",
            None,
            MetricType::Gauge,
        )?;
        for (key, generation) in &self.scrape.generations {
            gauge(metric.encode_family(&[("key", Escaped(key))])?, *generation as i64)?;
        }
        if let Some(usage) = self.process {
            plain_counter(
                &mut encoder,
                "process_cpu_seconds",
                "CPU time of the host process (user and system), seconds.",
                usage.cpu_seconds,
            )?;
            let metric = encoder.encode_descriptor(
                "process_resident_memory_bytes",
                "Resident memory of the host process, bytes.",
                None,
                MetricType::Gauge,
            )?;
            gauge(metric, usage.resident_bytes as i64)?;
        }
        Ok(())
    }
}

/// A per-plugin counter or gauge: its name, help, type, and the value of a plugin.
type PluginFamily = (&'static str, &'static str, MetricType, fn(&PluginStatus) -> u64);

/// The plugin families with no label but the plugin's.
const PLUGIN_FAMILIES: [PluginFamily; 6] = [
    (
        "edgewise_plugin_readings",
        "Readings delivered to the plugin.",
        MetricType::Counter,
        |p| p.readings_in,
    ),
    (
        "edgewise_plugin_restarts",
        "Instances of the plugin rebuilt after a failure.",
        MetricType::Counter,
        |p| p.restarts,
    ),
    (
        "edgewise_plugin_quarantines",
        "Times the plugin was put in quarantine.",
        MetricType::Counter,
        |p| p.quarantines,
    ),
    (
        "edgewise_plugin_readings_held",
        "Readings held now while the plugin is down.",
        MetricType::Gauge,
        |p| p.readings_held,
    ),
    (
        "edgewise_plugin_readings_dropped",
        "Readings dropped: the hold buffer was full, or the host stopped while the plugin was quarantined.",
        MetricType::Counter,
        |p| p.readings_dropped,
    ),
    (
        "edgewise_plugin_outputs_flagged",
        "Outputs of the plugin with problems (an alert with no code, a time before 1970, an empty window, a metric name empty or given twice), sent on naming them.",
        MetricType::Counter,
        |p| p.outputs_flagged,
    ),
];

/// The states a plugin can be in (`edgewise_plugin_state`).
const PLUGIN_STATES: [&str; 8] = [
    crate::worker::STARTING,
    "running",
    "restarting",
    "quarantined",
    "degraded",
    "refused",
    "compiling",
    "stopped",
];

impl Families {
    fn encode_plugins(&self, encoder: &mut DescriptorEncoder<'_>, plugins: &[PluginStatus]) -> Result<(), Error> {
        for (name, help, kind, value) in PLUGIN_FAMILIES {
            let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
            for plugin in plugins {
                let labels = plugin_labels(plugin);
                let family = metric.encode_family(&labels)?;
                match kind {
                    MetricType::Gauge => gauge(family, value(plugin) as i64)?,
                    _ => counter(family, value(plugin))?,
                }
            }
        }
        let mut metric = encoder.encode_descriptor(
            "edgewise_plugin_outputs",
            "Outputs the plugin emitted (durable in the outbox), by kind: alert or summary.",
            None,
            MetricType::Counter,
        )?;
        for plugin in plugins {
            for (kind, count) in [("alert", plugin.alerts_out), ("summary", plugin.summaries_out)] {
                let labels = with(plugin, "kind", kind);
                counter(metric.encode_family(&labels)?, count)?;
            }
        }
        let mut metric = encoder.encode_descriptor(
            "edgewise_plugin_failures",
            "Failed calls and starts of the plugin by reason (deadline, trap, memory-limit, returned-error...), and failures of its ingest (ingest).",
            None,
            MetricType::Counter,
        )?;
        for plugin in plugins {
            for (reason, count) in &plugin.failures {
                let labels = with(plugin, "reason", reason);
                counter(metric.encode_family(&labels)?, *count)?;
            }
        }
        let mut metric = encoder.encode_descriptor(
            "edgewise_plugin_state",
            "1 for the state the plugin is in (running, restarting, quarantined, degraded, refused), 0 for the others.",
            None,
            MetricType::Gauge,
        )?;
        for plugin in plugins {
            for state in PLUGIN_STATES {
                let labels = with(plugin, "state", state);
                gauge(metric.encode_family(&labels)?, i64::from(plugin.state == state))?;
            }
        }
        Ok(())
    }
}

/// A plugin's labels with `key="value"`.
fn with<'a>(plugin: &'a PluginStatus, key: &'static str, value: &'a str) -> PluginLabelsAnd<'a> {
    let [name, version] = plugin_labels(plugin);
    [name, version, (key, Escaped(value))]
}

/// The call duration histograms, labelled with the version that runs now.
fn encode_calls(
    encoder: &mut DescriptorEncoder<'_>,
    plugins: &[PluginStatus],
    calls: &[PluginCalls],
) -> Result<(), Error> {
    let mut metric = encoder.encode_descriptor(
        "edgewise_plugin_call_duration_seconds",
        "Duration of the host's calls into the plugin, by call (init, on_readings, on_tick, snapshot), seconds.",
        None,
        MetricType::Histogram,
    )?;
    for plugin in plugins {
        let Some(times) = calls.iter().find(|times| times.plugin == plugin.name) else {
            continue;
        };
        for (call, histogram) in &times.calls {
            let labels = with(plugin, "call", call.as_str());
            let buckets: Vec<(f64, u64)> = histogram
                .buckets
                .iter()
                // The encoder writes `+Inf` for `f64::MAX`.
                .map(|&(bound, calls)| (if bound.is_finite() { bound } else { f64::MAX }, calls))
                .collect();
            metric.encode_family(&labels)?.encode_histogram::<NoLabelSet>(
                histogram.sum_seconds,
                histogram.count,
                &buckets,
                None,
            )?;
        }
    }
    Ok(())
}

/// The families of the host: ingest, outbox, upstream.
fn encode_host(encoder: &mut DescriptorEncoder<'_>, status: &Status, oldest: OldestWaiting) -> Result<(), Error> {
    plain_counter(
        encoder,
        "edgewise_ingest_messages",
        "Messages received on the sensor subjects.",
        status.ingest.messages,
    )?;
    let mut metric = encoder.encode_descriptor(
        "edgewise_ingest_deadletters",
        "Dead letters published, by reason (malformed, future, too-old, sensor-mismatch, too-many-sensors).",
        None,
        MetricType::Counter,
    )?;
    for kind in DeadLetterKind::ALL {
        let reason = kind.as_str();
        let count = status.ingest.deadletters_by_reason.get(reason).copied().unwrap_or(0);
        counter(metric.encode_family(&[("reason", reason)])?, count)?;
    }
    plain_counter(
        encoder,
        "edgewise_ingest_dropped_by_client",
        "Messages from the local bus dropped before ingest took them (ingest slower than the bus).",
        status.ingest.dropped_by_client,
    )?;
    plain_counter(
        encoder,
        "edgewise_ingest_held_for_clock",
        "Deliveries of JetStream sensor messages held in the stream because their readings were from the future of the host clock while no new reading was taken (a device clock behind).",
        status.ingest.held_for_clock,
    )?;
    plain_counter(
        encoder,
        "edgewise_log_lines_dropped",
        "Log lines dropped because stderr took no more (its reader stalled); the host never waits for its log.",
        status.log_lines_dropped,
    )?;
    plain_counter(
        encoder,
        "edgewise_local_publishes_dropped",
        "Alerts and telemetry not published on the local bus because its client took nothing for a while (the server away); they still went to the outbox.",
        status.local_publishes_dropped,
    )?;
    plain_counter(
        encoder,
        "edgewise_local_publishes_refused",
        "Publishes of the host the local server refused: a permissions violation (alerts then reach only the cloud).",
        status.local_publishes_refused,
    )?;
    plain_counter(
        encoder,
        "edgewise_local_alerts_shortened",
        "Alerts published on the local bus with their message cut, larger in full than the local server's max_payload; they went to the outbox in full.",
        status.local_alerts_shortened,
    )?;
    plain_counter(
        encoder,
        "edgewise_local_subscriptions_over_limit",
        "Subscriptions of the host the local server refused past its limit of subscriptions: each one's input or requests get nothing until the host restarts.",
        status.local_subscriptions_over_limit,
    )?;
    let outbox = &status.outbox;
    let mut metric = encoder.encode_descriptor(
        "edgewise_outbox_entries",
        "Outputs waiting in the outbox to go upstream, by class (alerts, summaries).",
        None,
        MetricType::Gauge,
    )?;
    for (class, depth) in [("alerts", outbox.alerts), ("summaries", outbox.summaries)] {
        gauge(metric.encode_family(&[("class", class)])?, depth as i64)?;
    }
    let mut metric = encoder.encode_descriptor(
        "edgewise_outbox_oldest_age_seconds",
        "How long the first output of the class still in the outbox has waited, seconds (0 when none waits).",
        None,
        MetricType::Gauge,
    )?;
    for (class, waited) in [("alerts", oldest.alerts), ("summaries", oldest.summaries)] {
        gauge(
            metric.encode_family(&[("class", class)])?,
            waited.unwrap_or(0) as f64 / 1000.0,
        )?;
    }
    let mut metric = encoder.encode_descriptor(
        "edgewise_outbox_dropped",
        "Outbox entries let go without an upstream acknowledgement, by reason.",
        None,
        MetricType::Counter,
    )?;
    for (reason, count) in drops(&outbox.dropped) {
        counter(metric.encode_family(&[("reason", reason)])?, count)?;
    }
    let metric = encoder.encode_descriptor(
        "edgewise_upstream_connected",
        "1 while the upstream connection is up, else 0.",
        None,
        MetricType::Gauge,
    )?;
    gauge(metric, i64::from(status.upstream_connected))?;
    let metric = encoder.encode_descriptor(
        "edgewise_outbox_waiting_for_disk",
        "Outputs kept in memory because the disk refuses writes (stored once it takes them again).",
        None,
        MetricType::Gauge,
    )?;
    gauge(metric, outbox.waiting_for_disk as i64)?;
    let metric = encoder.encode_descriptor(
        "edgewise_outbox_in_memory",
        "1 when no outbox file could be used at start (a read-only or failing disk) and the outbox is in memory: nothing waiting outlives the process.",
        None,
        MetricType::Gauge,
    )?;
    gauge(metric, i64::from(outbox.in_memory.is_some()))?;
    let metric = encoder.encode_descriptor(
        "edgewise_upstream_rounds_failed",
        "Delivery rounds in which something was not acknowledged (retried, never lost).",
        None,
        MetricType::Counter,
    )?;
    counter(metric, outbox.rounds_failed)
}

/// Outbox drops by reason, as the status names them.
fn drops(dropped: &OutboxDrops) -> [(&'static str, u64); 10] {
    [
        ("summaries_for_space", dropped.summaries_for_space),
        ("summaries_refused", dropped.summaries_refused),
        ("alerts_for_space", dropped.alerts_for_space),
        ("expired_alerts", dropped.expired_alerts),
        ("expired_summaries", dropped.expired_summaries),
        ("undecryptable", dropped.undecryptable),
        ("parked_discarded", dropped.parked_discarded),
        ("inputs_expired", dropped.inputs_expired),
        ("inputs_for_space", dropped.inputs_for_space),
        ("telemetry", dropped.telemetry),
    ]
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::worker::call_times::{Call, CallTimes};

    /// A status with one plugin, as `edgewise status --json` would say it.
    fn status() -> Status {
        serde_json::from_value(serde_json::json!({
            "device": "d", "uptime_s": 1.0, "clock_ms": 0, "upstream_connected": true,
            "outbox": {"alerts": 3, "summaries": 0, "oldest_age_ms": 1500},
            "ingest": {"messages": 9, "deadlettered": 1, "deadletters_by_reason": {"future": 1}, "held_for_clock": 4},
            "plugins": [{
                "name": "glucose-monitor", "version": "0.3.0", "digest": "ab", "state": "restarting",
                "readings_in": 7, "alerts_out": 3, "summaries_out": 0, "errors": 1, "restarts": 1,
                "quarantines": 0, "failures": {"trap": 1}, "last_error": "sensor cgm.p1 at 45 mg/dL",
                "readings_held": 2, "readings_dropped": 0, "logs_dropped": 0
            }]
        }))
        .unwrap()
    }

    #[test]
    fn a_scrape_renders_counters_histograms_and_generations_without_the_last_error() {
        let times = CallTimes::default();
        times.record(Call::OnReadings, std::time::Duration::from_micros(30));
        let scrape = Scrape {
            status: status(),
            calls: vec![PluginCalls {
                plugin: "glucose-monitor".to_owned(),
                calls: Call::ALL.iter().map(|&call| (call, times.read(call))).collect(),
            }],
            oldest_ms: OldestWaiting {
                alerts: Some(1500),
                summaries: None,
            },
            generations: BTreeMap::from([("device.d".to_owned(), 7), ("group.ward-3".to_owned(), 2)]),
        };
        let text = render(scrape).unwrap();
        let labels = r#"plugin="glucose-monitor",version="0.3.0""#;
        for line in [
            format!("edgewise_plugin_readings_total{{{labels}}} 7"),
            format!(r#"edgewise_plugin_outputs_total{{{labels},kind="alert"}} 3"#),
            format!(r#"edgewise_plugin_failures_total{{{labels},reason="trap"}} 1"#),
            format!(r#"edgewise_plugin_state{{{labels},state="restarting"}} 1"#),
            format!(r#"edgewise_plugin_state{{{labels},state="running"}} 0"#),
            format!(r#"edgewise_plugin_state{{{labels},state="starting"}} 0"#),
            format!("edgewise_plugin_readings_held{{{labels}}} 2"),
            format!(r#"edgewise_plugin_call_duration_seconds_count{{{labels},call="on_readings"}} 1"#),
            r#"edgewise_ingest_deadletters_total{reason="future"} 1"#.to_owned(),
            r#"edgewise_ingest_deadletters_total{reason="malformed"} 0"#.to_owned(),
            "edgewise_ingest_held_for_clock_total 4".to_owned(),
            r#"edgewise_outbox_oldest_age_seconds{class="alerts"} 1.5"#.to_owned(),
            r#"edgewise_deployment_generation{key="device.d"} 7"#.to_owned(),
            r#"edgewise_deployment_generation{key="group.ward-3"} 2"#.to_owned(),
            "edgewise_upstream_connected 1".to_owned(),
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
        }
        let bucket =
            format!(r#"edgewise_plugin_call_duration_seconds_bucket{{le="0.00005",{labels},call="on_readings"}} 1"#);
        assert!(text.lines().any(|l| l == bucket), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
        // The last error quotes a sensor and a value: never shown.
        assert!(!text.contains("cgm.p1") && !text.contains("mg/dL"), "{text}");
    }

    #[test]
    fn label_values_are_escaped_so_a_name_cannot_forge_a_sample() {
        let mut status = status();
        status.plugins[0].name = "evil\"} 1\nedgewise_forged 2\\".to_owned();
        let text = render(Scrape {
            status,
            calls: Vec::new(),
            oldest_ms: OldestWaiting::default(),
            generations: BTreeMap::new(),
        })
        .unwrap();
        assert!(!text.lines().any(|l| l.starts_with("edgewise_forged")), "{text}");
        let line = r#"edgewise_plugin_readings_total{plugin="evil\"} 1\nedgewise_forged 2\\",version="0.3.0"} 7"#;
        assert!(text.lines().any(|l| l == line), "{text}");
    }
}
