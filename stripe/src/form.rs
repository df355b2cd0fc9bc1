//! Stripe's `application/x-www-form-urlencoded` encoding with bracketed nesting.
//!
//! Stripe reads nested parameters as `a[b][c]=v` and list items as `a[0][b]=v`; an empty
//! value (`discounts=`) unsets a field. Keys keep their brackets literal (as stripe-node
//! does after `qs.stringify`), everything else is percent-encoded, and floats are written
//! with the fewest digits that round-trip and never with an exponent (`12.5`, `10`).

use crate::types::{CouponData, DiscountsUpdate};
use serde_json::Value;

/// Formats a float the way Stripe parameters need it: minimal digits, no exponent (`12.5`, `10`, `0.0001`).
///
/// Non-finite values have no form representation and are written as an empty string;
/// callers validate before encoding (see [`validate_discounts_update`]).
pub fn format_f64(value: f64) -> String {
    if !value.is_finite() {
        return String::new();
    }
    // Rust's `Display` for f64 prints the shortest round-tripping digits and never uses
    // scientific notation; `-0` is normalised to `0`.
    if value == 0.0 {
        return "0".to_string();
    }
    format!("{value}")
}

/// Appends one percent-encoded form key, keeping `[` and `]` literal.
fn encode_key_into(key: &str, out: &mut String) {
    out.extend(
        form_urlencoded::byte_serialize(key.as_bytes()).map(|chunk| match chunk {
            "%5B" => "[",
            "%5D" => "]",
            other => other,
        }),
    );
}

/// Serialises key/value pairs into a form body or query string, in the given order:
/// values percent-encoded with space as `+`, as in HTML forms.
pub fn encode_pairs(pairs: &[(String, String)]) -> String {
    let mut out = String::with_capacity(pairs.iter().map(|(k, v)| k.len() + v.len() + 2).sum());
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        encode_key_into(k, &mut out);
        out.push('=');
        out.extend(form_urlencoded::byte_serialize(v.as_bytes()));
    }
    out
}

/// Flattens a JSON object into Stripe form pairs: objects nest as `[key]`, arrays as `[i]`,
/// `null`, `{}` and `[]` as an empty value (Stripe's "unset"), numbers without exponent.
///
/// A non-object top-level value yields no pairs. Object keys keep their JSON order
/// (alphabetical with serde_json's default map).
pub fn flatten_json(value: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Value::Object(map) = value {
        for (k, v) in map {
            flatten_into(k.clone(), v, &mut out);
        }
    }
    out
}

/// Appends the pairs of `value` under `prefix`.
fn flatten_into(prefix: String, value: &Value, out: &mut Vec<(String, String)>) {
    match value {
        Value::Null => out.push((prefix, String::new())),
        Value::Bool(b) => out.push((prefix, b.to_string())),
        Value::Number(n) => out.push((prefix, format_number(n))),
        Value::String(s) => out.push((prefix, s.clone())),
        Value::Array(items) if items.is_empty() => out.push((prefix, String::new())),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                flatten_into(format!("{prefix}[{i}]"), item, out);
            }
        }
        Value::Object(map) if map.is_empty() => out.push((prefix, String::new())),
        Value::Object(map) => {
            for (k, v) in map {
                flatten_into(format!("{prefix}[{k}]"), v, out);
            }
        }
    }
}

/// Formats a JSON number: integers as-is, floats via [`format_f64`].
fn format_number(n: &serde_json::Number) -> String {
    if let Some(i) = n.as_i64() {
        i.to_string()
    } else if let Some(u) = n.as_u64() {
        u.to_string()
    } else {
        n.as_f64().map(format_f64).unwrap_or_default()
    }
}

/// Appends the `coupon_data` fields under `prefix` in a fixed, canonical order.
fn push_coupon_data(prefix: &str, data: &CouponData, out: &mut Vec<(String, String)>) {
    if let Some(name) = &data.name {
        out.push((format!("{prefix}[name]"), name.clone()));
    }
    if let Some(amount_off) = data.amount_off {
        out.push((format!("{prefix}[amount_off]"), amount_off.to_string()));
    }
    if let Some(currency) = &data.currency {
        out.push((format!("{prefix}[currency]"), currency.clone()));
    }
    if let Some(percent_off) = data.percent_off {
        out.push((format!("{prefix}[percent_off]"), format_f64(percent_off)));
    }
    if let Some(duration) = &data.duration {
        out.push((format!("{prefix}[duration]"), duration.clone()));
    }
    // BTreeMap: keys come out sorted, so the encoding is canonical.
    for (k, v) in &data.metadata {
        out.push((format!("{prefix}[metadata][{k}]"), v.clone()));
    }
}

/// Encodes the `discounts` parameter of a Checkout Session update, canonically (same update, same pairs).
pub fn encode_discounts_update(update: &DiscountsUpdate) -> Vec<(String, String)> {
    let mut out = Vec::new();
    match update {
        DiscountsUpdate::CouponData(data) => {
            push_coupon_data("discounts[0][coupon_data]", data, &mut out)
        }
        DiscountsUpdate::Coupon(id) => out.push(("discounts[0][coupon]".to_string(), id.clone())),
        DiscountsUpdate::Clear => out.push(("discounts".to_string(), String::new())),
    }
    out
}

