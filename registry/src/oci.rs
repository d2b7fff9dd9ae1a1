//! Plugins from OCI registries, the way the WebAssembly ecosystem ships
//! components (wkg, Spin, devcontainer Features): one artifact per version,
//! tagged with the semver version, config `application/vnd.wasm.config.v0+json`,
//! one `application/wasm` layer, and annotations naming plugin, version and
//! contract so resolution reads only manifests, never layers it will not use.

use std::collections::BTreeMap;

use oci_client::{
    Client, Reference,
    client::{ClientConfig, ClientProtocol, Config, ImageLayer},
    manifest::OciImageManifest,
    secrets::RegistryAuth,
};
use semver::{Version, VersionReq};

use crate::sha256_hex;

pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
pub const LAYER_MEDIA_TYPE: &str = "application/wasm";
pub const ANNOTATION_NAME: &str = "dev.provision.plugin.name";
pub const ANNOTATION_VERSION: &str = "org.opencontainers.image.version";
pub const ANNOTATION_CONTRACT: &str = "dev.provision.contract";

#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("`{0}` is not a registry reference (expected HOST[:PORT]/PATH, e.g. ghcr.io/acme/postgres): {1}")]
    BadReference(String, String),
    #[error("registry {registry} is unreachable or refused the request: {message}")]
    Unreachable { registry: String, message: String },
    #[error("{repository} has no tag {tag}")]
    TagNotFound { repository: String, tag: String },
    #[error("no version of {repository} matches `{requirement}` (its versions: {available})")]
    NoMatchingVersion { repository: String, requirement: VersionReq, available: String },
    #[error("{repository}:{tag} is not a provision plugin: {reason}")]
    NotAPlugin { repository: String, tag: String, reason: String },
    #[error("{repository}:{tag}: the layer's sha256 is {actual}, but the registry says {expected}; refusing it")]
    DigestMismatch { repository: String, tag: String, expected: String, actual: String },
    #[error("registry {registry} refused the push: {message}. Check that you may push there (PROVISION_REGISTRY_USER / PROVISION_REGISTRY_PASSWORD)")]
    PushRefused { registry: String, message: String },
}

/// What a tag's manifest says, before any layer is downloaded.
#[derive(Debug, Clone)]
pub struct Release {
    pub repository: String,
    pub tag: String,
    pub name: String,
    pub version: Version,
    pub contract: Version,
    /// Hex sha256 of the component (the layer digest).
    pub sha256: String,
}

/// A client for one process: plain HTTP for registries on this machine
/// (127.0.0.1, localhost), HTTPS everywhere else.
pub struct Registry {
    /// One client per registry host: building one loads TLS roots, which
    /// costs more than a request to a local registry.
    clients: std::sync::Mutex<BTreeMap<String, Client>>,
    runtime: tokio::runtime::Runtime,
}

fn auth() -> RegistryAuth {
    match (std::env::var("PROVISION_REGISTRY_USER"), std::env::var("PROVISION_REGISTRY_PASSWORD")) {
        (Ok(user), Ok(password)) => RegistryAuth::Basic(user, password),
        _ => RegistryAuth::Anonymous,
    }
}

fn is_local(registry: &str) -> bool {
    let host = registry.rsplit_once(':').map(|(h, _)| h).unwrap_or(registry);
    matches!(host, "127.0.0.1" | "localhost" | "[::1]")
}

