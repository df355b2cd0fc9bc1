//! TODO
/// A Stripe error.
#[derive(Debug)]
pub struct StripeError;
