//! Typed reading of parsed form parameters, with Stripe's validation messages.

use crate::errors::{ApiError, ApiResult};
use crate::form::array_as_hash;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Most metadata keys Stripe accepts on one object.
pub const METADATA_MAX_KEYS: usize = 50;
/// Longest metadata key.
pub const METADATA_MAX_KEY_LEN: usize = 40;
/// Longest metadata value.
pub const METADATA_MAX_VALUE_LEN: usize = 500;

/// A hash of parameters and the name under which it was sent (`line_items[0]`).
#[derive(Debug, Clone)]
pub struct Params<'a> {
    map: &'a Map<String, Value>,
    prefix: String,
}

/// What a `metadata` parameter asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum MetadataUpdate {
    /// `metadata=`: remove every key.
    Clear,
    /// Set these keys; an empty value removes the key.
    Set(BTreeMap<String, String>),
}

impl<'a> Params<'a> {
    /// Wraps the top-level parameters.
    pub fn root(map: &'a Map<String, Value>) -> Self {
        Params {
            map,
            prefix: String::new(),
        }
    }

    /// The full parameter name of `key` (`line_items[0][quantity]`).
    pub fn name(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}[{key}]", self.prefix)
        }
    }

    /// The raw value.
    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key)
    }

    /// Whether `key` was sent at all.
    pub fn has(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    /// Rejects any key not in `allowed` with `parameter_unknown`.
    pub fn only(&self, allowed: &[&str]) -> ApiResult<()> {
        match self.map.keys().find(|k| !allowed.contains(&k.as_str())) {
            Some(k) => Err(ApiError::unknown(&self.name(k))),
            None => Ok(()),
        }
    }

    /// A string that cannot be unset: an empty string is refused.
    pub fn str(&self, key: &str) -> ApiResult<Option<String>> {
        match self.str_or_empty(key)? {
            Some(s) if s.is_empty() => Err(empty_not_allowed(&self.name(key))),
            other => Ok(other),
        }
    }

    /// A string, `Some("")` when sent empty.
    pub fn str_or_empty(&self, key: &str) -> ApiResult<Option<String>> {
        match self.map.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(ApiError::param(
                self.name(key),
                format!("Invalid string: {}", self.name(key)),
            )),
        }
    }

    /// A string of at most `max` characters.
    pub fn str_max(&self, key: &str, max: usize) -> ApiResult<Option<String>> {
        let s = self.str(key)?;
        if let Some(s) = &s {
            check_len(&self.name(key), s, max)?;
        }
        Ok(s)
    }

    /// One of `values`, with Stripe's "Invalid x: must be one of a, b, or c" message.
    pub fn enumeration(&self, key: &str, values: &[&str]) -> ApiResult<Option<String>> {
        let s = self.str(key)?;
        if let Some(s) = &s {
            if !values.contains(&s.as_str()) {
                return Err(ApiError::param(
                    self.name(key),
                    format!("Invalid {key}: must be one of {}", one_of(values)),
                ));
            }
        }
        Ok(s)
    }

    /// An integer (`Invalid integer: x`).
    pub fn int(&self, key: &str) -> ApiResult<Option<i64>> {
        match self.str(key)? {
            None => Ok(None),
            Some(s) => s.trim().parse::<i64>().map(Some).map_err(|_| {
                ApiError::param(self.name(key), format!("Invalid integer: {s}"))
                    .with_code("parameter_invalid_integer")
            }),
        }
    }

    /// An integer no smaller than `min`.
    pub fn int_min(&self, key: &str, min: i64) -> ApiResult<Option<i64>> {
        let v = self.int(key)?;
        if let Some(n) = v {
            if n < min {
                return Err(ApiError::param(
                    self.name(key),
                    format!("This value must be greater than or equal to {min}."),
                ));
            }
        }
        Ok(v)
    }

    /// A decimal number (`Invalid decimal: x`).
    pub fn decimal(&self, key: &str) -> ApiResult<Option<f64>> {
        match self.str(key)? {
            None => Ok(None),
            Some(s) => match s.trim().parse::<f64>() {
                Ok(f) if f.is_finite() => Ok(Some(f)),
                _ => Err(ApiError::param(
                    self.name(key),
                    format!("Invalid decimal: {s}"),
                )),
            },
        }
    }

    /// A boolean (`true`/`false`).
    pub fn bool(&self, key: &str) -> ApiResult<Option<bool>> {
        match self.str(key)?.as_deref() {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(s) => Err(ApiError::param(
                self.name(key),
                format!("Invalid boolean: {s}"),
            )),
        }
    }

    /// A nested hash (`Invalid hash` otherwise).
    pub fn hash(&self, key: &str) -> ApiResult<Option<Params<'a>>> {
        match self.map.get(key) {
            None => Ok(None),
            Some(Value::Object(m)) => Ok(Some(Params {
                map: m,
                prefix: self.name(key),
            })),
            Some(Value::String(s)) if s.is_empty() => Err(empty_not_allowed(&self.name(key))),
            Some(_) => Err(ApiError::param(self.name(key), "Invalid hash")),
        }
    }

    /// A list of hashes, each wrapped with its indexed name.
    pub fn list_of_hashes(&self, key: &str) -> ApiResult<Option<Vec<Params<'a>>>> {
        match self.map.get(key) {
            None => Ok(None),
            Some(Value::Array(items)) => {
                let name = self.name(key);
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| match v {
                        Value::Object(m) => Ok(Params {
                            map: m,
                            prefix: format!("{name}[{i}]"),
                        }),
                        _ => Err(ApiError::param(format!("{name}[{i}]"), "Invalid hash")),
                    })
                    .collect::<ApiResult<Vec<_>>>()
                    .map(Some)
            }
            Some(Value::String(s)) if s.is_empty() => Ok(Some(Vec::new())),
            Some(_) => Err(ApiError::param(self.name(key), "Invalid array")),
        }
    }

    /// A list of strings (`expand[]`).
    pub fn list_of_strings(&self, key: &str) -> ApiResult<Vec<String>> {
        match self.map.get(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::String(s) => Ok(s.clone()),
                    _ => Err(ApiError::param(
                        format!("{}[{i}]", self.name(key)),
                        "Invalid string",
                    )),
                })
                .collect(),
            Some(_) => Err(ApiError::param(self.name(key), "Invalid array")),
        }
    }

    /// `metadata`: a hash of strings with Stripe's limits, or `""` to clear.
    pub fn metadata(&self, key: &str) -> ApiResult<Option<MetadataUpdate>> {
        let name = self.name(key);
        let owned;
        let map = match self.map.get(key) {
            None => return Ok(None),
            Some(Value::String(s)) if s.is_empty() => return Ok(Some(MetadataUpdate::Clear)),
            Some(Value::Object(m)) => m,
            Some(Value::Array(items)) => {
                owned = array_as_hash(items);
                &owned
            }
            Some(_) => return Err(ApiError::param(name, "Invalid hash")),
        };
        if map.len() > METADATA_MAX_KEYS {
            return Err(ApiError::param(
                name,
                format!(
                    "Invalid metadata: metadata can have up to {METADATA_MAX_KEYS} keys, but you passed in {} keys.",
                    map.len()
                ),
            ));
        }
        let mut out = BTreeMap::new();
        for (k, v) in map {
            let Value::String(v) = v else {
                return Err(ApiError::param(format!("{name}[{k}]"), "Invalid string"));
            };
            if k.chars().count() > METADATA_MAX_KEY_LEN {
                return Err(ApiError::param(
                    format!("{name}[{k}]"),
                    format!(
                        "Metadata keys can have up to {METADATA_MAX_KEY_LEN} characters, but you passed in a key that is {} characters. Invalid key: {k}",
                        k.chars().count()
                    ),
                ));
            }
            if v.chars().count() > METADATA_MAX_VALUE_LEN {
                return Err(ApiError::param(
                    format!("{name}[{k}]"),
                    format!(
                        "Metadata values can have up to {METADATA_MAX_VALUE_LEN} characters, but you passed in a value that is {} characters.",
                        v.chars().count()
                    ),
                ));
            }
            out.insert(k.clone(), v.clone());
        }
        Ok(Some(MetadataUpdate::Set(out)))
    }
}

