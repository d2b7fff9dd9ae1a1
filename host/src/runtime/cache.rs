//! Compiled components on disk. Compiling a plugin takes ~100 ms; loading
//! its compiled code takes well under 1 ms, so a warm run never compiles.
//!
//! Key: the component's sha256 plus a hash of the engine's compatibility
//! (wasmtime version and every setting that affects code). Only code this
//! process compiled itself is ever deserialized, from a folder it owns, and
//! only after checking it is the code of the component asked for.
//! Must not fail a run: a cache that cannot be read or written only costs a
//! compile.

use std::{
    hash::{DefaultHasher, Hash, Hasher},
    path::PathBuf,
};

use sha2::Digest;
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

    fn path(&self, engine: &Engine, sha256: &str) -> PathBuf {
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        self.dir.join(format!("{sha256}-{:016x}.cwasm", hasher.finish()))
    }

    /// The compiled code of the component whose sha256 is `sha256`, if the
    /// cache has it intact. Each file starts with the component's sha256 and
    /// the digest of the code after it: a file renamed, truncated or
    /// overwritten by anything but `store` is compiled afresh, never run.
    pub fn load(&self, engine: &Engine, sha256: &str) -> Option<Component> {
        let path = self.path(engine, sha256);
        let bytes = std::fs::read(&path).ok()?;
        let intact =
            bytes.len() > HEADER && hex::encode(&bytes[..32]) == sha256 && bytes[32..HEADER] == *sha2::Sha256::digest(&bytes[HEADER..]).as_slice();
        if !intact {
            let _ = std::fs::remove_file(&path);
            return None;
        }
        // SAFETY: the bytes are what `store` wrote from `Component::serialize`
        // of this very component (checked above) on an engine with the same
        // compatibility hash (in the file name), in a folder this user owns.
        unsafe { Component::deserialize(engine, &bytes[HEADER..]) }.ok()
    }

    /// Keep compiled code for next time. A cache: failing to write it only
    /// costs a compile. Written atomically (temp file + rename, the temp file
    /// removed on failure) so a concurrent reader never sees half a file.
    pub fn store(&self, engine: &Engine, sha256: &str, component: &Component) {
        let path = self.path(engine, sha256);
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let written = (|| -> std::io::Result<()> {
            let code = component.serialize().map_err(std::io::Error::other)?;
            let mut bytes = hex::decode(sha256).map_err(std::io::Error::other)?;
            bytes.extend_from_slice(&sha2::Sha256::digest(&code));
            bytes.extend_from_slice(&code);
            std::fs::create_dir_all(&self.dir)?;
            std::fs::write(&tmp, bytes)?;
            std::fs::rename(&tmp, &path)
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
    }
}

/// The component's sha256, then the sha256 of the compiled code.
const HEADER: usize = 64;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_used_only_for_its_own_component_and_only_intact() {
        let dir = tempfile::tempdir().unwrap();
        let cache = CompileCache { dir: dir.path().to_path_buf() };
        let engine = Engine::default();
        let [redis, postgres] = ["redis", "postgres"].map(|n| provision_registry::builtins().iter().find(|b| b.name == n).unwrap());
        let component = Component::new(&engine, redis.wasm).unwrap();
        cache.store(&engine, redis.sha256, &component);
        assert!(cache.load(&engine, redis.sha256).is_some());

        // Another component's name on redis's code: refused, and removed.
        std::fs::copy(cache.path(&engine, redis.sha256), cache.path(&engine, postgres.sha256)).unwrap();
        assert!(cache.load(&engine, postgres.sha256).is_none());
        assert!(!cache.path(&engine, postgres.sha256).exists());

        // Code changed behind the cache's back: refused.
        let path = cache.path(&engine, redis.sha256);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
        assert!(cache.load(&engine, redis.sha256).is_none());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "no temp files or bad entries left");
    }
}
