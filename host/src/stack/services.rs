//! `[services.NAME]`: each service's plugin, `uses`, `allow`, profiles
//! (their overrides merged over the service) and the rest of its keys.

use std::ops::Range;

use toml::Value;

use super::{Permission, Service, Stack, StackError, Uses, permissions_help, toml_to_json, valid_service_name};

impl Stack {
    pub(super) fn read_services(&mut self, value: Value) -> Result<(), StackError> {
        let table = self.expect_table("services", value)?;
        for (name, value) in table {
            let path = format!("services.{name}");
            if !valid_service_name(&name) {
                return Err(self.error_at(
                    &path,
                    format!("service name {name:?} cannot be a host name"),
                    "invalid service name",
                    Some("use lower-case letters, digits and `-`, starting with a letter".into()),
                ));
            }
            let mut table = self.expect_table(&path, value)?;
            if let Some(profiles) = self.apply_profile(&path, &mut table)? {
                self.not_active.insert(name, profiles);
                continue;
            }
            let plugin = match table.remove("plugin") {
                Some(v) => self.expect_str(&format!("{path}.plugin"), v)?,
                None => name.clone(),
            };
            let uses = match table.remove("uses") {
                None => Uses::Infer,
                Some(v) => self.read_uses(&format!("{path}.uses"), v)?,
            };
            let allow = match table.remove("allow") {
                None => Vec::new(),
                Some(v) => self.read_allow(&format!("{path}.allow"), v)?,
            };
            let config = toml_to_json(Value::Table(table));
            self.by_name.insert(name.clone(), self.services.len());
            self.services.push(Service { name, plugin, uses, allow, config });
        }
        Ok(())
    }

    /// `profiles = ["dev"]`: whether the service exists in an active
    /// profile. `[SERVICE.profiles.NAME]` tables: each active one's keys are
    /// merged over the service's, in the order the profiles are active
    /// (tables key by key, anything else replaced), and errors about them
    /// point at the override.
    /// None: the service exists; else the profiles it is in, none active.
    pub(super) fn apply_profile(&mut self, path: &str, table: &mut toml::Table) -> Result<Option<Vec<String>>, StackError> {
        let key = format!("{path}.profiles");
        match table.remove("profiles") {
            None => Ok(None),
            Some(Value::Array(items)) => {
                let mut names = Vec::new();
                for (i, item) in items.into_iter().enumerate() {
                    names.push(self.expect_str(&format!("{key}.{i}"), item)?);
                }
                Ok((!names.iter().any(|n| self.profiles.contains(n))).then_some(names))
            }
            Some(Value::Table(profiles)) => {
                for active in self.profiles.clone() {
                    if let Some(Value::Table(overrides)) = profiles.get(&active) {
                        self.merge(table, overrides.clone(), path, &format!("{key}.{active}"));
                    }
                }
                for (name, value) in &profiles {
                    if !value.is_table() {
                        return Err(self.error_at(&format!("{key}.{name}"), "a profile's overrides are a table", "expected a table", None));
                    }
                }
                Ok(None)
            }
            Some(_) => Err(self.error_at(
                &key,
                "`profiles` is a list of the profiles the service exists in, or tables of overrides",
                "here",
                Some("e.g. profiles = [\"dev\"], or [services.db.profiles.test] with keys to change in that profile".into()),
            )),
        }
    }

    pub(super) fn merge(&mut self, into: &mut toml::Table, overrides: toml::Table, path: &str, from: &str) {
        for (key, value) in overrides {
            let (to_path, from_path) = (format!("{path}.{key}"), format!("{from}.{key}"));
            match (into.get_mut(&key), value) {
                (Some(Value::Table(base)), Value::Table(more)) => self.merge(base, more, &to_path, &from_path),
                (_, value) => {
                    // Errors about the merged key now point at the override.
                    let moved: Vec<(String, Range<usize>)> = self
                        .spans
                        .iter()
                        .filter(|(k, _)| *k == &from_path || k.starts_with(&format!("{from_path}.")))
                        .map(|(k, span)| (format!("{to_path}{}", &k[from_path.len()..]), span.clone()))
                        .collect();
                    self.spans.retain(|k, _| !(k == &to_path || k.starts_with(&format!("{to_path}."))));
                    self.spans.extend(moved);
                    into.insert(key, value);
                }
            }
        }
    }

    pub(super) fn read_uses(&self, path: &str, value: Value) -> Result<Uses, StackError> {
        let help = "write `uses = [\"db\"]` (roles found from each service's plugin) or `uses = { database = \"db\" }`";
        match value {
            Value::Array(items) => {
                let mut services = Vec::new();
                for (i, item) in items.into_iter().enumerate() {
                    services.push(self.expect_str(&format!("{path}.{i}"), item)?);
                }
                Ok(Uses::Services(services))
            }
            Value::Table(table) => {
                let mut roles = Vec::new();
                for (role, service) in table {
                    let service = self.expect_str(&format!("{path}.{role}"), service)?;
                    roles.push((role, service));
                }
                Ok(Uses::Roles(roles))
            }
            other => Err(self.error_at(path, format!("`uses` must be a list or a table, found {}", other.type_str()), "here", Some(help.into()))),
        }
    }

    pub(super) fn read_allow(&self, path: &str, value: Value) -> Result<Vec<Permission>, StackError> {
        let Value::Array(items) = value else {
            return Err(self.error_at(path, "`allow` must be a list of permissions", "here", Some(permissions_help())));
        };
        let mut allow = Vec::new();
        for (i, item) in items.into_iter().enumerate() {
            let item_path = format!("{path}.{i}");
            let written = self.expect_str(&item_path, item)?;
            let permission = Permission::parse(&written)
                .ok_or_else(|| self.error_at(&item_path, format!("unknown permission {written:?}"), "not a permission", Some(permissions_help())))?;
            allow.push(permission);
        }
        Ok(allow)
    }
}