/// Checks a discounts update against the documented Stripe constraints before it is sent.
///
/// `coupon_data` needs exactly one of a positive `amount_off` (with `currency`) or a finite
/// `percent_off` in (0, 100]; `name` is at most 40 characters; a coupon id is 1..=5000 characters.
/// Returns a human-readable reason on failure.
pub fn validate_discounts_update(update: &DiscountsUpdate) -> Result<(), String> {
    match update {
        DiscountsUpdate::Clear => Ok(()),
        DiscountsUpdate::Coupon(id) => {
            if id.is_empty() || id.chars().count() > 5000 {
                Err("coupon id must be 1 to 5000 characters".to_string())
            } else {
                Ok(())
            }
        }
        DiscountsUpdate::CouponData(data) => {
            if let Some(name) = &data.name {
                if name.chars().count() > 40 {
                    return Err("coupon_data.name must be at most 40 characters".to_string());
                }
            }
            validate_metadata(&data.metadata)?;
            match (data.amount_off, data.percent_off) {
                (Some(_), Some(_)) => {
                    Err("coupon_data takes only one of amount_off and percent_off".to_string())
                }
                (None, None) => {
                    Err("coupon_data needs one of amount_off and percent_off".to_string())
                }
                (Some(amount), None) => {
                    if amount <= 0 {
                        Err("coupon_data.amount_off must be a positive integer".to_string())
                    } else if data.currency.as_deref().is_none_or(str::is_empty) {
                        Err("coupon_data.currency is required with amount_off".to_string())
                    } else {
                        Ok(())
                    }
                }
                (None, Some(pct)) => {
                    if pct.is_finite() && pct > 0.0 && pct <= 100.0 {
                        Ok(())
                    } else {
                        Err("coupon_data.percent_off must be > 0 and <= 100".to_string())
                    }
                }
            }
        }
    }
}

