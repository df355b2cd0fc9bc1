//! Sandboxed evaluation: compile and validate a policy component once, then give
//! every evaluation a fresh store and instance under the policy's limits.

use crate::bindings::{
    self, stripe_discount::policy::host, CheckedPolicyPre, CheckoutSession, Decision,
    DiscountPolicy, DiscountPolicyPre, PolicyRequest,
};
use crate::cache::{
    Cached, CachedArtifact, ComponentCache, FunctionCache, DEFAULT_CACHE_MAX_BYTES,
};
use crate::limits::Limits;
use crate::pool::{MemoryReset, Permit, Permits, PoolSettings};
use crate::settings::PolicySettings;
use crate::{fixtures, mapping, preinit};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, ResourceLimiter, Store, Trap};

/// The first clock of the warm-up evaluations (the others follow the load's): 2026-01-01T00:00:00Z.
const WARM_UP_TIME: i64 = 1_767_225_600;

/// Changes whenever how a warm-up snapshot is taken changes, so cached ones are retaken.
const WARM_UP_VERSION: &str = "warm-up-3";

/// How often the epoch ticks; the wall-clock deadline is counted in ticks.
const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Epoch ticks from now until at least `wall` has passed (one more for the tick in progress).
fn ticks_for(wall: Duration) -> u64 {
    let tick = EPOCH_TICK.as_micros();
    u64::try_from(wall.as_micros().div_ceil(tick))
        .unwrap_or(u64::MAX)
        .saturating_add(1)
}

/// What [`Policy::try_evaluate_within`] did.
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "made once per evaluation and taken apart at once: a box would only add an allocation"
)]
pub enum Attempt {
    /// The evaluation, complete, and its instance still to tear down.
    Done(Evaluation, Teardown),
    /// Nothing: every pool slot is in use.
    Busy,
    /// The policy ran past the budget and was stopped; its evaluation is discarded.
    OverBudget,
}

/// Where an evaluation's fresh instance comes from.
enum Fresh {
    /// One instantiated ahead of the request.
    Warm(WarmInstance),
    /// One instantiated now, in the pool slot of this permit (none: not pooled).
    Instantiate(Option<Permit>),
}

/// An evaluation's spent instance. Dropping it resets the instance's pool slot for the
/// next evaluation: a few µs for a Rust policy, hundreds for a JavaScript or Python heap.
/// A caller on a request path can drop it once the decision is on its way. Until then
/// the instance keeps its pool slot: evaluations wait for a slot once all are held.
pub struct Teardown {
    // Fields drop in order: the slot is reset before its permit is given back.
    _store: Store<StoreState>,
    permit: Option<Permit>,
}

impl std::fmt::Debug for Teardown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Teardown")
            .field("pooled", &self.permit.is_some())
            .finish_non_exhaustive()
    }
}

/// Engine-wide settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EngineConfig {
    /// Default limits; a policy's settings may override them.
    pub limits: Limits,
    /// Directory of compiled artifacts, keyed by content hash and engine version.
    pub cache_dir: Option<PathBuf>,
    /// Size cap of `cache_dir`, in bytes (0: no cap); least recently used files go first.
    pub cache_max_bytes: u64,
    /// Instance allocation: the pooling allocator's sizing.
    pub pool: PoolSettings,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            limits: Limits::default(),
            cache_dir: None,
            cache_max_bytes: DEFAULT_CACHE_MAX_BYTES,
            pool: PoolSettings::default(),
        }
    }
}

/// The wasmtime engine and linker every policy is loaded into.
#[derive(Clone)]
pub struct PolicyEngine {
    inner: Arc<EngineInner>,
}

struct EngineInner {
    /// Pooled (unless the pool is disabled): where policies load by default.
    primary: Backend,
    /// On demand, created when a policy does not fit the pool.
    on_demand: OnceLock<Result<Backend, String>>,
    /// What the engine was made from: the pool's sizing, the default limits.
    config: EngineConfig,
    cache: Option<ComponentCache>,
    /// Compiled functions, shared by both backends (see [`FunctionCache`]).
    functions: Option<Arc<FunctionCache>>,
    ticker_stop: Arc<AtomicBool>,
    /// Fuel and epoch deadline on; off only in [`PolicyEngine::unmetered`].
    metered: bool,
}

/// A wasmtime engine with its linker and, when pooled, the pool's permits.
struct Backend {
    engine: Engine,
    linker: Linker<StoreState>,
    permits: Option<Arc<Permits>>,
    /// How the pool resets memory; none on demand.
    memory_reset: Option<MemoryReset>,
}

