//! `expand[]` paths: parsed into a tree, checked against what each object can expand.

use crate::errors::{ApiError, ApiResult};
use std::collections::BTreeMap;

/// Stripe's limit on expansion depth.
pub const MAX_DEPTH: usize = 4;

/// The expansions requested below one object: field name to the expansions below it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Expand {
    children: BTreeMap<String, Expand>,
}

impl Expand {
    /// No expansion.
    pub fn none() -> Self {
        Expand::default()
    }

    /// Parses `expand[]` values such as `discounts.coupon`.
    pub fn parse(paths: &[String]) -> ApiResult<Self> {
        let mut root = Expand::default();
        for path in paths {
            let parts: Vec<&str> = path.split('.').collect();
            if parts.iter().any(|p| p.is_empty()) {
                return Err(cannot_expand(path));
            }
            if parts.len() > MAX_DEPTH {
                return Err(ApiError::param(
                    "expand",
                    format!(
                        "You cannot expand more than {MAX_DEPTH} levels of a property. Property: {path}"
                    ),
                ));
            }
            let mut node = &mut root;
            for p in parts {
                node = node.children.entry(p.to_string()).or_default();
            }
        }
        Ok(root)
    }

    /// Whether nothing is expanded here.
    pub fn is_empty(&self) -> bool {
        self.children.is_empty()
    }

    /// Whether `field` is expanded (or something below it is).
    pub fn has(&self, field: &str) -> bool {
        self.children.contains_key(field)
    }

    /// The expansions below `field` (empty if none).
    pub fn child(&self, field: &str) -> Expand {
        self.children.get(field).cloned().unwrap_or_default()
    }

    /// Refuses any expanded field outside `allowed`; `path` names this object for the message.
    pub fn only(&self, allowed: &[&str], path: &str) -> ApiResult<()> {
        match self
            .children
            .keys()
            .find(|k| !allowed.contains(&k.as_str()))
        {
            Some(k) => Err(cannot_expand(&join(path, k))),
            None => Ok(()),
        }
    }

    /// Refuses expanding `field` itself when only fields below it can be (`discounts` vs `discounts.coupon`).
    pub fn require_children(&self, field: &str, path: &str) -> ApiResult<()> {
        match self.children.get(field) {
            Some(c) if c.is_empty() => Err(cannot_expand(&join(path, field))),
            _ => Ok(()),
        }
    }
}

/// `a.b` from a prefix and a field.
pub fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

/// Stripe's error for a path that cannot be expanded.
pub fn cannot_expand(path: &str) -> ApiError {
    ApiError::param(
        "expand",
        format!("This property cannot be expanded ({path})."),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_tree_and_limits() {
        let e = Expand::parse(&["discounts.coupon".into(), "line_items".into()]).unwrap();
        assert!(e.has("discounts") && e.has("line_items"));
        assert!(e.child("discounts").has("coupon"));
        assert!(e.child("line_items").is_empty());
        assert!(e.only(&["discounts"], "").is_err());
        assert!(e.require_children("line_items", "").is_err());
        assert!(Expand::parse(&["a.b.c.d.e".into()]).is_err());
        assert!(Expand::parse(&["a..b".into()]).is_err());
    }
}