/// Stripe's metadata limits: at most 50 keys, keys 1..=40 characters without `[` or `]`
/// (they would change the bracket nesting), values at most 500 characters.
fn validate_metadata(metadata: &crate::types::Metadata) -> Result<(), String> {
    if metadata.len() > 50 {
        return Err("metadata takes at most 50 keys".to_string());
    }
    for (k, v) in metadata {
        if k.is_empty() || k.chars().count() > 40 || k.contains(['[', ']']) {
            return Err(format!(
                "metadata key {:?} must be 1 to 40 characters without square brackets",
                k.chars().take(60).collect::<String>()
            ));
        }
        if v.chars().count() > 500 {
            return Err(format!(
                "metadata value of {k:?} must be at most 500 characters"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Metadata;
    use serde_json::json;

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn floats_have_minimal_digits_and_no_exponent() {
        assert_eq!(format_f64(10.0), "10");
        assert_eq!(format_f64(12.5), "12.5");
        assert_eq!(format_f64(33.333), "33.333");
        assert_eq!(format_f64(0.1 + 0.2), "0.30000000000000004");
        assert_eq!(format_f64(1e-7), "0.0000001");
        assert_eq!(format_f64(1e21), "1000000000000000000000");
        assert_eq!(format_f64(-0.0), "0");
        assert_eq!(format_f64(f64::NAN), "");
        assert_eq!(format_f64(f64::INFINITY), "");
    }

    #[test]
    fn coupon_data_percent() {
        let mut metadata = Metadata::new();
        metadata.insert("rule".into(), "vip tier".into());
        metadata.insert("a&b".into(), "x=y".into());
        let update = DiscountsUpdate::CouponData(CouponData {
            name: Some("VIP 12.5% off".into()),
            percent_off: Some(12.5),
            duration: Some("once".into()),
            metadata,
            ..Default::default()
        });
        let encoded = encode_discounts_update(&update);
        assert_eq!(
            encoded,
            pairs(&[
                ("discounts[0][coupon_data][name]", "VIP 12.5% off"),
                ("discounts[0][coupon_data][percent_off]", "12.5"),
                ("discounts[0][coupon_data][duration]", "once"),
                ("discounts[0][coupon_data][metadata][a&b]", "x=y"),
                ("discounts[0][coupon_data][metadata][rule]", "vip tier"),
            ])
        );
        assert_eq!(
            encode_pairs(&encoded),
            "discounts[0][coupon_data][name]=VIP+12.5%25+off\
             &discounts[0][coupon_data][percent_off]=12.5\
             &discounts[0][coupon_data][duration]=once\
             &discounts[0][coupon_data][metadata][a%26b]=x%3Dy\
             &discounts[0][coupon_data][metadata][rule]=vip+tier"
        );
    }

    #[test]
    fn coupon_data_amount_and_integral_percent() {
        let update = DiscountsUpdate::CouponData(CouponData {
            amount_off: Some(2000),
            currency: Some("usd".into()),
            ..Default::default()
        });
        assert_eq!(
            encode_pairs(&encode_discounts_update(&update)),
            "discounts[0][coupon_data][amount_off]=2000&discounts[0][coupon_data][currency]=usd"
        );
        let update = DiscountsUpdate::CouponData(CouponData {
            name: Some("Ten".into()),
            percent_off: Some(10.0),
            ..Default::default()
        });
        assert_eq!(
            encode_pairs(&encode_discounts_update(&update)),
            "discounts[0][coupon_data][name]=Ten&discounts[0][coupon_data][percent_off]=10"
        );
    }

    #[test]
    fn coupon_and_clear() {
        assert_eq!(
            encode_pairs(&encode_discounts_update(&DiscountsUpdate::Coupon(
                "SUMMER_25".into()
            ))),
            "discounts[0][coupon]=SUMMER_25"
        );
        assert_eq!(
            encode_pairs(&encode_discounts_update(&DiscountsUpdate::Clear)),
            "discounts="
        );
    }

    #[test]
    fn json_flattening() {
        let v = json!({
            "mode": "payment",
            "line_items": [{"price_data": {"currency": "usd", "unit_amount": 1999,
                            "product_data": {"name": "Tee"}}, "quantity": 2}],
            "permissions": {"update_discounts": "server_only"},
            "metadata": {},
            "discounts": [],
            "customer": null,
            "percent_off": 12.50,
            "big": 1e21,
            "livemode": false,
            "expand": ["line_items", "customer"]
        });
        // Sorted so the test does not depend on serde_json's `preserve_order` feature.
        let mut flat = flatten_json(&v);
        flat.sort();
        assert_eq!(
            encode_pairs(&flat),
            "big=1000000000000000000000&customer=&discounts=\
             &expand[0]=line_items&expand[1]=customer\
             &line_items[0][price_data][currency]=usd\
             &line_items[0][price_data][product_data][name]=Tee\
             &line_items[0][price_data][unit_amount]=1999\
             &line_items[0][quantity]=2&livemode=false&metadata=&mode=payment\
             &percent_off=12.5&permissions[update_discounts]=server_only"
        );
        assert!(flatten_json(&json!("x")).is_empty());
    }

    #[test]
    fn keys_are_encoded_except_brackets() {
        let p = pairs(&[("expand[]", "line_items"), ("a b[c/d]", "é ü+")]);
        assert_eq!(
            encode_pairs(&p),
            "expand[]=line_items&a+b[c%2Fd]=%C3%A9+%C3%BC%2B"
        );
    }

    #[test]
    fn validation() {
        let ok = |u: DiscountsUpdate| validate_discounts_update(&u).is_ok();
        assert!(ok(DiscountsUpdate::Clear));
        assert!(ok(DiscountsUpdate::Coupon("c".into())));
        assert!(!ok(DiscountsUpdate::Coupon(String::new())));
        let pct = |p: f64| {
            DiscountsUpdate::CouponData(CouponData {
                percent_off: Some(p),
                ..Default::default()
            })
        };
        assert!(ok(pct(100.0)));
        assert!(ok(pct(0.01)));
        assert!(!ok(pct(0.0)));
        assert!(!ok(pct(100.5)));
        assert!(!ok(pct(f64::NAN)));
        assert!(!ok(pct(f64::INFINITY)));
        assert!(!ok(DiscountsUpdate::CouponData(CouponData::default())));
        assert!(!ok(DiscountsUpdate::CouponData(CouponData {
            amount_off: Some(100),
            ..Default::default()
        })));
        assert!(!ok(DiscountsUpdate::CouponData(CouponData {
            amount_off: Some(0),
            currency: Some("usd".into()),
            ..Default::default()
        })));
        assert!(!ok(DiscountsUpdate::CouponData(CouponData {
            amount_off: Some(100),
            currency: Some("usd".into()),
            percent_off: Some(5.0),
            ..Default::default()
        })));
        assert!(!ok(DiscountsUpdate::CouponData(CouponData {
            name: Some("x".repeat(41)),
            percent_off: Some(5.0),
            ..Default::default()
        })));
        let with_meta = |k: &str, v: &str| {
            DiscountsUpdate::CouponData(CouponData {
                percent_off: Some(5.0),
                metadata: [(k.to_string(), v.to_string())].into(),
                ..Default::default()
            })
        };
        assert!(ok(with_meta("rule", "gold")));
        assert!(!ok(with_meta("a[b]", "x")));
        assert!(!ok(with_meta("", "x")));
        assert!(!ok(with_meta(&"k".repeat(41), "x")));
        assert!(!ok(with_meta("k", &"v".repeat(501))));
        assert!(ok(DiscountsUpdate::CouponData(CouponData {
            name: Some("é".repeat(40)),
            amount_off: Some(1),
            currency: Some("eur".into()),
            ..Default::default()
        })));
    }
}
