use edgewise_host::replay::{self, Format};
use edgewise_host::runtime::{PluginClock, PluginInstance, Runtime, RuntimeOptions, Limits};
use edgewise_sdk::{Config, Driver, Outputs, Reading};
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let batch: usize = args[2].parse().unwrap();
    let rec = replay::load(std::path::Path::new("tests/data/cgm/Hall2018_processed.csv"), Format::IgluCsv, false).unwrap();
    let config = vec![("repeat".to_owned(), "30m".to_owned()), ("signal_loss".to_owned(), "20m".to_owned())];
    if args[1] == "native" {
        let rs: Vec<Reading> = rec.readings.iter().map(|r| Reading { sensor: &r.sensor, timestamp_ms: r.timestamp_ms, value: r.value, unit: &r.unit }).collect();
        let t0 = std::time::Instant::now();
        for _ in 0..20 {
            let mut d = Driver::<glucose_monitor::GlucoseMonitor>::start(Config::new(config.clone()), None).unwrap();
            let mut out = Outputs::default();
            let mut now = i64::MIN;
            for c in rs.chunks(batch) { now = now.max(c.iter().map(|r| r.timestamp_ms).max().unwrap()); d.on_readings(now, c, &mut out).unwrap(); std::hint::black_box(out.take()); }
        }
        eprintln!("{:.0} ns/reading", t0.elapsed().as_nanos() as f64 / 20.0 / rec.readings.len() as f64);
    } else {
        let rt = Runtime::new(RuntimeOptions { deterministic: true, ..Default::default() }).unwrap();
        let bytes = std::fs::read(&args[1]).unwrap();
        let c = rt.compile("g", &bytes).unwrap();
        let t0 = std::time::Instant::now();
        for _ in 0..20 {
            let mut i = PluginInstance::with_clock(&rt, &c, Limits { max_outputs_per_second: None, ..Limits::default() }, PluginClock::virtual_at(0)).unwrap();
            i.init(&config).unwrap();
            for ch in rec.readings.chunks(batch) { i.on_readings(ch).unwrap(); std::hint::black_box(i.take_outputs()); }
        }
        eprintln!("{:.0} ns/reading", t0.elapsed().as_nanos() as f64 / 20.0 / rec.readings.len() as f64);
    }
}
