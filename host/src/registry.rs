//! The loaded policies and the routes they serve. Readers take a snapshot with
//! one atomic load; a reload builds a new snapshot and swaps it in, so requests
//! already running finish on the version they started with.
//!
//! A policy is its component (`<name>.wasm`) plus its settings (`<name>.toml`).
//! A reload re-reads the directory and compares content hashes, so it does not
//! matter what triggered it or whether mtimes moved (ConfigMap volumes). Files
//! still being written are waited for (the settle time); a version that fails to
//! load leaves the last good one serving.
//!
//! Each changed policy loads on its own thread and swaps itself in when it is ready,
//! so a slow compile (a JavaScript or Python component) holds back no other policy.
//! A load that newer files (or a removal) overtook is never swapped in. Large
//! components compile in a compile process ([`crate::compile`]), which such a load stops.

use crate::compile::{CompileProcess, CompileProcessError, Compiler};
use arc_swap::ArcSwap;
use policy_engine::{Policy, PolicyEngine, PolicySettings};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime};

/// One consistent view of what is loaded.
#[derive(Default)]
pub struct Snapshot {
    /// Policies by name.
    pub policies: BTreeMap<String, Arc<Policy>>,
    /// Route path to the policy serving it.
    pub routes: HashMap<String, Arc<Policy>>,
}

/// What started a reload pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// The initial load at start.
    Start,
    /// A file system event on the policy directory.
    Watch,
    /// The polling timer.
    Poll,
    /// SIGHUP.
    Signal,
    /// `POST /admin/reload`.
    Admin,
    /// A re-check of files that were still being written.
    Retry,
}

impl Trigger {
    /// Whether someone asked for this reload (`POST /admin/reload`, SIGHUP).
    fn is_request(self) -> bool {
        matches!(self, Trigger::Admin | Trigger::Signal)
    }
}

/// What the status API reports of one policy.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PolicyStatus {
    /// Policy name.
    pub name: String,
    /// Content hash of the serving component, if any version serves.
    pub version: Option<String>,
    /// Content hash of the serving settings.
    pub settings_digest: Option<String>,
    /// When the serving version was loaded (Unix seconds).
    pub loaded_at: Option<u64>,
    /// Content hash of a component being loaded now (compiled, or read from the cache).
    pub loading: Option<String>,
    /// Routes it serves.
    pub routes: Vec<String>,
    /// The last load error, while the files on disk still fail to load.
    pub last_error: Option<String>,
    /// Reload history, newest last (bounded).
    pub history: Vec<ReloadEvent>,
}

/// One load attempt, or a removal.
#[derive(Debug, Clone, Serialize)]
pub struct ReloadEvent {
    /// Unix milliseconds.
    pub at_ms: u64,
    /// What started the pass.
    pub trigger: Trigger,
    /// Component content hash of the attempt.
    pub version: String,
    /// Settings content hash of the attempt, when the settings parsed.
    pub settings_digest: Option<String>,
    /// `loaded`, `failed` or `removed`.
    pub outcome: &'static str,
    /// Error message, for a failure.
    pub error: Option<String>,
    /// Milliseconds spent compiling or loading from cache.
    pub compile_ms: u64,
    /// Whether the compiled artifact came from the cache.
    pub from_cache: bool,
}

const HISTORY: usize = 64;
/// Most settle waits in one pass before still-moving files are left pending.
const SETTLE_ROUNDS: usize = 5;

/// A policy that failed to load in a pass.
#[derive(Debug, Clone, Serialize)]
pub struct LoadFailure {
    /// Policy name (`*` when the directory itself cannot be read).
    pub policy: String,
    /// Component content hash of the attempt.
    pub version: String,
    /// Why it failed.
    pub error: String,
}

/// What one reload pass did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReloadReport {
    /// Policies loaded (new or changed).
    pub loaded: Vec<String>,
    /// Policies removed; their routes answer 404.
    pub removed: Vec<String>,
    /// Policies that failed to load; the last good version (if any) keeps serving.
    pub failed: Vec<LoadFailure>,
    /// Policies whose files were still changing; they are re-checked later.
    pub pending: Vec<String>,
    /// Policies whose files fail exactly as before; not retried.
    pub still_failing: Vec<String>,
    /// Policies whose load newer files (or a removal) overtook; a later pass has them.
    pub superseded: Vec<String>,
    /// Policies serving now.
    pub serving: Vec<String>,
    /// Wall time of the pass, settle waits included, in milliseconds.
    pub elapsed_ms: u64,
}

impl ReloadReport {
    /// Whether the pass changed what serves.
    pub fn changed(&self) -> bool {
        !self.loaded.is_empty() || !self.removed.is_empty()
    }
}

