//! Instance allocation: wasmtime's pooling allocator with copy-on-write memory
//! images, sized for discount policies (a Rust policy and a 12–18 MB JS or Python
//! component alike). A component that does not fit the pool is loaded into an
//! on-demand engine instead.
//!
//! Every evaluation still gets a fresh instance: the pool only makes a fresh
//! instance cheap (the slot's memory is reset to the component's image, dirty
//! pages only where the kernel offers `PAGEMAP_SCAN` and the process cannot swap).

use serde::{Deserialize, Serialize};
use std::path::Path;
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
    /// returned to the kernel; used only with [`MemoryReset::DirtyPages`].
    pub keep_resident_bytes: usize,
    /// Whether slots are reset by a `PAGEMAP_SCAN` of their dirty pages.
    pub pagemap_scan: PagemapScan,
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
            pagemap_scan: PagemapScan::Auto,
            max_unused_warm_slots: 32,
            guard_pages: false,
        }
    }
}

impl PoolSettings {
    /// Sets `config`'s allocation strategy to this pool (or on demand when disabled);
    /// returns how the pool resets memory (none on demand).
    pub fn apply(&self, config: &mut Config) -> Option<MemoryReset> {
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
            return None;
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
        let available = PoolingAllocationConfig::is_pagemap_scan_available();
        let reset = memory_reset(self.pagemap_scan, available, swap_possible);
        // Decommitting keeps nothing resident: without the scan, keeping memory resident
        // means memset-ing all of it on every reset, which costs more than the faults.
        match reset {
            MemoryReset::DirtyPages => {
                pool.pagemap_scan(Enabled::Yes)
                    .linear_memory_keep_resident(self.keep_resident_bytes)
                    .table_keep_resident(self.keep_resident_bytes.min(1 << 20));
            }
            MemoryReset::Decommit(_) => {
                pool.pagemap_scan(Enabled::No);
            }
        }
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        Some(reset)
    }
}

/// `[pool] pagemap_scan`: whether slots are reset by a scan of their dirty pages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PagemapScan {
    /// Where the kernel offers `PAGEMAP_SCAN` and this process cannot swap.
    #[default]
    Auto,
    /// Wherever the kernel offers `PAGEMAP_SCAN`, swap or not.
    Yes,
    /// Never: every reset returns the slot's memory to the kernel.
    No,
}

/// How the pool resets a slot's memory for the slot's next instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryReset {
    /// The pages the last instance wrote are copied back from the image and stay resident.
    DirtyPages,
    /// The slot's memory goes back to the kernel (`madvise`); the next instance faults it in.
    Decommit(DecommitReason),
}

/// Why the pool does not reset dirty pages only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecommitReason {
    /// `pagemap_scan = "no"`.
    Setting,
    /// The kernel has no `PAGEMAP_SCAN` (before Linux 6.7, or not Linux).
    NoPagemapScan,
    /// The process can swap, and the scan misses pages that were swapped out.
    Swap,
}

impl std::fmt::Display for MemoryReset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MemoryReset::DirtyPages => "dirty pages (PAGEMAP_SCAN)",
            MemoryReset::Decommit(DecommitReason::Setting) => "decommit (pagemap_scan = \"no\")",
            MemoryReset::Decommit(DecommitReason::NoPagemapScan) => {
                "decommit (the kernel has no PAGEMAP_SCAN)"
            }
            MemoryReset::Decommit(DecommitReason::Swap) => {
                "decommit (this process can swap: a dirty page swapped out would escape the dirty-page reset)"
            }
        })
    }
}

/// The reset for a setting, whether the kernel offers `PAGEMAP_SCAN`, and whether the
/// process can swap.
///
/// The scan finds written pages that are present. A page written during an
/// evaluation and swapped out before the instance is dropped is not present: the
/// scan skips it, nothing resets it, and the slot's next instance reads it back
/// (wasmtime 48). Where the process can swap, `auto` therefore decommits.
fn memory_reset(
    setting: PagemapScan,
    available: bool,
    swap_possible: impl FnOnce() -> bool,
) -> MemoryReset {
    match setting {
        PagemapScan::No => MemoryReset::Decommit(DecommitReason::Setting),
        _ if !available => MemoryReset::Decommit(DecommitReason::NoPagemapScan),
        PagemapScan::Yes => MemoryReset::DirtyPages,
        PagemapScan::Auto if swap_possible() => MemoryReset::Decommit(DecommitReason::Swap),
        PagemapScan::Auto => MemoryReset::DirtyPages,
    }
}

