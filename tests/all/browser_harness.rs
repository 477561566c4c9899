//! The browser harness itself (`edgewise_tests::browser`), before the
//! dashboard tests rely on it: a real headless Chromium loads a page from a
//! server in the test, runs its script (the page's text exists only if it
//! does), shows what the test makes the server say without a reload,
//! reports a condition that never holds with its last value, saves a
//! full-page PNG of the fixed window's width, and leaves no process behind.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use edgewise_tests::browser::{Browser, Page, VIEWPORT};

/// How long a condition may take in these tests (generous: a loaded CI machine).
const WAIT: Duration = Duration::from_secs(20);

/// The page: its heading and list exist only if its script runs; the list
/// grows to the number `/count` answers, polled as a live page would.
const PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>harness</title>
<style>body { margin: 0; font-family: sans-serif } #tall { height: 1500px }</style></head>
<body><h1 id="title"></h1><ul id="feed"></ul><div id="tall"></div>
<script>
document.getElementById("title").textContent = "rendered by " + "script";
const feed = document.getElementById("feed");
async function poll() {
  const wanted = Number(await (await fetch("/count")).text());
  while (feed.children.length < wanted) {
    const item = document.createElement("li");
    item.textContent = "alert " + (feed.children.length + 1);
    feed.appendChild(item);
  }
  setTimeout(poll, 20);
}
poll();
</script></body></html>"#;

/// A blocking HTTP server on an ephemeral port serving [`PAGE`] at `/` and
/// the test's number at `/count`; stopped when dropped.
struct PageServer {
    address: SocketAddr,
    count: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl PageServer {
    fn start() -> PageServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let count = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let count = count.clone();
            let stop = stop.clone();
            move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let count = count.clone();
                    // One thread per connection: the browser may open one it
                    // sends nothing on.
                    std::thread::spawn(move || answer(stream, &count));
                }
            }
        });
        PageServer {
            address,
            count,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("http://{}/", self.address)
    }
}

impl Drop for PageServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop up so it sees `stop`.
        let _ = TcpStream::connect(self.address);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Answer the requests of one connection (keep-alive) until it closes.
fn answer(stream: TcpStream, count: &AtomicUsize) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            if header == "\r\n" {
                break;
            }
        }
        let path = request_line.split_whitespace().nth(1).unwrap_or("");
        let (status, content_type, body) = match path {
            "/" => ("200 OK", "text/html; charset=utf-8", PAGE.to_owned()),
            "/count" => ("200 OK", "text/plain", count.load(Ordering::SeqCst).to_string()),
            _ => ("404 Not Found", "text/plain", "not found".to_owned()),
        };
        let response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n\r\n{body}",
            body.len()
        );
        if reader.get_mut().write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

