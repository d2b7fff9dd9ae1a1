//! Plugins from OCI registries, the way the WebAssembly ecosystem ships
//! components (wkg, Spin, devcontainer Features): one artifact per version,
//! tagged with the semver version, config `application/vnd.wasm.config.v0+json`,
//! one `application/wasm` layer, and annotations naming plugin, version and
//! contract so resolution reads only manifests, never layers it will not use.

mod http;

use std::collections::BTreeMap;

use hyper::{Method, StatusCode};
use semver::{Version, VersionReq};
use serde::{Deserialize, Serialize};

use self::http::{Exchange, Http, HttpError, shown};
use crate::{MAX_COMPONENT_BYTES, sha256_hex};

pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
pub const LAYER_MEDIA_TYPE: &str = "application/wasm";
pub const ANNOTATION_NAME: &str = "dev.provision.plugin.name";
pub const ANNOTATION_VERSION: &str = "org.opencontainers.image.version";
pub const ANNOTATION_CONTRACT: &str = "dev.provision.contract";
const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

/// A manifest of a plugin is a few hundred bytes; a tag list of thousands
/// of versions a few hundred KiB.
const MAX_MANIFEST_BYTES: u64 = 1 << 20;
const MAX_TAGS_BYTES: u64 = 4 << 20;
const MAX_TAG_PAGES: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("`{0}` is not a registry reference (expected HOST[:PORT]/PATH, e.g. ghcr.io/acme/postgres): {1}")]
    BadReference(String, String),
    #[error("registry {registry} is unreachable or refused the request: {message}")]
    Unreachable { registry: String, message: String },
    #[error("registry {registry}: {error}")]
    Registry { registry: String, error: HttpError },
    #[error("{repository} has no tag {tag}")]
    TagNotFound { repository: String, tag: String },
    #[error("no version of {repository} matches `{requirement}` (its versions: {available})")]
    NoMatchingVersion { repository: String, requirement: VersionReq, available: String },
    #[error("{repository}:{tag} is not a provision plugin: {reason}")]
    NotAPlugin { repository: String, tag: String, reason: String },
    #[error("{repository}:{tag}: the layer's sha256 is {actual}, but the registry says {expected}; refusing it")]
    DigestMismatch { repository: String, tag: String, expected: String, actual: String },
    #[error(
        "registry {registry} refused the push: {message}. Check that you may push there (PROVISION_REGISTRY_USER / PROVISION_REGISTRY_PASSWORD, for PROVISION_REGISTRY_HOST)"
    )]
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
    /// The layer's size as the manifest states it.
    pub size: u64,
}

/// A repository on a registry: `ghcr.io/acme/app` → (ghcr.io, acme/app).
#[derive(Debug, Clone, PartialEq)]
struct Repository {
    /// `host[:port]` as spoken to (Docker Hub's is registry-1.docker.io).
    registry: String,
    name: String,
}

/// A client for one process: plain HTTP for registries on this machine
/// (127.0.0.1, localhost), HTTPS everywhere else; bounded in time and size.
pub struct Registry {
    http: Result<Http, String>,
}

impl Registry {
    pub fn new() -> Self {
        Registry { http: Http::new() }
    }

    fn http(&self, repository: &Repository) -> Result<&Http, OciError> {
        self.http.as_ref().map_err(|message| OciError::Unreachable { registry: repository.registry.clone(), message: message.clone() })
    }

