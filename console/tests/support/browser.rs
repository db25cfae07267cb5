//! Debian's chromium, headless, through its chromedriver (WebDriver), with
//! fantoccini.

use super::{until, DEADLINE};
use fantoccini::{Client, ClientBuilder, Locator};
use std::process::Stdio;
use tokio::process::{Child, Command};

pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// A chromedriver process and one browser session, ended when dropped.
pub struct Browser {
    pub client: Client,
    _driver: Child,
    /// chromedriver's process group, which its chromium joins.
    group: Option<u32>,
}

impl Drop for Browser {
    /// However the test ends (a failed assertion too), chromedriver and the
    /// chromium it started go: their process group is killed.
    fn drop(&mut self) {
        if let Some(pgid) = self.group {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pgid}")])
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Browser {
    pub async fn start() -> Browser {
        for bin in [CHROMEDRIVER, CHROMIUM] {
            assert!(
                std::path::Path::new(bin).exists(),
                "{bin} is missing: apt-get install chromium chromium-driver (scripts/lib.sh ensure_deps does)"
            );
        }
        let port = free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start chromedriver");
        let caps = serde_json::json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                         "--disable-gpu", "--window-size=1400,900", "--lang=en-US",
                         "--disable-crash-reporter", "--disable-breakpad"]
            }
        });
        let caps = match caps {
            serde_json::Value::Object(m) => m,
            _ => unreachable!(),
        };
        let url = format!("http://127.0.0.1:{port}");
        // chromedriver is ready once it accepts the session.
        let client = until("chromedriver to accept a session", || {
            let caps = caps.clone();
            let url = url.clone();
            async move {
                ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                    .capabilities(caps)
                    .connect(&url)
                    .await
                    .ok()
            }
        })
        .await;
        let group = driver.id();
        Browser {
            client,
            _driver: driver,
            group,
        }
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    /// Waits for an element to exist.
    pub async fn wait_for(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(DEADLINE)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("waiting for {css}: {e}"))
    }

    /// Waits until the element's text contains `text`; returns the text.
    pub async fn wait_for_text(&self, css: &str, text: &str) -> String {
        until(&format!("{css} to contain {text:?}"), || async {
            let t = self
                .client
                .find(Locator::Css(css))
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            t.contains(text).then_some(t)
        })
        .await
    }

    /// The element's text. Live parts of a page are replaced when events
    /// come, so each helper finds its element again until the action works.
    pub async fn text(&self, css: &str) -> String {
        until(&format!("the text of {css}"), || async {
            self.client
                .find(Locator::Css(css))
                .await
                .ok()?
                .text()
                .await
                .ok()
        })
        .await
    }

    pub async fn fill(&self, css: &str, value: &str) {
        until(&format!("{css} to hold {value:?}"), || async {
            let e = self.client.find(Locator::Css(css)).await.ok()?;
            e.clear().await.ok()?;
            e.send_keys(value).await.ok()?;
            (e.prop("value").await.ok()?? == value).then_some(())
        })
        .await
    }

    pub async fn click(&self, css: &str) {
        until(&format!("a click on {css}"), || async {
            self.client
                .find(Locator::Css(css))
                .await
                .ok()?
                .click()
                .await
                .ok()
        })
        .await
    }

    pub async fn sign_in(&self, base: &str, role: &str, password: &str) {
        self.goto(&format!("{base}/login")).await;
        self.fill("input[name=role]", role).await;
        self.fill("input[name=password]", password).await;
        self.click("#sign-in").await;
    }

    /// Saves a screenshot when AAS_CONSOLE_SCREENSHOTS names a directory.
    pub async fn screenshot(&self, name: &str) {
        if let Some(dir) = std::env::var_os("AAS_CONSOLE_SCREENSHOTS") {
            let png = self.client.screenshot().await.unwrap();
            std::fs::write(std::path::Path::new(&dir).join(name), png).unwrap();
        }
    }

    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}
