//! A real browser for the dashboard tests: headless Chromium (the
//! distribution's, found by `edgewise_procs::chromium`), driven over the
//! DevTools protocol with `chromiumoxide`.
//!
//! [`Browser::start`] launches it itself rather than through
//! `chromiumoxide::Browser::launch`: as the leader of its own process group,
//! held by a [`ChildGuard`]. Dropping the [`Browser`] stops it (SIGTERM,
//! then SIGKILL to the whole group if it lingers) and reaps it: no stray
//! `chromium` after a test, even one that panicked; with its output in a log file whose tail an
//! error shows; with a fresh profile in a temporary directory removed after.
//! It then connects to the DevTools address the browser writes in its
//! profile (`DevToolsActivePort`).
//!
//! Pages have a 1280x900 viewport at a device scale of 1, so screenshots
//! have the same size on every machine. Nothing needs the network: no component
//! updates, no background requests, pages from the test's own servers.
//!
//! Use from `#[tokio::test(flavor = "multi_thread")]` tests (the DevTools
//! connection is a task on the test's runtime):
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use std::time::{Duration, Instant};
//! use edgewise_tests::browser::Browser;
//!
//! let browser = Browser::start().await?;
//! let page = browser.open("http://127.0.0.1:8080/").await?;
//! let published = Instant::now();
//! // ... publish an alert ...
//! let took = page
//!     .wait_for_since("document.querySelectorAll('#feed li').length === 1", published, Duration::from_secs(10))
//!     .await?;
//! assert!(took < Duration::from_secs(2), "the alert took {took:?} to appear");
//! assert_eq!(page.text("#feed li").await?, "glucose low");
//! page.screenshot("docs/images/feed.png").await?;
//! # Ok(())
//! # }
//! ```

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chromiumoxide::cdp::browser_protocol::page::{self as cdp_page, CaptureScreenshotFormat, CaptureScreenshotParams};
use chromiumoxide::handler::HandlerConfig;
use chromiumoxide::handler::viewport::Viewport;
use edgewise_procs::{ChildGuard, chromium};
use futures::StreamExt;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tempfile::TempDir;
use tokio::task::JoinHandle;

/// Every page's viewport (and the window's) in CSS pixels, which are
/// screenshot pixels (the scale is 1).
pub const VIEWPORT: (u32, u32) = (1280, 900);

/// How long the browser may take to start listening for DevTools.
const LAUNCH_TIMEOUT: Duration = Duration::from_secs(30);

/// How often [`Page::wait_for`] evaluates its condition, and [`Browser::start`]
/// looks for the DevTools address.
const POLL: Duration = Duration::from_millis(20);

/// How long dropping a [`Browser`] waits for it to shut down in order
/// before killing it.
const SHUTDOWN: Duration = Duration::from_secs(5);

/// How much of the browser's log an error shows (its end).
const LOG_TAIL: usize = 4000;

/// A headless Chromium, killed (with every process it started) when dropped.
pub struct Browser {
    browser: chromiumoxide::Browser,
    /// Drives the DevTools connection; ends when the browser goes.
    handler: JoinHandle<()>,
    process: ChildGuard,
    /// The profile and the log; removed after the process is killed (drop order).
    _dir: TempDir,
}

impl Browser {
    /// Start a headless Chromium with a fresh profile and connect to it.
    pub async fn start() -> anyhow::Result<Browser> {
        let binary = chromium::find()?;
        let dir = tempfile::Builder::new()
            .prefix("edgewise-chromium")
            .tempdir()
            .context("cannot create the browser's temporary directory")?;
        let profile = dir.path().join("profile");
        let log_path = dir.path().join("chromium.log");
        let log = File::create(&log_path).with_context(|| format!("cannot create {}", log_path.display()))?;
        let child = {
            use std::os::unix::process::CommandExt;
            Command::new(&binary)
                .args(chromium_args(&profile))
                .stdin(Stdio::null())
                .stdout(log.try_clone().context("cannot share the browser's log file")?)
                .stderr(log)
                .process_group(0)
                .spawn()
                .with_context(|| format!("cannot start {}", binary.display()))?
        };
        let mut process = ChildGuard::new_group(format!("chromium ({})", binary.display()), child);
        let address = devtools_address(&mut process, &profile, &log_path).await?;
        let (width, height) = VIEWPORT;
        let config = HandlerConfig {
            // Set on every page: a headless window of this size has a
            // smaller viewport (room for a tab strip it does not draw).
            viewport: Some(Viewport {
                width,
                height,
                device_scale_factor: Some(1.0),
                ..Viewport::default()
            }),
            ..HandlerConfig::default()
        };
        let (browser, mut handler) = chromiumoxide::Browser::connect_with_config(address.as_str(), config)
            .await
            .with_context(|| format!("cannot connect to the browser's DevTools at {address}"))?;
        let handler = tokio::spawn(async move {
            // It yields an error only when the connection is gone (the
            // browser exited or was killed).
            while let Some(event) = handler.next().await {
                if event.is_err() {
                    break;
                }
            }
        });
        Ok(Browser {
            browser,
            handler,
            process,
            _dir: dir,
        })
    }

