//! volumes, tmpfs, secrets and configs as host-level mounts: binds with the
//! powers they need, named volumes by owner (shared ones as OWNER/VOLUME),
//! file secrets and configs as read-only binds, inline configs as files.

use std::path::Path;

use serde_yaml_ng::Value;
use toml::{Table, Value as Toml};

use super::{Draft, Mapper, builtin::plugin_mounts, escape};
use crate::{
    import::load::{other_keys, scalar, sequence, strings},
    stack::Permission,
};

impl Mapper<'_> {
    /// volumes, tmpfs, secrets and file configs as host-level mounts;
    /// inline configs as the container's files.
    pub(super) fn mounts(&mut self, d: &mut Draft) -> Result<(), String> {
        let (at, name, svc) = (d.at.clone(), d.name, d.svc);
        d.handled.extend(["volumes", "tmpfs", "secrets", "configs"]);
        let own_mounts = plugin_mounts(&d.table);
        let mut volumes: Vec<String> = Vec::new();
        let mut tmpfs: Vec<String> = Vec::new();
        let postgres = d.table.get("plugin").and_then(Toml::as_str) == Some("postgres");
        for (i, volume) in sequence(svc.get("volumes").cloned()).iter().enumerate() {
            let path = format!("{at}.volumes.{i}");
            let kind = volume.get("type").and_then(Value::as_str).unwrap_or("volume");
            let target = volume.get("target").and_then(Value::as_str).unwrap_or_default();
            let ro = if volume.get("read_only").and_then(Value::as_bool) == Some(true) { ":ro" } else { "" };
            let source = volume.get("source").and_then(Value::as_str);
            if postgres && kind == "bind" && target.starts_with("/docker-entrypoint-initdb.d") {
                continue; // init, above
            }
            let mut extra: Vec<String> = other_keys(volume, &["type", "source", "target", "read_only"])
                .into_iter()
                .map(|k| match volume.get("mode").and_then(Value::as_str) {
                    // The short form's options other than ro/rw (":z", ":cached").
                    Some(mode) if k == "mode" => format!("option {mode:?}"),
                    _ => k,
                })
                .collect();
            match (kind, source) {
                ("bind", Some(source)) => {
                    let engine_socket = Path::new(source).file_name().is_some_and(|n| n == "docker.sock" || n == "podman.sock");
                    volumes.push(format!("{}:{target}{ro}", self.path(source)));
                    let outside = !self.inside(source) && !source.starts_with('~');
                    if outside {
                        d.allow.insert(Permission::BindOutsideProject);
                    }
                    let mut detail = "volumes".to_string();
                    if engine_socket {
                        d.allow.insert(Permission::DockerSocket);
                        detail.push_str(&format!(", {} (the container controls the engine)", self.power(Permission::DockerSocket)));
                    } else if outside {
                        detail.push_str(&format!(", {}", self.power(Permission::BindOutsideProject)));
                    }
                    let mut notes = Vec::new();
                    if !Path::new(source).exists() && !source.starts_with('~') {
                        notes.push(format!(
                            "{} does not exist yet: create it before `provision up` (compose would create an empty folder)",
                            self.path(source)
                        ));
                    }
                    if !extra.is_empty() {
                        notes.push(format!("{} not kept", extra.join(", ")));
                    }
                    if notes.is_empty() {
                        self.mapped(path, detail);
                    } else {
                        self.approximated(path, format!("{detail}; {}", notes.join("; ")));
                    }
                }
                ("volume", None) => {
                    volumes.push(target.to_string());
                    self.mapped(path, "volumes (anonymous)");
                }
                ("volume", Some(source)) => {
                    let users = self.volume_users.get(source).cloned().unwrap_or_default();
                    // A volume several services mount is the first one's (one in every
                    // profile, if any is), the others mount it as OWNER/VOLUME.
                    let owner = users
                        .iter()
                        .find(|u| self.compose.services.get(u.as_str()).is_some_and(|s| s.get("profiles").is_none()))
                        .or(users.first())
                        .cloned()
                        .unwrap_or_else(|| name.to_string());
                    // provision names volumes by service already: `db_data` of `db` is its `data`.
                    let unprefixed = [format!("{owner}_"), format!("{owner}-")].iter().find_map(|p| source.strip_prefix(p.as_str()));
                    let volume_name = volume_name(unprefixed.unwrap_or(source));
                    if owner == name {
                        volumes.push(format!("{volume_name}:{target}{ro}"));
                    } else {
                        volumes.push(format!("{}/{volume_name}:{target}{ro}", self.names[&owner]));
                    }
                    let declared = self.compose.volumes.get(source).and_then(Value::as_mapping).cloned().unwrap_or_default();
                    if declared.get("external").and_then(Value::as_bool) == Some(true) || declared.get("name").is_some() {
                        extra.push(format!("the volume's own name (provision names it PROJECT_{}_{volume_name})", self.names[&owner]));
                    }
                    if users.len() > 1 && extra.is_empty() {
                        let how = if owner == name {
                            format!(
                                "volumes; shared with {}, which mount it as `{}/{volume_name}`",
                                users.iter().filter(|u| **u != owner).cloned().collect::<Vec<_>>().join(", "),
                                self.names[&owner]
                            )
                        } else {
                            format!("volumes: `{}/{volume_name}`, service {owner}'s volume, shared as compose shares it", self.names[&owner])
                        };
                        self.mapped(path, how);
                    } else if own_mounts.contains(&target) {
                        self.mapped(path, "volumes (in place of the plugin's own data volume)");
                    } else if extra.is_empty() && (volume_name == source || unprefixed.is_some()) {
                        self.mapped(
                            path,
                            if unprefixed.is_some() { format!("volumes: `{volume_name}` of service {name}") } else { "volumes".into() },
                        );
                    } else {
                        let mut how = vec![];
                        if volume_name != source && unprefixed.is_none() {
                            how.push(format!("named `{volume_name}`"));
                        }
                        how.extend(
                            extra.iter().map(|e| if e.contains(' ') { format!("{e} not kept") } else { format!("its `{e}` options not kept") }),
                        );
                        self.approximated(path, format!("volumes; {}", how.join("; ")));
                    }
                }
                ("tmpfs", _) => {
                    tmpfs.push(target.to_string());
                    extra.retain(|k| k != "tmpfs");
                    if volume.get("tmpfs").is_some() {
                        self.approximated(path, "tmpfs (its size and mode are Docker's defaults)");
                    } else {
                        self.mapped(path, "tmpfs");
                    }
                }
                (other, _) => self.dropped(path, format!("a {other} mount has no equivalent")),
            }
        }
        for (i, entry) in strings(svc.get("tmpfs")).iter().enumerate() {
            let path = format!("{at}.tmpfs.{i}");
            let (target, options) = entry.split_once(':').unwrap_or((entry, ""));
            tmpfs.push(target.to_string());
            if options.is_empty() {
                self.mapped(path, "tmpfs");
            } else {
                self.approximated(path, format!("tmpfs; options {options:?} not kept"));
            }
        }
        // Secrets and file configs are bind mounts in compose too.
        let mut files = Table::new();
        for (kind, default_dir) in [("secrets", "/run/secrets/"), ("configs", "/")] {
            for (i, entry) in sequence(svc.get(kind).cloned()).iter().enumerate() {
                let path = format!("{at}.{kind}.{i}");
                let source = scalar(entry).or_else(|| entry.get("source").and_then(scalar)).unwrap_or_default();
                let target = entry.get("target").and_then(scalar).unwrap_or_else(|| source.clone());
                let target = if target.starts_with('/') { target } else { format!("{default_dir}{target}") };
                let top = if kind == "secrets" { &self.compose.secrets } else { &self.compose.configs };
                let declared = top.get(source.as_str()).cloned().unwrap_or(Value::Null);
                if let Some(file) = declared.get("file").and_then(Value::as_str) {
                    volumes.push(format!("{}:{target}:ro", self.path(file)));
                    if !self.inside(file) {
                        d.allow.insert(Permission::BindOutsideProject);
                    }
                    let extra = ["uid", "gid", "mode"].iter().any(|k| entry.get(*k).is_some());
                    if extra {
                        self.approximated(path, format!("volumes: {} bound read-only at {target}; uid, gid and mode not kept", self.path(file)));
                    } else {
                        self.mapped(path, format!("volumes: bound read-only at {target}, as compose does"));
                    }
                } else if let Some(content) = declared.get("content").and_then(Value::as_str)
                    && d.table.get("plugin").and_then(Toml::as_str) == Some("container")
                {
                    files.insert(target.clone(), escape(content).into());
                    self.mapped(path, format!("files.\"{target}\""));
                } else {
                    self.dropped(path, format!("{kind} `{source}` is not a file the project holds (external, from the environment, or undeclared)"));
                }
            }
        }
        if !files.is_empty() {
            d.table.insert("files".into(), Toml::Table(files));
        }
        if !volumes.is_empty() {
            d.table.insert("volumes".into(), Toml::Array(volumes.into_iter().map(Toml::String).collect()));
        }
        if !tmpfs.is_empty() {
            d.table.insert("tmpfs".into(), Toml::Array(tmpfs.into_iter().map(Toml::String).collect()));
        }
        Ok(())
    }
}