    /// The highest version of `repository` matching `requirement`; tags
    /// that are not semver versions are ignored.
    pub fn resolve(&self, repository: &str, requirement: &VersionReq) -> Result<Release, OciError> {
        let repo = parse(repository)?;
        let mut versions: Vec<(Version, String)> = self.tags(&repo)?.into_iter().filter_map(|t| Version::parse(&t).ok().map(|v| (v, t))).collect();
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

    /// Every tag, following the registry's pages (`Link: <…>; rel="next"`).
    fn tags(&self, repo: &Repository) -> Result<Vec<String>, OciError> {
        #[derive(Deserialize)]
        struct Tags {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let mut tags = Vec::new();
        let mut url = format!("{}/v2/{}/tags/list", Http::base(&repo.registry), repo.name);
        for _ in 0..MAX_TAG_PAGES {
            let answer = self.get(repo, url.clone(), &["application/json"], "a tag list", MAX_TAGS_BYTES)?;
            if answer.status == StatusCode::NOT_FOUND {
                return Ok(tags);
            }
            let page: Tags = json(repo, &answer.body, "its tag list")?;
            tags.extend(page.tags.unwrap_or_default());
            let next = answer.headers.get("link").and_then(|l| l.to_str().ok()).and_then(|l| l.split_once('<')).and_then(|(_, l)| l.split_once('>'));
            match next {
                Some((next, _)) => url = http::join(&url, next).map_err(|error| registry_error(repo, error))?,
                None => return Ok(tags),
            }
        }
        Err(registry_error(repo, HttpError::TooLarge { what: "a tag list", limit: format!("{MAX_TAG_PAGES} pages") }))
    }

    /// Read one tag's manifest.
    pub fn release(&self, repository: &str, tag: &str) -> Result<Release, OciError> {
        let repo = parse(repository)?;
        let url = format!("{}/v2/{}/manifests/{tag}", Http::base(&repo.registry), repo.name);
        let answer = self.get(&repo, url, &[MANIFEST_MEDIA_TYPE], "a manifest", MAX_MANIFEST_BYTES)?;
        if answer.status == StatusCode::NOT_FOUND {
            return Err(OciError::TagNotFound { repository: repository.into(), tag: tag.into() });
        }
        let manifest: Manifest = json(&repo, &answer.body, "its manifest")?;
        release_from(repository, tag, &manifest)
    }

    /// Download a release's component, bounded by the component limit, and
    /// check its digest and that it is a WebAssembly component.
    pub fn pull(&self, release: &Release) -> Result<Vec<u8>, OciError> {
        let repo = parse(&release.repository)?;
        let url = format!("{}/v2/{}/blobs/sha256:{}", Http::base(&repo.registry), repo.name, release.sha256);
        let answer = self.get(&repo, url, &[], "a layer", MAX_COMPONENT_BYTES)?;
        if !answer.status.is_success() {
            return Err(registry_error(&repo, HttpError::Status { status: answer.status, message: shown(&String::from_utf8_lossy(&answer.body)) }));
        }
        let wasm = answer.body;
        let actual = sha256_hex(&wasm);
        if actual != release.sha256 {
            return Err(OciError::DigestMismatch {
                repository: release.repository.clone(),
                tag: release.tag.clone(),
                expected: release.sha256.clone(),
                actual,
            });
        }
        if !wasmparser::Parser::is_component(&wasm) {
            return Err(OciError::NotAPlugin {
                repository: release.repository.clone(),
                tag: release.tag.clone(),
                reason: "its layer is not a WebAssembly component".into(),
            });
        }
        Ok(wasm)
    }

    /// Publish a component as `reference` (REPOSITORY:VERSION). Returns the
    /// manifest URL the registry reports.
    pub fn push(&self, wasm: &[u8], reference: &str, name: &str, version: &Version, contract: &Version) -> Result<String, OciError> {
        let (repository, tag) = reference
            .rsplit_once(':')
            .filter(|(_, tag)| !tag.contains('/'))
            .ok_or_else(|| OciError::BadReference(reference.into(), "it has no :TAG".into()))?;
        let repo = parse(repository)?;
        let refused = |message: String| OciError::PushRefused { registry: repo.registry.clone(), message };
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "wasm",
            "os": "wasip2",
            "layerDigests": [format!("sha256:{}", sha256_hex(wasm))],
        }))
        .expect("JSON");
        let annotations = BTreeMap::from([
            (ANNOTATION_NAME.to_string(), name.to_string()),
            (ANNOTATION_VERSION.to_string(), version.to_string()),
            (ANNOTATION_CONTRACT.to_string(), contract.to_string()),
            ("org.opencontainers.image.title".to_string(), format!("{name}.wasm")),
        ]);
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(MANIFEST_MEDIA_TYPE.into()),
            artifact_type: Some(CONFIG_MEDIA_TYPE.into()),
            config: self.push_blob(&repo, &config, CONFIG_MEDIA_TYPE).map_err(&refused)?,
            layers: vec![self.push_blob(&repo, wasm, LAYER_MEDIA_TYPE).map_err(&refused)?],
            annotations: Some(annotations),
        };
        let url = format!("{}/v2/{}/manifests/{tag}", Http::base(&repo.registry), repo.name);
        let body = serde_json::to_vec(&manifest).expect("JSON");
        let answer =
            self.send(&repo, Method::PUT, url.clone(), Some((body, MANIFEST_MEDIA_TYPE)), "an answer").map_err(|e| refused(e.to_string()))?;
        if !answer.status.is_success() {
            return Err(refused(format!("{}: {}", answer.status, shown(&String::from_utf8_lossy(&answer.body)))));
        }
        let location = answer.headers.get("location").and_then(|l| l.to_str().ok()).map(|l| http::join(&url, l).unwrap_or(url.clone()));
        Ok(location.unwrap_or(url))
    }

    /// Upload one blob unless the registry has it (monolithic upload).
    fn push_blob(&self, repo: &Repository, bytes: &[u8], media_type: &str) -> Result<Descriptor, String> {
        let digest = format!("sha256:{}", sha256_hex(bytes));
        let descriptor = Descriptor { media_type: media_type.into(), digest: digest.clone(), size: bytes.len() as u64 };
        let base = Http::base(&repo.registry);
        let head = self.send(repo, Method::HEAD, format!("{base}/v2/{}/blobs/{digest}", repo.name), None, "an answer").map_err(|e| e.to_string())?;
        if head.status.is_success() {
            return Ok(descriptor);
        }
        let start = format!("{base}/v2/{}/blobs/uploads/", repo.name);
        let started = self.send(repo, Method::POST, start.clone(), None, "an answer").map_err(|e| e.to_string())?;
        let location = started.headers.get("location").and_then(|l| l.to_str().ok()).filter(|_| started.status == StatusCode::ACCEPTED);
        let Some(location) = location else {
            return Err(format!("starting an upload: {}: {}", started.status, shown(&String::from_utf8_lossy(&started.body))));
        };
        let location = http::join(&start, location).map_err(|e| e.to_string())?;
        let url = format!("{location}{}digest={digest}", if location.contains('?') { '&' } else { '?' });
        let put = self.send(repo, Method::PUT, url, Some((bytes.to_vec(), "application/octet-stream")), "an answer").map_err(|e| e.to_string())?;
        if !put.status.is_success() {
            return Err(format!("uploading {digest}: {}: {}", put.status, shown(&String::from_utf8_lossy(&put.body))));
        }
        Ok(descriptor)
    }

    fn get(&self, repo: &Repository, url: String, accept: &[&str], what: &'static str, limit: u64) -> Result<http::Answer, OciError> {
        let scope = format!("repository:{}:pull", repo.name);
        let exchange = Exchange { method: Method::GET, url, accept, body: None, scope: &scope, what, limit };
        self.http(repo)?.exchange(&exchange).map_err(|error| registry_error(repo, error))
    }

    fn send(
        &self,
        repo: &Repository,
        method: Method,
        url: String,
        body: Option<(Vec<u8>, &str)>,
        what: &'static str,
    ) -> Result<http::Answer, OciError> {
        let scope = format!("repository:{}:pull,push", repo.name);
        let exchange = Exchange { method, url, accept: &[], body, scope: &scope, what, limit: MAX_MANIFEST_BYTES };
        self.http(repo)?.exchange(&exchange).map_err(|error| registry_error(repo, error))
    }
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

