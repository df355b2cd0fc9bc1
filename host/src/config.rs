//! Host configuration: a TOML file plus environment variables. The Stripe secret
//! key comes only from the environment.

use policy_engine::{Caps, Limits};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The environment variable that holds the Stripe secret key.
pub const SECRET_KEY_ENV: &str = "STRIPE_SECRET_KEY";

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
    /// Largest storefront request body, in bytes.
    pub max_body_bytes: usize,
    /// Longest a storefront request may take, Stripe retries included, in milliseconds.
    pub request_deadline_ms: u64,
    /// How the host reaches Stripe.
    pub stripe: StripeSettings,
    /// The embedded Stripe emulator, used when no secret key is set.
    pub emulator: EmulatorSettings,
    /// Default sandbox limits of every policy.
    pub limits: Limits,
    /// Merchant-wide caps every decision must respect.
    pub caps: Caps,
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            listen: ([127, 0, 0, 1], 4242).into(),
            policy_dir: PathBuf::from("target/policies"),
            cache_dir: Some(PathBuf::from("target/policy-cache")),
            max_body_bytes: 16 * 1024,
            request_deadline_ms: 8_000,
            stripe: StripeSettings::default(),
            emulator: EmulatorSettings::default(),
            limits: Limits::default(),
            caps: Caps::default(),
        }
    }
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
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("parsing {}: {e}", path.display()))
    }

    /// The storefront request deadline.
    pub fn request_deadline(&self) -> Duration {
        Duration::from_millis(self.request_deadline_ms)
    }
}
