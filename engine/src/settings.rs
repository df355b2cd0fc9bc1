//! A policy's settings file (`<name>.toml` beside `<name>.wasm`).

use crate::limits::LimitOverrides;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

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
    /// What Stripe expands in the session this policy sees; all of it unless set.
    pub expand: Expand,
    /// Pre-initialise from one warm-up evaluation: instances start from a snapshot
    /// taken after it (see [`crate::preinit`]).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub warm_up: bool,
}

/// A part of the Checkout Session that Stripe returns only when a retrieve expands it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Expansion {
    /// `line_items`: every line item of the session.
    #[serde(rename = "line_items")]
    LineItems,
    /// `customer`: the customer object, with its metadata.
    #[serde(rename = "customer")]
    Customer,
    /// `discounts.coupon`: the coupon of each applied discount.
    #[serde(rename = "discounts.coupon")]
    DiscountsCoupon,
}

impl Expansion {
    /// Every expansion the contract maps.
    pub const ALL: [Expansion; 3] = [
        Expansion::LineItems,
        Expansion::Customer,
        Expansion::DiscountsCoupon,
    ];

    /// The path in Stripe's `expand[]` parameter.
    pub fn path(self) -> &'static str {
        match self {
            Expansion::LineItems => "line_items",
            Expansion::Customer => "customer",
            Expansion::DiscountsCoupon => "discounts.coupon",
        }
    }
}

/// The expansions a policy reads (`expand = [...]` in its settings); by default, all.
///
/// Parts left out cost neither Stripe's nor the sandbox's time: `line-items` is then
/// empty, `customer` is none (`customer-id` stays), and each discount's `coupon` is none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Expand(BTreeSet<Expansion>);

impl Default for Expand {
    fn default() -> Self {
        Expand(Expansion::ALL.into())
    }
}

impl Expand {
    /// Only these expansions.
    pub fn only(expansions: impl IntoIterator<Item = Expansion>) -> Self {
        Expand(expansions.into_iter().collect())
    }

    /// Whether `expansion` is asked for.
    pub fn contains(&self, expansion: Expansion) -> bool {
        self.0.contains(&expansion)
    }

    /// The `expand[]` paths of a retrieve.
    pub fn paths(&self) -> Vec<&'static str> {
        self.0.iter().map(|e| e.path()).collect()
    }
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

/// Paths the host serves itself (and everything under `/admin/`): never a policy's.
pub const HOST_ROUTES: &[&str] = &[
    "/healthz",
    "/readyz",
    "/livez",
    "/metrics",
    "/dashboard",
    "/admin",
];

/// Refuses a route no storefront request could reach: not starting with '/', one of the
/// host's own paths, or with characters a request path carries only percent-encoded.
fn check_route(route: &str) -> Result<(), String> {
    if !route.starts_with('/') {
        return Err(format!("route {route:?} must start with '/'"));
    }
    let own = HOST_ROUTES.iter().any(|own| {
        route
            .strip_prefix(own)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    });
    if own {
        return Err(format!("route {route:?} is the host's own"));
    }
    let plain = |c: char| c.is_ascii_alphanumeric() || "/-._~!$&'()*+,;=:@%".contains(c);
    if let Some(bad) = route.chars().find(|c| !plain(*c)) {
        return Err(format!(
            "route {route:?} has {bad:?}, which a request path carries only percent-encoded; \
             write the route as requests send it"
        ));
    }
    Ok(())
}

impl PolicySettings {
    /// Parses a settings file.
    pub fn from_toml(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }

    /// Refuses settings the host cannot serve: no route, a route no request could reach,
    /// or a zero limit.
    pub fn check(&self) -> Result<(), String> {
        // An empty or truncated settings file must not retire the routes silently.
        if self.routes.is_empty() {
            return Err(
                "no routes; a policy serves at least one route (delete the policy to retire it)"
                    .into(),
            );
        }
        for route in &self.routes {
            check_route(route)?;
        }
        crate::Limits::default()
            .with_overrides(&self.limits)
            .check()
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
    fn expand_defaults_to_everything_and_takes_stripe_paths() {
        let all = PolicySettings::from_toml("routes = [\"/x\"]").unwrap();
        assert_eq!(
            all.expand.paths(),
            ["line_items", "customer", "discounts.coupon"]
        );
        assert_eq!(all.expand.paths(), stripe_checkout::client::SESSION_EXPAND);
        let some = PolicySettings::from_toml("expand = [\"customer\"]").unwrap();
        assert!(some.expand.contains(Expansion::Customer));
        assert!(!some.expand.contains(Expansion::LineItems));
        assert_eq!(some.expand.paths(), ["customer"]);
        let none = PolicySettings::from_toml("expand = []").unwrap();
        assert!(none.expand.paths().is_empty());
        assert_ne!(
            all.digest(),
            none.digest(),
            "a changed expand is a settings change"
        );
        let err = PolicySettings::from_toml("expand = [\"line_items.price\"]").unwrap_err();
        assert!(err.to_string().contains("line_items.price"), "{err}");
        assert!(err.to_string().contains("discounts.coupon"), "{err}");
    }

    #[test]
    fn check_refuses_what_the_host_cannot_serve() {
        let check = |text: &str| PolicySettings::from_toml(text).unwrap().check();
        assert_eq!(check("routes = [\"/x\"]"), Ok(()));
        assert!(check("").unwrap_err().contains("no routes"));
        assert!(check("routes = [\"x\"]")
            .unwrap_err()
            .contains("must start with '/'"));
        for own in [
            "/metrics",
            "/admin/reload",
            "/admin",
            "/dashboard",
            "/healthz",
        ] {
            let err = check(&format!("routes = [\"/ok\", \"{own}\"]")).unwrap_err();
            assert!(err.contains("is the host's own"), "{own}: {err}");
        }
        assert_eq!(check("routes = [\"/administer\", \"/metrics-x\"]"), Ok(()));
        for unreachable in ["/a b", "/réduction", "/x?y=1", "/x#y"] {
            let err = check(&format!("routes = [\"{unreachable}\"]")).unwrap_err();
            assert!(err.contains("percent-encoded"), "{unreachable}: {err}");
        }
        assert_eq!(
            check("routes = [\"/r%C3%A9duction\", \"/v1/apply:now\"]"),
            Ok(())
        );
        let zero = check("routes = [\"/x\"]\n[limits]\ntimeout_ms = 0").unwrap_err();
        assert_eq!(
            zero,
            "limits.timeout_ms is 0: no evaluation could run under it"
        );
        assert!(check("routes = [\"/x\"]\n[limits]\nfuel = 0")
            .unwrap_err()
            .contains("limits.fuel"));
        assert_eq!(
            check("routes = [\"/x\"]\n[limits]\nlog_records = 0"),
            Ok(())
        );
    }

    #[test]
    fn rejects_unknown_keys() {
        let err = PolicySettings::from_toml("route = [\"/x\"]").unwrap_err();
        assert!(err.to_string().contains("route"), "{err}");
    }
}
