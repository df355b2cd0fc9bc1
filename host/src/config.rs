//! Host configuration: a TOML file plus environment variables. The Stripe secret
//! key comes only from the environment.

use crate::compile::CompileProcess;
use policy_engine::{Caps, Limits, PoolSettings};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The environment variable that holds the Stripe secret key.
pub const SECRET_KEY_ENV: &str = "STRIPE_SECRET_KEY";

/// The environment variable that holds the admin API's bearer token; unset = admin API off.
pub const ADMIN_TOKEN_ENV: &str = "DISCOUNT_HOST_ADMIN_TOKEN";

/// The whole host configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HostConfig {
    /// Address the storefront endpoints listen on.
    pub listen: SocketAddr,
    /// Directory of policies: `<name>.wasm` plus `<name>.toml` settings.
    pub policy_dir: PathBuf,
    /// Directory of compiled artifacts; none disables the cache.
    pub cache_dir: Option<PathBuf>,
    /// Size cap of `cache_dir`, in bytes (0: no cap); least recently used files go first.
    pub cache_max_bytes: u64,
    /// Largest storefront request body, in bytes.
    pub max_body_bytes: usize,
    /// Longest a storefront request may take, Stripe retries included, in milliseconds.
    pub request_deadline_ms: u64,
    /// Threads serving the storefront, each a single-threaded runtime; 0: one per CPU.
    pub serving_threads: usize,
    /// Longest a client may take to send a request's headers, in milliseconds; then the
    /// connection is closed.
    pub header_read_timeout_ms: u64,
    /// Longest a client may take to send a request's body, in milliseconds (408 after).
    pub body_read_timeout_ms: u64,
    /// Longest a shutdown waits for in-flight requests, in milliseconds; connections still
    /// open then are closed.
    pub shutdown_grace_ms: u64,
    /// How the host reaches Stripe.
    pub stripe: StripeSettings,
    /// The embedded Stripe emulator, used when no secret key is set.
    pub emulator: EmulatorSettings,
    /// Default sandbox limits of every policy.
    pub limits: Limits,
    /// Sizing of the policy instance pool (see docs/performance.md).
    pub pool: PoolSettings,
    /// Merchant-wide caps every decision must respect.
    pub caps: Caps,
    /// The decision audit log.
    pub audit: AuditSettings,
    /// The host's own log.
    pub log: LogSettings,
    /// How policy changes are picked up without a restart.
    pub reload: ReloadSettings,
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            listen: ([127, 0, 0, 1], 4242).into(),
            policy_dir: PathBuf::from("target/policies"),
            cache_dir: Some(PathBuf::from("target/policy-cache")),
            cache_max_bytes: policy_engine::cache::DEFAULT_CACHE_MAX_BYTES,
            max_body_bytes: 16 * 1024,
            request_deadline_ms: 8_000,
            serving_threads: 0,
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 10_000,
            shutdown_grace_ms: 20_000,
            stripe: StripeSettings::default(),
            emulator: EmulatorSettings::default(),
            limits: Limits::default(),
            pool: PoolSettings::default(),
            caps: Caps::default(),
            audit: AuditSettings::default(),
            log: LogSettings::default(),
            reload: ReloadSettings::default(),
        }
    }
}

/// `[reload]`: hot reload of the policy directory (see docs/hot-reload.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReloadSettings {
    /// Watch the directory for file system events.
    pub watch: bool,
    /// Rescan the directory this often, in milliseconds; 0 polls only when
    /// watching is off or cannot start (then every 2 s).
    pub poll_interval_ms: u64,
    /// How long file system events are gathered before a reload, in milliseconds.
    pub debounce_ms: u64,
    /// How long a changed file must stay unchanged before it is loaded, in milliseconds.
    pub settle_ms: u64,
    /// Which new components compile in a compile process: `large`, `all` or `none`.
    pub compile_process: CompileProcess,
    /// How long a compile process may run before it is stopped, in milliseconds.
    pub compile_timeout_ms: u64,
}

impl Default for ReloadSettings {
    fn default() -> Self {
        ReloadSettings {
            watch: true,
            poll_interval_ms: 0,
            debounce_ms: 25,
            settle_ms: 100,
            compile_process: CompileProcess::Large,
            compile_timeout_ms: 600_000,
        }
    }
}

/// Where audit records go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditSink {
    /// JSON Lines on standard output (collected per replica by the platform).
    Stdout,
    /// JSON Lines appended to `path`.
    File,
    /// No audit log (recent decisions are still kept for the dashboard).
    Off,
}

/// `[audit]`: the decision audit log.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditSettings {
    /// `stdout`, `file` or `off`.
    pub sink: AuditSink,
    /// The file, for `sink = "file"`.
    pub path: Option<PathBuf>,
    /// Mask customer email and address (default true).
    pub mask_customer: bool,
    /// Recent records kept in memory for the dashboard.
    pub recent: usize,
}

impl Default for AuditSettings {
    fn default() -> Self {
        AuditSettings {
            sink: AuditSink::Stdout,
            path: None,
            mask_customer: true,
            recent: 200,
        }
    }
}

/// Format of the host's own log on standard error.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `[log]`: the host's own log (`DISCOUNT_HOST_LOG_FORMAT` overrides `format`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// `text` or `json`.
    pub format: LogFormat,
}

/// Stripe API settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StripeSettings {
    /// API base URL.
    pub api_base: String,
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// Base of the exponential backoff, in milliseconds.
    pub initial_retry_delay_ms: u64,
    /// Cap of the backoff, in milliseconds.
    pub max_retry_delay_ms: u64,
    /// Connect timeout, in milliseconds.
    pub connect_timeout_ms: u64,
    /// Timeout of one attempt, in milliseconds.
    pub request_timeout_ms: u64,
}

impl Default for StripeSettings {
    fn default() -> Self {
        StripeSettings {
            api_base: "https://api.stripe.com".into(),
            max_retries: 2,
            initial_retry_delay_ms: 500,
            max_retry_delay_ms: 5_000,
            connect_timeout_ms: 5_000,
            request_timeout_ms: 10_000,
        }
    }
}

/// Embedded emulator settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmulatorSettings {
    /// Where the emulator listens (12111, like stripe-mock).
    pub listen: SocketAddr,
    /// Create demo customers and sessions at start.
    pub seed_demo: bool,
}

impl Default for EmulatorSettings {
    fn default() -> Self {
        EmulatorSettings {
            listen: ([127, 0, 0, 1], 12111).into(),
            seed_demo: true,
        }
    }
}

impl HostConfig {
    /// Reads a TOML file.
    pub fn from_file(path: &std::path::Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        let config: Self = toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("parsing {}: {e}", path.display()))?;
        config
            .limits
            .check()
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        Ok(config)
    }

    /// How long a client may take to send a request body.
    pub fn body_read_timeout(&self) -> Duration {
        Duration::from_millis(self.body_read_timeout_ms)
    }

    /// The storefront request deadline.
    pub fn request_deadline(&self) -> Duration {
        Duration::from_millis(self.request_deadline_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_configuration_is_the_defaults_but_its_caps() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../host.example.toml");
        let mut example = HostConfig::from_file(&path).unwrap();
        assert_eq!(example.caps.max_percent_off, Some(50.0));
        assert_eq!(example.caps.max_amount_off.get("usd"), Some(&5000));
        example.caps = Caps::default();
        let as_json = |c: &HostConfig| serde_json::to_value(c).unwrap();
        assert_eq!(as_json(&example), as_json(&HostConfig::default()));
    }
}
