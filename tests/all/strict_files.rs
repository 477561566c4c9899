//! Issue #11, item 10: what the host keeps on disk is private. A real
//! `edgewise run` with a plugin and an upstream, started with umask 000 (so
//! nothing is private by accident), then the modes of everything in its data
//! directory. Tests run as root, so the test checks modes, not access.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use edgewise_tests::edgewise_bin;
use edgewise_tests::nats::NatsServer;

use crate::live_pipeline::{DEVICE, Device, WAIT, now_ms, reading, upstream_alerts};

/// The host, killed on drop if the test fails before it stops.
struct Host(Option<Child>);

impl Host {
    /// Start `edgewise run --config CONFIG` under umask 000.
    fn start(config: &Path) -> Host {
        let child = Command::new("sh")
            .arg("-c")
            .arg("umask 000; exec \"$0\" run --config \"$1\"")
            .arg(edgewise_bin())
            .arg(config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Host(Some(child))
    }

    /// Wait until the host answers status requests through `client`.
    async fn wait_ready(&mut self, client: &async_nats::Client) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let asked = client.request(format!("edgewise.{DEVICE}.status"), "".into());
            if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(500), asked).await {
                return;
            }
            let child = self.0.as_mut().unwrap();
            if child.try_wait().unwrap().is_some() {
                let output = self.0.take().unwrap().wait_with_output().unwrap();
                panic!("edgewise run exited: {}", String::from_utf8_lossy(&output.stderr));
            }
            assert!(tokio::time::Instant::now() < deadline, "edgewise run did not start");
        }
    }

    /// SIGTERM; the exit code and stderr.
    fn terminate(&mut self) -> (Option<i32>, String) {
        let child = self.0.take().unwrap();
        let killed = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let output = child.wait_with_output().unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
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
    let device = Device::new(&local, Some(&cloud), "");
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
    let mut host = Host::start(&config_path);
    host.wait_ready(&client).await;
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
            "seq-glucose-monitor",
            "cache.key",
        ],
    );
    let (code, stderr) = host.terminate();
    assert_eq!(code, Some(0), "{stderr}");
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
    let mut host = Host::start(&config_path);
    host.wait_ready(&client).await;
    let (code, stderr) = host.terminate();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stderr.contains("holds secrets"), "{stderr}");
    assert_private(&data_dir, &["outbox.sqlite3", "outbox.key", "installed-versions.json"]);
}
