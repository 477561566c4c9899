//! The device configuration's parsing and validation, key by key.

use std::path::Path;
use std::time::Duration;

use super::*;
use crate::outbox::OutboxLimits;
use crate::outbox::upstream::DEFAULT_DUPLICATE_WINDOW;
use crate::runtime::Limits;

/// A configuration that parses, with `extra` appended (tables after `[[plugins]]`).
fn parse_with(extra: &str) -> Result<RunConfig, Vec<ConfigProblem>> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("trust")).unwrap();
    std::fs::write(dir.path().join("p.wasm"), b"").unwrap();
    let text = format!(
        "device = \"d\"\ndata_dir = \"data\"\ntrust_dir = \"trust\"\n\
         [local]\nurl = \"nats://127.0.0.1:4222\"\n[[plugins]]\nbundle = \"p.wasm\"\n{extra}"
    );
    RunConfig::parse(&text, dir.path())
}

fn problems(extra: &str) -> Vec<(String, String)> {
    parse_with(extra)
        .unwrap_err()
        .into_iter()
        .map(|p| (p.key, p.reason))
        .collect()
}

#[test]
fn host_ceilings_default_to_a_small_device_and_bound_the_operator() {
    assert_eq!(parse_with("").unwrap().host_limits, Limits::default_ceilings());
    let config = parse_with("[host_limits]\nmemory_mb = 32\ncall_deadline_ms = 2000\n").unwrap();
    assert_eq!(config.host_limits.max_memory_bytes, 32 << 20);
    assert_eq!(config.host_limits.call_deadline, Duration::from_secs(2));
    assert_eq!(
        problems("[plugins.limits]\nmemory_mb = 64\n[host_limits]\nmemory_mb = 32\n"),
        [(
            "plugins[0].limits.memory_mb".to_owned(),
            "64 is above the host ceiling of 32 (`host_limits.memory_mb`)".to_owned()
        )]
    );
    // The sensor cap has a ceiling too (enforced by ingest, not the runtime).
    let config = parse_with("[host_limits]\nmax_sensors = 500\n").unwrap();
    assert_eq!(config.host_max_sensors, Some(500));
    assert_eq!(parse_with("").unwrap().host_max_sensors, None);
    assert_eq!(
        problems("[plugins.limits]\nmax_sensors = 501\n[host_limits]\nmax_sensors = 500\n"),
        [(
            "plugins[0].limits.max_sensors".to_owned(),
            "501 is above the host ceiling of 500 (`host_limits.max_sensors`)".to_owned()
        )]
    );
    assert_eq!(
        problems("[host_limits]\nstate_bytes = 0\n"),
        [(
            "host_limits.state_bytes".to_owned(),
            "must be greater than 0".to_owned()
        )]
    );
}

#[test]
fn no_outbox_table_gives_the_default_limits() {
    assert_eq!(parse_with("").unwrap().outbox, OutboxLimits::default());
    assert_eq!(parse_with("[outbox]\n").unwrap().outbox, OutboxLimits::default());
}

#[test]
fn an_outbox_table_sets_the_size_and_age_limits() {
    let config = parse_with("[outbox]\nmax_mb = 64\nmax_age = \"12h\"\nlog_max_mb = 8\n").unwrap();
    assert_eq!(
        config.outbox,
        OutboxLimits {
            max_bytes: 64 * 1024 * 1024,
            max_age_ms: 12 * 3_600_000,
            log_max_bytes: 8 * 1024 * 1024,
        }
    );
    // Each key alone keeps the other's default; the bounds are accepted.
    let config = parse_with("[outbox]\nmax_age = \"1s\"\n").unwrap();
    assert_eq!(config.outbox.max_age_ms, 1000);
    assert_eq!(config.outbox.max_bytes, OutboxLimits::DEFAULT_MAX_BYTES);
    let config = parse_with("[outbox]\nmax_mb = 1048576\nmax_age = \"30d\"\n").unwrap();
    assert_eq!(config.outbox.max_bytes, 1 << 40);
    assert_eq!(config.outbox.max_age_ms, OutboxLimits::DEFAULT_MAX_AGE_MS);
    let config = parse_with("[outbox]\nmax_mb = 1\n").unwrap();
    assert_eq!(config.outbox.max_bytes, 1 << 20);
    assert_eq!(config.outbox.max_age_ms, OutboxLimits::DEFAULT_MAX_AGE_MS);
}

