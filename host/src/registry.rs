//! The loaded policies and the routes they serve. Readers take a snapshot with
//! one atomic load; a reload builds a new snapshot and swaps it in, so requests
//! already running finish on the version they started with.

use arc_swap::ArcSwap;
use policy_engine::{Policy, PolicyEngine, PolicySettings};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// One consistent view of what is loaded.
#[derive(Default)]
pub struct Snapshot {
    /// Policies by name.
    pub policies: BTreeMap<String, Arc<Policy>>,
    /// Route path to the policy serving it.
    pub routes: HashMap<String, Arc<Policy>>,
}

/// What the status API reports of one policy.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PolicyStatus {
    /// Policy name.
    pub name: String,
    /// Content hash of the serving component, if any version serves.
    pub version: Option<String>,
    /// When the serving version was loaded (Unix seconds).
    pub loaded_at: Option<u64>,
    /// Routes it serves.
    pub routes: Vec<String>,
    /// The last load error, if the last attempt failed.
    pub last_error: Option<String>,
    /// Reload history, newest last (bounded).
    pub history: Vec<ReloadEvent>,
}

/// One load attempt.
#[derive(Debug, Clone, Serialize)]
pub struct ReloadEvent {
    /// Unix seconds.
    pub at: u64,
    /// Component content hash of the attempt.
    pub version: String,
    /// `loaded`, `failed` or `removed`.
    pub outcome: &'static str,
    /// Error message, for a failure.
    pub error: Option<String>,
    /// Milliseconds spent compiling or loading from cache.
    pub compile_ms: u64,
    /// Whether the compiled artifact came from the cache.
    pub from_cache: bool,
}

const HISTORY: usize = 32;

/// What one reload pass did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReloadReport {
    /// Policies loaded (new or changed).
    pub loaded: Vec<String>,
    /// Policies removed.
    pub removed: Vec<String>,
    /// Policies that failed to load, with the reason.
    pub failed: Vec<(String, String)>,
}

/// The files that make one policy, and their content.
struct PolicyFiles {
    component: Vec<u8>,
    settings_text: Option<String>,
}