    /// The browser process's id (the leader of its process group).
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// A new tab showing `url` (loaded: its `load` event has fired).
    pub async fn open(&self, url: &str) -> anyhow::Result<Page> {
        let page = self
            .browser
            .new_page("about:blank")
            .await
            .context("cannot open a tab")?;
        let page = Page { page };
        page.goto(url).await?;
        Ok(page)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.handler.abort();
        // In order first: on SIGTERM Chromium stops its helper processes and
        // reaps them. Killed outright, they would stay zombies until the
        // init process reaps them (in a container, maybe never).
        if self.process.terminate().is_ok() {
            let _ = self.process.wait_timeout(SHUTDOWN);
        }
        self.process.kill();
    }
}

/// The command line: headless (the new mode, the real browser), no sandbox
/// (the tests run as root, where Chromium's sandbox refuses to start), a
/// fresh profile, DevTools on a port the system picks, a fixed window, and
/// nothing that reaches for the network or prompts.
fn chromium_args(profile: &Path) -> Vec<String> {
    let (width, height) = VIEWPORT;
    let mut args: Vec<String> = [
        "--headless=new",
        "--no-sandbox",
        "--remote-debugging-port=0",
        "--remote-debugging-address=127.0.0.1",
        "--force-device-scale-factor=1",
        "--hide-scrollbars",
        "--force-color-profile=srgb",
        "--lang=en-US",
        "--mute-audio",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-default-apps",
        "--disable-extensions",
        "--disable-sync",
        "--disable-breakpad",
        // Containers often have a small /dev/shm.
        "--disable-dev-shm-usage",
        "--password-store=basic",
        "--use-mock-keychain",
    ]
    .map(String::from)
    .to_vec();
    args.push(format!("--window-size={width},{height}"));
    args.push(format!("--user-data-dir={}", profile.display()));
    args.push("about:blank".to_owned());
    args
}