impl MetadataUpdate {
    /// Applies this update to stored metadata, as Stripe does (empty value unsets a key).
    pub fn apply(self, target: &mut BTreeMap<String, String>) -> ApiResult<()> {
        match self {
            MetadataUpdate::Clear => target.clear(),
            MetadataUpdate::Set(m) => {
                for (k, v) in m {
                    if v.is_empty() {
                        target.remove(&k);
                    } else {
                        target.insert(k, v);
                    }
                }
            }
        }
        if target.len() > METADATA_MAX_KEYS {
            return Err(ApiError::param(
                "metadata",
                format!("Invalid metadata: metadata can have up to {METADATA_MAX_KEYS} keys."),
            ));
        }
        Ok(())
    }

    /// The metadata of a new object.
    pub fn into_new(self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        // A new object starts empty, so the key limit was already checked.
        let _ = self.apply(&mut m);
        m
    }
}

/// Stripe's refusal of an empty string for a parameter that cannot be unset.
pub fn empty_not_allowed(name: &str) -> ApiError {
    ApiError::param(
        name,
        format!(
            "You passed an empty string for '{name}'. We assume empty values are an attempt to unset a parameter; however '{name}' cannot be unset. You should remove '{name}' from your request or supply a non-empty value."
        ),
    )
    .with_code("parameter_invalid_empty")
}

