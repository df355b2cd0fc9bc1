//! The discount host: serves the storefront's endpoints, runs the bound discount
//! policy in a sandbox, guards its decision and applies it to the Checkout Session.
//!
//! The request path, one module per step: [`http`] → [`retrieve`] → session
//! mapping (`policy_engine::mapping`) → [`evaluate`] → decision guard
//! (`policy_engine::guard`) → [`update`] → [`response`]; [`pipeline`] runs them in order.

pub mod admin;
pub mod app;
pub mod audit;
pub mod auth;
pub mod compile;
pub mod config;
pub mod dashboard;
pub mod demo;
pub mod dryrun;
pub mod evaluate;
pub mod http;
pub mod locks;
pub mod metrics;
pub mod pipeline;
pub mod registry;
pub mod response;
pub mod retrieve;
pub mod serve;
pub mod trace;
pub mod update;
pub mod watch;
