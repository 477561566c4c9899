//! `edgewise export` (issue #14): a plugin's input log, from a stopped
//! device's data directory, into a recording that `edgewise replay` reads;
//! plaintext, said so; refused while the device runs; damaged rows of the log
//! skipped and counted.

use std::ffi::OsStr;
use std::path::Path;

use edgewise_tests::nats::NatsServer;
use edgewise_tests::{Run, edgewise};
use serde_json::Value;

use crate::device::{Device, now_ms, reading};
use crate::support::{assert_contains, status_until};

const PLUGIN: &str = "glucose-monitor";

/// The readings sent: (subject, ts, value), two sensors, lows and highs
/// among them (alerts to compare), a minute apart, ending a minute ago.
fn readings() -> Vec<(String, i64, f64)> {
    let start = now_ms() - 3_600_000;
    (0..40)
        .map(|k: i64| {
            let value = [45.0, 120.5, 260.0, 62.25, 99.0][(k % 5) as usize];
            (format!("sensors.cgm.p{}", k % 2), start + k * 60_000, value)
        })
        .collect()
}

/// A device with glucose-monitor that was given `sent` and stopped cleanly:
/// every reading is in its input log.
async fn stopped_device(sent: &[(String, i64, f64)]) -> Device {
    let local = NatsServer::start();
    let mut device = Device::new(&local, None, "");
    let client = device.start(&local).await;
    // In two halves, the second sent once the first is taken: at least two
    // rows of readings in the log.
    let half = sent.len().div_ceil(2);
    for (given, part) in [(half, &sent[..half]), (sent.len(), &sent[half..])] {
        for (subject, ts, value) in part {
            client.publish(subject.clone(), reading(*ts, *value)).await.unwrap();
        }
        client.flush().await.unwrap();
        status_until(&client, "the plugin to take the readings", |status| {
            crate::support::plugin(status, PLUGIN)["readings_in"] == given
        })
        .await;
    }
    device.terminate_cleanly().await;
    device
}

