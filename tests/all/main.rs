//! The integration tests: one binary, one module per area (as wasmtime's
//! `tests/all`). They run the real `edgewise` binary on real plugin
//! components and real recordings.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod browser_harness;
mod bundle_assets;
mod bundle_cli;
mod catch_up;
mod chaos_plugin;
mod cli_pipe;
mod contract_v02;
mod dashboard;
mod deploy_cli;
mod deploy_device;
mod deploy_safety;
mod deploy_topology;
mod device;
mod disk_full;
mod exactly_once;
mod export;
mod forecast_plugin;
mod forecast_report;
mod frozen_bundles;
mod hostile_plugins;
mod hostile_v02;
mod kill_recovery;
mod live_pipeline;
mod metrics_crosscheck;
mod metrics_endpoint;
mod nats_fixture;
mod plugin_scaffold;
mod plugin_test_cli;
mod python_plugin;
mod record;
mod recovery;
mod redelivery;
mod replay_bad_input;
mod replay_golden;
mod replay_plugin_failures;
mod replay_snapshot;
mod replay_subscriptions;
mod runtime_api;
mod safety_compile;
mod safety_control;
mod safety_ingest;
mod safety_lifecycle;
mod safety_local_bus;
mod safety_logging;
mod safety_outbox;
mod safety_runtime;
mod safety_storage;
mod saved_state;
mod service_manager;
mod strict_files;
mod strict_formats;
mod support;
mod task_ownership;
mod telemetry;
mod upstream_resilience;
