//! Deployment from the cloud (issue #15): bundles, desired plugin sets and
//! reported state in the cloud's JetStream (`cloud`), their documents
//! (`model`). The device's side (reconcile, hot swap, probation, rollback)
//! is driven by `run`; the operator's side is the `push`, `undeploy`,
//! `rollout` and `fleet` commands.

pub mod cloud;
pub mod model;

pub use cloud::{Cloud, CloudError};
pub use model::{Deployment, Desired, DesiredPlugin, Origin, Phase, Reported, ReportedPlugin};
