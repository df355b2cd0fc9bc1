//! Compiled-artifact cache, keyed by content hash and engine version, so a
//! restart or a reload of an already-seen version does not recompile.
//!
//! The directory must be writable by the host alone: artifacts are native code.
//!
//! The cache is kept under a size cap ([`ComponentCache::new`]'s `max_bytes`): after
//! each new artifact, and when asked ([`crate::PolicyEngine::prune_cache`]), the least
//! recently used files go first, except the artifacts of policies still loaded, by this
//! process or another: a loaded artifact is held open with a shared lock (`flock`), and a
//! prune skips a file it cannot lock exclusively. A cache hit counts as a use.

use anyhow::Context;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};
use wasmtime::component::Component;
use wasmtime::Engine;

/// The default size cap of a compilation cache: 4 GiB.
pub const DEFAULT_CACHE_MAX_BYTES: u64 = 4 << 30;

/// A partly written file older than this was left by a process that stopped mid-write.
const STALE_TEMP: Duration = Duration::from_secs(600);

/// A directory of serialized components.
pub struct ComponentCache {
    dir: PathBuf,
    max_bytes: u64,
    /// Artifacts loaded policies were made from: never pruned while one is held.
    live: Mutex<Vec<Weak<CachedArtifact>>>,
}

/// The cached artifact a loaded policy was made from; kept from pruning while held.
#[derive(Debug)]
pub struct CachedArtifact {
    path: PathBuf,
    /// The file with a shared lock, which keeps other processes' prunes off it (none
    /// where the file system has no locks, or the file is gone).
    _lock: Option<std::fs::File>,
}

/// A component from [`ComponentCache::load_or_compile`].
pub struct Cached {
    /// The compiled component.
    pub component: Component,
    /// Whether it came from the cache.
    pub from_cache: bool,
    /// Its artifact, to hold while the component is in use (none when it could not be written).
    pub artifact: Option<Arc<CachedArtifact>>,
}

/// What one pruning pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Pruned {
    /// Files removed.
    files: usize,
    /// Bytes removed.
    bytes: u64,
    /// Bytes the cache holds afterwards.
    kept_bytes: u64,
    /// Files it would have removed but another process holds (loaded by another host).
    held_elsewhere: usize,
}

impl ComponentCache {
    /// Uses (and creates) this directory, kept under `max_bytes` (0: no cap).
    pub fn new(dir: PathBuf, max_bytes: u64) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("creating the compilation cache {}", dir.display()))?;
        Ok(ComponentCache {
            dir,
            max_bytes,
            live: Mutex::new(Vec::new()),
        })
    }

    fn path(&self, engine: &Engine, key: &str) -> PathBuf {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        self.dir.join(format!("{key}-{:016x}.cwasm", h.finish()))
    }

    /// Whether the cache holds a compiled component under `key` for this engine.
    pub fn contains(&self, engine: &Engine, key: &str) -> bool {
        self.path(engine, key).is_file()
    }

    /// The compiled component under `key`; `compile` makes it when the cache has none
    /// (it is then stored, and the cache pruned to its cap).
    pub fn load_or_compile<E>(
        &self,
        engine: &Engine,
        key: &str,
        compile: impl FnOnce() -> Result<Component, E>,
    ) -> Result<Cached, E> {
        let path = self.path(engine, key);
        if path.exists() {
            // SAFETY: the artifact was written by `Component::serialize` of an engine
            // with the same compatibility hash, into a directory only the host writes.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(component) => {
                    touch(&path);
                    return Ok(Cached {
                        component,
                        from_cache: true,
                        artifact: Some(self.hold(path)),
                    });
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "discarding a bad cached artifact")
                }
            }
        }
        let component = compile()?;
        let written = match component.serialize() {
            Ok(artifact) => match write_whole(&path, &artifact) {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "could not write the compilation cache");
                    false
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "could not serialize a compiled component");
                false
            }
        };
        let artifact = written.then(|| self.hold(path));
        self.prune();
        Ok(Cached {
            component,
            from_cache: false,
            artifact,
        })
    }

    /// Marks `path` as in use for as long as the returned handle lives.
    fn hold(&self, path: PathBuf) -> Arc<CachedArtifact> {
        let lock = std::fs::File::open(&path)
            .ok()
            .filter(|file| file.try_lock_shared().is_ok());
        let artifact = Arc::new(CachedArtifact { path, _lock: lock });
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.retain(|w| w.strong_count() > 0);
        live.push(Arc::downgrade(&artifact));
        artifact
    }

    /// Removes the least recently used files until the cache is under its cap, and
    /// partly written files left by a process that stopped mid-write. Artifacts of
    /// loaded policies stay.
    pub(crate) fn prune(&self) {
        let live: Vec<PathBuf> = {
            let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
            live.iter()
                .filter_map(Weak::upgrade)
                .map(|a| a.path.clone())
                .collect()
        };
        let dirs = [self.dir.clone(), self.dir.join("functions")];
        let pruned = prune(&dirs, self.max_bytes, &live, SystemTime::now());
        if pruned.files > 0 || pruned.held_elsewhere > 0 {
            tracing::info!(
                dir = %self.dir.display(),
                files = pruned.files,
                removed_bytes = pruned.bytes,
                kept_bytes = pruned.kept_bytes,
                held_elsewhere = pruned.held_elsewhere,
                max_bytes = self.max_bytes,
                "pruned the compilation cache"
            );
        }
    }
}

