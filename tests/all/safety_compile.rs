//! A plugin's compilation cannot take the device down: `edgewise run`
//! compiles in a child process, stopped beyond `[compile] memory_mb` of
//! resident memory or `[compile] timeout`, first in line for the kernel's OOM
//! killer. Whatever happens to the compilation costs that plugin (refused,
//! with its reason), never the host or its other plugins. Real `edgewise
//! run`, real nats-servers, real signed bundles; band-py (CPython in wasm,
//! about 470 MiB and 5 s of CPU to compile) is the large one.

use crate::device::{Device, WAIT, now_ms, reading};
use crate::safety_lifecycle::glucose_alert_and_degraded;
use crate::support::{assert_contains, host_status, next_where, plugin, poll_until, status_until, subscribe_alerts};
use edgewise_tests::nats::NatsServer;
use edgewise_tests::{edgewise, plugin_manifest};

/// band-py, then glucose-monitor (listed in that order; compiled at once),
/// with `compile` (a `[compile]` table, or nothing).
fn device_with_band_py(local: &NatsServer, compile: &str) -> Device {
    let plugins =
        format!("[[plugins]]\nbundle = \"band-py.wasm\"\n[[plugins]]\nbundle = \"glucose-monitor.wasm\"\n{compile}");
    let device = Device::with_plugins(local, None, "100ms", &plugins);
    device.sign_bundle(&plugin_manifest("band-py"), "band-py", "band-py.wasm");
    device
}

/// A client on `local` subscribed to every alert, before the host starts.
async fn watching(local: &NatsServer) -> (async_nats::Client, async_nats::Subscriber) {
    let client = async_nats::connect(local.url()).await.unwrap();
    let alerts = subscribe_alerts(&client, ">").await;
    client.flush().await.unwrap();
    (client, alerts)
}

/// Once the host runs: glucose-monitor alerts on a low reading, the host
/// raised `plugin-degraded` naming band-py's bundle, the status has band-py
/// refused and glucose-monitor running. band-py's reason.
async fn band_py_refused(client: &async_nats::Client, alerts: &mut async_nats::Subscriber) -> String {
    client.publish("sensors.cgm.p1", reading(now_ms(), 45.0)).await.unwrap();
    let refused = glucose_alert_and_degraded(alerts, "._host").await;
    assert_contains(refused["message"].as_str().unwrap(), "band-py.wasm");
    let status = host_status(client).await;
    assert_eq!(plugin(&status, "glucose-monitor")["state"], "running", "{status}");
    let band_py = plugin(&status, "band-py");
    assert_eq!(band_py["state"], "refused", "{status}");
    band_py["last_error"].as_str().unwrap_or_default().to_owned()
}

/// A `/proc/<pid>/status` field in KiB.
pub(crate) fn proc_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with(field))?;
    line[field.len()..].trim().trim_end_matches("kB").trim().parse().ok()
}

/// The child processes of `pid` running `edgewise compile-child`.
fn compiler_processes(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|children| {
            children
                .split_whitespace()
                .filter_map(|child| child.parse::<u32>().ok())
                .collect::<Vec<_>>()
        })
        .filter(|&child| is_compiler(child))
        .collect()
}

