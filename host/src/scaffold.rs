//! `edgewise new`: the files of a new plugin crate, rendered from the
//! templates in `host/templates/plugin/`.
//!
//! The crate builds on its own, outside any workspace: the SDK is a
//! dependency by path, git or version ([`SdkSource`]), and the generated
//! README's commands build, test, replay and sign it (a test runs them).
//! Rendering is pure; writing the files is the command's job.

use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::bundle::manifest::validate_plugin_name;

/// The SDK's package name, as a dependency writes it.
pub const SDK_PACKAGE: &str = "edgewise-sdk";
/// The host's package, which `cargo install` builds into `edgewise`.
const HOST_PACKAGE: &str = "edgewise-host";

/// Every file of a new plugin: its path in the crate and its template.
/// `{{ci}}` (in the README) is replaced first, so the workflow it includes
/// is rendered with the rest.
const TEMPLATES: [(&str, &str); 9] = [
    ("Cargo.toml", include_str!("../templates/plugin/Cargo.toml")),
    ("edgewise.toml", include_str!("../templates/plugin/edgewise.toml")),
    ("src/lib.rs", include_str!("../templates/plugin/src/lib.rs")),
    ("README.md", include_str!("../templates/plugin/README.md")),
    (".gitignore", include_str!("../templates/plugin/.gitignore")),
    (
        CI_WORKFLOW,
        include_str!("../templates/plugin/.github/workflows/ci.yml"),
    ),
    (
        "tests/replay/README.md",
        include_str!("../templates/plugin/tests/replay/README.md"),
    ),
    (
        "tests/replay/sample.csv",
        include_str!("../templates/plugin/tests/replay/sample.csv"),
    ),
    (
        "tests/replay/sample.golden.jsonl",
        include_str!("../templates/plugin/tests/replay/sample.golden.jsonl"),
    ),
];

/// The CI job's path in the crate; the README shows it too.
pub const CI_WORKFLOW: &str = ".github/workflows/ci.yml";

/// Names the template's code uses: a plugin type named like one of them
/// would not compile, so it gets a `Plugin` suffix instead.
const TEMPLATE_IDENTIFIERS: [&str; 16] = [
    "Alert",
    "BTreeMap",
    "Config",
    "Deserialize",
    "Driver",
    "Outputs",
    "Plugin",
    "Reading",
    "RunningStats",
    "Sensor",
    "Serialize",
    "Severity",
    "Summary",
    "Suppressor",
    "Transition",
    "Wake",
];

/// Rust's keywords and the standard crates: not a package name cargo takes
/// (`cargo new` refuses them too).
const RESERVED_NAMES: [&str; 57] = [
    "abstract",
    "alloc",
    "as",
    "async",
    "await",
    "become",
    "box",
    "break",
    "const",
    "continue",
    "core",
    "crate",
    "do",
    "dyn",
    "else",
    "enum",
    "extern",
    "false",
    "final",
    "fn",
    "for",
    "gen",
    "if",
    "impl",
    "in",
    "let",
    "loop",
    "macro",
    "match",
    "mod",
    "move",
    "mut",
    "override",
    "priv",
    "proc-macro",
    "pub",
    "ref",
    "return",
    "self",
    "serde",
    "static",
    "std",
    "struct",
    "super",
    "test",
    "trait",
    "true",
    "try",
    "type",
    "typeof",
    "unsafe",
    "unsized",
    "use",
    "virtual",
    "where",
    "while",
    "yield",
];

/// Where the new crate gets the SDK from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SdkSource {
    /// A version on the registry (crates.io).
    Version(String),
    /// A git repository holding the SDK (the Edgewise repository), at a
    /// commit, tag or branch when given.
    Git {
        /// The repository's URL.
        url: String,
        /// `rev` of the dependency.
        rev: Option<String>,
    },
    /// A folder holding the SDK's `Cargo.toml` (absolute: the crate may be
    /// anywhere).
    Path(PathBuf),
}

/// Why a plugin crate cannot be made.
#[derive(Debug, Error)]
pub enum ScaffoldError {
    /// The name is not a plugin name or not a package name.
    #[error("invalid plugin name: {0}")]
    Name(String),
    /// `--sdk-path` does not hold the SDK.
    #[error("{path} is not the Edgewise SDK ({reason})")]
    NotTheSdk {
        /// The folder given.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A version or git reference that cannot be written into `Cargo.toml`.
    #[error("invalid SDK {what} `{value}`: {reason}")]
    SdkReference {
        /// `version`, `git URL` or `rev`.
        what: &'static str,
        /// The value given.
        value: String,
        /// Why it is refused.
        reason: String,
    },
}

/// A plugin crate to write: its name and where its SDK comes from.
#[derive(Debug, Clone)]
pub struct Scaffold {
    name: String,
    sdk: SdkSource,
}

/// One rendered file: its path in the crate and its contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaffoldFile {
    /// Relative to the crate's folder, `/`-separated.
    pub path: &'static str,
    /// The file's text.
    pub contents: String,
}

