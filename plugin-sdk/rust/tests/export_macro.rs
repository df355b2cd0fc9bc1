//! `export_policy!` natively: it compiles for a private type without warnings, and the
//! exported entry point runs with an inert context (it never reaches the wit-bindgen
//! import stubs, which are `unreachable!()` off wasm).
#![deny(warnings)]

use discount_policy_sdk::prelude::*;
use discount_policy_sdk::testing::{request, SessionBuilder};

struct Echo;

impl Policy for Echo {
    fn evaluate(ctx: &Context, session: &CheckoutSession, _request: &PolicyRequest) -> Decision {
        ctx.info("evaluating", &[("session", &session.id)]);
        match ctx.config("coupon") {
            Some(id) => Decision::coupon(id),
            None if ctx.now() == 0 => Decision::keep(),
            None => Decision::clear(),
        }
    }
}

discount_policy_sdk::export_policy!(Echo);

#[test]
fn exported_entry_point_is_inert_natively() {
    use discount_policy_sdk::bindings::Guest;
    let decision = <Echo as Guest>::evaluate(SessionBuilder::new().build(), request("x").build());
    assert_eq!(decision, Decision::keep());
}

#[test]
fn policy_runs_with_a_test_context() {
    let ctx = Context::for_test()
        .config("coupon", "SPRING")
        .now(5)
        .build();
    let d = Echo::evaluate(&ctx, &SessionBuilder::new().build(), &request("x").build());
    assert_eq!(d, Decision::coupon("SPRING"));
    assert_eq!(ctx.logs()[0].field("session"), Some("cs_test_sdk"));
}
