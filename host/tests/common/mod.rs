//! Test harness: the real `discount-host` binary, the Stripe emulator over HTTP,
//! and the real compiled policies from `target/policies`.
#![allow(dead_code)]

use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use stripe_checkout::{ClientConfig, StripeClient};
use stripe_emulator::{Emulator, RunningEmulator};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Where `scripts/build-policies.sh` puts the compiled policies.
pub fn built_policies() -> PathBuf {
    let dir = std::env::var_os("POLICY_DIST")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/policies"));
    assert!(
        dir.join("cart-threshold.wasm").exists(),
        "compiled policies missing in {}: run scripts/build-policies.sh first",
        dir.display()
    );
    dir
}

/// Where `scripts/build-test-policies.sh` puts the test components (hostile, broken).
pub fn test_policies() -> PathBuf {
    let dir = workspace().join("target/test-policies");
    assert!(
        dir.join("hostile.wasm").exists(),
        "test components missing in {}: run scripts/build-test-policies.sh first",
        dir.display()
    );
    dir
}

/// A fresh policy directory holding copies of the named built policies.
pub fn policy_dir(names: &[&str]) -> tempdir::TempDir {
    let dir = tempdir::TempDir::new();
    for name in names {
        copy_policy(name, dir.path());
    }
    dir
}

/// Copies one built policy (component and settings) into a directory.
pub fn copy_policy(name: &str, to: &Path) {
    let from = built_policies();
    std::fs::copy(
        from.join(format!("{name}.wasm")),
        to.join(format!("{name}.wasm")),
    )
    .unwrap();
    std::fs::copy(
        from.join(format!("{name}.toml")),
        to.join(format!("{name}.toml")),
    )
    .unwrap();
}

/// Installs policy `name` in `dir`: its settings first, then its component, so the
/// component's arrival is what completes a new version for a watching host.
pub fn install_policy(dir: &Path, name: &str, component: &[u8], settings: &str) {
    std::fs::write(dir.join(format!("{name}.toml")), settings).unwrap();
    std::fs::write(dir.join(format!("{name}.wasm")), component).unwrap();
}

/// Minimal temporary directories, removed on drop.
pub mod tempdir {
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicU64, Ordering};

    static NEXT: AtomicU64 = AtomicU64::new(0);

    /// A directory removed on drop.
    pub struct TempDir(PathBuf);

    impl TempDir {
        /// Creates a unique directory under the system temp dir.
        pub fn new() -> Self {
            let path = std::env::temp_dir().join(format!(
                "discount-host-test-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&path).unwrap();
            TempDir(path)
        }

        /// Its path.
        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            std::fs::remove_dir_all(&self.0).ok();
        }
    }
}

/// A running Stripe emulator and a client for it.
pub struct Stripe {
    pub running: RunningEmulator,
    pub client: StripeClient,
    pub http: reqwest::Client,
}

impl Stripe {
    /// Starts an emulator on a free loopback port.
    pub async fn start() -> Stripe {
        let running = Emulator::new().start("127.0.0.1:0").await.unwrap();
        let mut config = ClientConfig::new("sk_test_harness");
        config.api_base = running.base_url();
        config.initial_network_retry_delay = Duration::from_millis(10);
        config.max_network_retry_delay = Duration::from_millis(50);
        Stripe {
            client: StripeClient::new(config).unwrap(),
            running,
            http: reqwest::Client::new(),
        }
    }

    /// The emulator's base URL.
    pub fn url(&self) -> String {
        self.running.base_url()
    }

    /// Creates a customer with metadata; returns its id.
    pub async fn customer(&self, metadata: Value) -> String {
        self.client
            .create_customer(
                &json!({"email": "c@example.com", "metadata": metadata}),
                None,
                None,
            )
            .await
            .unwrap()
            .body
            .id
    }

    /// Creates an open session that allows server-side discount updates.
    pub async fn session(
        &self,
        currency: &str,
        items: &[(i64, u64)],
        customer: Option<&str>,
    ) -> String {
        let line_items: Vec<Value> = items
            .iter()
            .map(|(unit, qty)| json!({"quantity": qty, "price_data": {"currency": currency, "unit_amount": unit, "product_data": {"name": "Item"}}}))
            .collect();
        let mut params = json!({
            "mode": "payment", "ui_mode": "custom", "return_url": "https://example.com/r",
            "permissions": {"update_discounts": "server_only"},
            "line_items": line_items,
        });
        if let Some(c) = customer {
            params["customer"] = json!(c);
        }
        self.client
            .create_checkout_session(&params, None, None)
            .await
            .unwrap()
            .body
            .id
    }

    /// The session as Stripe returns it, with discounts' coupons expanded.
    pub async fn get_session(&self, id: &str) -> Value {
        self.client
            .get(
                &format!("/v1/checkout/sessions/{id}"),
                &[("expand[]".into(), "discounts.coupon".into())],
                None,
            )
            .await
            .unwrap()
            .body
    }