/// band-py's compiler process among the children of `host`, once it holds
/// more than glucose-monitor's ever does (mid-compilation: band-py's takes
/// seconds more).
pub(crate) async fn band_py_compiler(host: u32) -> u32 {
    poll_until("a compiler process of band-py", WAIT * 3, || async {
        compiler_processes(host)
            .into_iter()
            .find(|&child| proc_kib(child, "VmRSS:").is_some_and(|kib| kib > 100 << 10))
            .ok_or_else(|| format!("compiler processes: {:?}", compiler_processes(host)))
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_compilation_past_its_memory_limit_costs_that_plugin_not_the_device() {
    let local = NatsServer::start();
    // glucose-monitor compiles in about 40 MiB, band-py needs about 470.
    let mut device = device_with_band_py(&local, "[compile]\nmemory_mb = 160\n");
    let (client, mut alerts) = watching(&local).await;
    let mut command = device.run_command();
    command.env("RUST_LOG", "warn,edgewise_host::runtime=info");
    device.start_command(command, &client).await;
    let reason = band_py_refused(&client, &mut alerts).await;
    assert_contains(&reason, "more memory than the 160 MiB allowed (`[compile] memory_mb`)");
    // The compilation's memory was never the host's: it peaked far below
    // band-py's 470 MiB (the host compiling in-process reached about 450).
    let peak_mib = proc_kib(device.pid(), "VmHWM:").unwrap() >> 10;
    assert!(peak_mib < 160, "the host peaked at {peak_mib} MiB");
    // The figure an operator sizes the limit by.
    let log = device.terminate_cleanly().await;
    let compiled = log
        .lines()
        .find(|line| line.contains("Compiled in a child process"))
        .unwrap_or_else(|| panic!("{log}"));
    assert_contains(compiled, "glucose-monitor");
    assert_contains(compiled, "peak_mib=");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_compiler_process_killed_by_the_kernel_costs_that_plugin_not_the_device() {
    let local = NatsServer::start();
    let mut device = device_with_band_py(&local, "");
    let (client, mut alerts) = watching(&local).await;
    device.spawn();
    // What the OOM killer would pick, and it does what the OOM killer does.
    let compiler = band_py_compiler(device.pid()).await;
    let adjusted = std::fs::read_to_string(format!("/proc/{compiler}/oom_score_adj")).unwrap();
    assert_eq!(adjusted.trim(), "1000", "first in line for the OOM killer");
    edgewise_procs::child::sigkill(compiler).unwrap();
    device.wait_ready(&client, WAIT * 3).await;
    let reason = band_py_refused(&client, &mut alerts).await;
    assert_contains(&reason, "was killed (SIGKILL");
    device.terminate_cleanly().await;
}

/// A process of `edgewise compile-child` is `pid` (not gone, not a zombie:
/// a zombie has no command line).
fn is_compiler(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|cmdline| cmdline.split(|&b| b == 0).any(|arg| arg == b"compile-child"))
}

/// SIGKILLs a process when dropped (one a failed test would leave behind).
pub(crate) struct KillOnDrop(pub(crate) u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if is_compiler(self.0) {
            let _ = edgewise_procs::child::sigkill(self.0);
        }
    }
}

/// A compiler process dies with its host (`PR_SET_PDEATHSIG`): a host that
/// is `kill -9`ed (a crash) leaves no compilation behind holding memory.
/// band-py's compiler is stopped first (SIGSTOP), so it cannot end on its
/// own (it would, a few seconds later, and die writing to a closed pipe).
#[tokio::test(flavor = "multi_thread")]
async fn a_compiler_process_dies_with_its_host() {
    let local = NatsServer::start();
    let mut device = device_with_band_py(&local, "");
    device.spawn();
    let compiler = band_py_compiler(device.pid()).await;
    let _cleanup = KillOnDrop(compiler);
    edgewise_procs::child::sigstop(compiler).unwrap();
    device.kill();
    poll_until("band-py's compiler process gone with its host", WAIT, || async {
        if is_compiler(compiler) {
            let state = std::fs::read_to_string(format!("/proc/{compiler}/stat")).unwrap_or_default();
            Err(format!("still there: {state}"))
        } else {
            Ok(())
        }
    })
    .await;
}

/// SIGTERM while a plugin compiles after start-up: the host stops as it
/// always does (exit 0, its final status), without waiting for the
/// compilation, and the compiler process goes with it.
#[tokio::test(flavor = "multi_thread")]
async fn a_device_stops_cleanly_while_a_plugin_still_compiles() {
    let local = NatsServer::start();
    let mut device = device_with_band_py(&local, "[compile]\nstart_wait = \"0s\"\n");
    let client = async_nats::connect(local.url()).await.unwrap();
    device.spawn();
    let compiler = band_py_compiler(device.pid()).await;
    let _cleanup = KillOnDrop(compiler);
    edgewise_procs::child::sigstop(compiler).unwrap();
    let status = device.wait_answering(&client, WAIT * 3).await;
    assert_eq!(plugin(&status, "band-py")["state"], "compiling", "{status}");
    device.terminate_cleanly().await;
    poll_until("band-py's compiler process gone with its host", WAIT, || async {
        match is_compiler(compiler) {
            true => Err("still there".to_owned()),
            false => Ok(()),
        }
    })
    .await;
}

/// A compilation that takes longer than `[compile] timeout` is stopped; with
/// nothing else to run, the device says why and exits 1.
#[test]
fn a_compilation_past_its_deadline_is_stopped_and_reported() {
    let local = NatsServer::start();
    let device = Device::with_plugins(
        &local,
        None,
        "100ms",
        "[[plugins]]\nbundle = \"band-py.wasm\"\n[compile]\ntimeout = \"100ms\"\n",
    );
    device.sign_bundle(&plugin_manifest("band-py"), "band-py", "band-py.wasm");
    let run = edgewise([
        "run".as_ref(),
        "--config".as_ref(),
        device.path("edgewise.toml").as_os_str(),
    ]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert_contains(&run.stderr, "band-py.wasm");
    assert_contains(
        &run.stderr,
        "takes longer than the 100ms allowed (`[compile] timeout`): the compiler process was stopped",
    );
}

/// Start-up does not wait for a compilation past `[compile] start_wait`:
/// glucose-monitor's alerts start while band-py's compilation is held
/// (SIGSTOP, so it cannot end first on any machine), the status says
/// `compiling`; when that compilation then fails, band-py is refused as at
/// start (status, a critical `plugin-degraded` from the host) and
/// glucose-monitor goes on.
#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_still_compiling_does_not_hold_back_the_others_alerts() {
    let local = NatsServer::start();
    let mut device = device_with_band_py(&local, "[compile]\nstart_wait = \"0s\"\n");
    let (client, mut alerts) = watching(&local).await;
    device.spawn();
    let compiler = band_py_compiler(device.pid()).await;
    edgewise_procs::child::sigstop(compiler).unwrap();
    let status = device.wait_answering(&client, WAIT * 3).await;
    assert_eq!(plugin(&status, "band-py")["state"], "compiling", "{status}");
    // Its `init` may still be under way when the status first answers.
    let status = status_until(&client, "glucose-monitor running", |status| {
        plugin(status, "glucose-monitor")["state"] == "running"
    })
    .await;
    assert_eq!(plugin(&status, "band-py")["state"], "compiling", "{status}");
    client.publish("sensors.cgm.p1", reading(now_ms(), 45.0)).await.unwrap();
    let urgent = next_where(&mut alerts, "glucose-monitor's urgent-low", |subject, alert| {
        subject.ends_with(".glucose-monitor") && alert["code"] == "urgent-low"
    })
    .await;
    assert_eq!(urgent["sensor"], "cgm.p1");
    assert_eq!(
        plugin(&host_status(&client).await, "band-py")["state"],
        "compiling",
        "still held"
    );

    edgewise_procs::child::sigkill(compiler).unwrap();
    let refused = next_where(&mut alerts, "the host's plugin-degraded", |subject, alert| {
        subject.ends_with("._host") && alert["code"] == "plugin-degraded"
    })
    .await;
    assert_contains(refused["message"].as_str().unwrap(), "band-py.wasm");
    assert_contains(refused["message"].as_str().unwrap(), "was killed (SIGKILL");
    let status = host_status(&client).await;
    assert_eq!(plugin(&status, "band-py")["state"], "refused", "{status}");
    assert_eq!(plugin(&status, "glucose-monitor")["state"], "running", "{status}");
    device.terminate_cleanly().await;
}

/// A plugin compiled after start-up stopped waiting joins the running
/// device: it takes readings and alerts like one started with it.
#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_compiled_after_start_up_joins_the_running_device() {
    let local = NatsServer::start();
    let mut device = device_with_band_py(&local, "[compile]\nstart_wait = \"0s\"\n");
    let (client, mut alerts) = watching(&local).await;
    device.spawn();
    device.wait_answering(&client, WAIT * 3).await;
    // Its `init` may still be under way when the status first answers.
    status_until(&client, "glucose-monitor running", |status| {
        plugin(status, "glucose-monitor")["state"] == "running"
    })
    .await;
    // Every plugin past compiling: band-py has joined.
    device.wait_ready(&client, WAIT * 6).await;
    let status = host_status(&client).await;
    assert_eq!(plugin(&status, "band-py")["state"], "running", "{status}");
    client.publish("sensors.cgm.p2", reading(now_ms(), 45.0)).await.unwrap();
    let below = next_where(&mut alerts, "band-py's below-low", |subject, alert| {
        subject.ends_with(".band-py") && alert["code"] == "below-low"
    })
    .await;
    assert_eq!(below["sensor"], "cgm.p2");
    device.terminate_cleanly().await;
}

/// Plugins of one name compile one at a time, in order: a later one runs in
/// place of an earlier one that is refused. Here band-py's code, signed as
/// `glucose-monitor`, is refused for its compilation's memory, and the real
/// glucose-monitor listed after it runs and alerts.
#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_refused_at_compilation_gives_its_name_to_the_next_of_that_name() {
    let local = NatsServer::start();
    let plugins = "[[plugins]]\nbundle = \"impostor.wasm\"\n[[plugins]]\nbundle = \"glucose-monitor.wasm\"\n\
                   [compile]\nmemory_mb = 160\n";
    let mut device = Device::with_plugins(&local, None, "100ms", plugins);
    let manifest = std::fs::read_to_string(plugin_manifest("band-py"))
        .unwrap()
        .replace("name = \"band-py\"", "name = \"glucose-monitor\"");
    std::fs::write(device.path("impostor.toml"), manifest).unwrap();
    device.sign_bundle(&device.path("impostor.toml"), "band-py", "impostor.wasm");
    let (client, mut alerts) = watching(&local).await;
    device.start_command(device.run_command(), &client).await;
    client.publish("sensors.cgm.p1", reading(now_ms(), 45.0)).await.unwrap();
    let refused = glucose_alert_and_degraded(&mut alerts, "._host").await;
    assert_contains(refused["message"].as_str().unwrap(), "impostor.wasm");
    assert_contains(
        refused["message"].as_str().unwrap(),
        "more memory than the 160 MiB allowed",
    );
    let status = host_status(&client).await;
    let running = plugin(&status, "glucose-monitor");
    assert_eq!(running["state"], "running", "{status}");
    assert_eq!(running["version"], "0.2.3", "the real one: {status}");
    device.terminate_cleanly().await;
}

