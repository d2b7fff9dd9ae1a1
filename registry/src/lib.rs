//! Where plugins come from: the built-in index carried in the binary, local
//! paths, and OCI registries. Resolution turns a stack's plugin requirements
//! into component bytes pinned by sha256, following stack.lock when it has a
//! matching entry, and keeps downloaded components in a content-addressed
//! cache so a second run needs no network.

pub mod contract;
pub mod files;
pub mod lock;
pub mod oci;

use std::{
    borrow::Cow,
    fmt, fs,
    path::{Path, PathBuf},
    sync::{Mutex, OnceLock},
};

pub use lock::{LOCK_FILE, LOCK_VERSION, Lock, LockError, LockedImage, LockedPlugin};

use semver::{Version, VersionReq};
use sha2::{Digest, Sha256};

pub use contract::{CONTRACT_PACKAGE, ContractError, contract_version};

/// A built-in plugin, compiled into the binary.
pub struct Builtin {
    pub name: &'static str,
    pub version: &'static str,
    pub contract: &'static str,
    pub sha256: &'static str,
    pub wasm: &'static [u8],
}

include!(concat!(env!("OUT_DIR"), "/builtin.rs"));

/// Every built-in plugin.
pub fn builtins() -> &'static [Builtin] {
    BUILTIN
}

/// What a stack asks for under one plugin name.
#[derive(Debug, Clone, PartialEq)]
pub struct Requirement {
    pub name: String,
    /// Any version when none was written.
    pub version: VersionReq,
    pub source: RequirementSource,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RequirementSource {
    /// One of the plugins carried in the binary.
    Builtin,
    /// A component file; `sha256` pins it when given.
    Path { path: PathBuf, sha256: Option<String> },
    /// An OCI repository whose tags are the plugin's versions.
    Oci { repository: String },
}

impl RequirementSource {
    /// How the source is written in stack.lock.
    pub fn lock_key(&self) -> String {
        match self {
            RequirementSource::Builtin => "builtin".into(),
            RequirementSource::Path { path, .. } => format!("path:{}", path.display()),
            RequirementSource::Oci { repository } => format!("oci:{repository}"),
        }
    }
}

/// Where a resolved plugin came from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    Builtin,
    Path(PathBuf),
    Oci { repository: String, tag: String },
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Builtin => f.write_str("builtin"),
            Source::Path(path) => write!(f, "{}", path.display()),
            Source::Oci { repository, tag } => write!(f, "{repository}:{tag}"),
        }
    }
}

/// A plugin ready to load: its bytes, pinned by digest.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub name: String,
    /// Known from the index for built-ins; for a path, only once the plugin
    /// is loaded and asked (the host checks it against the requirement).
    pub version: Option<Version>,
    pub requirement: VersionReq,
    pub contract: Version,
    pub source: Source,
    /// Hex sha256 of `wasm`.
    pub sha256: String,
    pub wasm: Cow<'static, [u8]>,
}

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error(
        "no plugin named `{name}`: the built-in plugins are {known}; for a plugin of your own add `{name} = {{ path = \"path/to/{name}.wasm\" }}` under [plugins]"
    )]
    Unknown { name: String, known: String },
    #[error("no version of built-in plugin `{name}` matches `{requirement}`: this provision carries {available}")]
    NoMatchingVersion { name: String, requirement: VersionReq, available: String },
    #[error("cannot read plugin `{name}` from {}: {error}", path.display())]
    Read { name: String, path: PathBuf, error: std::io::Error },
    #[error("plugin `{name}` at {}: sha256 is {actual}, but the stack pins {expected}; if the new file is trusted, update `sha256` under [plugins]", path.display())]
    DigestMismatch { name: String, path: PathBuf, expected: String, actual: String },
    #[error("plugin `{name}` at {}: {error}", path.display())]
    Contract { name: String, path: PathBuf, error: ContractError },
    #[error("plugin `{name}`: {error}{hint}")]
    Oci { name: String, error: Box<oci::OciError>, hint: &'static str },
    #[error("plugin `{name}` from {repository}:{tag} calls itself `{found}`; refusing a plugin that is not what was asked for")]
    WrongName { name: String, repository: String, tag: String, found: String },
    #[error("stack.lock does not match the stack: {detail}. Run `provision lock` to update it (and commit it)")]
    LockMismatch { detail: String },
}

/// Resolves requirements for one stack.
pub struct Resolver {
    base_dir: PathBuf,
    cache_dir: Option<PathBuf>,
    lock: Option<Lock>,
    locked: bool,
    registry: OnceLock<oci::Registry>,
    notes: Mutex<Vec<String>>,
}