/// `HOST[:PORT]/PATH` (or a Docker Hub name) → where and what.
fn parse(reference: &str) -> Result<Repository, OciError> {
    let bad = |why: &str| OciError::BadReference(shown(reference), why.into());
    let (first, rest) = reference.split_once('/').unwrap_or(("", reference));
    let (registry, name) = if first.contains(['.', ':']) || first == "localhost" {
        (first.to_string(), rest.to_string())
    } else {
        let name = if first.is_empty() { format!("library/{rest}") } else { reference.to_string() };
        ("registry-1.docker.io".to_string(), name)
    };
    let component = |c: &str| {
        !c.is_empty() && c.chars().all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || "._-".contains(ch)) && !c.starts_with(['.', '_', '-'])
    };
    if registry.is_empty() || !registry.chars().all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c)) {
        return Err(bad("the registry is not HOST[:PORT]"));
    }
    if !name.split('/').all(component) {
        return Err(bad("the path must be lower-case letters, digits and . _ - between slashes"));
    }
    Ok(Repository { registry, name })
}

fn registry_error(repo: &Repository, error: HttpError) -> OciError {
    match error {
        HttpError::Failed(message) => OciError::Unreachable { registry: repo.registry.clone(), message },
        error => OciError::Registry { registry: repo.registry.clone(), error },
    }
}

fn json<T: for<'de> Deserialize<'de>>(repo: &Repository, body: &[u8], what: &str) -> Result<T, OciError> {
    serde_json::from_slice(body).map_err(|e| registry_error(repo, HttpError::Failed(format!("{what} is not what the OCI spec says: {e}"))))
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    artifact_type: Option<String>,
    config: Descriptor,
    layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    annotations: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    media_type: String,
    digest: String,
    size: u64,
}

