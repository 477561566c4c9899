//! The live alert feed (`/alerts`): the fleet's recent alerts, critical
//! first and newest first within a severity; new ones are pushed to the page
//! as they arrive (server-sent events on `/alerts/events`, each with its row
//! rendered here) and put in their place by `dashboard.js`, without a reload.

use maud::{Markup, html};

use super::fleet_page::utc;
use super::html::{Nav, page};
use super::sensor_href;
use super::state::{AlertId, FeedAlert, Fleet, severity_rank};

/// The page, with the alerts known now.
pub fn alerts_page(fleet: &Fleet) -> Markup {
    let mut alerts: Vec<&FeedAlert> = fleet.feed().collect();
    alerts.sort_by(|a, b| a.rank().cmp(&b.rank()).then(b.ts.cmp(&a.ts)).then(b.id.cmp(&a.id)));
    // The page's last alert; with none yet, this start's epoch still says
    // which numbering the page has (`AlertId`).
    let last_id = fleet.feed().next_back().map_or_else(
        || AlertId {
            epoch: fleet.epoch(),
            seq: 0,
        },
        |alert| alert.id,
    );
    page(
        "Alerts",
        Nav::Alerts,
        html! {
            h1 { "Live alerts" }
            p.muted { "Critical first, newest first. New alerts appear as they arrive. " span #feed-status { "connecting…" } }
            table #alerts data-events="/alerts/events" data-last-id=(last_id) {
                thead { tr {
                    th { "Time (UTC)" } th { "Severity" } th { "Device" } th { "Sensor" }
                    th { "Code" } th { "Message" } th.num { "Value" }
                } }
                tbody {
                    @for alert in alerts { (alert_row(alert)) }
                }
            }
            script src="/static/dashboard.js" {}
        },
    )
}

/// One row of the table, for the page and for each pushed alert (the
/// event carries it, so the page never builds a row of its own).
pub fn alert_row(alert: &FeedAlert) -> Markup {
    html! {
        tr.alert data-id=(alert.id) data-rank=(severity_rank(&alert.severity)) data-ts=(alert.ts) {
            td { (utc(alert.ts)) }
            td { span class=(severity_class(&alert.severity)) { (alert.severity) } }
            td { (alert.device) }
            td { a href=(sensor_href(&alert.device, &alert.sensor, None)) { (alert.sensor) } }
            td.code { (alert.code) }
            td { (alert.message) }
            td.num { @if let Some(value) = alert.value { (value) } }
        }
    }
}

/// The class of a severity: only the known ones get one.
pub fn severity_class(severity: &str) -> &'static str {
    match severity {
        "critical" => "severity-critical",
        "warning" => "severity-warning",
        "info" => "severity-info",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The page tells `dashboard.js` its last alert, and so the dashboard's
    /// start the rows are numbered in, even before any alert.
    #[test]
    fn the_page_names_its_last_alert_with_the_start_it_is_of() {
        let mut fleet = Fleet::with_epoch(42);
        let html = alerts_page(&fleet).into_string();
        assert!(html.contains(r#"data-last-id="42-0""#), "{html}");
        let alert = serde_json::json!({"type":"alert","device":"d","sensor":"s","ts":1,
            "severity":"critical","code":"low","message":"low","value":50.0});
        fleet.take("edgewise.d.up.alerts.p", alert.to_string().as_bytes(), 0);
        let html = alerts_page(&fleet).into_string();
        assert!(html.contains(r#"data-last-id="42-1""#), "{html}");
        assert!(html.contains(r#"data-id="42-1""#), "{html}");
    }
}