impl Backend {
    /// Fuel metering, epoch interruption, the host interface, and `pool`'s allocation.
    fn new(
        pool: &PoolSettings,
        ticker_stop: &Arc<AtomicBool>,
        metered: bool,
        functions: Option<&Arc<FunctionCache>>,
    ) -> anyhow::Result<Self> {
        let mut wasm = Config::new();
        if let Some(functions) = functions {
            wasm.enable_incremental_compilation(functions.clone())?;
        }
        wasm.consume_fuel(metered);
        wasm.epoch_interruption(metered);
        wasm.max_wasm_stack(512 * 1024);
        let memory_reset = pool.apply(&mut wasm);
        let engine = Engine::new(&wasm)?;
        let mut linker = Linker::new(&engine);
        DiscountPolicy::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
        if metered {
            spawn_epoch_ticker(engine.weak(), ticker_stop.clone());
        }
        Ok(Backend {
            engine,
            linker,
            permits: pool.enabled.then(|| Arc::new(Permits::new(pool.instances))),
            memory_reset,
        })
    }

    /// Compiles a component with this backend's engine.
    fn compile(&self, bytes: &[u8]) -> Result<Component, LoadError> {
        Component::new(&self.engine, bytes).map_err(|e| LoadError::Compile(format!("{e:#}")))
    }
}

impl Drop for EngineInner {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

/// Why a component could not be loaded.
#[derive(Debug, Clone, PartialEq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
pub enum LoadError {
    /// The bytes are not WebAssembly at all.
    #[error("not a WebAssembly component: {0}")]
    NotWasm(String),
    /// A core module, not a component.
    #[error(
        "a core WebAssembly module, not a component; wrap it with `policy-runner componentize`"
    )]
    CoreModule,
    /// Compilation failed.
    #[error("the component does not compile: {0}")]
    Compile(String),
    /// The component imports something the host does not grant.
    #[error("the component imports what the host does not grant: {}", .0.join(", "))]
    UngrantedImport(Vec<String>),
    /// The component is not a `discount-policy` world.
    #[error("the component is not a stripe-discount:policy/discount-policy world: {0}")]
    WrongWorld(String),
    /// Instantiation failed under the policy's limits.
    #[error("the component does not instantiate: {0}")]
    Instantiate(String),
    /// Pre-initialisation (`warm_up = true`) failed.
    #[error("the component cannot be warmed up: {0}")]
    WarmUp(String),
}

/// Why an evaluation produced no decision.
#[derive(Debug, Clone, PartialEq, thiserror::Error, Serialize)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
pub enum EvalError {
    /// The instruction budget ran out.
    #[error("the policy ran out of fuel (budget {0} instructions)")]
    FuelExhausted(u64),
    /// The wall-clock deadline passed.
    #[error("the policy exceeded its deadline of {0} ms")]
    Timeout(u64),
    /// Linear memory grew past the cap.
    #[error("the policy exceeded its memory cap of {0} bytes")]
    MemoryLimit(usize),
    /// The policy trapped or panicked.
    #[error("the policy trapped: {0}")]
    Trap(String),
    /// The decision is larger than the limits allow.
    #[error("the policy's output is too large: {0}")]
    OutputTooLarge(String),
    /// A fresh instance could not be created.
    #[error("the policy could not be instantiated: {0}")]
    Instantiate(String),
}

/// Where "now" comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// The system clock.
    System,
    /// A fixed Unix time in seconds, for reproducible runs.
    Fixed(i64),
}

impl Clock {
    /// The current Unix time in seconds.
    pub fn now(self) -> i64 {
        match self {
            Clock::System => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0),
            Clock::Fixed(t) => t,
        }
    }
}

/// One structured log record a policy wrote.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogRecord {
    /// trace, debug, info, warn or error.
    pub level: &'static str,
    /// The message.
    pub message: String,
    /// Structured fields.
    pub fields: Vec<(String, String)>,
}

/// What one evaluation cost, against its limits.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Cost {
    /// Fuel (instructions) consumed.
    pub fuel_used: u64,
    /// The fuel budget.
    pub fuel_budget: u64,
    /// Peak linear memory, in bytes.
    pub peak_memory_bytes: usize,
    /// The memory cap.
    pub memory_cap_bytes: usize,
    /// Instantiation and call, in microseconds.
    pub wall_time_us: u64,
    /// The deadline, in milliseconds.
    pub timeout_ms: u64,
    /// Log records dropped past the log limits.
    pub logs_dropped: usize,
}

/// The result of one evaluation: the decision or why there is none, logs and cost.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// The decision, or why the policy gave none.
    pub result: Result<Decision, EvalError>,
    /// What the policy logged.
    pub logs: Vec<LogRecord>,
    /// What it cost.
    pub cost: Cost,
}

/// A loaded, validated policy version, ready to evaluate.
#[derive(Clone)]
pub struct Policy {
    /// The policy's name (its file stem).
    pub name: String,
    /// Content hash of the component (hex sha-256).
    pub version: String,
    /// Content hash of the settings (hex sha-256).
    pub settings_digest: String,
    /// Its settings.
    pub settings: Arc<PolicySettings>,
    /// Effective limits: host defaults with the policy's overrides.
    pub limits: Limits,
    /// Time spent compiling (and warming up), or loading from the cache.
    pub compile_time: Duration,
    /// Whether the compiled artifact came from the cache.
    pub from_cache: bool,
    /// Whether its instances come from the pooling allocator (false: on demand).
    pub pooled: bool,
    config: Arc<BTreeMap<String, String>>,
    pre: CheckedPolicyPre<StoreState>,
    engine: Engine,
    permits: Option<Arc<Permits>>,
    warm: Option<Arc<WarmPool>>,
    pace: Arc<Pace>,
    /// The cached artifact it was loaded from, kept from pruning while the policy lives.
    _artifact: Option<Arc<CachedArtifact>>,
}

