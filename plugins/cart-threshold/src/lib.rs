//! cart-threshold
