//! What the cloud stream holds, read back in full, and the exactly-once
//! check over it: every series of output numbers is 1..N, no gap, no
//! duplicate.
//!
//! A stored output's `Nats-Msg-Id` is `<device>/<incarnation>/<plugin>/<seq>`
//! (a plugin's outputs, numbered by the plugin's count; `_host` for the
//! host's own alerts) or `<device>/<incarnation>/<plugin>/host-<n>` (the
//! host's alerts about that plugin, numbered apart). Each of these is a
//! series of its own.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use async_nats::jetstream::consumer::pull::OrderedConfig;
use futures::StreamExt;

/// How long the next stored message may take to come.
const NEXT_TIMEOUT: Duration = Duration::from_secs(60);

/// Call `each(id, payload)` for every message stored in `stream` on the
/// server at `url`, in stream order; the number read.
pub async fn read_stream(
    url: &str,
    stream: &str,
    mut each: impl FnMut(&str, &[u8]) -> anyhow::Result<()>,
) -> anyhow::Result<u64> {
    let client = async_nats::connect(url)
        .await
        .with_context(|| format!("cannot connect to {url}"))?;
    let jetstream = async_nats::jetstream::new(client);
    let mut stream = jetstream
        .get_stream(stream)
        .await
        .with_context(|| format!("no stream {stream} on {url}"))?;
    let stored = stream
        .info()
        .await
        .context("cannot read the stream's info")?
        .state
        .messages;
    let consumer = stream
        .create_consumer(OrderedConfig::default())
        .await
        .context("cannot read the cloud stream")?;
    let mut messages = consumer.messages().await.context("cannot read the cloud stream")?;
    let mut read = 0;
    while read < stored {
        let message = tokio::time::timeout(NEXT_TIMEOUT, messages.next())
            .await
            .map_err(|_| anyhow!("no message from the cloud stream within {NEXT_TIMEOUT:?} after {read} of {stored}"))?
            .ok_or_else(|| anyhow!("the cloud stream ended after {read} of {stored} messages"))?
            .map_err(|e| anyhow!("reading the cloud stream failed after {read} messages: {e}"))?;
        let id = message
            .headers
            .as_ref()
            .and_then(|headers| headers.get("Nats-Msg-Id"))
            .map(|v| v.as_str().to_owned())
            .unwrap_or_default();
        each(&id, &message.payload)?;
        read += 1;
    }
    Ok(read)
}

/// Which series an output belongs to, and its number in it.
fn series_of(id: &str) -> anyhow::Result<(String, u64)> {
    let parts: Vec<&str> = id.split('/').collect();
    let [_device, _incarnation, plugin, number] = parts.as_slice() else {
        bail!("message id `{id}` is not <device>/<incarnation>/<plugin>/<seq>");
    };
    let (series, number) = match number.strip_prefix("host-") {
        Some(n) => (format!("{plugin} (host alerts)"), n),
        None => ((*plugin).to_owned(), *number),
    };
    let number = number
        .parse()
        .with_context(|| format!("message id `{id}` does not end in a number"))?;
    Ok((series, number))
}

/// How many times each output number of each series was stored.
#[derive(Debug, Default)]
pub struct Tally {
    /// Copies stored, by series, indexed by number (index 0 unused).
    copies: BTreeMap<String, Vec<u32>>,
    /// Messages whose id could not be read, or whose envelope `seq` differs.
    malformed: Vec<String>,
}

/// One series as checked.
#[derive(Debug)]
pub struct Series {
    pub name: String,
    /// Distinct numbers stored.
    pub distinct: u64,
    /// The highest number stored.
    pub highest: u64,
}

