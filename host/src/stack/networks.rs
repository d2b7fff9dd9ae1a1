//! `[networks.NAME]` (which networks exist, which are internal, which are
//! made outside the stack) and
//! `[engine.*]` (how the engine is set up).

use toml::Value;

use super::{NetworkDecl, Stack, StackError, valid_name};

impl Stack {
    pub(super) fn read_networks(&mut self, value: Value) -> Result<(), StackError> {
        let table = self.expect_table("networks", value)?;
        for (name, value) in table {
            let path = format!("networks.{name}");
            if !valid_name(&name.replace('_', "-")) {
                return Err(self.error_at(
                    &path,
                    format!("network name {name:?} is not usable"),
                    "invalid name",
                    Some("use lower-case letters, digits, `-` and `_`".into()),
                ));
            }
            let mut network = NetworkDecl::default();
            let (mut external, mut engine_name) = (false, None);
            for (key, value) in self.expect_table(&path, value)? {
                match (key.as_str(), value) {
                    ("internal", Value::Boolean(b)) => network.internal = b,
                    ("external", Value::Boolean(b)) => external = b,
                    ("name", value) => engine_name = Some(self.expect_str(&format!("{path}.name"), value)?),
                    _ => {
                        return Err(self.unknown_key(
                            &format!("{path}.{key}"),
                            "a network has `internal = true|false`, or `external = true` (and its `name`, if not the key)",
                        ));
                    }
                }
            }
            if external && network.internal {
                return Err(self.error_at(
                    &format!("{path}.internal"),
                    "an external network's settings are its maker's",
                    "not for an external network",
                    Some("leave `internal` out: the stack joins the network as it was made".into()),
                ));
            }
            match engine_name {
                _ if external => network.external = Some(engine_name.unwrap_or_else(|| name.clone())),
                Some(_) => {
                    return Err(self.error_at(
                        &format!("{path}.name"),
                        "`name` is for an external network",
                        "without `external = true`",
                        Some("the stack names the networks it makes itself (PROJECT_NAME); add `external = true` to join one made outside".into()),
                    ));
                }
                None => {}
            }
            self.networks.insert(name, network);
        }
        Ok(())
    }

    pub(super) fn read_engine(&mut self, value: Value) -> Result<(), StackError> {
        for (name, value) in self.expect_table("engine", value)? {
            let path = format!("engine.{name}");
            if name != "swarm" {
                return Err(self.unknown_key(&path, "[engine.swarm] is the engine with settings"));
            }
            for (key, value) in self.expect_table(&path, value)? {
                let path = format!("{path}.{key}");
                match key.as_str() {
                    "registry" => {
                        let registry = self.expect_str(&path, value)?;
                        if registry.is_empty() || registry.contains("://") || registry.chars().any(|c| c.is_whitespace() || c == '@') {
                            return Err(self.error_at(
                                &path,
                                format!("registry {registry:?} is not a registry address"),
                                "not HOST[:PORT][/PATH]",
                                Some("write it as Docker names it in image references, e.g. \"registry.example.com:5000\" (no scheme)".into()),
                            ));
                        }
                        self.engine_settings.swarm_registry = Some(registry);
                    }
                    _ => return Err(self.unknown_key(&path, "[engine.swarm] has `registry`")),
                }
            }
        }
        Ok(())
    }
}
