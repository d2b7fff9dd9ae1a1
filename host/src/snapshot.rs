//! Data snapshots (contract 0.4.0): a service's initialised data — a
//! database after initdb, its init scripts and its hooks — kept once on the
//! engine and used to seed every later fresh copy of the service (a new
//! project, a CI run, `down -v` then `up`) instead of initialising again.
//!
//! A snapshot is an image: the service's own image plus the data at the
//! declared path, made by the plugin's copy command (a consistent one, such
//! as `pg_basebackup`). A container created from it gets the data the way
//! Docker fills any new, empty volume from its image — copied at create,
//! before it starts — or, where the path is a tmpfs, in the container's own
//! writable layer (which, like the tmpfs, goes with the container).
//!
//! A snapshot is never shared across different inputs: its key hashes the
//! plugin, the image's id, the plugin's key, and the container's command,
//! env, files, hooks and mounts (the values of secret outputs left out, so
//! that projects with their own passwords share it; the plugin's hooks set
//! those on every start), and the contents of its read-only binds (init
//! scripts). It is only ever made from data initialised in the same `up`.

use std::{
    io::Write,
    path::{Component, Path},
};

use sha2::{Digest, Sha256};

use crate::{
    desired::{BuildSpec, Container, DataSnapshot, DesiredState, MountSource, ServiceState},
    engine::{Engine, ExecCommand, ImageInfo, Labels, OutputStream},
    plan::{
        host_path,
        host_tree::{Filter, Limits, Tree},
    },
    reconcile::label,
};

/// Where snapshot images live on the engine.
pub const REPOSITORY: &str = "provision-snapshot";

/// The largest copy kept: initialised data is small; a copy command that
/// writes more is not copying that (or is a plugin filling the disk).
const MAX_BYTES: u64 = 1 << 30;

/// Label every snapshot image carries; its value is the snapshot's key.
pub fn key_label() -> String {
    label("snapshot")
}

/// One container's snapshot: what it is keyed on and where it goes.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub key: String,
    /// The image it is (or will be): `provision-snapshot/PLUGIN:KEY`.
    pub tag: String,
    /// The service's image it is made from, by id.
    pub base: String,
    pub declared: DataSnapshot,
    /// Named for people: the plugin, the stack and service it was made by.
    labels: Labels,
}

