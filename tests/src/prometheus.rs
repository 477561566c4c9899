//! Reading a metrics endpoint as Prometheus would: a plain HTTP GET, and the
//! exposition parsed by the Prometheus project's own parser (the Python
//! client's OpenMetrics parser, `prometheus_client.openmetrics.parser`),
//! installed with pip under `target/` on first use. A real parser of the
//! grammar, maintained with the format, rather than one written here: what
//! it accepts, Prometheus accepts.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;

/// The `prometheus-client` release on PyPI whose parser is used.
pub const PARSER_VERSION: &str = "0.26.0";

/// A sample: its name (with `_total`, `_bucket`...), labels and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Name.
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Value.
    pub value: f64,
}

/// A metric family: its type (`counter`, `gauge`, `histogram`...) and samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    /// Type, as the parser names it.
    pub kind: String,
    /// Samples.
    pub samples: Vec<Sample>,
}

/// The answer to a GET: its status code, `Content-Type`, and body.
#[derive(Debug)]
pub struct Answer {
    /// Status code.
    pub code: u16,
    /// The `Content-Type` header, if any.
    pub content_type: Option<String>,
    /// Body.
    pub body: String,
}

/// `METHOD path` on `address` (HTTP/1.1, the connection closed after it),
/// with `body` if any.
pub fn request(address: SocketAddr, method: &str, path: &str, body: &[u8]) -> anyhow::Result<Answer> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(5))
        .with_context(|| format!("cannot connect to {address}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes)?;
    let text = String::from_utf8(bytes).context("the answer is not UTF-8")?;
    let (head, body) = text.split_once("\r\n\r\n").context("no end of the answer's head")?;
    let mut lines = head.lines();
    let code = lines
        .next()
        .and_then(|status| status.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("no status line: {head}"))?;
    let content_type = lines
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("content-type"))
        .map(|(_, value)| value.trim().to_owned());
    Ok(Answer {
        code,
        content_type,
        body: body.to_owned(),
    })
}

/// The families of an OpenMetrics exposition, by name, as the Prometheus
/// parser reads them (it fails on anything the grammar does not allow).
pub fn parse(exposition: &str) -> anyhow::Result<BTreeMap<String, Family>> {
    const SCRIPT: &str = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
families = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    families[family.name] = {
        "type": family.type,
        "samples": [{"name": s.name, "labels": s.labels, "value": repr(float(s.value))} for s in family.samples],
    }
json.dump(families, sys.stdout)
"#;
    let mut child = Command::new("python3")
        .args(["-c", SCRIPT])
        .env("PYTHONPATH", parser_dir()?)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run python3")?;
    child
        .stdin
        .take()
        .context("no stdin")?
        .write_all(exposition.as_bytes())?;
    let output = child.wait_with_output()?;
    if !output.status.success() {
        bail!(
            "the Prometheus parser refused the exposition: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let parsed: BTreeMap<String, Value> = serde_json::from_slice(&output.stdout)?;
    parsed
        .into_iter()
        .map(|(name, family)| {
            let samples = family["samples"]
                .as_array()
                .context("no samples")?
                .iter()
                .map(|sample| {
                    let labels = sample["labels"]
                        .as_object()
                        .context("no labels")?
                        .iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                        .collect();
                    Ok(Sample {
                        name: sample["name"].as_str().context("no name")?.to_owned(),
                        labels,
                        // As text: JSON has no infinities.
                        value: sample["value"].as_str().context("no value")?.parse()?,
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let kind = family["type"].as_str().context("no type")?.to_owned();
            Ok((name, Family { kind, samples }))
        })
        .collect()
}

/// Where the parser is installed (`target/prometheus-client`), installing
/// it on first use.
fn parser_dir() -> anyhow::Result<PathBuf> {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = crate::workspace_root().join("target").join("prometheus-client");
        let marker = dir.join(format!("prometheus_client-{PARSER_VERSION}.dist-info"));
        if !marker.is_dir() {
            edgewise_procs::pip::install_target(
                &dir,
                &format!("prometheus-client=={PARSER_VERSION}"),
                "the metrics tests parse with the Prometheus client's parser",
            )
            .map_err(|e| format!("{e:#}"))?;
        }
        Ok(dir)
    })
    .clone()
    .map_err(anyhow::Error::msg)
}