/// Sets a file's modification time to now: the cache's "last used".
fn touch(path: &Path) {
    if let Err(e) = std::fs::File::open(path).and_then(|f| f.set_modified(SystemTime::now())) {
        tracing::debug!(path = %path.display(), error = %e, "could not mark a cached artifact as used");
    }
}

/// One file of the cache.
struct Entry {
    path: PathBuf,
    bytes: u64,
    used: SystemTime,
}

/// Prunes the files directly in `dirs`: stale partial writes always, then the least
/// recently modified until they total at most `max_bytes` (0: no cap), never `live` nor
/// a file another process holds locked.
fn prune(dirs: &[PathBuf], max_bytes: u64, live: &[PathBuf], now: SystemTime) -> Pruned {
    let mut entries = Vec::new();
    let mut pruned = Pruned::default();
    for dir in dirs {
        let Ok(read) = std::fs::read_dir(dir) else {
            continue;
        };
        for item in read.flatten() {
            let Ok(meta) = item.metadata() else {
                continue;
            };
            if !meta.is_file() {
                continue;
            }
            let used = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            let entry = Entry {
                path: item.path(),
                bytes: meta.len(),
                used,
            };
            let age = now.duration_since(used).unwrap_or_default();
            if is_temp(&entry.path) {
                if age > STALE_TEMP {
                    pruned.remove(&entry);
                }
                continue;
            }
            entries.push(entry);
        }
    }
    let mut total: u64 = entries.iter().map(|e| e.bytes).sum();
    if max_bytes > 0 && total > max_bytes {
        entries.sort_by_key(|e| e.used);
        for entry in entries.iter().filter(|e| !live.contains(&e.path)) {
            if total <= max_bytes {
                break;
            }
            if held_elsewhere(&entry.path) {
                pruned.held_elsewhere += 1;
                continue;
            }
            if pruned.remove(entry) {
                total -= entry.bytes;
            }
        }
    }
    pruned.kept_bytes = total;
    pruned
}

impl Pruned {
    /// Removes `entry`'s file and counts it; false when it could not be removed.
    fn remove(&mut self, entry: &Entry) -> bool {
        let removed = std::fs::remove_file(&entry.path).is_ok();
        if removed {
            self.files += 1;
            self.bytes += entry.bytes;
        }
        removed
    }
}

/// Whether some process holds `path` locked (a [`CachedArtifact`] of another host).
/// A file system without locks, or a file that cannot be opened, says no.
fn held_elsewhere(path: &Path) -> bool {
    std::fs::File::open(path)
        .is_ok_and(|file| matches!(file.try_lock(), Err(std::fs::TryLockError::WouldBlock)))
}

/// Whether `path` is a partly written file of [`write_whole`] (`<name>.tmp<pid>`).
fn is_temp(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .and_then(|e| e.strip_prefix("tmp"))
        .is_some_and(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
}

/// Cranelift's incremental compilation cache on disk: each compiled function under
/// the hash of its IR. A component whose code was compiled before, with other data
/// (a warm-up snapshot, taken again for new settings), reuses that code.
#[derive(Debug)]
pub struct FunctionCache {
    dir: PathBuf,
}

impl FunctionCache {
    /// Uses (and creates) `functions/` under the compilation cache directory.
    pub fn new(cache_dir: &std::path::Path) -> anyhow::Result<Self> {
        let dir = cache_dir.join("functions");
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("creating the function cache {}", dir.display()))?;
        Ok(FunctionCache { dir })
    }

    fn path(&self, key: &[u8]) -> PathBuf {
        use sha2::Digest;
        self.dir.join(hex::encode(sha2::Sha256::digest(key)))
    }
}

impl wasmtime::CacheStore for FunctionCache {
    fn get(&self, key: &[u8]) -> Option<std::borrow::Cow<'_, [u8]>> {
        std::fs::read(self.path(key)).ok().map(Into::into)
    }

    fn insert(&self, key: &[u8], value: Vec<u8>) -> bool {
        write_whole(&self.path(key), &value).is_ok()
    }
}

