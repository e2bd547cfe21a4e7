//! The browser harness of the portal's tests: Debian's headless `chromium` driven through `chromedriver`'s W3C
//! WebDriver HTTP API, with `reqwest` as the client (no WebDriver crate: the dozen commands used are plain JSON
//! over HTTP). Without `chromium` and `chromedriver` every browser test fails, naming `infra/browser_deps.sh`.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The key W3C WebDriver names an element reference by.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
const WAIT: Duration = Duration::from_secs(15);

/// A child process that is killed when the test ends, however it ends.
pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `name` on PATH, or the reason the test cannot run.
fn find_program(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{name}` is not installed: the portal's browser test needs Debian's chromium and chromium-driver. \
                 Run `bash infra/browser_deps.sh` (as root; the test command and CI do)."
            )
        })
}

fn screenshots_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/portal-screenshots")
        .to_path_buf();
    std::fs::create_dir_all(&dir).expect("screenshot directory");
    dir
}

/// One WebDriver session in headless Chromium.
pub struct Browser {
    http: reqwest::Client,
    session: String,
    _driver: Process,
    _profile: TempDir,
}

pub struct TempDir(pub PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn temp_dir(label: &str) -> TempDir {
    let dir =
        std::env::temp_dir().join(format!("tb-{label}-{}-{}", std::process::id(), free_port()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    TempDir(dir)
}

impl Browser {
    pub async fn start() -> Self {
        let chromedriver = find_program("chromedriver");
        let chromium = find_program("chromium");
        let port = free_port();
        let driver = Process(
            Command::new(chromedriver)
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start chromedriver"),
        );
        wait_for_port(port, "chromedriver");
        let profile = temp_dir("chromium-profile");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--window-size=1280,1200",
                    format!("--user-data-dir={}", profile.0.display()),
                ],
            },
        }}});
        let answer: Value = http
            .post(format!("{base}/session"))
            .json(&capabilities)
            .send()
            .await
            .expect("chromedriver answers")
            .json()
            .await
            .expect("JSON");
        let session = answer["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("chromium did not start: {answer}"))
            .to_owned();
        Self {
            http,
            session: format!("{base}/session/{session}"),
            _driver: driver,
            _profile: profile,
        }
    }

    /// One WebDriver command: `Ok(value)` or `Err(the driver's error)`.
    pub async fn command(&self, method: &str, path: &str, body: Value) -> Result<Value, Value> {
        let url = format!("{}{path}", self.session);
        let request = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self.http.post(url).json(&body),
        };
        let response = request.send().await.expect("chromedriver answers");
        let ok = response.status().is_success();
        let answer: Value = response.json().await.expect("JSON");
        if ok {
            Ok(answer["value"].clone())
        } else {
            Err(answer["value"].clone())
        }
    }

    pub async fn script(&self, script: &str, args: Value) -> Value {
        self.command(
            "POST",
            "/execute/sync",
            json!({"script": script, "args": args}),
        )
        .await
        .unwrap_or_else(|e| panic!("script failed: {e}"))
    }

    /// Runs `script` as an asynchronous WebDriver script: it answers by calling its last argument.
    pub async fn script_async(&self, script: &str, args: Value) -> Value {
        self.command(
            "POST",
            "/execute/async",
            json!({"script": script, "args": args}),
        )
        .await
        .unwrap_or_else(|e| panic!("async script failed: {e}"))
    }

    /// Reloads the page, as the browser's reload button does.
    pub async fn reload(&self) {
        self.command("POST", "/refresh", json!({}))
            .await
            .unwrap_or_else(|e| panic!("reload: {e}"));
    }

    /// Whether the page is wider than the window (it scrolls sideways), as `(scrollWidth, innerWidth)`.
    pub async fn widths(&self) -> (u64, u64) {
        let w = self
            .script(
                "return [document.documentElement.scrollWidth, window.innerWidth];",
                json!([]),
            )
            .await;
        (w[0].as_u64().unwrap(), w[1].as_u64().unwrap())
    }

    /// Runs axe-core (`source`, the text of `axe.min.js`) on the page as it is, and returns its violations as
    /// `rule: target…` lines (empty when there are none).
    pub async fn accessibility_violations(&self, source: &str) -> Vec<String> {
        // WebDriver scripts run outside the page's Content-Security-Policy, so axe is defined without relaxing it.
        self.script(&format!("{source}\nreturn typeof axe;"), json!([]))
            .await;
        let found = self
            .script_async(
                "const done = arguments[arguments.length - 1];
                 axe.run(document).then(
                   (r) => done(r.violations.map((v) => `${v.id}: ${v.help} — ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`)),
                   (e) => done([`axe failed: ${e}`]));",
                json!([]),
            )
            .await;
        found
            .as_array()
            .expect("a list")
            .iter()
            .map(|v| v.as_str().unwrap_or_default().to_owned())
            .collect()
    }

    pub async fn goto(&self, url: &str) {
        self.command("POST", "/url", json!({"url": url}))
            .await
            .unwrap_or_else(|e| panic!("navigate to {url}: {e}"));
    }

    /// The element `css` selects, waiting for it to appear.
    pub async fn find(&self, css: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            match self
                .command(
                    "POST",
                    "/element",
                    json!({"using": "css selector", "value": css}),
                )
                .await
            {
                Ok(element) => return element[ELEMENT].as_str().unwrap().to_owned(),
                Err(e) if Instant::now() > deadline => {
                    panic!("no element `{css}`: {e}\npage:\n{}", self.page_text().await)
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// Clicks as a person does (WebDriver refuses elements that are hidden or covered). A click on a link that
    /// leads to another view returns once the portal has drawn that view, so the next step never types into the
    /// view being replaced.
    pub async fn click(&self, css: &str) {
        let leaves = self
            .script(
                "const link = document.querySelector(arguments[0])?.closest('a[href]');
                 const href = link ? link.getAttribute('href') : null;
                 return !!href && href.startsWith('#/') && href !== location.hash;",
                json!([css]),
            )
            .await
            == json!(true);
        if leaves {
            self.mark_view().await;
        }
        let deadline = Instant::now() + WAIT;
        loop {
            // Found again on each try: a view drawn meanwhile replaces the element.
            let element = self.find(css).await;
            match self
                .command("POST", &format!("/element/{element}/click"), json!({}))
                .await
            {
                Ok(_) => break,
                Err(e) => assert!(
                    Instant::now() < deadline,
                    "cannot click `{css}`: {e}\npage:\n{}",
                    self.page_text().await
                ),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if leaves {
            self.wait_for_new_view(css).await;
        } else {
            // A button that redraws the view (a filter's Apply, a revocation) marks it busy as it is clicked.
            self.wait_until_drawn(css).await;
        }
    }

    /// Waits until the portal is not busy drawing a view.
    async fn wait_until_drawn(&self, after: &str) {
        let deadline = Instant::now() + WAIT;
        while self
            .script(
                "const main = document.getElementById('main');
                 return !!main && main.hasAttribute('aria-busy');",
                json!([]),
            )
            .await
            == json!(true)
        {
            assert!(
                Instant::now() < deadline,
                "the portal was still drawing a view long after `{after}`\npage:\n{}",
                self.page_text().await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Marks the view the portal shows now, so `wait_for_new_view` can tell when the next one is drawn.
    async fn mark_view(&self) {
        self.script(
            "const view = document.querySelector('#main > .view');
             if (view) view.dataset.replaced = 'yes';",
            json!([]),
        )
        .await;
    }

    /// Waits until the portal has drawn a view after `mark_view` and is no longer busy drawing another.
    async fn wait_for_new_view(&self, after: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            let drawn = self
                .script(
                    "const main = document.getElementById('main');
                     const view = main && main.querySelector(':scope > .view');
                     return !!view && !view.dataset.replaced && !main.hasAttribute('aria-busy');",
                    json!([]),
                )
                .await;
            if drawn == json!(true) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no new view was drawn after `{after}`\npage:\n{}",
                self.page_text().await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Replaces the text of the field `css` by typing `text`.
    pub async fn type_into(&self, css: &str, text: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            // Found again on each try: a view drawn meanwhile replaces the element.
            let element = self.find(css).await;
            let typed = async {
                self.command("POST", &format!("/element/{element}/clear"), json!({}))
                    .await?;
                self.command(
                    "POST",
                    &format!("/element/{element}/value"),
                    json!({"text": text}),
                )
                .await
            }
            .await;
            match typed {
                Ok(_) => return,
                Err(e) if Instant::now() > deadline => panic!("type into `{css}`: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// The visible text of `css` (an input's value), or `None` when it is not on the page.
    pub async fn text(&self, css: &str) -> Option<String> {
        self.script(
            "const el = document.querySelector(arguments[0]);
             if (!el) return null;
             return ['INPUT', 'TEXTAREA', 'SELECT'].includes(el.tagName) ? el.value : el.innerText;",
            json!([css]),
        )
        .await
        .as_str()
        .map(str::to_owned)
    }

    /// Waits until `css` shows `needle`, and returns its text.
    pub async fn wait_text(&self, css: &str, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(text) = self.text(css).await
                && text.contains(needle)
            {
                return text;
            }
            if Instant::now() > deadline {
                panic!(
                    "`{css}` never showed {needle:?}; it shows {:?}\npage:\n{}",
                    self.text(css).await,
                    self.page_text().await
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn page_text(&self) -> String {
        self.script("return document.body.innerText;", json!([]))
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Saves what the window shows, with `css` scrolled into view, as `target/portal-screenshots/<name>.png`.
    pub async fn screenshot_at(&self, css: &str, name: &str) {
        self.script(
            "document.querySelector(arguments[0]).scrollIntoView({block: 'start'});",
            json!([css]),
        )
        .await;
        self.screenshot(name).await;
    }

    pub async fn screenshot(&self, name: &str) {
        use base64::Engine;
        let png = self
            .command("GET", "/screenshot", json!({}))
            .await
            .expect("screenshot");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        std::fs::write(screenshots_dir().join(format!("{name}.png")), bytes).unwrap();
    }

    pub async fn window(&self, width: u32, height: u32) {
        self.command(
            "POST",
            "/window/rect",
            json!({"width": width, "height": height}),
        )
        .await
        .expect("resize");
    }

    /// Uses the page's "local only" picker to act as `email` with `groups`.
    pub async fn act_as(&self, email: &str, groups: &str) {
        self.type_into("#who-email", email).await;
        self.type_into("#who-groups", groups).await;
        self.mark_view().await;
        self.click("#who-switch").await;
        self.wait_for_new_view("#who-switch").await;
    }

    pub async fn quit(&self) {
        let _ = self.command("DELETE", "", json!({})).await;
    }
}

/// The text of axe-core's `axe.min.js`, fetched once with `npm pack axe-core` into `target/axe-core/` (the npm
/// registry must be reachable the first time). Without `npm`, or without the registry, the test fails naming
/// what is missing: an accessibility check that cannot run must not pass.
pub fn axe_core() -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/axe-core");
    let script = dir.join("package/axe.min.js");
    if !script.is_file() {
        std::fs::create_dir_all(&dir).expect("target/axe-core");
        let npm = find_program_named(
            "npm",
            "the accessibility check needs npm (to fetch axe-core): install Node.js and npm",
        );
        let packed = Command::new(npm)
            .args(["pack", "axe-core", "--silent", "--pack-destination"])
            .arg(&dir)
            .output()
            .expect("run npm pack axe-core");
        assert!(
            packed.status.success(),
            "`npm pack axe-core` failed (is the npm registry reachable?): {}",
            String::from_utf8_lossy(&packed.stderr)
        );
        let tarball = String::from_utf8_lossy(&packed.stdout).trim().to_owned();
        let unpacked = Command::new("tar")
            .args(["xzf", &tarball])
            .current_dir(&dir)
            .status()
            .expect("run tar");
        assert!(unpacked.success(), "unpacking {tarball} failed");
    }
    std::fs::read_to_string(&script).unwrap_or_else(|e| panic!("{}: {e}", script.display()))
}

fn find_program_named(name: &str, why: &str) -> PathBuf {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("`{name}` is not installed: {why}"))
}

/// The real `ticketbound-local` binary on a free port with its own data directory, stopped when dropped.
pub struct LocalServer {
    pub port: u16,
    _process: Process,
    _data: TempDir,
}

/// An API answer: status, `ETag` and JSON body (`Null` when empty).
pub struct ApiAnswer {
    pub status: u16,
    pub etag: Option<String>,
    pub json: Value,
}

impl LocalServer {
    pub fn start() -> Self {
        let port = free_port();
        let data = temp_dir("portal-data");
        let process = Process(
            Command::new(env!("CARGO_BIN_EXE_ticketbound-local"))
                .args(["--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
                .arg(&data.0)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start ticketbound-local"),
        );
        wait_for_port(port, "ticketbound-local");
        Self {
            port,
            _process: process,
            _data: data,
        }
    }

    pub fn portal(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// Calls the API as `who` (`(email, groups)`), with extra `headers` and a JSON body when given.
    pub async fn api(
        &self,
        method: &str,
        path: &str,
        who: (&str, &str),
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> ApiAnswer {
        let mut request = reqwest::Client::new()
            .request(
                method.parse().expect("an HTTP method"),
                format!("http://127.0.0.1:{}{path}", self.port),
            )
            .header("X-Ticketbound-User", who.0)
            .header("X-Ticketbound-Groups", who.1);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("the local server answers");
        let status = response.status().as_u16();
        let etag = response
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let json = response.json().await.unwrap_or(Value::Null);
        ApiAnswer { status, etag, json }
    }
}
