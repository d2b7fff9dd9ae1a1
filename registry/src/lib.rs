//! Where plugins come from: the built-in index carried in the binary, local
//! paths, and (later) OCI registries. Resolution turns a stack's plugin
//! requirements into component bytes pinned by sha256.

mod contract;

use std::{
    borrow::Cow,
    fmt, fs,
    path::{Path, PathBuf},
};

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
}

/// Where a resolved plugin came from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    Builtin,
    Path(PathBuf),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Builtin => f.write_str("builtin"),
            Source::Path(path) => write!(f, "{}", path.display()),
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
    #[error("no plugin named `{name}`: the built-in plugins are {known}; for a plugin of your own add `{name} = {{ path = \"path/to/{name}.wasm\" }}` under [plugins]")]
    Unknown { name: String, known: String },
    #[error("no version of built-in plugin `{name}` matches `{requirement}`: this provision carries {available}")]
    NoMatchingVersion { name: String, requirement: VersionReq, available: String },
    #[error("cannot read plugin `{name}` from {}: {source}", path.display())]
    Read { name: String, path: PathBuf, source: std::io::Error },
    #[error("plugin `{name}` at {}: sha256 is {actual}, but the stack pins {expected}; if the new file is trusted, update `sha256` under [plugins]", path.display())]
    DigestMismatch { name: String, path: PathBuf, expected: String, actual: String },
    #[error("plugin `{name}` at {}: {source}", path.display())]
    Contract { name: String, path: PathBuf, source: ContractError },
}

/// Resolve one requirement. Relative paths are taken from `base_dir` (the
/// folder of stack.toml).
pub fn resolve(req: &Requirement, base_dir: &Path) -> Result<Resolved, ResolveError> {
    match &req.source {
        RequirementSource::Builtin => resolve_builtin(req),
        RequirementSource::Path { path, sha256 } => resolve_path(req, &base_dir.join(path), sha256.as_deref()),
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
        return Err(ResolveError::NoMatchingVersion {
            name: req.name.clone(),
            requirement: req.version.clone(),
            available,
        });
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

fn resolve_path(req: &Requirement, path: &Path, pinned: Option<&str>) -> Result<Resolved, ResolveError> {
    let name = req.name.clone();
    let wasm = fs::read(path).map_err(|source| ResolveError::Read { name: name.clone(), path: path.into(), source })?;
    let sha256 = sha256_hex(&wasm);
    if let Some(expected) = pinned {
        let expected = expected.strip_prefix("sha256:").unwrap_or(expected).to_ascii_lowercase();
        if expected != sha256 {
            return Err(ResolveError::DigestMismatch { name, path: path.into(), expected, actual: sha256 });
        }
    }
    let contract = contract_version(&wasm)
        .map_err(|source| ResolveError::Contract { name: name.clone(), path: path.into(), source })?;
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

/// Lower-case hex sha256, the digest form used in stack.toml and the lock.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}
