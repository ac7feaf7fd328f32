//! The web console (`/`) in a real headless Chromium, driven over WebDriver by a chromedriver
//! this test starts on a free loopback port. Chromium and chromedriver are required: without
//! them the tests fail with a message saying what to install. Everything is asserted through
//! the DOM, polled with deadlines.
//!
//! With `RADACCTD_SCREENSHOTS=docs` the SQLite run writes a PNG of each page into `docs/`.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use radacctd::radius::dict::{self, status};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::net::UdpSocket;

use crate::both_backends;
use crate::console::{add_user, login};
use crate::harness::{spawn_app, spawn_app_with, Backend, Nas, TestApp, ADMIN_PASSWORD, SECRET};

both_backends!(an_operator_works_the_whole_console_in_a_browser);

/// How long the page may take to show what a step expects.
const STEP: Duration = Duration::from_secs(10);

/// A chromedriver (and the Chromium it starts) in a process group of its own, killed on drop.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let binary =
            std::env::var("RADACCTD_CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        let child = Command::new(&binary)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {binary} ({e}): the browser tests need Chromium and chromedriver \
                     (Debian: apt-get install chromium chromium-driver; .ci/run installs them)"
                )
            });
        let driver = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen on 127.0.0.1:{port} within 15 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        driver
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The whole group: chromedriver and the browser processes it started.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A headless Chromium session.
struct Browser {
    client: Client,
    _driver: Driver,
    /// Where screenshots go, when asked for.
    screenshots: Option<PathBuf>,
}