/// The DevTools WebSocket address, once the browser has written it in its
/// profile (`DevToolsActivePort`: the port, then the path), or why not.
async fn devtools_address(process: &mut ChildGuard, profile: &Path, log: &Path) -> anyhow::Result<String> {
    let file = profile.join("DevToolsActivePort");
    let deadline = Instant::now() + LAUNCH_TIMEOUT;
    loop {
        if let Ok(text) = fs::read_to_string(&file) {
            let mut lines = text.lines();
            // Complete once the second line is there (written in one go, but
            // read here possibly in the middle).
            if let (Some(port), Some(path)) = (lines.next(), lines.next())
                && let Ok(port) = port.trim().parse::<u16>()
                && path.starts_with("/devtools/browser/")
            {
                return Ok(format!("ws://127.0.0.1:{port}{}", path.trim()));
            }
        }
        if let Some(status) = process.try_wait()? {
            bail!(
                "{} exited ({status}) before listening for DevTools; its log ends:\n{}",
                process.what(),
                log_tail(log)
            );
        }
        if Instant::now() >= deadline {
            bail!(
                "{} wrote no DevTools address in {LAUNCH_TIMEOUT:?}; its log ends:\n{}",
                process.what(),
                log_tail(log)
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The end of the browser's log, for error messages.
fn log_tail(log: &Path) -> String {
    let text = fs::read_to_string(log).unwrap_or_else(|e| format!("(cannot read {}: {e})", log.display()));
    let start = text.len().saturating_sub(LOG_TAIL);
    let start = (start..text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(text.len());
    text[start..].to_owned()
}

/// A tab of the [`Browser`].
pub struct Page {
    page: chromiumoxide::Page,
}

impl Page {
    /// Load `url`; returns once its `load` event has fired.
    pub async fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.page
            .goto(url)
            .await
            .with_context(|| format!("cannot load {url}"))?;
        Ok(())
    }

    /// The value of the JavaScript expression `js`, awaited if it is a
    /// promise, as a `T` (`undefined` is `null`). A thrown exception is an
    /// error with its message.
    pub async fn eval<T: DeserializeOwned>(&self, js: &str) -> anyhow::Result<T> {
        let value = self.eval_value(js).await?;
        serde_json::from_value(value.clone())
            .with_context(|| format!("`{js}` returned {value}, not a {}", std::any::type_name::<T>()))
    }

    /// The value of `js` as JSON.
    async fn eval_value(&self, js: &str) -> anyhow::Result<Value> {
        let result = self.page.evaluate_expression(js).await.map_err(|e| match e {
            chromiumoxide::error::CdpError::JavascriptException(details) => {
                let message = details
                    .exception
                    .as_ref()
                    .and_then(|e| e.description.clone())
                    .unwrap_or_else(|| details.text.clone());
                anyhow::anyhow!("`{js}` threw: {message}")
            }
            other => anyhow::Error::new(other).context(format!("cannot evaluate `{js}`")),
        })?;
        Ok(result.value().cloned().unwrap_or(Value::Null))
    }

    /// Wait until the JavaScript boolean expression `condition` is `true`,
    /// evaluating it every 20 ms; how long that took. An exception counts
    /// as "not yet" (the element it reads is not there yet). After `timeout`
    /// an error with its last value or exception.
    pub async fn wait_for(&self, condition: &str, timeout: Duration) -> anyhow::Result<Duration> {
        self.wait_for_since(condition, Instant::now(), timeout).await
    }

    /// [`Page::wait_for`], timed from `since` (e.g. when the test published
    /// what the page should show): returns the time from `since` until the
    /// condition was seen true, and gives up `timeout` after `since`.
    pub async fn wait_for_since(&self, condition: &str, since: Instant, timeout: Duration) -> anyhow::Result<Duration> {
        let deadline = since + timeout;
        loop {
            let last = match self.eval_value(condition).await {
                Ok(Value::Bool(true)) => return Ok(since.elapsed()),
                Ok(value) => format!("its last value: {value}"),
                Err(e) => format!("its last evaluation: {e:#}"),
            };
            if Instant::now() >= deadline {
                bail!("`{condition}` was not true within {timeout:?}; {last}");
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The text of the first element matching the CSS `selector`: as
    /// rendered (`innerText`) for HTML, its `textContent` for SVG. An error
    /// if none matches.
    pub async fn text(&self, selector: &str) -> anyhow::Result<String> {
        let found: Option<String> = self
            .eval(&format!(
                "(e => e === null ? null : (e.innerText ?? e.textContent))(document.querySelector({}))",
                js_string(selector)
            ))
            .await?;
        found.with_context(|| format!("no element matches `{selector}`"))
    }

    /// The texts (as [`Page::text`]) of every element matching `selector`,
    /// in document order.
    pub async fn texts(&self, selector: &str) -> anyhow::Result<Vec<String>> {
        self.eval(&format!(
            "Array.from(document.querySelectorAll({}), e => e.innerText ?? e.textContent)",
            js_string(selector)
        ))
        .await
    }

    /// How many elements match the CSS `selector`.
    pub async fn count(&self, selector: &str) -> anyhow::Result<usize> {
        self.eval(&format!("document.querySelectorAll({}).length", js_string(selector)))
            .await
    }

    /// Save a PNG of the whole page (beyond the window's height) at `path`,
    /// creating its directory.
    pub async fn screenshot(&self, path: impl AsRef<Path>) -> anyhow::Result<PathBuf> {
        let path = path.as_ref();
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        // The page's whole content, captured beyond the viewport rather than
        // with the viewport resized to it (`chromiumoxide`'s `full_page`),
        // which would end the page's fixed viewport.
        let content = self
            .page
            .layout_metrics()
            .await
            .context("cannot measure the page")?
            .css_content_size;
        let params = CaptureScreenshotParams::builder()
            .format(CaptureScreenshotFormat::Png)
            .capture_beyond_viewport(true)
            .clip(cdp_page::Viewport {
                x: 0.0,
                y: 0.0,
                width: content.width,
                height: content.height,
                scale: 1.0,
            })
            .build();
        let png = self.page.screenshot(params).await.context("cannot take a screenshot")?;
        fs::write(path, png).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(path.to_owned())
    }

    /// The `chromiumoxide` page, for what this wrapper does not offer
    /// (clicks, typing, events).
    pub fn inner(&self) -> &chromiumoxide::Page {
        &self.page
    }
}

/// `text` as a JavaScript string literal (JSON's string syntax is one).
fn js_string(text: &str) -> String {
    Value::String(text.to_owned()).to_string()
}
