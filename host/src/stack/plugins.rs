//! `[plugins]` and `[images]`: which plugin a name resolves to (a version
//! range, a path, a registry) and the image substitutes, and the
//! requirements the resolver gets.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use provision_registry::{Requirement, RequirementSource};
use semver::VersionReq;
use toml::Value;

use super::{Contents, Stack, StackError, read_text};

impl Stack {
    pub(super) fn read_plugins(&mut self, value: Value) -> Result<(), StackError> {
        let table = self.expect_table("plugins", value)?;
        for (name, value) in table {
            let path = format!("plugins.{name}");
            let requirement = match value {
                // `REGISTRY/PATH@REQ`: a registry reference; else a version requirement.
                Value::String(req) if req.contains('/') => {
                    let (repository, version) = req.split_once('@').unwrap_or((req.as_str(), "*"));
                    Requirement {
                        name: name.clone(),
                        version: self.version_req(&path, version)?,
                        source: RequirementSource::Oci { repository: repository.to_string() },
                    }
                }
                Value::String(req) => Requirement { name: name.clone(), version: self.version_req(&path, &req)?, source: RequirementSource::Builtin },
                Value::Table(table) => {
                    let (mut version, mut file, mut sha256, mut registry) = (VersionReq::STAR, None, None, None);
                    for (key, value) in table {
                        let key_path = format!("{path}.{key}");
                        match key.as_str() {
                            "version" => version = self.version_req(&key_path, &self.expect_str(&key_path, value.clone())?)?,
                            "path" => file = Some(PathBuf::from(self.expect_str(&key_path, value)?)),
                            "registry" => registry = Some(self.expect_str(&key_path, value)?),
                            "sha256" => {
                                let digest = self.expect_str(&key_path, value)?;
                                let hex = digest.strip_prefix("sha256:").unwrap_or(&digest);
                                if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                                    return Err(self.error_at(&key_path, "not a sha256 digest", "expected 64 hex digits", None));
                                }
                                sha256 = Some(digest);
                            }
                            _ => return Err(self.unknown_key(&key_path, "a plugin entry has `version`, and `path` (with `sha256`) or `registry`")),
                        }
                    }
                    let source = match (file, registry) {
                        (Some(_), Some(_)) => {
                            return Err(self.error_at(&path, "a plugin comes from a `path` or a `registry`, not both", "here", None));
                        }
                        (None, Some(repository)) => RequirementSource::Oci { repository },
                        (Some(path), None) => RequirementSource::Path { path, sha256 },
                        (None, None) if sha256.is_some() => {
                            return Err(self.error_at(&format!("{path}.sha256"), "`sha256` pins a file, but there is no `path`", "here", None));
                        }
                        (None, None) => RequirementSource::Builtin,
                    };
                    Requirement { name: name.clone(), version, source }
                }
                other => {
                    return Err(self.error_at(
                        &path,
                        format!("plugin requirement must be a version string or a table, found {}", other.type_str()),
                        "here",
                        Some(format!("e.g. {name} = \"^0.1\" or {name} = {{ path = \"{name}.wasm\" }}")),
                    ));
                }
            };
            self.plugins.insert(name, requirement);
        }
        Ok(())
    }

    pub(super) fn read_images(&mut self, value: Value) -> Result<(), StackError> {
        let table = self.expect_table("images", value)?;
        for (reference, substitute) in table {
            let substitute = self.expect_str(&format!("images.{reference}"), substitute)?;
            self.images.insert(reference, substitute);
        }
        Ok(())
    }

    /// Image substitutes from a file with an `[images]` table (`--images`),
    /// the same format as in stack.toml.
    pub fn load_images_file(path: &Path) -> miette::Result<BTreeMap<String, String>> {
        let text = read_text(path)?;
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let file = Stack::parse_file(path, dir, text, Contents::ImagesOnly)?;
        Ok(file.images)
    }

    /// The requirement for every plugin a service names: from [plugins], or
    /// any version of the built-in one.
    pub fn requirements(&self) -> Vec<Requirement> {
        let mut seen = Vec::<&str>::new();
        let mut requirements = Vec::new();
        for service in &self.services {
            if seen.contains(&service.plugin.as_str()) {
                continue;
            }
            seen.push(&service.plugin);
            requirements.push(self.plugins.get(&service.plugin).cloned().unwrap_or_else(|| Requirement {
                name: service.plugin.clone(),
                version: VersionReq::STAR,
                source: RequirementSource::Builtin,
            }));
        }
        requirements
    }
}
