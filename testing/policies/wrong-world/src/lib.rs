//! A component for another world: it exports `handle`, not `evaluate`, so the host must
//! refuse it at load time. Built with wit-bindgen directly; wrapped by `raw-componentize`,
//! since `policy-runner` refuses it.

#[allow(missing_docs, clippy::all)]
mod bindings {
    wit_bindgen::generate!({
        world: "other:plugin/wrong-world",
        path: ["../../../wit", "wit"],
        generate_all,
    });
}

/// The plugin.
pub struct WrongWorld;

impl bindings::Guest for WrongWorld {
    fn handle(input: String) -> String {
        let now = bindings::stripe_discount::policy::host::now();
        format!("{input} at {now}")
    }
}

#[cfg(target_arch = "wasm32")]
bindings::export!(WrongWorld with_types_in bindings);
