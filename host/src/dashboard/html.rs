//! The layout every dashboard page shares: head, navigation, style. The
//! style sheet is served by the dashboard itself (`/static/style.css`): a
//! page needs nothing from anywhere else.

use maud::{DOCTYPE, Markup, html};

/// Which navigation entry a page belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    /// The fleet page (`/`).
    Fleet,
    /// The live alert feed (`/alerts`).
    Alerts,
    /// A sensor page (`/sensors/...`).
    Sensor,
}

/// A whole page: `title`, the navigation with `active` marked, `body`.
pub fn page(title: &str, active: Nav, body: Markup) -> Markup {
    let entry = |nav: Nav, href: &str, label: &str| {
        html! { a href=(href) class=[(nav == active).then_some("active")] { (label) } }
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Edgewise" }
                link rel="stylesheet" href="/static/style.css";
            }
            body {
                nav {
                    span.brand { "Edgewise" }
                    (entry(Nav::Fleet, "/", "Fleet"))
                    (entry(Nav::Alerts, "/alerts", "Alerts"))
                }
                main { (body) }
            }
        }
    }
}

/// The one style sheet: system fonts only, colours for the clinical bands
/// (the conventional CGM report colours: very low dark red, low red, in range
/// green, high amber, very high orange).
pub const STYLE: &str = r#"
:root { --very-low:#8b0000; --low:#e53935; --in-range:#43a047; --high:#fbc02d; --very-high:#ef6c00;
        --ink:#1c2430; --muted:#5f6b7a; --line:#d7dde5; --bg:#f6f8fa; }
* { box-sizing: border-box; }
body { margin:0; font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color:var(--ink); background:var(--bg); }
nav { display:flex; gap:1.25rem; align-items:center; padding:.75rem 1.5rem; background:#14304f; }
nav a { color:#cfe0f5; text-decoration:none; }
nav a.active { color:#fff; font-weight:600; border-bottom:2px solid #fff; }
nav .brand { color:#fff; font-weight:700; margin-right:1rem; }
main { padding:1.25rem 1.5rem; max-width:1200px; }
h1 { font-size:1.4rem; margin:.2rem 0 1rem; }
h2 { font-size:1.1rem; margin:1.5rem 0 .5rem; }
table { border-collapse:collapse; background:#fff; width:100%; font-size:.9rem; }
th, td { text-align:left; padding:.35rem .6rem; border-bottom:1px solid var(--line); vertical-align:top; }
th { background:#eef2f6; font-weight:600; }
td.num, th.num { text-align:right; font-variant-numeric: tabular-nums; }
.muted { color:var(--muted); }
.card { background:#fff; border:1px solid var(--line); border-radius:6px; padding:1rem; margin-bottom:1rem; }
.phase-healthy, .state-running { color:var(--in-range); font-weight:600; }
.phase-failed, .phase-refused, .phase-rolled-back, .state-quarantined, .state-refused, .state-degraded { color:var(--low); font-weight:600; }
.severity-critical { color:#fff; background:var(--very-low); padding:0 .4rem; border-radius:3px; }
.severity-warning { color:var(--ink); background:var(--high); padding:0 .4rem; border-radius:3px; }
.severity-info { color:#fff; background:#607d8b; padding:0 .4rem; border-radius:3px; }
svg text { font-family: inherit; font-size:11px; fill:var(--muted); }
/* sensor page (dashboard/clinical) */
.summary { display:flex; flex-wrap:wrap; gap:1rem 2.5rem; }
.stat { display:flex; flex-direction:column; }
.stat .label { font-size:.8rem; color:var(--muted); }
.stat .value { font-size:1.35rem; font-weight:600; }
.stat .value small { font-size:.8rem; font-weight:400; color:var(--muted); margin-left:.15rem; }
svg.chart { display:block; width:100%; height:auto; }
.chart rect.plot { fill:#fff; stroke:var(--line); }
.chart rect.target { fill:var(--in-range); fill-opacity:.12; }
.chart line.grid { stroke:#aab4c0; stroke-dasharray:3 3; }
.chart line.limit { stroke:var(--in-range); stroke-width:1.2; }
.chart line.tick { stroke:var(--line); }
.chart path.range { fill:#1f5fa8; fill-opacity:.18; }
.chart path.mean { fill:none; stroke:#1f5fa8; stroke-width:1.6; stroke-linejoin:round; stroke-linecap:round; }
.chart path.outer { fill:#5b8fd0; fill-opacity:.3; }
.chart path.inner { fill:#1f5fa8; fill-opacity:.55; }
.chart path.median { fill:none; stroke:#0b2e59; stroke-width:2.5; stroke-linejoin:round; stroke-linecap:round; }
.chart rect.very-low { fill:var(--very-low); } .chart rect.low { fill:var(--low); }
.chart rect.in-range { fill:var(--in-range); } .chart rect.high { fill:var(--high); }
.chart rect.very-high { fill:var(--very-high); }
.chart g.day:hover rect { opacity:.8; }
svg text.bar-label { fill:var(--ink); font-weight:600; }
svg text.unit { font-size:10px; }
.legend { display:flex; flex-wrap:wrap; gap:.4rem 1.2rem; margin:.5rem 0 1rem; font-size:.85rem; }
.swatch { display:inline-block; width:.8rem; height:.8rem; margin-right:.35rem; vertical-align:-1px; border-radius:2px; }
.swatch.very-low { background:var(--very-low); } .swatch.low { background:var(--low); }
.swatch.in-range { background:var(--in-range); } .swatch.high { background:var(--high); }
.swatch.very-high { background:var(--very-high); }
.caption { font-size:.8rem; color:var(--muted); margin:.4rem 0 0; }
tr.day[aria-current] td { background:#e3eefb; }
.alert-days a { margin-right:.6rem; white-space:nowrap; }
.alert-days a[aria-current] { font-weight:700; }
p.note { background:#fff8e1; border:1px solid var(--high); padding:.4rem .6rem; border-radius:4px; }
"#;