impl Scaffold {
    /// Check the name (a manifest's plugin name that is also a package name
    /// cargo takes) and the SDK source. A path is checked to hold the SDK's
    /// `Cargo.toml` and made absolute.
    pub fn new(name: &str, sdk: SdkSource) -> Result<Scaffold, ScaffoldError> {
        validate_plugin_name(name).map_err(|e| ScaffoldError::Name(e.to_string()))?;
        if RESERVED_NAMES.contains(&name) || name == SDK_PACKAGE {
            return Err(ScaffoldError::Name(format!(
                "`{name}` is a Rust keyword or a crate the plugin depends on"
            )));
        }
        let sdk = match sdk {
            SdkSource::Path(path) => SdkSource::Path(sdk_folder(&path)?),
            SdkSource::Version(version) => {
                semver::VersionReq::parse(&version).map_err(|e| ScaffoldError::SdkReference {
                    what: "version",
                    value: version.clone(),
                    reason: e.to_string(),
                })?;
                SdkSource::Version(version)
            }
            SdkSource::Git { url, rev } => {
                for (what, value) in [("git URL", Some(&url)), ("rev", rev.as_ref())] {
                    if let Some(value) =
                        value.filter(|v| v.is_empty() || v.chars().any(|c| c.is_control() || c.is_whitespace()))
                    {
                        return Err(ScaffoldError::SdkReference {
                            what,
                            value: value.clone(),
                            reason: "empty, or with whitespace or control characters".into(),
                        });
                    }
                }
                SdkSource::Git { url, rev }
            }
        };
        Ok(Scaffold {
            name: name.to_owned(),
            sdk,
        })
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The crate's library name: the component is
    /// `target/wasm32-wasip2/release/<crate_name>.wasm`.
    pub fn crate_name(&self) -> String {
        self.name.replace('-', "_")
    }

    /// The plugin's Rust type: the name in CamelCase (`fridge-watch`:
    /// `FridgeWatch`), with `Plugin` appended if the template already uses it.
    pub fn type_name(&self) -> String {
        let camel: String = self
            .name
            .split('-')
            .filter(|part| !part.is_empty())
            .map(|part| {
                let mut chars = part.chars();
                chars
                    .next()
                    .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
                    .unwrap_or_default()
            })
            .collect();
        if TEMPLATE_IDENTIFIERS.contains(&camel.as_str()) {
            camel + "Plugin"
        } else {
            camel
        }
    }

    /// The dependency line of `Cargo.toml`.
    fn sdk_dependency(&self) -> String {
        let value = match &self.sdk {
            SdkSource::Version(version) => toml_string(version),
            SdkSource::Git { url, rev } => match rev {
                Some(rev) => format!("{{ git = {}, rev = {} }}", toml_string(url), toml_string(rev)),
                None => format!("{{ git = {} }}", toml_string(url)),
            },
            SdkSource::Path(path) => format!("{{ path = {} }}", toml_string(&path.display().to_string())),
        };
        format!("{SDK_PACKAGE} = {value}")
    }

    /// The CI job's command that installs `edgewise`, from the same source as
    /// the SDK.
    fn install_command(&self) -> String {
        match &self.sdk {
            SdkSource::Version(version) => format!(
                "cargo install --locked {HOST_PACKAGE} --version {}",
                shell_word(version)
            ),
            SdkSource::Git { url, rev } => {
                let rev = rev
                    .as_ref()
                    .map(|rev| format!(" --rev {}", shell_word(rev)))
                    .unwrap_or_default();
                format!("cargo install --locked --git {}{rev} {HOST_PACKAGE}", shell_word(url))
            }
            SdkSource::Path(path) => {
                let host = path.parent().unwrap_or(path).join("host");
                format!(
                    "cargo install --locked --path {}",
                    shell_word(&host.display().to_string())
                )
            }
        }
    }

    /// Whether the crate depends on a folder of this machine (so its CI job
    /// can only run here, until the dependency is changed).
    pub fn sdk_is_local(&self) -> bool {
        matches!(self.sdk, SdkSource::Path(_))
    }

    /// Every file of the crate, rendered.
    pub fn files(&self) -> Vec<ScaffoldFile> {
        let ci = TEMPLATES
            .iter()
            .find(|(path, _)| *path == CI_WORKFLOW)
            .map_or("", |(_, text)| text);
        let placeholders = [
            ("{{ci}}", ci.to_owned()),
            ("{{name}}", self.name.clone()),
            ("{{crate}}", self.crate_name()),
            ("{{type}}", self.type_name()),
            ("{{version}}", env!("CARGO_PKG_VERSION").to_owned()),
            ("{{sdk}}", self.sdk_dependency()),
            ("{{install}}", self.install_command()),
        ];
        TEMPLATES
            .iter()
            .map(|&(path, template)| ScaffoldFile {
                path,
                contents: placeholders
                    .iter()
                    .fold(template.to_owned(), |text, (token, value)| text.replace(token, value)),
            })
            .collect()
    }
}

/// The absolute folder of the SDK given by `--sdk-path`: it must hold the
/// `Cargo.toml` of the package `edgewise-sdk`.
fn sdk_folder(path: &Path) -> Result<PathBuf, ScaffoldError> {
    let not_the_sdk = |reason: String| ScaffoldError::NotTheSdk {
        path: path.to_owned(),
        reason,
    };
    let folder = path.canonicalize().map_err(|e| not_the_sdk(e.to_string()))?;
    let manifest = folder.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).map_err(|e| not_the_sdk(format!("{}: {e}", manifest.display())))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e| not_the_sdk(format!("{}: {e}", manifest.display())))?;
    let name = table
        .get("package")
        .and_then(|package| package.get("name"))
        .and_then(toml::Value::as_str);
    match name {
        Some(SDK_PACKAGE) => Ok(folder),
        Some(other) => Err(not_the_sdk(format!("its package is `{other}`, not `{SDK_PACKAGE}`"))),
        None => Err(not_the_sdk(format!("{} has no package name", manifest.display()))),
    }
}

