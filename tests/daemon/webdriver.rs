//! A small W3C WebDriver client over reqwest (already a dependency of the package): Debian's
//! `chromedriver` driving headless `chromium`, for the console's browser test. The protocol is plain
//! JSON over HTTP and the test needs eight commands, so a WebDriver crate (fantoccini, thirtyfour)
//! would add a dependency tree and compile time for nothing the test uses.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Longest a page, a script or a wait may take.
const TIMEOUT: Duration = Duration::from_secs(20);

/// A program on the PATH, or a failure saying how to install it (never a skip: CI installs it).
fn program(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(name))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| {
            panic!("`{name}` is not on the PATH: install Debian's chromium and chromium-driver (apt-get install chromium chromium-driver; .ci/run does)")
        })
}

/// A running chromedriver, stopped when dropped.
pub struct Driver {
    /// The chromedriver process.
    process: Child,
    /// `http://127.0.0.1:PORT`.
    base: String,
    /// The HTTP client.
    http: reqwest::Client,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// One browser session.
pub struct Session {
    /// `http://127.0.0.1:PORT/session/ID`.
    url: String,
    /// The HTTP client.
    http: reqwest::Client,
}

/// The `value` of a WebDriver answer, or a panic with the driver's error.
async fn value(response: reqwest::Response, what: &str) -> Value {
    let status = response.status();
    let body: Value = response
        .json()
        .await
        .unwrap_or_else(|e| panic!("{what}: not JSON: {e}"));
    assert!(status.is_success(), "{what}: {status} {body}");
    body["value"].clone()
}

impl Driver {
    /// Starts chromedriver on a free loopback port and waits until it is ready.
    pub async fn start() -> Driver {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let process = Command::new(program("chromedriver"))
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let driver = Driver {
            process,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::builder().timeout(TIMEOUT * 2).build().unwrap(),
        };
        let start = Instant::now();
        loop {
            if let Ok(r) = driver.http.get(format!("{}/status", driver.base)).send().await {
                if r.json::<Value>().await.is_ok_and(|v| v["value"]["ready"] == true) {
                    return driver;
                }
            }
            assert!(start.elapsed() < TIMEOUT, "chromedriver did not get ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A new headless chromium session (no sandbox: the tests run as root in CI).
    pub async fn session(&self) -> Session {
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "timeouts": {"pageLoad": TIMEOUT.as_millis() as u64, "script": TIMEOUT.as_millis() as u64},
            "goog:chromeOptions": {
                "binary": program("chromium"),
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1280,900", "--no-first-run", "--disable-extensions"]
            }
        }}});
        let response = self
            .http
            .post(format!("{}/session", self.base))
            .json(&capabilities)
            .send()
            .await
            .unwrap();
        let v = value(response, "new session").await;
        Session {
            url: format!("{}/session/{}", self.base, v["sessionId"].as_str().unwrap()),
            http: self.http.clone(),
        }
    }
}

impl Session {
    /// POSTs a command.
    async fn post(&self, path: &str, body: Value) -> Value {
        let response = self
            .http
            .post(format!("{}/{path}", self.url))
            .json(&body)
            .send()
            .await
            .unwrap();
        value(response, path).await
    }

    /// Opens `url` and waits for it to load.
    pub async fn goto(&self, url: &str) {
        self.post("url", json!({"url": url})).await;
    }

    /// Runs `script` (a function body) in the page and returns what it returns.
    pub async fn eval(&self, script: &str) -> Value {
        self.post("execute/sync", json!({"script": script, "args": []})).await
    }

    /// Evaluates `script` until it returns `true`; panics with `what` after the timeout.
    pub async fn wait_for(&self, script: &str, what: &str) {
        let start = Instant::now();
        while self.eval(script).await != Value::Bool(true) {
            assert!(start.elapsed() < TIMEOUT, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Presses and releases `key` (a WebDriver key code such as "\u{E014}" for the right arrow).
    pub async fn press(&self, key: &str) {
        let actions = json!({"actions": [{"type": "key", "id": "keyboard", "actions": [
            {"type": "keyDown", "value": key}, {"type": "keyUp", "value": key}
        ]}]});
        self.post("actions", actions).await;
    }

    /// The text of an open alert, if one is open.
    pub async fn alert(&self) -> Option<String> {
        let response = self.http.get(format!("{}/alert/text", self.url)).send().await.unwrap();
        let ok = response.status().is_success();
        let v: Value = response.json().await.unwrap();
        ok.then(|| v["value"].to_string())
    }

    /// Saves a PNG screenshot of the window at `path`.
    pub async fn screenshot(&self, path: &Path) {
        use base64::Engine as _;
        let response = self.http.get(format!("{}/screenshot", self.url)).send().await.unwrap();
        let v = value(response, "screenshot").await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
    }
}

impl Drop for Session {
    /// Ends the session, closing the browser, also when the test fails (a blocking DELETE: a drop
    /// cannot wait on async code).
    fn drop(&mut self) {
        use std::io::{Read, Write};
        let rest = self.url.trim_start_matches("http://");
        let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let Ok(mut stream) = std::net::TcpStream::connect(host) else {
            return;
        };
        let _ = stream.set_read_timeout(Some(TIMEOUT));
        let _ = write!(
            stream,
            "DELETE {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\n\r\n"
        );
        // Read the answer's head and its Content-Length of body (the driver may keep the
        // connection open): the browser is closed once it has answered.
        let mut answer = Vec::new();
        let mut chunk = [0u8; 4096];
        while let Ok(n @ 1..) = stream.read(&mut chunk) {
            answer.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&answer).to_ascii_lowercase();
            if let Some(end) = text.find("\r\n\r\n") {
                let length = text[..end]
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if answer.len() >= end + 4 + length {
                    break;
                }
            }
        }
    }
}

/// WebDriver key codes.
pub mod keys {
    /// ←
    pub const LEFT: &str = "\u{E012}";
    /// ↑
    pub const UP: &str = "\u{E013}";
    /// →
    pub const RIGHT: &str = "\u{E014}";
    /// ↓
    pub const DOWN: &str = "\u{E015}";
    /// Backspace
    pub const BACKSPACE: &str = "\u{E003}";
    /// Enter
    pub const ENTER: &str = "\u{E007}";
}
