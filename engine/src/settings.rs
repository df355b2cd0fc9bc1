//! A policy's settings file (`<name>.toml` beside `<name>.wasm`).

use crate::limits::LimitOverrides;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What a policy is besides its component: routes, configuration values and limits.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicySettings {
    /// Storefront routes this policy serves, such as `/apply-cart-discount`.
    pub routes: Vec<String>,
    /// Configuration values the policy reads through `host.config`.
    pub config: BTreeMap<String, ConfigValue>,
    /// Overrides of the host's default limits.
    pub limits: LimitOverrides,
}

/// A configuration value; scalars are handed to the policy as text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ConfigValue {
    /// A string.
    String(String),
    /// An integer.
    Integer(i64),
    /// A float.
    Float(f64),
    /// A boolean.
    Boolean(bool),
}

impl ConfigValue {
    /// The value as the policy sees it.
    pub fn to_text(&self) -> String {
        match self {
            ConfigValue::String(s) => s.clone(),
            ConfigValue::Integer(i) => i.to_string(),
            ConfigValue::Float(f) => f.to_string(),
            ConfigValue::Boolean(b) => b.to_string(),
        }
    }
}

impl PolicySettings {
    /// Parses a settings file.
    pub fn from_toml(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }

    /// Content hash of the settings, to tell whether they changed.
    pub fn digest(&self) -> String {
        crate::engine::content_hash(toml::to_string(self).unwrap_or_default().as_bytes())
    }

    /// Configuration as the text key-value pairs the policy reads.
    pub fn config_text(&self) -> BTreeMap<String, String> {
        self.config
            .iter()
            .map(|(k, v)| (k.clone(), v.to_text()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_routes_config_and_limits() {
        let s = PolicySettings::from_toml(
            r#"
            routes = ["/apply-cart-discount"]
            [config]
            threshold = 10000
            name = "Cart"
            "tier.gold" = "15"
            [limits]
            fuel = 1000
            "#,
        )
        .unwrap();
        assert_eq!(s.routes, vec!["/apply-cart-discount"]);
        let c = s.config_text();
        assert_eq!(c["threshold"], "10000");
        assert_eq!(c["tier.gold"], "15");
        assert_eq!(s.limits.fuel, Some(1000));
    }

    #[test]
    fn rejects_unknown_keys() {
        let err = PolicySettings::from_toml("route = [\"/x\"]").unwrap_err();
        assert!(err.to_string().contains("route"), "{err}");
    }
}
