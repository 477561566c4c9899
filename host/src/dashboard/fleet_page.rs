//! The fleet page (`/`): every device, what it runs, how its deployments
//! went, and its latest telemetry. The table is re-read by the page every
//! few seconds (`/fleet/table`), so the page stays current without a reload.

use std::collections::BTreeMap;

use maud::{Markup, html};

use super::html::{Nav, page};
use super::sensor_href;
use super::state::{Device, Fleet};
use crate::deploy::ReportedPlugin;
use crate::telemetry::TelemetryPlugin;

/// The whole page.
pub fn fleet_page(fleet: &Fleet, now_ms: i64) -> Markup {
    page(
        "Fleet",
        Nav::Fleet,
        html! {
            h1 { "Fleet" }
            div #fleet data-refresh="/fleet/table" { (fleet_table(fleet, now_ms)) }
            script src="/static/dashboard.js" {}
        },
    )
}

/// What a plugin row shows: from the telemetry and from the report.
struct PluginRow<'a> {
    telemetry: Option<&'a TelemetryPlugin>,
    report: Option<&'a ReportedPlugin>,
}

/// The plugins of a device by name, from both sources.
fn plugin_rows(device: &Device) -> BTreeMap<&str, PluginRow<'_>> {
    let mut rows: BTreeMap<&str, PluginRow<'_>> = BTreeMap::new();
    if let Some(telemetry) = &device.telemetry {
        for plugin in &telemetry.plugins {
            rows.entry(plugin.name.as_str())
                .or_insert(PluginRow {
                    telemetry: None,
                    report: None,
                })
                .telemetry = Some(plugin);
        }
    }
    if let Some(report) = &device.report {
        for (name, plugin) in &report.plugins {
            rows.entry(name.as_str())
                .or_insert(PluginRow {
                    telemetry: None,
                    report: None,
                })
                .report = Some(plugin);
        }
    }
    rows
}

/// "12 s ago", "5 min ago", "3 h ago", "2 d ago".
pub fn ago(now_ms: i64, then_ms: i64) -> String {
    let seconds = now_ms.saturating_sub(then_ms).max(0) / 1000;
    match seconds {
        0..60 => format!("{seconds} s ago"),
        60..3600 => format!("{} min ago", seconds / 60),
        3600..86_400 => format!("{} h ago", seconds / 3600),
        _ => format!("{} d ago", seconds / 86_400),
    }
}

/// `ms` as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn utc(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute]:[second] UTC"
            ))
            .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

/// The table of devices (also served alone, for the page's refresh).
pub fn fleet_table(fleet: &Fleet, now_ms: i64) -> Markup {
    let devices = fleet.devices();
    let refused = &fleet.refused;
    html! {
        p.muted {
            span #device-count { (devices.len()) } " devices · as of " (utc(now_ms))
            @if refused.malformed + refused.wrong_device + refused.over_limits + refused.unreadable_reports > 0 {
                " · not shown: " (refused.malformed) " malformed, " (refused.wrong_device)
                " from the wrong device, " (refused.over_limits) " over limits, "
                (refused.unreadable_reports) " unreadable reports"
            }
            @if refused.evicted_sensors > 0 {
                " · " (refused.evicted_sensors) " sensors let go for newer ones (the least recently heard of)"
            }
        }
        @if devices.is_empty() {
            p.card { "No device has reported yet. Devices appear here when their telemetry, outputs or deployment reports reach the cloud." }
        } @else {
            table #devices {
                thead { tr {
                    th { "Device" } th { "Last seen" } th { "Upstream" } th.num { "Outbox" }
                    th { "Plugin" } th { "Version" } th { "State" } th { "Deployment" }
                    th.num { "Readings" } th.num { "Alerts" } th.num { "Summaries" } th.num { "Restarts" }
                } }
                @for (name, device) in devices {
                    (device_rows(name, device, now_ms))
                }
            }
        }
    }
}