/// The files that make one policy, as read in one scan.
#[derive(Clone)]
struct PolicyFiles {
    component: Arc<Vec<u8>>,
    /// Content hash of the component.
    version: String,
    settings_text: Option<String>,
    /// Newest mtime of the two files (symlinks followed).
    modified: Option<SystemTime>,
    /// Why the files could not be read: this policy fails to load, the others go on.
    unreadable: Option<String>,
}

impl PolicyFiles {
    /// Same content: what decides whether a policy changed.
    fn same(&self, other: &PolicyFiles) -> bool {
        self.fingerprint() == other.fingerprint()
    }

    fn fingerprint(&self) -> Fingerprint {
        (
            self.version.clone(),
            self.settings_text.clone(),
            self.unreadable.clone(),
        )
    }
}

type Found = BTreeMap<String, PolicyFiles>;
/// A policy version's component hash, settings text, and why its files were unreadable.
type Fingerprint = (String, Option<String>, Option<String>);
type RouteTable = HashMap<String, Arc<Policy>>;

/// Components at least this large (JavaScript, Python) compile one at a time: each
/// takes seconds and up to a gigabyte. Smaller ones, and cache hits, never wait.
const LARGE_COMPONENT_BYTES: usize = 4 << 20;

/// Loads in flight and files known to fail. Every change to the snapshot is made
/// under this lock.
#[derive(Default)]
struct Loads {
    /// The newest load of each policy, until it is swapped in, fails or is overtaken.
    running: HashMap<String, Arc<Load>>,
    /// Files that failed to load, by policy: not retried until they change.
    failed: HashMap<String, Failed>,
    /// Loaded versions claiming a route another policy serves: each serves once its
    /// routes are free, unless newer files or a removal come first.
    parked: HashMap<String, Parked>,
}

/// A loaded version waiting for its routes.
struct Parked {
    policy: Arc<Policy>,
    trigger: Trigger,
}

/// One policy version loading on its own thread.
struct Load {
    name: String,
    fingerprint: Fingerprint,
    settings_digest: Option<String>,
    state: Mutex<LoadState>,
    done: Condvar,
}

/// Files that failed to load.
struct Failed {
    fingerprint: Fingerprint,
    /// Tried again by a reload someone asked for (`POST /admin/reload`, SIGHUP).
    retry_on_request: bool,
}

impl Loads {
    /// Whether these files failed before, and a pass of `trigger` leaves them be.
    fn known_failure(&self, name: &str, files: &PolicyFiles, trigger: Trigger) -> bool {
        self.failed.get(name).is_some_and(|f| {
            f.fingerprint == files.fingerprint() && !(f.retry_on_request && trigger.is_request())
        })
    }
}

/// Why a load failed.
struct LoadFailed {
    error: String,
    /// Not the files' fault (a compile process died or ran out of time): another try
    /// may succeed.
    retry_on_request: bool,
}

impl From<String> for LoadFailed {
    fn from(error: String) -> Self {
        LoadFailed {
            error,
            retry_on_request: false,
        }
    }
}

#[derive(Default)]
struct LoadState {
    /// The loaded policy or the error, once the thread is done.
    result: Option<Result<Policy, LoadFailed>>,
    /// The trigger of the first pass that saw these files settle; only then may
    /// the load be swapped in.
    confirmed: Option<Trigger>,
    /// How it ended.
    outcome: Option<LoadOutcome>,
    /// Other policies' waiting versions that began serving when this one ended.
    admitted: Vec<String>,
}

/// How a load ended.
#[derive(Clone)]
enum LoadOutcome {
    Loaded,
    Failed(String),
    Superseded,
}

