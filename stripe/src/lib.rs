//! Stripe Checkout Session types, Stripe's discount arithmetic, and an API client.

pub mod client;
pub mod error;
pub mod form;
pub mod json;
pub mod totals;
pub mod transport;
pub mod types;

pub use client::{idempotency_key, random_idempotency_key, ClientConfig, Response, StripeClient};
pub use error::{ErrorType, StripeError};
pub use types::*;

/// The API version the dynamic-discount update needs.
pub const STRIPE_VERSION: &str = "2025-03-31.basil; checkout_server_update_beta=v1;";