/// An evaluation that used at most this much CPU time (instantiation and call) counts
/// as quick; time its thread spent preempted does not count.
pub const QUICK_EVALUATION: Duration = Duration::from_millis(1);
/// An evaluation stopped at its inline budget after less CPU time than this was
/// preempted rather than slow, and keeps its policy's streak.
const PREEMPTED_BELOW: Duration = Duration::from_micros(500);
/// Consecutive quick evaluations after which a policy version counts as reliably quick.
pub const QUICK_STREAK: u32 = 32;

/// When an evaluation started, by the wall clock and by its thread's CPU clock.
#[derive(Debug, Clone, Copy)]
struct Started {
    wall: Instant,
    cpu: Option<Duration>,
}

impl Started {
    fn now() -> Self {
        Started {
            wall: Instant::now(),
            cpu: thread_cpu_time(),
        }
    }

    /// CPU time the thread has used since; the wall time where its CPU clock is missing.
    fn cpu_used(&self) -> Duration {
        match (self.cpu, thread_cpu_time()) {
            (Some(start), Some(now)) => now.saturating_sub(start),
            _ => self.wall.elapsed(),
        }
    }
}

/// CPU time the calling thread has used so far (user and system), through libc's
/// `clock_gettime(CLOCK_THREAD_CPUTIME_ID)`.
fn thread_cpu_time() -> Option<Duration> {
    cpu_time::ThreadTime::try_now()
        .ok()
        .map(|t| t.as_duration())
}

/// How a policy version's recent evaluations went: the run of quick ones so far.
#[derive(Debug, Default)]
struct Pace {
    quick_streak: AtomicU32,
}

impl Pace {
    /// Extends the streak after a quick evaluation, ends it after a slow one.
    fn record(&self, cpu: Duration) {
        if cpu <= QUICK_EVALUATION {
            let _ = self
                .quick_streak
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                    (n < QUICK_STREAK).then_some(n + 1)
                });
        } else {
            self.end_streak();
        }
    }

    /// Ends the streak.
    fn end_streak(&self) {
        self.quick_streak.store(0, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("name", &self.name)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// Per-evaluation state: nothing survives from one evaluation to the next.
struct StoreState {
    config: Arc<BTreeMap<String, String>>,
    now: i64,
    logs: Vec<LogRecord>,
    log_bytes: usize,
    logs_dropped: usize,
    limiter: Limiter,
}

struct Limiter {
    limits: Limits,
    memory_bytes: usize,
    peak_memory_bytes: usize,
}

/// The error a memory grow past the cap traps with.
#[derive(Debug)]
struct MemoryCapExceeded(usize);

impl std::fmt::Display for MemoryCapExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "linear memory cap of {} bytes exceeded", self.0)
    }
}

impl std::error::Error for MemoryCapExceeded {}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self.memory_bytes - current.min(self.memory_bytes) + desired;
        if total > self.limits.memory_bytes {
            return Err(MemoryCapExceeded(self.limits.memory_bytes).into());
        }
        self.memory_bytes = total;
        self.peak_memory_bytes = self.peak_memory_bytes.max(total);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= self.limits.table_elements)
    }

    fn instances(&self) -> usize {
        self.limits.instances
    }

    fn tables(&self) -> usize {
        self.limits.tables
    }

    fn memories(&self) -> usize {
        self.limits.memories
    }
}

impl host::Host for StoreState {
    fn log(&mut self, level: host::LogLevel, message: String, fields: Vec<(String, String)>) {
        let size = message.len() + fields.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
        let limits = &self.limiter.limits;
        if self.logs.len() >= limits.log_records || self.log_bytes + size > limits.log_bytes {
            self.logs_dropped += 1;
            return;
        }
        self.log_bytes += size;
        self.logs.push(LogRecord {
            level: match level {
                host::LogLevel::Trace => "trace",
                host::LogLevel::Debug => "debug",
                host::LogLevel::Info => "info",
                host::LogLevel::Warn => "warn",
                host::LogLevel::Error => "error",
            },
            message,
            fields,
        });
    }

    fn config(&mut self, key: String) -> Option<String> {
        self.config.get(&key).cloned()
    }

