//! Replicas and resources: `deploy` (what one engine can do of it) and the
//! older keys (`scale`, `mem_limit`, `cpus`, `pids_limit`), sizes in
//! stack.toml's units.

use serde_yaml_ng::{Mapping, Value};
use toml::{Table, Value as Toml};

use super::{Draft, Mapper};
use crate::import::load::scalar;

impl Mapper<'_> {
    /// Replicas and resources: deploy first, the old keys as compose reads them.
    pub(super) fn resources(&mut self, d: &mut Draft) {
        let (at, svc, once) = (d.at.clone(), d.svc, d.once);
        if let Some(Value::Mapping(deploy)) = svc.get("deploy") {
            d.handled.insert("deploy");
            self.deploy(&at, deploy, &mut d.table, once);
        }
        if let Some(scale) = svc.get("scale").and_then(Value::as_u64) {
            d.handled.insert("scale");
            d.table.insert("replicas".into(), Toml::Integer(scale as i64));
            self.mapped(format!("{at}.scale"), "replicas");
        }
        for (key, field) in [("mem_limit", "memory"), ("cpus", "cpus"), ("pids_limit", "pids")] {
            let Some(value) = svc.get(key) else { continue };
            d.handled.insert(key);
            if no_limit(value) {
                self.mapped(format!("{at}.{key}"), NO_LIMIT);
                continue;
            }
            let resources = d.table.entry("resources").or_insert_with(|| Toml::Table(Table::new()));
            if let Some(resources) = resources.as_table_mut() {
                resources.insert(field.into(), resource_value(field, value));
            }
            self.mapped(format!("{at}.{key}"), format!("resources.{field}"));
        }
    }

    fn deploy(&mut self, at: &str, deploy: &Mapping, table: &mut Table, once: bool) {
        for (key, value) in deploy {
            let key = key.as_str().unwrap_or_default();
            let path = format!("{at}.deploy.{key}");
            match key {
                "replicas" => {
                    let n = value.as_i64().or_else(|| scalar(value).and_then(|s| s.parse().ok())).unwrap_or(1);
                    table.insert("replicas".into(), Toml::Integer(n));
                    self.mapped(path, "replicas");
                }
                "resources" => {
                    let mut resources = Table::new();
                    for (part, limits) in value.as_mapping().into_iter().flatten() {
                        let part = part.as_str().unwrap_or_default();
                        for (field, limit) in limits.as_mapping().into_iter().flatten() {
                            let field = field.as_str().unwrap_or_default();
                            let path = format!("{path}.{part}.{field}");
                            match (part, field) {
                                ("limits", "cpus" | "memory" | "pids") if no_limit(limit) => self.mapped(path, NO_LIMIT),
                                ("limits", "cpus" | "memory" | "pids") => {
                                    resources.insert(field.into(), resource_value(field, limit));
                                    self.mapped(path, format!("resources.{field}"));
                                }
                                ("reservations", _) => self.dropped(path, "provision sets limits; it reserves nothing"),
                                _ => self.dropped(path, "no equivalent (devices and generic resources are not passed)"),
                            }
                        }
                    }
                    if !resources.is_empty() {
                        table.insert("resources".into(), Toml::Table(resources));
                    }
                }
                "restart_policy" if !table.contains_key("restart") && !once => {
                    let condition = value.get("condition").and_then(Value::as_str).unwrap_or("any");
                    let policy = match condition {
                        "none" => "no",
                        "on-failure" => "on-failure",
                        _ => "always",
                    };
                    table.insert("restart".into(), policy.into());
                    self.approximated(path, format!("restart = \"{policy}\" (delay, attempts and window are Swarm's)"));
                }
                "restart_policy" => self.mapped(path, "restart (from the service's own `restart`)"),
                _ => self.dropped(path, "a Swarm setting; one engine has no placement, update or rollback"),
            }
        }
    }
}

const NO_LIMIT: &str = "nothing: 0 (or -1) is no limit, in compose as in provision's default";

/// `0`, `"0"`, `"0m"`, `-1`: compose's way of saying no limit.
fn no_limit(value: &Value) -> bool {
    let text = scalar(value).unwrap_or_default().trim().to_ascii_lowercase();
    let number = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    number.parse::<f64>().is_ok_and(|n| n == 0.0 || n == -1.0)
}

fn resource_value(field: &str, value: &Value) -> Toml {
    let text = scalar(value).unwrap_or_default();
    match field {
        "cpus" => Toml::Float(text.parse().unwrap_or(1.0)),
        "pids" => Toml::Integer(text.parse().unwrap_or(0)),
        _ => Toml::String(memory(&text).unwrap_or(text)),
    }
}

/// Compose's sizes ("1.3GB", "512M", "268435456") as stack.toml's ("1331m").
fn memory(text: &str) -> Option<String> {
    let lower = text.trim().to_ascii_lowercase();
    let lower = lower.trim_end_matches('b');
    let split = lower.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(lower.len());
    let number: f64 = lower[..split].parse().ok()?;
    let scale = match &lower[split..] {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let bytes = number * scale;
    Some(if bytes % (1024.0 * 1024.0) == 0.0 { format!("{}m", bytes as u64 >> 20) } else { format!("{}k", (bytes / 1024.0).round() as u64) })
}

#[cfg(test)]
mod tests {
    use super::super::{Status, tests::one};
    use super::*;

    #[test]
    fn sizes_in_stack_toml_units() {
        assert_eq!(memory("1.3GB").as_deref(), Some("1363149k"));
        assert_eq!(memory("512M").as_deref(), Some("512m"));
        assert_eq!(memory("268435456").as_deref(), Some("256m"));
        assert_eq!(memory("lots"), None);
    }

    #[test]
    fn replicas_and_limits_are_kept_and_reservations_said_to_be_dropped() {
        let yaml = "services:\n  web:\n    image: a\n    deploy:\n      replicas: 3\n      resources:\n        limits: {cpus: '0.5', memory: 512M}\n        reservations: {memory: 128M}\n";
        let (web, entry) = one(yaml, "deploy.resources.reservations.memory");
        assert_eq!(web["replicas"].as_integer(), Some(3));
        assert_eq!(web["resources"]["cpus"].as_float(), Some(0.5));
        assert_eq!(web["resources"]["memory"].as_str(), Some("512m"));
        assert_eq!(entry.map(|e| e.0), Some(Status::Dropped));
    }

    #[test]
    fn a_limit_of_zero_is_no_limit_not_a_size() {
        let yaml = "services:\n  web:\n    image: a\n    mem_limit: 0\n    deploy:\n      resources:\n        limits: {cpus: '0', memory: '0'}\n";
        let (web, entry) = one(yaml, "deploy.resources.limits.memory");
        assert!(web.get("resources").is_none(), "{web:?}");
        assert_eq!(entry.map(|e| e.0), Some(Status::Mapped));
        assert!(no_limit(&Value::from("0m")) && no_limit(&Value::from(-1)) && !no_limit(&Value::from("512m")));
    }
}
