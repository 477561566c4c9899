//! `edgewise dashboard`: the cloud-side web view of a fleet, read only from
//! NATS (the upstream streams and the deployment buckets), served by the
//! `edgewise` binary. Pages are rendered on the server as HTML with inline
//! SVG (maud: every value from a device is escaped); the live alert feed is
//! pushed to the page with server-sent events and a few lines of plain
//! JavaScript. Nothing is loaded from anywhere else (no CDN, no fonts), so
//! it works offline, and nothing needs a JavaScript build.
//!
//! Files, in the order data flows: `feed` (what the upstream streams and
//! the buckets say, folded into [`state::Fleet`]), `state` (bounded
//! in-memory view of the fleet), `html` (the page layout), `fleet_page`,
//! `alerts_page`, `clinical` (the per-sensor clinical views), `server`
//! (routes, access, server-sent events).

pub mod alerts_page;
pub mod clinical;
pub mod feed;
pub mod fleet_page;
pub mod html;
pub mod server;
pub mod state;

pub use feed::Feed;
pub use server::{Credential, DashboardConfig, DashboardError, DashboardServer};
pub use state::Fleet;

use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

/// An hour, ms: the length of an hourly summary window.
pub const HOUR_MS: i64 = 60 * 60 * 1000;
/// A day, ms: the length of a daily summary window.
pub const DAY_MS: i64 = 24 * HOUR_MS;

/// The link to a sensor's page (and one of its days).
pub fn sensor_href(device: &str, sensor: &str, day: Option<&str>) -> String {
    let mut href = format!(
        "/sensors/{}/{}",
        utf8_percent_encode(device, NON_ALPHANUMERIC),
        utf8_percent_encode(sensor, NON_ALPHANUMERIC)
    );
    if let Some(day) = day {
        href.push_str("?day=");
        href.push_str(&utf8_percent_encode(day, NON_ALPHANUMERIC).to_string());
    }
    href
}
