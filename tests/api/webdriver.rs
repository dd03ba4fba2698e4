//! A small synchronous WebDriver client (the W3C calls the dashboard's tests and the
//! bench make) over ureq, driving Debian's headless Chromium through chromedriver. Shared
//! by tests/api/browser.rs and examples/bench.rs (`#[path]`, with tests/api/wait.rs, whose
//! `eventually` it waits with).

#![allow(dead_code)]

use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};

use crate::wait::eventually;

/// Why the browser cannot run here (Chromium or chromedriver not on the PATH, and how to get
/// them), or `None` when it can.
pub fn browser_missing() -> Option<String> {
    let missing: Vec<&str> = ["chromium", "chromedriver"].into_iter().filter(|tool| on_path(tool).is_none()).collect();
    (!missing.is_empty())
        .then(|| format!("no {} on the PATH (install Debian's chromium and chromium-driver)", missing.join(" or ")))
}

/// Whether the bench can measure the dashboard in Chromium. In CI (`CI` set, as `.ci/run`
/// runs) Chromium must be there, and its absence fails the run; elsewhere its absence skips
/// the measurement, saying how to get it.
pub fn browser_here() -> bool {
    let Some(why) = browser_missing() else { return true };
    assert!(std::env::var_os("CI").is_none(), "CI needs chromium and chromedriver (.ci/run installs them)");
    eprintln!("skipping the browser: {why}");
    false
}

/// Where `tool` is on the PATH.
fn on_path(tool: &str) -> Option<String> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(tool)).find(|p| p.is_file()).map(|p| p.display().to_string())
}

/// A chromedriver and one headless Chromium session; both end when dropped.
pub struct Browser {
    driver: Child,
    base: String,
    agent: ureq::Agent,
}

pub const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

impl Browser {
    pub fn start() -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian's chromium-driver; .ci/run installs it)");
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let url = format!("http://127.0.0.1:{port}");
        eventually("chromedriver to answer", || agent.get(format!("{url}/status")).call().is_ok());
        let caps = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": on_path("chromium").unwrap_or_else(|| "/usr/bin/chromium".into()),
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"]
        }}}});
        let mut b = Browser { driver, base: url, agent };
        let session = b.call("POST", "/session", Some(caps));
        let id = session["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {session}")).to_string();
        b.base = format!("{}/session/{id}", b.base);
        b
    }

    /// A WebDriver call's value; a WebDriver error fails the test with its message.
    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.try_call(method, path, body).unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"))
    }

    /// A WebDriver call's value, or its error (`value.error` and message).
    pub fn try_call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let req = ureq::http::Request::builder().method(method).uri(format!("{}{path}", self.base));
        let mut resp = match body {
            Some(b) => self.agent.run(req.header("Content-Type", "application/json").body(b.to_string()).unwrap()),
            None if method == "POST" => {
                self.agent.run(req.header("Content-Type", "application/json").body("{}".to_string()).unwrap())
            }
            None => self.agent.run(req.body(()).unwrap()),
        }
        .unwrap();
        let v: Value = serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap();
        match v["value"]["error"].as_str() {
            Some(error) => Err(format!("{error}: {}", v["value"]["message"].as_str().unwrap_or(""))),
            None => Ok(v["value"].clone()),
        }
    }

    pub fn goto(&self, url: &str) {
        self.call("POST", "/url", Some(json!({ "url": url })));
    }

    /// The elements `css` selects now.
    pub fn find_all(&self, css: &str) -> Vec<String> {
        let found = self.call("POST", "/elements", Some(json!({"using": "css selector", "value": css})));
        found
            .as_array()
            .map(|a| a.iter().filter_map(|e| e[ELEMENT].as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    }

    /// An element's text; "" if the page has redrawn it away meanwhile (a stale element).
    pub fn text(&self, element: &str) -> String {
        match self.try_call("GET", &format!("/element/{element}/text"), None) {
            Ok(v) => v.as_str().unwrap_or_default().to_string(),
            Err(e) if e.starts_with("stale element reference") => String::new(),
            Err(e) => panic!("WebDriver text of {element}: {e}"),
        }
    }

    pub fn attribute(&self, element: &str, name: &str) -> String {
        self.call("GET", &format!("/element/{element}/attribute/{name}"), None).as_str().unwrap_or_default().to_string()
    }

    /// Waits until `css` selects an element whose text contains `text`; returns it.
    pub fn wait_text(&self, css: &str, text: &str) -> String {
        eventually(&format!("a {css} saying {text:?}"), || {
            match self.find_all(css).into_iter().find(|e| self.text(e).contains(text)) {
                Some(e) => Ok(e),
                None => Err(format!(
                    "the page says: {}",
                    self.find_all("main").first().map(|m| self.text(m)).unwrap_or_default()
                )),
            }
        })
    }

    pub fn type_into(&self, css: &str, text: &str) {
        let e = self.find_all(css).pop().unwrap_or_else(|| panic!("no {css}"));
        self.call("POST", &format!("/element/{e}/value"), Some(json!({ "text": text })));
    }

    pub fn clear(&self, css: &str) {
        let e = self.find_all(css).pop().unwrap_or_else(|| panic!("no {css}"));
        self.call("POST", &format!("/element/{e}/clear"), None);
    }

    /// Clicks the element `css` selects whose text is `text`.
    pub fn click_text(&self, css: &str, text: &str) {
        let e = self
            .find_all(css)
            .into_iter()
            .find(|e| self.text(e) == text)
            .unwrap_or_else(|| panic!("no {css} saying {text}"));
        self.call("POST", &format!("/element/{e}/click"), None);
    }

    pub fn click(&self, css: &str) {
        let e = self.find_all(css).pop().unwrap_or_else(|| panic!("no {css}"));
        self.call("POST", &format!("/element/{e}/click"), None);
    }

    /// Saves a PNG of the window to target/screenshots/NAME.png.
    pub fn screenshot(&self, name: &str) {
        let png = self.call("GET", "/screenshot", None);
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), base64_decode(png.as_str().unwrap())).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.agent.run(ureq::http::Request::builder().method("DELETE").uri(&self.base).body(()).unwrap());
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Standard base64, as WebDriver sends screenshots.
pub fn base64_decode(s: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let bytes: Vec<u8> = s.bytes().filter(|&c| c != b'=' && !c.is_ascii_whitespace()).map(value).collect();
    bytes
        .chunks(4)
        .flat_map(|c| {
            let n = c.iter().fold(0u32, |acc, &v| (acc << 6) | u32::from(v)) << (6 * (4 - c.len()));
            let out = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
            out.into_iter().take(c.len() - 1)
        })
        .collect()
}
