//! Per-policy sandbox limits: host defaults, overridden by a policy's own settings.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The limits one evaluation runs under.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Instruction budget (wasmtime fuel); Shopify Functions allow 11M instructions.
    pub fuel: u64,
    /// Wall-clock deadline of one evaluation, in milliseconds (epoch interruption).
    pub timeout_ms: u64,
    /// Cap on linear memory, in bytes, summed over the component's memories.
    pub memory_bytes: usize,
    /// Cap on elements of any one table.
    pub table_elements: usize,
    /// Cap on the number of core instances a component may create.
    pub instances: usize,
    /// Cap on the number of tables.
    pub tables: usize,
    /// Cap on the number of linear memories.
    pub memories: usize,
    /// Cap on a reject message, in bytes.
    pub message_bytes: usize,
    /// Cap on the number of coupon metadata entries.
    pub metadata_entries: usize,
    /// Cap on log records per evaluation; more are dropped and counted.
    pub log_records: usize,
    /// Cap on log bytes per evaluation; more are dropped and counted.
    pub log_bytes: usize,
    /// Pre-initialised instances kept ready (instantiated and warmed with a synthetic
    /// session in the background), each used for one evaluation; 0 turns this off.
    pub warm_instances: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            fuel: 11_000_000,
            timeout_ms: 50,
            memory_bytes: 10 * 1024 * 1024,
            table_elements: 10_000,
            instances: 10,
            tables: 10,
            memories: 4,
            message_bytes: 500,
            metadata_entries: 50,
            log_records: 100,
            log_bytes: 16 * 1024,
            warm_instances: 0,
        }
    }
}

impl Limits {
    /// The wall-clock deadline as a duration.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// Refuses a zero fuel budget, deadline or memory cap: no evaluation could run.
    pub fn check(&self) -> Result<(), String> {
        let zero = [
            ("fuel", self.fuel == 0),
            ("timeout_ms", self.timeout_ms == 0),
            ("memory_bytes", self.memory_bytes == 0),
        ];
        match zero.iter().find(|(_, is_zero)| *is_zero) {
            Some((name, _)) => Err(format!(
                "limits.{name} is 0: no evaluation could run under it"
            )),
            None => Ok(()),
        }
    }

    /// These limits with a policy's overrides applied.
    pub fn with_overrides(&self, o: &LimitOverrides) -> Limits {
        Limits {
            fuel: o.fuel.unwrap_or(self.fuel),
            timeout_ms: o.timeout_ms.unwrap_or(self.timeout_ms),
            memory_bytes: o.memory_bytes.unwrap_or(self.memory_bytes),
            table_elements: o.table_elements.unwrap_or(self.table_elements),
            instances: o.instances.unwrap_or(self.instances),
            tables: o.tables.unwrap_or(self.tables),
            memories: o.memories.unwrap_or(self.memories),
            message_bytes: o.message_bytes.unwrap_or(self.message_bytes),
            metadata_entries: o.metadata_entries.unwrap_or(self.metadata_entries),
            log_records: o.log_records.unwrap_or(self.log_records),
            log_bytes: o.log_bytes.unwrap_or(self.log_bytes),
            warm_instances: o.warm_instances.unwrap_or(self.warm_instances),
        }
    }
}

/// A policy's own limit settings; unset fields keep the host default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitOverrides {
    /// See [`Limits::fuel`].
    pub fuel: Option<u64>,
    /// See [`Limits::timeout_ms`].
    pub timeout_ms: Option<u64>,
    /// See [`Limits::memory_bytes`].
    pub memory_bytes: Option<usize>,
    /// See [`Limits::table_elements`].
    pub table_elements: Option<usize>,
    /// See [`Limits::instances`].
    pub instances: Option<usize>,
    /// See [`Limits::tables`].
    pub tables: Option<usize>,
    /// See [`Limits::memories`].
    pub memories: Option<usize>,
    /// See [`Limits::message_bytes`].
    pub message_bytes: Option<usize>,
    /// See [`Limits::metadata_entries`].
    pub metadata_entries: Option<usize>,
    /// See [`Limits::log_records`].
    pub log_records: Option<usize>,
    /// See [`Limits::log_bytes`].
    pub log_bytes: Option<usize>,
    /// See [`Limits::warm_instances`].
    pub warm_instances: Option<usize>,
}