fn release_from(repository: &str, tag: &str, manifest: &Manifest) -> Result<Release, OciError> {
    let not_a_plugin = |reason: String| OciError::NotAPlugin { repository: repository.into(), tag: tag.into(), reason };
    if manifest.config.media_type != CONFIG_MEDIA_TYPE {
        return Err(not_a_plugin(format!("its config is {}, not {CONFIG_MEDIA_TYPE}", shown(&manifest.config.media_type))));
    }
    let [layer] = manifest.layers.as_slice() else { return Err(not_a_plugin("it does not have exactly one layer".into())) };
    if layer.media_type != LAYER_MEDIA_TYPE {
        return Err(not_a_plugin(format!("its layer is {}, not {LAYER_MEDIA_TYPE}", shown(&layer.media_type))));
    }
    if layer.size > MAX_COMPONENT_BYTES {
        return Err(not_a_plugin(format!("its layer is {} bytes, over the {} MiB a plugin may be", layer.size, MAX_COMPONENT_BYTES >> 20)));
    }
    let sha256 = layer.digest.strip_prefix("sha256:").filter(|h| h.len() == 64 && h.chars().all(|c| c.is_ascii_hexdigit()));
    let sha256 = sha256.ok_or_else(|| not_a_plugin(format!("its layer digest {} is not sha256", shown(&layer.digest))))?;
    let annotations = manifest.annotations.clone().unwrap_or_default();
    let get = |key: &str| annotations.get(key).cloned().ok_or_else(|| not_a_plugin(format!("the annotation {key} is missing")));
    let semver = |key: &str| -> Result<Version, OciError> {
        let value = get(key)?;
        Version::parse(&value).map_err(|_| not_a_plugin(format!("the annotation {key} = {:?} is not semver", shown(&value))))
    };
    let name = get(ANNOTATION_NAME)?;
    let plain = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !plain {
        return Err(not_a_plugin(format!("the annotation {ANNOTATION_NAME} = {:?} is not a plugin name", shown(&name))));
    }
    Ok(Release {
        repository: repository.into(),
        tag: tag.into(),
        name,
        version: semver(ANNOTATION_VERSION)?,
        contract: semver(ANNOTATION_CONTRACT)?,
        sha256: sha256.to_ascii_lowercase(),
        size: layer.size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_name_a_registry_and_a_path() {
        assert_eq!(parse("127.0.0.1:5000/acme/app").unwrap(), Repository { registry: "127.0.0.1:5000".into(), name: "acme/app".into() });
        assert_eq!(parse("ghcr.io/acme/app").unwrap().registry, "ghcr.io");
        assert_eq!(parse("acme/app").unwrap(), Repository { registry: "registry-1.docker.io".into(), name: "acme/app".into() });
        assert!(parse("ghcr.io/Acme/app").is_err());
        assert!(parse("ghcr.io/acme/../x").is_err());
    }

    #[test]
    fn a_manifest_with_registry_text_fit_for_no_terminal_is_refused() {
        let manifest = |name: &str, size: u64| Manifest {
            schema_version: 2,
            media_type: None,
            artifact_type: None,
            config: Descriptor { media_type: CONFIG_MEDIA_TYPE.into(), digest: format!("sha256:{}", "0".repeat(64)), size: 2 },
            layers: vec![Descriptor { media_type: LAYER_MEDIA_TYPE.into(), digest: format!("sha256:{}", "a".repeat(64)), size }],
            annotations: Some(BTreeMap::from([
                (ANNOTATION_NAME.into(), name.into()),
                (ANNOTATION_VERSION.into(), "0.1.0".into()),
                (ANNOTATION_CONTRACT.into(), "0.4.0".into()),
            ])),
        };
        assert_eq!(release_from("r", "0.1.0", &manifest("app", 10)).unwrap().name, "app");
        let err = release_from("r", "0.1.0", &manifest("app\u{1b}]52;c;x\u{7}", 10)).unwrap_err().to_string();
        assert!(err.contains("is not a plugin name") && !err.contains('\u{1b}'), "{err}");
        let err = release_from("r", "0.1.0", &manifest("app", 512 << 20)).unwrap_err().to_string();
        assert!(err.contains("over the 32 MiB a plugin may be"), "{err}");
    }
}