#[test]
fn bad_outbox_values_are_reported_with_their_key() {
    assert_eq!(
        problems("[outbox]\nmax_mb = 0\nmax_age = \"999ms\"\n"),
        [
            ("outbox.max_mb".to_owned(), "0 must be between 1 and 1048576".to_owned()),
            ("outbox.max_age".to_owned(), "`999ms` must be at least 1s".to_owned()),
        ]
    );
    assert_eq!(
        problems("[outbox]\nmax_mb = -5\nmax_age = \"soon\"\n"),
        [
            (
                "outbox.max_mb".to_owned(),
                "-5 must be between 1 and 1048576".to_owned()
            ),
            ("outbox.max_age".to_owned(), "`soon`: expected number at 0".to_owned()),
        ]
    );
    assert_eq!(
        problems("[outbox]\nmax_mb = 1048577\n"),
        [(
            "outbox.max_mb".to_owned(),
            "1048577 must be between 1 and 1048576".to_owned()
        )]
    );
    let unknown = problems("[outbox]\nmax_size = 5\n");
    assert_eq!(unknown.len(), 1);
    assert_eq!(unknown[0].0, "max_size");
    assert!(
        unknown[0]
            .1
            .contains("unknown field `max_size`, expected one of `max_mb`, `max_age`, `input_log`, `log_max_mb`"),
        "{unknown:?}"
    );
}

#[test]
fn the_example_configuration_is_valid_but_for_its_device_paths() {
    let text = include_str!("../../../../edgewise.example.toml");
    let keys: Vec<String> = RunConfig::parse(text, Path::new("/nonexistent"))
        .unwrap_err()
        .into_iter()
        .map(|p| p.key)
        .collect();
    // Its bundles are not there either, but that is not a configuration
    // error: a missing bundle is refused at start and the others run.
    assert_eq!(keys, ["trust_dir"]);
}

#[test]
fn subscription_overrides_on_the_host_subjects_are_refused_with_their_key() {
    let found = problems("subscriptions = [\"sensors.>\", \">\", \"d.*\", \"edgewise.d.status\"]\n");
    let keys: Vec<&str> = found.iter().map(|(key, _)| key.as_str()).collect();
    assert_eq!(
        keys,
        ["plugins[0].subscriptions", "plugins[0].subscriptions"],
        "{found:?}"
    );
    assert!(
        found[0].1.starts_with("`>` overlaps the host's own subjects"),
        "{found:?}"
    );
    assert!(found[1].1.starts_with("`edgewise.d.status` overlaps"), "{found:?}");
}

#[test]
fn ingest_margins_default_and_are_read_with_their_keys() {
    let config = parse_with("").unwrap();
    assert_eq!(config.plausibility, Plausibility::default());
    assert_eq!(config.plausibility.max_future, Duration::from_secs(300));
    assert_eq!(config.plausibility.max_age, Duration::from_secs(7 * 86_400));
    let config = parse_with("[ingest]\nmax_future = \"0s\"\nmax_age = \"36h\"\n").unwrap();
    assert_eq!(config.plausibility.max_future, Duration::ZERO);
    assert_eq!(config.plausibility.max_age, Duration::from_secs(36 * 3600));
    assert_eq!(
        problems("[ingest]\nmax_future = \"soon\"\nmax_age = \"0s\"\n"),
        [
            (
                "ingest.max_future".to_owned(),
                "`soon`: expected number at 0".to_owned()
            ),
            ("ingest.max_age".to_owned(), "`0s` must be at least 1s".to_owned()),
        ]
    );
}

#[test]
fn payload_sensors_are_subject_filters_of_one_plugin() {
    let config = parse_with("payload_sensors = [\"sensors.gateway.>\", \"sensors.*.hub\"]\n").unwrap();
    assert_eq!(
        config.plugins[0].payload_sensors,
        ["sensors.gateway.>", "sensors.*.hub"]
    );
    assert!(parse_with("").unwrap().plugins[0].payload_sensors.is_empty());
    assert_eq!(
        problems("payload_sensors = [\"sensors..x\"]\n"),
        [(
            "plugins[0].payload_sensors".to_owned(),
            "`sensors..x`: empty token".to_owned()
        )]
    );
    assert_eq!(
        problems("[plugins.limits]\nmax_sensors = 0\n"),
        [(
            "plugins[0].limits.max_sensors".to_owned(),
            "must be greater than 0".to_owned()
        )]
    );
}

