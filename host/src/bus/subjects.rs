//! The subjects of one device (DESIGN "Bus: subjects and payloads").

/// Subject names for one device.
#[derive(Debug, Clone)]
pub struct Subjects {
    device: String,
}

impl Subjects {
    /// Subjects of `device`.
    pub fn new(device: &str) -> Subjects {
        Subjects {
            device: device.to_owned(),
        }
    }

    /// The device id.
    pub fn device(&self) -> &str {
        &self.device
    }

    /// `edgewise.<device>.alerts.<plugin>`: alerts, published at once.
    pub fn local_alerts(&self, plugin: &str) -> String {
        format!("edgewise.{}.alerts.{plugin}", self.device)
    }

    /// `edgewise.<device>.up.alerts.<plugin>`: alerts upstream.
    pub fn upstream_alerts(&self, plugin: &str) -> String {
        format!("edgewise.{}.up.alerts.{plugin}", self.device)
    }

    /// `edgewise.<device>.up.summaries.<plugin>`: summaries upstream.
    pub fn upstream_summaries(&self, plugin: &str) -> String {
        format!("edgewise.{}.up.summaries.{plugin}", self.device)
    }

    /// `edgewise.<device>.telemetry`: the device's telemetry (`crate::telemetry`).
    pub fn local_telemetry(&self) -> String {
        format!("edgewise.{}.telemetry", self.device)
    }

    /// `edgewise.<device>.up.telemetry`: telemetry upstream.
    pub fn upstream_telemetry(&self) -> String {
        format!("edgewise.{}.up.telemetry", self.device)
    }

    /// `Nats-Msg-Id` of a telemetry message:
    /// `<device>/telemetry/<incarnation>/<n>`, `n` counting from 1 in each
    /// run of the host and the incarnation 128 random bits made at its start:
    /// never an id an earlier run used. (No plugin is named `telemetry` in
    /// the second token: an incarnation is 32 hex digits, never that word.)
    pub fn telemetry_msg_id(&self, incarnation: &str, n: u64) -> String {
        format!("{}/telemetry/{incarnation}/{n}", self.device)
    }

    /// `edgewise.<device>.up.>`: what the upstream stream stores.
    pub fn upstream_filter(&self) -> String {
        format!("edgewise.{}.up.>", self.device)
    }

    /// `edgewise.<device>.deadletter`: invalid input, with the reason.
    pub fn deadletter(&self) -> String {
        format!("edgewise.{}.deadletter", self.device)
    }

    /// `edgewise.<device>.status`: status requests.
    pub fn status(&self) -> String {
        format!("edgewise.{}.status", self.device)
    }

    /// `Nats-Msg-Id` of an output: `<device>/<incarnation>/<plugin>/<seq>`.
    /// The incarnation (made at each start of the plugin, see
    /// `PluginJournal::incarnation` and `sequence.rs`) keeps a reset, cloned
    /// or restored sequence from reusing an id upstream still remembers,
    /// which would drop the new output as a duplicate.
    pub fn msg_id(&self, incarnation: &str, plugin: &str, seq: u64) -> String {
        format!("{}/{incarnation}/{plugin}/{seq}", self.device)
    }
}