impl Load {
    fn state(&self) -> MutexGuard<'_, LoadState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn end(&self, state: &mut LoadState, outcome: LoadOutcome) {
        state.outcome = Some(outcome);
        self.done.notify_all();
    }

    /// Newer files or a removal overtook it (call under the loads lock).
    fn supersede(&self) {
        let mut state = self.state();
        if state.outcome.is_none() {
            tracing::info!(policy = %self.name, version = %short(&self.fingerprint.0), "policy files changed again while loading; that load will not be swapped in");
            self.end(&mut state, LoadOutcome::Superseded);
        }
    }

    fn is_superseded(&self) -> bool {
        matches!(self.state().outcome, Some(LoadOutcome::Superseded))
    }

    /// Blocks until the load has ended.
    fn wait(&self) -> LoadOutcome {
        let mut state = self.state();
        loop {
            if let Some(outcome) = &state.outcome {
                return outcome.clone();
            }
            state = self.done.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// A reload pass whose scan is done and whose loads may still run.
pub struct Pass {
    registry: Arc<Registry>,
    report: ReloadReport,
    loads: Vec<Arc<Load>>,
    started: Instant,
}

impl Pass {
    /// Policies whose files were still changing: re-check them after the settle time.
    pub fn pending(&self) -> &[String] {
        &self.report.pending
    }

    /// Whether every load of the pass has ended.
    pub fn is_done(&self) -> bool {
        self.loads.iter().all(|l| l.state().outcome.is_some())
    }

    /// Waits for the pass's loads to end (each swaps itself in as soon as it is
    /// ready, not when the pass ends) and reports what the pass did.
    pub fn finish(self) -> ReloadReport {
        let mut report = self.report;
        for load in &self.loads {
            let name = load.name.clone();
            let outcome = load.wait();
            report.loaded.extend(load.state().admitted.iter().cloned());
            match outcome {
                LoadOutcome::Loaded => report.loaded.push(name),
                LoadOutcome::Failed(error) => report.failed.push(LoadFailure {
                    policy: name,
                    version: load.fingerprint.0.clone(),
                    error,
                }),
                LoadOutcome::Superseded => report.superseded.push(name),
            }
        }
        report.serving = self.registry.snapshot().policies.keys().cloned().collect();
        report.elapsed_ms = self.started.elapsed().as_millis() as u64;
        crate::metrics::record_reload(&report);
        report
    }
}

/// Loaded policies, their routes and their load history.
pub struct Registry {
    engine: PolicyEngine,
    dir: PathBuf,
    settle: Duration,
    snapshot: ArcSwap<Snapshot>,
    status: Mutex<BTreeMap<String, PolicyStatus>>,
    /// Serializes the scans and decisions of reload passes (not their loads).
    pass: Mutex<()>,
    loads: Mutex<Loads>,
    /// Held while a large component compiles.
    large_compile: Mutex<()>,
    /// Where large components compile in the host, so that their parallel compile does
    /// not queue small ones behind it in rayon's global pool (none if it cannot be built).
    large_compile_threads: OnceLock<Option<rayon::ThreadPool>>,
    /// Compile processes; none: every compile runs in the host.
    compiler: Option<Compiler>,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Registry {
    /// An empty registry over a policy directory, with a 100 ms settle time.
    pub fn new(engine: PolicyEngine, dir: PathBuf) -> Self {
        Registry {
            engine,
            dir,
            settle: Duration::from_millis(100),
            snapshot: ArcSwap::from_pointee(Snapshot::default()),
            status: Mutex::new(BTreeMap::new()),
            pass: Mutex::new(()),
            loads: Mutex::new(Loads::default()),
            large_compile: Mutex::new(()),
            large_compile_threads: OnceLock::new(),
            compiler: None,
        }
    }

    /// Compiles new components in compile processes (see [`crate::compile`]), when the
    /// engine has a compilation cache to hand them back through.
    pub fn with_compiler(mut self, compiler: Compiler) -> Self {
        let usable = compiler.which() != CompileProcess::None;
        let cached = self.engine.config().cache_dir.is_some();
        if usable && !cached {
            tracing::warn!("no compilation cache: policies compile inside the host");
        }
        self.compiler = (usable && cached).then_some(compiler);
        self
    }

    /// Sets how long a changed file must stay unchanged before it is loaded.
    pub fn with_settle(mut self, settle: Duration) -> Self {
        self.settle = settle;
        self
    }

    /// The settle time.
    pub fn settle(&self) -> Duration {
        self.settle
    }

    /// The policy directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The engine policies are loaded into.
    pub fn engine(&self) -> &PolicyEngine {
        &self.engine
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// The policy serving a route, if any.
    pub fn route(&self, path: &str) -> Option<Arc<Policy>> {
        self.snapshot.load().routes.get(path).cloned()
    }

    /// Status of every policy ever seen in the directory.
    pub fn status(&self) -> Vec<PolicyStatus> {
        self.status
            .lock()
            .map(|s| s.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Re-reads the directory; loads what changed, keeps the last good version of
    /// what fails, retires what was removed. Blocking: waits for files to settle
    /// and for the loads to end. Call it off the request path.
    pub fn reload(self: &Arc<Self>, trigger: Trigger) -> ReloadReport {
        self.begin_reload(trigger).finish()
    }

    /// The first part of [`Registry::reload`]: scans until the files settle, retires
    /// removed policies and starts (or joins) the loads of changed ones, without
    /// waiting for them. Passes are serialized up to here; their loads are not.
    pub fn begin_reload(self: &Arc<Self>, trigger: Trigger) -> Pass {
        let _pass = self.pass.lock().unwrap_or_else(|p| p.into_inner());
        let mut pass = Pass {
            registry: self.clone(),
            report: ReloadReport::default(),
            loads: Vec::new(),
            started: Instant::now(),
        };
        let report = &mut pass.report;
        let (found, pending) = match self.settled_scan(trigger) {
            Ok(scan) => scan,
            Err(e) => {
                tracing::error!(dir = %self.dir.display(), error = %e, "cannot read the policy directory; nothing changes");
                report.failed.push(LoadFailure {
                    policy: "*".into(),
                    version: String::new(),
                    error: format!("reading {}: {e}", self.dir.display()),
                });
                return pass;
            }
        };
        for name in &pending {
            tracing::info!(policy = %name, "policy files are still changing; re-checking later");
        }
        let mut loads = self.lock_loads();
        // Loads swap themselves in under this lock: this is what serves now.
        let current = self.snapshot.load_full();
        for (name, files) in found.iter().filter(|(n, _)| !pending.contains(*n)) {
            let settings = parse_settings(name, files.settings_text.as_deref());
            if current
                .policies
                .get(name)
                .is_some_and(|p| serves(p, files, &settings))
            {
                // Back to (or still at) the serving version: nothing newer may replace it.
                if let Some(load) = loads.running.remove(name) {
                    self.overtake(&load);
                }
                loads.parked.remove(name);
                if loads.failed.remove(name).is_some() {
                    self.clear_error(name);
                }
                continue;
            }
            if loads.known_failure(name, files, trigger) {
                report.still_failing.push(name.clone());
                continue;
            }
            pass.loads
                .push(self.load_of(&mut loads, name, files, settings));
        }
        // Gone from the directory: retire the serving ones, forget the rest.
        let known: BTreeSet<String> = self
            .status
            .lock()
            .map(|s| s.keys().cloned().collect())
            .unwrap_or_default();
        let gone: BTreeSet<String> = known
            .into_iter()
            .chain(loads.running.keys().cloned())
            .filter(|n| !found.contains_key(n) && !pending.contains(n))
            .collect();
        let mut policies = current.policies.clone();
        for name in gone {
            loads.failed.remove(&name);
            loads.parked.remove(&name);
            if let Some(load) = loads.running.remove(&name) {
                self.overtake(&load);
            }
            if policies.remove(&name).is_some() {
                tracing::info!(policy = %name, ?trigger, "policy removed; its routes are retired and answer 404");
                report.removed.push(name);
            } else {
                self.clear_error(&name);
            }
        }
        if !report.removed.is_empty() {
            self.publish(policies);
            for name in &report.removed {
                self.record_removed(name, trigger);
            }
            report.loaded.extend(self.admit_parked(&mut loads));
        }
        drop(loads);
        for load in &pass.loads {
            load.state().confirmed.get_or_insert(trigger);
            self.swap_in(load);
        }
        report.pending = pending.into_iter().collect();
        pass
    }

    /// The load of these files: the running one, or a new one that overtakes any
    /// older load of the policy.
    fn load_of(
        self: &Arc<Self>,
        loads: &mut Loads,
        name: &str,
        files: &PolicyFiles,
        settings: Result<PolicySettings, String>,
    ) -> Arc<Load> {
        let fingerprint = files.fingerprint();
        if let Some(load) = loads.running.get(name) {
            if load.fingerprint == fingerprint {
                return load.clone();
            }
        }
        let load = Arc::new(Load {
            name: name.to_string(),
            fingerprint,
            settings_digest: settings.as_ref().ok().map(|s| s.digest()),
            state: Mutex::new(LoadState::default()),
            done: Condvar::new(),
        });
        if let Some(older) = loads.running.insert(name.to_string(), load.clone()) {
            older.supersede();
        }
        loads.parked.remove(name);
        tracing::info!(policy = %name, version = %short(&files.version), "loading a policy version");
        self.with_status(name, |s| s.loading = Some(files.version.clone()));
        let (registry, files, thread_load) = (self.clone(), files.clone(), load.clone());
        let spawned = std::thread::Builder::new()
            .name("policy-load".into())
            .spawn(move || {
                let load = || registry.load(&thread_load, &files, settings);
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(load))
                    .unwrap_or_else(|panic| {
                        Err(format!("the load panicked: {}", panic_message(&*panic)).into())
                    });
                thread_load.state().result = Some(result);
                registry.swap_in(&thread_load);
            });
        if let Err(e) = spawned {
            // Ends as a failure once a pass confirms it (the caller holds the loads lock).
            load.state().result = Some(Err(format!("cannot start a load thread: {e}").into()));
        }
        load
    }

    /// Ends a load that is done and confirmed, unless something overtook it: swaps a
    /// loaded policy in, or records the failure (the last good version keeps serving).
    fn swap_in(&self, load: &Load) {
        let mut loads = self.lock_loads();
        let mut state = load.state();
        if state.outcome.is_some() {
            if state.result.take().is_some() {
                tracing::info!(policy = %load.name, version = %short(&load.fingerprint.0), "an overtaken policy load finished; discarded");
            }
            return;
        }
        let Some(trigger) = state.confirmed else {
            return;
        };
        let Some(result) = state.result.take() else {
            return;
        };
        loads.running.remove(&load.name);
        self.with_status(&load.name, |s| s.loading = None);
        match result {
            Ok(policy) => {
                let parked = Parked {
                    policy: Arc::new(policy),
                    trigger,
                };
                loads.parked.insert(load.name.clone(), parked);
                let mut admitted = self.admit_parked(&mut loads);
                let served = admitted.remove(&load.name);
                state.admitted = admitted.into_iter().collect();
                if served {
                    load.end(&mut state, LoadOutcome::Loaded);
                    return;
                }
                let conflict = route_conflict(&load.name, &self.snapshot.load(), &loads.parked);
                let error = format!(
                    "{conflict}; this version serves once no other policy serves its routes"
                );
                tracing::error!(policy = %load.name, version = %short(&load.fingerprint.0), %error, ?trigger, "policy version waits for its routes; the last good version keeps serving");
                self.fail(&mut loads, load, &mut state, trigger, error, false);
            }
            Err(LoadFailed {
                error,
                retry_on_request,
            }) => {
                let error = if retry_on_request {
                    format!("{error} (tried again by POST /admin/reload or SIGHUP)")
                } else {
                    error
                };
                let serving = self
                    .snapshot
                    .load()
                    .policies
                    .get(&load.name)
                    .map(|p| p.version.clone());
                tracing::error!(policy = %load.name, version = %short(&load.fingerprint.0), %error, ?trigger, serving = ?serving.as_deref().map(short), "policy failed to load; the last good version keeps serving");
                self.fail(
                    &mut loads,
                    load,
                    &mut state,
                    trigger,
                    error,
                    retry_on_request,
                );
            }
        }
    }

    /// Ends `load` as failed: remembered (not tried again until its files change, or on
    /// request when `retry_on_request`), reported and counted.
    fn fail(
        &self,
        loads: &mut Loads,
        load: &Load,
        state: &mut LoadState,
        trigger: Trigger,
        error: String,
        retry_on_request: bool,
    ) {
        let failed = Failed {
            fingerprint: load.fingerprint.clone(),
            retry_on_request,
        };
        loads.failed.insert(load.name.clone(), failed);
        self.record_failed(
            &load.name,
            trigger,
            &load.fingerprint.0,
            load.settings_digest.as_deref(),
            &error,
        );
        crate::metrics::record_load_failure(&load.name);
        load.end(state, LoadOutcome::Failed(error));
    }

    /// Ends a running load that newer files or a removal overtook (call under the loads lock).
    fn overtake(&self, load: &Load) {
        load.supersede();
        self.with_status(&load.name, |s| {
            if s.loading.as_ref() == Some(&load.fingerprint.0) {
                s.loading = None;
            }
        });
    }

    /// Swaps in a snapshot of these policies with their routes (call under the loads
    /// lock). No two of them claim one route: [`Registry::admit_parked`] sees to it.
    fn publish(&self, policies: BTreeMap<String, Arc<Policy>>) {
        let mut routes = RouteTable::new();
        for policy in policies.values() {
            for route in &policy.settings.routes {
                routes
                    .entry(route.clone())
                    .or_insert_with(|| policy.clone());
            }
        }
        self.snapshot.store(Arc::new(Snapshot { policies, routes }));
    }

    /// Serves the parked versions that can serve together: each one's routes claimed by
    /// no other policy, serving or about to (call under the loads lock). Returns their
    /// names. Versions that swap routes with each other serve together.
    fn admit_parked(&self, loads: &mut Loads) -> BTreeSet<String> {
        let current = self.snapshot.load_full();
        let mut admitted: BTreeSet<String> = loads.parked.keys().cloned().collect();
        let policies = loop {
            let mut policies = current.policies.clone();
            for (name, parked) in loads.parked.iter().filter(|(n, _)| admitted.contains(*n)) {
                policies.insert(name.clone(), parked.policy.clone());
            }
            let clashing = clashing(&policies, &admitted);
            if clashing.is_empty() {
                break policies;
            }
            admitted.retain(|name| !clashing.contains(name));
        };
        if admitted.is_empty() {
            return admitted;
        }
        self.publish(policies);
        for name in &admitted {
            let Some(Parked { policy, trigger }) = loads.parked.remove(name) else {
                continue;
            };
            tracing::info!(policy = %name, version = %short(&policy.version), settings = %short(&policy.settings_digest), compile_ms = policy.compile_time.as_millis() as u64, from_cache = policy.from_cache, ?trigger, "policy loaded");
            loads.failed.remove(name);
            self.record_loaded(name, trigger, &policy);
        }
        admitted
    }

    fn lock_loads(&self) -> MutexGuard<'_, Loads> {
        self.loads.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Scans the directory, waiting for changed files to settle: a changed file
    /// younger than the settle time, or a serving policy that disappeared, is
    /// read again after the wait, and must read the same. Names still moving
    /// after a few rounds are returned as pending.
    /// Changed policies start loading at once, so the settle time costs nothing
    /// when compiling takes longer.
    fn settled_scan(
        self: &Arc<Self>,
        trigger: Trigger,
    ) -> std::io::Result<(Found, BTreeSet<String>)> {
        let mut found = scan(&self.dir)?;
        let mut pending = BTreeSet::new();
        for _ in 0..SETTLE_ROUNDS {
            let current = self.snapshot.load_full();
            let must_confirm = self.settle_wait(&found, &current).is_some();
            {
                let mut loads = self.lock_loads();
                for (name, files) in &found {
                    let settings = parse_settings(name, files.settings_text.as_deref());
                    let serving = current
                        .policies
                        .get(name)
                        .is_some_and(|p| serves(p, files, &settings));
                    if !serving && !loads.known_failure(name, files, trigger) {
                        self.load_of(&mut loads, name, files, settings);
                    }
                }
            }
            if !must_confirm {
                return Ok((found, BTreeSet::new()));
            }
            if let Some(wait) = self.settle_wait(&found, &current) {
                std::thread::sleep(wait);
            }
            let again = scan(&self.dir)?;
            pending = found
                .keys()
                .chain(again.keys())
                .filter(|n| match (found.get(*n), again.get(*n)) {
                    (Some(a), Some(b)) => !a.same(b),
                    (None, None) => false,
                    _ => true,
                })
                .cloned()
                .collect();
            found = again;
            if pending.is_empty() {
                return Ok((found, pending));
            }
        }
        Ok((found, pending))
    }

    /// Compiles (or takes from the cache) and validates one policy version, on its
    /// load thread. A large component that is not in the cache waits for any other
    /// large compile first, and is skipped if it was overtaken meanwhile. With a
    /// compiler, it compiles in a compile process, and then loads from the cache.
    fn load(
        &self,
        load: &Load,
        files: &PolicyFiles,
        settings: Result<PolicySettings, String>,
    ) -> Result<Policy, LoadFailed> {
        if let Some(error) = &files.unreadable {
            return Err(format!("cannot read the policy's files: {error}").into());
        }
        let settings = settings?;
        let load_now = || {
            self.engine
                .load(&load.name, &files.component, settings.clone())
                .map_err(|e| LoadFailed::from(e.to_string()))
        };
        let large = files.component.len() >= LARGE_COMPONENT_BYTES;
        let child = self
            .compiler
            .as_ref()
            .filter(|c| large || c.which() == CompileProcess::All);
        if (!large && child.is_none()) || self.engine.is_compiled(&files.component, &settings) {
            return load_now();
        }
        let _turn = large.then(|| self.large_compile.lock().unwrap_or_else(|p| p.into_inner()));
        if load.is_superseded() {
            return Err(String::from("overtaken before it compiled").into());
        }
        if let Some(compiler) = child {
            let started = Instant::now();
            let compiled = compiler.compile(
                self.engine.config(),
                &load.name,
                &files.component,
                &settings,
                &|| load.is_superseded(),
            );
            match compiled {
                Ok(Ok(was_cached)) => {
                    let mut policy = load_now()?;
                    if !policy.from_cache {
                        tracing::warn!(policy = %load.name, "the compile process's artifact was not in the cache; compiled again in the host");
                    }
                    policy.from_cache = was_cached;
                    policy.compile_time = started.elapsed();
                    return Ok(policy);
                }
                Ok(Err(refused)) => return Err(refused.to_string().into()),
                Err(CompileProcessError::Spawn(e)) => {
                    tracing::warn!(policy = %load.name, error = %e, "cannot start a compile process; compiling in the host");
                }
                Err(e) => {
                    return Err(LoadFailed {
                        error: e.to_string(),
                        retry_on_request: true,
                    })
                }
            }
        }
        match self.large_compile_threads() {
            Some(threads) if large => threads.install(load_now),
            _ => load_now(),
        }
    }

    fn large_compile_threads(&self) -> Option<&rayon::ThreadPool> {
        self.large_compile_threads
            .get_or_init(|| {
                rayon::ThreadPoolBuilder::new()
                    .thread_name(|i| format!("policy-compile-{i}"))
                    .build()
                    .inspect_err(|e| tracing::warn!(error = %e, "no thread pool for large compiles; they share rayon's"))
                    .ok()
            })
            .as_ref()
    }

    /// How long to wait before trusting this scan, if at all.
    fn settle_wait(&self, found: &Found, current: &Snapshot) -> Option<Duration> {
        if self.settle.is_zero() {
            return None;
        }
        let now = SystemTime::now();
        let mut wait: Option<Duration> = None;
        let mut longer = |d: Duration| wait = Some(wait.map_or(d, |w| w.max(d)));
        for (name, files) in found {
            let settings = parse_settings(name, files.settings_text.as_deref());
            if current
                .policies
                .get(name)
                .is_some_and(|p| serves(p, files, &settings))
            {
                continue;
            }
            if files.settings_text.is_none() && current.policies.contains_key(name) {
                // The settings file of a serving policy is gone: a removal under way, or
                // the first half of an editor's rename-save. Confirm it.
                longer(self.settle);
                continue;
            }
            let age = files
                .modified
                .and_then(|m| now.duration_since(m).ok())
                .unwrap_or(Duration::ZERO);
            if age < self.settle {
                longer(self.settle - age);
            }
        }
        if current.policies.keys().any(|n| !found.contains_key(n)) {
            // A removal, or the first half of a rename-save: confirm it.
            longer(self.settle);
        }
        wait
    }

    fn with_status(&self, name: &str, f: impl FnOnce(&mut PolicyStatus)) {
        let Ok(mut status) = self.status.lock() else {
            return;
        };
        let entry = status
            .entry(name.to_string())
            .or_insert_with(|| PolicyStatus {
                name: name.to_string(),
                ..Default::default()
            });
        f(entry);
        if entry.history.len() > HISTORY {
            let excess = entry.history.len() - HISTORY;
            entry.history.drain(..excess);
        }
    }

    fn record_loaded(&self, name: &str, trigger: Trigger, policy: &Policy) {
        self.with_status(name, |entry| {
            let now = unix_ms();
            entry.version = Some(policy.version.clone());
            entry.settings_digest = Some(policy.settings_digest.clone());
            entry.loaded_at = Some(now / 1000);
            entry.routes = policy.settings.routes.clone();
            entry.last_error = None;
            entry.history.push(ReloadEvent {
                at_ms: now,
                trigger,
                version: policy.version.clone(),
                settings_digest: Some(policy.settings_digest.clone()),
                outcome: "loaded",
                error: None,
                compile_ms: policy.compile_time.as_millis() as u64,
                from_cache: policy.from_cache,
            });
        });
    }

    fn record_failed(
        &self,
        name: &str,
        trigger: Trigger,
        version: &str,
        settings_digest: Option<&str>,
        error: &str,
    ) {
        self.with_status(name, |entry| {
            entry.last_error = Some(error.to_string());
            entry.history.push(ReloadEvent {
                at_ms: unix_ms(),
                trigger,
                version: version.to_string(),
                settings_digest: settings_digest.map(str::to_string),
                outcome: "failed",
                error: Some(error.to_string()),
                compile_ms: 0,
                from_cache: false,
            });
        });
    }

    fn record_removed(&self, name: &str, trigger: Trigger) {
        self.with_status(name, |entry| {
            let version = entry.version.take().unwrap_or_default();
            entry.history.push(ReloadEvent {
                at_ms: unix_ms(),
                trigger,
                version,
                settings_digest: entry.settings_digest.take(),
                outcome: "removed",
                error: None,
                compile_ms: 0,
                from_cache: false,
            });
            entry.routes.clear();
            entry.loaded_at = None;
            entry.last_error = None;
        });
    }

    fn clear_error(&self, name: &str) {
        self.with_status(name, |entry| entry.last_error = None);
    }
}

/// Which of `candidates` claim a route that another of `policies` claims too.
fn clashing(
    policies: &BTreeMap<String, Arc<Policy>>,
    candidates: &BTreeSet<String>,
) -> BTreeSet<String> {
    let mut claimants: HashMap<&str, Vec<&str>> = HashMap::new();
    for (name, policy) in policies {
        for route in &policy.settings.routes {
            claimants.entry(route).or_default().push(name);
        }
    }
    claimants
        .into_values()
        .filter(|names| names.len() > 1)
        .flatten()
        .filter(|name| candidates.contains(*name))
        .map(str::to_string)
        .collect()
}

/// Why `name`'s parked version cannot serve: the first of its routes that another
/// policy serves, or another parked version claims.
fn route_conflict(name: &str, current: &Snapshot, parked: &HashMap<String, Parked>) -> String {
    let routes = parked
        .get(name)
        .map(|p| p.policy.settings.routes.as_slice())
        .unwrap_or_default();
    for route in routes {
        if let Some(owner) = current.routes.get(route).filter(|o| o.name != name) {
            return format!("route {route} is already served by policy {}", owner.name);
        }
        let rival = parked
            .iter()
            .find(|(other, p)| *other != name && p.policy.settings.routes.contains(route));
        if let Some((other, _)) = rival {
            return format!("route {route} is also claimed by a new version of policy {other}");
        }
    }
    "its routes are claimed by another policy".to_string()
}

/// The message of a caught panic, if it has one.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("no message")
}

/// Whether `policy` is these files: the same component and settings.
fn serves(policy: &Policy, files: &PolicyFiles, settings: &Result<PolicySettings, String>) -> bool {
    policy.version == files.version
        && settings
            .as_ref()
            .is_ok_and(|s| s.digest() == policy.settings_digest)
}

/// The first 12 hex characters of a content hash, as logs and metric labels show it.
pub(crate) fn short(version: &str) -> &str {
    &version[..version.len().min(12)]
}

/// Parses and checks a policy's settings file.
fn parse_settings(name: &str, text: Option<&str>) -> Result<PolicySettings, String> {
    let Some(text) = text else {
        return Err(format!(
            "{name}.toml is missing: a policy needs its settings file"
        ));
    };
    let settings = PolicySettings::from_toml(text).map_err(|e| format!("{name}.toml: {e}"))?;
    settings.check().map_err(|e| format!("{name}.toml: {e}"))?;
    Ok(settings)
}

/// One policy's files; `None` when its component is not there. A file that cannot be
/// read (a directory, a FIFO, no permission, a symlink loop, settings that are not UTF-8)
/// gives files marked unreadable, so that policy alone fails and keeps its last good
/// version.
fn read_policy(component_path: &Path, settings_path: &Path) -> Option<PolicyFiles> {
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let modified = [mtime(component_path), mtime(settings_path)]
        .into_iter()
        .flatten()
        .max();
    // The version stays the component's hash when only the settings are unreadable.
    let unreadable = |version: String, error: String| PolicyFiles {
        component: Arc::default(),
        version,
        settings_text: None,
        modified,
        unreadable: Some(error),
    };
    let component = match read_regular(component_path) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return None,
        Err(e) => return Some(unreadable(String::new(), e)),
    };
    let version = policy_engine::engine::content_hash(&component);
    let settings_text = match read_regular(settings_path) {
        Ok(None) => None,
        Ok(Some(bytes)) => match String::from_utf8(bytes) {
            Ok(text) => Some(text),
            Err(_) => {
                let error = format!("{} is not UTF-8 text", settings_path.display());
                return Some(unreadable(version, error));
            }
        },
        Err(e) => return Some(unreadable(version, e)),
    };
    Some(PolicyFiles {
        version,
        component: Arc::new(component),
        settings_text,
        modified,
        unreadable: None,
    })
}

/// A regular file's bytes (symlinks followed); `None` when nothing is there. Anything
/// else (a FIFO would block the read forever) is an error naming the file.
fn read_regular(path: &Path) -> Result<Option<Vec<u8>>, String> {
    let named = |e: std::io::Error| format!("{}: {e}", path.display());
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(named(e)),
        Ok(meta) if meta.is_dir() => return Err(format!("{} is a directory", path.display())),
        Ok(meta) if !meta.is_file() => {
            return Err(format!("{} is not a regular file", path.display()))
        }
        Ok(_) => {}
    }
    match std::fs::read(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        other => other.map(Some).map_err(named),
    }
}

/// Reads every `<name>.wasm` (following symlinks, as a ConfigMap volume has
/// them) with its `<name>.toml`. Hidden entries such as `..data` are skipped.
fn scan(dir: &Path) -> std::io::Result<Found> {
    let mut found = BTreeMap::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let Some(file) = path.file_name().and_then(|f| f.to_str()) else {
            continue;
        };
        if file.starts_with('.') {
            continue;
        }
        let Some(name) = file.strip_suffix(".wasm") else {
            continue;
        };
        if name.is_empty() {
            continue;
        }
        let settings_path = dir.join(format!("{name}.toml"));
        // Dangling (or removed since the listing): the policy is not there.
        let Some(files) = read_policy(&path, &settings_path) else {
            continue;
        };
        found.insert(name.to_string(), files);
    }
    Ok(found)
}