/// Loaded policies, their routes and their load history.
pub struct Registry {
    engine: PolicyEngine,
    dir: PathBuf,
    snapshot: ArcSwap<Snapshot>,
    status: Mutex<BTreeMap<String, PolicyStatus>>,
    /// Serializes reload passes.
    reloading: Mutex<()>,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Registry {
    /// An empty registry over a policy directory.
    pub fn new(engine: PolicyEngine, dir: PathBuf) -> Self {
        Registry {
            engine,
            dir,
            snapshot: ArcSwap::from_pointee(Snapshot::default()),
            status: Mutex::new(BTreeMap::new()),
            reloading: Mutex::new(()),
        }
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
    /// Blocking: compiles components. Call it off the request path.
    pub fn reload(&self) -> ReloadReport {
        let _pass = self.reloading.lock().unwrap_or_else(|p| p.into_inner());
        let mut report = ReloadReport::default();
        let current = self.snapshot.load_full();
        let found = match scan(&self.dir) {
            Ok(found) => found,
            Err(e) => {
                tracing::error!(dir = %self.dir.display(), error = %e, "cannot read the policy directory");
                report.failed.push(("*".into(), e.to_string()));
                return report;
            }
        };
        let mut policies: BTreeMap<String, Arc<Policy>> = BTreeMap::new();
        for (name, files) in &found {
            let settings = match files
                .settings_text
                .as_deref()
                .map(PolicySettings::from_toml)
            {
                Some(Ok(s)) => Ok(s),
                Some(Err(e)) => Err(format!("{name}.toml: {e}")),
                None => Err(format!(
                    "{name}.toml is missing: a policy needs its settings file"
                )),
            };
            let version = policy_engine::engine::content_hash(&files.component);
            let unchanged = current.policies.get(name).filter(|p| {
                p.version == version
                    && settings
                        .as_ref()
                        .is_ok_and(|s| s.digest() == p.settings_digest)
            });
            if let Some(p) = unchanged {
                policies.insert(name.clone(), p.clone());
                continue;
            }
            let loaded = settings.and_then(|s| {
                self.engine
                    .load(name, &files.component, s)
                    .map_err(|e| e.to_string())
            });
            match loaded {
                Ok(policy) => {
                    tracing::info!(policy = %name, version = %short(&policy.version), compile_ms = policy.compile_time.as_millis() as u64, from_cache = policy.from_cache, "policy loaded");
                    self.record(name, &policy.version, Ok(&policy));
                    report.loaded.push(name.clone());
                    policies.insert(name.clone(), Arc::new(policy));
                }
                Err(error) => {
                    tracing::error!(policy = %name, version = %short(&version), %error, "policy failed to load; the last good version keeps serving");
                    self.record(name, &version, Err(&error));
                    report.failed.push((name.clone(), error));
                    if let Some(p) = current.policies.get(name) {
                        policies.insert(name.clone(), p.clone());
                    }
                }
            }
        }
        for name in current.policies.keys() {
            if !found.contains_key(name) {
                tracing::info!(policy = %name, "policy removed; its routes are retired");
                self.record_removed(name);
                report.removed.push(name.clone());
            }
        }
        let routes = self.assign_routes(&policies, &current);
        self.snapshot.store(Arc::new(Snapshot { policies, routes }));
        report
    }

    /// Maps routes to policies; a route two policies claim stays with the one
    /// already serving it (or the first by name), and the other gets an error.
    fn assign_routes(
        &self,
        policies: &BTreeMap<String, Arc<Policy>>,
        current: &Snapshot,
    ) -> HashMap<String, Arc<Policy>> {
        let mut routes: HashMap<String, Arc<Policy>> = HashMap::new();
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
                    Some(owner) if owner.name != policy.name => {
                        let error =
                            format!("route {route} is already served by policy {}", owner.name);
                        tracing::error!(policy = %policy.name, %error, "route conflict");
                        if let Ok(mut status) = self.status.lock() {
                            if let Some(s) = status.get_mut(&policy.name) {
                                s.last_error = Some(error);
                            }
                        }
                    }
                    _ => {
                        routes.insert(route.clone(), policy.clone());
                    }
                }
            }
        }
        routes
    }

    fn record(&self, name: &str, version: &str, result: Result<&Policy, &str>) {
        let Ok(mut status) = self.status.lock() else {
            return;
        };
        let entry = status
            .entry(name.to_string())
            .or_insert_with(|| PolicyStatus {
                name: name.to_string(),
                ..Default::default()
            });
        let now = unix_now();
        let event = match result {
            Ok(policy) => {
                entry.version = Some(policy.version.clone());
                entry.loaded_at = Some(now);
                entry.routes = policy.settings.routes.clone();
                entry.last_error = None;
                ReloadEvent {
                    at: now,
                    version: version.to_string(),
                    outcome: "loaded",
                    error: None,
                    compile_ms: policy.compile_time.as_millis() as u64,
                    from_cache: policy.from_cache,
                }
            }
            Err(error) => {
                entry.last_error = Some(error.to_string());
                ReloadEvent {
                    at: now,
                    version: version.to_string(),
                    outcome: "failed",
                    error: Some(error.to_string()),
                    compile_ms: 0,
                    from_cache: false,
                }
            }
        };
        entry.history.push(event);
        if entry.history.len() > HISTORY {
            entry.history.remove(0);
        }
    }

    fn record_removed(&self, name: &str) {
        let Ok(mut status) = self.status.lock() else {
            return;
        };
        if let Some(entry) = status.get_mut(name) {
            let version = entry.version.take().unwrap_or_default();
            entry.routes.clear();
            entry.loaded_at = None;
            entry.last_error = None;
            entry.history.push(ReloadEvent {
                at: unix_now(),
                version,
                outcome: "removed",
                error: None,
                compile_ms: 0,
                from_cache: false,
            });
            if entry.history.len() > HISTORY {
                entry.history.remove(0);
            }
        }
    }
}

fn short(version: &str) -> &str {
    &version[..version.len().min(12)]
}

/// Reads every `<name>.wasm` (following symlinks, as a ConfigMap volume has
/// them) with its `<name>.toml`. Hidden entries such as `..data` are skipped.
fn scan(dir: &Path) -> std::io::Result<BTreeMap<String, PolicyFiles>> {
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
        let component = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            // Removed between listing and reading: the next pass sees it gone.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let settings_text = std::fs::read_to_string(dir.join(format!("{name}.toml"))).ok();
        found.insert(
            name.to_string(),
            PolicyFiles {
                component,
                settings_text,
            },
        );
    }
    Ok(found)
}