/// `text` as a TOML basic string, quoted and escaped.
fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

/// `text` as one word of a POSIX shell command: as it is when it is made of
/// safe characters, else in single quotes.
fn shell_word(text: &str) -> String {
    let safe = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:@=+,%~".contains(c));
    if safe {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scaffold(name: &str) -> Scaffold {
        Scaffold::new(name, SdkSource::Version("0.1.0".into())).unwrap()
    }

    fn file(scaffold: &Scaffold, path: &str) -> String {
        scaffold.files().into_iter().find(|f| f.path == path).unwrap().contents
    }

    #[test]
    fn every_placeholder_is_filled() {
        let files = scaffold("fridge-watch").files();
        assert_eq!(files.len(), TEMPLATES.len());
        for file in &files {
            for token in [
                "{{name}}",
                "{{crate}}",
                "{{type}}",
                "{{sdk}}",
                "{{ci}}",
                "{{install}}",
                "{{version}}",
            ] {
                assert!(!file.contents.contains(token), "{} keeps {token}", file.path);
            }
        }
    }

    #[test]
    fn names_the_package_the_crate_and_the_type() {
        let s = scaffold("fridge-watch-2");
        assert_eq!(
            (s.crate_name(), s.type_name()),
            ("fridge_watch_2".into(), "FridgeWatch2".into())
        );
        assert!(file(&s, "src/lib.rs").contains("pub struct FridgeWatch2 {"));
        assert!(file(&s, "edgewise.toml").contains("name = \"fridge-watch-2\""));
        assert!(file(&s, "README.md").contains("target/wasm32-wasip2/release/fridge_watch_2.wasm"));
        // A type the template already uses gets a suffix.
        assert_eq!(scaffold("sensor").type_name(), "SensorPlugin");
        assert_eq!(scaffold("plugin").type_name(), "PluginPlugin");
        assert_eq!(scaffold("wake").type_name(), "WakePlugin");
    }

    #[test]
    fn the_readme_shows_the_ci_workflow_it_writes() {
        let s = scaffold("fridge-watch");
        let workflow = file(&s, CI_WORKFLOW);
        assert!(workflow.contains("--out fridge-watch-0.1.0.wasm target/wasm32-wasip2/release/fridge_watch.wasm"));
        assert!(file(&s, "README.md").contains(&format!("```yaml\n{workflow}```")));
    }

    /// Every type the template imports or declares is in
    /// `TEMPLATE_IDENTIFIERS`, so no plugin name can collide with one.
    #[test]
    fn the_template_identifiers_list_every_type_the_template_names() {
        let (_, template) = TEMPLATES.iter().find(|(path, _)| *path == "src/lib.rs").unwrap();
        let mut named = Vec::new();
        for line in template.lines().map(str::trim) {
            if let Some(rest) = line.strip_prefix("use ") {
                let items = rest.rsplit_once("::").map_or(rest, |(_, items)| items);
                named.extend(items.trim_matches(|c| "{};".contains(c)).split(", ").map(str::to_owned));
            }
            for keyword in ["struct ", "enum "] {
                if let Some(rest) = line.split(keyword).nth(1) {
                    named.extend(rest.split([' ', '{', '<']).next().map(str::to_owned));
                }
            }
        }
        let named: Vec<String> = named
            .into_iter()
            // Types: capitalised, with lowercase letters (not a CONSTANT, which
            // no CamelCase name can equal), not the plugin's own.
            .filter(|name| {
                name.starts_with(|c: char| c.is_ascii_uppercase())
                    && name.contains(|c: char| c.is_ascii_lowercase())
                    && !name.contains("{{")
            })
            .collect();
        assert!(named.len() > 10, "{named:?}");
        let missing: Vec<&String> = named
            .iter()
            .filter(|name| !TEMPLATE_IDENTIFIERS.contains(&name.as_str()))
            .collect();
        assert!(missing.is_empty(), "not in TEMPLATE_IDENTIFIERS: {missing:?}");
    }

    #[test]
    fn refuses_names_that_are_not_plugin_or_package_names() {
        for name in [
            "",
            "Fridge",
            "2fridge",
            "fridge_watch",
            "fridge watch",
            "fn",
            "test",
            "edgewise-sdk",
            "serde",
        ] {
            let error = Scaffold::new(name, SdkSource::Version("0.1".into())).unwrap_err();
            assert!(matches!(error, ScaffoldError::Name(_)), "{name}: {error}");
        }
        let long = "a".repeat(65);
        assert!(Scaffold::new(&long, SdkSource::Version("0.1".into())).is_err());
    }

    #[test]
    fn writes_each_sdk_source_as_cargo_and_the_ci_job_expect() {
        let git = Scaffold::new(
            "p",
            SdkSource::Git {
                url: "https://example.org/edgewise.git".into(),
                rev: Some("v0.1.0".into()),
            },
        )
        .unwrap();
        let cargo: toml::Table = file(&git, "Cargo.toml").parse().unwrap();
        let dependency = &cargo["dependencies"][SDK_PACKAGE];
        assert_eq!(dependency["git"].as_str(), Some("https://example.org/edgewise.git"));
        assert_eq!(dependency["rev"].as_str(), Some("v0.1.0"));
        assert!(
            file(&git, CI_WORKFLOW)
                .contains("cargo install --locked --git https://example.org/edgewise.git --rev v0.1.0 edgewise-host")
        );

        let version = scaffold("p");
        let cargo: toml::Table = file(&version, "Cargo.toml").parse().unwrap();
        assert_eq!(cargo["dependencies"][SDK_PACKAGE].as_str(), Some("0.1.0"));
        assert!(file(&version, CI_WORKFLOW).contains("cargo install --locked edgewise-host --version 0.1.0"));
        assert!(!version.sdk_is_local());
    }

    #[test]
    fn an_sdk_path_is_checked_and_written_absolute_and_escaped() {
        let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk");
        let s = Scaffold::new("p", SdkSource::Path(sdk.clone())).unwrap();
        let cargo: toml::Table = file(&s, "Cargo.toml").parse().unwrap();
        let written = PathBuf::from(cargo["dependencies"][SDK_PACKAGE]["path"].as_str().unwrap());
        assert!(written.is_absolute());
        assert_eq!(written, sdk.canonicalize().unwrap());
        assert!(s.sdk_is_local());

        // The host's own folder is a crate, but not the SDK.
        let host = Path::new(env!("CARGO_MANIFEST_DIR"));
        let error = Scaffold::new("p", SdkSource::Path(host.to_owned())).unwrap_err();
        assert!(error.to_string().contains("its package is `edgewise-host`"), "{error}");
        let error = Scaffold::new("p", SdkSource::Path(host.join("no-such-folder"))).unwrap_err();
        assert!(matches!(error, ScaffoldError::NotTheSdk { .. }), "{error}");

        // Quotes, backslashes and newlines cannot break out of the TOML string.
        for text in [r#"a"b\c"#, "a'b", "a\nb = 1"] {
            let table: toml::Table = format!("x = {}", toml_string(text)).parse().unwrap();
            assert_eq!(table["x"].as_str(), Some(text));
        }
    }

    #[test]
    fn refuses_sdk_references_cargo_or_a_shell_would_misread() {
        assert!(Scaffold::new("p", SdkSource::Version("not a version".into())).is_err());
        let newline = SdkSource::Git {
            url: "https://example.org/x\nrun: evil".into(),
            rev: None,
        };
        assert!(Scaffold::new("p", newline).is_err());
        assert_eq!(shell_word("it's"), r"'it'\''s'");
        assert_eq!(shell_word("https://example.org/a.git"), "https://example.org/a.git");
    }
}