impl Tally {
    /// Count the stored message `id` with `payload` (an envelope).
    pub fn add(&mut self, id: &str, payload: &[u8]) {
        let (series, number) = match series_of(id) {
            Ok(found) => found,
            Err(error) => {
                self.malformed.push(format!("{error:#}"));
                return;
            }
        };
        if !series.ends_with("(host alerts)") {
            let seq = serde_json::from_slice::<serde_json::Value>(payload)
                .ok()
                .and_then(|envelope| envelope["seq"].as_u64());
            if seq != Some(number) {
                self.malformed
                    .push(format!("message {id}: its envelope's seq is {seq:?}"));
            }
        }
        let Ok(index) = usize::try_from(number) else {
            self.malformed.push(format!("message {id}: number out of range"));
            return;
        };
        let copies = self.copies.entry(series).or_default();
        if copies.len() <= index {
            copies.resize(index + 1, 0);
        }
        copies[index] += 1;
    }

    /// The series found, and the violations: a malformed message, a number
    /// stored twice, a gap below the highest, and for a series of
    /// `expected` (by series), a highest number other than the expected count.
    pub fn check(&self, expected: &BTreeMap<String, u64>) -> (Vec<Series>, Vec<String>) {
        let mut violations: Vec<String> = self.malformed.iter().take(10).cloned().collect();
        if self.malformed.len() > 10 {
            violations.push(format!("... {} malformed messages in all", self.malformed.len()));
        }
        let mut found = Vec::new();
        for (name, copies) in &self.copies {
            let highest = copies.len().saturating_sub(1) as u64;
            let numbers = copies.iter().enumerate().skip(1);
            let missing: Vec<usize> = numbers.clone().filter(|(_, c)| **c == 0).map(|(n, _)| n).collect();
            let twice: Vec<usize> = numbers.filter(|(_, c)| **c > 1).map(|(n, _)| n).collect();
            if !missing.is_empty() {
                violations.push(format!(
                    "{name}: {} numbers below {highest} missing (first: {:?})",
                    missing.len(),
                    &missing[..missing.len().min(10)]
                ));
            }
            if !twice.is_empty() {
                violations.push(format!(
                    "{name}: {} numbers stored more than once (first: {:?})",
                    twice.len(),
                    &twice[..twice.len().min(10)]
                ));
            }
            if let Some(&wanted) = expected.get(name)
                && wanted != highest
            {
                violations.push(format!(
                    "{name}: the plugin made {wanted} outputs, the cloud's highest number is {highest}"
                ));
            }
            found.push(Series {
                name: name.clone(),
                distinct: highest - missing.len() as u64,
                highest,
            });
        }
        for (name, wanted) in expected {
            if *wanted > 0 && !self.copies.contains_key(name) {
                violations.push(format!(
                    "{name}: the plugin made {wanted} outputs, none is in the cloud"
                ));
            }
        }
        (found, violations)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(seq: u64) -> Vec<u8> {
        format!(r#"{{"seq":{seq}}}"#).into_bytes()
    }

    #[test]
    fn every_number_once_is_no_violation() {
        let mut tally = Tally::default();
        for seq in 1..=3 {
            tally.add(&format!("d/i/p/{seq}"), &envelope(seq));
        }
        tally.add("d/i/p/host-1", b"{}");
        let (series, violations) = tally.check(&BTreeMap::from([("p".to_owned(), 3)]));
        assert!(violations.is_empty(), "{violations:?}");
        assert_eq!(series.len(), 2);
    }

    #[test]
    fn a_gap_a_duplicate_a_shortfall_and_a_wrong_seq_are_each_reported() {
        let mut tally = Tally::default();
        for seq in [1, 2, 2, 4] {
            tally.add(&format!("d/i/p/{seq}"), &envelope(seq));
        }
        tally.add("d/i/q/1", &envelope(7));
        let (_, violations) = tally.check(&BTreeMap::from([("p".to_owned(), 5), ("r".to_owned(), 1)]));
        let all = violations.join("\n");
        for wanted in [
            "p: 1 numbers below 4 missing (first: [3])",
            "p: 1 numbers stored more than once (first: [2])",
            "p: the plugin made 5 outputs, the cloud's highest number is 4",
            "r: the plugin made 1 outputs, none is in the cloud",
            "message d/i/q/1: its envelope's seq is Some(7)",
        ] {
            assert!(all.contains(wanted), "`{wanted}` not in:\n{all}");
        }
    }
}
