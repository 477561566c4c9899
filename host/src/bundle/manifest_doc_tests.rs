//! Every TOML example of `docs/manifest.md` (and each `edgewise.toml` of
//! `sdk/README.md`) goes through the manifest parser, as `edgewise sign`
//! would take it: a ```` ```toml ```` block must become a valid manifest, a
//! ```` ```toml,refused ```` block must be refused with the error its first
//! line (`# refused: ...`) quotes. So the reference cannot drift from the code.

use time::OffsetDateTime;

use super::manifest::{Manifest, ManifestAsset, ManifestError, ManifestSource, WORLD_V0_2, validate_asset_name};

const MANIFEST_MD: &str = include_str!("../../../docs/manifest.md");
const SDK_README: &str = include_str!("../../../sdk/README.md");

/// One fenced block: its info string and its text.
struct Block<'a> {
    info: &'a str,
    text: String,
}

/// The fenced blocks of `markdown` whose info string starts with `toml`.
fn toml_blocks(markdown: &str) -> Vec<Block<'_>> {
    let mut blocks = Vec::new();
    let mut open: Option<Block<'_>> = None;
    for line in markdown.lines() {
        match (open.take(), line.strip_prefix("```")) {
            (None, Some(info)) => {
                open = Some(Block {
                    info,
                    text: String::new(),
                })
            }
            (Some(block), Some(_)) => {
                if block.info.starts_with("toml") {
                    blocks.push(block);
                }
            }
            (Some(mut block), None) => {
                block.text.push_str(line);
                block.text.push('\n');
                open = Some(block);
            }
            (None, None) => {}
        }
    }
    assert!(open.is_none(), "an unclosed code block");
    blocks
}

/// What `edgewise sign` makes of `text` for a 0.2 component, the assets
/// standing in for their files (the names checked as `read_assets` does).
fn sign_like(text: &str) -> Result<Manifest, ManifestError> {
    let source = ManifestSource::from_toml(text)?;
    let mut assets = Vec::new();
    for name in source.assets.keys() {
        validate_asset_name(name)?;
        assets.push(ManifestAsset::of(name, name.as_bytes()));
    }
    source.into_manifest_for(WORLD_V0_2, "ab".repeat(32), OffsetDateTime::UNIX_EPOCH, assets)
}

#[test]
fn every_toml_example_of_the_manifest_reference_parses_or_is_refused_as_it_says() {
    let (mut accepted, mut refused) = (0, 0);
    for block in toml_blocks(MANIFEST_MD) {
        match block.info {
            "toml" => {
                let manifest = sign_like(&block.text).unwrap_or_else(|e| panic!("{e}\n{}", block.text));
                assert_eq!(Manifest::from_json(&manifest.to_json()).unwrap(), manifest);
                accepted += 1;
            }
            "toml,refused" => {
                let first = block.text.lines().next().unwrap_or_default();
                let expected = first
                    .strip_prefix("# refused: ")
                    .unwrap_or_else(|| panic!("a refused example starts with `# refused: `:\n{}", block.text));
                match sign_like(&block.text) {
                    Ok(_) => panic!("accepted, the doc says refused:\n{}", block.text),
                    Err(error) => assert!(
                        error.to_string().contains(expected),
                        "the doc says `{expected}`, the parser says `{error}`"
                    ),
                }
                refused += 1;
            }
            other => panic!("a toml block of docs/manifest.md is `{other}`: use `toml` or `toml,refused`"),
        }
    }
    // The blocks were found at all (a broken scan would pass vacuously).
    assert!(accepted >= 6 && refused >= 12, "{accepted} accepted, {refused} refused");
}

#[test]
fn the_doc_quotes_the_limits_the_code_has() {
    use crate::runtime::Limits;
    let (defaults, ceilings) = (Limits::default(), Limits::default_ceilings());
    let row = |key: &str| {
        MANIFEST_MD
            .lines()
            .find(|line| line.starts_with(&format!("| `{key}` |")))
            .unwrap_or_else(|| panic!("no row for `{key}`"))
            .to_owned()
    };
    let cases = [
        (
            "memory_mb",
            defaults.max_memory_bytes >> 20,
            ceilings.max_memory_bytes >> 20,
        ),
        (
            "call_deadline_ms",
            defaults.call_deadline.as_millis() as usize,
            ceilings.call_deadline.as_millis() as usize,
        ),
        (
            "outputs_per_call",
            defaults.max_outputs_per_call,
            ceilings.max_outputs_per_call,
        ),
        (
            "outputs_per_second",
            defaults.max_outputs_per_second.unwrap_or_default(),
            ceilings.max_outputs_per_second.unwrap_or_default(),
        ),
        ("output_bytes", defaults.max_output_bytes, ceilings.max_output_bytes),
        (
            "log_bytes_per_second",
            defaults.max_log_bytes_per_second,
            ceilings.max_log_bytes_per_second,
        ),
        ("state_bytes", defaults.max_state_bytes, ceilings.max_state_bytes),
    ];
    for (key, default, ceiling) in cases {
        let cells: Vec<String> = row(key).split('|').map(|c| c.trim().to_owned()).collect();
        assert!(
            cells[3].starts_with(&default.to_string()),
            "`{key}` default: {}",
            cells[3]
        );
        assert!(
            cells[4].starts_with(&ceiling.to_string()),
            "`{key}` ceiling: {}",
            cells[4]
        );
    }
    let max_sensors = row("max_sensors");
    assert!(
        max_sensors.contains(&format!(
            "| {} (`DEFAULT_MAX_SENSORS`)",
            super::manifest::DEFAULT_MAX_SENSORS
        )),
        "{max_sensors}"
    );
}

#[test]
fn every_edgewise_toml_of_the_sdk_guide_is_a_valid_manifest() {
    let manifests: Vec<Block<'_>> = toml_blocks(SDK_README)
        .into_iter()
        .filter(|block| block.text.starts_with("# edgewise.toml"))
        .collect();
    assert!(manifests.len() >= 2, "the guide shows its edgewise.toml");
    for block in manifests {
        sign_like(&block.text).unwrap_or_else(|e| panic!("{e}\n{}", block.text));
    }
}