#[test]
fn supervisor_duration_messages_are_unchanged() {
    assert_eq!(
        problems("[supervisor]\nbackoff_initial = \"0s\"\nquarantine_window = \"later\"\n"),
        [
            (
                "supervisor.backoff_initial".to_owned(),
                "`0s` must be at least 1ms".to_owned()
            ),
            (
                "supervisor.quarantine_window".to_owned(),
                "`later`: expected number at 0".to_owned()
            ),
        ]
    );
}

#[test]
fn the_upstream_duplicate_window_defaults_to_jetstreams_and_is_bounded() {
    let window = |extra: &str| parse_with(extra).unwrap().upstream.unwrap().duplicate_window;
    let up = "[upstream]\nurl = \"nats://127.0.0.1:4223\"\n";
    assert_eq!(window(up), DEFAULT_DUPLICATE_WINDOW);
    assert_eq!(DEFAULT_DUPLICATE_WINDOW, Duration::from_secs(120));
    assert_eq!(
        window(&format!("{up}duplicate_window = \"10m\"\n")),
        Duration::from_secs(600)
    );
    for (text, reason) in [
        ("500ms", "`500ms` must be at least 1s"),
        ("2days", "`2days` must be at most 1day"),
        ("soon", "`soon`: "),
    ] {
        let found = problems(&format!("{up}duplicate_window = \"{text}\"\n"));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, "upstream.duplicate_window");
        assert!(found[0].1.starts_with(reason), "{found:?}");
    }
}

/// TOML forbids a key twice; toml 0.9 refuses it, in a plugin's
/// `config` as anywhere: the last value never silently wins.
#[test]
fn a_key_twice_in_the_device_configuration_is_refused() {
    for extra in [
        "[plugins.config]\nlow = \"70\"\nlow = \"40\"\n",
        "[plugins.config]\nlow = \"70\"\n[plugins.config]\nhigh = \"1\"\n",
        "[local]\nurl = \"nats://127.0.0.1:4222\"\n",
    ] {
        let found = problems(extra);
        assert!(
            found.iter().any(|(_, reason)| reason.contains("duplicate key")),
            "{extra}: {found:?}"
        );
    }
}

#[test]
fn deploy_settings_default_and_are_checked_with_their_keys() {
    let config = parse_with("[deploy]\ngroups = [\"ward-3\", \"icu\"]\n").unwrap();
    let deploy = config.deploy.unwrap();
    assert_eq!(deploy.groups, ["ward-3", "icu"]);
    assert_eq!(deploy.domain, None);
    assert_eq!(deploy.probation, sections::DEFAULT_PROBATION);
    assert_eq!(deploy.max_bundle_bytes, crate::bundle::DEFAULT_MAX_BUNDLE_BYTES as u64);
    assert!(parse_with("").unwrap().deploy.is_none());

    let found = problems(
        "[deploy]\ngroups = [\"a.b\"]\ndomain = \"x y\"\nprobation = \"soon\"\nresync = \"1ms\"\nmax_bundle_mb = 64\n",
    );
    let keys: Vec<&str> = found.iter().map(|(key, _)| key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "deploy.groups[0]",
            "deploy.domain",
            "deploy.probation",
            "deploy.resync",
            "deploy.max_bundle_mb"
        ],
        "{found:?}"
    );
    let unknown = problems("[deploy]\ngroup = \"ward\"\n");
    assert!(unknown[0].1.contains("unknown field `group`"), "{unknown:?}");
}

#[test]
fn a_device_with_a_deploy_table_needs_no_plugins_table() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("trust")).unwrap();
    let text = "device = \"d\"\ndata_dir = \"data\"\ntrust_dir = \"trust\"\n\
                [local]\nurl = \"nats://127.0.0.1:4222\"\n";
    let without = RunConfig::parse(text, dir.path()).unwrap_err();
    assert_eq!(without[0].key, "plugins");
    let with = RunConfig::parse(&format!("{text}[deploy]\n"), dir.path()).unwrap();
    assert!(with.plugins.is_empty() && with.deploy.is_some());
}

