//! Reading Stripe's JSON with errors that name the field.

use serde::de::DeserializeOwned;

/// Parses `json` as `T`; an error names the field where it went wrong
/// (`line_items.data[3].quantity: invalid type: …`).
pub fn from_slice<T: DeserializeOwned>(json: &[u8]) -> Result<T, String> {
    // The fast path tracks no path; only a failure is read again to locate it.
    serde_json::from_slice(json).map_err(|_| located_error::<T>(json))
}

/// Why `json` is not a `T`, with the path of the field that failed.
fn located_error<T: DeserializeOwned>(json: &[u8]) -> String {
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    match serde_path_to_error::deserialize::<_, T>(&mut deserializer) {
        Ok(_) => "the JSON does not end where it should".to_string(),
        Err(e) if e.path().iter().next().is_none() => e.into_inner().to_string(),
        Err(e) => format!("{}: {}", e.path(), e.inner()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CheckoutSession;

    #[test]
    fn errors_name_the_field() {
        let fixture = include_str!("../../plugins/cart-threshold/cases/fixtures/cart-100.json");
        let mut session: serde_json::Value = serde_json::from_str(fixture).unwrap();
        assert!(from_slice::<CheckoutSession>(fixture.as_bytes()).is_ok());

        session["amount_subtotal"] = "abc".into();
        let err = from_slice::<CheckoutSession>(session.to_string().as_bytes()).unwrap_err();
        assert!(
            err.starts_with("amount_subtotal: invalid type: string \"abc\""),
            "{err}"
        );

        session["amount_subtotal"] = 100.into();
        session["metadata"] = serde_json::json!({"tier": 3});
        let err = from_slice::<CheckoutSession>(session.to_string().as_bytes()).unwrap_err();
        assert!(
            err.starts_with("metadata.tier: invalid type: integer `3`"),
            "{err}"
        );

        let err = from_slice::<CheckoutSession>(b"[1,2]").unwrap_err();
        assert!(err.contains("expected"), "{err}");
        let err = from_slice::<CheckoutSession>(b"{").unwrap_err();
        assert!(err.contains("EOF"), "{err}");
    }
}