    fn config_entries(&mut self) -> Vec<(String, String)> {
        self.config
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    fn now(&mut self) -> i64 {
        self.now
    }
}

impl bindings::stripe_discount::policy::types::Host for StoreState {}

/// The compilation cache's key for a component (by content hash) with these settings.
fn cache_key(version: &str, settings: &PolicySettings) -> String {
    if settings.warm_up {
        // The snapshot depends on the component, its settings and how it is taken.
        let key = format!("{version}-{}-{WARM_UP_VERSION}", settings.digest());
        content_hash(key.as_bytes())
    } else {
        version.to_string()
    }
}

/// Hex sha-256 of some bytes.
pub fn content_hash(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl PolicyEngine {
    /// Creates the engine: fuel metering, epoch interruption and the host interface.
    pub fn new(config: EngineConfig) -> anyhow::Result<Self> {
        Self::build(config, true)
    }

    /// Benchmarks only: the same engine without fuel metering or the epoch deadline,
    /// to measure what those limits cost. Never serve policies with it.
    pub fn unmetered(config: EngineConfig) -> anyhow::Result<Self> {
        Self::build(config, false)
    }

    fn build(config: EngineConfig, metered: bool) -> anyhow::Result<Self> {
        let functions = match &config.cache_dir {
            Some(dir) => Some(Arc::new(FunctionCache::new(dir)?)),
            None => None,
        };
        let cache = config
            .cache_dir
            .clone()
            .map(|dir| ComponentCache::new(dir, config.cache_max_bytes))
            .transpose()?;
        let ticker_stop = Arc::new(AtomicBool::new(false));
        let primary = Backend::new(&config.pool, &ticker_stop, metered, functions.as_ref())?;
        Ok(PolicyEngine {
            inner: Arc::new(EngineInner {
                primary,
                on_demand: OnceLock::new(),
                config,
                cache,
                functions,
                ticker_stop,
                metered,
            }),
        })
    }

    /// The settings this engine was created with.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// How the instance pool resets memory between instances; none when the pool is off.
    pub fn memory_reset(&self) -> Option<MemoryReset> {
        self.inner.primary.memory_reset
    }

    /// Prunes the compilation cache to its cap now (it also is after every compilation),
    /// keeping the artifacts of loaded policies; without a cache, does nothing.
    pub fn prune_cache(&self) {
        if let Some(cache) = &self.inner.cache {
            cache.prune();
        }
    }

    /// Whether [`PolicyEngine::load`] would take this component, with these settings,
    /// from the compilation cache instead of compiling it (false without a cache).
    pub fn is_compiled(&self, component: &[u8], settings: &PolicySettings) -> bool {
        let Some(cache) = &self.inner.cache else {
            return false;
        };
        let key = cache_key(&content_hash(component), settings);
        let backend = if self.is_on_demand(settings) {
            match self.inner.on_demand.get() {
                Some(Ok(on_demand)) => on_demand,
                _ => return false,
            }
        } else {
            &self.inner.primary
        };
        cache.contains(&backend.engine, &key)
    }

    /// Whether a policy with these settings loads on demand: the pool is on, and its
    /// memory limit is above the pool's slots.
    fn is_on_demand(&self, settings: &PolicySettings) -> bool {
        let pool = &self.inner.config.pool;
        let limits = self.inner.config.limits.with_overrides(&settings.limits);
        pool.enabled && limits.memory_bytes > pool.max_memory_bytes
    }

    /// The host's default limits.
    pub fn default_limits(&self) -> &Limits {
        &self.inner.config.limits
    }

    /// The on-demand backend, created on first use.
    fn on_demand(&self) -> Result<&Backend, LoadError> {
        let pool = PoolSettings {
            enabled: false,
            ..self.inner.config.pool.clone()
        };
        self.inner
            .on_demand
            .get_or_init(|| {
                Backend::new(
                    &pool,
                    &self.inner.ticker_stop,
                    self.inner.metered,
                    self.inner.functions.as_ref(),
                )
                .map_err(|e| format!("{e:#}"))
            })
            .as_ref()
            .map_err(|e| LoadError::Instantiate(format!("on-demand engine: {e}")))
    }

    /// Compiles (or loads from the cache) and validates a policy: a component of
    /// the right world, importing only what the host grants, that instantiates.
    /// A component that does not fit the instance pool is loaded on demand.
    pub fn load(
        &self,
        name: &str,
        component: &[u8],
        settings: PolicySettings,
    ) -> Result<Policy, LoadError> {
        self.prepare(name, component, settings).map(WarmPool::start)
    }

    /// Compiles and validates a policy as [`PolicyEngine::load`] does, to put it in the
    /// compilation cache for a later `load` (by this process or another with the same
    /// configuration); true when it was already there.
    pub fn compile(
        &self,
        name: &str,
        component: &[u8],
        settings: PolicySettings,
    ) -> Result<bool, LoadError> {
        self.prepare(name, component, settings)
            .map(|policy| policy.from_cache)
    }

    /// A loaded policy without its warm instances.
    fn prepare(
        &self,
        name: &str,
        component: &[u8],
        settings: PolicySettings,
    ) -> Result<Policy, LoadError> {
        check_component_header(component)?;
        if !self.inner.config.pool.enabled {
            return self.load_into(&self.inner.primary, name, component, settings);
        }
        if self.is_on_demand(&settings) {
            return self.load_into(self.on_demand()?, name, component, settings);
        }
        match self.load_into(&self.inner.primary, name, component, settings.clone()) {
            Err(LoadError::Instantiate(pooled_error)) => {
                let policy = self.load_into(self.on_demand()?, name, component, settings)?;
                tracing::warn!(policy = name, %pooled_error, "the policy does not fit the instance pool; its instances are allocated on demand");
                Ok(policy)
            }
            other => other,
        }
    }

    fn load_into(
        &self,
        backend: &Backend,
        name: &str,
        component: &[u8],
        settings: PolicySettings,
    ) -> Result<Policy, LoadError> {
        let version = content_hash(component);
        let started = Instant::now();
        let compile = |bytes: &[u8]| backend.compile(bytes);
        let key = cache_key(&version, &settings);
        let cached = if settings.warm_up {
            self.cached(backend, &key, || {
                compile(&self.warm_up(backend, name, component, &settings)?)
            })?
        } else {
            self.cached(backend, &key, || compile(component))?
        };
        let compile_time = started.elapsed();
        let mut policy = self.validate(backend, name, cached.component, settings)?;
        policy.version = version;
        policy.from_cache = cached.from_cache;
        policy._artifact = cached.artifact;
        policy.compile_time = compile_time;
        Ok(policy)
    }

    /// The compiled component from the cache under `key`, else from `compile`.
    fn cached(
        &self,
        backend: &Backend,
        key: &str,
        compile: impl FnOnce() -> Result<Component, LoadError>,
    ) -> Result<Cached, LoadError> {
        match &self.inner.cache {
            Some(cache) => cache.load_or_compile(&backend.engine, key, compile),
            None => compile().map(|component| Cached {
                component,
                from_cache: false,
                artifact: None,
            }),
        }
    }

    /// Validates a compiled policy: the right world, importing only what the host
    /// grants, instantiating under the policy's limits.
    fn validate(
        &self,
        backend: &Backend,
        name: &str,
        component: Component,
        settings: PolicySettings,
    ) -> Result<Policy, LoadError> {
        let engine = &backend.engine;
        let settings_digest = settings.digest();
        let ungranted: Vec<String> = component
            .component_type()
            .imports(engine)
            .map(|(name, _)| name.to_string())
            .filter(|name| !bindings::is_granted(name))
            .collect();
        if let Some(why) = ungranted
            .iter()
            .find_map(|i| bindings::other_contract_version(i))
        {
            return Err(LoadError::WrongWorld(why));
        }
        if !ungranted.is_empty() {
            return Err(LoadError::UngrantedImport(ungranted));
        }
        let pre = backend
            .linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Instantiate(format!("{e:#}")))?;
        let pre = DiscountPolicyPre::new(pre)
            .map(CheckedPolicyPre::new)
            .map_err(|e| {
                LoadError::WrongWorld(format!(
                    "{e:#} (the contract's export is `evaluate: func(session: checkout-session, \
                     request: policy-request) -> decision`)"
                ))
            })?;
        let limits = self.inner.config.limits.with_overrides(&settings.limits);
        let mut policy = Policy {
            name: name.to_string(),
            version: String::new(),
            settings_digest,
            config: Arc::new(settings.config_text()),
            settings: Arc::new(settings),
            limits,
            compile_time: Duration::ZERO,
            from_cache: false,
            pooled: backend.permits.is_some(),
            pre,
            engine: engine.clone(),
            permits: backend.permits.clone(),
            warm: None,
            _artifact: None,
            pace: Arc::default(),
        };
        {
            let _permit = backend.permits.as_ref().map(Permits::acquire);
            let mut store = policy.store(Clock::System);
            let checked = policy.pre.check(&mut store);
            checked.map_err(|e| LoadError::Instantiate(classify(e, &policy.limits).to_string()))?;
        }
        Ok(policy)
    }

    /// `component` pre-initialised by evaluating [`fixtures::warm_up_sessions`]
    /// under the policy's limits (see [`crate::preinit`]).
    fn warm_up(
        &self,
        backend: &Backend,
        name: &str,
        component: &[u8],
        settings: &PolicySettings,
    ) -> Result<Vec<u8>, LoadError> {
        let (cx, instrumented) = preinit::instrument(component).map_err(|e| {
            LoadError::WarmUp(format!("the component cannot be snapshotted: {e:#}"))
        })?;
        // The instrumented component depends on the component alone: cached, a new
        // snapshot (new settings) costs one compilation, not two.
        let instrumented = self.cached(backend, &content_hash(&instrumented), || {
            backend.compile(&instrumented)
        })?;
        let scaffold = self.validate(backend, name, instrumented.component, settings.clone())?;
        let _permit = backend.permits.as_ref().map(Permits::acquire);
        let mut store = scaffold.store(Clock::Fixed(WARM_UP_TIME));
        let (instance, policy) = scaffold
            .pre
            .instantiate_with_instance(&mut store)
            .map_err(|e| LoadError::WarmUp(classify(e, &scaffold.limits).to_string()))?;
        let route = settings.routes.first().map_or("/warm-up", String::as_str);
        let request = mapping::policy_request(route, &serde_json::Map::new());
        // At a fixed time, and at the load's time and a day, a week and a month later:
        // an offer scheduled to start soon takes its live branch during the warm-up too.
        let now = Clock::System.now();
        let clocks = [0, 1, 7, 30].map(|days| Clock::Fixed(now + days * 86_400));
        for clock in std::iter::once(Clock::Fixed(WARM_UP_TIME)).chain(clocks) {
            for session in fixtures::warm_up_sessions(&settings.expand) {
                scaffold.rearm(&mut store, clock);
                policy
                    .call_evaluate(&mut store, &session, &request)
                    .map_err(|e| {
                        LoadError::WarmUp(format!(
                            "the warm-up evaluation failed: {}",
                            classify(e, &scaffold.limits)
                        ))
                    })?;
            }
        }
        // Reading the state runs wizer's accessors, which are not the policy's to pay for.
        store.set_fuel(u64::MAX).ok();
        store.set_epoch_deadline(u64::MAX / 2);
        preinit::snapshot(&cx, &mut store, instance)
            .map_err(|e| LoadError::WarmUp(format!("snapshotting the warmed instance: {e:#}")))
    }
}

/// Refuses bytes that are not a WebAssembly component, saying what they are instead.
pub fn check_component_header(bytes: &[u8]) -> Result<(), LoadError> {
    const MAGIC: &[u8] = b"\0asm";
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        return Err(LoadError::NotWasm(
            "missing the \\0asm header (empty, truncated or not WebAssembly)".into(),
        ));
    }
    // Bytes 6..8 are the layer: 0 for a core module, 1 for a component.
    match bytes[6..8] {
        [0, 0] => Err(LoadError::CoreModule),
        [1, 0] => Ok(()),
        _ => Err(LoadError::NotWasm("unknown WebAssembly layer".into())),
    }
}