#[test]
fn metrics_are_off_by_default_and_loopback_unless_remote_is_allowed() {
    assert_eq!(parse_with("").unwrap().metrics, None);
    let config = parse_with("[metrics]\nlisten = \"127.0.0.1:9600\"\n").unwrap();
    assert_eq!(config.metrics.unwrap().listen, "127.0.0.1:9600".parse().unwrap());
    let config = parse_with("[metrics]\nlisten = \"[::1]:9600\"\n").unwrap();
    assert!(config.metrics.unwrap().listen.ip().is_loopback());
    let refused = problems("[metrics]\nlisten = \"0.0.0.0:9600\"\n");
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].0, "metrics.listen");
    assert!(refused[0].1.contains("not a loopback address"), "{refused:?}");
    assert!(refused[0].1.contains("allow_remote = true"), "{refused:?}");
    let config = parse_with("[metrics]\nlisten = \"0.0.0.0:9600\"\nallow_remote = true\n").unwrap();
    assert_eq!(config.metrics.unwrap().listen, "0.0.0.0:9600".parse().unwrap());
    for bad in ["localhost:9600", "127.0.0.1", ""] {
        let refused = problems(&format!("[metrics]\nlisten = \"{bad}\"\n"));
        assert_eq!(refused[0].0, "metrics.listen", "{bad}: {refused:?}");
    }
    assert!(parse_with("[metrics]\nlisten = \"127.0.0.1:1\"\nport = 2\n").is_err());
}

#[test]
fn telemetry_is_on_every_minute_by_default_bounded_and_can_be_turned_off() {
    let every = |text: &str| parse_with(text).unwrap().telemetry.map(|t| t.interval);
    assert_eq!(every(""), Some(Duration::from_secs(60)));
    assert_eq!(every("[telemetry]\n"), Some(Duration::from_secs(60)));
    assert_eq!(every("[telemetry]\ninterval = \"1s\"\n"), Some(Duration::from_secs(1)));
    assert_eq!(
        every("[telemetry]\ninterval = \"1day\"\n"),
        Some(Duration::from_secs(86_400))
    );
    assert_eq!(every("[telemetry]\ninterval = \"off\"\n"), None);
    for bad in ["500ms", "25h", "often", "0s", ""] {
        let refused = problems(&format!("[telemetry]\ninterval = \"{bad}\"\n"));
        assert_eq!(refused.len(), 1, "{bad}: {refused:?}");
        assert_eq!(refused[0].0, "telemetry.interval", "{bad}: {refused:?}");
    }
    assert!(parse_with("[telemetry]\ninterval = \"1m\"\nsubject = \"x\"\n").is_err());
}

#[test]
fn the_compiler_process_is_bounded_by_default_and_by_the_compile_table() {
    let defaults = parse_with("").unwrap().compile;
    assert_eq!(
        defaults.memory_limit_bytes,
        DEFAULT_COMPILE_MEMORY_MB as u64 * 1024 * 1024
    );
    assert_eq!(defaults.timeout, DEFAULT_COMPILE_TIMEOUT);
    assert_eq!(defaults.start_wait, DEFAULT_COMPILE_START_WAIT);
    let set = parse_with("[compile]\nmemory_mb = 160\ntimeout = \"30s\"\nstart_wait = \"0s\"\n")
        .unwrap()
        .compile;
    assert_eq!(set.memory_limit_bytes, 160 << 20);
    assert_eq!(set.timeout, Duration::from_secs(30));
    assert_eq!(set.start_wait, Duration::ZERO, "the device may serve at once");
    assert_eq!(
        problems("[compile]\nmemory_mb = 0\ntimeout = \"10ms\"\nstart_wait = \"soon\"\n"),
        [
            (
                "compile.memory_mb".to_owned(),
                "0 must be between 1 and 65536".to_owned()
            ),
            ("compile.timeout".to_owned(), "`10ms` must be at least 100ms".to_owned()),
            (
                "compile.start_wait".to_owned(),
                "`soon`: expected number at 0".to_owned()
            ),
        ]
    );
    assert_eq!(
        problems("[compile]\nmemory = 160\n")[0].0,
        "memory",
        "unknown keys are refused"
    );
}

/// Far beyond any duration a device needs: `u64::MAX` seconds, which once
/// overflowed `now + duration` in the supervisor and at start-up.
const ENDLESS: &str = "18446744073709551615s";