/// A browser showing the page of `server`, once its script has run (the
/// heading is set only by the script: this fails in a browser that runs none).
async fn open_page(server: &PageServer) -> (Browser, Page) {
    let browser = Browser::start().await.unwrap();
    let page = browser.open(&server.url()).await.unwrap();
    page.wait_for("document.getElementById('title').textContent !== ''", WAIT)
        .await
        .unwrap();
    (browser, page)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_runs_its_script_and_shows_what_appears_later() {
    let server = PageServer::start();
    let (_browser, page) = open_page(&server).await;
    assert_eq!(page.text("#title").await.unwrap(), "rendered by script");
    assert_eq!(page.eval::<String>("document.title").await.unwrap(), "harness");
    assert_eq!(page.count("#feed li").await.unwrap(), 0);
    // The fixed window, and a promise awaited.
    assert_eq!(page.eval::<u32>("window.innerWidth").await.unwrap(), VIEWPORT.0);
    assert_eq!(page.eval::<u32>("window.innerHeight").await.unwrap(), VIEWPORT.1);
    assert_eq!(
        page.eval::<u32>("new Promise(done => setTimeout(() => done(42), 50))")
            .await
            .unwrap(),
        42
    );

    // The server changes; the page shows it without a reload.
    let changed = Instant::now();
    server.count.store(2, Ordering::SeqCst);
    let took = page
        .wait_for_since("document.querySelectorAll('#feed li').length === 2", changed, WAIT)
        .await
        .unwrap();
    assert!(took < WAIT, "{took:?}");
    assert_eq!(page.count("#feed li").await.unwrap(), 2);
    assert_eq!(page.texts("#feed li").await.unwrap(), ["alert 1", "alert 2"]);
    assert_eq!(page.text("#feed li").await.unwrap(), "alert 1");
}

#[tokio::test(flavor = "multi_thread")]
async fn failures_say_what_was_seen() {
    let server = PageServer::start();
    let (_browser, page) = open_page(&server).await;

    let never = page
        .wait_for("document.title === 'other'", Duration::from_millis(200))
        .await
        .unwrap_err();
    assert!(format!("{never:#}").contains("its last value: false"), "{never:#}");
    let thrown = page
        .wait_for("no_such_variable > 1", Duration::from_millis(200))
        .await
        .unwrap_err();
    assert!(format!("{thrown:#}").contains("ReferenceError"), "{thrown:#}");

    let missing = page.text("#missing").await.unwrap_err();
    assert!(
        format!("{missing:#}").contains("no element matches `#missing`"),
        "{missing:#}"
    );
    let bad_selector = page.count("li[").await.unwrap_err();
    assert!(format!("{bad_selector:#}").contains("SyntaxError"), "{bad_selector:#}");
    let wrong_type = page.eval::<u32>("document.title").await.unwrap_err();
    assert!(
        format!("{wrong_type:#}").contains(r#"returned "harness""#),
        "{wrong_type:#}"
    );
    let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let unreachable = page.goto(&format!("http://{closed}/")).await.unwrap_err();
    assert!(
        format!("{unreachable:#}").contains("ERR_CONNECTION_REFUSED"),
        "{unreachable:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_screenshot_is_a_png_of_the_whole_page() {
    let server = PageServer::start();
    let (_browser, page) = open_page(&server).await;

    let dir = tempfile::tempdir().unwrap();
    let path = page.screenshot(dir.path().join("shots/page.png")).await.unwrap();
    let png = std::fs::read(&path).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    // The first chunk: its length (13), `IHDR`, width, height (big-endian).
    assert_eq!(&png[12..16], b"IHDR");
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
    assert_eq!(width, VIEWPORT.0);
    // The whole page (a 1500 px block under the heading), not the window.
    assert!(height > 1500, "{width}x{height}");
    // The viewport is the same after.
    assert_eq!(page.eval::<u32>("window.innerHeight").await.unwrap(), VIEWPORT.1);
}

#[tokio::test(flavor = "multi_thread")]
async fn dropping_the_browser_leaves_no_process() {
    let browser = Browser::start().await.unwrap();
    let page = browser.open("about:blank").await.unwrap();
    assert_eq!(page.eval::<u32>("1 + 1").await.unwrap(), 2);
    let group = browser.pid().unwrap();
    assert!(live_members(group) > 1, "the browser runs no helper process");
    drop(page);
    drop(browser);
    let deadline = Instant::now() + WAIT;
    while live_members(group) > 0 {
        assert!(Instant::now() < deadline, "processes of the browser still run");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// How many processes of the process group `group` run (zombies, already
/// dead, are not counted), from `/proc/PID/stat`.
fn live_members(group: u32) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| std::fs::read_to_string(entry.ok()?.path().join("stat")).ok())
        .filter(|stat| {
            // `PID (COMM) STATE PPID PGRP ...`: COMM may hold spaces and parentheses.
            let Some((_, after)) = stat.rsplit_once(") ") else {
                return false;
            };
            let fields: Vec<&str> = after.split_whitespace().collect();
            fields.len() > 2 && fields[0] != "Z" && fields[2] == group.to_string()
        })
        .count()
}
