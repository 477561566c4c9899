//! The local NATS connection of commands that talk to a device's bus
//! (`status`, `record`): from the device's configuration, the flags, or both.

use std::path::PathBuf;

use clap::Args;

use edgewise_host::bus::NatsConfig;
use edgewise_host::run::config::RunConfig;

use super::Failure;

/// Where the device's local NATS server is and how to log in.
#[derive(Debug, Args)]
pub struct ConnectionArgs {
    /// The device configuration: its `device` and its `[local]` connection
    /// (URL and credentials). The flags below override it.
    #[arg(long, value_name = "edgewise.toml")]
    pub config: Option<PathBuf>,
    /// The device's local NATS server [default: nats://127.0.0.1:4222].
    #[arg(long, value_name = "URL")]
    nats: Option<String>,
    #[command(flatten)]
    credentials: CredentialArgs,
}

/// How to log in to a NATS server (all of them replace a configuration's
/// credentials as a whole).
#[derive(Debug, Args)]
pub struct CredentialArgs {
    /// User name (with `--password`).
    #[arg(long, requires = "password", conflicts_with_all = ["token", "creds"])]
    pub user: Option<String>,
    /// Password (with `--user`).
    #[arg(long, requires = "user")]
    pub password: Option<String>,
    /// Authentication token.
    #[arg(long, conflicts_with = "creds")]
    pub token: Option<String>,
    /// A `.creds` file (JWT + NKey seed).
    #[arg(long, value_name = "FILE")]
    pub creds: Option<PathBuf>,
}

impl CredentialArgs {
    /// Whether any flag was given.
    pub fn given(&self) -> bool {
        self.user.is_some() || self.token.is_some() || self.creds.is_some()
    }

    /// Put them into `nats`, replacing its credentials.
    pub fn apply(&self, nats: &mut NatsConfig) {
        nats.user.clone_from(&self.user);
        nats.password.clone_from(&self.password);
        nats.token.clone_from(&self.token);
        nats.credentials.clone_from(&self.creds);
    }
}

impl ConnectionArgs {
    /// The connection, and the device id when `--config` gives one.
    pub fn resolve(&self) -> Result<(NatsConfig, Option<String>), Failure> {
        let (mut nats, device) = match &self.config {
            Some(path) => {
                let config = RunConfig::load(path).map_err(Failure::usage)?;
                (config.local, Some(config.device))
            }
            None => (
                NatsConfig {
                    url: "nats://127.0.0.1:4222".to_owned(),
                    ..NatsConfig::default()
                },
                None,
            ),
        };
        if let Some(url) = &self.nats {
            nats.url.clone_from(url);
        }
        if self.credentials.given() {
            // Flags replace the configuration's credentials as a whole.
            self.credentials.apply(&mut nats);
        }
        Ok((nats, device))
    }
}