/// Writes `bytes` beside `path` and renames it into place, so that readers (other
/// processes sharing the cache) never see a partly written file.
fn write_whole(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes).and_then(|_| std::fs::rename(&tmp, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory under the system's temporary directory.
    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("cache-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("functions")).unwrap();
        dir
    }

    /// Writes `bytes` bytes to `path`, last used `age` before `now`.
    fn file(path: &Path, bytes: usize, now: SystemTime, age: Duration) {
        std::fs::write(path, vec![7u8; bytes]).unwrap();
        let f = std::fs::File::options().write(true).open(path).unwrap();
        f.set_modified(now - age).unwrap();
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .filter(|e| e.path().is_file())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn the_least_recently_used_files_go_first_but_never_a_live_one() {
        let dir = scratch("lru");
        let functions = dir.join("functions");
        let now = SystemTime::now();
        let hour = Duration::from_secs(3600);
        file(&dir.join("a.cwasm"), 400, now, hour * 5); // oldest, but live
        file(&dir.join("b.cwasm"), 300, now, hour * 4);
        file(&functions.join("f1"), 100, now, hour * 3);
        file(&dir.join("c.cwasm"), 300, now, hour * 2);
        file(&functions.join("f2"), 100, now, hour);
        file(&dir.join("d.cwasm"), 300, now, Duration::ZERO);
        let dirs = [dir.clone(), functions.clone()];
        let live = [dir.join("a.cwasm")];

        // 1,500 bytes under a cap of 1,000: b and f1 (400 bytes) are not enough, c goes too.
        let pruned = prune(&dirs, 1_000, &live, now);
        assert_eq!(
            pruned,
            Pruned {
                files: 3,
                bytes: 700,
                kept_bytes: 800,
                held_elsewhere: 0,
            }
        );
        assert_eq!(names(&dir), ["a.cwasm", "d.cwasm"]);
        assert_eq!(names(&functions), ["f2"]);

        // Under the cap, or with no cap, nothing goes.
        assert_eq!(prune(&dirs, 1_000, &live, now).files, 0);
        assert_eq!(prune(&dirs, 0, &[], now).files, 0);

        // A cap the live artifacts alone exceed keeps them and removes the rest.
        let pruned = prune(&dirs, 1, &live, now);
        assert_eq!((pruned.files, pruned.kept_bytes), (2, 400));
        assert_eq!(names(&dir), ["a.cwasm"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_file_another_holder_has_locked_stays() {
        let dir = scratch("held");
        let now = SystemTime::now();
        let hour = Duration::from_secs(3600);
        file(&dir.join("a.cwasm"), 400, now, hour * 3); // oldest: another host's
        file(&dir.join("b.cwasm"), 300, now, hour * 2);
        file(&dir.join("c.cwasm"), 300, now, hour);
        let dirs = [dir.clone(), dir.join("functions")];
        // Another host's hold: a lock on its own open file (`flock` locks are per open
        // file, so this conflicts with the prune's as another process's would).
        let other = ComponentCache::new(dir.clone(), 0).unwrap();
        let held = other.hold(dir.join("a.cwasm"));

        let pruned = prune(&dirs, 400, &[], now);
        assert_eq!(
            pruned,
            Pruned {
                files: 2,
                bytes: 600,
                kept_bytes: 400,
                held_elsewhere: 1,
            }
        );
        assert_eq!(names(&dir), ["a.cwasm"]);

        // Released, it goes like any other.
        drop(held);
        file(&dir.join("d.cwasm"), 300, now, Duration::ZERO);
        let pruned = prune(&dirs, 400, &[], now);
        assert_eq!((pruned.files, pruned.held_elsewhere), (1, 0));
        assert_eq!(names(&dir), ["d.cwasm"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn stale_partial_writes_go_whatever_the_cap() {
        let dir = scratch("temp");
        let now = SystemTime::now();
        file(&dir.join("x.tmp123"), 10, now, STALE_TEMP * 2);
        file(
            &dir.join("functions").join("f.tmp9"),
            10,
            now,
            STALE_TEMP * 2,
        );
        file(&dir.join("y.tmp456"), 10, now, Duration::from_secs(1)); // being written
        file(&dir.join("z.cwasm"), 10, now, STALE_TEMP * 2);
        let dirs = [dir.clone(), dir.join("functions")];
        let pruned = prune(&dirs, 0, &[], now);
        assert_eq!((pruned.files, pruned.bytes, pruned.kept_bytes), (2, 20, 10));
        assert_eq!(names(&dir), ["y.tmp456", "z.cwasm"]);
        assert!(names(&dir.join("functions")).is_empty());
        assert!(is_temp(Path::new("abc-0123.tmp77")) && !is_temp(Path::new("a.tmp")));
        assert!(!is_temp(Path::new("abc.cwasm")) && !is_temp(Path::new("f0a1")));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
