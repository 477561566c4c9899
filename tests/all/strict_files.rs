//! Issue #11, item 10: what the host keeps on disk is private. A real
//! `edgewise run` with a plugin and an upstream, started with umask 000 (so
//! nothing is private by accident), then the modes of everything in its data
//! directory. Tests run as root, so the test checks modes, not access.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use edgewise_tests::edgewise_bin;
use edgewise_tests::nats::NatsServer;

use crate::device::{Device, now_ms, reading};
use crate::support::upstream_alerts;

/// `edgewise run --config CONFIG` under umask 000.
fn under_umask_000(config: &Path) -> Command {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg("umask 000; exec \"$0\" run --config \"$1\"")
        .arg(edgewise_bin())
        .arg(config);
    command
}

/// Every path under `dir` (itself included) with its permission bits.
fn modes(dir: &Path) -> Vec<(PathBuf, u32)> {
    let mut found = vec![(dir.to_owned(), mode(dir))];
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(modes(&path));
        } else {
            found.push((path.clone(), mode(&path)));
        }
    }
    found
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Directories 0700, files 0600; and the files a run must have made are there.
fn assert_private(dir: &Path, must_exist: &[&str]) {
    let found = modes(dir);
    for (path, mode) in &found {
        let wanted = if path.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(*mode, wanted, "{} has mode {mode:o}: {found:#?}", path.display());
    }
    for name in must_exist {
        assert!(
            found.iter().any(|(path, _)| path.ends_with(name)),
            "no {name} in {found:#?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_data_directory_is_0700_and_every_file_in_it_0600() {
    let local = NatsServer::start_with_args(false, &["--auth", "l0cal-token"]);
    let cloud = NatsServer::start_with_jetstream();
    let mut device = Device::new(&local, Some(&cloud), "");
    let config_path = device.path("edgewise.toml");
    let config = std::fs::read_to_string(&config_path).unwrap().replacen(
        &format!("url = \"{}\"\n", local.url()),
        &format!("url = \"{}\"\ntoken = \"l0cal-token\"\n", local.url()),
        1,
    );
    std::fs::write(&config_path, config).unwrap();
    // A config file with a secret that others can read; a data directory
    // made by someone else with the usual 0755.
    std::fs::set_permissions(&config_path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let data_dir = device.path("data");
    std::fs::create_dir(&data_dir).unwrap();
    std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o755)).unwrap();

    let client = async_nats::ConnectOptions::with_token("l0cal-token".into())
        .connect(local.url())
        .await
        .unwrap();
    device.start_command(under_umask_000(&config_path), &client).await;
    client
        .publish("sensors.cgm.patient-1", reading(now_ms(), 45.0))
        .await
        .unwrap();
    client.flush().await.unwrap();
    assert_eq!(upstream_alerts(&cloud, 1).await.len(), 1);
    // While it runs: the database, its WAL, the keys, the records.
    assert_private(
        &data_dir,
        &[
            "outbox.sqlite3",
            "outbox.sqlite3-wal",
            "outbox.key",
            "installed-versions.json",
            "cache.key",
        ],
    );
    let stderr = device.terminate_cleanly().await;
    assert_private(&data_dir, &["outbox.sqlite3", "outbox.key", "installed-versions.json"]);
    // Both warnings name the file and the mode found.
    let config_warning = stderr
        .lines()
        .find(|line| line.contains("holds secrets and is readable by other users"))
        .unwrap_or_else(|| panic!("no warning about the configuration file: {stderr}"));
    assert!(
        config_warning.contains(&config_path.display().to_string()) && config_warning.contains("644"),
        "{config_warning}"
    );
    let dir_warning = stderr
        .lines()
        .find(|line| line.contains("Narrowed mode 755 to 700"))
        .unwrap_or_else(|| panic!("no warning about the data directory: {stderr}"));
    assert!(dir_warning.contains(&data_dir.display().to_string()), "{dir_warning}");

    // A private configuration file is not warned about; files a copy or an
    // older version left readable are narrowed.
    std::fs::set_permissions(&config_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    for name in ["installed-versions.json", "outbox.key", "outbox.sqlite3"] {
        std::fs::set_permissions(data_dir.join(name), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    device.start_command(under_umask_000(&config_path), &client).await;
    let stderr = device.terminate_cleanly().await;
    assert!(!stderr.contains("holds secrets"), "{stderr}");
    assert_private(&data_dir, &["outbox.sqlite3", "outbox.key", "installed-versions.json"]);
}