impl Snapshot {
    /// The snapshot `c` of `service` may use or make, with its image at
    /// `base` (an image id); None when it declares none, or what it declares
    /// cannot be used (a path that is no volume or tmpfs of it, or unsafe
    /// to write into a Dockerfile).
    pub fn of(state: &DesiredState, project_dir: &Path, service: &ServiceState, c: &Container, base: &str) -> Option<Snapshot> {
        let declared = c.snapshot.as_ref()?;
        let mounted = c.mounts.iter().any(|m| m.target == declared.path && matches!(m.source, MountSource::Volume(_) | MountSource::Tmpfs { .. }));
        if !mounted || !safe_path(&declared.path) || declared.command.is_empty() {
            return None;
        }
        let plugin = state.plugins.iter().find(|p| p.name == service.plugin)?;
        let mut hash = Sha256::new();
        hash.update(b"provision snapshot 2\0");
        for part in [&plugin.name, &plugin.version, &plugin.sha256, &base.to_string(), &declared.key] {
            hash.update(part.as_bytes());
            hash.update(b"\0");
        }
        hash.update(masked_json(service, c).as_bytes());
        for m in &c.mounts {
            let (MountSource::Bind(path) | MountSource::Copy(path)) = &m.source else { continue };
            if m.read_only || matches!(m.source, MountSource::Copy(_)) {
                // Read as the engine gets it: where `plan` checked it, no link followed.
                let real = host_path::pinned(&state.host_paths, project_dir, path).ok()?;
                hash.update(m.target.as_bytes());
                Tree::open(&real, &Filter::ALL, Limits::COPY).and_then(|tree| tree.hash_into(&mut hash)).ok()?;
            }
        }
        let key = hex::encode(hash.finalize());
        let repository: String =
            plugin.name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c.to_ascii_lowercase() } else { '-' }).collect();
        let labels = Labels::from([
            (key_label(), key.clone()),
            (label("snapshot-plugin"), format!("{}@{}", plugin.name, plugin.version)),
            (label("snapshot-of"), format!("{}/{}", state.project, service.name)),
            (label("snapshot-path"), declared.path.clone()),
        ]);
        Some(Snapshot { tag: format!("{REPOSITORY}/{repository}:{}", &key[..16]), key, base: base.to_string(), declared: declared.clone(), labels })
    }

    /// Copy the data out of the ready container `id` with the plugin's
    /// command, into a temporary file (it can be tens of megabytes).
    pub async fn capture(&self, engine: &dyn Engine, id: &str) -> Result<tempfile::NamedTempFile, String> {
        let mut file = tempfile::NamedTempFile::new().map_err(|e| format!("a temporary file: {e}"))?;
        let mut errors = crate::engine::Tail::default();
        let mut written: Result<u64, std::io::Error> = Ok(0);
        let command = ExecCommand { command: &self.declared.command, user: None, env: &[] };
        let code = engine
            .exec_with(id, command, &mut |stream, chunk| match stream {
                OutputStream::Stderr => errors.push(chunk),
                _ => {
                    if let Ok(n) = written {
                        written = match n + chunk.len() as u64 {
                            total if total > MAX_BYTES => Err(std::io::Error::other(format!("it is over {} MB", MAX_BYTES >> 20))),
                            total => file.write_all(chunk).map(|()| total),
                        };
                    }
                }
            })
            .await
            .map_err(|e| e.to_string())?;
        let written = written.map_err(|e| format!("writing the copy: {e}"))?;
        if code != 0 {
            return Err(format!("`{}` exited with code {code}: {}", self.declared.command.join(" "), errors.text().trim()));
        }
        if written == 0 {
            return Err(format!("`{}` wrote nothing", self.declared.command.join(" ")));
        }
        Ok(file)
    }

    /// Keep a captured copy as the snapshot image: the base image plus the
    /// copy unpacked at the path (a Dockerfile `ADD` of a tar unpacks it,
    /// owners and modes as they were).
    pub async fn keep(&self, engine: &dyn Engine, mut data: tempfile::NamedTempFile) -> Result<(), String> {
        let dockerfile = format!("FROM {}\nADD data.tar {}/\n", self.base, self.declared.path);
        let context = tempfile::NamedTempFile::new().map_err(|e| format!("a temporary file: {e}"))?;
        let mut tar = tar::Builder::new(context.as_file());
        let mut header = tar::Header::new_gnu();
        header.set_size(dockerfile.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, "Dockerfile", dockerfile.as_bytes()).map_err(|e| e.to_string())?;
        tar.append_file("data.tar", data.as_file_mut()).map_err(|e| e.to_string())?;
        tar.finish().map_err(|e| e.to_string())?;
        drop(tar);
        let spec = BuildSpec {
            context: String::new(),
            dockerfile: None,
            target: None,
            args: Default::default(),
            input_hash: String::new(),
            from_substitutes: Default::default(),
        };
        let mut labels = self.labels.clone();
        labels.insert(label("snapshot-bytes"), data.as_file().metadata().map(|m| m.len()).unwrap_or(0).to_string());
        engine.build_image(&self.tag, &spec, context.path(), &labels, false, &|_| {}).await.map_err(|e| e.to_string())
    }
}

/// Every snapshot on the engine, newest first.
pub async fn list(engine: &dyn Engine) -> Result<Vec<ImageInfo>, crate::engine::EngineError> {
    let mut images = engine.images(&key_label()).await?;
    images.sort_by_key(|i| std::cmp::Reverse(i.created));
    Ok(images)
}

/// The container as JSON, less what cannot change its data (ports,
/// health, restart, resources, networks, labels) and with every secret
/// output's value replaced.
fn masked_json(service: &ServiceState, c: &Container) -> String {
    let mut value = serde_json::to_value(c).expect("a container serializes");
    if let Some(map) = value.as_object_mut() {
        for key in ["name", "ports", "health", "restart", "resources", "networks", "labels", "replica", "replicas"] {
            map.remove(key);
        }
    }
    let mut json = value.to_string();
    let secrets: Vec<&str> = service.plan.outputs.iter().filter(|o| o.secret && !o.value.is_empty()).map(|o| o.value.as_str()).collect();
    for secret in secrets {
        // As it appears inside a JSON string.
        let escaped = serde_json::to_string(secret).expect("a string serializes");
        json = json.replace(&escaped[1..escaped.len() - 1], "<secret>");
    }
    json
}

/// An absolute path of plain components: it is written into a Dockerfile.
fn safe_path(path: &str) -> bool {
    let plain = |c: char| c.is_ascii_alphanumeric() || "._-/".contains(c);
    path.starts_with('/')
        && path.len() > 1
        && path.chars().all(plain)
        && Path::new(path).components().all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_absolute_paths_reach_a_dockerfile() {
        assert!(safe_path("/var/lib/postgresql/data"));
        for bad in ["", "/", "data", "/var/../etc", "/a b", "/a\nRUN x", "/a$HOME", "/a\"b"] {
            assert!(!safe_path(bad), "{bad:?}");
        }
    }
}