/// As [`stopped_device`], for a device whose glucose-monitor takes
/// `sensors.cgm.gateway.>` as a trusted gateway (`payload_sensors`), given
/// each reading of `sent` through it: on `sensors.cgm.gateway.ward-3`, its
/// sensor named in the payload.
async fn stopped_gateway_device(sent: &[(String, i64, f64)]) -> Device {
    let local = NatsServer::start();
    let mut device = Device::new(&local, None, "payload_sensors = [\"sensors.cgm.gateway.>\"]\n");
    let client = device.start(&local).await;
    for (subject, ts, value) in sent {
        let sensor = &subject["sensors.".len()..];
        let payload = format!(r#"{{"sensor":"{sensor}","ts":{ts},"value":{value},"unit":"mg/dL"}}"#);
        client
            .publish("sensors.cgm.gateway.ward-3", payload.into())
            .await
            .unwrap();
    }
    client.flush().await.unwrap();
    status_until(&client, "the plugin to take the readings", |status| {
        crate::support::plugin(status, PLUGIN)["readings_in"] == sent.len()
    })
    .await;
    device.terminate_cleanly().await;
    device
}

/// `edgewise export --data-dir <device>/data --plugin P` then `extra`.
fn export(device: &Device, plugin: &str, extra: &[&OsStr]) -> Run {
    let data = device.path("data");
    let mut args: Vec<&OsStr> = vec![
        "export".as_ref(),
        "--data-dir".as_ref(),
        data.as_os_str(),
        "--plugin".as_ref(),
        plugin.as_ref(),
    ];
    args.extend(extra);
    edgewise(args)
}

/// (sensor, ts, value, unit) of each line of a recording.
fn recorded(path: &Path) -> Vec<(String, i64, f64, String)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| {
            let line: Value = serde_json::from_str(line).unwrap();
            let payload = &line["payload"];
            (
                payload["sensor"].as_str().unwrap().to_owned(),
                payload["ts"].as_i64().unwrap(),
                payload["value"].as_f64().unwrap(),
                payload["unit"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// `sent` as a recording written directly, as `edgewise record` would have.
fn write_directly(sent: &[(String, i64, f64)], path: &Path) {
    let lines: String = sent
        .iter()
        .map(|(subject, ts, value)| {
            let payload: Value = serde_json::from_slice(&reading(*ts, *value)).unwrap();
            format!("{}\n", serde_json::json!({"subject": subject, "payload": payload}))
        })
        .collect();
    std::fs::write(path, lines).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_log_of_a_stopped_device_exports_to_a_plaintext_recording_that_replays_as_the_readings_sent() {
    let sent = readings();
    let device = stopped_device(&sent).await;
    let out = device.path("exported.jsonl");
    let run = export(&device, PLUGIN, &["--out".as_ref(), out.as_os_str()]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_contains(&run.stderr, "plaintext: it holds the readings");
    assert_contains(&run.stderr, "outside the device's encryption");
    assert_contains(&run.stderr, "exported 40 readings");
    assert!(!run.stderr.contains("damaged"), "{}", run.stderr);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o600);

    let expected = assert_replays_as_sent(&device, &out, &sent);

    // Never over an existing file.
    let again = export(&device, PLUGIN, &["--out".as_ref(), out.as_os_str()]);
    assert_eq!(again.code, Some(2), "{}", again.stderr);
    assert_contains(&again.stderr, "never overwrites");
    assert_eq!(recorded(&out), expected);
}

/// The export `out` of `device` holds every reading of `sent` once, in the
/// order sent, exactly, and replays as `sent` itself does (urgent-lows of
/// both sensors among the outputs); what it holds.
fn assert_replays_as_sent(device: &Device, out: &Path, sent: &[(String, i64, f64)]) -> Vec<(String, i64, f64, String)> {
    let expected: Vec<(String, i64, f64, String)> = sent
        .iter()
        .map(|(subject, ts, value)| (subject["sensors.".len()..].to_owned(), *ts, *value, "mg/dL".to_owned()))
        .collect();
    assert_eq!(recorded(out), expected);

    let direct = device.path("direct.jsonl");
    write_directly(sent, &direct);
    let (from_export, from_direct) = (device.replay(out, &[]), device.replay(&direct, &[]));
    assert_eq!(from_export.code, Some(0), "{}", from_export.stderr);
    assert_eq!(from_direct.code, Some(0), "{}", from_direct.stderr);
    let urgent_lows: std::collections::BTreeSet<String> = from_export
        .stdout
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter(|output| output["code"] == "urgent-low")
        .map(|output| output["sensor"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(urgent_lows, ["cgm.p0".to_owned(), "cgm.p1".to_owned()].into());
    assert_eq!(from_export.stdout, from_direct.stdout);
    expected
}

/// Readings a trusted gateway multiplexed on one subject under
/// `sensors.<kind>.` (the layout `docs/operators.md` gives) export on their
/// sensors' own subjects, which the plugin's subscriptions take: the replay
/// of the export is the replay of the readings as their sensors would have
/// sent them. (The log keeps no subject: a gateway subject the plugin takes
/// but `sensors.<sensor>` it does not would not replay; operators.md says so.)
#[tokio::test(flavor = "multi_thread")]
async fn readings_through_a_trusted_gateway_export_on_their_sensors_subjects_and_replay_alike() {
    let sent = readings();
    let device = stopped_gateway_device(&sent).await;
    let out = device.path("exported.jsonl");
    let run = export(&device, PLUGIN, &["--out".as_ref(), out.as_os_str()]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_contains(&run.stderr, "exported 40 readings");
    assert_replays_as_sent(&device, &out, &sent);
}

#[tokio::test(flavor = "multi_thread")]
async fn from_and_to_select_by_the_readings_own_time_and_dash_is_standard_output() {
    let sent = readings();
    let device = stopped_device(&sent).await;
    let rfc3339 = |ms: i64| {
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
            .unwrap()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    // Readings 10 to 19: `from` included, `to` excluded.
    let (from, to) = (rfc3339(sent[10].1), rfc3339(sent[20].1));
    let run = export(
        &device,
        PLUGIN,
        &[
            "--from".as_ref(),
            from.as_ref(),
            "--to".as_ref(),
            to.as_ref(),
            "--out".as_ref(),
            "-".as_ref(),
        ],
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_contains(&run.stderr, "plaintext");
    let got: Vec<(i64, f64)> = run
        .stdout
        .lines()
        .map(|line| {
            let line: Value = serde_json::from_str(line).unwrap();
            (
                line["payload"]["ts"].as_i64().unwrap(),
                line["payload"]["value"].as_f64().unwrap(),
            )
        })
        .collect();
    let wanted: Vec<(i64, f64)> = sent[10..20].iter().map(|(_, ts, value)| (*ts, *value)).collect();
    assert_eq!(got, wanted);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_plugin_is_refused_with_the_plugins_the_log_has() {
    let device = stopped_device(&readings()[..2]).await;
    let out = device.path("none.jsonl");
    let run = export(&device, "glucose-monitr", &["--out".as_ref(), out.as_os_str()]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert_contains(&run.stderr, "no plugin `glucose-monitr`");
    assert_contains(&run.stderr, "the log has: glucose-monitor");
    assert!(!out.exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn export_is_refused_while_the_device_runs() {
    let local = NatsServer::start();
    let mut device = Device::new(&local, None, "");
    device.start(&local).await;
    let out = device.path("exported.jsonl");
    let run = export(&device, PLUGIN, &["--out".as_ref(), out.as_os_str()]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert_contains(
        &run.stderr,
        "the device is running; stop it or export from a copy of its data directory",
    );
    assert!(!out.exists());
    device.terminate_cleanly().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_row_of_the_log_is_skipped_and_reported() {
    let sent = readings();
    let device = stopped_device(&sent).await;
    // One bit flipped in the first logged batch of readings (of the first half).
    let db = rusqlite::Connection::open(device.path("data/outbox.sqlite3")).unwrap();
    let (id, lost, mut sealed): (i64, i64, Vec<u8>) = db
        .query_row(
            "SELECT id, readings, ciphertext FROM journal_inputs WHERE plugin = ?1 AND readings > 0 \
             ORDER BY position LIMIT 1",
            [PLUGIN],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .unwrap();
    sealed[0] ^= 0x01;
    db.execute(
        "UPDATE journal_inputs SET ciphertext = ?1 WHERE id = ?2",
        rusqlite::params![sealed, id],
    )
    .unwrap();
    drop(db);

    let out = device.path("exported.jsonl");
    let run = export(&device, PLUGIN, &["--out".as_ref(), out.as_os_str()]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_contains(&run.stderr, "skipped 1 damaged rows of the input log");
    let kept = sent.len() - lost as usize;
    assert_contains(&run.stderr, &format!("exported {kept} readings"));
    let got = recorded(&out);
    assert_eq!(got.len(), kept);
    // The rest, in order: the readings sent after the lost ones.
    let tail: Vec<i64> = sent[lost as usize..].iter().map(|(_, ts, _)| *ts).collect();
    assert_eq!(got.iter().map(|(_, ts, _, _)| *ts).collect::<Vec<_>>(), tail);
}
