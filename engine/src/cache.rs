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

    fn path(&self, engine: &Engine, content_hash: &str) -> PathBuf {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        self.dir
            .join(format!("{content_hash}-{:016x}.cwasm", h.finish()))
    }

    /// The compiled component, and whether it came from the cache.
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        content_hash: &str,
        bytes: &[u8],
    ) -> wasmtime::Result<(Component, bool)> {
        let path = self.path(engine, content_hash);
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
        let component = Component::new(engine, bytes)?;
        match component.serialize() {
            Ok(artifact) => {
                let tmp = path.with_extension(format!("tmp{}", std::process::id()));
                let written =
                    std::fs::write(&tmp, artifact).and_then(|_| std::fs::rename(&tmp, &path));
                if let Err(e) = written {
                    tracing::warn!(path = %path.display(), error = %e, "could not write the compilation cache");
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not serialize a compiled component"),
        }
        Ok((component, false))
    }
}
