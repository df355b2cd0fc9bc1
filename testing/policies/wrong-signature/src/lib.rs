//! A component that exports `evaluate`, but as `func(input: string) -> string`: the host
//! must refuse it at load time, and `policy-runner inspect` with it. Built with wit-bindgen
//! directly; wrapped by `raw-componentize`, since `policy-runner` refuses it.

#[allow(missing_docs, clippy::all)]
mod bindings {
    wit_bindgen::generate!({
        world: "other:plugin/wrong-signature",
        path: ["../../../wit", "wit"],
        generate_all,
    });
}

/// The plugin.
pub struct WrongSignature;

impl bindings::Guest for WrongSignature {
    fn evaluate(input: String) -> String {
        let now = bindings::stripe_discount::policy::host::now();
        format!("{input} at {now}")
    }
}

#[cfg(target_arch = "wasm32")]
bindings::export!(WrongSignature with_types_in bindings);