/// A second plugin of a name that runs is refused, and said so; the first
/// runs.
#[tokio::test(flavor = "multi_thread")]
async fn a_second_plugin_of_a_name_that_runs_is_refused() {
    let local = NatsServer::start();
    let plugins = "[[plugins]]\nbundle = \"glucose-monitor.wasm\"\n[[plugins]]\nbundle = \"glucose-monitor.wasm\"\n";
    let mut device = Device::with_plugins(&local, None, "100ms", plugins);
    let (client, mut alerts) = watching(&local).await;
    device.start_command(device.run_command(), &client).await;
    client.publish("sensors.cgm.p1", reading(now_ms(), 45.0)).await.unwrap();
    let refused = glucose_alert_and_degraded(&mut alerts, "._host").await;
    assert_contains(
        refused["message"].as_str().unwrap(),
        "a second plugin named `glucose-monitor`",
    );
    let status = host_status(&client).await;
    let named: Vec<&serde_json::Value> = status["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["name"] == "glucose-monitor")
        .collect();
    assert_eq!(named.len(), 1, "{status}");
    assert_eq!(named[0]["state"], "running", "{status}");
    device.terminate_cleanly().await;
}

/// A plugin refused after start-up stopped waiting, with another of its name
/// behind it: that one compiles in its place, and meanwhile the status shows
/// the name `compiling` with the new version, not the refusal (which the
/// log and the host's alert carry). Both compilations are held (SIGSTOP), so
/// each step is seen on any machine.
#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_compiling_in_place_of_a_refused_one_shows_as_compiling() {
    let local = NatsServer::start();
    let plugins = "[[plugins]]\nbundle = \"band-py.wasm\"\n[[plugins]]\nbundle = \"band-py-next.wasm\"\n\
                   [[plugins]]\nbundle = \"glucose-monitor.wasm\"\n[compile]\nstart_wait = \"0s\"\n";
    let mut device = Device::with_plugins(&local, None, "100ms", plugins);
    device.sign_bundle(&plugin_manifest("band-py"), "band-py", "band-py.wasm");
    let manifest = std::fs::read_to_string(plugin_manifest("band-py")).unwrap();
    let next = manifest.replace("version = \"0.1.1\"", "version = \"0.2.0\"");
    assert_ne!(manifest, next, "band-py's manifest names its version");
    std::fs::write(device.path("band-py-next.toml"), next).unwrap();
    device.sign_bundle(&device.path("band-py-next.toml"), "band-py", "band-py-next.wasm");
    let (client, mut alerts) = watching(&local).await;
    device.spawn();
    let first = band_py_compiler(device.pid()).await;
    let _first_cleanup = KillOnDrop(first);
    edgewise_procs::child::sigstop(first).unwrap();
    let status = device.wait_answering(&client, WAIT * 3).await;
    assert_eq!(plugin(&status, "band-py")["state"], "compiling", "{status}");
    assert_eq!(plugin(&status, "band-py")["version"], "0.1.1", "{status}");

    edgewise_procs::child::sigkill(first).unwrap();
    let second = poll_until("the second band-py's compiler process", WAIT * 3, || async {
        compiler_processes(device.pid())
            .into_iter()
            .find(|&child| child != first && proc_kib(child, "VmRSS:").is_some_and(|kib| kib > 100 << 10))
            .ok_or_else(|| format!("compiler processes: {:?}", compiler_processes(device.pid())))
    })
    .await;
    let _second_cleanup = KillOnDrop(second);
    edgewise_procs::child::sigstop(second).unwrap();
    let refused = next_where(&mut alerts, "the host's plugin-degraded", |subject, alert| {
        subject.ends_with("._host") && alert["code"] == "plugin-degraded"
    })
    .await;
    assert_contains(refused["message"].as_str().unwrap(), "band-py.wasm");
    let status = host_status(&client).await;
    let band_py = plugin(&status, "band-py");
    assert_eq!(band_py["state"], "compiling", "{status}");
    assert_eq!(band_py["version"], "0.2.0", "{status}");

    edgewise_procs::child::sigcont(second).unwrap();
    device.wait_ready(&client, WAIT * 6).await;
    let status = host_status(&client).await;
    let band_py = plugin(&status, "band-py");
    assert_eq!(band_py["state"], "running", "{status}");
    assert_eq!(band_py["version"], "0.2.0", "{status}");
    device.terminate_cleanly().await;
}