impl Resolver {
    /// `base_dir`: the folder of stack.toml. `cache_dir`: where downloaded
    /// components are kept by sha256. `locked`: every requirement must be
    /// in `lock` with the same requirement, source and digest (CI).
    pub fn new(base_dir: &Path, cache_dir: Option<PathBuf>, lock: Option<Lock>, locked: bool) -> Self {
        Resolver { base_dir: base_dir.into(), cache_dir, lock, locked, registry: OnceLock::new(), notes: Mutex::new(Vec::new()) }
    }

    /// What resolution wants the user to know (offline use, lock updates).
    pub fn notes(&self) -> Vec<String> {
        self.notes.lock().unwrap().clone()
    }

    fn note(&self, note: String) {
        self.notes.lock().unwrap().push(note);
    }

    pub fn resolve(&self, req: &Requirement) -> Result<Resolved, ResolveError> {
        let key = req.source.lock_key();
        let requirement = req.version.to_string();
        let entry = self.lock.as_ref().and_then(|l| l.plugin(&req.name));
        let matching = entry.filter(|e| e.source == key && e.requirement == requirement);
        if self.locked && matching.is_none() {
            let detail = match entry {
                None => format!("it has no entry for plugin `{}`", req.name),
                Some(e) => format!(
                    "plugin `{}` is locked as `{}` from {}, but the stack now asks for `{requirement}` from {key}",
                    req.name, e.requirement, e.source
                ),
            };
            return Err(ResolveError::LockMismatch { detail });
        }
        let resolved = match &req.source {
            RequirementSource::Builtin => resolve_builtin(req)?,
            RequirementSource::Path { path, sha256 } => resolve_path(req, path, &self.base_dir.join(path), sha256.as_deref())?,
            RequirementSource::Oci { repository } => self.resolve_oci(req, repository, matching)?,
        };
        if let Some(entry) = matching {
            let version = resolved.version.as_ref().map(|v| v.to_string());
            let same = entry.sha256 == resolved.sha256 && version.as_ref().is_none_or(|v| *v == entry.version);
            if !same {
                let detail = format!(
                    "plugin `{}` is locked at {} sha256:{}, but resolves to {} sha256:{}",
                    req.name,
                    entry.version,
                    entry.sha256,
                    version.unwrap_or_else(|| "?".into()),
                    resolved.sha256
                );
                if self.locked {
                    return Err(ResolveError::LockMismatch { detail });
                }
                self.note(format!("{detail}; stack.lock will be updated"));
            }
        }
        Ok(resolved)
    }

    fn registry(&self) -> &oci::Registry {
        self.registry.get_or_init(oci::Registry::new)
    }

    fn resolve_oci(&self, req: &Requirement, repository: &str, entry: Option<&LockedPlugin>) -> Result<Resolved, ResolveError> {
        let name = &req.name;
        let oci_error = |error: oci::OciError| {
            let hint = match error {
                oci::OciError::Unreachable { .. } => "; with a stack.lock entry and the component in the local cache, provision works offline",
                _ => "",
            };
            ResolveError::Oci { name: name.clone(), error: Box::new(error), hint }
        };
        // Locked and cached: no network at all.
        if let Some((entry, wasm)) = entry.and_then(|e| Some((e, self.cached(&e.sha256)?))) {
            self.note(format!("plugin `{name}` {} from the local cache (locked; {repository} not contacted)", entry.version));
            let version = Version::parse(&entry.version).ok();
            return self.oci_resolved(req, repository, &entry.version, version, wasm);
        }
        let release = match entry {
            Some(entry) => self.registry().release(repository, &entry.version).map_err(oci_error)?,
            None => self.registry().resolve(repository, &req.version).map_err(oci_error)?,
        };
        if &release.name != name {
            return Err(ResolveError::WrongName { name: name.clone(), repository: repository.into(), tag: release.tag, found: release.name });
        }
        let wasm = match self.cached(&release.sha256) {
            Some(wasm) => wasm,
            None => {
                let wasm = self.registry().pull(&release).map_err(oci_error)?;
                self.store(&release.sha256, &wasm);
                wasm
            }
        };
        self.oci_resolved(req, repository, &release.tag, Some(release.version), wasm)
    }

    fn oci_resolved(
        &self,
        req: &Requirement,
        repository: &str,
        tag: &str,
        version: Option<Version>,
        wasm: Vec<u8>,
    ) -> Result<Resolved, ResolveError> {
        let contract = contract_version(&wasm).map_err(|error| ResolveError::Contract {
            name: req.name.clone(),
            path: PathBuf::from(format!("{repository}:{tag}")),
            error,
        })?;
        Ok(Resolved {
            name: req.name.clone(),
            version,
            requirement: req.version.clone(),
            contract,
            source: Source::Oci { repository: repository.into(), tag: tag.into() },
            sha256: sha256_hex(&wasm),
            wasm: Cow::Owned(wasm),
        })
    }

