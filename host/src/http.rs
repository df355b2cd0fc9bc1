//! Step 1, HTTP: what the storefront sent, validated. Only the session id and the
//! storefront's own input are taken; session data from the client is never used.

use crate::response::FlowError;
use serde_json::{Map, Value};

/// Longest session id Stripe issues (`path_id_maxLength` in the spec).
const MAX_SESSION_ID: usize = 66;

/// A validated storefront request.
#[derive(Debug, Clone)]
pub struct StorefrontRequest {
    /// `checkout_session_id` from the body.
    pub checkout_session_id: String,
    /// The rest of the body: the storefront's input, untrusted.
    pub input: Map<String, Value>,
}

/// Parses and validates a storefront request body.
pub fn parse(body: &[u8], max_bytes: usize) -> Result<StorefrontRequest, FlowError> {
    if body.len() > max_bytes {
        return Err(FlowError::TooLarge);
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(FlowError::BadRequest(
            "The request body is empty; send JSON with checkout_session_id.".into(),
        ));
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|_| FlowError::BadRequest("The request body is not valid JSON.".into()))?;
    let Value::Object(mut input) = value else {
        return Err(FlowError::BadRequest(
            "The request body must be a JSON object.".into(),
        ));
    };
    let id = match input.remove("checkout_session_id") {
        Some(Value::String(id)) => id,
        Some(_) => {
            return Err(FlowError::BadRequest(
                "checkout_session_id must be a string.".into(),
            ))
        }
        None => {
            return Err(FlowError::BadRequest(
                "checkout_session_id is required.".into(),
            ))
        }
    };
    let well_formed = id.starts_with("cs_")
        && id.len() <= MAX_SESSION_ID
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !well_formed {
        return Err(FlowError::BadRequest(
            "checkout_session_id is not a Checkout Session id.".into(),
        ));
    }
    Ok(StorefrontRequest {
        checkout_session_id: id,
        input,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_id_and_input() {
        let r = parse(
            br#"{"checkout_session_id":"cs_test_1","promo_code":"X"}"#,
            1024,
        )
        .unwrap();
        assert_eq!(r.checkout_session_id, "cs_test_1");
        assert_eq!(r.input["promo_code"], "X");
        assert!(!r.input.contains_key("checkout_session_id"));
    }

    #[test]
    fn refuses_bad_bodies() {
        for body in [
            &b""[..],
            b"  ",
            b"{",
            b"[]",
            b"{}",
            br#"{"checkout_session_id":1}"#,
            br#"{"checkout_session_id":"cs_../x"}"#,
            br#"{"checkout_session_id":"pi_1"}"#,
        ] {
            assert!(
                matches!(parse(body, 1024), Err(FlowError::BadRequest(_))),
                "{body:?}"
            );
        }
        assert!(matches!(
            parse(&[b' '; 2000], 1024),
            Err(FlowError::TooLarge)
        ));
    }
}