impl Browser {
    async fn start(screenshots: bool) -> Self {
        let driver = Driver::start();
        let chromium =
            std::env::var("RADACCTD_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        assert!(
            std::path::Path::new(&chromium).exists(),
            "{chromium} is missing: the browser tests need Chromium (Debian: apt-get install chromium)"
        );
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--window-size=1360,900", "--lang=en-GB", "--no-first-run",
                    "--disable-extensions", "--disable-background-networking",
                ],
            }),
        );
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", driver.port))
            .await
            .unwrap_or_else(|e| panic!("chromedriver cannot start Chromium: {e}"));
        let screenshots = std::env::var("RADACCTD_SCREENSHOTS")
            .ok()
            .filter(|_| screenshots)
            .map(|dir| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(dir));
        Self {
            client,
            _driver: driver,
            screenshots,
        }
    }

    async fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no element {css}: {e}"))
    }

    async fn click(&self, css: &str) {
        self.find(css)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("cannot click {css}: {e}"));
    }

    async fn fill(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        e.clear()
            .await
            .unwrap_or_else(|e| panic!("clear {css}: {e}"));
        e.send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("type into {css}: {e}"));
    }

    /// The visible text of the first element matching `css` ("" while there is none).
    async fn text(&self, css: &str) -> String {
        match self.client.find(Locator::Css(css)).await {
            Ok(e) => e.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    async fn count(&self, css: &str) -> usize {
        self.client
            .find_all(Locator::Css(css))
            .await
            .map(|v| v.len())
            .unwrap_or(0)
    }

    /// Waits until the text of `css` satisfies `ok`; returns it.
    async fn wait_text(&self, css: &str, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + STEP;
        loop {
            let text = self.text(css).await;
            if ok(&text) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "{css}: expected {what} within {STEP:?}, the page shows {text:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn wait_eq(&self, css: &str, want: &str) {
        self.wait_text(css, &format!("{want:?}"), |t| t == want)
            .await;
    }

    async fn wait_count(&self, css: &str, want: usize) {
        let deadline = Instant::now() + STEP;
        loop {
            let n = self.count(css).await;
            if n == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{css}: expected {want} elements within {STEP:?}, found {n}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn js(&self, script: &str) -> Value {
        self.client
            .execute(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("{script}: {e}"))
    }

    async fn screenshot(&self, name: &str) {
        if let Some(dir) = &self.screenshots {
            // Let the fonts and the chart settle for a picture (not for an assertion).
            tokio::time::sleep(Duration::from_millis(300)).await;
            let png = self.client.screenshot().await.expect("screenshot");
            std::fs::create_dir_all(dir).expect("screenshot dir");
            std::fs::write(dir.join(format!("web-{name}.png")), png).expect("write screenshot");
        }
    }
}

/// A NAS on 127.0.0.1 that answers one Disconnect-Request with a Disconnect-ACK.
async fn acking_nas() -> (u16, tokio::task::JoinHandle<Option<Vec<u8>>>) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = socket.local_addr().unwrap().port();
    let handle = tokio::spawn(async move {
        let mut buf = [0u8; 4096];
        let (n, from) = tokio::time::timeout(Duration::from_secs(120), socket.recv_from(&mut buf))
            .await
            .ok()?
            .ok()?;
        let request = buf[..n].to_vec();
        let req = radius::core::packet::Packet::decode(&request, SECRET.as_bytes()).ok()?;
        let ack = req.make_response_packet(radius::core::code::Code::DisconnectACK);
        socket.send_to(&ack.encode().ok()?, from).await.ok()?;
        Some(request)
    });
    (port, handle)
}

async fn gql_status(app: &TestApp, token: &str) -> StatusCode {
    reqwest::Client::new()
        .post(app.url("/graphql"))
        .header("Authtoken", token)
        .json(&json!({"query": "{ onlineCountsByNas { online } }"}))
        .send()
        .await
        .unwrap()
        .status()
}

/// A packet of subscriber `i` (sub01 ... sub27, on two NASes).
fn subscriber(nas: &Nas, status_type: u32, i: u32) -> radacctd::radius::builder::Request {
    nas.request(status_type)
        .string(dict::USER_NAME, &format!("sub{i:02}"))
        .string(dict::ACCT_SESSION_ID, &format!("s{i:02}"))
        .ipv4(dict::NAS_IP_ADDRESS, [192, 0, 2, 1 + (i % 2) as u8].into())
        .string(dict::NAS_PORT_ID, &format!("ge-0/0/{i}"))
        .u32(dict::NAS_PORT_TYPE, 15)
        .string(dict::CALLING_STATION_ID, &format!("02-00-00-00-00-{i:02}"))
        .ipv4(dict::FRAMED_IP_ADDRESS, [100, 64, 0, i as u8].into())
}

/// 27 subscribers online on two NASes, and alice with three closed sessions and one open.
async fn seed(app: &TestApp, now: u32) {
    let nas = app.nas();
    for i in 1..=27u32 {
        nas.send(
            subscriber(&nas, status::START, i)
                .string(dict::CONNECT_INFO, "1000BASE-T")
                .u32(dict::EVENT_TIMESTAMP, now - 4000 + i * 60),
        )
        .await;
    }
    for (k, (input, output)) in [
        (5_000_000u32, 40_000_000u32),
        (1_200_000, 9_000_000),
        (800_000, 2_500_000),
    ]
    .into_iter()
    .enumerate()
    {
        let k = k as u32;
        nas.send(
            nas.request(status::STOP)
                .string(dict::USER_NAME, "alice")
                .string(dict::ACCT_SESSION_ID, &format!("alice-{k}"))
                .ipv4(dict::NAS_IP_ADDRESS, [192, 0, 2, 1].into())
                .ipv4(dict::FRAMED_IP_ADDRESS, [100, 64, 1, 10 + k as u8].into())
                .u32(dict::ACCT_SESSION_TIME, 1800)
                .u32(dict::ACCT_INPUT_OCTETS, input)
                .u32(dict::ACCT_OUTPUT_OCTETS, output)
                .u32(dict::ACCT_TERMINATE_CAUSE, 1)
                .u32(dict::EVENT_TIMESTAMP, now - 86_000 + k * 7200),
        )
        .await;
    }
    nas.send(
        nas.request(status::START)
            .string(dict::USER_NAME, "alice")
            .string(dict::ACCT_SESSION_ID, "alice-now")
            .ipv4(dict::NAS_IP_ADDRESS, [192, 0, 2, 2].into())
            .ipv4(dict::FRAMED_IP_ADDRESS, [100, 64, 1, 20].into())
            .u32(dict::EVENT_TIMESTAMP, now - 600),
    )
    .await;
}

async fn an_operator_works_the_whole_console_in_a_browser(backend: Backend) {
    let started = Instant::now();
    let (coa_port, nas_task) = acking_nas().await;
    let app = spawn_app_with(backend, |c| {
        for client in &mut c.radius.clients {
            client.coa_port = coa_port;
        }
    })
    .await;
    let now = chrono::Utc::now().timestamp() as u32;
    seed(&app, now).await;
    // Two web sessions of an operator, for the web-sessions page.
    add_user(&app, "oper", "operator", "oper-password").await;
    let oper1 = login(&app, "oper", "oper-password").await;
    let oper2 = login(&app, "oper", "oper-password").await;

    let b = Browser::start(backend == Backend::Sqlite).await;
    b.client
        .goto(&app.url("/"))
        .await
        .expect("open the console");

    // Login: a wrong password first shows an error.
    b.wait_eq("#login-title", "radacctd console").await;
    b.fill("#login-user", "admin").await;
    b.fill("#login-password", "not-the-password").await;
    b.click("#login-submit").await;
    b.wait_eq("#login-error", "Wrong user name or password.")
        .await;
    b.screenshot("login").await;
    assert_eq!(b.js("return sessionStorage.length").await, json!(0));
    b.fill("#login-password", ADMIN_PASSWORD).await;
    b.click("#login-submit").await;

    // Overview: counts per NAS, then live over the subscription.
    b.wait_eq("#overview-total", "28").await;
    b.wait_eq("#live", "live").await;
    b.wait_eq("#whoami", "admin (admin)").await;
    b.wait_eq("tr[data-nas='192.0.2.1'] td:nth-child(2)", "13")
        .await;
    b.wait_eq("tr[data-nas='192.0.2.2'] td:nth-child(2)", "15")
        .await;
    assert_eq!(b.count("tr[data-nas='127.0.0.1']").await, 0);
    b.js("window.__sameDocument = 'yes'; return null").await;
    // No NAS-IP-Address: the session's NAS is the packet's source, 127.0.0.1 (the CoA client).
    let nas = app.nas();
    nas.send(
        nas.request(status::START)
            .string(dict::USER_NAME, "victim")
            .string(dict::ACCT_SESSION_ID, "dc1")
            .string(dict::NAS_PORT_ID, "wlan0")
            .u32(dict::NAS_PORT_TYPE, 19)
            .string(dict::CALLING_STATION_ID, "02-00-00-00-00-99")
            .ipv4(dict::FRAMED_IP_ADDRESS, [100, 64, 9, 9].into()),
    )
    .await;
    b.wait_eq("tr[data-nas='127.0.0.1'] td:nth-child(2)", "1")
        .await;
    b.wait_eq("#overview-total", "29").await;
    b.screenshot("overview").await;

    // Online sessions: pages of 25 through the cursors, then the filters.
    b.click("a[data-page='sessions']").await;
    b.wait_count("#sessions-rows tr", 25).await;
    b.wait_eq("#sessions-page", "Page 1").await;
    b.wait_eq("#sessions-table th.admin-only", "Action").await;
    // Oldest first: sub01 starts the first page.
    b.wait_eq("#sessions-rows tr:first-child td:nth-child(2)", "sub01")
        .await;
    // Interim updates change their rows in place.
    for (i, input, output) in [
        (1, 123_456_789u32, 987_654_321u32),
        (2, 52_000_000, 310_000_000),
    ] {
        nas.send(
            subscriber(&nas, status::INTERIM_UPDATE, i)
                .u32(dict::ACCT_SESSION_TIME, 3600)
                .u32(dict::ACCT_INPUT_OCTETS, input)
                .u32(dict::ACCT_OUTPUT_OCTETS, output),
        )
        .await;
    }
    b.wait_eq("#sessions-rows tr:first-child td:nth-child(11)", "118 MiB")
        .await;
    b.wait_eq("#sessions-rows tr:first-child td:nth-child(12)", "942 MiB")
        .await;
    b.wait_eq("#sessions-rows tr:nth-child(2) td:nth-child(12)", "296 MiB")
        .await;
    b.screenshot("online-sessions").await;
    b.click("#sessions-next").await;
    b.wait_eq("#sessions-page", "Page 2").await;
    b.wait_count("#sessions-rows tr", 4).await;
    assert!(b
        .find("#sessions-next")
        .await
        .attr("disabled")
        .await
        .unwrap()
        .is_some());
    b.click("#sessions-prev").await;
    b.wait_eq("#sessions-page", "Page 1").await;
    b.wait_count("#sessions-rows tr", 25).await;

    b.fill("#filter-user", "sub1").await;
    b.click("#filter-apply").await;
    b.wait_count("#sessions-rows tr", 10).await;
    b.fill("#filter-user", "").await;
    b.find("#filter-nas")
        .await
        .select_by_value("127.0.0.1")
        .await
        .expect("the NAS filter lists 127.0.0.1");
    b.click("#filter-apply").await;
    b.wait_count("#sessions-rows tr", 1).await;
    b.wait_eq("#sessions-rows tr td:nth-child(3)", "dc1").await;
    b.find("#filter-nas")
        .await
        .select_by_value("")
        .await
        .unwrap();
    b.fill("#filter-ip", "100.64.0.7").await;
    b.click("#filter-apply").await;
    b.wait_eq("#sessions-rows tr td:nth-child(2)", "sub07")
        .await;
    b.wait_count("#sessions-rows tr", 1).await;
    b.fill("#filter-ip", "not-an-ip").await;
    b.click("#filter-apply").await;
    b.wait_eq("#sessions-error", "framedIp must be an IP address")
        .await;
    b.fill("#filter-ip", "").await;
    b.fill("#filter-user", "vic").await;
    b.click("#filter-apply").await;
    b.wait_eq("#sessions-rows tr td:nth-child(3)", "dc1").await;
    b.wait_count("#sessions-rows tr", 1).await;
    let row = b.text("#sessions-rows tr").await;
    for field in [
        "victim",
        "dc1",
        "127.0.0.1",
        "wlan0",
        "Wireless-802.11",
        "02-00-00-00-00-99",
        "100.64.9.9",
    ] {
        assert!(row.contains(field), "the row shows {field}: {row}");
    }

    // Disconnect: the NAS is asked and acknowledges; the Stop it then sends removes the row.
    b.click("#sessions-rows tr button.danger").await;
    b.wait_text("#confirm-text", "the question", |t| t.contains("dc1"))
        .await;
    b.click("#confirm-ok").await;
    b.wait_eq("#sessions-rows tr .outcome", "ACK").await;
    let request = nas_task
        .await
        .unwrap()
        .expect("the NAS got a Disconnect-Request");
    assert_eq!(request[0], 40, "a Disconnect-Request");
    b.screenshot("disconnect").await;
    nas.send(
        nas.request(status::STOP)
            .string(dict::USER_NAME, "victim")
            .string(dict::ACCT_SESSION_ID, "dc1")
            .string(dict::NAS_PORT_ID, "wlan0")
            .u32(dict::ACCT_TERMINATE_CAUSE, 6),
    )
    .await;
    b.wait_count("#sessions-rows tr", 0).await;
    b.wait_eq("#sessions-empty", "No online session matches.")
        .await;
    assert_eq!(
        b.js("return window.__sameDocument").await,
        json!("yes"),
        "no reload"
    );

    // The user's page: online now, the history of the last 7 days, and its chart.
    b.click("a[data-page='user']").await;
    b.fill("#user-name", "alice").await;
    b.click("#user-show").await;
    b.wait_eq("#user-online-count", "(1)").await;
    b.wait_eq("#user-history-count", "(4)").await;
    b.wait_count("#user-chart canvas", 1).await;
    b.wait_text("#user-chart .u-legend", "the series In and Out", |t| {
        t.contains("In") && t.contains("Out")
    })
    .await;
    b.wait_eq(
        "#user-history-rows tr:first-child td:nth-child(8)",
        "4.8 MiB",
    )
    .await;
    b.screenshot("user").await;

    // Web sessions: the operator's two, closed one by one and then all but current.
    b.click("a[data-page='web-sessions']").await;
    b.wait_count("#ws-rows tr[data-login='oper']", 2).await;
    b.wait_text("#ws-rows", "this page's session marked current", |t| {
        t.contains("(current)")
    })
    .await;
    b.wait_count("#ws-rows tr[data-login='admin'][data-type='websocket']", 1)
        .await;
    b.screenshot("web-sessions").await;
    b.find("#ws-sites-mode")
        .await
        .select_by_value("list")
        .await
        .unwrap();
    b.fill("#ws-sites-list", "nowhere").await;
    b.click("#ws-apply").await;
    b.wait_count("#ws-rows tr", 0).await;
    b.find("#ws-sites-mode")
        .await
        .select_by_value("all")
        .await
        .unwrap();
    b.click("#ws-apply").await;
    b.wait_count("#ws-rows tr[data-login='oper']", 2).await;
    b.click(&format!(
        "#ws-rows tr[data-session='{}'] button.danger",
        oper1.session_id
    ))
    .await;
    b.click("#confirm-ok").await;
    b.wait_count("#ws-rows tr[data-login='oper']", 1).await;
    assert_eq!(
        gql_status(&app, &oper1.token).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(gql_status(&app, &oper2.token).await, StatusCode::OK);
    b.click(&format!(
        "#ws-rows tr[data-session='{}'] button:not(.danger)",
        oper2.session_id
    ))
    .await;
    b.click("#confirm-ok").await;
    b.wait_count("#ws-rows tr[data-login='oper']", 0).await;
    b.wait_text("#ws-notice", "the logout confirmed", |t| {
        t.contains("but the current one")
    })
    .await;
    assert_eq!(
        gql_status(&app, &oper2.token).await,
        StatusCode::UNAUTHORIZED
    );

    // Log out: the token is forgotten by the page and refused by the server.
    let token = b
        .js("return sessionStorage.getItem('radacctd.token')")
        .await;
    let token = token
        .as_str()
        .expect("the token is in sessionStorage")
        .to_owned();
    assert_eq!(gql_status(&app, &token).await, StatusCode::OK);
    b.click("#logout").await;
    b.wait_eq("#login-title", "radacctd console").await;
    assert_eq!(
        b.js("return sessionStorage.getItem('radacctd.token')")
            .await,
        Value::Null
    );
    assert_eq!(gql_status(&app, &token).await, StatusCode::UNAUTHORIZED);

    // An operator reads everything but gets neither Disconnect nor the web-sessions page.
    b.fill("#login-user", "oper").await;
    b.fill("#login-password", "oper-password").await;
    b.click("#login-submit").await;
    b.wait_eq("#whoami", "oper (operator)").await;
    b.click("a[data-page='sessions']").await;
    b.wait_count("#sessions-rows tr", 25).await;
    assert_eq!(b.count("#sessions-rows button").await, 0);
    assert_eq!(b.text("#sessions-table th.admin-only").await, "");
    assert_eq!(b.text("a[data-page='web-sessions']").await, "");
    // An admin closes the operator's sessions elsewhere: the server drops the page's WebSocket,
    // the page finds its token refused and asks to log in again, without a click.
    let admin = login(&app, "admin", ADMIN_PASSWORD).await;
    let r = reqwest::Client::new()
        .post(app.url("/rest/v1/master/logicalroles/ws/sessions"))
        .header("Authtoken", &admin.token)
        .json(&json!({"action": "logout", "domain": "master.domain", "user": "oper"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    b.wait_eq("#login-error", "Your session has ended: log in again.")
        .await;
    assert_eq!(
        b.js("return sessionStorage.getItem('radacctd.token')")
            .await,
        Value::Null
    );

    b.client
        .clone()
        .close()
        .await
        .expect("close the browser session");
    app.stop().await;
    eprintln!(
        "browser scenario ({backend:?}) took {:?}",
        started.elapsed()
    );
}

/// Reads one asset URL of a kind out of the page.
fn asset_url(html: &str, suffix: &str) -> String {
    let end = html
        .find(suffix)
        .unwrap_or_else(|| panic!("the page names {suffix}"));
    let start = html[..end].rfind('"').expect("a quoted URL") + 1;
    html[start..end + suffix.len()].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_pages_are_tokenless_with_strict_headers_and_versioned_assets() {
    let app = spawn_app(Backend::Sqlite).await;
    let http = reqwest::Client::new();
    let page = http.get(app.url("/")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let h = page.headers().clone();
    assert_eq!(h["content-type"], "text/html; charset=utf-8");
    assert_eq!(h["cache-control"], "no-cache");
    assert_eq!(h["x-content-type-options"], "nosniff");
    let csp = h["content-security-policy"].to_str().unwrap().to_owned();
    for directive in [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
        "object-src 'none'",
    ] {
        assert!(csp.contains(directive), "CSP has {directive}: {csp}");
    }
    assert!(!csp.contains("unsafe"), "{csp}");
    let etag = h["etag"].clone();
    let html = page.text().await.unwrap();
    assert!(html.contains("content=\"/webconsole/api\""));
    assert!(
        !html.contains("<script>") && !html.contains("style="),
        "nothing inline"
    );

    // Revalidation: the same page is 304.
    let again = http
        .get(app.url("/"))
        .header("If-None-Match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);

    let js = asset_url(&html, "/app.js");
    let r = http.get(app.url(&js)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert_eq!(
        r.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert!(r.headers().contains_key("content-security-policy"));
    assert!(r.text().await.unwrap().contains("import"));
    let css = asset_url(&html, "/app.css");
    let r = http.get(app.url(&css)).send().await.unwrap();
    assert_eq!(r.headers()["content-type"], "text/css; charset=utf-8");
    let version_dir = &js[..js.len() - "/app.js".len()];
    let license = http
        .get(app.url(&format!("{version_dir}/vendor/uPlot.LICENSE")))
        .send()
        .await
        .unwrap();
    assert_eq!(license.status(), StatusCode::OK);
    assert!(license.text().await.unwrap().contains("MIT License"));

    // Unknown assets, another version, or a path outside the assets: 404.
    for path in [
        format!("{version_dir}/nope.js"),
        format!("{version_dir}/vendor/app.js"),
        format!("{version_dir}/index.html"),
        "/assets/0000000000000000/app.js".to_owned(),
        "/assets/app.js".to_owned(),
        "/index.html".to_owned(),
    ] {
        let r = http.get(app.url(&path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
    }
    app.stop().await;
}
