//! Tests of the whole page: its DOM hooks against the golden summaries,
//! escaping, day selection, and no panic on any record.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::fixtures::golden_record;
use super::*;

/// The values of attribute `name` on the elements whose opening tag starts
/// with `tag_start` (e.g. `<tr class="day"`).
fn attributes(html: &str, tag_start: &str, name: &str) -> Vec<String> {
    html.split(tag_start)
        .skip(1)
        .map(|rest| {
            let tag = &rest[..rest.find('>').unwrap()];
            let at = tag.find(&format!(" {name}=\"")).unwrap() + name.len() + 3;
            tag[at..at + tag[at..].find('"').unwrap()].to_owned()
        })
        .collect()
}

/// The plugins whose summaries are glucose, as the dashboard's default.
fn glucose_monitor() -> Vec<String> {
    vec!["glucose-monitor".to_owned()]
}

/// Another plugin's summaries of the same sensor never take the place of
/// the glucose plugin's, nor mix with them: `band` sends an hourly `mean` of
/// the same readings (in whatever unit they came), and a plugin may send
/// anything under a name that sorts first. The page charts the windows of
/// the glucose plugins only.
#[test]
fn other_plugins_summaries_of_the_sensor_change_nothing_on_its_page() {
    let full = golden_record("Subject 1");
    let record = SensorRecord {
        hourly: full.hourly[..30].to_vec(),
        daily: full.daily[..3].to_vec(),
        ..full
    };
    let mut mixed = record.clone();
    let other = |window: &Window, plugin: &str| Window {
        plugin: plugin.to_owned(),
        metrics: window.metrics.keys().map(|name| (name.clone(), 6.5)).collect(),
        ..window.clone()
    };
    mixed.hourly = record
        .hourly
        .iter()
        .flat_map(|w| [other(w, "band"), w.clone()])
        .collect();
    mixed.daily = record
        .daily
        .iter()
        .flat_map(|w| [other(w, "aa-evil"), w.clone()])
        .collect();
    for day in [None, Some("2015-06-07")] {
        assert_eq!(
            sensor_page(&mixed, day, &glucose_monitor()).into_string(),
            sensor_page(&record, day, &glucose_monitor()).into_string()
        );
    }
    // The first plugin listed is the one shown where both sent a window.
    let listed = ["band".to_owned(), "glucose-monitor".to_owned()];
    assert_ne!(
        sensor_page(&mixed, None, &listed).into_string(),
        sensor_page(&record, None, &glucose_monitor()).into_string(),
        "band's hours, listed first"
    );
}

#[test]
fn day_rows_carry_the_daily_summaries_exactly() {
    // A small record from real lines: the first 3 daily and 30 hourly
    // summaries of Subject 1.
    let full = golden_record("Subject 1");
    let mut record = SensorRecord {
        hourly: full.hourly[..30].to_vec(),
        daily: full.daily[..3].to_vec(),
        ..full
    };
    record.alerts.clear();
    assert_eq!(record.daily.len(), 3);
    let html = sensor_page(&record, None, &glucose_monitor()).into_string();
    let days = attributes(&html, "<tr class=\"day\"", "data-day");
    let tirs = attributes(&html, "<tr class=\"day\"", "data-tir");
    assert_eq!(days, ["2015-06-06", "2015-06-07", "2015-06-08"]);
    let expected: Vec<String> = record
        .daily
        .iter()
        .map(|w| w.metrics["tir_70_180"].to_string())
        .collect();
    assert_eq!(tirs, expected);
    // (serde_json without `float_roundtrip` reads the file's
    // 97.34042553191489 one unit in the last place off: the page prints
    // what it was given.)
    assert!(tirs[2].starts_with("97.340425531914"), "{}", tirs[2]);
    assert!(
        html.contains("<td class=\"num tir\">97.3</td>"),
        "TIR is shown with one decimal"
    );
    assert_eq!(attributes(&html, "<g class=\"day\"", "data-day"), days);
    // Other plugins' summaries are not glucose: they add no row.
    record.daily.push(Window {
        plugin: "glucose-forecast".into(),
        start_ms: record.daily[0].start_ms,
        end_ms: record.daily[0].end_ms,
        metrics: BTreeMap::from([("rmse_30".into(), 12.0)]),
    });
    let html = sensor_page(&record, None, &glucose_monitor()).into_string();
    assert_eq!(attributes(&html, "<tr class=\"day\"", "data-day").len(), 3);
}

#[test]
fn the_golden_subject_has_every_view() {
    let record = golden_record("Subject 1");
    let html = sensor_page(&record, None, &glucose_monitor()).into_string();
    for id in [
        "summary",
        "glucose-chart",
        "tir-chart",
        "days",
        "agp-chart",
        "day-alerts",
    ] {
        assert!(html.contains(&format!("id=\"{id}\"")), "no #{id}");
    }
    assert_eq!(
        attributes(&html, "<tr class=\"day\"", "data-day").len(),
        record.daily.len()
    );
    assert_eq!(attributes(&html, "<div class=\"card summary\"", "data-days"), ["14"]);
    // The overall time in range is the n-weighted mean of the daily ones.
    let (sum, n) = record.daily.iter().fold((0.0, 0.0), |(sum, n), w| {
        (sum + w.metrics["tir_70_180"] * w.metrics["n"], n + w.metrics["n"])
    });
    assert_eq!(
        attributes(&html, "<div class=\"card summary\"", "data-tir"),
        [(sum / n).to_string()]
    );
    // The default day is the last one with data.
    assert_eq!(
        attributes(&html, "<section id=\"day-alerts\"", "data-day"),
        ["2015-06-19"]
    );
    // `EDGEWISE_SENSOR_PAGE=/tmp/sensor.html` keeps the page to look at.
    if let Some(path) = std::env::var_os("EDGEWISE_SENSOR_PAGE") {
        std::fs::write(path, &html).unwrap();
    }
}