/// Refuses strings longer than `max` characters.
pub fn check_len(name: &str, s: &str, max: usize) -> ApiResult<()> {
    if s.chars().count() > max {
        return Err(ApiError::param(
            name,
            format!("Invalid string: {s}; must be at most {max} characters"),
        ));
    }
    Ok(())
}

/// `a, b, or c`.
pub fn one_of(values: &[&str]) -> String {
    match values {
        [] => String::new(),
        [one] => one.to_string(),
        [init @ .., last] => format!("{}, or {last}", init.join(", ")),
    }
}

/// Validates and lower-cases a currency code.
pub fn currency(name: &str, raw: &str) -> ApiResult<String> {
    let c = raw.to_ascii_lowercase();
    if crate::currency::is_supported(&c) {
        Ok(c)
    } else {
        Err(ApiError::param(
            name,
            format!(
                "Invalid currency: {raw}. Stripe currently supports these currencies: {}",
                crate::currency::SUPPORTED.join(", ")
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn typed_reads_and_names() {
        let v = json!({"a":{"n":"12","f":"2.5","b":"true","bad":"x"},"e":""});
        let root = Params::root(v.as_object().unwrap());
        let a = root.hash("a").unwrap().unwrap();
        assert_eq!(a.int("n").unwrap(), Some(12));
        assert_eq!(a.decimal("f").unwrap(), Some(2.5));
        assert_eq!(a.bool("b").unwrap(), Some(true));
        let err = a.int("bad").unwrap_err();
        assert_eq!(err.param.as_deref(), Some("a[bad]"));
        assert_eq!(err.message, "Invalid integer: x");
        let err = root.str("e").unwrap_err();
        assert_eq!(err.code.as_deref(), Some("parameter_invalid_empty"));
        assert_eq!(
            a.only(&["n"]).unwrap_err().code.as_deref(),
            Some("parameter_unknown")
        );
        assert_eq!(one_of(&["a", "b", "c"]), "a, b, or c");
    }

    #[test]
    fn metadata_rules() {
        let v = json!({"metadata":{"k":"v","gone":""},"m2":["x"],"m3":""});
        let root = Params::root(v.as_object().unwrap());
        let mut stored = BTreeMap::from([("gone".to_string(), "1".to_string())]);
        root.metadata("metadata")
            .unwrap()
            .unwrap()
            .apply(&mut stored)
            .unwrap();
        assert_eq!(stored, BTreeMap::from([("k".to_string(), "v".to_string())]));
        let m2 = root.metadata("m2").unwrap().unwrap().into_new();
        assert_eq!(m2.get("0").map(String::as_str), Some("x"));
        assert_eq!(root.metadata("m3").unwrap(), Some(MetadataUpdate::Clear));
        let long = json!({"metadata":{"k":"x".repeat(501)}});
        let root = Params::root(long.as_object().unwrap());
        assert_eq!(
            root.metadata("metadata").unwrap_err().param.as_deref(),
            Some("metadata[k]")
        );
    }
}