fn spawn_epoch_ticker(engine: wasmtime::EngineWeak, stop: Arc<AtomicBool>) {
    std::thread::Builder::new()
        .name("policy-epoch".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(EPOCH_TICK);
                match engine.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => break,
                }
            }
        })
        .ok();
}

/// Maps a wasmtime error to why the evaluation failed.
fn classify(err: wasmtime::Error, limits: &Limits) -> EvalError {
    if let Some(cap) = err
        .chain()
        .find_map(|e| e.downcast_ref::<MemoryCapExceeded>())
    {
        return EvalError::MemoryLimit(cap.0);
    }
    match err.chain().find_map(|e| e.downcast_ref::<Trap>()) {
        Some(Trap::OutOfFuel) => EvalError::FuelExhausted(limits.fuel),
        Some(Trap::Interrupt) => EvalError::Timeout(limits.timeout_ms),
        Some(trap) => EvalError::Trap(trap.to_string()),
        None => EvalError::Trap(format!("{err:#}")),
    }
}

impl Policy {
    fn store(&self, clock: Clock) -> Store<StoreState> {
        let mut store = Store::new(
            &self.engine,
            StoreState {
                config: self.config.clone(),
                now: clock.now(),
                logs: Vec::new(),
                log_bytes: 0,
                logs_dropped: 0,
                limiter: Limiter {
                    limits: self.limits.clone(),
                    memory_bytes: 0,
                    peak_memory_bytes: 0,
                },
            },
        );
        store.limiter(|s| &mut s.limiter);
        self.arm_budget(&mut store);
        store.epoch_deadline_trap();
        store
    }

