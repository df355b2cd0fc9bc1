//! A stateful emulator of Stripe's Checkout Session endpoints.
