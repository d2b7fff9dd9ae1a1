//! environment and env_file as host-level `env`: values as written (variables
//! stay variables), a .env beside stack.toml referred to, other project files
//! copied in, files outside the project refused.

use std::{collections::BTreeMap, path::Path};

use serde_yaml_ng::{Mapping, Value};
use toml::{Table, Value as Toml};

use super::{Draft, Mapper, escape};
use crate::import::load::sequence;

impl Mapper<'_> {
    /// environment and env_file as host-level `env`, after what a built-in took.
    pub(super) fn env(&mut self, d: &mut Draft) -> Result<(), String> {
        let (at, svc) = (d.at.clone(), d.svc);
        d.handled.extend(["environment", "env_file"]);
        self.env_files(&at, svc, &mut d.env)?;
        if !d.env.is_empty() {
            let mut table_env = Table::new();
            for (key, value) in &d.env {
                // No value (`- KEY`, `KEY:`): from the environment or .env, as compose does.
                table_env.insert(key.clone(), value.clone().unwrap_or_else(|| format!("${{{key}}}")).into());
                let path = format!("{at}.environment.{key}");
                if svc.get("environment").and_then(|e| e.get(key.as_str())).is_some() && !self.report.iter().any(|e| e.path == path) {
                    match value {
                        Some(_) => self.mapped(path, format!("env.{key}")),
                        None => self.approximated(
                            path,
                            format!(
                                "env.{key} = \"${{{key}}}\": where {key} is not set it is \"\" (compose leaves it out); `provision up` warns then"
                            ),
                        ),
                    }
                }
            }
            d.table.insert("env".into(), Toml::Table(table_env));
        }
        Ok(())
    }

    /// Each env_file's variables, a later file's over an earlier one's (as
    /// compose reads them), under what `environment` sets.
    fn env_files(&mut self, at: &str, svc: &Mapping, env: &mut BTreeMap<String, Option<String>>) -> Result<(), String> {
        let mut from_files = BTreeMap::new();
        for (i, file) in sequence(svc.get("env_file").cloned()).iter().enumerate() {
            let path = format!("{at}.env_file.{i}");
            let source = file.get("path").and_then(Value::as_str).unwrap_or_default();
            let required = file.get("required").and_then(Value::as_bool).unwrap_or(true);
            // Its values are copied into stack.toml: only a file of the
            // project's is (`/proc/self/environ` would copy CI's tokens).
            if let Ok(real) = Path::new(source).canonicalize()
                && !real.starts_with(&self.compose.dir)
            {
                return Err(format!(
                    "`{path}`: {source} is outside the project folder {}; import copies no file from outside it into stack.toml. \
                     Copy it into the project (or put its variables in .env beside stack.toml) and import again",
                    self.compose.dir.display()
                ));
            }
            let text = match provision_registry::files::read_regular_text(Path::new(source), provision_registry::files::MAX_TEXT_BYTES) {
                Ok(text) => text,
                Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
                    self.mapped(path, "nothing (an optional file that is not there)");
                    continue;
                }
                Err(e) => return Err(format!("`{path}`: cannot read {source}: {e}")),
            };
            let vars = crate::stack::interpolate::parse_dotenv(&text).map_err(|e| format!("`{path}`: {source}: {e}"))?;
            // The .env beside stack.toml is read when the stack runs: refer to it.
            let beside = Path::new(source) == self.out_dir.join(".env");
            for (key, value) in vars {
                let value = if beside { format!("${{{key}}}") } else { escape(&value) };
                from_files.insert(key, value);
            }
            if beside {
                self.mapped(path, "env, each variable as ${NAME}: read from .env beside stack.toml when the stack runs");
            } else {
                self.approximated(
                    path,
                    format!(
                        "env: the values in {} copied in (stack.toml has no env_file; keep secrets in .env and write ${{NAME}})",
                        self.path(source)
                    ),
                );
            }
        }
        for (key, value) in from_files {
            env.entry(key).or_insert(Some(value));
        }
        Ok(())
    }
}

/// The compose service's environment, values as written (variables
/// unexpanded); None: unset, taken from the environment.
pub(super) fn environment(svc: &Mapping) -> BTreeMap<String, Option<String>> {
    let mut env = BTreeMap::new();
    if let Some(Value::Mapping(map)) = svc.get("environment") {
        for (key, value) in map {
            env.insert(key.as_str().unwrap_or_default().to_string(), value.as_str().map(str::to_string));
        }
    }
    env
}

#[cfg(test)]
mod tests {
    use super::super::tests::{imported, one};

    #[test]
    fn values_stay_as_written_and_an_unset_one_is_read_from_the_environment() {
        let (web, _) = one("services:\n  web:\n    image: a\n    environment: ['MODE=dev', 'TOKEN', 'URL=${BASE}/api']\n", "environment");
        let env = web["env"].as_table().unwrap();
        assert_eq!(env["MODE"].as_str(), Some("dev"));
        assert_eq!(env["TOKEN"].as_str(), Some("${TOKEN}"));
        assert_eq!(env["URL"].as_str(), Some("${BASE}/api"));
    }

    #[test]
    fn the_last_env_file_wins_and_environment_over_them_all() {
        let dir = std::env::temp_dir().join(format!("provision-env-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("base.env"), "MODE=base\nLEVEL=1\nNAME=base\n").unwrap();
        std::fs::write(dir.join("local.env"), "MODE=local\nNAME=local\n").unwrap();
        let files = [dir.join("compose.yaml")];
        std::fs::write(&files[0], "services:\n  web:\n    image: a\n    env_file: [base.env, local.env]\n    environment: {NAME: mine}\n").unwrap();
        let options = crate::import::Options { files: &files, env_file: None, profiles: &[], project_name: Some("t"), out_dir: &dir, grant: false };
        let imported = crate::import::import(&options);
        std::fs::remove_dir_all(&dir).unwrap();
        let stack: toml::Table = toml::from_str(&imported.unwrap().toml).unwrap();
        let env = stack["services"]["web"]["env"].as_table().unwrap();
        assert_eq!((env["MODE"].as_str(), env["LEVEL"].as_str(), env["NAME"].as_str()), (Some("local"), Some("1"), Some("mine")));
    }

    #[test]
    #[should_panic(expected = "outside the project folder")]
    fn an_env_file_outside_the_project_is_refused() {
        imported("services:\n  web: {image: a, env_file: /etc/hostname}\n", false);
    }
}