    /// Gives a store the full fuel budget and a fresh wall-clock deadline.
    fn arm_budget(&self, store: &mut Store<StoreState>) {
        // Fuel is enabled engine-wide, so setting it cannot fail.
        store.set_fuel(self.limits.fuel).ok();
        store.set_epoch_deadline(self.deadline_ticks());
    }

    /// The policy's deadline in epoch ticks.
    fn deadline_ticks(&self) -> u64 {
        ticks_for(Duration::from_millis(self.limits.timeout_ms))
    }

    /// Gives a store a new clock, fuel budget, deadline and empty logs.
    fn rearm(&self, store: &mut Store<StoreState>, clock: Clock) {
        let state = store.data_mut();
        state.now = clock.now();
        state.logs.clear();
        state.log_bytes = 0;
        state.logs_dropped = 0;
        state.limiter.peak_memory_bytes = state.limiter.memory_bytes;
        self.arm_budget(store);
    }

    /// Evaluates the policy in a fresh, isolated instance: a pre-initialised one
    /// when the policy keeps some warm (see [`Limits::warm_instances`]). Waits for a
    /// pool slot when every slot is in use.
    pub fn evaluate(
        &self,
        session: &CheckoutSession,
        request: &PolicyRequest,
        clock: Clock,
    ) -> Evaluation {
        self.evaluate_deferring_teardown(session, request, clock).0
    }

