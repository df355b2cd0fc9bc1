//! The loaded policies and the routes they serve. Readers take a snapshot with
//! one atomic load; a reload builds a new snapshot and swaps it in, so requests
//! already running finish on the version they started with.
//!
//! A policy is its component (`<name>.wasm`) plus its settings (`<name>.toml`).
//! A reload re-reads the directory and compares content hashes, so it does not
//! matter what triggered it or whether mtimes moved (ConfigMap volumes). Files
//! still being written are waited for (the settle time); a version that fails to
//! load leaves the last good one serving.

use arc_swap::ArcSwap;
use policy_engine::{Policy, PolicyEngine, PolicySettings};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
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
}

impl PolicyFiles {
    /// Same content: what decides whether a policy changed.
    fn same(&self, other: &PolicyFiles) -> bool {
        self.version == other.version && self.settings_text == other.settings_text
    }

    fn fingerprint(&self) -> (String, Option<String>) {
        (self.version.clone(), self.settings_text.clone())
    }
}

type Found = BTreeMap<String, PolicyFiles>;
/// Load results of this pass, by policy, with the files they were made from.
type Attempts = HashMap<String, ((String, Option<String>), Result<Policy, String>)>;
type RouteTable = HashMap<String, Arc<Policy>>;

/// State kept between passes, under the pass lock.
#[derive(Default)]
struct PassState {
    /// Files that failed to load, by policy: not retried until they change.
    failed: HashMap<String, (String, Option<String>)>,
}

