//! Host-level options every plugin has: depends_on, links and networks,
//! restart, user, read_only, stdin_open, tty, security_opt, the powers
//! that need `allow`, and profiles.

use serde_yaml_ng::Value;
use toml::{Table, Value as Toml};

use super::{Draft, Mapper, escape};
use crate::{
    import::load::{other_keys, scalar, sequence, strings},
    stack::Permission,
};

impl Mapper<'_> {
    /// depends_on as `after`: started, ready or completed.
    pub(super) fn depends_on(&mut self, d: &mut Draft) -> Result<(), String> {
        let (at, svc) = (d.at.clone(), d.svc);
        if let Some(Value::Mapping(depends)) = svc.get("depends_on") {
            d.handled.insert("depends_on");
            let mut after = Table::new();
            for (other, how) in depends {
                let other = other.as_str().unwrap_or_default();
                let path = format!("{at}.depends_on.{other}");
                let Some(target) = self.names.get(other) else {
                    // Compose v2 refuses it too, `required: false` or not.
                    return Err(format!(
                        "`{path}`: `{other}` is not a service of the project; compose refuses it too (define it, or remove the dependency)"
                    ));
                };
                let condition = how.get("condition").and_then(Value::as_str).unwrap_or("service_started");
                let wait = match condition {
                    "service_healthy" => "ready",
                    "service_completed_successfully" => "completed",
                    _ => "started",
                };
                after.insert(target.clone(), wait.into());
                if how.get("required").and_then(Value::as_bool) == Some(false) {
                    self.approximated(path, format!("after.{target} = \"{wait}\"; required: false has no equivalent, so `up` fails if it does"));
                } else {
                    self.mapped(path, format!("after.{target} = \"{wait}\""));
                }
                if how.get("restart").and_then(Value::as_bool) == Some(true) {
                    self.dropped(
                        format!("{at}.depends_on.{other}.restart"),
                        "restarting dependents is compose's; provision recreates a service when its plan changes",
                    );
                }
            }
            if !after.is_empty() {
                d.table.insert("after".into(), Toml::Table(after));
            }
        }
        Ok(())
    }

    /// links, networks and network_mode.
    pub(super) fn networks(&mut self, d: &mut Draft) -> Result<(), String> {
        let (at, svc, container) = (d.at.clone(), d.svc, d.container);
        if let Some(links) = svc.get("links") {
            d.handled.insert("links");
            let aliased = strings(Some(links)).iter().any(|l| l.contains(':'));
            if aliased {
                self.approximated(format!("{at}.links"), "services reach each other by service name; link aliases are not kept");
            } else {
                self.mapped(format!("{at}.links"), "nothing needed: services reach each other by name");
            }
        }
        // compose's container answers to its container_name on the network.
        if let Some(container_name) = svc.get("container_name").and_then(Value::as_str) {
            d.handled.insert("container_name");
            let path = format!("{at}.container_name");
            let own = self.names.get(d.name).map(String::as_str);
            if own == Some(container_name) {
                self.mapped(path, "nothing needed: the service answers to its name");
            } else if crate::stack::valid_service_name(container_name) && !self.names.values().any(|n| n == container_name) {
                d.table.insert("aliases".into(), Toml::Array(vec![container_name.into()]));
                self.approximated(
                    path,
                    format!("aliases = [\"{container_name}\"]: other services reach it by that name; the container is named PROJECT-SERVICE-…"),
                );
            } else {
                self.dropped(
                    path,
                    format!("{container_name:?} is not a host name provision can give (lower-case letters, digits, `-`; no other service's name)"),
                );
            }
        }
        if let Some(Value::Mapping(networks)) = svc.get("networks") {
            d.handled.insert("networks");
            let mut list = Vec::new();
            for (network, how) in networks {
                let network = network.as_str().unwrap_or_default();
                let path = format!("{at}.networks.{network}");
                if network != "default" && !self.compose.networks.contains_key(network) {
                    return Err(format!("`{path}`: network `{network}` is not declared under the top-level `networks`; compose refuses it too"));
                }
                list.push(Toml::String(network.to_string()));
                let extra = other_keys(how, &[]);
                if extra.is_empty() {
                    self.mapped(path, "networks");
                } else {
                    self.approximated(path, format!("networks; {} not kept (containers answer to the service name)", extra.join(", ")));
                }
            }
            // Only the default network: what a service without `networks` joins.
            if list != [Toml::String("default".into())] {
                d.table.insert("networks".into(), Toml::Array(list));
            }
        }
        if let Some(mode) = svc.get("network_mode").and_then(Value::as_str) {
            d.handled.insert("network_mode");
            let path = format!("{at}.network_mode");
            match mode {
                "host" if container => {
                    d.table.insert("network_mode".into(), "host".into());
                    d.allow.insert(Permission::HostNetwork);
                    self.mapped(path, format!("network_mode = \"host\", {}", self.power(Permission::HostNetwork)));
                }
                "bridge" => self.mapped(path, "the project's network"),
                other => self.dropped(path, format!("network_mode {other:?} has no equivalent; the service joins the project's network")),
            }
        }
        Ok(())
    }

    /// How the container runs: restart, user, read_only, stdin_open, tty,
    /// security_opt.
    pub(super) fn process(&mut self, d: &mut Draft) {
        let (at, svc, once) = (d.at.clone(), d.svc, d.once);
        if let Some(restart) = svc.get("restart").and_then(scalar) {
            d.handled.insert("restart");
            let path = format!("{at}.restart");
            let (policy, exact) = match restart.as_str() {
                "no" | "always" | "on-failure" | "unless-stopped" => (restart.clone(), true),
                r if r.starts_with("on-failure:") => ("on-failure".to_string(), false),
                _ => (String::new(), false),
            };
            if policy.is_empty() {
                self.dropped(path, format!("{restart:?} is not a restart policy"));
            } else if !once {
                d.table.insert("restart".into(), policy.clone().into());
                if exact {
                    self.mapped(path, "restart");
                } else {
                    self.approximated(path, format!("restart = \"{policy}\" (no retry limit)"));
                }
            } else {
                self.approximated(path, "a service others wait to complete runs once; no restart policy");
            }
        }
        if let Some(user) = svc.get("user").and_then(scalar)
            && !d.handled.contains("user")
        {
            d.handled.insert("user");
            d.table.insert("user".into(), escape(&user).into());
            self.mapped(format!("{at}.user"), "user");
        }
        for key in ["read_only", "stdin_open", "tty"] {
            if let Some(value) = svc.get(key).and_then(Value::as_bool) {
                d.handled.insert(key);
                if once && key != "read_only" {
                    self.approximated(format!("{at}.{key}"), "a service others wait to complete runs once, with no terminal to attach to");
                    continue;
                }
                d.table.insert(key.into(), value.into());
                self.mapped(format!("{at}.{key}"), key);
            }
        }
        if let Some(options) = svc.get("security_opt") {
            d.handled.insert("security_opt");
            for (i, option) in strings(Some(options)).iter().enumerate() {
                let path = format!("{at}.security_opt.{i}");
                if matches!(option.as_str(), "no-new-privileges" | "no-new-privileges:true" | "no-new-privileges=true") {
                    d.table.insert("no_new_privileges".into(), true.into());
                    self.mapped(path, "no_new_privileges = true");
                } else {
                    self.dropped(
                        path,
                        format!("{option:?}: provision keeps Docker's default seccomp and AppArmor profiles and has no key to loosen them"),
                    );
                }
            }
        }
    }

    /// What needs an `allow` entry: privileged, cap_add, devices, pid.
    pub(super) fn powers(&mut self, d: &mut Draft) {
        let (at, svc, container) = (d.at.clone(), d.svc, d.container);
        for (key, permission, what) in [
            ("privileged", Permission::Privileged, "privileged mode"),
            ("cap_add", Permission::CapAdd, "added capabilities"),
            ("devices", Permission::Devices, "host devices"),
        ] {
            let Some(value) = svc.get(key) else { continue };
            d.handled.insert(key);
            let path = format!("{at}.{key}");
            if value.as_bool() == Some(false) || sequence(Some(value.clone())).is_empty() && !value.is_bool() {
                self.mapped(path, "nothing (not asked)");
                continue;
            }
            if !container {
                self.dropped(path, format!("the {} plugin never asks for {what}", d.table["plugin"].as_str().unwrap_or_default()));
                continue;
            }
            let toml_value = match key {
                "privileged" => Toml::Boolean(true),
                _ => Toml::Array(
                    sequence(Some(value.clone()))
                        .iter()
                        .map(|d| Toml::String(scalar(d).or_else(|| d.get("source").and_then(scalar)).unwrap_or_default()))
                        .collect(),
                ),
            };
            d.table.insert(key.into(), toml_value);
            d.allow.insert(permission);
            self.mapped(path, format!("{key}, {}", self.power(permission)));
        }
        if let Some(pid) = svc.get("pid").and_then(Value::as_str) {
            d.handled.insert("pid");
            if pid == "host" && container {
                d.table.insert("pid".into(), "host".into());
                d.allow.insert(Permission::HostPid);
                self.mapped(format!("{at}.pid"), format!("pid = \"host\", {}", self.power(Permission::HostPid)));
            } else {
                self.dropped(format!("{at}.pid"), format!("pid {pid:?} has no equivalent"));
            }
        }
    }

    /// profiles, as they are.
    pub(super) fn profiles(&mut self, d: &mut Draft) {
        let (at, svc) = (d.at.clone(), d.svc);
        if let Some(profiles) = svc.get("profiles") {
            d.handled.insert("profiles");
            let list = strings(Some(profiles));
            // compose: no profile named (`[]`) means the service always runs.
            let Some(first) = list.first() else {
                self.mapped(format!("{at}.profiles"), "no profile named: the service always runs");
                return;
            };
            let how = format!("profiles: the service exists while any is active (`provision up --profile dev,{first}`)");
            d.table.insert("profiles".into(), Toml::Array(list.into_iter().map(Toml::String).collect()));
            self.mapped(format!("{at}.profiles"), how);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{
        Status,
        tests::{imported, try_imported},
    };

    #[test]
    fn depends_on_conditions_become_after_and_a_completed_one_runs_once() {
        let yaml = "services:\n  web:\n    image: a\n    depends_on:\n      db: {condition: service_healthy}\n      migrate: {condition: service_completed_successfully}\n      cache: {condition: service_started}\n  db: {image: b}\n  migrate: {image: c, restart: always}\n  cache: {image: d}\n";
        let (services, entries) = imported(yaml, false);
        let after = services["web"]["after"].as_table().unwrap();
        assert_eq!(after["db"].as_str(), Some("ready"));
        assert_eq!(after["migrate"].as_str(), Some("completed"));
        assert_eq!(after["cache"].as_str(), Some("started"));
        assert_eq!(services["migrate"]["once"].as_bool(), Some(true));
        assert!(services["migrate"].get("restart").is_none(), "a service that runs once does not restart");
        assert!(entries.iter().any(|e| e.path == "services.migrate.restart" && e.status == Status::Approximated));
    }

    #[test]
    fn a_power_is_written_in_allow_only_with_grant() {
        let yaml = "services:\n  tool:\n    image: a\n    privileged: true\n    pid: host\n";
        let (services, entries) = imported(yaml, false);
        assert_eq!(services["tool"]["privileged"].as_bool(), Some(true));
        assert!(services["tool"].get("allow").is_none());
        let entry = entries.iter().find(|e| e.path == "services.tool.privileged").unwrap();
        assert!(entry.detail.contains("not granted"), "{}", entry.detail);
        let (granted, _) = imported(yaml, true);
        let allow: Vec<_> = granted["tool"]["allow"].as_array().unwrap().iter().filter_map(toml::Value::as_str).collect();
        assert_eq!(allow, ["host-pid", "privileged"]);
    }

    #[test]
    fn a_terminal_for_attach_is_kept_except_on_a_service_that_runs_once() {
        let yaml = "services:\n  web: {image: a, stdin_open: true, tty: true, depends_on: {seed: {condition: service_completed_successfully}}}\n  seed: {image: b, tty: true}\n";
        let (services, entries) = imported(yaml, false);
        assert_eq!((services["web"]["stdin_open"].as_bool(), services["web"]["tty"].as_bool()), (Some(true), Some(true)));
        assert!(services["seed"].get("tty").is_none());
        assert!(entries.iter().any(|e| e.path == "services.seed.tty" && e.status == Status::Approximated));
    }

    #[test]
    fn a_restart_policy_with_a_limit_is_approximated() {
        let (services, entries) = imported("services:\n  web: {image: a, restart: 'on-failure:3'}\n", false);
        assert_eq!(services["web"]["restart"].as_str(), Some("on-failure"));
        let entry = entries.iter().find(|e| e.path == "services.web.restart").unwrap();
        assert_eq!(entry.status, Status::Approximated);
    }

    #[test]
    fn an_empty_profiles_list_means_the_service_always_runs() {
        let (services, entries) = imported("services:\n  web: {image: a, profiles: []}\n", false);
        assert!(services["web"].get("profiles").is_none());
        let entry = entries.iter().find(|e| e.path == "services.web.profiles").unwrap();
        assert!(entry.detail.contains("always runs"), "{}", entry.detail);
    }

    #[test]
    fn a_network_the_file_does_not_declare_and_an_empty_service_are_refused_as_compose_refuses_them() {
        let err = try_imported("services:\n  web: {image: a, networks: [front]}\n", false).err().unwrap();
        assert!(err.contains("`services.web.networks.front`: network `front` is not declared"), "{err}");
        assert!(try_imported("services:\n  web: {image: a, networks: [front]}\nnetworks: {front: {}}\n", false).is_ok());
        let err = try_imported("services:\n  web:\n", false).err().unwrap();
        assert!(err.contains("`services.web` is empty; compose refuses it too"), "{err}");
    }
}