    /// [`Policy::evaluate`], leaving the instance's teardown to the caller.
    pub fn evaluate_deferring_teardown(
        &self,
        session: &CheckoutSession,
        request: &PolicyRequest,
        clock: Clock,
    ) -> (Evaluation, Teardown) {
        let started = Started::now();
        let instance = match self.warm_instance() {
            Some(warm) => Fresh::Warm(warm),
            None => Fresh::Instantiate(self.permits.as_ref().map(Permits::acquire)),
        };
        self.evaluate_in(
            instance,
            session,
            request,
            clock,
            self.deadline_ticks(),
            started,
        )
    }

    /// [`Policy::evaluate`] for callers that must not block for long: it does not wait
    /// for a pool slot, and it stops the policy once it has run for about `budget`
    /// (or its own deadline, if shorter). An evaluation has no effect outside its
    /// instance, so a caller can run an [`Attempt::OverBudget`] one again elsewhere.
    pub fn try_evaluate_within(
        &self,
        session: &CheckoutSession,
        request: &PolicyRequest,
        clock: Clock,
        budget: Duration,
    ) -> Attempt {
        let started = Started::now();
        let own = self.deadline_ticks();
        let ticks = own.min(ticks_for(budget));
        let instance = match self.warm_instance() {
            Some(warm) => Fresh::Warm(warm),
            None => match &self.permits {
                Some(permits) => match permits.try_acquire() {
                    Some(permit) => Fresh::Instantiate(Some(permit)),
                    None => return Attempt::Busy,
                },
                None => Fresh::Instantiate(None),
            },
        };
        let (evaluation, teardown) =
            self.evaluate_in(instance, session, request, clock, ticks, started);
        if ticks < own && matches!(evaluation.result, Err(EvalError::Timeout(_))) {
            // Stopped at the budget. Unless its thread was off the CPU for most of it
            // (preempted), the policy ran that long: its streak is over.
            if started.cpu_used() >= PREEMPTED_BELOW {
                self.pace.end_streak();
            }
            return Attempt::OverBudget;
        }
        Attempt::Done(evaluation, teardown)
    }

    /// Whether this version's last [`QUICK_STREAK`] evaluations each took at most
    /// [`QUICK_EVALUATION`]: a new version is not, until it has shown it.
    pub fn is_reliably_quick(&self) -> bool {
        self.pace.quick_streak.load(Ordering::Relaxed) >= QUICK_STREAK
    }

    fn warm_instance(&self) -> Option<WarmInstance> {
        self.warm.as_deref().and_then(WarmPool::take)
    }

    /// Evaluates in `instance` with a deadline of `deadline_ticks`.
    fn evaluate_in(
        &self,
        instance: Fresh,
        session: &CheckoutSession,
        request: &PolicyRequest,
        clock: Clock,
        deadline_ticks: u64,
        started: Started,
    ) -> (Evaluation, Teardown) {
        let (mut store, instance, permit) = match instance {
            Fresh::Warm(WarmInstance {
                mut store,
                instance,
                permit,
            }) => {
                self.rearm(&mut store, clock);
                store.set_epoch_deadline(deadline_ticks);
                (store, Ok(instance), permit)
            }
            Fresh::Instantiate(permit) => {
                let mut store = self.store(clock);
                store.set_epoch_deadline(deadline_ticks);
                let instance =
                    self.pre
                        .instantiate(&mut store)
                        .map_err(|e| match classify(e, &self.limits) {
                            EvalError::Trap(msg) => EvalError::Instantiate(msg),
                            other => other,
                        });
                (store, instance, permit)
            }
        };
        let result = instance
            .and_then(|instance| {
                instance
                    .call_evaluate(&mut store, session, request)
                    .map_err(|e| classify(e, &self.limits))
            })
            .and_then(|decision| self.check_output_size(decision));
        let evaluation = self.finish(&mut store, result, started);
        (
            evaluation,
            Teardown {
                _store: store,
                permit,
            },
        )
    }

    /// The evaluation's result with its logs and cost.
    fn finish(
        &self,
        store: &mut Store<StoreState>,
        result: Result<Decision, EvalError>,
        started: Started,
    ) -> Evaluation {
        let wall = started.wall.elapsed();
        // CPU time is at most the wall time: read the CPU clock (a system call) only
        // when the wall clock says slow.
        self.pace.record(if wall <= QUICK_EVALUATION {
            wall
        } else {
            started.cpu_used()
        });
        let fuel_left = store.get_fuel().unwrap_or(0);
        let state = store.data_mut();
        Evaluation {
            result,
            cost: Cost {
                fuel_used: self.limits.fuel.saturating_sub(fuel_left),
                fuel_budget: self.limits.fuel,
                peak_memory_bytes: state.limiter.peak_memory_bytes,
                memory_cap_bytes: self.limits.memory_bytes,
                wall_time_us: wall.as_micros() as u64,
                timeout_ms: self.limits.timeout_ms,
                logs_dropped: state.logs_dropped,
            },
            logs: std::mem::take(&mut state.logs),
        }
    }