#[test]
fn every_duration_has_a_ceiling_and_a_value_past_it_is_reported_with_its_key() {
    // Waits, intervals and timeouts: at most 30 days.
    let timers = [
        ("", "tick"),
        ("supervisor", "backoff_initial"),
        ("supervisor", "backoff_max"),
        ("supervisor", "quarantine_window"),
        ("supervisor", "quarantine_cooldown"),
        ("deploy", "probation"),
        ("deploy", "resync"),
        ("deploy", "report_every"),
        ("compile", "timeout"),
        ("compile", "start_wait"),
    ];
    // How long outputs are kept: at most 10 years.
    let ages = [("outbox", "max_age")];
    // The ingest margins (compared with readings' times only): wide, for
    // recordings of any age fed live, and still bounded.
    let margins = [("ingest", "max_future"), ("ingest", "max_age")];
    let set = |table: &str, key: &str, value: &str| {
        if table.is_empty() {
            // The top-level key goes before the first table.
            return (format!("{key} = \"{value}\"\n"), key.to_owned());
        }
        (format!("[{table}]\n{key} = \"{value}\"\n"), format!("{table}.{key}"))
    };
    let parse_top = |line: &str, extra: &str| -> Result<RunConfig, Vec<ConfigProblem>> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("trust")).unwrap();
        std::fs::write(dir.path().join("p.wasm"), b"").unwrap();
        let text = format!(
            "device = \"d\"\ndata_dir = \"data\"\ntrust_dir = \"trust\"\n{line}\
             [local]\nurl = \"nats://127.0.0.1:4222\"\n[[plugins]]\nbundle = \"p.wasm\"\n{extra}"
        );
        RunConfig::parse(&text, dir.path())
    };
    let problems_of = |table: &str, key: &str, value: &str| -> Vec<(String, String)> {
        let (text, _) = set(table, key, value);
        let parsed = if table.is_empty() {
            parse_top(&text, "")
        } else {
            parse_top("", &text)
        };
        match parsed {
            Ok(_) => Vec::new(),
            Err(problems) => problems.into_iter().map(|p| (p.key, p.reason)).collect(),
        }
    };
    for (table, key) in timers {
        let (_, dotted) = set(table, key, "");
        for value in [ENDLESS, "31days"] {
            assert_eq!(
                problems_of(table, key, value),
                [(dotted.clone(), format!("`{value}` must be at most 30days"))],
                "{dotted} = {value}"
            );
        }
        // The ceiling itself is taken (a 30-day `backoff_initial` is then
        // above the default `backoff_max`, another problem).
        let ceiling = problems_of(table, key, "30days");
        assert!(!ceiling.iter().any(|(k, _)| *k == dotted), "{dotted}: {ceiling:?}");
    }
    for (table, key) in ages {
        let (_, dotted) = set(table, key, "");
        for value in [ENDLESS, "11years"] {
            assert_eq!(
                problems_of(table, key, value),
                [(dotted.clone(), format!("`{value}` must be at most 10years"))],
                "{dotted} = {value}"
            );
        }
        assert_eq!(problems_of(table, key, "10years"), [], "{dotted}");
    }
    for (table, key) in margins {
        let (_, dotted) = set(table, key, "");
        for value in [ENDLESS, "100001years"] {
            assert_eq!(
                problems_of(table, key, value),
                [(dotted.clone(), format!("`{value}` must be at most 100000years"))],
                "{dotted} = {value}"
            );
        }
        assert_eq!(problems_of(table, key, "3650000d"), [], "{dotted}");
    }
}

#[test]
fn the_simulated_clock_speed_is_bounded_both_ways() {
    let clock = |speed: &str| format!("[clock]\nstart = \"2026-01-01T00:00:00Z\"\nspeed = {speed}\n");
    for speed in ["1e-20", "0.0", "-1.0", "0.0009", "1000001.0", "inf", "nan"] {
        assert_eq!(
            problems(&clock(speed)),
            [(
                "clock.speed".to_owned(),
                format!("{} must be between 0.001 and 1000000", speed.parse::<f64>().unwrap())
            )],
            "speed = {speed}"
        );
    }
    for speed in ["0.001", "1.0", "1000000.0"] {
        assert!(parse_with(&clock(speed)).is_ok(), "speed = {speed}");
    }
}

#[test]
fn a_device_id_longer_than_its_uses_allow_is_refused_without_being_echoed_whole() {
    let with_device = |id: &str| {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("trust")).unwrap();
        std::fs::write(dir.path().join("p.wasm"), b"").unwrap();
        let text = format!(
            "device = \"{id}\"\ndata_dir = \"data\"\ntrust_dir = \"trust\"\n\
             [local]\nurl = \"nats://127.0.0.1:4222\"\n[[plugins]]\nbundle = \"p.wasm\"\n"
        );
        RunConfig::parse(&text, dir.path())
    };
    assert!(with_device(&"d".repeat(MAX_DEVICE_ID_BYTES)).is_ok());
    let problems = with_device(&"d".repeat(5000)).unwrap_err();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].key, "device");
    assert!(
        problems[0].reason.contains("5000 characters long, over 128") && problems[0].reason.len() < 300,
        "{}",
        problems[0].reason
    );
}
