//! `cargo xtask demo`: the live demo.
//!
//! After the build it signs the plugins with a fresh demo key, starts two
//! private nats-servers (the device's local bus, and a "cloud" with
//! JetStream), runs `edgewise run` on a simulated clock, and plays a real CGM
//! recording onto the local bus at the pace of that clock. It prints the
//! alerts as they are raised on the local bus and the daily summaries as they
//! are stored in the cloud, stops the cloud for a while (the outbox fills)
//! and starts it again (the outbox drains), then stops the host with SIGTERM
//! and checks that every output reached the cloud.
//!
//! Every process it starts is owned by a guard that kills and reaps it when
//! dropped, so an error, a panic or Ctrl-C leaves nothing running.
//!
//! - `sign.rs`: demo key, trust store, signed bundles, `edgewise verify`.
//! - `recording.rs`: the slice of the recording that is played.
//! - `live.rs`: the live run, from the configuration to the totals.
//! - `watch.rs`: the host's status, and what the demo prints as it happens.

mod live;
mod recording;
mod sign;
mod watch;

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};

use edgewise_procs::nats_binary;

/// The recording the demo plays (real data, see tests/data/cgm/README.md).
const RECORDING: &str = "tests/data/cgm/ExampleData5Subjects.csv";
/// The subject played: urgent lows on the first afternoon, predicted lows later.
const SUBJECT: &str = "Subject 4";
/// UTC days played, counted from the day of the subject's first reading: its
/// first reading to the end of the third day, so three daily summaries close.
const DAYS: i64 = 3;

pub fn run(root: &Path) -> anyhow::Result<()> {
    let nats_server = nats_binary::ensure(root)?;
    crate::build_all()?;
    let started = Instant::now();
    let demo_dir = edgewise_procs::workspace::target_dir().join("demo");
    let signed = sign::sign_plugins(root, &demo_dir)?;
    sign::verify_bundles(&signed)?;
    let recording = recording::load(&root.join(RECORDING), SUBJECT, DAYS)?;

    let setup = live::Setup {
        root: root.to_owned(),
        nats_server,
        demo_dir,
        trust: signed.trust,
        glucose_bundle: signed.bundles.first().cloned().context("no signed glucose-monitor")?,
        recording,
        recording_name: RECORDING,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    // The live run owns every process it starts: when it ends, fails, panics
    // or is dropped on Ctrl-C, its guards kill and reap them.
    let result = runtime.block_on(async {
        tokio::select! {
            result = live::run(&setup) => result,
            Ok(()) = tokio::signal::ctrl_c() => Err(anyhow!("interrupted: stopped every process the demo started")),
        }
    });
    runtime.shutdown_timeout(Duration::from_secs(5));
    result?;
    println!(
        "\nThe demo took {:.0} s after the build. Everything it made is under {}.",
        started.elapsed().as_secs_f64(),
        setup.demo_dir.display()
    );
    Ok(())
}
