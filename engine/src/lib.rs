//! The policy engine: loads discount policy components and evaluates them in a
//! wasmtime sandbox. Shared by the host and the runner; knows nothing of HTTP.
//!
//! The steps it offers, in request order: [`mapping`] (Stripe session to WIT
//! record), [`engine`] (sandboxed evaluation), [`guard`] (Stripe's rules and the
//! merchant's caps).

pub mod audit;
pub mod bindings;
pub mod cache;
pub mod decision;
pub mod engine;
pub mod fixtures;
pub mod guard;
pub mod limits;
pub mod mapping;
pub mod pool;
pub mod preinit;
pub mod settings;

pub use bindings::{CheckoutSession, Decision, PolicyRequest};
pub use engine::{
    check_component_header, Attempt, Clock, Cost, EngineConfig, EvalError, Evaluation, LoadError,
    LogRecord, Policy, PolicyEngine, Teardown,
};
pub use guard::{Caps, GuardViolation, GuardedDecision};
pub use limits::Limits;
pub use pool::{DecommitReason, MemoryReset, PagemapScan, PoolSettings};
pub use settings::{Expand, Expansion, PolicySettings};
