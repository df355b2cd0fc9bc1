//! Instance allocation: wasmtime's pooling allocator with copy-on-write memory
//! images, sized for discount policies (a Rust policy and a 12–18 MB JS or Python
//! component alike). A component that does not fit the pool is loaded into an
//! on-demand engine instead.
//!
//! Every evaluation still gets a fresh instance: the pool only makes a fresh
//! instance cheap (the slot's memory is reset to the component's image, dirty
//! pages only where the kernel offers `PAGEMAP_SCAN`).

use serde::{Deserialize, Serialize};
use std::sync::{Arc, Condvar, Mutex};
use wasmtime::{Config, Enabled, InstanceAllocationStrategy, PoolingAllocationConfig};

/// Sizing of the instance pool; `[pool]` in the host configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PoolSettings {
    /// Use the pooling allocator; false allocates every instance on demand.
    pub enabled: bool,
    /// Concurrent evaluations (component instances) the pool holds; more wait.
    pub instances: u32,
    /// Linear memories per component instance, on average (pool total = this × instances).
    pub memories_per_instance: u32,
    /// Tables per component instance, on average (pool total = this × instances).
    pub tables_per_instance: u32,
    /// Core instances per component instance, on average (pool total = this × instances).
    pub core_instances_per_instance: u32,
    /// Largest linear memory of a pooled instance, in bytes; a policy whose
    /// `memory_bytes` limit is larger is loaded on demand.
    pub max_memory_bytes: usize,
    /// Most elements of one pooled table (componentize-js and -py need tens of thousands).
    pub table_elements: usize,
    /// Most tables one core module may define.
    pub tables_per_module: u32,
    /// Largest core instance metadata (vmctx), in bytes.
    pub max_core_instance_bytes: usize,
    /// Largest component instance metadata, in bytes.
    pub max_component_instance_bytes: usize,
    /// Bytes of each memory slot reset in place (dirty pages only) rather than
    /// returned to the kernel; used only where `PAGEMAP_SCAN` is available.
    pub keep_resident_bytes: usize,
    /// Used slots kept warm for components that are not running.
    pub max_unused_warm_slots: u32,
    /// Reserve 4 GiB plus guard pages per memory, so compiled code elides bounds
    /// checks; costs an `mprotect` and a TLB flush per evaluation whose memory grew.
    /// False: explicit bounds checks, no guard pages, no per-evaluation `mprotect`.
    pub guard_pages: bool,
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            enabled: true,
            instances: 256,
            memories_per_instance: 2,
            tables_per_instance: 4,
            core_instances_per_instance: 24,
            max_memory_bytes: 1 << 30,
            table_elements: 100_000,
            tables_per_module: 4,
            max_core_instance_bytes: 4 << 20,
            max_component_instance_bytes: 4 << 20,
            keep_resident_bytes: 64 << 20,
            max_unused_warm_slots: 32,
            guard_pages: false,
        }
    }
}

impl PoolSettings {
    /// Sets `config`'s allocation strategy to this pool (or on demand when disabled).
    pub fn apply(&self, config: &mut Config) {
        config.memory_init_cow(true);
        if !self.guard_pages {
            config
                .signals_based_traps(false)
                .memory_guard_size(0)
                .guard_before_linear_memory(false)
                .memory_reservation(self.max_memory_bytes as u64)
                .memory_reservation_for_growth(0);
        }
        if !self.enabled {
            config.allocation_strategy(InstanceAllocationStrategy::OnDemand);
            return;
        }
        let n = self.instances.max(1);
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(n)
            .total_core_instances(n.saturating_mul(self.core_instances_per_instance.max(1)))
            .total_memories(n.saturating_mul(self.memories_per_instance.max(1)))
            .total_tables(n.saturating_mul(self.tables_per_instance.max(1)))
            .max_memory_size(self.max_memory_bytes)
            .table_elements(self.table_elements)
            .max_tables_per_module(self.tables_per_module.max(1))
            .max_core_instance_size(self.max_core_instance_bytes)
            .max_component_instance_size(self.max_component_instance_bytes)
            .max_unused_warm_slots(self.max_unused_warm_slots);
        // Without PAGEMAP_SCAN, keeping memory resident means memset-ing all of it
        // on every reset, which costs more than the page faults it saves.
        if PoolingAllocationConfig::is_pagemap_scan_available() {
            pool.pagemap_scan(Enabled::Yes)
                .linear_memory_keep_resident(self.keep_resident_bytes)
                .table_keep_resident(self.keep_resident_bytes.min(1 << 20));
        }
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
}

/// A counting semaphore for blocking callers: bounds concurrent pooled instances
/// so a burst waits for a slot instead of failing on an exhausted pool.
pub(crate) struct Permits {
    state: Mutex<Count>,
    freed: Condvar,
}

/// Free permits, and callers waiting for one.
struct Count {
    free: u32,
    waiting: u32,
}

/// One held permit, given back on drop.
pub(crate) struct Permit(Arc<Permits>);

impl Permits {
    /// `n` permits.
    pub(crate) fn new(n: u32) -> Self {
        Permits {
            state: Mutex::new(Count {
                free: n.max(1),
                waiting: 0,
            }),
            freed: Condvar::new(),
        }
    }

    fn count(&self) -> std::sync::MutexGuard<'_, Count> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for a permit.
    pub(crate) fn acquire(self: &Arc<Self>) -> Permit {
        let mut count = self.count();
        while count.free == 0 {
            count.waiting += 1;
            count = self.freed.wait(count).unwrap_or_else(|p| p.into_inner());
            count.waiting -= 1;
        }
        count.free -= 1;
        Permit(self.clone())
    }

    /// A permit if one is free now.
    pub(crate) fn try_acquire(self: &Arc<Self>) -> Option<Permit> {
        let mut count = self.count();
        if count.free == 0 {
            return None;
        }
        count.free -= 1;
        Some(Permit(self.clone()))
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut count = self.0.count();
        count.free += 1;
        // A notify is a futex syscall even with nobody waiting; most drops have no waiter.
        let wake = count.waiting > 0;
        drop(count);
        if wake {
            self.0.freed.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn permits_bound_concurrency() {
        let permits = Arc::new(Permits::new(1));
        let held = permits.acquire();
        let p2 = permits.clone();
        let waiter = std::thread::spawn(move || {
            let _p = p2.acquire();
        });
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(!waiter.is_finished(), "second acquire waits");
        drop(held);
        waiter.join().unwrap();
    }

    #[test]
    fn every_waiter_gets_a_permit_in_turn() {
        let permits = Arc::new(Permits::new(2));
        let held = [permits.acquire(), permits.acquire()];
        let in_use = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let waiters: Vec<_> = (0..6)
            .map(|_| {
                let (permits, in_use) = (permits.clone(), in_use.clone());
                std::thread::spawn(move || {
                    let _p = permits.acquire();
                    let now = in_use.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                    std::thread::sleep(std::time::Duration::from_millis(2));
                    in_use.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                    now
                })
            })
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(permits.count().waiting, 6, "all six wait");
        drop(held);
        let most = waiters.into_iter().map(|w| w.join().unwrap()).max();
        assert!(most <= Some(2), "never more than two at once: {most:?}");
        let count = permits.count();
        assert_eq!((count.free, count.waiting), (2, 0));
    }

    #[test]
    fn settings_parse_from_toml() {
        let s: PoolSettings = toml::from_str("instances = 8\nenabled = false").unwrap();
        assert_eq!(s.instances, 8);
        assert!(!s.enabled);
        assert_eq!(s.table_elements, PoolSettings::default().table_elements);
    }
}