    /// A component from the content-addressed cache, checked against its name.
    fn cached(&self, sha256: &str) -> Option<Vec<u8>> {
        let wasm = read_component(&self.cache_dir.as_ref()?.join(format!("{sha256}.wasm"))).ok()?;
        (sha256_hex(&wasm) == sha256).then_some(wasm)
    }

    fn store(&self, sha256: &str, wasm: &[u8]) {
        // A cache: failing to write it only costs a download next time.
        if let Some(dir) = &self.cache_dir {
            let _ = store_in_cache(dir, sha256, wasm);
        }
    }
}

/// Put a component into the content-addressed cache `dir` as
/// `SHA256.wasm`, atomically (temp file + rename, the temp file removed on
/// failure), so a concurrent reader never sees half a file.
pub fn store_in_cache(dir: &Path, sha256: &str, wasm: &[u8]) -> std::io::Result<PathBuf> {
    let path = dir.join(format!("{sha256}.wasm"));
    let tmp = dir.join(format!("{sha256}.tmp{}", std::process::id()));
    let written = fs::create_dir_all(dir).and_then(|()| fs::write(&tmp, wasm)).and_then(|()| fs::rename(&tmp, &path));
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written.map(|()| path)
}

/// Resolve one requirement without a lock or cache. Relative paths are
/// taken from `base_dir` (the folder of stack.toml).
pub fn resolve(req: &Requirement, base_dir: &Path) -> Result<Resolved, ResolveError> {
    Resolver::new(base_dir, None, None, false).resolve(req)
}

impl Resolved {
    /// The stack.lock entry for this plugin, once its version is known.
    pub fn lock_entry(&self, source: &RequirementSource, version: &str) -> LockedPlugin {
        LockedPlugin {
            name: self.name.clone(),
            requirement: self.requirement.to_string(),
            source: source.lock_key(),
            version: version.to_string(),
            sha256: self.sha256.clone(),
            contract: self.contract.to_string(),
        }
    }
}

fn resolve_builtin(req: &Requirement) -> Result<Resolved, ResolveError> {
    let candidates: Vec<&Builtin> = BUILTIN.iter().filter(|b| b.name == req.name).collect();
    if candidates.is_empty() {
        let known = BUILTIN.iter().map(|b| b.name).collect::<Vec<_>>().join(", ");
        return Err(ResolveError::Unknown { name: req.name.clone(), known });
    }
    let best = candidates
        .iter()
        .map(|b| (Version::parse(b.version).expect("built-in versions are semver"), *b))
        .filter(|(v, _)| req.version.matches(v))
        .max_by(|a, b| a.0.cmp(&b.0));
    let Some((version, builtin)) = best else {
        let available = candidates.iter().map(|b| b.version).collect::<Vec<_>>().join(", ");
        return Err(ResolveError::NoMatchingVersion { name: req.name.clone(), requirement: req.version.clone(), available });
    };
    Ok(Resolved {
        name: req.name.clone(),
        version: Some(version),
        requirement: req.version.clone(),
        contract: Version::parse(builtin.contract).expect("built-in contract versions are semver"),
        source: Source::Builtin,
        sha256: builtin.sha256.to_string(),
        wasm: Cow::Borrowed(builtin.wasm),
    })
}

/// `written` is the path as stack.toml has it (for messages), `path` the file.
fn resolve_path(req: &Requirement, written: &Path, path: &Path, pinned: Option<&str>) -> Result<Resolved, ResolveError> {
    let name = req.name.clone();
    let wasm = read_component(path).map_err(|error| ResolveError::Read { name: name.clone(), path: written.into(), error })?;
    let sha256 = sha256_hex(&wasm);
    if let Some(expected) = pinned {
        let expected = expected.strip_prefix("sha256:").unwrap_or(expected).to_ascii_lowercase();
        if expected != sha256 {
            return Err(ResolveError::DigestMismatch { name, path: written.into(), expected, actual: sha256 });
        }
    }
    let contract = contract_version(&wasm).map_err(|error| ResolveError::Contract { name: name.clone(), path: written.into(), error })?;
    Ok(Resolved {
        name,
        version: None,
        requirement: req.version.clone(),
        contract,
        source: Source::Path(path.into()),
        sha256,
        wasm: Cow::Owned(wasm),
    })
}

/// The largest component accepted: built-ins are ~200 KiB; a plugin of tens
/// of MiB is already suspect, and compiling it must stay bounded.
pub const MAX_COMPONENT_BYTES: u64 = 32 << 20;

/// Read a component file: a regular file (not a FIFO, device or folder,
/// which could block or never end) of at most `MAX_COMPONENT_BYTES`.
pub fn read_component(path: &Path) -> std::io::Result<Vec<u8>> {
    files::read_regular(path, MAX_COMPONENT_BYTES)
}

/// Lower-case hex sha256, the digest form used in stack.toml and the lock.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}