#[test]
fn device_strings_are_escaped() {
    let hostile = "<script>alert(1)</script>";
    let mut record = golden_record("Subject 3");
    record.sensor = hostile.into();
    record.device = format!("\"{hostile}");
    for alert in &mut record.alerts {
        alert.severity = format!("critical\" onmouseover=\"x{hostile}");
        alert.code = hostile.into();
        alert.message = hostile.into();
    }
    let html = sensor_page(&record, None, &glucose_monitor()).into_string();
    assert!(!html.contains("<script"), "a device string became markup");
    assert!(!html.contains("\" onmouseover"));
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    // An unknown severity gets no class.
    assert!(!html.contains("class=\"severity-"));
}

#[test]
fn the_day_parameter_picks_the_alerts() {
    let record = golden_record("Subject 1");
    let day_of_alerts = |html: &str| attributes(html, "<section id=\"day-alerts\"", "data-day");
    let html = sensor_page(&record, Some("2015-06-08"), &glucose_monitor()).into_string();
    assert_eq!(day_of_alerts(&html), ["2015-06-08"]);
    assert!(!html.contains("class=\"note\""));
    assert!(html.contains("<tr class=\"day\" data-day=\"2015-06-08\"") && html.contains("aria-current=\"date\""));
    // Newest first.
    let times: Vec<i64> = attributes(&html, "<tr class=\"alert\"", "data-ts")
        .iter()
        .map(|ts| ts.parse().unwrap())
        .collect();
    assert!(
        !times.is_empty() && times.windows(2).all(|pair| pair[0] >= pair[1]),
        "{times:?}"
    );
    for (asked, note) in [
        ("1999-01-01", "No data and no alerts on 1999-01-01; showing 2015-06-19."),
        (
            "2015-02-30",
            "The day asked for is not a date (YYYY-MM-DD); showing 2015-06-19.",
        ),
        (
            "<b>",
            "The day asked for is not a date (YYYY-MM-DD); showing 2015-06-19.",
        ),
        ("", "The day asked for is not a date (YYYY-MM-DD); showing 2015-06-19."),
    ] {
        let html = sensor_page(&record, Some(asked), &glucose_monitor()).into_string();
        assert_eq!(day_of_alerts(&html), ["2015-06-19"], "{asked}");
        assert!(html.contains(&format!("<p class=\"note\">{note}</p>")), "{asked}");
    }
}

#[test]
fn an_empty_record_says_no_data_yet() {
    let record = SensorRecord {
        device: "d".into(),
        sensor: "s".into(),
        ..Default::default()
    };
    let html = sensor_page(&record, Some("2015-06-08"), &glucose_monitor()).into_string();
    assert!(html.contains("id=\"no-data\""));
    assert!(!html.contains("<svg"));
    assert!(html.contains("No alerts on this day."));
}

fn metric_value() -> impl Strategy<Value = f64> {
    prop_oneof![
        -50.0..500.0f64,
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(0.0),
        Just(f64::MAX),
        any::<f64>(),
    ]
}

fn window() -> impl Strategy<Value = Window> {
    let names = prop::sample::select(vec![
        "n",
        "mean",
        "min",
        "max",
        "cv",
        "gmi",
        "tir_70_180",
        "tbr_below_54",
        "tbr_54_69",
        "tar_181_250",
        "tar_above_250",
    ]);
    let start = prop_oneof![
        1_433_548_800_000i64..1_433_548_800_000 + 40 * 86_400_000,
        any::<i64>(),
        Just(i64::MIN),
        Just(i64::MAX),
    ];
    let length = prop_oneof![Just(3_600_000i64), Just(86_400_000), Just(0), -10i64..10, any::<i64>()];
    (start, length, prop::collection::btree_map(names, metric_value(), 0..11)).prop_map(
        |(start_ms, length, metrics)| Window {
            plugin: "p".into(),
            start_ms,
            end_ms: start_ms.saturating_add(length),
            metrics: metrics.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        },
    )
}

fn alert() -> impl Strategy<Value = SensorAlert> {
    (any::<i64>(), ".{0,12}", prop::option::of(metric_value())).prop_map(|(ts, text, value)| SensorAlert {
        plugin: "p".into(),
        ts,
        severity: text.clone(),
        code: text.clone(),
        message: text,
        value,
        arrival: 0,
    })
}

proptest! {
    #[test]
    fn any_record_renders(
        hourly in prop::collection::vec(window(), 0..60),
        daily in prop::collection::vec(window(), 0..20),
        alerts in prop::collection::vec(alert(), 0..20),
        day in prop::option::of(prop_oneof![".{0,12}", Just("2015-06-08".to_owned())]),
    ) {
        let record = SensorRecord { device: "d".into(), sensor: "s".into(), hourly, daily, alerts };
        let html = sensor_page(&record, day.as_deref(), &glucose_monitor()).into_string();
        prop_assert!(html.contains("id=\"day-alerts\""));
    }
}