    fn check_output_size(&self, decision: Decision) -> Result<Decision, EvalError> {
        use bindings::Discount;
        let limits = &self.limits;
        match &decision {
            Decision::Reject(msg) if msg.len() > limits.message_bytes => {
                Err(EvalError::OutputTooLarge(format!(
                    "reject message of {} bytes, over the limit of {}",
                    msg.len(),
                    limits.message_bytes
                )))
            }
            Decision::Apply(Discount::CouponData(data))
                if data.metadata.len() > limits.metadata_entries =>
            {
                Err(EvalError::OutputTooLarge(format!(
                    "{} coupon metadata entries, over the limit of {}",
                    data.metadata.len(),
                    limits.metadata_entries
                )))
            }
            _ => Ok(decision),
        }
    }
}

/// Instances of one policy instantiated in the background, each then used for
/// exactly one evaluation: instantiation (1–2 ms for a Python component, whose
/// data cannot be mapped copy-on-write) leaves the request path. A warm instance
/// has run its start-up code only, never `evaluate`, so it is as fresh as one
/// instantiated on the request path.
struct WarmPool {
    ready: Mutex<Vec<WarmInstance>>,
    taken: Condvar,
}

struct WarmInstance {
    store: Store<StoreState>,
    instance: DiscountPolicy,
    /// Dropped after the store, so the pool slot is free before the permit.
    permit: Option<Permit>,
}

impl WarmPool {
    /// Gives the policy a warm pool and its refill thread when its limits ask for one.
    fn start(mut policy: Policy) -> Policy {
        let target = policy.limits.warm_instances;
        if target == 0 {
            return policy;
        }
        let pool = Arc::new(WarmPool {
            ready: Mutex::new(Vec::with_capacity(target)),
            taken: Condvar::new(),
        });
        let builder = policy.clone();
        let weak = Arc::downgrade(&pool);
        let spawned = std::thread::Builder::new()
            .name(format!("warm-{}", policy.name))
            .spawn(move || refill(builder, weak, target));
        match spawned {
            Ok(_) => policy.warm = Some(pool),
            Err(e) => {
                tracing::warn!(policy = %policy.name, error = %e, "no warm instances: cannot spawn the refill thread")
            }
        }
        policy
    }

    fn take(&self) -> Option<WarmInstance> {
        let warm = self.ready.lock().unwrap_or_else(|p| p.into_inner()).pop();
        self.taken.notify_one();
        warm
    }
}

/// Keeps `target` warm instances ready until the policy is dropped.
fn refill(builder: Policy, pool: Weak<WarmPool>, target: usize) {
    while let Some(pool) = pool.upgrade() {
        {
            let ready = pool.ready.lock().unwrap_or_else(|p| p.into_inner());
            if ready.len() >= target {
                drop(pool.taken.wait_timeout(ready, Duration::from_millis(200)));
                continue;
            }
        }
        let permit = match &builder.permits {
            Some(permits) => match permits.try_acquire() {
                Some(permit) => Some(permit),
                None => {
                    drop(pool);
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            },
            None => None,
        };
        let mut store = builder.store(Clock::System);
        let warmed = builder.pre.instantiate(&mut store);
        match warmed {
            Ok(instance) => {
                pool.ready
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(WarmInstance {
                        store,
                        instance,
                        permit,
                    })
            }
            Err(e) => {
                let error = classify(e, &builder.limits);
                tracing::warn!(policy = %builder.name, %error, "warming an instance failed; retrying in 1 s");
                drop((store, permit, pool));
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pace_counts_cpu_time_not_time_off_the_cpu() {
        let before = Started::now();
        assert!(before.cpu.is_some(), "no thread CPU clock");
        std::thread::sleep(Duration::from_millis(50));
        let slept = before.cpu_used();
        assert!(slept < Duration::from_millis(10), "sleeping used {slept:?}");
        let spin = Instant::now();
        while spin.elapsed() < Duration::from_millis(30) {
            std::hint::black_box(spin.elapsed());
        }
        let spun = before.cpu_used();
        assert!(spun > slept, "spinning used {spun:?}");

        let pace = Pace::default();
        for _ in 0..QUICK_STREAK {
            pace.record(slept);
        }
        assert_eq!(pace.quick_streak.load(Ordering::Relaxed), QUICK_STREAK);
        pace.record(QUICK_EVALUATION + Duration::from_micros(1));
        assert_eq!(pace.quick_streak.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn header_check_names_the_problem() {
        assert!(matches!(
            check_component_header(b""),
            Err(LoadError::NotWasm(_))
        ));
        assert!(matches!(
            check_component_header(b"\0asm\x01\0\0\0"),
            Err(LoadError::CoreModule)
        ));
        assert!(check_component_header(b"\0asm\x0d\0\x01\0").is_ok());
    }

    #[test]
    fn fixed_clock_is_fixed() {
        assert_eq!(Clock::Fixed(42).now(), 42);
        assert!(Clock::System.now() > 1_700_000_000);
    }
}
