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

pub mod clinical;
pub mod html;