    /// Every `/v1` request the emulator has seen.
    pub async fn requests(&self) -> Vec<Value> {
        self.http
            .get(format!("{}/_emulator/requests", self.url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Discount updates (POSTs to a session) the emulator has seen for one session.
    pub async fn updates_of(&self, session: &str) -> Vec<Value> {
        let path = format!("/v1/checkout/sessions/{session}");
        self.requests()
            .await
            .into_iter()
            .filter(|r| r["method"] == "POST" && r["path"] == path.as_str())
            .collect()
    }

    /// Arms a fault (see the emulator's control API).
    pub async fn fault(&self, spec: Value) {
        let r = self
            .http
            .post(format!("{}/_emulator/faults", self.url()))
            .json(&spec)
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_success(),
            "arming fault: {}",
            r.text().await.unwrap()
        );
    }
}

/// The admin token every harness host is started with; `Host::http` sends it.
pub const ADMIN_TOKEN: &str = "harness-admin-token";

/// A running `discount-host` process.
pub struct Host {
    child: Child,
    pub url: String,
    pub http: reqwest::Client,
    /// Everything the host has written to stderr (its logs), also echoed to ours.
    logs: Arc<Mutex<String>>,
    /// Everything the host has written to stdout (its ready line and what follows).
    stdout: Arc<Mutex<String>>,
}

impl Drop for Host {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// A storefront response: status and JSON body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl Host {
    /// Starts the host against a Stripe API base, serving a policy directory.
    /// The admin API is on with [`ADMIN_TOKEN`], which `http` sends on every request.
    pub fn start(stripe_url: &str, policy_dir: &Path, extra_config: &str) -> Host {
        Host::start_env(stripe_url, policy_dir, extra_config, &[])
    }

    /// Like [`Host::start`], with extra environment variables; an empty value removes one.
    pub fn start_env(
        stripe_url: &str,
        policy_dir: &Path,
        extra_config: &str,
        env: &[(&str, &str)],
    ) -> Host {
        let cache = workspace().join("target/test-policy-cache");
        let config_dir = tempdir::TempDir::new();
        let config_path = config_dir.path().join("host.toml");
        std::fs::write(&config_path, extra_config).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_discount-host"));
        command
            .env("STRIPE_SECRET_KEY", "sk_test_host")
            .env("DISCOUNT_HOST_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("STRIPE_API_BASE", stripe_url)
            .env("DISCOUNT_HOST_LISTEN", "127.0.0.1:0")
            .env("DISCOUNT_HOST_POLICY_DIR", policy_dir)
            .env("DISCOUNT_HOST_CACHE_DIR", cache)
            .env("DISCOUNT_HOST_CONFIG", &config_path)
            .env("RUST_LOG", "info,wasmtime=warn,cranelift=warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, value) in env {
            if value.is_empty() {
                command.env_remove(key);
            } else {
                command.env(key, value);
            }
        }
        let mut child = command.spawn().expect("starting discount-host");
        let logs = capture_stderr(&mut child);
        let stdout = Arc::new(Mutex::new(String::new()));
        let url = read_ready_line(&mut child, stdout.clone());
        Host {
            child,
            url,
            stdout,
            http: admin_client(),
            logs,
        }
    }

    /// The host process id (to send it signals).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits up to `timeout` for the process to exit; its exit status, if it did.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let end = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < end {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// The host's log output so far.
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    /// Everything the host has printed on stdout so far.
    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    /// Waits (up to 10 s) until the host's logs contain `needle`; returns the logs.
    pub async fn wait_for_log(&self, needle: &str) -> String {
        for _ in 0..200 {
            let logs = self.logs();
            if logs.contains(needle) {
                return logs;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.logs()
    }

    /// POSTs a JSON body to a storefront route.
    pub async fn post(&self, route: &str, body: Value) -> Answer {
        self.post_raw(route, body.to_string().into_bytes()).await
    }

    /// POSTs raw bytes to a storefront route.
    pub async fn post_raw(&self, route: &str, body: Vec<u8>) -> Answer {
        let r = self
            .http
            .post(format!("{}{route}", self.url))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        let body = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("non-JSON answer {status}: {text}"));
        Answer { status, body }
    }

    /// GETs a JSON document from the host.
    pub async fn get_json(&self, path: &str) -> Value {
        serde_json::from_str(&self.get_text(path).await).unwrap()
    }

    /// GETs a text document from the host.
    pub async fn get_text(&self, path: &str) -> String {
        self.http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// `POST /admin/reload`: expects 200 and returns the reload report.
    pub async fn reload(&self) -> Value {
        let r = self
            .http
            .post(format!("{}/admin/reload", self.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }
}

/// An HTTP client that sends `Authorization: Bearer ADMIN_TOKEN` on every request.
pub fn admin_client() -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        reqwest::header::HeaderValue::from_str(&format!("Bearer {ADMIN_TOKEN}")).unwrap(),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap()
}

/// Collects the child's stderr into a buffer, echoing each line to this process's stderr.
fn capture_stderr(child: &mut Child) -> Arc<Mutex<String>> {
    let logs = Arc::new(Mutex::new(String::new()));
    let stderr = child.stderr.take().unwrap();
    let sink = logs.clone();
    std::thread::spawn(move || {
        use std::io::Write;
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            writeln!(std::io::stderr(), "{line}").ok();
            let mut logs = sink.lock().unwrap_or_else(|p| p.into_inner());
            logs.push_str(&line);
            logs.push('\n');
        }
    });
    logs
}

/// Reads the host's stdout until its ready line; returns the listen URL.
fn read_ready_line(child: &mut Child, printed: Arc<Mutex<String>>) -> String {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let mut sent = false;
        while let Some(Ok(line)) = lines.next() {
            if let Ok(mut printed) = printed.lock() {
                printed.push_str(&line);
                printed.push('\n');
            }
            if !sent {
                if let Some(rest) = line.strip_prefix("discount-host ready: listen=") {
                    let url = rest
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_string();
                    tx.send(url).ok();
                    sent = true;
                }
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("discount-host did not report ready within 60 s")
}
