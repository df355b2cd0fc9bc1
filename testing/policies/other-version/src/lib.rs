//! A component built against `stripe-discount:policy@0.2.0`, a version of the contract
//! the host does not speak: it must be refused at load time as another version, not as a
//! foreign import. Built with wit-bindgen directly; wrapped by `raw-componentize`.

#[allow(missing_docs, clippy::all)]
mod bindings {
    wit_bindgen::generate!({
        world: "stripe-discount:policy/discount-policy@0.2.0",
        path: "wit",
        generate_all,
    });
}

/// The plugin.
pub struct OtherVersion;

impl bindings::Guest for OtherVersion {
    fn evaluate(session_id: String) -> i64 {
        bindings::stripe_discount::policy::host::now() + session_id.len() as i64
    }
}

#[cfg(target_arch = "wasm32")]
bindings::export!(OtherVersion with_types_in bindings);
