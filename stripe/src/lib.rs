//! Stripe Checkout Session types, Stripe's discount arithmetic, and an API client.

pub mod client;
pub mod error;
pub mod form;
pub mod totals;
pub mod types;

pub use client::{ClientConfig, StripeClient};
pub use error::StripeError;
pub use types::*;

/// The API version the dynamic-discount update needs.
pub const STRIPE_VERSION: &str = "2025-03-31.basil; checkout_server_update_beta=v1;";
