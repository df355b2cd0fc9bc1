//! Host-side bindings of the `discount-policy` world.

wasmtime::component::bindgen!({
    world: "discount-policy",
    path: "../wit",
});

pub use stripe_discount::policy::host::LogLevel;
pub use stripe_discount::policy::types::{
    Address, AppliedDiscount, Coupon, CouponData, Customer, CustomerDetails, Discount, Duration,
    LineItem, Mode, ShippingCost, ShippingDetails, Status, TotalDetails,
};

/// The only interface a policy may import.
pub const HOST_INTERFACE: &str = "stripe-discount:policy/host@0.1.0";

/// The contract's types interface: plain types, no capability.
pub const TYPES_INTERFACE: &str = "stripe-discount:policy/types@0.1.0";