/// Whether this process's memory can go to swap: `/proc/swaps` lists a device or file
/// (or can't be read), and no cgroup (v2) above the process sets `memory.swap.max` to 0.
fn swap_possible() -> bool {
    let listed = std::fs::read_to_string("/proc/swaps").map_or(true, |text| swaps_listed(&text));
    listed && {
        let cgroup = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        !cgroup_swap_off(Path::new("/sys/fs/cgroup"), &cgroup)
    }
}

/// Whether a cgroup v2 `memory.swap.max` of 0 holds for the process whose
/// `/proc/self/cgroup` is `proc_cgroup`, under the cgroup filesystem at `root`.
fn cgroup_swap_off(root: &Path, proc_cgroup: &str) -> bool {
    let Some(path) = proc_cgroup.lines().find_map(|l| l.strip_prefix("0::")) else {
        return false;
    };
    let mut dir = root.join(path.trim().trim_start_matches('/'));
    loop {
        let max = std::fs::read_to_string(dir.join("memory.swap.max"));
        if max.is_ok_and(|m| m.trim() == "0") {
            return true;
        }
        if dir == root || !dir.pop() || !dir.starts_with(root) {
            return false;
        }
    }
}

/// Whether a `/proc/swaps` text lists anything below its header.
fn swaps_listed(text: &str) -> bool {
    text.lines().skip(1).any(|line| !line.trim().is_empty())
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
    fn dirty_page_reset_only_without_swap_unless_asked_for() {
        use DecommitReason::*;
        use MemoryReset::*;
        let swap = || true;
        let none = || false;
        assert_eq!(memory_reset(PagemapScan::Auto, true, none), DirtyPages);
        assert_eq!(memory_reset(PagemapScan::Auto, true, swap), Decommit(Swap));
        assert_eq!(memory_reset(PagemapScan::Yes, true, swap), DirtyPages);
        assert_eq!(memory_reset(PagemapScan::No, true, none), Decommit(Setting));
        for setting in [PagemapScan::Auto, PagemapScan::Yes] {
            assert_eq!(memory_reset(setting, false, none), Decommit(NoPagemapScan));
        }
        let header = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n";
        assert!(!swaps_listed(header));
        assert!(!swaps_listed(""));
        assert!(swaps_listed(&format!(
            "{header}/swapfile                               file\t\t65532\t\t0\t\t-2\n"
        )));
    }

    #[test]
    fn a_cgroup_with_swap_max_zero_cannot_swap() {
        let root = std::env::temp_dir().join(format!("cgroup-swap-{}", std::process::id()));
        let pod = root.join("kubepods/pod1");
        let container = pod.join("c1");
        std::fs::create_dir_all(&container).unwrap();
        std::fs::write(container.join("memory.swap.max"), "max\n").unwrap();
        let mine = "0::/kubepods/pod1/c1\n";
        assert!(!cgroup_swap_off(&root, mine), "max everywhere");
        std::fs::write(pod.join("memory.swap.max"), "0\n").unwrap();
        assert!(cgroup_swap_off(&root, mine), "an ancestor's 0 holds");
        assert!(!cgroup_swap_off(&root, "0::/other\n"), "another cgroup");
        assert!(
            !cgroup_swap_off(&root, "4:memory:/kubepods/pod1/c1\n"),
            "cgroup v1"
        );
        std::fs::write(root.join("memory.swap.max"), "0").unwrap();
        assert!(cgroup_swap_off(&root, "0::/\n"), "a namespaced root");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn settings_parse_from_toml() {
        let s: PoolSettings = toml::from_str("instances = 8\nenabled = false").unwrap();
        assert_eq!(s.instances, 8);
        assert!(!s.enabled);
        assert_eq!(s.table_elements, PoolSettings::default().table_elements);
        assert_eq!(s.pagemap_scan, PagemapScan::Auto);
        let s: PoolSettings = toml::from_str("pagemap_scan = \"no\"").unwrap();
        assert_eq!(s.pagemap_scan, PagemapScan::No);
        assert!(toml::from_str::<PoolSettings>("pagemap_scan = \"maybe\"").is_err());
    }
}
