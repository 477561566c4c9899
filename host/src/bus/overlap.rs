//! The host never consumes its own traffic: a plugin subscription that could
//! receive a message the host publishes (its alerts, dead letters, status,
//! telemetry, replies, JetStream API calls and acknowledgements) is refused
//! at start. A plugin on `>` would otherwise receive the host's dead letter
//! about the host's own alert, dead-letter that, and so on without end.

use crate::bus::filter;

/// The subject filters the host publishes to or answers on, for `device`.
/// Replies (`_INBOX.>`) and the JetStream API (`$JS.>`) are never sensor
/// readings either.
pub fn host_filters(device: &str) -> [String; 3] {
    [
        format!("edgewise.{device}.>"),
        "_INBOX.>".to_owned(),
        "$JS.>".to_owned(),
    ]
}

/// The first host filter that `filter` overlaps, if any.
pub fn overlapping_host_filter(device: &str, filter: &str) -> Option<String> {
    host_filters(device)
        .into_iter()
        .find(|host| filter::overlaps(filter, host))
}

/// Why `filter` is refused, if it is: the sentence an operator reads.
pub fn refusal(device: &str, filter: &str) -> Option<String> {
    overlapping_host_filter(device, filter).map(|host| {
        format!(
            "`{filter}` overlaps the host's own subjects (`{host}`): the plugin would receive the host's own messages"
        )
    })
}

/// Why `filter` is refused by every device, whatever its id, if it is: a
/// wildcard where the device id goes (`>`, `edgewise.*.>`, `*.*.alerts.*`),
/// or the replies or JetStream API. `edgewise sign` and `edgewise verify`
/// refuse such a manifest, since no device would run it; a filter that names
/// one device's own subjects is refused by that device only ([`refusal`]).
pub fn refusal_on_every_device(filter: &str) -> Option<String> {
    // Two ids no device can have (an id is letters, digits, `-` and `_`):
    // a filter that overlaps the host's subjects of both overlaps them for
    // any id.
    let (first, second) = (
        overlapping_host_filter("%", filter),
        overlapping_host_filter("%%", filter),
    );
    first.zip(second).map(|(host, _)| {
        let host = host.replace('%', "<device>");
        format!(
            "`{filter}` overlaps the host's own subjects (`{host}`) on every device: no device runs a plugin that would receive the host's own messages"
        )
    })
}

/// The refusal of the first of `filters` that every device refuses
/// ([`refusal_on_every_device`]), if any: a manifest's subscriptions, as
/// `sign` and `verify` check them.
pub fn first_refused_on_every_device(filters: &[String]) -> Option<String> {
    filters.iter().find_map(|filter| refusal_on_every_device(filter))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_that_could_receive_host_subjects_overlap() {
        for filter in [
            ">",
            "edgewise.>",
            "edgewise.*.>",
            "edgewise.dev-1.>",
            "*.*.alerts.*",
            "*.dev-1.deadletter",
            "edgewise.dev-1.status",
            "edgewise.dev-1.telemetry",
            "edgewise.dev-1.alerts.glucose-monitor",
            "*.>",
            "_INBOX.>",
            "_INBOX.abc.*",
            "$JS.ACK.>",
            "$JS.API.CONSUMER.MSG.NEXT.*.*",
        ] {
            assert!(overlapping_host_filter("dev-1", filter).is_some(), "{filter}");
        }
    }

    #[test]
    fn sensor_filters_and_other_devices_do_not_overlap() {
        for filter in [
            "sensors.>",
            "sensors.cgm.*",
            "edgewise.dev-2.alerts.>",
            "edgewise.dev-2.>",
            "edgewise",
            "edgewise.dev-1",
            "*",
        ] {
            assert_eq!(overlapping_host_filter("dev-1", filter), None, "{filter}");
        }
    }

    #[test]
    fn only_filters_refused_whatever_the_device_id_are_refused_on_every_device() {
        for filter in [
            ">",
            "edgewise.>",
            "edgewise.*.>",
            "*.*.alerts.*",
            "*.>",
            "_INBOX.>",
            "$JS.ACK.>",
        ] {
            let refusal = refusal_on_every_device(filter).unwrap_or_else(|| panic!("{filter}"));
            assert!(
                refusal.contains(&format!("`{filter}`")) && !refusal.contains('%'),
                "{refusal}"
            );
        }
        assert!(refusal_on_every_device(">").unwrap().contains("`edgewise.<device>.>`"));
        // One device's own subjects: that device refuses it, no other.
        for filter in [
            "edgewise.dev-1.>",
            "edgewise.dev-1.status",
            "sensors.>",
            "edgewise",
            "*",
        ] {
            assert_eq!(refusal_on_every_device(filter), None, "{filter}");
        }
    }
}
