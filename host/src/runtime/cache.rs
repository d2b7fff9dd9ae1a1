//! Compiled components on disk. Compiling a plugin takes ~100 ms; loading
//! its compiled code takes well under 1 ms, so a warm run never compiles.
//!
//! Key: the component's sha256 plus a hash of the engine's compatibility
//! (wasmtime version and every setting that affects code). Only code this
//! process compiled itself is ever deserialized, from a folder it owns.
//! Must not fail a run: a cache that cannot be read or written only costs a
//! compile.

use std::{
    hash::{DefaultHasher, Hash, Hasher},
    path::{Path, PathBuf},
};

use wasmtime::{Engine, component::Component};

/// provision's cache folder: `$PROVISION_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/provision`, else `~/.cache/provision`. Compiled code
/// lives in `compiled/`, downloaded components in `plugins/` (by sha256).
pub fn cache_base() -> Option<PathBuf> {
    std::env::var_os("PROVISION_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("provision")))
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/provision")))
}

#[derive(Debug, Clone)]
pub struct CompileCache {
    dir: PathBuf,
}

impl CompileCache {
    /// `compiled/` in [`cache_base`].
    pub fn default_location() -> Option<Self> {
        Some(CompileCache { dir: cache_base()?.join("compiled") })
    }

    /// The component, and whether it came from the cache.
    pub fn load_or_compile(&self, engine: &Engine, sha256: &str, wasm: &[u8]) -> wasmtime::Result<(Component, bool)> {
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let path = self.dir.join(format!("{sha256}-{:016x}.cwasm", hasher.finish()));

        if path.exists() {
            // SAFETY: the file was written by `store` below from the output of
            // `Component::serialize` on an engine with the same compatibility
            // hash; it never comes from outside this cache folder.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(component) => return Ok((component, true)),
                // Truncated, or from an incompatible build: compile afresh.
                Err(_) => {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        let component = Component::new(engine, wasm)?;
        // The cache is an optimisation: failing to write it is not an error.
        let _ = self.store(&path, &component);
        Ok((component, false))
    }

    /// Write atomically (temp file + rename) so a concurrent reader never
    /// sees half a file.
    fn store(&self, path: &Path, component: &Component) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let bytes = component.serialize().map_err(std::io::Error::other)?;
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, path)
    }
}
