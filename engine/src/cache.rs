//! Compiled-artifact cache, keyed by content hash and engine version, so a
//! restart or a reload of an already-seen version does not recompile.
//!
//! The directory must be writable by the host alone: artifacts are native code.

use anyhow::Context;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use wasmtime::component::Component;
use wasmtime::Engine;

/// A directory of serialized components.
pub struct ComponentCache {
    dir: PathBuf,
}

impl ComponentCache {
    /// Uses (and creates) this directory.
    pub fn new(dir: PathBuf) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("creating the compilation cache {}", dir.display()))?;
        Ok(ComponentCache { dir })
    }

    fn path(&self, engine: &Engine, key: &str) -> PathBuf {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        self.dir.join(format!("{key}-{:016x}.cwasm", h.finish()))
    }

    /// The compiled component under `key`, and whether it came from the cache;
    /// `compile` makes it when the cache has none (and it is then stored).
    pub fn load_or_compile<E>(
        &self,
        engine: &Engine,
        key: &str,
        compile: impl FnOnce() -> Result<Component, E>,
    ) -> Result<(Component, bool), E> {
        let path = self.path(engine, key);
        if path.exists() {
            // SAFETY: the artifact was written by `Component::serialize` of an engine
            // with the same compatibility hash, into a directory only the host writes.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(component) => return Ok((component, true)),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "discarding a bad cached artifact")
                }
            }
        }
        let component = compile()?;
        match component.serialize() {
            Ok(artifact) => {
                if let Err(e) = write_whole(&path, &artifact) {
                    tracing::warn!(path = %path.display(), error = %e, "could not write the compilation cache");
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not serialize a compiled component"),
        }
        Ok((component, false))
    }
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