/// The rows of one device: one per plugin (at least one).
fn device_rows(name: &str, device: &Device, now_ms: i64) -> Markup {
    let plugins = plugin_rows(device);
    let span = plugins.len().max(1);
    let telemetry = device.telemetry.as_ref();
    let head = html! {
        td rowspan=(span) {
            strong { (name) }
            @if let Some(t) = telemetry { br; span.muted { "edgewise " (t.host_version) } }
            @for sensor in &device.sensors {
                br; a.sensor href=(sensor_href(name, sensor, None)) { (sensor) }
            }
        }
        td rowspan=(span) title=(utc(device.last_seen_ms)) { (ago(now_ms, device.last_seen_ms)) }
        td rowspan=(span) {
            @match telemetry {
                Some(t) if t.upstream_connected => { span.state-running { "connected" } }
                Some(_) => { span.state-degraded { "offline" } }
                None => { span.muted { "-" } }
            }
        }
        td.num rowspan=(span) title="alerts, summaries, telemetry waiting" {
            @if let Some(t) = telemetry {
                (t.outbox.alerts) " / " (t.outbox.summaries) " / " (t.outbox.telemetry)
            } @else { "-" }
        }
    };
    html! {
        @if plugins.is_empty() {
            tr.device data-device=(name) { (head) td.muted colspan="8" { "no plugin" } }
        }
        @for (index, (plugin, row)) in plugins.iter().enumerate() {
            tr.plugin.device[index == 0] data-device=[(index == 0).then_some(name)] data-plugin=(plugin) {
                @if index == 0 { (head) }
                td { (plugin) }
                td {
                    @if let Some(t) = row.telemetry { (t.version) }
                    @else if let Some(r) = row.report { (r.running_version) }
                }
                td {
                    @if let Some(t) = row.telemetry { span class=(state_class(&t.state)) { (t.state) } }
                    @else { span.muted { "-" } }
                }
                td { (deployment(row.report, now_ms)) }
                @if let Some(t) = row.telemetry {
                    td.num { (t.readings_in) } td.num { (t.alerts_out) } td.num { (t.summaries_out) } td.num { (t.restarts) }
                } @else {
                    td.num { "-" } td.num { "-" } td.num { "-" } td.num { "-" }
                }
            }
        }
    }
}

/// The class of a plugin state: only known states get one.
fn state_class(state: &str) -> &'static str {
    match state {
        "running" => "state-running",
        "quarantined" => "state-quarantined",
        "refused" => "state-refused",
        "degraded" | "restarting" => "state-degraded",
        _ => "",
    }
}

/// The latest deployment of a plugin: phase, generation, since, reason.
fn deployment(report: Option<&ReportedPlugin>, now_ms: i64) -> Markup {
    let Some(deployment) = report.and_then(|r| r.deployment.as_ref()) else {
        return html! { span.muted { "from its own configuration" } };
    };
    let phase = deployment.phase.name();
    html! {
        span class={ "phase-" (phase) } { (phase) }
        " " span.muted { (deployment.version) " · gen " (deployment.generation) " · " (ago(now_ms, deployment.since_ms)) }
        @if let Some(reason) = &deployment.reason { br; span.muted { (reason) } }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::{Deployment, Phase, Reported};

    #[test]
    fn a_device_shows_its_deployments_phase_and_a_hostile_name_stays_text() {
        let mut fleet = Fleet::default();
        let mut plugin = ReportedPlugin {
            running_version: "1.2.0".to_owned(),
            ..ReportedPlugin::default()
        };
        plugin.deployment = Some(Deployment {
            key: "group.ward".to_owned(),
            generation: 42,
            bundle: "b".to_owned(),
            version: "1.2.0".to_owned(),
            phase: Phase::RolledBack,
            reason: Some("<script>alert(1)</script> trapped".to_owned()),
            since_ms: 1_000,
            history: Vec::new(),
            pushed_ms: 0,
            pause_us: None,
        });
        fleet.take_report(Reported {
            device: "ward-9".to_owned(),
            last_seen_ms: 1_000,
            plugins: [("glucose-monitor".to_owned(), plugin)].into(),
            ..Reported::default()
        });
        let html = fleet_table(&fleet, 61_000).into_string();
        assert!(html.contains(r#"data-device="ward-9""#), "{html}");
        assert!(html.contains(r#"class="phase-rolled-back""#), "{html}");
        assert!(html.contains("gen 42"), "{html}");
        assert!(html.contains("1 min ago"), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
        assert!(!html.contains("<script>"), "{html}");
    }

    #[test]
    fn ages_read_as_people_say_them() {
        assert_eq!(ago(10_000, 0), "10 s ago");
        assert_eq!(ago(0, 10_000), "0 s ago", "a device clock ahead of ours");
        assert_eq!(ago(7_200_000, 0), "2 h ago");
        assert_eq!(ago(3 * 86_400_000, 0), "3 d ago");
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
    }
}