/// Loaded policies, their routes and their load history.
pub struct Registry {
    engine: PolicyEngine,
    dir: PathBuf,
    settle: Duration,
    snapshot: ArcSwap<Snapshot>,
    status: Mutex<BTreeMap<String, PolicyStatus>>,
    /// Serializes reload passes.
    pass: Mutex<PassState>,
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
            pass: Mutex::new(PassState::default()),
        }
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
    /// what fails, retires what was removed, then swaps in the new snapshot.
    /// Blocking: waits for files to settle and compiles components. Call it off
    /// the request path; passes are serialized.
    pub fn reload(&self, trigger: Trigger) -> ReloadReport {
        let mut pass = self.pass.lock().unwrap_or_else(|p| p.into_inner());
        let started = Instant::now();
        let mut report = ReloadReport::default();
        let current = self.snapshot.load_full();
        let mut attempts = Attempts::new();
        let (found, pending) = match self.settled_scan(&current, &pass, &mut attempts) {
            Ok(scan) => scan,
            Err(e) => {
                tracing::error!(dir = %self.dir.display(), error = %e, "cannot read the policy directory; nothing changes");
                report.failed.push(LoadFailure {
                    policy: "*".into(),
                    version: String::new(),
                    error: format!("reading {}: {e}", self.dir.display()),
                });
                report.elapsed_ms = started.elapsed().as_millis() as u64;
                return report;
            }
        };
        let mut policies: BTreeMap<String, Arc<Policy>> = BTreeMap::new();
        // Recorded in the status only once they serve.
        let mut newly_loaded: Vec<Arc<Policy>> = Vec::new();
        for name in &pending {
            tracing::info!(policy = %name, "policy files are still changing; re-checking later");
            if let Some(p) = current.policies.get(name) {
                policies.insert(name.clone(), p.clone());
            }
        }
        for (name, files) in found.iter().filter(|(n, _)| !pending.contains(*n)) {
            let settings = parse_settings(name, files.settings_text.as_deref());
            let settings_digest = settings.as_ref().ok().map(|s| s.digest());
            let serving = current.policies.get(name);
            let unchanged = serving.filter(|p| {
                p.version == files.version && settings_digest.as_ref() == Some(&p.settings_digest)
            });
            if let Some(p) = unchanged {
                policies.insert(name.clone(), p.clone());
                if pass.failed.remove(name).is_some() {
                    // The failing files were replaced by the serving version again.
                    self.clear_error(name);
                }
                continue;
            }
            if pass.failed.get(name) == Some(&files.fingerprint()) {
                report.still_failing.push(name.clone());
                if let Some(p) = serving {
                    policies.insert(name.clone(), p.clone());
                }
                continue;
            }
            let loaded = match attempts.remove(name) {
                Some((fingerprint, result)) if fingerprint == files.fingerprint() => result,
                _ => self.load(name, files, settings),
            };
            match loaded {
                Ok(policy) => {
                    tracing::info!(policy = %name, version = %short(&policy.version), settings = %short(&policy.settings_digest), compile_ms = policy.compile_time.as_millis() as u64, from_cache = policy.from_cache, ?trigger, "policy loaded");
                    pass.failed.remove(name);
                    let policy = Arc::new(policy);
                    newly_loaded.push(policy.clone());
                    report.loaded.push(name.clone());
                    policies.insert(name.clone(), policy);
                }
                Err(error) => {
                    tracing::error!(policy = %name, version = %short(&files.version), %error, ?trigger, serving = ?serving.map(|p| short(&p.version)), "policy failed to load; the last good version keeps serving");
                    pass.failed.insert(name.clone(), files.fingerprint());
                    self.record_failed(
                        name,
                        trigger,
                        &files.version,
                        settings_digest.as_deref(),
                        &error,
                    );
                    report.failed.push(LoadFailure {
                        policy: name.clone(),
                        version: files.version.clone(),
                        error,
                    });
                    if let Some(p) = serving {
                        policies.insert(name.clone(), p.clone());
                    }
                }
            }
        }
        // Gone from the directory: retire the serving ones, forget the failing ones.
        let known: Vec<String> = self
            .status
            .lock()
            .map(|s| s.keys().cloned().collect())
            .unwrap_or_default();
        for name in known {
            if found.contains_key(&name) || pending.contains(&name) {
                continue;
            }
            pass.failed.remove(&name);
            if current.policies.contains_key(&name) {
                tracing::info!(policy = %name, ?trigger, "policy removed; its routes are retired and answer 404");
                report.removed.push(name);
            } else {
                self.clear_error(&name);
            }
        }
        if report.changed() {
            let (routes, conflicts) = assign_routes(&policies, &current);
            self.snapshot.store(Arc::new(Snapshot { policies, routes }));
            for policy in &newly_loaded {
                self.record_loaded(&policy.name, trigger, policy);
            }
            for name in &report.removed {
                self.record_removed(name, trigger);
            }
            for (name, error) in conflicts {
                tracing::error!(policy = %name, %error, "route conflict");
                self.with_status(&name, |s| s.last_error = Some(error));
            }
        }
        report.pending = pending.into_iter().collect();
        report.serving = self.snapshot.load().policies.keys().cloned().collect();
        report.elapsed_ms = started.elapsed().as_millis() as u64;
        crate::metrics::record_reload(&report);
        report
    }

    /// Scans the directory, waiting for changed files to settle: a changed file
    /// younger than the settle time, or a serving policy that disappeared, is
    /// read again after the wait, and must read the same. Names still moving
    /// after a few rounds are returned as pending.
    /// Changed policies are loaded (compiled) while their files settle, so the
    /// settle time costs nothing when compiling takes longer.
    fn settled_scan(
        &self,
        current: &Snapshot,
        pass: &PassState,
        attempts: &mut Attempts,
    ) -> std::io::Result<(Found, BTreeSet<String>)> {
        let mut found = scan(&self.dir)?;
        let mut pending = BTreeSet::new();
        for _ in 0..SETTLE_ROUNDS {
            let must_confirm = self.settle_wait(&found, current).is_some();
            for (name, files) in &found {
                let fingerprint = files.fingerprint();
                let settings = parse_settings(name, files.settings_text.as_deref());
                let unchanged = current.policies.get(name).is_some_and(|p| {
                    p.version == files.version
                        && settings
                            .as_ref()
                            .is_ok_and(|s| s.digest() == p.settings_digest)
                });
                let tried = attempts.get(name).is_some_and(|(f, _)| *f == fingerprint)
                    || pass.failed.get(name) == Some(&fingerprint);
                if !unchanged && !tried {
                    let result = self.load(name, files, settings);
                    attempts.insert(name.clone(), (fingerprint, result));
                }
            }
            if !must_confirm {
                return Ok((found, BTreeSet::new()));
            }
            if let Some(wait) = self.settle_wait(&found, current) {
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

    /// Compiles and validates one policy version.
    fn load(
        &self,
        name: &str,
        files: &PolicyFiles,
        settings: Result<PolicySettings, String>,
    ) -> Result<Policy, String> {
        settings.and_then(|s| {
            self.engine
                .load(name, &files.component, s)
                .map_err(|e| e.to_string())
        })
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
            let changed = current.policies.get(name).is_none_or(|p| {
                p.version != files.version
                    || parse_settings(name, files.settings_text.as_deref())
                        .map(|s| s.digest())
                        .ok()
                        .as_ref()
                        != Some(&p.settings_digest)
            });
            if !changed {
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

/// Maps routes to policies; a route two policies claim stays with the one
/// already serving it (or the first by name), and the other gets an error.
fn assign_routes(
    policies: &BTreeMap<String, Arc<Policy>>,
    current: &Snapshot,
) -> (RouteTable, Vec<(String, String)>) {
    let mut routes: HashMap<String, Arc<Policy>> = HashMap::new();
    let mut conflicts = Vec::new();
    let mut ordered: Vec<&Arc<Policy>> = policies.values().collect();
    ordered.sort_by_key(|p| {
        let serving = p
            .settings
            .routes
            .iter()
            .any(|r| current.routes.get(r).is_some_and(|c| c.name == p.name));
        (!serving, p.name.clone())
    });
    for policy in ordered {
        for route in &policy.settings.routes {
            match routes.get(route) {
                Some(owner) if owner.name != policy.name => conflicts.push((
                    policy.name.clone(),
                    format!("route {route} is already served by policy {}", owner.name),
                )),
                _ => {
                    routes.insert(route.clone(), policy.clone());
                }
            }
        }
    }
    (routes, conflicts)
}

fn short(version: &str) -> &str {
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
    // An empty or truncated settings file must not retire the routes silently.
    if settings.routes.is_empty() {
        return Err(format!(
            "{name}.toml: no routes; a policy serves at least one route (delete the policy to retire it)"
        ));
    }
    if let Some(bad) = settings.routes.iter().find(|r| !r.starts_with('/')) {
        return Err(format!("{name}.toml: route {bad:?} must start with '/'"));
    }
    Ok(settings)
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
        let component = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            // Removed between listing and reading (or a dangling symlink, or a
            // directory): the policy is not there.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::IsADirectory
                ) =>
            {
                continue
            }
            Err(e) => return Err(e),
        };
        let settings_path = dir.join(format!("{name}.toml"));
        let settings_text = std::fs::read_to_string(&settings_path).ok();
        let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        let modified = [mtime(&path), mtime(&settings_path)]
            .into_iter()
            .flatten()
            .max();
        found.insert(
            name.to_string(),
            PolicyFiles {
                version: policy_engine::engine::content_hash(&component),
                component: Arc::new(component),
                settings_text,
                modified,
            },
        );
    }
    Ok(found)
}
