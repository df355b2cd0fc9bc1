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

/// Whether a policy may import `import`: the contract's interfaces at this version.
pub fn is_granted(import: &str) -> bool {
    import == HOST_INTERFACE || import == TYPES_INTERFACE
}

/// Why `import` is refused when it is an interface of another version of the contract;
/// `None` for any other import.
pub fn other_contract_version(import: &str) -> Option<String> {
    (import.starts_with("stripe-discount:policy/") && !is_granted(import)).then(|| {
        format!(
            "it imports {import}, another version of the contract; this host offers \
             {HOST_INTERFACE}: rebuild it against this host's wit/discount-policy.wit"
        )
    })
}

/// A [`DiscountPolicyPre`] that type-checks the `evaluate` export once. The generated
/// `instantiate` re-checks the whole session record's type on every instance; instances
/// of one component all have the same types, so after one checked instance the rest skip it.
pub struct CheckedPolicyPre<T: 'static> {
    pre: DiscountPolicyPre<T>,
    checked: bool,
}

impl<T: 'static> Clone for CheckedPolicyPre<T> {
    fn clone(&self) -> Self {
        CheckedPolicyPre {
            pre: self.pre.clone(),
            checked: self.checked,
        }
    }
}

impl<T: 'static> CheckedPolicyPre<T> {
    /// Wraps `pre`; nothing is checked yet.
    pub fn new(pre: DiscountPolicyPre<T>) -> Self {
        CheckedPolicyPre {
            pre,
            checked: false,
        }
    }

    /// Instantiates once in `store` through the checking path; later instances skip it.
    pub fn check(&mut self, store: impl wasmtime::AsContextMut<Data = T>) -> wasmtime::Result<()> {
        self.pre.instantiate(store)?;
        self.checked = true;
        Ok(())
    }

    /// A fresh instance; checked unless [`CheckedPolicyPre::check`] passed.
    pub fn instantiate(
        &self,
        store: impl wasmtime::AsContextMut<Data = T>,
    ) -> wasmtime::Result<DiscountPolicy> {
        if !self.checked {
            return self.pre.instantiate(store);
        }
        Ok(self.instantiate_with_instance(store)?.1)
    }

    /// A fresh instance, with the component instance behind it.
    pub fn instantiate_with_instance(
        &self,
        mut store: impl wasmtime::AsContextMut<Data = T>,
    ) -> wasmtime::Result<(wasmtime::component::Instance, DiscountPolicy)> {
        let mut store = store.as_context_mut();
        let instance = self.pre.instance_pre.instantiate(&mut store)?;
        let evaluate = instance
            .get_func(&mut store, self.pre.indices.evaluate)
            .ok_or_else(|| wasmtime::format_err!("the component exports no `evaluate`"))?;
        Ok((instance, DiscountPolicy { evaluate }))
    }
}
