//! `${VAR}` in every string of a file, as compose interpolates it, but for
//! the strings stack.toml takes as they are when `keep` (read again when
//! the stack runs); what was frozen or unset is noted.

use serde_yaml_ng::{Mapping, Value};

use crate::stack::Variables;

/// What the report says about variables.
#[derive(Default)]
pub(super) struct Notes {
    /// `services.web.ports.0 (${WEB_PORT})`: a value read at import.
    pub frozen: Vec<String>,
    /// `services.web.command: REDIS_PASSWORD`: unset, read as "".
    pub unset: Vec<String>,
}

/// Every string interpolated, except (when `keep`) a service's environment
/// values, command, entrypoint and health-check test: those are kept as
/// written (`${DB_PASSWORD}`), so a secret from `.env` is read again when
/// the stack runs instead of being written into stack.toml.
pub(super) fn interpolate(
    map: &mut Mapping,
    variables: &Variables,
    keep: bool,
    at: &mut Vec<String>,
    notes: &mut Notes,
) -> Result<(), (String, String)> {
    for (key, value) in map.iter_mut() {
        at.push(key.as_str().map(str::to_string).unwrap_or_else(|| format!("{key:?}")));
        if !(keep && kept(at)) {
            interpolate_value(value, variables, keep, at, notes)?;
        }
        at.pop();
    }
    Ok(())
}

/// The keys whose strings stack.toml reads with its own interpolation.
fn kept(at: &[String]) -> bool {
    match at {
        [services, _, key] if services == "services" => matches!(key.as_str(), "environment" | "command" | "entrypoint"),
        [services, _, check, test] if services == "services" => check == "healthcheck" && test == "test",
        _ => false,
    }
}

fn interpolate_value(value: &mut Value, variables: &Variables, keep: bool, at: &mut Vec<String>, notes: &mut Notes) -> Result<(), (String, String)> {
    match value {
        Value::String(text) => {
            let read = variables.interpolate(text).map_err(|e| (at.join("."), e))?;
            let names = variables.take_unset();
            if at.first().is_some_and(|s| s == "services") && references(text) {
                notes.frozen.push(format!("{} ({})", at.join("."), text));
            }
            notes.unset.extend(names.into_iter().map(|name| format!("{}: {name}", at.join("."))));
            *text = read;
        }
        Value::Mapping(map) => interpolate(map, variables, keep, at, notes)?,
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                at.push(i.to_string());
                interpolate_value(item, variables, keep, at, notes)?;
                at.pop();
            }
        }
        Value::Tagged(tagged) => interpolate_value(&mut tagged.value, variables, keep, at, notes)?,
        _ => {}
    }
    Ok(())
}

/// Whether `text` reads a variable (a `$` that is not `$$`).
fn references(text: &str) -> bool {
    text.replace("$$", "").contains('$')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(yaml: &str, variables: &Variables, keep: bool) -> (Mapping, Notes) {
        let mut top: Mapping = serde_yaml_ng::from_str(yaml).unwrap();
        let mut notes = Notes::default();
        interpolate(&mut top, variables, keep, &mut Vec::new(), &mut notes).unwrap();
        (top, notes)
    }

    #[test]
    fn values_stack_toml_reads_again_stay_variables_and_the_rest_are_frozen_and_noted() {
        let variables = Variables::fixed(&[("TAG", "16"), ("PASSWORD", "secret")]);
        let yaml = "services:\n  db:\n    image: postgres:${TAG}\n    ports: ['${PORT:-5432}:5432']\n    environment: {POSTGRES_PASSWORD: '${PASSWORD}'}\n    \
                    command: redis-server --requirepass ${PASSWORD}\n    healthcheck: {test: ['CMD', 'redis-cli', '-a', '${PASSWORD}', 'ping']}\n    user: $WHO\n";
        let (top, notes) = read(yaml, &variables, true);
        let db = &top["services"]["db"];
        assert_eq!(db["image"], Value::from("postgres:16"));
        assert_eq!(db["ports"][0], Value::from("5432:5432"));
        assert_eq!(db["environment"]["POSTGRES_PASSWORD"], Value::from("${PASSWORD}"));
        assert_eq!(db["command"], Value::from("redis-server --requirepass ${PASSWORD}"));
        assert_eq!(db["healthcheck"]["test"][3], Value::from("${PASSWORD}"));
        assert_eq!(notes.frozen, ["services.db.image (postgres:${TAG})", "services.db.ports.0 (${PORT:-5432}:5432)", "services.db.user ($WHO)"]);
        assert_eq!(notes.unset, ["services.db.user: WHO"]);
        // As `docker compose config` prints it: everything read.
        let (top, _) = read(yaml, &variables, false);
        assert_eq!(top["services"]["db"]["command"], Value::from("redis-server --requirepass secret"));
    }

    #[test]
    fn an_error_names_the_key_it_is_under() {
        let mut top: Mapping = serde_yaml_ng::from_str("services: {web: {ports: ['${PORT:?set PORT}']}}").unwrap();
        let (at, _) = interpolate(&mut top, &Variables::fixed(&[]), true, &mut Vec::new(), &mut Notes::default()).unwrap_err();
        assert_eq!(at, "services.web.ports.0");
    }
}