impl Registry {
    pub fn new() -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
        Registry { clients: Default::default(), runtime }
    }

    fn client_for(&self, reference: &Reference) -> Client {
        let registry = reference.resolve_registry().to_string();
        let mut clients = self.clients.lock().unwrap();
        let client = clients.entry(registry.clone()).or_insert_with(|| {
            // rustls's crypto is ring (see Cargo.toml); installing it twice
            // is harmless, so no once-cell is needed.
            let _ = rustls::crypto::ring::default_provider().install_default();
            let http = if is_local(&registry) { vec![registry] } else { Vec::new() };
            Client::new(ClientConfig { protocol: ClientProtocol::HttpsExcept(http), ..Default::default() })
        });
        client.clone()
    }

    /// The highest version of `repository` matching `requirement`; tags
    /// that are not semver versions are ignored.
    pub fn resolve(&self, repository: &str, requirement: &VersionReq) -> Result<Release, OciError> {
        let reference = parse(repository)?;
        let client = self.client_for(&reference);
        let tags = self.runtime.block_on(client.list_tags(&reference, &auth(), None, None)).map_err(|e| unreachable(&reference, e))?.tags;
        let mut versions: Vec<(Version, String)> = tags.into_iter().filter_map(|t| Version::parse(&t).ok().map(|v| (v, t))).collect();
        versions.sort();
        let Some((_, tag)) = versions.iter().rev().find(|(v, _)| requirement.matches(v)) else {
            let available = versions.iter().map(|(v, _)| v.to_string()).collect::<Vec<_>>();
            return Err(OciError::NoMatchingVersion {
                repository: repository.into(),
                requirement: requirement.clone(),
                available: if available.is_empty() { "none".into() } else { available.join(", ") },
            });
        };
        self.release(repository, tag)
    }

    /// Read one tag's manifest.
    pub fn release(&self, repository: &str, tag: &str) -> Result<Release, OciError> {
        let reference = parse(&format!("{repository}:{tag}"))?;
        let client = self.client_for(&reference);
        let (manifest, _) = self.runtime.block_on(client.pull_image_manifest(&reference, &auth())).map_err(|e| {
            let text = e.to_string().to_ascii_lowercase();
            if text.contains("manifest unknown") || text.contains("manifest_unknown") || text.contains("404") {
                OciError::TagNotFound { repository: repository.into(), tag: tag.into() }
            } else {
                unreachable(&reference, e)
            }
        })?;
        release_from(repository, tag, &manifest)
    }

    /// Download a release's component and check its digest.
    pub fn pull(&self, release: &Release) -> Result<Vec<u8>, OciError> {
        let reference = parse(&format!("{}:{}", release.repository, release.tag))?;
        let client = self.client_for(&reference);
        let mut wasm = Vec::new();
        let digest = format!("sha256:{}", release.sha256);
        self.runtime.block_on(client.pull_blob(&reference, digest.as_str(), &mut wasm)).map_err(|e| unreachable(&reference, e))?;
        let actual = sha256_hex(&wasm);
        if actual != release.sha256 {
            return Err(OciError::DigestMismatch {
                repository: release.repository.clone(),
                tag: release.tag.clone(),
                expected: release.sha256.clone(),
                actual,
            });
        }
        Ok(wasm)
    }

    /// Publish a component as `reference` (REPOSITORY:VERSION). Returns the
    /// manifest URL the registry reports.
    pub fn push(&self, wasm: &[u8], reference: &str, name: &str, version: &Version, contract: &Version) -> Result<String, OciError> {
        let reference = parse(reference)?;
        let client = self.client_for(&reference);
        let annotations = BTreeMap::from([
            (ANNOTATION_NAME.to_string(), name.to_string()),
            (ANNOTATION_VERSION.to_string(), version.to_string()),
            (ANNOTATION_CONTRACT.to_string(), contract.to_string()),
            ("org.opencontainers.image.title".to_string(), format!("{name}.wasm")),
        ]);
        let config = serde_json::json!({
            "architecture": "wasm",
            "os": "wasip2",
            "layerDigests": [format!("sha256:{}", sha256_hex(wasm))],
        });
        let config = Config::new(serde_json::to_vec(&config).expect("JSON"), CONFIG_MEDIA_TYPE.into(), None);
        let layers = [ImageLayer::new(wasm.to_vec(), LAYER_MEDIA_TYPE.into(), None)];
        let mut manifest = OciImageManifest::build(&layers, &config, Some(annotations));
        manifest.artifact_type = Some(CONFIG_MEDIA_TYPE.into());
        let pushed = self
            .runtime
            .block_on(client.push(&reference, &layers, config, &auth(), Some(manifest)))
            .map_err(|e| OciError::PushRefused { registry: reference.resolve_registry().to_string(), message: e.to_string() })?;
        Ok(pushed.manifest_url)
    }
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

fn parse(reference: &str) -> Result<Reference, OciError> {
    reference.parse::<Reference>().map_err(|e| OciError::BadReference(reference.into(), e.to_string()))
}

fn unreachable(reference: &Reference, e: impl std::fmt::Display) -> OciError {
    OciError::Unreachable { registry: reference.resolve_registry().to_string(), message: e.to_string() }
}

fn release_from(repository: &str, tag: &str, manifest: &OciImageManifest) -> Result<Release, OciError> {
    let not_a_plugin = |reason: &str| OciError::NotAPlugin { repository: repository.into(), tag: tag.into(), reason: reason.into() };
    if manifest.config.media_type != CONFIG_MEDIA_TYPE {
        return Err(not_a_plugin(&format!("its config is {}, not {CONFIG_MEDIA_TYPE}", manifest.config.media_type)));
    }
    let [layer] = manifest.layers.as_slice() else { return Err(not_a_plugin("it does not have exactly one layer")) };
    if layer.media_type != LAYER_MEDIA_TYPE {
        return Err(not_a_plugin(&format!("its layer is {}, not {LAYER_MEDIA_TYPE}", layer.media_type)));
    }
    let annotations = manifest.annotations.clone().unwrap_or_default();
    let get = |key: &str| annotations.get(key).cloned().ok_or_else(|| not_a_plugin(&format!("the annotation {key} is missing")));
    let semver = |key: &str| -> Result<Version, OciError> {
        let value = get(key)?;
        Version::parse(&value).map_err(|_| not_a_plugin(&format!("the annotation {key} = {value:?} is not semver")))
    };
    Ok(Release {
        repository: repository.into(),
        tag: tag.into(),
        name: get(ANNOTATION_NAME)?,
        version: semver(ANNOTATION_VERSION)?,
        contract: semver(ANNOTATION_CONTRACT)?,
        sha256: layer.digest.strip_prefix("sha256:").unwrap_or(&layer.digest).to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// reqwest is built without a crypto provider of its own (no aws-lc):
    /// building an HTTPS client panics unless ring was installed first.
    #[test]
    fn https_clients_are_built_with_ring() {
        let registry = Registry::new();
        let _client = registry.client_for(&parse("registry.example.com/acme/plugin").unwrap());
        assert!(rustls::crypto::CryptoProvider::get_default().is_some());
    }
}
