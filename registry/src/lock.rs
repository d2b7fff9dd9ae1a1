//! stack.lock: what a stack resolved to, so CI gets the same plugins and
//! images on every run. TOML, sorted, one entry per plugin and image, so a
//! diff reads well. Components are platform-independent: one digest per
//! plugin serves every OS.

use std::path::Path;

use serde::{Deserialize, Serialize};

pub const LOCK_FILE: &str = "stack.lock";
/// The lock file format this provision writes and reads.
pub const LOCK_VERSION: u32 = 1;
const HEADER: &str = "# Written by `provision lock` (and by `provision up` when absent). Commit it:\n\
# `provision up --locked` refuses to run when the stack no longer matches it.\n\n";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lock {
    pub version: u32,
    #[serde(default, rename = "plugin", skip_serializing_if = "Vec::is_empty")]
    pub plugins: Vec<LockedPlugin>,
    #[serde(default, rename = "image", skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<LockedImage>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedPlugin {
    pub name: String,
    /// The requirement as written in stack.toml (`*` when none).
    pub requirement: String,
    /// `builtin`, `path:FILE` or `oci:REPOSITORY`.
    pub source: String,
    pub version: String,
    pub sha256: String,
    pub contract: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedImage {
    /// The reference a plugin asked for.
    pub reference: String,
    /// What ran instead, when [images] substituted it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub substitute: Option<String>,
    /// The engine's image digest (or, for a built image, its input hash).
    pub digest: String,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("cannot read {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a valid lock file: {message}; delete it and run `provision lock`")]
    Invalid { path: String, message: String },
    #[error(
        "{path} is lock file version {found}, but this provision reads version {LOCK_VERSION}; use the provision that wrote it, or delete it and run `provision lock`"
    )]
    UnknownVersion { path: String, found: u32 },
    #[error("cannot write {path}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl Lock {
    pub fn load(path: &Path) -> Result<Option<Lock>, LockError> {
        let text = match crate::files::read_regular_text(path, crate::files::MAX_TEXT_BYTES) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(LockError::Read { path: path.display().to_string(), source }),
        };
        let lock: Lock =
            toml::from_str(&text).map_err(|e| LockError::Invalid { path: path.display().to_string(), message: e.message().to_string() })?;
        if lock.version != LOCK_VERSION {
            return Err(LockError::UnknownVersion { path: path.display().to_string(), found: lock.version });
        }
        Ok(Some(lock))
    }

    pub fn save(&self, path: &Path) -> Result<(), LockError> {
        let mut sorted = self.clone();
        sorted.version = LOCK_VERSION;
        sorted.plugins.sort_by(|a, b| a.name.cmp(&b.name));
        sorted.images.sort_by(|a, b| a.reference.cmp(&b.reference));
        sorted.images.dedup();
        let text = format!("{HEADER}{}", toml::to_string_pretty(&sorted).expect("a lock serializes"));
        let tmp = path.with_extension("lock.tmp");
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|source| LockError::Write { path: path.display().to_string(), source })
    }

    pub fn plugin(&self, name: &str) -> Option<&LockedPlugin> {
        self.plugins.iter().find(|p| p.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_of_an_unknown_version_is_refused() {
        let dir = std::env::temp_dir().join(format!("provision-lock-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(LOCK_FILE);
        Lock { version: LOCK_VERSION, ..Lock::default() }.save(&path).unwrap();
        assert!(Lock::load(&path).unwrap().is_some());
        std::fs::write(&path, "version = 2\n").unwrap();
        let error = Lock::load(&path).unwrap_err().to_string();
        assert!(error.contains("is lock file version 2, but this provision reads version 1"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