/// A volume name as provision takes it: [a-z0-9_-].
fn volume_name(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c.to_ascii_lowercase() } else { '-' }).collect()
}

#[cfg(test)]
mod tests {
    use super::super::{Status, tests::imported};
    use super::*;

    #[test]
    fn volume_names_are_what_provision_takes() {
        assert_eq!(volume_name("My.Data"), "my-data");
        assert_eq!(volume_name("db_data-1"), "db_data-1");
    }

    #[test]
    fn a_shared_volume_is_its_first_users_and_the_others_mount_it_as_owner_slash_volume() {
        let yaml =
            "services:\n  api: {image: a, volumes: ['uploads:/srv']}\n  worker: {image: b, volumes: ['uploads:/work:ro']}\nvolumes: {uploads: {}}\n";
        let (services, _) = imported(yaml, false);
        assert_eq!(services["api"]["volumes"].as_array().unwrap()[0].as_str(), Some("uploads:/srv"));
        assert_eq!(services["worker"]["volumes"].as_array().unwrap()[0].as_str(), Some("api/uploads:/work:ro"));
    }

    #[test]
    fn a_bind_outside_the_project_needs_a_grant_and_the_engine_socket_says_what_it_is() {
        let yaml = "services:\n  agent:\n    image: a\n    volumes: ['/var/run/docker.sock:/var/run/docker.sock']\n";
        let (services, entries) = imported(yaml, false);
        assert!(services["agent"].get("allow").is_none(), "nothing is granted without --grant");
        let entry = entries.iter().find(|e| e.path == "services.agent.volumes.0").unwrap();
        assert!(entry.detail.contains("docker-socket") && entry.detail.contains("not granted"), "{}", entry.detail);
        let (granted, _) = imported(yaml, true);
        let allow: Vec<_> = granted["agent"]["allow"].as_array().unwrap().iter().filter_map(Toml::as_str).collect();
        assert_eq!(allow, ["bind-outside-project", "docker-socket"]);
        assert_ne!(entry.status, Status::Dropped);
    }
}
